//! The nightly plan end to end: `cairn plan`, `cairn run` with its schedule, hooks and state file,
//! `cairn status` in every format with plugin exit codes, and `cairn drill`.

use crate::common;

use std::fs;
use std::path::PathBuf;

use common::{write_file, Env};

/// A plan over `env`'s repository and a small tree with an SQLite database.
struct PlanEnv {
    env: Env,
    plan: PathBuf,
    state: PathBuf,
    prom: PathBuf,
    hooks_log: PathBuf,
    src: PathBuf,
}

impl PlanEnv {
    fn new(extra: &str) -> PlanEnv {
        let env = Env::new();
        env.init();
        let src = env.path("src");
        write_file(&src.join("etc/app.conf"), b"listen 8080\n");
        write_file(
            &src.join("data/blob.bin"),
            &common::random_bytes(7, 200_000),
        );
        let db = src.join("data/app.db");
        let sqlite = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg("create table t(x); insert into t values (1), (2);")
            .status()
            .expect("sqlite3 runs (Debian package sqlite3)");
        assert!(sqlite.success());
        let p = PlanEnv {
            plan: env.path("plan.toml"),
            state: env.path("state/plan.json"),
            prom: env.path("textfile/cairn.prom"),
            hooks_log: env.path("hooks.log"),
            src,
            env,
        };
        p.write_plan(extra);
        p
    }

    fn write_plan(&self, extra: &str) {
        let text = format!(
            r#"
[repository]
location = "{repo}"
password_command = ["printf", "%s\n", "{password}"]

[backup]
paths = ["{src}"]
tags = ["nightly"]

[retention]
keep_daily = 7
keep_weekly = 4

[check]
every = "1w"
read_data = "50%"

[[offsite]]
name = "usb"
location = "{offsite}"

[monitor]
state_file = "{state}"
prometheus_file = "{prom}"
drill_max_age = "8d"

[drill]
every = "1w"
max_rto = "1h"
checks = [["sqlite3", "{{root}}{src}/data/app.db", "PRAGMA integrity_check"]]

[hooks]
before = [["sh", "-c", "echo before $CAIRN_RUN_ID >> {log}"]]
on_failure = [["sh", "-c", "echo on_failure $CAIRN_STATUS $CAIRN_EXIT_CODE >> {log}"]]
finally = [["sh", "-c", "echo finally $CAIRN_STATUS $CAIRN_SNAPSHOT_ID >> {log}"]]
{extra}
"#,
            repo = self.env.repo_str(),
            password = self.env.password,
            src = self.src.display(),
            offsite = self.env.path("offsite").display(),
            state = self.state.display(),
            prom = self.prom.display(),
            log = self.hooks_log.display(),
        );
        fs::write(&self.plan, text).unwrap();
    }

    /// `cairn <args> --plan PLAN` without the password in the environment: the plan gives it.
    fn cairn(&self, args: &[&str]) -> common::Output {
        let mut full: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        full.extend(["--plan".to_string(), self.plan.display().to_string()]);
        self.env.run(&full, None, &[("CAIRN_PASSWORD", None)])
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(&self.state).unwrap()).unwrap()
    }

    fn hooks(&self) -> String {
        fs::read_to_string(&self.hooks_log).unwrap_or_default()
    }
}

fn step<'a>(state: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    &state["steps"][key]
}

