//! Repositories on S3 and sync to it, against an S3 server inside the test process (s3s-fs), so these
//! run on any machine: the scenarios every storage passes, then the S3-only fault tests (torn and
//! damaged objects, a killed sync, a server failing a fraction of requests, --delete).

use crate::common;
use crate::common::offsite;
use crate::common::s3;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Env;
use offsite::{report, Remote};

/// A local repository with one backup of a tree of `megabytes` MiB in 1 MiB packs.
fn local_repo(env: &Env, megabytes: usize) -> std::path::PathBuf {
    let src = offsite::make_tree(&env.root(), megabytes);
    env.r_ok(&["init", "--pack-size", "1"]);
    env.backup_json(&[&src], &[]);
    src
}

fn first_pack(server: &s3::S3Server, prefix: &str) -> std::path::PathBuf {
    let files = common::files_under(&server.object_file(prefix, "data"));
    files.into_iter().next().expect("the target has packs")
}

#[test]
fn repository_on_s3() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    offsite::repository_on_remote(&env, &server.remote("backups/repo"));
}

#[test]
fn sync_local_to_s3_and_back() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    offsite::sync_round_trip(&env, &server.remote("offsite"));
}

#[test]
fn options_on_the_command_line_instead_of_the_environment() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let r = Remote {
        url: server.url("viaoptions"),
        options: vec![
            format!("endpoint={}", server.endpoint()),
            "region=eu-west-1".into(),
            format!("access_key_id={}", s3::ACCESS_KEY),
            format!("secret_access_key={}", s3::SECRET_KEY),
        ],
        vars: [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
        ]
        .iter()
        .map(|k| (k.to_string(), None))
        .collect(),
    };
    r.on(&env, &["init"]).assert_success();
    let out = r.on(&env, &["--json", "snapshots"]);
    out.assert_success();
    assert_eq!(out.json(), serde_json::json!([]));
    // Without credentials the error names the location and says what to check, exit 1.
    let bare = Remote {
        options: vec![
            format!("endpoint={}", server.endpoint()),
            "retries=1".into(),
        ],
        ..r
    };
    let out = bare.on(&env, &["snapshots"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("s3://cairn/viaoptions"),
        "{}",
        out.describe()
    );
    // A location with no repository: exit 10, as for a local directory.
    let empty = server.remote("nothing-here");
    empty
        .on(&env, &["snapshots"])
        .assert_code(common::exit::NO_REPO);
}

#[test]
fn torn_and_damaged_target_objects_are_replaced() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let src = local_repo(&env, 3);
    let r = server.remote("torn");
    report(&r.sync(&env, &env.repo, "--to", &[]));

    // A torn upload: the object exists but is short. A plain sync sees the size and replaces it.
    let pack = first_pack(&server, "torn");
    let bytes = std::fs::read(&pack).unwrap();
    std::fs::write(&pack, &bytes[..bytes.len() / 2]).unwrap();
    let v = report(&r.sync(&env, &env.repo, "--to", &[]));
    assert_eq!(v["replaced"]["objects"], 1, "{v}");
    assert_eq!(std::fs::read(&pack).unwrap(), bytes);

    // Same size, flipped byte: only --verify reads it, and replaces it.
    common::flip_byte(&pack, 100);
    let quick = report(&r.sync(&env, &env.repo, "--to", &[]));
    assert_eq!(quick["copied"]["objects"], 0);
    let v = report(&r.sync(&env, &env.repo, "--to", &["--verify"]));
    assert_eq!(v["replaced"]["objects"], 1, "{v}");
    assert!(v["verified"]["objects"].as_u64().unwrap() > 3);
    assert_eq!(std::fs::read(&pack).unwrap(), bytes);
    r.on(&env, &["check", "--read-data"]).assert_success();
    offsite::assert_remote_restores(&env, &r, &src, "after-repair");
}

