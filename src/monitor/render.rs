//! Status in the shapes monitoring systems read: text for people, a Nagios plugin line with
//! perfdata, and the Prometheus text exposition format (base units) for node_exporter's textfile collector.

use std::fmt::Write;

use super::{Level, StatusReport};
use crate::plan::state::{Outcome, State};

/// Lines for people: one per finding.
pub fn text(report: &StatusReport) -> String {
    let mut out = format!("{} (from the {})\n", report.level.name(), report.source);
    for f in &report.findings {
        let _ = writeln!(out, "  {:<8} {}: {}", f.level.name(), f.subject, f.message);
    }
    out
}

/// The monitoring-plugin format: `CAIRN LEVEL - summary | perfdata`, then one line per finding.
pub fn nagios(report: &StatusReport) -> String {
    let worst: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.level == report.level)
        .map(|f| f.subject.as_str())
        .collect();
    let summary = if report.level == Level::Ok {
        format!("{} checks ok", report.findings.len())
    } else {
        let first = report.findings.iter().find(|f| f.level == report.level);
        match first {
            Some(f) if worst.len() == 1 => format!("{}: {}", f.subject, f.message),
            _ => format!("{} problems: {}", worst.len(), worst.join(", ")),
        }
    };
    let perf: Vec<String> = report
        .metrics
        .iter()
        .map(|m| {
            let t = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
            format!(
                "'{}'={}{};{};{};0;",
                m.label.replace('\'', "_"),
                m.value,
                m.unit,
                t(m.warn),
                t(m.crit)
            )
        })
        .collect();
    let mut out = format!("CAIRN {} - {}", report.level.name(), one_line(&summary));
    if !perf.is_empty() {
        let _ = write!(out, " | {}", perf.join(" "));
    }
    out.push('\n');
    for f in &report.findings {
        let _ = writeln!(
            out,
            "{} {}: {}",
            f.level.name(),
            f.subject,
            one_line(&f.message)
        );
    }
    out
}

fn one_line(text: &str) -> String {
    // `|` starts perfdata in the plugin format; newlines end the first line.
    text.replace(['|', '\n'], " ")
}

