//! Snapshot bodies (FORMAT.md §10), decrypted JSON.
#![no_main]

use cairn::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(snap) = Snapshot::decode_body(data) {
        let _ = snap.tree_id();
        let _ = snap.datetime();
    }
});
