//! Regression: a directory nested ~1,500 levels deep overflowed the default thread stack during
//! backup (the walk recurses per level). It must back up and restore exactly.
//!
//! And snapshots far deeper than any file system path, written through the library: 100,000
//! levels made `find` overflow a stack, `ls -R` and `dump` copy a path per level (memory growing
//! with depth squared) and `diff` run for minutes. Every walker must take them with a stack on
//! the heap and memory linear in depth; restore refuses what lies beyond PATH_MAX, clearly.

use crate::common;

use std::process::Stdio;

use cairn::format::tree::{ContentItem, Node, NodeKind, Tree};
use cairn::BlobType;
use common::{exit, restored_path, write_file, Env};

const DEPTH: usize = 1500;

#[test]
fn very_deep_directories_back_up_and_restore() {
    let env = Env::new();
    let src = env.path("s");
    let mut deepest = src.clone();
    for _ in 0..DEPTH {
        deepest.push("d");
    }
    std::fs::create_dir_all(&deepest).unwrap();
    std::fs::write(deepest.join("leaf"), b"bottom").unwrap();

    env.init();
    env.r_ok(&[std::ffi::OsStr::new("backup"), src.as_os_str()]);
    let target = env.path("t");
    env.restore("latest", &target);
    let restored = restored_path(&target, &deepest);
    assert_eq!(std::fs::read(restored.join("leaf")).unwrap(), b"bottom");
}

/// The browsing commands walk as deep: with explicit stacks (ls, dump, locate) or on the
/// deep-stack worker pool (find, diff).
#[test]
fn very_deep_directories_browse() {
    let env = Env::new();
    let src = env.path("s");
    let mut deepest = src.clone();
    for _ in 0..DEPTH {
        deepest.push("d");
    }
    std::fs::create_dir_all(&deepest).unwrap();
    std::fs::write(deepest.join("leaf"), b"bottom").unwrap();
    env.init();
    let first = env.backup_json(&[&src], &[]);
    std::fs::write(deepest.join("leaf"), b"changed").unwrap();
    let second = env.backup_json(&[&src], &[]);

    let leaf = format!("latest:{}/leaf", deepest.display());
    assert_eq!(env.r_ok(&["cat", &leaf]).stdout, "changed");
    let listed = env.r_ok(&["ls", "-R", "latest"]);
    assert_eq!(
        listed.stdout.lines().count(),
        src.components().count() - 1 + DEPTH + 1
    );
    let found = env.r_json(&["find", "leaf"]);
    assert_eq!(found["matches"].as_array().unwrap().len(), 2);
    let diff = env.r_json(&[
        "diff",
        first["snapshot_id"].as_str().unwrap(),
        second["snapshot_id"].as_str().unwrap(),
    ]);
    assert_eq!(diff["stats"]["content_modified"], 1, "{diff}");
    let tar = env.r_ok(&["dump", "latest", "--format", "tar"]);
    assert!(tar.stdout_bytes.len() > DEPTH * 512);
}

/// Levels of the snapshots written through the library: 100,000 with CAIRN_SLOW_TESTS=1 (a
/// minute of work), else 10,000, still five times deeper than PATH_MAX lets a restore go.
fn hostile_depth() -> usize {
    if std::env::var_os("CAIRN_SLOW_TESTS").is_some() {
        100_000
    } else {
        10_000
    }
}

/// Writes, with the repository's real key, a snapshot of a directory `d` inside `d` ... `depth`
/// levels deep whose innermost directory holds the file `leaf` with `content`; returns its id.
fn deep_snapshot(env: &Env, depth: usize, content: &[u8]) -> String {
    let repo = common::open_indexed(env);
    let (_, template) = repo.repo().find_snapshot("latest").unwrap();
    let saver = repo.saver();
    let (blob, _) = saver.save(BlobType::Data, content).unwrap();
    let mut leaf = Node::new(b"leaf".to_vec(), NodeKind::File);
    leaf.mode = 0o644;
    leaf.size = content.len() as u64;
    leaf.links = 1;
    leaf.content = vec![ContentItem::Data {
        id: blob,
        len: content.len() as u32,
    }];
    let mut tree = Tree { nodes: vec![leaf] };
    for _ in 0..depth {
        let (id, _) = saver.save(BlobType::Tree, &tree.encode().unwrap()).unwrap();
        let mut dir = Node::new(b"d".to_vec(), NodeKind::Dir);
        dir.mode = 0o755;
        dir.subtree = Some(id);
        tree = Tree { nodes: vec![dir] };
    }
    let (root, _) = saver.save(BlobType::Tree, &tree.encode().unwrap()).unwrap();
    saver.finish().unwrap();
    let mut snap = template.clone();
    snap.tree = root.to_hex();
    snap.time = format!("2030-01-01T00:00:{:02}Z", content.len() % 60);
    repo.repo().save_snapshot(&snap).unwrap().to_hex()
}

