//! The local spool of WAL work, per repository location, outside the repository: markers of
//! files a push archived ahead of PostgreSQL's call for them, and segments fetched ahead of
//! recovery's call. Both spare a call the repository's opening (a key derivation and listings),
//! which keeps archiving and recovery at PostgreSQL's pace.
//!
//! It also journals files `wal push --queue-max` dropped until a record names them.
//!
//! Layout: `<cache root>/wal-spool/<first 32 hex of BLAKE3(location)>/{pushed,fetched}/<name>`
//! and `dropped.json`, private to the owner like the rest of the cache.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::format::wal::{WalDrop, WalName};

/// The journal of drops (JSON list of FORMAT.md §16's dropped-file objects) in the spool.
const DROP_JOURNAL: &str = "dropped.json";
/// The background archiver's last failure.
const ARCHIVER_ERROR: &str = "archiver-error";

/// The spool of one repository location.
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// The spool of the repository at `location` (as the user gave it) under `cache_root`.
    pub fn new(cache_root: &Path, location: &str) -> Spool {
        let hash = blake3::hash(location.as_bytes()).to_hex();
        Spool {
            dir: cache_root.join("wal-spool").join(&hash.as_str()[..32]),
        }
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Remembers that the file at `path` was archived as it is now (its size, modification time
    /// and inode), once its record is written.
    pub fn mark_pushed(&self, name: &WalName, path: &Path) -> Result<()> {
        let stamp = stamp(path)?;
        crate::index::cache_file::store(
            &self.dir.join("pushed").join(name.as_str()),
            stamp.as_bytes(),
        )
        .map_err(|e| Error::io(ErrorKind::Other, "cannot write the spool", &self.dir, e))
    }

    /// Whether a push archived the file at `path` as it is now, leaving the marker.
    pub fn is_pushed(&self, name: &WalName, path: &Path) -> bool {
        let marker = self.dir.join("pushed").join(name.as_str());
        fs::read_to_string(marker)
            .is_ok_and(|recorded| stamp(path).is_ok_and(|now| now == recorded))
    }

    /// The background archiver's lock: held by the one process that archives ahead; `None` when
    /// another holds it.
    pub fn lock_archiver(&self) -> Option<nix::fcntl::Flock<fs::File>> {
        self.lock("archiver.lock")
    }

    /// Whether a background archiver holds its lock now.
    pub fn archiver_running(&self) -> bool {
        self.dir.join("archiver.lock").exists() && self.lock_archiver().is_none()
    }

    /// Leaves the background archiver's failure for the calls waiting on it.
    pub fn set_archiver_error(&self, message: &str) {
        let text = format!(
            "{} {message}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let _ = crate::index::cache_file::store(&self.dir.join(ARCHIVER_ERROR), text.as_bytes());
    }

    /// The background archiver's last failure (its time, then its message), if any.
    pub fn archiver_error(&self) -> Option<String> {
        fs::read_to_string(self.dir.join(ARCHIVER_ERROR)).ok()
    }

    /// Forgets the background archiver's last failure.
    pub fn clear_archiver_error(&self) {
        let _ = fs::remove_file(self.dir.join(ARCHIVER_ERROR));
    }

    /// Whether a push archived the file at `path` as it is now; the marker is consumed (PostgreSQL
    /// asks once, then recycles the file).
    pub fn take_pushed(&self, name: &WalName, path: &Path) -> bool {
        let same = self.is_pushed(name, path);
        let _ = fs::remove_file(self.dir.join("pushed").join(name.as_str()));
        same
    }

    /// Adds drops to the journal of files dropped unarchived that no record names yet.
    pub fn journal_drops(&self, drops: &[WalDrop]) -> Result<()> {
        let mut all = self.journaled_drops();
        all.extend(drops.iter().cloned());
        self.write_journal(&all)
    }

    /// The drops no record names yet.
    pub fn journaled_drops(&self) -> Vec<WalDrop> {
        fs::read(self.dir.join(DROP_JOURNAL))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Removes from the journal the drops a written record now names.
    pub fn settle_drops(&self, recorded: &[WalDrop]) -> Result<()> {
        let left: Vec<WalDrop> = self
            .journaled_drops()
            .into_iter()
            .filter(|d| !recorded.contains(d))
            .collect();
        self.write_journal(&left)
    }

    fn write_journal(&self, drops: &[WalDrop]) -> Result<()> {
        let bytes = serde_json::to_vec(drops).map_err(|e| Error::invalid_input(e.to_string()))?;
        let io = |e| Error::io(ErrorKind::Other, "cannot write the spool", &self.dir, e);
        crate::index::cache_file::create_dir(&self.dir).map_err(io)?;
        // Synced before PostgreSQL hears the file is archived: a crash must not forget a drop.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, &bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(self.dir.join(DROP_JOURNAL))
            .map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Where a segment fetched ahead waits.
    pub fn fetched_path(&self, name: &WalName) -> PathBuf {
        self.dir.join("fetched").join(name.as_str())
    }

    /// Moves a segment fetched ahead to `dest`; false when none waits.
    pub fn take_fetched(&self, name: &WalName, dest: &Path) -> Result<bool> {
        let from = self.fetched_path(name);
        if !from.exists() {
            return Ok(false);
        }
        let io = |what: &str, p: &Path, e| Error::io(ErrorKind::Other, what, p, e);
        if fs::rename(&from, dest).is_err() {
            // Another file system: copy beside the destination, sync, rename.
            let dir = dest.parent().unwrap_or(Path::new("."));
            let tmp = tempfile::Builder::new()
                .prefix(".cairn-wal-")
                .tempfile_in(dir)
                .map_err(|e| io("cannot create a temporary file in", dir, e))?;
            fs::copy(&from, tmp.path()).map_err(|e| io("cannot copy to", tmp.path(), e))?;
            tmp.as_file()
                .sync_all()
                .map_err(|e| io("cannot write", tmp.path(), e))?;
            tmp.persist(dest)
                .map_err(|e| io("cannot rename a temporary file to", dest, e.error))?;
            let _ = fs::remove_file(&from);
        }
        Ok(true)
    }

    /// How many of the `count` segments after `name` (segments of `segment_size` bytes) wait in
    /// the spool, in a row from the next one.
    pub fn ready_ahead(&self, name: &WalName, segment_size: u64, count: usize) -> usize {
        let Some(number) = name.segment_number(segment_size) else {
            return count;
        };
        (1..=count as u64)
            .map_while(|k| number.checked_add(k))
            .map(|n| WalName::segment(name.timeline(), n, segment_size))
            .take_while(|next| self.fetched_path(next).exists())
            .count()
    }

    /// Whether a prefetch holds the lock now.
    pub fn prefetch_running(&self) -> bool {
        self.dir.join("prefetch.lock").exists() && self.lock_prefetch().is_none()
    }

    /// The prefetch lock: held by the one process that fetches ahead; `None` when another holds it.
    pub fn lock_prefetch(&self) -> Option<nix::fcntl::Flock<fs::File>> {
        crate::index::cache_file::create_dir(&self.dir.join("fetched")).ok()?;
        self.lock("prefetch.lock")
    }

    fn lock(&self, name: &str) -> Option<nix::fcntl::Flock<fs::File>> {
        crate::index::cache_file::create_dir(&self.dir).ok()?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(name))
            .ok()?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).ok()
    }

    /// Removes segments fetched ahead that recovery did not ask for within `idle`.
    pub fn sweep_fetched(&self, idle: std::time::Duration) {
        let Ok(entries) = fs::read_dir(self.dir.join("fetched")) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > idle));
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// What identifies a file's current version: size, modification time and inode.
pub(crate) fn stamp(path: &Path) -> Result<String> {
    let meta =
        fs::metadata(path).map_err(|e| Error::io(ErrorKind::SourceIo, "cannot read", path, e))?;
    Ok(format!(
        "{} {}.{:09} {}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    ))
}
