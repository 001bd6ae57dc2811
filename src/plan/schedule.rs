//! When a step is due: its `every` span has passed since its last success.
//!
//! A nightly timer fires at about the same time each day, and a run takes a varying time, so
//! "every 1d" must not skip a night because yesterday's success ended a minute later than today's
//! run starts. A step is therefore due once `every` minus a slack has passed, the slack being a
//! twentieth of `every`, at most one hour.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::state::Attempt;
use crate::units::describe_span;

/// Largest slack subtracted from a step's interval.
const MAX_SLACK: Duration = Duration::from_secs(3600);

/// Whether a step runs now, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Due {
    /// It runs.
    pub due: bool,
    /// Why, for the run's output and `--dry-run`.
    pub reason: String,
}

/// Whether a step with interval `every` (`None`: every run) and last success `last` is due at `now`.
pub fn is_due(every: Option<Duration>, last: Option<&Attempt>, now: DateTime<Utc>) -> Due {
    let Some(every) = every else {
        return Due {
            due: true,
            reason: "runs every time".into(),
        };
    };
    let Some(last) = last else {
        return Due {
            due: true,
            reason: "never succeeded before".into(),
        };
    };
    let since = (now - last.started).to_std().unwrap_or(Duration::ZERO);
    let slack = (every / 20).min(MAX_SLACK);
    let due = since + slack >= every;
    Due {
        due,
        reason: format!(
            "last success {} ago, every {}",
            describe_span(since),
            describe_span(every)
        ),
    }
}

/// One step of a run: its key in the state file (`offsite.<name>` for each offsite target,
/// `job.<name>.<step>` for a job's steps), what it is, the job it belongs to, and whether it is due.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledStep {
    pub key: String,
    pub step: super::Step,
    /// The `[[job]]` whose step it is; `None` for the plan's own steps and its unnamed job.
    pub job: Option<String>,
    pub due: Due,
}

/// What a run is asked to do: which kinds of steps (`--only`), which jobs (`--job`), and whether
/// they run even when not due (`--force`).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only these steps (empty: every step).
    pub only: std::collections::BTreeSet<super::Step>,
    /// Only these jobs' steps (empty: every job); the plan's own steps still run when due.
    pub jobs: std::collections::BTreeSet<String>,
    /// Every selected step is due; with `jobs`, only those jobs' steps are forced (the plan's
    /// own steps still run only when due).
    pub force: bool,
}

impl Selection {
    fn wants(&self, step: super::Step) -> bool {
        use super::Step;
        // Prune belongs to retention: `--only retention` prunes what it forgot.
        let kind = if step == Step::Prune {
            Step::Retention
        } else {
            step
        };
        self.only.is_empty() || self.only.contains(&kind)
    }

    /// Whether a step of `job` (`None`: the plan's own) runs even when not due.
    fn forces(&self, job: Option<&str>) -> bool {
        self.force && (self.jobs.is_empty() || job.is_some())
    }

    fn wants_job(&self, job: Option<&str>) -> bool {
        match job {
            Some(name) => self.jobs.is_empty() || self.jobs.contains(name),
            None => true,
        }
    }
}

