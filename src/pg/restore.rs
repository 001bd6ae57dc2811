//! `pg restore`: point-in-time recovery. Picks the newest base backup that ends before the target,
//! restores its data directory, and writes what PostgreSQL needs to replay the archived WAL up to
//! the target and promote: `backup_label` (and `tablespace_map`), `recovery.signal`, and the
//! recovery settings in `postgresql.auto.conf`. Refuses a target the repository cannot reach: before
//! the oldest base backup's end, past the newest archived WAL, or across a gap in it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::browse::{locate, TreeLoader};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{PgBackup, PgTablespace, Snapshot};
use crate::format::wal::{WalKind, WalName};
use crate::id::SnapshotId;
use crate::repo::IndexedRepository;
use crate::restore::{restore_from, RestoreOptions, RestoreProgress, RestoreRoot, RestoreStats};
use crate::wal::Catalog;

/// Where recovery stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay every archived WAL file.
    Latest,
    /// Stop before the first transaction that committed after this time.
    Time(DateTime<Utc>),
    /// Stop at a restore point made with `pg_create_restore_point(NAME)`.
    Name(String),
    /// Stop after this WAL position (an LSN, as a 64-bit number).
    Lsn(u64),
}

impl RecoveryTarget {
    /// A target as `pg restore --to` and the plan's `[drill] pitr` take it: `latest`, a time
    /// (local unless a zone is given), `name:POINT` or `lsn:X/Y`.
    ///
    /// # Errors
    /// `InvalidInput` for anything else.
    pub fn parse(text: &str) -> Result<RecoveryTarget> {
        Ok(match text {
            "latest" => RecoveryTarget::Latest,
            t => match (t.strip_prefix("name:"), t.strip_prefix("lsn:")) {
                (Some(name), _) => RecoveryTarget::Name(name.to_string()),
                (_, Some(lsn)) => RecoveryTarget::Lsn(parse_lsn(lsn)?),
                _ => RecoveryTarget::Time(crate::repo::select::parse_point_in_time(t)?),
            },
        })
    }
}

/// Parses an LSN as PostgreSQL prints it, `16/B374D848`.
///
/// # Errors
/// `InvalidInput` for anything else.
pub fn parse_lsn(text: &str) -> Result<u64> {
    let invalid = || {
        Error::invalid_input(format!(
            "{text:?} is not a WAL position (LSN) such as 16/B374D848"
        ))
    };
    let (high, low) = text.split_once('/').ok_or_else(invalid)?;
    let high = u32::from_str_radix(high, 16).map_err(|_| invalid())?;
    let low = u32::from_str_radix(low, 16).map_err(|_| invalid())?;
    Ok((u64::from(high) << 32) | u64::from(low))
}

/// An LSN as PostgreSQL prints it.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// How to restore.
#[derive(Clone, Debug)]
pub struct PitrOptions {
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// The command PostgreSQL runs to fetch WAL (`cairn ... wal fetch %f %p`).
    pub restore_command: String,
    /// The base backup to start from; default: the newest that ends before the target.
    pub base: Option<SnapshotId>,
    /// Turn WAL archiving off in the restored cluster (a drill or a copy must not archive into
    /// the production repository).
    pub archive_off: bool,
    /// Where tablespaces go: `(location in the backup, new directory)`. One not listed goes to
    /// `tablespaces_under/<oid>` when that is set, else back to its location.
    pub tablespace_mapping: Vec<(String, PathBuf)>,
    /// The directory under which unmapped tablespaces go (drills).
    pub tablespaces_under: Option<PathBuf>,
}

/// What a restore did.
#[derive(Debug)]
pub struct PitrOutcome {
    /// The base backup restored.
    pub base: SnapshotId,
    /// Its snapshot.
    pub snapshot: Snapshot,
    /// Files written.
    pub stats: RestoreStats,
    /// The settings written to `postgresql.auto.conf`.
    pub settings: Vec<(String, String)>,
    /// The newest archived WAL file of the base backup's timeline and when it was archived.
    pub newest_wal: Option<(WalName, DateTime<Utc>)>,
    /// Each tablespace's OID and where it was restored.
    pub tablespaces: Vec<(u32, PathBuf)>,
}

