//! The read plan of a restore: every blob the files need, once, grouped by pack with every file offset it
//! fills, and the blobs of a pack that lie near each other merged into one range read in a single request.
//!
//! Only arranges: never touches files or the backend, so it can be tested and benched on its own.

use std::collections::HashMap;

use crate::error::Result;
use crate::format::pack::BlobEntry;
use crate::format::tree::ContentItem;
use crate::id::{BlobId, PackId};
use crate::index::BlobLocation;
use crate::repo::fetch::{push_merged, PackRange};

/// One place a blob's plaintext goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The file, as its position in the list given to [`plan_reads`].
    pub file: usize,
    /// Byte offset in that file.
    pub offset: u64,
    /// The length the file's content list gives the blob (checked against the blob when written).
    pub len: u32,
}

/// A blob to open once, and everywhere its plaintext goes.
#[derive(Clone, Debug)]
pub struct PlannedBlob {
    /// Its entry in the pack.
    pub entry: BlobEntry,
    /// Where it is written, in the order the files list it.
    pub targets: Vec<Target>,
}

/// A range of file contents to read: its blobs with the places they go.
pub type ReadRange = PackRange<PlannedBlob>;

/// Everything a restore reads.
#[derive(Clone, Debug, Default)]
pub struct ReadPlan {
    /// The ranges, the packs with the most to read first, so that the last ones to finish are short.
    pub ranges: Vec<ReadRange>,
    /// Distinct blobs opened.
    pub blobs: usize,
    /// Bytes written to files (a blob counts once per target).
    pub bytes_written: u64,
}

/// Plans the reads for `files` (the content lists of the files, in order), locating each distinct blob
/// with `locate` (given the distinct ids in id order, answering one result per id). An error for one
/// blob gets the context `context(file)` of the first file that needs it.
///
/// # Errors
/// What `locate` returns.
pub fn plan_reads<'a>(
    files: impl IntoIterator<Item = &'a [ContentItem]>,
    locate: impl FnOnce(&[BlobId]) -> Result<Vec<Result<BlobLocation>>>,
    context: impl Fn(usize) -> String,
) -> Result<ReadPlan> {
    let mut needed: HashMap<BlobId, Vec<Target>> = HashMap::new();
    let mut bytes_written = 0;
    for (file, content) in files.into_iter().enumerate() {
        let mut offset = 0;
        for item in content {
            if let ContentItem::Data { id, len } = *item {
                needed
                    .entry(id)
                    .or_default()
                    .push(Target { file, offset, len });
                bytes_written += u64::from(len);
            }
            offset += item.len();
        }
    }
    let mut ids: Vec<BlobId> = needed.keys().copied().collect();
    // Id order walks the index's B-tree front to back.
    ids.sort_unstable();
    let locations = locate(&ids)?;
    let mut by_pack: HashMap<PackId, Vec<PlannedBlob>> = HashMap::new();
    for (id, location) in ids.iter().zip(locations) {
        let targets = needed.remove(id).unwrap_or_default();
        let location = match location {
            Ok(l) => l,
            Err(e) => return Err(e.context(context(targets.first().map_or(0, |t| t.file)))),
        };
        by_pack.entry(location.pack).or_default().push(PlannedBlob {
            entry: location.entry,
            targets,
        });
    }
    let mut packs: Vec<(PackId, Vec<PlannedBlob>)> = by_pack.into_iter().collect();
    let sealed = |blobs: &[PlannedBlob]| blobs.iter().map(|b| b.entry.length as u64).sum::<u64>();
    packs.sort_by_cached_key(|(pack, blobs)| (std::cmp::Reverse(sealed(blobs)), *pack));
    let mut plan = ReadPlan {
        ranges: Vec::new(),
        blobs: ids.len(),
        bytes_written,
    };
    for (pack, mut blobs) in packs {
        blobs.sort_unstable_by_key(|b| b.entry.offset);
        merge_ranges(pack, blobs, &mut plan.ranges);
    }
    Ok(plan)
}

