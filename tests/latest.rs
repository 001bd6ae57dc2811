//! `latest` in `SNAP:PATH` is the newest snapshot that holds PATH: a repository holds trees and
//! dumps backed up into snapshots of their own, and the README's quick start reads each back.

use crate::common;

use common::{write_file, Env};

#[test]
fn latest_with_a_path_is_the_newest_snapshot_that_holds_it() {
    let env = Env::new();
    env.init();
    let etc = env.path("etc");
    write_file(&etc.join("ssh/sshd_config"), b"Port 22\n");
    env.backup_json(&[&etc], &[]);
    env.r_stdin(
        &["backup", "--stdin", "--stdin-name", "app.sql"],
        b"CREATE TABLE t;\n",
    )
    .assert_success();
    env.r_ok(&[
        "backup",
        "--command",
        "printf dump",
        "--stdin-name",
        "app.dump",
    ]);

    let ssh = format!("latest:{}/ssh", etc.display());
    let ls = env.r_ok(&["ls", &ssh]);
    assert!(ls.stdout.contains("sshd_config"), "{}", ls.describe());
    let cat = env.r_ok(&["cat", "latest:/app.sql"]);
    assert_eq!(cat.stdout, "CREATE TABLE t;\n");
    let cat = env.r_ok(&["cat", "latest:/app.dump"]);
    assert_eq!(cat.stdout, "dump");

    // A path no snapshot holds: the error names what the newest snapshots back up.
    let out = env.r(&["ls", "latest:/nowhere"]);
    out.assert_code(common::exit::USAGE);
    assert!(
        out.stderr.contains("no snapshot holds /nowhere") && out.stderr.contains("/app.dump"),
        "{}",
        out.describe()
    );

    // A bare `latest` is the newest snapshot of all, and says which others it passed over.
    let target = env.path("restored");
    let out = env.r(&["restore", "latest", "--target", target.to_str().unwrap()]);
    out.assert_success();
    assert!(
        out.stderr.contains("note: latest is") && out.stderr.contains(&etc.display().to_string()),
        "{}",
        out.describe()
    );
    assert!(target.join("app.dump").is_file());

    // `--path` chooses the group: its newest snapshot holds the tree.
    let target = env.path("restored-etc");
    env.r_ok(&[
        "restore",
        "latest",
        "--path",
        etc.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(common::restored_path(&target, &etc)
        .join("ssh/sshd_config")
        .is_file());
}

#[test]
fn the_snapshots_table_shows_size_and_added_bytes_not_bytes_read() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a.bin"), &common::random_bytes(1, 300_000));
    env.backup_json(&[&src], &[]);
    env.backup_json(&[&src], &[]);
    let out = env.r_ok(&["snapshots"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].contains("size") && lines[0].contains("added"),
        "{}",
        out.stdout
    );
    // The unchanged second snapshot read nothing, but holds the whole tree.
    assert!(lines[2].contains("293.0 KiB"), "{}", out.stdout);
}
