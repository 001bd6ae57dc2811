//! `check` racing a prune (FORMAT.md §12, Check): objects a prune removes between check's listing and
//! its reads are never reported as damage, real damage still is (with the snapshots and paths it
//! affects), and a check that cannot settle says so instead of reporting damage. Ends with checks run
//! in a loop while backups, forgets and prunes run.

use crate::common;

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cairn::backend::{LocalBackend, ObjectKind};
use cairn::check::{check, CheckOptions};
use cairn::{ErrorKind, IndexedRepository, Repository};
use common::failing::FailingBackend;
use common::{exit, files_under, random_bytes, write_file, Env, PASSWORD};

/// Two backups, then `forget --keep-last 1` and a prune that condemns the packs only the first one
/// used: the next prune deletes those packs and rewrites the index files.
fn repository_with_condemned_packs(env: &Env) -> std::path::PathBuf {
    env.init();
    let src = env.path("src");
    write_file(&src.join("kept.bin"), &random_bytes(1, 300_000));
    write_file(&src.join("old.bin"), &random_bytes(2, 300_000));
    env.backup_json(&[&src], &[]);
    std::fs::remove_file(src.join("old.bin")).unwrap();
    write_file(&src.join("new.bin"), &random_bytes(3, 300_000));
    env.backup_json(&[&src], &[]);
    env.r_ok(&["forget", "--keep-last", "1"]);
    prune_now(env);
    assert_eq!(
        files_under(&env.repo.join("pending")).len(),
        1,
        "test setup: one pending-deletion record"
    );
    src
}

fn prune_now(env: &Env) -> common::Output {
    env.r_ok(&["prune", "--grace", "0h", "--clock-skew", "0h", "-q"])
}

/// Opens the repository through a fault-injecting backend (a fresh cache, so the check reads what the
/// repository holds, not what an earlier process cached).
fn open_failing(env: &Env, backend: FailingBackend) -> IndexedRepository {
    Repository::open(
        Box::new(backend),
        PASSWORD.as_bytes(),
        &env.path("check-cache"),
    )
    .unwrap()
    .into_indexed()
    .unwrap()
}

