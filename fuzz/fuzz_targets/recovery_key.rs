//! The printable recovery key (FORMAT.md §4, Recovery key): `RecoveryKey::parse` must never panic
//! on any text, and a key it accepts prints back to text that parses to the same keys.
#![no_main]

use cairn::format::paper::RecoveryKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = RecoveryKey::parse(text) {
        let again = RecoveryKey::parse(&key.groups_text()).expect("printed groups parse");
        assert!(again.key == key.key);
        assert_eq!(again.repo_prefix, key.repo_prefix);
    }
});
