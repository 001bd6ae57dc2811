//! Prune is safe with concurrent writers and when interrupted (FORMAT.md §12): backups from two hosts run
//! while forget+prune loops, and a prune failing at every storage change leaves a repository that passes
//! check; afterwards every snapshot restores exactly.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cairn::backend::{LocalBackend, ObjectKind};
use cairn::check::{check, CheckOptions};
use cairn::ops::prune;
use cairn::repo::{lease, pending};
use cairn::Repository;
use common::failing::FailingBackend;
use common::{random_bytes, restored_path, tree_listing, write_file, Env, PASSWORD};

type Listing = BTreeMap<PathBuf, Vec<u8>>;

/// Writes generation `g` of a source tree: shared, recurring (every third generation) and unique content.
fn write_generation(src: &Path, g: u64) {
    write_file(&src.join("shared.bin"), &random_bytes(1, 800_000));
    write_file(
        &src.join("recurring.bin"),
        &random_bytes(10 + g % 3, 800_000),
    );
    write_file(
        &src.join(format!("unique/{}.bin", g % 2)),
        &random_bytes(1000 + g, 600_000),
    );
}

/// Restores every snapshot left and compares it with what was backed up.
fn assert_every_snapshot_restores(env: &Env, expected: &BTreeMap<String, (PathBuf, Listing)>) {
    let snapshots = env.snapshots_json();
    assert!(!snapshots.is_empty());
    for snap in snapshots {
        let id = snap["id"].as_str().unwrap();
        let (src, listing) = &expected[id];
        let target = env.path(&format!("restore-{}", &id[..8]));
        env.restore(id, &target);
        assert_eq!(
            &tree_listing(&restored_path(&target, src)),
            listing,
            "snapshot {id}"
        );
    }
}

/// A repository holding four generations of a source tree, the two oldest forgotten (so prune has
/// packs to condemn and to repack); returns what each snapshot holds.
fn four_backups_two_kept(env: &Env) -> BTreeMap<String, (PathBuf, Listing)> {
    env.init();
    let src = env.path("src");
    let mut expected = BTreeMap::new();
    for g in 0..4 {
        write_generation(&src, g);
        let v = env.backup_json(&[&src], &[]);
        expected.insert(
            v["snapshot_id"].as_str().unwrap().to_string(),
            (src.clone(), tree_listing(&src)),
        );
    }
    env.r_ok(&["forget", "--keep-last", "2"]);
    expected
}

/// Adds one to the counter when dropped, also while unwinding from a panic.
struct CountOnDrop<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for CountOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn backups_from_two_hosts_and_prunes_run_concurrently_without_losing_data() {
    let env = Env::new();
    env.init();
    let expected: Mutex<BTreeMap<String, (PathBuf, Listing)>> = Mutex::new(BTreeMap::new());
    let backups_done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for host in ["h1", "h2"] {
            let (env, expected, done) = (&env, &expected, &backups_done);
            s.spawn(move || {
                // Counted even when a backup fails and the thread unwinds, so the prune loop ends
                // and the failure is reported instead of the test hanging.
                let _counted = CountOnDrop(done);
                let src = env.path(&format!("src-{host}"));
                for g in 0..8 {
                    write_generation(&src, g);
                    let v = env.backup_json(&[&src], &["--host", host]);
                    let id = v["snapshot_id"].as_str().unwrap().to_string();
                    expected
                        .lock()
                        .unwrap()
                        .insert(id, (src.clone(), tree_listing(&src)));
                }
            });
        }
        let (env, done) = (&env, &backups_done);
        s.spawn(move || {
            let mut rounds = 0;
            while (done.load(std::sync::atomic::Ordering::SeqCst) < 2 || rounds < 2) && rounds < 200
            {
                // No grace and no skew allowance: deletion happens as early as the protocol allows.
                env.r_ok(&[
                    "forget",
                    "--keep-last",
                    "2",
                    "--prune",
                    "--grace",
                    "0h",
                    "--clock-skew",
                    "0h",
                    "-q",
                ]);
                rounds += 1;
            }
        });
    });
    // The loop may have stopped before the last backups: forget once more, then finish the deletions.
    env.r_ok(&["forget", "--keep-last", "2", "-q"]);
    for _ in 0..2 {
        env.r_ok(&["prune", "--grace", "0h", "--clock-skew", "0h", "-q"]);
    }
    env.r_ok(&["check", "--read-data"]);
    assert_eq!(env.snapshots_json().len(), 4, "two kept per host");
    assert_every_snapshot_restores(&env, &expected.lock().unwrap());
}

