//! Leases and what crashed or cut-off processes leave behind (FORMAT.md §12): a panic or a closed
//! pipe never leaves a lease refreshed forever nor exits 101, a dead holder's lease never blocks a
//! prune, a refusal changes nothing and has its own exit code, and stale temporaries and old leases
//! are swept while young ones stay.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use cairn::backend::{LocalBackend, ObjectKind};
use cairn::format::lifecycle::{Lease, LeaseKind};
use cairn::repo::lease::{self, HeldLease};
use cairn::Repository;
use common::{files_under, random_bytes, write_file, Env, PASSWORD};

/// Exit code of a refusal because another process holds the lease (README's table).
const LEASE_HELD: i32 = 11;

fn open(env: &Env) -> Repository {
    Repository::open(
        Box::new(LocalBackend::new(&env.repo)),
        PASSWORD.as_bytes(),
        &env.cache_dir(),
    )
    .unwrap()
}

fn leases(env: &Env) -> Vec<PathBuf> {
    files_under(&env.repo.join("locks"))
}

/// Waits for `child`, killing it and failing after a generous guard: a hang is the defect tested.
fn wait_guarded(mut child: Child, what: &str) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within 120 s (hung)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A repository with one snapshot of a small tree of `files` files.
fn repo_with_tree(env: &Env, files: usize) -> PathBuf {
    env.init();
    let src = env.path("src");
    for i in 0..files {
        write_file(
            &src.join(format!("d{}/f{i}.txt", i % 10)),
            format!("file {i}").as_bytes(),
        );
    }
    env.backup_json(&[&src], &[]);
    src
}

/// Writes `lease` into the repository as its holder would.
fn put_lease(repo: &Repository, lease: &Lease) -> String {
    let bytes = lease.encode(repo.key()).unwrap();
    let name = blake3::hash(&bytes).to_hex().to_string();
    repo.backend()
        .write(ObjectKind::Lease, &name, &bytes)
        .unwrap();
    name
}

/// A pid that no process has: a child that has been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A lease of another host, expired `ago` (negative: still valid).
fn foreign_lease(kind: LeaseKind, expired_ago: chrono::Duration) -> Lease {
    let expires = chrono::Utc::now() - expired_ago;
    Lease {
        kind,
        host: "elsewhere.example".into(),
        pid: 4242,
        start: rfc3339(expires - chrono::Duration::minutes(10)),
        expires: rfc3339(expires),
        token: "00ff".into(),
        version: 1,
        boot_id: None,
        pid_start: None,
        pid_ns: None,
    }
}

