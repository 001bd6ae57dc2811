//! Failure paths: wrong password, missing repository, unreadable sources,
//! damaged repository data, non-empty restore targets, default repository,
//! usage errors. No command may panic (checked for every run by the harness).

use crate::common;

use common::compare::assert_trees_equal;
use common::mounts::Mount;
use common::*;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

fn os(args: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn restore_args(snap: &str, target: &Path) -> Vec<OsString> {
    os(&[&"restore", &snap, &"--target", &target])
}

/// A small tree with one multi-chunk random file.
fn small_tree(env: &Env) -> PathBuf {
    let src = env.path("src");
    write_file(&src.join("victim.bin"), &random_bytes(1, 3 * 1024 * 1024));
    src
}

fn is_empty_or_missing(p: &Path) -> bool {
    !p.exists() || fs::read_dir(p).unwrap().next().is_none()
}

fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| haystack.contains(n))
}

// ---------------------------------------------------------------- password

#[test]
fn wrong_password_exit_12_and_repository_untouched() {
    let (env, src) = backed_up_small_tree();
    let before = tree_listing(&env.repo);
    let target = env.path("restore-target");
    let wrong = [("CAIRN_PASSWORD", Some("not the password"))];

    let runs: Vec<Vec<OsString>> = vec![
        os(&[&"-r", &env.repo, &"snapshots"]),
        os(&[&"-r", &env.repo, &"--json", &"snapshots"]),
        os(&[&"-r", &env.repo, &"backup", &src]),
        {
            let mut v = os(&[&"-r", &env.repo]);
            v.extend(restore_args("latest", &target));
            v
        },
    ];
    for args in runs {
        let out = env.run(&args, None, &wrong);
        out.assert_code(exit::WRONG_PASSWORD);
        assert!(
            out.stderr_lower().contains("password"),
            "stderr should say the password is wrong\n{}",
            out.describe()
        );
        let after = tree_listing(&env.repo);
        let d = listing_diff(&before, &after);
        assert!(
            d.is_empty(),
            "wrong-password run modified the repository: {d:?}\n{}",
            out.describe()
        );
    }
    assert!(
        is_empty_or_missing(&target),
        "wrong password must not restore anything"
    );

    // The right password still works afterwards.
    assert_eq!(env.snapshots_json().len(), 1);
}

#[test]
fn password_file_option_and_env() {
    let env = Env::new();
    env.init();
    let good = env.path("pw-good");
    fs::write(&good, format!("{PASSWORD}\n")).unwrap();
    let bad = env.path("pw-bad");
    fs::write(&bad, "wrong password\n").unwrap();
    let no_env_pw = [("CAIRN_PASSWORD", None)];

    // --password-file with the right password (trailing newline stripped).
    let out = env.run(
        &os(&[&"-r", &env.repo, &"--password-file", &good, &"snapshots"]),
        None,
        &no_env_pw,
    );
    out.assert_success();
    // ... and via CAIRN_PASSWORD_FILE.
    let out = env.run(
        &os(&[&"-r", &env.repo, &"snapshots"]),
        None,
        &[
            ("CAIRN_PASSWORD", None),
            ("CAIRN_PASSWORD_FILE", Some(good.to_str().unwrap())),
        ],
    );
    out.assert_success();
    // Wrong password file -> 12.
    let out = env.run(
        &os(&[&"-r", &env.repo, &"--password-file", &bad, &"snapshots"]),
        None,
        &no_env_pw,
    );
    out.assert_code(exit::WRONG_PASSWORD);
    assert!(
        out.stderr_lower().contains("password"),
        "{}",
        out.describe()
    );
}

// ------------------------------------------------------------ no repository

