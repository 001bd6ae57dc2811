//! Anchors files of the local cache (FORMAT.md §8, "Local anchors"): decoding any bytes never
//! panics, and what decodes encodes back to the same bytes.
#![no_main]

use cairn::archive::anchors::VersionAnchors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(version) = VersionAnchors::decode(data) {
        assert_eq!(version.encode(), data);
        for ordinal in 0..=version.chunks() {
            let _ = version.of(ordinal);
        }
    }
    // The input as one chunk's anchors, then a file with a valid checksum around them.
    let mut version = VersionAnchors::default();
    let words: Vec<u64> = data
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .collect();
    version.push(&words);
    assert_eq!(VersionAnchors::decode(&version.encode()).unwrap(), version);
});
