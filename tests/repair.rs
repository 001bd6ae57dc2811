//! `check` against each kind of damage, and `repair index` / `repair snapshots` end to end: real
//! repositories made through the CLI, damaged on disk, repaired, checked and restored. Also: a repair
//! interrupted at every write never adds a problem that `check` finds.

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cairn::backend::{Backend, LocalBackend, ObjectKind};
use cairn::check::{check, CheckOptions};
use cairn::format::index_file::IndexFile;
use cairn::format::tree::NodeKind;
use cairn::id::{BlobType, IndexId};
use cairn::ops::repair::{self, NoRepairProgress, SnapshotRepairOptions};
use cairn::repo::lease;
use cairn::{IndexedRepository, Repository};
use common::failing::FailingBackend;
use common::{exit, files_under, random_bytes, restored_path, tree_listing, write_file, Env};

/// A repository with two snapshots of `src`: the first holds `keep/`, the second adds `lose/`, whose
/// data lands in packs of its own. Returns the source and the data pack only the second backup wrote.
fn two_backups(env: &Env) -> (PathBuf, PathBuf) {
    env.init();
    let src = env.path("src");
    write_file(&src.join("keep/a.bin"), &random_bytes(1, 120_000));
    write_file(&src.join("keep/small.txt"), b"hello");
    env.backup_json(&[&src], &[]);
    let before: HashSet<PathBuf> = common::pack_files(&env.repo).into_iter().collect();
    write_file(&src.join("lose/b.bin"), &random_bytes(2, 150_000));
    write_file(&src.join("lose/deep/c.txt"), b"gone");
    env.backup_json(&[&src], &[]);
    let data_pack = common::pack_files(&env.repo)
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    (src, data_pack)
}

fn open(env: &Env) -> IndexedRepository {
    let backend = LocalBackend::new(&env.repo);
    Repository::open(
        Box::new(backend),
        common::PASSWORD.as_bytes(),
        &env.cache_dir(),
    )
    .unwrap()
    .into_indexed()
    .unwrap()
}

/// `cairn check` must fail with exit code 4 and print every one of `needles` (in one line each).
fn assert_check_finds(env: &Env, needles: &[&str]) -> String {
    let out = env.r(&["check"]);
    out.assert_code(exit::DAMAGED);
    for needle in needles {
        assert!(
            out.stderr.lines().any(|l| l.contains(needle)),
            "check should report {needle:?}\n{}",
            out.describe()
        );
    }
    out.stderr
}

fn assert_check_passes(env: &Env) {
    let out = env.r_ok(&["check"]);
    assert!(out.stdout.contains("no problems"), "{}", out.describe());
}

fn restore_listing(
    env: &Env,
    snap: &str,
    src: &Path,
    name: &str,
) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let target = env.path(name);
    env.restore(snap, &target);
    tree_listing(&restored_path(&target, src))
}

#[test]
fn check_reports_a_truncated_pack_with_the_files_it_affects() {
    let env = Env::new();
    let (_src, data_pack) = two_backups(&env);
    let bytes = std::fs::read(&data_pack).unwrap();
    std::fs::write(&data_pack, &bytes[..bytes.len() / 2]).unwrap();
    let name = common::file_name_str(&data_pack);
    assert_check_finds(&env, &[&format!("pack {name}"), "file /", "lose/b.bin"]);
}

#[test]
fn check_reports_a_dangling_tree_reference() {
    let env = Env::new();
    let (src, _) = two_backups(&env);
    let repo = open(&env);
    let (_, snap) = repo.repo().find_snapshot("latest").unwrap();
    // Walk down to the tree of `src` and point its `lose` entry at a tree that was never stored.
    let mut chain = vec![repo.load_tree(&snap.tree_id()).unwrap()];
    for part in src.strip_prefix("/").unwrap().components() {
        let node = chain
            .last()
            .unwrap()
            .find(part.as_os_str().as_encoded_bytes())
            .unwrap();
        chain.push(repo.load_tree(&node.subtree.unwrap()).unwrap());
    }
    let bogus = cairn::BlobId([0x5a; 32]);
    let saver = repo.saver();
    let mut names: Vec<Vec<u8>> = src
        .strip_prefix("/")
        .unwrap()
        .components()
        .map(|c| c.as_os_str().as_encoded_bytes().to_vec())
        .collect();
    names.push(b"lose".to_vec());
    let mut child = bogus;
    for (tree, name) in chain.iter_mut().zip(names.iter()).rev() {
        let node = tree.nodes.iter_mut().find(|n| &n.name == name).unwrap();
        assert_eq!(node.kind, NodeKind::Dir);
        node.subtree = Some(child);
        child = saver
            .save(BlobType::Tree, &tree.encode().unwrap())
            .unwrap()
            .0;
    }
    saver.finish().unwrap();
    let mut dangling = snap.clone();
    dangling.tree = child.to_hex();
    let id = repo.repo().save_snapshot(&dangling).unwrap();

    let stderr = assert_check_finds(
        &env,
        &[&format!(
            "snapshot {} path {}/lose/: tree blob {bogus} is not in the index",
            id.short(),
            src.display()
        )],
    );
    assert!(
        !stderr.lines().any(|l| l.contains("keep/")),
        "only the dangling directory is damaged:\n{stderr}"
    );
}

