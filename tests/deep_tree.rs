//! Regression: a directory nested ~1,500 levels deep overflowed the default thread stack during
//! backup (the walk recurses per level). It must back up and restore exactly.

mod common;

use common::{restored_path, Env};

const DEPTH: usize = 1500;

#[test]
fn very_deep_directories_back_up_and_restore() {
    let env = Env::new();
    let src = env.path("s");
    let mut deepest = src.clone();
    for _ in 0..DEPTH {
        deepest.push("d");
    }
    std::fs::create_dir_all(&deepest).unwrap();
    std::fs::write(deepest.join("leaf"), b"bottom").unwrap();

    env.init();
    env.r_ok(&[std::ffi::OsStr::new("backup"), src.as_os_str()]);
    let target = env.path("t");
    env.restore("latest", &target);
    let restored = restored_path(&target, &deepest);
    assert_eq!(std::fs::read(restored.join("leaf")).unwrap(), b"bottom");
}
