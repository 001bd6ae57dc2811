//! Hostile repositories: well-formed objects, sealed with the real key through the library, that
//! describe something absurd. A tree whose entries point at the same subtree over and over, level
//! after level (a DAG bomb: trillions of paths from a few hundred bytes); files of petabyte holes
//! and hole lengths that overflow when added; snapshot counters at their maximum. Every command must
//! finish in bounded time and memory (a generous timeout guards the tests), fail with a clear error
//! rather than a panic, and write nothing outside the restore target.

use crate::common;

use std::path::{Path, PathBuf};

use cairn::backend::LocalBackend;
use cairn::crypto::KdfParams;
use cairn::format::config::Config;
use cairn::format::snapshot::Summary;
use cairn::format::tree::{ContentItem, Node, NodeKind, Tree};
use cairn::{BlobType, IndexedRepository, Repository, Snapshot, TreeId};
use common::{exit, Env, Output, PASSWORD};

fn init(env: &Env) -> IndexedRepository {
    Repository::init(
        Box::new(LocalBackend::new(&env.repo)),
        PASSWORD.as_bytes(),
        KdfParams::MINIMUM,
        Config::generate().unwrap(),
        &env.cache_dir(),
    )
    .unwrap()
    .into_indexed()
    .unwrap()
}

fn file(name: &str, content: Vec<ContentItem>, size: u64) -> Node {
    let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
    node.mode = 0o644;
    node.size = size;
    node.content = content;
    node
}

fn dir(name: &str, subtree: TreeId) -> Node {
    let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
    node.mode = 0o755;
    node.subtree = Some(subtree);
    node
}

/// Stores `nodes` as a tree through the repository's saver.
fn store_tree(repo: &IndexedRepository, mut nodes: Vec<Node>) -> TreeId {
    let saver = repo.saver();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let bytes = Tree { nodes }.encode().unwrap();
    let (id, _) = saver.save(BlobType::Tree, &bytes).unwrap();
    saver.finish().unwrap();
    id
}

/// Writes a snapshot of `root` with `summary`; returns its id.
fn snapshot(repo: &IndexedRepository, root: TreeId, summary: Summary) -> String {
    let snap = Snapshot {
        time: "2030-01-01T00:00:00.000000000Z".into(),
        host: "hostile".into(),
        username: "mallory".into(),
        paths: vec!["/".into()],
        tags: Vec::new(),
        tree: root.to_hex(),
        parent: None,
        program_version: "cairn 0.1.0".into(),
        summary,
        repaired_from: None,
        postgres: None,
        job: None,
    };
    repo.repo().save_snapshot(&snap).unwrap().to_hex()
}

/// Fails on a panic or a kill (the harness kills a command after its timeout).
fn no_crash(out: Output) -> Output {
    assert!(
        out.code >= 0 && out.code != 101 && !out.stderr.contains("panicked"),
        "the command crashed or hung\n{}",
        out.describe()
    );
    out
}

/// Everything under the test's root except the target, the repository and the cache.
fn outside(env: &Env, target: &Path) -> Vec<PathBuf> {
    common::files_under(&env.root())
        .into_iter()
        .filter(|p| {
            !p.starts_with(target) && !p.starts_with(&env.repo) && !p.starts_with(env.cache_dir())
        })
        .collect()
}

/// A DAG bomb: `levels` levels of `fanout` entries each pointing at the level below, a small file
/// at the bottom: `fanout^levels` paths from `levels` trees.
fn dag_bomb(repo: &IndexedRepository, levels: u32, fanout: usize) -> TreeId {
    let saver = repo.saver();
    let (blob, _) = saver.save(BlobType::Data, b"bottom").unwrap();
    saver.finish().unwrap();
    let mut tree = store_tree(
        repo,
        vec![file("f", vec![ContentItem::Data { id: blob, len: 6 }], 6)],
    );
    for _ in 0..levels {
        let nodes = (0..fanout)
            .map(|i| dir(&format!("d{i:02}"), tree))
            .collect();
        tree = store_tree(repo, nodes);
    }
    tree
}

#[test]
fn check_and_prune_visit_each_tree_of_a_dag_bomb_once() {
    // 16^12 = 2.8e14 paths from 13 trees.
    let env = Env::new();
    let repo = init(&env);
    let root = dag_bomb(&repo, 12, 16);
    let id = snapshot(&repo, root, Summary::default());
    drop(repo);
    let out = no_crash(env.r(&["--json", "check", "--read-data"]));
    out.assert_success();
    let report = out.json();
    assert_eq!(
        report["trees"], 13,
        "check walks each distinct tree once: {report}"
    );
    no_crash(env.r(&["prune", "--grace", "0h", "--clock-skew", "0h", "-q"])).assert_success();
    // One path of the bomb, looked up directly.
    let deep: String = (0..12).map(|_| "/d15").collect::<String>() + "/f";
    let cat = no_crash(env.r(&["cat", &format!("{id}:{deep}")]));
    cat.assert_success();
    assert_eq!(cat.stdout_bytes, b"bottom");
}

