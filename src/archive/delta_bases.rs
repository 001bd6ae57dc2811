//! Which stored chunk a changed chunk most likely came from: its counterpart in the parent
//! snapshot's version of the same file or stream, found by position from the last chunk both
//! versions share.
//!
//! Content-defined boundaries resynchronise after an edit, so a run of changed chunks usually
//! sits between two unchanged ones, where the old versions of those chunks sat. The end of the
//! last unchanged chunk pins an offset of the new version to one of the old; a changed chunk that
//! starts `n` bytes after it is paired with the old chunk whose start is nearest to `n` bytes
//! after the old pin. Edits shift later chunks by a row or two, far less than a chunk, and an
//! edit that merges or splits chunks changes nothing for the ones after it (pairing chunk by
//! chunk would be off by one from there on). No chunk content is read and nothing is stored
//! beyond the parent's chunk list: memory is a few dozen bytes per chunk of the file. A wrong
//! pairing (rows inserted between two unchanged chunks) only costs a delta that does not pay, and
//! the chunk is stored whole.
//!
//! Rows that moved (a database writes an updated row wherever there is room) or content repeated
//! from elsewhere make the chunk at the same place a poor base. When the parent's version has its
//! anchors kept ([`super::anchors`]), a changed chunk takes the old chunk sharing the most anchors
//! with it instead, the positional one winning ties; on the nightly dumps of
//! `benches/dump_compare.sh` this stores a night's changes in about 30% fewer bytes.

use std::collections::HashMap;

use super::anchors::VersionAnchors;
use crate::format::tree::ContentItem;
use crate::id::BlobId;

/// The parent's version of one file, and where the reading of the new version stands.
pub struct DeltaBases {
    /// Each data chunk of the parent's version and the offset it starts at, in file order.
    chunks: Vec<(u64, BlobId)>,
    /// Where each chunk id first occurs in the parent's version: its start, its end and its
    /// ordinal among the data chunks.
    place_of: HashMap<BlobId, (u64, u64, usize)>,
    /// The anchors of the parent's version, when kept, and the first chunk holding each.
    anchors: Option<(VersionAnchors, HashMap<u64, u32>)>,
    /// The end of the last chunk both versions share, in the new version and in the old.
    pin: (u64, u64),
    /// Bytes of the new version seen so far.
    position: u64,
    /// Length of the parent's version: a chunk that starts past it (appended data) has no old self.
    parent_len: u64,
}

impl DeltaBases {
    /// Candidates from `parent`, the content of the file in the parent snapshot, and its anchors
    /// when kept (one entry per data chunk, else ignored); `None` when it holds no data.
    pub fn new(parent: &[ContentItem], anchors: Option<VersionAnchors>) -> Option<Self> {
        let mut chunks = Vec::new();
        let mut place_of = HashMap::new();
        let mut offset = 0u64;
        for item in parent {
            if let ContentItem::Data { id, len } = item {
                place_of
                    .entry(*id)
                    .or_insert((offset, offset + u64::from(*len), chunks.len()));
                chunks.push((offset, *id));
            }
            offset += item.len();
        }
        let anchors = anchors.filter(|a| a.chunks() == chunks.len()).map(|a| {
            let holders = a.first_holders();
            (a, holders)
        });
        (!chunks.is_empty()).then_some(DeltaBases {
            chunks,
            place_of,
            anchors,
            pin: (0, 0),
            position: 0,
            parent_len: offset,
        })
    }

    /// Whether the parent's anchors are known: then changed chunks are worth sketching.
    pub fn has_anchors(&self) -> bool {
        self.anchors.is_some()
    }

    /// The kept anchors of `id` when it is a chunk of the parent's version: an unchanged chunk's
    /// anchors need not be computed again.
    pub fn parent_anchors(&self, id: &BlobId) -> Option<&[u64]> {
        let (anchors, _) = self.anchors.as_ref()?;
        self.place_of
            .get(id)
            .map(|&(_, _, ordinal)| anchors.of(ordinal))
    }

    /// Passes over a hole of the new version.
    pub fn skip(&mut self, len: u64) {
        self.position += len;
    }

    /// For the next chunks of the new version (their ids, lengths, whether each is stored
    /// already, and the anchors of the new ones when [`DeltaBases::has_anchors`]), a proposed base
    /// for each new one.
    pub fn propose(
        &mut self,
        ids: &[BlobId],
        lens: &[usize],
        known: &[bool],
        sketches: &[Vec<u64>],
    ) -> Vec<Option<BlobId>> {
        let mut out = Vec::with_capacity(ids.len());
        for (i, ((id, &len), &known)) in ids.iter().zip(lens).zip(known).enumerate() {
            let here = self.position;
            self.position += len as u64;
            if let Some(&(_, old_end, _)) = self.place_of.get(id) {
                self.pin = (self.position, old_end);
                out.push(None);
            } else if known {
                out.push(None);
            } else {
                let (new_pin, old_pin) = self.pin;
                let positional = self.nearest(old_pin + (here - new_pin));
                let sketch = sketches.get(i).map_or(&[][..], Vec::as_slice);
                let chosen = self.most_shared(sketch, positional).or(positional);
                out.push(chosen.map(|ordinal| self.chunks[ordinal].1));
            }
        }
        out
    }

