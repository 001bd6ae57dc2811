//! `--stdin` backups, deduplication, snapshot listing metadata and excludes.

use crate::common;

use common::compare::assert_trees_equal;
use common::*;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

const MIB: usize = 1024 * 1024;

fn restore_to(env: &Env, snap: &str, target: &Path) {
    env.restore(snap, target);
}

#[test]
fn init_json_reports_repository_and_id() {
    let env = Env::new();
    let v = env.r_json(&["init"]);
    let repo = v["repository"]
        .as_str()
        .unwrap_or_else(|| panic!("no repository in {v}"));
    assert!(
        repo.contains(env.repo_str()) || Path::new(repo) == env.repo,
        "repository {repo:?} should name {}",
        env.repo.display()
    );
    let id = v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"));
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "id must be hex: {v}"
    );
    for sub in ["keys", "data", "index", "snapshots"] {
        assert!(env.repo.join(sub).is_dir(), "{sub}/ missing after init");
    }
    assert!(env.repo.join("config").is_file());
    assert!(
        fs::read_dir(env.repo.join("keys"))
            .unwrap()
            .next()
            .is_some(),
        "init must write a key file"
    );
    // No snapshots yet.
    assert_eq!(env.snapshots_json().len(), 0);
    // The password must not appear in plain text anywhere in the repository.
    for (p, content) in tree_listing(&env.repo) {
        assert!(
            !content
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "password stored in plain text in {}",
            p.display()
        );
    }
}

#[test]
fn stdin_backup_roundtrip_and_new_version() {
    let env = Env::new();
    env.init();
    let v1 = random_bytes(100, 5 * MIB + 777);
    let out = env.r_stdin(
        &["--json", "backup", "--stdin", "--stdin-name", "db.sql"],
        &v1,
    );
    out.assert_success();
    let j1 = out.json();
    check_backup_json(&j1);
    let id1 = j1["snapshot_id"].as_str().unwrap().to_string();
    assert!(
        j1["summary"]["bytes_read"].as_u64().unwrap() >= v1.len() as u64,
        "bytes_read should count the stdin bytes: {j1}"
    );

    let t1 = env.path("t1");
    restore_to(&env, "latest", &t1);
    let got = fs::read(t1.join("db.sql")).expect("restored <target>/db.sql");
    assert!(
        got == v1,
        "stdin content restored wrongly ({} vs {} bytes)",
        got.len(),
        v1.len()
    );

    // Second version, same name, different bytes (shares the first MiB).
    let mut v2 = v1[..MIB].to_vec();
    v2.extend_from_slice(&random_bytes(101, 3 * MIB));
    let out = env.r_stdin(
        &["--json", "backup", "--stdin", "--stdin-name", "db.sql"],
        &v2,
    );
    out.assert_success();
    let j2 = out.json();
    check_backup_json(&j2);
    let id2 = j2["snapshot_id"].as_str().unwrap().to_string();
    assert_ne!(id1, id2);

    let t2 = env.path("t2");
    restore_to(&env, "latest", &t2);
    assert!(
        fs::read(t2.join("db.sql")).unwrap() == v2,
        "latest must hold the new bytes"
    );

    let t3 = env.path("t3");
    restore_to(&env, &id1, &t3);
    assert!(
        fs::read(t3.join("db.sql")).unwrap() == v1,
        "first snapshot must still hold the old bytes"
    );

    let t4 = env.path("t4");
    restore_to(&env, &id2[..8], &t4);
    assert!(fs::read(t4.join("db.sql")).unwrap() == v2);

    let snaps = env.snapshots_json();
    assert_eq!(snaps.len(), 2);

    // Empty stdin is a valid (empty) file when --min-bytes 0 says so.
    let out = env.r_stdin(
        &[
            "backup",
            "--stdin",
            "--stdin-name",
            "empty.bin",
            "--min-bytes",
            "0",
        ],
        b"",
    );
    out.assert_success();
    let t5 = env.path("t5");
    restore_to(&env, "latest", &t5);
    assert_eq!(fs::read(t5.join("empty.bin")).unwrap(), b"");
}

