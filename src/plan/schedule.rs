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

/// One step of a run: its key in the state file (`offsite.<name>` for each offsite target), what
/// it is, and whether it is due.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledStep {
    pub key: String,
    pub step: super::Step,
    pub due: Due,
}

/// Every step the plan configures, in run order (offsite once per target), with whether it is
/// due at `now`; only the steps in `only` when it is not empty, and every one of them due when
/// `force`. A drill without `every` is listed only when `only` names it.
pub fn schedule(
    plan: &super::Plan,
    state: &super::State,
    only: &std::collections::BTreeSet<super::Step>,
    force: bool,
    now: DateTime<Utc>,
) -> Vec<ScheduledStep> {
    use super::Step;
    let mut out = Vec::new();
    let mut add = |key: String, step: Step, every: &Option<String>| {
        if !only.is_empty() && !only.contains(&step) {
            return;
        }
        let mut due = is_due(super::span_of(every), state.last_success(&key), now);
        if force && !due.due {
            due.due = true;
            due.reason = format!("forced; {}", due.reason);
        }
        out.push(ScheduledStep { key, step, due });
    };
    if plan.backup.is_some() || !plan.dumps.is_empty() {
        add("backup".into(), Step::Backup, &None);
    }
    if let Some(p) = &plan.postgres {
        add("postgres".into(), Step::Postgres, &p.every);
    }
    if let Some(r) = &plan.retention {
        add("retention".into(), Step::Retention, &r.every);
    }
    if let Some(c) = &plan.check {
        add("check".into(), Step::Check, &c.every);
    }
    for o in &plan.offsite {
        add(format!("offsite.{}", o.name), Step::Offsite, &o.every);
    }
    if let Some(d) = &plan.drill {
        // Without `every`, drills run only when asked for (`--only drill` or `cairn drill`).
        if d.every.is_some() || only.contains(&Step::Drill) {
            add("drill".into(), Step::Drill, &d.every);
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
}
