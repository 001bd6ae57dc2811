//! Pack layout (FORMAT.md §7): header magic, sealed blobs, a sealed header listing them, and its length.

use crate::crypto::{MasterKey, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::format::wire::{read_header, Reader, Writer};
use crate::id::{BlobId, BlobType};

/// Magic at the start of a pack.
pub const MAGIC: &[u8; 8] = b"CAIRNPAK";
/// Version written.
pub const VERSION: u16 = 1;
/// Bytes before the first blob.
pub const PREFIX_LEN: usize = 8 + 2;
/// Bytes of the trailing header length.
pub const TRAILER_LEN: usize = 4;
/// Bytes of one blob entry in pack headers and index files.
pub const ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;
/// Largest pack accepted.
pub const MAX_PACK_LEN: u64 = 1 << 30;
const HEADER_AAD: &[u8] = b"cairn pack header v1";

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
}

impl BlobEntry {
    /// Appends the 45-byte entry.
    pub fn encode_into(&self, w: &mut Writer) {
        w.u8(self.blob_type.to_byte())
            .bytes(&self.id.0)
            .u32(self.offset)
            .u32(self.length)
            .u32(self.raw_length);
    }

    /// Reads one entry and checks its lengths against the blob type's bounds.
    ///
    /// # Errors
    /// When truncated or out of bounds.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let blob_type = BlobType::from_byte(r.u8()?).map_err(|e| r.error(e))?;
        let entry = BlobEntry {
            blob_type,
            id: BlobId(r.array()?),
            offset: r.u32()?,
            length: r.u32()?,
            raw_length: r.u32()?,
        };
        if entry.raw_length > blob_type.max_raw_len() {
            return Err(r.error(format!("blob raw length {} is too large", entry.raw_length)));
        }
        if (entry.length as usize) < SEAL_OVERHEAD + 1 {
            return Err(r.error(format!("blob length {} is too small", entry.length)));
        }
        Ok(entry)
    }
}

/// The bytes that start every pack.
pub fn prefix() -> Vec<u8> {
    let mut w = Writer::with_capacity(PREFIX_LEN);
    w.bytes(MAGIC).u16(VERSION);
    w.into_bytes()
}

/// The sealed header plus the trailing length, to append after the blobs.
///
/// # Errors
/// When randomness is unavailable.
pub fn encode_trailer(key: &MasterKey, entries: &[BlobEntry]) -> Result<Vec<u8>> {
    let mut w = Writer::with_capacity(4 + entries.len() * ENTRY_LEN);
    w.u32(entries.len() as u32);
    for e in entries {
        e.encode_into(&mut w);
    }
    let sealed = key.seal(HEADER_AAD, &w.into_bytes())?;
    let mut out = sealed;
    let len = out.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Where the sealed header sits, from the pack's total length and its last 4 bytes.
///
/// # Errors
/// When the length points outside the pack.
pub fn header_range(pack_len: u64, trailer: [u8; 4]) -> Result<(u64, u64)> {
    let header_len = u32::from_le_bytes(trailer) as u64;
    let min = (PREFIX_LEN + TRAILER_LEN + SEAL_OVERHEAD) as u64;
    if pack_len < min || pack_len > MAX_PACK_LEN {
        return Err(Error::corrupted(format!(
            "pack is {pack_len} bytes: not a possible pack length"
        )));
    }
    if header_len < SEAL_OVERHEAD as u64
        || header_len > pack_len - (PREFIX_LEN + TRAILER_LEN) as u64
    {
        return Err(Error::corrupted(format!(
            "pack header length {header_len} does not fit a pack of {pack_len} bytes"
        )));
    }
    Ok((pack_len - TRAILER_LEN as u64 - header_len, header_len))
}

/// Opens and checks a sealed header found at `header_start`.
///
/// # Errors
/// When authentication fails or an entry lies outside the blob area or overlaps another.
pub fn decode_header(key: &MasterKey, sealed: &[u8], header_start: u64) -> Result<Vec<BlobEntry>> {
    let plain = key.open(HEADER_AAD, sealed, "pack header")?;
    decode_header_plaintext(&plain, header_start)
}

/// Parses a header plaintext; exposed for fuzzing.
///
/// # Errors
/// As [`decode_header`], minus authentication.
pub fn decode_header_plaintext(plain: &[u8], header_start: u64) -> Result<Vec<BlobEntry>> {
    let mut r = Reader::new(plain, "pack header");
    let count = r.count(ENTRY_LEN)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(BlobEntry::decode_from(&mut r)?);
    }
    r.finish()?;
    let mut ranges: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| (e.offset as u64, e.offset as u64 + e.length as u64))
        .collect();
    ranges.sort_unstable();
    let mut end_of_previous = PREFIX_LEN as u64;
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

/// Checks the 10 bytes at the start of a pack.
///
/// # Errors
/// When the magic or version is wrong.
pub fn check_prefix(bytes: &[u8]) -> Result<()> {
    let mut r = Reader::new(bytes, "pack");
    read_header(&mut r, MAGIC, &[VERSION]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_overlap() {
        let key = MasterKey::generate().unwrap();
        let e = |offset, length| BlobEntry {
            blob_type: BlobType::Data,
            id: BlobId([offset as u8; 32]),
            offset,
            length,
            raw_length: 10,
        };
        let entries = vec![e(10, 60), e(70, 50)];
        let trailer = encode_trailer(&key, &entries).unwrap();
        let total = 120 + trailer.len() as u64;
        let last4: [u8; 4] = trailer[trailer.len() - 4..].try_into().unwrap();
        let (start, len) = header_range(total, last4).unwrap();
        assert_eq!(start, 120);
        let sealed = &trailer[..len as usize];
        assert_eq!(decode_header(&key, sealed, start).unwrap(), entries);
        // Overlapping entries are refused.
        let bad = vec![e(10, 60), e(50, 50)];
        let trailer = encode_trailer(&key, &bad).unwrap();
        let sealed = &trailer[..trailer.len() - 4];
        assert!(decode_header(&key, sealed, 120).is_err());
        assert!(header_range(10, [0, 0, 0, 0]).is_err());
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
            proptest::prop_assert_eq!(decode_header_plaintext(&plain, offset as u64).unwrap(), entries.clone());
            // A header that claims blobs past its own start is refused.
            if !entries.is_empty() {
                proptest::prop_assert!(decode_header_plaintext(&plain, offset as u64 - 1).is_err());
            }
        }

        #[test]
        fn header_plaintext_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), start in proptest::prelude::any::<u64>()) {
            let _ = decode_header_plaintext(&bytes, start);
        }
    }
}