/// The base backups of the repository, oldest first.
///
/// # Errors
/// When the snapshots cannot be read.
pub fn base_backups(repo: &IndexedRepository) -> Result<Vec<(SnapshotId, Snapshot)>> {
    Ok(repo
        .repo()
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| s.postgres.is_some())
        .collect())
}

/// When a base backup ended: the earliest time it recovers to.
pub fn stop_time(pg: &PgBackup) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&pg.stop_time)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// Restores into `dir` (absent or empty) for recovery to `options.target`.
///
/// # Errors
/// `InvalidInput` when the target is out of reach (the message gives the range that is); as
/// [`restore_from`] otherwise.
pub fn restore(
    repo: &IndexedRepository,
    options: &PitrOptions,
    dir: &Path,
    progress: &dyn RestoreProgress,
) -> Result<PitrOutcome> {
    let backups = base_backups(repo)?;
    let (base, snapshot) = choose_base(&backups, options)?;
    let Some(pg) = snapshot.postgres.clone() else {
        return Err(Error::invalid_input(format!(
            "snapshot {} is not a PostgreSQL base backup",
            base.short()
        )));
    };
    if pg.server_version < 120_000 {
        return Err(Error::invalid_input(format!(
            "snapshot {} is of PostgreSQL {}: cairn writes recovery settings for PostgreSQL 12 and later",
            base.short(),
            pg.server_version
        )));
    }
    let catalog = Catalog::load(repo.repo())?;
    let newest_wal = check_wal(&catalog, &base, &pg, &options.target)?;
    // Every destination is checked before anything is written.
    let tablespaces = place_tablespaces(&pg, options)?;

    let loader = TreeLoader::uncached(repo);
    let source = Restored {
        repo,
        loader: &loader,
        base: &base,
        snapshot: &snapshot,
        progress,
    };
    let mut stats = source.directory(&pg.data_directory, dir)?;
    for (tablespace, dest) in &tablespaces {
        let more = source.directory(&tablespace.location, dest)?;
        stats.files += more.files;
        stats.dirs += more.dirs;
        stats.others += more.others;
        stats.bytes += more.bytes;
        stats.warnings.extend(more.warnings);
        link_tablespace(dir, tablespace.oid, dest)?;
    }
    let settings = recovery_settings(options);
    write_recovery_files(dir, &pg, &settings)?;
    Ok(PitrOutcome {
        base,
        snapshot,
        stats,
        settings,
        newest_wal,
        tablespaces: tablespaces
            .into_iter()
            .map(|(t, dest)| (t.oid, dest))
            .collect(),
    })
}