#[test]
fn a_run_does_every_step_then_only_what_is_due() {
    let p = PlanEnv::new("");
    p.cairn(&["plan", "validate"]).assert_success();
    let dry = p.cairn(&["run", "--dry-run"]);
    dry.assert_success();
    for line in [
        "backup: would run",
        "check: would run (never succeeded before)",
        "drill: would run",
    ] {
        assert!(dry.stdout.contains(line), "{}", dry.describe());
    }
    assert!(!p.state.exists(), "a dry run writes no state");

    let first = p.cairn(&["--json", "run"]);
    first.assert_success();
    let report = first.json();
    assert_eq!(report["status"], "ok");
    assert_eq!(
        report["ran"],
        serde_json::json!(["backup", "retention", "check", "offsite.usb", "drill"])
    );
    let state = p.state();
    for key in ["backup", "retention", "check", "offsite.usb", "drill"] {
        assert_eq!(
            step(&state, key)["last_success"]["outcome"],
            "ok",
            "{key}: {state:#}"
        );
    }
    let snapshot = step(&state, "backup")["last_success"]["details"]["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let drill = &step(&state, "drill")["last_success"]["details"];
    assert_eq!(drill["verdict"], "pass");
    assert_eq!(drill["files_verified"], 3);
    assert_eq!(drill["checks"][0]["exit_code"], 0);
    assert!(drill["checks"][0]["output_tail"]
        .as_str()
        .unwrap()
        .contains("ok"));
    // The offsite copy is a repository holding the snapshot.
    let offsite = p.env.path("offsite");
    assert!(offsite.join("config").is_file());
    assert_eq!(fs::read_dir(offsite.join("snapshots")).unwrap().count(), 1);
    // Hooks saw the run id and, at the end, the snapshot.
    let hooks = p.hooks();
    let run_id = report["run_id"].as_str().unwrap();
    assert!(hooks.contains(&format!("before {run_id}")), "{hooks}");
    assert!(hooks.contains(&format!("finally ok {snapshot}")), "{hooks}");
    assert!(!hooks.contains("on_failure"), "{hooks}");
    let prom = fs::read_to_string(&p.prom).unwrap();
    for needle in [
        "cairn_last_success_timestamp_seconds{step=\"offsite.usb\"}",
        "cairn_drill_rto_seconds ",
        "cairn_build_info{version=",
    ] {
        assert!(prom.contains(needle), "{needle} missing from\n{prom}");
    }

    // The second run backs up again but check and drill are weekly.
    let second = p.cairn(&["--json", "run"]);
    second.assert_success();
    assert_eq!(
        second.json()["ran"],
        serde_json::json!(["backup", "retention", "offsite.usb"])
    );
    let forced = p.cairn(&["--json", "run", "--only", "check", "--force"]);
    forced.assert_success();
    assert_eq!(forced.json()["ran"], serde_json::json!(["check"]));
    // keep_daily = 7 keeps the newest snapshot of each day: today's first one was forgotten.
    let snapshots = p.env.snapshots_json();
    assert_eq!(snapshots.len(), 1);
    assert_ne!(snapshots[0]["id"].as_str(), Some(snapshot.as_str()));
}

#[test]
fn a_before_hook_exiting_75_skips_the_run_and_others_fail_it() {
    let p = PlanEnv::new("");
    let plan = fs::read_to_string(&p.plan).unwrap();
    let skip = plan.replace(
        "before = [[\"sh\", \"-c\", \"echo before",
        "before = [[\"sh\", \"-c\", \"exit 75\"], [\"sh\", \"-c\", \"echo before",
    );
    fs::write(&p.plan, &skip).unwrap();
    let out = p.cairn(&["run"]);
    out.assert_success();
    assert!(
        p.env.snapshots_json().is_empty(),
        "a skipped run backs up nothing"
    );
    assert!(p.hooks().contains("finally skipped"), "{}", p.hooks());
    assert_eq!(
        p.state()["last_run"]["attempt"]["details"]["status"],
        "skipped"
    );

    fs::write(&p.plan, plan.replace("echo before", "exit 9; echo before")).unwrap();
    let out = p.cairn(&["run"]);
    out.assert_code(1);
    assert!(out.stderr.contains("before hook"), "{}", out.describe());
    assert!(p.env.snapshots_json().is_empty());
    assert!(p.hooks().contains("on_failure failed 1"), "{}", p.hooks());
}

#[test]
fn a_failing_step_fails_the_run_but_not_the_others() {
    let p = PlanEnv::new("");
    // The offsite target is a file: the copy cannot be made there.
    write_file(&p.env.path("offsite"), b"not a directory");
    let out = p.cairn(&["run"]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(out.stderr.contains("offsite.usb"), "{}", out.describe());
    let state = p.state();
    assert_eq!(
        step(&state, "offsite.usb")["last_attempt"]["outcome"],
        "failed"
    );
    assert!(step(&state, "offsite.usb")["last_success"].is_null());
    for key in ["backup", "retention", "check", "drill"] {
        assert_eq!(step(&state, key)["last_attempt"]["outcome"], "ok", "{key}");
    }
    assert_eq!(
        state["last_run"]["failed"],
        serde_json::json!(["offsite.usb"])
    );
    assert!(p.hooks().contains("on_failure failed"), "{}", p.hooks());
    // Monitoring sees it.
    let status = p.cairn(&["status", "--format", "nagios"]);
    status.assert_code(1);
    assert!(
        status
            .stdout
            .starts_with("CAIRN WARNING - offsite usb: never succeeded"),
        "{}",
        status.describe()
    );
}

#[test]
fn status_speaks_the_monitoring_plugin_convention() {
    let env = Env::new();
    // No repository at all: UNKNOWN, not cairn's own exit code 10.
    let out = env.r(&["status", "--format", "nagios"]);
    out.assert_code(3);
    assert!(
        out.stdout.starts_with("CAIRN UNKNOWN - status: "),
        "{}",
        out.describe()
    );
    env.init();
    env.r(&["status"]).assert_code(2);
    let src = env.path("src");
    write_file(&src.join("f"), &common::random_bytes(1, 5000));
    let thirty_hours_ago = (chrono::Utc::now() - chrono::Duration::hours(30)).to_rfc3339();
    env.r_ok(&["backup", src.to_str().unwrap(), "--time", &thirty_hours_ago]);
    let warn = env.r(&["status", "--format", "nagios"]);
    warn.assert_code(1);
    assert!(
        warn.stdout.starts_with("CAIRN WARNING - backup "),
        "{}",
        warn.describe()
    );
    assert!(
        warn.stdout.contains("|") && warn.stdout.contains(";93600;180000;0;"),
        "{}",
        warn.describe()
    );
    env.r(&["status", "--crit-age", "29h", "--warn-age", "1h"])
        .assert_code(2);
    env.r(&["status", "--warn-age", "2d", "--crit-age", "3d"])
        .assert_code(0);
    let json = env.r(&["--json", "status", "--warn-age", "2d", "--crit-age", "3d"]);
    json.assert_success();
    assert_eq!(json.json()["level"], "OK");
    // A bad threshold is UNKNOWN too.
    env.r(&["status", "--warn-age", "3x"]).assert_code(3);
    // Offline needs a state file.
    let offline = env.r(&["status", "--offline"]);
    offline.assert_code(3);
    assert!(offline.stdout.contains("--plan"), "{}", offline.describe());
}

#[test]
fn status_offline_answers_from_the_state_file_without_the_password() {
    let p = PlanEnv::new("");
    p.cairn(&["run"]).assert_success();
    // No password anywhere: the plan's password command fails, yet offline status answers.
    let plan = fs::read_to_string(&p.plan).unwrap();
    fs::write(
        &p.plan,
        plan.replace(
            "password_command = [\"printf\"",
            "password_command = [\"false\"",
        ),
    )
    .unwrap();
    let online = p.cairn(&["status", "--format", "nagios"]);
    online.assert_code(3);
    let offline = p.cairn(&["status", "--offline", "--format", "nagios"]);
    offline.assert_success();
    assert!(
        offline.stdout.starts_with("CAIRN OK - "),
        "{}",
        offline.describe()
    );
    let prom = p.cairn(&["status", "--offline", "--format", "prometheus"]);
    prom.assert_success();
    assert!(
        prom.stdout.contains("cairn_status_level 0"),
        "{}",
        prom.describe()
    );
}

#[test]
fn drill_fails_on_a_failing_check_and_flags_missed_targets() {
    let p = PlanEnv::new("");
    let two_days_ago = (chrono::Utc::now() - chrono::Duration::hours(48)).to_rfc3339();
    p.env
        .r_ok(&["backup", p.src.to_str().unwrap(), "--time", &two_days_ago]);
    let pass = p.cairn(&["--json", "drill", "--keep"]);
    pass.assert_success();
    let report = pass.json();
    assert_eq!(report["verdict"], "pass");
    let scratch = PathBuf::from(report["scratch"].as_str().unwrap());
    assert!(scratch
        .join(p.src.strip_prefix("/").unwrap())
        .join("data/app.db")
        .is_file());
    assert!(report["rpo_secs"].as_f64().unwrap() >= 48.0 * 3600.0);
    fs::remove_dir_all(&scratch).unwrap();

    let missed = p.cairn(&["drill", "--max-rpo", "1d"]);
    missed.assert_code(1);
    assert!(
        missed.stdout.contains("TARGET MISSED: RPO"),
        "{}",
        missed.describe()
    );

    let failed = p.cairn(&["drill", "--check", "echo broken >&2; exit 4"]);
    failed.assert_code(2);
    assert!(
        failed.stdout.contains("FAILED, exit code 4"),
        "{}",
        failed.describe()
    );
    assert!(failed.stdout.contains("| broken"), "{}", failed.describe());
    let state = p.state();
    assert_eq!(step(&state, "drill")["last_attempt"]["exit_code"], 2);
    // The failed drill is what monitoring reports, critically.
    let status = p.cairn(&["status", "--warn-age", "3d", "--crit-age", "4d"]);
    status.assert_code(2);
}

#[test]
fn drill_reports_damaged_repository_data_as_a_failure() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("big"), &common::random_bytes(3, 300_000));
    env.r_ok(&["backup", src.to_str().unwrap()]);
    for pack in common::pack_files(&env.repo) {
        let mut bytes = fs::read(&pack).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        fs::write(&pack, bytes).unwrap();
    }
    let out = env.r(&["drill"]);
    out.assert_code(2);
    assert!(out.stderr_lower().contains("error"), "{}", out.describe());
}

