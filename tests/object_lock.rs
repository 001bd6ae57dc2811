//! S3 Object Lock (FORMAT.md §17) against moto_server, which refuses to delete a locked version:
//! a locked repository locks every object it writes, prune waits for locks to expire, a plain
//! bucket is refused, and a sync target's locks follow the keep policy.

use std::path::Path;
use std::time::Duration;

use cairn::backend::{self, Backend, BackendOptions, Location, ObjectKind, WRITE_ORDER};

use crate::common::offsite::{self, Remote};
use crate::common::{self, server_var, Env};

/// A new bucket on moto for one test (with Object Lock, which also enables versioning, when
/// `locked`), and the remote for a repository in it.
fn bucket(test: &str, locked: bool) -> Option<(Remote, String)> {
    let endpoint = server_var("CAIRN_TEST_MOTO_ENDPOINT")?;
    let name = format!("{test}-{}", std::process::id());
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sf", "-X", "PUT", &format!("{endpoint}/{name}")]);
    if locked {
        curl.args(["-H", "x-amz-bucket-object-lock-enabled: true"]);
    }
    assert!(
        curl.status().unwrap().success(),
        "cannot create bucket {name}"
    );
    let remote = offsite::moto_remote(&endpoint, format!("s3://{name}/repo"));
    Some((remote, endpoint))
}

/// Lock settings as `init --lock-mode governance --lock-period 1d --lock-margin 1d` writes them.
fn governance_for_a_day() -> cairn::backend::LockSettings {
    cairn::backend::LockSettings::new(
        cairn::backend::LockMode::Governance,
        chrono::Duration::days(1),
        chrono::Duration::days(1),
    )
    .unwrap()
}

/// The library's view of the remote, to read retentions as a third party would.
fn open(remote: &Remote, endpoint: &str) -> Box<dyn Backend> {
    let options = BackendOptions::from_pairs(&[
        "access_key_id=test".to_string(),
        "secret_access_key=test".to_string(),
        "region=us-east-1".to_string(),
        format!("endpoint={endpoint}"),
    ])
    .unwrap();
    backend::open(&Location::parse(&remote.url).unwrap(), &options).unwrap()
}

/// Every object of the kinds a restore needs, with its retention.
fn retentions(b: &dyn Backend) -> Vec<(ObjectKind, String, Option<cairn::backend::Retention>)> {
    let mut out = Vec::new();
    for kind in WRITE_ORDER {
        for (name, _) in b.list(kind).unwrap() {
            let r = b.retention(kind, &name).unwrap();
            out.push((kind, name, r));
        }
    }
    out
}

fn backup(env: &Env, r: &Remote, src: &Path) {
    r.on(env, &["-q", "backup", src.to_str().unwrap()])
        .assert_success();
}

#[test]
fn a_locked_repository_locks_what_it_writes_and_prune_waits_for_the_locks() {
    let Some((r, endpoint)) = bucket("lockprune", true) else {
        return;
    };
    let env = Env::new();
    r.on(
        &env,
        &[
            "init",
            "--lock-mode",
            "governance",
            "--lock-period",
            "6s",
            "--lock-margin",
            "1s",
        ],
    )
    .assert_success();
    let src = env.path("src");
    common::write_file(&src.join("old.bin"), &common::random_bytes(1, 3 << 20));
    backup(&env, &r, &src);
    std::fs::remove_file(src.join("old.bin")).unwrap();
    common::write_file(&src.join("new.bin"), &common::random_bytes(2, 2 << 20));
    backup(&env, &r, &src);
    let b = open(&r, &endpoint);
    let locks = retentions(b.as_ref());
    assert!(locks.len() >= 7, "{locks:?}");
    let now = chrono::Utc::now();
    for (kind, name, retention) in &locks {
        let retention = retention.unwrap_or_else(|| panic!("{} {name} has no lock", kind.label()));
        assert_eq!(retention.mode, cairn::backend::LockMode::Governance);
        assert!(
            retention.until > now,
            "{} {name}: {retention:?}",
            kind.label()
        );
    }
    // Leases are bookkeeping, never locked: none is left behind.
    assert!(b.list(ObjectKind::Lease).unwrap().is_empty());

    // The older snapshot goes; its pack is condemned, then ripe but still locked: it waits.
    let forget = r.on(
        &env,
        &[
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--grace",
            "0h",
            "--clock-skew",
            "0h",
        ],
    );
    forget.assert_success();
    let prune = r.on(
        &env,
        &["--json", "prune", "--grace", "0h", "--clock-skew", "0h"],
    );
    prune.assert_success();
    let plan = prune.json();
    assert!(plan["delete"].as_array().unwrap().is_empty(), "{plan}");
    let locked = plan["locked"].as_array().unwrap();
    assert!(!locked.is_empty(), "{plan}");
    assert!(plan["waiting"].to_string().contains("locked"), "{plan}");
    let held = locked[0]["pack"].as_str().unwrap().to_string();
    assert!(
        b.size(ObjectKind::Pack, &held).is_ok(),
        "a locked pack was deleted"
    );

    // Once the locks expire, the next prune deletes the pack.
    std::thread::sleep(Duration::from_secs(7));
    let prune = r.on(
        &env,
        &["--json", "prune", "--grace", "0h", "--clock-skew", "0h"],
    );
    prune.assert_success();
    let plan = prune.json();
    assert!(plan["delete"].to_string().contains(&held), "{plan}");
    assert!(b.size(ObjectKind::Pack, &held).is_err());
    r.on(&env, &["check", "--read-data"]).assert_success();
    offsite::assert_remote_restores(&env, &r, &src, "restored");
}

