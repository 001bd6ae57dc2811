//! `--as-of TIME` (issue "ransomware recovery"): an attacker holding the storage credentials deletes every
//! object of a repository on a versioned S3 bucket and overwrites every pack with garbage; the repository as
//! it was before is read from the versions the bucket keeps. Against moto_server (gated like
//! `remote_servers.rs`: skipped unless `CAIRN_TEST_MOTO_ENDPOINT` is set), with the attack made by plain
//! HTTP requests to the server, not through cairn.

use crate::common;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use common::offsite::{self, Remote};
use common::{compare, exit, restored_path, server_var, write_file, Env, Output};

/// moto does not check signatures, but it takes the account a request belongs to from the access key
/// of its `Authorization` header: a bucket made without one would belong to another account than the
/// one cairn's requests (access key `test`) see.
const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
                             SignedHeaders=host, Signature=0000";

/// One S3 server, spoken to in plain HTTP/1.1.
struct Moto {
    /// `HOST:PORT`.
    authority: String,
    endpoint: String,
}

impl Moto {
    fn new() -> Option<Moto> {
        let endpoint = server_var("CAIRN_TEST_MOTO_ENDPOINT")?;
        let authority = endpoint
            .strip_prefix("http://")
            .expect("the moto endpoint is plain http")
            .trim_end_matches('/')
            .to_string();
        Some(Moto {
            authority,
            endpoint,
        })
    }

    /// One request; returns the status and the body.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(&self.authority).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: {AUTHORIZATION}\r\n\
             x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&answer)));
        let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
        assert!(
            !head.contains("transfer-encoding: chunked"),
            "a chunked answer: {head}"
        );
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        (status, answer[split + 4..].to_vec())
    }

    fn ok(&self, method: &str, target: &str, body: &[u8]) -> String {
        let (status, answer) = self.request(method, target, body);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(
            (200..300).contains(&status),
            "{method} {target}: {status} {answer}"
        );
        answer
    }

    /// A new bucket that keeps every version of its objects.
    fn versioned_bucket(&self, name: &str) {
        self.ok("PUT", &format!("/{name}"), b"");
        self.ok(
            "PUT",
            &format!("/{name}?versioning"),
            b"<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
              <Status>Enabled</Status></VersioningConfiguration>",
        );
        let status = self.ok("GET", &format!("/{name}?versioning"), b"");
        assert!(status.contains("<Status>Enabled</Status>"), "{status}");
    }

    /// Keys and sizes of the current objects below `prefix`.
    fn objects(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let list = self.ok(
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}"),
            b"",
        );
        assert!(list.contains("<IsTruncated>false</IsTruncated>"), "{list}");
        elements(&list, "Contents")
            .into_iter()
            .map(|c| {
                let key = elements(c, "Key")[0].to_string();
                let size = elements(c, "Size")[0].parse().unwrap();
                (key, size)
            })
            .collect()
    }

    /// How many versions and delete markers the bucket holds in all.
    fn versions(&self, bucket: &str) -> usize {
        let list = self.ok("GET", &format!("/{bucket}?versions"), b"");
        assert!(list.contains("<IsTruncated>false</IsTruncated>"), "{list}");
        elements(&list, "Version").len() + elements(&list, "DeleteMarker").len()
    }
}

/// The contents of every `<tag>...</tag>` in `xml`, in order.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after.find(&close).expect("a closed element");
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

