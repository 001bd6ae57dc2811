//! Shared by the fuzz targets (included with `#[path]`, not a target itself): the fixed key
//! and little-endian readers for fuzz input.
#![allow(dead_code)]

use std::sync::OnceLock;

use cairn::crypto::MasterKey;

/// The fixed master key every target uses, built once.
pub fn key() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(|| MasterKey::from_bytes(&[7u8; 64]))
}

/// The fixed key after one rotation: epochs 0 and 1, so version 2 objects are exercised too.
pub fn rotated_key() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(|| key().with_new_epoch().expect("randomness for the fuzz key"))
}

/// A little-endian u32 at `at`, if the input is long enough.
pub fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// A little-endian u64 at `at`, if the input is long enough.
pub fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}
