//! The archived WAL's part of `check` (FORMAT.md §16): every record opens, every file's chunks are
//! restorable, no name holds two different files, and each timeline is continuous from its first
//! archived segment to its last, with its history file.

use crate::error::Result;
use crate::id::BlobType;
use crate::repo::IndexedRepository;
use crate::wal::{timelines, Catalog};

use super::{settle, CheckReport, Damage, Walker};

/// The WAL records, listed with the snapshots: before the index is read, so that every blob a
/// listed record names is in an index file read after it (a push writes its index file first).
pub(super) fn load(repo: &IndexedRepository, listed: &mut settle::Listed) -> Result<Catalog> {
    let catalog = Catalog::load(repo.repo())?;
    listed.remember(
        crate::backend::ObjectKind::Wal,
        catalog
            .records()
            .iter()
            .map(|(id, _)| id.to_hex())
            .chain(catalog.damaged().iter().map(|(name, _)| name.clone())),
    );
    Ok(catalog)
}

/// Checks the WAL records; returns how many files they hold.
pub(super) fn check(
    repo: &IndexedRepository,
    catalog: &Catalog,
    damage: &Damage,
    report: &mut CheckReport,
) -> u64 {
    for (name, e) in catalog.damaged() {
        report.errors.push(format!(
            "WAL record {name} cannot be read ({e}): the WAL files it held cannot be restored"
        ));
    }
    for name in catalog.conflicts() {
        report.errors.push(format!(
            "WAL file {name} is archived twice with different bytes (two clusters archiving into one repository?): recovery cannot tell which is right"
        ));
    }
    let walker = Walker::new(repo, damage);
    let mut files = 0;
    for (id, record) in catalog.records() {
        for file in &record.files {
            files += 1;
            let ids: Vec<_> = file.chunk_ids().collect();
            if let Some(problem) = walker
                .blob_problems(&ids, BlobType::Data)
                .into_iter()
                .flatten()
                .next()
            {
                report.errors.push(format!(
                    "WAL file {} (record {}) cannot be restored: {problem}",
                    file.name,
                    id.short()
                ));
            }
        }
    }
    for timeline in timelines(catalog) {
        for (first, last) in &timeline.gaps {
            let which = if first == last {
                format!("segment {first} is")
            } else {
                format!("segments {first} to {last} are")
            };
            report.errors.push(format!(
                "WAL of timeline {}: {which} missing between {} and {}: recovery cannot pass this gap (was archiving interrupted? a base backup taken after it starts a usable range again)",
                timeline.timeline, timeline.first, timeline.last
            ));
        }
        if !timeline.history {
            report.errors.push(format!(
                "WAL of timeline {}: its history file {:08X}.history is not archived: recovery cannot follow the switch to this timeline",
                timeline.timeline, timeline.timeline
            ));
        }
    }
    files
}
