//! Objects written by a future cairn (an unknown format version) are refused with a message that
//! names the object and the version, never misread.

use std::path::Path;
use std::process::{Command, Stdio};

fn cairn(repo: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("CAIRN_PASSWORD", "versions")
        .env("CAIRN_CACHE_DIR", cache)
        .env_remove("CAIRN_REPO")
        .env_remove("CAIRN_PASSWORD_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Rewrites the version field (bytes 8..10) of the only object in `dir` and renames it to its new hash.
fn bump_version(dir: &Path) -> String {
    let entry = std::fs::read_dir(dir).unwrap().next().unwrap().unwrap();
    let mut bytes = std::fs::read(entry.path()).unwrap();
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    std::fs::remove_file(entry.path()).unwrap();
    let name = blake3::hash(&bytes).to_hex().to_string();
    std::fs::write(dir.join(&name), &bytes).unwrap();
    name
}

#[test]
fn unknown_versions_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache) = (dir.path().join("r"), dir.path().join("c"));
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    assert!(cairn(&repo, &cache, &["init"]).status.success());
    assert!(cairn(&repo, &cache, &["backup", src.to_str().unwrap()])
        .status
        .success());

    let name = bump_version(&repo.join("snapshots"));
    let out = cairn(&repo, &cache, &["snapshots"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&name) && stderr.contains("version 2") && stderr.contains("upgrade cairn"),
        "{stderr}"
    );

    bump_version(&repo.join("index"));
    std::fs::remove_dir_all(&cache).unwrap();
    let out = cairn(&repo, &cache, &["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("index file") && stderr.contains("version 2"),
        "{stderr}"
    );
}
