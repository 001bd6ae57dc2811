//! `SNAP:PATH` arguments and the `\xNN` escaping of names (user input, not repository bytes, but
//! parsed byte by byte). Properties: parsing never panics; any bytes escape to text that reads
//! back to the same bytes; a parsed path has no empty, `.` or `..` component.
#![no_main]

use cairn::browse::escape::{escape, unescape};
use cairn::browse::SnapPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = escape(data);
    assert_eq!(unescape(&text).expect("escaped text reads back"), data);
    if let Ok(arg) = std::str::from_utf8(data) {
        if let Ok(parsed) = SnapPath::parse(arg) {
            assert!(!parsed.snapshot.contains(':'));
            for c in &parsed.components {
                assert!(!c.is_empty() && c != b"." && c != b".." && !c.contains(&b'/'));
            }
        }
    }
});
