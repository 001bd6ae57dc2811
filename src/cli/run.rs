//! `cairn run`: the cron/systemd entry point. Runs the plan's steps in order (backup, retention,
//! check, offsite, drill), each only when due, between the plan's hooks; records every attempt in
//! the state file and writes the Prometheus textfile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;

use cairn::plan::hooks::{self, run_hooks, HookEvent, HookVerdict};
use cairn::plan::state::RunRecord;
use cairn::plan::{schedule, ScheduledStep};
use cairn::plan::{span_of, Attempt, Outcome, Plan, State, Step};

use super::planned::{global_for, state_path, PlanFileArg};
use super::{drill, exit, exit_code_for, output, GlobalArgs};

mod backup_step;
mod lock;

pub const EXAMPLES: &str = "\
Examples:
  cairn run                                   # every step that is due, as the timer does
  cairn run --dry-run                         # what would run, and why
  cairn run --only backup,offsite --force     # these steps now, due or not
  cairn run --plan /etc/cairn/db.toml --json
Exit code: 0 when every step that ran succeeded (or a before hook exited 75 to skip the run);
otherwise the exit code of the first step that failed (see `cairn --help`).";

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub plan: PlanFileArg,
    /// Run only these steps (comma-separated: backup,retention,check,offsite,drill).
    #[arg(long, value_name = "STEPS", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Run the selected steps even when not due.
    #[arg(long)]
    pub force: bool,
    /// Say what would run and why; run nothing, not even hooks.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

/// One step's work, as the runner sees it.
struct StepResult {
    code: i32,
    message: Option<String>,
    details: serde_json::Value,
}

pub fn run(global: &GlobalArgs, args: &RunArgs) -> Result<i32> {
    let (plan_path, plan) = args.plan.required()?;
    let only: BTreeSet<Step> = args
        .only
        .iter()
        .map(|s| Step::parse(s))
        .collect::<cairn::Result<_>>()?;
    let state_file = state_path(&plan, &plan_path)?;
    let _lock = if args.dry_run {
        None
    } else {
        Some(lock::RunLock::acquire(&state_file)?)
    };
    let mut state = State::load(&state_file)?;
    state.repository = plan.repository.location.clone();
    // Steps print their usual output; with --json only the run's report goes to stdout.
    let mut step_global = global_for(global, &plan);
    if global.json {
        step_global.json = false;
        step_global.quiet = true;
    }
    let runner = Runner {
        global,
        step_global,
        plan: &plan,
        plan_path: &plan_path,
        state_file: &state_file,
        run_id: hex::encode(cairn::crypto::random_array::<8>()?),
    };
    let started = Utc::now();
    let clock = Instant::now();
    let todo = schedule(&plan, &state, &only, args.force, Utc::now());
    if let Some(missing) = only.iter().find(|s| !todo.iter().any(|t| t.step == **s)) {
        return Err(cairn::Error::invalid_input(format!(
            "--only {}: the plan {} has no such step (add its section to the plan)",
            missing.name(),
            plan_path.display()
        ))
        .into());
    }
    if args.dry_run {
        return runner.print_dry_run(&todo);
    }
    let before = runner.hooks("before", &plan.hooks.before, "started", 0, None);
    let mut ran = Vec::new();
    let mut failed: Vec<(String, i32)> = Vec::new();
    let mut snapshot_id = None;
    let skipped = match before {
        HookVerdict::Skip => true,
        HookVerdict::Fail => {
            failed.push(("before hook".into(), exit::ERROR));
            false
        }
        HookVerdict::Go => {
            for ScheduledStep { key, step, due } in &todo {
                if !due.due {
                    runner.say(&format!("{key}: not due ({})", due.reason));
                    continue;
                }
                runner.say(&format!("== {key} ({})", due.reason));
                let attempt = runner.run_step(*step, key);
                if attempt.outcome == Outcome::Failed {
                    failed.push((key.clone(), attempt.exit_code));
                }
                if *step == Step::Backup {
                    snapshot_id = attempt
                        .details
                        .get("snapshot_id")
                        .and_then(|v| v.as_str())
                        .map(String::from);
                }
                ran.push(key.clone());
                // Saved after every step: a crash later keeps what already happened.
                state.note(key, attempt);
                state.save(&state_file)?;
            }
            false
        }
    };
    let code = failed.first().map(|(_, c)| *c).unwrap_or(exit::OK);
    let status = match (skipped, failed.is_empty()) {
        (true, _) => "skipped",
        (false, true) => "ok",
        (false, false) => "failed",
    };
    if !failed.is_empty() {
        runner.hooks(
            "on_failure",
            &plan.hooks.on_failure,
            status,
            code,
            snapshot_id.as_deref(),
        );
    }
    runner.hooks(
        "finally",
        &plan.hooks.finally,
        status,
        code,
        snapshot_id.as_deref(),
    );
    let record = RunRecord {
        run_id: runner.run_id.clone(),
        attempt: Attempt {
            started,
            duration_secs: clock.elapsed().as_secs_f64(),
            outcome: if failed.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            exit_code: code,
            message: (!failed.is_empty()).then(|| {
                let names: Vec<&str> = failed.iter().map(|(k, _)| k.as_str()).collect();
                format!("failed: {}", names.join(", "))
            }),
            details: serde_json::json!({ "status": status }),
        },
        ran: ran.clone(),
        failed: failed.iter().map(|(k, _)| k.clone()).collect(),
    };
    state.last_run = Some(record.clone());
    state.save(&state_file)?;
    if let Some(prom) = &plan.monitor.prometheus_file {
        let text = cairn::monitor::render::prometheus(&state, None);
        cairn::plan::state::write_atomically(prom, text.as_bytes())
            .with_context(|| format!("cannot write the Prometheus file {}", prom.display()))?;
    }
    if global.json {
        output::print_json(&serde_json::json!({
            "run_id": record.run_id,
            "status": status,
            "exit_code": code,
            "ran": ran,
            "failed": record.failed,
            "state_file": state_file,
            "steps": ran.iter().map(|k| (k.clone(), state.record(k))).collect::<std::collections::BTreeMap<_, _>>(),
        }))?;
    } else if !global.quiet {
        outln!("run {}: {status}", record.run_id);
    }
    Ok(code)
}

