//! `repair index`: rebuilds the index from the headers of the packs that exist.
//!
//! New index files are written before the old ones are removed, so at no moment is a readable pack
//! indexed by fewer files than before. Never deletes a pack, a snapshot or a pending-deletion record.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::index_file::PackEntries;
use crate::id::PackId;
use crate::index::files::{self, files_needed, IndexWriter};
use crate::pack::read_pack_header;
use crate::repo::lease::HeldLease;
use crate::repo::Repository;

use super::RepairProgress;

/// A pack whose header could not be read: it is left out of the new index and left in place.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UnreadablePack {
    /// Object name under `data/`.
    pub name: String,
    /// Why its header could not be read.
    pub reason: String,
}

/// What `repair index` will write and remove.
#[derive(Debug)]
pub struct IndexRepairPlan {
    /// Packs whose header was read.
    pub packs_read: u64,
    /// Blob entries the new index holds.
    pub blobs: u64,
    /// Packs left out because their header cannot be read.
    pub unreadable: Vec<UnreadablePack>,
    /// Packs the old index named that are gone from the repository.
    pub missing: Vec<PackId>,
    /// Packs that no old index file named (or named with other entries) and that the new index adds.
    pub added: Vec<PackId>,
    /// Old index files that could not be read (they are removed with the others).
    pub damaged_index_files: Vec<UnreadablePack>,
    /// The index files listed before the packs: removed once the new ones are written.
    pub old_index_files: Vec<String>,
    /// How many new index files will be written.
    pub index_files_to_write: u64,
    packs: Vec<PackEntries>,
}

/// What `repair index` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexRepairOutcome {
    /// New index files written.
    pub index_files_written: u64,
    /// Old index files removed.
    pub index_files_removed: u64,
}

/// Reads every pack header and the old index files. The caller holds the exclusive prune lease.
///
/// Index files are listed before packs: a backup running meanwhile writes a pack before the index file
/// naming it, so a pack whose index file was listed is listed too, and index files written after the
/// listing are never removed.
///
/// # Errors
/// When listing fails, or a pack header cannot be read for a reason other than damage (storage errors,
/// a pack version this build does not know): then nothing is changed, as leaving such a pack out would
/// make its blobs look lost.
pub fn plan_index(repo: &Repository, progress: &dyn RepairProgress) -> Result<IndexRepairPlan> {
    let backend = repo.backend();
    let mut old_index_files: Vec<String> = backend
        .list(ObjectKind::Index)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    old_index_files.sort();
    let listed = backend.list(ObjectKind::Pack)?;
    progress.total(listed.len() as u64);
    let headers: Vec<(String, Result<PackEntries>)> = listed
        .par_iter()
        .map(|(name, _)| {
            let read = PackId::from_hex(name)
                .map_err(|e| Error::corrupted(format!("not a pack name: {e}")))
                .and_then(|id| {
                    Ok(PackEntries {
                        pack: id,
                        blobs: read_pack_header(backend, repo.key(), &id)?,
                    })
                });
            progress.pack_done();
            (name.clone(), read)
        })
        .collect();

    let mut packs = Vec::new();
    let mut unreadable = Vec::new();
    for (name, read) in headers {
        match read {
            Ok(entries) => packs.push(entries),
            Err(e) if e.is_damage() => unreadable.push(UnreadablePack {
                name,
                reason: e.to_string(),
            }),
            Err(e) => {
                return Err(e.context(format!(
                    "repair index changed nothing: pack {name} could not be read; fix the cause and run it again"
                )))
            }
        }
    }
    packs.sort_by_key(|p| p.pack);
    unreadable.sort_by(|a, b| a.name.cmp(&b.name));

    // The old index, only to tell the user what changes.
    let mut old: HashMap<PackId, PackEntries> = HashMap::new();
    let mut damaged_index_files = Vec::new();
    for name in &old_index_files {
        match files::read(repo.backend(), repo.key(), name) {
            Ok(file) => old.extend(file.packs.into_iter().map(|p| (p.pack, p))),
            Err(e) => damaged_index_files.push(UnreadablePack {
                name: name.clone(),
                reason: e.to_string(),
            }),
        }
    }
    let present: HashSet<PackId> = listed
        .iter()
        .filter_map(|(n, _)| PackId::from_hex(n).ok())
        .collect();
    let mut missing: Vec<PackId> = old
        .keys()
        .filter(|p| !present.contains(p))
        .copied()
        .collect();
    missing.sort();
    let added: Vec<PackId> = packs
        .iter()
        .filter(|p| old.get(&p.pack).is_none_or(|o| !same_entries(o, p)))
        .map(|p| p.pack)
        .collect();
    Ok(IndexRepairPlan {
        packs_read: packs.len() as u64,
        blobs: packs.iter().map(|p| p.blobs.len() as u64).sum(),
        unreadable,
        missing,
        added,
        damaged_index_files,
        index_files_to_write: files_needed(&packs),
        old_index_files,
        packs,
    })
}

/// Whether two listings of one pack hold the same entries, in any order.
fn same_entries(a: &PackEntries, b: &PackEntries) -> bool {
    let mut x = a.blobs.clone();
    let mut y = b.blobs.clone();
    x.sort_by_key(|e| e.offset);
    y.sort_by_key(|e| e.offset);
    x == y
}

/// Writes the new index files, then removes the old ones.
///
/// # Errors
/// When a write or removal fails (rerun: an interrupted repair leaves every readable pack indexed at
/// least once, possibly twice, which `check` and prune accept), or the lease lapsed before the removals.
pub fn execute_index(
    repo: &Repository,
    plan: &IndexRepairPlan,
    lease: &HeldLease,
) -> Result<IndexRepairOutcome> {
    let mut writer = IndexWriter::new(repo.backend(), repo.key());
    for pack in &plan.packs {
        writer.push(pack.clone())?;
    }
    let written: HashSet<String> = writer.finish()?.into_iter().collect();
    let mut outcome = IndexRepairOutcome {
        index_files_written: written.len() as u64,
        index_files_removed: 0,
    };
    // A lapsed lease means a prune may have started and listed these files: it must find them.
    lease.ensure_valid()?;
    for name in plan
        .old_index_files
        .iter()
        .filter(|n| !written.contains(*n))
    {
        repo.backend().remove(ObjectKind::Index, name)?;
        outcome.index_files_removed += 1;
    }
    Ok(outcome)
}
