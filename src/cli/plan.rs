//! `cairn plan`: validate a plan file, show it resolved, print systemd units for it.

use std::path::PathBuf;

use anyhow::Result;

use super::planned::{state_path, PlanFileArg};
use super::{exit, output, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn plan validate --plan /etc/cairn/plan.toml
  cairn plan show --json | jq .retention
  cairn plan systemd --on-calendar '*-*-* 02:30' > /etc/systemd/system/cairn.timer.d/...
  cairn plan systemd --write /etc/systemd/system && systemctl enable --now cairn.timer
See README.md, \"The nightly plan\", for every key of the file.";

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(subcommand)]
    pub command: PlanCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum PlanCommand {
    /// Check the plan file: syntax, unknown keys, values. Exit 0 when valid, 2 when not.
    #[command(after_help = "Examples:
  cairn plan validate                              # $CAIRN_PLAN or the default plan file
  cairn plan validate --plan /etc/cairn/plan.toml && cairn run --plan /etc/cairn/plan.toml")]
    Validate(PlanFileArg),
    /// Print the plan as cairn understands it (with --json: as JSON), and where its state lives.
    #[command(after_help = "Examples:
  cairn plan show --plan /etc/cairn/plan.toml
  cairn plan show --json | jq .retention")]
    Show(PlanFileArg),
    /// Print (or write) a systemd service and timer that run the plan.
    #[command(after_help = "Examples:
  cairn plan systemd                               # print cairn.service and cairn.timer
  cairn plan systemd --on-calendar '*-*-* 03:30' --write /etc/systemd/system
  systemctl daemon-reload && systemctl enable --now cairn.timer")]
    Systemd(SystemdArgs),
}

#[derive(clap::Args, Debug)]
pub struct SystemdArgs {
    #[command(flatten)]
    pub plan: PlanFileArg,
    /// When the timer fires (a systemd calendar expression) for a plan without jobs; with jobs,
    /// the timer fires at each job's schedule, and at WHEN for jobs whose span fits no calendar.
    #[arg(long, default_value = "*-*-* 02:00", value_name = "WHEN")]
    pub on_calendar: String,
    /// Write cairn.service and cairn.timer into this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: &PlanArgs) -> Result<i32> {
    match &args.command {
        PlanCommand::Validate(p) => {
            let (path, _) = p.required()?;
            if !global.quiet {
                outln!("{}: valid", path.display());
            }
            Ok(exit::OK)
        }
        PlanCommand::Show(p) => {
            let (path, plan) = p.required()?;
            let state = state_path(&plan, &path)?;
            if global.json {
                output::print_json(&serde_json::json!({
                    "plan_file": path,
                    "state_file": state,
                    "plan": plan,
                }))?;
            } else {
                outln!(
                    "# plan file {}\n# state file {}",
                    path.display(),
                    state.display()
                );
                out!("{}", toml::to_string_pretty(&plan)?);
            }
            Ok(exit::OK)
        }
        PlanCommand::Systemd(a) => {
            let (path, plan) = a.plan.required()?;
            let path = std::path::absolute(&path)?;
            let cairn = std::env::current_exe()?;
            let calendars = cairn::plan::systemd_calendars(&plan, &a.on_calendar);
            let (service, timer) =
                cairn::plan::systemd_units(&cairn, &path, &calendars, !plan.jobs.is_empty());
            match &a.write {
                Some(dir) => {
                    for (name, text) in [("cairn.service", &service), ("cairn.timer", &timer)] {
                        cairn::plan::state::write_atomically(&dir.join(name), text.as_bytes())?;
                        if !global.quiet {
                            outln!("wrote {}", dir.join(name).display());
                        }
                    }
                    if !global.quiet {
                        outln!(
                            "then: systemctl daemon-reload && systemctl enable --now cairn.timer"
                        );
                    }
                }
                None => out!("# cairn.service\n{service}\n# cairn.timer\n{timer}"),
            }
            Ok(exit::OK)
        }
    }
}