#[test]
fn a_bucket_without_object_lock_is_refused_with_how_to_create_one() {
    let Some((r, _)) = bucket("lockplain", false) else {
        return;
    };
    let env = Env::new();
    let out = r.on(
        &env,
        &["init", "--lock-mode", "compliance", "--lock-period", "30d"],
    );
    out.assert_code(2);
    assert!(
        out.stderr.contains("--object-lock-enabled-for-bucket"),
        "{}",
        out.describe()
    );
    // Nothing was written: the location is still empty and takes an unlocked repository.
    r.on(&env, &["init"]).assert_success();
}

#[test]
fn a_sync_targets_locks_follow_the_keep_policy() {
    let Some((r, endpoint)) = bucket("locksync", true) else {
        return;
    };
    let env = Env::new();
    env.init();
    let src = env.path("src");
    common::write_file(&src.join("a.bin"), &common::random_bytes(3, 1 << 20));
    env.r_ok(&["-q", "backup", src.to_str().unwrap()]);
    let local = env.root().join("repo");
    let out = r.sync(
        &env,
        &local,
        "--to",
        &[
            "--lock-mode",
            "compliance",
            "--lock-period",
            "1d",
            "--lock-margin",
            "2d",
            "--keep-daily",
            "7",
        ],
    );
    out.assert_success();
    let b = open(&r, &endpoint);
    // The snapshot and everything it needs: kept 7 days by the daily rule, plus the 2-day margin.
    let floor = chrono::Utc::now() + chrono::Duration::days(8);
    for (kind, name, retention) in retentions(b.as_ref()) {
        let retention = retention.unwrap_or_else(|| panic!("{} {name} has no lock", kind.label()));
        assert_eq!(retention.mode, cairn::backend::LockMode::Compliance);
        assert!(
            retention.until > floor,
            "{} {name}: {retention:?}",
            kind.label()
        );
    }
    r.on(&env, &["retention", "show", "--keep-daily", "7"])
        .assert_success();
    // A monthly rule needs the locks longer: show says so, extend fixes it and counts requests.
    let show = r.on(&env, &["retention", "show", "--keep-monthly", "12"]);
    show.assert_code(1);
    assert!(
        show.stderr.contains("lock too short"),
        "{}",
        show.describe()
    );
    let extended = r.on(
        &env,
        &["--json", "retention", "extend", "--keep-monthly", "12"],
    );
    extended.assert_success();
    let report = extended.json();
    let n = report["checked"].as_u64().unwrap();
    assert!(n >= 5 && report["extended"].as_u64() == Some(n), "{report}");
    assert_eq!(report["requests"].as_u64(), Some(2 * n));
    r.on(&env, &["retention", "show", "--keep-monthly", "12"])
        .assert_success();
    // Extended once, the locks hold: a second run reads and changes nothing.
    let again = r
        .on(
            &env,
            &["--json", "retention", "extend", "--keep-monthly", "12"],
        )
        .json();
    assert_eq!(again["extended"].as_u64(), Some(0), "{again}");
}

