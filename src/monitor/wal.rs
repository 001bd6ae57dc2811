//! The archived PostgreSQL WAL as `status` judges it: its recovery point (the age of the newest
//! archived WAL file), gaps (CRITICAL after the newest base backup, which is what a restore starts
//! from), and damage to the catalog.

use std::time::Duration;

use crate::format::snapshot::Snapshot;
use crate::format::wal::{WalBacklog, WalName};
use crate::id::SnapshotId;
use crate::units::{describe_size, describe_span};
use crate::wal::{timelines, Catalog};
use chrono::{DateTime, Utc};

use super::{Finding, Level, Metric, StatusReport};

/// Default WARNING age of the newest archived WAL file: the one-hour recovery point objective of
/// most runbooks (with `archive_timeout` set, an idle server still archives that often).
pub const DEFAULT_WARN_AGE: Duration = Duration::from_secs(3600);
/// Default CRITICAL age.
pub const DEFAULT_CRIT_AGE: Duration = Duration::from_secs(2 * 3600);

/// What `status` compares the archived WAL against.
#[derive(Clone, Copy, Debug)]
pub struct WalThresholds {
    /// Newest archived WAL older: WARNING.
    pub warn_age: Duration,
    /// Newest archived WAL older: CRITICAL.
    pub crit_age: Duration,
}

impl Default for WalThresholds {
    fn default() -> Self {
        WalThresholds {
            warn_age: DEFAULT_WARN_AGE,
            crit_age: DEFAULT_CRIT_AGE,
        }
    }
}

/// What the repository holds of archived WAL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WalFacts {
    /// Archived files.
    pub files: usize,
    /// When the newest record was written.
    pub newest: Option<DateTime<Utc>>,
    /// Gaps a restore from the newest base backup would meet (`first..last` missing).
    pub gaps_after_base: Vec<String>,
    /// Gaps before the newest base backup's start: only older restores meet them.
    pub gaps_before_base: Vec<String>,
    /// Damaged records, conflicts and missing history files.
    pub problems: Vec<String>,
    /// Whether some base backup exists (without one the WAL restores nothing).
    pub base_backup: bool,
    /// Files `wal push --queue-max` dropped unarchived after the newest base backup's start.
    pub dropped_after_base: Vec<String>,
    /// The archive queue the newest push saw.
    pub backlog: Option<WalBacklog>,
}

/// The facts of `catalog`, judged against the newest base backup among `snapshots`; `None` when
/// nothing was ever archived.
pub fn facts(catalog: &Catalog, snapshots: &[(SnapshotId, Snapshot)]) -> Option<WalFacts> {
    if catalog.records().is_empty() && catalog.damaged().is_empty() {
        return None;
    }
    let newest_base = snapshots
        .iter()
        .filter_map(|(_, s)| s.postgres.as_ref())
        .max_by_key(|pg| pg.stop_time.clone());
    let start = newest_base.and_then(|pg| {
        let name = WalName::parse(&pg.start_wal).ok()?;
        Some((name.timeline(), name.segment_number(pg.segment_size)?))
    });
    let mut out = WalFacts {
        files: catalog.files().count(),
        newest: catalog.newest_push().map(|r| r.datetime()),
        base_backup: newest_base.is_some(),
        backlog: catalog.newest_push().and_then(|r| r.backlog),
        ..WalFacts::default()
    };
    let after_start = |timeline: u32, number: Option<u64>| match start {
        None => true,
        Some((tli, first)) => {
            timeline > tli || (timeline == tli && number.is_some_and(|n| n >= first))
        }
    };
    for (name, drop, host) in catalog.dropped() {
        let size = newest_base.map_or(16 << 20, |pg| pg.segment_size);
        if after_start(name.timeline(), name.segment_number(size)) {
            out.dropped_after_base.push(format!(
                "{name} (dropped by {host} at {}: {} waited, more than --queue-max {})",
                drop.time,
                describe_size(drop.backlog_bytes),
                describe_size(drop.queue_max)
            ));
        }
    }
    for timeline in timelines(catalog) {
        for (first, last) in &timeline.gaps {
            let text = if first == last {
                first.to_string()
            } else {
                format!("{first} to {last}")
            };
            let after = after_start(
                timeline.timeline,
                first.segment_number(timeline.segment_size),
            );
            if after {
                out.gaps_after_base.push(text);
            } else {
                out.gaps_before_base.push(text);
            }
        }
        if !timeline.history {
            out.problems.push(format!(
                "history file of timeline {} missing",
                timeline.timeline
            ));
        }
    }
    for (name, _) in catalog.damaged() {
        out.problems.push(format!("WAL record {name} damaged"));
    }
    for name in catalog.conflicts() {
        out.problems
            .push(format!("{name} archived twice with different bytes"));
    }
    Some(out)
}

