//! Pack headers (FORMAT.md §7). Input: `header_start u64 LE || header plaintext`.
//! Also `header_range(pack_len, trailer)` with `pack_len` = the same first 8 bytes and `trailer`
//! the next 4. Whatever is accepted must satisfy the invariants readers rely on.
#![no_main]

#[path = "common.rs"]
mod common;

use cairn::crypto::SEAL_OVERHEAD;
use cairn::format::pack::{
    decode_header_plaintext, header_range, ENTRY_LEN, MAX_PACK_LEN, PREFIX_LEN, TRAILER_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header_start, plain) = match common::u64_at(data, 0) {
        Some(v) => (v, &data[8..]),
        None => (u64::MAX, data),
    };

    if let Ok(entries) = decode_header_plaintext(plain, header_start) {
        assert_eq!(plain.len(), 4 + entries.len() * ENTRY_LEN);
        let mut ranges: Vec<(u64, u64)> = entries
            .iter()
            .map(|e| {
                assert!(e.raw_length <= e.blob_type.max_raw_len());
                assert!(e.length as usize > SEAL_OVERHEAD);
                (e.offset as u64, e.offset as u64 + e.length as u64)
            })
            .collect();
        ranges.sort_unstable();
        let mut previous_end = PREFIX_LEN as u64;
        for (start, end) in ranges {
            assert!(start >= previous_end, "overlapping or before the prefix");
            assert!(end <= header_start, "past the header");
            previous_end = end;
        }
    }

    if let (Some(pack_len), Some(trailer)) = (common::u64_at(data, 0), data.get(8..12)) {
        let trailer: [u8; 4] = trailer.try_into().unwrap();
        if let Ok((start, len)) = header_range(pack_len, trailer) {
            assert!(pack_len <= MAX_PACK_LEN);
            assert_eq!(len, u32::from_le_bytes(trailer) as u64);
            assert!(len >= SEAL_OVERHEAD as u64);
            assert!(start >= PREFIX_LEN as u64, "header overlaps the prefix");
            assert_eq!(start + len + TRAILER_LEN as u64, pack_len);
        }
    }
});
