//! Which blobs the snapshots reference and where each one lives, and what that makes of each pack:
//! the index files are read into prune's blob table, then every snapshot's trees are walked.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use redb::{Database, ReadableDatabase};

use crate::browse::walk::PathChain;
use crate::crypto::SEAL_OVERHEAD;
use crate::error::{Error, Result};
use crate::format::pack::{BlobEntry, ENTRY_LEN, PREFIX_LEN_WITH_EPOCH, TRAILER_LEN};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ContentItem, NodeKind, Tree};
use crate::format::wal::WalRecord;
use crate::id::{BlobId, PackId, SnapshotId, WalRecordId};
use crate::index::spill::{Spill, ROW_BYTES};
use crate::index::{decode_location, encode_location, files, BlobLocation};
use crate::pack::PackReader;
use crate::repo::Repository;

use super::blob_table::{BlobTable, DiskTable, Mark, MemoryTable, LOCATIONS, REFERENCED};
use super::{PruneProgress, PruneStep};

/// Trees read and decoded at once by the walk: enough to keep every thread busy, few enough that
/// their plaintexts take little memory.
const TREES_PER_BATCH: usize = 256;

/// What prune knows of one pack.
#[derive(Clone, Copy, Debug, Default)]
pub struct PackUsage {
    /// Size of the pack file.
    pub size: u64,
    /// Whether some index file lists it.
    pub indexed: bool,
    /// Blobs the index lists in it.
    pub blobs: u64,
    /// Sealed bytes of its blobs that a snapshot references (counted once per blob).
    pub used_bytes: u64,
    /// Number of those blobs.
    pub used_blobs: u64,
}

impl PackUsage {
    /// Bytes no snapshot needs: the size less the referenced blobs and the pack's own framing.
    pub fn unused_bytes(&self) -> u64 {
        // The longer prefix of version 2 packs (§15): the pack's version is not known here, and
        // counting 4 bytes too many for a version 1 pack only rounds its waste down, whereas too
        // few would make a fully used version 2 pack look wasteful to `--max-unused 0` forever.
        let framing = (PREFIX_LEN_WITH_EPOCH + TRAILER_LEN + SEAL_OVERHEAD + 4) as u64
            + self.blobs * ENTRY_LEN as u64;
        self.size.saturating_sub(self.used_bytes + framing)
    }
}

/// The outcome of walking the snapshots.
#[derive(Clone, Debug, Default)]
pub struct Walk {
    /// Distinct blobs referenced.
    pub referenced: u64,
    /// Referenced blobs found in no index file (damage, or a concurrent repair), as messages.
    pub missing: Vec<String>,
    /// Condemned packs holding the only copy of a referenced blob: they must live on.
    pub revive: HashSet<PackId>,
}

/// Where the blob table lives (see [`super::blob_table::MEMORY_BLOBS`]).
enum Store {
    Memory(MemoryTable),
    Disk {
        db: Database,
        _dir: tempfile::TempDir,
    },
}

/// The blob table of one prune.
pub struct Usage {
    store: Store,
}

impl Usage {
    /// Reads `index_files` (names and sizes) one at a time into the blob table; fills
    /// `packs[..].indexed`. The table is in memory when the index files hold at most
    /// `memory_blobs` entries, else in a temporary database in the repository's cache directory.
    ///
    /// # Errors
    /// When an index file is damaged (prune must not guess) or the database fails.
    pub fn build(
        repo: &Repository,
        index_files: &[(String, u64)],
        packs: &mut HashMap<PackId, PackUsage>,
        condemned: &HashSet<PackId>,
        memory_blobs: u64,
        progress: &dyn PruneProgress,
    ) -> Result<Self> {
        progress.step(PruneStep::IndexFiles, index_files.len() as u64);
        // Index files are not compressed: their size bounds the number of entries from above.
        let entries: u64 = index_files
            .iter()
            .map(|(_, size)| size / ENTRY_LEN as u64)
            .sum();
        if entries <= memory_blobs {
            let mut table = MemoryTable::with_capacity(entries as usize);
            fill(repo, index_files, packs, progress, |pack, entry| {
                keep_better(&mut table, condemned, pack, entry)
            })?;
            return Ok(Usage {
                store: Store::Memory(table),
            });
        }
        // In the repository's cache directory, not the system's temporary one: that is often a
        // RAM file system, where this table (about 80 bytes a blob) would take the memory it
        // exists to spare.
        let cache = repo.cache_dir();
        let dir = std::fs::create_dir_all(&cache)
            .and_then(|()| tempfile::Builder::new().prefix("prune-").tempdir_in(&cache))
            .map_err(|e| {
                Error::new(
                    crate::ErrorKind::Other,
                    format!(
                        "cannot create a temporary database in {}: {e}",
                        cache.display()
                    ),
                )
            })?;
        let db = crate::index::cached_db(&dir.path().join("usage.redb"))?;
        // The entries go into the table in id order, through a spill (as the index cache's first
        // open): in the order index files list them, each would land on a random page.
        let mut spill = Spill::new(dir.path(), entries * ROW_BYTES)?;
        let tx = db.begin_write()?;
        {
            let mut table = DiskTable {
                locations: tx.open_table(LOCATIONS)?,
                referenced: tx.open_table(REFERENCED)?,
            };
            fill(repo, index_files, packs, progress, |pack, entry| {
                spill.add([(entry.id.0, encode_location(pack, entry))])
            })?;
            spill.drain(|rows| {
                for (id, location) in rows {
                    let loc = decode_location(BlobId(id), location.as_slice())?;
                    keep_better(&mut table, condemned, &loc.pack, &loc.entry)?;
                }
                Ok(())
            })?;
        }
        tx.commit()?;
        Ok(Usage {
            store: Store::Disk { db, _dir: dir },
        })
    }

