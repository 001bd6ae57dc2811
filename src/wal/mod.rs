//! PostgreSQL WAL archiving (FORMAT.md §16): `wal push` as `archive_command`, `wal fetch` as
//! `restore_command`, and what the repository holds of each timeline, gaps included.
//!
//! A WAL file is stored like a stream: its chunks are blobs in packs, named by the index, and a
//! WAL record (`wal/<hash>`) names the files of one push with their chunks. Records are roots for
//! prune and check, as snapshots are.

pub mod archiver;
pub mod catalog;
pub mod fetch;
pub mod push;
pub mod queue;
pub mod retention;
pub mod spool;

use std::collections::BTreeMap;

pub use catalog::Catalog;
pub use queue::Queue;
pub use spool::Spool;

use crate::format::wal::{WalKind, WalName};

/// What the repository holds of one timeline's segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// The timeline.
    pub timeline: u32,
    /// Segment size in bytes (of its segments; PostgreSQL's `wal_segment_size`).
    pub segment_size: u64,
    /// First segment archived.
    pub first: WalName,
    /// Last segment archived.
    pub last: WalName,
    /// Segments archived.
    pub segments: u64,
    /// Runs of missing segments between `first` and `last`: (first missing, last missing).
    pub gaps: Vec<(WalName, WalName)>,
    /// Whether its history file is archived (timeline 1 has none).
    pub history: bool,
}

/// The timelines the catalog holds segments of, in order, with their gaps.
pub fn timelines(catalog: &Catalog) -> Vec<Timeline> {
    let mut by_timeline: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    let mut histories = std::collections::HashSet::new();
    for (name, file, _) in catalog.files() {
        match name.kind() {
            WalKind::Segment => {
                if let Some(n) = name.segment_number(file.size) {
                    by_timeline
                        .entry(name.timeline())
                        .or_default()
                        .push((file.size, n));
                }
            }
            WalKind::History => {
                histories.insert(name.timeline());
            }
            WalKind::Partial | WalKind::Backup => {}
        }
    }
    let mut out = Vec::new();
    for (timeline, mut segments) in by_timeline {
        // One size per cluster; a stray size (a bug or a foreign file) would only confuse numbers.
        let size = most_common(segments.iter().map(|(s, _)| *s));
        segments.retain(|(s, _)| *s == size);
        let mut numbers: Vec<u64> = segments.into_iter().map(|(_, n)| n).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let (Some(&first), Some(&last)) = (numbers.first(), numbers.last()) else {
            continue;
        };
        let gaps = numbers
            .windows(2)
            .filter(|w| w[1] > w[0] + 1)
            .map(|w| {
                (
                    WalName::segment(timeline, w[0] + 1, size),
                    WalName::segment(timeline, w[1] - 1, size),
                )
            })
            .collect();
        out.push(Timeline {
            timeline,
            segment_size: size,
            first: WalName::segment(timeline, first, size),
            last: WalName::segment(timeline, last, size),
            segments: numbers.len() as u64,
            gaps,
            history: timeline == 1 || histories.contains(&timeline),
        });
    }
    out
}

fn most_common(values: impl Iterator<Item = u64>) -> u64 {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(v, c)| (*c, *v))
        .map_or(0, |(v, _)| v)
}
