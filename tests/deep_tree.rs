//! Regression: a directory nested ~1,500 levels deep overflowed the default thread stack during
//! backup (the walk recurses per level). It must back up and restore exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const DEPTH: usize = 1500;

fn cairn(repo: &Path, cache: &Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("CAIRN_PASSWORD", "deep")
        .env("CAIRN_CACHE_DIR", cache)
        .env_remove("CAIRN_REPO")
        .env_remove("CAIRN_PASSWORD_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn very_deep_directories_back_up_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache) = (dir.path().join("r"), dir.path().join("c"));
    let src = dir.path().join("s");
    let mut deepest = src.clone();
    for _ in 0..DEPTH {
        deepest.push("d");
    }
    std::fs::create_dir_all(&deepest).unwrap();
    std::fs::write(deepest.join("leaf"), b"bottom").unwrap();

    assert_ok(&cairn(&repo, &cache, &["init".as_ref()]));
    assert_ok(&cairn(&repo, &cache, &["backup".as_ref(), src.as_os_str()]));
    let target = dir.path().join("t");
    assert_ok(&cairn(
        &repo,
        &cache,
        &[
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    ));
    let restored: PathBuf = target.join(deepest.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(restored.join("leaf")).unwrap(), b"bottom");
}