/// The Prometheus text format of the state file's figures, plus the status level when given.
pub fn prometheus(state: &State, report: Option<&StatusReport>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, samples: Vec<(String, f64)>| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    family(
        "cairn_build_info",
        "The cairn that wrote these metrics.",
        "gauge",
        vec![(
            format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
            1.0,
        )],
    );
    let steps: Vec<(&String, _)> = state.steps.iter().collect();
    let by_step = |f: &dyn Fn(&crate::plan::StepRecord) -> Option<f64>| -> Vec<(String, f64)> {
        steps
            .iter()
            .filter_map(|(k, r)| f(r).map(|v| (step_labels(k), v)))
            .collect()
    };
    family(
        "cairn_last_success_timestamp_seconds",
        "When the step last succeeded (start time, Unix seconds).",
        "gauge",
        by_step(&|r| {
            r.last_success
                .as_ref()
                .map(|a| a.started.timestamp() as f64)
        }),
    );
    family(
        "cairn_last_attempt_timestamp_seconds",
        "When the step was last attempted (Unix seconds).",
        "gauge",
        by_step(&|r| {
            r.last_attempt
                .as_ref()
                .map(|a| a.started.timestamp() as f64)
        }),
    );
    family(
        "cairn_last_attempt_success",
        "1 when the step's last attempt succeeded, else 0.",
        "gauge",
        by_step(&|r| {
            r.last_attempt
                .as_ref()
                .map(|a| f64::from(u8::from(a.outcome != Outcome::Failed)))
        }),
    );
    family(
        "cairn_last_duration_seconds",
        "How long the step's last attempt took.",
        "gauge",
        by_step(&|r| r.last_attempt.as_ref().map(|a| a.duration_secs)),
    );
    let backup = state.last_success("backup").map(|a| &a.details);
    // A figure of the unnamed job's step (no label) and of each job's (`job="NAME"`).
    let per_job = |step: &str, last_success: bool, key: &str| -> Vec<(String, f64)> {
        state
            .steps
            .iter()
            .filter_map(|(k, r)| {
                let labels = match crate::plan::job::split_key(k) {
                    Some((job, s)) if s == step => format!("{{job=\"{}\"}}", escape(job)),
                    None if k == step => String::new(),
                    _ => return None,
                };
                let a = if last_success {
                    r.last_success.as_ref()
                } else {
                    r.last_attempt.as_ref()
                }?;
                Some((labels, a.details.get(key)?.as_f64()?))
            })
            .collect()
    };
    family(
        "cairn_snapshot_bytes",
        "Logical size of the newest snapshot the plan (or job) wrote.",
        "gauge",
        per_job("backup", true, "total_bytes"),
    );
    family(
        "cairn_snapshot_added_bytes",
        "Bytes the newest snapshot of the plan (or job) added to the repository.",
        "gauge",
        per_job("backup", true, "bytes_added"),
    );
    let dumps: Vec<(String, f64)> = backup
        .and_then(|d| d.get("dumps"))
        .and_then(|d| d.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|d| {
                    let path = d.get("path")?.as_str()?;
                    let bytes = d.get("bytes")?.as_f64()?;
                    Some((format!("{{path=\"{}\"}}", escape(path)), bytes))
                })
                .collect()
        })
        .unwrap_or_default();
    family(
        "cairn_dump_bytes",
        "Size of each dump in the newest snapshot the plan wrote.",
        "gauge",
        dumps,
    );
    family(
        "cairn_drill_rto_seconds",
        "Restore start to all checks passing, in the last drill (of the plan or job).",
        "gauge",
        per_job("drill", false, "rto_secs"),
    );
    family(
        "cairn_drill_rto_objective_seconds",
        "The RTO objective of the last drill (of the plan or job).",
        "gauge",
        per_job("drill", false, "max_rto_secs"),
    );
    family(
        "cairn_drill_rpo_seconds",
        "Age of the drilled snapshot when the last drill started.",
        "gauge",
        per_job("drill", false, "rpo_secs"),
    );
    family(
        "cairn_drill_verified_bytes",
        "Bytes re-hashed against the snapshot in the last drill.",
        "gauge",
        per_job("drill", false, "bytes_verified"),
    );
    if let Some(r) = report {
        let metric = |label: &str| -> Vec<(String, f64)> {
            r.metrics
                .iter()
                .filter(|m| m.label == label)
                .map(|m| (String::new(), m.value))
                .collect()
        };
        family(
            "cairn_wal_newest_age_seconds",
            "Age of the newest archived PostgreSQL WAL file (the recovery point).",
            "gauge",
            metric("wal_age"),
        );
        family(
            "cairn_wal_gaps",
            "Runs of WAL segments missing from the archive.",
            "gauge",
            metric("wal_gaps"),
        );
        family(
            "cairn_wal_backlog_bytes",
            "Bytes of WAL waiting in pg_wal to be archived when the newest push started.",
            "gauge",
            metric("wal_backlog"),
        );
        family(
            "cairn_wal_dropped",
            "WAL files wal push --queue-max dropped unarchived after the newest base backup.",
            "gauge",
            metric("wal_dropped"),
        );
        let lock_left: Vec<(String, f64)> = r
            .metrics
            .iter()
            .filter_map(|m| {
                let target = m
                    .label
                    .strip_prefix("offsite_")?
                    .strip_suffix("_lock_left")?;
                Some((format!("{{target=\"{}\"}}", escape(target)), m.value))
            })
            .collect();
        family(
            "cairn_offsite_lock_left_seconds",
            "Time until the earliest lock of a locked offsite copy ends, as its last extension left it.",
            "gauge",
            lock_left,
        );
        let mut jobs: std::collections::BTreeMap<&str, Level> = Default::default();
        for f in &r.findings {
            if let Some(job) = &f.job {
                let level = jobs.entry(job.as_str()).or_insert(Level::Ok);
                *level = level.worst(f.level);
            }
        }
        family(
            "cairn_job_status_level",
            "cairn status of one plan job: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            "gauge",
            jobs.iter()
                .map(|(job, level)| {
                    (
                        format!("{{job=\"{}\"}}", escape(job)),
                        f64::from(level.exit_code()),
                    )
                })
                .collect(),
        );
        family(
            "cairn_job_snapshot_age_seconds",
            "Age of the newest snapshot of a plan job (its recovery point).",
            "gauge",
            jobs.keys()
                .filter_map(|job| {
                    let label = format!("age_job_{}", super::metric_tag(job));
                    let m = r.metrics.iter().find(|m| m.label == label)?;
                    Some((format!("{{job=\"{}\"}}", escape(job)), m.value))
                })
                .collect(),
        );
        family(
            "cairn_status_level",
            "cairn status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            "gauge",
            vec![(String::new(), f64::from(r.level.exit_code()))],
        );
    }
    out
}

/// A label value as the exposition format wants it.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The labels of a state-file key: `{step="check"}`, or `{job="db",step="backup"}` for a job's.
fn step_labels(key: &str) -> String {
    match crate::plan::job::split_key(key) {
        Some((job, step)) => format!("{{job=\"{}\",step=\"{}\"}}", escape(job), escape(step)),
        None => format!("{{step=\"{}\"}}", escape(key)),
    }
}
