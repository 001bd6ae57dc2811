//! `cairn run`: the cron/systemd entry point. Runs the plan's steps in order (backup, retention,
//! check, offsite, drill), each only when due, between the plan's hooks; records every attempt in
//! the state file and writes the Prometheus textfile.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use cairn::plan::run::{RunOptions, StepEnd, StepRunner};
use cairn::plan::{self, Job, Outcome, Plan, ScheduledStep, Selection, State, Step};
use cairn::process::run::CommandRun;

use super::planned::{global_for, state_path, PlanFileArg};
use super::{drill, exit, exit_code_for, output, GlobalArgs};

mod backup_step;

pub const EXAMPLES: &str = "\
Examples:
  cairn run                                   # every step that is due, as the timer does
  cairn run --dry-run                         # what would run, and why
  cairn run --only backup,offsite --force     # these steps now, due or not
  cairn run --only postgres --force           # a PostgreSQL base backup now ([postgres])
  cairn run --job db --force                  # the [[job]] named db now, due or not
  cairn run --now '2026-12-08 03:00' --dry-run   # what a run at that time would do
  cairn run --plan /etc/cairn/db.toml --json
Exit code: 0 when every step that ran succeeded (or a before hook exited 75 to skip the run);
otherwise the exit code of the first step that failed (see `cairn --help`).";

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub plan: PlanFileArg,
    /// Run only these steps (comma-separated: backup,postgres,retention,prune,check,offsite,drill).
    #[arg(long, value_name = "STEPS", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Run only these jobs' steps (comma-separated `[[job]]` names); the plan's own steps
    /// (check, offsite...) still run when due.
    #[arg(long = "job", value_name = "NAMES", value_delimiter = ',')]
    pub jobs: Vec<String>,
    /// Run as if it were TIME: schedules, attempt times and snapshot times follow this clock
    /// (for trying a plan's schedules, and for tests); e.g. "2026-12-08 03:00" (local time).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Run the selected steps even when not due (with --job: only those jobs' steps).
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
    let now = args
        .now
        .as_deref()
        .map(cairn::repo::select::parse_point_in_time)
        .transpose()?;
    let options = RunOptions {
        plan_path: &plan_path,
        state_file: &state_file,
        selection: Selection {
            only,
            jobs: args.jobs.iter().map(|j| j.trim().to_string()).collect(),
            force: args.force,
        },
        now,
    };
    // Steps print their usual output; with --json only the run's report goes to stdout.
    let mut step_global = global_for(global, &plan);
    if global.json {
        step_global.json = false;
        step_global.quiet = true;
    }
    let mut runner = Runner {
        global,
        step_global,
        plan: &plan,
    };
    if args.dry_run {
        let todo = plan::run::scheduled(&plan, &State::load(&state_file)?, &options)?;
        return runner.print_dry_run(&todo, &state_file);
    }
    let report = plan::run::run(&plan, &options, &mut runner)?;
    let record = &report.record;
    if global.json {
        output::print_json(&serde_json::json!({
            "run_id": record.run_id,
            "status": report.status,
            "exit_code": report.exit_code,
            "ran": record.ran,
            "failed": record.failed,
            "state_file": state_file,
            "steps": record.ran.iter().map(|k| (k.clone(), report.state.record(k))).collect::<std::collections::BTreeMap<_, _>>(),
        }))?;
    } else if !global.quiet {
        outln!("run {}: {}", record.run_id, report.status);
    }
    Ok(report.exit_code)
}

/// The steps of `cairn run`, as the commands of the same names run them with the plan's options.
struct Runner<'a> {
    global: &'a GlobalArgs,
    step_global: GlobalArgs,
    plan: &'a Plan,
}

impl StepRunner for Runner<'_> {
    fn run_step(&mut self, scheduled: &ScheduledStep, now: DateTime<Utc>) -> StepEnd {
        let (step, key) = (scheduled.step, scheduled.key.as_str());
        let job = self.job(scheduled);
        let result = match step {
            Step::Backup => backup_step::run(&self.step_global, &job, now),
            Step::Postgres => backup_step::postgres(&self.step_global, self.plan),
            Step::Retention => self.retention(&job),
            Step::Prune => self.prune(),
            Step::Check => self.check(),
            Step::Offsite => self.offsite(key.trim_start_matches("offsite.")),
            Step::Drill => self.drill(&job, now),
        };
        let (outcome, r) = match result {
            Ok(r) if r.code == exit::OK => (Outcome::Ok, r),
            // A snapshot saved without some entries is a partial success, not a failure.
            Ok(r) if r.code == exit::PARTIAL && matches!(step, Step::Backup | Step::Postgres) => {
                (Outcome::Partial, r)
            }
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
        StepEnd {
            outcome,
            exit_code: r.code,
            message,
            details: r.details,
        }
    }

    fn say(&mut self, text: &str) {
        if !self.global.quiet && !self.global.json {
            errln!("{text}");
        }
    }

    fn hook_failed(&mut self, event: &str, argv: &[String], what: &str, run: Option<&CommandRun>) {
        errln!("error: {event} hook {argv:?}: {what}");
        for line in run.map(|r| r.last_lines(10)).unwrap_or_default() {
            errln!("    | {line}");
        }
    }
}

