//! Model-based lifecycle target: the input steers random backups, forgets, prunes (grace 0), lost
//! packs, crashes and cold caches over an in-memory repository (`cairn::model`, shared with
//! `tests/model.rs`); after every step each kept snapshot must restore exactly as the model says or
//! be named damaged by check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = cairn::model::run(data, cairn::model::MAX_STEPS) {
        panic!("{e}");
    }
});
