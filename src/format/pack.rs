//! Pack layout (FORMAT.md §7, §15): magic, version, (versions 2 and 4) the data-key epoch, sealed
//! blobs, a sealed header listing them, and its length.
//!
//! A pack has one epoch: its blobs and header are sealed under that epoch's data key. Epoch 0
//! packs are written as version 1, so unrotated repositories stay readable by older builds.
//! Versions 3 and 4 are 1 and 2 with delta entries (a data blob stored against a base, §6): only a
//! pack that holds a delta gets them, so builds that predate deltas refuse exactly those packs.

use crate::crypto::{MasterKey, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::format::wire::{read_header, Reader, Writer};
use crate::id::{BlobId, BlobType};

/// Magic at the start of a pack.
pub const MAGIC: &[u8; 8] = b"CAIRNPAK";
/// Version of epoch-0 packs (no epoch field).
pub const VERSION_EPOCH_0: u16 = 1;
/// Version of packs that name their epoch.
pub const VERSION_WITH_EPOCH: u16 = 2;
/// Version 1 whose header may hold delta entries.
pub const VERSION_EPOCH_0_DELTAS: u16 = 3;
/// Version 2 whose header may hold delta entries.
pub const VERSION_WITH_EPOCH_DELTAS: u16 = 4;
/// Bytes before the first blob of a version 1 pack.
pub const PREFIX_LEN: usize = 8 + 2;
/// Bytes before the first blob of a version 2 pack (the epoch follows the version).
pub const PREFIX_LEN_WITH_EPOCH: usize = PREFIX_LEN + 4;
/// Bytes of the trailing header length.
pub const TRAILER_LEN: usize = 4;
/// Bytes of one blob entry in pack headers and index files (a delta entry adds its base id).
pub const ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;
/// Bytes of a delta entry: [`ENTRY_LEN`], the base's id and the generation.
pub const DELTA_ENTRY_LEN: usize = ENTRY_LEN + 32 + 4;
/// The entry kind byte of a data blob stored as a delta (data is 1, tree 2).
const KIND_DATA_DELTA: u8 = 3;
/// Largest pack accepted.
pub const MAX_PACK_LEN: u64 = 1 << 30;
const HEADER_AAD: &[u8] = b"cairn pack header v1";
const HEADER_AAD_WITH_EPOCH: &[u8] = b"cairn pack header v2";
// Versions 3 and 4 seal their headers as 1 and 2 do: a version changed in the clear from 3 to 1
// makes a delta entry unreadable (refused), and from 1 to 3 parses the same entries.

/// What the first bytes of a pack say: its data-key epoch and where its blob area starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackPrefix {
    /// The epoch whose data key sealed the pack (0 for versions 1 and 3).
    pub epoch: u32,
    /// Length of the prefix: the first blob starts here.
    pub len: usize,
    /// Whether the header may hold delta entries (versions 3 and 4).
    pub deltas: bool,
}

impl PackPrefix {
    /// The prefix a pack sealed under `epoch` is written with.
    pub fn for_epoch(epoch: u32) -> Self {
        let len = if epoch == 0 {
            PREFIX_LEN
        } else {
            PREFIX_LEN_WITH_EPOCH
        };
        PackPrefix {
            epoch,
            len,
            deltas: false,
        }
    }

    /// The version this prefix is written as.
    pub fn version(&self) -> u16 {
        match (self.len == PREFIX_LEN, self.deltas) {
            (true, false) => VERSION_EPOCH_0,
            (false, false) => VERSION_WITH_EPOCH,
            (true, true) => VERSION_EPOCH_0_DELTAS,
            (false, true) => VERSION_WITH_EPOCH_DELTAS,
        }
    }

    /// The prefix's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.len);
        w.bytes(MAGIC).u16(self.version());
        if self.len != PREFIX_LEN {
            w.u32(self.epoch);
        }
        w.into_bytes()
    }

    /// Parses the first bytes of a pack (at least [`PREFIX_LEN_WITH_EPOCH`] when there are that many).
    ///
    /// # Errors
    /// When the magic or version is wrong, or a version 2 prefix is cut short.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "pack");
        let versions = [
            VERSION_EPOCH_0,
            VERSION_WITH_EPOCH,
            VERSION_EPOCH_0_DELTAS,
            VERSION_WITH_EPOCH_DELTAS,
        ];
        let version = read_header(&mut r, MAGIC, &versions)?;
        let deltas = version >= VERSION_EPOCH_0_DELTAS;
        if version == VERSION_EPOCH_0 || version == VERSION_EPOCH_0_DELTAS {
            return Ok(PackPrefix {
                deltas,
                ..Self::for_epoch(0)
            });
        }
        Ok(PackPrefix {
            epoch: r.u32()?,
            len: PREFIX_LEN_WITH_EPOCH,
            deltas,
        })
    }

    /// The AAD of the sealed header: version 2 binds the epoch, so it cannot be changed in the clear.
    fn header_aad(&self) -> Vec<u8> {
        if self.len == PREFIX_LEN {
            HEADER_AAD.to_vec()
        } else {
            [HEADER_AAD_WITH_EPOCH, &self.epoch.to_le_bytes()].concat()
        }
    }
}