/// Runs one prune through a backend that fails after `budget` changes (writes and removals).
fn prune_with_budget(env: &Env, budget: i64) -> cairn::Result<prune::PruneOutcome> {
    let backend = FailingBackend::new(LocalBackend::new(&env.repo), budget, true);
    let repo = Repository::open(Box::new(backend), PASSWORD.as_bytes(), &env.cache_dir())?;
    let options = prune::PruneOptions {
        grace: chrono::Duration::zero(),
        clock_skew: chrono::Duration::zero(),
        ..Default::default()
    };
    let held = lease::acquire_exclusive(&repo, options.clock_skew)?;
    let repo = repo.into_indexed()?;
    held.hold_while(repo.repo(), |held| {
        let plan = prune::plan(repo.repo(), &options)?;
        prune::execute(&repo, &plan, held)
    })
}

#[test]
fn a_prune_failing_at_any_change_leaves_a_repository_that_passes_check() {
    let env = Env::new();
    let expected = four_backups_two_kept(&env);

    // Phase one (condemn and repack), then phase two (delete): each interrupted at every change in turn.
    let mut phases = Vec::new();
    for _phase in 0..2 {
        let mut budget = 0;
        let outcome = loop {
            let result = prune_with_budget(&env, budget);
            // A crashed prune leaves its lease until it expires; the test stands in for the expiry.
            for lease in common::files_under(&env.repo.join("locks")) {
                std::fs::remove_file(lease).unwrap();
            }
            let repo = Repository::open(
                Box::new(LocalBackend::new(&env.repo)),
                PASSWORD.as_bytes(),
                &env.cache_dir(),
            )
            .unwrap()
            .into_indexed()
            .unwrap();
            let report = check(&repo, CheckOptions::read_data()).unwrap();
            assert!(report.is_ok(), "budget {budget}: {:?}", report.errors);
            match result {
                Ok(outcome) => break outcome,
                Err(e) => assert_eq!(e.kind(), cairn::ErrorKind::Backend, "budget {budget}: {e}"),
            }
            budget += 1;
            assert!(budget < 100, "prune never completed");
        };
        phases.push((budget, outcome));
    }
    // Interrupted attempts keep the work they finished, so later attempts may find less to do; what
    // matters is that each phase needed several changes and every state in between passed check.
    assert!(phases[0].0 >= 2, "{phases:?}");
    assert_every_snapshot_restores(&env, &expected);
}

#[test]
fn an_index_file_removed_between_listing_and_reading_is_listed_again() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_generation(&src, 0);
    env.backup_json(&[&src], &[]);
    let backend = FailingBackend::new(LocalBackend::new(&env.repo), i64::MAX, false);
    *backend.vanishing.lock().unwrap() = Some(ObjectKind::Index);
    let fresh_cache = env.path("fresh-cache");
    let repo = Repository::open(Box::new(backend), PASSWORD.as_bytes(), &fresh_cache)
        .unwrap()
        .into_indexed()
        .expect("a vanished index file is not damage: the sync lists again");
    let report = check(&repo, CheckOptions::default()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn a_pending_record_rewritten_between_listing_and_reading_is_still_found() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    for g in 0..2 {
        write_generation(&src, g);
        env.backup_json(&[&src], &[]);
    }
    // The first snapshot's unique file leaves packs with nothing referenced: prune condemns them.
    env.r_ok(&["forget", "--keep-last", "1"]);
    env.r_ok(&["prune", "-q"]);
    let real = common::files_under(&env.repo.join("pending")).len();
    assert_eq!(real, 1, "test setup: one pending-deletion record");
    let backend = FailingBackend::new(LocalBackend::new(&env.repo), i64::MAX, false);
    *backend.vanishing.lock().unwrap() = Some(ObjectKind::Pending);
    let repo = Repository::open(Box::new(backend), PASSWORD.as_bytes(), &env.cache_dir()).unwrap();
    // A backup that missed the rewritten record would take its condemned packs for live ones.
    let records = pending::list(&repo).unwrap();
    assert_eq!(records.len(), real, "the record is found by listing again");
    assert!(!pending::condemned_packs(&repo).unwrap().is_empty());
}