fn make_tree(root: &Path) -> u64 {
    let mut total = 0u64;
    for (i, size) in [3 * MIB, 2 * MIB + 5, 700_000, 10_000, 1, 0]
        .iter()
        .enumerate()
    {
        let data = random_bytes(200 + i as u64, *size);
        write_file(&root.join(format!("d{}/f{i}.bin", i % 3)), &data);
        total += *size as u64;
    }
    fs::create_dir_all(root.join("empty")).unwrap();
    total
}

#[test]
fn unchanged_rebackup_adds_almost_nothing() {
    let env = Env::new();
    let src = env.path("src");
    let data_bytes = make_tree(&src);
    env.init();

    let b1 = env.backup_json(&[&src], &[]);
    let s1 = &b1["summary"];
    let added1 = s1["bytes_added"].as_u64().unwrap();
    // Random data does not compress: the first backup must store ~all of it.
    assert!(
        added1 as f64 >= data_bytes as f64 * 0.95,
        "first backup bytes_added {added1} is implausibly small for {data_bytes} bytes of random data: {b1}"
    );
    assert!(
        s1["bytes_read"].as_u64().unwrap() >= data_bytes,
        "bytes_read should count all file data: {b1}"
    );
    assert_eq!(s1["files_new"].as_u64(), Some(6), "{b1}");
    assert!(b1["parent"].is_null(), "{b1}");

    let b2 = env.backup_json(&[&src], &[]);
    let s2 = &b2["summary"];
    let added2 = s2["bytes_added"].as_u64().unwrap();
    assert!(
        (added2 as f64) < data_bytes as f64 * 0.01,
        "unchanged re-backup added {added2} bytes (tree has {data_bytes} data bytes): {b2}"
    );
    assert_eq!(b2["parent"].as_str(), b1["snapshot_id"].as_str(), "{b2}");
    assert_eq!(s2["files_new"].as_u64(), Some(0), "{b2}");
    assert_eq!(s2["files_changed"].as_u64(), Some(0), "{b2}");
    assert_eq!(s2["files_unchanged"].as_u64(), Some(6), "{b2}");

    // Modify one small file: only a little is added.
    write_file(&src.join("d1/f1.bin"), &random_bytes(999, 2 * MIB + 5));
    let b3 = env.backup_json(&[&src], &[]);
    let added3 = b3["summary"]["bytes_added"].as_u64().unwrap();
    assert_eq!(b3["summary"]["files_changed"].as_u64(), Some(1), "{b3}");
    assert!(
        added3 as f64 >= 2.0 * MIB as f64 * 0.95 && (added3 as f64) < 2.0 * MIB as f64 * 1.3,
        "changing one 2 MiB file should add about 2 MiB, added {added3}: {b3}"
    );

    env.assert_restores_exactly("latest", &src, "dst");
}

#[test]
fn identical_copies_are_stored_once() {
    let env = Env::new();
    let src = env.path("src");
    let data = random_bytes(300, 4 * MIB);
    write_file(&src.join("copy1.bin"), &data);
    write_file(&src.join("nested/copy2.bin"), &data);
    env.init();
    let b = env.backup_json(&[&src], &[]);
    let added = b["summary"]["bytes_added"].as_u64().unwrap();
    assert!(
        (added as f64) < 1.2 * data.len() as f64,
        "two identical 4 MiB files added {added} bytes (must be < 1.2 x {}): {b}",
        data.len()
    );
    assert!(
        added as f64 >= 0.95 * data.len() as f64,
        "bytes_added {added} is smaller than one copy of random data: {b}"
    );

    // A later backup of a third copy elsewhere adds nothing substantial.
    let other = env.path("other");
    write_file(&other.join("copy3.bin"), &data);
    let b2 = env.backup_json(&[&other], &[]);
    let added2 = b2["summary"]["bytes_added"].as_u64().unwrap();
    assert!(
        (added2 as f64) < 0.05 * data.len() as f64,
        "third copy in a new snapshot added {added2} bytes: {b2}"
    );

    let dst = env.path("dst");
    env.restore("latest", &dst);
    assert!(fs::read(restored_path(&dst, &other).join("copy3.bin")).unwrap() == data);
    let dst2 = env.path("dst2");
    let id1 = b["snapshot_id"].as_str().unwrap();
    env.restore(id1, &dst2);
    assert_trees_equal(&src, &restored_path(&dst2, &src));
}

