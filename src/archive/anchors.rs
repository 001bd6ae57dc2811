//! Anchors: sampled hashes of a chunk's bytes, kept per version of a large file or stream in the
//! local cache, so that the next backup finds which old chunk a changed chunk's bytes came from
//! (FORMAT.md §11, "Anchors").
//!
//! Why: a database writes an updated row wherever there is room, so a changed chunk of a dump
//! often holds rows whose old versions sat in another chunk than the one at its place, and new
//! rows may repeat content from anywhere. Pairing by position alone stored such chunks whole; the
//! old chunk sharing the most anchors with the new one is a base that pays. Anchors are gear hashes
//! (a window of 32 bytes: shorter than most rows, so a row with one field changed keeps some) under a table derived from the repository's secret chunker seed, taken
//! where the hash's top bits are zero: content-defined, so an edit moves only the anchors near it,
//! and sparse (one per 4 KiB), so a version's anchors cost about 2 bytes per KiB on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::format::tree::ContentItem;

/// An anchor wherever the top this many bits of the rolling hash are zero: one per 4 KiB.
const ANCHOR_BITS: u32 = 12;
/// Most anchors kept for one chunk (a chunk of 4 MiB has this many on average); later ones are
/// dropped, which only makes the chunk harder to find.
pub const MAX_PER_CHUNK: usize = 1024;
/// Most anchors kept for one version (64 GiB of content on average; 128 MiB of anchors).
pub const MAX_PER_VERSION: usize = 1 << 24;
/// Fewest data chunks a version needs for its anchors to be kept: below, pairing by position
/// leaves little to find.
pub const MIN_CHUNKS: usize = 16;
/// Files at least this large keep anchors once the parent snapshot holds a version of them
/// ([`file_keeps_anchors`]; streams always do): hashing every byte once more costs nothing for the many small files of a tree, and
/// nothing for the first version of a large one, which most files never follow (a first backup
/// of 2.2 GB of system files, 1.46 GB of it in files over 8 MiB, took 4.5% longer when every
/// large file kept anchors). A changed file's next version takes the chunks at the same places as
/// bases, and keeps anchors for the versions after it.
pub const MIN_FILE_BYTES: u64 = 8 << 20;

/// Whether a file of `size` bytes keeps the anchors of the version read ([`MIN_FILE_BYTES`]):
/// `in_parent` when the parent snapshot holds a version of it.
pub fn file_keeps_anchors(size: u64, in_parent: bool) -> bool {
    size >= MIN_FILE_BYTES && in_parent
}
/// Anchors files not written or read for this long are removed: left by a backup that failed, or
/// by a file that is no longer backed up.
const UNUSED_FOR: Duration = Duration::from_secs(45 * 24 * 3600);

const MAGIC: &[u8; 16] = b"cairn-anchors-v1";
const HEADER: usize = 16 + 4 + 4;
const CHECKSUM: usize = 32;

/// Computes anchors under one repository's seed.
pub struct Sketcher {
    gear: [u64; 256],
}

impl Sketcher {
    /// The sketcher of a repository whose chunker seed is `seed`. The table differs from the
    /// chunker's, so anchors do not cluster at chunk boundaries.
    pub fn new(seed: u64) -> Self {
        let (table, _) = fastcdc::v2020::get_gear_with_seed(seed ^ 0x616e_6368_6f72_7331);
        let mut gear = [0u64; 256];
        for (slot, value) in gear.iter_mut().zip(table.iter()) {
            *slot = *value;
        }
        Sketcher { gear }
    }