impl Runner<'_> {
    /// The job a step belongs to: its `[[job]]`, else the plan's unnamed job.
    fn job(&self, scheduled: &ScheduledStep) -> Job<'_> {
        scheduled
            .job
            .as_deref()
            .and_then(|name| self.plan.job(name))
            .unwrap_or_else(|| Job::unnamed_of(self.plan))
    }

    fn print_dry_run(&self, todo: &[ScheduledStep], state_file: &std::path::Path) -> Result<i32> {
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
            outln!("state file: {}", state_file.display());
        }
        Ok(exit::OK)
    }

    /// A job's `[job.retention]` (its snapshots only, no prune: the run's prune step follows),
    /// or the plan's `[retention]`: the same forget (and prune) as the command, with the rules
    /// the plan gives, as one typed request. With jobs, the plan's rules forget only snapshots
    /// of no job.
    fn retention(&self, job: &Job<'_>) -> Result<StepResult> {
        let (r, filter, prune) = match job.name {
            Some(name) => (
                job.retention.context("the job has no retention")?,
                cairn::repo::JobFilter::Named(name.to_string()),
                false,
            ),
            None => {
                let r = self
                    .plan
                    .retention
                    .as_ref()
                    .context("no [retention] in the plan")?;
                let filter = if self.plan.jobs.is_empty() {
                    cairn::repo::JobFilter::Any
                } else {
                    cairn::repo::JobFilter::NoJob
                };
                (r, filter, r.prune && self.plan.jobs.is_empty())
            }
        };
        let tuning = self.prune_tuning()?;
        let request = super::forget::ForgetRequest {
            policy: r.keep.clone(),
            group_by: r.group_by()?,
            filter: cairn::SnapshotFilter {
                job: filter,
                ..Default::default()
            },
            dry_run: false,
            allow_remove_all: false,
            prune: prune.then_some(&tuning),
        };
        Ok(StepResult {
            code: super::forget::forget(&self.step_global, &request)?,
            message: None,
            details: serde_json::json!({ "job": job.name, "prune": prune }),
        })
    }

    /// The prune options of the plan: WAL kept per `[postgres] keep_wal_within`.
    fn prune_tuning(&self) -> Result<super::prune::PruneTuning> {
        let mut tuning = super::prune::PruneTuning::default();
        if let Some(within) = self
            .plan
            .postgres
            .as_ref()
            .and_then(|p| p.keep_wal_within.as_deref())
        {
            tuning.keep_wal_within =
                Some(cairn::units::parse_time_span(within).map_err(cairn::Error::invalid_input)?);
        }
        Ok(tuning)
    }

    /// The prune after the jobs' retention.
    fn prune(&self) -> Result<StepResult> {
        let repo = super::context::open_repository(&self.step_global)?;
        Ok(StepResult {
            code: super::prune::prune_repository(
                &self.step_global,
                &self.prune_tuning()?,
                false,
                repo,
            )?,
            message: None,
            details: serde_json::Value::Null,
        })
    }

    fn check(&self) -> Result<StepResult> {
        let c = self.plan.check.as_ref().context("no [check] in the plan")?;
        Ok(StepResult {
            code: super::check::check_with(&self.step_global, c.selection()?)?,
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
            lock: super::retention::LockArgs {
                lock_mode: o.lock_mode.clone(),
                lock_period: o.lock_period.as_deref().map(parse_lock_span).transpose()?,
                lock_margin: o.lock_margin.as_deref().map(parse_lock_span).transpose()?,
            },
            keep: self
                .plan
                .retention
                .as_ref()
                .map(|r| r.keep.clone())
                .unwrap_or_default(),
        };
        let (code, locks) = super::sync::run_with_locks(&self.step_global, &args)?;
        Ok(StepResult {
            code,
            message: None,
            details: serde_json::json!({
                "to": o.location,
                "delete": o.delete,
                "locks": locks.as_ref().map(super::retention::report_json),
            }),
        })
    }

    fn drill(&self, job: &Job<'_>, now: DateTime<Utc>) -> Result<StepResult> {
        let mut args = drill::DrillArgs {
            now: Some(now),
            ..Default::default()
        };
        args.filter.job = job.name.map(String::from);
        let a = drill::drill_attempt(&self.step_global, &args, Some(self.plan));
        Ok(StepResult {
            code: a.exit_code,
            message: a.message,
            details: a.details,
        })
    }
}

/// A lock span of `[[offsite]]` (checked when the plan loaded).
fn parse_lock_span(text: &str) -> Result<chrono::Duration> {
    cairn::units::parse_time_span(text).map_err(|e| anyhow::anyhow!(e))
}
