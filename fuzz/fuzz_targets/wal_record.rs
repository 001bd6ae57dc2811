//! WAL records (FORMAT.md §16): decrypted JSON bodies through the body decoder, and the same bytes
//! sealed as a record through `decode(key, bytes)`. Whatever decodes names only valid WAL file
//! names (archived and dropped), ids and sizes, and re-encodes to an equal record; the catalog's
//! name arithmetic never panics on what a record holds.
#![no_main]

#[path = "common.rs"]
mod common;

use cairn::format::envelope;
use cairn::format::wal::{WalName, WalRecord, ENVELOPE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = common::key();
    let bytes = envelope::seal(key, &ENVELOPE, data).unwrap();
    let decoded = WalRecord::decode(key, &bytes);
    assert_eq!(decoded.is_ok(), WalRecord::decode_body(data).is_ok());
    let Ok(record) = decoded else {
        return;
    };
    let _ = record.datetime();
    for file in &record.files {
        let name = WalName::parse(&file.name).expect("a decoded record names WAL files");
        assert_eq!(file.content().len(), file.chunks.len());
        let size = file.size.max(1).next_power_of_two();
        if let Some(n) = name.segment_number(size) {
            assert_eq!(WalName::segment(name.timeline(), n, size).segment_number(size), Some(n));
        }
    }
    for dropped in &record.dropped {
        WalName::parse(&dropped.name).expect("a decoded record names dropped WAL files");
    }
    let again = WalRecord::decode(key, &record.encode(key).unwrap())
        .expect("a decoded record re-encodes to a decodable one");
    assert_eq!(again, record);
});
