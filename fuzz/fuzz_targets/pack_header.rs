//! Pack headers (FORMAT.md §7, §15). Input: `header_start u64 LE || header plaintext`, the blob
//! area starting after a version 1 or 2 prefix (by the parity of the first byte), delta entries
//! allowed (versions 3 and 4) by its second bit.
//! Also `header_range(pack_len, prefix_len, trailer)` with `pack_len` = the same first 8 bytes and
//! `trailer` the next 4, and `PackPrefix::decode` of the input itself. Whatever is accepted must
//! satisfy the invariants readers rely on.
#![no_main]

#[path = "common.rs"]
mod common;

use cairn::crypto::SEAL_OVERHEAD;
use cairn::format::pack::{
    decode_header_plaintext, header_range, PackPrefix, MAX_PACK_LEN, PREFIX_LEN,
    PREFIX_LEN_WITH_EPOCH, TRAILER_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header_start, plain) = match common::u64_at(data, 0) {
        Some(v) => (v, &data[8..]),
        None => (u64::MAX, data),
    };

    let prefix_len = if data.first().is_some_and(|b| b % 2 == 0) {
        PREFIX_LEN
    } else {
        PREFIX_LEN_WITH_EPOCH
    };
    if let Ok(prefix) = PackPrefix::decode(data) {
        assert!(prefix.len == PREFIX_LEN || prefix.len == PREFIX_LEN_WITH_EPOCH);
        let deltas = prefix.deltas;
        assert!(prefix.len <= data.len());
        // Writers encode epoch 0 as version 1 (10 bytes); a version 2 prefix naming epoch 0 is
        // still read (its header's AAD binds the epoch), so only the epoch must survive.
        let again = PackPrefix::decode(&prefix.encode()).unwrap();
        assert_eq!(again.epoch, prefix.epoch);
        assert_eq!(again.deltas, deltas);
        assert!(again == prefix || (prefix.epoch == 0 && again.len == PREFIX_LEN));
    }

    let deltas = data.first().is_some_and(|b| b & 2 != 0);
    if let Ok(entries) = decode_header_plaintext(plain, prefix_len as u64, header_start, deltas) {
        let encoded: usize = entries.iter().map(|e| e.encoded_len()).sum();
        assert_eq!(plain.len(), 4 + encoded);
        assert!(deltas || entries.iter().all(|e| e.delta.is_none()));
        let mut ranges: Vec<(u64, u64)> = entries
            .iter()
            .map(|e| {
                assert!(e.raw_length <= e.blob_type.max_raw_len());
                assert!(e.length as usize > SEAL_OVERHEAD);
                assert!(e.delta.is_none_or(|d| d.base != e.id), "a delta against itself");
                (e.offset as u64, e.offset as u64 + e.length as u64)
            })
            .collect();
        ranges.sort_unstable();
        let mut previous_end = prefix_len as u64;
        for (start, end) in ranges {
            assert!(start >= previous_end, "overlapping or before the prefix");
            assert!(end <= header_start, "past the header");
            previous_end = end;
        }
    }

    if let (Some(pack_len), Some(trailer)) = (common::u64_at(data, 0), data.get(8..12)) {
        let trailer: [u8; 4] = trailer.try_into().unwrap();
        if let Ok((start, len)) = header_range(pack_len, prefix_len, trailer) {
            assert!(pack_len <= MAX_PACK_LEN);
            assert_eq!(len, u32::from_le_bytes(trailer) as u64);
            assert!(len >= SEAL_OVERHEAD as u64);
            assert!(start >= prefix_len as u64, "header overlaps the prefix");
            assert_eq!(start + len + TRAILER_LEN as u64, pack_len);
        }
    }
});
