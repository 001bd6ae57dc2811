//! Jobs: the plan's sources, each on its own rhythm. A `[[job]]` names its sources, its schedule
//! (a cron expression or an `every` span), its retention, its monitoring thresholds and its
//! drill; its snapshots carry its name, so its rules never touch another job's snapshots. A plan
//! with a top-level `[backup]` or `[[dump]]` instead is one job without a name, run every time, as
//! plans always were.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cron::Cron;
use super::file::{BackupSection, DrillSection, DumpSection, RetentionSection};
use super::schedule::{is_due, Due};
use super::state::Attempt;
use crate::units::describe_span;

/// `[[job]]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// The job's name: in its snapshots, state keys, `--job`, status and metrics.
    pub name: String,
    /// When it runs: a cron expression in local time (`0 */6 * * *`, `@daily`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Or how often: a span (`6h`). Neither: every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Its files and directories (`[job.backup]`, the keys of `[backup]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSection>,
    /// Its dump commands (`[[job.dump]]`, the keys of `[[dump]]`).
    #[serde(default, rename = "dump", skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<DumpSection>,
    /// Which of its snapshots to keep (`[job.retention]`), run after its backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSection>,
    /// Its recovery point objective and size checks (`[job.monitor]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<JobMonitorSection>,
    /// Its restore drill (`[job.drill]`, the keys of `[drill]` but `pitr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSection>,
}

/// `[job.monitor]`: what `status` holds the job's newest snapshot to; unset keys fall back to
/// `[monitor]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobMonitorSection {
    /// Newest snapshot older than this: WARNING (the recovery point objective).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_age: Option<String>,
    /// Newest snapshot older than this: CRITICAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit_age: Option<String>,
    /// Newest snapshot smaller than this: CRITICAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<String>,
    /// Newest snapshot smaller than the previous by more than this percentage: WARNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shrink: Option<f64>,
}

/// When a job runs.
#[derive(Clone, Debug, PartialEq)]
pub enum JobSchedule {
    /// Every run of the plan.
    EveryRun,
    /// Once this span has passed since its last success (with the slack of [`is_due`]).
    Every(Duration),
    /// At each slot of a cron expression.
    Cron(Cron),
}

impl JobSchedule {
    /// Whether the job runs at `now`, given its last successful backup.
    ///
    /// A cron job is due when a slot has come since its last success started: slots missed while
    /// the machine was off or while the job kept failing are caught up by one run, not one per
    /// slot, and a failed job is tried again at the next run of the plan.
    pub fn due(&self, last: Option<&Attempt>, now: DateTime<Utc>) -> Due {
        match self {
            JobSchedule::EveryRun => is_due(None, last, now),
            JobSchedule::Every(every) => is_due(Some(*every), last, now),
            JobSchedule::Cron(cron) => {
                let Some(slot) = cron.latest_at_or_before(now) else {
                    return Due {
                        due: false,
                        reason: format!("schedule {:?} has no slot yet", cron.text()),
                    };
                };
                let slot_text = slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                match last {
                    None => Due {
                        due: true,
                        reason: format!("never succeeded before; schedule {:?}", cron.text()),
                    },
                    Some(a) if a.started < slot => Due {
                        due: true,
                        reason: format!(
                            "slot {slot_text} of {:?} came after the last success {} ago",
                            cron.text(),
                            describe_span((now - a.started).to_std().unwrap_or_default())
                        ),
                    },
                    Some(a) => Due {
                        due: false,
                        reason: format!(
                            "last success {} ago ran for slot {slot_text} of {:?}",
                            describe_span((now - a.started).to_std().unwrap_or_default()),
                            cron.text()
                        ),
                    },
                }
            }
        }
    }
}

/// One job of a plan, as the runner, status and drill see it.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// `None` for the plan's top-level `[backup]` and `[[dump]]`.
    pub name: Option<&'a str>,
    /// Its files.
    pub backup: Option<&'a BackupSection>,
    /// Its dumps.
    pub dumps: &'a [DumpSection],
    /// Its retention (a named job's own; the top-level one belongs to the plan).
    pub retention: Option<&'a RetentionSection>,
    /// Its thresholds.
    pub monitor: Option<&'a JobMonitorSection>,
    /// Its drill (a named job's own; the top-level one belongs to the plan).
    pub drill: Option<&'a DrillSection>,
    section: Option<&'a JobSection>,
}

