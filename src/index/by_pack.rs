//! Blob entries by pack in a scratch database, for the commands that compare whole indexes with
//! pack headers (`check`, `repair index`). It lives in a temporary directory in the repository's
//! cache directory, not in memory: at a hundred million chunks the entries alone are several
//! gigabytes. Only the set of packs is kept in memory (one id per pack, a few hundred thousand at
//! most).

use std::collections::HashSet;
use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

use super::{decode_location, encode_location};
use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::BlobEntry;
use crate::id::{BlobId, PackId};

/// Key: pack id, offset (big-endian, so a pack's entries read back in pack order), blob id.
/// Value: the entry as the index cache encodes a location.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

/// Blob entries by pack.
pub(crate) struct EntriesByPack {
    db: Database,
    packs: HashSet<PackId>,
    // Removed with the database when check ends, however it ends.
    _dir: tempfile::TempDir,
}

impl EntriesByPack {
    /// An empty set in a new temporary directory below `cache_dir`.
    ///
    /// # Errors
    /// When the directory or the database cannot be made.
    pub(crate) fn new(cache_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(cache_dir)
            .map_err(|e| Error::io(ErrorKind::Other, "cannot create", cache_dir, e))?;
        let dir = tempfile::Builder::new()
            .prefix("scratch-entries-")
            .tempdir_in(cache_dir)
            .map_err(|e| {
                Error::io(
                    ErrorKind::Other,
                    "cannot create a directory in",
                    cache_dir,
                    e,
                )
            })?;
        let db = super::cached_db(&dir.path().join("entries.redb"))?;
        Ok(EntriesByPack {
            db,
            packs: HashSet::new(),
            _dir: dir,
        })
    }

    /// Adds `(pack, its blobs)` pairs (an index file's, or pack headers), in one transaction.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub(crate) fn add(
        &mut self,
        packs: impl IntoIterator<Item = (PackId, Vec<BlobEntry>)>,
    ) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        // A scratch copy, removed at the end: a crash loses nothing worth a sync.
        tx.set_durability(redb::Durability::None)
            .map_err(|e| Error::new(ErrorKind::Other, format!("scratch database: {e}")))?;
        {
            let mut table = tx.open_table(ENTRIES)?;
            for (pack, blobs) in packs {
                self.packs.insert(pack);
                for e in &blobs {
                    let value = encode_location(&pack, e);
                    table.insert(key(&pack, e).as_slice(), value.as_slice())?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every pack an index file names.
    pub(crate) fn packs(&self) -> &HashSet<PackId> {
        &self.packs
    }

    /// The entries naming `pack`, in offset order.
    ///
    /// # Errors
    /// When the database cannot be read or holds what this module did not write.
    pub(crate) fn get(&self, pack: &PackId) -> Result<Vec<BlobEntry>> {
        if !self.packs.contains(pack) {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for row in table.range(pack.0.as_slice()..)? {
            let (k, v) = row?;
            let k = k.value();
            if !k.starts_with(&pack.0) {
                break;
            }
            if k.len() != 68 {
                return Err(Error::corrupted(
                    "a scratch database of entries holds a foreign key",
                ));
            }
            let mut id = [0u8; 32];
            id.copy_from_slice(&k[36..]);
            out.push(decode_location(BlobId(id), v.value())?.entry);
        }
        Ok(out)
    }
}

impl std::fmt::Debug for EntriesByPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntriesByPack")
            .field("packs", &self.packs.len())
            .finish_non_exhaustive()
    }
}

fn key(pack: &PackId, e: &BlobEntry) -> [u8; 68] {
    let mut k = [0u8; 68];
    k[..32].copy_from_slice(&pack.0);
    k[32..36].copy_from_slice(&e.offset.to_be_bytes());
    k[36..].copy_from_slice(&e.id.0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::Delta;
    use crate::id::BlobType;

    fn entry(id: u8, offset: u32, delta: bool) -> BlobEntry {
        BlobEntry {
            blob_type: BlobType::Data,
            id: BlobId([id; 32]),
            offset,
            length: 50,
            raw_length: 40,
            delta: delta.then_some(Delta {
                base: BlobId([9; 32]),
                generation: 2,
            }),
        }
    }

    #[test]
    fn entries_come_back_by_pack_in_offset_order_and_the_scratch_goes() {
        let cache = tempfile::tempdir().unwrap();
        let (a, b) = (PackId([1; 32]), PackId([2; 32]));
        let mut entries = EntriesByPack::new(cache.path()).unwrap();
        entries
            .add([(a, vec![entry(7, 300, false), entry(5, 0, true)])])
            .unwrap();
        // A second index file naming the same pack (a repack's copy) adds to it.
        entries
            .add([
                (b, vec![entry(6, 0, false)]),
                (a, vec![entry(8, 100, false)]),
            ])
            .unwrap();
        assert_eq!(
            entries.get(&a).unwrap(),
            [
                entry(5, 0, true),
                entry(8, 100, false),
                entry(7, 300, false)
            ]
        );
        assert_eq!(entries.get(&b).unwrap(), [entry(6, 0, false)]);
        assert!(entries.get(&PackId([3; 32])).unwrap().is_empty());
        assert_eq!(entries.packs().len(), 2);
        drop(entries);
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    }
}
