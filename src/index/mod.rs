//! The blob index: blob id -> (pack, type, offset, length), kept in a local redb cache built from the repository's index files.
//!
//! The cache is a copy, never an authority: everything read through it is verified against its id.
//! A blob may be indexed in several packs (two backups stored it at once, a repack copied it, an
//! older index file was put back): the cache keeps every location, and lookups skip the packs this
//! process knows to be unavailable (missing from the repository), so a lost pack never hides a
//! copy elsewhere and never passes for a stored blob (FORMAT.md §11, "Readers and missing packs").

pub(crate) mod by_pack;
pub(crate) mod cache_file;
pub mod files;
mod filter;
pub(crate) mod spill;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use rayon::prelude::*;
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use serde::Serialize;

use crate::backend::{Backend, ObjectKind};
use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index_file::IndexFile;
use crate::format::pack::{BlobEntry, Delta};
use crate::id::{BlobId, BlobType, PackId};
use filter::DedupFilter;
use spill::Spill;

const BLOBS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("blobs");
const FILES: TableDefinition<&str, ()> = TableDefinition::new("index_files");
/// Locations of blobs indexed more than once, besides the one in [`BLOBS`].
const MORE: MultimapTableDefinition<[u8; 32], &[u8]> =
    MultimapTableDefinition::new("more_locations");
/// Every pack an index file names, with the bytes its indexed blobs reach (offset + length of
/// the last): compared with a listing of the packs to find the absent and the cut ones.
const PACKS: TableDefinition<[u8; 32], u64> = TableDefinition::new("packs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The key in [`META`] of the token of the dedup filter that holds every id of [`BLOBS`]: a filter
/// file with another token (or none recorded) is built again.
const FILTER_TOKEN: &str = "dedup_filter";
/// The layout of the tables above; a cache of another layout is emptied and read again.
const SCHEMA: u64 = 4;

/// Where a blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: PackId,
    /// Its entry in that pack.
    pub entry: BlobEntry,
}

/// A location as the cache stores it: pack, type, offset, length, raw length (45 bytes), and a
/// delta's base and generation (36 more).
pub(crate) struct EncodedLocation {
    bytes: [u8; 81],
    len: usize,
}

impl EncodedLocation {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

pub(crate) fn encode_location(pack: &PackId, e: &BlobEntry) -> EncodedLocation {
    let mut out = [0u8; 81];
    out[..32].copy_from_slice(&pack.0);
    out[32] = e.blob_type.to_byte();
    out[33..37].copy_from_slice(&e.offset.to_le_bytes());
    out[37..41].copy_from_slice(&e.length.to_le_bytes());
    out[41..45].copy_from_slice(&e.raw_length.to_le_bytes());
    let len = match &e.delta {
        Some(delta) => {
            out[45..77].copy_from_slice(&delta.base.0);
            out[77..].copy_from_slice(&delta.generation.to_le_bytes());
            81
        }
        None => 45,
    };
    EncodedLocation { bytes: out, len }
}

pub(crate) fn decode_location(id: BlobId, v: &[u8]) -> Result<BlobLocation> {
    if v.len() != 45 && v.len() != 81 {
        return Err(Error::corrupted(format!(
            "index cache: a location of {} bytes for blob {id}",
            v.len()
        )));
    }
    let word = |at: usize| u32::from_le_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]);
    let mut pack = [0u8; 32];
    pack.copy_from_slice(&v[..32]);
    let delta = (v.len() == 81).then(|| {
        let mut base = [0u8; 32];
        base.copy_from_slice(&v[45..77]);
        Delta {
            base: BlobId(base),
            generation: word(77),
        }
    });
    Ok(BlobLocation {
        pack: PackId(pack),
        entry: BlobEntry {
            blob_type: BlobType::from_byte(v[32])?,
            id,
            offset: word(33),
            length: word(37),
            raw_length: word(41),
            delta,
        },
    })
}

/// How many times a sync starts over because index files vanished under it.
const SYNC_ATTEMPTS: usize = 10;

enum SyncOutcome {
    Done,
    /// This listed index file was gone when read: list again.
    Vanished(String),
}

