//! `pg backup`: a physical base backup of a running cluster through PostgreSQL's backup API. The
//! data directory is backed up as files (unchanged files cost a stat against the parent snapshot,
//! changed ones only their new chunks and deltas), between `pg_backup_start` and `pg_backup_stop`
//! in one session; the snapshot is written only once the WAL that makes the copy consistent is
//! archived in the same repository, and it records the backup label PostgreSQL gave.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::archive::{
    self, BackupOptions, BackupOutcome, BackupProgress, BackupSources, SnapshotHook,
};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{PgBackup, PgTablespace, Snapshot};
use crate::format::wal::WalName;
use crate::repo::IndexedRepository;
use crate::wal::Catalog;

use super::session::Session;

/// Entries of a data directory that a base backup leaves out, as PostgreSQL's own
/// `pg_basebackup` does: WAL (archived separately), server state rebuilt at start, temporary
/// files. Directories keep their entry, without their contents.
const EXCLUDED_CONTENTS: &[&str] = &[
    "pg_wal",
    // Links to the tablespaces, which are backed up as paths of their own: a restore makes
    // them anew to where it puts each tablespace, never to the live cluster's directories.
    "pg_tblspc",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];
/// Files of the data directory's top level left out.
const EXCLUDED_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "recovery.signal",
    "standby.signal",
];
/// Left out at any depth.
const EXCLUDED_ANYWHERE: &[&str] = &["pgsql_tmp*", "pg_internal.init"];

/// How to reach the cluster and back it up.
#[derive(Clone, Debug)]
pub struct PgBackupOptions {
    /// libpq conninfo string or URI; `None` uses libpq's environment (`PGHOST`, ...).
    pub conninfo: Option<String>,
    /// The `psql` program.
    pub psql: String,
    /// The data directory; default: what the server says (`SHOW data_directory`).
    pub data_directory: Option<PathBuf>,
    /// Start with an immediate checkpoint instead of a spread one.
    pub fast_checkpoint: bool,
    /// How long to wait for the backup's last WAL file to be archived.
    pub archive_timeout: Duration,
    /// Tags, host, parent and the like of the snapshot.
    pub backup: BackupOptions,
}

impl Default for PgBackupOptions {
    fn default() -> Self {
        PgBackupOptions {
            conninfo: None,
            psql: "psql".into(),
            data_directory: None,
            fast_checkpoint: true,
            archive_timeout: Duration::from_secs(60),
            backup: BackupOptions::default(),
        }
    }
}

/// What the server told at the start.
struct Started {
    data_directory: PathBuf,
    server_version: u32,
    system_identifier: String,
    segment_size: u64,
    start_lsn: String,
    /// The start's WAL file; on a standby, where `pg_walfile_name` cannot run, it is read from
    /// the backup label at the stop.
    start_wal: Option<String>,
    tablespaces: Vec<PgTablespace>,
    /// The server is a standby: the primary archives the WAL the backup needs.
    standby: bool,
}

/// Takes a base backup and writes its snapshot.
///
/// # Errors
/// `CommandFailed` when the server cannot be reached, refuses the backup, or the backup's WAL is
/// not archived within the timeout (no snapshot is written then); `InvalidInput` when the cluster
/// cannot be backed up this way (archiving off, an in-place tablespace, a data directory or tablespace not on this host).
pub fn base_backup(
    repo: &IndexedRepository,
    options: &PgBackupOptions,
    progress: &dyn BackupProgress,
) -> Result<BackupOutcome> {
    let mut session = Session::open(&options.psql, options.conninfo.as_deref())?;
    let started = start(&mut session, options)?;
    let session = Arc::new(Mutex::new(session));
    let mut backup = options.backup.clone();
    backup.excludes = archive::ExcludeMatcher::new(&excludes(&started.data_directory))?;
    let started = Arc::new(started);
    let hook_session = Arc::clone(&session);
    let hook_started = Arc::clone(&started);
    let timeout = options.archive_timeout;
    backup.before_snapshot = Some(SnapshotHook(Arc::new(move |repo, snapshot| {
        let mut session = hook_session.lock().unwrap_or_else(|p| p.into_inner());
        stop(&mut session, repo, &hook_started, timeout, snapshot)
    })));
    let mut paths = vec![started.data_directory.clone()];
    paths.extend(
        started
            .tablespaces
            .iter()
            .map(|t| PathBuf::from(&t.location)),
    );
    let sources = BackupSources {
        paths,
        streams: Vec::new(),
    };
    let outcome = archive::backup(repo, sources, &backup, progress);
    // Ends the session whatever happened: a backup still running on the server is aborted.
    drop(session);
    let mut outcome = outcome?;
    // The exclusions are PostgreSQL's list, not the user's: one that matched nothing (no
    // `backup_label.old` today) is no typo to warn about.
    outcome.unmatched_excludes.clear();
    Ok(outcome)
}