    /// The anchors of `data`, in order, at most [`MAX_PER_CHUNK`].
    ///
    /// Shifted by two bits a byte, a byte's part of the hash is gone after 32 bytes (the window),
    /// so the hash at a position depends on the 32 bytes ending there only, and four parts of
    /// `data` are hashed side by side, each starting a window early: one hash chain waits on its
    /// previous step, four keep the core busy (the sequential loop ran at about 0.8 GB/s).
    pub fn anchors(&self, data: &[u8]) -> Vec<u64> {
        const LANES: usize = 4;
        let part = data.len().div_ceil(LANES).max(WINDOW);
        // Per lane: where hashing starts, where anchors may start, where the lane ends.
        let lanes: [(usize, usize, usize); LANES] = std::array::from_fn(|l| {
            let from = (l * part).min(data.len());
            let to = ((l + 1) * part).min(data.len());
            (from.saturating_sub(WINDOW - 1), from.max(WINDOW - 1), to)
        });
        let common = lanes
            .iter()
            .map(|&(start, _, to)| to - start)
            .min()
            .unwrap_or(0);
        let mut found: [Vec<u64>; LANES] = Default::default();
        let mut keep = |l: usize, position: usize, h: u64| {
            if h >> (64 - ANCHOR_BITS) == 0
                && position >= lanes[l].1
                && found[l].len() < MAX_PER_CHUNK
            {
                found[l].push(h);
            }
        };
        let gear = &self.gear;
        let lane = |l: usize| &data[lanes[l].0..lanes[l].0 + common];
        let mut h = [0u64; LANES];
        for (j, (((&b0, &b1), &b2), &b3)) in lane(0)
            .iter()
            .zip(lane(1))
            .zip(lane(2))
            .zip(lane(3))
            .enumerate()
        {
            h[0] = (h[0] << 2).wrapping_add(gear[usize::from(b0)]);
            h[1] = (h[1] << 2).wrapping_add(gear[usize::from(b1)]);
            h[2] = (h[2] << 2).wrapping_add(gear[usize::from(b2)]);
            h[3] = (h[3] << 2).wrapping_add(gear[usize::from(b3)]);
            // One test for the four: an anchor is rare.
            if h[0].min(h[1]).min(h[2]).min(h[3]) >> (64 - ANCHOR_BITS) == 0 {
                for (l, &hash) in h.iter().enumerate() {
                    keep(l, lanes[l].0 + j, hash);
                }
            }
        }
        for (l, hash) in h.iter_mut().enumerate() {
            let (start, _, to) = lanes[l];
            for (p, &b) in data.iter().enumerate().take(to).skip(start + common) {
                *hash = (*hash << 2).wrapping_add(gear[usize::from(b)]);
                keep(l, p, *hash);
            }
        }
        // Each lane keeps at most the cap (a run of one repeated byte may anchor everywhere).
        let mut out = found.concat();
        out.truncate(MAX_PER_CHUNK);
        out
    }
}

/// Bytes a hash covers: the first `WINDOW - 1` positions of a chunk have no anchor.
const WINDOW: usize = 32;

/// The anchors of each data chunk of one version of a file or stream, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionAnchors {
    /// Where each chunk's anchors end in `anchors`.
    ends: Vec<u32>,
    anchors: Vec<u64>,
}

impl VersionAnchors {
    /// Appends the next chunk's anchors; past [`MAX_PER_VERSION`] in all, chunks get none.
    pub fn push(&mut self, chunk: &[u64]) {
        let room = MAX_PER_VERSION - self.anchors.len();
        let chunk = &chunk[..chunk.len().min(room).min(MAX_PER_CHUNK)];
        self.anchors.extend_from_slice(chunk);
        // At most MAX_PER_VERSION (2^24) anchors: the end fits.
        self.ends.push(self.anchors.len() as u32);
    }

    /// Number of chunks.
    pub fn chunks(&self) -> usize {
        self.ends.len()
    }

    /// The anchors of chunk `ordinal` (none past the last chunk).
    pub fn of(&self, ordinal: usize) -> &[u64] {
        let Some(&end) = self.ends.get(ordinal) else {
            return &[];
        };
        let start = ordinal.checked_sub(1).map_or(0, |i| self.ends[i]);
        &self.anchors[start as usize..end as usize]
    }