#[test]
fn repair_index_restores_a_blob_missing_from_the_index() {
    let env = Env::new();
    let (src, _) = two_backups(&env);
    let expected = tree_listing(&src);
    // Rewrite the index files so that one data blob of `lose/b.bin`'s pack is no longer listed.
    let repo = open(&env);
    let backend = LocalBackend::new(&env.repo);
    let mut dropped = None;
    for name in env.index_files() {
        let mut file = IndexFile::decode(
            repo.repo().key(),
            &backend.read(ObjectKind::Index, &name).unwrap(),
        )
        .unwrap();
        if dropped.is_none() {
            if let Some(pack) = file
                .packs
                .iter_mut()
                .find(|p| p.blobs.iter().any(|b| b.blob_type == BlobType::Data))
            {
                let at = pack
                    .blobs
                    .iter()
                    .position(|b| b.blob_type == BlobType::Data)
                    .unwrap();
                dropped = Some((pack.pack, pack.blobs.remove(at).id));
                let bytes = file.encode(repo.repo().key()).unwrap();
                backend
                    .write(
                        ObjectKind::Index,
                        &IndexId::hash_of(&bytes).to_hex(),
                        &bytes,
                    )
                    .unwrap();
                backend.remove(ObjectKind::Index, &name).unwrap();
            }
        }
    }
    drop(repo);
    let (pack, blob) = dropped.unwrap();
    assert_check_finds(
        &env,
        &[
            &format!("pack {pack}: blob {blob} is in the pack header but missing from the index; run `cairn repair index`"),
            &format!("data blob {blob} is not in the index (its pack or index file is missing); pack {pack} holds it: run `cairn repair index`"),
        ],
    );

    let dry = env.r_json(&["repair", "index", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        dry["packs_added"],
        serde_json::json!([pack.to_hex()]),
        "{dry}"
    );
    assert_check_finds(&env, &["missing from the index"]);

    let before = env.index_files();
    let done = env.r_json(&["repair", "index"]);
    assert_eq!(done["packs_read"], 4, "{done}");
    assert_eq!(done["packs_unreadable"], serde_json::json!([]), "{done}");
    assert_eq!(done["index_files_removed"], before.len(), "{done}");
    assert_eq!(done["index_files_written"], 1, "{done}");
    assert!(env.index_files().iter().all(|n| !before.contains(n)));
    assert!(
        files_under(&env.repo.join("locks")).is_empty(),
        "the prune lease is released"
    );
    assert_check_passes(&env);
    assert_eq!(restore_listing(&env, "latest", &src, "restored"), expected);
}

#[test]
fn repair_index_after_losing_an_index_file_leaves_unreadable_packs_in_place() {
    let env = Env::new();
    let (src, data_pack) = two_backups(&env);
    let expected = tree_listing(&src);
    for name in env.index_files() {
        std::fs::remove_file(env.repo.join("index").join(&name)).unwrap();
    }
    assert_check_finds(&env, &["holds it: run `cairn repair index`"]);
    // A pack with a damaged header is reported, not indexed, and never deleted.
    let garbage = env.repo.join("data").join("ab").join("ab".repeat(32));
    write_file(&garbage, b"not a pack at all, far too short");
    let done = env.r_json(&["repair", "index"]);
    assert_eq!(done["packs_read"], 4, "{done}");
    let unreadable = done["packs_unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{done}");
    assert_eq!(unreadable[0]["name"], "ab".repeat(32));
    assert!(
        unreadable[0]["reason"]
            .as_str()
            .unwrap()
            .contains("wrong magic"),
        "{done}"
    );
    assert!(garbage.exists() && data_pack.exists());
    std::fs::remove_file(&garbage).unwrap();
    assert_check_passes(&env);
    assert_eq!(restore_listing(&env, "latest", &src, "restored"), expected);
}

#[test]
fn repair_snapshots_after_a_lost_pack_keeps_every_surviving_file() {
    let env = Env::new();
    let (src, data_pack) = two_backups(&env);
    let expected = tree_listing(&src);
    let first = env.snapshots_json()[0]["id"].as_str().unwrap().to_string();
    let second = env.snapshots_json()[1]["id"].as_str().unwrap().to_string();
    std::fs::remove_file(&data_pack).unwrap();
    let pack = common::file_name_str(&data_pack);
    assert_check_finds(
        &env,
        &[
            &format!("pack {pack} is listed in the index but missing"),
            "lose/b.bin",
        ],
    );

    let index = env.r_json(&["repair", "index"]);
    assert_eq!(index["packs_missing"], serde_json::json!([pack]), "{index}");

    let dry = env.r_json(&["repair", "snapshots", "--dry-run"]);
    assert_eq!(dry["damaged"], 1, "{dry}");
    assert_eq!(env.snapshots_json().len(), 2, "a dry run writes nothing");

    let done = env.r_json(&["repair", "snapshots"]);
    let repairs = done["repairs"].as_array().unwrap();
    assert_eq!(repairs.len(), 1, "{done}");
    assert_eq!(repairs[0]["original"], second);
    let removed: Vec<&str> = repairs[0]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    let lost = ["lose/b.bin", "lose/deep/c.txt"];
    let expected_removed: Vec<String> = lost
        .iter()
        .map(|l| format!("{}/{l}", src.display()))
        .collect();
    assert_eq!(removed, expected_removed, "{done}");
    assert_eq!(
        dry["repairs"][0]["removed"], repairs[0]["removed"],
        "the dry run lists the same paths"
    );
    let repaired = repairs[0]["repaired"].as_str().unwrap().to_string();
    let snaps = env.snapshots_json();
    assert_eq!(snaps.len(), 3);
    let new = snaps.iter().find(|s| s["id"] == repaired.as_str()).unwrap();
    assert!(
        new["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "repaired"),
        "{new}"
    );

    let mut surviving = expected.clone();
    for l in lost {
        surviving.remove(Path::new(l));
    }
    assert_eq!(
        restore_listing(&env, &repaired, &src, "repaired"),
        surviving
    );
    let first_expected: std::collections::BTreeMap<_, _> = expected
        .into_iter()
        .filter(|(p, _)| p.starts_with("keep"))
        .collect();
    assert_eq!(
        restore_listing(&env, &first, &src, "first"),
        first_expected,
        "the intact snapshot is untouched"
    );
    // The original is kept, so check still reports it (and only it).
    let stderr = assert_check_finds(&env, &[&format!("snapshot {}", &second[..8])]);
    assert!(!stderr.contains(&repaired[..8]), "{stderr}");

    let again = env.r_json(&["repair", "snapshots", "--forget"]);
    assert_eq!(again["repairs"][0]["already_repaired"], true, "{again}");
    assert_eq!(again["repairs"][0]["repaired"], repaired.as_str());
    assert_eq!(again["repairs"][0]["forgotten"], true);
    let ids: Vec<String> = env
        .snapshots_json()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&repaired) && ids.contains(&first) && !ids.contains(&second));
    assert_check_passes(&env);
}