    /// The parent's chunk holding the most of `sketch`'s anchors, `positional` on a tie; `None`
    /// when none holds any.
    fn most_shared(&self, sketch: &[u64], positional: Option<usize>) -> Option<usize> {
        let (_, holders) = self.anchors.as_ref()?;
        let mut hits: HashMap<u32, u32> = HashMap::new();
        for anchor in sketch {
            if let Some(&ordinal) = holders.get(anchor) {
                *hits.entry(ordinal).or_default() += 1;
            }
        }
        hits.into_iter()
            .max_by_key(|&(ordinal, n)| {
                let ordinal = ordinal as usize;
                (n, Some(ordinal) == positional, std::cmp::Reverse(ordinal))
            })
            .map(|(ordinal, _)| ordinal as usize)
    }

    /// The ordinal of the parent's chunk whose start is nearest to `offset` of the old version;
    /// none past its end.
    fn nearest(&self, offset: u64) -> Option<usize> {
        if offset >= self.parent_len {
            return None;
        }
        let after = self.chunks.partition_point(|(start, _)| *start <= offset);
        match (after.checked_sub(1), self.chunks.get(after)) {
            (Some(b), Some(&(a, _))) => Some(if offset - self.chunks[b].0 <= a - offset {
                b
            } else {
                after
            }),
            (Some(only), None) => Some(only),
            (None, Some(_)) => Some(after),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BlobId {
        BlobId([n; 32])
    }

    fn data(n: u8, len: u32) -> ContentItem {
        ContentItem::Data { id: id(n), len }
    }

    #[test]
    fn changed_chunks_between_unchanged_ones_get_their_old_selves() {
        let parent = [data(1, 100), data(2, 100), data(3, 100), data(4, 100)];
        let mut bases = DeltaBases::new(&parent, None).unwrap();
        // 1 unchanged, 2 shrank by a row, 3 grew, 4 unchanged.
        let got = bases.propose(
            &[id(1), id(12), id(13), id(4)],
            &[100, 90, 130, 100],
            &[true, false, false, true],
            &[],
        );
        assert_eq!(got, [None, Some(id(2)), Some(id(3)), None]);
    }

    #[test]
    fn a_merge_inside_a_run_does_not_shift_the_pairs_after_it() {
        let parent = [
            data(1, 100),
            data(2, 100),
            data(3, 100),
            data(4, 100),
            data(5, 100),
        ];
        let mut bases = DeltaBases::new(&parent, None).unwrap();
        // After 1: 2 and 3 became one chunk, then 4 changed, then 5 changed.
        let got = bases.propose(
            &[id(1), id(23), id(14), id(15)],
            &[100, 200, 100, 100],
            &[true, false, false, false],
            &[],
        );
        assert_eq!(got, [None, Some(id(2)), Some(id(4)), Some(id(5))]);
    }

    #[test]
    fn an_insertion_is_followed_by_the_pin() {
        let parent = [data(1, 100), data(2, 100), data(3, 100)];
        let mut bases = DeltaBases::new(&parent, None).unwrap();
        // A chunk inserted first (paired with the old start: a delta that will not pay), then 1
        // and 2 unchanged, then 3 changed.
        let got = bases.propose(
            &[id(9), id(1), id(2), id(13)],
            &[500, 100, 100, 100],
            &[false, true, true, false],
            &[],
        );
        assert_eq!(got, [Some(id(1)), None, None, Some(id(3))]);
    }

    #[test]
    fn with_anchors_a_chunk_takes_the_old_chunk_sharing_most_of_them() {
        let parent = [data(1, 100), data(2, 100), data(3, 100), data(4, 100)];
        let mut anchors = VersionAnchors::default();
        for chunk in [&[10, 11][..], &[20, 21], &[30, 31, 32], &[40]] {
            anchors.push(chunk);
        }
        let mut bases = DeltaBases::new(&parent, Some(anchors.clone())).unwrap();
        assert!(bases.has_anchors());
        assert_eq!(bases.parent_anchors(&id(3)), Some(&[30, 31, 32][..]));
        assert_eq!(bases.parent_anchors(&id(9)), None);
        // 1 unchanged; the next chunk holds rows of 3 mostly; then one sharing nothing (position
        // decides); then one tied between its positional chunk (4) and 2.
        let got = bases.propose(
            &[id(1), id(12), id(13), id(14)],
            &[100, 100, 100, 100],
            &[true, false, false, false],
            &[vec![], vec![20, 30, 31, 99], vec![98], vec![21, 40]],
        );
        assert_eq!(got, [None, Some(id(3)), Some(id(3)), Some(id(4))]);
        // Past the parent's end a chunk still finds where its content came from.
        assert_eq!(
            bases.propose(&[id(15)], &[100], &[false], &[vec![11]]),
            [Some(id(1))]
        );
        // Anchors of another chunk count are not the parent's: ignored.
        anchors.push(&[50]);
        assert!(!DeltaBases::new(&parent, Some(anchors))
            .unwrap()
            .has_anchors());
    }

    #[test]
    fn chunks_known_from_elsewhere_get_no_base_and_holes_count() {
        let parent = [data(1, 100), ContentItem::Hole { len: 1000 }, data(2, 100)];
        let mut bases = DeltaBases::new(&parent, None).unwrap();
        assert_eq!(bases.propose(&[id(1)], &[100], &[true], &[]), [None]);
        bases.skip(1000);
        assert_eq!(
            bases.propose(&[id(8), id(7)], &[50, 50], &[false, true], &[]),
            [Some(id(2)), None]
        );
        // Past the parent's end (appended data) there is no old self.
        assert_eq!(bases.propose(&[id(9)], &[100], &[false], &[]), [None]);
        assert!(DeltaBases::new(&[ContentItem::Hole { len: 5 }], None).is_none());
    }
}
