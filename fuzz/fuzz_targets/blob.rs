//! Sealed blobs (FORMAT.md §6) through `open_blob`, which must never panic.
//!
//! Input: `type u8 || mode u8 || raw_length u32 LE || level u8 || rest`.
//! - mode % 4 == 0: `rest` is the sealed blob as read from a pack (fails authentication, but the
//!   length checks before it run on hostile bytes).
//! - mode % 4 == 1: `rest` is a payload (`compression[1] || body`) sealed here under the fixed key
//!   with the blob AAD, so the decompressor and the length and id checks see hostile payloads.
//!   The id is that of `rest[1..]`, so an uncompressed payload with the right raw length opens.
//! - mode % 4 == 2: `rest` is a plaintext; `seal_blob` then `open_blob` must give it back.
//! - mode % 4 == 3: the second half of `rest` sealed as a delta against the first half must open
//!   to itself with that base, give itself or an error with another base plaintext, and fail
//!   named as a delta against another base.
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
    let mode = data[1] % 4;
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
        delta: None,
    };

    match mode {
        0 => {
            let id = BlobId(
                rest.get(..32)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or([0; 32]),
            );
            let _ = open_blob(key, &entry(id, rest.len(), raw_length), rest, None);
        }
        1 => {
            let plain = rest.get(1..).unwrap_or(&[]);
            let id = key.blob_id(plain);
            let sealed = key.seal(&cairn::blob::aad(blob_type, &id), rest).unwrap();
            if let Ok(out) = open_blob(key, &entry(id, sealed.len(), raw_length), &sealed, None) {
                assert_eq!(out.len(), raw_length as usize);
                assert_eq!(key.blob_id(&out), id);
            }
        }
        3 => {
            // A delta of the second half against the first: opens with its base, and with any
            // other base is an error, never other bytes.
            let (base, target) = rest.split_at(rest.len() / 2);
            let (base_id, id) = (key.blob_id(base), key.blob_id(target));
            if base_id == id {
                return;
            }
            let mut frame = Vec::new();
            cairn::delta::compress(base, target, level.max(1), &mut frame).unwrap();
            let mut sealed = Vec::new();
            cairn::blob::seal_delta_into(key, &id, &base_id, &frame, &mut sealed).unwrap();
            let mut delta = entry(id, sealed.len(), target.len() as u32);
            delta.blob_type = BlobType::Data;
            delta.delta = Some(cairn::format::pack::Delta {
                base: base_id,
                generation: 1,
            });
            let out = open_blob(key, &delta, &sealed, Some(base)).expect("a delta opens");
            assert_eq!(out, target);
            // Another base plaintext may still decode to the target (a frame of literals does
            // not look at its base); what it must never give is other bytes.
            if let Ok(other) = open_blob(key, &delta, &sealed, Some(target)) {
                assert_eq!(other, target);
            }
            // Named as against another base, it does not authenticate.
            delta.delta = Some(cairn::format::pack::Delta {
                base: id,
                generation: 1,
            });
            assert!(open_blob(key, &delta, &sealed, Some(base)).is_err());
        }
        _ => {
            let id = key.blob_id(rest);
            let sealed = seal_blob(key, blob_type, &id, rest, level).unwrap();
            let out = open_blob(key, &entry(id, sealed.len(), rest.len() as u32), &sealed, None)
                .expect("a sealed blob opens");
            assert_eq!(out, rest);
            // Any other raw length is refused.
            let wrong = entry(id, sealed.len(), rest.len() as u32 + 1);
            assert!(open_blob(key, &wrong, &sealed, None).is_err());
        }
    }
});