impl<'a> Job<'a> {
    /// The plan's unnamed job.
    pub(super) fn unnamed(backup: Option<&'a BackupSection>, dumps: &'a [DumpSection]) -> Self {
        Job {
            name: None,
            backup,
            dumps,
            retention: None,
            monitor: None,
            drill: None,
            section: None,
        }
    }

    /// The plan's unnamed job: its top-level `[backup]` and `[[dump]]` (possibly nothing).
    pub fn unnamed_of(plan: &'a super::Plan) -> Self {
        Job::unnamed(plan.backup.as_ref(), &plan.dumps)
    }

    /// A `[[job]]`.
    pub(super) fn named(section: &'a JobSection) -> Self {
        Job {
            name: Some(&section.name),
            backup: section.backup.as_ref(),
            dumps: &section.dumps,
            retention: section.retention.as_ref(),
            monitor: section.monitor.as_ref(),
            drill: section.drill.as_ref(),
            section: Some(section),
        }
    }

    /// The state-file key of one of its steps: `backup` for the unnamed job, `job.NAME.backup`.
    pub fn key(&self, step: &str) -> String {
        match self.name {
            Some(name) => format!("job.{name}.{step}"),
            None => step.to_string(),
        }
    }

    /// When it runs (validated when the plan loaded).
    pub fn schedule(&self) -> JobSchedule {
        let Some(section) = self.section else {
            return JobSchedule::EveryRun;
        };
        if let Some(cron) = section
            .schedule
            .as_deref()
            .and_then(|c| Cron::parse(c).ok())
        {
            return JobSchedule::Cron(cron);
        }
        match super::span_of(&section.every) {
            Some(every) => JobSchedule::Every(every),
            None => JobSchedule::EveryRun,
        }
    }
}

/// The parts of a state-file key of a job's step: `job.db.backup` is `("db", "backup")`.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix("job.")?.rsplit_once('.')
}

/// A job name fits state keys, metric labels, file names and `--job`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::state::Outcome;

    fn success(at: &str) -> Attempt {
        Attempt {
            started: DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
            duration_secs: 5.0,
            outcome: Outcome::Ok,
            exit_code: 0,
            message: None,
            details: serde_json::Value::Null,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Cron slots are local time; these tests run with the zone the process has, so they use
    /// hour steps that every whole-hour offset shares.
    #[test]
    fn a_cron_job_runs_once_per_slot_and_catches_up_once() {
        let s = JobSchedule::Cron(Cron::parse("* * * * *").unwrap());
        assert!(s.due(None, at("2026-12-07T10:00:30Z")).due);
        let last = success("2026-12-07T10:00:05Z");
        assert!(!s.due(Some(&last), at("2026-12-07T10:00:50Z")).due);
        let d = s.due(Some(&last), at("2026-12-07T10:01:00Z"));
        assert!(d.due, "{}", d.reason);
        // Three hours of missed slots: due once; after that run, not again until the next slot.
        assert!(s.due(Some(&last), at("2026-12-07T13:00:30Z")).due);
        let caught_up = success("2026-12-07T13:00:31Z");
        assert!(!s.due(Some(&caught_up), at("2026-12-07T13:00:59Z")).due);
    }

    #[test]
    fn keys_name_the_job_and_split_back() {
        let section = JobSection {
            name: "db".into(),
            ..Default::default()
        };
        let job = Job::named(&section);
        assert_eq!(job.key("backup"), "job.db.backup");
        assert_eq!(split_key("job.db.backup"), Some(("db", "backup")));
        assert_eq!(split_key("backup"), None);
        assert_eq!(Job::unnamed(None, &[]).key("backup"), "backup");
        assert!(valid_name("redis-cache_2"));
        assert!(!valid_name("a.b") && !valid_name("") && !valid_name("a b"));
    }
}
