//! Point-in-time recovery against a real PostgreSQL: a cluster of the test's own (initdb) archives
//! its WAL with `archive_command = 'cairn ... wal push %p'`, `cairn pg backup` takes a base backup
//! while a workload writes rows that carry their commit order, a `DROP TABLE` follows, and
//! `cairn pg restore --to T` then a real server start gives exactly the rows committed before T;
//! `--to latest` gives every committed row. A WAL record removed from the repository makes
//! `check` and `pg restore` name the gap instead of recovering past it. Gated on the PostgreSQL
//! binaries that `tests/servers/start.sh` found (`CAIRN_TEST_PG_BIN`).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// A cluster in a directory of its own with an empty repository beside it, run (with cairn) as
/// PostgreSQL's user when the tests run as root, since postgres refuses to.
struct Cluster {
    _dir: tempfile::TempDir,
    work: PathBuf,
    bin: String,
    user: Option<(u32, u32)>,
    cairn: PathBuf,
    started: std::sync::Mutex<Vec<PathBuf>>,
}

impl Cluster {
    fn new() -> Option<Cluster> {
        let bin = server_var("CAIRN_TEST_PG_BIN")?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let user = if nix::unistd::geteuid().is_root() {
            let account = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .or_else(|| nix::unistd::User::from_name("nobody").ok().flatten())
                .expect("a postgres or nobody account");
            Some((account.uid.as_raw(), account.gid.as_raw()))
        } else {
            None
        };
        // PostgreSQL runs cairn as its own user: give it a copy it can execute.
        let cairn = work.join("cairn");
        std::fs::copy(env!("CARGO_BIN_EXE_cairn"), &cairn).unwrap();
        std::fs::write(work.join("password"), "pitr test password\n").unwrap();
        let cluster = Cluster {
            _dir: dir,
            work,
            bin,
            user,
            cairn,
            started: Default::default(),
        };
        cluster.chown(&cluster.work);
        cluster.chown(&cluster.cairn);
        cluster.chown(&cluster.work.join("password"));
        std::fs::set_permissions(
            cluster.work.join("password"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        cluster.cairn(&["init"], None).assert_success();
        Some(cluster)
    }

    fn chown(&self, path: &Path) {
        if let Some((uid, gid)) = self.user {
            nix::unistd::chown(
                path,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .unwrap();
        }
    }

    /// A command run as the cluster's user.
    fn command(&self, program: &Path) -> Command {
        let mut c = match self.user {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.args([
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".into(),
                ])
                .arg(program);
                c
            }
            None => Command::new(program),
        };
        c.current_dir(&self.work)
            .env_remove("CAIRN_PASSWORD")
            .env_remove("PGHOST")
            .env_remove("PGPORT");
        c
    }

    fn cairn_args(&self) -> Vec<String> {
        vec![
            "-r".into(),
            self.work.join("repo").display().to_string(),
            "--cache-dir".into(),
            self.work.join("cache").display().to_string(),
            "--password-file".into(),
            self.work.join("password").display().to_string(),
        ]
    }

    /// `cairn` with the repository options, as the cluster's user.
    fn cairn(&self, args: &[&str], pg_port: Option<u16>) -> Output {
        let mut c = self.command(&self.cairn);
        c.args(self.cairn_args()).args(args);
        if let Some(port) = pg_port {
            c.env("PGHOST", "127.0.0.1")
                .env("PGPORT", port.to_string())
                .env("PGUSER", "cairn")
                .env("PGDATABASE", "postgres");
        }
        output(c, &format!("cairn {}", args.join(" ")))
    }

    /// `cairn` as the cluster's user with no repository option: what it needs comes from `args`
    /// (a plan file); libpq's environment names the server on `pg_port`.
    fn cairn_plain(&self, args: &[&str], pg_port: u16) -> Output {
        let mut c = self.command(&self.cairn);
        c.args(args)
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", pg_port.to_string())
            .env("PGUSER", "cairn")
            .env("PGDATABASE", "postgres")
            .env("XDG_STATE_HOME", self.work.join("state"));
        output(c, &format!("cairn {}", args.join(" ")))
    }

    fn pg(&self, program: &str, args: &[&str]) -> Output {
        let mut c = self.command(Path::new(&format!("{}/{program}", self.bin)));
        c.args(args);
        output(c, &format!("{program} {}", args.join(" ")))
    }

    /// initdb, archiving into the repository through `wal push`; returns the port.
    fn create(&self, name: &str) -> u16 {
        let push = format!(
            "{} {} wal push %p",
            self.cairn.display(),
            self.cairn_args().join(" ")
        );
        self.create_archiving(name, &push)
    }

    /// initdb with `push` as archive_command; returns the port.
    fn create_archiving(&self, name: &str, push: &str) -> u16 {
        let data = self.work.join(name);
        self.pg(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "cairn",
                "-A",
                "trust",
                "--no-sync",
            ],
        )
        .assert_success();
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\narchive_mode = on\nwal_level = replica\narchive_timeout = 1\n\
             archive_command = '{push}'\nmax_wal_size = 64MB\n",
            self.work.display()
        );
        let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        text.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), text).unwrap();
        port
    }

    fn start(&self, name: &str) {
        let data = self.work.join(name);
        let log = self.work.join(format!("{name}.log"));
        let out = self.pg(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "120",
                "start",
            ],
        );
        if out.code != 0 {
            panic!(
                "{}\n--- server log ---\n{}",
                out.describe(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        self.started.lock().unwrap().push(data);
    }

    fn sql(&self, port: u16, sql: &str) -> String {
        let out = self.pg(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "cairn",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
        );
        out.assert_success();
        out.stdout.trim().to_string()
    }

    /// Waits until the server has archived every WAL file up to its current position.
    fn wait_archived(&self, port: u16) {
        let current = self.sql(port, "SELECT pg_walfile_name(pg_current_wal_lsn())");
        self.sql(port, "SELECT pg_switch_wal()");
        for _ in 0..600 {
            let last = self.sql(
                port,
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
            );
            if last.as_str() >= current.as_str() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "the server did not archive {current}: {}",
            self.sql(port, "SELECT * FROM pg_stat_archiver")
        );
    }

    /// `pg restore` into a new directory, started on a new port with archiving off.
    fn restore_and_start(&self, name: &str, to: &str) -> u16 {
        let target = self.work.join(name);
        let out = self.cairn(
            &[
                "pg",
                "restore",
                "--to",
                to,
                "--target",
                target.to_str().unwrap(),
                "--archive-off",
            ],
            None,
        );
        out.assert_success();
        let port = free_port();
        let conf = target.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!("port = {port}\n"));
        std::fs::write(&conf, text).unwrap();
        self.start(name);
        // Recovery ends with a promotion: wait for it.
        for _ in 0..600 {
            if self.sql(port, "SELECT pg_is_in_recovery()") == "f" {
                return port;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the restored server did not finish recovery");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for data in self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = self
                .command(Path::new(&format!("{}/pg_ctl", self.bin)))
                .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn output(mut c: Command, what: &str) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Output {
        cmd: what.to_string(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stdout_bytes: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Rows 1..=n into `log`, one transaction each, as a workload would.
fn insert(cluster: &Cluster, port: u16, from: u32, to: u32) {
    for n in from..=to {
        cluster.sql(port, &format!("INSERT INTO log (n) VALUES ({n})"));
    }
}

#[test]
fn restore_to_a_time_gives_exactly_the_rows_committed_before_it_and_latest_gives_all() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let port = cluster.create("primary");
    cluster.start("primary");
    cluster.sql(
        port,
        "CREATE TABLE log (n int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
    );
    insert(&cluster, port, 1, 50);
    // Data beyond a page or two, so the base backup has real relation files.
    cluster.sql(
        port,
        "CREATE TABLE bulk AS SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) g",
    );
    let backup = cluster.cairn(&["--json", "pg", "backup"], Some(port));
    backup.assert_success();
    let pg = backup.json()["snapshot_id"].clone();
    assert!(pg.is_string(), "{}", backup.describe());
    insert(&cluster, port, 51, 120);
    cluster.sql(port, "UPDATE bulk SET h = 'changed' WHERE g % 100 = 0");
    let before_drop = cluster.sql(
        port,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    insert(&cluster, port, 121, 125);
    cluster.sql(port, "DROP TABLE log");
    cluster.sql(port, "CREATE TABLE after_drop AS SELECT 1 AS x");
    cluster.wait_archived(port);

    let list = cluster.cairn(&["--json", "wal", "list"], None);
    list.assert_success();
    assert_eq!(
        list.json()["timelines"][0]["gaps"],
        serde_json::json!([]),
        "{}",
        list.describe()
    );
    // Every archived segment carries the cluster's system identifier, the base backup's.
    let snapshots = cluster.cairn(&["--json", "snapshots"], None);
    let sysid = snapshots.json()[0]["postgres"]["system_identifier"].clone();
    assert!(sysid.is_string(), "{}", snapshots.describe());
    assert_eq!(
        list.json()["system_identifiers"],
        serde_json::json!([sysid]),
        "{}",
        list.describe()
    );
    cluster
        .cairn(&["check", "--read-data"], None)
        .assert_success();

    let restored = cluster.restore_and_start("at_time", &before_drop);
    let rows = cluster.sql(restored, "SELECT count(*), min(n), max(n) FROM log");
    assert_eq!(rows, "120|1|120", "rows committed before {before_drop}");
    assert_eq!(
        cluster.sql(restored, "SELECT count(*) FROM bulk WHERE h = 'changed'"),
        "500"
    );
    assert_eq!(
        cluster.sql(restored, "SELECT to_regclass('after_drop') IS NULL"),
        "t"
    );

    let latest = cluster.restore_and_start("latest", "latest");
    assert_eq!(
        cluster.sql(latest, "SELECT to_regclass('log') IS NULL"),
        "t"
    );
    assert_eq!(cluster.sql(latest, "SELECT count(*) FROM after_drop"), "1");
    assert_eq!(cluster.sql(latest, "SELECT count(*) FROM bulk"), "50000");

    // A time before the base backup ended cannot be reached: refused with the range.
    let out = cluster.cairn(
        &[
            "pg",
            "restore",
            "--to",
            "2000-01-01T00:00:00Z",
            "--target",
            cluster.work.join("early").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code, 2, "{}", out.describe());
    assert!(
        out.stderr
            .contains("before the end of the oldest base backup"),
        "{}",
        out.describe()
    );
    // As is a time after the newest archived WAL.
    let out = cluster.cairn(
        &[
            "pg",
            "restore",
            "--to",
            "2100-01-01T00:00:00Z",
            "--target",
            cluster.work.join("late").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code, 2, "{}", out.describe());
    assert!(
        out.stderr.contains("newest archived WAL"),
        "{}",
        out.describe()
    );
}

#[test]
fn a_gap_in_the_archived_wal_is_reported_and_never_recovered_past() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let port = cluster.create("primary");
    cluster.start("primary");
    cluster.sql(port, "CREATE TABLE t (n int)");
    cluster
        .cairn(&["pg", "backup"], Some(port))
        .assert_success();
    for n in 0..4 {
        cluster.sql(
            port,
            &format!("INSERT INTO t SELECT g FROM generate_series(1, 1000) g; SELECT {n}"),
        );
        cluster.wait_archived(port);
    }
    // Remove the record of a segment after the base backup with later ones archived.
    let repo = cairn::Repository::open(
        Box::new(cairn::LocalBackend::new(cluster.work.join("repo"))),
        b"pitr test password",
        &cluster.work.join("root-cache"),
    )
    .unwrap();
    let catalog = cairn::wal::Catalog::load(&repo).unwrap();
    let segments: Vec<String> = catalog
        .files()
        .filter(|(n, _, _)| n.kind() == cairn::format::wal::WalKind::Segment)
        .map(|(n, _, _)| n.to_string())
        .collect();
    assert!(segments.len() >= 4, "{segments:?}");
    let missing = segments[segments.len() - 2].clone();
    let (victim, _) = catalog
        .records()
        .iter()
        .find(|(_, r)| r.files.iter().any(|f| f.name == missing))
        .unwrap();
    std::fs::remove_file(cluster.work.join("repo/wal").join(victim.to_hex())).unwrap();

    let check = cluster.cairn(&["check"], None);
    assert_eq!(check.code, 4, "{}", check.describe());
    assert!(
        check.stdout.contains(&missing) || check.stderr.contains(&missing),
        "{}",
        check.describe()
    );
    let out = cluster.cairn(
        &[
            "pg",
            "restore",
            "--to",
            "latest",
            "--target",
            cluster.work.join("r").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code, 4, "{}", out.describe());
    assert!(out.stderr.contains(&missing), "{}", out.describe());
    let out = cluster.cairn(
        &[
            "wal",
            "fetch",
            &missing,
            cluster.work.join("x").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code, 126, "{}", out.describe());
    // Monitoring: CRITICAL, naming the gap a restore from the newest base backup would meet.
    let status = cluster.cairn(&["status", "--format", "nagios"], None);
    assert_eq!(status.code, 2, "{}", status.describe());
    assert!(status.stdout.contains(&missing), "{}", status.describe());
    assert!(
        status.stdout.contains("'wal_gaps'=1;"),
        "{}",
        status.describe()
    );
}

#[test]
fn prune_removes_only_wal_that_no_kept_base_backup_can_replay() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let port = cluster.create("primary");
    cluster.start("primary");
    cluster.sql(port, "CREATE TABLE t (n int)");
    for n in 0..3 {
        cluster.sql(
            port,
            &format!("INSERT INTO t SELECT g FROM generate_series(1, 1000) g; SELECT {n}"),
        );
        cluster.wait_archived(port);
    }
    let first = cluster.cairn(&["--json", "pg", "backup"], Some(port));
    first.assert_success();
    let first_id = first.json()["snapshot_id"].as_str().unwrap().to_string();
    for n in 0..3 {
        cluster.sql(
            port,
            &format!("INSERT INTO t SELECT g FROM generate_series(1, 1000) g; SELECT {n}"),
        );
        cluster.wait_archived(port);
    }
    let second = cluster.cairn(&["--json", "pg", "backup"], Some(port));
    second.assert_success();
    let second_start = second.json()["summary"].clone();
    assert!(second_start.is_object(), "{}", second.describe());
    cluster.sql(port, "INSERT INTO t VALUES (-1)");
    cluster.wait_archived(port);
    let first_segment = |c: &Cluster| -> String {
        let list = c.cairn(&["--json", "wal", "list"], None);
        list.assert_success();
        list.json()["timelines"][0]["first"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let now = ["prune", "--grace", "0s", "--clock-skew", "0s"];
    // Both base backups kept: the first one's WAL stays, and only what precedes it goes.
    let before = first_segment(&cluster);
    cluster.cairn(&now, None).assert_success();
    assert!(first_segment(&cluster) >= before);
    let snapshots = cluster.cairn(&["--json", "snapshots"], None);
    let start_wal = |id: &str| -> String {
        snapshots
            .json()
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["postgres"]["start_wal"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{}", snapshots.describe()))
    };
    let first_start = start_wal(&first_id);
    assert_eq!(first_segment(&cluster), first_start);
    // A recovery window keeps WAL the base backups no longer need.
    cluster.cairn(&["forget", &first_id], None).assert_success();
    let kept = cluster.cairn(
        &[
            "--json",
            "prune",
            "--grace",
            "0s",
            "--clock-skew",
            "0s",
            "--keep-wal-within",
            "1h",
        ],
        None,
    );
    kept.assert_success();
    assert_eq!(kept.json()["wal_files_expired"], 0, "{}", kept.describe());
    assert_eq!(first_segment(&cluster), first_start);
    // Without it, WAL before the second base backup's start goes; the rest restores.
    let pruned = cluster.cairn(
        &["--json", "prune", "--grace", "0s", "--clock-skew", "0s"],
        None,
    );
    pruned.assert_success();
    assert!(
        pruned.json()["wal_files_expired"].as_u64().unwrap() >= 3,
        "{}",
        pruned.describe()
    );
    cluster.cairn(&now, None).assert_success();
    let second_id = second.json()["snapshot_id"].as_str().unwrap().to_string();
    let snapshots = cluster.cairn(&["--json", "snapshots"], None);
    let second_wal = snapshots
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == second_id.as_str())
        .map(|s| s["postgres"]["start_wal"].as_str().unwrap().to_string())
        .unwrap();
    assert!(
        first_segment(&cluster) <= second_wal,
        "{} > {second_wal}",
        first_segment(&cluster)
    );
    assert!(first_segment(&cluster) > first_start);
    cluster
        .cairn(&["check", "--read-data"], None)
        .assert_success();
    let restored = cluster.restore_and_start("latest", "latest");
    assert_eq!(cluster.sql(restored, "SELECT count(*) FROM t"), "6001");
}

#[test]
fn a_pitr_drill_and_restore_start_recover_to_the_target_and_run_their_checks() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let port = cluster.create("primary");
    cluster.start("primary");
    cluster.sql(
        port,
        "CREATE TABLE log (n int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
    );
    insert(&cluster, port, 1, 10);
    cluster
        .cairn(&["pg", "backup"], Some(port))
        .assert_success();
    insert(&cluster, port, 11, 30);
    let target = cluster.sql(
        port,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    insert(&cluster, port, 31, 35);
    cluster.wait_archived(port);

    let scratch = cluster.work.join("drills");
    // Without PGUSER the drill connects as the OS user, a role this cluster lacks: it fails at
    // once, saying so, instead of waiting for a recovery it cannot see.
    let refused = cluster.cairn(
        &[
            "drill",
            "--pitr",
            &target,
            "--scratch",
            scratch.to_str().unwrap(),
        ],
        None,
    );
    assert_ne!(refused.code, 0, "{}", refused.describe());
    assert_eq!(refused.code, 2, "{}", refused.describe());
    assert!(
        refused.stdout.contains("refused cairn's connection"),
        "{}",
        refused.describe()
    );
    let count_is = |n: u32| {
        format!("test \"$(psql \"{{conninfo}}\" -X -Atc 'SELECT count(*) FROM log')\" = {n}")
    };
    let out = cluster.cairn(
        &[
            "--json",
            "drill",
            "--pitr",
            &target,
            "--scratch",
            scratch.to_str().unwrap(),
            "--check",
            &count_is(30),
        ],
        Some(port),
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let report = out.json();
    assert_eq!(report["verdict"], "pass", "{report}");
    let reached = report["recovered_to"].as_str().unwrap().to_string();
    assert!(
        reached <= target,
        "recovered to {reached}, after the target {target}"
    );
    assert!(
        report["phases"]["recovery_secs"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
    assert!(left.is_empty(), "the scratch directory was not removed");
    // A check that fails makes the drill fail (exit 2).
    let out = cluster.cairn(
        &[
            "--json",
            "drill",
            "--pitr",
            &target,
            "--scratch",
            scratch.to_str().unwrap(),
            "--check",
            &count_is(35),
        ],
        Some(port),
    );
    assert_eq!(out.code, 2, "{}", out.describe());
    assert_eq!(out.json()["verdict"], "failed");

    // pg restore --start: the server is left running, recovered and promoted.
    let started = cluster.work.join("started");
    let new_port = free_port();
    let out = cluster.cairn(
        &[
            "pg",
            "restore",
            "--to",
            &target,
            "--target",
            started.to_str().unwrap(),
            "--archive-off",
            "--start",
            &new_port.to_string(),
        ],
        Some(port),
    );
    out.assert_success();
    cluster.started.lock().unwrap().push(started);
    assert_eq!(
        cluster.sql(new_port, "SELECT count(*), pg_is_in_recovery() FROM log"),
        "30|f"
    );
}

#[test]
fn a_base_backup_whose_wal_is_not_archived_writes_no_snapshot() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let port = cluster.create("primary");
    cluster.start("primary");
    // archive_command fails: the backup's last WAL file never reaches the repository.
    cluster.sql(port, "ALTER SYSTEM SET archive_command = 'false'");
    cluster.sql(port, "SELECT pg_reload_conf()");
    let out = cluster.cairn(&["pg", "backup", "--archive-timeout", "3s"], Some(port));
    assert_eq!(out.code, 5, "{}", out.describe());
    assert!(
        out.stderr.contains("was not archived"),
        "{}",
        out.describe()
    );
    let snapshots = cluster.cairn(&["--json", "snapshots"], None);
    assert_eq!(
        snapshots.json(),
        serde_json::json!([]),
        "{}",
        snapshots.describe()
    );
    // The session ended, and the backup with it: the server can start another one.
    assert_eq!(
        cluster.sql(
            port,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cairn'"
        ),
        "0"
    );
}

/// The plan file drives it all: `pg setup --plan` gives the archive_command, which archives
/// through the background archiver (`push_async`) and reads the
/// repository and password from the plan; `cairn run` takes the base backup (`[postgres]`),
/// applies retention with the plan's WAL window, and drills a point-in-time recovery whose
/// check counts the rows; `status` judges the base backups by `[postgres]`'s ages.
#[test]
fn a_plan_with_a_postgres_section_archives_backs_up_keeps_wal_and_drills() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let work = &cluster.work;
    let port = cluster.create("primary");
    let plan = work.join("plan.toml");
    let check = "test \"$(psql \"{conninfo}\" -X -Atc 'SELECT count(*) FROM log')\" = 20";
    std::fs::write(
        &plan,
        format!(
            "[repository]\nlocation = \"{repo}\"\npassword_file = \"{pw}\"\ncache_dir = \"{cache}\"\n\n\
             [postgres]\nevery = \"1d\"\npush_async = true\nkeep_wal_within = \"1d\"\nqueue_max = \"1G\"\n\
             warn_age = \"8d\"\ncrit_age = \"15d\"\n\n\
             [retention]\nkeep_last = 1\n\n\
             [drill]\nevery = \"1d\"\npitr = \"latest\"\nscratch = \"{scratch}\"\nchecks = [[\"sh\", \"-c\", {check:?}]]\n",
            repo = work.join("repo").display(),
            pw = work.join("password").display(),
            cache = work.join("cache").display(),
            scratch = work.join("drills").display(),
        ),
    )
    .unwrap();
    cluster.chown(&plan);
    std::fs::create_dir_all(work.join("drills")).unwrap();
    cluster.chown(&work.join("drills"));
    let plan_arg = plan.to_str().unwrap();
    let setup = cluster.cairn_plain(&["pg", "setup", "--plan", plan_arg], port);
    setup.assert_success();
    let archive_line = setup
        .stdout
        .lines()
        .find(|l| l.starts_with("archive_command = "))
        .unwrap_or_else(|| panic!("no archive_command: {}", setup.describe()))
        .to_string();
    assert!(
        archive_line.contains("wal push --plan") && !archive_line.contains("password"),
        "{archive_line}"
    );
    let conf = work.join("primary/postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&archive_line);
    text.push('\n');
    std::fs::write(&conf, text).unwrap();
    cluster.start("primary");
    cluster.sql(
        port,
        "CREATE TABLE log (n int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
    );
    insert(&cluster, port, 1, 20);
    cluster.wait_archived(port);

    // The drill recovers to the latest archived WAL: its check counts the twenty rows.
    let run = cluster.cairn_plain(&["--json", "run", "--plan", plan_arg], port);
    assert_eq!(run.code, 0, "{}", run.describe());
    let report = run.json();
    assert_eq!(
        report["ran"],
        serde_json::json!(["postgres", "retention", "drill"]),
        "{report}"
    );
    let base = report["steps"]["postgres"]["last_success"]["details"].clone();
    assert!(base["stop_wal"].as_str().is_some(), "{report}");
    let drill = cluster.cairn_plain(&["--json", "run", "--plan", plan_arg], port);
    assert_eq!(drill.code, 0, "{}", drill.describe());
    let report = drill.json();
    // Base backup and drill are not due a second time the same day; retention runs every time.
    assert_eq!(report["ran"], serde_json::json!(["retention"]), "{report}");
    let drill = cluster.cairn_plain(
        &[
            "--json", "run", "--plan", plan_arg, "--only", "drill", "--force",
        ],
        port,
    );
    assert_eq!(drill.code, 0, "{}", drill.describe());
    let details = &drill.json()["steps"]["drill"]["last_attempt"]["details"];
    assert_eq!(details["verdict"], "pass", "{details}");

    // A second base backup: retention keeps one, and the WAL before it stays within the window.
    let again = cluster.cairn_plain(
        &[
            "--json",
            "run",
            "--plan",
            plan_arg,
            "--only",
            "postgres,retention",
            "--force",
        ],
        port,
    );
    assert_eq!(again.code, 0, "{}", again.describe());
    let snapshots = cluster.cairn(&["--json", "snapshots"], None);
    assert_eq!(
        snapshots.json().as_array().unwrap().len(),
        1,
        "{}",
        snapshots.describe()
    );
    let list = cluster.cairn(&["--json", "wal", "list"], None);
    list.assert_success();
    let first = list.json()["timelines"][0]["first"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        first.as_str() <= base["start_wal"].as_str().unwrap(),
        "the WAL of the last day was pruned: first archived {first}, {}",
        list.describe()
    );

    let status = cluster.cairn_plain(&["--json", "status", "--plan", plan_arg], port);
    let report = status.json();
    let finding = |subject: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["subject"].as_str().unwrap().starts_with(subject))
            .cloned()
            .unwrap_or_else(|| panic!("no {subject} finding: {}", status.describe()))
    };
    assert_eq!(
        finding("base backup")["level"],
        "OK",
        "{}",
        status.describe()
    );
    assert_eq!(finding("wal")["level"], "OK", "{}", status.describe());
    let metrics = cluster.cairn_plain(&["status", "--plan", plan_arg, "--format", "nagios"], port);
    assert!(
        metrics.stdout.contains("'wal_backlog'="),
        "{}",
        metrics.describe()
    );
}

/// PostgreSQL's archiver under kill -9: each file's first `wal push` is killed at a random moment
/// (before, during or after its record is written); PostgreSQL retries, and in the end every
/// segment is archived once, the repository checks clean, the WAL has no gap, and recovery gives
/// every row.
#[test]
fn wal_push_killed_at_random_moments_loses_no_segment_and_postgresql_retries() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let work = &cluster.work;
    let killed = work.join("killed");
    std::fs::create_dir(&killed).unwrap();
    cluster.chown(&killed);
    let script = work.join("push.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             marker={killed}/$(basename \"$1\")\n\
             if [ ! -e \"$marker\" ]; then\n\
             \x20 : > \"$marker\"\n\
             \x20 {cairn} {args} wal push \"$1\" &\n\
             \x20 pid=$!\n\
             \x20 sleep $(printf '0.%03d' $(shuf -i 0-400 -n 1))\n\
             \x20 kill -9 $pid 2>/dev/null\n\
             \x20 wait $pid\n\
             \x20 exit 1\n\
             fi\n\
             exec {cairn} {args} wal push \"$1\"\n",
            killed = killed.display(),
            cairn = cluster.cairn.display(),
            args = cluster.cairn_args().join(" "),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    cluster.chown(&script);
    let port = cluster.create_archiving("primary", &format!("{} %p", script.display()));
    cluster.start("primary");
    cluster.sql(port, "CREATE TABLE t (n int)");
    cluster
        .cairn(&["pg", "backup"], Some(port))
        .assert_success();
    for n in 0..6 {
        cluster.sql(
            port,
            &format!(
                "INSERT INTO t SELECT g FROM generate_series({}, {}) g",
                n * 20_000 + 1,
                (n + 1) * 20_000
            ),
        );
        cluster.sql(port, "SELECT pg_switch_wal()");
    }
    cluster.wait_archived(port);
    let failed: u64 = cluster
        .sql(port, "SELECT failed_count FROM pg_stat_archiver")
        .parse()
        .unwrap();
    assert!(failed >= 6, "the pushes were not killed: {failed} failures");
    cluster.cairn(&["check"], None).assert_success();
    let list = cluster.cairn(&["--json", "wal", "list"], None);
    assert_eq!(list.code, 0, "{}", list.describe());
    let report = list.json();
    assert!(
        report["conflicts"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(
        report["timelines"][0]["gaps"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{report}"
    );
    let restored = cluster.restore_and_start("restored", "latest");
    assert_eq!(cluster.sql(restored, "SELECT count(*) FROM t"), "120000");
}

/// A tablespace outside the data directory is backed up with it; a restore puts it where
/// `--tablespace-mapping` says (refusing the live cluster's directory), links it, and recovery
/// gives every row of a table that lives there; a PITR drill puts it in its scratch directory.
#[test]
fn a_tablespace_is_backed_up_and_restored_where_the_mapping_says() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let work = &cluster.work;
    let space = work.join("space");
    std::fs::create_dir(&space).unwrap();
    std::fs::set_permissions(&space, std::fs::Permissions::from_mode(0o700)).unwrap();
    cluster.chown(&space);
    let port = cluster.create("primary");
    cluster.start("primary");
    cluster.sql(
        port,
        &format!("CREATE TABLESPACE space LOCATION '{}'", space.display()),
    );
    cluster.sql(port, "CREATE TABLE t (n int) TABLESPACE space");
    cluster.sql(
        port,
        "INSERT INTO t SELECT g FROM generate_series(1, 1000) g",
    );
    let backup = cluster.cairn(&["--json", "pg", "backup"], Some(port));
    backup.assert_success();
    cluster.sql(
        port,
        "INSERT INTO t SELECT g FROM generate_series(1001, 3000) g",
    );
    cluster.wait_archived(port);
    let snapshots = cluster.cairn(&["--json", "snapshots"], None).json();
    let paths = snapshots[0]["paths"].clone();
    assert!(
        paths
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str() == space.to_str()),
        "{paths}"
    );

    let target = work.join("restored");
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "pg",
            "restore",
            "--to",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--archive-off",
        ];
        args.extend_from_slice(extra);
        cluster.cairn(&args, None)
    };
    // Back to its own directory: the live cluster's, which is not empty.
    let refused = restore(&[]);
    assert_eq!(refused.code, 2, "{}", refused.describe());
    assert!(
        refused.stderr.contains("--tablespace-mapping"),
        "{}",
        refused.describe()
    );
    assert!(
        !target.exists(),
        "a refused restore wrote {}",
        target.display()
    );
    let moved = work.join("space-restored");
    // A mapping for a directory that holds no tablespace of the backup is a typo: refused.
    let typo = format!("{}/elsewhere={}", work.display(), moved.display());
    let refused = restore(&["--tablespace-mapping", &typo]);
    assert_eq!(refused.code, 2, "{}", refused.describe());
    assert!(
        refused.stderr.contains("has no tablespace there"),
        "{}",
        refused.describe()
    );
    assert!(!target.exists() && !moved.exists());
    let mapping = format!("{}={}", space.display(), moved.display());
    restore(&["--tablespace-mapping", &mapping]).assert_success();
    let new_port = free_port();
    let conf = target.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!("port = {new_port}\n"));
    std::fs::write(&conf, text).unwrap();
    cluster.start("restored");
    for _ in 0..600 {
        if cluster.sql(new_port, "SELECT pg_is_in_recovery()") == "f" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        cluster.sql(
            new_port,
            "SELECT count(*), pg_tablespace_location((SELECT oid FROM pg_tablespace WHERE spcname = 'space')) FROM t"
        ),
        format!("3000|{}", moved.display())
    );
    // The live tablespace was not touched by the recovery.
    assert_eq!(cluster.sql(port, "SELECT count(*) FROM t"), "3000");

    let scratch = work.join("drills");
    let drill = cluster.cairn(
        &[
            "--json",
            "drill",
            "--pitr",
            "latest",
            "--scratch",
            scratch.to_str().unwrap(),
            "--check",
            "test \"$(psql \"{conninfo}\" -X -Atc 'SELECT count(*) FROM t')\" = 3000",
        ],
        Some(port),
    );
    assert_eq!(drill.code, 0, "{}", drill.describe());
}

/// A base backup taken from a streaming standby (its primary archives the WAL): the backup waits
/// until the primary has archived the file its stop position needs, and a restore from it
/// recovers every row the primary committed.
#[test]
fn a_base_backup_from_a_standby_restores_what_the_primary_committed() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let work = &cluster.work;
    let port = cluster.create("primary");
    cluster.start("primary");
    cluster.sql(port, "CREATE TABLE t (n int)");
    cluster.sql(
        port,
        "INSERT INTO t SELECT g FROM generate_series(1, 1000) g",
    );
    let standby = work.join("standby");
    cluster
        .pg(
            "pg_basebackup",
            &[
                "-D",
                standby.to_str().unwrap(),
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "cairn",
                "-R",
                "-X",
                "stream",
            ],
        )
        .assert_success();
    let standby_port = free_port();
    let conf = standby.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!("port = {standby_port}\n"));
    std::fs::write(&conf, text).unwrap();
    cluster.start("standby");
    assert_eq!(cluster.sql(standby_port, "SELECT pg_is_in_recovery()"), "t");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let backup = std::thread::scope(|s| {
        // The primary goes on writing, so it switches WAL files (archive_timeout = 1 s) and
        // archives the one the standby backup ends in.
        s.spawn(|| {
            let mut n = 1000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                cluster.sql(port, &format!("INSERT INTO t VALUES ({n})"));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        let out = cluster.cairn(
            &[
                "--json",
                "pg",
                "backup",
                "--pgdata",
                standby.to_str().unwrap(),
            ],
            Some(standby_port),
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    });
    backup.assert_success();
    let snapshots = cluster.cairn(&["--json", "snapshots"], None).json();
    assert!(
        snapshots[0]["postgres"]["backup_label"]
            .as_str()
            .unwrap()
            .contains("BACKUP FROM: standby"),
        "{snapshots}"
    );
    let committed = cluster.sql(port, "SELECT count(*) FROM t");
    cluster.wait_archived(port);
    let restored = cluster.restore_and_start("restored", "latest");
    assert_eq!(cluster.sql(restored, "SELECT count(*) FROM t"), committed);
}
