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

/// The browsing commands walk as deep: with explicit stacks (ls, dump, locate) or on the
/// deep-stack worker pool (find, diff).
#[test]
fn very_deep_directories_browse() {
    let env = Env::new();
    let src = env.path("s");
    let mut deepest = src.clone();
    for _ in 0..DEPTH {
        deepest.push("d");
    }
    std::fs::create_dir_all(&deepest).unwrap();
    std::fs::write(deepest.join("leaf"), b"bottom").unwrap();
    env.init();
    let first = env.backup_json(&[&src], &[]);
    std::fs::write(deepest.join("leaf"), b"changed").unwrap();
    let second = env.backup_json(&[&src], &[]);

    let leaf = format!("latest:{}/leaf", deepest.display());
    assert_eq!(env.r_ok(&["cat", &leaf]).stdout, "changed");
    let listed = env.r_ok(&["ls", "-R", "latest"]);
    assert_eq!(
        listed.stdout.lines().count(),
        src.components().count() - 1 + DEPTH + 1
    );
    let found = env.r_json(&["find", "leaf"]);
    assert_eq!(found["matches"].as_array().unwrap().len(), 2);
    let diff = env.r_json(&[
        "diff",
        first["snapshot_id"].as_str().unwrap(),
        second["snapshot_id"].as_str().unwrap(),
    ]);
    assert_eq!(diff["stats"]["content_modified"], 1, "{diff}");
    let tar = env.r_ok(&["dump", "latest", "--format", "tar"]);
    assert!(tar.stdout_bytes.len() > DEPTH * 512);
}
