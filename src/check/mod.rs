//! `check`: proves that every snapshot can be restored (structure), and optionally that the blobs of all
//! or a rotating subset of the packs decrypt and verify. Every problem names the snapshots and paths it affects.
//!
//! Changes nothing in the repository except the verification record that subset rotation needs, and
//! not that either in a read-only view ([`crate::backend::Backend::read_only`]).

mod read_data;
pub(crate) mod rotation;
mod settle;
mod strays;
mod wal;

pub use rotation::DataSelection;

use std::collections::{HashMap, HashSet};

use crate::backend::ObjectKind;
use crate::browse::walk::PathChain;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ContentItem, NodeKind};
use crate::id::{BlobId, BlobType, PackId, SnapshotId, TreeId};
use crate::index::by_pack::EntriesByPack;
use crate::index::files;
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
    /// Archived WAL files checked (FORMAT.md §16).
    pub wal_files: u64,
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
/// Safe while backups, forgets and prunes run: a problem is reported only if, when the check lists the
/// repository again, nothing it listed has vanished; otherwise it starts over (FORMAT.md §12, Check).
///
/// # Errors
/// When the storage cannot be listed, or objects kept vanishing while the check read them (a prune kept
/// working through every attempt): then nothing is known to be damaged and the check can be run again.
/// Damage is reported in the report.
pub fn check(repo: &IndexedRepository, options: CheckOptions) -> Result<CheckReport> {
    let (mut verified, records) = if options.read_data.reads_data() {
        rotation::load(repo.repo())?
    } else {
        Default::default()
    };
    // Every attempt chooses from the times as loaded, so a rerun keeps the first attempt's choice.
    let times_before = verified.clone();
    let mut carry = Carry::default();
    let mut restarts: Vec<String> = Vec::new();
    let mut last_ids = Vec::new();
    for _ in 0..settle::ATTEMPTS {
        let Pass {
            mut report,
            listed,
            ids,
            verified_now,
        } = check_once(repo, options, &times_before, &mut verified, &carry.packs)?;
        let vanished = if report.is_ok() {
            None
        } else {
            listed.vanished(repo)?
        };
        match vanished {
            Some((kind, name)) => {
                restarts.push(format!("{} {name}", kind.label()));
                last_ids = ids;
                // Pack data is immutable: what verified stays verified, and the rerun reads headers only.
                for (id, blobs) in verified_now {
                    carry.packs.insert(id);
                    carry.packs_read += 1;
                    carry.blobs_verified += blobs;
                }
            }
            None => {
                report.packs_read += carry.packs_read;
                report.blobs_verified += carry.blobs_verified;
                if !restarts.is_empty() {
                    report.notes.push(format!(
                        "check started over {} time(s) because objects it listed were removed while it read them (a prune or forget ran meanwhile), first {}",
                        restarts.len(),
                        restarts[0]
                    ));
                }
                save_rotation(repo, options, &verified, &ids, &records, &mut report);
                return Ok(report);
            }
        }
    }
    if options.read_data.reads_data() && !repo.repo().backend().read_only() {
        // The packs read meanwhile were verified all the same; the error below matters more than
        // a failure to record them.
        let _ = rotation::save(repo.repo(), &verified, &last_ids, &records);
    }
    Err(Error::new(
        ErrorKind::Backend,
        format!(
            "check found problems {} times, each time after objects it had listed were removed while it ran (last: {}); a prune or forget is running: nothing is known to be damaged, run `cairn check` again when it has finished",
            settle::ATTEMPTS,
            restarts.last().map(String::as_str).unwrap_or_default()
        ),
    ))
}

/// What earlier attempts of one check verified: pack data is immutable, so a rerun does not read it again.
#[derive(Default)]
struct Carry {
    /// Packs whose every blob verified.
    packs: HashSet<PackId>,
    packs_read: u64,
    blobs_verified: u64,
}