struct Runner<'a> {
    global: &'a GlobalArgs,
    step_global: GlobalArgs,
    plan: &'a Plan,
    plan_path: &'a Path,
    state_file: &'a PathBuf,
    run_id: String,
}

impl Runner<'_> {
    fn say(&self, text: &str) {
        if !self.global.quiet && !self.global.json {
            errln!("{text}");
        }
    }

    fn print_dry_run(&self, todo: &[ScheduledStep]) -> Result<i32> {
        if self.global.json {
            let steps: Vec<_> = todo
                .iter()
                .map(|t| serde_json::json!({"step": t.key, "due": t.due.due, "reason": t.due.reason}))
                .collect();
            output::print_json(&serde_json::json!({ "dry_run": true, "steps": steps }))?;
        } else {
            for ScheduledStep { key, due, .. } in todo {
                let verb = if due.due { "would run" } else { "not due" };
                outln!("{key}: {verb} ({})", due.reason);
            }
            outln!("state file: {}", self.state_file.display());
        }
        Ok(exit::OK)
    }

    fn run_step(&self, step: Step, key: &str) -> Attempt {
        let started = Utc::now();
        let clock = Instant::now();
        let result = match step {
            Step::Backup => backup_step::run(&self.step_global, self.plan),
            Step::Retention => self.retention(),
            Step::Check => self.check(),
            Step::Offsite => self.offsite(key.trim_start_matches("offsite.")),
            Step::Drill => self.drill(),
        };
        let (outcome, r) = match result {
            Ok(r) if r.code == exit::OK => (Outcome::Ok, r),
            Ok(r) if r.code == exit::PARTIAL && step == Step::Backup => (Outcome::Partial, r),
            Ok(r) => (Outcome::Failed, r),
            Err(e) => {
                errln!("error: {key}: {e:#}");
                (
                    Outcome::Failed,
                    StepResult {
                        code: exit_code_for(&e),
                        message: Some(format!("{e:#}")),
                        details: serde_json::Value::Null,
                    },
                )
            }
        };
        let message = r.message.or_else(|| {
            (outcome == Outcome::Failed).then(|| format!("{key} ended with exit code {}", r.code))
        });
        Attempt {
            started,
            duration_secs: clock.elapsed().as_secs_f64(),
            outcome,
            exit_code: r.code,
            message,
            details: r.details,
        }
    }

    /// The plan's `[retention]`: the same forget (and prune) as the command, with the rules the
    /// plan gives, as one typed request.
    fn retention(&self) -> Result<StepResult> {
        let r = self
            .plan
            .retention
            .as_ref()
            .context("no [retention] in the plan")?;
        let tuning = super::prune::PruneTuning::default();
        let request = super::forget::ForgetRequest {
            policy: r.policy().map_err(cairn::Error::invalid_input)?,
            group_by: r.group_by()?,
            filter: cairn::SnapshotFilter::default(),
            dry_run: false,
            allow_remove_all: false,
            prune: r.prune.then_some(&tuning),
        };
        Ok(StepResult {
            code: super::forget::forget(&self.step_global, &request)?,
            message: None,
            details: serde_json::json!({ "prune": r.prune }),
        })
    }

    fn check(&self) -> Result<StepResult> {
        let c = self.plan.check.as_ref().context("no [check] in the plan")?;
        let args = super::check::CheckArgs {
            read_data: c.read_data.as_deref() == Some("all"),
            read_data_subset: c.read_data.clone().filter(|s| s != "all"),
        };
        Ok(StepResult {
            code: super::check::run(&self.step_global, &args)?,
            message: None,
            details: serde_json::json!({ "read_data": c.read_data }),
        })
    }

    fn offsite(&self, name: &str) -> Result<StepResult> {
        let o = self
            .plan
            .offsite
            .iter()
            .find(|o| o.name == name)
            .context("no such [[offsite]] in the plan")?;
        let args = super::sync::SyncArgs {
            to: Some(PathBuf::from(&o.location)),
            from: None,
            delete: o.delete,
            verify: false,
            dry_run: false,
            connections: super::sync::DEFAULT_CONNECTIONS,
            peer_options: o.options.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        };
        Ok(StepResult {
            code: super::sync::run(&self.step_global, &args)?,
            message: None,
            details: serde_json::json!({ "to": o.location, "delete": o.delete }),
        })
    }

    fn drill(&self) -> Result<StepResult> {
        let a = drill::drill_attempt(
            &self.step_global,
            &drill::DrillArgs::default(),
            Some(self.plan),
        );
        Ok(StepResult {
            code: a.exit_code,
            message: a.message,
            details: a.details,
        })
    }

    /// Runs the hooks of `event`, saying each failure; `before` decides whether the run goes on.
    fn hooks(
        &self,
        event: &str,
        list: &[Vec<String>],
        status: &str,
        code: i32,
        snapshot: Option<&str>,
    ) -> HookVerdict {
        let timeout = span_of(&self.plan.hooks.timeout).unwrap_or(hooks::DEFAULT_TIMEOUT);
        let plan_path = self.plan_path.display().to_string();
        let ev = HookEvent {
            event,
            status,
            exit_code: code,
            snapshot_id: snapshot,
            run_id: &self.run_id,
            plan_path: &plan_path,
            repository: &self.plan.repository.location,
        };
        let verdict = run_hooks(list, &ev, timeout, |argv, what, run| {
            errln!("error: {event} hook {argv:?}: {what}");
            for line in run.map(|r| r.last_lines(10)).unwrap_or_default() {
                errln!("    | {line}");
            }
        });
        if verdict == HookVerdict::Skip {
            self.say(&format!(
                "before hook exited {}: run skipped",
                hooks::SKIP_CODE
            ));
        }
        verdict
    }
}
