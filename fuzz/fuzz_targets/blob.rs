//! Sealed blobs (FORMAT.md §6) through `open_blob`, which must never panic.
//!
//! Input: `type u8 || mode u8 || raw_length u32 LE || level u8 || rest`.
//! - mode % 3 == 0: `rest` is the sealed blob as read from a pack (fails authentication, but the
//!   length checks before it run on hostile bytes).
//! - mode % 3 == 1: `rest` is a payload (`compression[1] || body`) sealed here under the fixed key
//!   with the blob AAD, so the decompressor and the length and id checks see hostile payloads.
//!   The id is that of `rest[1..]`, so an uncompressed payload with the right raw length opens.
//! - mode % 3 == 2: `rest` is a plaintext; `seal_blob` then `open_blob` must give it back.
//!
//! `raw_length` is reduced into the bounds `BlobEntry::decode_from` enforces, as every entry
//! that reaches `open_blob` in cairn has passed it.
#![no_main]

#[path = "common.rs"]
mod common;

use cairn::blob::{open_blob, seal_blob};
use cairn::format::pack::BlobEntry;
use cairn::{BlobId, BlobType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let blob_type = if data[0] & 1 == 0 {
        BlobType::Data
    } else {
        BlobType::Tree
    };
    let mode = data[1] % 3;
    let raw_length = common::u32_at(data, 2).unwrap() % (blob_type.max_raw_len() + 1);
    let level = (data[6] % 10) as i32 - 3;
    let rest = &data[7..];
    let key = common::key();
    let entry = |id: BlobId, sealed_len: usize, raw_length: u32| BlobEntry {
        blob_type,
        id,
        offset: 10,
        length: sealed_len as u32,
        raw_length,
    };

    match mode {
        0 => {
            let id = BlobId(
                rest.get(..32)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or([0; 32]),
            );
            let _ = open_blob(key, &entry(id, rest.len(), raw_length), rest);
        }
        1 => {
            let plain = rest.get(1..).unwrap_or(&[]);
            let id = key.blob_id(plain);
            let sealed = key.seal(&cairn::blob::aad(blob_type, &id), rest).unwrap();
            if let Ok(out) = open_blob(key, &entry(id, sealed.len(), raw_length), &sealed) {
                assert_eq!(out.len(), raw_length as usize);
                assert_eq!(key.blob_id(&out), id);
            }
        }
        _ => {
            let id = key.blob_id(rest);
            let sealed = seal_blob(key, blob_type, &id, rest, level).unwrap();
            let out = open_blob(key, &entry(id, sealed.len(), rest.len() as u32), &sealed)
                .expect("a sealed blob opens");
            assert_eq!(out, rest);
            // Any other raw length is refused.
            let wrong = entry(id, sealed.len(), rest.len() as u32 + 1);
            assert!(open_blob(key, &wrong, &sealed).is_err());
        }
    }
});
