//! The dedup filter: a blocked Bloom filter of every blob id in the index cache, kept in a file
//! beside it, so a backup asks redb only about ids the filter may hold.
//!
//! Why a file and not a structure built per process: building one means reading every key of the
//! cache (1.5 s at 10 M blobs, growing with the repository), which an unchanged re-backup would pay
//! every night; reading the file is one sequential read of 1.5 to 2 bytes per id. Why a Bloom
//! filter: it takes inserts in place (a backup adds its own blobs as it goes), which static
//! filters (xor, binary fuse) do not. Inserts mark their blocks dirty, and only those are written
//! back, before the cache commits the ids they stand for.
//!
//! Layout (FORMAT.md §11, "Local index cache"): a 64-byte header, then `blocks` blocks of 64 bytes.
//! An id picks its block from its first eight bytes and, in each of the block's eight 64-bit
//! words, one bit from six bits of its next six bytes. Ids are keyed BLAKE3 hashes, so their bytes
//! are already uniform: nothing is hashed again.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::cache_file;

const MAGIC: &[u8; 16] = b"cairn-dedup-v1\0\0";
const HEADER: usize = 64;
const BLOCK: usize = 64;
/// Bits per id when the filter is sized: 2 bytes per id, about 0.1% false positives.
const BITS_AT_BUILD: u64 = 16;
/// Bits per id at which it is full and rebuilt larger: 1.5 bytes per id, about 0.5%.
const BITS_WHEN_FULL: u64 = 12;
/// Ids a filter is sized for at least (128 KiB), so a small repository is not rebuilt at each
/// backup while it grows.
const MIN_IDS: u64 = 1 << 16;

/// An open filter file, held in memory.
pub(crate) struct DedupFilter {
    file: File,
    path: PathBuf,
    /// The header and the blocks, as in the file once [`DedupFilter::flush`] has run.
    map: Vec<u8>,
    blocks: u64,
    /// Blocks changed since the last flush.
    dirty: Vec<u32>,
}

impl DedupFilter {
    /// Opens the filter at `path` when it exists, is of this layout and carries `token` (the one
    /// the cache recorded when it last brought the filter up to date); `None` otherwise, and the
    /// caller builds a new one.
    ///
    /// # Errors
    /// When the file exists but cannot be opened or mapped.
    pub(crate) fn open(path: &Path, token: u64) -> io::Result<Option<Self>> {
        let mut file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(named(path, e)),
        };
        // The file is private to this cache, whose redb lock this process holds (another process
        // uses a private cache instead), so nobody else writes it meanwhile.
        let len = file.metadata().map_err(|e| named(path, e))?.len();
        if len < HEADER as u64 || usize::try_from(len).is_err() {
            return Ok(None);
        }
        let mut map = Vec::new();
        map.try_reserve_exact(len as usize)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        (&mut file)
            .take(len)
            .read_to_end(&mut map)
            .map_err(|e| named(path, e))?;
        let header = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().expect("8 bytes"));
        let blocks = header(24);
        let expected = blocks
            .checked_mul(BLOCK as u64)
            .and_then(|b| b.checked_add(HEADER as u64));
        let fits = u32::try_from(blocks).is_ok() && expected == Some(map.len() as u64);
        if &map[..16] != MAGIC || header(16) != token || blocks == 0 || !fits {
            return Ok(None);
        }
        Ok(Some(DedupFilter {
            file,
            path: path.to_path_buf(),
            map,
            blocks,
            dirty: Vec::new(),
        }))
    }

    /// Writes a new filter holding `ids` (about `count` of them) at `path`, through a temporary
    /// file renamed over it, and opens it.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub(crate) fn build(
        path: &Path,
        token: u64,
        count: u64,
        ids: impl IntoIterator<Item = io::Result<[u8; 32]>>,
    ) -> io::Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        cache_file::create_dir(dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(".dedup-filter-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(
                cache_file::FILE_MODE,
            ))
            .tempfile_in(dir)
            .map_err(|e| named(dir, e))?;
        // Past 2^32 blocks (137 G ids) the filter stops growing: more false positives, no misses.
        let blocks = (count.max(MIN_IDS) * BITS_AT_BUILD)
            .div_ceil(BLOCK as u64 * 8)
            .min(u64::from(u32::MAX));
        let len = HEADER + blocks as usize * BLOCK;
        let mut map = Vec::new();
        map.try_reserve_exact(len)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        map.resize(len, 0);
        map[..16].copy_from_slice(MAGIC);
        map[16..24].copy_from_slice(&token.to_le_bytes());
        map[24..32].copy_from_slice(&blocks.to_le_bytes());
        let mut filter = DedupFilter {
            file: tmp.as_file().try_clone().map_err(|e| named(dir, e))?,
            path: path.to_path_buf(),
            map,
            blocks,
            dirty: Vec::new(),
        };
        for id in ids {
            filter.insert(&id?);
        }
        filter.dirty.clear();
        filter
            .file
            .write_all_at(&filter.map, 0)
            .and_then(|()| filter.file.sync_data())
            .map_err(|e| named(dir, e))?;
        tmp.persist(path).map_err(|e| named(path, e.error))?;
        Ok(filter)
    }

    /// Whether `id` may be in the index: `false` is certain.
    pub(crate) fn may_hold(&self, id: &[u8; 32]) -> bool {
        let block = self.block(id);
        (0..8).all(|word| {
            let (byte, mask) = bit(id, word);
            block[byte] & mask != 0
        })
    }

    /// Adds `id`.
    pub(crate) fn insert(&mut self, id: &[u8; 32]) {
        let at = self.block_at(id);
        self.dirty.push(((at - HEADER) / BLOCK) as u32);
        for word in 0..8 {
            let (byte, mask) = bit(id, word);
            self.map[at + byte] |= mask;
        }
        let count = self.count() + 1;
        self.map[32..40].copy_from_slice(&count.to_le_bytes());
    }

    /// Whether it holds more ids than it was sized for, so false positives grow: the caller
    /// builds a larger one.
    pub(crate) fn is_full(&self) -> bool {
        self.count() > self.blocks * BLOCK as u64 * 8 / BITS_WHEN_FULL
    }

    /// Ids inserted since it was built (an id inserted twice counts twice).
    pub(crate) fn count(&self) -> u64 {
        u64::from_le_bytes(self.map[32..40].try_into().expect("8 bytes"))
    }

    /// Writes the changed blocks and the header to the file, and syncs it, before the cache
    /// commits the ids they stand for: a crash of the machine then never leaves the cache with an
    /// id the filter lacks.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        if dirty.len() as u64 > self.blocks / 16 {
            // Many blocks: one sequential write beats scattered ones.
            self.file.write_all_at(&self.map, 0)
        } else {
            dirty.sort_unstable();
            dirty.dedup();
            dirty
                .iter()
                .try_for_each(|&b| {
                    let at = HEADER + b as usize * BLOCK;
                    self.file.write_all_at(&self.map[at..at + BLOCK], at as u64)
                })
                .and_then(|()| self.file.write_all_at(&self.map[..HEADER], 0))
        }
        .and_then(|()| self.file.sync_data())
        .map_err(|e| named(&self.path, e))
    }

    fn block_at(&self, id: &[u8; 32]) -> usize {
        let first = u64::from_be_bytes(id[..8].try_into().expect("8 bytes"));
        // The high half of first * blocks: uniform over the blocks without a division.
        let block = ((u128::from(first) * u128::from(self.blocks)) >> 64) as usize;
        HEADER + block * BLOCK
    }

    fn block(&self, id: &[u8; 32]) -> &[u8] {
        let at = self.block_at(id);
        &self.map[at..at + BLOCK]
    }
}

