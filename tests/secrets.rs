//! What must not leak or surprise: the password never reaches a child process (dump commands, drill
//! checks, hooks, password commands), an explicit password option wins over the environment, the
//! repository and the cache are private to their owner, malformed URLs are refused, a failed `dump`
//! never looks like a whole archive, and stray files in the repository block nothing.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;

/// The secrets a test puts in cairn's environment; none may show up in any output or record.
fn secret_envs(env: &Env) -> Vec<(&'static str, Option<String>)> {
    let file = env.path("pw.txt");
    fs::write(&file, format!("{}\n", env.password)).unwrap();
    vec![
        ("CAIRN_PASSWORD_FILE", Some(file.display().to_string())),
        ("CAIRN_PASSWORD_COMMAND", Some("pass show cairn".into())),
    ]
}

fn run_with(env: &Env, args: &[&str], extra: &[(&str, Option<String>)]) -> Output {
    let envs: Vec<(&str, Option<&str>)> = extra.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    env.run(args, None, &envs)
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PASSWORD, "CAIRN_PASSWORD", "pw.txt", "pass show cairn"] {
        assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
    }
}

#[test]
fn dump_commands_and_drill_checks_do_not_see_the_password() {
    let env = Env::new();
    env.init();
    let extra = secret_envs(&env);
    let repo = env.repo_str();
    let out = run_with(
        &env,
        &[
            "-r",
            repo,
            "--json",
            "backup",
            "--command",
            "env >&2; env; echo x",
            "--stdin-name",
            "e.txt",
        ],
        &extra,
    );
    out.assert_success();
    // The command's stderr goes to the terminal and into the snapshot summary; its stdout is the file.
    assert_no_secret("the dump's stderr", &out.stderr);
    assert_no_secret("the backup report", &out.stdout);
    let snapshots = run_with(&env, &["-r", repo, "--json", "snapshots"], &extra);
    snapshots.assert_success();
    assert!(
        snapshots.stdout.contains("PATH="),
        "{}",
        snapshots.describe()
    );
    assert_no_secret("the snapshot summary", &snapshots.stdout);
    let file = run_with(&env, &["-r", repo, "cat", "latest:/e.txt"], &extra);
    file.assert_success();
    assert!(file.stdout.contains("PATH="), "{}", file.describe());
    assert_no_secret("the dump's output", &file.stdout);

    let seen = env.path("check-env.txt");
    let check = format!("env > {}", seen.display());
    let drill = run_with(
        &env,
        &[
            "-r",
            repo,
            "drill",
            "--scratch",
            env.path("scratch").to_str().unwrap(),
            "--check",
            &check,
        ],
        &extra,
    );
    drill.assert_success();
    let text = fs::read_to_string(&seen).unwrap();
    assert!(text.contains("PATH="), "{text}");
    assert_no_secret("a drill check's environment", &text);
}

#[test]
fn hooks_and_the_password_command_do_not_see_the_password() {
    let env = Env::new();
    env.init();
    let extra = secret_envs(&env);
    let src = env.path("src");
    write_file(&src.join("a.txt"), b"alpha\n");
    let (hook_env, pw_env) = (env.path("hook-env.txt"), env.path("pw-env.txt"));
    let plan = env.path("plan.toml");
    fs::write(
        &plan,
        format!(
            r#"
[repository]
location = "{repo}"
password_command = ["sh", "-c", "env > {pw_env}; printf '%s\n' '{password}'"]

[backup]
paths = ["{src}"]

[hooks]
before = [["sh", "-c", "env > {hook_env}"]]
"#,
            repo = env.repo_str(),
            password = env.password,
            src = src.display(),
            pw_env = pw_env.display(),
            hook_env = hook_env.display(),
        ),
    )
    .unwrap();
    let mut extra = extra;
    // A wrong password in the environment: the plan's command wins, so the run still opens the repository.
    extra.push(("CAIRN_PASSWORD", Some("not the password".into())));
    let out = run_with(&env, &["run", "--plan", plan.to_str().unwrap()], &extra);
    out.assert_success();
    for (what, file) in [("a hook", &hook_env), ("the password command", &pw_env)] {
        let text = fs::read_to_string(file).unwrap();
        assert!(text.contains("PATH="), "{text}");
        assert!(
            !text.contains("not the password"),
            "{what} sees CAIRN_PASSWORD:\n{text}"
        );
        assert_no_secret(what, &text);
    }
}

