//! `repair snapshots`: for each snapshot that references lost blobs, writes a new snapshot without the
//! files that cannot be restored (a directory whose tree is lost becomes empty), reusing every intact
//! subtree by id. Keeps the damaged original unless asked to forget it, and then only after the new one
//! is written. Reads no file data: damage inside a stored data blob is `check --read-data`'s to find.
//!
//! Must never drop a file whose blobs an existing pack still holds: when the index does not lead to such
//! a pack, it refuses before writing anything and asks for `repair index` first (FORMAT.md §12, Repair).

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::backend::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use crate::format::lifecycle::LeaseKind;
use crate::format::pack::BlobEntry;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ContentItem, NodeKind, Tree};
use crate::id::{BlobId, BlobType, PackId, SnapshotId, TreeId};
use crate::ops::lease::HeldLease;
use crate::ops::pending;
use crate::ops::prune::read_index_file;
use crate::pack::read_pack_header;
use crate::repo::{IndexedRepository, Repository};

/// The tag every snapshot written by `repair snapshots` carries.
pub const REPAIRED_TAG: &str = "repaired";

/// How to repair.
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotRepairOptions {
    /// Remove each damaged snapshot once its repaired copy is written.
    pub forget: bool,
    /// Find the damage and write nothing.
    pub dry_run: bool,
}

/// A path a repaired snapshot no longer holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemovedPath {
    /// Absolute path in the snapshot; a directory ends with `/` (it is kept, emptied).
    pub path: String,
    /// Why it cannot be restored.
    pub reason: String,
}

/// One damaged snapshot and what became of it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SnapshotRepair {
    /// The damaged snapshot.
    #[serde(serialize_with = "hex")]
    pub original: SnapshotId,
    /// Its repaired copy: written now, or by an earlier run (`None` on a dry run).
    #[serde(serialize_with = "hex_opt")]
    pub repaired: Option<SnapshotId>,
    /// Whether an earlier run had written the repaired copy already.
    pub already_repaired: bool,
    /// Whether the original was removed.
    pub forgotten: bool,
    /// What the repaired copy lacks.
    pub removed: Vec<RemovedPath>,
}

fn hex<S: serde::Serializer>(id: &SnapshotId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex())
}

fn hex_opt<S: serde::Serializer>(
    id: &Option<SnapshotId>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match id {
        Some(id) => hex(id, s),
        None => s.serialize_none(),
    }
}

/// What `repair snapshots` found and did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SnapshotRepairReport {
    /// Snapshots examined.
    pub snapshots: u64,
    /// The damaged ones.
    pub repairs: Vec<SnapshotRepair>,
    /// Tree blobs written for the repaired snapshots (0 on a dry run).
    pub trees_written: u64,
}

/// Repairs every damaged snapshot; see the module documentation.
///
/// Holds a backup lease while writing (FORMAT.md §12): the new snapshots reuse blobs of the originals,
/// and a prune must not delete them meanwhile.
///
/// # Errors
/// When the storage fails (nothing is half-written: trees and index first, snapshots next, originals
/// removed last), a tree cannot be read for a reason other than damage, or the lease lapsed.
pub fn repair_snapshots(
    repo: &IndexedRepository,
    options: SnapshotRepairOptions,
) -> Result<SnapshotRepairReport> {
    if options.dry_run {
        return crate::threads::run_in_pool(|| repair_leased(repo, options, None, HashSet::new()));
    }
    let lease = HeldLease::acquire(repo.repo(), LeaseKind::Backup)?;
    lease.hold_while(repo.repo(), |lease| {
        // As a backup does: records first, then an index listed after them (FORMAT.md §12, backup 2-3).
        let condemned = pending::condemned_packs(repo.repo())?;
        repo.refresh_index()?;
        crate::threads::run_in_pool(|| repair_leased(repo, options, Some(lease), condemned))
    })
}