#[test]
fn a_killed_sync_resumes_and_never_shows_a_snapshot_early() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let src = local_repo(&env, 24);
    let r = server.remote("killed");
    // 24 MiB at 4 MiB/s over one connection takes several seconds: kill it after the first packs land.
    let mut cmd = env.command();
    cmd.args([
        "-r",
        env.repo_str(),
        "sync",
        "--to",
        &r.url,
        "--connections",
        "1",
        "--limit-upload",
        "4M",
    ]);
    for (k, v) in &r.vars {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let packs_dir = server.object_file("killed", "data");
    let started = Instant::now();
    while common::files_under(&packs_dir).len() < 3 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let landed = common::files_under(&packs_dir).len();
    let total = common::pack_files(&env.repo).len();
    assert!(
        landed >= 3 && landed < total,
        "killed midway: {landed} of {total} packs"
    );
    assert!(
        common::files_under(&server.object_file("killed", "snapshots")).is_empty(),
        "no snapshot may appear before all packs and the index"
    );
    let out = r.on(&env, &["--json", "snapshots"]);
    out.assert_success();
    assert_eq!(
        out.json(),
        serde_json::json!([]),
        "the partial copy is a valid, empty repository"
    );

    let v = report(&r.sync(&env, &env.repo, "--to", &["--verify"]));
    assert!(
        v["skipped"]["objects"].as_u64().unwrap() >= landed as u64,
        "resumed, not restarted: {v}"
    );
    r.on(&env, &["check", "--read-data"]).assert_success();
    offsite::assert_remote_restores(&env, &r, &src, "after-resume");
}

#[test]
fn a_flaky_server_is_carried_through_by_retries() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let src = offsite::make_tree(&env.root(), 3);
    let r = server.remote("flaky");
    // Every third request fails with 503 SlowDown: backup, sync, check and restore still complete.
    server.fail_every(3);
    r.on(&env, &["init", "--pack-size", "1"]).assert_success();
    r.on(&env, &["backup", src.to_str().unwrap()])
        .assert_success();
    let local = env.path("pulled");
    report(&r.sync(&env, &local, "--from", &[]));
    r.on(&env, &["check", "--read-data"]).assert_success();
    offsite::assert_remote_restores(&env, &r, &src, "through-faults");
    assert!(server.failures.load(std::sync::atomic::Ordering::Relaxed) > 10);
    server.fail_every(0);
    let args: Vec<std::ffi::OsString> = vec![
        "-r".into(),
        local.into(),
        "check".into(),
        "--read-data".into(),
    ];
    env.cairn(&args).assert_success();
}

#[test]
fn delete_removes_what_the_source_dropped_snapshots_first() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let src = local_repo(&env, 2);
    let r = server.remote("mirror");
    report(&r.sync(&env, &env.repo, "--to", &[]));
    // A second snapshot, synced, then dropped from the source (as `forget` would).
    common::write_file(&src.join("later.txt"), b"added later");
    env.backup_json(&[&src], &[]);
    report(&r.sync(&env, &env.repo, "--to", &[]));
    assert_eq!(snapshot_count(&env, &r), 2);
    let newest = newest_snapshot_file(&env.repo);
    std::fs::remove_file(&newest).unwrap();

    let dry = r.sync(&env, &env.repo, "--to", &["--delete", "--dry-run"]);
    dry.assert_success();
    assert_eq!(
        dry.json()["delete"].as_array().unwrap().len(),
        1,
        "{}",
        dry.describe()
    );
    assert_eq!(snapshot_count(&env, &r), 2, "a dry run changes nothing");

    let kept = report(&r.sync(&env, &env.repo, "--to", &[]));
    assert_eq!(kept["extra"]["objects"], 1);
    assert_eq!(snapshot_count(&env, &r), 2, "without --delete extras stay");
    let v = report(&r.sync(&env, &env.repo, "--to", &["--delete"]));
    assert_eq!(v["deleted"]["objects"], 1, "{v}");
    assert_eq!(snapshot_count(&env, &r), 1);
    r.on(&env, &["check"]).assert_success();
}

#[test]
fn sync_refuses_a_different_repository_and_a_non_repository_source() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    local_repo(&env, 1);
    let other = server.remote("other");
    other.on(&env, &["init"]).assert_success();
    let out = other.sync(&env, &env.repo, "--to", &[]);
    out.assert_code(common::exit::USAGE);
    assert!(
        out.stderr.contains("different cairn repository"),
        "{}",
        out.describe()
    );
    let nothing = server.remote("nothing");
    nothing
        .sync(&env, &env.repo.join("missing"), "--to", &[])
        .assert_code(common::exit::NO_REPO);
}