fn set_age(path: &Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn verbose_backup_with_stderr_closed_early_ends_and_leaves_no_lease() {
    let env = Env::new();
    let src = repo_with_tree(&env, 300);
    write_file(&src.join("new.bin"), &random_bytes(3, 100_000));
    let mut cmd = env.command();
    cmd.arg("-r")
        .arg(&env.repo)
        .args(["-v", "backup"])
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // The reader goes away before the first line: every -v line then meets EPIPE.
    drop(child.stderr.take());
    let code = wait_guarded(child, "cairn -v backup with stderr closed");
    assert_eq!(code, 0, "a closed stderr is not a failure of the backup");
    assert!(leases(&env).is_empty(), "lease left: {:?}", leases(&env));
    // The backup completed: two snapshots now.
    assert_eq!(env.snapshots_json().len(), 2);
}

#[test]
fn a_panic_inside_a_leased_operation_releases_the_lease_and_returns_an_error() {
    let env = Env::new();
    env.init();
    let (tx, rx) = std::sync::mpsc::channel();
    let repo_dir = env.repo.clone();
    let cache = env.cache_dir();
    std::thread::spawn(move || {
        let repo = Repository::open(
            Box::new(LocalBackend::new(&repo_dir)),
            PASSWORD.as_bytes(),
            &cache,
        )
        .unwrap();
        let held = HeldLease::acquire(&repo, LeaseKind::Backup).unwrap();
        let result: cairn::Result<()> = held.hold_while(&repo, |_| panic!("worker exploded"));
        let _ = tx.send(result.map_err(|e| e.to_string()));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("hold_while hung after a panic in its work");
    let message = result.unwrap_err();
    assert!(
        message.contains("panicked") && message.contains("worker exploded"),
        "{message}"
    );
    assert!(message.contains("was released"), "{message}");
    assert!(leases(&env).is_empty(), "lease left: {:?}", leases(&env));
}

#[test]
fn commands_with_stdout_closed_early_never_panic() {
    let env = Env::new();
    repo_with_tree(&env, 20);
    let target = env.path("restored");
    let target = target.to_str().unwrap();
    let runs: [&[&str]; 6] = [
        &["snapshots"],
        &["check"],
        &["forget", "--keep-last", "1", "--dry-run"],
        &["forget", "--keep-last", "5"],
        &["key", "list"],
        &["-v", "restore", "latest", "--target", target],
    ];
    for args in runs {
        let mut cmd = env.command();
        cmd.arg("-r")
            .arg(&env.repo)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take());
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
        let code = wait_guarded(child, &format!("cairn {args:?}"));
        let stderr = reader.join().unwrap();
        assert_ne!(code, 101, "cairn {args:?} panicked: {stderr}");
        assert_eq!(code, 0, "cairn {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "cairn {args:?}: {stderr}");
    }
    // The restore carried on with its work although nobody read its output.
    assert!(files_under(Path::new(target)).len() >= 20);
}

#[test]
fn a_dead_holders_prune_lease_is_released_at_once() {
    let env = Env::new();
    repo_with_tree(&env, 5);
    let repo = open(&env);
    // What a prune killed on this host left: its own identity, but a pid that is gone.
    let held = HeldLease::acquire(&repo, LeaseKind::Prune).unwrap();
    let (name, mut crashed) = held.current();
    held.release(&repo).unwrap();
    crashed.pid = dead_pid();
    crashed.token = "deadbeef".into();
    assert!(crashed.boot_id.is_some() && crashed.pid_start.is_some());
    let crashed_name = put_lease(&repo, &crashed);
    assert_ne!(crashed_name, name);
    env.r_ok(&["prune"]);
    assert!(leases(&env).is_empty(), "lease left: {:?}", leases(&env));

    // The same lease with the pid reused by another process (a different start time) is dead too.
    let mut reused = crashed.clone();
    reused.pid = std::process::id();
    reused.pid_start = reused.pid_start.map(|s| s + 1);
    put_lease(&repo, &reused);
    env.r_ok(&["prune"]);
    assert!(leases(&env).is_empty(), "lease left: {:?}", leases(&env));
}

#[test]
fn a_live_prune_lease_refuses_prune_with_its_own_exit_code() {
    let env = Env::new();
    repo_with_tree(&env, 5);
    let repo = open(&env);
    // Held by this test process: alive, on this host.
    let held = lease::acquire_exclusive(&repo, chrono::Duration::minutes(5)).unwrap();
    let out = env.r(&["prune"]);
    out.assert_code(LEASE_HELD);
    assert!(
        out.stderr_lower().contains("another prune"),
        "{}",
        out.describe()
    );
    // A version 1 lease (no holder identity) of another host counts until it expires.
    let foreign = put_lease(
        &repo,
        &foreign_lease(LeaseKind::Prune, -chrono::Duration::minutes(5)),
    );
    held.release(&repo).unwrap();
    env.r(&["prune"]).assert_code(LEASE_HELD);
    assert_eq!(leases(&env).len(), 1);
    assert!(env.repo.join("locks").join(&foreign).exists());
}

#[test]
fn key_rotate_reencrypt_refused_by_a_live_prune_lease_changes_nothing() {
    let env = Env::new();
    repo_with_tree(&env, 5);
    let repo = open(&env);
    let keys_before = common::tree_listing(&env.repo.join("keys"));
    let held = lease::acquire_exclusive(&repo, chrono::Duration::minutes(5)).unwrap();
    for _ in 0..2 {
        env.r(&["key", "rotate", "--reencrypt"])
            .assert_code(LEASE_HELD);
    }
    assert_eq!(
        common::tree_listing(&env.repo.join("keys")),
        keys_before,
        "a refused rotation wrote or removed key files"
    );
    held.release(&repo).unwrap();
    // Once the lease is gone the same command works, making exactly one new epoch.
    env.r_ok(&["key", "rotate", "--reencrypt"]);
    let keys = env.r_json(&["key", "list"]);
    let epochs: Vec<u64> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["epoch"].as_u64())
        .collect();
    assert_eq!(epochs, vec![1], "{keys}");
}

/// Puts an idle and a fresh temporary into `repo/tmp`, an old expired lease, and a lease that
/// expired a minute ago; returns their paths.
fn litter(env: &Env, repo_dir: &Path) -> [PathBuf; 4] {
    let tmp = repo_dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let old_tmp = tmp.join("abcd.0123");
    let young_tmp = tmp.join("abce.4567");
    write_file(&old_tmp, &random_bytes(1, 50_000));
    write_file(&young_tmp, &random_bytes(2, 50_000));
    set_age(&old_tmp, Duration::from_secs(3600));
    set_age(&young_tmp, Duration::from_secs(60));
    let repo = open(env);
    let locks = repo_dir.join("locks");
    let old = locks.join(put_lease(
        &repo,
        &foreign_lease(LeaseKind::Backup, chrono::Duration::hours(1)),
    ));
    let recent = locks.join(put_lease(
        &repo,
        &foreign_lease(LeaseKind::Backup, chrono::Duration::minutes(1)),
    ));
    [old_tmp, young_tmp, old, recent]
}

#[test]
fn prune_backup_and_unlock_sweep_stale_temporaries_and_old_leases_but_not_young_ones() {
    let env = Env::new();
    let src = repo_with_tree(&env, 5);
    for step in ["prune", "backup"] {
        let [old_tmp, young_tmp, old_lease, recent_lease] = litter(&env, &env.repo);
        match step {
            "prune" => env.r_ok(&["prune"]),
            _ => env.r_ok(&[std::ffi::OsStr::new("backup"), src.as_os_str()]),
        };
        assert!(!old_tmp.exists(), "{step} left an idle temporary");
        assert!(young_tmp.exists(), "{step} removed a fresh temporary");
        assert!(
            !old_lease.exists(),
            "{step} left a lease expired an hour ago"
        );
        assert!(
            recent_lease.exists(),
            "{step} removed a lease expired a minute ago"
        );
        for p in [young_tmp, recent_lease] {
            std::fs::remove_file(p).unwrap();
        }
    }
    // unlock: every lease that no longer counts, but not a live one; --remove-all: that too.
    let [old_tmp, young_tmp, old_lease, _] = litter(&env, &env.repo);
    let repo = open(&env);
    let live = env.repo.join("locks").join(put_lease(
        &repo,
        &foreign_lease(LeaseKind::Prune, -chrono::Duration::minutes(5)),
    ));
    env.r_ok(&["unlock"]);
    assert!(!old_tmp.exists() && young_tmp.exists() && !old_lease.exists());
    assert!(live.exists(), "unlock removed a live lease");
    let out = env.r_ok(&["unlock", "--remove-all"]);
    assert!(leases(&env).is_empty(), "lease left: {:?}", leases(&env));
    assert!(out.stderr_lower().contains("warning"), "{}", out.describe());
}

#[test]
fn sync_sweeps_stale_temporaries_of_its_target() {
    let env = Env::new();
    repo_with_tree(&env, 5);
    let target = env.path("offsite");
    let target_str = target.to_str().unwrap();
    env.r_ok(&["sync", "--to", target_str]);
    let tmp = target.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let (old, young) = (tmp.join("ab.01"), tmp.join("ab.02"));
    write_file(&old, &random_bytes(4, 10_000));
    write_file(&young, &random_bytes(5, 10_000));
    set_age(&old, Duration::from_secs(3600));
    env.r_ok(&["sync", "--to", target_str]);
    assert!(!old.exists(), "sync left an idle temporary in its target");
    assert!(
        young.exists(),
        "sync removed a fresh temporary of its target"
    );
}
