//! Backup → restore must reproduce the source tree exactly: content, types,
//! permissions, ownership, nanosecond mtimes, xattrs, hardlinks, sparseness
//! and awkward names.

use crate::common;

use common::compare::{assert_trees_equal, compare_trees};
use common::tree::{build_full_tree, is_root, name, xattrs_supported};
use common::*;
use filetime::FileTime;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

#[test]
fn full_tree_roundtrip_is_exact() {
    let env = Env::new();
    let src = env.path("src");
    build_full_tree(&src, true);
    // Sanity: the source really is sparse, so the sparse check is meaningful.
    {
        use std::os::unix::fs::MetadataExt;
        let m = fs::symlink_metadata(src.join("sparse.img")).unwrap();
        assert!(
            m.blocks() * 512 < m.len() / 4,
            "test setup: sparse.img is not sparse"
        );
    }

    env.init();
    let b = env.backup_json(&[&src], &[]);
    assert!(b["parent"].is_null(), "first backup has no parent: {b}");
    assert!(
        b["summary"]["errors"].as_array().unwrap().is_empty(),
        "backup of a readable tree must report no errors: {b}"
    );
    assert!(
        b["summary"]["files_new"].as_u64().unwrap() >= 30,
        "files_new should count the files of the tree: {b}"
    );

    env.assert_restores_exactly("latest", &src, "dst");
}

/// The comparer itself must detect differences (guards against a comparer
/// that silently passes everything).
#[test]
fn comparer_detects_differences() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b");
    for d in [&a, &b] {
        write_file(&d.join("f"), b"same");
        write_file(&d.join("g"), b"same");
        fs::create_dir(d.join("dir")).unwrap();
    }
    let t = FileTime::from_unix_time(1_600_000_000, 5);
    for d in [&a, &b] {
        for n in ["f", "g", "dir", ""] {
            filetime::set_file_times(d.join(n), t, t).unwrap();
        }
    }
    assert!(
        compare_trees(&a, &b).is_empty(),
        "{:?}",
        compare_trees(&a, &b)
    );

    // content
    fs::write(b.join("f"), b"samE").unwrap();
    filetime::set_file_times(b.join("f"), t, t).unwrap();
    assert!(compare_trees(&a, &b)
        .iter()
        .any(|d| d.contains("content differs")));
    fs::write(b.join("f"), b"same").unwrap();
    // mtime nanos
    filetime::set_file_times(b.join("f"), t, FileTime::from_unix_time(1_600_000_000, 6)).unwrap();
    assert!(compare_trees(&a, &b).iter().any(|d| d.contains("mtime")));
    filetime::set_file_times(b.join("f"), t, t).unwrap();
    // mode
    fs::set_permissions(b.join("g"), fs::Permissions::from_mode(0o4644)).unwrap();
    assert!(compare_trees(&a, &b).iter().any(|d| d.contains("mode")));
    fs::set_permissions(b.join("g"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(a.join("g"), fs::Permissions::from_mode(0o644)).unwrap();
    // hardlink structure
    fs::remove_file(b.join("g")).unwrap();
    fs::hard_link(b.join("f"), b.join("g")).unwrap();
    filetime::set_file_times(b.join(""), t, t).unwrap();
    let d = compare_trees(&a, &b);
    assert!(
        d.iter()
            .any(|d| d.contains("inode") || d.contains("link count")),
        "{d:?}"
    );
    // non-UTF-8 names
    fs::write(a.join(name(b"x\xff")), b"").unwrap();
    fs::write(b.join(name(b"x\xfe")), b"").unwrap();
    let d = compare_trees(&a, &b);
    assert!(d.iter().any(|d| d.contains("missing")), "{d:?}");
    assert!(d.iter().any(|d| d.contains("extra")), "{d:?}");
}

fn snapshot_ids(env: &Env) -> Vec<String> {
    env.snapshots_json()
        .iter()
        .map(|s| s["id"].as_str().expect("snapshot id").to_string())
        .collect()
}

/// Shortest prefix (>= 4 chars) of `id` that no other id shares.
fn unique_prefix(id: &str, all: &[String]) -> String {
    for n in 4..=id.len() {
        let p = &id[..n];
        if all.iter().filter(|o| o.starts_with(p)).count() == 1 {
            return p.to_string();
        }
    }
    unreachable!()
}

#[test]
fn restore_older_snapshot_by_unique_id_prefix() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("a/file.txt"), b"version one\n");
    write_file(&src.join("b.bin"), &random_bytes(10, 200_000));
    env.init();
    let first = env.backup_json(&[&src], &[]);
    let first_id = first["snapshot_id"].as_str().unwrap().to_string();

    // Change the tree, back up again.
    fs::write(src.join("a/file.txt"), b"version two, longer\n").unwrap();
    fs::remove_file(src.join("b.bin")).unwrap();
    write_file(&src.join("c/new.txt"), b"new file\n");
    let second = env.backup_json(&[&src], &[]);
    let second_id = second["snapshot_id"].as_str().unwrap().to_string();
    assert_ne!(first_id, second_id);
    assert_eq!(
        second["parent"].as_str(),
        Some(first_id.as_str()),
        "second backup of the same path should name the first as parent"
    );

    let ids = snapshot_ids(&env);
    assert_eq!(ids.len(), 2, "two snapshots expected, got {ids:?}");
    assert!(
        ids.contains(&first_id) && ids.contains(&second_id),
        "{ids:?}"
    );

    // Restore the FIRST snapshot by its unique prefix.
    let prefix = unique_prefix(&first_id, &ids);
    let dst = env.path("dst-old");
    env.restore(&prefix, &dst);
    let r = restored_path(&dst, &src);
    assert_eq!(fs::read(r.join("a/file.txt")).unwrap(), b"version one\n");
    assert_eq!(
        fs::read(r.join("b.bin")).unwrap(),
        random_bytes(10, 200_000)
    );
    assert!(
        !r.join("c").exists(),
        "c/ did not exist in the first snapshot"
    );

    // Intermediate directories of the absolute source path exist as real dirs.
    let mut p = dst.clone();
    for comp in src.strip_prefix("/").unwrap().components() {
        p.push(comp);
        let m = fs::symlink_metadata(&p)
            .unwrap_or_else(|e| panic!("intermediate dir {} missing: {e}", p.display()));
        assert!(m.is_dir(), "{} should be a directory", p.display());
    }

    // Restore the second by its full id, and by `latest`: both the new state.
    let dst2 = env.path("dst-full-id");
    env.restore(&second_id, &dst2);
    let dst3 = env.path("dst-latest");
    env.restore("latest", &dst3);
    for d in [&dst2, &dst3] {
        let r = restored_path(d, &src);
        assert_eq!(
            fs::read(r.join("a/file.txt")).unwrap(),
            b"version two, longer\n"
        );
        assert!(!r.join("b.bin").exists());
        assert_eq!(fs::read(r.join("c/new.txt")).unwrap(), b"new file\n");
        assert_trees_equal(&src, &r);
    }
}

