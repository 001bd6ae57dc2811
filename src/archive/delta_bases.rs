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

use std::collections::HashMap;

use crate::format::tree::ContentItem;
use crate::id::BlobId;

/// The parent's version of one file, and where the reading of the new version stands.
pub struct DeltaBases {
    /// Each data chunk of the parent's version and the offset it starts at, in file order.
    chunks: Vec<(u64, BlobId)>,
    /// Where each chunk id first occurs in the parent's version: its start and its end.
    place_of: HashMap<BlobId, (u64, u64)>,
    /// The end of the last chunk both versions share, in the new version and in the old.
    pin: (u64, u64),
    /// Bytes of the new version seen so far.
    position: u64,
    /// Length of the parent's version: a chunk that starts past it (appended data) has no old self.
    parent_len: u64,
}

impl DeltaBases {
    /// Candidates from `parent`, the content of the file in the parent snapshot; `None` when it
    /// holds no data.
    pub fn new(parent: &[ContentItem]) -> Option<Self> {
        let mut chunks = Vec::new();
        let mut place_of = HashMap::new();
        let mut offset = 0u64;
        for item in parent {
            if let ContentItem::Data { id, len } = item {
                chunks.push((offset, *id));
                place_of
                    .entry(*id)
                    .or_insert((offset, offset + u64::from(*len)));
            }
            offset += item.len();
        }
        (!chunks.is_empty()).then_some(DeltaBases {
            chunks,
            place_of,
            pin: (0, 0),
            position: 0,
            parent_len: offset,
        })
    }

    /// Passes over a hole of the new version.
    pub fn skip(&mut self, len: u64) {
        self.position += len;
    }

    /// For the next chunks of the new version (their ids, lengths, and whether each is stored
    /// already), a proposed base for each new one.
    pub fn propose(
        &mut self,
        ids: &[BlobId],
        lens: &[usize],
        known: &[bool],
    ) -> Vec<Option<BlobId>> {
        let mut out = Vec::with_capacity(ids.len());
        for ((id, &len), &known) in ids.iter().zip(lens).zip(known) {
            let here = self.position;
            self.position += len as u64;
            if let Some(&(_, old_end)) = self.place_of.get(id) {
                self.pin = (self.position, old_end);
                out.push(None);
            } else if known {
                out.push(None);
            } else {
                let (new_pin, old_pin) = self.pin;
                out.push(self.nearest(old_pin + (here - new_pin)));
            }
        }
        out
    }

    /// The parent's chunk whose start is nearest to `offset` of the old version; none past its end.
    fn nearest(&self, offset: u64) -> Option<BlobId> {
        if offset >= self.parent_len {
            return None;
        }
        let after = self.chunks.partition_point(|(start, _)| *start <= offset);
        let before = after.checked_sub(1).map(|i| self.chunks[i]);
        match (before, self.chunks.get(after)) {
            (Some((b, before)), Some(&(a, after))) => Some(if offset - b <= a - offset {
                before
            } else {
                after
            }),
            (Some((_, only)), None) | (None, Some(&(_, only))) => Some(only),
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
        let mut bases = DeltaBases::new(&parent).unwrap();
        // 1 unchanged, 2 shrank by a row, 3 grew, 4 unchanged.
        let got = bases.propose(
            &[id(1), id(12), id(13), id(4)],
            &[100, 90, 130, 100],
            &[true, false, false, true],
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
        let mut bases = DeltaBases::new(&parent).unwrap();
        // After 1: 2 and 3 became one chunk, then 4 changed, then 5 changed.
        let got = bases.propose(
            &[id(1), id(23), id(14), id(15)],
            &[100, 200, 100, 100],
            &[true, false, false, false],
        );
        assert_eq!(got, [None, Some(id(2)), Some(id(4)), Some(id(5))]);
    }

    #[test]
    fn an_insertion_is_followed_by_the_pin() {
        let parent = [data(1, 100), data(2, 100), data(3, 100)];
        let mut bases = DeltaBases::new(&parent).unwrap();
        // A chunk inserted first (paired with the old start: a delta that will not pay), then 1
        // and 2 unchanged, then 3 changed.
        let got = bases.propose(
            &[id(9), id(1), id(2), id(13)],
            &[500, 100, 100, 100],
            &[false, true, true, false],
        );
        assert_eq!(got, [Some(id(1)), None, None, Some(id(3))]);
    }

    #[test]
    fn chunks_known_from_elsewhere_get_no_base_and_holes_count() {
        let parent = [data(1, 100), ContentItem::Hole { len: 1000 }, data(2, 100)];
        let mut bases = DeltaBases::new(&parent).unwrap();
        assert_eq!(bases.propose(&[id(1)], &[100], &[true]), [None]);
        bases.skip(1000);
        assert_eq!(
            bases.propose(&[id(8), id(7)], &[50, 50], &[false, true]),
            [Some(id(2)), None]
        );
        // Past the parent's end (appended data) there is no old self.
        assert_eq!(bases.propose(&[id(9)], &[100], &[false]), [None]);
        assert!(DeltaBases::new(&[ContentItem::Hole { len: 5 }]).is_none());
    }
}