/// A repository URL on a fresh versioned bucket, and how cairn reaches it.
fn remote_on(moto: &Moto, test: &str) -> (Remote, String) {
    let bucket = format!("cairn-{test}-{}", std::process::id());
    moto.versioned_bucket(&bucket);
    let remote = offsite::moto_remote(&moto.endpoint, format!("s3://{bucket}/repo"));
    (remote, bucket)
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `cairn -r URL --as-of TIME ARGS`.
fn as_of(env: &Env, remote: &Remote, time: &str, args: &[&str]) -> Output {
    let mut full = vec!["--as-of", time];
    full.extend_from_slice(args);
    remote.on(env, &full)
}

fn snapshot_ids(out: &Output) -> Vec<String> {
    out.assert_success();
    out.json()
        .as_array()
        .unwrap_or_else(|| panic!("snapshots --json prints an array\n{}", out.describe()))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Restores `snapshot` of the repository as it was at `time` into `<tmp>/<name>`; returns the restored
/// copy of `src`.
fn restore_as_of(
    env: &Env,
    remote: &Remote,
    time: &str,
    snapshot: &str,
    src: &Path,
    name: &str,
) -> std::path::PathBuf {
    let target = env.path(name);
    let target_str = target.to_str().unwrap();
    as_of(
        env,
        remote,
        time,
        &["restore", snapshot, "--target", target_str],
    )
    .assert_success();
    restored_path(&target, src)
}

#[test]
fn a_deleted_and_overwritten_repository_is_read_as_it_was_before() {
    let Some(moto) = Moto::new() else {
        return;
    };
    let env = Env::new();
    let (remote, bucket) = remote_on(&moto, "asof");
    // Well before the repository: S3 keeps times to the second.
    let before_init = rfc3339(Utc::now() - chrono::Duration::seconds(3));

    let src = offsite::make_tree(&env.root(), 3);
    let src_str = src.to_str().unwrap();
    remote
        .on(&env, &["init", "--pack-size", "1"])
        .assert_success();
    let first = remote.on(&env, &["--json", "backup", src_str]);
    first.assert_success();
    let first_id = first.json()["snapshot_id"].as_str().unwrap().to_string();
    let first_tree = common::tree_listing(&src);
    write_file(
        &src.join("dir0/file0.bin"),
        &common::random_bytes(99, 1 << 20),
    );
    write_file(&src.join("added.txt"), b"written between the two backups\n");
    let second = remote.on(&env, &["--json", "backup", src_str]);
    second.assert_success();
    let second_id = second.json()["snapshot_id"].as_str().unwrap().to_string();

    // T: after both backups, a whole second before the attack (S3 times are whole seconds).
    let time = rfc3339(Utc::now());
    std::thread::sleep(Duration::from_millis(1100));

    // The attack, with the repository's own credentials: delete everything (S3 writes delete
    // markers), then write garbage over every pack (new versions).
    let objects = moto.objects(&bucket, "repo/");
    let packs: Vec<&(String, u64)> = objects
        .iter()
        .filter(|(k, _)| k.contains("/data/"))
        .collect();
    assert!(packs.len() > 2, "{objects:?}");
    assert!(
        objects.iter().any(|(k, _)| k == "repo/config"),
        "{objects:?}"
    );
    for (key, _) in &objects {
        moto.ok("DELETE", &format!("/{bucket}/{key}"), b"");
    }
    for (i, (key, size)) in packs.iter().enumerate() {
        let garbage = common::random_bytes(1000 + i as u64, *size as usize);
        moto.ok("PUT", &format!("/{bucket}/{key}"), &garbage);
    }
    assert_eq!(moto.objects(&bucket, "repo/").len(), packs.len());
    let versions_after_attack = moto.versions(&bucket);

    // As it is now, the repository is unusable: its config is gone, garbage packs remain.
    let now = remote.on(&env, &["snapshots"]);
    now.assert_code(exit::DAMAGED);
    assert!(now.stderr.contains("no config"), "{}", now.describe());

    // As it was at T: both snapshots, every blob verifies, and each restores byte for byte.
    let snaps = as_of(&env, &remote, &time, &["--json", "snapshots"]);
    assert_eq!(snapshot_ids(&snaps), [first_id.clone(), second_id.clone()]);
    let check = as_of(&env, &remote, &time, &["--json", "check", "--read-data"]);
    check.assert_success();
    assert_eq!(check.json()["ok"], true, "{}", check.describe());
    assert!(
        check.json()["blobs_verified"].as_u64().unwrap() > 3,
        "{}",
        check.describe()
    );
    let restored = restore_as_of(&env, &remote, &time, &first_id, &src, "restored-first");
    let differences = common::listing_diff(&first_tree, &common::tree_listing(&restored));
    assert!(differences.is_empty(), "{differences:?}");
    let restored = restore_as_of(&env, &remote, &time, &second_id, &src, "restored-second");
    compare::assert_trees_equal(&src, &restored);
    let ls = as_of(
        &env,
        &remote,
        &time,
        &["ls", &format!("{second_id}:{src_str}")],
    );
    ls.assert_success();
    assert!(ls.stdout.contains("added.txt"), "{}", ls.describe());
    let cat = as_of(
        &env,
        &remote,
        &time,
        &["cat", &format!("{first_id}:{src_str}/notes.txt")],
    );
    cat.assert_success();
    assert_eq!(
        cat.stdout_bytes,
        std::fs::read(src.join("notes.txt")).unwrap()
    );

    // Copied out to a clean repository, which checks clean and restores byte for byte.
    let copy = env.path("recovered");
    let report = offsite::report(&remote.sync(&env, &copy, "--from", &["--as-of", &time]));
    assert_eq!(report["failed"]["objects"], 0, "{report}");
    let on_copy = |args: &[&str]| {
        let mut full: Vec<OsString> = vec!["-r".into(), copy.clone().into()];
        full.extend(args.iter().map(OsString::from));
        env.cairn(&full)
    };
    on_copy(&["check", "--read-data"]).assert_success();
    let copy_ids = snapshot_ids(&on_copy(&["--json", "snapshots"]));
    assert_eq!(copy_ids, [first_id.clone(), second_id.clone()]);
    let target = env.path("from-copy");
    on_copy(&["restore", &second_id, "--target", target.to_str().unwrap()]).assert_success();
    compare::assert_trees_equal(&src, &restored_path(&target, &src));
    let target = env.path("from-copy-first");
    on_copy(&["restore", &first_id, "--target", target.to_str().unwrap()]).assert_success();
    let differences = common::listing_diff(
        &first_tree,
        &common::tree_listing(&restored_path(&target, &src)),
    );
    assert!(differences.is_empty(), "{differences:?}");

    // Writers are refused up front, and nothing above wrote to the bucket (no verification record
    // from check, no lease).
    let refused = as_of(&env, &remote, &time, &["backup", src_str]);
    refused.assert_code(exit::USAGE);
    assert!(refused.stderr.contains("--as-of"), "{}", refused.describe());
    for args in [&["forget", "--keep-last", "1"][..], &["prune"], &["unlock"]] {
        as_of(&env, &remote, &time, args).assert_code(exit::USAGE);
    }
    assert_eq!(moto.versions(&bucket), versions_after_attack);

    // Before the repository existed there was none.
    let early = as_of(&env, &remote, &before_init, &["snapshots"]);
    early.assert_code(exit::NO_REPO);
    assert!(
        early.stderr.contains("there was no cairn repository") && early.stderr.contains("as of"),
        "{}",
        early.describe()
    );
}

#[test]
fn as_of_needs_an_s3_repository() {
    let env = Env::new();
    env.init();
    let out = env.r(&["--as-of", "2026-01-23 14:30", "snapshots"]);
    out.assert_code(exit::USAGE);
    assert!(
        out.stderr
            .contains("--as-of needs an S3 repository with versioning"),
        "{}",
        out.describe()
    );
    let bad = env.r(&["--as-of", "yesterday-ish", "snapshots"]);
    bad.assert_code(exit::USAGE);
    assert!(
        bad.stderr.contains("not a point in time"),
        "{}",
        bad.describe()
    );
}
