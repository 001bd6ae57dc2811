//! The local files of the nightly plan: plan files (strict TOML, FORMAT-independent but read at
//! 2 a.m. by cron) and state files (FORMAT.md §14). Neither may panic, whatever the bytes.
#![no_main]

use cairn::plan::{Plan, State};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = State::decode(data) {
        // A decoded state encodes and decodes to itself.
        let again = serde_json::to_vec(&state).expect("a state encodes");
        assert_eq!(State::decode(&again).expect("re-decodes"), state);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(plan) = Plan::parse(text) {
            let (warn, crit) = plan.age_thresholds();
            assert!(warn <= crit, "a valid plan orders its age thresholds");
        }
    }
});