/// A hook that runs a real prune (in its own process) and keeps its output.
fn prune_hook(env: &Env, ran: &Arc<Mutex<Option<Output>>>) -> common::failing::Hook {
    let mut cmd = env.command();
    cmd.arg("-r")
        .arg(&env.repo)
        .args(["prune", "--grace", "0h", "--clock-skew", "0h", "-q"]);
    let ran = Arc::clone(ran);
    Box::new(move || {
        *ran.lock().unwrap() = Some(cmd.output().unwrap());
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = files_under(dir)
        .iter()
        .map(|p| common::file_name_str(p))
        .collect();
    out.sort();
    out
}

fn assert_prune_ran(ran: &Mutex<Option<Output>>) {
    let guard = ran.lock().unwrap();
    let out = guard.as_ref().expect("the prune hook ran during the check");
    assert!(
        out.status.success(),
        "prune: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Regression: check reported "index file ... is missing" when a prune replaced the index files
/// between check's listing and its reads.
#[test]
fn index_files_a_prune_replaces_under_check_are_no_damage() {
    let env = Env::new();
    repository_with_condemned_packs(&env);
    let index_before = names(&env.repo.join("index"));
    let packs_before = names(&env.repo.join("data"));
    let ran = Arc::new(Mutex::new(None));
    let backend = FailingBackend::new(LocalBackend::new(&env.repo), i64::MAX, false);
    let hook = Arc::clone(&backend.before_first_read);
    let repo = open_failing(&env, backend);
    *hook.lock().unwrap() = Some((ObjectKind::Index, prune_hook(&env, &ran)));

    let report = check(&repo, CheckOptions::default()).unwrap();
    assert_prune_ran(&ran);
    assert!(report.is_ok(), "{:?}", report.errors);
    assert!(
        report.notes.iter().any(|n| n.contains("started over")),
        "the check saw the prune's work and listed again: {:?}",
        report.notes
    );
    // The prune really did replace every index file and delete packs while the check ran.
    let index_after = names(&env.repo.join("index"));
    assert!(index_after.iter().all(|n| !index_before.contains(n)));
    assert!(names(&env.repo.join("data")).len() < packs_before.len());
}

/// Regression: check reported packs a prune deleted between check's listing and its header reads as
/// unreadable.
#[test]
fn packs_a_prune_deletes_under_check_are_no_damage() {
    let env = Env::new();
    repository_with_condemned_packs(&env);
    let packs_before = names(&env.repo.join("data"));
    let ran = Arc::new(Mutex::new(None));
    let backend = FailingBackend::new(LocalBackend::new(&env.repo), i64::MAX, false);
    let hook = Arc::clone(&backend.before_first_read);
    let repo = open_failing(&env, backend);
    *hook.lock().unwrap() = Some((ObjectKind::Pack, prune_hook(&env, &ran)));

    let report = check(&repo, CheckOptions::read_data()).unwrap();
    assert_prune_ran(&ran);
    assert!(report.is_ok(), "{:?}", report.errors);
    let packs_after = names(&env.repo.join("data"));
    assert!(packs_after.len() < packs_before.len());
    assert_eq!(
        report.packs_read,
        packs_after.len() as u64,
        "every pack left was verified, none counted twice: {report:?}"
    );
}

/// A pack really missing is still reported, with the snapshot and file it damages, when the check had
/// to start over because an object vanished under it.
#[test]
fn a_really_missing_pack_is_reported_after_check_starts_over() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("keep/a.bin"), &random_bytes(1, 120_000));
    env.backup_json(&[&src], &[]);
    let before = common::pack_files(&env.repo);
    write_file(&src.join("lose/b.bin"), &random_bytes(2, 150_000));
    let second = env.backup_json(&[&src], &[])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let lost = common::pack_files(&env.repo)
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    std::fs::remove_file(&lost).unwrap();
    let lost = common::file_name_str(&lost);

    let backend = FailingBackend::new(LocalBackend::new(&env.repo), i64::MAX, false);
    let vanishing = Arc::clone(&backend.vanishing);
    let repo = open_failing(&env, backend);
    // The check's first listing of index files shows one that is gone when read.
    *vanishing.lock().unwrap() = Some(ObjectKind::Index);
    let report = check(&repo, CheckOptions::default()).unwrap();
    assert!(
        report.notes.iter().any(|n| n.contains("started over")),
        "{:?}",
        report.notes
    );
    let has = |needle: &str| report.errors.iter().any(|e| e.contains(needle));
    assert!(
        has(&format!("pack {lost} is listed in the index but missing")),
        "{:?}",
        report.errors
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains(&format!("snapshot {}", &second[..8])) && e.contains("lose/b.bin")),
        "the damaged snapshot and file are named: {:?}",
        report.errors
    );
    assert!(
        !has(&"ab".repeat(32)),
        "the vanished index file is not reported: {:?}",
        report.errors
    );
}

/// When objects vanish under every attempt, check gives up with a backend error that says to run it
/// again, and reports no damage.
#[test]
fn a_check_that_never_settles_reports_no_damage() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a.bin"), &random_bytes(1, 50_000));
    env.backup_json(&[&src], &[]);
    let mut backend = FailingBackend::new(LocalBackend::new(&env.repo), i64::MAX, false);
    // Every attempt lists a snapshot that is gone when read, and gone again when listed after.
    backend.vanishing_repeats = true;
    *backend.vanishing.lock().unwrap() = Some(ObjectKind::Snapshot);
    let repo = open_failing(&env, backend);
    let err = check(&repo, CheckOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("run `cairn check` again") && message.contains(&"ab".repeat(32)),
        "{message}"
    );
}

/// Adds one to the counter when dropped, also while unwinding from a panic.
struct CountOnDrop<'a>(&'a AtomicUsize);

impl Drop for CountOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn check_run_while_backups_forgets_and_prunes_run_reports_no_damage() {
    let env = Env::new();
    env.init();
    let writers_done = AtomicUsize::new(0);
    let checks: Mutex<Vec<common::Output>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let (env, done) = (&env, &writers_done);
        s.spawn(move || {
            // Counted even when a backup fails and the thread unwinds, so the other loops end.
            let _counted = CountOnDrop(done);
            let src = env.path("src");
            for g in 0..8u64 {
                write_file(&src.join("shared.bin"), &random_bytes(1, 400_000));
                write_file(
                    &src.join(format!("unique/{}.bin", g % 2)),
                    &random_bytes(100 + g, 400_000),
                );
                env.backup_json(&[&src], &[]);
            }
        });
        s.spawn(move || {
            let _counted = CountOnDrop(done);
            let mut rounds = 0;
            while (done.load(Ordering::SeqCst) < 1 || rounds < 2) && rounds < 100 {
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
        let checks = &checks;
        s.spawn(move || {
            let mut rounds = 0;
            while done.load(Ordering::SeqCst) < 2 && rounds < 200 {
                checks
                    .lock()
                    .unwrap()
                    .push(env.r(&["check", "--read-data"]));
                rounds += 1;
            }
        });
    });
    let checks = checks.into_inner().unwrap();
    assert!(checks.len() >= 3, "only {} checks ran", checks.len());
    for out in &checks {
        assert_ne!(
            out.code,
            exit::DAMAGED,
            "a check reported damage:\n{}",
            out.describe()
        );
        out.assert_success();
    }
    env.r_ok(&["check", "--read-data"]);
}
