//! Browsing without restoring, end to end with the real binary: ls, cat, restore of one path
//! with filters and verification, find, diff, `--at` on snapshots with controlled times, and
//! how little of the repository those commands read.

use crate::common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::compare::assert_trees_equal;
use common::tree::name;
use common::*;

/// `latest:<path>` for a path of the test tree (plain UTF-8 here).
fn at(path: &Path) -> String {
    format!("latest:{}", path.display())
}

/// A new repository and the path of a source directory to fill.
fn fresh() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    (env, src)
}

/// `restore SPEC --target TARGET EXTRA...`
fn restore_args(spec: &str, target: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut args = vec![
        "restore".into(),
        spec.into(),
        "--target".into(),
        target.into(),
    ];
    args.extend(extra.iter().map(Into::into));
    args
}

fn small_tree(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    write_file(&src.join("etc/passwd"), b"root:x:0:0\n");
    write_file(&src.join("etc/hosts"), b"127.0.0.1 localhost\n");
    write_file(&src.join("etc/ssh/sshd_config"), b"Port 22\n");
    write_file(&src.join("etc/a:b"), b"colon\n");
    write_file(&src.join(name(b"etc/caf\xe9")), b"latin-1\n");
    write_file(&src.join("srv/app/data.txt"), b"data\n");
    write_file(&src.join("srv/app/notes.md"), b"notes\n");
    write_file(&src.join("srv/cache/blob.txt"), b"cache\n");
    std::os::unix::fs::symlink("passwd", src.join("etc/link")).unwrap();
    src
}

fn setup() -> (Env, std::path::PathBuf) {
    let (env, _) = fresh();
    let src = small_tree(&env);
    env.backup_json(&[&src], &[]);
    (env, src)
}

#[test]
fn ls_lists_directories_long_and_recursive() {
    let (env, src) = setup();
    let etc = src.join("etc");
    let out = env.r_ok(&["ls", &at(&etc)]);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["a:b", "caf\\xe9", "hosts", "link", "passwd", "ssh"],
        "names in byte order, non-UTF-8 bytes escaped"
    );
    let long = env.r_ok(&["ls", "-l", &at(&etc)]);
    let ssh = long
        .stdout
        .lines()
        .find(|l| l.ends_with("/etc/ssh"))
        .unwrap();
    assert!(ssh.starts_with("drwx"), "{ssh}");
    let link = long
        .stdout
        .lines()
        .find(|l| l.contains("/etc/link"))
        .unwrap();
    assert!(
        link.starts_with('l') && link.ends_with("-> passwd"),
        "{link}"
    );
    let passwd = long
        .stdout
        .lines()
        .find(|l| l.ends_with("/passwd"))
        .unwrap();
    assert!(
        passwd.starts_with("-rw-") && passwd.contains(" 11 "),
        "{passwd}"
    );

    let all = env.r_json(&["ls", "--recursive", &at(&src)]);
    let paths: BTreeSet<String> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let base = src.display().to_string();
    for rel in ["etc/ssh/sshd_config", "srv/cache/blob.txt", "etc/caf\\xe9"] {
        assert!(
            paths.contains(&format!("{base}/{rel}")),
            "{rel} in {paths:?}"
        );
    }
    assert_eq!(paths.len(), 14, "{paths:?}");

    // The snapshot root holds the absolute path one level at a time.
    let root = env.r_ok(&["ls", "latest"]);
    let first = src
        .components()
        .nth(1)
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    assert_eq!(root.stdout.trim(), first);
    // A file lists as itself.
    let one = env.r_json(&["ls", &at(&etc.join("hosts"))]);
    assert_eq!(one["entries"][0]["size"], 20);
    assert_eq!(one["entries"][0]["type"], "file");
}