/// Where each tablespace of `pg` goes, checked to be absent or empty.
fn place_tablespaces(pg: &PgBackup, options: &PitrOptions) -> Result<Vec<(PgTablespace, PathBuf)>> {
    if let Some((old, _)) = options
        .tablespace_mapping
        .iter()
        .find(|(old, _)| !pg.tablespaces.iter().any(|t| t.location == *old))
    {
        let known: Vec<&str> = pg.tablespaces.iter().map(|t| t.location.as_str()).collect();
        return Err(Error::invalid_input(format!(
            "--tablespace-mapping {old}: the base backup has no tablespace there (it has: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    let mut out = Vec::new();
    for t in &pg.tablespaces {
        let mapped = options
            .tablespace_mapping
            .iter()
            .find(|(old, _)| *old == t.location)
            .map(|(_, new)| new.clone());
        let dest = mapped
            .or_else(|| {
                options
                    .tablespaces_under
                    .as_ref()
                    .map(|d| d.join(t.oid.to_string()))
            })
            .unwrap_or_else(|| PathBuf::from(&t.location));
        let dest = std::path::absolute(&dest).unwrap_or(dest);
        let occupied = fs::read_dir(&dest).is_ok_and(|mut d| d.next().is_some());
        if occupied || fs::symlink_metadata(&dest).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::invalid_input(format!(
                "tablespace {} goes to {}, which is not empty (the live cluster's?): give \
                 --tablespace-mapping {}=NEW_DIRECTORY",
                t.oid,
                dest.display(),
                t.location
            )));
        }
        out.push((t.clone(), dest));
    }
    Ok(out)
}

/// The base backup being restored.
struct Restored<'a> {
    repo: &'a IndexedRepository,
    loader: &'a TreeLoader<'a>,
    base: &'a SnapshotId,
    snapshot: &'a Snapshot,
    progress: &'a dyn RestoreProgress,
}

impl Restored<'_> {
    /// Restores the directory at `path` in the snapshot (the data directory or a tablespace's)
    /// into `dest`.
    fn directory(&self, path: &str, dest: &Path) -> Result<RestoreStats> {
        let components: Vec<Vec<u8>> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(|c| c.as_bytes().to_vec())
            .collect();
        let located = locate(self.loader, &self.snapshot.tree_id(), &components)?;
        let Some(tree) = located.tree else {
            return Err(Error::corrupted(format!(
                "snapshot {}: {path} is not a directory",
                self.base.short()
            )));
        };
        let root = RestoreRoot::Tree {
            tree,
            dir: located.node.as_ref(),
        };
        restore_from(
            self.repo,
            root,
            path.as_bytes(),
            dest,
            &RestoreOptions::default(),
            self.progress,
        )
    }
}

/// Makes `pg_tblspc/<oid>` in the restored data directory a link to `dest`, owned like the
/// directory, as PostgreSQL's own base backups leave it.
fn link_tablespace(dir: &Path, oid: u32, dest: &Path) -> Result<()> {
    let links = dir.join("pg_tblspc");
    fs::create_dir_all(&links)
        .map_err(|e| Error::io(ErrorKind::Other, "cannot create", &links, e))?;
    let link = links.join(oid.to_string());
    std::os::unix::fs::symlink(dest, &link)
        .map_err(|e| Error::io(ErrorKind::Other, "cannot create the link", &link, e))?;
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = fs::metadata(dir) {
        let _ = std::os::unix::fs::lchown(&link, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

/// The base backup to restore: the one asked for, else the newest that ended before the target.
fn choose_base(
    backups: &[(SnapshotId, Snapshot)],
    options: &PitrOptions,
) -> Result<(SnapshotId, Snapshot)> {
    if backups.is_empty() {
        return Err(Error::invalid_input(
            "the repository holds no PostgreSQL base backup: take one with `cairn pg backup`",
        ));
    }
    if let Some(id) = &options.base {
        return backups
            .iter()
            .find(|(b, _)| b == id)
            .cloned()
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "snapshot {} is not a PostgreSQL base backup",
                    id.short()
                ))
            });
    }
    let ends = |s: &Snapshot| s.postgres.as_ref().map(stop_time).unwrap_or_default();
    let mut sorted: Vec<&(SnapshotId, Snapshot)> = backups.iter().collect();
    sorted.sort_by_key(|(_, s)| ends(s));
    match &options.target {
        RecoveryTarget::Time(t) => sorted
            .iter()
            .rev()
            .find(|(_, s)| ends(s) <= *t)
            .map(|b| (*b).clone())
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "{} is before the end of the oldest base backup ({}, snapshot {}): the repository can recover to {} or later",
                    t.to_rfc3339(),
                    ends(&sorted[0].1).to_rfc3339(),
                    sorted[0].0.short(),
                    ends(&sorted[0].1).to_rfc3339()
                ))
            }),
        RecoveryTarget::Lsn(lsn) => sorted
            .iter()
            .rev()
            .find(|(_, s)| {
                s.postgres
                    .as_ref()
                    .and_then(|pg| parse_lsn(&pg.stop_lsn).ok())
                    .is_some_and(|stop| stop <= *lsn)
            })
            .map(|b| (*b).clone())
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "{} is before the end of the oldest base backup (snapshot {}): the repository can recover to {} or later",
                    format_lsn(*lsn),
                    sorted[0].0.short(),
                    sorted[0].1.postgres.as_ref().map(|pg| pg.stop_lsn.as_str()).unwrap_or("?")
                ))
            }),
        RecoveryTarget::Latest | RecoveryTarget::Name(_) => Ok(sorted[sorted.len() - 1].clone()),
    }
}

