//! The files of the local cache: created private to their owner (directories 0700, files 0600: the
//! cache lists every blob id of the repository), and every I/O error on a database file names the
//! file, so "No space left on device" says which disk filled.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Mode of cache directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of cache files.
pub const FILE_MODE: u32 = 0o600;

/// Creates the cache directory `dir` and its missing parents, private to the owner.
///
/// # Errors
/// As [`DirBuilder::create`].
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Writes a cache file whole: to a private temporary in the same directory (created when absent),
/// renamed over `path`, so a concurrent reader sees the old file or the new one, never a part.
///
/// # Errors
/// When the directory, the temporary or the rename fails.
pub fn store(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A redb storage on the file at `path` (created private to the owner when absent) whose errors
/// name the path.
///
/// # Errors
/// When the file cannot be opened or created (the error names it).
pub fn open(path: &Path) -> Result<NamedFile, redb::DatabaseError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| named(path, e))?;
    let inner = FileBackend::new(file)?;
    Ok(NamedFile {
        inner,
        path: path.to_path_buf(),
    })
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// redb's file storage, with the path added to its I/O errors.
#[derive(Debug)]
pub struct NamedFile {
    inner: FileBackend,
    path: PathBuf,
}

impl NamedFile {
    fn name<T>(&self, result: io::Result<T>) -> io::Result<T> {
        result.map_err(|e| named(&self.path, e))
    }
}

impl StorageBackend for NamedFile {
    fn len(&self) -> io::Result<u64> {
        self.name(self.inner.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.name(self.inner.read(offset, out))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.name(self.inner.set_len(len))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.name(self.inner.sync_data())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.name(self.inner.write(offset, data))
    }

    fn close(&self) -> io::Result<()> {
        self.name(self.inner.close())
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
