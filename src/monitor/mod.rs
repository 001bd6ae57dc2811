//! `cairn status`: judging the newest snapshots and the plan's last steps against thresholds,
//! with the monitoring-plugin levels (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). The facts come
//! from the repository (snapshots) or, offline, from the plan's state file; rendering is in [`render`].

pub mod render;
pub mod wal;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::plan::state::{Attempt, Outcome, State};
use crate::units::{describe_size, describe_span};

/// A monitoring-plugin level; the order is severity, except that UNKNOWN ranks below CRITICAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// All good.
    Ok,
    /// Needs a look.
    Warning,
    /// Needs action now.
    Critical,
    /// Could not tell.
    Unknown,
}

impl Level {
    /// The plugin exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Level::Ok => 0,
            Level::Warning => 1,
            Level::Critical => 2,
            Level::Unknown => 3,
        }
    }

    fn rank(self) -> u8 {
        match self {
            Level::Ok => 0,
            Level::Warning => 1,
            Level::Unknown => 2,
            Level::Critical => 3,
        }
    }

    /// The worse of two levels.
    pub fn worst(self, other: Level) -> Level {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }
}

/// The default of [`Thresholds::min_size`]: an empty newest snapshot is CRITICAL, as an empty
/// dump is the classic silent failure of `pg_dump | ...` scripts.
pub const DEFAULT_MIN_SIZE: u64 = 1;

/// What `status` compares against.
#[derive(Clone, Debug)]
pub struct Thresholds {
    /// Newest snapshot older: WARNING.
    pub warn_age: Duration,
    /// Newest snapshot older: CRITICAL.
    pub crit_age: Duration,
    /// Newest snapshot smaller: CRITICAL ([`DEFAULT_MIN_SIZE`], 1, flags an empty snapshot; 0 accepts it).
    pub min_size: u64,
    /// Newest snapshot smaller than the previous by more than this percentage: WARNING.
    pub max_shrink: Option<f64>,
    /// Last successful check older: WARNING.
    pub check_max_age: Option<Duration>,
    /// Last successful offsite copy older: WARNING.
    pub offsite_max_age: Option<Duration>,
    /// Last passing drill older: WARNING.
    pub drill_max_age: Option<Duration>,
    /// Lock coverage of a locked offsite copy left below these: WARNING, CRITICAL
    /// ([`LOCK_WARN_LEFT`], [`LOCK_CRIT_LEFT`] by default).
    pub lock_left: (Duration, Duration),
    /// The WARNING and CRITICAL ages of a group of PostgreSQL base backups, when they differ
    /// from `warn_age` and `crit_age` (`[postgres] warn_age`, `crit_age`).
    pub base_backup_ages: Option<(Duration, Duration)>,
    /// The plan's jobs, each with its own objectives (`[job.monitor]`, else the values above).
    pub jobs: BTreeMap<String, JobThresholds>,
}

/// What one job's newest snapshot is held to.
#[derive(Clone, Debug, PartialEq)]
pub struct JobThresholds {
    /// Older: WARNING (the recovery point objective).
    pub warn_age: Duration,
    /// Older: CRITICAL.
    pub crit_age: Duration,
    /// Smaller: CRITICAL.
    pub min_size: u64,
    /// Smaller than the previous by more than this percentage: WARNING.
    pub max_shrink: Option<f64>,
}

/// The newest snapshots of one group (same host and paths).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupFacts {
    /// `host:/path1,/path2`.
    pub label: String,
    /// Snapshots in the group.
    pub snapshots: usize,
    /// The newest snapshot's id, when known.
    pub newest_id: Option<String>,
    /// Its time.
    #[serde(serialize_with = "crate::format::rfc3339::serialize")]
    pub newest_time: DateTime<Utc>,
    /// Its logical size, when recorded.
    pub newest_bytes: Option<u64>,
    /// Bytes it added to the repository.
    pub newest_added: Option<u64>,
    /// The previous snapshot's logical size, when there is one that recorded it.
    pub previous_bytes: Option<u64>,
    /// Its newest snapshot is a PostgreSQL base backup.
    pub base_backup: bool,
    /// The plan job whose snapshots these are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// One judged fact.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Finding {
    /// What was judged (`backup db1:/srv`, `check`, `offsite s3`, `drill`).
    pub subject: String,
    /// The verdict.
    pub level: Level,
    /// Why, in a sentence.
    pub message: String,
    /// The plan job it is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// A number for graphs (nagios perfdata, JSON).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Metric {
    /// Label, e.g. `age_db1`.
    pub label: String,
    /// Value in base units.
    pub value: f64,
    /// `s`, `B` or empty.
    pub unit: &'static str,
    /// Warning threshold.
    pub warn: Option<f64>,
    /// Critical threshold.
    pub crit: Option<f64>,
}