fn snapshot_count(env: &Env, r: &Remote) -> usize {
    let out = r.on(env, &["--json", "snapshots"]);
    out.assert_success();
    out.json().as_array().unwrap().len()
}

fn newest_snapshot_file(repo: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = common::files_under(&repo.join("snapshots"))
        .into_iter()
        .map(|p| (std::fs::metadata(&p).unwrap().modified().unwrap(), p))
        .collect();
    files.sort();
    files.pop().unwrap().1
}

#[test]
fn opendal_scheme_passes_options_through_and_keeps_the_layout() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let src = offsite::make_tree(&env.root(), 1);
    // Any OpenDAL service by name, configured only by -o: here its S3 service, then its file system one.
    let generic = Remote {
        url: "opendal:s3".into(),
        options: vec![
            "bucket=cairn".into(),
            "root=/generic".into(),
            format!("endpoint={}", server.endpoint()),
            "region=us-east-1".into(),
        ],
        vars: server.remote("").vars,
    };
    generic.on(&env, &["init"]).assert_success();
    generic
        .on(&env, &["backup", src.to_str().unwrap()])
        .assert_success();
    // The same repository through the s3:// form: same object names.
    let same = server.remote("generic");
    assert_eq!(snapshot_count(&env, &same), 1);

    let dir = env.path("via-fs");
    let fs = Remote {
        url: "opendal:fs".into(),
        options: vec![format!("root={}", dir.display())],
        vars: Vec::new(),
    };
    fs.on(&env, &["init"]).assert_success();
    fs.on(&env, &["backup", src.to_str().unwrap()])
        .assert_success();
    // Written by OpenDAL, read as a plain local directory: the layout of FORMAT.md §3 either way.
    let args: Vec<std::ffi::OsString> = vec![
        "-r".into(),
        dir.into(),
        "check".into(),
        "--read-data".into(),
    ];
    env.cairn(&args).assert_success();

    let unknown = Remote {
        url: "opendal:nosuchservice".into(),
        options: Vec::new(),
        vars: Vec::new(),
    };
    let out = unknown.on(&env, &["snapshots"]);
    out.assert_code(common::exit::USAGE);
    assert!(
        out.stderr.contains("s3, sftp, webdav"),
        "lists the services built in: {}",
        out.describe()
    );
    let out = env.cairn(&["-r", "s3://", "snapshots"]);
    out.assert_code(common::exit::USAGE);
    assert!(
        out.stderr.contains("s3://BUCKET/PREFIX"),
        "shows the accepted forms: {}",
        out.describe()
    );
}

/// The S3 environment of `server` without its endpoint, which the tests below give with `-o`.
fn credentials(server: &s3::S3Server) -> Vec<(String, Option<String>)> {
    server
        .env()
        .into_iter()
        .map(|(k, v)| match k {
            "AWS_ENDPOINT_URL" => (k.to_string(), None),
            _ => (k.to_string(), v),
        })
        .collect()
}

/// A local port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_refused_s3_connection_fails_at_once_naming_the_endpoint_and_the_cause() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let r = Remote {
        url: server.url("refused"),
        options: vec![format!("endpoint={endpoint}")],
        vars: credentials(&server),
    };
    for command in [["-v", "snapshots"], ["-v", "init"]] {
        let out = r.on(&env, &command);
        out.assert_code(1);
        // One attempt: no retry notice, and cairn's words rather than OpenDAL's context.
        let said = format!("cannot reach s3 endpoint {endpoint} (connection refused, 1 attempt)");
        assert!(out.stderr.contains(&said), "{}", out.describe());
        assert!(!out.stderr.contains("retry 1 of"), "{}", out.describe());
        assert!(
            out.stderr.contains("check that the server is running"),
            "{}",
            out.describe()
        );
        // OpenDAL's own text is kept for -v.
        assert!(out.stderr.contains("  details: "), "{}", out.describe());
    }
    let out = r.on(&env, &["snapshots"]);
    out.assert_code(1);
    assert!(!out.stderr.contains("details:"), "{}", out.describe());
    assert!(
        !out.stderr.contains("send http request"),
        "{}",
        out.describe()
    );
    // A script can tell a storage that may come back from one that will refuse again.
    let out = r.on(&env, &["--json", "snapshots"]);
    out.assert_code(1);
    let error = &out.json()["error"];
    assert_eq!(error["kind"], "storage", "{}", out.describe());
    assert_eq!(error["retryable"], true, "{}", out.describe());
}

