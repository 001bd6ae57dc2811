//! Restore drills: restore a snapshot into a fresh scratch directory, re-hash every file against
//! the snapshot, run the checks that prove the data is usable (`pg_restore --list`, `PRAGMA
//! integrity_check`...), and measure what a real recovery would take (RTO) and lose (RPO).
//!
//! A drill never writes to the repository; the scratch directory is its own and is removed
//! afterwards unless asked to keep it.

pub mod pitr;
mod verify;

pub use verify::Mismatch;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::process::run::{run_command, substitute, CommandRun};
use crate::repo::IndexedRepository;
use crate::restore::{self, RestoreOptions, RestoreProgress};
use crate::units;

/// A command run on the restored data.
#[derive(Clone, Debug)]
pub struct DrillCheck {
    /// What it checks, for the report (`dump /db/app.dump`, `check #1`).
    pub name: String,
    /// Argv with `{root}` (the restore directory) and `{file}` (for a dump, its restored path) placeholders.
    pub argv: Vec<String>,
    /// For a dump check: the dump's absolute path in the snapshot.
    pub file: Option<String>,
}

/// How a drill picks its snapshot.
#[derive(Clone, Debug, PartialEq)]
pub enum SnapshotChoice {
    /// The newest snapshot.
    Latest,
    /// A snapshot id or prefix.
    Id(String),
    /// A snapshot chosen at random among those newer than the span.
    RandomWithin(Duration),
}

impl SnapshotChoice {
    /// Parses `latest`, `random-within 30d` (or `random-within=30d`), or a snapshot id.
    ///
    /// # Errors
    /// A message naming the text when it is none of those.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let t = text.trim();
        if t == "latest" {
            return Ok(SnapshotChoice::Latest);
        }
        if let Some(rest) = t.strip_prefix("random-within") {
            let span = rest.trim_start_matches([' ', '=']);
            return units::parse_span(span).map(SnapshotChoice::RandomWithin);
        }
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(SnapshotChoice::Id(t.to_string()));
        }
        Err(format!(
            "{text:?}: expected latest, a snapshot id, or random-within SPAN (e.g. random-within 30d)"
        ))
    }

    /// How the choice reads in a report.
    pub fn describe(&self) -> String {
        match self {
            SnapshotChoice::Latest => "latest".into(),
            SnapshotChoice::Id(id) => format!("given id {id}"),
            SnapshotChoice::RandomWithin(d) => {
                format!("random within {}", units::describe_span(*d))
            }
        }
    }
}

/// How to drill.
#[derive(Clone, Debug)]
pub struct DrillOptions {
    /// Which snapshot.
    pub choice: SnapshotChoice,
    /// Among which snapshots (`--host`, `--tag`, `--path`, `--at`).
    pub filter: crate::repo::select::SnapshotFilter,
    /// Parent directory of the scratch directory (a fresh one is made inside).
    pub scratch_parent: PathBuf,
    /// Keep the restored tree afterwards.
    pub keep: bool,
    /// Commands run on the restored tree.
    pub checks: Vec<DrillCheck>,
    /// Longest one check may run.
    pub check_timeout: Duration,
    /// Longest acceptable RTO.
    pub max_rto: Option<Duration>,
    /// Oldest acceptable snapshot.
    pub max_rpo: Option<Duration>,
    /// When the drill starts, for its RPO (default: now; `cairn run --now` sets it).
    pub now: Option<DateTime<Utc>>,
}

/// How a drill ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Data verified, checks passed, targets met.
    Pass,
    /// Data and checks fine, but the RTO or RPO target was missed.
    TargetMissed,
    /// A file differs from the snapshot, or a check failed.
    Failed,
}

impl Verdict {
    /// Exit code of `cairn drill`: 0 pass, 1 target missed, 2 data or check failure.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => 0,
            Verdict::TargetMissed => 1,
            Verdict::Failed => 2,
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// [`DrillCheck::name`].
    pub name: String,
    /// What ran and how it ended.
    #[serde(flatten)]
    pub run: CommandRun,
    /// A check that could not even start (program missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Time spent in each phase, seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Phases {
    /// Writing the files.
    pub restore_secs: f64,
    /// Re-hashing them against the snapshot.
    pub verify_secs: f64,
    /// Running the checks.
    pub checks_secs: f64,
}