#[test]
fn forged_snapshot_times_push_no_real_snapshot_out_of_a_locked_repository() {
    let Some((r, _)) = bucket("lockforge", true) else {
        return;
    };
    let env = Env::new();
    r.on(
        &env,
        &["init", "--lock-mode", "governance", "--lock-period", "1d"],
    )
    .assert_success();
    let src = env.path("src");
    common::write_file(&src.join("a.bin"), &common::random_bytes(4, 1 << 20));
    let mut real = Vec::new();
    for _ in 0..2 {
        let out = r.on(&env, &["--json", "backup", src.to_str().unwrap()]);
        out.assert_success();
        real.push(out.json()["snapshot_id"].as_str().unwrap().to_string());
    }
    // A host holding the key writes snapshots that claim to be newer (and one much older).
    let now = chrono::Utc::now();
    for claimed in [
        now + chrono::Duration::days(30),
        now + chrono::Duration::days(31),
        now - chrono::Duration::days(40),
    ] {
        let time = claimed.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        r.on(
            &env,
            &["-q", "backup", "--time", &time, src.to_str().unwrap()],
        )
        .assert_success();
    }
    let out = r.on(&env, &["--json", "forget", "--keep-last", "2"]);
    out.assert_success();
    let groups = out.json();
    let decisions: Vec<&serde_json::Value> = groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["snapshots"].as_array().unwrap())
        .collect();
    assert_eq!(decisions.len(), 5, "{groups}");
    for d in &decisions {
        assert_eq!(d["keep"], true, "{groups}");
        let reasons = d["reasons"].to_string();
        let is_real = real.iter().any(|id| id == d["id"].as_str().unwrap());
        assert_eq!(is_real, !reasons.contains("time not trusted"), "{groups}");
    }
    let listed = r.on(&env, &["--json", "snapshots"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 5);
}

/// The signed requests are checked by a server that verifies SigV4 (the in-process s3s server,
/// which has no Object Lock and takes the lock headers as plain headers): the bucket queries are
/// answered (and the bucket refused for want of Object Lock, not for a bad signature), and with a
/// `locking` object planted, every locked write (a put with a body, its checksum and the lock
/// headers) and every retention read is accepted.
#[test]
fn the_signed_lock_requests_pass_a_server_that_verifies_signatures() {
    let env = Env::new();
    let server = crate::common::s3::S3Server::start(&env.path("s3"));
    let r = server.remote("signed");
    let out = r.on(
        &env,
        &["init", "--lock-mode", "governance", "--lock-period", "1d"],
    );
    out.assert_code(2);
    assert!(out.stderr.contains("Object Lock"), "{}", out.describe());
    assert!(!out.stderr.contains("Signature"), "{}", out.describe());
    r.on(&env, &["init"]).assert_success();
    let settings = governance_for_a_day();
    common::write_file(
        &server.object_file("signed", "locking"),
        &settings.to_bytes(),
    );
    let src = env.path("src");
    common::write_file(&src.join("a.bin"), &common::random_bytes(5, 3 << 20));
    backup(&env, &r, &src);
    r.on(&env, &["check", "--read-data"]).assert_success();
    offsite::assert_remote_restores(&env, &r, &src, "restored");
    // Retention reads (HEAD) are signed too; s3s keeps no retention, so each reads as unlocked.
    let show = r.on(&env, &["retention", "show"]);
    show.assert_code(1);
    assert!(show.stderr.contains("not locked"), "{}", show.describe());
    assert!(!show.stderr.contains("Signature"), "{}", show.describe());
}

