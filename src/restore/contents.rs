//! Writing file contents by a [`ReadPlan`]: each range of a pack read once, each blob in it opened once and
//! written at every offset that needs it, ranges in parallel. Memory stays near threads x one range.
//!
//! A file is created by the first write to it (or afterwards, when it holds no data) and extended to its
//! full length then when it ends in a hole, so holes are never written and stay holes. With the last
//! write to a file, its metadata is applied through the open handle (unless `--verify` must read it first). Never writes bytes that failed verification; on failure,
//! every file left incomplete is removed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;

use super::plan::{ReadPlan, ReadRange};
use super::{io_err, metadata, RestoreProgress};
use crate::error::{Error, Result};
use crate::format::tree::{ContentItem, Node};
use crate::repo::{fetch, IndexedRepository};

/// One file being restored.
pub struct OutFile<'a> {
    path: &'a Path,
    /// Its length, holes included.
    len: u64,
    /// Whether writing its data leaves it shorter than `len` (it ends in a hole), so its length
    /// must be set: for every other file the last write sets it, and an `ftruncate` per file is
    /// a syscall per file saved.
    needs_length: bool,
    /// Set once the file exists at full length; an error message when it could not be created.
    created: OnceLock<std::result::Result<(), String>>,
    /// Blob writes still to come.
    pending: AtomicUsize,
    /// Metadata to apply through the open file right after its last write, if any.
    metadata: Option<&'a Node>,
    /// Set when that was done: a warning message when some of it failed.
    metadata_applied: OnceLock<std::result::Result<(), String>>,
}

impl<'a> OutFile<'a> {
    /// A file to restore at `path` with `content`; `metadata`, when given, is applied through the
    /// open file as soon as its last blob is written.
    pub fn new(path: &'a Path, content: &[ContentItem], metadata: Option<&'a Node>) -> Self {
        OutFile {
            path,
            len: content.iter().map(ContentItem::len).sum(),
            needs_length: matches!(content.last(), Some(ContentItem::Hole { .. })),
            created: OnceLock::new(),
            pending: AtomicUsize::new(0),
            metadata,
            metadata_applied: OnceLock::new(),
        }
    }

    /// What applying the metadata after the last write gave, if it was done.
    pub fn metadata_applied(&self) -> Option<&std::result::Result<(), String>> {
        self.metadata_applied.get()
    }

    /// The file open for writing, created (truncated, at full length) by the first caller.
    pub fn open(&self) -> Result<File> {
        let mut fresh = None;
        let created = self.created.get_or_init(|| {
            let made = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(self.path)
                .map_err(io_err("cannot create", self.path))
                .and_then(|f| {
                    // Extending without writing leaves every hole, trailing ones too, a hole.
                    if self.needs_length {
                        f.set_len(self.len)
                            .map_err(io_err("cannot set length of", self.path))?;
                    }
                    Ok(f)
                });
            made.map(|f| fresh = Some(f)).map_err(|e| e.to_string())
        });
        if let Some(f) = fresh {
            return Ok(f);
        }
        if let Err(message) = created {
            return Err(Error::new(crate::error::ErrorKind::Other, message.clone()));
        }
        OpenOptions::new()
            .write(true)
            .open(self.path)
            .map_err(io_err("cannot open", self.path))
    }

    /// Creates the file if no write did (it holds no data: empty, or holes only).
    pub fn ensure_exists(&self) -> Result<()> {
        if self.created.get().is_none() {
            drop(self.open()?);
        }
        Ok(())
    }

    /// Whether the file exists but misses some of its content.
    fn incomplete(&self) -> bool {
        self.created.get().is_some() && self.pending.load(Ordering::Relaxed) > 0
    }
}

/// Writes every blob of `plan` into `files` (indexed as in the plan), rebuilding deltas through
/// `bases`; returns the bytes written. On failure, removes every file that was created but is
/// incomplete.
///
/// # Errors
/// `Corrupted` when a pack is missing, short or a blob fails verification; I/O errors naming the file.
pub fn write_contents(
    repo: &IndexedRepository,
    plan: &ReadPlan,
    bases: &fetch::Bases,
    files: &[OutFile<'_>],
    progress: &dyn RestoreProgress,
) -> Result<u64> {
    for range in &plan.ranges {
        for blob in &range.blobs {
            for t in &blob.targets {
                files[t.file].pending.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let written = AtomicU64::new(0);
    let result = plan.ranges.par_iter().try_for_each(|range| {
        let n = write_range(repo, range, bases, files, progress)?;
        written.fetch_add(n, Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        files.par_iter().filter(|f| f.incomplete()).for_each(|f| {
            let _ = std::fs::remove_file(f.path);
        });
        return Err(e);
    }
    Ok(written.into_inner())
}

/// Reads one range and writes each of its blobs everywhere it goes.
fn write_range(
    repo: &IndexedRepository,
    range: &ReadRange,
    bases: &fetch::Bases,
    files: &[OutFile<'_>],
    progress: &dyn RestoreProgress,
) -> Result<u64> {
    let restoring = |path: &Path| format!("restoring {}", path.display());
    let mut written = 0;
    // Consecutive blobs mostly go to the same file: keep the last one open.
    let mut open: Option<(usize, File)> = None;
    fetch::read_range(
        repo,
        range,
        bases,
        |blob| &blob.entry,
        |blob, data| {
            // A pack that is missing or damaged may not be the blob's only copy: the fetch reads
            // another indexed copy, and the error stands only without one.
            let data = data.map_err(|e| {
                let path = blob
                    .targets
                    .first()
                    .map_or(Path::new(""), |t| files[t.file].path);
                e.context(restoring(path))
            })?;
            for t in &blob.targets {
                let out = &files[t.file];
                if data.len() != t.len as usize {
                    return Err(Error::corrupted(format!(
                        "{}: blob {} has {} bytes, the tree says {}",
                        restoring(out.path),
                        blob.entry.id,
                        data.len(),
                        t.len
                    )));
                }
                let file = match &open {
                    Some((i, f)) if *i == t.file => f,
                    _ => &open.insert((t.file, out.open()?)).1,
                };
                file.write_all_at(&data, t.offset)
                    .map_err(io_err("cannot write", out.path))?;
                // The last write: no later one can change the mtime set now.
                if out.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                    if let Some(node) = out.metadata {
                        let applied = metadata::apply_to_open_file(file, out.path, node);
                        let _ = out.metadata_applied.set(applied);
                    }
                }
                written += u64::from(t.len);
                progress.bytes(u64::from(t.len));
            }
            Ok(())
        },
    )?;
    Ok(written)
}
