//! Index file bodies (FORMAT.md §8), decrypted. Accepted bodies must round-trip through the
//! public sealed encoder and decoder (fixed key).
#![no_main]

#[path = "common.rs"]
mod common;

use cairn::format::index_file::IndexFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = IndexFile::decode_body(data) {
        let _ = file.blob_count();
        let key = common::key();
        let again = IndexFile::decode(key, &file.encode(key).unwrap())
            .expect("a decoded index re-encodes to a decodable one");
        assert_eq!(again, file);
    }
});
