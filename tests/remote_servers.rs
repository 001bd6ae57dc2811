//! The same scenarios as `remote_s3.rs`, against real server programs: OpenSSH's sshd (SFTP), nginx with
//! the WebDAV modules, and moto_server (S3). Gated: they run when `tests/servers/start.sh` has started the
//! servers and its env file is sourced (`.ci/run` does both); with `CAIRN_TEST_SERVERS=1` set, a missing
//! server is a failure, not a skip.

use crate::common;
use crate::common::conformance;
use crate::common::offsite;

use std::cell::RefCell;
use std::sync::{RwLock, RwLockReadGuard};

use cairn::backend::{self, BackendOptions, Location};
use common::{server_var, Env};
use offsite::Remote;

/// A fresh location below a server's base URL for one test.
fn unique(base: &str, test: &str) -> String {
    format!(
        "{}/{test}-{}",
        base.trim_end_matches('/'),
        std::process::id()
    )
}

/// The SFTP tests share one sshd. The test that floods it with more connections than its
/// `MaxStartups` runs alone (write lock); the others hold a read lock for as long as their thread
/// lives, or the refusals the flood provokes would fail their connections too.
static SSHD: RwLock<()> = RwLock::new(());

thread_local! {
    static SSHD_SHARED: RefCell<Option<RwLockReadGuard<'static, ()>>> = const { RefCell::new(None) };
}

/// A remote on the test sshd, shared with the other SFTP tests until this test's thread ends.
fn sftp(test: &str) -> Option<Remote> {
    SSHD_SHARED.with_borrow_mut(|guard| {
        if guard.is_none() {
            *guard = Some(SSHD.read().unwrap_or_else(|p| p.into_inner()));
        }
    });
    sftp_remote(test)
}

fn sftp_remote(test: &str) -> Option<Remote> {
    let url = server_var("CAIRN_TEST_SFTP_URL")?;
    let key = server_var("CAIRN_TEST_SFTP_KEY")?;
    Some(Remote {
        url: unique(&url, test),
        options: vec![format!("key={key}"), "known_hosts_strategy=accept".into()],
        vars: Vec::new(),
    })
}

fn webdav(test: &str) -> Option<Remote> {
    let url = server_var("CAIRN_TEST_WEBDAV_URL")?;
    let password = server_var("CAIRN_TEST_WEBDAV_PASSWORD")?;
    Some(Remote {
        url: unique(&url, test),
        options: Vec::new(),
        vars: vec![("CAIRN_WEBDAV_PASSWORD".into(), Some(password))],
    })
}

fn moto(test: &str) -> Option<Remote> {
    let endpoint = server_var("CAIRN_TEST_MOTO_ENDPOINT")?;
    Some(offsite::moto_remote(&endpoint, unique("s3://cairn", test)))
}

/// The backend contract, through the library, with the remote's options (environment via `-o`).
fn conformance_on(remote: &Remote) {
    let mut pairs = remote.options.clone();
    for (k, v) in &remote.vars {
        let key = match k.as_str() {
            "AWS_ACCESS_KEY_ID" => "access_key_id",
            "AWS_SECRET_ACCESS_KEY" => "secret_access_key",
            "AWS_REGION" => "region",
            "AWS_ENDPOINT_URL" => "endpoint",
            "CAIRN_WEBDAV_PASSWORD" => "password",
            _ => continue,
        };
        pairs.push(format!("{key}={}", v.as_deref().unwrap_or_default()));
    }
    let options = BackendOptions::from_pairs(&pairs).unwrap();
    let b = backend::open(&Location::parse(&remote.url).unwrap(), &options).unwrap();
    conformance::run(b.as_ref());
}

/// The `ssh` processes whose command line names `dir` (OpenDAL's SFTP service puts its control sockets there).
fn ssh_processes_naming(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("ssh ") && cmdline.contains(&dir) {
            found.push(cmdline);
        }
    }
    found
}

/// Regression (issue "offsite"): the `ssh -M -f -o ControlPersist=yes` masters behind OpenDAL's SFTP service
/// outlived cairn. After each command, no ssh process of its control directory may be left.
#[test]
fn sftp_leaves_no_ssh_master_behind() {
    let Some(mut r) = sftp("masters") else {
        return;
    };
    let env = Env::new();
    let state = env.home().join(".local/state");
    r.vars
        .push(("XDG_STATE_HOME".into(), Some(state.display().to_string())));
    let src = offsite::make_tree(&env.root(), 3);
    let src = src.to_str().unwrap();
    let steps: [&[&str]; 3] = [&["init"], &["backup", src], &["--json", "snapshots"]];
    for args in steps {
        r.on(&env, args).assert_success();
        let left = ssh_processes_naming(&state);
        assert!(left.is_empty(), "after {args:?}: {left:?}");
    }
    // Several connections at once: the pool opens several masters.
    let out = r.sync(&env, &env.repo, "--from", &["--connections", "4"]);
    out.assert_success();
    let left = ssh_processes_naming(&state);
    assert!(left.is_empty(), "after sync: {left:?}");
}