/// Appends the ranges covering `blobs` (sorted by offset) of `pack` to `out`.
fn merge_ranges(pack: PackId, blobs: Vec<PlannedBlob>, out: &mut Vec<ReadRange>) {
    for blob in blobs {
        let entry = blob.entry;
        push_merged(out, pack, &entry, blob);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobType;
    use crate::repo::fetch::{MAX_GAP, MAX_RANGE};

    fn id(n: u8) -> BlobId {
        BlobId([n; 32])
    }

    fn at(pack: u8, offset: u32, length: u32, n: u8) -> BlobLocation {
        BlobLocation {
            pack: PackId([pack; 32]),
            entry: BlobEntry {
                blob_type: BlobType::Data,
                id: id(n),
                offset,
                length,
                raw_length: 100,
                delta: None,
            },
        }
    }

    fn data(n: u8) -> ContentItem {
        ContentItem::Data {
            id: id(n),
            len: 100,
        }
    }

    fn plan_for(files: &[Vec<ContentItem>], locations: &[BlobLocation]) -> ReadPlan {
        let by_id: HashMap<BlobId, BlobLocation> =
            locations.iter().map(|l| (l.entry.id, *l)).collect();
        plan_reads(
            files.iter().map(Vec::as_slice),
            |ids| Ok(ids.iter().map(|i| Ok(by_id[i])).collect()),
            |f| format!("file {f}"),
        )
        .unwrap()
    }

    #[test]
    fn a_shared_blob_is_read_once_for_every_file_and_offset() {
        let files = [
            vec![data(1), ContentItem::Hole { len: 50 }, data(1)],
            vec![data(2), data(1)],
        ];
        let plan = plan_for(&files, &[at(7, 10, 120, 1), at(7, 130, 120, 2)]);
        assert_eq!(plan.blobs, 2);
        assert_eq!(plan.bytes_written, 400);
        // Adjacent blobs of one pack: one read.
        assert_eq!(plan.ranges.len(), 1);
        let range = &plan.ranges[0];
        assert_eq!((range.offset, range.length), (10, 240));
        let shared = &range.blobs[0];
        assert_eq!(shared.entry.id, id(1));
        let target = |file, offset| Target {
            file,
            offset,
            len: 100,
        };
        assert_eq!(
            shared.targets,
            [target(0, 0), target(0, 150), target(1, 100)]
        );
        assert_eq!(range.blobs[1].targets, [target(1, 0)]);
    }

    #[test]
    fn far_apart_or_oversized_blobs_get_ranges_of_their_own() {
        let gap = MAX_GAP as u32;
        let big = MAX_RANGE as u32;
        let locations = [
            at(1, 10, 100, 1),
            at(1, 110 + gap, 100, 2), // after a gap too long: a new range
            at(1, 210 + gap, 100, 3), // adjacent: the same range
            at(1, 310 + gap, big, 4), // would make the range too long
            at(2, 10, 100, 5),        // another pack, with less to read: last
        ];
        let plan = plan_for(&[(1..=5).map(data).collect()], &locations);
        let shape: Vec<(u8, u64, u64, usize)> = plan
            .ranges
            .iter()
            .map(|r| (r.pack.0[0], r.offset, r.length, r.blobs.len()))
            .collect();
        let gap = gap as u64;
        assert_eq!(
            shape,
            [
                (1, 10, 100, 1),
                (1, 110 + gap, 200, 2),
                (1, 310 + gap, big as u64, 1),
                (2, 10, 100, 1),
            ]
        );
    }

    #[test]
    fn a_blob_missing_from_the_index_names_the_first_file_needing_it() {
        let files = [vec![data(1)], vec![data(2)]];
        let err = plan_reads(
            files.iter().map(Vec::as_slice),
            |ids| {
                Ok(ids
                    .iter()
                    .map(|i| match i.0[0] {
                        1 => Ok(at(1, 10, 100, 1)),
                        _ => Err(crate::Error::corrupted("not in the index")),
                    })
                    .collect())
            },
            |f| format!("restoring file {f}"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("restoring file 1"), "{err}");
    }
}