#[test]
fn missing_or_foreign_repository_exit_10() {
    let env = Env::new();
    let src = small_tree(&env);
    let nope = env.path("does-not-exist");
    let empty = env.path("empty-dir");
    fs::create_dir(&empty).unwrap();
    let foreign = env.path("foreign");
    write_file(&foreign.join("notes.txt"), b"just some files");
    write_file(&foreign.join("sub/other"), b"more files");
    let foreign_before = tree_listing(&foreign);

    for repo in [&nope, &empty, &foreign] {
        let mut cmds: Vec<Vec<OsString>> = vec![
            os(&[&"-r", repo, &"snapshots"]),
            os(&[&"-r", repo, &"backup", &src]),
        ];
        let mut r = os(&[&"-r", repo]);
        r.extend(restore_args("latest", &env.path("t")));
        cmds.push(r);
        for args in cmds {
            let out = env.cairn(&args);
            out.assert_code(exit::NO_REPO);
            assert!(
                out.stderr.contains("cairn init"),
                "message should suggest `cairn init`\n{}",
                out.describe()
            );
        }
    }
    assert!(
        !nope.exists(),
        "commands other than init must not create the repository"
    );
    assert!(is_empty_or_missing(&empty), "empty dir must stay empty");
    assert!(listing_diff(&foreign_before, &tree_listing(&foreign)).is_empty());
    assert!(is_empty_or_missing(&env.path("t")));

    // CAIRN_REPO pointing nowhere behaves the same.
    let out = env.run(
        &["snapshots"],
        None,
        &[("CAIRN_REPO", Some(nope.to_str().unwrap()))],
    );
    out.assert_code(exit::NO_REPO);
}

#[test]
fn repository_from_env_var() {
    let env = Env::new();
    let src = small_tree(&env);
    env.init();
    let envs = [("CAIRN_REPO", Some(env.repo_str()))];
    env.run(&os(&[&"backup", &src]), None, &envs)
        .assert_success();
    let out = env.run(&["--json", "snapshots"], None, &envs);
    out.assert_success();
    assert_eq!(
        out.json().as_array().map(|a| a.len()),
        Some(1),
        "{}",
        out.describe()
    );
    // Nothing was created in the default location.
    assert!(!env.xdg_data_home().join("cairn").exists());
}

#[test]
fn init_twice_is_refused_and_changes_nothing() {
    let env = Env::new();
    env.init();
    let before = tree_listing(&env.repo);
    let out = env.r(&["init"]);
    assert_ne!(
        out.code,
        0,
        "init on an existing repository must fail\n{}",
        out.describe()
    );
    assert!(listing_diff(&before, &tree_listing(&env.repo)).is_empty());
    // Still usable with the original password.
    assert_eq!(env.snapshots_json().len(), 0);
}

// ------------------------------------------------------- unreadable sources

/// Bind-mounts a file whose read fails even for root at `path`; unmounted on drop.
fn unreadable_file_at(path: &Path) -> Option<Mount> {
    let victim = Path::new("/proc/sys/vm/drop_caches");
    // Only useful if reading really fails for us.
    if !victim.exists() || fs::read(victim).is_ok() {
        return None;
    }
    fs::write(path, b"").unwrap();
    let mount = Mount::bind(victim, path);
    if mount.is_some() && fs::read(path).is_err() {
        return mount;
    }
    drop(mount);
    let _ = fs::remove_file(path);
    None
}

#[test]
fn unreadable_sources_still_save_snapshot_exit_3() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("good.txt"), b"good data\n");
    write_file(&src.join("dir/also-good.bin"), &random_bytes(2, 100_000));
    let mount = unreadable_file_at(&src.join("dir/unreadable"));
    if mount.is_none() {
        println!("NOTE: could not bind-mount an unreadable file; only a missing source is tested");
    }
    let missing = env.path("no-such-source");
    env.init();

    let out = env.r(&os(&[&"--json", &"backup", &src, &missing]));
    out.assert_code(exit::PARTIAL);
    assert!(
        out.stderr.contains("no-such-source"),
        "stderr should name the missing source\n{}",
        out.describe()
    );
    if mount.is_some() {
        assert!(
            out.stderr.contains("unreadable"),
            "stderr should name the unreadable file\n{}",
            out.describe()
        );
    }
    let j = out.json();
    check_backup_json(&j);
    let errors = j["summary"]["errors"].as_array().unwrap();
    let err_paths: Vec<String> = errors
        .iter()
        .map(|e| {
            assert!(
                e["message"].is_string(),
                "error entries need a message: {e}"
            );
            e["path"]
                .as_str()
                .expect("error entries need a path")
                .to_string()
        })
        .collect();
    // Regression: a missing source was once listed twice (at the start and again during the walk).
    assert_eq!(
        err_paths
            .iter()
            .filter(|p| p.contains("no-such-source"))
            .count(),
        1,
        "summary.errors should list the missing source exactly once: {j}"
    );
    if mount.is_some() {
        assert!(
            err_paths.iter().any(|p| p.ends_with("dir/unreadable")),
            "summary.errors should list the unreadable file: {j}"
        );
    }

    // The snapshot exists, records the errors, and restores the good parts.
    let snaps = env.snapshots_json();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"].as_str(), j["snapshot_id"].as_str());
    assert!(
        !snaps[0]["summary"]["errors"]
            .as_array()
            .map(|a| a.is_empty())
            .unwrap_or(true),
        "the stored snapshot summary should keep the errors: {}",
        snaps[0]
    );
    drop(mount);
    let dst = env.path("dst");
    env.restore("latest", &dst);
    let r = restored_path(&dst, &src);
    assert_eq!(fs::read(r.join("good.txt")).unwrap(), b"good data\n");
    assert_eq!(
        fs::read(r.join("dir/also-good.bin")).unwrap(),
        random_bytes(2, 100_000)
    );
    assert!(!restored_path(&dst, &missing).exists());
}

