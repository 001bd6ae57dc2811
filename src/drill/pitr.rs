//! `drill --pitr TARGET`: a point-in-time recovery drill. Restores the base backup for TARGET into
//! a scratch directory, starts PostgreSQL there on a free port of 127.0.0.1, waits until recovery
//! reached the target and promoted, runs the checks against that server, and reports the RTO
//! (restore start to checks done) with its phases and the recovery point reached. The server is
//! stopped and the scratch removed afterwards (unless kept).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::pg::restore::{self, PitrOptions, RecoveryTarget};
use crate::pg::server::{pg_ctl_for, Server};
use crate::repo::IndexedRepository;
use crate::restore::RestoreProgress;

use super::{run_checks_with, scratch_dir, CheckResult, DrillCheck, Verdict};

/// How to drill.
#[derive(Clone, Debug)]
pub struct PitrDrillOptions {
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// The `restore_command` the restored server runs; `{password_file}` in it becomes a file in
    /// the scratch directory holding `password` (0600, removed with the scratch).
    pub restore_command: String,
    /// The repository password, for that file.
    pub password: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// Parent of the scratch directory.
    pub scratch_parent: PathBuf,
    /// Keep the restored directory (stopped) afterwards.
    pub keep: bool,
    /// Commands run against the recovered server: `{root}` is its data directory, `{port}` its
    /// port, `{conninfo}` a libpq connection string to it.
    pub checks: Vec<DrillCheck>,
    /// Longest one check may run.
    pub check_timeout: Duration,
    /// Longest acceptable RTO.
    pub max_rto: Option<Duration>,
    /// Longest recovery (start of the server to its promotion).
    pub recovery_timeout: Duration,
    /// `psql`, to ask the server how recovery went.
    pub psql: String,
    /// `pg_ctl`; default: the one of the backup's PostgreSQL version.
    pub pg_ctl: Option<PathBuf>,
}

/// Time spent in each phase, seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PitrPhases {
    /// Restoring the base backup's files.
    pub restore_secs: f64,
    /// Server start, WAL replay up to the target, promotion.
    pub recovery_secs: f64,
    /// Running the checks.
    pub checks_secs: f64,
}

/// The drill report (printed, and kept in the plan's state file).
#[derive(Clone, Debug, Serialize)]
pub struct PitrDrillReport {
    /// The target, as given to PostgreSQL.
    pub target: String,
    /// The base backup restored.
    pub snapshot_id: String,
    /// When it ended.
    pub base_stop_time: String,
    /// When the drill started.
    #[serde(serialize_with = "crate::format::rfc3339::serialize")]
    pub started: DateTime<Utc>,
    /// The commit time of the last transaction recovery replayed: the recovery point reached.
    pub recovered_to: Option<String>,
    /// Drill start minus the recovery point reached, seconds (the data's age, as `drill` reports
    /// for a snapshot).
    pub rpo_secs: f64,
    /// Restore start to all checks done, seconds.
    pub rto_secs: f64,
    /// Per phase.
    pub phases: PitrPhases,
    /// The restored data directory.
    pub scratch: PathBuf,
    /// Whether it was kept.
    pub kept: bool,
    /// The checks.
    pub checks: Vec<CheckResult>,
    /// The RTO target, seconds.
    pub max_rto_secs: Option<f64>,
    /// Targets missed and failures, in words.
    pub targets_missed: Vec<String>,
    /// The verdict.
    pub verdict: Verdict,
}

/// A free TCP port of 127.0.0.1.
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::new(ErrorKind::Other, format!("no free port on 127.0.0.1: {e}")))
}