#[test]
fn a_server_that_accepts_but_never_answers_is_retried_visibly_then_given_up() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    // Takes connections and never answers: what a stopped (SIGSTOP) server looks like.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in silent.incoming().flatten() {
            held.push(socket);
        }
    });
    let r = Remote {
        url: server.url("silent"),
        options: vec![
            format!("endpoint={endpoint}"),
            "timeout=1".into(),
            "retries=2".into(),
        ],
        vars: credentials(&server),
    };
    let out = r.on(&env, &["snapshots"]);
    out.assert_code(1);
    let err = &out.stderr;
    // A line per retry (no terminal), then the final error naming the endpoint and the cause.
    let notice = format!("warning: cannot reach s3 endpoint {endpoint} (no answer within 1 s)");
    assert_eq!(err.matches(&notice).count(), 2, "{}", out.describe());
    assert!(err.contains("retry 2 of 2"), "{}", out.describe());
    assert!(!err.contains("retry 3 of"), "{}", out.describe());
    let final_error = format!(
        "error: cannot reach s3 endpoint {endpoint} (no answer within 1 s, 3 attempts over"
    );
    assert!(err.contains(&final_error), "{}", out.describe());
}

#[test]
fn a_server_that_vanishes_mid_backup_is_retried_visibly_then_named() {
    use std::io::{Read, Write};
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let endpoint = server.endpoint();
    let r = server.remote("vanish");
    r.on(&env, &["init", "--pack-size", "1"]).assert_success();

    let mut cmd = env.command();
    cmd.args(["-v", "-r", &r.url, "-o", "retries=3", "-o", "retry_for=120"])
        .args(["backup", "--stdin", "--stdin-name", "stream.bin"]);
    for (k, v) in server.env() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // Feed the backup until its first pack is on the server, then take the server away.
    let data = server.object_file("vanish", "data");
    let mut seed = 0;
    while common::files_under(&data).is_empty() {
        assert!(seed < 256, "no pack reached the server after {seed} MiB");
        stdin
            .write_all(&common::random_bytes(seed, 1 << 20))
            .expect("cairn reads its input");
        seed += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    for more in 0..4 {
        // cairn may already have stopped reading on the failure.
        if stdin
            .write_all(&common::random_bytes(1000 + more, 1 << 20))
            .is_err()
        {
            break;
        }
    }
    drop(stdin);
    // A guard only: the bound configured above ends the command in seconds.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("cairn still waits for the vanished server after 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = err_thread.join().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    let reach = format!("cannot reach s3 endpoint {endpoint} (connection");
    let notices: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("warning: ") && l.contains(&reach))
        .collect();
    assert!(!notices.is_empty(), "no retry notice: {err}");
    assert!(
        notices.iter().all(|l| l.contains(" of 3 in ")),
        "{notices:?}"
    );
    let last = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(last.contains(&reach), "{err}");
    assert!(
        last.contains("check that the server is running")
            || last.contains("check the server and the network"),
        "{err}"
    );
}

#[test]
fn a_bucket_that_does_not_exist_is_named_on_open_and_on_init() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let r = Remote {
        url: "s3://nosuchbucket/x".into(),
        options: Vec::new(),
        vars: server.remote("x").vars,
    };
    for command in ["snapshots", "init"] {
        let out = r.on(&env, &[command]);
        out.assert_code(1);
        assert!(
            out.stderr
                .contains("the bucket nosuchbucket does not exist at s3 endpoint"),
            "{}",
            out.describe()
        );
        assert!(
            out.stderr.contains("create the bucket"),
            "{}",
            out.describe()
        );
        assert!(!out.stderr.contains("cairn init"), "{}", out.describe());
    }
}
