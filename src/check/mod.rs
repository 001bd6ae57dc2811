//! `check`: proves that every snapshot can be restored (structure), and optionally that the blobs of all
//! or a rotating subset of the packs decrypt and verify. Every problem names the snapshots and paths it affects.
//!
//! Changes nothing in the repository except the verification record that subset rotation needs.

mod read_data;
mod rotation;

pub use rotation::DataSelection;

use std::collections::{HashMap, HashSet};

use crate::backend::ObjectKind;
use crate::error::Result;
use crate::format::pack::BlobEntry;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ContentItem, NodeKind};
use crate::id::{BlobId, BlobType, PackId, SnapshotId, TreeId};
use crate::ops::prune::read_index_file;
use crate::repo::IndexedRepository;

/// What to verify.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckOptions {
    /// Which packs have every blob decrypted and verified.
    pub read_data: DataSelection,
}

impl CheckOptions {
    /// Structure and every blob of every pack.
    pub fn read_data() -> Self {
        CheckOptions {
            read_data: DataSelection::All,
        }
    }
}

/// Findings of a check.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Problems: each names the object and, where known, the snapshot and path affected.
    pub errors: Vec<String>,
    /// Observations that are not damage (unreferenced packs left by an interrupted backup).
    pub notes: Vec<String>,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Trees checked.
    pub trees: u64,
    /// Packs whose header was read.
    pub packs: u64,
    /// Packs whose data was read.
    pub packs_read: u64,
    /// Blobs decrypted and verified.
    pub blobs_verified: u64,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks the repository.
///
/// # Errors
/// Only when the storage cannot be listed; damage is reported in the report.
pub fn check(repo: &IndexedRepository, options: CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let backend = repo.repo().backend();

    // From the index files themselves: the cache keeps one location per blob, so a pack whose blobs all
    // have copies elsewhere (after a repack) would look unindexed there. Read before the packs, whose
    // headers are compared with these entries.
    let mut index_entries: HashMap<PackId, Vec<BlobEntry>> = HashMap::new();
    for (name, _) in backend.list(ObjectKind::Index)? {
        match read_index_file(repo.repo(), &name) {
            Ok(file) => {
                for pack in file.packs {
                    index_entries
                        .entry(pack.pack)
                        .or_default()
                        .extend(pack.blobs);
                }
            }
            Err(e) => report.errors.push(format!(
                "{e}; its blobs may be missing from the index: run `cairn repair index`"
            )),
        }
    }

    // Packs: every header must open and agree with the index; selected packs have every blob read too.
    let packs = backend.list(ObjectKind::Pack)?;
    let ids: Vec<PackId> = packs
        .iter()
        .filter_map(|(n, _)| PackId::from_hex(n).ok())
        .collect();
    let (mut verified, records) = if options.read_data.reads_data() {
        rotation::load(repo.repo())?
    } else {
        Default::default()
    };
    let chosen: HashSet<PackId> = options
        .read_data
        .choose(&ids, &verified)
        .into_iter()
        .collect();
    let checked = read_data::check_packs(repo, &packs, &chosen, &index_entries);
    let mut damage = Damage::default();
    let mut listed: HashSet<PackId> = HashSet::new();
    let now = chrono::Utc::now();
    for pack in checked {
        report.packs += 1;
        report.blobs_verified += pack.blobs_verified;
        if let Some(id) = pack.id {
            listed.insert(id);
            if pack.unreadable {
                damage.packs.insert(id, pack.errors[0].clone());
            } else if pack.read && pack.errors.is_empty() {
                verified.insert(id, now);
            }
            report.packs_read += u64::from(pack.read);
        }
        damage.blobs.extend(pack.bad_blobs);
        damage.unindexed.extend(pack.unindexed);
        report.errors.extend(pack.errors);
    }
    if options.read_data.reads_data() {
        if let Err(e) = rotation::save(repo.repo(), &verified, &ids, &records) {
            report
                .notes
                .push(format!("could not record which packs were verified: {e}"));
        }
    }

    let indexed_packs: HashSet<PackId> = index_entries.keys().copied().collect();
    for pack in indexed_packs.difference(&listed) {
        report.errors.push(format!(
            "pack {pack} is listed in the index but missing from the repository; `cairn repair index` drops it from the index, then `cairn repair snapshots` rewrites the snapshots that used it"
        ));
        damage
            .packs
            .insert(*pack, format!("pack {pack} is missing"));
    }
    for pack in listed.difference(&indexed_packs) {
        report.notes.push(format!(
            "pack {pack} is in no index file (left by an interrupted backup or a repack; harmless, prune removes it)"
        ));
    }

    // Snapshots and the trees they reference: every referenced blob must be indexed and undamaged.
    let snapshots = match repo.repo().snapshots() {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(e.to_string());
            Vec::new()
        }
    };
    report.snapshots = snapshots.len() as u64;
    // A first walk shares trees between snapshots (fast); when it finds problems, a second walk per
    // snapshot names every snapshot and path they affect.
    let mut walk = Walker {
        repo,
        damage: &damage,
        problems: Vec::new(),
        trees: 0,
    };
    walk.run(&snapshots, true);
    report.trees = walk.trees;
    if !walk.problems.is_empty() {
        walk.problems.clear();
        walk.run(&snapshots, false);
    }
    report.errors.extend(walk.problems);
    Ok(report)
}