/// Checks that the archived WAL carries the base backup to consistency and on to the target;
/// returns the newest WAL file of its timeline with when it was archived.
fn check_wal(
    catalog: &Catalog,
    base: &SnapshotId,
    pg: &PgBackup,
    target: &RecoveryTarget,
) -> Result<Option<(WalName, DateTime<Utc>)>> {
    let size = pg.segment_size;
    let start = WalName::parse(&pg.start_wal)?;
    let stop = WalName::parse(&pg.stop_wal)?;
    let (Some(first), Some(last)) = (start.segment_number(size), stop.segment_number(size)) else {
        return Err(Error::corrupted(format!(
            "snapshot {}: its WAL positions are malformed",
            base.short()
        )));
    };
    // WAL another cluster wrote (an initdb or pg_upgrade since, or two clusters archiving into
    // one repository) cannot recover this backup: refused before PostgreSQL tries it.
    let foreign = catalog.files().find(|(name, file, _)| {
        name.kind() == WalKind::Segment
            && name.segment_number(size).is_some_and(|n| n >= first)
            && file
                .system_identifier
                .as_ref()
                .is_some_and(|id| *id != pg.system_identifier)
    });
    if let Some((name, file, _)) = foreign {
        return Err(Error::invalid_input(format!(
            "WAL file {name} was written by the cluster with system identifier {}, base backup {} by {}: \
             the repository holds the WAL of another cluster after this base backup's start, and recovery would fail or mix them",
            file.system_identifier.as_deref().unwrap_or("?"),
            base.short(),
            pg.system_identifier
        )));
    }
    for n in first..=last {
        let name = WalName::segment(start.timeline(), n, size);
        if catalog.file(&name).is_none() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "WAL file {name}, which base backup {} needs to be consistent, is not archived: this base backup cannot be restored (choose an older one with --base)",
                    base.short()
                ),
            ));
        }
    }
    // Segments of the backup's timeline after its end, in order, up to the first gap.
    let mut newest: Option<(WalName, DateTime<Utc>)> = None;
    let mut n = last;
    loop {
        let name = WalName::segment(start.timeline(), n, size);
        let pushed = catalog.entry(&name).map(|(_, record)| record.datetime());
        match pushed {
            Some(t) => newest = Some((name, t)),
            None => break,
        }
        let Some(next) = n.checked_add(1) else { break };
        n = next;
    }
    let later = catalog.files().any(|(name, _, _)| {
        name.kind() == WalKind::Segment
            && name.timeline() == start.timeline()
            && name.segment_number(size).is_some_and(|m| m > n)
    });
    let reach = newest.as_ref().map(|(_, t)| *t);
    if let RecoveryTarget::Lsn(lsn) = target {
        // Segment `n` is the first one not archived: the target must lie before it.
        if lsn / size.max(1) >= n {
            return Err(Error::invalid_input(format!(
                "cannot recover to {}: WAL file {} is not archived; the repository can recover from {} to the end of {}",
                format_lsn(*lsn),
                WalName::segment(start.timeline(), n, size),
                pg.stop_lsn,
                newest.as_ref().map_or(pg.stop_wal.clone(), |(name, _)| name.to_string())
            )));
        }
    } else if let RecoveryTarget::Time(t) = target {
        if reach.is_some_and(|r| r < *t) {
            let (name, at) = newest.clone().unwrap_or_else(|| (stop.clone(), Utc::now()));
            let why = if later {
                format!(
                    "WAL file {} is missing, so recovery can go no further than {name} (archived {})",
                    WalName::segment(start.timeline(), n, size),
                    at.to_rfc3339()
                )
            } else {
                format!(
                    "the newest archived WAL file is {name} (archived {}): later WAL is not in the repository (still in the server's pg_wal?)",
                    at.to_rfc3339()
                )
            };
            return Err(Error::invalid_input(format!(
                "cannot recover to {}: {why}; the repository can recover from {} to {}",
                t.to_rfc3339(),
                pg.stop_time,
                at.to_rfc3339()
            )));
        }
    } else if later {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "WAL file {} is missing while later ones of timeline {} are archived: recovery would stop there and promote, losing everything after it; recover to a time before it with --to",
                WalName::segment(start.timeline(), n, size),
                start.timeline()
            ),
        ));
    }
    Ok(newest)
}

