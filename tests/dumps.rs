//! Dump commands (`backup --command`, `--command-argv`): their output is stored as it streams, and a
//! command that fails, writes too little or runs past its timeout leaves no snapshot, exit code 5, an
//! error naming it with its stderr tail, no process behind, and a repository that passes `check`.
//! The real PostgreSQL round trip is in `postgres.rs`.

use crate::common;

use std::fs;

use common::*;

fn backup(env: &Env, args: &[&str]) -> Output {
    let mut full = vec!["--json", "backup"];
    full.extend_from_slice(args);
    env.r(&full)
}

fn cat(env: &Env, spec: &str) -> Vec<u8> {
    let out = env.r(&["cat", spec]);
    out.assert_success();
    out.stdout_bytes
}

/// Runs a backup that must fail with exit code 5, and checks that it wrote no snapshot and left a
/// repository `check` accepts. Returns the error text.
fn failing_backup(env: &Env, args: &[&str]) -> String {
    let before = env.snapshots_json().len();
    let out = backup(env, args);
    out.assert_code(exit::COMMAND_FAILED);
    assert!(
        out.stderr.contains("no snapshot was written"),
        "the error must say that nothing was saved\n{}",
        out.describe()
    );
    // With --json, stdout holds only the error object: never a result a script could take.
    assert_eq!(
        out.json()["error"]["exit_code"],
        exit::COMMAND_FAILED,
        "only the error object on stdout\n{}",
        out.describe()
    );
    assert_eq!(env.snapshots_json().len(), before, "{}", out.describe());
    env.r_ok(&["check"]);
    out.stderr
}

#[test]
fn dumps_and_a_path_in_one_snapshot_restore_byte_exact() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a.txt"), b"alpha\n");
    write_file(&src.join("sub/b.bin"), &random_bytes(1, 70_000));
    let big = env.path("big.bin");
    let big_bytes = random_bytes(2, 3 << 20);
    fs::write(&big, &big_bytes).unwrap();
    let script = format!(
        "echo 'dumping big' >&2; cat '{}'; echo 'done, exit 0' >&2",
        big.display()
    );
    let out = backup(
        &env,
        &[
            src.to_str().unwrap(),
            "--command",
            &script,
            "--stdin-name",
            "dumps/big.dump",
            "--command-argv",
            r#"["printf", "%s\n", "two words", "ünïcode"]"#,
            "--stdin-name",
            "small.txt",
        ],
    );
    out.assert_success();
    // The command's stderr is passed on as it comes.
    assert!(out.stderr.contains("dumping big"), "{}", out.describe());
    let j = out.json();
    check_backup_json(&j);
    let s = &j["summary"];
    let dumps = s["dumps"].as_array().expect("summary.dumps");
    assert_eq!(dumps.len(), 2, "{j}");
    assert_eq!(dumps[0]["path"], "/dumps/big.dump");
    assert_eq!(
        dumps[0]["command"],
        serde_json::json!(["sh", "-c", script]),
        "{j}"
    );
    assert_eq!(dumps[0]["exit_code"], 0);
    assert_eq!(dumps[0]["bytes"], big_bytes.len() as u64);
    assert_eq!(dumps[0]["stderr"], "dumping big\ndone, exit 0\n");
    assert!(dumps[0]["duration_secs"].is_number());
    assert_eq!(dumps[1]["path"], "/small.txt");
    assert_eq!(dumps[1]["command"][0], "printf");
    let small = "two words\nünïcode\n".as_bytes();
    assert_eq!(dumps[1]["bytes"], small.len() as u64);
    assert_eq!(dumps[1]["stderr"], "");
    let expected_total = 6 + 70_000 + big_bytes.len() + small.len();
    assert_eq!(s["total_bytes"], expected_total as u64, "{j}");
    assert_eq!(s["files_new"], 4, "{j}");

    assert!(cat(&env, "latest:/dumps/big.dump") == big_bytes);
    assert_eq!(cat(&env, "latest:/small.txt"), small);
    let dst = env.path("dst");
    env.restore("latest", &dst);
    compare::assert_trees_equal(&src, &restored_path(&dst, &src));
    assert!(fs::read(dst.join("dumps/big.dump")).unwrap() == big_bytes);

    // `snapshots --json` shows the dumps and the total; `paths` names every source.
    let snaps = env.snapshots_json();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["summary"]["dumps"], s["dumps"]);
    assert_eq!(snaps[0]["summary"]["total_bytes"], expected_total as u64);
    let mut paths = vec![
        "/dumps/big.dump".to_string(),
        "/small.txt".to_string(),
        src.display().to_string(),
    ];
    paths.sort();
    assert_eq!(snaps[0]["paths"], serde_json::json!(paths));

    // The text output has one line per dump.
    let out = env.r(&["backup", "--command", "printf x", "--stdin-name", "x"]);
    out.assert_success();
    assert!(
        out.stdout.contains("dump /x: `printf x` exited 0"),
        "{}",
        out.describe()
    );
    env.r_ok(&["check", "--read-data"]);
}

