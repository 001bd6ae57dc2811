//! Config files (FORMAT.md §5) as stored: magic, version, size bound and authentication under a
//! fixed key. Random bytes almost never authenticate; `sealed_objects` covers the JSON body.
#![no_main]

#[path = "common.rs"]
mod common;

use cairn::format::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = common::key();
    if let Ok(config) = Config::decode(key, data) {
        config.validate().expect("a decoded config is valid");
    }
});
