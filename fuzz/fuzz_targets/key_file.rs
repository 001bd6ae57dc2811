//! Key files (FORMAT.md §4): `KeyFile::decode` must never panic on any bytes, version 1 or 2.
//! `unwrap_key` is not called: it runs Argon2id (tens of MiB, slow) and the
//! point here is the parser and its bounds check, which run before any KDF.
//! `metadata` is called with a fixed key: opening the sealed metadata must fail cleanly.
#![no_main]

use cairn::crypto::{KdfParams, MasterKey};
use cairn::format::key::{KeyFile, V1_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = KeyFile::decode(data) {
        // Accepted parameters are within the documented bounds, so unwrap_key could not be made
        // to allocate or spin beyond them.
        let KdfParams {
            memory_kib,
            time,
            parallelism,
        } = file.params;
        assert!((8192..=4 * 1024 * 1024).contains(&memory_kib));
        assert!((1..=64).contains(&time));
        assert!((1..=64).contains(&parallelism));
        assert!(memory_kib >= 8 * parallelism);
        // A decoded key file is exactly its input.
        if file.version == 1 {
            assert_eq!(data.len(), V1_LEN);
        }
        assert!(data.len() <= 64 * 1024);
        assert_eq!(file.encode(), data);
        let _ = file.metadata(&MasterKey::from_bytes(&[7; 64]));
    }
});
