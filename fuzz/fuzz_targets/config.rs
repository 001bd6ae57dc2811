//! Config files (FORMAT.md §5) as stored: magic, version, size bound and authentication under a
//! fixed key holding epochs 0 and 1 (version 1 and 2 headers, §15; other epochs are refused by
//! name). Random bytes almost never authenticate; `sealed_objects` covers the JSON body.
#![no_main]

#[path = "common.rs"]
mod common;

use cairn::format::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = common::rotated_key();
    if let Ok(config) = Config::decode(key, data) {
        config.validate().expect("a decoded config is valid");
    }
});
