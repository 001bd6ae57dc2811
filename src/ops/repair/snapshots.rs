//! `repair snapshots`: for each snapshot that references lost blobs, writes a new snapshot without the
//! files that cannot be restored (a directory whose tree is lost becomes empty), reusing every intact
//! subtree by id. Keeps the damaged original unless asked to forget it, and then only after the new one
//! is written. Reads no file data: damage inside a stored data blob is `check --read-data`'s to find.
//!
//! Must never drop a file whose blobs an existing pack still holds: when the index does not lead to such
//! a pack, it refuses before writing anything and asks for `repair index` first (FORMAT.md §12, Repair).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::lifecycle::LeaseKind;
use crate::format::pack::BlobEntry;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ContentItem, Node, NodeKind, Tree};
use crate::id::{BlobId, BlobType, PackId, SnapshotId, TreeId};
use crate::index::files;
use crate::pack::read_pack_header;
use crate::repo::lease::HeldLease;
use crate::repo::pending;
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
    let listed: std::collections::HashMap<PackId, u64> = r
        .backend()
        .list(ObjectKind::Pack)?
        .into_iter()
        .filter_map(|(n, size)| Some((PackId::from_hex(&n).ok()?, size)))
        .collect();
    // Index entries of packs that are gone (or cut) hold nothing: their blobs count as missing,
    // and trees found only there are written again (FORMAT.md §8).
    let absent: HashSet<PackId> = repo.mark_absent_packs(&listed)?.into_iter().collect();
    let packs: HashSet<PackId> = listed.into_keys().filter(|p| !absent.contains(p)).collect();
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
        let root = rewriter.tree(snap.tree_id())?;
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
            removed: root.removed.flatten(),
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

/// A tree after repair: its id (the original's when nothing was lost) and what it lost.
#[derive(Clone)]
struct Repaired {
    id: TreeId,
    removed: Arc<Removed>,
}

/// What a tree lost, in path order: its own entries by name, and its subdirectories' losses by
/// their names. No path is stored: [`Removed::flatten`] spells them out once, so memory stays
/// linear in depth (a list of relative paths per tree, prefixed at each level, grew with its square).
#[derive(Default)]
struct Removed {
    items: Vec<Lost>,
}

enum Lost {
    /// An entry of this tree (the empty name: the tree's own entries, lost with it).
    Entry(Vec<u8>, String),
    /// What the subdirectory of this name lost.
    Below(Vec<u8>, Arc<Removed>),
}

impl Removed {
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every lost path, absolute; a directory ends with `/`.
    fn flatten(&self) -> Vec<RemovedPath> {
        let mut out = Vec::new();
        let mut path = b"/".to_vec();
        let mut ends = Vec::new();
        let mut stack = vec![self.items.iter()];
        while let Some(items) = stack.last_mut() {
            match items.next() {
                Some(Lost::Entry(name, reason)) => {
                    let mut full = path.clone();
                    full.extend_from_slice(name);
                    out.push(RemovedPath {
                        path: String::from_utf8_lossy(&full).into_owned(),
                        reason: reason.clone(),
                    });
                }
                Some(Lost::Below(name, below)) => {
                    ends.push(path.len());
                    path.extend_from_slice(name);
                    path.push(b'/');
                    stack.push(below.items.iter());
                }
                None => {
                    stack.pop();
                    if let Some(end) = ends.pop() {
                        path.truncate(end);
                    }
                }
            }
        }
        out
    }
}

impl Drop for Removed {
    // Losses as deep as the snapshot would be dropped one recursion per level.
    fn drop(&mut self) {
        let mut pending = std::mem::take(&mut self.items);
        while let Some(item) = pending.pop() {
            if let Lost::Below(_, below) = item {
                if let Ok(mut below) = Arc::try_unwrap(below) {
                    pending.append(&mut below.items);
                }
            }
        }
    }
}

/// A tree being rewritten: its entries left, those kept, what it lost, and the directory entry
/// waiting for its subtree's result.
struct Rewriting {
    id: TreeId,
    nodes: std::vec::IntoIter<Node>,
    kept: Vec<Node>,
    removed: Removed,
    changed: bool,
    waiting: Option<Node>,
}

impl Rewriting {
    /// Takes the repaired subtree of the directory entry `node`.
    fn take_below(&mut self, mut node: Node, below: Repaired) {
        if node.subtree != Some(below.id) {
            node.subtree = Some(below.id);
            self.changed = true;
        }
        if !below.removed.is_empty() {
            self.removed
                .items
                .push(Lost::Below(node.name.clone(), below.removed));
        }
        self.kept.push(node);
    }
}