    /// The first chunk holding each anchor.
    pub fn first_holders(&self) -> HashMap<u64, u32> {
        let mut map = HashMap::with_capacity(self.anchors.len());
        for ordinal in 0..self.chunks() {
            for &anchor in self.of(ordinal) {
                map.entry(anchor).or_insert(ordinal as u32);
            }
        }
        map
    }

    /// The file's bytes: magic, chunk and anchor counts (u32 LE), each chunk's count (u16 LE),
    /// the anchors (u64 LE), then the BLAKE3 hash of everything before it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 2 * self.chunks() + 8 * self.anchors.len() + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.chunks() as u32).to_le_bytes());
        out.extend_from_slice(&(self.anchors.len() as u32).to_le_bytes());
        for ordinal in 0..self.chunks() {
            // At most MAX_PER_CHUNK (1024) per chunk.
            out.extend_from_slice(&(self.of(ordinal).len() as u16).to_le_bytes());
        }
        for anchor in &self.anchors {
            out.extend_from_slice(&anchor.to_le_bytes());
        }
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        out
    }

    /// Reads what [`VersionAnchors::encode`] wrote. Cache bytes are not trusted: counts are checked
    /// against the length before anything is allocated, and the checksum before anything is used.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < HEADER + CHECKSUM || &bytes[..16] != MAGIC {
            return Err("not an anchors file of this version".into());
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM);
        if blake3::hash(body).as_bytes() != checksum {
            return Err("checksum mismatch (damaged or cut short)".into());
        }
        let count = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let (chunks, total) = (count(16) as usize, count(20) as usize);
        if total > MAX_PER_VERSION {
            return Err(format!("{total} anchors, more than {MAX_PER_VERSION}"));
        }
        let expected = chunks
            .checked_mul(2)
            .and_then(|c| c.checked_add(total * 8))
            .and_then(|c| c.checked_add(HEADER));
        if expected != Some(body.len()) {
            return Err(format!(
                "{} bytes do not hold {chunks} chunks and {total} anchors",
                bytes.len()
            ));
        }
        let mut version = VersionAnchors {
            ends: Vec::with_capacity(chunks),
            anchors: Vec::with_capacity(total),
        };
        let mut end = 0usize;
        for pair in body[HEADER..HEADER + 2 * chunks].chunks_exact(2) {
            let n = usize::from(u16::from_le_bytes([pair[0], pair[1]]));
            if n > MAX_PER_CHUNK {
                return Err(format!(
                    "a chunk with {n} anchors, more than {MAX_PER_CHUNK}"
                ));
            }
            end += n;
            if end > total {
                return Err("chunk counts exceed the anchor count".into());
            }
            version.ends.push(end as u32);
        }
        if end != total {
            return Err("chunk counts fall short of the anchor count".into());
        }
        for word in body[HEADER + 2 * chunks..].chunks_exact(8) {
            version
                .anchors
                .push(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        Ok(version)
    }
}

/// The name of a version's anchors file: a hash of its content list, so a file unchanged since it
/// was read keeps its anchors under the same name.
fn content_name(content: &[ContentItem]) -> String {
    let mut hasher = blake3::Hasher::new();
    for item in content {
        match item {
            ContentItem::Data { id, len } => {
                hasher.update(b"d");
                hasher.update(&id.0);
                hasher.update(&len.to_le_bytes());
            }
            ContentItem::Hole { len } => {
                hasher.update(b"h");
                hasher.update(&len.to_le_bytes());
            }
        }
    }
    hasher.finalize().to_hex().to_string()
}

fn data_chunks(content: &[ContentItem]) -> usize {
    content
        .iter()
        .filter(|i| matches!(i, ContentItem::Data { .. }))
        .count()
}

/// The anchors files of one repository's cache: `<cache dir>/<repo id>/anchors/<content hash>`.
/// Best effort: a file that cannot be read, written or trusted is as good as absent, and then
/// changed chunks are paired by position only.
pub struct AnchorCache {
    dir: PathBuf,
}