// ------------------------------------------------------------ damaged data

fn check_layout(repo: &Path) {
    let hex64 = |p: &Path| is_hex(&file_name_str(p), 64);
    let packs = pack_files(repo);
    assert!(
        !packs.is_empty(),
        "no pack files under {}/data",
        repo.display()
    );
    for p in &packs {
        let name = file_name_str(p);
        let parent = file_name_str(p.parent().unwrap());
        assert!(hex64(p), "pack name not 64 hex: {}", p.display());
        assert_eq!(
            parent,
            name[..2],
            "pack not in data/<2 hex>/: {}",
            p.display()
        );
        assert_eq!(p.parent().unwrap().parent().unwrap(), repo.join("data"));
    }
    for sub in ["index", "snapshots", "keys"] {
        let files = files_under(&repo.join(sub));
        assert!(!files.is_empty(), "{sub}/ is empty");
        if sub != "keys" {
            for f in files {
                assert!(hex64(&f), "{sub} file not 64 hex: {}", f.display());
            }
        }
    }
}

fn largest(files: &[PathBuf]) -> PathBuf {
    files
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap()
        .clone()
}

/// After a failed restore, any restored file whose bytes are wrong must at
/// least be named in the error output (no silently wrong data).
fn assert_no_silent_corruption(src: &Path, dst: &Path, out: &Output) {
    let r = restored_path(dst, src);
    for f in files_under(src) {
        let rel = f.strip_prefix(src).unwrap();
        let rf = r.join(rel);
        if let Ok(got) = fs::read(&rf) {
            if got != fs::read(&f).unwrap() {
                assert!(
                    out.stderr.contains(&file_name_str(&rf)),
                    "restored {} has wrong bytes but the error output does not name it\n{}",
                    rf.display(),
                    out.describe()
                );
            }
        }
    }
}

/// A repository holding one backup of `small_tree`.
fn backed_up_small_tree() -> (Env, PathBuf) {
    let env = Env::new();
    let src = small_tree(&env);
    env.init();
    env.backup_json(&[&src], &[]);
    (env, src)
}

fn damaged_restore(env: &Env, src: &Path, label: &str) -> Output {
    env.remove_cache();
    let dst = env.path(&format!("dst-{label}"));
    let out = env.r(&restore_args("latest", &dst));
    out.assert_code(exit::DAMAGED);
    assert_no_silent_corruption(src, &dst, &out);
    out
}

#[test]
fn corrupted_pack_byte_flip_exit_4() {
    let (env, src) = backed_up_small_tree();
    check_layout(&env.repo);
    let pack = largest(&pack_files(&env.repo));
    let len = fs::metadata(&pack).unwrap().len();
    flip_byte(&pack, len / 2);

    let out = damaged_restore(&env, &src, "flip");
    let name = file_name_str(&pack);
    assert!(
        contains_any(&out.stderr, &[&name[..8], "victim.bin"]),
        "error should name the damaged pack ({}) or the affected file\n{}",
        &name[..8],
        out.describe()
    );
}

#[test]
fn truncated_pack_exit_4() {
    let (env, src) = backed_up_small_tree();
    let pack = largest(&pack_files(&env.repo));
    let len = fs::metadata(&pack).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = damaged_restore(&env, &src, "trunc");
    let name = file_name_str(&pack);
    assert!(
        contains_any(&out.stderr, &[&name[..8], "victim.bin"]),
        "error should name the truncated pack or the affected file\n{}",
        out.describe()
    );
}

#[test]
fn missing_pack_exit_4() {
    let (env, src) = backed_up_small_tree();
    for p in pack_files(&env.repo) {
        fs::remove_file(p).unwrap();
    }
    damaged_restore(&env, &src, "missing");
}