fn save_rotation(
    repo: &IndexedRepository,
    options: CheckOptions,
    verified: &rotation::VerifiedTimes,
    ids: &[PackId],
    records: &[String],
    report: &mut CheckReport,
) {
    // A read-only view (a past state, `--as-of`) is never written, not even this record; the next
    // check of the repository itself picks the packs again as if this one had not run.
    if options.read_data.reads_data() && !repo.repo().backend().read_only() {
        if let Err(e) = rotation::save(repo.repo(), verified, ids, records) {
            report
                .notes
                .push(format!("could not record which packs were verified: {e}"));
        }
    }
}

/// What one pass over the repository found and relied on.
struct Pass {
    report: CheckReport,
    /// Every object it listed, to tell afterwards whether some vanished under it.
    listed: settle::Listed,
    /// The packs listed.
    ids: Vec<PackId>,
    /// Packs whose data this pass read and verified, with their blob counts.
    verified_now: Vec<(PackId, u64)>,
}

/// One pass over the repository; packs in `already_read` have only their header checked.
/// Key files: each must match its name, decode, and (version 2) carry metadata that authenticates
/// under this repository's key. A damaged key file locks its password out, even if the password in
/// use opened another file.
fn check_key_files(
    repo: &IndexedRepository,
    report: &mut CheckReport,
    listed: &mut settle::Listed,
) -> Result<()> {
    let keys = crate::repo::key_files::list_keys(repo.repo())?;
    listed.remember(ObjectKind::Key, keys.iter().map(|k| k.name.clone()));
    for key in keys {
        if let Some(problem) = &key.problem {
            report.errors.push(format!(
                "key file {}: {problem}; its password may no longer open the repository: add a new key with `cairn key add`, then `cairn key remove {}`",
                key.name, key.name
            ));
        }
    }
    Ok(())
}