/// Everything `status` found.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StatusReport {
    /// The worst level of all findings.
    pub level: Level,
    /// Where the facts came from: `repository` or `state file`.
    pub source: String,
    /// One per group and per plan step judged.
    pub findings: Vec<Finding>,
    /// Numbers for graphs.
    pub metrics: Vec<Metric>,
}

impl StatusReport {
    /// A report of one UNKNOWN finding (the facts could not be read).
    pub fn unknown(source: &str, message: String) -> Self {
        StatusReport {
            level: Level::Unknown,
            source: source.into(),
            findings: vec![Finding {
                subject: "status".into(),
                level: Level::Unknown,
                message,
                job: None,
            }],
            metrics: Vec::new(),
        }
    }
}

/// Groups snapshots by host and paths and takes the newest two of each.
pub fn groups_from_snapshots(snapshots: &[(SnapshotId, Snapshot)]) -> Vec<GroupFacts> {
    type Dated<'a> = (DateTime<Utc>, &'a SnapshotId, &'a Snapshot);
    // A job's snapshots are one group per host whatever their paths: the job is the unit its
    // objectives speak of. Other snapshots group by host and paths.
    let mut groups: BTreeMap<(Option<String>, String, Vec<String>), Vec<Dated<'_>>> =
        BTreeMap::new();
    for (id, s) in snapshots {
        let Ok(time) = DateTime::parse_from_rfc3339(&s.time) else {
            continue;
        };
        let paths = if s.job.is_some() {
            Vec::new()
        } else {
            s.paths.clone()
        };
        groups
            .entry((s.job.clone(), s.host.clone(), paths))
            .or_default()
            .push((time.with_timezone(&Utc), id, s));
    }
    let hosts_of = |job: &str| {
        groups
            .keys()
            .filter(|(j, _, _)| j.as_deref() == Some(job))
            .count()
    };
    let labels: Vec<String> = groups
        .keys()
        .map(|(job, host, paths)| match job {
            Some(j) if hosts_of(j) > 1 => format!("{j}@{host}"),
            Some(j) => j.clone(),
            None => format!("{host}:{}", paths.join(",")),
        })
        .collect();
    groups
        .into_iter()
        .zip(labels)
        .map(|(((job, _, _), mut list), label)| {
            list.sort_by_key(|(t, _, _)| std::cmp::Reverse(*t));
            let (time, id, newest) = list[0];
            GroupFacts {
                job,
                label,
                snapshots: list.len(),
                newest_id: Some(id.to_hex()),
                newest_time: time,
                newest_bytes: newest.summary.total_bytes,
                newest_added: Some(newest.summary.bytes_added),
                previous_bytes: list.get(1).and_then(|(_, _, s)| s.summary.total_bytes),
                base_backup: newest.postgres.is_some(),
            }
        })
        .collect()
}

/// The groups of the backup steps (the unnamed job's, each job's) and of the base-backup step
/// as the state file remembers them (for `--offline`).
pub fn groups_from_state(state: &State) -> Vec<GroupFacts> {
    let jobs = state
        .steps
        .keys()
        .filter(|k| crate::plan::job::split_key(k).is_some_and(|(_, step)| step == "backup"));
    ["backup", "postgres"]
        .into_iter()
        .chain(jobs.map(String::as_str))
        .filter_map(|step| group_from_step(state, step))
        .collect()
}

