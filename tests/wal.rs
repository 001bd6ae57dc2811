//! WAL archiving through the CLI, with files named and sized as PostgreSQL's (no server needed; the
//! PostgreSQL end to end is `pitr.rs`): `wal push` stores a file once, accepts the same bytes again
//! and refuses other bytes under the name; it archives ready files ahead and their own call then
//! costs nothing; `wal fetch` writes exact bytes, exits 1 for a file never archived and 126 for a
//! gap, damage or a wrong password; prune keeps archived WAL; check and `wal list` name a gap.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;

/// A pg_wal directory with segments of 1 MiB (PostgreSQL's smallest), pseudo-random bytes.
struct PgWal {
    dir: PathBuf,
}

const SEGMENT: usize = 1 << 20;

impl PgWal {
    fn new(env: &Env) -> PgWal {
        let dir = env.path("pg_wal");
        std::fs::create_dir_all(dir.join("archive_status")).unwrap();
        PgWal { dir }
    }

    fn name(n: u64) -> String {
        format!("00000001{:08X}{:08X}", n / 4096, n % 4096)
    }

    /// Writes segment `n` with content from `seed`, marked ready; returns its path.
    fn segment(&self, n: u64, seed: u64) -> PathBuf {
        let name = Self::name(n);
        let path = self.dir.join(&name);
        std::fs::write(&path, pseudo_random(SEGMENT, seed)).unwrap();
        std::fs::write(
            self.dir
                .join("archive_status")
                .join(format!("{name}.ready")),
            b"",
        )
        .unwrap();
        path
    }
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half text-like, as WAL compresses.
            if i % 2 == 0 {
                b'a' + (x % 16) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

fn push(env: &Env, path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["wal", "push"];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    env.r(&args)
}

fn fetch(env: &Env, name: &str, dest: &Path) -> Output {
    env.r(&[
        "wal",
        "fetch",
        name,
        dest.to_str().unwrap(),
        "--prefetch",
        "0",
    ])
}

#[test]
fn a_segment_is_archived_once_the_same_bytes_again_are_accepted_and_other_bytes_refused() {
    let env = Env::new();
    env.init();
    let wal = PgWal::new(&env);
    let first = wal.segment(1, 1);
    push(&env, &first, &["--ahead", "0"]).assert_success();
    let again = env.r_json(&["wal", "push", "--ahead", "0", first.to_str().unwrap()]);
    assert_eq!(again["result"], "already_archived", "{again}");
    assert_eq!(again["bytes_added"], 0, "{again}");

    std::fs::write(&first, pseudo_random(SEGMENT, 99)).unwrap();
    let out = push(&env, &first, &["--ahead", "0"]);
    assert_eq!(out.code, 2, "{}", out.describe());
    assert!(out.stderr.contains("different bytes"), "{}", out.describe());

    let dest = env.path("restored");
    fetch(&env, &PgWal::name(1), &dest).assert_success();
    assert!(std::fs::read(&dest).unwrap() == pseudo_random(SEGMENT, 1));
}

#[test]
fn ready_files_are_archived_ahead_and_their_own_call_opens_nothing() {
    let env = Env::new();
    env.init();
    let wal = PgWal::new(&env);
    let paths: Vec<PathBuf> = (1..=4).map(|n| wal.segment(n, n)).collect();
    let out = env.r_json(&["wal", "push", paths[0].to_str().unwrap()]);
    assert_eq!(out["ahead"].as_array().unwrap().len(), 3, "{out}");
    // The later calls are answered from the spool: even a wrong password does not matter.
    for p in &paths[1..] {
        let out = env.run(
            &[
                "-r",
                env.repo_str(),
                "--json",
                "wal",
                "push",
                p.to_str().unwrap(),
            ],
            None,
            &[("CAIRN_PASSWORD", Some("wrong"))],
        );
        out.assert_success();
        assert_eq!(out.json()["result"], "archived_ahead", "{}", out.describe());
    }
    // A file changed since it was archived ahead is not taken for archived.
    let changed = wal.segment(5, 5);
    env.r_json(&["wal", "push", "--ahead", "0", paths[0].to_str().unwrap()]);
    std::fs::write(&changed, pseudo_random(SEGMENT, 55)).unwrap();
    let out = env.r_json(&["wal", "push", changed.to_str().unwrap()]);
    assert_eq!(out["result"], "stored", "{out}");
    let list = env.r_json(&["wal", "list"]);
    assert_eq!(list["files"], 5, "{list}");
    assert_eq!(
        list["timelines"][0]["gaps"].as_array().unwrap().len(),
        0,
        "{list}"
    );
}

#[test]
fn fetch_exits_1_for_a_file_never_archived_and_126_for_a_gap_damage_or_a_wrong_password() {
    let env = Env::new();
    env.init();
    let wal = PgWal::new(&env);
    for n in [1, 2, 4] {
        let p = wal.segment(n, n);
        push(&env, &p, &["--ahead", "0"]).assert_success();
    }
    let dest = env.path("RECOVERYXLOG");
    // Past the end: PostgreSQL's "not archived", which ends recovery's reading of the archive.
    assert_eq!(fetch(&env, &PgWal::name(5), &dest).code, 1);
    assert_eq!(fetch(&env, "00000002.history", &dest).code, 1);
    // Segment 3 is missing while 4 is there: recovery must stop, not promote.
    let out = fetch(&env, &PgWal::name(3), &dest);
    assert_eq!(out.code, 126, "{}", out.describe());
    assert!(out.stderr.contains(&PgWal::name(3)), "{}", out.describe());
    assert!(!dest.exists());
    let out = env.run(
        &[
            "-r",
            env.repo_str(),
            "wal",
            "fetch",
            &PgWal::name(1),
            dest.to_str().unwrap(),
        ],
        None,
        &[("CAIRN_PASSWORD", Some("wrong"))],
    );
    assert_eq!(out.code, 126, "{}", out.describe());
    // A pack damaged under the segment.
    let pack = largest_pack(&env.repo);
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&pack, bytes).unwrap();
    let damaged: Vec<i32> = [1, 2, 4]
        .iter()
        .map(|n| fetch(&env, &PgWal::name(*n), &dest).code)
        .collect();
    assert!(damaged.contains(&126), "{damaged:?}");
    assert!(damaged.iter().all(|c| *c == 0 || *c == 126), "{damaged:?}");

    let check = env.r(&["check"]);
    assert_eq!(check.code, 4, "{}", check.describe());
    assert!(
        check.stdout.contains(&PgWal::name(3)) || check.stderr.contains(&PgWal::name(3)),
        "{}",
        check.describe()
    );
    let list = env.r(&["--json", "wal", "list"]);
    assert_eq!(list.code, 4, "{}", list.describe());
    let gaps = list.json()["timelines"][0]["gaps"].clone();
    assert_eq!(gaps, serde_json::json!([[PgWal::name(3), PgWal::name(3)]]));
}

#[test]
fn prefetched_segments_serve_the_next_calls_and_prune_keeps_archived_wal() {
    let env = Env::new();
    env.init();
    let wal = PgWal::new(&env);
    let first = wal.segment(1, 1);
    for n in 2..=6 {
        wal.segment(n, n);
    }
    push(&env, &first, &[]).assert_success();
    // Nothing else references the WAL: a prune that forgot it would remove every pack.
    let ripe_at_once = ["prune", "--grace", "0s", "--clock-skew", "0s"];
    env.r_ok(&ripe_at_once);
    env.r_ok(&ripe_at_once);
    assert!(!pack_files(&env.repo).is_empty());
    env.r_ok(&["check", "--read-data"]);
    let dest = env.path("RECOVERYXLOG");
    env.r_ok(&[
        "wal",
        "fetch",
        &PgWal::name(1),
        dest.to_str().unwrap(),
        "--prefetch",
        "3",
    ]);
    assert!(std::fs::read(&dest).unwrap() == pseudo_random(SEGMENT, 1));
    for n in 2..=4 {
        // The prefetch runs in the background: give it a moment, as recovery's replay would.
        let fetch_with_a_wrong_password = || {
            env.run(
                &[
                    "-r",
                    env.repo_str(),
                    "-v",
                    "wal",
                    "fetch",
                    &PgWal::name(n),
                    dest.to_str().unwrap(),
                ],
                None,
                &[("CAIRN_PASSWORD", Some("wrong"))],
            )
        };
        let mut out = fetch_with_a_wrong_password();
        for _ in 0..100 {
            if out.code == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            out = fetch_with_a_wrong_password();
        }
        out.assert_success();
        assert!(out.stderr.contains("fetched ahead"), "{}", out.describe());
        assert!(std::fs::read(&dest).unwrap() == pseudo_random(SEGMENT, n));
    }
    // Segment 5 was not prefetched: the wrong password now matters.
    let out = env.run(
        &[
            "-r",
            env.repo_str(),
            "wal",
            "fetch",
            &PgWal::name(5),
            dest.to_str().unwrap(),
        ],
        None,
        &[("CAIRN_PASSWORD", Some("wrong"))],
    );
    assert_eq!(out.code, 126, "{}", out.describe());
}

#[test]
fn names_that_are_not_wal_files_are_refused_before_anything_is_opened() {
    let env = Env::new();
    let bad = env.path("notwal.txt");
    std::fs::write(&bad, b"x").unwrap();
    let out = env.r(&["wal", "push", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.describe());
    assert!(
        out.stderr.contains("not the name of a PostgreSQL WAL file"),
        "{}",
        out.describe()
    );
    let out = env.r(&["wal", "fetch", "../../etc/passwd", "/tmp/x"]);
    assert_eq!(out.code, 126, "{}", out.describe());
}

#[test]
fn status_judges_the_age_of_the_newest_archived_wal_and_its_gaps() {
    let env = Env::new();
    env.init();
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), b"some data").unwrap();
    env.r_ok(&["backup", data.to_str().unwrap()]);
    let wal = PgWal::new(&env);
    for n in [1, 2] {
        push(&env, &wal.segment(n, n), &["--ahead", "0"]).assert_success();
    }
    let wal_finding = |args: &[&str]| -> (i32, serde_json::Value) {
        let mut full = vec!["--json", "status"];
        full.extend_from_slice(args);
        let out = env.r(&full);
        let report = out.json();
        let finding = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["subject"] == "wal")
            .cloned()
            .unwrap_or_else(|| panic!("no wal finding: {}", out.describe()));
        (out.code, finding)
    };
    // No base backup yet: the WAL alone restores nothing.
    let (code, finding) = wal_finding(&[]);
    assert_eq!(
        (code, finding["level"].as_str()),
        (1, Some("WARNING")),
        "{finding}"
    );
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("no base backup"),
        "{finding}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, finding) = wal_finding(&["--wal-warn-age", "0s", "--wal-crit-age", "1s"]);
    assert_eq!(
        (code, finding["level"].as_str()),
        (2, Some("CRITICAL")),
        "{finding}"
    );
    push(&env, &wal.segment(4, 4), &["--ahead", "0"]).assert_success();
    let (code, finding) = wal_finding(&[]);
    assert_eq!(code, 2, "{finding}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains(&PgWal::name(3)),
        "{finding}"
    );
    let prom = env.r(&["status", "--format", "prometheus"]);
    assert!(
        prom.stdout.contains("cairn_wal_gaps 1"),
        "{}",
        prom.describe()
    );
    assert!(
        prom.stdout.contains("cairn_wal_newest_age_seconds"),
        "{}",
        prom.describe()
    );
}

