//! Delta frames (FORMAT.md §6): `raw_len u16 LE || base_len u16 LE || base || frame`. Decoding
//! against any base never panics and, when it succeeds, yields exactly `raw_len` bytes; a frame
//! made against the base round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let raw_len = u16::from_le_bytes([data[0], data[1]]) as usize;
    let base_len = (u16::from_le_bytes([data[2], data[3]]) as usize).min(data.len() - 4);
    let (base, frame) = data[4..].split_at(base_len);
    let mut out = Vec::new();
    if cairn::delta::decompress(base, frame, raw_len, &mut out).is_ok() {
        assert_eq!(out.len(), raw_len);
    }
    // The rest of the input as a new version of the base.
    let mut made = Vec::new();
    cairn::delta::compress(base, frame, cairn::delta::DELTA_LEVEL, &mut made).unwrap();
    cairn::delta::decompress(base, &made, frame.len(), &mut out).unwrap();
    assert_eq!(out, frame);
});
