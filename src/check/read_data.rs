//! The pack part of `check`: every pack's header, and for the packs chosen by `--read-data` or a subset,
//! the pack's hash and every blob decrypted, decompressed and verified against its id.
//!
//! Chosen packs are read one at a time, each whole and once, while the blobs of the packs before are
//! verified: every blob and every pack's hash is a task any thread takes, so no thread idles at the
//! end of one pack's big blobs. Memory stays near three packs. Reports in pack order whatever the
//! threads' order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rayon::prelude::*;

use crate::backend::ObjectKind;
use crate::error::Error;
use crate::format::pack::BlobEntry;
use crate::id::{BlobId, PackId};
use crate::pack::{parse_pack_header, read_pack_header, PackReader};
use crate::repo::IndexedRepository;

/// What checking one pack found.
pub(super) struct PackCheck {
    /// The pack's id, when its name is one.
    pub id: Option<PackId>,
    /// Whether its data was read.
    pub read: bool,
    /// Whether nothing of it can be read (missing, truncated, bad header).
    pub unreadable: bool,
    pub blobs_verified: u64,
    pub bad_blobs: Vec<(BlobId, String)>,
    /// Header entries no index file lists for this pack.
    pub unindexed: Vec<(BlobId, PackId)>,
    pub errors: Vec<String>,
}

impl PackCheck {
    fn new(id: Option<PackId>) -> Self {
        PackCheck {
            id,
            read: false,
            unreadable: false,
            blobs_verified: 0,
            bad_blobs: Vec::new(),
            unindexed: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn unreadable(mut self, e: Error) -> Self {
        self.unreadable = true;
        self.errors.push(e.to_string());
        self
    }
}

use crate::index::by_pack::EntriesByPack;

/// Checks the listed `packs` (name, size): the header of each against `index`, and all data of
/// those in `chosen`. One result per pack, in the order of `packs`.
pub(super) fn check_packs(
    repo: &IndexedRepository,
    packs: &[(String, u64)],
    chosen: &HashSet<PackId>,
    index: &EntriesByPack,
) -> Vec<PackCheck> {
    let id_of = |name: &str| PackId::from_hex(name).ok().filter(|id| chosen.contains(id));
    // Headers only: a few small reads each, so packs go in parallel.
    let mut results: Vec<Option<PackCheck>> = packs
        .par_iter()
        .map(|(name, _)| match id_of(name) {
            Some(_) => None,
            None => Some(check_header(repo, name, index)),
        })
        .collect();
    let read: Vec<(usize, PackId)> = packs
        .iter()
        .enumerate()
        .filter_map(|(i, (name, _))| id_of(name).map(|id| (i, id)))
        .collect();
    let ids: Vec<PackId> = read.iter().map(|(_, id)| *id).collect();
    for ((i, _), checked) in read.iter().zip(verify_packs(repo, &ids, index)) {
        results[*i] = Some(checked);
    }
    results.into_iter().flatten().collect()
}

/// Packs held in memory at once: one being read while the blobs of the two before it are verified.
const PACKS_IN_FLIGHT: usize = 3;

/// Reads and verifies `ids` whole, one result per pack in the order of `ids`.
///
/// The calling thread reads packs one after another; every blob (and each pack's hash) is a task of
/// its own for any thread, so the blobs of the next pack are verified while the last big blobs of
/// this one finish: waiting for a pack's slowest blob before starting the next left a core idle a
/// tenth of the time. A pack's buffer returns to the reader when its last task is done.
fn verify_packs(repo: &IndexedRepository, ids: &[PackId], index: &EntriesByPack) -> Vec<PackCheck> {
    let slots: Vec<Mutex<Option<PackCheck>>> = ids.iter().map(|_| Mutex::new(None)).collect();
    let (give_back, free) = mpsc::channel::<Vec<u8>>();
    // Only the reading thread receives; the mutex makes the receiver shareable with the scope.
    let free = Mutex::new(free);
    for _ in 0..PACKS_IN_FLIGHT {
        let _ = give_back.send(Vec::new());
    }
    rayon::scope(|scope| {
        for (id, slot) in ids.iter().zip(&slots) {
            let mut bytes = next_buffer(&free);
            let mut result = PackCheck::new(Some(*id));
            result.read = true;
            // Bounded by the largest pack this repository writes: a larger one is damage, and
            // reading it whole would hold it all in memory.
            let loaded = repo.repo().backend().read_bounded_into(
                ObjectKind::Pack,
                &id.to_hex(),
                repo.repo().config().max_pack_len(),
                &mut bytes,
            );
            // Go on past a hash mismatch: opening each blob tells which of them are damaged.
            let entries =
                match loaded.and_then(|()| parse_pack_header(repo.repo().key(), id, &bytes)) {
                    Ok(entries) => entries,
                    Err(e) => {
                        if !bytes.is_empty() && PackId::hash_of(&bytes) != *id {
                            result.errors.push(content_mismatch(id));
                        }
                        *lock(slot) = Some(result.unreadable(e));
                        let _ = give_back.send(bytes);
                        continue;
                    }
                };
            compare_with_index(&mut result, id, &entries, index);
            let job = Arc::new(PackJob {
                id: *id,
                bytes,
                entries,
                result,
                hash_differs: AtomicBool::new(false),
                failures: Mutex::new(Vec::new()),
                slot,
                give_back: give_back.clone(),
            });
            let hashing = Arc::clone(&job);
            scope.spawn(move |_| hashing.verify_hash());
            for n in 0..job.entries.len() {
                let blob = Arc::clone(&job);
                scope.spawn(move |_| blob.verify_blob(repo, n));
            }
        }
    });
    slots
        .into_iter()
        .zip(ids)
        .map(|(slot, id)| {
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| PackCheck::new(Some(*id)))
        })
        .collect()
}

/// A free pack buffer; while none is free, this thread verifies blobs instead of waiting.
fn next_buffer(free: &Mutex<mpsc::Receiver<Vec<u8>>>) -> Vec<u8> {
    let free = lock(free);
    loop {
        if let Ok(buffer) = free.try_recv() {
            return buffer;
        }
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            // Nothing queued here: the other threads are finishing the tasks that free a buffer.
            if let Ok(buffer) = free.recv_timeout(std::time::Duration::from_millis(1)) {
                return buffer;
            }
        }
    }
}