#[test]
fn a_failing_or_empty_dump_never_becomes_a_snapshot() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a.txt"), b"alpha\n");
    backup(&env, &[src.to_str().unwrap()]).assert_success();

    let err = failing_backup(&env, &["--command", "false", "--stdin-name", "f.dump"]);
    assert!(err.contains("`false`") && err.contains("/f.dump"), "{err}");
    assert!(err.contains("exited with status 1"), "{err}");

    let err = failing_backup(
        &env,
        &[
            src.to_str().unwrap(),
            "--command",
            "echo partial output; echo oops, wrong database >&2; exit 3",
            "--stdin-name",
            "app.dump",
        ],
    );
    assert!(
        err.contains("exited with status 3 after writing 15 bytes"),
        "{err}"
    );
    assert!(err.contains("oops, wrong database"), "{err}");
    assert!(err.contains("Run the command by hand"), "{err}");

    // Several MiB stored before the failure: their packs are unreferenced, and check accepts them.
    failing_backup(
        &env,
        &[
            "--command",
            "head -c 6000000 /dev/urandom; exit 2",
            "--stdin-name",
            "big.dump",
        ],
    );

    let err = failing_backup(&env, &["--command", "true", "--stdin-name", "empty.dump"]);
    assert!(
        err.contains("wrote only 0 bytes (at least 1 required)"),
        "{err}"
    );
    let err = failing_backup(
        &env,
        &[
            "--command-argv",
            r#"["printf","abc"]"#,
            "--stdin-name",
            "small.dump",
            "--min-bytes",
            "1K",
        ],
    );
    assert!(err.contains("wrote only 3 bytes (at least 1024"), "{err}");

    let err = failing_backup(
        &env,
        &[
            "--command-argv",
            r#"["cairn-no-such-program"]"#,
            "--stdin-name",
            "x.dump",
        ],
    );
    assert!(err.contains("could not be started"), "{err}");

    let err = failing_backup(
        &env,
        &["--command", "kill -9 $$", "--stdin-name", "killed.dump"],
    );
    assert!(err.contains("killed by signal SIGKILL"), "{err}");

    // The second command fails after the first succeeded: still no snapshot.
    failing_backup(
        &env,
        &[
            "--command",
            "echo fine",
            "--stdin-name",
            "a.dump",
            "--command",
            "exit 1",
            "--stdin-name",
            "b.dump",
        ],
    );

    // --min-bytes 0 accepts an empty dump.
    let out = backup(
        &env,
        &[
            "--command",
            "true",
            "--stdin-name",
            "e.dump",
            "--min-bytes",
            "0",
        ],
    );
    out.assert_success();
    assert_eq!(out.json()["summary"]["dumps"][0]["bytes"], 0);
    assert_eq!(env.snapshots_json().len(), 2);
}

/// The state of a process (`R`, `S`, `Z`...), or `None` when it is gone.
fn process_state(pid: &str) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn a_timeout_ends_the_whole_process_group_and_the_backup() {
    let env = Env::new();
    env.init();
    let pid_file = env.path("sleeper.pid");
    // A background grandchild in the command's process group, holding stdout open.
    let script = format!(
        "echo started >&2; sleep 60 & echo $! > '{}'; printf some-output; wait",
        pid_file.display()
    );
    let err = failing_backup(
        &env,
        &[
            "--command",
            &script,
            "--stdin-name",
            "slow.dump",
            "--command-timeout",
            "1s",
        ],
    );
    assert!(err.contains("was stopped after its timeout of 1s"), "{err}");
    assert!(err.contains("started"), "{err}");
    let pid = fs::read_to_string(&pid_file).unwrap();
    let pid = pid.trim();
    // cairn returned only after killing the group; a zombie is gone as far as work goes (whether
    // PID 1 reaps it is not cairn's business).
    let state = process_state(pid);
    assert!(
        matches!(state, None | Some('Z') | Some('X')),
        "the dump's background process {pid} outlived cairn (state {state:?})"
    );
}

#[test]
fn stdin_and_commands_pair_with_their_names_in_order() {
    let env = Env::new();
    env.init();
    let out = env.r_stdin(
        &[
            "--json",
            "backup",
            "--command",
            "printf first",
            "--stdin-name",
            "one.txt",
            "--stdin",
            "--stdin-name",
            "two.txt",
            "--command-argv",
            r#"["printf","third"]"#,
            "--stdin-name",
            "three/3.txt",
        ],
        b"from stdin",
    );
    out.assert_success();
    assert_eq!(cat(&env, "latest:/one.txt"), b"first");
    assert_eq!(cat(&env, "latest:/two.txt"), b"from stdin");
    assert_eq!(cat(&env, "latest:/three/3.txt"), b"third");
    // Standard input is not a dump: only the commands are listed.
    let dumps = out.json()["summary"]["dumps"].clone();
    assert_eq!(dumps.as_array().map(Vec::len), Some(2), "{dumps}");
}