#[test]
fn the_blob_table_on_disk_plans_the_same_prune_as_the_one_in_memory() {
    let env = Env::new();
    let expected = four_backups_two_kept(&env);
    let repo = Repository::open(
        Box::new(LocalBackend::new(&env.repo)),
        PASSWORD.as_bytes(),
        &env.cache_dir(),
    )
    .unwrap();
    let in_memory = prune::PruneOptions {
        grace: chrono::Duration::zero(),
        clock_skew: chrono::Duration::zero(),
        max_unused: 0.0,
        ..Default::default()
    };
    let on_disk = prune::PruneOptions {
        memory_blobs: 0,
        ..in_memory
    };
    let held = lease::acquire_exclusive(&repo, in_memory.clock_skew).unwrap();
    let a = prune::plan(&repo, &in_memory).unwrap();
    let b = prune::plan(&repo, &on_disk).unwrap();
    assert!(a.referenced_blobs > 0);
    assert_eq!(a.referenced_blobs, b.referenced_blobs);
    assert_eq!(a.condemn, b.condemn);
    assert!(!b.repack.is_empty(), "test setup: some pack is partly used");
    let ids = |p: &prune::PrunePlan| p.repack.iter().map(|(id, _)| *id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    assert!(b.missing.is_empty(), "{:?}", b.missing);
    // The on-disk table also drives the repack: its copies keep every snapshot whole.
    let repo = repo.into_indexed().unwrap();
    held.hold_while(repo.repo(), |held| prune::execute(&repo, &b, held))
        .unwrap();
    let report = check(&repo, CheckOptions::read_data()).unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_every_snapshot_restores(&env, &expected);
    // The table lived in the repository's cache directory, and went with the plan.
    drop((a, b));
    let cache = repo.repo().cache_dir();
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("prune-"))
        .collect();
    assert!(left.is_empty(), "{left:?} in {}", cache.display());
}

#[test]
fn a_damaged_blob_in_a_pack_to_repack_stops_prune_before_it_condemns_anything() {
    let env = Env::new();
    four_backups_two_kept(&env);
    let repo = Repository::open(
        Box::new(LocalBackend::new(&env.repo)),
        PASSWORD.as_bytes(),
        &env.cache_dir(),
    )
    .unwrap();
    let options = prune::PruneOptions {
        max_unused: 0.0,
        ..Default::default()
    };
    let plan = prune::plan(&repo, &options).unwrap();
    let (victim, _) = plan.repack.first().expect("test setup: a pack to repack");
    // One flipped byte in every blob of that pack: whichever blob repack copies fails its seal.
    let entries = cairn::pack::read_pack_header(repo.backend(), repo.key(), victim).unwrap();
    let hex = victim.to_hex();
    let path = env.repo.join("data").join(&hex[..2]).join(&hex);
    let mut bytes = std::fs::read(&path).unwrap();
    for e in &entries {
        bytes[e.offset as usize + e.length as usize / 2] ^= 0x01;
    }
    std::fs::write(&path, &bytes).unwrap();

    let out = env.r(&["prune", "--max-unused", "0"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    let stderr = &out.stderr;
    assert!(stderr.contains(&hex), "names the damaged pack: {stderr}");
    assert!(
        common::files_under(&env.repo.join("pending")).is_empty(),
        "nothing condemned after a failed repack"
    );
    assert!(path.exists(), "the damaged pack is kept for repair");
}
