//! One run of the plan (`cairn run`): take the plan's run lock, decide which steps are due, run
//! the `before` hooks, each due step in order (recording every attempt in the state file as it
//! ends, so a crash keeps what already happened), then `on_failure` and `finally`, the run's
//! record and the Prometheus textfile. The steps themselves are the caller's ([`StepRunner`]).

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::hooks::{self, run_hooks, HookEvent, HookVerdict};
use super::lock::RunLock;
use super::state::{write_atomically, RunRecord};
use super::{schedule, span_of, Attempt, Outcome, Plan, ScheduledStep, Selection, State, Step};
use crate::error::{Error, Result};
use crate::process::run::CommandRun;

/// How one step ended, as its runner tells it; the run adds when it started and how long it took.
#[derive(Clone, Debug)]
pub struct StepEnd {
    pub outcome: Outcome,
    pub exit_code: i32,
    pub message: Option<String>,
    /// What the state file keeps of the step (for a backup: [`super::steps::backup_details`]).
    pub details: serde_json::Value,
}

/// Runs the steps of a plan and hears what a run has to say.
pub trait StepRunner {
    /// Runs the due step `step` (its key in the state file, its job) at the run's clock `now`.
    fn run_step(&mut self, step: &ScheduledStep, now: DateTime<Utc>) -> StepEnd;
    /// A line for people: a step starts, is not due, or the run is skipped.
    fn say(&mut self, _text: &str) {}
    /// A hook of `event` failed: its argv, how it ended, its run when it started.
    fn hook_failed(
        &mut self,
        _event: &str,
        _argv: &[String],
        _what: &str,
        _run: Option<&CommandRun>,
    ) {
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions<'a> {
    /// The plan file's path (given to hooks as `CAIRN_PLAN`, named in messages).
    pub plan_path: &'a Path,
    /// The plan's state file.
    pub state_file: &'a Path,
    /// Which steps and jobs, and whether they run when not due.
    pub selection: Selection,
    /// The run's clock starts here instead of now (`--now`): schedules, attempts and snapshot
    /// times follow it, so a week of a plan can be run in minutes.
    pub now: Option<DateTime<Utc>>,
}

/// A run's clock: the given start (or now), advancing with real time.
struct Clock {
    start: DateTime<Utc>,
    since: Instant,
}

impl Clock {
    fn new(start: Option<DateTime<Utc>>) -> Clock {
        Clock {
            start: start.unwrap_or_else(Utc::now),
            since: Instant::now(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.since.elapsed()).unwrap_or_default()
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The run's record, as saved in the state file.
    pub record: RunRecord,
    /// `ok`, `failed` or `skipped` (a `before` hook exited 75).
    pub status: &'static str,
    /// The exit code of the first step that failed, else 0.
    pub exit_code: i32,
    /// The state file's content after the run.
    pub state: State,
}

/// Every step the plan configures with whether it is due, after checking that each step of
/// `only` and each job of `jobs` is one the plan has.
///
/// # Errors
/// `InvalidInput` naming a step or a job the plan lacks.
pub fn scheduled(
    plan: &Plan,
    state: &State,
    options: &RunOptions<'_>,
) -> Result<Vec<ScheduledStep>> {
    scheduled_at(plan, state, options, options.now.unwrap_or_else(Utc::now))
}

fn scheduled_at(
    plan: &Plan,
    state: &State,
    options: &RunOptions<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<ScheduledStep>> {
    let selection = &options.selection;
    if let Some(missing) = selection.jobs.iter().find(|j| plan.job(j).is_none()) {
        let known: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
        return Err(Error::invalid_input(format!(
            "--job {missing}: the plan {} has no such job ({})",
            options.plan_path.display(),
            if known.is_empty() {
                "it has no [[job]] sections".to_string()
            } else {
                format!("its jobs: {}", known.join(", "))
            }
        )));
    }
    let todo = schedule(plan, state, selection, now);
    if let Some(missing) = selection
        .only
        .iter()
        .find(|s| !todo.iter().any(|t| t.step == **s))
    {
        return Err(Error::invalid_input(format!(
            "--only {}: the plan {} has no such step (add its section to the plan)",
            missing.name(),
            options.plan_path.display()
        )));
    }
    Ok(todo)
}

/// Runs the plan once.
///
/// # Errors
/// Another run of the plan holds its lock; the state file or the Prometheus file cannot be
/// read or written; `only` names a step the plan lacks. A step's failure is not an error: it is
/// recorded, and the report's exit code is the first failing step's.
pub fn run(plan: &Plan, options: &RunOptions<'_>, steps: &mut dyn StepRunner) -> Result<RunReport> {
    let _lock = RunLock::acquire(options.state_file)?;
    let mut state = State::load(options.state_file)?;
    state.repository = plan.repository.location.clone();
    let clock = Clock::new(options.now);
    let todo = scheduled_at(plan, &state, options, clock.now())?;
    let run_id = hex::encode(crate::crypto::random_array::<8>()?);
    let started = clock.now();
    let hooks = Hooks {
        plan,
        plan_path: options.plan_path.display().to_string(),
        run_id: &run_id,
    };
    let mut ran = Vec::new();
    let mut failed: Vec<(String, i32)> = Vec::new();
    let mut snapshot_id = None;
    let skipped = match hooks.run("before", &plan.hooks.before, "started", 0, None, steps) {
        HookVerdict::Skip => {
            steps.say(&format!(
                "a before hook exited {}: run skipped",
                hooks::SKIP_CODE
            ));
            true
        }
        HookVerdict::Fail => {
            failed.push(("before hook".into(), crate::exit::ERROR));
            false
        }
        HookVerdict::Go => {
            for scheduled in &todo {
                let ScheduledStep { key, step, due, .. } = scheduled;
                if !due.due {
                    steps.say(&format!("{key}: not due ({})", due.reason));
                    continue;
                }
                steps.say(&format!("== {key} ({})", due.reason));
                let step_started = clock.now();
                let step_clock = Instant::now();
                let end = steps.run_step(scheduled, step_started);
                let attempt = Attempt {
                    started: step_started,
                    duration_secs: step_clock.elapsed().as_secs_f64(),
                    outcome: end.outcome,
                    exit_code: end.exit_code,
                    message: end.message,
                    details: end.details,
                };
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
                state.save(options.state_file)?;
            }
            false
        }
    };
    let exit_code = failed.first().map_or(0, |(_, c)| *c);
    let status = match (skipped, failed.is_empty()) {
        (true, _) => "skipped",
        (false, true) => "ok",
        (false, false) => "failed",
    };
    let snapshot = snapshot_id.as_deref();
    if !failed.is_empty() {
        let list = &plan.hooks.on_failure;
        hooks.run("on_failure", list, status, exit_code, snapshot, steps);
    }
    let list = &plan.hooks.finally;
    hooks.run("finally", list, status, exit_code, snapshot, steps);
    let record = RunRecord {
        run_id: run_id.clone(),
        attempt: Attempt {
            started,
            duration_secs: clock.since.elapsed().as_secs_f64(),
            outcome: if failed.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            exit_code,
            message: (!failed.is_empty()).then(|| {
                let names: Vec<&str> = failed.iter().map(|(k, _)| k.as_str()).collect();
                format!("failed: {}", names.join(", "))
            }),
            details: serde_json::json!({ "status": status }),
        },
        ran,
        failed: failed.into_iter().map(|(k, _)| k).collect(),
    };
    state.last_run = Some(record.clone());
    state.save(options.state_file)?;
    if let Some(prom) = &plan.monitor.prometheus_file {
        let text = crate::monitor::render::prometheus(&state, None);
        write_atomically(prom, text.as_bytes()).map_err(|e| {
            e.context(format!(
                "cannot write the Prometheus file {}",
                prom.display()
            ))
        })?;
    }
    Ok(RunReport {
        record,
        status,
        exit_code,
        state,
    })
}

/// What every hook of one run is told.
struct Hooks<'a> {
    plan: &'a Plan,
    plan_path: String,
    run_id: &'a str,
}

impl Hooks<'_> {
    fn run(
        &self,
        event: &str,
        list: &[Vec<String>],
        status: &str,
        exit_code: i32,
        snapshot_id: Option<&str>,
        steps: &mut dyn StepRunner,
    ) -> HookVerdict {
        let timeout = span_of(&self.plan.hooks.timeout).unwrap_or(hooks::DEFAULT_TIMEOUT);
        let ev = HookEvent {
            event,
            status,
            exit_code,
            snapshot_id,
            run_id: self.run_id,
            plan_path: &self.plan_path,
            repository: &self.plan.repository.location,
        };
        run_hooks(list, &ev, timeout, |argv, what, run| {
            steps.hook_failed(event, argv, what, run);
        })
    }
}