#[test]
fn damaged_index_exit_4() {
    let (env, src) = backed_up_small_tree();
    let idx = files_under(&env.repo.join("index"));
    assert!(!idx.is_empty(), "backup wrote no index file");
    let victim = largest(&idx);
    let len = fs::metadata(&victim).unwrap().len();
    flip_byte(&victim, len / 2);
    let out = damaged_restore(&env, &src, "index");
    let name = file_name_str(&victim);
    assert!(
        out.stderr.contains(&name[..8]),
        "error should name the damaged index file {}\n{}",
        &name[..8],
        out.describe()
    );
}

#[test]
fn damaged_snapshot_file_exit_4() {
    let (env, _src) = backed_up_small_tree();
    let snaps = files_under(&env.repo.join("snapshots"));
    assert_eq!(snaps.len(), 1);
    let len = fs::metadata(&snaps[0]).unwrap().len();
    flip_byte(&snaps[0], len / 2);
    env.remove_cache();
    let out = env.r(&["snapshots"]);
    out.assert_code(exit::DAMAGED);
    assert!(
        out.stderr.contains(&file_name_str(&snaps[0])[..8]),
        "error should name the damaged snapshot file\n{}",
        out.describe()
    );
}

#[test]
fn damaged_config_exit_4() {
    let (env, _src) = backed_up_small_tree();
    let config = env.repo.join("config");
    let len = fs::metadata(&config).unwrap().len();
    flip_byte(&config, len - 5);
    let out = env.r(&["snapshots"]);
    out.assert_code(exit::DAMAGED);
    assert!(
        out.stderr.contains("config"),
        "error should name the config\n{}",
        out.describe()
    );
}

#[test]
fn damaged_key_files_are_told_apart_from_absurd_ones() {
    let (env, _src) = backed_up_small_tree();
    let key = files_under(&env.repo.join("keys")).pop().unwrap();
    let original = fs::read(&key).unwrap();

    // A flipped byte in the sealed keys (offset 100: inside the keyring of a version 2 file, the
    // master key of a version 1 file, FORMAT.md §4) cannot be told from a wrong password.
    flip_byte(&key, 100);
    let out = env.r(&["snapshots"]);
    out.assert_code(exit::WRONG_PASSWORD);
    assert!(
        out.stderr.contains("damaged"),
        "the message should mention damaged key files\n{}",
        out.describe()
    );

    // A key file asking for 4 TiB of Argon2 memory is refused before running it (offset 11: memory KiB).
    let mut absurd = original.clone();
    absurd[11..15].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&key, &absurd).unwrap();
    let out = env.r(&["snapshots"]);
    out.assert_code(exit::DAMAGED);
    assert!(
        out.stderr.contains("key file") && out.stderr.contains("unreasonable"),
        "{}",
        out.describe()
    );
}

// ------------------------------------------------------ restore target

#[test]
fn restore_into_non_empty_target_requires_overwrite() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("f.txt"), b"from the snapshot\n");
    write_file(&src.join("d/g.bin"), &random_bytes(3, 50_000));
    env.init();
    env.backup_json(&[&src], &[]);

    let dst = env.path("dst");
    write_file(&dst.join("existing.txt"), b"do not touch\n");
    // A conflicting file at a path the restore will write.
    let r = restored_path(&dst, &src);
    write_file(&r.join("f.txt"), b"stale junk that must be replaced");
    let before = tree_listing(&dst);

    let out = env.r(&restore_args("latest", &dst));
    out.assert_code(exit::USAGE);
    let d = listing_diff(&before, &tree_listing(&dst));
    assert!(
        d.is_empty(),
        "restore without --overwrite changed the target: {d:?}"
    );

    let mut args = restore_args("latest", &dst);
    args.push("--overwrite".into());
    env.r_ok(&args);
    assert_trees_equal(&src, &r);
    assert_eq!(
        fs::read(dst.join("existing.txt")).unwrap(),
        b"do not touch\n"
    );

    // A target that is an existing regular file is not a usable directory.
    let file_target = env.path("file-target");
    fs::write(&file_target, b"x").unwrap();
    let out = env.r(&restore_args("latest", &file_target));
    assert_ne!(out.code, 0, "{}", out.describe());
    assert_eq!(fs::read(&file_target).unwrap(), b"x");
}

// ------------------------------------------------------ default repository

