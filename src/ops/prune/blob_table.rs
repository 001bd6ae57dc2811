//! Prune's per-blob table (best location, referenced or not), in memory for repositories of up to
//! [`MEMORY_BLOBS`] index entries and in a temporary redb database above that, so memory stays bounded.

use std::collections::HashMap;

use redb::{ReadableTable, Table, TableDefinition};

use crate::error::Result;
use crate::format::pack::{BlobEntry, Delta};
use crate::id::{BlobId, BlobType, PackId};
use crate::index::{decode_location, encode_location, BlobLocation};

/// Index entries up to which the table lives in memory. A row is 52 bytes (32 of id, 20 of
/// location) plus a control byte, in a hash table of at most 2^20 slots for 500,000 entries: at
/// most 55.6 MB, which keeps prune within its memory budget. The in-memory table spares the redb
/// inserts and lookups that made up a third of a prune's time.
pub const MEMORY_BLOBS: u64 = 500_000;

/// Blob id -> its best location: one in a live pack when there is one, else one in a condemned pack.
pub const LOCATIONS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("locations");
/// Blob ids referenced by some snapshot (trees included); doubles as the visited set of the walk.
pub const REFERENCED: TableDefinition<[u8; 32], ()> = TableDefinition::new("referenced");

/// What marking a blob as referenced found.
pub enum Mark {
    /// It was marked before (by this or another snapshot).
    Seen,
    /// First reference; the blob is in no index file.
    Missing,
    /// First reference, and where the blob lives.
    First(BlobLocation),
}

/// The operations prune needs from the table, whatever holds it.
pub trait BlobTable {
    /// The pack of the location recorded for `id`, if any.
    fn pack_of(&self, id: &BlobId) -> Result<Option<PackId>>;
    /// Records (or replaces) the location of `entry.id`.
    fn put(&mut self, pack: &PackId, entry: &BlobEntry) -> Result<()>;
    /// Marks `id` referenced.
    fn mark(&mut self, id: BlobId) -> Result<Mark>;
}

/// One blob's row in memory: the pack as an index into [`MemoryTable::packs`].
#[derive(Clone, Copy)]
struct Row {
    pack: u32,
    blob_type: BlobType,
    referenced: bool,
    offset: u32,
    length: u32,
    raw_length: u32,
}

/// The table in memory.
#[derive(Default)]
pub struct MemoryTable {
    rows: HashMap<BlobId, Row>,
    /// What each row stored as a delta was made against: few rows are, so they are kept apart
    /// from `rows`.
    deltas: HashMap<BlobId, Delta>,
    packs: Vec<PackId>,
    pack_numbers: HashMap<PackId, u32>,
    // Referenced ids with no location: remembered so each is reported once.
    missing: std::collections::HashSet<BlobId>,
}

impl MemoryTable {
    /// An empty table sized for `blobs` entries.
    pub fn with_capacity(blobs: usize) -> Self {
        MemoryTable {
            rows: HashMap::with_capacity(blobs),
            ..Default::default()
        }
    }

    /// Whether a snapshot references `id`.
    pub fn is_referenced(&self, id: &BlobId) -> bool {
        self.rows.get(id).is_some_and(|r| r.referenced)
    }

    fn location(&self, id: BlobId, row: &Row) -> BlobLocation {
        BlobLocation {
            pack: self.packs[row.pack as usize],
            entry: BlobEntry {
                blob_type: row.blob_type,
                id,
                offset: row.offset,
                length: row.length,
                raw_length: row.raw_length,
                delta: self.deltas.get(&id).copied(),
            },
        }
    }
}

impl BlobTable for MemoryTable {
    fn pack_of(&self, id: &BlobId) -> Result<Option<PackId>> {
        Ok(self.rows.get(id).map(|r| self.packs[r.pack as usize]))
    }