/// Extensions the storage refuses are failures, never a quiet success: s3s has no
/// `PutObjectRetention` (501), so `retention extend` names every object it could not extend, and
/// a sync into a locked target whose locks cannot be extended exits 1 though every object was
/// copied.
#[test]
fn locks_that_cannot_be_extended_fail_the_extension_and_the_sync() {
    let env = Env::new();
    let server = crate::common::s3::S3Server::start(&env.path("s3"));
    let r = server.remote("refusing");
    env.init();
    let src = env.path("src");
    common::write_file(&src.join("a.bin"), &common::random_bytes(11, 1 << 20));
    env.r_ok(&["-q", "backup", src.to_str().unwrap()]);
    let local = env.root().join("repo");
    r.sync(&env, &local, "--to", &[]).assert_success();
    common::write_file(
        &server.object_file("refusing", "locking"),
        &governance_for_a_day().to_bytes(),
    );
    let out = r.on(&env, &["--json", "retention", "extend"]);
    out.assert_code(1);
    let report = out.json();
    let failed = report["failed"].as_array().unwrap();
    assert!(!failed.is_empty(), "{report}");
    assert_eq!(
        failed.len() as u64,
        report["checked"].as_u64().unwrap(),
        "{report}"
    );
    assert_eq!(report["extended"].as_u64(), Some(0), "{report}");
    assert!(
        failed
            .iter()
            .all(|f| f.as_str().unwrap().contains("does not support")),
        "{report}"
    );
    // A new snapshot: copied, then its locks cannot be extended.
    common::write_file(&src.join("b.bin"), &common::random_bytes(12, 1 << 20));
    env.r_ok(&["-q", "backup", src.to_str().unwrap()]);
    let sync = r.sync(&env, &local, "--to", &[]);
    sync.assert_code(1);
    let report = sync.json();
    assert_eq!(report["complete"], true, "{report}");
    assert!(
        !report["locks"]["failed"].as_array().unwrap().is_empty(),
        "{report}"
    );
    offsite::assert_remote_restores(&env, &r, &src, "restored");
}