fn start(session: &mut Session, options: &PgBackupOptions) -> Result<Started> {
    let server_version: u32 = session
        .value("SHOW server_version_num")?
        .parse()
        .map_err(|_| {
            Error::new(
                ErrorKind::CommandFailed,
                "PostgreSQL gave no server_version_num",
            )
        })?;
    if server_version < 100_000 {
        return Err(Error::invalid_input(format!(
            "PostgreSQL {server_version} is too old: cairn backs up PostgreSQL 10 and later"
        )));
    }
    let standby = session.value("SELECT pg_is_in_recovery()")? == "t";
    let archive_mode = session.value("SHOW archive_mode")?;
    // A standby's own archive_mode says nothing: its primary archives (the stop waits for it).
    if archive_mode == "off" && !standby {
        return Err(Error::invalid_input(
            "archive_mode is off: a base backup is restorable only with the WAL written during it; \
             set archive_mode = on and archive_command = 'cairn ... wal push %p' (`cairn pg setup` \
             prints the lines), restart PostgreSQL, then back up",
        ));
    }
    let tablespaces = tablespaces(session)?;
    let data_directory = match &options.data_directory {
        Some(d) => d.clone(),
        None => PathBuf::from(session.value("SHOW data_directory")?),
    };
    if !data_directory.join("PG_VERSION").is_file() {
        return Err(Error::invalid_input(format!(
            "{} is not a PostgreSQL data directory readable here: cairn pg backup runs on the \
             database's host, as a user that can read the data directory (or give --pgdata)",
            data_directory.display()
        )));
    }
    let data_directory = crate::archive::normalize_sources(&[data_directory])?
        .pop()
        .unwrap_or_default();
    let system_identifier = session.value("SELECT system_identifier FROM pg_control_system()")?;
    let segment_size: u64 = session
        .value("SELECT pg_size_bytes(current_setting('wal_segment_size'))")?
        .parse()
        .unwrap_or(16 << 20);
    let fast = if options.fast_checkpoint {
        "true"
    } else {
        "false"
    };
    let label = format!("cairn {}", chrono::Utc::now().to_rfc3339());
    let start_call = if server_version >= 150_000 {
        format!("pg_backup_start('{label}', {fast})")
    } else {
        format!("pg_start_backup('{label}', {fast}, false)")
    };
    let (start_lsn, start_wal) = if standby {
        let row = session.query(&format!("SELECT lsn FROM {start_call} AS lsn"))?;
        let [start_lsn] = one_row(row, "the backup start")?;
        (start_lsn, None)
    } else {
        let row = session.query(&format!(
            "SELECT lsn, pg_walfile_name(lsn) FROM {start_call} AS lsn"
        ))?;
        let [start_lsn, start_wal] = one_row(row, "the backup start")?;
        (start_lsn, Some(start_wal))
    };
    Ok(Started {
        data_directory,
        server_version,
        system_identifier,
        segment_size,
        start_lsn,
        start_wal,
        tablespaces,
        standby,
    })
}

