//! Writes new blobs: dedup against the index, seal, fill packs, store packs, then index files (FORMAT.md §11 order).

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::blob::{
    compress_alone, seal_blob_into, seal_compressed_into, seal_delta_into, SCRATCH_KEEP,
};
use crate::error::Result;
use crate::format::index_file::{IndexFile, PackEntries};
use crate::format::pack::{BlobEntry, Delta};
use crate::id::{BlobId, BlobType, PackId};
use crate::index::BlobLocation;
use crate::pack::{FinishedPack, PackWriter};

use super::pack_upload::PackUploader;
use super::IndexedRepository;

/// How long a stored pack waits at most for the index file that names it, by default: what an
/// interrupted backup loses (its packs are reused by the next one once they are indexed), against
/// the number of index files a long backup writes (one a minute at most).
pub const INDEX_INTERVAL: Duration = Duration::from_secs(60);

/// What a saver added to the repository.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveStats {
    /// Blobs added.
    pub blobs: u64,
    /// Sealed bytes added to packs.
    pub bytes: u64,
    /// Packs written.
    pub packs: u64,
    /// Blobs added as deltas against an older chunk (FORMAT.md §6).
    pub deltas: u64,
    /// Changed chunks whose candidate base could not be read (damage `check` will name): they
    /// were stored whole.
    pub unreadable_bases: u64,
}

struct State {
    data: PackWriter,
    tree: PackWriter,
    // Blobs saved by this saver whose index file is not written yet (the on-disk index answers for the rest).
    seen: HashSet<BlobId>,
    pending: Vec<PackEntries>,
    pending_blobs: usize,
    /// When the oldest pack in `pending` was stored.
    oldest_pending: Option<Instant>,
    stats: SaveStats,
}

/// Adds blobs to a repository; thread-safe so compression and sealing can run in parallel.
pub struct BlobSaver<'r> {
    repo: &'r IndexedRepository,
    // Packs whose blobs count as absent: condemned by a prune (FORMAT.md §12) or being repacked.
    excluded: HashSet<PackId>,
    state: Mutex<State>,
    uploader: PackUploader,
    index_interval: Duration,
    // Counts what would be stored and writes nothing (`backup --dry-run`).
    dry_run: bool,
}

impl<'r> BlobSaver<'r> {
    pub(super) fn new(repo: &'r IndexedRepository, excluded: HashSet<PackId>) -> Self {
        let size = repo.repo().config().pack_size as usize;
        BlobSaver {
            repo,
            excluded,
            uploader: PackUploader::new(repo.repo().shared_backend()),
            state: Mutex::new(State {
                data: PackWriter::new(BlobType::Data, size),
                tree: PackWriter::new(BlobType::Tree, size),
                seen: HashSet::new(),
                pending: Vec::new(),
                pending_blobs: 0,
                oldest_pending: None,
                stats: SaveStats::default(),
            }),
            index_interval: INDEX_INTERVAL,
            dry_run: false,
        }
    }

    /// A saver that compresses and seals as usual, to count what would be stored, but writes no
    /// pack and no index file. It remembers every new blob id until it is dropped.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// Writes an index file for the packs stored so far once the oldest of them has waited
    /// `interval` (default [`INDEX_INTERVAL`]), so an interrupted run loses at most that much of
    /// its work: the next backup finds those packs in the index and does not store them again.
    pub fn with_index_interval(mut self, interval: Duration) -> Self {
        self.index_interval = interval;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave State half-updated in a way that matters: recover it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration of the repository written to (chunker sizes, compression levels).
    pub fn config(&self) -> &crate::format::config::Config {
        self.repo.repo().config()
    }

    /// Whether the blob is already stored or queued.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn is_known(&self, id: &BlobId) -> Result<bool> {
        Ok(self.known_many(std::slice::from_ref(id))?[0])
    }

