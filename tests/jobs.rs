//! A plan of three jobs on three rhythms, run hour by hour through a simulated week (`run --now`,
//! never sleeping): a real PostgreSQL database dumped every 6 hours (cron), a real Redis dumped
//! with `redis-cli --rdb -` every 2 hours (span), a file tree every night at 03:00. Each job must
//! run exactly on its schedule, keep exactly what its own retention says, drill its own data (the
//! dump loaded into a new database, the RDB file loaded into a fresh `redis-server`), and a job
//! that fails or falls behind its objective must make `status` name it while the others stay OK.
//!
//! Needs the test servers' PostgreSQL (`tests/servers/start.sh`) and Debian's `redis-server`;
//! without them the test returns early, unless `CAIRN_TEST_SERVERS=1` makes that a failure.

use crate::common::{self, free_port, write_file, Env};
use crate::postgres::Pg;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};

/// A `redis-server` of the test's own on a free loopback port, stopped on drop.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CAIRN_TEST_SERVERS").is_none(),
                "CAIRN_TEST_SERVERS is set but redis-server is missing (apt-get install redis-server)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            // `redis-cli --rdb` is a replica sync: without this the server waits 5 s for more
            // replicas before sending each dump.
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while redis.cli(&["ping"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(redis)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The drill check of the Redis job: the restored RDB file loads into a fresh `redis-server`
/// (on another free port) that answers with the sentinel key and a non-empty keyspace.
const REDIS_LOAD: &str = r#"set -eu
port=$1
dir=$(mktemp -d)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
cp "$CAIRN_DRILL_FILE" "$dir/dump.rdb"
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --dbfilename dump.rdb \
  --save '' --appendonly no >"$dir/log" 2>&1 &
for i in $(seq 100); do
  [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
  sleep 0.05
done
[ "$(redis-cli -p "$port" get sentinel)" = cairn ]
keys=$(redis-cli -p "$port" dbsize)
echo "loaded $keys keys"
[ "$keys" -gt 1 ]
"#;

/// The drill check of the database job: the restored dump loads into a new database that holds
/// the rows.
const PG_LOAD: &str = r#"set -eu
db=$1 bin=$2
"$bin/dropdb" --if-exists "$db"
"$bin/createdb" "$db"
"$bin/psql" -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$CAIRN_DRILL_FILE" >/dev/null
rows=$("$bin/psql" -X -At -d "$db" -c 'SELECT count(*) FROM events')
"$bin/dropdb" "$db"
echo "loaded $rows rows"
[ "$rows" -gt 0 ]
"#;

struct Week {
    env: Env,
    pg: Pg,
    redis: Redis,
    plan: PathBuf,
    db: String,
    files: PathBuf,
    fail_flag: PathBuf,
    start: DateTime<Utc>,
}

impl Week {
    fn at(&self, hour: i64, minute: i64) -> DateTime<Utc> {
        self.start + chrono::Duration::hours(hour) + chrono::Duration::minutes(minute)
    }

    fn vars(&self) -> Vec<(&str, Option<&str>)> {
        let mut vars: Vec<(&str, Option<&str>)> =
            self.pg.vars().map(|(k, v)| (k, Some(v))).to_vec();
        // Cron schedules and daily buckets are local time: the week is in UTC.
        vars.push(("TZ", Some("UTC")));
        vars
    }

    fn cairn(&self, args: &[&str], now: DateTime<Utc>) -> common::Output {
        let now = now.to_rfc3339();
        let mut argv = args.to_vec();
        argv.extend(["--plan", self.plan.to_str().unwrap(), "--now", &now]);
        self.env.run(&argv, None, &self.vars())
    }

    /// One hour of the world, then the hourly `cairn run`; returns the steps that ran.
    fn hour(&self, hour: i64) -> (i32, Vec<String>) {
        self.pg.sql(
            &self.db,
            &format!(
                "INSERT INTO events (hour, note) SELECT {hour}, md5(g::text || {hour}) FROM generate_series(1, 50) g;"
            ),
        );
        self.redis
            .cli(&["set", &format!("hour:{hour}"), &hour.to_string()]);
        if hour % 24 == 0 {
            write_file(
                &self.files.join("config.ini"),
                format!("[app]\nday = {}\n", hour / 24).as_bytes(),
            );
        }
        let out = self.cairn(&["--json", "run"], self.at(hour, 0));
        let ran = out.json()["ran"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", out.describe()))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        (out.code, ran)
    }

    /// The hours (since the start) of a job's snapshots, oldest first.
    fn snapshot_hours(&self, job: &str) -> Vec<i64> {
        let out = self.repo(&["--json", "snapshots", "--job", job]);
        out.assert_success();
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let t = DateTime::parse_from_rfc3339(s["time"].as_str().unwrap()).unwrap();
                assert_eq!(s["job"], job);
                (t.with_timezone(&Utc) - self.start).num_minutes() / 60
            })
            .collect()
    }

    /// A command on the plan's repository (`-r`), with the week's environment.
    fn repo(&self, args: &[&str]) -> common::Output {
        let mut argv = vec!["-r", self.env.repo_str()];
        argv.extend_from_slice(args);
        self.env.run(&argv, None, &self.vars())
    }

    fn status(&self, now: DateTime<Utc>, extra: &[&str]) -> common::Output {
        let mut args = vec!["status"];
        args.extend_from_slice(extra);
        self.cairn(&args, now)
    }
}

fn plan_text(env: &Env, pg: &Pg, db: &str, files: &Path, fail: &Path, redis_port: u16) -> String {
    let redis_check = env.path("redis_load.sh");
    let pg_check = env.path("pg_load.sh");
    std::fs::write(&redis_check, REDIS_LOAD).unwrap();
    std::fs::write(&pg_check, PG_LOAD).unwrap();
    let json = |v: &str| serde_json::to_string(v).unwrap();
    // The dump fails while the flag file exists: how the test breaks one job and not the others.
    let pg_dump = format!(
        "test ! -e {} && exec {} --no-owner {db}",
        fail.display(),
        pg.program("pg_dump")
    );
    format!(
        r#"
[repository]
location = {repo}
password_command = ["printf", "%s\n", {password}]

[monitor]
state_file = {state}

[[job]]
name = "db"
schedule = "0 */6 * * *"
[[job.dump]]
path = "db/app.sql"
command = ["sh", "-c", {pg_dump}]
min_bytes = "1K"
verify = ["sh", {pg_check}, {drill_db}, {pg_bin}]
[job.retention]
keep_within = "2d1h"
[job.monitor]
warn_age = "6h"
crit_age = "12h"
min_size = "1K"
[job.drill]
every = "1d"
max_rto = "10min"

[[job]]
name = "redis"
every = "2h"
[[job.dump]]
path = "redis/dump.rdb"
command = ["redis-cli", "-p", "{redis_port}", "--rdb", "-"]
verify = ["sh", {redis_check}, "{drill_port}"]
[job.retention]
keep_last = 6
[job.monitor]
warn_age = "2h"
crit_age = "4h"
[job.drill]
every = "1d"

[[job]]
name = "files"
schedule = "0 3 * * *"
[job.backup]
paths = [{files}]
[job.retention]
keep_daily = 3
[job.drill]
every = "2d"
checks = [["grep", "-q", "day = ", "{{root}}{files_plain}/config.ini"]]
"#,
        repo = json(env.repo_str()),
        password = json(&env.password),
        state = json(env.path("state.json").to_str().unwrap()),
        pg_dump = json(&pg_dump),
        pg_check = json(pg_check.to_str().unwrap()),
        drill_db = json(&format!("{db}_drill")),
        pg_bin = json(pg.program("").trim_end_matches('/')),
        redis_check = json(redis_check.to_str().unwrap()),
        drill_port = free_port(),
        files = json(files.to_str().unwrap()),
        files_plain = files.display(),
    )
}

/// Which of a job's steps a run at `hour` must run, from the schedules written in the plan.
fn expected_backups(hour: i64) -> BTreeSet<String> {
    let mut due = BTreeSet::new();
    if hour % 6 == 0 {
        due.insert("job.db.backup".to_string());
    }
    if hour % 2 == 0 {
        due.insert("job.redis.backup".to_string());
    }
    // A job that never ran runs at once, then at its slots.
    if hour % 24 == 3 || hour == 0 {
        due.insert("job.files.backup".to_string());
    }
    due
}

/// `every` drills: due when never run, or when the span minus its slack (a twentieth, at most an
/// hour) has passed since the last one started (the rule of `plan::is_due`). A drill starts a
/// few seconds into its run, after the backups, so a boundary that falls exactly on a run's hour
/// is not yet reached.
struct EveryDrill {
    every_h: i64,
    last: Option<i64>,
}

impl EveryDrill {
    fn due(&mut self, hour: i64) -> bool {
        let slack_min = (self.every_h * 60 / 20).min(60);
        let due = self
            .last
            .is_none_or(|l| (hour - l) * 60 + slack_min > self.every_h * 60);
        if due {
            self.last = Some(hour);
        }
        due
    }
}

#[test]
fn three_jobs_run_on_their_own_schedules_keep_their_own_snapshots_and_are_judged_apart() {
    let Some(pg) = Pg::from_env() else { return };
    let Some(redis) = Redis::start() else { return };
    let env = Env::new();
    env.init();
    let db = pg.fresh_db("cairn_jobs");
    pg.sql(
        &db,
        "CREATE TABLE events (id serial PRIMARY KEY, hour int, note text);",
    );
    redis.cli(&["set", "sentinel", "cairn"]);
    let files = env.path("app");
    std::fs::create_dir_all(&files).unwrap();
    write_file(&files.join("static.bin"), &common::random_bytes(7, 200_000));
    let fail_flag = env.path("db-down");
    let plan = env.path("plan.toml");
    std::fs::write(
        &plan,
        plan_text(&env, &pg, &db, &files, &fail_flag, redis.port),
    )
    .unwrap();
    // A week that ended yesterday, starting at midnight UTC.
    let now = Utc::now() - chrono::Duration::days(9);
    let start = now
        .with_hour(0)
        .and_then(|t| t.with_minute(0))
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    let week = Week {
        env,
        pg,
        redis,
        plan,
        db,
        files,
        fail_flag,
        start,
    };
    let validate = week.env.run(
        &["plan", "validate", "--plan", week.plan.to_str().unwrap()],
        None,
        &[],
    );
    validate.assert_success();

    let mut drills = [
        (
            "db",
            EveryDrill {
                every_h: 24,
                last: None,
            },
        ),
        (
            "redis",
            EveryDrill {
                every_h: 24,
                last: None,
            },
        ),
        (
            "files",
            EveryDrill {
                every_h: 48,
                last: None,
            },
        ),
    ];
    for hour in 0..7 * 24 {
        let (code, ran) = week.hour(hour);
        assert_eq!(code, 0, "hour {hour}: {ran:?}");
        let ran: BTreeSet<String> = ran.into_iter().collect();
        let mut expected = expected_backups(hour);
        for backup in expected.clone() {
            expected.insert(backup.replace(".backup", ".retention"));
        }
        if !expected.is_empty() {
            expected.insert("prune".into());
        }
        for (job, drill) in &mut drills {
            if drill.due(hour) {
                expected.insert(format!("job.{job}.drill"));
            }
        }
        assert_eq!(ran, expected, "hour {hour}");
    }

    // Retention kept exactly what each job's own rule says, and nothing of another job's.
    let every = |step: i64, from: i64| (from..7 * 24).step_by(step as usize).collect::<Vec<_>>();
    let db_all = every(6, 0);
    let newest_db = *db_all.last().unwrap();
    // Snapshot times are the run's clock, a moment after each hour: a span of whole hours would
    // put a snapshot exactly on its boundary, kept or not by those moments.
    let db_kept: Vec<i64> = db_all
        .into_iter()
        .filter(|h| *h >= newest_db - 49)
        .collect();
    assert_eq!(week.snapshot_hours("db"), db_kept, "db: keep_within 2d1h");
    let redis_all = every(2, 0);
    assert_eq!(
        week.snapshot_hours("redis"),
        redis_all[redis_all.len() - 6..].to_vec(),
        "redis: keep_last 6"
    );
    let files_all = every(24, 3);
    assert_eq!(
        week.snapshot_hours("files"),
        files_all[files_all.len() - 3..].to_vec(),
        "files: keep_daily 3"
    );

    // Each drill restored its own job's data and its check loaded it for real.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(week.env.path("state.json")).unwrap()).unwrap();
    for (job, marker) in [("db", "loaded"), ("redis", "loaded"), ("files", "")] {
        let drill = &state["steps"][format!("job.{job}.drill")]["last_attempt"]["details"];
        assert_eq!(drill["verdict"], "pass", "{job}: {drill:#}");
        let out = drill["checks"][0]["output_tail"].as_str().unwrap_or("");
        assert!(out.contains(marker), "{job}: {drill:#}");
    }
    // The last db drill loaded the newest db snapshot of its hour: every row up to it.
    let last_drill = drills[0].1.last.unwrap();
    let drilled = last_drill / 6 * 6;
    let db_drill = &state["steps"]["job.db.drill"]["last_attempt"]["details"];
    assert!(
        db_drill["checks"][0]["output_tail"]
            .as_str()
            .unwrap()
            .contains(&format!("loaded {} rows", 50 * (drilled + 1))),
        "the db drill at hour {last_drill} loads the dump of hour {drilled}: {db_drill:#}"
    );

    // The newest dump of each job restores to what its source held at that hour.
    let dump = week.repo(&["cat", "--job", "db", "latest:/db/app.sql"]);
    dump.assert_success();
    let text = String::from_utf8_lossy(&dump.stdout_bytes);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with(&format!("{}\t{newest_db}\t", 50 * newest_db + 1)))
            .count(),
        1,
        "the last db snapshot holds the rows of hour {newest_db}"
    );

    // All is well an hour after the week.
    let ok = week.status(week.at(7 * 24 - 1, 10), &["--format", "nagios"]);
    assert_eq!(ok.code, 0, "{}", ok.describe());
    assert!(ok.stdout.contains("'age_job_db'="), "{}", ok.stdout);

    // The database goes down: its job fails, the others go on.
    std::fs::write(&week.fail_flag, b"").unwrap();
    let (code, ran) = week.hour(7 * 24);
    assert_ne!(code, 0, "{ran:?}");
    assert!(ran.contains(&"job.db.backup".to_string()));
    let warned = week.status(week.at(7 * 24, 10), &["--json"]);
    assert_eq!(warned.code, 1, "{}", warned.describe());
    let report = warned.json();
    let level_of = |report: &serde_json::Value, subject: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["subject"] == subject)
            .unwrap_or_else(|| panic!("no {subject}: {report:#}"))["level"]
            .clone()
    };
    assert_eq!(level_of(&report, "job db backup"), "WARNING", "{report:#}");
    assert_eq!(
        level_of(&report, "job db"),
        "WARNING",
        "6h objective: {report:#}"
    );
    assert_eq!(level_of(&report, "job redis"), "OK");
    assert_eq!(level_of(&report, "job files"), "OK");

    // Six more hours of failure: past its 12-hour objective, db is CRITICAL by name; redis and
    // files, backed up on time, stay OK.
    for hour in 7 * 24 + 1..7 * 24 + 7 {
        week.hour(hour);
    }
    let now = week.at(7 * 24 + 6, 10);
    let critical = week.status(now, &["--format", "nagios"]);
    assert_eq!(critical.code, 2, "{}", critical.describe());
    assert!(
        critical.stdout.starts_with("CAIRN CRITICAL - job db: "),
        "{}",
        critical.stdout
    );
    let report = week.status(now, &["--json"]).json();
    assert_eq!(level_of(&report, "job db"), "CRITICAL", "{report:#}");
    assert_eq!(level_of(&report, "job redis"), "OK", "{report:#}");
    assert_eq!(level_of(&report, "job files"), "OK", "{report:#}");
    let prom = week.status(now, &["--format", "prometheus"]);
    for line in [
        "cairn_job_status_level{job=\"db\"} 2",
        "cairn_job_status_level{job=\"redis\"} 0",
        "cairn_job_status_level{job=\"files\"} 0",
        "cairn_last_attempt_success{job=\"db\",step=\"backup\"} 0",
    ] {
        assert!(prom.stdout.contains(line), "{line}\n{}", prom.stdout);
    }
    let offline = week.status(now, &["--offline", "--format", "nagios"]);
    assert_eq!(offline.code, 2, "{}", offline.describe());
    assert!(offline.stdout.contains("job db"), "{}", offline.stdout);
    // One job asked about alone: redis is fine.
    let redis_only = week.status(now, &["--job", "redis"]);
    assert_eq!(redis_only.code, 0, "{}", redis_only.describe());

    // Back up: the next slot catches db up once.
    std::fs::remove_file(&week.fail_flag).unwrap();
    let (code, ran) = week.hour(7 * 24 + 7);
    assert_eq!(code, 0);
    assert!(ran.contains(&"job.db.backup".to_string()), "{ran:?}");
    let (_, ran) = week.hour(7 * 24 + 8);
    assert!(!ran.contains(&"job.db.backup".to_string()), "{ran:?}");
    let healed = week.status(week.at(7 * 24 + 8, 10), &["--format", "nagios"]);
    assert_eq!(healed.code, 0, "{}", healed.describe());
}