#[test]
fn a_push_killed_at_any_moment_leaves_a_sound_repository_and_postgresqls_retry_archives_the_file() {
    let env = Env::new();
    env.init();
    let wal = PgWal::new(&env);
    // Kill moments from the first instant to past the end of a push, in milliseconds.
    let delays = [0u64, 3, 8, 15, 25, 40, 60, 90, 130, 200, 300, 500];
    for (n, delay) in delays.iter().enumerate() {
        let n = n as u64 + 1;
        let path = wal.segment(n, n);
        let mut child = env
            .command()
            .args(["-r", env.repo_str(), "wal", "push", "--ahead", "0"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(*delay));
        let _ = child.kill();
        let _ = child.wait();
        let check = env.r(&["check"]);
        assert_eq!(
            check.code,
            0,
            "after a kill at {delay} ms: {}",
            check.describe()
        );
        // PostgreSQL calls again for a file whose push did not report success.
        push(&env, &path, &["--ahead", "0"]).assert_success();
        let dest = env.path("RECOVERYXLOG");
        fetch(&env, &PgWal::name(n), &dest).assert_success();
        assert!(std::fs::read(&dest).unwrap() == pseudo_random(SEGMENT, n));
    }
    let list = env.r_json(&["wal", "list"]);
    assert_eq!(list["files"], delays.len(), "{list}");
    assert_eq!(
        list["timelines"][0]["gaps"],
        serde_json::json!([]),
        "{list}"
    );
    env.r_ok(&["check", "--read-data"]);
}

#[test]
fn prunes_running_beside_archiving_keep_every_archived_file() {
    let env = Env::new();
    env.init();
    let wal = PgWal::new(&env);
    let segments = 16u64;
    let paths: Vec<PathBuf> = (1..=segments).map(|n| wal.segment(n, n)).collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for p in &paths {
                push(&env, p, &["--ahead", "0"]).assert_success();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let out = env.r(&["prune", "--grace", "0s", "--clock-skew", "0s", "-q"]);
                // Two prunes never run at once; one refused for that changes nothing (exit 11).
                assert!(out.code == 0 || out.code == 11, "{}", out.describe());
            }
        });
    });
    for _ in 0..2 {
        env.r_ok(&["prune", "--grace", "0s", "--clock-skew", "0s"]);
    }
    env.r_ok(&["check", "--read-data"]);
    let dest = env.path("RECOVERYXLOG");
    for n in 1..=segments {
        fetch(&env, &PgWal::name(n), &dest).assert_success();
        assert!(
            std::fs::read(&dest).unwrap() == pseudo_random(SEGMENT, n),
            "segment {n}"
        );
    }
}