impl AnchorCache {
    /// The anchors files under `cache_dir`, the repository's directory in the local cache.
    pub fn new(cache_dir: &Path) -> Self {
        AnchorCache {
            dir: cache_dir.join("anchors"),
        }
    }

    /// The anchors of the version whose content is `content`, when kept and matching it (a file
    /// that is not is removed). None is looked for below [`MIN_CHUNKS`] data chunks: none was kept.
    pub fn load(&self, content: &[ContentItem]) -> Option<VersionAnchors> {
        let chunks = data_chunks(content);
        if chunks < MIN_CHUNKS {
            return None;
        }
        let path = self.dir.join(content_name(content));
        let bytes = std::fs::read(&path).ok()?;
        match VersionAnchors::decode(&bytes) {
            Ok(v) if v.chunks() == chunks => {
                // Read now: kept from the sweep for another while.
                let _ = std::fs::File::options()
                    .append(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                Some(v)
            }
            _ => {
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Keeps `anchors` as those of `content` (when it has enough chunks), and drops those of
    /// `replaced`, the version it was read after.
    pub fn store(
        &self,
        content: &[ContentItem],
        anchors: &VersionAnchors,
        replaced: Option<&[ContentItem]>,
    ) {
        if anchors.chunks() < MIN_CHUNKS || anchors.chunks() != data_chunks(content) {
            return;
        }
        let name = content_name(content);
        if crate::index::cache_file::store(&self.dir.join(&name), &anchors.encode()).is_err() {
            return;
        }
        if let Some(old) = replaced.map(content_name).filter(|old| *old != name) {
            let _ = std::fs::remove_file(self.dir.join(old));
        }
    }

    /// Removes anchors files unused for 45 days.
    pub fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > UNUSED_FOR));
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;
    use crate::test_bytes::hex_text as text;

    #[test]
    fn anchors_are_sparse_content_defined_and_keyed() {
        let sketcher = Sketcher::new(7);
        let data = text(1 << 20, 1);
        let all = sketcher.anchors(&data);
        // One per 4 KiB on average.
        assert!((150..400).contains(&all.len()), "{}", all.len());
        // Bytes moved elsewhere keep their anchors (away from the window at the cut).
        let moved = [text(777, 2), data[100_000..300_000].to_vec()].concat();
        let inner: Vec<u64> = sketcher.anchors(&moved);
        let shared = inner.iter().filter(|a| all.contains(a)).count();
        assert!(
            shared + 2 >= inner.len() && shared > 20,
            "{shared} of {}",
            inner.len()
        );
        // Another seed, other anchors.
        let other = Sketcher::new(8).anchors(&data);
        assert_eq!(other.iter().filter(|a| all.contains(a)).count(), 0);
    }

    /// The definition (FORMAT.md §8): one hash chain over every byte.
    fn anchors_one_by_one(sketcher: &Sketcher, data: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        let mut h = 0u64;
        for (i, &b) in data.iter().enumerate() {
            h = (h << 2).wrapping_add(sketcher.gear[usize::from(b)]);
            if h >> (64 - ANCHOR_BITS) == 0 && i >= WINDOW - 1 && out.len() < MAX_PER_CHUNK {
                out.push(h);
            }
        }
        out
    }

    #[test]
    fn four_lanes_find_the_anchors_one_chain_finds() {
        let sketcher = Sketcher::new(3);
        let data = text(10 << 20, 5);
        for len in [
            0,
            1,
            31,
            32,
            33,
            100,
            127,
            128,
            129,
            4096,
            65_537,
            1 << 20,
            9 << 20,
        ] {
            for start in [0, 1, 17] {
                let slice = &data[start..start + len];
                assert_eq!(
                    sketcher.anchors(slice),
                    anchors_one_by_one(&sketcher, slice),
                    "{len} bytes from {start}"
                );
            }
        }
        // A chunk of few distinct bytes anchors everywhere or nowhere: capped either way.
        let zeros = vec![0u8; 1 << 20];
        assert_eq!(
            sketcher.anchors(&zeros),
            anchors_one_by_one(&sketcher, &zeros)
        );
        assert!(sketcher.anchors(&zeros).len() <= MAX_PER_CHUNK);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_get_the_anchors_of_the_definition(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            seed in 0u64..4,
        ) {
            // Dense anchors make a short input meaningful: a seed whose table is mostly small
            // values is not needed, since equality holds for any table; but compare anyway.
            let sketcher = Sketcher::new(seed);
            proptest::prop_assert_eq!(sketcher.anchors(&data), anchors_one_by_one(&sketcher, &data));
        }
    }

    #[test]
    fn a_version_round_trips_and_bounds_its_chunks() {
        let mut version = VersionAnchors::default();
        version.push(&[1, 2, 3]);
        version.push(&[]);
        version.push(&vec![9; MAX_PER_CHUNK + 5]);
        assert_eq!(version.of(0), [1, 2, 3]);
        assert!(version.of(1).is_empty());
        assert_eq!(version.of(2).len(), MAX_PER_CHUNK);
        assert!(version.of(3).is_empty());
        let decoded = VersionAnchors::decode(&version.encode()).unwrap();
        assert_eq!(decoded, version);
        assert_eq!(decoded.first_holders()[&9], 2);
    }

    #[test]
    fn damaged_or_lying_files_are_refused_never_trusted() {
        let mut version = VersionAnchors::default();
        version.push(&[5, 6]);
        let good = version.encode();
        for cut in 0..good.len() {
            assert!(VersionAnchors::decode(&good[..cut]).is_err());
        }
        let mut flipped = good.clone();
        flipped[HEADER] ^= 1;
        assert!(VersionAnchors::decode(&flipped)
            .unwrap_err()
            .contains("checksum"));
        // Counts that lie, with a valid checksum: refused by the length check.
        let mut body = good[..good.len() - CHECKSUM].to_vec();
        body[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let checksum = *blake3::hash(&body).as_bytes();
        body.extend_from_slice(&checksum);
        assert!(VersionAnchors::decode(&body).is_err());
    }

    #[test]
    fn the_cache_keeps_a_version_under_its_content_and_drops_the_one_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AnchorCache::new(dir.path());
        let content = |n: u8| -> Vec<ContentItem> {
            (0..MIN_CHUNKS as u8)
                .map(|i| ContentItem::Data {
                    id: BlobId([i ^ n; 32]),
                    len: 100,
                })
                .collect()
        };
        let mut anchors = VersionAnchors::default();
        for i in 0..MIN_CHUNKS as u64 {
            anchors.push(&[i]);
        }
        cache.store(&content(0), &anchors, None);
        assert_eq!(cache.load(&content(0)), Some(anchors.clone()));
        cache.store(&content(1), &anchors, Some(&content(0)));
        assert_eq!(cache.load(&content(0)), None);
        assert_eq!(cache.load(&content(1)), Some(anchors.clone()));
        // Another content of the same name length but other chunk count is not trusted.
        assert_eq!(cache.load(&content(1)[..5]), None);
        // Too few chunks: not kept.
        let mut few = VersionAnchors::default();
        few.push(&[1]);
        cache.store(&content(2)[..1], &few, None);
        assert_eq!(cache.load(&content(2)[..1]), None);
        cache.sweep();
        assert_eq!(cache.load(&content(1)), Some(anchors.clone()));
        // A damaged file is not trusted, and is removed.
        let path = dir.path().join("anchors").join(content_name(&content(1)));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[30] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.load(&content(1)), None);
        assert!(!path.exists());
        // A file unused for longer than the sweep's age goes; a fresh one stays.
        cache.store(&content(3), &anchors, None);
        cache.store(&content(4), &anchors, None);
        let old = dir.path().join("anchors").join(content_name(&content(3)));
        std::fs::File::options()
            .append(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - UNUSED_FOR - Duration::from_secs(60))
            .unwrap();
        cache.sweep();
        assert!(!old.exists());
        assert_eq!(cache.load(&content(4)), Some(anchors));
    }
}
