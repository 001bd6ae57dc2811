//! Index files in the repository (FORMAT.md §7): the one place that reads, verifies, writes and
//! batches them, for backup (the saver), prune, repair index, key re-encryption and the cache.
//!
//! An index file is named by the hash of its bytes, so reading one verifies the name before it
//! decodes; writing one names it the same way. What to write and when to remove the files a new
//! set replaces is the caller's protocol (FORMAT.md §11, §12), not this module's.

use crate::backend::{Backend, ObjectKind};
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::format::index_file::{IndexFile, PackEntries};
use crate::id::IndexId;

/// Blob entries per index file written, so that memory and file size stay bounded whoever writes.
pub const BLOBS_PER_FILE: usize = 100_000;

/// Verifies an index file's bytes against its name, then decodes them.
///
/// # Errors
/// `Corrupted` when the bytes do not match the name or do not decode.
pub fn decode(key: &MasterKey, name: &str, bytes: &[u8]) -> Result<IndexFile> {
    if IndexId::hash_of(bytes).to_hex() != name {
        return Err(Error::corrupted(format!(
            "index file {name}: its content does not match its name (damaged)"
        )));
    }
    IndexFile::decode(key, bytes).map_err(|e| e.context(format!("index file {name}")))
}

/// Reads, verifies and decodes the index file `name`.
///
/// # Errors
/// When it is missing, damaged or does not match its name.
pub fn read(backend: &dyn Backend, key: &MasterKey, name: &str) -> Result<IndexFile> {
    let bytes = backend.read(ObjectKind::Index, name)?;
    decode(key, name, &bytes)
}

/// Encodes and seals `file` and writes it under the name its bytes give; returns the name.
///
/// # Errors
/// When encoding or the write fails.
pub fn write(backend: &dyn Backend, key: &MasterKey, file: &IndexFile) -> Result<String> {
    let bytes = file.encode(key)?;
    let name = IndexId::hash_of(&bytes).to_hex();
    backend.write(ObjectKind::Index, &name, &bytes)?;
    Ok(name)
}

/// Gathers the entries of packs and writes an index file of them whenever [`BLOBS_PER_FILE`] wait:
/// for the commands that write a new set of index files (prune's rewrite, repair index,
/// re-encryption). Only writes: removing the files being replaced is the caller's job, after every
/// new file is written.
pub struct IndexWriter<'a> {
    backend: &'a dyn Backend,
    key: &'a MasterKey,
    batch: Vec<PackEntries>,
    blobs: usize,
    written: Vec<String>,
}

impl<'a> IndexWriter<'a> {
    /// A writer into `backend`, sealing with `key`.
    pub fn new(backend: &'a dyn Backend, key: &'a MasterKey) -> Self {
        IndexWriter {
            backend,
            key,
            batch: Vec::new(),
            blobs: 0,
            written: Vec::new(),
        }
    }

    /// Adds the entries of one pack; writes a file when the batch is full.
    ///
    /// # Errors
    /// When the write fails.
    pub fn push(&mut self, pack: PackEntries) -> Result<()> {
        self.blobs += pack.blobs.len();
        self.batch.push(pack);
        if self.blobs >= BLOBS_PER_FILE {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: std::mem::take(&mut self.batch),
        };
        self.blobs = 0;
        self.written.push(write(self.backend, self.key, &file)?);
        Ok(())
    }

    /// Writes the last batch; returns the names of every file written.
    ///
    /// # Errors
    /// When the write fails.
    pub fn finish(mut self) -> Result<Vec<String>> {
        self.flush()?;
        Ok(self.written)
    }
}