/// The drill report (printed, and kept in the plan's state file).
#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    /// The snapshot drilled.
    pub snapshot_id: String,
    /// Its time.
    pub snapshot_time: String,
    /// How it was chosen.
    pub chosen: String,
    /// When the drill started.
    #[serde(serialize_with = "crate::format::rfc3339::serialize")]
    pub started: DateTime<Utc>,
    /// Drill start minus snapshot time, seconds.
    pub rpo_secs: f64,
    /// Restore start to all checks passing (or to the end of the drill when they did not), seconds.
    pub rto_secs: f64,
    /// Per phase.
    pub phases: Phases,
    /// The restore directory.
    pub scratch: PathBuf,
    /// Whether it was kept.
    pub kept: bool,
    /// Regular files re-hashed.
    pub files_verified: u64,
    /// Their bytes.
    pub bytes_verified: u64,
    /// What differs from the snapshot (at most `verify::MAX_REPORTED` of them).
    pub mismatches: Vec<Mismatch>,
    /// How many differ in all.
    pub mismatch_count: u64,
    /// The checks.
    pub checks: Vec<CheckResult>,
    /// The RTO target, seconds.
    pub max_rto_secs: Option<f64>,
    /// The RPO target, seconds.
    pub max_rpo_secs: Option<f64>,
    /// Targets missed, in words.
    pub targets_missed: Vec<String>,
    /// The verdict.
    pub verdict: Verdict,
}

/// Chooses the snapshot a drill restores.
///
/// # Errors
/// `InvalidInput` when no snapshot matches.
pub fn choose_snapshot(
    repo: &IndexedRepository,
    choice: &SnapshotChoice,
    filter: &crate::repo::select::SnapshotFilter,
    now: DateTime<Utc>,
) -> Result<(SnapshotId, Snapshot)> {
    match choice {
        SnapshotChoice::Latest => repo.repo().select_snapshot("latest", filter),
        SnapshotChoice::Id(id) => repo.repo().select_snapshot(id, filter),
        SnapshotChoice::RandomWithin(span) => {
            let since = now - chrono::Duration::from_std(*span).unwrap_or(chrono::Duration::MAX);
            let recent: Vec<(SnapshotId, Snapshot)> = filter
                .apply(repo.repo().snapshots()?)
                .into_iter()
                .filter(|(_, s)| {
                    DateTime::parse_from_rfc3339(&s.time)
                        .is_ok_and(|t| t.with_timezone(&Utc) >= since)
                })
                .collect();
            if recent.is_empty() {
                return Err(Error::invalid_input(format!(
                    "no snapshot is newer than {}: nothing to drill (back up first, or widen random-within)",
                    since.to_rfc3339()
                )));
            }
            let pick =
                u64::from_le_bytes(crate::crypto::random_array::<8>()?) % recent.len() as u64;
            Ok(recent
                .into_iter()
                .nth(pick as usize)
                .expect("pick is below the length"))
        }
    }
}