#[test]
fn default_repository_is_created_on_first_backup() {
    let env = Env::new();
    let src = small_tree(&env);
    let default_repo = env.xdg_data_home().join("cairn/repository");
    assert!(!default_repo.exists());

    let out = env.cairn(&os(&[&"backup", &src]));
    out.assert_success();
    assert!(
        default_repo.join("config").is_file(),
        "default repository not created at {}\n{}",
        default_repo.display(),
        out.describe()
    );
    assert!(
        out.stderr.contains(default_repo.to_str().unwrap()),
        "stderr should say where the repository was created\n{}",
        out.describe()
    );
    let lower = out.stderr_lower();
    assert!(
        lower.contains("password")
            && contains_any(
                &lower,
                &[
                    "lose",
                    "lost",
                    "loss",
                    "unrecoverable",
                    "cannot be recovered"
                ]
            ),
        "stderr should warn that losing the password loses the data\n{}",
        out.describe()
    );

    // Works without -r afterwards.
    env.cairn_ok(&["snapshots"]);
    let snaps = env.cairn_json(&["snapshots"]);
    assert_eq!(snaps.as_array().map(|a| a.len()), Some(1), "{snaps}");
    env.cairn_ok(&os(&[&"backup", &src]));
    let snaps = env.cairn_json(&["snapshots"]);
    assert_eq!(snaps.as_array().map(|a| a.len()), Some(2), "{snaps}");
    // The same repository is reachable explicitly.
    let out = env.cairn_ok(&os(&[&"--json", &"-r", &default_repo, &"snapshots"]));
    assert_eq!(out.json().as_array().map(|a| a.len()), Some(2));

    let dst = env.path("dst");
    env.cairn_ok(&restore_args("latest", &dst));
    assert_trees_equal(&src, &restored_path(&dst, &src));
}

// ------------------------------------------------------------ usage errors

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    env.init();
    let t = env.path("t");

    env.cairn(&["--no-such-flag", "snapshots"])
        .assert_code(exit::USAGE);
    env.cairn(&["no-such-command"]).assert_code(exit::USAGE);
    // restore without --target
    env.r(&["restore", "latest"]).assert_code(exit::USAGE);
    // backup without any path (and without --stdin)
    env.r(&["backup"]).assert_code(exit::USAGE);
    // latest when there are no snapshots: unknown snapshot
    env.r(&restore_args("latest", &t)).assert_code(exit::USAGE);
    env.r(&restore_args("deadbeef", &t))
        .assert_code(exit::USAGE);
    assert!(is_empty_or_missing(&t));
    // No snapshot got created by any of this.
    assert_eq!(env.snapshots_json().len(), 0);
}

/// With --overwrite, a symlink planted in the target where the snapshot has a
/// directory must not make the restore write outside the target.
#[test]
fn overwrite_never_writes_through_symlinks_out_of_target() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("sub/payload.txt"), b"payload\n");
    write_file(&src.join("top.txt"), b"top\n");
    env.init();
    env.backup_json(&[&src], &[]);

    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    write_file(&outside.join("keep"), b"outside data\n");
    let outside_file = env.path("outside-file.txt");
    fs::write(&outside_file, b"outside file\n").unwrap();
    let outside_before = tree_listing(&outside);

    let dst = env.path("dst");
    let r = restored_path(&dst, &src);
    fs::create_dir_all(&r).unwrap();
    std::os::unix::fs::symlink(&outside, r.join("sub")).unwrap();
    std::os::unix::fs::symlink(&outside_file, r.join("top.txt")).unwrap();

    let mut args = restore_args("latest", &dst);
    args.push("--overwrite".into());
    let out = env.r(&args);
    let d = listing_diff(&outside_before, &tree_listing(&outside));
    assert!(
        d.is_empty(),
        "restore wrote outside the target via a symlink: {d:?}\n{}",
        out.describe()
    );
    assert_eq!(
        fs::read(&outside_file).unwrap(),
        b"outside file\n",
        "restore wrote through a symlinked file outside the target\n{}",
        out.describe()
    );
    if out.code == 0 {
        assert_trees_equal(&src, &r);
    }
}

