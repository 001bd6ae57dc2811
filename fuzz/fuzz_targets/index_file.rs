//! Index file bodies (FORMAT.md §8), decrypted, as versions 1 and 2 (without delta entries) and
//! as 3 and 4 (with). Accepted bodies must round-trip through the public sealed encoder and
//! decoder (fixed key), which picks the version by whether a delta is listed.
#![no_main]

#[path = "common.rs"]
mod common;

use cairn::format::index_file::IndexFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for deltas in [false, true] {
        let Ok(file) = IndexFile::decode_body(data, deltas) else {
            continue;
        };
        assert!(deltas || !file.has_deltas(), "a delta entry where none may be");
        let _ = file.blob_count();
        let key = common::key();
        let again = IndexFile::decode(key, &file.encode(key).unwrap())
            .expect("a decoded index re-encodes to a decodable one");
        assert_eq!(again, file);
    }
});
