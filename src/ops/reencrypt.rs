//! `key rotate --reencrypt` (FORMAT.md §15): rewrites every object of an older data-key epoch
//! under the newest one, through prune's machinery: packs are repacked (blobs sealed again) and
//! condemned, never deleted here; index files, snapshots and records are written anew before the
//! old ones are removed, so an interruption leaves a repository that `check` accepts and a rerun
//! finishes.
//!
//! The caller holds the prune lease (at most one prune, repair or re-encryption at a time).

use std::collections::{HashMap, HashSet};

use crate::backend::ObjectKind;
use crate::error::Result;
use crate::format::envelope::{self, EnvelopeKind};
use crate::format::lifecycle::{PENDING_ENVELOPE, VERIFIED_ENVELOPE};
use crate::format::{index_file, snapshot};
use crate::id::{PackId, SnapshotId};
use crate::index::files::{self, IndexWriter};
use crate::ops::prune::{self, PruneOptions, PruneOutcome};
use crate::repo::lease::HeldLease;
use crate::repo::pending;
use crate::repo::{IndexedRepository, Repository};

/// What a re-encryption did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Reencrypted {
    /// The epoch everything was sealed again under.
    pub epoch: u32,
    /// What the prune part did: `repacked_packs` are the older-epoch packs whose blobs were
    /// sealed again, now condemned (a later prune deletes them).
    pub prune: PruneOutcome,
    /// Older-epoch index files replaced.
    pub index_files_replaced: u64,
    /// Older-epoch snapshots written again: (old id, new id), oldest first.
    pub snapshots: Vec<(String, String)>,
    /// Older-epoch WAL records written again (FORMAT.md §16).
    pub wal_records: u64,
    /// Older-epoch pending-deletion records written again.
    pub pending_records: u64,
    /// Whether the verification records were written again.
    pub verified_records: u64,
}

/// Re-seals every object of an older epoch than the key's newest (see the module comment).
///
/// `options` tunes the prune part (grace, clock skew); its `max_unused` and `reencrypt` are set
/// here so that only older-epoch packs are repacked.
///
/// # Errors
/// Any storage failure or damaged object: what was done stays valid and a rerun skips it.
pub fn reencrypt(
    repo: &IndexedRepository,
    held: &HeldLease,
    options: &PruneOptions,
) -> Result<Reencrypted> {
    let r = repo.repo();
    let epoch = r.key().newest_epoch();
    let options = PruneOptions {
        max_unused: 1.0,
        reencrypt: true,
        ..*options
    };
    // Step 2: older-epoch packs are repacked (blobs opened and sealed again) and condemned.
    let plan = prune::plan(r, &options)?;
    let prune = prune::execute(repo, &plan, held)?;
    held.ensure_valid()?;
    let index_files_replaced = replace_index_files(r)?;
    let snapshots = rewrite_snapshots(r)?;
    let wal_records = rewrite_wal_records(r)?;
    let pending_records = rewrite_pending(r)?;
    let verified_records = rewrite_verified(r)?;
    Ok(Reencrypted {
        epoch,
        prune,
        index_files_replaced,
        snapshots,
        wal_records,
        pending_records,
        verified_records,
    })
}

/// Names of the objects of `kind` sealed under an older epoch than the newest.
fn older(repo: &Repository, kind: ObjectKind, envelope: &EnvelopeKind) -> Result<Vec<String>> {
    let newest = repo.key().newest_epoch();
    let mut out = Vec::new();
    for (name, _) in repo.backend().list(kind)? {
        let bytes = repo.backend().read(kind, &name)?;
        if envelope::epoch_of(envelope, &bytes)? < newest {
            out.push(name);
        }
    }
    Ok(out)
}

/// Step 3: index files holding every entry of the older-epoch ones, then those are removed.
fn replace_index_files(repo: &Repository) -> Result<u64> {
    let old = older(repo, ObjectKind::Index, &index_file::ENVELOPE)?;
    if old.is_empty() {
        return Ok(0);
    }
    let mut seen: HashSet<PackId> = HashSet::new();
    let mut writer = IndexWriter::new(repo.backend(), repo.key());
    for name in &old {
        for pack in files::read(repo.backend(), repo.key(), name)?.packs {
            if seen.insert(pack.pack) {
                writer.push(pack)?;
            }
        }
    }
    writer.finish()?;
    for name in &old {
        repo.backend().remove(ObjectKind::Index, name)?;
    }
    Ok(old.len() as u64)
}

/// Step 4: older-epoch snapshots written again oldest first, `parent` and `repaired_from` mapped
/// through the ids already rewritten; each old one goes after its new copy exists.
fn rewrite_snapshots(repo: &Repository) -> Result<Vec<(String, String)>> {
    let old: HashSet<String> = older(repo, ObjectKind::Snapshot, &snapshot::ENVELOPE)?
        .into_iter()
        .collect();
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for (id, mut snap) in repo.snapshots()? {
        let name = id.to_hex();
        if !old.contains(&name) {
            continue;
        }
        for link in [&mut snap.parent, &mut snap.repaired_from] {
            if let Some(new) = link.as_ref().and_then(|p| renamed.get(p)) {
                *link = Some(new.clone());
            }
        }
        let new: SnapshotId = repo.save_snapshot(&snap)?;
        repo.backend().remove(ObjectKind::Snapshot, &name)?;
        renamed.insert(name.clone(), new.to_hex());
        out.push((name, new.to_hex()));
    }
    Ok(out)
}

/// Step 4 for WAL records: each older-epoch record written again, then the old one removed (both
/// name the same chunks, so WAL is archived throughout).
fn rewrite_wal_records(repo: &Repository) -> Result<u64> {
    let old = older(repo, ObjectKind::Wal, &crate::format::wal::ENVELOPE)?;
    for name in &old {
        let bytes = repo.backend().read(ObjectKind::Wal, name)?;
        let record = crate::format::wal::WalRecord::decode(repo.key(), &bytes)
            .map_err(|e| e.context(format!("WAL record {name}")))?;
        let sealed = record.encode(repo.key())?;
        let new = crate::id::WalRecordId::hash_of(&sealed);
        repo.backend()
            .write(ObjectKind::Wal, &new.to_hex(), &sealed)?;
        repo.backend().remove(ObjectKind::Wal, name)?;
    }
    Ok(old.len() as u64)
}

/// Step 5: older-epoch pending-deletion records written again (same time, new record first).
fn rewrite_pending(repo: &Repository) -> Result<u64> {
    let old: HashSet<String> = older(repo, ObjectKind::Pending, &PENDING_ENVELOPE)?
        .into_iter()
        .collect();
    let mut count = 0;
    for found in pending::list(repo)? {
        if old.contains(&found.name) {
            pending::write(repo, &found.record)?;
            repo.backend().remove(ObjectKind::Pending, &found.name)?;
            count += 1;
        }
    }
    Ok(count)
}

/// Step 5: when a verification record is of an older epoch, all are merged into one new record
/// (as `check` does) and the old ones removed.
fn rewrite_verified(repo: &Repository) -> Result<u64> {
    // Records that do not decode are skipped by `load`; their epoch is not known and they only
    // order work, so they are left as they are.
    let old = match older(repo, ObjectKind::Verified, &VERIFIED_ENVELOPE) {
        Ok(old) => old,
        Err(_) => return Ok(0),
    };
    if old.is_empty() {
        return Ok(0);
    }
    let (times, names) = crate::check::rotation::load(repo)?;
    let existing: Vec<PackId> = times.keys().copied().collect();
    crate::check::rotation::save(repo, &times, &existing, &names)?;
    Ok(old.len() as u64)
}