#[test]
fn the_plans_monitor_section_sets_the_wal_age_thresholds() {
    let env = Env::new();
    env.init();
    let wal = PgWal::new(&env);
    push(&env, &wal.segment(1, 1), &["--ahead", "0"]).assert_success();
    let plan = env.path("plan.toml");
    let write_plan = |crit: &str| {
        std::fs::write(
            &plan,
            format!(
                "[repository]\nlocation = \"{}\"\npassword_command = [\"printf\", \"%s\\n\", \"{}\"]\n\n[monitor]\nwal_warn_age = \"0s\"\nwal_crit_age = \"{crit}\"\n",
                env.repo_str(),
                env.password
            ),
        )
        .unwrap();
    };
    let wal_level = || -> String {
        let out = env.cairn(&["--json", "status", "--plan", plan.to_str().unwrap()]);
        let report = out.json();
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["subject"] == "wal")
            .map(|f| f["level"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no wal finding: {}", out.describe()))
    };
    write_plan("1d");
    assert_eq!(wal_level(), "WARNING");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write_plan("1s");
    assert_eq!(wal_level(), "CRITICAL");
    write_plan("soon");
    let out = env.cairn(&["plan", "validate", "--plan", plan.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.describe());
    assert!(out.stderr.contains("wal_crit_age"), "{}", out.describe());
}

/// PostgreSQL's side of a successful `archive_command`: the file is no longer ready.
fn archived(wal: &PgWal, n: u64) {
    let status = wal.dir.join("archive_status");
    let name = PgWal::name(n);
    std::fs::rename(
        status.join(format!("{name}.ready")),
        status.join(format!("{name}.done")),
    )
    .unwrap();
}

#[test]
fn a_queue_over_its_limit_drops_its_oldest_files_and_the_drop_is_recorded_and_critical() {
    let env = Env::new();
    env.init();
    let wal = PgWal::new(&env);
    let first = wal.segment(1, 1);
    push(&env, &first, &["--queue-max", "2M"]).assert_success();
    archived(&wal, 1);
    // The repository was out of reach for a while: four segments wait, 4 MiB over a 2 MiB limit.
    let paths: Vec<PathBuf> = (2..=5).map(|n| wal.segment(n, n)).collect();
    let out = env.r_json(&[
        "wal",
        "push",
        "--queue-max",
        "2M",
        paths[0].to_str().unwrap(),
    ]);
    assert_eq!(out["result"], "dropped", "{out}");
    assert_eq!(
        out["dropped"],
        serde_json::json!([PgWal::name(2), PgWal::name(3)]),
        "{out}"
    );
    archived(&wal, 2);
    // PostgreSQL's own call for the other dropped file is answered at once, and the next file
    // is archived with the one after it.
    let out = env.r_json(&[
        "wal",
        "push",
        "--queue-max",
        "2M",
        paths[1].to_str().unwrap(),
    ]);
    assert_eq!(out["result"], "archived_ahead", "{out}");
    archived(&wal, 3);
    let out = env.r_json(&[
        "wal",
        "push",
        "--queue-max",
        "2M",
        paths[2].to_str().unwrap(),
    ]);
    assert_eq!(out["result"], "stored", "{out}");
    assert_eq!(out["drops_recorded"], 2, "{out}");
    assert_eq!(out["backlog"]["bytes"], 2 * SEGMENT, "{out}");
    // The drop is in the repository: wal list names it, status is CRITICAL and says why, recovery
    // stops at the gap instead of promoting past it.
    let list = env.r(&["--json", "wal", "list"]);
    assert_eq!(list.code, 4, "{}", list.describe());
    let dropped: Vec<String> = list.json()["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dropped, [PgWal::name(2), PgWal::name(3)]);
    let status = env.r(&["--json", "status"]);
    assert_eq!(status.code, 2, "{}", status.describe());
    let finding = status.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "wal")
        .cloned()
        .unwrap();
    let message = finding["message"].as_str().unwrap();
    assert!(
        message.contains("dropped unarchived") && message.contains(&PgWal::name(2)),
        "{finding}"
    );
    let prom = env.r(&["status", "--format", "prometheus"]);
    assert!(
        prom.stdout.contains("cairn_wal_dropped 2"),
        "{}",
        prom.describe()
    );
    let dest = env.path("fetched");
    let out = fetch(&env, &PgWal::name(2), &dest);
    assert_eq!(out.code, 126, "{}", out.describe());
    // The journal was settled: a later record does not name the drops again.
    let sixth = wal.segment(6, 6);
    archived(&wal, 4);
    archived(&wal, 5);
    let out = env.r_json(&["wal", "push", "--queue-max", "2M", sixth.to_str().unwrap()]);
    assert_eq!(out["drops_recorded"], 0, "{out}");
}

/// Whether a background archiver still holds its lock under `cache`.
fn archiver_running(cache: &Path) -> bool {
    let Ok(spools) = std::fs::read_dir(cache.join("wal-spool")) else {
        return false;
    };
    spools.flatten().any(|spool| {
        let Ok(file) = std::fs::OpenOptions::new()
            .write(true)
            .open(spool.path().join("archiver.lock"))
        else {
            return false;
        };
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err()
    })
}

#[test]
fn an_asynchronous_push_waits_for_the_background_archiver_which_stores_the_queue_and_ends() {
    let env = Env::new();
    env.init();
    let wal = PgWal::new(&env);
    let paths: Vec<PathBuf> = (1..=5).map(|n| wal.segment(n, n)).collect();
    let out = env.r_json(&["wal", "push", "--async", paths[0].to_str().unwrap()]);
    assert_eq!(out["result"], "archived_async", "{out}");
    archived(&wal, 1);
    // Files marked ready later are stored as they come, without PostgreSQL's call.
    let late = wal.segment(6, 6);
    for (n, p) in (2..=6).zip(paths[1..].iter().chain([&late])) {
        let out = env.r_json(&["wal", "push", "--async", p.to_str().unwrap()]);
        assert!(
            out["result"] == "archived_async" || out["result"] == "archived_ahead",
            "{out}"
        );
        archived(&wal, n);
    }
    let list = env.r_json(&["wal", "list"]);
    assert_eq!(list["files"], 6, "{list}");
    assert_eq!(
        list["backlog"]["files"].as_u64().map(|f| f >= 1),
        Some(true),
        "{list}"
    );
    // Other bytes under an archived name: the archiver refuses the file, and the call pushes it
    // itself to say so with exit 2, as a synchronous push does.
    let other = wal.segment(3, 33);
    let out = env.r(&["wal", "push", "--async", other.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.describe());
    assert!(out.stderr.contains("different bytes"), "{}", out.describe());
    // With nothing left to archive, the archiver ends by itself.
    let cache = env.cache_dir();
    let waited = std::time::Instant::now();
    while archiver_running(&cache) {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(30),
            "the background archiver did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    env.r_ok(&["check"]);
}

/// A background archiver that cannot open the repository ends at once; the call then pushes by
/// itself and fails with the repository's error and exit code, without waiting out its minute,
/// and marks nothing archived.
#[test]
fn an_asynchronous_push_whose_archiver_fails_reports_the_error_itself() {
    let env = Env::new();
    env.init();
    let wal = PgWal::new(&env);
    let first = wal.segment(1, 1);
    let started = std::time::Instant::now();
    let out = env.run(
        &[
            "-r",
            env.repo_str(),
            "wal",
            "push",
            "--async",
            first.to_str().unwrap(),
        ],
        None,
        &[("CAIRN_PASSWORD", Some("wrong"))],
    );
    assert_eq!(out.code, exit::WRONG_PASSWORD, "{}", out.describe());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the call waited out the archiver"
    );
    // Nothing was taken for archived: the right password archives it now.
    let out = env.r_json(&["wal", "push", "--async", first.to_str().unwrap()]);
    assert_eq!(out["result"], "archived_async", "{out}");
    assert_eq!(env.r_json(&["wal", "list"])["files"], 1);
}
