//! Reads one file's content into content items: sparse regions become holes, data goes through chunker and saver.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};

use nix::unistd::{lseek, Whence};

use crate::chunker::{Batch, ChunkerParams, Chunks};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::ContentItem;
use crate::id::BlobType;
use crate::repo::BlobSaver;

use rayon::prelude::*;

use super::anchors::{AnchorCache, Sketcher, VersionAnchors};
use super::delta_bases::DeltaBases;
use crate::id::BlobId;

/// Bytes of chunks hashed, compressed and sealed together in parallel.
const BATCH_BYTES: usize = 8 << 20;

/// Largest first-batch buffer a thread keeps for the next file: most files are small, and a
/// kept buffer spares their reads an allocation; a big file's buffer is let go.
const SPARE_KEEP: usize = 1 << 20;

thread_local! {
    static SPARE: std::cell::Cell<Batch> = std::cell::Cell::new(Batch::default());
}

/// Turns streams into content items.
pub struct ContentReader<'a, 'r> {
    pub(crate) saver: &'a BlobSaver<'r>,
    pub(crate) chunker: ChunkerParams,
    pub(crate) zstd_level: i32,
    pub(crate) bytes_read: &'a AtomicU64,
    pub(crate) progress: &'a dyn super::BackupProgress,
    /// Where changed chunks find a base to be stored as deltas against: the parent snapshot's
    /// version of the content being read.
    pub(crate) delta_bases: Option<Mutex<DeltaBases>>,
    /// Computes anchors ([`super::anchors`]) under the repository's seed; none for content that
    /// never has a parent version (WAL segments).
    pub(crate) sketcher: Option<&'a Sketcher>,
    /// The anchors of the version being read, when kept for the next backup.
    pub(crate) recorded: Option<Mutex<VersionAnchors>>,
}

impl ContentReader<'_, '_> {
    /// Stores changed chunks as deltas against their old selves in `parent` (the content of the
    /// same file or stream in the parent snapshot) where that pays, found through the parent's
    /// anchors when `cache` kept them.
    pub fn with_parent(mut self, parent: Option<&[ContentItem]>, cache: &AnchorCache) -> Self {
        self.delta_bases = parent
            .and_then(|p| DeltaBases::new(p, cache.load(p)))
            .map(Mutex::new);
        self
    }

    /// Records the anchors of the version read, for [`ContentReader::keep_anchors`].
    pub fn recording_anchors(mut self, record: bool) -> Self {
        self.recorded = record.then(|| Mutex::new(VersionAnchors::default()));
        self
    }

    /// Keeps the recorded anchors in `cache` as those of `content`, the version read, replacing
    /// those of `parent`.
    pub fn keep_anchors(
        &self,
        cache: &AnchorCache,
        content: &[ContentItem],
        parent: Option<&[ContentItem]>,
    ) {
        if let Some(recorded) = &self.recorded {
            cache.store(
                content,
                &recorded.lock().unwrap_or_else(|p| p.into_inner()),
                parent,
            );
        }
    }

    fn skip_hole(&self, len: u64) {
        if let Some(bases) = &self.delta_bases {
            bases.lock().unwrap_or_else(|p| p.into_inner()).skip(len);
        }
    }

    /// Chunks and stores everything `source` yields.
    ///
    /// The first batch is cut on the calling thread; a source longer than that (a big file, a
    /// dump) is cut on a second thread while this one hashes, compresses and seals the previous
    /// batch, so chunking overlaps the parallel work instead of leaving cores idle between
    /// batches. Batch buffers go back to the cutting thread once stored and are filled again, so
    /// memory stays bounded by two batches and a long stream touches no fresh memory.
    ///
    /// # Errors
    /// `SourceIo` when reading fails; other kinds when the repository fails.
    pub fn read_stream<R: Read + Send>(
        &self,
        source: R,
        items: &mut Vec<ContentItem>,
    ) -> Result<()> {
        let mut chunks = self.chunker.chunks(source);
        let mut first = SPARE.take();
        let stored = match chunks.next_batch(&mut first, BATCH_BYTES) {
            Ok(true) => return self.store_rest(chunks, first, items),
            Ok(false) => self.store(&first, items),
            Err(e) => Err(e),
        };
        if first.capacity() <= SPARE_KEEP {
            SPARE.set(first);
        }
        stored
    }

    /// Stores `first`, then the rest of the stream cut on a thread of its own.
    fn store_rest<R: Read + Send>(
        &self,
        mut chunks: Chunks<R>,
        first: Batch,
        items: &mut Vec<ContentItem>,
    ) -> Result<()> {
        std::thread::scope(|s| {
            let (send, batches) = mpsc::sync_channel::<Result<Batch>>(0);
            let (give_back, spares) = mpsc::channel::<Batch>();
            s.spawn(move || loop {
                let mut batch = spares.try_recv().unwrap_or_default();
                let more = match chunks.next_batch(&mut batch, BATCH_BYTES) {
                    Ok(more) => more,
                    Err(e) => {
                        let _ = send.send(Err(e));
                        return;
                    }
                };
                // A closed channel means the consumer failed and stopped: stop reading too.
                if send.send(Ok(batch)).is_err() || !more {
                    return;
                }
            });
            self.store(&first, items)?;
            // Handed over from hand to hand (a rendezvous), the cutter fills one buffer while this
            // thread stores the other: cutting is far faster than hashing and compressing, so two
            // buffers keep both sides busy, and the first goes back to the cutter as the second.
            let _ = give_back.send(first);
            for batch in batches {
                let batch = batch?;
                self.store(&batch, items)?;
                // The cutter may have finished: then the buffer is simply dropped.
                let _ = give_back.send(batch);
            }
            Ok(())
        })
    }

