//! Many hosts, one repository: what a backup asks of storage must not grow with the repository,
//! and hosts backing up at once into one S3 bucket (the in-process server) lose nothing, share
//! their common data, and survive forget and prune together.

use crate::common;
use crate::common::offsite::Remote;
use crate::common::s3;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{write_file, Env};

/// A host's tree: `shared` MiB the same on every host (a system tree), plus a file of its own.
fn host_tree(env: &Env, host: usize, shared: usize) -> PathBuf {
    let src = env.path(&format!("hosts/h{host}"));
    for i in 0..shared {
        write_file(
            &src.join(format!("usr/lib/part{i}.bin")),
            &common::random_bytes(1000 + i as u64, 1 << 20),
        );
    }
    write_file(
        &src.join("etc/hostname"),
        format!("host-{host}\n").as_bytes(),
    );
    write_file(
        &src.join("var/own.bin"),
        &common::random_bytes(host as u64, 64 << 10),
    );
    src
}

/// `cairn --json -r REPO backup SRC --host hN` with host N's own cache, as a command to spawn.
fn backup_command(env: &Env, remote: Option<&Remote>, host: usize, src: &Path) -> Command {
    let mut cmd = env.command();
    cmd.env("CAIRN_CACHE_DIR", env.path(&format!("caches/h{host}")));
    let mut args: Vec<OsString> = vec!["--json".into(), "-r".into()];
    match remote {
        Some(remote) => {
            args.push(remote.url.clone().into());
            for o in &remote.options {
                args.extend(["-o".into(), o.into()]);
            }
            for (k, v) in &remote.vars {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
        }
        None => args.push(env.repo.clone().into()),
    }
    args.extend([
        "backup".into(),
        src.into(),
        "--host".into(),
        format!("h{host}").into(),
    ]);
    cmd.args(args);
    cmd
}

/// Runs the backups of `hosts` at once; each must succeed. Returns their `--json` reports.
fn back_up_at_once(
    env: &Env,
    remote: Option<&Remote>,
    hosts: &[(usize, PathBuf)],
) -> Vec<serde_json::Value> {
    let children: Vec<_> = hosts
        .iter()
        .map(|(host, src)| {
            backup_command(env, remote, *host, src)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn cairn")
        })
        .collect();
    children
        .into_iter()
        .zip(hosts)
        .map(|(child, (host, _))| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "backup of host {host} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect()
}

fn requests(report: &serde_json::Value) -> (u64, u64, u64, u64, u64) {
    let r = &report["requests"];
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("requests.{k}: {r}"));
    (n("list"), n("head"), n("get"), n("put"), n("delete"))
}

#[test]
fn an_unchanged_rebackup_makes_the_same_requests_when_the_repository_has_grown_tenfold() {
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let remote = server.remote("grow/repo");
    remote.on(&env, &["init"]).assert_success();
    let mine = host_tree(&env, 0, 1);
    let rebackup = || back_up_at_once(&env, Some(&remote), &[(0, mine.clone())]).remove(0);
    // Twice: the second one reads the first one's snapshot; the third is the one measured.
    rebackup();
    rebackup();
    let small = rebackup();
    // Ten times the snapshots and index files, written by other hosts.
    let others: Vec<(usize, PathBuf)> = (1..=30).map(|h| (h, host_tree(&env, h, 0))).collect();
    for batch in others.chunks(10) {
        back_up_at_once(&env, Some(&remote), batch);
    }
    let listed = remote.on(&env, &["--json", "snapshots"]);
    listed.assert_success();
    let snapshots = listed.json().as_array().unwrap().len();
    assert_eq!(snapshots, 33);
    // The first backup after that catches up (the new index files, the new snapshots) once.
    let catching_up = rebackup();
    let grown = rebackup();
    eprintln!(
        "requests of an unchanged re-backup: {} (3 snapshots), {} ({snapshots} snapshots); catching up: {}",
        small["requests"], grown["requests"], catching_up["requests"]
    );
    assert!(
        requests(&catching_up).2 >= 30 + 30,
        "{}",
        catching_up["requests"]
    );
    assert_eq!(requests(&grown), requests(&small));
    // The listings grew (more names), their number did not.
    assert!(grown["requests"]["listed"].as_u64() > small["requests"]["listed"].as_u64());
    assert_eq!(grown["summary"]["blobs_added"], 0, "{grown}");
}

#[test]
fn hosts_backing_up_at_once_into_one_bucket_share_their_data_and_survive_forget_and_prune() {
    let hosts: usize = std::env::var("CAIRN_FLEET_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let env = Env::new();
    let server = s3::S3Server::start(&env.path("s3"));
    let remote = server.remote("fleet/repo");
    remote.on(&env, &["init"]).assert_success();
    let trees: Vec<(usize, PathBuf)> = (0..hosts).map(|h| (h, host_tree(&env, h, 4))).collect();

    // The first host alone, then every other at once: they find the shared data already stored
    // (hosts that all start on an empty repository at the same second each store what they find
    // unindexed, since a backup publishes its index when it ends).
    let seed = back_up_at_once(&env, Some(&remote), &trees[..1]);
    let rest = back_up_at_once(&env, Some(&remote), &trees[1..]);
    let added = |reports: &[serde_json::Value]| -> u64 {
        reports
            .iter()
            .map(|r| r["summary"]["bytes_added"].as_u64().unwrap())
            .sum()
    };
    let (first, others) = (added(&seed), added(&rest));
    eprintln!(
        "{} hosts at once after the first: {others} bytes added, the first host {first}; requests of one of them (list, head, get, put, delete): {:?}",
        hosts - 1,
        requests(&rest[0])
    );
    // Each of them adds its own 64 KiB file and its trees, not the shared 4 MiB again.
    assert!(first > 4 << 20, "{first}");
    assert!(
        others < (hosts as u64 - 1) * (100 << 10),
        "{} hosts added {others} bytes after the first added {first}",
        hosts - 1
    );

    // Each host changes its own file and backs up again, all at once.
    for (host, src) in &trees {
        write_file(
            &src.join("var/own.bin"),
            &common::random_bytes(500 + *host as u64, 64 << 10),
        );
    }
    let second = back_up_at_once(&env, Some(&remote), &trees);
    for (report, (host, _)) in second.iter().zip(&trees) {
        assert!(
            report["parent"].is_string(),
            "host {host} found no parent: {report}"
        );
    }
    let listed = remote.on(&env, &["--json", "snapshots"]);
    listed.assert_success();
    assert_eq!(listed.json().as_array().unwrap().len(), 2 * hosts);

    remote
        .on(
            &env,
            &[
                "forget",
                "--keep-last",
                "1",
                "--group-by",
                "host",
                "--prune",
            ],
        )
        .assert_success();
    remote.on(&env, &["check", "--read-data"]).assert_success();
    let listed = remote.on(&env, &["--json", "snapshots"]);
    assert_eq!(listed.json().as_array().unwrap().len(), hosts);
    // Every host's newest snapshot restores exactly.
    for (host, src) in trees.iter().step_by(hosts.div_ceil(5).max(1)) {
        let target = env.path(&format!("restored/h{host}"));
        remote
            .on(
                &env,
                &[
                    "restore",
                    "latest",
                    "--host",
                    &format!("h{host}"),
                    "--target",
                    target.to_str().unwrap(),
                ],
            )
            .assert_success();
        common::compare::assert_trees_equal(src, &common::restored_path(&target, src));
    }
}