    /// Walks every snapshot's trees, recording referenced blobs and the bytes each pack keeps alive.
    ///
    /// # Errors
    /// When a tree cannot be read or decoded (prune stops rather than delete what it could not see).
    pub fn walk(
        &mut self,
        repo: &Repository,
        snapshots: &[(SnapshotId, Snapshot)],
        wal: &[&(WalRecordId, WalRecord)],
        packs: &mut HashMap<PackId, PackUsage>,
        condemned: &HashSet<PackId>,
        progress: &dyn PruneProgress,
    ) -> Result<Walk> {
        progress.step(PruneStep::Snapshots, snapshots.len() as u64);
        match &mut self.store {
            Store::Memory(table) => walk(repo, snapshots, wal, packs, condemned, table, progress),
            Store::Disk { db, .. } => {
                let tx = db.begin_write()?;
                let walk = {
                    let mut table = DiskTable {
                        locations: tx.open_table(LOCATIONS)?,
                        referenced: tx.open_table(REFERENCED)?,
                    };
                    walk(repo, snapshots, wal, packs, condemned, &mut table, progress)?
                };
                tx.commit()?;
                Ok(walk)
            }
        }
    }

    /// Whether a snapshot references `id`.
    ///
    /// # Errors
    /// When the database fails.
    pub fn is_referenced(&self, id: &BlobId) -> Result<bool> {
        match &self.store {
            Store::Memory(table) => Ok(table.is_referenced(id)),
            Store::Disk { db, .. } => {
                let tx = db.begin_read()?;
                Ok(tx.open_table(REFERENCED)?.get(id.0)?.is_some())
            }
        }
    }
}

/// Reads the index files, marking their packs indexed, and hands every entry of a pack present
/// in the repository to `record`.
fn fill(
    repo: &Repository,
    index_files: &[(String, u64)],
    packs: &mut HashMap<PackId, PackUsage>,
    progress: &dyn PruneProgress,
    mut record: impl FnMut(&PackId, &BlobEntry) -> Result<()>,
) -> Result<()> {
    for (name, _) in index_files {
        let file = files::read(repo.backend(), repo.key(), name)?;
        progress.advance(1);
        for pack in &file.packs {
            let Some(usage) = packs.get_mut(&pack.pack) else {
                continue; // missing pack: check reports it; nothing here can live in it
            };
            usage.indexed = true;
            usage.blobs = pack.blobs.len() as u64;
            for entry in &pack.blobs {
                record(&pack.pack, entry)?;
            }
        }
    }
    Ok(())
}

/// Records `entry` in `pack` unless the table holds a location as good: one in a live pack.
fn keep_better(
    table: &mut impl BlobTable,
    condemned: &HashSet<PackId>,
    pack: &PackId,
    entry: &BlobEntry,
) -> Result<()> {
    let better = match table.pack_of(&entry.id)? {
        None => true,
        Some(old) => !condemned.contains(pack) && condemned.contains(&old),
    };
    if better {
        table.put(pack, entry)?;
    }
    Ok(())
}