#[test]
fn snapshots_json_fields_tags_and_host() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("f.txt"), b"hello");
    env.init();
    let b1 = env.backup_json(
        &[&src],
        &[
            "--tag",
            "daily",
            "--tag",
            "important",
            "--host",
            "custom-host",
        ],
    );
    let b2 = env.backup_json(&[&src], &[]);

    // Global options after the subcommand are accepted too.
    let out = env.cairn_ok(&[
        OsStr::new("snapshots"),
        OsStr::new("--json"),
        OsStr::new("-r"),
        env.repo.as_os_str(),
    ]);
    let arr = out.json();
    let arr = arr.as_array().expect("array");
    assert_eq!(arr.len(), 2, "{out:?}");

    let find = |id: &str| {
        arr.iter()
            .find(|s| s["id"].as_str() == Some(id))
            .unwrap_or_else(|| panic!("snapshot {id} not listed: {arr:?}"))
            .clone()
    };
    let s1 = find(b1["snapshot_id"].as_str().unwrap());
    let s2 = find(b2["snapshot_id"].as_str().unwrap());
    for s in [&s1, &s2] {
        for k in [
            "id",
            "short_id",
            "time",
            "host",
            "username",
            "paths",
            "tags",
            "tree",
            "parent",
            "program_version",
            "summary",
        ] {
            assert!(s.get(k).is_some(), "snapshot lacks field {k:?}: {s}");
        }
        let id = s["id"].as_str().unwrap();
        assert!(is_hex(id, 64), "{s}");
        assert!(id.starts_with(s["short_id"].as_str().unwrap()), "{s}");
        assert!(!s["time"].as_str().expect("time string").is_empty(), "{s}");
        assert_eq!(
            s["paths"].as_array().expect("paths array"),
            &vec![serde_json::Value::String(src.to_str().unwrap().to_string())],
            "{s}"
        );
        assert!(s["summary"].is_object(), "{s}");
        assert!(s["summary"]["bytes_added"].is_u64(), "{s}");
    }
    assert_eq!(s1["host"].as_str(), Some("custom-host"), "{s1}");
    let tags: Vec<&str> = s1["tags"]
        .as_array()
        .expect("tags array")
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"daily") && tags.contains(&"important"),
        "{s1}"
    );
    assert_eq!(tags.len(), 2, "{s1}");
    assert_eq!(s2["tags"].as_array().map(|a| a.len()), Some(0), "{s2}");
    let hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(
        s2["host"].as_str(),
        Some(hostname.as_str()),
        "default host is the hostname: {s2}"
    );
    // Time is a date-time string starting with a plausible year.
    for s in [&s1, &s2] {
        let t = s["time"].as_str().unwrap();
        let year: u32 = t.get(..4).and_then(|y| y.parse().ok()).unwrap_or(0);
        assert!(
            (2020..2200).contains(&year),
            "time {t:?} does not start with a year"
        );
    }

    // Table output mentions each short id and the custom host and tags.
    let table = env.r_ok(&["snapshots"]);
    for s in [&s1, &s2] {
        assert!(
            table.stdout.contains(s["short_id"].as_str().unwrap()),
            "{}",
            table.describe()
        );
    }
    assert!(table.stdout.contains("custom-host"), "{}", table.describe());
}

