//! Config, index and snapshot bodies past authentication: the input (after a selector byte) is
//! sealed under the fixed key as the body of that kind of object, then decoded through the
//! public `decode(key, bytes)` of the type, so the envelope and the body decoder both run.
//! Bit 3 of the selector seals under a rotated key (epoch 1): version 2 envelopes (§15).
//! Whatever decodes must re-encode and decode to an equal value.
#![no_main]

#[path = "common.rs"]
mod common;

use cairn::format::config::Config;
use cairn::format::envelope;
use cairn::format::index_file::IndexFile;
use cairn::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let key = if selector & 8 == 0 {
        common::key()
    } else {
        common::rotated_key()
    };
    match selector % 3 {
        0 => {
            let bytes = envelope::seal(key, &cairn::format::config::ENVELOPE, body).unwrap();
            if let Ok(config) = Config::decode(key, &bytes) {
                config.validate().expect("a decoded config is valid");
                let again = Config::decode(key, &config.encode(key).unwrap())
                    .expect("a decoded config re-encodes to a decodable one");
                assert_eq!(again, config);
            }
        }
        1 => {
            let bytes = envelope::seal(key, &cairn::format::index_file::ENVELOPE, body).unwrap();
            let decoded = IndexFile::decode(key, &bytes);
            // The sealed path and the body decoder agree.
            assert_eq!(decoded.is_ok(), IndexFile::decode_body(body, false).is_ok());
            if let Ok(file) = decoded {
                let _ = file.blob_count();
                let again = IndexFile::decode(key, &file.encode(key).unwrap())
                    .expect("a decoded index re-encodes to a decodable one");
                assert_eq!(again, file);
            }
        }
        _ => {
            let bytes = envelope::seal(key, &cairn::format::snapshot::ENVELOPE, body).unwrap();
            let decoded = Snapshot::decode(key, &bytes);
            assert_eq!(decoded.is_ok(), Snapshot::decode_body(body).is_ok());
            if let Ok(snap) = decoded {
                let _ = snap.tree_id();
                let _ = snap.datetime();
                let again = Snapshot::decode(key, &snap.encode(key).unwrap())
                    .expect("a decoded snapshot re-encodes to a decodable one");
                assert_eq!(again, snap);
            }
        }
    }
});
