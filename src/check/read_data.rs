//! The pack part of `check`: every pack's header, and for the packs chosen by `--read-data` or a subset,
//! the pack's hash and every blob decrypted, decompressed and verified against its id.
//!
//! Chosen packs are read one at a time, each whole and once, while the next one is being read; the blobs
//! of a pack (and its hash) are verified by all threads together, so no thread idles at the end on the
//! last big pack. Memory stays near two packs. Reports in pack order whatever the threads' order.

use std::collections::{HashMap, HashSet};

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

/// Index entries by pack, as read from the index files.
pub(super) type IndexEntries = HashMap<PackId, Vec<BlobEntry>>;

/// Checks the listed `packs` (name, size): the header of each against `index`, and all data of
/// those in `chosen`. One result per pack, in the order of `packs`.
pub(super) fn check_packs(
    repo: &IndexedRepository,
    packs: &[(String, u64)],
    chosen: &HashSet<PackId>,
    index: &IndexEntries,
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
    // Two buffers take turns: one is verified while the next pack is read into the other.
    let load = |id: &PackId, buf: &mut Vec<u8>| {
        repo.repo()
            .backend()
            .read_into(ObjectKind::Pack, &id.to_hex(), buf)
    };
    let (mut current, mut following) = (Vec::new(), Vec::new());
    let mut loaded = read.first().map(|(_, id)| load(id, &mut current));
    for (k, (i, id)) in read.iter().enumerate() {
        let this = loaded.take().unwrap_or_else(|| load(id, &mut current));
        let (next, checked) = rayon::join(
            || read.get(k + 1).map(|(_, id)| load(id, &mut following)),
            || match this {
                Ok(()) => verify_pack(repo, id, &current, index),
                Err(e) => {
                    let mut result = PackCheck::new(Some(*id));
                    result.read = true;
                    result.unreadable(e)
                }
            },
        );
        loaded = next;
        std::mem::swap(&mut current, &mut following);
        results[*i] = Some(checked);
    }
    results.into_iter().flatten().collect()
}

/// Checks the header of a pack whose data is not read.
fn check_header(repo: &IndexedRepository, name: &str, index: &IndexEntries) -> PackCheck {
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
            compare_with_index(&mut result, &id, &header, index.get(&id));
            result
        }
        Err(e) => result.unreadable(e),
    }
}

/// Verifies a whole pack held in memory: its hash and every blob, all threads sharing the work.
fn verify_pack(
    repo: &IndexedRepository,
    id: &PackId,
    bytes: &[u8],
    index: &IndexEntries,
) -> PackCheck {
    let key = repo.repo().key();
    let mut result = PackCheck::new(Some(*id));
    result.read = true;
    // Go on past a hash mismatch: opening each blob tells which of them are damaged.
    let entries = match parse_pack_header(key, id, bytes) {
        Ok(e) => e,
        Err(e) => {
            if PackId::hash_of(bytes) != *id {
                result
                    .errors
                    .push(format!("pack {id}: its content does not match its name"));
            }
            return result.unreadable(e);
        }
    };
    compare_with_index(&mut result, id, &entries, index.get(id));
    let reader = PackReader::new(repo.repo().backend(), key);
    let (hash, opened) = rayon::join(
        || PackId::hash_of(bytes),
        || {
            entries
                .par_iter()
                .map(|entry| reader.verify_from(id, bytes, entry).err())
                .collect::<Vec<_>>()
        },
    );
    if hash != *id {
        result
            .errors
            .push(format!("pack {id}: its content does not match its name"));
    }
    for (entry, failure) in entries.iter().zip(opened) {
        match failure {
            None => result.blobs_verified += 1,
            Some(e) => {
                result.bad_blobs.push((entry.id, e.to_string()));
                result.errors.push(e.to_string());
            }
        }
    }
    result
}

/// Compares a pack's header with the index entries naming the pack: every entry must agree in type,
/// offset, length and raw length, and each side must list the same blobs. A pack no index file names
/// is only noted by the caller (an interrupted backup leaves such packs); its blobs still count as
/// unindexed, so a snapshot that needs one is told to run `repair index`.
fn compare_with_index(
    result: &mut PackCheck,
    pack: &PackId,
    header: &[BlobEntry],
    indexed: Option<&Vec<BlobEntry>>,
) {
    let by_id: HashMap<BlobId, &BlobEntry> = header.iter().map(|e| (e.id, e)).collect();
    let describe = |e: &BlobEntry| {
        format!(
            "{:?} at offset {} length {} raw length {}",
            e.blob_type, e.offset, e.length, e.raw_length
        )
    };
    let mut seen: HashSet<BlobId> = HashSet::new();
    for entry in indexed.map(Vec::as_slice).unwrap_or_default() {
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
        if indexed.is_some() {
            result.errors.push(format!(
                "pack {pack}: blob {} is in the pack header but missing from the index; run `cairn repair index`",
                entry.id
            ));
        }
    }
}