#[test]
fn excludes_keep_files_out() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("keep.txt"), b"keep");
    write_file(&src.join("a.log"), b"log");
    write_file(&src.join("sub/b.log"), b"log");
    write_file(&src.join("sub/keep2.txt"), b"keep2");
    write_file(&src.join("cache/blob"), &random_bytes(400, 10_000));
    write_file(&src.join("sub/cache/blob2"), b"x");
    write_file(&src.join("tmp/scratch.tmp"), b"tmp");
    write_file(&src.join("tmp/keep3.txt"), b"keep3");
    let exclude_file = env.path("excludes.txt");
    fs::write(&exclude_file, "cache\n*.tmp\n").unwrap();

    env.init();
    let b = env.backup_json(
        &[&src],
        &[
            "--exclude",
            "*.log",
            "--exclude-file",
            exclude_file.to_str().unwrap(),
        ],
    );
    assert!(b["summary"]["errors"].as_array().unwrap().is_empty(), "{b}");
    let dst = env.path("dst");
    env.restore("latest", &dst);
    let r = restored_path(&dst, &src);
    for kept in ["keep.txt", "sub/keep2.txt", "tmp/keep3.txt"] {
        assert!(r.join(kept).is_file(), "{kept} should be restored");
    }
    for gone in [
        "a.log",
        "sub/b.log",
        "cache",
        "sub/cache",
        "tmp/scratch.tmp",
    ] {
        assert!(
            fs::symlink_metadata(r.join(gone)).is_err(),
            "{gone} should have been excluded from the backup"
        );
    }

    // Repeatable --exclude.
    let b2 = env.backup_json(&[&src], &["--exclude", "*.log", "--exclude", "*.txt"]);
    let id2 = b2["snapshot_id"].as_str().unwrap();
    let dst2 = env.path("dst2");
    env.restore(id2, &dst2);
    let r2 = restored_path(&dst2, &src);
    assert!(r2.join("cache/blob").is_file());
    assert!(r2.join("tmp/scratch.tmp").is_file());
    for gone in [
        "keep.txt",
        "a.log",
        "sub/keep2.txt",
        "sub/b.log",
        "tmp/keep3.txt",
    ] {
        assert!(
            fs::symlink_metadata(r2.join(gone)).is_err(),
            "{gone} should be excluded"
        );
    }
}

