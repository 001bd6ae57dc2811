//! `repair index`: rebuilds the index from the headers of the packs that exist.
//!
//! New index files are written before the old ones are removed, so at no moment is a readable pack
//! indexed by fewer files than before. Never deletes a pack, a snapshot or a pending-deletion record.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::index_file::PackEntries;
use crate::id::PackId;
use crate::index::by_pack::EntriesByPack;
use crate::index::files::{self, IndexWriter, BLOBS_PER_FILE};
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
    /// The packs whose header was read, in id order, with their entries in a scratch database
    /// (not in memory: the whole index of a large repository would not fit).
    packs: Vec<(PackId, usize)>,
    headers: EntriesByPack,
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
    let cache = repo.cache_dir();
    let mut headers = EntriesByPack::new(&cache)?;
    let mut packs = Vec::new();
    let mut unreadable = Vec::new();
    let mut blobs = 0u64;
    // Read in parallel, kept on disk a slice at a time: memory stays flat in the number of packs.
    for slice in listed.chunks(HEADERS_AT_ONCE) {
        let read: Vec<(String, Result<PackEntries>)> = slice
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
        let mut good = Vec::new();
        for (name, read) in read {
            match read {
                Ok(entries) => {
                    packs.push((entries.pack, entries.blobs.len()));
                    blobs += entries.blobs.len() as u64;
                    good.push((entries.pack, entries.blobs));
                }
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
        headers.add(good)?;
    }
    packs.sort();
    unreadable.sort_by(|a, b| a.name.cmp(&b.name));

    // The old index, only to tell the user what changes.
    let mut old = EntriesByPack::new(&cache)?;
    let mut damaged_index_files = Vec::new();
    for name in &old_index_files {
        match files::read(repo.backend(), repo.key(), name) {
            Ok(file) => old.add(file.packs.into_iter().map(|p| (p.pack, p.blobs)))?,
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
        .packs()
        .iter()
        .filter(|p| !present.contains(p))
        .copied()
        .collect();
    missing.sort();
    // Both sides come back in offset order, each entry once.
    let mut added = Vec::new();
    for (pack, _) in &packs {
        if !old.packs().contains(pack) || old.get(pack)? != headers.get(pack)? {
            added.push(*pack);
        }
    }
    // As the writer cuts them.
    let mut index_files_to_write = 0;
    let mut in_file = 0;
    for (i, (_, count)) in packs.iter().enumerate() {
        in_file += count;
        if in_file >= BLOBS_PER_FILE || i + 1 == packs.len() {
            index_files_to_write += 1;
            in_file = 0;
        }
    }
    Ok(IndexRepairPlan {
        packs_read: packs.len() as u64,
        blobs,
        unreadable,
        missing,
        added,
        damaged_index_files,
        index_files_to_write,
        old_index_files,
        packs,
        headers,
    })
}

/// Pack headers read in parallel before they go to the scratch database.
const HEADERS_AT_ONCE: usize = 16;

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
    for (pack, _) in &plan.packs {
        writer.push(PackEntries {
            pack: *pack,
            blobs: plan.headers.get(pack)?,
        })?;
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