fn check_once(
    repo: &IndexedRepository,
    options: CheckOptions,
    times_before: &rotation::VerifiedTimes,
    verified: &mut rotation::VerifiedTimes,
    already_read: &HashSet<PackId>,
) -> Result<Pass> {
    let mut report = CheckReport::default();
    let mut listed_objects = settle::Listed::default();
    let backend = repo.repo().backend();

    // Snapshots first: a backup writes its index files before its snapshot, so every blob a listed
    // snapshot needs is in an index file that the index refresh below reads (or in a prune's
    // replacement of it).
    let snapshots = load_snapshots(repo, &mut report, &mut listed_objects)?;
    let wal_catalog = wal::load(repo, &mut listed_objects)?;
    check_key_files(repo, &mut report, &mut listed_objects)?;
    let index_listing = backend.list_classified(ObjectKind::Index)?;
    report
        .notes
        .extend(strays::notes(ObjectKind::Index, &index_listing.ignored));
    let index_files: Vec<String> = index_listing.objects.into_iter().map(|(n, _)| n).collect();
    listed_objects.remember(ObjectKind::Index, index_files.iter().cloned());
    match repo.refresh_index() {
        Ok(()) => {}
        Err(e) if e.is_damage() => report.errors.push(format!(
            "{e}; its blobs may be missing from the index: run `cairn repair index`"
        )),
        Err(e) => return Err(e),
    }
    // The cache may hold index files listed after ours: they must stay too for its locations to hold.
    listed_objects.remember(ObjectKind::Index, repo.index().files()?);

    // From the index files themselves: the cache keeps one location per blob, so a pack whose blobs all
    // have copies elsewhere (after a repack) would look unindexed there. Read before the packs are
    // listed: a backup writes a pack before the index file naming it, so every pack named is listed.
    let mut index_entries = EntriesByPack::new(&repo.repo().cache_dir())?;
    for name in &index_files {
        match files::read(repo.repo().backend(), repo.repo().key(), name) {
            Ok(file) => index_entries.add(file.packs.into_iter().map(|p| (p.pack, p.blobs)))?,
            Err(e) => report.errors.push(format!(
                "{e}; its blobs may be missing from the index: run `cairn repair index`"
            )),
        }
    }

    // Packs: every header must open and agree with the index; selected packs have every blob read too.
    let packs = backend.list_classified(ObjectKind::Pack)?;
    report
        .notes
        .extend(strays::notes(ObjectKind::Pack, &packs.ignored));
    report.notes.extend(strays::other_notes(backend)?);
    let packs = packs.objects;
    listed_objects.remember(ObjectKind::Pack, packs.iter().map(|(n, _)| n.clone()));
    let ids: Vec<PackId> = packs
        .iter()
        .filter_map(|(n, _)| PackId::from_hex(n).ok())
        .collect();
    // Index entries of absent packs are damage (reported below), but they must not hide another
    // copy of a blob from the walk, nor pass for a stored blob.
    repo.mark_absent_packs(
        &packs
            .iter()
            .filter_map(|(n, size)| Some((PackId::from_hex(n).ok()?, *size)))
            .collect(),
    )?;
    let chosen: HashSet<PackId> = options
        .read_data
        .choose(&ids, times_before)
        .into_iter()
        .filter(|id| !already_read.contains(id))
        .collect();
    // The snapshot walk needs no pack data unless packs are damaged: it runs beside the pack
    // reads (its tree loads and index lookups were a serial fifth of `check --read-data`), and
    // runs again below only to name what damage found there affects.
    let no_damage = Damage::default();
    let (checked, first_walk) = rayon::join(
        || read_data::check_packs(repo, &packs, &chosen, &index_entries),
        || Walker::new(repo, &no_damage).run(&snapshots, true),
    );
    let mut damage = Damage::default();
    let mut listed: HashSet<PackId> = HashSet::new();
    let now = chrono::Utc::now();
    let mut verified_now = Vec::new();
    for pack in checked {
        report.packs += 1;
        report.blobs_verified += pack.blobs_verified;
        if let Some(id) = pack.id {
            listed.insert(id);
            if pack.unreadable {
                damage.packs.insert(id, pack.errors[0].clone());
            } else if pack.read && pack.errors.is_empty() {
                verified.insert(id, now);
                verified_now.push((id, pack.blobs_verified));
            }
            report.packs_read += u64::from(pack.read);
        }
        damage.blobs.extend(pack.bad_blobs);
        damage.unindexed.extend(pack.unindexed);
        report.errors.extend(pack.errors);
    }

    for pack in index_entries.packs().difference(&listed) {
        report.errors.push(format!(
            "pack {pack} is listed in the index but missing from the repository; `cairn repair index` drops it from the index, then `cairn repair snapshots` rewrites the snapshots that used it"
        ));
        damage
            .packs
            .insert(*pack, format!("pack {pack} is missing"));
    }
    for (pack, why) in &damage.packs {
        repo.index()
            .mark_unavailable(*pack, format!("is unreadable ({why})"));
    }

    report.snapshots = snapshots.len() as u64;
    report.wal_files = wal::check(repo, &wal_catalog, &damage, &mut report);
    // The first walk shares trees between snapshots (fast); when it or the packs found problems, a
    // second walk per snapshot, knowing the damage, names every snapshot and path they affect.
    report.trees = first_walk.trees;
    let (mut needed_unindexed, mut incomplete) = (HashSet::new(), first_walk.incomplete);
    if !first_walk.problems.is_empty() || !damage.is_empty() {
        let walk = Walker::new(repo, &damage).run(&snapshots, false);
        report.errors.extend(walk.problems);
        needed_unindexed = walk.needed_unindexed.into_inner();
        incomplete = walk.incomplete;
    }
    // A pack is called harmless only when every snapshot was walked whole and none needs it.
    for pack in listed.difference(index_entries.packs()) {
        if needed_unindexed.contains(pack) {
            report.errors.push(format!(
                "pack {pack} is in no index file but holds blobs that snapshots use: `cairn repair index` indexes it again"
            ));
        } else if incomplete {
            report.errors.push(format!(
                "pack {pack} is in no index file and may hold blobs of the trees that could not be read: `cairn repair index` indexes it again"
            ));
        } else {
            report.notes.push(format!(
                "pack {pack} is in no index file and no snapshot uses its blobs (left by an interrupted backup or a repack; harmless, prune removes it)"
            ));
        }
    }
    Ok(Pass {
        report,
        listed: listed_objects,
        ids,
        verified_now,
    })
}

