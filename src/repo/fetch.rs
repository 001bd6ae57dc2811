//! The one way blobs are fetched in bulk: the blobs wanted from a pack are sorted by offset and
//! neighbours merged into ranges ([`push_merged`]), each range is read in one request, and every
//! blob in it is opened (verified against its id) and handed on in turn ([`read_range`]); a blob the
//! range fails to give (a missing or damaged pack) is read from another indexed copy. A delta's base
//! is rebuilt through the index ([`IndexedRepository::base_plaintext_in`]), its chain located
//! beforehand ([`Bases`]). Restore reads file contents
//! and trees this way.

use std::collections::HashMap;

use crate::backend::ObjectKind;
use crate::error::Result;
use crate::format::pack::BlobEntry;
use crate::id::{BlobId, BlobType, PackId};
use crate::index::BlobLocation;
use crate::pack::PackReader;

use super::IndexedRepository;

/// Blobs of a pack closer than this share a range: reading the gap costs less than another request
/// (a seek on disk, a round trip remotely).
pub const MAX_GAP: u64 = 256 << 10;

/// A range grows no longer than this (unless one blob alone is longer), which bounds a restore's
/// memory to about threads x this size, and splits big packs so that threads share them.
pub const MAX_RANGE: u64 = 8 << 20;

/// Deltas a range holds at most. A delta costs far more to open than its bytes say (its base
/// is read and decoded first), and restore spreads ranges over threads: a range of hundreds of
/// small deltas kept one thread busy while the other idled.
pub const MAX_DELTAS: usize = 16;

/// Where the links of the chains of a set of deltas are stored, located before any is read: a
/// restore of a month of nightly dumps rebuilds tens of thousands of bases, and locating each one
/// as it is needed cost an index transaction apiece. A base left out (not indexed, or deeper than
/// any chain may be) is located when it is read, which gives the usual error.
#[derive(Debug, Default)]
pub struct Bases {
    locations: HashMap<BlobId, BlobLocation>,
}

impl Bases {
    /// Locates every link below the deltas among `entries`, one index transaction per level of
    /// the chains (at most [`crate::delta::MAX_CHAIN`]).
    ///
    /// # Errors
    /// When the cache cannot be read.
    pub fn locate<'a>(
        repo: &IndexedRepository,
        entries: impl IntoIterator<Item = &'a BlobEntry>,
    ) -> Result<Self> {
        let mut bases = Bases::default();
        let mut level: Vec<BlobId> = entries
            .into_iter()
            .filter_map(|e| e.delta.map(|d| d.base))
            .collect();
        for _ in 0..crate::delta::MAX_CHAIN {
            level.sort_unstable();
            level.dedup();
            level.retain(|id| !bases.locations.contains_key(id));
            if level.is_empty() {
                break;
            }
            let found = repo.index().locate_many(&level, BlobType::Data)?;
            let mut next = Vec::new();
            for (id, location) in level.iter().zip(found) {
                if let Ok(location) = location {
                    next.extend(location.entry.delta.map(|d| d.base));
                    bases.locations.insert(*id, location);
                }
            }
            level = next;
        }
        Ok(bases)
    }

    /// Where `id` is stored, if it was located.
    pub fn get(&self, id: &BlobId) -> Option<&BlobLocation> {
        self.locations.get(id)
    }

    /// Links located.
    pub fn len(&self) -> usize {
        self.locations.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }
}

/// Bytes of a pack read at once, and the blobs among them that are needed (in pack order), each
/// with what the reader needs to know of it (`T`).
#[derive(Clone, Debug)]
pub struct PackRange<T> {
    /// The pack.
    pub pack: PackId,
    /// First byte read.
    pub offset: u64,
    /// Bytes read.
    pub length: u64,
    /// The needed blobs inside, by offset.
    pub blobs: Vec<T>,
}

/// Adds the blob at `entry` of `pack` (blobs come sorted by pack, then offset) to the last range of
/// `out` when it lies less than [`MAX_GAP`] after it and the range stays within [`MAX_RANGE`], else
/// starts a new range: reading a small gap costs less than another request.
pub fn push_merged<T>(out: &mut Vec<PackRange<T>>, pack: PackId, entry: &BlobEntry, item: T) {
    let start = u64::from(entry.offset);
    let end = start + u64::from(entry.length);
    if let Some(last) = out.last_mut().filter(|r| r.pack == pack) {
        let last_end = last.offset + last.length;
        let room = entry.delta.is_none() || last.blobs.len() < MAX_DELTAS;
        if start >= last_end && start - last_end < MAX_GAP && end - last.offset <= MAX_RANGE && room
        {
            last.length = end - last.offset;
            last.blobs.push(item);
            return;
        }
    }
    out.push(PackRange {
        pack,
        offset: start,
        length: end - start,
        blobs: vec![item],
    });
}

/// Reads `range` in one request and hands each blob to `each` in order: the item, and the
/// verified plaintext of the blob `entry_of(item)` names (an absolute entry in the pack), or why
/// neither the range nor another indexed copy gave it. A delta's base is rebuilt through the
/// locations of `bases` where they hold them.
///
/// # Errors
/// What `each` returns.
pub fn read_range<T>(
    repo: &IndexedRepository,
    range: &PackRange<T>,
    bases: &Bases,
    entry_of: impl Fn(&T) -> &BlobEntry,
    mut each: impl FnMut(&T, Result<Vec<u8>>) -> Result<()>,
) -> Result<()> {
    let bytes = repo.repo().backend().read_range(
        ObjectKind::Pack,
        &range.pack.to_hex(),
        range.offset,
        range.length,
    );
    let reader = PackReader::new(repo.repo().backend(), repo.repo().key());
    for item in &range.blobs {
        let mut relative = *entry_of(item);
        relative.offset -= range.offset as u32;
        let plain = match &bytes {
            Ok(bytes) => repo
                .base_plaintext_in(&relative, 0, bases)
                .and_then(|base| reader.open_from(&range.pack, bytes, &relative, base.as_deref())),
            Err(e) => Err(e.clone()),
        }
        .or_else(|e| repo.read_blob_elsewhere(&relative.id, relative.blob_type, &range.pack, e));
        each(item, plain)?;
    }
    Ok(())
}