/// The walk of [`Usage::walk`] over either table.
fn walk(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    wal: &[&(WalRecordId, WalRecord)],
    packs: &mut HashMap<PackId, PackUsage>,
    condemned: &HashSet<PackId>,
    table: &mut impl BlobTable,
    progress: &dyn PruneProgress,
) -> Result<Walk> {
    let mut walk = Walk::default();
    let reader = PackReader::new(repo.backend(), repo.key());
    // Records a reference; returns the location when the blob is seen for the first time.
    let mut mark =
        |id: BlobId, what: &dyn Fn() -> String, walk: &mut Walk| -> Result<Option<BlobLocation>> {
            let loc = match table.mark(id)? {
                Mark::Seen => return Ok(None),
                Mark::Missing => {
                    walk.referenced += 1;
                    walk.missing
                        .push(format!("{}: blob {id} is in no index file", what()));
                    return Ok(None);
                }
                Mark::First(loc) => loc,
            };
            walk.referenced += 1;
            if let Some(u) = packs.get_mut(&loc.pack) {
                u.used_bytes += u64::from(loc.entry.length);
                u.used_blobs += 1;
            }
            if condemned.contains(&loc.pack) {
                walk.revive.insert(loc.pack);
            }
            Ok(Some(loc))
        };
    for (snap_id, snap) in snapshots {
        // Pending directories share their parents' names (a path per directory grew with depth
        // squared); the path is spelled out only for a message.
        let mut stack = vec![(snap.tree_id(), PathChain::root())];
        while !stack.is_empty() {
            // Trees first seen are read and decoded in parallel, a bounded batch at a time; marking
            // stays sequential, in the table.
            let batch = stack.split_off(stack.len().saturating_sub(TREES_PER_BATCH));
            let mut todo = Vec::with_capacity(batch.len());
            for (tree_id, path) in batch {
                let what = || format!("snapshot {} path {}", snap_id.short(), path.dir_display());
                if let Some(loc) = mark(tree_id, &what, &mut walk)? {
                    todo.push((loc, path));
                }
            }
            let trees: Vec<Result<Tree>> = todo
                .par_iter()
                .map(|(loc, path)| {
                    let what =
                        || format!("snapshot {} path {}", snap_id.short(), path.dir_display());
                    let bytes = reader
                        .read_blob(&loc.pack, &loc.entry, None)
                        .map_err(|e| e.context(what()))?;
                    Tree::decode(&bytes).map_err(|e| e.context(what()))
                })
                .collect();
            for ((_, path), tree) in todo.iter().zip(trees) {
                for node in &tree?.nodes {
                    let child = || {
                        format!(
                            "{}{}",
                            path.dir_display(),
                            String::from_utf8_lossy(&node.name)
                        )
                    };
                    match node.kind {
                        NodeKind::Dir => stack.extend(
                            node.subtree
                                .map(|t| (t, PathChain::child(path, &node.name))),
                        ),
                        NodeKind::File => {
                            for item in &node.content {
                                if let ContentItem::Data { id, .. } = item {
                                    let what =
                                        || format!("snapshot {} file {}", snap_id.short(), child());
                                    mark_chain(&mut mark, *id, &what, &mut walk)?;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        progress.advance(1);
    }
    // Archived WAL is kept like a snapshot's content (FORMAT.md §16).
    for (record, body) in wal.iter().copied() {
        for file in &body.files {
            let what = || format!("WAL record {} file {}", record.short(), file.name);
            for id in file.chunk_ids() {
                mark_chain(&mut mark, id, &what, &mut walk)?;
            }
        }
    }
    Ok(walk)
}

/// Marks the data blob `id` and, when it is a delta, its bases: a live delta keeps its base live,
/// and that base its own (FORMAT.md §12). A chain is marked link by link, each link once, and
/// bounded like a reader's.
fn mark_chain(
    mark: &mut impl FnMut(BlobId, &dyn Fn() -> String, &mut Walk) -> Result<Option<BlobLocation>>,
    id: BlobId,
    what: &dyn Fn() -> String,
    walk: &mut Walk,
) -> Result<()> {
    let mut next = mark(id, what, walk)?;
    let mut links = 0;
    while let Some(delta) = next.and_then(|loc| loc.entry.delta) {
        links += 1;
        if links > crate::delta::MAX_CHAIN {
            return Err(Error::corrupted(format!(
                "{}: blob {id} has a chain of deltas longer than {} (or a loop); prune stops",
                what(),
                crate::delta::MAX_CHAIN
            )));
        }
        let base_of = || format!("{} (base of a delta)", what());
        next = mark(delta.base, &base_of, walk)?;
    }
    Ok(())
}
