//! A repository in a local directory: atomic writes by temporary file, fsync and rename.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{object_path, Backend, ObjectKind};
use crate::error::{Error, ErrorKind, Result};

/// A repository rooted at a directory.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    root: PathBuf,
}

const SUBDIRS: [&str; 9] = [
    "keys",
    "data",
    "index",
    "snapshots",
    "locks",
    "pending",
    "verified",
    "wal",
    "tmp",
];

impl LocalBackend {
    /// A backend for the directory `root` (which may not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, kind: ObjectKind, name: &str) -> Result<PathBuf> {
        Ok(self.root.join(object_path(kind, name)?))
    }

    fn open(&self, kind: ObjectKind, name: &str) -> Result<(File, PathBuf)> {
        let path = self.path(kind, name)?;
        match File::open(&path) {
            Ok(f) => Ok((f, path)),
            Err(e) if e.kind() == IoKind::NotFound => {
                Err(super::missing(kind, name, &path.display().to_string()))
            }
            Err(e) => Err(Error::io(ErrorKind::Backend, "cannot open", &path, e)),
        }
    }
}

/// The modes of what the local backend creates (FORMAT.md §3): private to the owner (key files hold
/// what an offline attack on the password needs), unless `config` grants its group access, which new
/// files and directories then get too, so a repository shared with a group stays shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Modes {
    /// Of files.
    pub file: u32,
    /// Of directories.
    pub dir: u32,
}

impl Modes {
    /// Owner only.
    pub const PRIVATE: Modes = Modes {
        file: 0o600,
        dir: 0o700,
    };

    /// The modes for new objects of the repository at `root`, from the group bits of its `config`.
    fn of(root: &Path) -> Modes {
        let group = fs::metadata(root.join("config"))
            .map(|m| m.permissions().mode() & 0o060)
            .unwrap_or(0);
        let search = if group & 0o040 != 0 { 0o010 } else { 0 };
        Modes {
            file: Self::PRIVATE.file | group,
            dir: Self::PRIVATE.dir | group | search,
        }
    }
}

/// Creates `dir` and its missing parents with `mode`. The umask may take group bits away from
/// what `mkdir` creates, so a shared mode is set again (failing quietly on a directory someone
/// else owns).
fn create_dirs(dir: &Path, mode: u32) -> std::io::Result<()> {
    // `mkdir` fails with EEXIST when another writer created the shard a moment before; if a removal
    // of that shard's last pack then removes it again before the existence check, the error
    // stands although nothing is wrong: try again.
    let mut attempts = 0;
    loop {
        match DirBuilder::new().recursive(true).mode(mode).create(dir) {
            Err(e) if e.kind() == IoKind::AlreadyExists && attempts < RENAME_ATTEMPTS => {
                attempts += 1;
            }
            done => break done?,
        }
    }
    if mode != Modes::PRIVATE.dir {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode));
    }
    Ok(())
}

/// Packs at least this large are written past the page cache (see `super::direct`); smaller ones are
/// not worth the staging copy.
const DIRECT_MIN: usize = 256 << 10;

fn list_dir(dir: &Path, out: &mut Vec<(String, u64)>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(ErrorKind::Backend, "cannot list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(ErrorKind::Backend, "cannot list", dir, e))?;
        let meta = entry
            .metadata()
            .map_err(|e| Error::io(ErrorKind::Backend, "cannot stat", entry.path(), e))?;
        if meta.is_file() {
            if let Some(name) = entry.file_name().to_str() {
                out.push((name.to_string(), meta.len()));
            }
        }
    }
    Ok(())
}

/// How many times a write recreates a pack shard directory that a removal emptied and removed under it.
const RENAME_ATTEMPTS: usize = 10;

