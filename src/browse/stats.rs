//! `stats`: how big the selected snapshots are when restored, and what they cost in the repository
//! once deduplicated and compressed; every distinct tree is loaded once, however many snapshots
//! share it.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::browse::walk::subtree_of;
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ContentItem, NodeKind};
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::repo::IndexedRepository;
use crate::repo::TreeLoader;

/// Sizes of a set of snapshots.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Snapshots counted.
    pub snapshots: u64,
    /// What restoring every one of them would write: the sum of their file sizes.
    pub restore_size: u64,
    /// File entries in them, counted once per snapshot.
    pub files: u64,
    /// Distinct trees (directories) they reference.
    pub tree_blobs: u64,
    /// Distinct data chunks they reference.
    pub data_blobs: u64,
    /// Those chunks' plaintext size: the data after deduplication.
    pub data_raw_bytes: u64,
    /// Those chunks' size in packs (after deduplication, compression and encryption), and that of
    /// the delta bases they need.
    pub data_stored_bytes: u64,
    /// Chunks (referenced or bases) stored as deltas against an older chunk.
    pub delta_blobs: u64,
    /// Chunks no snapshot counted references but a delta needs as its base.
    pub base_blobs: u64,
    /// The trees' size in packs.
    pub tree_stored_bytes: u64,
    /// Referenced blobs the index does not name (damage: `cairn check` says more).
    pub missing_blobs: u64,
}

impl Stats {
    /// Restore size over deduplicated plaintext size (1.0 when nothing is shared).
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.restore_size, self.data_raw_bytes)
    }

    /// Deduplicated plaintext size over its stored size.
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.data_raw_bytes, self.data_stored_bytes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Counts `snapshots`: walks their trees (each distinct tree once), gathers the distinct chunks and
/// looks each up in the index for its sizes.
///
/// # Errors
/// Repository errors while loading trees or reading the index.
pub fn stats(repo: &IndexedRepository, snapshots: &[(SnapshotId, Snapshot)]) -> Result<Stats> {
    let loader = TreeLoader::cached(repo);
    let mut out = Stats::default();
    // Files and bytes below each distinct tree, summed once: snapshots share most of their trees.
    let mut totals: HashMap<TreeId, (u64, u64)> = HashMap::new();
    let mut data: HashSet<BlobId> = HashSet::new();
    for (_, snapshot) in snapshots {
        out.snapshots += 1;
        let (files, bytes) = tree_totals(&loader, snapshot.tree_id(), &mut totals, &mut data)?;
        out.files += files;
        out.restore_size += bytes;
    }
    let trees: HashSet<TreeId> = totals.into_keys().collect();
    out.tree_blobs = trees.len() as u64;
    out.data_blobs = data.len() as u64;
    let index = repo.index();
    // The bases of deltas are stored data the snapshots need too: each counted once, chains
    // followed level by level.
    let mut counted = data.clone();
    let mut data: Vec<BlobId> = data.into_iter().collect();
    let mut referenced = true;
    while !data.is_empty() {
        let mut bases = Vec::new();
        for chunk in data.chunks(65_536) {
            for location in index.lookup_many(chunk)? {
                match location {
                    Some(l) => {
                        out.data_stored_bytes += u64::from(l.entry.length);
                        if let Some(delta) = l.entry.delta {
                            out.delta_blobs += 1;
                            if counted.insert(delta.base) {
                                out.base_blobs += 1;
                                bases.push(delta.base);
                            }
                        }
                        if referenced {
                            out.data_raw_bytes += u64::from(l.entry.raw_length);
                        }
                    }
                    None => out.missing_blobs += 1,
                }
            }
        }
        data = bases;
        referenced = false;
    }
    let trees: Vec<BlobId> = trees.into_iter().collect();
    for chunk in trees.chunks(65_536) {
        for location in index.lookup_many(chunk)? {
            match location {
                Some(l) => out.tree_stored_bytes += u64::from(l.entry.length),
                None => out.missing_blobs += 1,
            }
        }
    }
    Ok(out)
}

/// The files and bytes below `root`, with every tree not in `totals` loaded once (post-order,
/// without recursion) and its chunks added to `data`.
fn tree_totals(
    loader: &TreeLoader<'_>,
    root: TreeId,
    totals: &mut HashMap<TreeId, (u64, u64)>,
    data: &mut HashSet<BlobId>,
) -> Result<(u64, u64)> {
    // A tree's own files and bytes and its subtrees, while its subtrees are being summed.
    let mut open: HashMap<TreeId, (u64, u64, Vec<TreeId>)> = HashMap::new();
    let mut stack = vec![(root, false)];
    while let Some((id, children_done)) = stack.pop() {
        if children_done {
            let Some((mut files, mut bytes, subtrees)) = open.remove(&id) else {
                continue;
            };
            for sub in subtrees {
                let (f, b) = totals.get(&sub).copied().unwrap_or_default();
                files += f;
                bytes += b;
            }
            totals.insert(id, (files, bytes));
            continue;
        }
        // Done already, or an ancestor of itself (only a forged repository could hold that).
        if totals.contains_key(&id) || open.contains_key(&id) {
            continue;
        }
        let tree = loader.load(&id)?;
        let (mut files, mut bytes, mut subtrees) = (0, 0, Vec::new());
        for node in &tree.nodes {
            match node.kind {
                NodeKind::Dir => subtrees.push(subtree_of(node, &node.name)?),
                NodeKind::File => {
                    files += 1;
                    bytes += node.size;
                    data.extend(node.content.iter().filter_map(ContentItem::data_id));
                }
                _ => {}
            }
        }
        stack.push((id, true));
        stack.extend(subtrees.iter().map(|s| (*s, false)));
        open.insert(id, (files, bytes, subtrees));
    }
    Ok(totals.get(&root).copied().unwrap_or_default())
}
