//! Looking before writing: `backup --dry-run` and `restore --dry-run` change nothing and say what
//! the real command would do; `stats` sizes snapshots; `--json` progress comes as status lines on
//! stderr while stdout keeps one document; `drill` picks among the snapshots the filters select.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::common::{self, files_under, random_bytes, write_file, Env};

/// Every file under `dir` with its size: what a dry run must leave as it was.
fn sizes(dir: &Path) -> BTreeMap<String, u64> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let len = fs::metadata(&p).unwrap().len();
            (p.display().to_string(), len)
        })
        .collect()
}

fn text(n: usize, seed: u64) -> Vec<u8> {
    // Compressible: words, not noise, so the stored size is below the plaintext size.
    let words = ["alpha ", "beta ", "gamma ", "delta ", "epsilon\n"];
    let mut out = Vec::with_capacity(n);
    let mut x = seed;
    while out.len() < n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(words[(x >> 60) as usize % words.len()].as_bytes());
    }
    out.truncate(n);
    out
}

#[test]
fn backup_dry_run_writes_nothing_and_counts_what_a_backup_adds() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("same.txt"), &text(200_000, 1));
    write_file(&src.join("edit.txt"), &text(200_000, 2));
    env.backup_json(&[&src], &[]);
    write_file(&src.join("edit.txt"), &text(210_000, 3));
    write_file(&src.join("new.bin"), &random_bytes(4, 300_000));

    let repo_before = sizes(&env.repo);
    let dry = env.r_json(&["backup", src.to_str().unwrap(), "--dry-run"]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(dry["snapshot_id"].is_null(), "{dry}");
    assert_eq!(dry["summary"]["files_new"], 1, "{dry}");
    assert_eq!(dry["summary"]["files_changed"], 1, "{dry}");
    assert_eq!(dry["summary"]["files_unchanged"], 1, "{dry}");
    assert_eq!(sizes(&env.repo), repo_before, "a dry run must not write");
    assert_eq!(env.snapshots_json().len(), 1);

    // -v lists the files a backup would read and store, on stdout.
    let out = env.r(&["-v", "backup", src.to_str().unwrap(), "-n"]);
    out.assert_success();
    assert!(
        out.stdout.contains("dry run: nothing was written"),
        "{}",
        out.describe()
    );
    let listed: BTreeSet<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("new ") || l.starts_with("changed "))
        .collect();
    let expected = [
        format!("changed {}", src.join("edit.txt").display()),
        format!("new {}", src.join("new.bin").display()),
    ];
    assert_eq!(
        listed,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "{}",
        out.describe()
    );
    assert_eq!(sizes(&env.repo), repo_before);

    // The real backup adds exactly what the dry run counted.
    let real = env.backup_json(&[&src], &[]);
    assert_eq!(
        real["summary"]["bytes_added"], dry["summary"]["bytes_added"],
        "dry {dry}\nreal {real}"
    );
    assert_eq!(
        real["summary"]["blobs_added"],
        dry["summary"]["blobs_added"]
    );

    // A dry run never creates the default repository.
    let out = env.cairn(&["backup", src.to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.code, common::exit::NO_REPO, "{}", out.describe());
    assert!(!env.xdg_data_home().join("cairn").exists());
}