/// Damage found in the packs, looked up while walking the snapshots.
#[derive(Default)]
struct Damage {
    /// Packs missing or unreadable, with why.
    packs: HashMap<PackId, String>,
    /// Blobs that failed verification or whose index entry is wrong, with why.
    blobs: HashMap<BlobId, String>,
    /// Blobs a pack header lists that no index file lists for that pack, with the pack.
    unindexed: HashMap<BlobId, PackId>,
}

struct Walker<'a> {
    repo: &'a IndexedRepository,
    damage: &'a Damage,
    problems: Vec<String>,
    trees: u64,
}

impl Walker<'_> {
    fn run(&mut self, snapshots: &[(SnapshotId, Snapshot)], share_trees: bool) {
        let mut seen: HashSet<TreeId> = HashSet::new();
        for (id, snap) in snapshots {
            if !share_trees {
                seen.clear();
            }
            let mut stack = vec![(snap.tree_id(), String::from("/"))];
            while let Some((tree_id, path)) = stack.pop() {
                if !seen.insert(tree_id) {
                    continue;
                }
                self.trees += 1;
                let whose = || format!("snapshot {} path {path}", id.short());
                if let Some(problem) = self.blob_problem(&tree_id, BlobType::Tree) {
                    self.problems.push(format!("{}: {problem}", whose()));
                    continue;
                }
                let tree = match self.repo.load_tree(&tree_id) {
                    Ok(t) => t,
                    Err(e) => {
                        self.problems.push(format!("{}: {e}", whose()));
                        continue;
                    }
                };
                for node in &tree.nodes {
                    let child = format!("{}{}", path, String::from_utf8_lossy(&node.name));
                    match node.kind {
                        NodeKind::Dir => {
                            stack.extend(node.subtree.map(|sub| (sub, format!("{child}/"))))
                        }
                        NodeKind::File => {
                            let problem = node.content.iter().find_map(|item| match item {
                                ContentItem::Data { id: blob, .. } => {
                                    self.blob_problem(blob, BlobType::Data)
                                }
                                ContentItem::Hole { .. } => None,
                            });
                            if let Some(problem) = problem {
                                self.problems.push(format!(
                                    "snapshot {} file {child}: {problem}",
                                    id.short()
                                ));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Why a referenced blob cannot be restored, if it cannot.
    fn blob_problem(&self, id: &BlobId, blob_type: BlobType) -> Option<String> {
        let loc = match self.repo.index().locate(id, blob_type) {
            Ok(loc) => loc,
            Err(e) => {
                return Some(match self.damage.unindexed.get(id) {
                    Some(pack) => format!("{e}; pack {pack} holds it: run `cairn repair index`"),
                    None => e.to_string(),
                })
            }
        };
        if let Some(why) = self.damage.packs.get(&loc.pack) {
            return Some(format!(
                "blob {id} is in pack {} which is unreadable ({why})",
                loc.pack
            ));
        }
        self.damage
            .blobs
            .get(id)
            .map(|why| format!("blob {id} is damaged ({why})"))
    }
}
