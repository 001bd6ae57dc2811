//! Scenarios run against every remote storage: a repository living on it, and sync there and back.
//! The storage-specific tests (`remote_s3.rs`, `remote_servers.rs`) only say how to reach a server.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::common::{self, compare, restored_path, write_file, Env, Output};

/// How to reach one remote location: its URL, `-o` options and environment.
pub struct Remote {
    pub url: String,
    pub options: Vec<String>,
    pub vars: Vec<(String, Option<String>)>,
}

impl Remote {
    /// Runs cairn with the remote's environment.
    pub fn cairn(&self, env: &Env, args: &[OsString]) -> Output {
        let vars: Vec<(&str, Option<&str>)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        env.run(args, None, &vars)
    }

    /// `cairn -r URL -o ... ARGS`.
    pub fn on(&self, env: &Env, args: &[&str]) -> Output {
        let mut full: Vec<OsString> = vec!["-r".into(), self.url.clone().into()];
        for o in &self.options {
            full.push("-o".into());
            full.push(o.into());
        }
        full.extend(args.iter().map(OsString::from));
        self.cairn(env, &full)
    }

    /// `cairn [--json] -r LOCAL sync --to|--from URL -O ... ARGS`.
    pub fn sync(&self, env: &Env, local: &Path, direction: &str, args: &[&str]) -> Output {
        let mut full: Vec<OsString> =
            vec!["--json".into(), "-r".into(), local.into(), "sync".into()];
        full.push(direction.into());
        full.push(self.url.clone().into());
        for o in &self.options {
            full.push("-O".into());
            full.push(o.into());
        }
        full.extend(args.iter().map(OsString::from));
        self.cairn(env, &full)
    }
}

/// A repository at `url` (`s3://BUCKET/PREFIX`) on the moto_server at `endpoint`, which takes any
/// credentials.
pub fn moto_remote(endpoint: &str, url: String) -> Remote {
    let var = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
    Remote {
        url,
        options: Vec::new(),
        vars: vec![
            var("AWS_ACCESS_KEY_ID", "test"),
            var("AWS_SECRET_ACCESS_KEY", "test"),
            var("AWS_REGION", "us-east-1"),
            var("AWS_ENDPOINT_URL", endpoint),
        ],
    }
}

/// A small tree with files that span several chunks and packs, an empty file and a nested directory.
pub fn make_tree(root: &Path, megabytes: usize) -> PathBuf {
    let src = root.join("src");
    for i in 0..megabytes {
        write_file(
            &src.join(format!("dir{}/file{i}.bin", i % 3)),
            &common::random_bytes(i as u64 + 1, 1 << 20),
        );
    }
    write_file(
        &src.join("notes.txt"),
        b"offsite copies keep the 3-2-1 rule\n",
    );
    write_file(&src.join("empty"), b"");
    std::fs::create_dir_all(src.join("nested/deeper")).unwrap();
    src
}

/// Restores `latest` from `-r URL` into a fresh directory and requires it to equal `src`.
pub fn assert_remote_restores(env: &Env, remote: &Remote, src: &Path, target_name: &str) {
    let target = env.path(target_name);
    remote
        .on(
            env,
            &["restore", "latest", "--target", target.to_str().unwrap()],
        )
        .assert_success();
    compare::assert_trees_equal(src, &restored_path(&target, src));
}

/// The sync report printed by `--json`.
pub fn report(out: &Output) -> serde_json::Value {
    out.assert_success();
    let v = out.json();
    assert_eq!(v["complete"], true, "{}", out.describe());
    v
}

/// init, backup, snapshots, restore and check --read-data with the repository on the remote.
pub fn repository_on_remote(env: &Env, remote: &Remote) {
    let src = make_tree(&env.root(), 3);
    remote
        .on(env, &["init", "--pack-size", "1"])
        .assert_success();
    let again = remote.on(env, &["init"]);
    again.assert_code(common::exit::USAGE);
    let out = remote.on(env, &["--json", "backup", src.to_str().unwrap()]);
    out.assert_success();
    common::check_backup_json(&out.json());
    // An unchanged second backup reuses everything.
    remote
        .on(env, &["backup", src.to_str().unwrap()])
        .assert_success();
    let snaps = remote.on(env, &["--json", "snapshots"]);
    snaps.assert_success();
    assert_eq!(snaps.json().as_array().unwrap().len(), 2);
    assert_remote_restores(env, remote, &src, "restored-remote");
    // The local cache is only a cache: without it the index is rebuilt from the remote.
    env.remove_cache();
    assert_remote_restores(env, remote, &src, "restored-remote-nocache");
    let check = remote.on(env, &["--json", "check", "--read-data"]);
    check.assert_success();
    assert_eq!(check.json()["ok"], true);
    assert!(check.json()["blobs_verified"].as_u64().unwrap() > 3);
}

/// local -> remote -> another local, each copy complete, checked and restorable; a re-sync copies nothing.
pub fn sync_round_trip(env: &Env, remote: &Remote) {
    let src = make_tree(&env.root(), 4);
    env.r_ok(&["init", "--pack-size", "1"]);
    env.backup_json(&[&src], &[]);
    let local = env.repo.clone();
    let objects = count_objects(&local);

    let first = report(&remote.sync(env, &local, "--to", &["--verify"]));
    assert_eq!(
        first["copied"]["objects"].as_u64().unwrap(),
        objects,
        "{first}"
    );
    assert_eq!(first["failed"]["objects"], 0);
    let check = remote.on(env, &["--json", "check", "--read-data"]);
    check.assert_success();
    assert_eq!(check.json()["ok"], true, "{}", check.describe());
    assert_remote_restores(env, remote, &src, "from-remote");

    let again = report(&remote.sync(env, &local, "--to", &[]));
    assert_eq!(again["copied"]["objects"], 0, "{again}");
    assert_eq!(again["skipped"]["objects"].as_u64().unwrap(), objects);

    let pulled = env.path("pulled");
    report(&remote.sync(env, &pulled, "--from", &[]));
    assert_eq!(count_objects(&pulled), objects);
    let mut args: Vec<OsString> = vec![
        "-r".into(),
        pulled.clone().into(),
        "check".into(),
        "--read-data".into(),
    ];
    env.cairn(&args).assert_success();
    args.truncate(2);
    let target = env.path("from-pulled");
    args.extend([
        "restore".into(),
        "latest".into(),
        "--target".into(),
        target.clone().into(),
    ]);
    env.cairn(&args).assert_success();
    compare::assert_trees_equal(&src, &restored_path(&target, &src));
}

/// Objects in a local repository (every file but temporaries).
pub fn count_objects(repo: &Path) -> u64 {
    common::files_under(repo)
        .iter()
        .filter(|p| !p.strip_prefix(repo).unwrap().starts_with("tmp"))
        .count() as u64
}