#[test]
fn restore_dry_run_lists_what_would_be_written_and_finds_missing_chunks() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("etc/a.conf"), b"a");
    write_file(&src.join("etc/sub/b.conf"), b"bb");
    write_file(&src.join("data/blob"), &random_bytes(5, 100_000));
    std::os::unix::fs::symlink("a.conf", src.join("etc/link")).unwrap();
    env.backup_json(&[&src], &[]);

    let target = env.path("target");
    let snap = format!("latest:{}", src.display());
    let dry = env.r_json(&[
        "restore",
        &snap,
        "--target",
        target.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(!target.exists(), "a dry run creates nothing");
    assert_eq!(dry["files"], 3, "{dry}");
    assert_eq!(dry["others"], 1, "{dry}");
    assert_eq!(dry["bytes"], 100_003, "{dry}");
    assert_eq!(dry["missing_chunks"], 0, "{dry}");

    // The real restore writes what the dry run announced.
    let real = env.r_json(&["restore", &snap, "--target", target.to_str().unwrap()]);
    for k in ["files", "dirs", "others", "bytes"] {
        assert_eq!(real[k], dry[k], "{k}: dry {dry}\nreal {real}");
    }

    // -v lists each path in the target; includes select as the restore would.
    let other = env.path("other");
    let out = env.r(&[
        "-v",
        "restore",
        &snap,
        "--target",
        other.to_str().unwrap(),
        "--include",
        "*.conf",
        "--dry-run",
    ]);
    out.assert_success();
    assert!(out
        .stdout
        .contains(&format!("{}", other.join("etc/sub/b.conf").display())));
    assert!(!out.stdout.contains("data/blob"), "{}", out.describe());
    assert!(!other.exists());

    // With --include, a directory that leads to nothing included is not restored, and the dry
    // run does not count it either (data/ here).
    let included = env.path("included");
    let args = |extra: &str| {
        vec![
            "restore".to_string(),
            snap.clone(),
            "--target".into(),
            included.display().to_string(),
            "--include".into(),
            "*.conf".into(),
            extra.to_string(),
        ]
    };
    let dry = env.r_json(&args("--dry-run"));
    let real = env.r_json(&args("--verify"));
    for k in ["files", "dirs", "others", "bytes"] {
        assert_eq!(real[k], dry[k], "{k}: dry {dry}\nreal {real}");
    }
    assert_eq!(dry["dirs"], 2, "etc and etc/sub: {dry}");

    // A non-empty target is refused, as the restore would refuse it.
    let out = env.r(&["restore", &snap, "--target", target.to_str().unwrap(), "-n"]);
    out.assert_code(2);

    // A pack lost, the index rebuilt without it: the dry run says the restore would fail.
    // The largest pack holds the data; the trees' pack stays, so the snapshot still loads.
    fs::remove_file(common::largest_pack(&env.repo)).unwrap();
    env.r(&["repair", "index"]);
    let out = env.r(&["restore", &snap, "--target", other.to_str().unwrap(), "-n"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("not in the index") && out.stderr.contains("the restore would fail"),
        "{}",
        out.describe()
    );
}

#[test]
fn stats_counts_restore_size_dedup_and_compression() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let body = text(500_000, 9);
    write_file(&src.join("one.txt"), &body);
    env.backup_json(&[&src], &[]);
    write_file(&src.join("copy.txt"), &body);
    env.backup_json(&[&src], &[]);

    let all = env.r_json(&["stats"]);
    assert_eq!(all["snapshots"], 2, "{all}");
    assert_eq!(all["files"], 3, "{all}");
    assert_eq!(all["restore_size"], 1_500_000, "{all}");
    assert_eq!(
        all["data_raw_bytes"], 500_000,
        "one copy of the text is stored: {all}"
    );
    assert!(all["dedup_ratio"].as_f64().unwrap() > 2.9, "{all}");
    assert!(all["compression_ratio"].as_f64().unwrap() > 2.0, "{all}");
    assert!(
        all["data_stored_bytes"].as_u64().unwrap() < 250_000,
        "{all}"
    );
    assert_eq!(all["missing_blobs"], 0);

    let latest = env.r_json(&["stats", "latest"]);
    assert_eq!(latest["snapshots"], 1);
    assert_eq!(latest["restore_size"], 1_000_000, "{latest}");
    let out = env.r_ok(&["stats"]);
    assert!(out.stdout.contains("restore size:"), "{}", out.describe());

    // Chunks the index no longer names (their pack lost, the index rebuilt without it) are
    // counted and make stats exit 4, as damage.
    fs::remove_file(common::largest_pack(&env.repo)).unwrap();
    env.r(&["repair", "index"]);
    let out = env.r(&["--json", "stats"]);
    out.assert_code(common::exit::DAMAGED);
    assert!(
        out.json()["missing_blobs"].as_u64().unwrap() > 0,
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("run `cairn check`"),
        "{}",
        out.describe()
    );
}

#[test]
fn json_progress_comes_as_status_lines_on_stderr() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    for i in 0..8 {
        write_file(&src.join(format!("f{i}")), &random_bytes(i, 4_000_000));
    }
    let out = env.run(
        &[
            "--json",
            "-r",
            env.repo_str(),
            "backup",
            src.to_str().unwrap(),
        ],
        None,
        &[("CAIRN_PROGRESS_FPS", Some("50"))],
    );
    out.assert_success();
    // stdout stays one document.
    let result: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(result["snapshot_id"].is_string());
    let statuses: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message_type"] == "status")
        .collect();
    assert!(!statuses.is_empty(), "{}", out.describe());
    for s in &statuses {
        assert_eq!(s["action"], "backup", "{s}");
        assert_eq!(s["unit"], "bytes", "{s}");
        assert!(
            s["done"].is_u64() && s["seconds_elapsed"].is_number(),
            "{s}"
        );
    }
    // A restore says its progress the same way; --quiet silences it, and without --json the
    // lines are not JSON at all.
    let restore = |flags: &[&str], target: &str| {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend([
            "-r",
            env.repo_str(),
            "restore",
            "latest",
            "--target",
            target,
        ]);
        let out = env.run(&args, None, &[("CAIRN_PROGRESS_FPS", Some("50"))]);
        out.assert_success();
        out
    };
    let statuses = |out: &common::Output| out.stderr.matches("\"message_type\":\"status\"").count();
    let out = restore(&["--json"], "t1");
    assert!(statuses(&out) > 0, "{}", out.describe());
    assert!(
        out.stderr.contains("\"action\":\"restore\""),
        "{}",
        out.describe()
    );
    let out = restore(&["--json", "-q"], "t2");
    assert_eq!(statuses(&out), 0, "{}", out.describe());
    let out = restore(&[], "t3");
    assert_eq!(statuses(&out), 0, "{}", out.describe());
}

#[test]
fn drill_chooses_among_the_filtered_snapshots() {
    let env = Env::new();
    env.init();
    let a = env.path("a");
    let b = env.path("b");
    write_file(&a.join("f"), b"a");
    write_file(&b.join("f"), b"b");
    let first = env.backup_json(&[&a], &["--host", "alpha"]);
    env.backup_json(&[&b], &["--host", "beta"]);
    let report = env.r_json(&[
        "drill",
        "--host",
        "alpha",
        "--scratch",
        env.root().to_str().unwrap(),
    ]);
    assert_eq!(report["snapshot_id"], first["snapshot_id"], "{report}");
    // The human report shows times to the second in the local zone, not RFC 3339 nanoseconds.
    let out = env.r_ok(&[
        "drill",
        "--host",
        "alpha",
        "--scratch",
        env.root().to_str().unwrap(),
    ]);
    let head = out.stdout.lines().next().unwrap_or_default();
    assert!(head.starts_with("drill of snapshot "), "{}", out.describe());
    assert!(!head.contains('T') && !head.contains('Z'), "{head}");
    let out = env.r(&["drill", "--host", "gamma"]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(
        out.stderr
            .contains("none of the 2 snapshots passes the filters"),
        "{}",
        out.describe()
    );
}