/// Every listed snapshot, oldest first. One that cannot be read is reported and the others are still
/// checked (one damaged snapshot file must not hide damage elsewhere).
///
/// # Errors
/// When the storage cannot be listed.
fn load_snapshots(
    repo: &IndexedRepository,
    report: &mut CheckReport,
    listed: &mut settle::Listed,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    // One listing for the snapshots and the strays beside them: check's listings are compared
    // with later ones to tell a prune's changes from damage (see `settle`).
    let listing = repo
        .repo()
        .backend()
        .list_classified(ObjectKind::Snapshot)?;
    report
        .notes
        .extend(strays::notes(ObjectKind::Snapshot, &listing.ignored));
    let names: Vec<String> = listing.objects.into_iter().map(|(n, _)| n).collect();
    listed.remember(ObjectKind::Snapshot, names.iter().cloned());
    let mut out = Vec::new();
    for name in names {
        let loaded = SnapshotId::from_hex(&name)
            .map_err(|_| Error::corrupted(format!("snapshots/{name}: not a snapshot name")))
            .and_then(|id| Ok((id, repo.repo().load_snapshot(&id)?)));
        match loaded {
            Ok(found) => out.push(found),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    out.sort_by(|a, b| a.1.datetime().cmp(&b.1.datetime()).then(a.0.cmp(&b.0)));
    Ok(out)
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

impl Damage {
    fn is_empty(&self) -> bool {
        self.packs.is_empty() && self.blobs.is_empty()
    }
}

struct Walker<'a> {
    repo: &'a IndexedRepository,
    damage: &'a Damage,
    problems: Vec<String>,
    trees: u64,
    /// Packs in no index file that hold a blob a snapshot needs and the index lacks.
    needed_unindexed: std::cell::RefCell<HashSet<PackId>>,
    /// Whether some tree could not be read: what lies below it is unknown.
    incomplete: bool,
    /// What was found of each delta base already followed (`None`: restorable).
    bases: std::cell::RefCell<std::collections::HashMap<BlobId, Option<String>>>,
}

impl<'a> Walker<'a> {
    fn new(repo: &'a IndexedRepository, damage: &'a Damage) -> Self {
        Walker {
            repo,
            damage,
            problems: Vec::new(),
            trees: 0,
            needed_unindexed: Default::default(),
            incomplete: false,
            bases: Default::default(),
        }
    }

    /// Walks every snapshot; with `share_trees`, a tree shared by several is visited once.
    fn run(mut self, snapshots: &[(SnapshotId, Snapshot)], share_trees: bool) -> Self {
        let mut seen: HashSet<TreeId> = HashSet::new();
        for (id, snap) in snapshots {
            if !share_trees {
                seen.clear();
            }
            // Pending directories share their parents' names (a path per directory grew with
            // depth squared); the path is spelled out only for a message.
            let mut stack = vec![(snap.tree_id(), PathChain::root())];
            while let Some((tree_id, chain)) = stack.pop() {
                if !seen.insert(tree_id) {
                    continue;
                }
                self.trees += 1;
                let whose = || format!("snapshot {} path {}", id.short(), chain.dir_display());
                if let Some(problem) = self.blob_problem(&tree_id, BlobType::Tree) {
                    self.problems.push(format!("{}: {problem}", whose()));
                    self.incomplete = true;
                    continue;
                }
                let tree = match self.repo.load_tree(&tree_id) {
                    Ok(t) => t,
                    Err(e) => {
                        self.problems.push(format!("{}: {e}", whose()));
                        self.incomplete = true;
                        continue;
                    }
                };
                // Every data blob of the tree's files is looked up in one index transaction (one
                // per blob was most of the walk, and the walk runs beside `--read-data`'s packs).
                let mut files: Vec<(usize, usize)> = Vec::new();
                let mut blobs: Vec<BlobId> = Vec::new();
                for (i, node) in tree.nodes.iter().enumerate() {
                    match node.kind {
                        NodeKind::Dir => stack.extend(
                            node.subtree
                                .map(|sub| (sub, PathChain::child(&chain, &node.name))),
                        ),
                        NodeKind::File => {
                            let before = blobs.len();
                            blobs.extend(node.content.iter().filter_map(ContentItem::data_id));
                            files.push((i, blobs.len() - before));
                        }
                        _ => {}
                    }
                }
                let mut problems = self.blob_problems(&blobs, BlobType::Data).into_iter();
                for (i, count) in files {
                    let first = problems.by_ref().take(count).flatten().next();
                    if let Some(problem) = first {
                        let name = String::from_utf8_lossy(&tree.nodes[i].name);
                        self.problems.push(format!(
                            "snapshot {} file {}{name}: {problem}",
                            id.short(),
                            chain.dir_display()
                        ));
                    }
                }
            }
        }
        self
    }

    /// [`Walker::blob_problem`] of each of `ids`, asked of the index in one transaction.
    fn blob_problems(&self, ids: &[BlobId], blob_type: BlobType) -> Vec<Option<String>> {
        if ids.is_empty() {
            return Vec::new();
        }
        match self.repo.index().locate_many(ids, blob_type) {
            Ok(found) => found
                .into_iter()
                .zip(ids)
                .map(|(loc, id)| self.problem_of(id, loc))
                .collect(),
            Err(e) => ids
                .iter()
                .map(|id| self.problem_of(id, Err(Error::new(e.kind(), e.to_string()))))
                .collect(),
        }
    }

    /// Why a referenced blob cannot be restored, if it cannot.
    fn blob_problem(&self, id: &BlobId, blob_type: BlobType) -> Option<String> {
        self.problem_of(id, self.repo.index().locate(id, blob_type))
    }

    /// Why a blob found at `loc` by the index (or not found) cannot be restored, if it cannot.
    fn problem_of(&self, id: &BlobId, loc: Result<crate::index::BlobLocation>) -> Option<String> {
        self.problem_at(id, loc, 0)
    }

    /// [`Walker::problem_of`] for a blob `depth` deltas below the one a snapshot references.
    fn problem_at(
        &self,
        id: &BlobId,
        loc: Result<crate::index::BlobLocation>,
        depth: usize,
    ) -> Option<String> {
        let loc = match loc {
            Ok(loc) => loc,
            Err(e) => {
                return Some(match self.damage.unindexed.get(id) {
                    Some(pack) => {
                        self.needed_unindexed.borrow_mut().insert(*pack);
                        format!("{e}; pack {pack} holds it: run `cairn repair index`")
                    }
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
        if let Some(why) = self.damage.blobs.get(id) {
            return Some(format!("blob {id} is damaged ({why})"));
        }
        let delta = loc.entry.delta?;
        self.base_problem(id, delta.base, depth + 1)
    }

    /// Why the chain below delta `id`, from its base `base` down, cannot be rebuilt, if it
    /// cannot (FORMAT.md §6): every link indexed, readable and undamaged, at most
    /// [`crate::delta::MAX_CHAIN`] deltas long. Each base is followed once per check.
    fn base_problem(&self, id: &BlobId, base: BlobId, depth: usize) -> Option<String> {
        if depth > crate::delta::MAX_CHAIN {
            return Some(format!(
                "blob {id}: its chain of deltas is longer than {} (or loops)",
                crate::delta::MAX_CHAIN
            ));
        }
        let known = self.bases.borrow().get(&base).cloned();
        let problem = match known {
            Some(problem) => problem,
            None => {
                let loc = self.repo.index().locate(&base, BlobType::Data);
                let problem = self.problem_at(&base, loc, depth);
                self.bases.borrow_mut().insert(base, problem.clone());
                problem
            }
        };
        problem.map(|why| {
            format!("blob {id} is a delta against base {base}, which cannot be read: {why}")
        })
    }
}