#[test]
fn unknown_snapshot_prefix_is_usage_error() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("f"), b"data");
    env.init();
    let b = env.backup_json(&[&src], &[]);
    let id = b["snapshot_id"].as_str().unwrap();
    // A hex prefix that does not match the only snapshot.
    let first = id.chars().next().unwrap();
    let other = if first == '0' { "1" } else { "0" };
    let bogus = format!("{other}{}", &id[1..8]);
    let dst = env.path("dst");
    let out = env.r(&[
        OsStr::new("restore"),
        OsStr::new(&bogus),
        OsStr::new("--target"),
        dst.as_os_str(),
    ]);
    out.assert_code(exit::USAGE);
    assert!(
        !dst.exists() || fs::read_dir(&dst).unwrap().next().is_none(),
        "nothing may be restored for an unknown snapshot"
    );
}

/// Backing up several source paths at once restores each at its absolute path.
#[test]
fn multiple_sources_restore_at_their_absolute_paths() {
    let env = Env::new();
    let s1 = env.path("one/src");
    let s2 = env.path("two/other");
    write_file(&s1.join("x"), b"x-data");
    write_file(&s2.join("y/z"), &random_bytes(20, 50_000));
    let single = env.path("single-file.txt");
    write_file(&single, b"a single file as source\n");
    let t = FileTime::from_unix_time(1_234_567_890, 42);
    filetime::set_file_times(&single, t, t).unwrap();

    env.init();
    env.backup_json(&[&s1, &s2, &single], &[]);
    let snaps = env.snapshots_json();
    assert_eq!(snaps.len(), 1);
    let paths: Vec<PathBuf> = snaps[0]["paths"]
        .as_array()
        .expect("paths array")
        .iter()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect();
    for s in [&s1, &s2, &single] {
        assert!(
            paths.contains(s),
            "paths {paths:?} should contain {}",
            s.display()
        );
    }

    let dst = env.path("dst");
    env.restore("latest", &dst);
    assert_trees_equal(&s1, &restored_path(&dst, &s1));
    assert_trees_equal(&s2, &restored_path(&dst, &s2));
    let rs = restored_path(&dst, &single);
    assert_eq!(fs::read(&rs).unwrap(), b"a single file as source\n");
    let m = fs::metadata(&rs).unwrap();
    assert_eq!(FileTime::from_last_modification_time(&m), t);
    // Nothing else from the temp root (e.g. the repository) got in.
    let root_r = restored_path(&dst, &env.root());
    let mut names: Vec<OsString> = fs::read_dir(&root_r)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            OsString::from("one"),
            OsString::from("single-file.txt"),
            OsString::from("two")
        ]
    );
}