/// Pids of the `ssh` processes whose command line names `dir`, to stop what a failing test leaves behind.
fn ssh_pids_naming(dir: &std::path::Path) -> Vec<i32> {
    let dir = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("ssh ") && cmdline.contains(&dir) {
            found.push(pid);
        }
    }
    found
}

/// Regression (issue "offsite"): a cairn ended by SIGTERM or SIGINT in the middle of a sync to SFTP left its
/// `ssh -M` control masters running (ControlPersist=yes), since no destructor runs when a signal kills it.
#[test]
fn sftp_masters_stop_when_cairn_is_killed_by_a_signal() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let Some(data) = server_var("CAIRN_TEST_SFTP_DATA") else {
        return;
    };
    let env = Env::new();
    let src = offsite::make_tree(&env.root(), 16);
    env.r_ok(&["init", "--pack-size", "1"]);
    env.backup_json(&[&src], &[]);
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let Some(r) = sftp(&format!("signal{}", signal as i32)) else {
            return;
        };
        let state = env.home().join(format!(".local/state-{signal}"));
        let remote_packs = std::path::Path::new(&data)
            .join(r.url.rsplit('/').next().unwrap())
            .join("data");
        // 16 MiB at 1 MiB/s takes long enough to be caught with connections (masters) open.
        let mut cmd = env.command();
        cmd.args(["-r", env.repo_str(), "sync", "--to", &r.url])
            .args(["--connections", "4", "--limit-upload", "1M"])
            .env("XDG_STATE_HOME", &state);
        for o in &r.options {
            cmd.args(["-O", o]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while (common::files_under(&remote_packs).is_empty() || ssh_pids_naming(&state).is_empty())
            && started.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !ssh_pids_naming(&state).is_empty(),
            "the sync opened no ssh connection within a minute"
        );
        // The ssh processes running when the signal comes. A connection whose `ssh` starts in the
        // last milliseconds before cairn ends (a request retried as the masters stop) is not waited
        // for: stopping it would mean holding back the signal for as long as requests retry.
        let before = ssh_pids_naming(&state);
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(signal as i32), "{signal}: {status:?}");
        // An `ssh -O exit` that a connection's destructor started may still be on its way out; a master
        // left behind stays (ControlPersist=yes).
        let started = Instant::now();
        while !ssh_pids_naming(&state).is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let running = ssh_pids_naming(&state);
        let left: Vec<i32> = running
            .iter()
            .copied()
            .filter(|pid| before.contains(pid))
            .collect();
        let listing = ssh_processes_naming(&state);
        for pid in running {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        assert!(
            left.is_empty(),
            "after {signal}, ssh processes running at the signal are left: {left:?} of {listing:?}"
        );
    }
}

/// Regression (issue "offsite"): `sync --connections 64` to SFTP failed objects, because OpenDAL opens one
/// ssh connection per request in flight and sshd drops those beyond `MaxStartups` (10 at once by
/// default) before the SSH greeting, which OpenDAL does not retry.
#[test]
fn sftp_sync_with_more_connections_than_sshd_starts_at_once() {
    let _alone = SSHD.write().unwrap_or_else(|p| p.into_inner());
    let Some(r) = sftp_remote("connections64") else {
        return;
    };
    let env = Env::new();
    let src = offsite::make_tree(&env.root(), 40);
    env.r_ok(&["init", "--pack-size", "1"]);
    env.backup_json(&[&src], &[]);
    let out = r.sync(&env, &env.repo, "--to", &["--connections", "64"]);
    out.assert_success();
    let report = offsite::report(&out);
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["failed"]["objects"], 0, "{report}");
    assert!(
        report["copied"]["objects"].as_u64().unwrap() > 40,
        "{report}"
    );
    offsite::assert_remote_restores(&env, &r, &src, "after-64");
}

macro_rules! server_tests {
    ($server:ident) => {
        mod $server {
            use super::*;

            #[test]
            fn backend_contract() {
                if let Some(r) = super::$server("conformance") {
                    conformance_on(&r);
                }
            }

            #[test]
            fn repository_on_the_server() {
                if let Some(r) = super::$server("repository") {
                    let env = Env::new();
                    offsite::repository_on_remote(&env, &r);
                }
            }

            #[test]
            fn sync_there_and_back() {
                if let Some(r) = super::$server("sync") {
                    let env = Env::new();
                    offsite::sync_round_trip(&env, &r);
                }
            }
        }
    };
}

server_tests!(sftp);
server_tests!(webdav);
server_tests!(moto);