fn repair_leased(
    repo: &IndexedRepository,
    options: SnapshotRepairOptions,
    lease: Option<&HeldLease>,
    condemned: HashSet<PackId>,
) -> Result<SnapshotRepairReport> {
    let r = repo.repo();
    let snapshots = r.snapshots()?;
    let packs: HashSet<PackId> = r
        .backend()
        .list(ObjectKind::Pack)?
        .iter()
        .filter_map(|(n, _)| PackId::from_hex(n).ok())
        .collect();
    // Index entries of packs that are gone hold nothing: their blobs count as missing, and trees
    // found only there are written again (FORMAT.md §11).
    repo.mark_absent_packs(&packs)?;
    let mut rewriter = Rewriter {
        repo,
        packs,
        memo: HashMap::new(),
        new_trees: Vec::new(),
        missing: HashSet::new(),
    };
    let repaired_before: HashMap<String, SnapshotId> = snapshots
        .iter()
        .filter_map(|(id, s)| s.repaired_from.clone().map(|from| (from, *id)))
        .collect();

    let mut report = SnapshotRepairReport {
        snapshots: snapshots.len() as u64,
        ..Default::default()
    };
    let mut to_write: Vec<(usize, Snapshot)> = Vec::new();
    for (id, snap) in &snapshots {
        let root = rewriter.tree(snap.tree_id(), "/")?;
        if root.removed.is_empty() {
            continue;
        }
        let earlier = repaired_before.get(&id.to_hex()).copied();
        if earlier.is_none() && !options.dry_run {
            let mut fixed = snap.clone();
            fixed.tree = root.id.to_hex();
            if !fixed.tags.iter().any(|t| t == REPAIRED_TAG) {
                fixed.tags.push(REPAIRED_TAG.to_string());
            }
            fixed.repaired_from = Some(id.to_hex());
            fixed.program_version = format!("cairn {}", env!("CARGO_PKG_VERSION"));
            to_write.push((report.repairs.len(), fixed));
        }
        report.repairs.push(SnapshotRepair {
            original: *id,
            repaired: earlier,
            already_repaired: earlier.is_some(),
            forgotten: false,
            removed: root.removed,
        });
    }
    // Nothing is written yet: a blob the index cannot give may still be in a pack, and then the
    // index needs repairing, not the snapshots.
    refuse_if_held(r, &rewriter.packs, &rewriter.missing)?;
    if options.dry_run {
        return Ok(report);
    }

    // Trees and their index before any snapshot that names them (FORMAT.md §11).
    let saver = repo.saver_excluding(condemned);
    for (_, bytes) in &rewriter.new_trees {
        let (_, new) = saver.save(BlobType::Tree, bytes)?;
        report.trees_written += u64::from(new);
    }
    saver.finish()?;
    if let Some(lease) = lease {
        lease.ensure_valid()?;
    }
    for (at, fixed) in to_write {
        report.repairs[at].repaired = Some(r.save_snapshot(&fixed)?);
    }
    // Only once every repaired copy exists: a prune listing snapshots now sees the original or its copy.
    if options.forget {
        for repair in &mut report.repairs {
            r.backend()
                .remove(ObjectKind::Snapshot, &repair.original.to_hex())?;
            repair.forgotten = true;
        }
    }
    Ok(report)
}

/// A tree after repair: its id (the original's when nothing was lost) and what it lost, relative paths.
#[derive(Clone)]
struct Repaired {
    id: TreeId,
    removed: Vec<RemovedPath>,
}

struct Rewriter<'a> {
    repo: &'a IndexedRepository,
    packs: HashSet<PackId>,
    // Trees are shared between snapshots and directories: each is examined once.
    memo: HashMap<TreeId, Repaired>,
    /// Rewritten trees, stored only once the whole plan is known to be safe.
    new_trees: Vec<(TreeId, Vec<u8>)>,
    /// Blobs judged lost because the index does not lead to an existing pack holding them.
    missing: HashSet<BlobId>,
}