/// Runs `repair index` through a backend that fails after `budget` changes.
fn repair_index_with(env: &Env, budget: i64) -> cairn::Result<()> {
    let backend = FailingBackend::new(LocalBackend::new(&env.repo), budget, true);
    let repo = Repository::open(
        Box::new(backend),
        common::PASSWORD.as_bytes(),
        &env.cache_dir(),
    )?;
    let held = lease::acquire_exclusive(&repo, chrono::Duration::minutes(5))?;
    held.hold_while(&repo, |held| {
        let plan = repair::plan_index(&repo, &NoRepairProgress)?;
        repair::execute_index(&repo, &plan, held).map(|_| ())
    })
}

fn repair_snapshots_with(env: &Env, budget: i64) -> cairn::Result<()> {
    let backend = FailingBackend::new(LocalBackend::new(&env.repo), budget, true);
    let repo = Repository::open(
        Box::new(backend),
        common::PASSWORD.as_bytes(),
        &env.cache_dir(),
    )?
    .into_indexed()?;
    repair::repair_snapshots(
        &repo,
        SnapshotRepairOptions {
            forget: true,
            dry_run: false,
        },
    )
    .map(|_| ())
}

/// A crashed process leaves its lease behind; expire it by hand so the next attempt may run.
fn drop_leases(env: &Env) {
    for p in files_under(&env.repo.join("locks")) {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn repairs_interrupted_at_every_write_add_no_problem() {
    let env = Env::new();
    let (src, data_pack) = two_backups(&env);

    // repair index on a sound repository: check passes after every interruption.
    let mut completed = false;
    for budget in 0..12 {
        let result = repair_index_with(&env, budget);
        drop_leases(&env);
        let report = check(&open(&env), CheckOptions::default()).unwrap();
        assert!(
            report.is_ok(),
            "repair index, budget {budget}: {:?}",
            report.errors
        );
        if result.is_ok() {
            completed = true;
            break;
        }
    }
    assert!(
        completed,
        "repair index should complete within the budgets tried"
    );

    // repair snapshots --forget after a lost pack: every problem left names the damaged original only.
    std::fs::remove_file(&data_pack).unwrap();
    repair_index_with(&env, i64::MAX).unwrap();
    let original = env.snapshots_json()[1]["id"].as_str().unwrap()[..8].to_string();
    let mut completed = false;
    for budget in 0..12 {
        let result = repair_snapshots_with(&env, budget);
        drop_leases(&env);
        let report = check(&open(&env), CheckOptions::read_data()).unwrap();
        for e in &report.errors {
            assert!(
                e.contains(&format!("snapshot {original}")),
                "repair snapshots, budget {budget}: new problem {e}"
            );
        }
        if result.is_ok() {
            assert!(report.is_ok(), "{:?}", report.errors);
            completed = true;
            break;
        }
    }
    assert!(
        completed,
        "repair snapshots should complete within the budgets tried"
    );
    let snaps = env.snapshots_json();
    assert_eq!(snaps.len(), 2);
    let mut surviving = tree_listing(&src);
    surviving.remove(Path::new("lose/b.bin"));
    surviving.remove(Path::new("lose/deep/c.txt"));
    let repaired = snaps[1]["id"].as_str().unwrap();
    assert_eq!(restore_listing(&env, repaired, &src, "restored"), surviving);
}

/// Regression: `repair snapshots` run before `repair index` dropped files whose blobs were still in
/// packs that no index file named. It must refuse, change nothing, and say what to run first.
#[test]
fn repair_snapshots_before_repair_index_refuses_while_packs_hold_the_data() {
    let env = Env::new();
    let (src, _) = two_backups(&env);
    let expected = tree_listing(&src);
    for name in env.index_files() {
        std::fs::remove_file(env.repo.join("index").join(&name)).unwrap();
    }
    // A pack whose header cannot be read holds nothing recoverable: it must not stop the search.
    let garbage = env.repo.join("data").join("ab").join("ab".repeat(32));
    write_file(&garbage, b"not a pack at all, far too short");
    let packs_before = common::pack_files(&env.repo);
    let snapshots_before = env.snapshots_json();

    for args in [
        &["repair", "snapshots", "--dry-run"][..],
        &["repair", "snapshots", "--forget"][..],
    ] {
        let out = env.r(args);
        out.assert_code(exit::USAGE);
        assert!(
            out.stderr
                .contains("run `cairn repair index` first, then `cairn repair snapshots` again"),
            "{}",
            out.describe()
        );
        assert!(out.stderr.contains("changed nothing"), "{}", out.describe());
    }
    assert_eq!(
        env.snapshots_json(),
        snapshots_before,
        "no snapshot written or removed"
    );
    assert_eq!(
        common::pack_files(&env.repo),
        packs_before,
        "no tree written"
    );
    assert!(
        files_under(&env.repo.join("locks")).is_empty(),
        "the lease is released"
    );

    env.r_ok(&["repair", "index"]);
    let done = env.r_json(&["repair", "snapshots", "--forget"]);
    assert_eq!(done["damaged"], 0, "{done}");
    std::fs::remove_file(&garbage).unwrap();
    assert_check_passes(&env);
    assert_eq!(restore_listing(&env, "latest", &src, "restored"), expected);
}

/// When the lost blobs are in no existing pack, `repair snapshots` needs no `repair index` first: the
/// search for them finds nothing and the repair goes ahead.
#[test]
fn repair_snapshots_before_repair_index_proceeds_when_the_data_is_gone() {
    let env = Env::new();
    let (src, data_pack) = two_backups(&env);
    std::fs::remove_file(&data_pack).unwrap();
    let done = env.r_json(&["repair", "snapshots"]);
    let repairs = done["repairs"].as_array().unwrap();
    assert_eq!(repairs.len(), 1, "{done}");
    let removed: Vec<&str> = repairs[0]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = ["lose/b.bin", "lose/deep/c.txt"]
        .iter()
        .map(|l| format!("{}/{l}", src.display()))
        .collect();
    assert_eq!(removed, expected, "{done}");
    assert!(done["trees_written"].as_u64().unwrap() > 0, "{done}");
}