/// Runs a drill of the snapshot `chosen` (from [`choose_snapshot`]).
///
/// # Errors
/// Repository errors (damaged data is a `Corrupted` error, which the CLI reports as a failed drill),
/// or the scratch directory cannot be made. Mismatches and failing checks are not errors: they are in the report.
pub fn drill(
    repo: &IndexedRepository,
    (id, snapshot): (SnapshotId, Snapshot),
    options: &DrillOptions,
    progress: &dyn RestoreProgress,
) -> Result<DrillReport> {
    let started = options.now.unwrap_or_else(Utc::now);
    let snapshot_time = DateTime::parse_from_rfc3339(&snapshot.time)
        .map_err(|e| Error::corrupted(format!("snapshot {}: bad time: {e}", id.short())))?
        .with_timezone(&Utc);
    let scratch = scratch_dir(
        &options.scratch_parent,
        &format!("cairn-drill-{}-", id.short()),
    )?;
    let root = scratch.path().to_path_buf();
    let clock = Instant::now();
    let restored = restore::restore(
        repo,
        &snapshot.tree_id(),
        &root,
        &RestoreOptions::default(),
        progress,
    );
    let restore_secs = clock.elapsed().as_secs_f64();
    let outcome = restored.and_then(|_| {
        let verify_clock = Instant::now();
        let verified = verify::tree_matches(repo, &snapshot.tree_id(), &root)?;
        let verify_secs = verify_clock.elapsed().as_secs_f64();
        let checks_clock = Instant::now();
        let checks = run_checks(&options.checks, &root, options.check_timeout);
        Ok((
            verified,
            verify_secs,
            checks,
            checks_clock.elapsed().as_secs_f64(),
        ))
    });
    let rto_secs = clock.elapsed().as_secs_f64();
    let kept = options.keep;
    if kept {
        let _ = scratch.keep();
    }
    let (verified, verify_secs, checks, checks_secs) = outcome?;
    let rpo_secs = (started - snapshot_time).num_milliseconds().max(0) as f64 / 1000.0;
    let mut targets_missed = Vec::new();
    if let Some(max) = options.max_rto.filter(|m| rto_secs > m.as_secs_f64()) {
        targets_missed.push(format!(
            "RTO {rto_secs:.1}s is over the target {}s",
            max.as_secs()
        ));
    }
    if let Some(max) = options.max_rpo.filter(|m| rpo_secs > m.as_secs_f64()) {
        targets_missed.push(format!(
            "RPO {rpo_secs:.0}s is over the target {}s",
            max.as_secs()
        ));
    }
    let failed =
        verified.mismatch_count > 0 || checks.iter().any(|c| c.error.is_some() || !c.run.passed());
    let verdict = if failed {
        Verdict::Failed
    } else if !targets_missed.is_empty() {
        Verdict::TargetMissed
    } else {
        Verdict::Pass
    };
    Ok(DrillReport {
        snapshot_id: id.to_hex(),
        snapshot_time: snapshot.time.clone(),
        chosen: options.choice.describe(),
        started,
        rpo_secs,
        rto_secs,
        phases: Phases {
            restore_secs,
            verify_secs,
            checks_secs,
        },
        scratch: root,
        kept,
        files_verified: verified.files,
        bytes_verified: verified.bytes,
        mismatches: verified.mismatches,
        mismatch_count: verified.mismatch_count,
        checks,
        max_rto_secs: options.max_rto.map(|d| d.as_secs_f64()),
        max_rpo_secs: options.max_rpo.map(|d| d.as_secs_f64()),
        targets_missed,
        verdict,
    })
}

fn run_checks(checks: &[DrillCheck], root: &Path, timeout: Duration) -> Vec<CheckResult> {
    run_checks_with(checks, root, &[], timeout)
}

/// A fresh scratch directory below `parent` (created when absent), removed when dropped.
fn scratch_dir(parent: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(parent).map_err(|e| {
        Error::io(
            ErrorKind::Other,
            "cannot create the scratch directory",
            parent,
            e,
        )
    })?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .map_err(|e| {
            Error::io(
                ErrorKind::Other,
                "cannot create a scratch directory in",
                parent,
                e,
            )
        })
}

/// [`run_checks`] with more placeholders (`{port}` of a PITR drill's server...), each also given
/// to the check as `CAIRN_DRILL_<NAME>`.
fn run_checks_with(
    checks: &[DrillCheck],
    root: &Path,
    extra: &[(&str, &str)],
    timeout: Duration,
) -> Vec<CheckResult> {
    let root_text = root.display().to_string();
    checks
        .iter()
        .map(|c| {
            let file = c
                .file
                .as_deref()
                .map(|f| format!("{root_text}/{}", f.trim_start_matches('/')))
                .unwrap_or_default();
            let mut values = vec![("root", root_text.as_str()), ("file", file.as_str())];
            values.extend_from_slice(extra);
            let argv = substitute(&c.argv, &values);
            let env: Vec<(String, String)> = values
                .iter()
                .map(|(k, v)| (format!("CAIRN_DRILL_{}", k.to_uppercase()), v.to_string()))
                .collect();
            match run_command(&argv, &env, timeout) {
                Ok(run) => CheckResult {
                    name: c.name.clone(),
                    run,
                    error: None,
                },
                Err(e) => CheckResult {
                    name: c.name.clone(),
                    run: CommandRun {
                        command: argv,
                        exit_code: None,
                        signal: None,
                        timed_out: false,
                        duration_secs: 0.0,
                        output_tail: String::new(),
                    },
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}
