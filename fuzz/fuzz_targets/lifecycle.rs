//! Lease, pending-deletion and verification record bodies (FORMAT.md §12), decrypted JSON.
#![no_main]

use cairn::format::lifecycle::{Lease, PendingDeletion, VerifiedPacks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(lease) = Lease::decode_body(data) {
        let _ = lease.start_time() <= lease.expiry_time();
    }
    if let Ok(record) = PendingDeletion::decode_body(data) {
        assert_eq!(record.pack_ids().len(), record.packs.len());
        let _ = record.datetime();
    }
    if let Ok(record) = VerifiedPacks::decode_body(data) {
        assert_eq!(record.times().count(), record.packs.len());
    }
});