    fn store(&self, batch: &Batch, items: &mut Vec<ContentItem>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let chunks = batch.chunk_slices();
        let ids = self.saver.save_many_against(
            BlobType::Data,
            &chunks,
            self.zstd_level,
            |ids, known| {
                let mut bases = self
                    .delta_bases
                    .as_ref()
                    .map(|b| b.lock().unwrap_or_else(|p| p.into_inner()));
                let sketches = self.sketch(&chunks, ids, known, bases.as_deref());
                match bases.as_mut() {
                    Some(bases) => {
                        let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
                        bases.propose(ids, &lens, known, &sketches)
                    }
                    None => vec![None; ids.len()],
                }
            },
        )?;
        for (id, chunk) in ids.into_iter().zip(chunks) {
            items.push(ContentItem::Data {
                id,
                len: chunk.len() as u32,
            });
        }
        self.bytes_read
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.progress.bytes(batch.len() as u64);
        Ok(())
    }

    /// The anchors of a batch's chunks where needed, in parallel: of each new chunk when the
    /// parent's anchors can place it, and of each chunk whose anchors are recorded but not known
    /// from the parent (whose unchanged chunks' anchors are copied). Empty where not needed.
    fn sketch(
        &self,
        chunks: &[&[u8]],
        ids: &[BlobId],
        known: &[bool],
        bases: Option<&DeltaBases>,
    ) -> Vec<Vec<u64>> {
        let Some(sketcher) = self.sketcher else {
            return Vec::new();
        };
        let lookup = bases.is_some_and(DeltaBases::has_anchors);
        let mut recorded = self
            .recorded
            .as_ref()
            .map(|r| r.lock().unwrap_or_else(|p| p.into_inner()));
        if !lookup && recorded.is_none() {
            return Vec::new();
        }
        // Only a recording copies: an unchanged chunk is never looked up.
        let copied: Vec<Option<&[u64]>> = if recorded.is_some() {
            ids.iter()
                .map(|id| bases.and_then(|b| b.parent_anchors(id)))
                .collect()
        } else {
            vec![None; ids.len()]
        };
        let sketches: Vec<Vec<u64>> = chunks
            .par_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let needed = (lookup && !known[i]) || (recorded.is_some() && copied[i].is_none());
                if needed {
                    sketcher.anchors(chunk)
                } else {
                    Vec::new()
                }
            })
            .collect();
        if let Some(recorded) = recorded.as_mut() {
            for (sketch, copied) in sketches.iter().zip(&copied) {
                recorded.push(copied.unwrap_or(sketch));
            }
        }
        sketches
    }

    /// Reads a regular file, skipping the holes of a sparse file.
    ///
    /// # Errors
    /// `SourceIo` when the file cannot be opened or read.
    pub fn read_file(&self, path: &Path) -> Result<Vec<ContentItem>> {
        let source_err =
            |what: &str, e: std::io::Error| Error::io(ErrorKind::SourceIo, what, path, e);
        let mut file = File::open(path).map_err(|e| source_err("cannot open", e))?;
        let meta = file.metadata().map_err(|e| source_err("cannot stat", e))?;
        let mut items = Vec::new();
        let looks_sparse = meta.size() > 0 && meta.blocks().saturating_mul(512) < meta.size();
        let regions = if looks_sparse {
            data_regions(&file, meta.size())
        } else {
            None
        };
        let Some(regions) = regions else {
            self.read_stream(&mut file, &mut items)
                .map_err(|e| e.context(path.display()))?;
            return Ok(items);
        };
        let mut pos = 0u64;
        for (start, end) in regions {
            if start > pos {
                items.push(ContentItem::Hole { len: start - pos });
                self.skip_hole(start - pos);
            }
            file.seek(SeekFrom::Start(start))
                .map_err(|e| source_err("cannot seek in", e))?;
            let before = items.len();
            self.read_stream((&mut file).take(end - start), &mut items)
                .map_err(|e| e.context(path.display()))?;
            let got: u64 = items[before..].iter().map(ContentItem::len).sum();
            pos = start + got;
            if got < end - start {
                // The file shrank while we read it: record what was there.
                return Ok(items);
            }
        }
        if meta.size() > pos {
            items.push(ContentItem::Hole {
                len: meta.size() - pos,
            });
        }
        Ok(items)
    }
}

/// The data regions of a file by SEEK_DATA/SEEK_HOLE, or `None` when the file system cannot tell.
fn data_regions(file: &File, size: u64) -> Option<Vec<(u64, u64)>> {
    let mut regions = Vec::new();
    let mut pos: i64 = 0;
    let size = i64::try_from(size).ok()?;
    while pos < size {
        let start = match lseek(file, pos, Whence::SeekData) {
            Ok(s) => s,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(_) => return None,
        };
        let end = lseek(file, start, Whence::SeekHole).ok()?.min(size);
        if end <= start {
            break;
        }
        regions.push((start as u64, end as u64));
        pos = end;
    }
    Some(regions)
}
