//! Carries out a prune plan in the order FORMAT.md §12 requires: revive, repack, rewrite the index
//! without the packs about to go, delete them, then condemn what is newly unused.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::backend::ObjectKind;
use crate::blob::reseal_blob;
use crate::error::{Error, Result};
use crate::format::lifecycle::PendingDeletion;
use crate::id::PackId;
use crate::index::files::{self, IndexWriter};
use crate::pack::{parse_pack, PackReader};
use crate::repo::lease::HeldLease;
use crate::repo::pending;
use crate::repo::{IndexedRepository, Repository};

use crate::threads::map_bounded;

/// Pack removals sent at once.
const REMOVALS_IN_FLIGHT: usize = 8;
use super::{NoProgress, PrunePlan, PruneProgress, PruneStep};

/// What a prune did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneOutcome {
    /// Packs deleted.
    pub deleted_packs: u64,
    /// Bytes those packs held.
    pub bytes_freed: u64,
    /// Packs whose referenced blobs were copied.
    pub repacked_packs: u64,
    /// Blobs copied.
    pub repacked_blobs: u64,
    /// Packs condemned by this prune's record.
    pub condemned_packs: u64,
    /// Condemned packs taken back.
    pub revived_packs: u64,
    /// Index files written to replace the old ones.
    pub index_files_written: u64,
    /// Old index files removed.
    pub index_files_removed: u64,
    /// WAL records removed: no kept base backup needed them (FORMAT.md §16).
    pub wal_records_removed: u64,
    /// Ripe packs kept because their Object Lock has not expired (FORMAT.md §17).
    pub locked_packs: u64,
}

/// Executes `plan` while `lease` (the prune lease) is held.
///
/// # Errors
/// `Corrupted` when the plan found referenced blobs that are missing (nothing is changed then); any
/// storage failure (the repository stays consistent at every step; rerun prune).
pub fn execute(
    repo: &IndexedRepository,
    plan: &PrunePlan,
    lease: &HeldLease,
) -> Result<PruneOutcome> {
    execute_with_progress(repo, plan, lease, &NoProgress)
}