/// A file whose content did not change but whose metadata did (mode, owner,
/// xattrs, mtime) must get the new metadata in the next snapshot, even though
/// its data is reused from the parent snapshot.
#[test]
fn metadata_only_changes_are_captured_in_next_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    let with_xattrs = xattrs_supported(&env.root());
    for n in ["mode", "owner", "xattr", "mtime", "untouched"] {
        write_file(&src.join(n), &random_bytes(n.len() as u64, 20_000));
    }
    fs::create_dir(src.join("dir")).unwrap();
    if with_xattrs {
        xattr::set(src.join("xattr"), "user.v", b"one").unwrap();
    }
    let t = FileTime::from_unix_time(1_600_000_000, 111);
    for n in ["mode", "owner", "xattr", "mtime", "untouched", "dir", ""] {
        filetime::set_file_times(src.join(n), t, t).unwrap();
    }
    env.init();
    let b1 = env.backup_json(&[&src], &[]);

    fs::set_permissions(src.join("mode"), fs::Permissions::from_mode(0o4700)).unwrap();
    fs::set_permissions(src.join("dir"), fs::Permissions::from_mode(0o1750)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(src.join("owner"), Some(4242), Some(2424)).unwrap();
    }
    if with_xattrs {
        xattr::set(src.join("xattr"), "user.v", b"two").unwrap();
        xattr::set(src.join("xattr"), "user.added", b"new").unwrap();
    }
    filetime::set_file_times(
        src.join("mtime"),
        t,
        FileTime::from_unix_time(1_600_000_000, 222),
    )
    .unwrap();
    let b2 = env.backup_json(&[&src], &[]);
    assert_eq!(b2["parent"].as_str(), b1["snapshot_id"].as_str(), "{b2}");
    assert!(
        b2["summary"]["bytes_added"].as_u64().unwrap() < 20_000,
        "metadata-only changes must not re-store file data: {b2}"
    );

    env.assert_restores_exactly("latest", &src, "dst");
}

/// Content rewritten in place with the same size and the mtime put back
/// (as tools like rsync or tar do): the inode change time still changes, so
/// the next backup must store the new content.
#[test]
fn same_size_same_mtime_rewrite_is_detected() {
    let env = Env::new();
    let src = env.path("src");
    let f = src.join("f.bin");
    write_file(&f, &random_bytes(1, 100_000));
    let t = FileTime::from_unix_time(1_600_000_000, 0);
    filetime::set_file_times(&f, t, t).unwrap();
    env.init();
    env.backup_json(&[&src], &[]);
    // Make sure ctime moves to a different second/nanosecond.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&f, random_bytes(2, 100_000)).unwrap();
    filetime::set_file_times(&f, t, t).unwrap();
    env.backup_json(&[&src], &[]);
    let dst = env.path("dst");
    env.restore("latest", &dst);
    let got = fs::read(restored_path(&dst, &src).join("f.bin")).unwrap();
    assert!(
        got == random_bytes(2, 100_000),
        "latest snapshot restored the OLD content of a file rewritten with the same size and mtime \
         (change detection must also consider ctime/inode)"
    );
}