#[test]
fn an_explicit_password_file_wins_over_the_environment_and_must_exist() {
    let env = Env::new();
    env.init();
    let repo = env.repo_str();
    // CAIRN_PASSWORD is right, the given file is missing: an error naming the file, not a silent fallback.
    let missing = env.path("nonexistent");
    let out = env.cairn(&[
        "-r",
        repo,
        "--password-file",
        missing.to_str().unwrap(),
        "snapshots",
    ]);
    out.assert_code(exit::USAGE);
    assert!(out.stderr.contains("nonexistent"), "{}", out.describe());
    // The file holds a wrong password and the environment the right one: the file is used.
    let wrong = env.path("wrong.txt");
    fs::write(&wrong, "not the password\n").unwrap();
    env.cairn(&[
        "-r",
        repo,
        "--password-file",
        wrong.to_str().unwrap(),
        "snapshots",
    ])
    .assert_code(exit::WRONG_PASSWORD);
    // CAIRN_PASSWORD_FILE is the environment too: CAIRN_PASSWORD is read first, and a missing
    // CAIRN_PASSWORD_FILE is an error when it is the source used.
    let missing = missing.to_str().unwrap();
    env.run(
        &["-r", repo, "snapshots"],
        None,
        &[("CAIRN_PASSWORD_FILE", Some(missing))],
    )
    .assert_success();
    let out = env.run(
        &["-r", repo, "snapshots"],
        None,
        &[
            ("CAIRN_PASSWORD_FILE", Some(missing)),
            ("CAIRN_PASSWORD", None),
        ],
    );
    out.assert_code(exit::USAGE);
    assert!(out.stderr.contains("nonexistent"), "{}", out.describe());
    let good = env.path("good.txt");
    fs::write(&good, format!("{}\n", env.password)).unwrap();
    env.run(
        &["-r", repo, "snapshots"],
        None,
        &[
            ("CAIRN_PASSWORD_FILE", Some(good.to_str().unwrap())),
            ("CAIRN_PASSWORD", None),
        ],
    )
    .assert_success();
}

fn modes_under(dir: &std::path::Path) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            out.push((
                path.display().to_string(),
                meta.permissions().mode() & 0o777,
                meta.is_dir(),
            ));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// Runs cairn through `sh` with umask 022, the usual one, whatever the test runner's is.
