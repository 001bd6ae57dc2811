//! What the plan's steps take from the plan and give back to the state file, in the library's
//! types: the sources of the backup step, and the figures a backup attempt records (FORMAT.md,
//! the plan's state file), which `status --offline` judges without the repository.

use std::time::Duration;

use crate::archive::{BackupOutcome, BackupSources, DumpCommand, StreamSource};
use crate::drill::{DrillCheck, DrillOptions, SnapshotChoice};
use crate::error::{Error, Result};
use crate::pg::PgBackupOptions;
use crate::repo::IndexedRepository;

use super::{size_of, span_of, Job, Plan};

/// A job's `[backup] paths` (made absolute) and its `[[dump]]` commands, as one backup's sources.
///
/// # Errors
/// When the current directory is unknown (relative paths).
pub fn backup_sources(job: &Job<'_>) -> Result<BackupSources<'static>> {
    let paths = match job.backup {
        Some(section) => crate::archive::normalize_sources(&section.paths)?,
        None => Vec::new(),
    };
    let streams = job
        .dumps
        .iter()
        .map(|d| {
            let command = DumpCommand::new(d.command.clone())
                .timeout(span_of(&d.timeout))
                .min_bytes(size_of(&d.min_bytes).unwrap_or(1));
            StreamSource::command(d.path.clone(), command)
        })
        .collect();
    Ok(BackupSources { paths, streams })
}

/// What the state file records of a backup: the snapshot, its group, its size and what it
/// added, the parent's size (for `--max-shrink`), and each dump's size and duration.
///
/// # Errors
/// When the parent snapshot cannot be read.
pub fn backup_details(
    repo: &IndexedRepository,
    outcome: &BackupOutcome,
) -> Result<serde_json::Value> {
    let snap = &outcome.snapshot;
    let previous_total = match &snap.parent {
        Some(parent) => repo.repo().find_snapshot(parent)?.1.summary.total_bytes,
        None => None,
    };
    Ok(serde_json::json!({
        "job": snap.job,
        "snapshot_id": outcome.snapshot_id.map(|id| id.to_hex()),
        "snapshot_time": snap.time,
        "group": format!("{}:{}", snap.host, snap.paths.join(",")),
        "total_bytes": snap.summary.total_bytes,
        "bytes_added": snap.summary.bytes_added,
        "previous_total_bytes": previous_total,
        "dumps": snap.summary.dumps.iter().map(|d| serde_json::json!({
            "path": d.path, "bytes": d.bytes, "duration_secs": d.duration_secs,
        })).collect::<Vec<_>>(),
    }))
}

/// The base backup the plan's `[postgres]` describes, as `cairn pg backup`'s flags fill it.
///
/// # Errors
/// `InvalidInput` when the plan has no `[postgres]`.
pub fn pg_backup_options(plan: &Plan) -> Result<PgBackupOptions> {
    let p = plan
        .postgres
        .as_ref()
        .ok_or_else(|| Error::invalid_input("the plan has no [postgres] section"))?;
    let defaults = PgBackupOptions::default();
    Ok(PgBackupOptions {
        conninfo: p.conn.clone(),
        psql: p.psql.clone().unwrap_or(defaults.psql),
        data_directory: p.pgdata.clone(),
        fast_checkpoint: !p.spread_checkpoint,
        archive_timeout: span_of(&p.archive_timeout).unwrap_or(defaults.archive_timeout),
        backup: crate::archive::BackupOptions {
            tags: p.tags.clone(),
            ..Default::default()
        },
    })
}

/// What the state file records of a base backup: what [`backup_details`] records, and the WAL
/// range the backup needs.
///
/// # Errors
/// When the parent snapshot cannot be read.
pub fn pg_backup_details(
    repo: &IndexedRepository,
    outcome: &BackupOutcome,
) -> Result<serde_json::Value> {
    let mut details = backup_details(repo, outcome)?;
    if let (Some(pg), Some(map)) = (&outcome.snapshot.postgres, details.as_object_mut()) {
        map.insert("start_wal".into(), pg.start_wal.clone().into());
        map.insert("stop_wal".into(), pg.stop_wal.clone().into());
        map.insert("stop_time".into(), pg.stop_time.clone().into());
    }
    Ok(details)
}

/// Longest a drill check may run unless `[drill] check_timeout` says otherwise.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(3600);

/// The backup options of a job: its `[backup]` keys, and its name recorded in the snapshot.
///
/// # Errors
/// An exclude file that cannot be read, an invalid pattern, tag file or size.
pub fn backup_options(job: &Job<'_>) -> Result<crate::archive::BackupOptions> {
    let mut options = job.backup.cloned().unwrap_or_default().backup_options()?;
    options.job = job.name.map(String::from);
    Ok(options)
}

/// The drill the plan describes: its snapshot choice, scratch directory (else the temporary
/// directory), the checks (each dump's `verify`, then `[drill] checks`), their timeout and the
/// RTO and RPO targets. Without a plan, the defaults: the latest snapshot, no check, no target.
/// With `job`, that job's drill among that job's snapshots.
///
/// # Errors
/// `InvalidInput` for a snapshot choice that does not parse.
pub fn drill_options(plan: Option<&Plan>, job: Option<&Job<'_>>) -> Result<DrillOptions> {
    let section = match job {
        Some(j) => j.drill.cloned().unwrap_or_default(),
        None => plan.and_then(|p| p.drill.clone()).unwrap_or_default(),
    };
    let choice = match &section.snapshot {
        Some(s) => SnapshotChoice::parse(s).map_err(Error::invalid_input)?,
        None => SnapshotChoice::Latest,
    };
    let mut checks = Vec::new();
    let dumps = match job {
        Some(j) => j.dumps,
        None => plan.map(|p| p.dumps.as_slice()).unwrap_or_default(),
    };
    for d in dumps {
        if let Some(verify) = &d.verify {
            checks.push(DrillCheck {
                name: format!("dump /{}", d.path.trim_start_matches('/')),
                argv: verify.clone(),
                file: Some(d.path.clone()),
            });
        }
    }
    for (i, argv) in section.checks.iter().enumerate() {
        checks.push(DrillCheck {
            name: format!("check #{}", i + 1),
            argv: argv.clone(),
            file: None,
        });
    }
    Ok(DrillOptions {
        choice,
        filter: crate::repo::SnapshotFilter {
            job: match job.and_then(|j| j.name) {
                Some(name) => crate::repo::JobFilter::Named(name.to_string()),
                None => crate::repo::JobFilter::Any,
            },
            ..Default::default()
        },
        scratch_parent: section.scratch.clone().unwrap_or_else(std::env::temp_dir),
        keep: false,
        checks,
        check_timeout: span_of(&section.check_timeout).unwrap_or(DEFAULT_CHECK_TIMEOUT),
        max_rto: span_of(&section.max_rto),
        max_rpo: span_of(&section.max_rpo),
        now: None,
    })
}