/// Mistakes in a plan of jobs are named with the file, the line and the key; `--job` must name a
/// job of the plan; `--dry-run --now` tells which jobs a run at that time would start; the timer
/// fires at every job's times.
#[test]
fn a_plan_of_jobs_is_checked_and_explained_before_anything_runs() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a.txt"), b"a");
    let plan = env.path("plan.toml");
    let good = format!(
        r#"[repository]
location = "{repo}"

[monitor]
state_file = "{state}"

[[job]]
name = "db"
schedule = "0 */6 * * *"
[[job.dump]]
path = "db.sql"
command = ["echo", "CREATE TABLE t ();"]

[[job]]
name = "files"
every = "1d"
[job.backup]
paths = ["{src}"]
[job.retention]
keep_daily = 7
"#,
        repo = env.repo_str(),
        state = env.path("state.json").display(),
        src = src.display(),
    );
    let validate = |text: &str| {
        std::fs::write(&plan, text).unwrap();
        env.run(
            &["plan", "validate", "--plan", plan.to_str().unwrap()],
            None,
            &[],
        )
    };
    validate(&good).assert_success();
    for (old, new, expected) in [
        (
            "schedule = \"0 */6 * * *\"",
            "schedule = \"0 */6 * *\"",
            "line 9: [[job]] db schedule: \"0 */6 * *\" has 4 fields",
        ),
        (
            "schedule = \"0 */6 * * *\"",
            "schedule = \"0 25 * * *\"",
            "line 9: [[job]] db schedule: hour field \"25\": 25 is outside 0-23",
        ),
        (
            "every = \"1d\"",
            "every = \"1d\"\nschedule = \"@daily\"",
            "line 14: [[job]] files: give schedule (a cron expression) or every (a span), not both",
        ),
        (
            "keep_daily = 7",
            "keep_daily = 0",
            "line 19: [[job]] files retention keeps nothing",
        ),
        (
            "name = \"files\"",
            "name = \"db\"",
            "another job has the same name",
        ),
        (
            "name = \"files\"",
            "name = \"my files\"",
            "line 15: [[job]] #2 name \"my files\"",
        ),
        ("keep_daily = 7", "keep_dayly = 7", "keep_dayly"),
        (
            "[monitor]",
            "[backup]\npaths = [\"/etc\"]\n\n[monitor]",
            "move them into a job",
        ),
    ] {
        let out = validate(&good.replace(old, new));
        out.assert_code(common::exit::USAGE);
        assert!(out.stderr.contains(expected), "{new}: {}", out.describe());
        assert!(out.stderr.contains("plan.toml"), "{}", out.describe());
    }
    std::fs::write(&plan, &good).unwrap();
    let plan_arg = plan.to_str().unwrap();
    let out = env.run(&["run", "--plan", plan_arg, "--job", "redis"], None, &[]);
    out.assert_code(common::exit::USAGE);
    assert!(
        out.stderr.contains("--job redis: the plan") && out.stderr.contains("its jobs: db, files"),
        "{}",
        out.describe()
    );
    // A run at 05:00 UTC after both jobs ran at midnight: neither is due; at 06:00 db is.
    let tz = [("TZ", Some("UTC"))];
    env.run(
        &["run", "--plan", plan_arg, "--now", "2026-12-01T00:00:00Z"],
        None,
        &tz,
    )
    .assert_success();
    let dry = |at: &str| {
        let out = env.run(
            &[
                "--json",
                "run",
                "--plan",
                plan_arg,
                "--dry-run",
                "--now",
                at,
            ],
            None,
            &tz,
        );
        out.assert_success();
        out.json()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["due"] == true)
            .map(|s| s["step"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(dry("2026-12-01T05:59:00Z"), Vec::<String>::new());
    assert_eq!(dry("2026-12-01T06:00:00Z"), ["job.db.backup"]);
    assert_eq!(
        dry("2026-12-01T23:30:00Z"),
        [
            "job.db.backup",
            "job.files.backup",
            "job.files.retention",
            "prune"
        ]
    );
    let snapshots = env.r_json(&["snapshots", "--job", "files"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 1);
    assert_eq!(
        snapshots[0]["time"].as_str().unwrap()[..19],
        *"2026-12-01T00:00:00"
    );
    let units = env.run(&["plan", "systemd", "--plan", plan_arg], None, &[]);
    units.assert_success();
    for line in [
        "OnCalendar=*-*-* 00,06,12,18:00:00",
        "OnCalendar=*-*-* 00:00:00",
    ] {
        assert!(units.stdout.contains(line), "{line}: {}", units.stdout);
    }
}

/// The plan of jobs the README shows is a valid plan, and runs its jobs at the times it says.
#[test]
fn the_readme_plan_of_jobs_is_valid() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme
        .find("### Jobs: several sources on several rhythms")
        .expect("the README has its jobs section")..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let plan_text = &section[start..start + section[start..].find("```").unwrap()];
    let env = Env::new();
    let plan = env.path("plan.toml");
    std::fs::write(&plan, plan_text).unwrap();
    let out = env.run(
        &[
            "--json",
            "run",
            "--plan",
            plan.to_str().unwrap(),
            "--dry-run",
        ],
        None,
        &[("TZ", Some("UTC"))],
    );
    out.assert_success();
    let steps: Vec<String> = out.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    for step in [
        "job.db.backup",
        "job.redis.backup",
        "job.files.backup",
        "postgres",
        "job.db.retention",
        "retention",
        "prune",
        "offsite.s3-eu",
        "job.db.drill",
    ] {
        assert!(steps.contains(&step.to_string()), "{step}: {steps:?}");
    }
}