    /// For each id, whether the blob is already stored (outside the excluded packs) or queued;
    /// the index is asked once for all ids that are not queued. A delta counts as stored only
    /// when every link of its chain is (FORMAT.md §6): reusing one whose base was lost would make
    /// the new snapshot depend on what no longer exists.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn known_many(&self, ids: &[BlobId]) -> Result<Vec<bool>> {
        let mut known: Vec<bool> = {
            let state = self.lock();
            ids.iter().map(|id| state.seen.contains(id)).collect()
        };
        let ask: Vec<BlobId> = ids
            .iter()
            .zip(&known)
            .filter(|(_, k)| !**k)
            .map(|(id, _)| *id)
            .collect();
        if ask.is_empty() {
            return Ok(known);
        }
        let mut found = self
            .repo
            .index()
            .lookup_many_mostly_new(&ask, &self.excluded)?
            .into_iter();
        for k in known.iter_mut().filter(|k| !**k) {
            *k = match found.next() {
                Some(Some(loc)) => match loc.entry.delta {
                    None => true,
                    Some(delta) => self
                        .repo
                        .index()
                        .chain(&delta.base, &self.excluded)?
                        .is_some(),
                },
                _ => false,
            };
        }
        Ok(known)
    }

    /// Stores `plaintext` unless a blob with its id exists; returns its id and whether it was new.
    ///
    /// Compression and sealing run outside the lock, so callers may call this from several threads.
    ///
    /// # Errors
    /// When sealing or writing a pack fails.
    pub fn save(&self, blob_type: BlobType, plaintext: &[u8]) -> Result<(BlobId, bool)> {
        let id = self.repo.repo().key().blob_id(plaintext);
        if self.is_known(&id)? {
            return Ok((id, false));
        }
        let level = self.repo.repo().config().zstd_level;
        Ok((id, self.store_new(blob_type, id, plaintext, level)?))
    }

    /// Stores a batch of blobs of one type in parallel and returns their ids in order: ids are
    /// hashed in parallel, looked up in one index transaction, and only unknown blobs are
    /// compressed (at `zstd_level`) and sealed.
    ///
    /// # Errors
    /// When the index cannot be read, or sealing or writing a pack fails.
    pub fn save_many<B: AsRef<[u8]> + Sync>(
        &self,
        blob_type: BlobType,
        blobs: &[B],
        zstd_level: i32,
    ) -> Result<Vec<BlobId>> {
        self.save_many_against(blob_type, blobs, zstd_level, |ids, _| vec![None; ids.len()])
    }

    /// [`BlobSaver::save_many`] where each new data blob may be stored as a delta against the
    /// base `bases` proposes for it (given the batch's ids and which are known), when that is
    /// markedly smaller ([`crate::delta`]).
    ///
    /// # Errors
    /// As [`BlobSaver::save_many`].
    pub fn save_many_against<B: AsRef<[u8]> + Sync>(
        &self,
        blob_type: BlobType,
        blobs: &[B],
        zstd_level: i32,
        bases: impl FnOnce(&[BlobId], &[bool]) -> Vec<Option<BlobId>>,
    ) -> Result<Vec<BlobId>> {
        let key = self.repo.repo().key();
        let ids: Vec<BlobId> = blobs.par_iter().map(|b| key.blob_id(b.as_ref())).collect();
        let known = self.known_many(&ids)?;
        let bases = bases(&ids, &known);
        blobs
            .par_iter()
            .zip(&ids)
            .zip(&known)
            .zip(&bases)
            .filter(|((_, known), _)| !**known)
            .try_for_each(|(((blob, id), _), base)| {
                let plaintext = blob.as_ref();
                match base.filter(|_| blob_type == BlobType::Data) {
                    Some(base) => self.store_against(*id, plaintext, base, zstd_level)?,
                    None => self.store_new(blob_type, *id, plaintext, zstd_level)?,
                };
                Ok::<(), crate::error::Error>(())
            })?;
        Ok(ids)
    }

    /// Stores a new data blob as a delta when `previous` (its likely older version) leads to a
    /// usable base ([`BlobSaver::choose_base`]) and the delta is markedly smaller than the blob
    /// compressed alone, else whole (from that compressed form when judging made it); false
    /// when another thread queued it first.
    fn store_against(
        &self,
        id: BlobId,
        plaintext: &[u8],
        previous: BlobId,
        zstd_level: i32,
    ) -> Result<bool> {
        if plaintext.len() < crate::delta::MIN_TARGET {
            return self.store_new(BlobType::Data, id, plaintext, zstd_level);
        }
        let Some(delta) = self.choose_base(&previous)? else {
            return self.store_new(BlobType::Data, id, plaintext, zstd_level);
        };
        let Ok(base_plain) = self.repo.read_blob(&delta.base, BlobType::Data) else {
            self.lock().stats.unreadable_bases += 1;
            return self.store_new(BlobType::Data, id, plaintext, zstd_level);
        };
        thread_local! {
            static FRAME: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
            static ALONE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
        }
        let mut frame = FRAME.take();
        let mut alone = ALONE.take();
        let mut compressed_alone = false;
        let worth = crate::delta::compress(
            &base_plain,
            plaintext,
            crate::delta::DELTA_LEVEL,
            &mut frame,
        )
        .is_ok()
            && crate::delta::pays(frame.len(), plaintext.len(), || {
                compressed_alone = compress_alone(plaintext, zstd_level, &mut alone).is_ok();
                compressed_alone.then_some(alone.len())
            });
        let result = if worth {
            let mut sealed = Vec::with_capacity(frame.len() + 64);
            let key = self.repo.repo().key();
            seal_delta_into(key, &id, &delta.base, &frame, &mut sealed).and_then(|()| {
                let entry = BlobEntry {
                    blob_type: BlobType::Data,
                    id,
                    offset: 0,
                    length: sealed.len() as u32,
                    raw_length: plaintext.len() as u32,
                    delta: Some(delta),
                };
                self.queue_sealed(&entry, &sealed)
            })
        } else if compressed_alone {
            self.store_compressed(BlobType::Data, id, plaintext, &alone)
        } else {
            self.store_new(BlobType::Data, id, plaintext, zstd_level)
        };
        if frame.capacity() <= SCRATCH_KEEP {
            FRAME.set(frame);
        }
        if alone.capacity() <= SCRATCH_KEEP {
            ALONE.set(alone);
        }
        result
    }

    /// The base for the next version of the chunk whose latest stored version is `previous`:
    /// skip-deltas (FORMAT.md §6). With `n` the new version's generation (one more than
    /// `previous`'s), the base is the member of `previous`'s chain of generation `n & (n - 1)`
    /// (`n` with its lowest set bit cleared), so a delta spans `lowbit(n)` versions and a chain
    /// holds `popcount(n)` deltas. `None` when a link of the chain is not stored outside the
    /// excluded packs (a condemned base is as good as absent) or the new chain would exceed
    /// [`crate::delta::MAX_WRITTEN_CHAIN`]: the blob is then stored whole and starts a new lineage.
    fn choose_base(&self, previous: &BlobId) -> Result<Option<Delta>> {
        // previous's chain, from previous down to its whole blob.
        let Some(chain) = self.repo.index().chain(previous, &self.excluded)? else {
            return Ok(None);
        };
        if chain[0].entry.blob_type != BlobType::Data {
            return Ok(None);
        }
        let generation_of = |l: &BlobLocation| l.entry.delta.map_or(0, |d| d.generation);
        let generation = generation_of(&chain[0]).saturating_add(1);
        let wanted = generation & (generation - 1);
        let at = chain
            .iter()
            .position(|l| generation_of(l) <= wanted)
            .unwrap_or(chain.len() - 1);
        // The chosen base has the rest of the chain below it.
        if chain.len() - at > crate::delta::MAX_WRITTEN_CHAIN {
            return Ok(None);
        }
        Ok(Some(Delta {
            base: chain[at].entry.id,
            generation,
        }))
    }

    /// Seals and queues a blob the index does not have; false when another thread queued it first.
    fn store_new(
        &self,
        blob_type: BlobType,
        id: BlobId,
        plaintext: &[u8],
        zstd_level: i32,
    ) -> Result<bool> {
        let key = self.repo.repo().key();
        self.seal_and_queue(blob_type, id, plaintext, |sealed| {
            seal_blob_into(key, blob_type, &id, plaintext, zstd_level, sealed)
        })
    }

    /// [`BlobSaver::store_new`] of a blob already compressed alone into `compressed`.
    fn store_compressed(
        &self,
        blob_type: BlobType,
        id: BlobId,
        plaintext: &[u8],
        compressed: &[u8],
    ) -> Result<bool> {
        let key = self.repo.repo().key();
        self.seal_and_queue(blob_type, id, plaintext, |sealed| {
            seal_compressed_into(key, blob_type, &id, plaintext, compressed, sealed)
        })
    }

    /// Queues the blob `seal` seals into a buffer this thread keeps.
    fn seal_and_queue(
        &self,
        blob_type: BlobType,
        id: BlobId,
        plaintext: &[u8],
        seal: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<bool> {
        thread_local! {
            // Taken out while in use, not borrowed: queueing may store a pack and write an index
            // file, and nothing there may find this thread's buffer still borrowed.
            static SEALED: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
        }
        let mut sealed = SEALED.take();
        let entry = BlobEntry {
            blob_type,
            id,
            offset: 0,
            length: 0,
            raw_length: plaintext.len() as u32,
            delta: None,
        };
        let queued = seal(&mut sealed).and_then(|()| self.queue_sealed(&entry, &sealed));
        if sealed.capacity() <= SCRATCH_KEEP {
            SEALED.set(sealed);
        }
        queued
    }

    /// Queues a blob that is already sealed (prune's repack copies blobs this way: the seal binds
    /// only the type and id, not the pack, so it stays valid in a new pack), with the type, id,
    /// raw length and base of `entry`. The caller has authenticated `sealed`; false when the blob
    /// is already stored or queued.
    ///
    /// # Errors
    /// When the index cannot be read or writing a pack fails.
    pub fn save_sealed(&self, entry: &BlobEntry, sealed: &[u8]) -> Result<bool> {
        if self.is_known(&entry.id)? {
            return Ok(false);
        }
        self.queue_sealed(entry, sealed)
    }

    fn queue_sealed(&self, entry: &BlobEntry, sealed: &[u8]) -> Result<bool> {
        let (blob_type, id) = (entry.blob_type, entry.id);
        let repo = self.repo.repo();
        let finished = {
            let mut state = self.lock();
            if !state.seen.insert(id) {
                return Ok(false);
            }
            state.stats.blobs += 1;
            state.stats.bytes += sealed.len() as u64;
            state.stats.deltas += u64::from(entry.delta.is_some());
            if self.dry_run {
                return Ok(true);
            }
            let writer = match blob_type {
                BlobType::Data => &mut state.data,
                BlobType::Tree => &mut state.tree,
            };
            // Only data packs fill their target; a tree pack would hold a whole pack's buffer.
            if blob_type == BlobType::Data && writer.is_idle() {
                if let Some(buffer) = self.uploader.spare_buffer() {
                    writer.reuse(buffer);
                }
            }
            writer.add(repo.key(), id, entry.raw_length, entry.delta, sealed)?
        };
        if let Some(pack) = finished {
            self.store_pack(pack.named())?;
        }
        Ok(true)
    }

    fn store_pack(&self, pack: FinishedPack) -> Result<()> {
        self.uploader.submit(pack)?;
        self.record_stored(self.uploader.stored())
    }

    /// Queues the entries of packs now stored for the next index file (never before the pack is
    /// stored: FORMAT.md §11), writing that file when enough entries wait.
    fn record_stored(&self, stored: Vec<Result<PackEntries>>) -> Result<()> {
        let mut first_error = None;
        let flush = {
            let mut state = self.lock();
            for result in stored {
                match result {
                    Ok(entries) => {
                        state.stats.packs += 1;
                        state.pending_blobs += entries.blobs.len();
                        state.pending.push(entries);
                        state.oldest_pending.get_or_insert_with(Instant::now);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            state.pending_blobs >= crate::index::files::BLOBS_PER_FILE
                || state
                    .oldest_pending
                    .is_some_and(|t| t.elapsed() >= self.index_interval)
        };
        if let Some(e) = first_error {
            return Err(e);
        }
        if flush {
            self.write_index()?;
        }
        Ok(())
    }

    fn write_index(&self) -> Result<()> {
        let packs = {
            let mut state = self.lock();
            state.pending_blobs = 0;
            state.oldest_pending = None;
            std::mem::take(&mut state.pending)
        };
        if packs.is_empty() {
            return Ok(());
        }
        let file = IndexFile {
            supersedes: Vec::new(),
            packs,
        };
        let repo = self.repo.repo();
        let name = crate::index::files::write(repo.backend(), repo.key(), &file)?;
        let files = [(name, file)];
        self.repo.index().insert_files(&files)?;
        // Now in the on-disk index: forget them here so memory does not grow with the backup.
        let mut state = self.lock();
        for pack in &files[0].1.packs {
            for blob in &pack.blobs {
                state.seen.remove(&blob.id);
            }
        }
        Ok(())
    }

    /// Writes the pending packs and the index file that lists them. Call before saving a snapshot.
    ///
    /// # Errors
    /// When a write fails.
    pub fn finish(&self) -> Result<SaveStats> {
        if self.dry_run {
            return Ok(self.lock().stats);
        }
        let (data, tree) = {
            let mut state = self.lock();
            let key = self.repo.repo().key();
            (state.data.finish(key)?, state.tree.finish(key)?)
        };
        for pack in [data, tree].into_iter().flatten() {
            self.uploader.submit(pack.named())?;
        }
        self.record_stored(self.uploader.finish())?;
        self.write_index()?;
        Ok(self.lock().stats)
    }
}