/// The recovery settings for `options`.
fn recovery_settings(options: &PitrOptions) -> Vec<(String, String)> {
    let mut settings = vec![(
        "restore_command".to_string(),
        options.restore_command.clone(),
    )];
    match &options.target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Time(t) => settings.push((
            "recovery_target_time".into(),
            t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        )),
        RecoveryTarget::Name(name) => settings.push(("recovery_target_name".into(), name.clone())),
        RecoveryTarget::Lsn(lsn) => settings.push(("recovery_target_lsn".into(), format_lsn(*lsn))),
    }
    if options.target != RecoveryTarget::Latest {
        settings.push(("recovery_target_action".into(), "promote".into()));
    }
    settings.push(("recovery_target_timeline".into(), "latest".into()));
    if options.archive_off {
        settings.push(("archive_mode".into(), "off".into()));
    }
    settings
}

/// A setting's value as postgresql.conf quotes it.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn write_recovery_files(dir: &Path, pg: &PgBackup, settings: &[(String, String)]) -> Result<()> {
    let io = |what: &str, p: &Path, e| Error::io(ErrorKind::Other, what, p, e);
    let write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        fs::write(&path, text).map_err(|e| io("cannot write", &path, e))?;
        chown_like_dir(dir, &path);
        Ok(())
    };
    write("backup_label", &pg.backup_label)?;
    if !pg.tablespace_map.is_empty() {
        write("tablespace_map", &pg.tablespace_map)?;
    }
    write("recovery.signal", "")?;
    // A pg_wal that was a link to another disk must not lead into the live server's WAL.
    let wal = dir.join("pg_wal");
    if fs::symlink_metadata(&wal).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(&wal).map_err(|e| io("cannot replace", &wal, e))?;
    }
    let status = wal.join("archive_status");
    fs::create_dir_all(&status).map_err(|e| io("cannot create", &status, e))?;
    for p in [&wal, &status] {
        chown_like_dir(dir, p);
    }
    let conf: PathBuf = dir.join("postgresql.auto.conf");
    let mut text = format!(
        "\n# Added by cairn pg restore: recovery from the base backup that ended {} at {}.\n",
        pg.stop_time, pg.stop_lsn
    );
    for (key, value) in settings {
        text.push_str(&format!("{key} = {}\n", quoted(value)));
    }
    let mut file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&conf)
        .map_err(|e| io("cannot open", &conf, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| io("cannot write", &conf, e))?;
    chown_like_dir(dir, &conf);
    Ok(())
}

/// Gives `path` the owner of `dir` (the restored data directory, owned by the cluster's user when
/// restored as root), so that PostgreSQL can read and remove what cairn wrote.
fn chown_like_dir(dir: &Path, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = fs::metadata(dir) {
        let _ = nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(meta.uid())),
            Some(nix::unistd::Gid::from_raw(meta.gid())),
        );
    }
}