/// [`execute`], telling `progress` how it advances.
///
/// # Errors
/// As [`execute`].
pub fn execute_with_progress(
    repo: &IndexedRepository,
    plan: &PrunePlan,
    lease: &HeldLease,
    progress: &dyn PruneProgress,
) -> Result<PruneOutcome> {
    if !plan.missing.is_empty() {
        return Err(Error::corrupted(format!(
            "{} referenced blob(s) are in no index file, e.g. {}; prune deletes nothing in a damaged repository (run `cairn check`, then `cairn repair index`)",
            plan.missing.len(),
            plan.missing[0]
        )));
    }
    let r = repo.repo();
    let mut out = PruneOutcome::default();
    // 0. WAL no base backup needs: its records go first; their blobs are unreferenced from here
    // on, and the plan condemned the packs that held only those.
    for id in &plan.wal_expired {
        r.backend().remove(ObjectKind::Wal, &id.to_hex())?;
        out.wal_records_removed += 1;
    }
    let revived: HashSet<PackId> = plan.revive.iter().copied().collect();
    out.revived_packs = revived.len() as u64;

    // 1. Revive: a record that waits loses the packs a snapshot needs (written first, then the old one goes).
    for rec in plan
        .records
        .iter()
        .filter(|rec| !plan.ripe.contains(&rec.name))
    {
        let packs = rec.record.pack_ids();
        if packs.iter().any(|p| revived.contains(p)) {
            let kept: Vec<PackId> = packs.into_iter().filter(|p| !revived.contains(p)).collect();
            if !kept.is_empty() {
                pending::write(r, &PendingDeletion::new(rec.record.datetime(), &kept))?;
            }
            r.backend().remove(ObjectKind::Pending, &rec.name)?;
        }
    }

    // 2. Repack: copy referenced blobs out of wasteful packs (their packs are condemned below, not deleted).
    if !plan.repack.is_empty() {
        progress.step(PruneStep::Repack, plan.repack.len() as u64);
        let mut excluded: HashSet<PackId> = plan
            .records
            .iter()
            .flat_map(|r| r.record.pack_ids())
            .collect();
        excluded.extend(plan.repack.iter().map(|(id, _)| *id));
        // A pack the index names but the listing lacks holds nothing: a blob found only there
        // must be copied, not taken for stored (FORMAT.md §11).
        excluded.extend(
            repo.index()
                .packs()?
                .into_iter()
                .filter(|p| !plan.packs.contains_key(p)),
        );
        let saver = repo.saver_excluding(excluded);
        let reader = PackReader::new(r.backend(), r.key());
        for (pack, _) in &plan.repack {
            let bytes = r.backend().read_bounded(
                ObjectKind::Pack,
                &pack.to_hex(),
                r.config().max_pack_len(),
            )?;
            let (prefix, entries) = parse_pack(r.key(), pack, &bytes)?;
            // A pack has one epoch (FORMAT.md §15): blobs of an older one are sealed again.
            let reseal = prefix.epoch != r.key().newest_epoch();
            let copied = entries
                .par_iter()
                .map(|e| {
                    if !plan.usage.is_referenced(&e.id)? {
                        return Ok(0);
                    }
                    // Copied sealed, as is: recompressing would cost most of the prune's time.
                    let sealed = reader.sealed_from(pack, &bytes, e)?;
                    if reseal {
                        let resealed = reseal_blob(r.key(), e, sealed)
                            .map_err(|err| err.context(format!("pack {pack}")))?;
                        saver.save_sealed(e, &resealed)?;
                    } else {
                        saver.save_sealed(e, sealed)?;
                    }
                    Ok(1)
                })
                .collect::<Result<Vec<u64>>>()?;
            out.repacked_blobs += copied.iter().sum::<u64>();
            out.repacked_packs += 1;
            progress.advance(1);
        }
        saver.finish()?;
    }

    // 3. Delete ripe packs: first the index stops naming them, then they go, then their records.
    // The same rewrite consolidates an index of many small files when no pack goes.
    let doomed: HashSet<PackId> = plan.delete.iter().map(|(id, _)| *id).collect();
    let unindex = plan
        .delete
        .iter()
        .any(|(id, _)| plan.packs.get(id).is_some_and(|u| u.indexed));
    if unindex || plan.consolidate_index {
        lease.ensure_valid()?;
        out.index_files_written = rewrite_index(r, &plan.index_files, &doomed)?;
        for name in &plan.index_files {
            r.backend().remove(ObjectKind::Index, name)?;
            out.index_files_removed += 1;
        }
    }
    if !plan.delete.is_empty() {
        lease.ensure_valid()?;
        // Several removals in flight: on remote storage each is a round trip. A pack whose removal
        // fails stays unindexed, so a later prune condemns and deletes it again.
        progress.step(PruneStep::Delete, plan.delete.len() as u64);
        let removed = map_bounded(&plan.delete, REMOVALS_IN_FLIGHT, |(id, size)| {
            let removed = r.backend().remove(ObjectKind::Pack, &id.to_hex());
            progress.advance(1);
            removed.map(|()| *size)
        });
        for size in removed {
            out.bytes_freed += size?;
            out.deleted_packs += 1;
        }
    }
    // Locked packs stay condemned (still indexed), in a record as old as the oldest ripe one,
    // so a prune after their locks expire deletes them without a new grace period.
    if !plan.locked.is_empty() {
        let marked = plan
            .records
            .iter()
            .filter(|rec| plan.ripe.contains(&rec.name))
            .map(|rec| rec.record.datetime())
            .min()
            .unwrap_or_else(chrono::Utc::now);
        let held: Vec<PackId> = plan.locked.iter().map(|(id, _, _)| *id).collect();
        pending::write(r, &PendingDeletion::new(marked, &held))?;
        out.locked_packs = held.len() as u64;
    }
    for name in &plan.ripe {
        r.backend().remove(ObjectKind::Pending, name)?;
    }

    // 4. Condemn what no snapshot uses now; a later prune deletes it when the record is ripe.
    let newly: Vec<PackId> = plan
        .condemn
        .iter()
        .map(|(id, _)| *id)
        .chain(plan.repack.iter().map(|(id, _)| *id))
        .collect();
    if !newly.is_empty() {
        pending::write(r, &PendingDeletion::new(chrono::Utc::now(), &newly))?;
        out.condemned_packs = newly.len() as u64;
    }
    Ok(out)
}

/// Writes index files holding every entry of `index_files` except those of `doomed` packs; returns how many.
fn rewrite_index(
    repo: &Repository,
    index_files: &[String],
    doomed: &HashSet<PackId>,
) -> Result<u64> {
    let mut seen: HashSet<PackId> = HashSet::new();
    let mut writer = IndexWriter::new(repo.backend(), repo.key());
    for name in index_files {
        for pack in files::read(repo.backend(), repo.key(), name)?.packs {
            if doomed.contains(&pack.pack) || !seen.insert(pack.pack) {
                continue;
            }
            writer.push(pack)?;
        }
    }
    Ok(writer.finish()?.len() as u64)
}