    fn put(&mut self, pack: &PackId, entry: &BlobEntry) -> Result<()> {
        let number = *self.pack_numbers.entry(*pack).or_insert_with(|| {
            self.packs.push(*pack);
            (self.packs.len() - 1) as u32
        });
        self.rows.insert(
            entry.id,
            Row {
                pack: number,
                blob_type: entry.blob_type,
                referenced: false,
                offset: entry.offset,
                length: entry.length,
                raw_length: entry.raw_length,
            },
        );
        match entry.delta {
            Some(delta) => self.deltas.insert(entry.id, delta),
            None => self.deltas.remove(&entry.id),
        };
        Ok(())
    }

    fn mark(&mut self, id: BlobId) -> Result<Mark> {
        let Some(row) = self.rows.get_mut(&id) else {
            return Ok(if self.missing.insert(id) {
                Mark::Missing
            } else {
                Mark::Seen
            });
        };
        if row.referenced {
            return Ok(Mark::Seen);
        }
        row.referenced = true;
        let row = *row;
        Ok(Mark::First(self.location(id, &row)))
    }
}

/// The table's two redb tables, open in one write transaction of the temporary database.
pub struct DiskTable<'t> {
    /// See [`LOCATIONS`].
    pub locations: Table<'t, [u8; 32], &'static [u8]>,
    /// See [`REFERENCED`].
    pub referenced: Table<'t, [u8; 32], ()>,
}

impl BlobTable for DiskTable<'_> {
    fn pack_of(&self, id: &BlobId) -> Result<Option<PackId>> {
        match self.locations.get(id.0)? {
            None => Ok(None),
            Some(raw) => Ok(Some(decode_location(*id, raw.value())?.pack)),
        }
    }

    fn put(&mut self, pack: &PackId, entry: &BlobEntry) -> Result<()> {
        self.locations
            .insert(entry.id.0, encode_location(pack, entry).as_slice())?;
        Ok(())
    }

    fn mark(&mut self, id: BlobId) -> Result<Mark> {
        if self.referenced.insert(id.0, ())?.is_some() {
            return Ok(Mark::Seen);
        }
        match self.locations.get(id.0)? {
            None => Ok(Mark::Missing),
            Some(raw) => Ok(Mark::First(decode_location(id, raw.value())?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, offset: u32) -> BlobEntry {
        BlobEntry {
            blob_type: BlobType::Data,
            id: BlobId([n; 32]),
            offset,
            length: 100,
            raw_length: 200,
            delta: None,
        }
    }

    #[test]
    fn memory_table_marks_each_blob_once_and_reports_a_missing_one_once() {
        let mut t = MemoryTable::default();
        let pack = PackId([9; 32]);
        t.put(&pack, &entry(1, 10)).unwrap();
        assert_eq!(t.pack_of(&BlobId([1; 32])).unwrap(), Some(pack));
        assert!(!t.is_referenced(&BlobId([1; 32])));
        match t.mark(BlobId([1; 32])).unwrap() {
            Mark::First(loc) => assert_eq!(
                loc,
                BlobLocation {
                    pack,
                    entry: entry(1, 10)
                }
            ),
            _ => panic!("first reference not reported as first"),
        }
        assert!(matches!(t.mark(BlobId([1; 32])).unwrap(), Mark::Seen));
        assert!(t.is_referenced(&BlobId([1; 32])));
        assert!(matches!(t.mark(BlobId([2; 32])).unwrap(), Mark::Missing));
        assert!(matches!(t.mark(BlobId([2; 32])).unwrap(), Mark::Seen));
        assert!(!t.is_referenced(&BlobId([2; 32])));
    }

    #[test]
    fn memory_table_put_replaces_the_location_and_numbers_packs_once() {
        let mut t = MemoryTable::default();
        t.put(&PackId([1; 32]), &entry(1, 10)).unwrap();
        t.put(&PackId([2; 32]), &entry(1, 20)).unwrap();
        t.put(&PackId([1; 32]), &entry(3, 30)).unwrap();
        assert_eq!(t.packs.len(), 2);
        assert_eq!(t.pack_of(&BlobId([1; 32])).unwrap(), Some(PackId([2; 32])));
        match t.mark(BlobId([1; 32])).unwrap() {
            Mark::First(loc) => assert_eq!(loc.entry.offset, 20),
            _ => panic!("expected a location"),
        }
    }
}