/// Renames `tmp` to `path` in `dir`, recreating `dir` when it vanished after the writer created it: the
/// removal of a shard's last pack removes the shard directory, also while another process writes a new
/// pack there.
fn rename_into(tmp: &Path, path: &Path, dir: &Path) -> std::io::Result<()> {
    for _ in 1..RENAME_ATTEMPTS {
        match fs::rename(tmp, path) {
            // The temporary is still there, so the directory is what was missing (it may be back
            // already, recreated by another writer).
            Err(e) if e.kind() == IoKind::NotFound && tmp.exists() => {
                create_dirs(dir, Modes::of(dir.parent().unwrap_or(dir)).dir)?
            }
            done => return done,
        }
    }
    fs::rename(tmp, path)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(ErrorKind::Backend, "cannot sync directory", dir, e))
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn has_config(&self) -> Result<bool> {
        match fs::metadata(self.root.join("config")) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == IoKind::NotFound || e.kind() == IoKind::NotADirectory => {
                Ok(false)
            }
            Err(e) => Err(Error::io(
                ErrorKind::Backend,
                "cannot access",
                &self.root,
                e,
            )),
        }
    }

    fn create(&self) -> Result<()> {
        if let Ok(entries) = fs::read_dir(&self.root) {
            // The empty subdirectories of an interrupted `init` or `sync` do not make the directory foreign.
            let is_layout = |e: &fs::DirEntry| {
                SUBDIRS.iter().any(|s| e.file_name() == *s)
                    && fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_none())
            };
            if entries.flatten().any(|e| !is_layout(&e)) {
                return Err(Error::invalid_input(format!(
                    "{} exists and is not empty; choose an empty or new directory for the repository",
                    self.root.display()
                )));
            }
        }
        for sub in SUBDIRS {
            let dir = self.root.join(sub);
            create_dirs(&dir, Modes::of(&self.root).dir)
                .map_err(|e| Error::io(ErrorKind::Backend, "cannot create", &dir, e))?;
        }
        sync_dir(&self.root)
    }

    fn list_all(&self, kind: ObjectKind) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        match kind {
            ObjectKind::Config => {
                if let Ok(m) = fs::metadata(self.root.join("config")) {
                    out.push(("config".to_string(), m.len()));
                }
            }
            ObjectKind::Pack => {
                for shard in self.pack_shards()?.unwrap_or_default() {
                    out.extend(self.list_pack_shard(&shard)?);
                }
            }
            ObjectKind::Key
            | ObjectKind::Index
            | ObjectKind::Snapshot
            | ObjectKind::Lease
            | ObjectKind::Pending
            | ObjectKind::Verified
            | ObjectKind::Wal => {
                list_dir(&self.root.join(kind.dir()), &mut out)?;
            }
        }
        out.sort();
        Ok(out)
    }

    fn pack_shards(&self) -> Result<Option<Vec<String>>> {
        let data = self.root.join("data");
        let entries = match fs::read_dir(&data) {
            Ok(d) => d,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(Some(Vec::new())),
            Err(e) => return Err(Error::io(ErrorKind::Backend, "cannot list", &data, e)),
        };
        let mut shards = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(ErrorKind::Backend, "cannot list", &data, e))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if let Some(name) = entry
                    .file_name()
                    .to_str()
                    .filter(|n| super::is_shard_name(n))
                {
                    shards.push(name.to_string());
                }
            }
        }
        shards.sort();
        Ok(Some(shards))
    }

    fn list_pack_shard(&self, shard: &str) -> Result<Vec<(String, u64)>> {
        super::check_shard(shard)?;
        let mut out = Vec::new();
        list_dir(&self.root.join("data").join(shard), &mut out)?;
        out.sort();
        Ok(out)
    }

    fn read_bounded_into(
        &self,
        kind: ObjectKind,
        name: &str,
        max: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let (file, path) = self.open(kind, name)?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(ErrorKind::Backend, "cannot stat", &path, e))?
            .len();
        if size > max {
            return Err(super::too_large(kind, name, size, max));
        }
        buf.clear();
        buf.reserve(size as usize);
        // The stat bounds the allocation; the take bounds a file that grows while it is read.
        file.take(max.saturating_add(1))
            .read_to_end(buf)
            .map_err(|e| Error::io(ErrorKind::Backend, "cannot read", &path, e))?;
        if buf.len() as u64 > max {
            return Err(super::too_large(kind, name, buf.len() as u64, max));
        }
        Ok(())
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let (mut file, path) = self.open(kind, name)?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(ErrorKind::Backend, "cannot stat", &path, e))?
            .len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(super::too_short(kind, name, Some(size), offset, len));
        }
        // Read into spare capacity, not a zeroed buffer: a restore of deltas reads every base
        // this way, one small range each.
        let mut out = Vec::with_capacity(len as usize);
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| (&mut file).take(len).read_to_end(&mut out))
            .map_err(|e| Error::io(ErrorKind::Backend, "cannot read", &path, e))?;
        if out.len() as u64 != len {
            return Err(super::too_short(
                kind,
                name,
                Some(offset + out.len() as u64),
                offset,
                len,
            ));
        }
        Ok(out)
    }

    fn size(&self, kind: ObjectKind, name: &str) -> Result<u64> {
        let (file, path) = self.open(kind, name)?;
        Ok(file
            .metadata()
            .map_err(|e| Error::io(ErrorKind::Backend, "cannot stat", &path, e))?
            .len())
    }

    fn modified(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let (file, path) = self.open(kind, name)?;
        let modified = file
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| Error::io(ErrorKind::Backend, "cannot stat", &path, e))?;
        Ok(Some(modified.into()))
    }

    fn write(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(kind, name)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let modes = Modes::of(&self.root);
        create_dirs(&dir, modes.dir)
            .map_err(|e| Error::io(ErrorKind::Backend, "cannot create", &dir, e))?;
        let tmp_dir = self.root.join("tmp");
        create_dirs(&tmp_dir, modes.dir)
            .map_err(|e| Error::io(ErrorKind::Backend, "cannot create", &tmp_dir, e))?;
        let suffix = hex::encode(crate::crypto::random_array::<8>()?);
        let tmp = tmp_dir.join(format!("{name}.{suffix}"));
        let result = (|| {
            let f = if kind == ObjectKind::Pack && bytes.len() >= DIRECT_MIN {
                super::direct::create_and_write(&tmp, bytes, Modes::PRIVATE.file)?
            } else {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(Modes::PRIVATE.file)
                    .open(&tmp)?;
                f.write_all(bytes)?;
                f
            };
            if modes.file != Modes::PRIVATE.file {
                // Shared with the group: set explicitly, whatever the umask.
                f.set_permissions(fs::Permissions::from_mode(modes.file))?;
            }
            f.sync_all()?;
            rename_into(&tmp, &path, &dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(ErrorKind::Backend, "cannot write", &path, e));
        }
        sync_dir(&dir)?;
        if kind == ObjectKind::Pack {
            // The shard directory itself may be new (created now, or again after a removal emptied
            // it): its entry in `data/` must be durable too, or a crash could lose the pack.
            sync_dir(dir.parent().unwrap_or(&self.root))?;
        }
        Ok(())
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let path = self.path(kind, name)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(Error::io(ErrorKind::Backend, "cannot remove", &path, e)),
        }
        if kind == ObjectKind::Pack {
            // Prune would otherwise leave empty shard directories behind. `remove_dir` removes only an
            // empty directory, atomically, so a pack another process renamed in meanwhile keeps it; a
            // writer that finds it gone recreates it (`rename_into`). Failing to remove it is harmless.
            if let Some(shard) = path.parent() {
                let _ = fs::remove_dir(shard);
            }
        }
        Ok(())
    }

    fn remove_stale_temporaries(&self, idle: std::time::Duration) -> Result<u64> {
        let dir = self.root.join("tmp");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(ErrorKind::Backend, "cannot list", &dir, e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(ErrorKind::Backend, "cannot list", &dir, e))?;
            let path = entry.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Renamed into place or removed by its writer meanwhile.
                Err(e) if e.kind() == IoKind::NotFound => continue,
                Err(e) => return Err(Error::io(ErrorKind::Backend, "cannot stat", &path, e)),
            };
            // A modification time in the future (another host's clock) counts as fresh.
            let idle_for = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or_default();
            if !meta.is_file() || idle_for < idle {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == IoKind::NotFound => {}
                Err(e) => return Err(Error::io(ErrorKind::Backend, "cannot remove", &path, e)),
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_the_last_pack_of_a_shard_removes_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        let (first, second) = (
            format!("ab{}", "01".repeat(31)),
            format!("ab{}", "02".repeat(31)),
        );
        b.write(ObjectKind::Pack, &first, b"one").unwrap();
        b.write(ObjectKind::Pack, &second, b"two").unwrap();
        let shard = dir.path().join("repo/data/ab");
        b.remove(ObjectKind::Pack, &first).unwrap();
        assert!(shard.is_dir(), "a shard that still holds a pack stays");
        b.remove(ObjectKind::Pack, &second).unwrap();
        assert!(!shard.exists(), "the emptied shard is removed");
        assert!(dir.path().join("repo/data").is_dir());
        assert!(b.list(ObjectKind::Pack).unwrap().is_empty());
        // Removing a pack that is already gone is not an error, and a shard is created again on write.
        b.remove(ObjectKind::Pack, &second).unwrap();
        b.write(ObjectKind::Pack, &first, b"again").unwrap();
        assert_eq!(b.read(ObjectKind::Pack, &first).unwrap(), b"again");
        // Other kinds keep their directories.
        b.write(ObjectKind::Index, &first, b"index").unwrap();
        b.remove(ObjectKind::Index, &first).unwrap();
        assert!(dir.path().join("repo/index").is_dir());
    }

    /// A writer whose shard directory is removed (its last pack deleted by another process) between
    /// creating the directory and renaming the pack into it still succeeds.
    #[test]
    fn writes_racing_the_removal_of_their_shard_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        std::thread::scope(|s| {
            for t in 0..2u8 {
                let b = &b;
                s.spawn(move || {
                    for i in 0..300u32 {
                        let name = format!("cd{t:02x}{i:08x}{}", "0".repeat(52));
                        b.write(ObjectKind::Pack, &name, b"pack").unwrap();
                        b.remove(ObjectKind::Pack, &name).unwrap();
                    }
                });
            }
        });
        assert!(b.list(ObjectKind::Pack).unwrap().is_empty());
        assert!(!dir.path().join("repo/data/cd").exists());
    }

    #[test]
    fn write_read_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        assert!(!b.has_config().unwrap());
        b.create().unwrap();
        let name = "ab".repeat(32);
        b.write(ObjectKind::Pack, &name, b"hello").unwrap();
        assert_eq!(b.list(ObjectKind::Pack).unwrap(), vec![(name.clone(), 5)]);
        assert_eq!(b.read_range(ObjectKind::Pack, &name, 1, 3).unwrap(), b"ell");
        assert_eq!(
            b.read_range(ObjectKind::Pack, &name, 3, 5)
                .unwrap_err()
                .kind(),
            ErrorKind::Corrupted
        );
        let gone = b.read(ObjectKind::Index, &name).unwrap_err();
        assert_eq!(gone.kind(), ErrorKind::NotFound);
        assert_eq!(gone.object().map(|o| o.name.as_str()), Some(name.as_str()));
        assert!(b.read(ObjectKind::Index, "../x").is_err());
        b.remove(ObjectKind::Pack, &name).unwrap();
        assert!(b.list(ObjectKind::Pack).unwrap().is_empty());
        assert!(fs::read_dir(dir.path().join("repo/tmp"))
            .unwrap()
            .next()
            .is_none());
    }
}
