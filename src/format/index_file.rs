//! Index files (FORMAT.md §8): for a set of packs, the blobs each holds and where.

use crate::crypto::MasterKey;
use crate::error::Result;
use crate::format::envelope::{self, EnvelopeKind};
use crate::format::pack::{BlobEntry, DELTA_ENTRY_LEN, ENTRY_LEN};
use crate::format::wire::{Reader, Writer};
use crate::id::{IndexId, PackId};

/// The envelope of index files (magic, version, seal AAD, size limit).
pub const ENVELOPE: EnvelopeKind = EnvelopeKind {
    magic: b"CAIRNIDX",
    aad: b"cairn index v1",
    what: "index file",
    max_len: 256 << 20,
};

/// Largest index file accepted, in bytes.
pub const MAX_INDEX_FILE_LEN: usize = 256 << 20;

/// The blobs of one pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackEntries {
    /// The pack.
    pub pack: PackId,
    /// Its blobs.
    pub blobs: Vec<BlobEntry>,
}

/// The decoded body of an index file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Index files whose content this one repeats (none in version 1 writers).
    pub supersedes: Vec<IndexId>,
    /// Packs and their blobs.
    pub packs: Vec<PackEntries>,
}

impl IndexFile {
    /// Number of blob entries.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }

    /// The sealed file.
    ///
    /// # Errors
    /// When randomness is unavailable.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        envelope::seal_with(key, &ENVELOPE, &self.encode_body(), self.has_deltas())
    }

    /// Whether any entry is a delta: such a file is written as version 3 or 4.
    pub fn has_deltas(&self) -> bool {
        self.packs
            .iter()
            .any(|p| p.blobs.iter().any(|b| b.delta.is_some()))
    }

    fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(8 + self.blob_count() * DELTA_ENTRY_LEN);
        w.u32(self.supersedes.len() as u32);
        for id in &self.supersedes {
            w.bytes(&id.0);
        }
        w.u32(self.packs.len() as u32);
        for p in &self.packs {
            w.bytes(&p.pack.0).u32(p.blobs.len() as u32);
            for b in &p.blobs {
                b.encode_into(&mut w);
            }
        }
        w.into_bytes()
    }

    /// Opens and parses an index file.
    ///
    /// # Errors
    /// When the file is damaged or of an unknown version.
    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<Self> {
        let (opened, body) = envelope::open_with(key, &ENVELOPE, bytes)?;
        Self::decode_body(&body, opened.deltas)
    }

    /// Parses a decrypted body, with delta entries when `deltas` (versions 3 and 4); exposed for
    /// fuzzing.
    ///
    /// # Errors
    /// When counts overrun the body or entries are malformed.
    pub fn decode_body(body: &[u8], deltas: bool) -> Result<Self> {
        let mut r = Reader::new(body, "index file");
        let n = r.count(32)?;
        let mut supersedes = Vec::with_capacity(n);
        for _ in 0..n {
            supersedes.push(IndexId(r.array()?));
        }
        let n = r.count(36)?;
        let mut packs = Vec::with_capacity(n);
        for _ in 0..n {
            let pack = PackId(r.array()?);
            let m = r.count(ENTRY_LEN)?;
            let mut blobs = Vec::with_capacity(m);
            for _ in 0..m {
                blobs.push(BlobEntry::decode_from(&mut r, deltas)?);
            }
            packs.push(PackEntries { pack, blobs });
        }
        r.finish()?;
        Ok(IndexFile { supersedes, packs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::Delta;
    use crate::id::{BlobId, BlobType};

    #[test]
    fn round_trip() {
        let key = MasterKey::generate().unwrap();
        let file = IndexFile {
            supersedes: vec![IndexId([7; 32])],
            packs: vec![PackEntries {
                pack: PackId([1; 32]),
                blobs: vec![BlobEntry {
                    blob_type: BlobType::Tree,
                    id: BlobId([2; 32]),
                    offset: 10,
                    length: 100,
                    raw_length: 50,
                    delta: None,
                }],
            }],
        };
        let bytes = file.encode(&key).unwrap();
        assert_eq!(IndexFile::decode(&key, &bytes).unwrap(), file);
        let body = file.encode_body();
        for cut in 0..body.len() {
            assert!(IndexFile::decode_body(&body[..cut], false).is_err());
        }
    }

    fn arb_entry() -> impl proptest::strategy::Strategy<Value = BlobEntry> {
        use proptest::prelude::*;
        (
            0u8..3,
            any::<[u8; 32]>(),
            any::<u32>(),
            41u32..u32::MAX,
            0u32..(16 << 20),
            any::<u32>(),
        )
            .prop_map(
                |(kind, id, offset, length, raw_length, generation)| BlobEntry {
                    blob_type: if kind == 0 {
                        BlobType::Tree
                    } else {
                        BlobType::Data
                    },
                    id: BlobId(id),
                    offset,
                    length,
                    raw_length,
                    // A delta against the id with its first byte changed: never itself.
                    delta: (kind == 2).then(|| {
                        let mut base = id;
                        base[0] ^= 1;
                        Delta {
                            base: BlobId(base),
                            generation,
                        }
                    }),
                },
            )
    }

    #[test]
    fn delta_entries_need_a_version_that_allows_them() {
        let key = MasterKey::generate().unwrap();
        let delta = Delta {
            base: BlobId([3; 32]),
            generation: 5,
        };
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: vec![PackEntries {
                pack: PackId([1; 32]),
                blobs: vec![BlobEntry {
                    blob_type: BlobType::Data,
                    id: BlobId([2; 32]),
                    offset: 10,
                    length: 100,
                    raw_length: 50,
                    delta: Some(delta),
                }],
            }],
        };
        let bytes = file.encode(&key).unwrap();
        assert_eq!(&bytes[8..10], &3u16.to_le_bytes());
        assert_eq!(IndexFile::decode(&key, &bytes).unwrap(), file);
        // The same body under version 1 is refused, not misread.
        assert!(IndexFile::decode_body(&file.encode_body(), false).is_err());
        // A delta against itself is damage.
        let mut looped = file.clone();
        looped.packs[0].blobs[0].delta = Some(Delta {
            base: BlobId([2; 32]),
            generation: 1,
        });
        let e = IndexFile::decode_body(&looped.encode_body(), true).unwrap_err();
        assert!(e.to_string().contains("against itself"), "{e}");
        // Without deltas a file keeps version 1, readable by builds that predate them.
        let mut plain = file;
        plain.packs[0].blobs[0].delta = None;
        assert_eq!(&plain.encode(&key).unwrap()[8..10], &1u16.to_le_bytes());
    }

    proptest::proptest! {
        #[test]
        fn body_round_trips(
            supersedes in proptest::collection::vec(proptest::prelude::any::<[u8; 32]>(), 0..3),
            packs in proptest::collection::vec(
                (proptest::prelude::any::<[u8; 32]>(), proptest::collection::vec(arb_entry(), 0..5)),
                0..4,
            ),
        ) {
            let file = IndexFile {
                supersedes: supersedes.into_iter().map(IndexId).collect(),
                packs: packs
                    .into_iter()
                    .map(|(pack, blobs)| PackEntries { pack: PackId(pack), blobs })
                    .collect(),
            };
            let deltas = file.has_deltas();
            proptest::prop_assert_eq!(IndexFile::decode_body(&file.encode_body(), deltas).unwrap(), file);
        }

        #[test]
        fn decode_body_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = IndexFile::decode_body(&bytes, true);
        }
    }
}
