//! Two backups running at once into one repository, sharing one cache directory, both succeed
//! and every snapshot restores exactly.

use std::path::Path;
use std::process::{Command, Stdio};

fn cairn(repo: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("-r")
        .arg(repo)
        .env("CAIRN_PASSWORD", "together")
        .env("CAIRN_CACHE_DIR", cache)
        .env_remove("CAIRN_REPO")
        .env_remove("CAIRN_PASSWORD_FILE")
        .stdin(Stdio::null());
    cmd
}

fn assert_ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_noise(path: &Path, len: usize, mut x: u64) {
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

#[test]
fn concurrent_backups_share_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache) = (dir.path().join("repo"), dir.path().join("cache"));
    let sources: Vec<_> = (0..2).map(|i| dir.path().join(format!("src{i}"))).collect();
    for (i, src) in sources.iter().enumerate() {
        std::fs::create_dir_all(src).unwrap();
        // One file shared by both trees (dedup across concurrent writers), one of their own.
        write_noise(&src.join("shared.bin"), 3_000_000, 77);
        write_noise(&src.join("own.bin"), 3_000_000, 1000 + i as u64);
    }
    assert_ok(cairn(&repo, &cache).arg("init").output().unwrap(), "init");

    let children: Vec<_> = sources
        .iter()
        .map(|src| {
            cairn(&repo, &cache)
                .arg("backup")
                .arg(src)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        assert_ok(child.wait_with_output().unwrap(), "concurrent backup");
    }

    assert_ok(
        cairn(&repo, &cache)
            .args(["check", "--read-data"])
            .output()
            .unwrap(),
        "check",
    );
    let list = assert_ok(
        cairn(&repo, &cache)
            .args(["snapshots", "--json"])
            .output()
            .unwrap(),
        "snapshots",
    );
    let snapshots: serde_json::Value = serde_json::from_str(&list).unwrap();
    let snapshots = snapshots.as_array().unwrap();
    assert_eq!(snapshots.len(), 2);
    for snap in snapshots {
        let id = snap["id"].as_str().unwrap();
        let target = dir.path().join(format!("restore-{}", &id[..8]));
        assert_ok(
            cairn(&repo, &cache)
                .args(["restore", id, "--target"])
                .arg(&target)
                .output()
                .unwrap(),
            "restore",
        );
        let src = Path::new(snap["paths"][0].as_str().unwrap());
        let restored = target.join(src.strip_prefix("/").unwrap());
        for name in ["shared.bin", "own.bin"] {
            assert_eq!(
                std::fs::read(restored.join(name)).unwrap(),
                std::fs::read(src.join(name)).unwrap()
            );
        }
    }
}