/// Several backups running at the same time against one repository, sharing one cache, all
/// succeed without locks; the repository then passes `check --read-data` and every snapshot
/// restores exactly.
#[test]
fn concurrent_backups_to_one_repository() {
    let env = Env::new();
    env.init();
    let srcs: Vec<_> = (0..3)
        .map(|i| {
            let s = env.path(&format!("src{i}"));
            write_file(&s.join("shared.bin"), &random_bytes(500, 2 * MIB));
            write_file(&s.join("own.bin"), &random_bytes(600 + i, MIB + 3));
            s
        })
        .collect();
    let outs: Vec<Output> = std::thread::scope(|sc| {
        let hs: Vec<_> = srcs
            .iter()
            .map(|s| {
                let env = &env;
                sc.spawn(move || {
                    env.r(&[OsStr::new("--json"), OsStr::new("backup"), s.as_os_str()])
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs {
        assert_eq!(o.code, 0, "a concurrent backup failed\n{}", o.describe());
    }
    env.r_ok(&[OsStr::new("check"), OsStr::new("--read-data")]);
    let snaps = env.snapshots_json();
    assert_eq!(snaps.len(), outs.len(), "{snaps:?}");
    for o in &outs {
        let id = o.json()["snapshot_id"].as_str().unwrap().to_string();
        let paths = snaps
            .iter()
            .find(|s| s["id"].as_str() == Some(id.as_str()))
            .unwrap()["paths"]
            .clone();
        let src = std::path::PathBuf::from(paths[0].as_str().unwrap());
        env.assert_restores_exactly(&id, &src, &format!("dst-{}", &id[..8]));
    }
}

/// A dump-like text: numbered rows of pseudo-random words, as a `COPY` block would hold.
fn dump_rows(rows: impl Iterator<Item = u64>) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "alpha", "bravo", "delta", "kilo", "lima", "oscar", "tango", "zulu",
    ];
    let mut out = Vec::new();
    for row in rows {
        let mut x = row.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut line = format!("{row}\t");
        for _ in 0..(4 + row % 9) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            line.push_str(WORDS[(x % 8) as usize]);
            line.push_str(&format!(" {} ", x % 100_000));
        }
        line.push('\n');
        out.extend_from_slice(line.as_bytes());
    }
    out
}

#[test]
fn next_days_dump_from_stdin_stores_a_small_fraction() {
    let env = Env::new();
    env.init();
    // About 12 MiB of rows; the next day deletes 12 scattered rows and appends 1% more.
    let day1 = dump_rows(1..=150_000);
    let deleted: Vec<u64> = (0..12).map(|i| 7_001 + i * 12_345).collect();
    let day2 = dump_rows((1..=151_500).filter(|r| !deleted.contains(r)));
    let stdin_backup = |bytes: &[u8]| {
        let out = env.r_stdin(
            &["--json", "backup", "--stdin", "--stdin-name", "db.sql"],
            bytes,
        );
        out.assert_success();
        out.json()["summary"]["bytes_added"].as_u64().unwrap()
    };
    let added1 = stdin_backup(&day1);
    let added2 = stdin_backup(&day2);
    // With stream chunks of 64 KiB on average, a dozen scattered edits touch about two dozen
    // chunks of ~190; with the file sizes (1 MiB) they would touch nearly all 12.
    assert!(
        added2 * 4 < added1,
        "day 2 added {added2} bytes, more than a quarter of day 1's {added1}"
    );
    let restored = env.path("restored");
    env.restore("latest", &restored);
    assert_eq!(fs::read(restored.join("db.sql")).unwrap(), day2);
}

#[test]
fn unchanged_directories_keep_their_tree_ids_and_a_change_renews_only_its_ancestors() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    for dir in ["a/deep/er", "b/side", "c"] {
        fs::create_dir_all(src.join(dir)).unwrap();
        write_file(&src.join(dir).join("f.txt"), dir.as_bytes());
    }
    let first = env.backup_json(&[&src], &[]);
    let second = env.backup_json(&[&src], &[]);
    let s2 = &second["summary"];
    assert_eq!(s2["files_unchanged"], 3, "{second}");
    assert_eq!(s2["dirs_changed"], 0, "{second}");
    // Nothing under src is stored again. The directories above src (/tmp above all) belong to
    // the snapshot too, and other tests running meanwhile change their mtimes: each of those may
    // cost one new tree, never more.
    let ancestors = src.parent().unwrap().components().count();
    let added = s2["blobs_added"].as_u64().unwrap();
    assert!(
        added as usize <= ancestors,
        "an unchanged tree stores at most its {ancestors} ancestors again: {second}"
    );
    let diff = env.r_json(&[
        "diff",
        first["snapshot_id"].as_str().unwrap(),
        second["snapshot_id"].as_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_eq!(diff["changes"].as_array().map(Vec::len), Some(0), "{diff}");
    assert_eq!(second["parent"], first["snapshot_id"]);

    // A new file two levels down changes a/deep/er, a/deep, a, src and the synthetic
    // directories above src; b/side, b and c keep their trees.
    write_file(&src.join("a/deep/er/g.txt"), b"new");
    let third = env.backup_json(&[&src], &[]);
    let s3 = &third["summary"];
    assert_eq!(s3["files_new"], 1, "{third}");
    assert_eq!(s3["dirs_unchanged"], 3, "b, b/side and c: {third}");
    env.assert_restores_exactly("latest", &src, "restored");
}

/// `pg_dump nosuchdb | cairn backup --stdin` gives cairn an empty stream: it must fail with the
/// dump exit code (5), name standard input and --min-bytes, and write no snapshot.
#[test]
fn empty_stdin_is_refused_without_a_snapshot() {
    let env = Env::new();
    env.init();
    let out = env.r_stdin(&["backup", "--stdin", "--stdin-name", "pg.sql"], b"");
    out.assert_code(5);
    let err = out.stderr_lower();
    assert!(err.contains("standard input for /pg.sql"), "{err}");
    assert!(err.contains("gave only 0 bytes (at least 1"), "{err}");
    assert!(err.contains("--min-bytes 0"), "{err}");
    assert!(env.snapshots_json().is_empty(), "an empty dump was saved");

    // --min-bytes applies to standard input as it does to dump commands.
    let out = env.r_stdin(
        &[
            "backup",
            "--stdin",
            "--stdin-name",
            "pg.sql",
            "--min-bytes",
            "1K",
        ],
        b"-- a dump that stopped at its header\n",
    );
    out.assert_code(5);
    assert!(
        out.stderr_lower()
            .contains("gave only 37 bytes (at least 1024"),
        "{}",
        out.describe()
    );
    assert!(env.snapshots_json().is_empty(), "a short dump was saved");

    // Enough bytes: saved.
    env.r_stdin(
        &[
            "backup",
            "--stdin",
            "--stdin-name",
            "pg.sql",
            "--min-bytes",
            "8",
        ],
        b"-- a whole dump\n",
    )
    .assert_success();
    assert_eq!(env.snapshots_json().len(), 1);
}