/// How a tree starts its repair: already known, lost whole, or to be walked.
enum Start {
    Done(Repaired),
    Walk(Box<Rewriting>),
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
        let Some(why) = self.link_lost(id, blob_type)? else {
            return Ok(None);
        };
        self.missing.insert(*id);
        Ok(Some(why))
    }

    /// Why `id` cannot be read, following a delta's chain (FORMAT.md §6): a lost base makes every
    /// chunk built on it lost, and exactly those.
    fn link_lost(&self, id: &TreeId, blob_type: BlobType) -> Result<Option<String>> {
        let mut link = *id;
        for depth in 0..=crate::delta::MAX_CHAIN {
            let base_of = |why: String| match depth {
                0 => why,
                _ => format!("blob {id} is a delta whose base {why}"),
            };
            let loc = match self.repo.index().lookup(&link)? {
                None => return Ok(Some(base_of(format!("blob {link} is not in the index")))),
                Some(loc) if loc.entry.blob_type != blob_type => {
                    return Ok(Some(format!("blob {link} is indexed with the wrong type")))
                }
                Some(loc) if !self.packs.contains(&loc.pack) => {
                    return Ok(Some(base_of(format!(
                        "blob {link} is in pack {} which is missing",
                        loc.pack
                    ))))
                }
                Some(loc) => loc,
            };
            match loc.entry.delta {
                None => return Ok(None),
                Some(delta) => link = delta.base,
            }
        }
        Ok(Some(format!(
            "blob {id}: its chain of deltas is longer than {} (or loops)",
            crate::delta::MAX_CHAIN
        )))
    }

    /// Repairs the tree `id` and everything below it, depth first with a stack (no recursion:
    /// any depth fits).
    fn tree(&mut self, id: TreeId) -> Result<Repaired> {
        let mut stack = match self.start(id)? {
            Start::Done(done) => return Ok(done),
            Start::Walk(first) => vec![*first],
        };
        while let Some(top) = stack.last_mut() {
            let Some(mut node) = top.nodes.next() else {
                let done = stack.pop().expect("the stack is not empty");
                let tree = Tree { nodes: done.kept };
                let id = if done.changed {
                    self.save(&tree)?
                } else {
                    done.id
                };
                let repaired = Repaired {
                    id,
                    removed: Arc::new(done.removed),
                };
                self.memo.insert(done.id, repaired.clone());
                match stack.last_mut() {
                    Some(parent) => {
                        let node = parent
                            .waiting
                            .take()
                            .expect("a directory waits for its tree");
                        parent.take_below(node, repaired);
                    }
                    None => return Ok(repaired),
                }
                continue;
            };
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
                    let top = stack.last_mut().expect("the stack is not empty");
                    match why {
                        Some(reason) => {
                            top.removed
                                .items
                                .push(Lost::Entry(std::mem::take(&mut node.name), reason));
                            top.changed = true;
                        }
                        None => top.kept.push(node),
                    }
                }
                NodeKind::Dir if node.subtree.is_some() => {
                    let sub = node.subtree.expect("checked just above");
                    match self.start(sub)? {
                        Start::Done(below) => stack
                            .last_mut()
                            .expect("the stack is not empty")
                            .take_below(node, below),
                        Start::Walk(below) => {
                            stack.last_mut().expect("the stack is not empty").waiting = Some(node);
                            stack.push(*below);
                        }
                    }
                }
                _ => stack
                    .last_mut()
                    .expect("the stack is not empty")
                    .kept
                    .push(node),
            }
        }
        unreachable!("the loop returns when the first tree is done")
    }

    /// The repair of `id` when known or lost whole (its directory stays, empty: its entries,
    /// names included, were in the lost tree), else its entries to walk.
    fn start(&mut self, id: TreeId) -> Result<Start> {
        if let Some(done) = self.memo.get(&id) {
            return Ok(Start::Done(done.clone()));
        }
        let unreadable = match self.lost(&id, BlobType::Tree)? {
            Some(why) => why,
            None => match self.repo.load_tree(&id) {
                Ok(tree) => {
                    return Ok(Start::Walk(Box::new(Rewriting {
                        id,
                        nodes: tree.nodes.into_iter(),
                        kept: Vec::new(),
                        removed: Removed::default(),
                        changed: false,
                        waiting: None,
                    })))
                }
                Err(e) if e.is_damage() => e.to_string(),
                Err(e) => return Err(e),
            },
        };
        let done = Repaired {
            id: self.save(&Tree::default())?,
            removed: Arc::new(Removed {
                items: vec![Lost::Entry(
                    Vec::new(),
                    format!("the directory's contents are lost ({unreadable}); it is left empty"),
                )],
            }),
        };
        self.memo.insert(id, done.clone());
        Ok(Start::Done(done))
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
        let Ok(file) = files::read(repo.backend(), repo.key(), &name) else {
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
            Err(e) if e.is_damage() => {}
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