fn group_from_step(state: &State, step: &str) -> Option<GroupFacts> {
    let last = state.last_success(step)?;
    let d = &last.details;
    let job = crate::plan::job::split_key(step).map(|(name, _)| name.to_string());
    let time = d
        .get("snapshot_time")
        .and_then(|t| t.as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(last.started);
    Some(GroupFacts {
        label: match &job {
            Some(name) => name.clone(),
            None => d
                .get("group")
                .and_then(|g| g.as_str())
                .unwrap_or(step)
                .to_string(),
        },
        job,
        snapshots: 1,
        newest_id: d
            .get("snapshot_id")
            .and_then(|v| v.as_str())
            .map(String::from),
        newest_time: time,
        newest_bytes: d.get("total_bytes").and_then(|v| v.as_u64()),
        newest_added: d.get("bytes_added").and_then(|v| v.as_u64()),
        previous_bytes: d.get("previous_total_bytes").and_then(|v| v.as_u64()),
        base_backup: step == "postgres",
    })
}

/// Judges the groups, and the plan steps recorded in `state`, at `now`.
/// `offsite_names` are the plan's offsite targets (each judged on its own).
pub fn evaluate(
    source: &str,
    groups: &[GroupFacts],
    state: Option<&State>,
    offsite_names: &[String],
    th: &Thresholds,
    now: DateTime<Utc>,
) -> StatusReport {
    let mut findings = Vec::new();
    let mut metrics = Vec::new();
    if groups.is_empty() {
        findings.push(Finding {
            subject: "backup".into(),
            level: Level::Critical,
            message: "no snapshot at all".into(),
            job: None,
        });
    }
    for g in groups {
        judge_group(g, th, now, &mut findings, &mut metrics);
    }
    // A job of the plan with no snapshot at all has nothing to restore, whatever its steps say.
    for job in th.jobs.keys() {
        if !groups.iter().any(|g| g.job.as_ref() == Some(job)) {
            findings.push(Finding {
                subject: format!("job {job}"),
                level: Level::Critical,
                message: "no snapshot of this job".into(),
                job: Some(job.clone()),
            });
        }
    }
    if let Some(state) = state {
        judge_steps(state, offsite_names, th, now, &mut findings, &mut metrics);
    }
    let level = findings.iter().fold(Level::Ok, |l, f| l.worst(f.level));
    StatusReport {
        level,
        source: source.into(),
        findings,
        metrics,
    }
}

fn age_of(t: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or(Duration::ZERO)
}

fn judge_group(
    g: &GroupFacts,
    th: &Thresholds,
    now: DateTime<Utc>,
    findings: &mut Vec<Finding>,
    metrics: &mut Vec<Metric>,
) {
    let age = age_of(g.newest_time, now);
    let own = g.job.as_ref().and_then(|j| th.jobs.get(j));
    let (min_size, max_shrink) = match own {
        Some(o) => (o.min_size, o.max_shrink),
        None => (th.min_size, th.max_shrink),
    };
    let (subject, (warn_age, crit_age)) = match (g.base_backup, th.base_backup_ages, own) {
        (_, _, Some(o)) => (format!("job {}", g.label), (o.warn_age, o.crit_age)),
        (true, ages, None) => (
            format!("base backup {}", g.label),
            ages.unwrap_or((th.warn_age, th.crit_age)),
        ),
        (false, _, None) => (format!("backup {}", g.label), (th.warn_age, th.crit_age)),
    };
    let mut level = Level::Ok;
    let mut why = vec![format!("newest snapshot {} ago", describe_span(age))];
    if age >= crit_age {
        level = Level::Critical;
        why.push(format!("older than {}", describe_span(crit_age)));
    } else if age >= warn_age {
        level = Level::Warning;
        why.push(format!("older than {}", describe_span(warn_age)));
    }
    if let Some(bytes) = g.newest_bytes {
        why.push(describe_size(bytes));
        if bytes < min_size {
            level = level.worst(Level::Critical);
            why.push(if bytes == 0 {
                "empty: its sources or dump gave nothing (--min-size 0 accepts empty snapshots)"
                    .to_string()
            } else {
                format!("smaller than the minimum {}", describe_size(min_size))
            });
        }
        if let (Some(max), Some(prev)) = (max_shrink, g.previous_bytes.filter(|&p| p > 0)) {
            let shrink = 100.0 * (prev as f64 - bytes as f64) / prev as f64;
            if shrink > max {
                level = level.worst(Level::Warning);
                why.push(format!(
                    "{shrink:.1}% smaller than the previous snapshot ({}; at most {max}% allowed)",
                    describe_size(prev)
                ));
            }
        }
    } else {
        why.push("size not recorded (snapshot written by an older cairn)".into());
    }
    findings.push(Finding {
        subject,
        level,
        message: why.join(", "),
        job: g.job.clone(),
    });
    let tag = match &g.job {
        Some(_) => metric_tag(&format!("job_{}", g.label)),
        None => metric_tag(&g.label),
    };
    metrics.push(Metric {
        label: format!("age_{tag}"),
        value: age.as_secs_f64().round(),
        unit: "s",
        warn: Some(warn_age.as_secs_f64()),
        crit: Some(crit_age.as_secs_f64()),
    });
    if let Some(bytes) = g.newest_bytes {
        metrics.push(Metric {
            label: format!("size_{tag}"),
            value: bytes as f64,
            unit: "B",
            warn: None,
            crit: Some(min_size as f64),
        });
    }
}

fn judge_steps(
    state: &State,
    offsite_names: &[String],
    th: &Thresholds,
    now: DateTime<Utc>,
    findings: &mut Vec<Finding>,
    metrics: &mut Vec<Metric>,
) {
    // In run order, the backup first. The groups judge the backup's success (age, size), so its
    // step is reported only when its last attempt failed.
    let mut keys: Vec<(String, String, Option<Duration>)> = vec![
        ("backup".into(), "backup".into(), None),
        ("postgres".into(), "base backup".into(), None),
    ];
    let job_step = |name: &str, step: &str, max_age| {
        (
            format!("job.{name}.{step}"),
            format!("job {name} {step}"),
            max_age,
        )
    };
    keys.extend(th.jobs.keys().map(|j| job_step(j, "backup", None)));
    keys.extend(th.jobs.keys().map(|j| job_step(j, "retention", None)));
    keys.push(("retention".into(), "retention".into(), None));
    keys.push(("prune".into(), "prune".into(), None));
    keys.push(("check".into(), "check".into(), th.check_max_age));
    for name in offsite_names {
        keys.push((
            format!("offsite.{name}"),
            format!("offsite {name}"),
            th.offsite_max_age,
        ));
    }
    keys.push(("drill".into(), "drill".into(), th.drill_max_age));
    // A job's drill is judged when it has drilled, or when drills are expected of every job.
    keys.extend(th.jobs.keys().map(|j| job_step(j, "drill", None)));
    for (key, subject, max_age) in keys {
        let job = crate::plan::job::split_key(&key).map(|(name, _)| name.to_string());
        let record = state.record(&key);
        let last_ok = record.and_then(|r| r.last_success.as_ref());
        let last = record.and_then(|r| r.last_attempt.as_ref());
        let failed = last.is_some_and(|a| a.outcome == Outcome::Failed);
        let partial = last.is_some_and(|a| a.outcome == Outcome::Partial);
        // The groups judge the backups' successes (age, size).
        let judged_by_group =
            key == "backup" || key == "postgres" || (job.is_some() && key.ends_with(".backup"));
        if (last.is_none() && max_age.is_none()) || (judged_by_group && !failed && !partial) {
            continue;
        }
        let mut level = Level::Ok;
        let mut why = Vec::new();
        match last_ok {
            Some(a) => {
                let age = age_of(a.ended(), now);
                why.push(format!("last success {} ago", describe_span(age)));
                metrics.push(Metric {
                    label: format!("{}_age", metric_tag(&key)),
                    value: age.as_secs_f64().round(),
                    unit: "s",
                    warn: max_age.map(|m| m.as_secs_f64()),
                    crit: None,
                });
                if let Some(max) = max_age.filter(|&m| age >= m) {
                    level = Level::Warning;
                    why.push(format!("older than {}", describe_span(max)));
                }
            }
            None => {
                level = Level::Warning;
                why.push("never succeeded".into());
            }
        }
        if let Some(a) = last_ok {
            judge_locks(&key, a, th.lock_left, now, &mut level, &mut why, metrics);
        }
        let is_drill = key == "drill" || (job.is_some() && key.ends_with(".drill"));
        if let Some(a) = last.filter(|_| is_drill) {
            judge_drill_targets(&key, a, &mut level, &mut why, metrics);
        }
        if let Some(a) = last.filter(|a| a.outcome == Outcome::Failed) {
            // Damage found (a drill's data or check failure, any step's exit 4: a check that
            // found problems, a sync whose source lost packs) is as bad as a missing backup; a
            // step that could not run is a warning.
            let damage = (is_drill && a.exit_code == crate::drill::Verdict::Failed.exit_code())
                || a.exit_code == crate::exit::DAMAGED;
            level = level.worst(if damage {
                Level::Critical
            } else {
                Level::Warning
            });
            why.push(failed_attempt("last attempt", a, now));
        }
        if let Some(a) = last.filter(|a| a.outcome == Outcome::Partial) {
            // The snapshot was saved without some entries: not a success to stay quiet about.
            level = level.worst(Level::Warning);
            why.push(format!(
                "last attempt {} ago saved a snapshot without some entries ({})",
                describe_span(age_of(a.started, now)),
                a.message.as_deref().unwrap_or("entries could not be read")
            ));
        }
        findings.push(Finding {
            subject,
            level,
            message: why.join(", "),
            job,
        });
    }
    judge_last_run(state, now, findings);
}

/// A drill's recovery time against its objective: the RTO as a metric (with the objective as
/// its warning level), and WARNING when the last drill passed its checks but missed its RTO or
/// RPO objective (a restore that works but is too slow breaks the recovery plan all the same).
fn judge_drill_targets(
    key: &str,
    a: &Attempt,
    level: &mut Level,
    why: &mut Vec<String>,
    metrics: &mut Vec<Metric>,
) {
    if let Some(rto) = a.details["rto_secs"].as_f64() {
        metrics.push(Metric {
            label: format!("{}_rto", metric_tag(key)),
            value: (rto * 10.0).round() / 10.0,
            unit: "s",
            warn: a.details["max_rto_secs"].as_f64(),
            crit: None,
        });
    }
    let missed: Vec<&str> = a.details["targets_missed"]
        .as_array()
        .map(|list| list.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default();
    if a.outcome != Outcome::Failed && !missed.is_empty() {
        *level = level.worst(Level::Warning);
        why.push(format!(
            "last drill missed its objective: {}",
            missed.join("; ")
        ));
    }
}

/// Lock coverage of a locked offsite copy (FORMAT.md §17): the earliest lock expiry among the
/// objects its kept snapshots need, as the last successful extension left it. WARNING within
/// `warn` (the extension has stopped, or the margin is thin), CRITICAL within `crit` or past it:
/// from then on a kept snapshot could be deleted by whoever holds the storage credentials.
fn judge_locks(
    key: &str,
    a: &Attempt,
    (warn, crit): (Duration, Duration),
    now: DateTime<Utc>,
    level: &mut Level,
    why: &mut Vec<String>,
    metrics: &mut Vec<Metric>,
) {
    let Some(expiry) = a.details["locks"]["earliest_expiry"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
    else {
        return;
    };
    let left = (expiry - now).num_seconds();
    metrics.push(Metric {
        label: format!("{}_lock_left", metric_tag(key)),
        value: left as f64,
        unit: "s",
        warn: Some(warn.as_secs_f64()),
        crit: Some(crit.as_secs_f64()),
    });
    let left_std = Duration::from_secs(left.max(0) as u64);
    if left <= 0 {
        *level = level.worst(Level::Critical);
        why.push(format!(
            "its locks ran out at {} (an object kept snapshots need is no longer locked)",
            expiry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
        return;
    }
    why.push(format!(
        "locked for {} more at least",
        describe_span(left_std)
    ));
    if left_std < crit {
        *level = level.worst(Level::Critical);
    } else if left_std < warn {
        *level = level.worst(Level::Warning);
    }
}

/// Lock coverage left below which status warns by default.
pub const LOCK_WARN_LEFT: Duration = Duration::from_secs(7 * 86_400);
/// Lock coverage left below which status is critical by default.
pub const LOCK_CRIT_LEFT: Duration = Duration::from_secs(86_400);

/// `WHAT failed 3h 2min ago (2026-11-21T09:00:00Z, exit code 5): MESSAGE`.
fn failed_attempt(what: &str, a: &Attempt, now: DateTime<Utc>) -> String {
    format!(
        "{what} failed {} ago ({}, exit code {}): {}",
        describe_span(age_of(a.started, now)),
        a.started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        a.exit_code,
        a.message.as_deref().unwrap_or("no message")
    )
}

/// A run that failed outside every step (a `before` hook) leaves no step record: judged here.
fn judge_last_run(state: &State, now: DateTime<Utc>, findings: &mut Vec<Finding>) {
    let Some(run) = &state.last_run else {
        return;
    };
    let step_failed = |name: &String| {
        state
            .record(name)
            .and_then(|r| r.last_attempt.as_ref())
            .is_some_and(|a| a.outcome == Outcome::Failed)
    };
    if run.attempt.outcome != Outcome::Failed || run.failed.iter().all(step_failed) {
        return;
    }
    findings.push(Finding {
        subject: "run".into(),
        level: Level::Warning,
        message: failed_attempt(&format!("last run {}", run.run_id), &run.attempt, now),
        job: None,
    });
}

/// A label safe in perfdata and metric names: letters, digits and `_`.
pub fn metric_tag(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while out.contains("__") {
        out = out.replace("__", "_");
    }
    out.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests;
