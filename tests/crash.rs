//! A backup process killed with SIGKILL at arbitrary moments leaves a repository that passes
//! `cairn check --read-data`, and the next backup and restore work.

mod common;

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Duration;

use common::{random_bytes, write_file, Env};

#[test]
fn killed_backups_leave_a_consistent_repository() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..24 {
        write_file(
            &src.join(format!("d{}/f{i}.bin", i % 4)),
            &random_bytes(i, 2_000_000),
        );
    }
    env.init();

    for delay_ms in [5u64, 40, 120, 300, 700] {
        let mut child = env
            .command()
            .arg("-r")
            .arg(&env.repo)
            .arg("backup")
            .arg(&src)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        env.r_ok(&["check", "--read-data"]);
    }

    env.r_ok(&[OsStr::new("backup"), src.as_os_str()]);
    // Every snapshot that exists, complete or from a backup that finished before the kill, restores exactly.
    for snap in env.snapshots_json() {
        let id = snap["id"].as_str().unwrap();
        env.assert_restores_exactly(id, &src, &format!("restore-{}", &id[..8]));
    }
}