/// Every step the plan configures, in run order, with whether it is due at `now`:
/// each job's backup, the PostgreSQL base backup, each job's retention then the plan's, one
/// prune after them (plans with jobs), check, each offsite target, the plan's drill and each
/// job's drill. A drill without `every` is listed only when `--only drill` asks for it; a job's
/// retention is due when its backup is (and its `every` has passed).
pub fn schedule(
    plan: &super::Plan,
    state: &super::State,
    selection: &Selection,
    now: DateTime<Utc>,
) -> Vec<ScheduledStep> {
    use super::Step;
    let mut out: Vec<ScheduledStep> = Vec::new();
    let mut add = |key: String, step: Step, job: Option<&str>, mut due: Due| {
        if !selection.wants(step) || !selection.wants_job(job) {
            return;
        }
        if selection.forces(job) && !due.due {
            due.due = true;
            due.reason = format!("forced; {}", due.reason);
        }
        out.push(ScheduledStep {
            key,
            step,
            job: job.map(String::from),
            due,
        });
    };
    let last = |key: &str| state.last_success(key);
    let jobs = plan.jobs();
    let mut backup_due = Vec::new();
    for job in &jobs {
        let key = job.key("backup");
        let due = job.schedule().due(last(&key), now);
        backup_due.push((selection.forces(job.name) || due.due) && selection.wants_job(job.name));
        add(key, Step::Backup, job.name, due);
    }
    if let Some(p) = &plan.postgres {
        add(
            "postgres".into(),
            Step::Postgres,
            None,
            is_due(super::span_of(&p.every), last("postgres"), now),
        );
    }
    let mut pruning = Vec::new();
    for (job, &backup_due) in jobs.iter().zip(&backup_due) {
        let (Some(name), Some(r)) = (job.name, job.retention) else {
            continue;
        };
        let key = job.key("retention");
        let mut due = is_due(super::span_of(&r.every), last(&key), now);
        if !backup_due {
            due = Due {
                due: false,
                reason: "its backup is not due".into(),
            };
        }
        let runs = (due.due || selection.forces(Some(name))) && selection.wants_job(Some(name));
        if runs && r.prune && selection.wants(Step::Retention) {
            pruning.push(name.to_string());
        }
        add(key, Step::Retention, Some(name), due);
    }
    if let Some(r) = &plan.retention {
        let due = is_due(super::span_of(&r.every), last("retention"), now);
        if !plan.jobs.is_empty() && (due.due || selection.forces(None)) && r.prune {
            pruning.push("snapshots of no job".into());
        }
        add("retention".into(), Step::Retention, None, due);
    }
    let retention_anywhere =
        plan.retention.is_some() || plan.jobs.iter().any(|j| j.retention.is_some());
    if !plan.jobs.is_empty() && retention_anywhere {
        let due = Due {
            due: !pruning.is_empty(),
            reason: if pruning.is_empty() {
                "no retention runs".into()
            } else {
                format!("after the retention of {}", pruning.join(", "))
            },
        };
        // Forced only when the plan's own steps are, and then every retention runs anyway.
        add("prune".into(), Step::Prune, None, due);
    }
    // A step of the plan (or of `job`) due by its `every` span.
    let mut add_every = |key: String, step: Step, job: Option<&str>, every: &Option<String>| {
        let due = is_due(super::span_of(every), last(&key), now);
        add(key, step, job, due);
    };
    if let Some(c) = &plan.check {
        add_every("check".into(), Step::Check, None, &c.every);
    }
    for o in &plan.offsite {
        add_every(format!("offsite.{}", o.name), Step::Offsite, None, &o.every);
    }
    let asked = selection.only.contains(&Step::Drill);
    if let Some(d) = &plan.drill {
        // Without `every`, drills run only when asked for (`--only drill` or `cairn drill`).
        if d.every.is_some() || asked {
            add_every("drill".into(), Step::Drill, None, &d.every);
        }
    }
    for job in &jobs {
        if let (Some(name), Some(d)) = (job.name, job.drill) {
            if d.every.is_some() || asked {
                add_every(job.key("drill"), Step::Drill, Some(name), &d.every);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::state::Outcome;

    fn at(hours_ago: f64, now: DateTime<Utc>) -> Attempt {
        Attempt {
            started: now - chrono::Duration::seconds((hours_ago * 3600.0) as i64),
            duration_secs: 60.0,
            outcome: Outcome::Ok,
            exit_code: 0,
            message: None,
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_daily_step_runs_each_night_even_a_little_early() {
        let now = Utc::now();
        let day = Some(Duration::from_secs(86_400));
        assert!(is_due(day, Some(&at(23.5, now)), now).due);
        assert!(is_due(day, Some(&at(24.0, now)), now).due);
        assert!(!is_due(day, Some(&at(12.0, now)), now).due);
        assert!(is_due(day, None, now).due);
        assert!(is_due(None, Some(&at(0.1, now)), now).due);
    }

    #[test]
    fn a_weekly_step_waits_most_of_a_week() {
        let now = Utc::now();
        let week = Some(Duration::from_secs(7 * 86_400));
        assert!(!is_due(week, Some(&at(6.0 * 24.0, now)), now).due);
        assert!(is_due(week, Some(&at(7.0 * 24.0 - 0.5, now)), now).due);
        let d = is_due(week, Some(&at(48.0, now)), now);
        assert!(d.reason.contains("2d 0h ago"), "{}", d.reason);
    }

    /// With jobs, every forget is followed by one prune: after a job's retention, and after the
    /// top-level retention of snapshots of no job alone; `--job` leaves other jobs out.
    #[test]
    fn a_plan_of_jobs_prunes_once_after_whichever_retention_ran() {
        let plan = crate::plan::Plan::parse(
            r#"
[repository]
location = "/srv/backup"

[[job]]
name = "db"
every = "6h"
[[job.dump]]
path = "db.sql"
command = ["pg_dump", "app"]

[[job]]
name = "files"
every = "1d"
[job.backup]
paths = ["/srv"]
[job.retention]
keep_daily = 7

[retention]
every = "1d"
keep_daily = 30
"#,
        )
        .unwrap();
        let now = Utc::now();
        let keys = |selection: &Selection, state: &crate::plan::State| -> Vec<String> {
            schedule(&plan, state, selection, now)
                .into_iter()
                .filter(|s| s.due.due)
                .map(|s| s.key)
                .collect()
        };
        let all = Selection::default();
        let mut state = crate::plan::State::default();
        assert_eq!(
            keys(&all, &state),
            [
                "job.db.backup",
                "job.files.backup",
                "job.files.retention",
                "retention",
                "prune"
            ]
        );
        // Files backed up an hour ago, the top-level retention too: db alone, nothing to prune.
        state.note("job.files.backup", at(1.0, now));
        state.note("job.files.retention", at(1.0, now));
        let only_db = Selection {
            jobs: ["db".to_string()].into(),
            ..Default::default()
        };
        assert_eq!(
            keys(&only_db, &state),
            ["job.db.backup", "retention", "prune"]
        );
        state.note("retention", at(1.0, now));
        assert_eq!(keys(&all, &state), ["job.db.backup"]);
        // `--job files --force`: its backup, retention and the prune after it, nothing of db's
        // and no plan-wide step that is not due.
        state.note("job.db.backup", at(0.5, now));
        let force_files = Selection {
            jobs: ["files".to_string()].into(),
            force: true,
            ..Default::default()
        };
        assert_eq!(
            keys(&force_files, &state),
            ["job.files.backup", "job.files.retention", "prune"]
        );
    }
}