/// Where one blob lives inside a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// The blob id.
    pub id: BlobId,
    /// Offset of the sealed blob from the start of the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
    /// For a data blob stored as a delta (FORMAT.md §6): what it was compressed against.
    pub delta: Option<Delta>,
}

/// What a delta entry says beyond a plain one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta {
    /// The data blob the delta was made against, whose plaintext rebuilding it needs.
    pub base: BlobId,
    /// How many versions of this chunk were stored since one was stored whole (1 for a delta
    /// against a whole blob): what writers choose the next base by (skip-deltas, FORMAT.md §6).
    /// Readers do not rely on it.
    pub generation: u32,
}

impl BlobEntry {
    /// Appends the entry: 45 bytes, or 81 for a delta (kind 3, then the base's id and the
    /// generation).
    pub fn encode_into(&self, w: &mut Writer) {
        let kind = match self.delta {
            Some(_) => KIND_DATA_DELTA,
            None => self.blob_type.to_byte(),
        };
        w.u8(kind)
            .bytes(&self.id.0)
            .u32(self.offset)
            .u32(self.length)
            .u32(self.raw_length);
        if let Some(delta) = &self.delta {
            w.bytes(&delta.base.0).u32(delta.generation);
        }
    }

    /// Bytes [`BlobEntry::encode_into`] appends.
    pub fn encoded_len(&self) -> usize {
        if self.delta.is_some() {
            DELTA_ENTRY_LEN
        } else {
            ENTRY_LEN
        }
    }

    /// Reads one entry and checks its lengths against the blob type's bounds; a delta entry only
    /// when `deltas` (a version 3 or 4 pack or index file).
    ///
    /// # Errors
    /// When truncated or out of bounds, or a delta entry where none may be, or one based on itself.
    pub fn decode_from(r: &mut Reader<'_>, deltas: bool) -> Result<Self> {
        let kind = r.u8()?;
        let is_delta = deltas && kind == KIND_DATA_DELTA;
        let blob_type = if is_delta {
            BlobType::Data
        } else {
            BlobType::from_byte(kind).map_err(|e| r.error(e))?
        };
        let mut entry = BlobEntry {
            blob_type,
            id: BlobId(r.array()?),
            offset: r.u32()?,
            length: r.u32()?,
            raw_length: r.u32()?,
            delta: None,
        };
        if is_delta {
            let base = BlobId(r.array()?);
            let generation = r.u32()?;
            if base == entry.id {
                return Err(r.error(format!("blob {} is a delta against itself", entry.id)));
            }
            entry.delta = Some(Delta { base, generation });
        }
        if entry.raw_length > blob_type.max_raw_len() {
            return Err(r.error(format!("blob raw length {} is too large", entry.raw_length)));
        }
        if (entry.length as usize) < SEAL_OVERHEAD + 1 {
            return Err(r.error(format!("blob length {} is too small", entry.length)));
        }
        Ok(entry)
    }
}