/// Adds the WAL's finding and metrics to `report`.
pub fn judge(report: &mut StatusReport, wal: &WalFacts, th: &WalThresholds, now: DateTime<Utc>) {
    let mut level = Level::Ok;
    let mut why = vec![format!("{} file(s) archived", wal.files)];
    let age = wal
        .newest
        .map(|t| (now - t).to_std().unwrap_or(Duration::ZERO));
    if let Some(age) = age {
        why.push(format!("newest {} ago", describe_span(age)));
        if age >= th.crit_age {
            level = Level::Critical;
            why.push(format!(
                "older than {} (is archive_command failing? SELECT * FROM pg_stat_archiver; set archive_timeout so an idle server archives too)",
                describe_span(th.crit_age)
            ));
        } else if age >= th.warn_age {
            level = Level::Warning;
            why.push(format!("older than {}", describe_span(th.warn_age)));
        }
    }
    if !wal.gaps_after_base.is_empty() {
        level = Level::Critical;
        why.push(format!(
            "missing after the newest base backup: {} (recovery stops there; take a base backup now)",
            wal.gaps_after_base.join(", ")
        ));
    }
    if !wal.dropped_after_base.is_empty() {
        level = Level::Critical;
        why.push(format!(
            "dropped unarchived: {} (fix archiving, then take a base backup)",
            wal.dropped_after_base.join(", ")
        ));
    }
    if let Some(b) = &wal.backlog {
        why.push(format!(
            "{} file(s), {} waited to be archived at the newest push{}",
            b.files,
            describe_size(b.bytes),
            b.queue_max
                .map(|m| format!(" (queue limit {})", describe_size(m)))
                .unwrap_or_default()
        ));
        if b.queue_max.is_some_and(|m| b.bytes >= m / 2) {
            level = level.worst(Level::Warning);
            why.push("the archive queue is past half its limit: beyond it WAL is dropped".into());
        }
    }
    if !wal.gaps_before_base.is_empty() {
        level = level.worst(Level::Warning);
        why.push(format!(
            "missing before the newest base backup: {} (older points in time cannot be recovered)",
            wal.gaps_before_base.join(", ")
        ));
    }
    if !wal.problems.is_empty() {
        level = Level::Critical;
        why.push(wal.problems.join(", "));
    }
    if !wal.base_backup {
        level = level.worst(Level::Warning);
        why.push("no base backup: the WAL alone restores nothing (cairn pg backup)".into());
    }
    report.findings.push(Finding {
        subject: "wal".into(),
        level,
        message: why.join(", "),
        job: None,
    });
    report.level = report.level.worst(level);
    if let Some(age) = age {
        report.metrics.push(Metric {
            label: "wal_age".into(),
            value: age.as_secs_f64().round(),
            unit: "s",
            warn: Some(th.warn_age.as_secs_f64()),
            crit: Some(th.crit_age.as_secs_f64()),
        });
    }
    if let Some(b) = &wal.backlog {
        report.metrics.push(Metric {
            label: "wal_backlog".into(),
            value: b.bytes as f64,
            unit: "B",
            warn: b.queue_max.map(|m| (m / 2) as f64),
            crit: b.queue_max.map(|m| m as f64),
        });
    }
    report.metrics.push(Metric {
        label: "wal_dropped".into(),
        value: wal.dropped_after_base.len() as f64,
        unit: "",
        warn: None,
        crit: Some(1.0),
    });
    report.metrics.push(Metric {
        label: "wal_gaps".into(),
        value: (wal.gaps_after_base.len() + wal.gaps_before_base.len()) as f64,
        unit: "",
        warn: None,
        crit: Some(1.0),
    });
}