fn content_mismatch(id: &PackId) -> String {
    format!("pack {id}: its content does not match its name")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// One pack in memory being verified by several tasks; the last task to let go of it (its `Drop`)
/// records the result and hands the buffer back.
struct PackJob<'s> {
    id: PackId,
    bytes: Vec<u8>,
    entries: Vec<BlobEntry>,
    /// What the header and the index comparison found; the tasks' findings join it at the end.
    result: PackCheck,
    hash_differs: AtomicBool,
    /// Blobs that failed, by their place in `entries`.
    failures: Mutex<Vec<(usize, Error)>>,
    slot: &'s Mutex<Option<PackCheck>>,
    give_back: mpsc::Sender<Vec<u8>>,
}

impl PackJob<'_> {
    fn verify_hash(&self) {
        let differs = PackId::hash_of(&self.bytes) != self.id;
        self.hash_differs.store(differs, Ordering::Relaxed);
    }

    fn verify_blob(&self, repo: &IndexedRepository, n: usize) {
        let reader = PackReader::new(repo.repo().backend(), repo.repo().key());
        let entry = &self.entries[n];
        // A delta is proven by rebuilding it: its base comes through the index, from wherever it
        // is stored, and a failure names both.
        let verified = repo
            .base_plaintext(entry, 0)
            .and_then(|base| reader.verify_from(&self.id, &self.bytes, entry, base.as_deref()));
        if let Err(e) = verified {
            lock(&self.failures).push((n, e));
        }
    }
}

impl Drop for PackJob<'_> {
    fn drop(&mut self) {
        let mut result = std::mem::replace(&mut self.result, PackCheck::new(None));
        if *self.hash_differs.get_mut() {
            result.errors.push(content_mismatch(&self.id));
        }
        let mut failures =
            std::mem::take(self.failures.get_mut().unwrap_or_else(|p| p.into_inner()));
        failures.sort_by_key(|(n, _)| *n);
        result.blobs_verified = (self.entries.len() - failures.len()) as u64;
        for (n, e) in failures {
            result.bad_blobs.push((self.entries[n].id, e.to_string()));
            result.errors.push(e.to_string());
        }
        *lock(self.slot) = Some(result);
        // The reader may be done and gone: then the buffer is simply freed.
        let _ = self.give_back.send(std::mem::take(&mut self.bytes));
    }
}

/// Checks the header of a pack whose data is not read.
fn check_header(repo: &IndexedRepository, name: &str, index: &EntriesByPack) -> PackCheck {
    let id = match PackId::from_hex(name) {
        Ok(id) => id,
        Err(e) => {
            let mut result = PackCheck::new(None);
            result.errors.push(format!("data/{name}: {e}"));
            return result;
        }
    };
    let mut result = PackCheck::new(Some(id));
    match read_pack_header(repo.repo().backend(), repo.repo().key(), &id) {
        Ok(header) => {
            compare_with_index(&mut result, &id, &header, index);
            result
        }
        Err(e) => result.unreadable(e),
    }
}

/// Compares a pack's header with the index entries naming the pack: every entry must agree in type,
/// offset, length and raw length, and each side must list the same blobs. A pack no index file names
/// is only noted by the caller (an interrupted backup leaves such packs); its blobs still count as
/// unindexed, so a snapshot that needs one is told to run `repair index`.
fn compare_with_index(
    result: &mut PackCheck,
    pack: &PackId,
    header: &[BlobEntry],
    index: &EntriesByPack,
) {
    let indexed = match index.get(pack) {
        Ok(entries) => entries,
        Err(e) => {
            result.errors.push(format!(
                "pack {pack}: cannot read its index entries back: {e}"
            ));
            Vec::new()
        }
    };
    let by_id: HashMap<BlobId, &BlobEntry> = header.iter().map(|e| (e.id, e)).collect();
    let describe = |e: &BlobEntry| {
        format!(
            "{:?} at offset {} length {} raw length {}",
            e.blob_type, e.offset, e.length, e.raw_length
        )
    };
    let mut seen: HashSet<BlobId> = HashSet::new();
    for entry in &indexed {
        seen.insert(entry.id);
        let problem = match by_id.get(&entry.id) {
            Some(h) if *h == entry => continue,
            Some(h) => format!(
                "pack {pack}: the index entry of blob {} disagrees with the pack header (index: {}; header: {}); run `cairn repair index`",
                entry.id,
                describe(entry),
                describe(h)
            ),
            None => format!(
                "pack {pack}: the index lists blob {} but the pack header does not; run `cairn repair index`",
                entry.id
            ),
        };
        result.bad_blobs.push((entry.id, problem.clone()));
        result.errors.push(problem);
    }
    for entry in header.iter().filter(|e| !seen.contains(&e.id)) {
        result.unindexed.push((entry.id, *pack));
        if index.packs().contains(pack) {
            result.errors.push(format!(
                "pack {pack}: blob {} is in the pack header but missing from the index; run `cairn repair index`",
                entry.id
            ));
        }
    }
}