/// Runs the drill.
///
/// # Errors
/// When the restore is refused or fails, or the server cannot be started: the drill did not get
/// as far as a verdict. A recovery that stops or overshoots the target, and a failing check, are
/// a `Failed` verdict instead.
pub fn pitr_drill(
    repo: &IndexedRepository,
    options: &PitrDrillOptions,
    progress: &dyn RestoreProgress,
) -> Result<PitrDrillReport> {
    let started = Utc::now();
    let scratch = scratch_dir(&options.scratch_parent, "cairn-pitr-drill-")?;
    let data = scratch.path().join("data");
    let mut restore_command = options.restore_command.clone();
    if let Some(password) = &options.password {
        let file = scratch.path().join("password");
        let mut text = password.to_vec();
        text.push(b'\n');
        std::fs::write(&file, zeroize::Zeroizing::new(text))
            .map_err(|e| Error::io(ErrorKind::Other, "cannot write", &file, e))?;
        restore_command = restore_command.replace("{password_file}", &file.display().to_string());
    }
    let clock = Instant::now();
    let restored = restore::restore(
        repo,
        &PitrOptions {
            target: options.target.clone(),
            restore_command,
            base: None,
            archive_off: true,
            tablespace_mapping: Vec::new(),
            // Never back to their own directories, which the live cluster uses.
            tablespaces_under: Some(scratch.path().join("tablespaces")),
        },
        &data,
        progress,
    )?;
    let restore_secs = clock.elapsed().as_secs_f64();
    let Some(pg) = restored.snapshot.postgres.clone() else {
        return Err(Error::invalid_input(
            "the restored snapshot is not a PostgreSQL base backup",
        ));
    };
    let pg_ctl = options
        .pg_ctl
        .clone()
        .unwrap_or_else(|| pg_ctl_for(pg.server_version));
    let port = free_port()?;
    let server = Server::start(&data, &pg_ctl, port)?;
    let recovery_clock = Instant::now();
    let mut targets_missed = Vec::new();
    let recovered = match server.wait_promoted(&options.psql, options.recovery_timeout) {
        Ok(r) => Some(r),
        Err(e) => {
            targets_missed.push(format!("recovery failed: {e}"));
            None
        }
    };
    let recovery_secs = recovery_clock.elapsed().as_secs_f64();
    let checks_clock = Instant::now();
    let checks = if recovered.is_some() {
        let port_text = port.to_string();
        let conninfo = server.conninfo();
        run_checks_with(
            &options.checks,
            &data,
            &[("port", &port_text), ("conninfo", &conninfo)],
            options.check_timeout,
        )
    } else {
        Vec::new()
    };
    let checks_secs = checks_clock.elapsed().as_secs_f64();
    let rto_secs = clock.elapsed().as_secs_f64();
    drop(server);
    let recovered_to = recovered.and_then(|r| r.last_replayed);
    let reached = recovered_to
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    if let (RecoveryTarget::Time(target), Some(reached)) = (&options.target, reached) {
        if reached > *target {
            targets_missed.push(format!(
                "recovery replayed a transaction of {} , after the target {}",
                reached.to_rfc3339(),
                target.to_rfc3339()
            ));
        }
    }
    let failed =
        !targets_missed.is_empty() || checks.iter().any(|c| c.error.is_some() || !c.run.passed());
    if let Some(max) = options.max_rto.filter(|m| rto_secs > m.as_secs_f64()) {
        targets_missed.push(format!(
            "RTO {rto_secs:.1}s is over the target {}s",
            max.as_secs()
        ));
    }
    let verdict = if failed {
        Verdict::Failed
    } else if !targets_missed.is_empty() {
        Verdict::TargetMissed
    } else {
        Verdict::Pass
    };
    let kept = options.keep;
    let scratch_path = scratch.path().to_path_buf();
    if kept {
        let _ = scratch.keep();
    }
    Ok(PitrDrillReport {
        target: match &options.target {
            RecoveryTarget::Latest => "latest".into(),
            RecoveryTarget::Time(t) => t.to_rfc3339(),
            RecoveryTarget::Name(n) => format!("name:{n}"),
            RecoveryTarget::Lsn(l) => format!("lsn:{}", restore::format_lsn(*l)),
        },
        snapshot_id: restored.base.to_hex(),
        base_stop_time: pg.stop_time,
        started,
        rpo_secs: reached.map_or(0.0, |r| {
            (started - r).num_milliseconds().max(0) as f64 / 1000.0
        }),
        recovered_to,
        rto_secs,
        phases: PitrPhases {
            restore_secs,
            recovery_secs,
            checks_secs,
        },
        scratch: scratch_path,
        kept,
        checks,
        max_rto_secs: options.max_rto.map(|d| d.as_secs_f64()),
        targets_missed,
        verdict,
    })
}