#[test]
fn a_restore_of_a_small_dag_bomb_writes_every_path_and_nothing_else() {
    // 8^4 = 4096 files from 5 trees: restore expands it, correctly.
    let env = Env::new();
    let repo = init(&env);
    let root = dag_bomb(&repo, 4, 8);
    let id = snapshot(&repo, root, Summary::default());
    drop(repo);
    let target = env.path("target");
    no_crash(env.r(&["restore", &id, "--target", target.to_str().unwrap()])).assert_success();
    let files = common::files_under(&target);
    assert_eq!(files.len(), 4096);
    assert!(files.iter().all(|f| std::fs::read(f).unwrap() == b"bottom"));
    assert!(
        outside(&env, &target).is_empty(),
        "{:?}",
        outside(&env, &target)
    );
}

#[test]
fn a_restore_of_one_path_of_a_dag_bomb_does_not_walk_the_rest() {
    let env = Env::new();
    let repo = init(&env);
    let root = dag_bomb(&repo, 12, 16);
    let id = snapshot(&repo, root, Summary::default());
    drop(repo);
    let target = env.path("target");
    let deep: String = (0..12).map(|_| "/d03").collect::<String>();
    no_crash(env.r(&[
        "restore",
        &format!("{id}:{deep}"),
        "--target",
        target.to_str().unwrap(),
    ]))
    .assert_success();
    let files = common::files_under(&target);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), b"bottom");
}

#[test]
fn a_file_of_a_petabyte_hole_restores_sparse_or_fails_cleanly() {
    let env = Env::new();
    let repo = init(&env);
    const PETABYTE: u64 = 1 << 50;
    let root = store_tree(
        &repo,
        vec![file(
            "huge",
            vec![ContentItem::Hole { len: PETABYTE }; 4],
            4 * PETABYTE,
        )],
    );
    let id = snapshot(&repo, root, Summary::default());
    drop(repo);
    no_crash(env.r(&["check", "--read-data"])).assert_success();
    no_crash(env.r(&["ls", "-l", id.as_str()])).assert_success();
    let target = env.path("target");
    let out = no_crash(env.r(&["restore", &id, "--target", target.to_str().unwrap()]));
    if out.code == exit::OK {
        // Four petabytes are allowed only if they really are a hole.
        for f in common::files_under(&target) {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&f).unwrap();
            assert!(
                m.blocks() * 512 < 1 << 20,
                "{} takes {} blocks",
                f.display(),
                m.blocks()
            );
        }
    } else {
        assert!(
            out.stderr.contains("huge"),
            "a failed restore names the file\n{}",
            out.describe()
        );
    }
    assert!(
        outside(&env, &target).is_empty(),
        "{:?}",
        outside(&env, &target)
    );
}

#[test]
fn hole_lengths_that_overflow_or_disagree_with_the_size_are_damage_not_panics() {
    let env = Env::new();
    let repo = init(&env);
    let cases = [
        file(
            "overflow",
            vec![ContentItem::Hole { len: u64::MAX }; 2],
            u64::MAX,
        ),
        file("liar", vec![ContentItem::Hole { len: 10 }], u64::MAX),
        file("short", vec![ContentItem::Hole { len: u64::MAX }], 10),
    ];
    for node in cases {
        let name = String::from_utf8(node.name.clone()).unwrap();
        let root = store_tree(&repo, vec![node]);
        let id = snapshot(&repo, root, Summary::default());
        let target = env.path(&format!("target-{name}"));
        let target_arg = target.to_str().unwrap().to_string();
        let cat_arg = format!("{id}:/{name}");
        for args in [
            vec!["ls", "-l", id.as_str()],
            vec!["cat", cat_arg.as_str()],
            vec!["restore", id.as_str(), "--target", target_arg.as_str()],
        ] {
            let out = no_crash(env.r(&args));
            assert_eq!(out.code, exit::DAMAGED, "{name}\n{}", out.describe());
            assert!(
                out.stderr.contains(&root.to_hex()),
                "names the tree\n{}",
                out.describe()
            );
        }
        assert!(!target.exists() || common::files_under(&target).is_empty());
    }
    drop(repo);
    let check = no_crash(env.r(&["check"]));
    assert_eq!(check.code, exit::DAMAGED, "{}", check.describe());
}

#[test]
fn snapshot_counters_at_their_maximum_are_shown_without_overflow() {
    let env = Env::new();
    let repo = init(&env);
    let root = store_tree(&repo, vec![file("empty", Vec::new(), 0)]);
    let summary = Summary {
        files_new: u64::MAX,
        files_changed: u64::MAX,
        files_unchanged: u64::MAX,
        dirs_new: u64::MAX,
        dirs_changed: u64::MAX,
        dirs_unchanged: u64::MAX,
        bytes_read: u64::MAX,
        bytes_added: u64::MAX,
        blobs_added: u64::MAX,
        total_bytes: Some(u64::MAX),
        duration_secs: f64::MAX,
        ..Default::default()
    };
    for _ in 0..3 {
        snapshot(&repo, root, summary.clone());
    }
    drop(repo);
    for args in [
        vec!["snapshots"],
        vec!["--json", "snapshots"],
        vec!["status"],
        vec!["--json", "status"],
        vec!["check"],
        vec!["forget", "--keep-last", "1", "--dry-run"],
    ] {
        no_crash(env.r(&args));
    }
}