/// The sealed header plus the trailing length, to append after the blobs of a pack that starts
/// with `prefix`; sealed under the data key of `prefix.epoch`.
///
/// # Errors
/// When randomness is unavailable, or the key's newest epoch is not the prefix's (a pack has one
/// epoch: its header is sealed with the key that sealed its blobs).
pub fn encode_trailer(
    key: &MasterKey,
    prefix: PackPrefix,
    entries: &[BlobEntry],
) -> Result<Vec<u8>> {
    if key.newest_epoch() != prefix.epoch {
        return Err(Error::new(
            crate::error::ErrorKind::Other,
            format!(
                "internal: a pack of epoch {} cannot be sealed under epoch {}",
                prefix.epoch,
                key.newest_epoch()
            ),
        ));
    }
    if !prefix.deltas && entries.iter().any(|e| e.delta.is_some()) {
        return Err(Error::new(
            crate::error::ErrorKind::Other,
            "internal: a delta entry in a pack of version 1 or 2",
        ));
    }
    let mut w = Writer::with_capacity(4 + entries.len() * DELTA_ENTRY_LEN);
    w.u32(entries.len() as u32);
    for e in entries {
        e.encode_into(&mut w);
    }
    let sealed = key.seal(&prefix.header_aad(), &w.into_bytes())?;
    let mut out = sealed;
    let len = out.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// The largest pack cairn writes for a pack size target of `target` bytes (FORMAT.md §7), capped by
/// [`MAX_PACK_LEN`]: a writer closes a pack once its blobs reach the target, so the blobs take at most
/// `target - 1` bytes plus one largest sealed blob (a tree blob, uncompressed), and each blob (at
/// least `SEAL_OVERHEAD + 1` bytes, all but the last within the target) adds an entry of at most
/// `DELTA_ENTRY_LEN` bytes to the sealed header. A larger pack is damage; readers refuse it before
/// reading it.
pub fn max_pack_len(target: u32) -> u64 {
    let smallest_blob = (SEAL_OVERHEAD + 1) as u64;
    let blobs = u64::from(target).saturating_sub(1)
        + u64::from(BlobType::Tree.max_raw_len())
        + smallest_blob;
    let entries = u64::from(target).saturating_sub(1) / smallest_blob + 1;
    let header = 4 + entries * DELTA_ENTRY_LEN as u64 + SEAL_OVERHEAD as u64;
    (PREFIX_LEN_WITH_EPOCH as u64 + blobs + header + TRAILER_LEN as u64).min(MAX_PACK_LEN)
}

/// Where the sealed header sits, from the pack's total length, its prefix length and its last 4 bytes.
///
/// # Errors
/// When the length points outside the pack.
pub fn header_range(pack_len: u64, prefix_len: usize, trailer: [u8; 4]) -> Result<(u64, u64)> {
    let header_len = u32::from_le_bytes(trailer) as u64;
    let min = (prefix_len + TRAILER_LEN + SEAL_OVERHEAD) as u64;
    if pack_len < min || pack_len > MAX_PACK_LEN {
        return Err(Error::corrupted(format!(
            "pack is {pack_len} bytes: not a possible pack length"
        )));
    }
    if header_len < SEAL_OVERHEAD as u64
        || header_len > pack_len - (prefix_len + TRAILER_LEN) as u64
    {
        return Err(Error::corrupted(format!(
            "pack header length {header_len} does not fit a pack of {pack_len} bytes"
        )));
    }
    Ok((pack_len - TRAILER_LEN as u64 - header_len, header_len))
}

/// Opens and checks a sealed header found at `header_start` of a pack that starts with `prefix`.
///
/// # Errors
/// When the keyring lacks the pack's epoch, authentication fails, or an entry lies outside the
/// blob area or overlaps another.
pub fn decode_header(
    key: &MasterKey,
    prefix: PackPrefix,
    sealed: &[u8],
    header_start: u64,
) -> Result<Vec<BlobEntry>> {
    let plain = key.open(prefix.epoch, &prefix.header_aad(), sealed, "pack header")?;
    decode_header_plaintext(&plain, prefix.len as u64, header_start, prefix.deltas)
}

/// Parses a header plaintext whose blobs lie between `blob_start` and `header_start`, with delta
/// entries when `deltas`; exposed for fuzzing.
///
/// # Errors
/// As [`decode_header`], minus authentication.
pub fn decode_header_plaintext(
    plain: &[u8],
    blob_start: u64,
    header_start: u64,
    deltas: bool,
) -> Result<Vec<BlobEntry>> {
    let mut r = Reader::new(plain, "pack header");
    let count = r.count(ENTRY_LEN)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(BlobEntry::decode_from(&mut r, deltas)?);
    }
    r.finish()?;
    let mut ranges: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| (e.offset as u64, e.offset as u64 + e.length as u64))
        .collect();
    ranges.sort_unstable();
    let mut end_of_previous = blob_start;
    for (start, end) in ranges {
        if start < end_of_previous || end > header_start {
            return Err(Error::corrupted(format!(
                "pack header lists a blob at bytes {start}..{end}, outside the blob area or overlapping another"
            )));
        }
        end_of_previous = end;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_pack_is_what_format_md_says() {
        assert_eq!(max_pack_len(32 << 20), 368_280_471);
        assert_eq!(max_pack_len(1 << 30), MAX_PACK_LEN);
        assert!(max_pack_len(1 << 20) < max_pack_len(2 << 20));
    }

    #[test]
    fn header_round_trip_and_overlap() {
        let key = MasterKey::generate().unwrap();
        let e = |offset, length| BlobEntry {
            blob_type: BlobType::Data,
            id: BlobId([offset as u8; 32]),
            offset,
            length,
            raw_length: 10,
            delta: None,
        };
        let entries = vec![e(10, 60), e(70, 50)];
        let prefix = PackPrefix::for_epoch(0);
        let trailer = encode_trailer(&key, prefix, &entries).unwrap();
        let total = 120 + trailer.len() as u64;
        let last4: [u8; 4] = trailer[trailer.len() - 4..].try_into().unwrap();
        let (start, len) = header_range(total, prefix.len, last4).unwrap();
        assert_eq!(start, 120);
        let sealed = &trailer[..len as usize];
        assert_eq!(decode_header(&key, prefix, sealed, start).unwrap(), entries);
        // Overlapping entries are refused.
        let bad = vec![e(10, 60), e(50, 50)];
        let trailer = encode_trailer(&key, prefix, &bad).unwrap();
        let sealed = &trailer[..trailer.len() - 4];
        assert!(decode_header(&key, prefix, sealed, 120).is_err());
        assert!(header_range(10, PREFIX_LEN, [0, 0, 0, 0]).is_err());
    }

    #[test]
    fn version_2_names_its_epoch_and_binds_it() {
        let old = MasterKey::generate().unwrap();
        let key = old.with_new_epoch().unwrap();
        let prefix = PackPrefix::for_epoch(1);
        let bytes = prefix.encode();
        assert_eq!(bytes.len(), PREFIX_LEN_WITH_EPOCH);
        assert_eq!(&bytes[8..10], &2u16.to_le_bytes());
        assert_eq!(PackPrefix::decode(&bytes).unwrap(), prefix);
        assert!(PackPrefix::decode(&bytes[..12]).is_err());
        assert_eq!(
            PackPrefix::decode(&PackPrefix::for_epoch(0).encode())
                .unwrap()
                .len,
            PREFIX_LEN
        );
        let entries = vec![BlobEntry {
            blob_type: BlobType::Tree,
            id: BlobId([1; 32]),
            offset: 14,
            length: 60,
            raw_length: 10,
            delta: None,
        }];
        // A pack's header is sealed under its own epoch only.
        assert!(encode_trailer(&key, PackPrefix::for_epoch(0), &entries).is_err());
        let trailer = encode_trailer(&key, prefix, &entries).unwrap();
        let sealed = &trailer[..trailer.len() - 4];
        assert_eq!(decode_header(&key, prefix, sealed, 74).unwrap(), entries);
        // A blob may not start inside the longer prefix; a changed epoch fails authentication;
        // a keyring without epoch 1 refuses by name.
        let early = PackPrefix {
            epoch: 1,
            len: 15,
            deltas: false,
        };
        assert!(decode_header(&key, early, sealed, 74).is_err());
        let lied = PackPrefix {
            epoch: 0,
            len: PREFIX_LEN_WITH_EPOCH,
            deltas: false,
        };
        assert!(decode_header(&key, lied, sealed, 74).is_err());
        let e = decode_header(&old, prefix, sealed, 74).unwrap_err();
        assert!(e.to_string().contains("epoch 1"), "{e}");
    }

    proptest::proptest! {
        /// Headers the writer would produce (consecutive blobs after the prefix) always decode to themselves.
        #[test]
        fn consecutive_layouts_round_trip(lengths in proptest::collection::vec(41u32..100_000, 0..20)) {
            let mut offset = PREFIX_LEN as u32;
            let entries: Vec<BlobEntry> = lengths
                .iter()
                .enumerate()
                .map(|(i, &length)| {
                    let e = BlobEntry {
                        blob_type: BlobType::Data,
                        id: BlobId([i as u8; 32]),
                        offset,
                        length,
                        raw_length: length - 41,
                        delta: None,
                    };
                    offset += length;
                    e
                })
                .collect();
            let mut w = Writer::new();
            w.u32(entries.len() as u32);
            for e in &entries {
                e.encode_into(&mut w);
            }
            let plain = w.into_bytes();
            let blob_start = PREFIX_LEN as u64;
            proptest::prop_assert_eq!(decode_header_plaintext(&plain, blob_start, offset as u64, false).unwrap(), entries.clone());
            // A header that claims blobs past its own start, or inside a longer prefix, is refused.
            if !entries.is_empty() {
                proptest::prop_assert!(decode_header_plaintext(&plain, blob_start, offset as u64 - 1, false).is_err());
                proptest::prop_assert!(decode_header_plaintext(&plain, blob_start + 1, offset as u64, false).is_err());
            }
        }

        #[test]
        fn header_plaintext_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), start in proptest::prelude::any::<u64>()) {
            let _ = decode_header_plaintext(&bytes, PREFIX_LEN as u64, start, true);
        }
    }
}