/// `init --compression` takes a zstd level: one out of range is refused before anything is
/// written, and a level given is the one the repository's blobs are compressed at.
#[test]
fn init_compression_levels_are_checked_and_kept() {
    let env = Env::new();
    for bad in ["23", "-8"] {
        let out = env.r(&["init", "--compression", bad]);
        out.assert_code(exit::USAGE);
        assert!(
            out.stderr_lower().contains("zstd level"),
            "{}",
            out.describe()
        );
        assert!(!env.repo.exists(), "a refused init must write nothing");
    }
    env.r(&["init", "--stream-compression", "99"])
        .assert_code(exit::USAGE);
    let src = env.path("src");
    // Text compresses at any level; level -7 stores more of it than level 19 does.
    let text: String = (0..20_000)
        .map(|i| format!("line {i} of a log\n"))
        .collect();
    write_file(&src.join("log.txt"), text.as_bytes());
    let mut sizes = Vec::new();
    for level in ["-7", "19"] {
        let repo = env.path(&format!("repo{level}"));
        env.cairn_ok(&[
            OsStr::new("-r"),
            repo.as_os_str(),
            OsStr::new("init"),
            OsStr::new("--compression"),
            OsStr::new(level),
        ]);
        env.cairn_ok(&[
            OsStr::new("-r"),
            repo.as_os_str(),
            OsStr::new("backup"),
            src.as_os_str(),
        ]);
        let packs: u64 = files_under(&repo.join("data"))
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        sizes.push(packs);
    }
    assert!(
        sizes[0] > sizes[1],
        "level -7 stored {} bytes, level 19 {}",
        sizes[0],
        sizes[1]
    );
}

#[test]
fn json_errors_are_objects_on_stdout_that_no_script_takes_for_an_empty_result() {
    let env = Env::new();
    let missing = env.path("no-repo");
    let out = env.cairn(&["--json", "-r", missing.to_str().unwrap(), "snapshots"]);
    out.assert_code(exit::NO_REPO);
    let v = out.json();
    assert_eq!(v["error"]["kind"], "no_repository", "{v}");
    assert_eq!(v["error"]["exit_code"], exit::NO_REPO, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("no-repo"),
        "{v}"
    );
    env.init();
    let out = env.run(
        &["--json", "-r", env.repo_str(), "snapshots"],
        None,
        &[("CAIRN_PASSWORD", Some("wrong"))],
    );
    out.assert_code(exit::WRONG_PASSWORD);
    assert_eq!(out.json()["error"]["kind"], "wrong_password");
    let out = env.r(&["--json", "snapshots", "--no-such-flag"]);
    out.assert_code(exit::USAGE);
    assert_eq!(out.json()["error"]["kind"], "usage");
}

#[test]
fn a_usage_error_under_cairn_repo_does_not_show_repo_as_required() {
    let env = Env::new();
    env.init();
    let out = env.run(&["restore"], None, &[("CAIRN_REPO", Some(env.repo_str()))]);
    out.assert_code(exit::USAGE);
    let usage = out
        .stderr
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap();
    assert!(!usage.contains("--repo"), "{}", out.describe());
    // The variable still names the repository.
    let out = env.run(
        &["--json", "snapshots"],
        None,
        &[("CAIRN_REPO", Some(env.repo_str()))],
    );
    out.assert_success();
    assert_eq!(out.json(), serde_json::json!([]));
}

#[test]
fn password_command_is_a_global_option_and_an_environment_variable() {
    let env = Env::new();
    env.init();
    let pw = format!("printf '%s\\n' '{}'", PASSWORD);
    let out = env.run(
        &[
            "-r",
            env.repo_str(),
            "--password-command",
            &pw,
            "--json",
            "snapshots",
        ],
        None,
        &[("CAIRN_PASSWORD", None)],
    );
    out.assert_success();
    let out = env.run(
        &["-r", env.repo_str(), "--json", "snapshots"],
        None,
        &[
            ("CAIRN_PASSWORD", None),
            ("CAIRN_PASSWORD_COMMAND", Some(&pw)),
        ],
    );
    out.assert_success();
    // The option wins over the environment: a wrong password from it is refused.
    let out = env.run(
        &[
            "-r",
            env.repo_str(),
            "--password-command",
            "echo wrong",
            "snapshots",
        ],
        None,
        &[],
    );
    out.assert_code(exit::WRONG_PASSWORD);
    let out = env.run(
        &[
            "-r",
            env.repo_str(),
            "--password-command",
            "exit 3",
            "snapshots",
        ],
        None,
        &[("CAIRN_PASSWORD", None)],
    );
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("password command"),
        "{}",
        out.describe()
    );
}