#[test]
fn dump_usage_errors_exit_2_before_anything_runs() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a.txt"), b"alpha\n");
    let marker = env.path("ran");
    let touch = format!("touch '{}'; echo x", marker.display());
    let src_name = src.to_str().unwrap().trim_start_matches('/').to_string();
    let inside = format!("{src_name}/inside.dump");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--command", &touch], "has no --stdin-name"),
        (
            vec![
                "--command",
                &touch,
                "--stdin-name",
                "a",
                "--stdin-name",
                "b",
            ],
            "names nothing",
        ),
        (
            vec!["--command-argv", "pg_dump app", "--stdin-name", "a"],
            "not a JSON array",
        ),
        (
            vec!["--command-argv", "[]", "--stdin-name", "a"],
            "not a JSON array",
        ),
        (
            vec!["--command", &touch, "--stdin-name", "a/../b"],
            "not a valid path",
        ),
        (
            vec![
                src.to_str().unwrap(),
                "--command",
                &touch,
                "--stdin-name",
                &inside,
            ],
            "collides",
        ),
        (
            vec![
                "--command",
                &touch,
                "--stdin-name",
                "x",
                "--command",
                &touch,
                "--stdin-name",
                "x",
            ],
            "collides",
        ),
        (
            vec![
                "--command",
                &touch,
                "--stdin-name",
                "a",
                "--command-timeout",
                "5m",
            ],
            "min for minutes",
        ),
        (
            vec![
                "--command",
                &touch,
                "--stdin-name",
                "a",
                "--min-bytes",
                "lots",
            ],
            "expected a size",
        ),
    ];
    for (args, expected) in cases {
        let out = backup(&env, &args);
        out.assert_code(exit::USAGE);
        assert!(
            out.stderr.contains(expected),
            "expected {expected:?} in the error\n{}",
            out.describe()
        );
    }
    assert!(!marker.exists(), "a command ran despite a usage error");
    assert!(env.snapshots_json().is_empty());
}

#[test]
fn help_documents_dump_commands_and_exit_code_5() {
    let env = Env::new();
    let out = env.cairn(&["backup", "--help"]);
    out.assert_success();
    for needle in [
        "--command-argv",
        "--command-timeout",
        "--min-bytes",
        "Exit code 5",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle} missing\n{}",
            out.stdout
        );
    }
    let out = env.cairn(&["--help"]);
    assert!(
        out.stdout.contains("5 a dump command failed"),
        "{}",
        out.stdout
    );
}

/// A dump command runs in a process group of its own, so a Ctrl-C on the terminal reaches only
/// cairn: cairn must end the dump itself when a signal ends it, even one that writes nothing.
#[test]
fn a_signal_that_ends_cairn_ends_the_dump_too() {
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let env = Env::new();
        env.init();
        let pid_file = env.path("quiet.pid");
        // Writes nothing for a long time, like a pg_dump waiting for a lock.
        let script = format!("echo $$ > '{}'; sleep 300", pid_file.display());
        let mut cmd = env.command();
        cmd.args([
            "-r",
            env.repo_str(),
            "backup",
            "--command",
            &script,
            "--stdin-name",
            "quiet.dump",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        let mut cairn = cmd.spawn().unwrap();
        let started = std::time::Instant::now();
        while !pid_file.exists() || fs::read_to_string(&pid_file).unwrap().trim().is_empty() {
            assert!(started.elapsed().as_secs() < 30, "the dump never started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let shell = fs::read_to_string(&pid_file).unwrap().trim().to_string();
        let cairn_pid = nix::unistd::Pid::from_raw(cairn.id() as i32);
        nix::sys::signal::kill(cairn_pid, signal).unwrap();
        let status = cairn.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(signal as i32),
            "{signal}: cairn ended by {status}"
        );
        // The shell and its sleep are gone (or zombies nobody runs).
        let state = process_state(&shell);
        assert!(
            matches!(state, None | Some('Z') | Some('X')),
            "{signal}: the dump {shell} outlived cairn (state {state:?})"
        );
        let group_left: Vec<String> = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or("");
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.get(2) == Some(&shell.as_str()) && fields.first() != Some(&"Z")
            })
            .collect();
        assert!(
            group_left.is_empty(),
            "{signal}: left in the dump's group: {group_left:?}"
        );
        assert!(env.snapshots_json().is_empty());
    }
}