/// A repository holding two hostile snapshots `depth` levels deep that differ in the leaf only.
fn two_deep_snapshots(depth: usize) -> (Env, String, String) {
    let env = Env::new();
    env.init();
    let template = env.path("template");
    write_file(&template.join("x"), b"x");
    env.backup_json(&[&template], &[]);
    let first = deep_snapshot(&env, depth, b"bottom");
    let second = deep_snapshot(&env, depth, b"changed!");
    (env, first, second)
}

/// Runs cairn with its output thrown away (it grows with depth squared); returns the exit code.
fn run_quietly(env: &Env, args: &[&str]) -> i32 {
    let status = env
        .command()
        .arg("-r")
        .arg(&env.repo)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    status.code().unwrap_or(-1)
}

#[test]
fn snapshots_far_deeper_than_path_max_are_walked_without_recursion() {
    let depth = hostile_depth();
    let (env, first, second) = two_deep_snapshots(depth);

    let found = env.r_json(&["find", "leaf"]);
    let matches = found["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 2, "{}", found["pattern"]);
    let path = matches[0]["path"].as_str().unwrap();
    assert_eq!(path.len(), depth * 2 + "/leaf".len());

    let diff = env.r_json(&["diff", &first, &second]);
    assert_eq!(diff["stats"]["content_modified"], 1);
    assert_eq!(diff["stats"]["added"], 0);
    assert_eq!(diff["stats"]["removed"], 0);

    let check = env.r_ok(&["check"]);
    assert!(check.stdout.contains("no problems"), "{}", check.describe());

    if let Some(keep) = std::env::var_os("CAIRN_KEEP_DEEP_REPO") {
        // For measuring the commands by hand: the repository outlives the test.
        std::fs::rename(&env.repo, keep).unwrap();
        return;
    }

    // Restore refuses, clearly, the first directory whose path would pass PATH_MAX.
    let target = env.path("t");
    let restore = env.r(&["restore", &second, "--target", target.to_str().unwrap()]);
    restore.assert_code(exit::USAGE);
    assert!(
        restore.stderr.contains("PATH_MAX") && restore.stderr.contains("/d/d/d"),
        "{}",
        restore.describe()
    );
    assert!(restore.stderr.len() < 2000, "{}", restore.stderr.len());

    env.r_ok(&["forget", "--keep-last", "1"]);
    env.r_ok(&["prune"]);
    let check = env.r_ok(&["check"]);
    assert!(check.stdout.contains("no problems"), "{}", check.describe());
}

/// `ls -R` and `dump` print every path, so their output grows with depth squared: here at a depth
/// the output keeps small; at 100,000 levels with CAIRN_SLOW_TESTS=1 (gigabytes of output).
#[test]
fn deep_snapshots_list_and_dump() {
    let slow = std::env::var_os("CAIRN_SLOW_TESTS").is_some();
    let depth = if slow { hostile_depth() } else { 3_000 };
    let (env, _first, second) = two_deep_snapshots(depth);
    if slow {
        assert_eq!(run_quietly(&env, &["ls", "-R", &second]), exit::OK);
        assert_eq!(
            run_quietly(&env, &["dump", &second, "--format", "tar"]),
            exit::OK
        );
        return;
    }
    let listed = env.r_ok(&["ls", "-R", &second]);
    assert_eq!(listed.stdout.lines().count(), depth + 1);
    let tar = env.r_ok(&["dump", &second, "--format", "tar"]);
    assert!(tar.stdout_bytes.len() > depth * 512);
}