#[test]
fn cat_streams_files_addressed_with_colons_and_escapes() {
    let (env, src) = setup();
    let etc = src.join("etc");
    let out = env.r_ok(&["cat", &at(&etc.join("passwd"))]);
    assert_eq!(out.stdout_bytes, b"root:x:0:0\n");
    // Everything after the first colon is the path, colons included.
    let colon = env.r_ok(&["cat", &at(&etc.join("a:b"))]);
    assert_eq!(colon.stdout_bytes, b"colon\n");
    let escaped = format!("{}/caf\\xe9", at(&etc));
    assert_eq!(env.r_ok(&["cat", &escaped]).stdout_bytes, b"latin-1\n");
    let upper = format!("{}/caf\\xE9", at(&etc));
    assert_eq!(env.r_ok(&["cat", &upper]).stdout_bytes, b"latin-1\n");

    let dir = env.r(&["cat", &at(&etc)]);
    dir.assert_code(exit::USAGE);
    assert!(dir.stderr.contains("not a regular file"), "{}", dir.stderr);
    let bad = env.r(&["cat", &format!("{}/caf\\q", at(&etc))]);
    bad.assert_code(exit::USAGE);
}

#[test]
fn a_missing_path_names_the_deepest_parent_and_close_names() {
    let (env, src) = setup();
    let wrong = src.join("etc/ssh/sshd_confg");
    let out = env.r(&["cat", &at(&wrong)]);
    out.assert_code(exit::USAGE);
    let parent = src.join("etc/ssh").display().to_string();
    assert!(
        out.stderr
            .contains(&format!("deepest existing parent is {parent}")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean sshd_config?"),
        "{}",
        out.stderr
    );

    let deeper = src.join("etc/pasword/x");
    let out = env.r(&["ls", &at(&deeper)]);
    out.assert_code(exit::USAGE);
    assert!(
        out.stderr.contains(&format!(
            "deepest existing parent is {}",
            src.join("etc").display()
        )) && out.stderr.contains("passwd"),
        "{}",
        out.stderr
    );
    let through_file = src.join("etc/passwd/x");
    let out = env.r(&["ls", &at(&through_file)]);
    out.assert_code(exit::USAGE);
    assert!(out.stderr.contains("is not a directory"), "{}", out.stderr);
}

#[test]
fn restore_of_one_path_with_filters_and_verification() {
    let (env, src) = setup();
    // A directory: its contents land in the target, which takes its metadata.
    let t1 = env.path("t1");
    let v = env.r_json(&restore_args(&at(&src.join("srv")), &t1, &["--verify"]));
    assert_eq!(v["verified"], 3, "{v}");
    assert_trees_equal(&src.join("srv"), &t1);

    // One file lands as DIR/name, even in a directory that has other things in it.
    let t2 = env.path("t2");
    write_file(&t2.join("already-here"), b"x");
    let file = at(&src.join("etc/passwd"));
    env.r_ok(&restore_args(&file, &t2, &[]));
    assert_eq!(fs::read(t2.join("passwd")).unwrap(), b"root:x:0:0\n");
    // ... but never over an existing file without --overwrite.
    let again = env.r(&restore_args(&file, &t2, &[]));
    again.assert_code(exit::USAGE);

    // Include and exclude on a whole-snapshot restore.
    let t3 = env.path("t3");
    env.r_ok(&restore_args(
        "latest",
        &t3,
        &[
            "--include",
            "*.txt",
            "--include",
            "/**/etc/ssh",
            "--exclude",
            "/**/srv/cache",
        ],
    ));
    let restored: BTreeSet<String> = files_under(&t3)
        .iter()
        .map(|p| {
            p.strip_prefix(restored_path(&t3, &src))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    let expected: BTreeSet<String> = ["etc/ssh/sshd_config", "srv/app/data.txt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(restored, expected);
    assert!(
        !restored_path(&t3, &src).join("srv/cache").exists(),
        "an excluded directory is not created"
    );
}

/// --verify reads back every written file, chunk by chunk and hole by hole (a mismatch is
/// covered by the unit tests of restore::verify, since a real restore writes correct bytes).
#[test]
fn verify_covers_multi_chunk_and_sparse_files() {
    let (env, src) = fresh();
    write_file(&src.join("big.bin"), &random_bytes(3, 5 << 20));
    {
        let f = fs::File::create(src.join("sparse.img")).unwrap();
        f.set_len(8 << 20).unwrap();
    }
    env.backup_json(&[&src], &[]);
    let t = env.path("t");
    let v = env.r_json(&restore_args(&at(&src), &t, &["--verify"]));
    assert_eq!(v["verified"], 2, "{v}");
    assert_trees_equal(&src, &t);
}

/// Restore reads by pack and opens each blob once: a blob shared by many files, and by several
/// offsets of one file, must land at every one of them; a hole between the copies stays a hole.
#[test]
fn a_blob_shared_by_many_files_and_offsets_lands_everywhere() {
    use std::os::unix::fs::MetadataExt;
    let (env, src) = fresh();
    let small = random_bytes(11, 40_000);
    for i in 0..40 {
        write_file(&src.join(format!("copies/c{i:02}")), &small);
    }
    // The same 6 MiB twice around an 8 MiB hole: content-defined chunks repeat in both copies.
    let block = random_bytes(12, 6 << 20);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(src.join("twice.img")).unwrap();
        f.write_all(&block).unwrap();
        f.seek(SeekFrom::Current(8 << 20)).unwrap();
        f.write_all(&block).unwrap();
    }
    write_file(&src.join("once.bin"), &block);
    env.backup_json(&[&src], &[]);
    let t = env.path("t");
    let v = env.r_json(&restore_args(&at(&src), &t, &["--verify"]));
    assert_eq!(v["verified"], 42, "{v}");
    assert_trees_equal(&src, &t);
    let restored = fs::symlink_metadata(t.join("twice.img")).unwrap();
    assert_eq!(restored.len(), (6 + 8 + 6) << 20);
    assert!(
        restored.blocks() * 512 < (14 << 20),
        "the hole was written: {} blocks",
        restored.blocks()
    );
}

fn backup_at(env: &Env, src: &Path, time: &str) -> String {
    let v = env.backup_json(&[src], &["--time", time]);
    v["snapshot_id"].as_str().unwrap().to_string()
}

#[test]
fn at_selects_the_snapshot_of_a_moment_and_find_shows_the_history() {
    let (env, src) = fresh();
    let file = src.join("db.sql");
    let mut ids = Vec::new();
    for (i, time) in [
        "2026-01-20 10:00 UTC",
        "2026-01-21 10:00 UTC",
        "2026-01-22 10:00 UTC",
    ]
    .iter()
    .enumerate()
    {
        write_file(&file, format!("version {i}\n").repeat(i + 1).as_bytes());
        ids.push(backup_at(&env, &src, time));
    }
    let times: Vec<String> = env
        .snapshots_json()
        .iter()
        .map(|s| s["time"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        times,
        [
            "2026-01-20T10:00:00.000000000Z",
            "2026-01-21T10:00:00.000000000Z",
            "2026-01-22T10:00:00.000000000Z"
        ]
    );
    let cat_at = |moment: &str| env.r_ok(&["cat", "--at", moment, &at(&file)]).stdout;
    assert_eq!(cat_at("2026-01-21 12:00 +00:00"), "version 1\n".repeat(2));
    assert_eq!(cat_at("2026-01-21T09:59:59Z"), "version 0\n");
    assert_eq!(cat_at("2026-01-23 UTC"), "version 2\n".repeat(3));
    let too_early = env.r(&["cat", "--at", "2026-01-19 UTC", &at(&file)]);
    too_early.assert_code(exit::USAGE);

    let found = env.r_json(&["find", "db.sql"]);
    let rows: Vec<(String, u64)> = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["path"].as_str().unwrap(), file.display().to_string());
            (
                m["snapshot_id"].as_str().unwrap().to_string(),
                m["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (ids[0].clone(), 10),
            (ids[1].clone(), 20),
            (ids[2].clone(), 30)
        ]
    );
    let limited = env.r_json(&["find", "db.sql", "--at", "2026-01-21 10:00 UTC"]);
    assert_eq!(limited["matches"].as_array().unwrap().len(), 2);
    let text = env.r_ok(&["find", "*.sql"]);
    assert_eq!(text.stdout.lines().count(), 3);
    assert!(
        text.stdout.lines().all(|l| l.ends_with("/db.sql")),
        "{}",
        text.stdout
    );
}

#[test]
fn find_searches_unchanged_subtrees_once() {
    let (env, src) = fresh();
    for d in 0..20 {
        for f in 0..5 {
            write_file(
                &src.join(format!("d{d}/f{f}.txt")),
                format!("{d}/{f}").as_bytes(),
            );
        }
    }
    for day in 10..16 {
        backup_at(&env, &src, &format!("2026-01-{day} 10:00 UTC"));
    }
    let found = env.r_json(&["find", "f3.txt"]);
    assert_eq!(found["matches"].as_array().unwrap().len(), 20 * 6);
    assert_eq!(found["snapshots_searched"], 6);
    // The source's 21 trees are searched once; only the levels above it (whose mtimes other
    // tests running in /tmp may change between backups) can differ per snapshot.
    let loaded = found["trees_loaded"].as_u64().unwrap();
    let depth = src.components().count() as u64;
    assert!(
        loaded <= 21 + 6 * depth && loaded < 6 * 21,
        "{loaded} trees loaded for six identical snapshots"
    );
}

#[test]
fn diff_reports_controlled_changes_without_reading_contents() {
    let (env, src) = fresh();
    write_file(&src.join("same/untouched.txt"), b"same\n");
    write_file(&src.join("content.txt"), b"before\n");
    write_file(&src.join("meta.txt"), b"meta\n");
    write_file(&src.join("removed.txt"), b"removed!\n");
    write_file(&src.join("becomes-dir"), b"file\n");
    let first = backup_at(&env, &src, "2026-02-01 10:00 UTC");

    write_file(&src.join("content.txt"), b"after, longer\n");
    fs::set_permissions(src.join("meta.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(src.join("removed.txt")).unwrap();
    write_file(&src.join("added/new.bin"), &[7u8; 1000]);
    fs::remove_file(src.join("becomes-dir")).unwrap();
    write_file(&src.join("becomes-dir/inner"), b"in\n");
    let second = backup_at(&env, &src, "2026-02-02 10:00 UTC");

    let v = env.r_json(&["diff", &first, &second]);
    let base = src.display().to_string();
    let changes: BTreeSet<(String, String)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            let path = c["path"].as_str().unwrap();
            let rel = path.strip_prefix(&format!("{base}/"))?;
            Some((rel.to_string(), c["change"].as_str().unwrap().to_string()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("added", "added"),
        ("added/new.bin", "added"),
        ("becomes-dir", "type"),
        ("becomes-dir/inner", "added"),
        ("content.txt", "content"),
        ("meta.txt", "metadata"),
        ("removed.txt", "removed"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(changes, expected);
    let s = &v["stats"];
    // new.bin and inner; the file that became a directory counts as removed bytes.
    assert_eq!(s["bytes_added"], 1000 + 3, "{s}");
    assert_eq!(s["bytes_removed"], 9 + 5, "{s}");
    assert_eq!(s["bytes_modified_before"], 7);
    assert_eq!(s["bytes_modified_after"], 14);
    assert!(
        s["trees_skipped"].as_u64().unwrap() >= 1,
        "the unchanged directory is skipped: {s}"
    );

    // Limited to a path, in text form.
    let out = env.r_ok(&["diff", &first, &second, &format!("{base}/becomes-dir")]);
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], format!("T    {base}/becomes-dir"));
    assert_eq!(lines[1], format!("+    {base}/becomes-dir/inner"));
    assert!(
        lines[2].contains("1 added") && lines[2].contains("1 type changed"),
        "{}",
        lines[2]
    );

    // A snapshot compared with itself has no differences and loads no tree below the root.
    let none = env.r_json(&["diff", &second, &second]);
    assert!(none["changes"].as_array().unwrap().is_empty());
    assert_eq!(none["stats"]["trees_skipped"], 1);
}

#[test]
fn diff_never_reads_data_packs() {
    let (env, src) = fresh();
    write_file(&src.join("f.bin"), &random_bytes(1, 2 << 20));
    let first = backup_at(&env, &src, "2026-03-01 10:00 UTC");
    write_file(&src.join("f.bin"), &random_bytes(2, 2 << 20));
    let second = backup_at(&env, &src, "2026-03-02 10:00 UTC");
    // Every pack of more than a few KiB holds data; delete them all.
    for pack in pack_files(&env.repo) {
        if fs::metadata(&pack).unwrap().len() > 64 * 1024 {
            fs::remove_file(&pack).unwrap();
        }
    }
    let v = env.r_json(&["diff", &first, &second]);
    assert_eq!(v["stats"]["content_modified"], 1, "{v}");
}

/// The acceptance bound of the issue: one 10 MB file out of a snapshot of many files reads a
/// small fraction of the repository, and a second look reads no tree from storage.
#[test]
fn cat_and_restore_of_one_file_read_a_small_fraction_of_the_repository() {
    let (env, src) = fresh();
    let wanted = random_bytes(42, 10_000_000);
    write_file(&src.join("db/dump.sql"), &wanted);
    for d in 0..40 {
        write_file(
            &src.join(format!("bulk/big{d}.bin")),
            &random_bytes(100 + d, 2 << 20),
        );
        for f in 0..50 {
            write_file(
                &src.join(format!("small/d{d}/f{f}")),
                &random_bytes(1000 * d + f, 4096),
            );
        }
    }
    env.backup_json(&[&src], &[]);
    let repo_bytes: u64 = files_under(&env.repo)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();

    let spec = at(&src.join("db/dump.sql"));
    let read_by = |out: &Output| -> u64 {
        let line = out.stderr.lines().find(|l| l.starts_with("read ")).unwrap();
        line.split(' ').nth(1).unwrap().parse().unwrap()
    };
    let first = env.r_ok(&["-v", "cat", &spec]);
    assert!(first.stdout_bytes == wanted, "cat returns the file");
    let cold = read_by(&first);
    let second = env.r_ok(&["-v", "cat", &spec]);
    let warm = read_by(&second);
    println!(
        "repository {repo_bytes} bytes; cat read {cold} bytes, then {warm} with the tree cache"
    );
    assert!(cold < 10_000_000 + 2_000_000, "cat read {cold} bytes");
    assert!(
        cold * 5 < repo_bytes,
        "cat read {cold} of {repo_bytes} bytes"
    );
    assert!(
        warm < cold,
        "trees come from the local cache the second time"
    );

    let target = env.path("one");
    let v = env.r_json(&restore_args(&spec, &target, &[]));
    let restored = v["repository_bytes_read"].as_u64().unwrap();
    assert!(
        restored < 10_000_000 + 2_000_000,
        "restore read {restored} bytes"
    );
    assert_eq!(fs::read(target.join("dump.sql")).unwrap(), wanted);

    // Listing reads trees only, and none at all once they are cached.
    let ls = env.r_json(&["ls", "-R", &at(&src.join("small"))]);
    assert_eq!(ls["entries"].as_array().unwrap().len(), 40 + 40 * 50);
    let again = env.r_json(&["ls", "-R", &at(&src.join("small"))]);
    let (cold, warm) = (
        ls["repository_bytes_read"].as_u64().unwrap(),
        again["repository_bytes_read"].as_u64().unwrap(),
    );
    assert!(
        warm < cold && cold < 1_000_000,
        "ls read {cold} then {warm} bytes"
    );
}

#[test]
fn a_damaged_tree_cache_is_detected_and_replaced() {
    let (env, src) = setup();
    let spec = at(&src.join("etc"));
    let good = env.r_ok(&["ls", &spec]).stdout;
    let cached = files_under(&env.cache_dir())
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "trees"))
        .collect::<Vec<_>>();
    assert!(!cached.is_empty(), "ls caches the trees it read");
    let originals: Vec<Vec<u8>> = cached.iter().map(|f| fs::read(f).unwrap()).collect();
    for file in &cached {
        flip_byte(file, 30);
    }
    assert_eq!(env.r_ok(&["ls", &spec]).stdout, good);
    let now: Vec<Vec<u8>> = cached.iter().map(|f| fs::read(f).unwrap()).collect();
    assert_eq!(
        now, originals,
        "damaged cache files are replaced by the repository's blobs"
    );
}

#[test]
fn cat_into_a_closed_pipe_is_not_an_error() {
    let (env, src) = fresh();
    write_file(&src.join("big.bin"), &random_bytes(5, 8 << 20));
    env.backup_json(&[&src], &[]);
    let mut cmd = env.command();
    cmd.args([
        OsStr::new("-r"),
        env.repo.as_os_str(),
        OsStr::new("cat"),
        OsStr::new(&at(&src.join("big.bin"))),
    ]);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout); // like `| head -c 100`
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&first[..], &random_bytes(5, 100)[..]);
}