impl Rewriter<'_> {
    /// Why a referenced blob cannot be read, if it cannot.
    fn lost(&mut self, id: &TreeId, blob_type: BlobType) -> Result<Option<String>> {
        let why = match self.repo.index().lookup(id)? {
            None => format!("blob {id} is not in the index"),
            Some(loc) if loc.entry.blob_type != blob_type => {
                return Ok(Some(format!("blob {id} is indexed with the wrong type")))
            }
            Some(loc) if !self.packs.contains(&loc.pack) => {
                format!("blob {id} is in pack {} which is missing", loc.pack)
            }
            Some(_) => return Ok(None),
        };
        self.missing.insert(*id);
        Ok(Some(why))
    }

    /// Repairs the tree `id` found at `path` (ends with `/`); removed paths are made absolute there.
    fn tree(&mut self, id: TreeId, path: &str) -> Result<Repaired> {
        let relative = match self.memo.get(&id) {
            Some(done) => done.clone(),
            None => {
                let done = self.rewrite(id)?;
                self.memo.insert(id, done.clone());
                done
            }
        };
        Ok(Repaired {
            id: relative.id,
            removed: relative
                .removed
                .into_iter()
                .map(|r| RemovedPath {
                    path: format!("{path}{}", r.path),
                    reason: r.reason,
                })
                .collect(),
        })
    }

    fn rewrite(&mut self, id: TreeId) -> Result<Repaired> {
        let unreadable = match self.lost(&id, BlobType::Tree)? {
            Some(why) => Some(why),
            None => match self.repo.load_tree(&id) {
                Ok(tree) => return self.rewrite_nodes(id, tree),
                Err(e) if e.kind() == ErrorKind::Corrupted => Some(e.to_string()),
                Err(e) => return Err(e),
            },
        };
        // The directory stays, empty: its entries (names included) were in the lost tree.
        Ok(Repaired {
            id: self.save(&Tree::default())?,
            removed: vec![RemovedPath {
                path: String::new(),
                reason: format!(
                    "the directory's contents are lost ({}); it is left empty",
                    unreadable.unwrap_or_default()
                ),
            }],
        })
    }

    fn rewrite_nodes(&mut self, id: TreeId, mut tree: Tree) -> Result<Repaired> {
        let mut removed = Vec::new();
        let mut changed = false;
        let mut kept = Vec::with_capacity(tree.nodes.len());
        for mut node in std::mem::take(&mut tree.nodes) {
            let name = String::from_utf8_lossy(&node.name).into_owned();
            match node.kind {
                NodeKind::File => {
                    let mut why = None;
                    for item in &node.content {
                        if let ContentItem::Data { id: blob, .. } = item {
                            why = self.lost(blob, BlobType::Data)?;
                            if why.is_some() {
                                break;
                            }
                        }
                    }
                    if let Some(reason) = why {
                        removed.push(RemovedPath { path: name, reason });
                        changed = true;
                        continue;
                    }
                }
                NodeKind::Dir => {
                    if let Some(sub) = node.subtree {
                        let below = self.tree(sub, &format!("{name}/"))?;
                        if below.id != sub {
                            node.subtree = Some(below.id);
                            changed = true;
                        }
                        removed.extend(below.removed);
                    }
                }
                _ => {}
            }
            kept.push(node);
        }
        tree.nodes = kept;
        let id = if changed { self.save(&tree)? } else { id };
        Ok(Repaired { id, removed })
    }

    /// The id of a rewritten tree; its bytes are kept to be stored after the walk.
    fn save(&mut self, tree: &Tree) -> Result<TreeId> {
        let bytes = tree.encode()?;
        let id = self.repo.repo().key().blob_id(&bytes);
        self.new_trees.push((id, bytes));
        Ok(id)
    }
}

/// Refuses when an existing pack holds a blob the walk found missing: either an index file names it in
/// a pack the local index does not point to (the index still names a lost pack first), or the pack is in
/// no index file (its index file was lost, or a backup was interrupted). Dropping the files that use such
/// a blob would lose data `repair index` recovers.
///
/// # Errors
/// `InvalidInput` naming a held blob and its pack; storage errors reading index files or pack headers.
fn refuse_if_held(
    repo: &Repository,
    packs: &HashSet<PackId>,
    missing: &HashSet<BlobId>,
) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    let mut held: Vec<(BlobId, PackId)> = Vec::new();
    let mut named: HashSet<PackId> = HashSet::new();
    for (name, _) in repo.backend().list(ObjectKind::Index)? {
        // An index file that cannot be read names nothing: its packs' headers are read below.
        let Ok(file) = read_index_file(repo, &name) else {
            continue;
        };
        for pack in file.packs.into_iter().filter(|p| packs.contains(&p.pack)) {
            named.insert(pack.pack);
            held.extend(
                pack.blobs
                    .iter()
                    .filter(|b| missing.contains(&b.id))
                    .map(|b| (b.id, pack.pack)),
            );
        }
    }
    let mut unnamed: Vec<&PackId> = packs.iter().filter(|p| !named.contains(*p)).collect();
    unnamed.sort();
    let headers: Vec<(PackId, Result<Vec<BlobEntry>>)> = unnamed
        .par_iter()
        .map(|id| (**id, read_pack_header(repo.backend(), repo.key(), id)))
        .collect();
    for (pack, header) in headers {
        match header {
            Ok(entries) => held.extend(
                entries
                    .iter()
                    .filter(|b| missing.contains(&b.id))
                    .map(|b| (b.id, pack)),
            ),
            // Damaged: `repair index` leaves it out too, so nothing in it can be recovered.
            Err(e) if e.kind() == ErrorKind::Corrupted => {}
            Err(e) => {
                return Err(e.context(format!(
                    "repair snapshots changed nothing: pack {pack} (in no index file) could not be read to tell whether it holds blobs the snapshots need; fix the cause and run it again"
                )))
            }
        }
    }
    held.sort();
    held.dedup_by_key(|(blob, _)| *blob);
    match held.first() {
        None => Ok(()),
        Some((blob, pack)) => Err(Error::invalid_input(format!(
            "repair snapshots changed nothing: {} blob(s) it would drop are still in packs the index does not lead to (e.g. blob {blob} in pack {pack}); run `cairn repair index` first, then `cairn repair snapshots` again",
            held.len()
        ))),
    }
}
