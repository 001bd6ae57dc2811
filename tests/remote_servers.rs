//! The same scenarios as `remote_s3.rs`, against real server programs: OpenSSH's sshd (SFTP), nginx with
//! the WebDAV modules, and moto_server (S3). Gated: they run when `tests/servers/start.sh` has started the
//! servers and its env file is sourced (`.ci/run` does both); with `CAIRN_TEST_SERVERS=1` set, a missing
//! server is a failure, not a skip.

mod common;
#[path = "common/conformance.rs"]
mod conformance;
#[path = "common/offsite.rs"]
mod offsite;

use cairn::backend::{self, BackendOptions, Location};
use common::Env;
use offsite::Remote;

/// A variable the start script exports, or `None` (the test is skipped) when the servers are not running.
fn server_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(_) if std::env::var_os("CAIRN_TEST_SERVERS").is_some() => {
            panic!("CAIRN_TEST_SERVERS is set but {name} is not: did tests/servers/start.sh run?")
        }
        Err(_) => {
            eprintln!("skipped: {name} is not set (start the servers with tests/servers/start.sh)");
            None
        }
    }
}

/// A fresh location below a server's base URL for one test.
fn unique(base: &str, test: &str) -> String {
    format!(
        "{}/{test}-{}",
        base.trim_end_matches('/'),
        std::process::id()
    )
}

fn sftp(test: &str) -> Option<Remote> {
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
    let var = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
    Some(Remote {
        url: unique("s3://cairn", test),
        options: Vec::new(),
        vars: vec![
            var("AWS_ACCESS_KEY_ID", "test"),
            var("AWS_SECRET_ACCESS_KEY", "test"),
            var("AWS_REGION", "us-east-1"),
            var("AWS_ENDPOINT_URL", &endpoint),
        ],
    })
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