#[test]
fn sync_delete_leaves_locked_packs_until_their_locks_expire() {
    let Some((r, endpoint)) = bucket("locksyncdel", true) else {
        return;
    };
    let env = Env::new();
    env.init();
    let src = env.path("src");
    common::write_file(&src.join("old.bin"), &common::random_bytes(6, 2 << 20));
    env.r_ok(&["-q", "backup", src.to_str().unwrap()]);
    std::fs::remove_file(src.join("old.bin")).unwrap();
    common::write_file(&src.join("new.bin"), &common::random_bytes(7, 1 << 20));
    env.r_ok(&["-q", "backup", src.to_str().unwrap()]);
    let local = env.root().join("repo");
    // The copy's extension locks each object for period + margin + period / 2 from the sync: 7 s.
    let lock = [
        "--lock-mode",
        "governance",
        "--lock-period",
        "4s",
        "--lock-margin",
        "1s",
    ];
    r.sync(&env, &local, "--to", &lock).assert_success();
    // The source forgets the old snapshot and prunes its pack away.
    env.r_ok(&["-q", "forget", "--keep-last", "1"]);
    for _ in 0..2 {
        env.r_ok(&["-q", "prune", "--grace", "0h", "--clock-skew", "0h"]);
    }
    let out = r.sync(&env, &local, "--to", &["--delete"]);
    out.assert_success();
    let report = offsite::report(&out);
    assert!(
        report["locked"]["objects"].as_u64().unwrap() >= 1,
        "{report}"
    );
    let b = open(&r, &endpoint);
    let packs_before = b.list(ObjectKind::Pack).unwrap().len();
    std::thread::sleep(Duration::from_secs(8));
    let out = r.sync(&env, &local, "--to", &["--delete"]);
    out.assert_success();
    let report = offsite::report(&out);
    assert_eq!(report["locked"]["objects"].as_u64(), Some(0), "{report}");
    assert!(
        report["deleted"]["objects"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(b.list(ObjectKind::Pack).unwrap().len() < packs_before);
    offsite::assert_remote_restores(&env, &r, &src, "restored");
}

#[test]
fn a_plans_locked_offsite_copy_follows_retention_and_status_reports_its_coverage() {
    let Some((r, _)) = bucket("lockplan", true) else {
        return;
    };
    let env = Env::new();
    env.init();
    let src = env.path("src");
    common::write_file(&src.join("a.bin"), &common::random_bytes(8, 1 << 20));
    let plan = env.path("plan.toml");
    let state = env.path("state.json");
    std::fs::write(
        &plan,
        format!(
            r#"
[repository]
location = "{repo}"
password_command = ["printf", "%s\n", "{password}"]

[backup]
paths = ["{src}"]

[retention]
keep_daily = 7
keep_monthly = 12

[[offsite]]
name = "vault"
location = "{target}"
lock_mode = "compliance"
lock_period = "1d"

[monitor]
state_file = "{state}"
"#,
            repo = env.repo_str(),
            password = env.password,
            src = src.display(),
            target = r.url,
            state = state.display(),
        ),
    )
    .unwrap();
    let vars: Vec<(&str, Option<&str>)> = r
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .chain([("CAIRN_PASSWORD", None)])
        .collect();
    let plan_arg = plan.to_str().unwrap();
    env.run(&["run", "--plan", plan_arg], None, &vars)
        .assert_success();
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let locks = &recorded["steps"]["offsite.vault"]["last_success"]["details"]["locks"];
    assert!(locks["extended"].as_u64().unwrap() >= 5, "{recorded}");
    // The snapshot is this month's newest: kept 12 months, so locked about a year.
    let expiry =
        chrono::DateTime::parse_from_rfc3339(locks["earliest_expiry"].as_str().unwrap()).unwrap();
    assert!(
        expiry > chrono::Utc::now() + chrono::Duration::days(300),
        "{locks}"
    );
    let status = env.run(&["--json", "status", "--plan", plan_arg], None, &vars);
    status.assert_success();
    let report = status.json();
    let vault = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "offsite vault")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(vault["level"], "OK", "{report}");
    assert!(
        vault["message"].as_str().unwrap().contains("locked for"),
        "{report}"
    );
    let out = r.on(
        &env,
        &[
            "retention",
            "show",
            "--keep-daily",
            "7",
            "--keep-monthly",
            "12",
        ],
    );
    out.assert_success();
}

#[test]
fn an_init_stopped_after_writing_its_lock_settings_can_be_run_again() {
    let Some((r, endpoint)) = bucket("lockreinit", true) else {
        return;
    };
    let env = Env::new();
    let settings = governance_for_a_day();
    // What an init killed between its first write and its key file leaves.
    open(&r, &endpoint).enable_lock(&settings).unwrap();
    r.on(
        &env,
        &["init", "--lock-mode", "governance", "--lock-period", "1d"],
    )
    .assert_success();
    let src = env.path("src");
    common::write_file(&src.join("a.bin"), &common::random_bytes(9, 1 << 20));
    backup(&env, &r, &src);
    offsite::assert_remote_restores(&env, &r, &src, "restored");
}

#[test]
fn the_ledger_spares_requests_and_is_thrown_away_when_a_lock_proves_it_wrong() {
    let Some((r, endpoint)) = bucket("lockledger", true) else {
        return;
    };
    let env = Env::new();
    env.r_ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    // Chunk boundaries follow the repository's secret seed, so the pack count varies from one
    // init to the next: 40 MiB in 1 MiB packs keeps it well above the 20 the sample needs.
    common::write_file(&src.join("a.bin"), &common::random_bytes(10, 40 << 20));
    env.r_ok(&["-q", "backup", src.to_str().unwrap()]);
    let local = env.root().join("repo");
    let lock = [
        "--lock-mode",
        "governance",
        "--lock-period",
        "30d",
        "--keep-daily",
        "7",
    ];
    r.sync(&env, &local, "--to", &lock).assert_success();
    let extend = |env: &Env| {
        let out = r.on(env, &["--json", "retention", "extend", "--keep-daily", "7"]);
        out.assert_success();
        out.json()
    };
    // The sync read every lock and recorded them: now only a sample is asked about.
    let quiet = extend(&env);
    let n = quiet["checked"].as_u64().unwrap();
    assert!(n >= 20, "{quiet}");
    assert_eq!(quiet["extended"].as_u64(), Some(0), "{quiet}");
    assert!(quiet["from_ledger"].as_u64().unwrap() >= n - 12, "{quiet}");
    assert_eq!(
        quiet["requests"].as_u64().unwrap() + quiet["from_ledger"].as_u64().unwrap(),
        n,
        "{quiet}"
    );
    // Someone shortens every lock (moto, like governance mode with bypass, allows it): the
    // sample finds out, the ledger goes, and every lock is read and extended again.
    let b = open(&r, &endpoint);
    let short = cairn::backend::Retention {
        mode: cairn::backend::LockMode::Governance,
        until: chrono::Utc::now() + chrono::Duration::days(1),
    };
    for kind in WRITE_ORDER {
        for (name, _) in b.list(kind).unwrap() {
            b.extend_retention(kind, &name, &short).unwrap();
        }
    }
    let redone = extend(&env);
    assert_eq!(redone["ledger_discarded"], true, "{redone}");
    assert_eq!(redone["from_ledger"].as_u64(), Some(0), "{redone}");
    assert!(redone["extended"].as_u64().unwrap() >= n - 1, "{redone}");
    r.on(&env, &["retention", "show", "--keep-daily", "7"])
        .assert_success();
}