fn with_umask_022(env: &Env, args: &[&str]) -> Output {
    let cairn = env.command();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(cairn.get_program())
        .args(args);
    for (k, v) in cairn.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.current_dir(env.root());
    let out = cmd.output().unwrap();
    Output {
        cmd: format!("umask 022; cairn {}", args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stdout_bytes: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Under the usual umask the repository (key files included) and the cache were world-readable:
/// a local user could copy the key files and attack the password offline.
#[test]
fn the_repository_and_the_cache_are_private_to_their_owner() {
    let env = Env::new();
    let repo = env.repo_str();
    with_umask_022(&env, &["-r", repo, "init"]).assert_success();
    let src = env.path("src");
    write_file(&src.join("a.txt"), b"alpha\n");
    write_file(&src.join("big.bin"), &random_bytes(3, 1 << 20));
    with_umask_022(&env, &["-r", repo, "backup", src.to_str().unwrap()]).assert_success();
    // Browsing fills the tree cache too.
    with_umask_022(&env, &["-r", repo, "ls", "latest"]).assert_success();
    for root in [env.repo.clone(), env.cache_dir()] {
        let modes = modes_under(&root);
        assert!(
            root != env.repo || modes.iter().any(|(p, _, _)| p.contains("/keys/")),
            "{modes:?}"
        );
        for (path, mode, is_dir) in modes {
            let want = if is_dir { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{path} has mode {mode:o}");
        }
    }

    // Shared with a group through config's mode: new objects follow it.
    fs::set_permissions(env.repo.join("config"), fs::Permissions::from_mode(0o640)).unwrap();
    write_file(&src.join("b.txt"), &random_bytes(4, 100_000));
    with_umask_022(&env, &["-r", repo, "backup", src.to_str().unwrap()]).assert_success();
    let snapshots: Vec<_> = modes_under(&env.repo.join("snapshots"));
    assert_eq!(snapshots.len(), 2);
    let modes: Vec<u32> = snapshots.iter().map(|(_, m, _)| *m).collect();
    assert!(
        modes.contains(&0o640) && modes.contains(&0o600),
        "{snapshots:?}"
    );
}

/// A non-hex name under keys/, index/ or snapshots/ made snapshots, check, restore and backup exit 4.
#[test]
fn stray_files_in_the_repository_block_nothing_and_check_names_them() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a.txt"), b"alpha\n");
    env.backup_json(&[&src], &[]);
    let strays = [
        "keys/.key.swp",
        "index/README",
        "snapshots/.abc.rsync-tmp",
        "locks/notes.txt",
        "data/README",
    ];
    for stray in strays {
        fs::write(env.repo.join(stray), b"not an object").unwrap();
    }
    let shard = fs::read_dir(env.repo.join("data"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap();
    fs::write(shard.path().join("pack.part"), b"rsync temporary").unwrap();
    env.remove_cache();

    assert_eq!(env.snapshots_json().len(), 1);
    env.r_ok(&[
        "restore",
        "latest",
        "--target",
        env.path("restored").to_str().unwrap(),
    ]);
    env.backup_json(&[&src], &[]);
    let check = env.r(&["check"]);
    check.assert_success();
    for stray in strays.iter().filter(|s| !s.starts_with("data/README")) {
        assert!(
            check.stdout.contains(stray) || check.stderr.contains(stray),
            "check does not name {stray}\n{}",
            check.describe()
        );
    }
    assert!(
        check.stdout.contains("pack.part") || check.stderr.contains("pack.part"),
        "{}",
        check.describe()
    );
    // Nothing removed them.
    for stray in strays {
        assert!(env.repo.join(stray).exists(), "{stray}");
    }
}

/// `-r s3:/bucket/x init` silently created a local directory named `s3:`.
#[test]
fn a_malformed_url_is_refused_and_creates_nothing() {
    let env = Env::new();
    for location in ["s3:/bucket/x", "http://host/x", "webdav//host/x"] {
        let out = env.cairn(&["-r", location, "init"]);
        out.assert_code(exit::USAGE);
        assert!(
            out.stderr.contains(&format!("./{location}")),
            "{}",
            out.describe()
        );
    }
    for made in ["s3:", "http:", "webdav"] {
        assert!(!env.root().join(made).exists(), "{made} was created");
    }
}

/// A full cache disk said "No space left on device" without the path.
#[test]
fn a_full_cache_disk_is_named_in_the_error() {
    if !common::tree::is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let env = Env::new();
    env.init();
    let src = env.path("src");
    for i in 0..300 {
        write_file(&src.join(format!("f{i}")), &random_bytes(i, 3000));
    }
    env.remove_cache();
    let cache = env.cache_dir();
    let Some(_mount) = common::mounts::Mount::tmpfs(&cache, "64k") else {
        panic!("cannot mount a tmpfs at {}", cache.display());
    };
    let out = env.r(&["backup", src.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains(&format!("{}/", cache.display())),
        "the error does not name the cache file\n{}",
        out.describe()
    );
}