#[test]
fn plan_files_are_strict_and_explain_what_is_wrong() {
    let p = PlanEnv::new("");
    let plan = fs::read_to_string(&p.plan).unwrap();
    for (edit, expected) in [
        (
            plan.replace("keep_daily = 7", "keep_dayly = 7"),
            "keep_dayly",
        ),
        (
            plan.replace("every = \"1w\"", "every = \"5m\""),
            "min for minutes",
        ),
        // keep_within once read m as months: now refused like every other span.
        (
            plan.replace("keep_weekly = 4", "keep_weekly = 4\nkeep_within = \"6m\""),
            "6mo for months",
        ),
        (
            plan.replace("read_data = \"50%\"", "read_data = \"150%\""),
            "read_data",
        ),
        (
            plan.replace(
                "[monitor]",
                "[monitor]\nwarn_age = \"3d\"\ncrit_age = \"1d\"",
            ),
            "warn_age is longer",
        ),
        // Validated by the parser that uses it: a zero rate passed validation, then failed the run.
        (
            plan.replace("\n[backup]", "limit_upload = \"0\"\n\n[backup]"),
            "limit_upload",
        ),
    ] {
        fs::write(&p.plan, &edit).unwrap();
        let out = p.cairn(&["plan", "validate"]);
        out.assert_code(2);
        assert!(
            out.stderr.contains(expected),
            "expected {expected:?}: {}",
            out.describe()
        );
        assert!(out.stderr.contains("plan.toml"), "{}", out.describe());
        // And nothing runs on a bad plan.
        p.cairn(&["run"]).assert_code(2);
    }
    assert!(p.env.snapshots_json().is_empty());
    // --only names steps the plan has.
    fs::write(
        &p.plan,
        plan.replace("[check]\nevery = \"1w\"\nread_data = \"50%\"\n", ""),
    )
    .unwrap();
    let out = p.cairn(&["run", "--only", "check"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("--only check: the plan"),
        "{}",
        out.describe()
    );
    p.cairn(&["run", "--only", "backups"]).assert_code(2);
    assert!(p.env.snapshots_json().is_empty());
    fs::write(&p.plan, &plan).unwrap();
    let show = p.cairn(&["--json", "plan", "show"]);
    show.assert_success();
    assert_eq!(show.json()["plan"]["retention"]["keep_daily"], 7);
    assert_eq!(show.json()["state_file"], p.state.display().to_string());
    let units = p.cairn(&["plan", "systemd", "--on-calendar", "*-*-* 03:15"]);
    units.assert_success();
    assert!(
        units
            .stdout
            .contains(&format!("run --plan {}", p.plan.display())),
        "{}",
        units.describe()
    );
    assert!(units.stdout.contains("OnCalendar=*-*-* 03:15"));
}

#[test]
fn a_second_run_of_the_same_plan_refuses_to_start() {
    let p = PlanEnv::new("");
    let plan = fs::read_to_string(&p.plan).unwrap();
    let gate = p.env.path("gate");
    let slow = plan.replace(
        "before = [[",
        &format!("before = [[\"sh\", \"-c\", \"touch {0}.started; while [ ! -e {0} ]; do sleep 0.05; done\"], [", gate.display()),
    );
    fs::write(&p.plan, slow).unwrap();
    let mut cmd = p.env.command();
    cmd.args(["run", "--plan", p.plan.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut first = cmd.spawn().unwrap();
    let started = p.env.path("gate.started");
    while !started.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = p.cairn(&["run"]);
    second.assert_code(1);
    assert!(
        second
            .stderr
            .contains("another `cairn run` of this plan is running"),
        "{}",
        second.describe()
    );
    fs::write(&gate, b"").unwrap();
    assert!(first.wait().unwrap().success());
    assert_eq!(p.env.snapshots_json().len(), 1);
}

#[test]
fn plan_dumps_go_into_the_snapshot_are_drilled_and_a_failing_one_fails_the_run() {
    let p = PlanEnv::new(
        r#"
[[dump]]
path = "dumps/app.sql"
command = ["sh", "-c", "echo 'hello from the dump'; echo 'dumping' >&2"]
min_bytes = "10"
verify = ["grep", "-q", "hello from the dump", "{file}"]
"#,
    );
    p.cairn(&["run"]).assert_success();
    let cat = p.env.r(&["cat", "latest:/dumps/app.sql"]);
    cat.assert_success();
    assert_eq!(cat.stdout, "hello from the dump\n");
    let state = p.state();
    let backup = &step(&state, "backup")["last_success"]["details"];
    assert_eq!(backup["dumps"][0]["path"], "/dumps/app.sql");
    assert_eq!(backup["dumps"][0]["bytes"], 20);
    assert!(backup["total_bytes"].as_u64().unwrap() > 200_000);
    let drill = &step(&state, "drill")["last_success"]["details"];
    assert_eq!(drill["checks"][0]["name"], "dump /dumps/app.sql");
    assert_eq!(drill["checks"][0]["exit_code"], 0);
    let prom = fs::read_to_string(&p.prom).unwrap();
    assert!(
        prom.contains("cairn_dump_bytes{path=\"/dumps/app.sql\"} 20"),
        "{prom}"
    );
    assert!(prom.contains("cairn_snapshot_bytes "), "{prom}");

    // A dump that fails: no snapshot, the run fails with the dump's exit code, hooks are told.
    let plan = fs::read_to_string(&p.plan).unwrap();
    fs::write(
        &p.plan,
        plan.replace("echo 'dumping' >&2\"", "echo 'dumping' >&2; exit 3\""),
    )
    .unwrap();
    let before = p.env.snapshots_json().len();
    let out = p.cairn(&["run", "--only", "backup"]);
    out.assert_code(5);
    assert_eq!(p.env.snapshots_json().len(), before);
    assert!(p.hooks().contains("on_failure failed 5"), "{}", p.hooks());
    let state = p.state();
    assert_eq!(step(&state, "backup")["last_attempt"]["outcome"], "failed");
    assert_eq!(step(&state, "backup")["last_attempt"]["exit_code"], 5);
    // The previous good backup is still the last success.
    assert!(step(&state, "backup")["last_success"]["details"]["snapshot_id"].is_string());
}

#[test]
fn a_damaged_state_file_stops_the_run_and_makes_offline_status_unknown() {
    let p = PlanEnv::new("");
    fs::create_dir_all(p.state.parent().unwrap()).unwrap();
    let damaged: &[u8] = b"{\"version\": 1, \"steps\": 7";
    fs::write(&p.state, damaged).unwrap();
    let run = p.cairn(&["run"]);
    run.assert_code(1);
    assert!(run.stderr.contains("move it away"), "{}", run.describe());
    assert!(
        p.env.snapshots_json().is_empty(),
        "nothing runs on an unreadable state"
    );
    assert!(!p.hooks().contains("before"), "{}", p.hooks());
    let status = p.cairn(&["status", "--offline", "--format", "nagios"]);
    status.assert_code(3);
    assert!(
        status
            .stdout
            .starts_with("CAIRN UNKNOWN - status: state file"),
        "{}",
        status.describe()
    );
    // The damaged file is left as it was, for a person to look at.
    assert_eq!(fs::read(&p.state).unwrap(), damaged);
}

/// A plan whose dump fails: `cairn run` exits 5 and records the failure; `status`, online and
/// offline, must say WARNING with the step, the time and the message, not OK until the age limit.
#[test]
fn status_warns_of_a_failed_backup_online_and_offline() {
    let p = PlanEnv::new(
        r#"
[[dump]]
path = "dumps/app.sql"
command = ["sh", "-c", "echo 'a good dump'"]
"#,
    );
    p.cairn(&["run"]).assert_success();
    p.cairn(&["status", "--format", "nagios"]).assert_success();
    let plan = fs::read_to_string(&p.plan).unwrap();
    fs::write(
        &p.plan,
        plan.replace("echo 'a good dump'", "echo 'no such database' >&2; exit 1"),
    )
    .unwrap();
    p.cairn(&["run", "--only", "backup"]).assert_code(5);
    for args in [&["status"][..], &["status", "--offline"][..]] {
        let mut args = args.to_vec();
        args.extend(["--format", "nagios"]);
        let status = p.cairn(&args);
        status.assert_code(1);
        let line = status
            .stdout
            .lines()
            .find(|l| l.starts_with("WARNING backup: "))
            .unwrap_or_else(|| panic!("no backup warning\n{}", status.describe()));
        let started = p.state()["steps"]["backup"]["last_attempt"]["started"]
            .as_str()
            .unwrap()
            .to_string();
        // To the second, as status prints it.
        let started = &started[..19];
        for part in [
            "last attempt failed",
            started,
            "exit code 5",
            "no such database",
        ] {
            assert!(line.contains(part), "{part:?} not in {line}");
        }
    }
}

/// A `before` hook that fails stops the run before any step ran: status must still warn.
#[test]
fn status_warns_of_a_run_failed_by_its_before_hook() {
    let p = PlanEnv::new("");
    p.cairn(&["run"]).assert_success();
    let plan = fs::read_to_string(&p.plan).unwrap();
    fs::write(&p.plan, plan.replace("echo before", "exit 9; echo before")).unwrap();
    p.cairn(&["run"]).assert_code(1);
    let status = p.cairn(&["status", "--offline", "--format", "nagios"]);
    status.assert_code(1);
    assert!(
        status.stdout.starts_with("CAIRN WARNING - run: last run "),
        "{}",
        status.describe()
    );
    assert!(
        status.stdout.contains("before hook"),
        "{}",
        status.describe()
    );
}

/// An empty newest snapshot (an empty dump piped in with --min-bytes 0) is CRITICAL without any
/// --min-size; one that shrank past --max-shrink is a WARNING.
#[test]
fn status_flags_an_empty_or_shrunk_newest_snapshot() {
    let env = Env::new();
    env.init();
    let backup = |data: &[u8]| {
        env.r_stdin(
            &[
                "backup",
                "--stdin",
                "--stdin-name",
                "pg.sql",
                "--min-bytes",
                "0",
            ],
            data,
        )
        .assert_success();
    };
    backup(&common::random_bytes(3, 10_000));
    env.r(&["status"]).assert_success();
    backup(&common::random_bytes(4, 1_000));
    let shrunk = env.r(&["status", "--format", "nagios", "--max-shrink", "50"]);
    shrunk.assert_code(1);
    assert!(
        shrunk
            .stdout
            .contains("90.0% smaller than the previous snapshot"),
        "{}",
        shrunk.describe()
    );
    env.r(&["status", "--max-shrink", "150"]).assert_code(3);
    backup(b"");
    let empty = env.r(&["status", "--format", "nagios"]);
    empty.assert_code(2);
    assert!(
        empty.stdout.starts_with("CAIRN CRITICAL - backup ") && empty.stdout.contains("empty"),
        "{}",
        empty.describe()
    );
    env.r(&["status", "--min-size", "0"]).assert_success();
}