/// Character and block device nodes (root only) keep their type and numbers.
#[test]
fn device_nodes_roundtrip() {
    if !is_root() {
        println!("NOTE: not root; device nodes skipped");
        return;
    }
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let perm = Mode::from_bits_truncate(0o640);
    mknod(&src.join("null-like"), SFlag::S_IFCHR, perm, makedev(1, 3)).unwrap();
    mknod(&src.join("blk"), SFlag::S_IFBLK, perm, makedev(7, 200)).unwrap();
    let t = FileTime::from_unix_time(1_600_000_000, 424_242);
    for n in ["null-like", "blk", ""] {
        filetime::set_symlink_file_times(src.join(n), t, t).unwrap();
    }
    env.init();
    env.backup_json(&[&src], &[]);
    env.assert_restores_exactly("latest", &src, "dst");
}

/// Files whose chunks lie in several packs are finished by whichever thread writes their last
/// chunk, which then applies their metadata through the open file: read-only and setuid modes,
/// xattrs and mtimes must come out exact all the same, and a mode without write permission must
/// not stop a later chunk from being written.
#[test]
fn files_spread_over_many_packs_get_exact_metadata_after_their_last_write() {
    let env = Env::new();
    env.r_ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    let with_xattrs = xattrs_supported(&env.root());
    for (i, mode) in [0o400, 0o444, 0o4755, 0o600, 0o2711, 0o644]
        .into_iter()
        .enumerate()
    {
        let path = src.join(format!("f{i}.bin"));
        write_file(&path, &random_bytes(100 + i as u64, 4 << 20));
        if with_xattrs {
            xattr::set(&path, "user.k", format!("value {i}").as_bytes()).unwrap();
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let mtime = FileTime::from_unix_time(1_600_000_000 + i as i64, 123_456_789);
        filetime::set_file_mtime(&path, mtime).unwrap();
    }
    env.backup_json(&[&src], &[]);
    assert!(
        pack_files(&env.repo).len() >= 12,
        "test setup: the chunks must spread over many packs"
    );
    env.assert_restores_exactly("latest", &src, "dst");
}

/// A restore plans and writes files a batch at a time, so its memory does not grow with the size of
/// the snapshot. With batches of two files, hardlinks whose names fall in different batches, files
/// sharing their contents, directory times, xattrs and the sparse file must still come back exact.
#[test]
fn a_restore_written_in_batches_of_two_files_is_exact() {
    use cairn::backend::LocalBackend;
    use cairn::restore::{restore, RestoreOptions, RestoreProgress};
    use cairn::Repository;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Batches {
        announced: AtomicU64,
        files: AtomicU64,
    }
    impl RestoreProgress for Batches {
        fn planned(&self, files: u64, _bytes: u64) {
            self.announced.fetch_add(1, Ordering::SeqCst);
            self.files.fetch_add(files, Ordering::SeqCst);
        }
    }

    let env = Env::new();
    let src = env.path("src");
    build_full_tree(&src, true);
    env.init();
    env.backup_json(&[&src], &[]);
    let repo = Repository::open(
        Box::new(LocalBackend::new(&env.repo)),
        env.password.as_bytes(),
        &env.cache_dir(),
    )
    .unwrap()
    .into_indexed()
    .unwrap();
    let snapshots = repo.repo().snapshots().unwrap();
    let target = env.path("dst");
    let options = RestoreOptions {
        files_per_batch: Some(2),
        ..Default::default()
    };
    let batches = Batches::default();
    let stats = restore(
        &repo,
        &snapshots[0].1.tree_id(),
        &target,
        &options,
        &batches,
    )
    .unwrap();
    assert_trees_equal(&src, &restored_path(&target, &src));
    let announced = batches.announced.load(Ordering::SeqCst);
    let planned = batches.files.load(Ordering::SeqCst);
    assert!(
        announced as f64 >= planned as f64 / 2.0 && planned >= 20,
        "{planned} files should have been announced two at a time, got {announced} batches"
    );
    // Hardlinks are made after all batches from the first name written: they count as files too.
    assert!(stats.files >= planned, "{stats:?}");
}