/// The byte within a block and the bit within that byte which `id` sets in 64-bit word `word`:
/// six bits of the id's bytes 8..14, word after word.
fn bit(id: &[u8; 32], word: usize) -> (usize, u8) {
    let bits = u64::from_le_bytes(id[8..16].try_into().expect("8 bytes"));
    let pos = ((bits >> (6 * word)) & 63) as usize;
    (word * 8 + pos / 8, 1 << (pos % 8))
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Where the filter of the cache in `cache_dir` lives.
pub(crate) fn path_in(cache_dir: &Path) -> PathBuf {
    cache_dir.join("dedup.filter")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_ids(n: usize, seed: u8) -> Vec<[u8; 32]> {
        (0..n as u64)
            .map(|i| {
                let mut key = [0u8; 32];
                key[0] = seed;
                *blake3::keyed_hash(&key, &i.to_le_bytes()).as_bytes()
            })
            .collect()
    }

    #[test]
    fn every_inserted_id_is_held_and_few_others_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let n = 200_000;
        let stored = random_ids(n, 1);
        let filter =
            DedupFilter::build(&path, 7, n as u64, stored.iter().map(|id| Ok(*id))).unwrap();
        assert!(stored.iter().all(|id| filter.may_hold(id)));
        let others = random_ids(n, 2);
        let passed = others.iter().filter(|id| filter.may_hold(id)).count();
        // Sized at 16 bits per id: about 0.1% false positives.
        assert!(passed < n / 300, "{passed} of {n} absent ids passed");
        assert!(!filter.is_full());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            HEADER as u64 + n as u64 * 2
        );
    }

    #[test]
    fn a_filter_filled_to_its_limit_stays_under_one_percent_and_says_it_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let n = 100_000u64;
        let mut filter = DedupFilter::build(&path, 1, n, std::iter::empty()).unwrap();
        let limit = (n * BITS_AT_BUILD / BITS_WHEN_FULL) as usize;
        let stored = random_ids(limit, 3);
        for id in &stored {
            filter.insert(id);
        }
        assert!(!filter.is_full());
        let others = random_ids(100_000, 4);
        let passed = others.iter().filter(|id| filter.may_hold(id)).count();
        assert!(passed < 1_000, "{passed} of 100000 absent ids passed");
        filter.insert(&random_ids(1, 5)[0]);
        assert!(filter.is_full());
    }

    #[test]
    fn it_reopens_with_its_token_and_is_refused_with_another_or_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let ids = random_ids(1000, 6);
        {
            let mut filter = DedupFilter::build(&path, 42, 10, std::iter::empty()).unwrap();
            filter.insert(&ids[0]);
            filter.flush().unwrap();
            // A few blocks, then many: written block by block, then whole.
            for id in &ids {
                filter.insert(id);
            }
            filter.flush().unwrap();
        }
        let filter = DedupFilter::open(&path, 42).unwrap().expect("same token");
        assert!(ids.iter().all(|id| filter.may_hold(id)));
        assert_eq!(filter.count(), 1001);
        assert!(DedupFilter::open(&path, 43).unwrap().is_none());
        drop(filter);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(100).unwrap();
        assert!(DedupFilter::open(&path, 42).unwrap().is_none());
        assert!(DedupFilter::open(&dir.path().join("absent"), 42)
            .unwrap()
            .is_none());
    }
}