/// The cluster's tablespaces outside the data directory, each a readable directory here.
fn tablespaces(session: &mut Session) -> Result<Vec<PgTablespace>> {
    let rows = session.query(
        "SELECT oid, spcname, pg_tablespace_location(oid) FROM pg_tablespace \
         WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid",
    )?;
    let mut out = Vec::new();
    for row in rows {
        let [oid, name, location] = <[String; 3]>::try_from(row).map_err(|_| {
            Error::new(
                ErrorKind::CommandFailed,
                "PostgreSQL answered the tablespace list with an unexpected row",
            )
        })?;
        let oid: u32 = oid.parse().map_err(|_| {
            Error::new(
                ErrorKind::CommandFailed,
                format!("tablespace {name}: OID {oid:?} is not a number"),
            )
        })?;
        if !location.starts_with('/') {
            return Err(Error::invalid_input(format!(
                "tablespace {name} is in place ({location:?}, allow_in_place_tablespaces): cairn pg \
                 backup backs up tablespaces with a directory of their own only"
            )));
        }
        if !Path::new(&location).is_dir() {
            return Err(Error::invalid_input(format!(
                "tablespace {name} is at {location}, which is not a directory readable here: run \
                 cairn pg backup on the database's host as a user that can read it"
            )));
        }
        out.push(PgTablespace { oid, location });
    }
    Ok(out)
}

fn stop(
    session: &mut Session,
    repo: &IndexedRepository,
    started: &Started,
    timeout: Duration,
    snapshot: &mut Snapshot,
) -> Result<()> {
    let stop_call = if started.server_version >= 150_000 {
        "pg_backup_stop(false)"
    } else {
        "pg_stop_backup(false, false)"
    };
    // Hex: the label spans lines, and psql's output is read line by line.
    let hex = |col: &str| format!("encode(convert_to(coalesce({col}, ''), 'UTF8'), 'hex')");
    // On a standby pg_walfile_name cannot run: the file is worked out from the label below.
    let walfile = if started.standby {
        "''"
    } else {
        "pg_walfile_name(lsn)"
    };
    let row = session.query(&format!(
        "SELECT lsn, {walfile}, {}, {}, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM {stop_call}",
        hex("labelfile"),
        hex("spcmapfile")
    ))?;
    let [stop_lsn, stop_wal, label, map, stop_time] = one_row(row, "the backup stop")?;
    let decode = |h: &str| -> Result<String> {
        let bytes = hex::decode(h)
            .map_err(|e| Error::new(ErrorKind::CommandFailed, format!("backup label: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|_| Error::new(ErrorKind::CommandFailed, "the backup label is not UTF-8"))
    };
    let label = decode(&label)?;
    let start_wal = match &started.start_wal {
        Some(name) => name.clone(),
        None => label_start_wal(&label)?,
    };
    let stop_wal = if started.standby {
        let start = WalName::parse(&start_wal)?;
        let lsn = super::restore::parse_lsn(&stop_lsn)?;
        // The file holding the last byte before the stop position, as pg_walfile_name says.
        WalName::segment(
            start.timeline(),
            lsn.saturating_sub(1) / started.segment_size,
            started.segment_size,
        )
        .to_string()
    } else {
        stop_wal
    };
    let stop_name = WalName::parse(&stop_wal)?;
    wait_for_archive(repo, &stop_name, timeout, started.standby)?;
    // A file that vanished while the backup read the directory (a dropped table, a temporary
    // file) is no loss: WAL replay from the backup's start recreates what the cluster needs.
    snapshot
        .summary
        .errors
        .retain(|e| !e.message.contains("No such file or directory"));
    snapshot.postgres = Some(PgBackup {
        data_directory: started.data_directory.display().to_string(),
        server_version: started.server_version,
        system_identifier: started.system_identifier.clone(),
        timeline: stop_name.timeline(),
        start_lsn: started.start_lsn.clone(),
        start_wal,
        stop_lsn,
        stop_wal,
        stop_time,
        segment_size: started.segment_size,
        backup_label: label,
        // The map's content is `tablespaces`; written empty so that a build that does not know
        // `tablespaces` makes no link into the live cluster's tablespaces (its restore fails to
        // recover instead).
        tablespace_map: if started.tablespaces.is_empty() {
            decode(&map)?
        } else {
            String::new()
        },
        tablespaces: started.tablespaces.clone(),
    });
    Ok(())
}

/// The start WAL file a backup label names: `START WAL LOCATION: 0/2000028 (file NAME)`.
fn label_start_wal(label: &str) -> Result<String> {
    label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|rest| rest.split("(file ").nth(1))
        .map(|rest| rest.trim_end_matches(')').trim().to_string())
        .filter(|name| WalName::parse(name).is_ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::CommandFailed,
                "the backup label PostgreSQL returned names no start WAL file",
            )
        })
}