/// Reads and verifies one index file; `None` when it no longer exists.
fn read_index_file(
    backend: &dyn Backend,
    key: &MasterKey,
    name: &str,
) -> Result<Option<(String, IndexFile)>> {
    match files::read(backend, key, name) {
        Ok(file) => Ok(Some((name.to_string(), file))),
        // Listed a moment ago: a prune replaced it meanwhile.
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the cache knows of one blob.
enum Found {
    /// Its first location in an available pack.
    At(BlobLocation),
    /// Indexed only in packs known to be unavailable, with why for the first of them.
    Unavailable(PackId, String),
    /// In no index file.
    Nowhere,
}

impl Found {
    fn location(self) -> Option<BlobLocation> {
        match self {
            Found::At(loc) => Some(loc),
            _ => None,
        }
    }

    /// The location of a blob of `blob_type`, or a `Corrupted` error saying why there is none.
    fn typed(self, id: &BlobId, blob_type: BlobType) -> Result<BlobLocation> {
        let what = match blob_type {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        };
        match self {
            Found::At(loc) if loc.entry.blob_type == blob_type => Ok(loc),
            Found::At(_) => Err(Error::corrupted(format!(
                "blob {id} is indexed with the wrong type"
            ))),
            Found::Unavailable(pack, why) => Err(Error::corrupted(format!(
                "{what} blob {id} is indexed only in pack {pack}, which {why}: run `cairn check`, then `cairn repair index`"
            ))),
            Found::Nowhere => Err(Error::corrupted(format!(
                "{what} blob {id} is not in the index (its pack or index file is missing)"
            ))),
        }
    }
}

/// The open index cache of one repository.
pub struct Index {
    db: Database,
    /// The dedup filter ([`filter`]), opened on first use and kept up to date by every insert;
    /// `None` until then, and after the cache was emptied. Always locked before a write
    /// transaction is begun, so lookups and inserts never wait on each other in turn.
    filter: RwLock<Option<DedupFilter>>,
    filter_path: PathBuf,
    lookups: LookupCounters,
    /// Index bytes a sync reads above which its rows go through a [`Spill`].
    spill_above: u64,
    /// Packs this process found missing or unreadable, with why: lookups skip them.
    unavailable: RwLock<HashMap<PackId, String>>,
    // Keeps a private fallback cache alive (and deletes it at the end).
    _private_dir: Option<tempfile::TempDir>,
}

impl Index {
    /// Opens the cache in `cache_dir`, bringing it up to date with the repository's index files.
    ///
    /// # Errors
    /// When an index file cannot be read or decoded (named in the message), or the cache cannot be written.
    pub fn open(cache_dir: &Path, backend: &dyn Backend, key: &MasterKey) -> Result<Self> {
        let index = Self::open_db(cache_dir)?;
        index.sync(backend, key)?;
        Ok(index)
    }

    /// Opens (or creates) the cache without bringing it up to date: the caller calls
    /// [`Index::sync`] before the first lookup.
    ///
    /// # Errors
    /// When the cache cannot be created or opened.
    pub fn open_unsynced(cache_dir: &Path) -> Result<Self> {
        Self::open_db(cache_dir)
    }

    fn open_db(cache_dir: &Path) -> Result<Self> {
        cache_file::create_dir(cache_dir).map_err(|e| {
            Error::io(
                ErrorKind::Other,
                "cannot create cache directory",
                cache_dir,
                e,
            )
        })?;
        let path: PathBuf = cache_dir.join("index.redb");
        let (db, private_dir) = match cached_db(&path) {
            Ok(db) => (db, None::<tempfile::TempDir>),
            // Another cairn process holds the shared cache: use a private one rather than wait.
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                let dir = tempfile::Builder::new()
                    .prefix("cairn-index-")
                    .tempdir()
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Other,
                            format!(
                                "cannot create a private index cache in {}: {e}",
                                std::env::temp_dir().display()
                            ),
                        )
                    })?;
                (cached_db(&dir.path().join("index.redb"))?, Some(dir))
            }
            // A damaged cache is only a cache: start over.
            Err(redb::DatabaseError::Storage(_)) | Err(redb::DatabaseError::UpgradeRequired(_)) => {
                let _ = std::fs::remove_file(&path);
                (cached_db(&path)?, None)
            }
            Err(e) => return Err(e.into()),
        };
        let filter_dir = private_dir.as_ref().map_or(cache_dir, |d| d.path());
        let index = Index {
            db,
            filter: RwLock::new(None),
            filter_path: filter::path_in(filter_dir),
            lookups: LookupCounters::default(),
            spill_above: BATCH_BYTES,
            unavailable: RwLock::new(HashMap::new()),
            _private_dir: private_dir,
        };
        index.ensure_schema()?;
        Ok(index)
    }

    /// Empties a cache written with another table layout (one that kept a single location per
    /// blob would hide copies): the next sync reads every index file again.
    fn ensure_schema(&self) -> Result<()> {
        let current = {
            let tx = self.db.begin_read()?;
            match tx.open_table(META) {
                Ok(t) => t.get("schema")?.map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        if current == Some(SCHEMA) {
            return Ok(());
        }
        let _filter = self.drop_filter();
        let tx = self.db.begin_write()?;
        Self::clear(&tx)?;
        tx.open_table(META)?.insert("schema", SCHEMA)?;
        tx.commit()?;
        Ok(())
    }

    /// Drops every table of blob locations and file names (the schema stays), and the record of
    /// the dedup filter, which the caller has dropped ([`Index::drop_filter`]).
    fn clear(tx: &redb::WriteTransaction) -> Result<()> {
        tx.delete_table(BLOBS)?;
        tx.delete_table(FILES)?;
        tx.delete_multimap_table(MORE)?;
        tx.delete_table(PACKS)?;
        tx.open_table(META)?.remove(FILTER_TOKEN)?;
        Ok(())
    }

    /// The directory of the cache's files (the private one when another process holds the shared).
    fn dir(&self) -> &Path {
        self.filter_path.parent().unwrap_or(Path::new("."))
    }

    /// Forgets the open filter and returns the locked slot, for a caller about to empty the cache:
    /// the next insert or lookup builds a new filter rather than keep the old ids' bits.
    fn drop_filter(&self) -> std::sync::RwLockWriteGuard<'_, Option<DedupFilter>> {
        let mut slot = self.filter.write().unwrap_or_else(|p| p.into_inner());
        *slot = None;
        slot
    }

    /// [`Index::load_filter`] under a read transaction.
    fn open_filter(&self) -> Result<Option<DedupFilter>> {
        let tx = self.db.begin_read()?;
        match tx.open_table(META) {
            Ok(meta) => self.filter_with(meta.get(FILTER_TOKEN)?.map(|v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The filter file, when it carries the token `tx` records for it.
    fn load_filter(&self, tx: &WriteTransaction) -> Result<Option<DedupFilter>> {
        self.filter_with(tx.open_table(META)?.get(FILTER_TOKEN)?.map(|v| v.value()))
    }

    /// The filter file, when a token is recorded and the file carries it.
    fn filter_with(&self, token: Option<u64>) -> Result<Option<DedupFilter>> {
        match token {
            Some(token) => {
                DedupFilter::open(&self.filter_path, token).map_err(|e| filter_error(&e))
            }
            None => Ok(None),
        }
    }

    /// Leaves `slot` holding every id of `BLOBS` as `tx` will commit them, before the commit:
    /// writes the pages of an open filter that has room, else builds a new one from the table
    /// (none yet, refused, emptied, or full) and records its token in `tx`.
    fn settle_filter(&self, tx: &WriteTransaction, slot: &mut Option<DedupFilter>) -> Result<()> {
        if let Some(filter) = slot.as_mut().filter(|f| !f.is_full()) {
            return filter.flush().map_err(|e| filter_error(&e));
        }
        let token = u64::from_le_bytes(crate::crypto::random_array::<8>()?);
        {
            let table = tx.open_table(BLOBS)?;
            let ids = table.iter()?.map(|row| {
                row.map(|(k, _)| k.value())
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
            *slot = Some(
                DedupFilter::build(&self.filter_path, token, table.len()?, ids)
                    .map_err(|e| filter_error(&e))?,
            );
        }
        tx.open_table(META)?.insert(FILTER_TOKEN, token)?;
        Ok(())
    }

    /// Counts of the dedup lookups this process made ([`Index::lookup_many_mostly_new`]).
    pub fn dedup_lookups(&self) -> DedupLookups {
        let c = &self.lookups;
        DedupLookups {
            asked: c.asked.load(Ordering::Relaxed),
            passed_filter: c.passed.load(Ordering::Relaxed),
            false_positives: c.false_positives.load(Ordering::Relaxed),
            filter_bytes: std::fs::metadata(&self.filter_path).map_or(0, |m| m.len()),
        }
    }

    /// Brings the cache up to date with the repository's index files again (after `open`, a
    /// prune may have replaced some).
    ///
    /// # Errors
    /// As [`Index::open`].
    pub fn sync(&self, backend: &dyn Backend, key: &MasterKey) -> Result<()> {
        // A prune may replace index files between our listing and our reads (FORMAT.md §12, step 6):
        // the replacements are written before the old files go, so listing again finds them.
        let mut attempts = 0;
        loop {
            match self.sync_once(backend, key)? {
                SyncOutcome::Done => return Ok(()),
                SyncOutcome::Vanished(name) => {
                    attempts += 1;
                    if attempts >= SYNC_ATTEMPTS {
                        return Err(Error::new(
                            ErrorKind::Backend,
                            format!(
                                "index files keep disappearing while they are read (last: {name}); another process is rewriting the index: run the command again when it has finished"
                            ),
                        ));
                    }
                }
            }
        }
    }

    fn sync_once(&self, backend: &dyn Backend, key: &MasterKey) -> Result<SyncOutcome> {
        let sizes: HashMap<String, u64> = backend.list(ObjectKind::Index)?.into_iter().collect();
        let in_repo: HashSet<&String> = sizes.keys().collect();
        let cached = self.cached_files()?;
        if cached.iter().any(|name| !in_repo.contains(name)) {
            // An index file went away (compaction, prune): entries may be stale, rebuild.
            let _filter = self.drop_filter();
            let tx = self.db.begin_write()?;
            Self::clear(&tx)?;
            tx.commit()?;
        }
        let cached = self.cached_files()?;
        let mut missing: Vec<&String> = in_repo
            .iter()
            .copied()
            .filter(|n| !cached.contains(*n))
            .collect();
        missing.sort();
        // Decode in parallel, insert in batches so memory stays bounded for huge repositories:
        // a batch is up to 64 files and BATCH_BYTES of them (a decoded entry takes about twice
        // its encoded bytes), so a repository of few large index files is not held whole.
        // One write transaction for all of them: a commit per batch grew the cache file by
        // three quarters (10 M entries: 2.2 GiB against 1.3 GiB).
        if missing.is_empty() {
            return Ok(SyncOutcome::Done);
        }
        let mut filter = self.filter.write().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        if filter.is_none() {
            *filter = self.load_filter(&tx)?;
        }
        let size = |name: &&String| sizes.get(*name).copied().unwrap_or(0);
        // More than one batch: the rows go through a spill and are inserted in key order.
        let total: u64 = missing.iter().map(size).sum();
        let mut spill = match total > self.spill_above {
            true => Some(Spill::new(self.dir(), total * ROW_BYTES_PER_INDEX_BYTE)?),
            false => None,
        };
        for batch in batches(&missing, size) {
            let read: Vec<Option<(String, IndexFile)>> = batch
                .par_iter()
                .map(|name| read_index_file(backend, key, name))
                .collect::<Result<_>>()?;
            if let Some(pos) = read.iter().position(Option::is_none) {
                return Ok(SyncOutcome::Vanished(batch[pos].clone()));
            }
            let files: Vec<(String, IndexFile)> = read.into_iter().flatten().collect();
            Self::insert_in(&tx, &files, filter.as_mut(), spill.as_mut())?;
        }
        if let Some(spill) = spill {
            spill.drain(|rows| Self::insert_rows(&tx, rows))?;
        }
        self.settle_filter(&tx, &mut filter)?;
        tx.commit()?;
        Ok(SyncOutcome::Done)
    }

    /// The names of the index files the cache holds: `check` compares them with a later listing to tell
    /// whether a prune replaced them while it read (FORMAT.md §12, Check).
    ///
    /// # Errors
    /// When the cache cannot be read.
    pub fn files(&self) -> Result<HashSet<String>> {
        self.cached_files()
    }

    fn cached_files(&self) -> Result<HashSet<String>> {
        let tx = self.db.begin_read()?;
        let table = match tx.open_table(FILES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashSet::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = HashSet::new();
        for row in table.iter()? {
            let (name, _) = row?;
            out.insert(name.value().to_string());
        }
        Ok(out)
    }

    /// Records index files that were just written to the repository.
    ///
    /// # Errors
    /// When the cache cannot be written.
    pub fn insert_files(&self, files: &[(String, IndexFile)]) -> Result<()> {
        let mut filter = self.filter.write().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        if filter.is_none() {
            *filter = self.load_filter(&tx)?;
        }
        Self::insert_in(&tx, files, filter.as_mut(), None)?;
        self.settle_filter(&tx, &mut filter)?;
        tx.commit()?;
        Ok(())
    }

    /// Inserts the entries of `files` into `tx`'s tables, and their ids into `filter` when it is
    /// open (bits set before the commit only ever answer "maybe"); with a `spill`, the blob rows
    /// go there, to be inserted in key order at the end ([`spill`]).
    fn insert_in(
        tx: &redb::WriteTransaction,
        files: &[(String, IndexFile)],
        mut filter: Option<&mut DedupFilter>,
        spill: Option<&mut Spill>,
    ) -> Result<()> {
        // References, not rows: a batch holds over a million entries.
        let mut rows: Vec<(&PackId, &BlobEntry)> = Vec::new();
        {
            let mut packs = tx.open_table(PACKS)?;
            let mut names = tx.open_table(FILES)?;
            for (name, file) in files {
                for pack in &file.packs {
                    let reach = pack
                        .blobs
                        .iter()
                        .map(|e| u64::from(e.offset) + u64::from(e.length))
                        .max()
                        .unwrap_or(0);
                    let known = packs.get(pack.pack.0)?.map_or(0, |v| v.value());
                    packs.insert(pack.pack.0, reach.max(known))?;
                    for entry in &pack.blobs {
                        if let Some(filter) = filter.as_deref_mut() {
                            filter.insert(&entry.id.0);
                        }
                        rows.push((&pack.pack, entry));
                    }
                }
                names.insert(name.as_str(), ())?;
            }
        }
        let encoded =
            |(pack, entry): (&PackId, &BlobEntry)| (entry.id.0, encode_location(pack, entry));
        match spill {
            Some(spill) => spill.add(rows.into_iter().map(encoded)),
            None => {
                // Sorted, the rows of a batch share the leaves they land on (stable: of two
                // locations of one blob, the later file's stays first, as inserted one by one).
                rows.sort_by_key(|(_, entry)| entry.id.0);
                Self::insert_rows(tx, rows.into_iter().map(encoded))
            }
        }
    }

    /// Inserts blob rows (sorted by id) into `BLOBS`, keeping a location already there in `MORE`.
    fn insert_rows(
        tx: &redb::WriteTransaction,
        rows: impl IntoIterator<Item = spill::Row>,
    ) -> Result<()> {
        let mut blobs = tx.open_table(BLOBS)?;
        let mut more = tx.open_multimap_table(MORE)?;
        for (id, location) in rows {
            let replaced = blobs
                .insert(id, location.as_slice())?
                .map(|old| old.value().to_vec());
            // The blob was indexed before: keep that location too.
            if let Some(old) = replaced.filter(|old| old != location.as_slice()) {
                more.insert(id, old.as_slice())?;
            }
        }
        Ok(())
    }

    /// Marks `pack` unavailable (missing from the repository, or unreadable) for the rest of this
    /// process: lookups answer with another location of each of its blobs, or with none.
    pub fn mark_unavailable(&self, pack: PackId, why: impl Into<String>) {
        self.unavailable
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(pack)
            .or_insert_with(|| why.into());
    }

    /// Every pack some cached index file names.
    ///
    /// # Errors
    /// When the cache cannot be read.
    pub fn packs(&self) -> Result<HashSet<PackId>> {
        Ok(self.pack_reach()?.into_keys().collect())
    }

    /// Every pack some cached index file names, with the bytes its indexed blobs reach: a listed
    /// pack shorter than that was cut (FORMAT.md §8, "Readers and missing packs").
    ///
    /// # Errors
    /// When the cache cannot be read.
    pub fn pack_reach(&self) -> Result<HashMap<PackId, u64>> {
        let tx = self.db.begin_read()?;
        let table = match tx.open_table(PACKS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = HashMap::new();
        for row in table.iter()? {
            let (id, reach) = row?;
            out.insert(PackId(id.value()), reach.value());
        }
        Ok(out)
    }

    /// [`Index::lookup_many`] for ids that are mostly new (a backup's chunks), counting a blob as
    /// stored only outside `excluded` packs: ids the dedup filter certainly does not hold are
    /// answered from it, and only the others go to redb. The filter costs 1.5 to 2 bytes per
    /// indexed blob, in a mapped file that opening does not read ([`filter`]).
    ///
    /// # Errors
    /// As [`Index::lookup_many`], or when the filter cannot be built.
    pub fn lookup_many_mostly_new(
        &self,
        ids: &[BlobId],
        excluded: &HashSet<PackId>,
    ) -> Result<Vec<Option<BlobLocation>>> {
        let maybe = |filter: &DedupFilter| -> Vec<usize> {
            (0..ids.len())
                .filter(|&i| filter.may_hold(&ids[i].0))
                .collect()
        };
        // Workers check their batches side by side under the read lock; the first opens or builds.
        let found = self
            .filter
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(maybe);
        let maybe = match found {
            Some(maybe) => maybe,
            None => {
                let mut slot = self.filter.write().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    // A filter that matches the cache and has room opens in a read transaction:
                    // a write transaction would commit (and sync) nothing on every backup.
                    *slot = self.open_filter()?.filter(|f| !f.is_full());
                }
                if slot.is_none() {
                    let tx = self.db.begin_write()?;
                    *slot = self.load_filter(&tx)?;
                    self.settle_filter(&tx, &mut slot)?;
                    tx.commit()?;
                }
                maybe(slot.as_ref().expect("just filled"))
            }
        };
        self.lookups.count(ids.len(), maybe.len(), 0);
        let mut out = vec![None; ids.len()];
        if maybe.is_empty() {
            return Ok(out);
        }
        let asked: Vec<BlobId> = maybe.iter().map(|&i| ids[i]).collect();
        let mut absent = 0;
        for (i, found) in maybe.into_iter().zip(self.find_many(&asked, excluded)?) {
            absent += usize::from(matches!(found, Found::Nowhere));
            out[i] = found.location();
        }
        self.lookups.count(0, 0, absent);
        Ok(out)
    }

    /// What the cache knows of each of `ids`, in one read transaction, skipping locations in
    /// unavailable packs and in `excluded` ones. The table of further locations is opened only
    /// when a first location is skipped: a healthy repository pays nothing for it.
    fn find_many(&self, ids: &[BlobId], excluded: &HashSet<PackId>) -> Result<Vec<Found>> {
        let tx = self.db.begin_read()?;
        let table = match tx.open_table(BLOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Ok(ids.iter().map(|_| Found::Nowhere).collect())
            }
            Err(e) => return Err(e.into()),
        };
        let unavailable = self.unavailable.read().unwrap_or_else(|p| p.into_inner());
        let mut more = None;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(first) = table.get(id.0)? else {
                out.push(Found::Nowhere);
                continue;
            };
            let first = decode_location(*id, first.value())?;
            let skipped = |pack: &PackId| unavailable.contains_key(pack) || excluded.contains(pack);
            if !skipped(&first.pack) {
                out.push(Found::At(first));
                continue;
            }
            if more.is_none() {
                more = Some(match tx.open_multimap_table(MORE) {
                    Ok(t) => Some(t),
                    Err(redb::TableError::TableDoesNotExist(_)) => None,
                    Err(e) => return Err(e.into()),
                });
            }
            let mut found = None;
            if let Some(Some(more)) = &more {
                for value in more.get(id.0)? {
                    let loc = decode_location(*id, value?.value())?;
                    if !skipped(&loc.pack) {
                        found = Some(loc);
                        break;
                    }
                }
            }
            out.push(match (found, unavailable.get(&first.pack)) {
                (Some(loc), _) => Found::At(loc),
                (None, Some(why)) => Found::Unavailable(first.pack, why.clone()),
                // Only in excluded packs: absent for the caller that excluded them.
                (None, None) => Found::Nowhere,
            });
        }
        Ok(out)
    }

    /// Where each of `ids` is stored, if anywhere, in one read transaction: a batch of chunks
    /// costs one transaction instead of one per chunk. A blob indexed only in unavailable packs
    /// is not stored.
    ///
    /// # Errors
    /// When the cache cannot be read or holds a malformed row.
    pub fn lookup_many(&self, ids: &[BlobId]) -> Result<Vec<Option<BlobLocation>>> {
        Ok(self
            .find_many(ids, &HashSet::new())?
            .into_iter()
            .map(Found::location)
            .collect())
    }

    /// The chain of `id` (FORMAT.md §6): its location, then its base's, down to a blob stored
    /// whole, each the first one outside unavailable and `excluded` packs; `None` when a link is
    /// in no such pack, is not a data blob below a delta, or the chain is longer than
    /// [`crate::delta::MAX_CHAIN`] (or loops). One read transaction per link; a blob stored whole
    /// is a chain of one.
    ///
    /// # Errors
    /// When the cache cannot be read.
    pub fn chain(
        &self,
        id: &BlobId,
        excluded: &HashSet<PackId>,
    ) -> Result<Option<Vec<BlobLocation>>> {
        let mut chain: Vec<BlobLocation> = Vec::new();
        let mut next = *id;
        loop {
            let found = self.find_many(std::slice::from_ref(&next), excluded)?;
            let Some(loc) = found.into_iter().next().and_then(Found::location) else {
                return Ok(None);
            };
            if !chain.is_empty() && loc.entry.blob_type != BlobType::Data {
                return Ok(None);
            }
            let base = loc.entry.delta.map(|d| d.base);
            chain.push(loc);
            match base {
                None => return Ok(Some(chain)),
                Some(_) if chain.len() > crate::delta::MAX_CHAIN => return Ok(None),
                Some(base) => next = base,
            }
        }
    }

    /// Where `id` is stored, if anywhere.
    ///
    /// # Errors
    /// When the cache cannot be read or holds a malformed row.
    pub fn lookup(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        Ok(self.lookup_many(std::slice::from_ref(id))?.pop().flatten())
    }

    /// Where `id` is stored, or a `Corrupted` error saying why it is not.
    ///
    /// # Errors
    /// When the blob is in no index, or only in unavailable packs.
    pub fn locate(&self, id: &BlobId, blob_type: BlobType) -> Result<BlobLocation> {
        self.locate_many(std::slice::from_ref(id), blob_type)?
            .pop()
            .expect("one result per id")
    }

    /// Where each of `ids` is stored, looked up in one read transaction (a restore plans thousands
    /// of blobs, and a transaction per lookup costs more than the lookup): one result per id, as
    /// [`Index::locate`] would give it.
    ///
    /// # Errors
    /// The outer error when the cache cannot be read; an inner one for a blob in no index.
    pub fn locate_many(
        &self,
        ids: &[BlobId],
        blob_type: BlobType,
    ) -> Result<Vec<Result<BlobLocation>>> {
        Ok(self
            .find_many(ids, &HashSet::new())?
            .into_iter()
            .zip(ids)
            .map(|(found, id)| found.typed(id, blob_type))
            .collect())
    }

    /// Every location of `id` in an available pack, the one [`Index::locate`] gives first: what
    /// a reader tries in turn when a pack turns out to be missing or damaged.
    ///
    /// # Errors
    /// As [`Index::locate`].
    pub fn locations(&self, id: &BlobId, blob_type: BlobType) -> Result<Vec<BlobLocation>> {
        let first = self.locate(id, blob_type)?;
        let mut out = vec![first];
        let tx = self.db.begin_read()?;
        let more = match tx.open_multimap_table(MORE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let unavailable = self.unavailable.read().unwrap_or_else(|p| p.into_inner());
        for value in more.get(id.0)? {
            let loc = decode_location(*id, value?.value())?;
            if loc != first
                && loc.entry.blob_type == blob_type
                && !unavailable.contains_key(&loc.pack)
                && !out.contains(&loc)
            {
                out.push(loc);
            }
        }
        // The first location may have come from the further ones: the one in `BLOBS` is a copy too.
        if let Some(primary) = tx.open_table(BLOBS)?.get(id.0)? {
            let loc = decode_location(*id, primary.value())?;
            if loc.entry.blob_type == blob_type
                && !out.contains(&loc)
                && !unavailable.contains_key(&loc.pack)
            {
                out.push(loc);
            }
        }
        Ok(out)
    }

    /// Every indexed blob with its location, in id order (for check).
    ///
    /// # Errors
    /// When the cache cannot be read.
    pub fn for_each(&self, mut f: impl FnMut(BlobLocation) -> Result<()>) -> Result<()> {
        let tx = self.db.begin_read()?;
        let table = match tx.open_table(BLOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for row in table.iter()? {
            let (k, v) = row?;
            f(decode_location(BlobId(k.value()), v.value())?)?;
        }
        Ok(())
    }
}
/// Encoded index bytes decoded at once when the cache catches up with the repository.
const BATCH_BYTES: u64 = 64 << 20;
/// Bytes of spilled rows per byte of index file, at most: an entry takes at least 45 bytes in an
/// index file and its row 78 (114 for a delta's 81-byte entry).
const ROW_BYTES_PER_INDEX_BYTE: u64 = 2;

/// `items` cut into runs of at most 64 whose sizes add up to at most [`BATCH_BYTES`] (an item
/// larger than that alone).
fn batches<T>(items: &[T], size: impl Fn(&T) -> u64) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, item) in items.iter().enumerate() {
        let len = size(item);
        if i > start && (i - start == 64 || bytes + len > BATCH_BYTES) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// What [`Index::lookup_many_mostly_new`] counts, for the scale harness and `backup --json`.
#[derive(Default)]
struct LookupCounters {
    asked: AtomicU64,
    passed: AtomicU64,
    false_positives: AtomicU64,
}

impl LookupCounters {
    fn count(&self, asked: usize, passed: usize, false_positives: usize) {
        self.asked.fetch_add(asked as u64, Ordering::Relaxed);
        self.passed.fetch_add(passed as u64, Ordering::Relaxed);
        self.false_positives
            .fetch_add(false_positives as u64, Ordering::Relaxed);
    }
}

/// The dedup lookups of one process: ids asked, ids the filter let through to redb, and of those
/// the ones redb did not hold (the filter's false positives, plus blobs only in excluded packs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DedupLookups {
    /// Ids asked about.
    pub asked: u64,
    /// Ids the filter may hold, looked up in redb.
    pub passed_filter: u64,
    /// Of those, ids redb did not hold.
    pub false_positives: u64,
    /// Size of the filter file.
    pub filter_bytes: u64,
}

fn filter_error(e: &std::io::Error) -> Error {
    Error::new(
        ErrorKind::Other,
        format!("cannot write the dedup filter of the index cache: {e}; delete the cache directory if this persists"),
    )
}

/// Memory redb may keep for pages it has read or will write. Its default, 1 GiB, let a restore or a
/// check of a snapshot of 300,000 small files grow by about 100 MiB of cached index pages; the
/// operating system's page cache keeps the file's pages near anyway.
pub(crate) const DB_CACHE_BYTES: usize = 32 << 20;

/// Creates or opens a redb database with the cache bounded to [`DB_CACHE_BYTES`].
/// The file is created private to the owner, and its I/O errors name it ([`cache_file`]).
pub(crate) fn cached_db(path: &Path) -> std::result::Result<Database, redb::DatabaseError> {
    Database::builder()
        .set_cache_size(DB_CACHE_BYTES)
        .create_with_backend(cache_file::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index_file::PackEntries;

    #[test]
    fn index_files_are_read_in_batches_bounded_by_count_and_bytes() {
        let sizes: Vec<u64> = [vec![1u64; 130], vec![40 << 20; 3], vec![300 << 20]].concat();
        let lens: Vec<usize> = batches(&sizes, |s| *s).iter().map(|b| b.len()).collect();
        assert_eq!(lens, [64, 64, 3, 1, 1, 1]);
        assert!(batches(&Vec::<u64>::new(), |s| *s).is_empty());
    }

    fn file(pack: u8, ids: &[BlobId]) -> (String, IndexFile) {
        let blobs = ids
            .iter()
            .enumerate()
            .map(|(i, id)| BlobEntry {
                blob_type: BlobType::Data,
                id: *id,
                offset: i as u32 * 100,
                length: 100,
                raw_length: 90,
                delta: None,
            })
            .collect();
        let packs = vec![PackEntries {
            pack: PackId([pack; 32]),
            blobs,
        }];
        (
            format!("{pack:064x}"),
            IndexFile {
                supersedes: Vec::new(),
                packs,
            },
        )
    }

    fn id(first: u8, last: u8) -> BlobId {
        let mut bytes = [first; 32];
        bytes[31] = last;
        BlobId(bytes)
    }

    #[test]
    fn the_dedup_filter_answers_as_redb_does_before_and_after_inserts() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open_unsynced(dir.path()).unwrap();
        let stored = [id(1, 1), id(2, 2), id(200, 3)];
        index.insert_files(&[file(7, &stored)]).unwrap();
        // Same first eight bytes as a stored id, different id: the filter lets it through, redb
        // says no. Then one absent id and two stored ones.
        let asked = [id(1, 9), id(3, 3), stored[0], stored[2]];
        let expect = |index: &Index, asked: &[BlobId]| {
            assert_eq!(
                index
                    .lookup_many_mostly_new(asked, &HashSet::new())
                    .unwrap(),
                index.lookup_many(asked).unwrap()
            );
        };
        expect(&index, &asked);
        let found = index
            .lookup_many_mostly_new(&asked, &HashSet::new())
            .unwrap();
        assert_eq!(
            found.iter().map(Option::is_some).collect::<Vec<_>>(),
            [false, false, true, true]
        );
        // id(1, 9) shares the bytes the filter reads with a stored id: it passes, redb says no.
        let counted = index.dedup_lookups();
        assert_eq!(
            (
                counted.asked,
                counted.passed_filter,
                counted.false_positives
            ),
            (8, 6, 2)
        );
        assert!(counted.filter_bytes > 0);
        // Inserted after the filter was built: found through the updated filter.
        index.insert_files(&[file(8, &[id(3, 3)])]).unwrap();
        expect(&index, &asked);
        assert!(index
            .lookup_many_mostly_new(&[id(3, 3)], &HashSet::new())
            .unwrap()[0]
            .is_some());
    }

    #[test]
    fn a_sync_of_many_index_files_through_the_spill_indexes_every_location() {
        use crate::backend::LocalBackend;
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().join("repo"));
        let key = MasterKey::generate().unwrap();
        // Twelve index files, the last naming a blob of the first again in another pack.
        let ids: Vec<BlobId> = (0..1200u32)
            .map(|i| BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect();
        for (n, chunk) in ids.chunks(100).enumerate() {
            files::write(&backend, &key, &file(n as u8, chunk).1).unwrap();
        }
        files::write(&backend, &key, &file(99, &ids[..1]).1).unwrap();
        let mut index = Index::open_unsynced(&dir.path().join("cache")).unwrap();
        index.spill_above = 1;
        index.sync(&backend, &key).unwrap();
        let found = index.lookup_many(&ids).unwrap();
        assert!(found.iter().all(Option::is_some));
        let packs: HashSet<PackId> = index
            .locations(&ids[0], BlobType::Data)
            .unwrap()
            .iter()
            .map(|l| l.pack)
            .collect();
        assert_eq!(packs, HashSet::from([PackId([0; 32]), PackId([99; 32])]));
        assert_eq!(index.packs().unwrap().len(), 13);
        let new = lookup_new(&index, &ids);
        assert!(new.iter().all(|found| *found));
        // No temporary file is left in the cache directory.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    fn lookup_new(index: &Index, ids: &[BlobId]) -> Vec<bool> {
        index
            .lookup_many_mostly_new(ids, &HashSet::new())
            .unwrap()
            .iter()
            .map(Option::is_some)
            .collect()
    }

    #[test]
    fn the_dedup_filter_is_kept_across_processes_and_built_again_when_it_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = filter::path_in(dir.path());
        let stored = [id(1, 1), id(2, 2)];
        let found = lookup_new;
        {
            let index = Index::open_unsynced(dir.path()).unwrap();
            index.insert_files(&[file(1, &stored[..1])]).unwrap();
            assert_eq!(found(&index, &stored), [true, false]);
        }
        let modified = || std::fs::metadata(&path).unwrap().modified().unwrap();
        let built = modified();
        {
            // The next process maps the same file and adds to it in place.
            let index = Index::open_unsynced(dir.path()).unwrap();
            index.insert_files(&[file(2, &stored[1..])]).unwrap();
            assert_eq!(found(&index, &stored), [true, true]);
        }
        // A filter that is not the one the cache recorded (copied from elsewhere, or from before
        // a rebuild of the cache) is refused and built again from the cache: nothing goes missing.
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let index = Index::open_unsynced(dir.path()).unwrap();
        assert_eq!(found(&index, &stored), [true, true]);
        assert_ne!(modified(), built);
        assert!(std::fs::metadata(&path).unwrap().len() > 4096);
    }

    #[test]
    fn a_blob_indexed_in_two_packs_is_found_in_the_other_when_one_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open_unsynced(dir.path()).unwrap();
        let blob = id(5, 5);
        index.insert_files(&[file(1, &[blob])]).unwrap();
        index.insert_files(&[file(2, &[blob])]).unwrap();
        let (one, two) = (PackId([1; 32]), PackId([2; 32]));
        assert_eq!(index.packs().unwrap(), HashSet::from([one, two]));
        let packs = |locs: Vec<BlobLocation>| locs.iter().map(|l| l.pack).collect::<Vec<_>>();
        assert_eq!(
            packs(index.locations(&blob, BlobType::Data).unwrap()),
            [two, one]
        );
        // A saver that excludes the first location still finds the blob in the other pack.
        let excluded = HashSet::from([two]);
        let found = index.lookup_many_mostly_new(&[blob], &excluded).unwrap();
        assert_eq!(found[0].unwrap().pack, one);

        index.mark_unavailable(two, "is missing from the repository");
        assert_eq!(index.lookup(&blob).unwrap().unwrap().pack, one);
        assert_eq!(
            packs(index.locations(&blob, BlobType::Data).unwrap()),
            [one]
        );
        // Only in unavailable or excluded packs: not stored, and the error names the lost pack.
        index.mark_unavailable(one, "is missing from the repository");
        assert_eq!(index.lookup(&blob).unwrap(), None);
        assert!(index
            .lookup_many_mostly_new(&[blob], &HashSet::new())
            .unwrap()[0]
            .is_none());
        let err = index.locate(&blob, BlobType::Data).unwrap_err();
        assert!(
            err.to_string().contains("indexed only in pack")
                && err.to_string().contains("missing from the repository"),
            "{err}"
        );
    }

    #[test]
    fn a_cache_of_an_older_layout_is_emptied_and_read_again() {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = Index::open_unsynced(dir.path()).unwrap();
            index.insert_files(&[file(1, &[id(1, 1)])]).unwrap();
            let tx = index.db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert("schema", 1).unwrap();
            tx.commit().unwrap();
        }
        let index = Index::open_unsynced(dir.path()).unwrap();
        assert!(index.files().unwrap().is_empty());
        assert_eq!(index.lookup(&id(1, 1)).unwrap(), None);
    }
}
