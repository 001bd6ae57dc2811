//! Which archived WAL a prune may remove (FORMAT.md §16, Retention): only what no kept base
//! backup can replay. A restore starts from a base backup and replays WAL from that backup's start,
//! so every WAL file before the oldest kept base backup's start is of no use to any restore; with
//! a recovery window, files archived within it stay too. History files always stay (a few bytes,
//! and recovery reads them to follow timelines).

use chrono::{DateTime, Duration, Utc};

use crate::format::snapshot::Snapshot;
use crate::format::wal::{WalKind, WalName};
use crate::id::{SnapshotId, WalRecordId};

use super::Catalog;

/// The records whose every file precedes the start of the oldest base backup among `snapshots`
/// and, with `keep_within`, was archived longer ago than that. Nothing without a base backup.
pub fn expired(
    catalog: &Catalog,
    snapshots: &[(SnapshotId, Snapshot)],
    keep_within: Option<Duration>,
    now: DateTime<Utc>,
) -> Vec<WalRecordId> {
    let oldest_start = snapshots
        .iter()
        .filter_map(|(_, s)| s.postgres.as_ref())
        .filter_map(|pg| {
            let start = WalName::parse(&pg.start_wal).ok()?;
            Some((start.segment_number(pg.segment_size)?, pg.segment_size))
        })
        .min();
    let Some((first_needed, segment_size)) = oldest_start else {
        return Vec::new();
    };
    let before = |name: &WalName| {
        name.kind() != WalKind::History
            && name
                .segment_number(segment_size)
                .is_some_and(|n| n < first_needed)
    };
    catalog
        .records()
        .iter()
        .filter(|(_, record)| keep_within.is_none_or(|window| record.datetime() < now - window))
        .filter(|(_, record)| record.files.iter().all(|f| before(&f.wal_name())))
        // A drop's record goes with the WAL around it: status keeps saying why that gap is there.
        .filter(|(_, record)| {
            record
                .dropped
                .iter()
                .all(|d| WalName::parse(&d.name).is_ok_and(|n| before(&n)))
        })
        .map(|(id, _)| *id)
        .collect()
}