/// Waits until the repository holds `name`: the backup is restorable only with it.
fn wait_for_archive(
    repo: &IndexedRepository,
    name: &WalName,
    timeout: Duration,
    standby: bool,
) -> Result<()> {
    let started = Instant::now();
    loop {
        if Catalog::load(repo.repo())?.file(name).is_some() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(Error::new(
                ErrorKind::CommandFailed,
                format!(
                    "the backup's last WAL file {name} was not archived into this repository within {}s: \
                     no snapshot was written. Is archive_command `cairn ... wal push %p` with this \
                     repository? (SELECT * FROM pg_stat_archiver shows its failures){}",
                    timeout.as_secs(),
                    if standby {
                        ". This server is a standby: its primary archives that file once it \
                         switches to the next one (set archive_timeout on the primary, or run \
                         SELECT pg_switch_wal() there)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn one_row<const N: usize>(rows: Vec<Vec<String>>, what: &str) -> Result<[String; N]> {
    let row = match <[Vec<String>; 1]>::try_from(rows) {
        Ok([row]) => row,
        Err(rows) => {
            return Err(Error::new(
                ErrorKind::CommandFailed,
                format!(
                    "PostgreSQL answered {what} with {} row(s), one was expected",
                    rows.len()
                ),
            ))
        }
    };
    <[String; N]>::try_from(row).map_err(|row| {
        Error::new(
            ErrorKind::CommandFailed,
            format!(
                "PostgreSQL answered {what} with {} value(s), {N} were expected",
                row.len()
            ),
        )
    })
}

/// The exclude patterns of a data directory at `dir`.
fn excludes(dir: &Path) -> Vec<String> {
    let base = globset::escape(&dir.display().to_string());
    let mut out: Vec<String> = EXCLUDED_CONTENTS
        .iter()
        .map(|d| format!("{base}/{d}/*"))
        .collect();
    out.extend(EXCLUDED_FILES.iter().map(|f| format!("{base}/{f}")));
    out.extend(EXCLUDED_ANYWHERE.iter().map(|p| (*p).to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_wal_file_is_read_from_a_standby_backup_label() {
        let label = "START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\n\
                     CHECKPOINT LOCATION: 0/5000060\nBACKUP METHOD: streamed\n\
                     BACKUP FROM: standby\nSTART TIME: 2026-12-07 08:00:00 UTC\n";
        assert_eq!(label_start_wal(label).unwrap(), "000000010000000000000005");
        assert!(label_start_wal("START WAL LOCATION: 0/5000028\n").is_err());
        assert!(label_start_wal("START WAL LOCATION: 0/5 (file ../x)\n").is_err());
    }

    #[test]
    fn the_excludes_leave_out_wal_and_server_state_but_keep_their_directories() {
        let dir = Path::new("/var/lib/postgresql/15/main");
        let m = archive::ExcludeMatcher::new(&excludes(dir)).unwrap();
        let out = |p: &str| m.is_excluded(Path::new(p), false);
        assert!(out(
            "/var/lib/postgresql/15/main/pg_wal/000000010000000000000003"
        ));
        assert!(out("/var/lib/postgresql/15/main/postmaster.pid"));
        assert!(out("/var/lib/postgresql/15/main/base/5/pgsql_tmp123.0"));
        assert!(!out("/var/lib/postgresql/15/main/pg_wal"));
        assert!(!out("/var/lib/postgresql/15/main/base/5/16384"));
        assert!(!out("/var/lib/postgresql/15/main/global/pg_control"));
    }
}
