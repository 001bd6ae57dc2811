//! The README's quick start, run top to bottom as written: its code block is read from README.md
//! and run by bash with `set -euo pipefail`, its absolute paths moved under a scratch directory,
//! against a real PostgreSQL server for its `pg_dump` and `psql` lines (gated like
//! `tests/postgres.rs`: with `CAIRN_TEST_SERVERS=1` a missing server is a failure).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{server_var, write_file, Env};

/// The first ```sh block after the `## Quick start` heading.
fn quick_start() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Quick start")
        .expect("a quick start section")..];
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_string()
}

/// Moves every absolute path the quick start names under `root` (a snapshot path like
/// `latest:/etc/nginx` follows its source).
fn under(script: &str, root: &Path) -> String {
    // Through a marker, so that a root below /tmp is not moved again.
    let mut out = script.to_string();
    for (from, to) in [
        (" /srv/", " @ROOT@/srv/"),
        ("=/srv/", "=@ROOT@/srv/"),
        ("=/root/", "=@ROOT@/root/"),
        (" /etc", " @ROOT@/etc"),
        (":/etc", ":@ROOT@/etc"),
        (" /var/", " @ROOT@/var/"),
        (" /tmp/", " @ROOT@/tmp/"),
    ] {
        out = out.replace(from, to);
    }
    out.replace("@ROOT@", &root.display().to_string())
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let (Some(host), Some(port), Some(user), Some(bin)) = (
        server_var("CAIRN_TEST_PG_HOST"),
        server_var("CAIRN_TEST_PG_PORT"),
        server_var("CAIRN_TEST_PG_USER"),
        server_var("CAIRN_TEST_PG_BIN"),
    ) else {
        return;
    };
    let env = Env::new();
    let root = env.path("root");
    write_file(&root.join("etc/nginx/nginx.conf"), b"worker_processes 2;\n");
    write_file(&root.join("etc/hostname"), b"web1\n");
    write_file(&root.join("var/www/index.html"), b"<h1>hello</h1>\n");
    write_file(
        &root.join("root/.cairn-password"),
        b"quick start password\n",
    );
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let plan = root.join("plan.toml");
    write_file(
        &plan,
        format!(
            "[repository]\nlocation = \"{root}/srv/backup\"\npassword_file = \"{root}/root/.cairn-password\"\n\n[backup]\npaths = [\"{root}/etc\"]\n",
            root = root.display()
        )
        .as_bytes(),
    );
    // A database named as in the README, with a row to dump.
    let pg = |program: &str, args: &[&str]| {
        let out = Command::new(format!("{bin}/{program}"))
            .args(args)
            .env("PGHOST", &host)
            .env("PGPORT", &port)
            .env("PGUSER", &user)
            .output()
            .unwrap();
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
    };
    let db = format!("app_{}", std::process::id());
    pg("createdb", &[&db]);
    pg(
        "psql",
        &[
            "-d",
            &db,
            "-c",
            "CREATE TABLE t (x int); INSERT INTO t VALUES (42);",
        ],
    );

    let script = under(&quick_start(), &root)
        .replace("pg_dump app", &format!("pg_dump {db}"))
        .replace("custom app\"", &format!("custom {db}\""))
        .replace("psql app", &format!("psql {db}"));
    let cairn_dir = Path::new(env!("CARGO_BIN_EXE_cairn")).parent().unwrap();
    let path = format!(
        "{}:{bin}:{}",
        cairn_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(env.root())
        .env("PATH", path)
        .env("PGHOST", &host)
        .env("PGPORT", &port)
        .env("PGUSER", &user)
        .env("CAIRN_PLAN", &plan)
        .env("CAIRN_CACHE_DIR", env.cache_dir())
        .env("HOME", env.home())
        .env("XDG_STATE_HOME", env.home().join(".local/state"))
        .env("XDG_CACHE_HOME", env.home().join(".cache"))
        .env_remove("CAIRN_PASSWORD")
        .env_remove("CAIRN_REPO")
        .env_remove("CAIRN_PASSWORD_FILE")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(
        run.status.success(),
        "the quick start failed ({})\n--- script ---\n{script}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        run.status
    );
    let restored = common::files_under(&root.join("tmp/nginx"));
    assert!(
        restored
            .iter()
            .any(|p| p.ends_with("nginx.conf")
                && std::fs::read(p).unwrap() == b"worker_processes 2;\n"),
        "{restored:?}"
    );
    assert!(stdout.contains("OK"), "status says OK\n{stdout}");
}
