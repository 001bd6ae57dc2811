//! Writes index files in batches for the commands that replace the index (prune's rewrite, repair index).
//!
//! Only writes: removing the files being replaced is the caller's job, after every new file is written.

use crate::backend::ObjectKind;
use crate::error::Result;
use crate::format::index_file::{IndexFile, PackEntries};
use crate::id::IndexId;
use crate::repo::Repository;

/// Blob entries per written index file (as the saver writes them), so memory and file size stay bounded.
pub const INDEX_FILE_BLOBS: usize = 100_000;

/// Gathers pack entries and writes an index file whenever a batch is full.
pub struct IndexWriter<'r> {
    repo: &'r Repository,
    batch: Vec<PackEntries>,
    blobs: usize,
    written: Vec<String>,
}

impl<'r> IndexWriter<'r> {
    /// A writer into `repo`.
    pub fn new(repo: &'r Repository) -> Self {
        IndexWriter {
            repo,
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
        if self.blobs >= INDEX_FILE_BLOBS {
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
        let bytes = file.encode(self.repo.key())?;
        let name = IndexId::hash_of(&bytes).to_hex();
        self.repo
            .backend()
            .write(ObjectKind::Index, &name, &bytes)?;
        self.written.push(name);
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

/// How many files [`IndexWriter`] writes for `packs` (for dry runs).
pub fn files_needed(packs: &[PackEntries]) -> u64 {
    let mut files = 0;
    let mut blobs = 0;
    for (i, p) in packs.iter().enumerate() {
        blobs += p.blobs.len();
        if blobs >= INDEX_FILE_BLOBS || i + 1 == packs.len() {
            files += 1;
            blobs = 0;
        }
    }
    files
}
