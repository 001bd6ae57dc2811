//! Dump commands against a real PostgreSQL server: a database with awkward data is dumped through
//! `backup --command` (custom format and plain SQL), restored with `cairn cat | pg_restore` and
//! `cairn cat | psql` into new databases, and compared table by table; a `pg_dump` of a database that
//! does not exist exits 5 and leaves no snapshot. Gated like `remote_servers.rs`: the server comes from
//! `tests/servers/start.sh` (its env file sourced); with `CAIRN_TEST_SERVERS=1` a missing server is a
//! failure, otherwise the tests are skipped.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// The server the start script runs, or `None` (skip) when it is not running.
pub(crate) struct Pg {
    host: String,
    port: String,
    user: String,
    bin: String,
}

impl Pg {
    pub(crate) fn from_env() -> Option<Pg> {
        Some(Pg {
            host: server_var("CAIRN_TEST_PG_HOST")?,
            port: server_var("CAIRN_TEST_PG_PORT")?,
            user: server_var("CAIRN_TEST_PG_USER")?,
            bin: server_var("CAIRN_TEST_PG_BIN")?,
        })
    }

    /// The libpq variables, given only to the processes that need them.
    pub(crate) fn vars(&self) -> [(&str, &str); 3] {
        [
            ("PGHOST", &self.host),
            ("PGPORT", &self.port),
            ("PGUSER", &self.user),
        ]
    }

    pub(crate) fn program(&self, name: &str) -> String {
        format!("{}/{name}", self.bin)
    }

    /// Runs a PostgreSQL client program, feeding `stdin`; returns its stdout, panics on failure.
    pub(crate) fn client(&self, program: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut child = Command::new(self.program(program))
            .args(args)
            .envs(self.vars())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub(crate) fn sql(&self, db: &str, sql: &str) -> String {
        let out = self.client(
            "psql",
            &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", db],
            sql.as_bytes(),
        );
        String::from_utf8(out).unwrap()
    }

    /// A database named for the test and this process, created empty.
    pub(crate) fn fresh_db(&self, name: &str) -> String {
        let db = format!("{name}_{}", std::process::id());
        self.sql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};"),
        );
        db
    }

    /// Every row of `table` in text COPY form, in primary-key order.
    fn table(&self, db: &str, table: &str) -> Vec<u8> {
        self.client(
            "psql",
            &[
                "-X",
                "-d",
                db,
                "-c",
                &format!("COPY (SELECT * FROM {table} ORDER BY 1) TO STDOUT"),
            ],
            b"",
        )
    }
}

const TABLES: [&str; 3] = ["customers", "blobs", "ledger"];

/// Three tables of awkward values: text with newlines, tabs, backslashes and unicode, bytea with
/// every byte value, numerics beyond f64, NULLs everywhere, a few thousand rows.
fn fill(pg: &Pg, db: &str) {
    pg.sql(
        db,
        r#"
CREATE TABLE customers (id int PRIMARY KEY, name text, note text, born date, active boolean);
INSERT INTO customers
SELECT i, 'customer ' || i || ' ünïcödé ✓ 日本',
       CASE WHEN i % 7 = 0 THEN NULL
            ELSE E'line one\nline two\ttab \\ backslash ' || repeat('x', i % 50) END,
       CASE WHEN i % 5 = 0 THEN NULL ELSE date '2000-01-01' + i END,
       CASE WHEN i % 3 = 0 THEN NULL ELSE i % 2 = 0 END
FROM generate_series(1, 3000) AS i;
CREATE TABLE blobs (id int PRIMARY KEY, data bytea);
INSERT INTO blobs
SELECT i, CASE WHEN i % 11 = 0 THEN NULL
               ELSE decode(md5(i::text) || md5((i * 7)::text), 'hex') || '\x00ff0a0d5c'::bytea END
FROM generate_series(1, 2000) AS i;
INSERT INTO blobs SELECT 100000, string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea)
FROM generate_series(0, 255) AS b;
CREATE TABLE ledger (id bigint PRIMARY KEY, amount numeric(30, 10), ratio double precision, at timestamptz, tags text[]);
INSERT INTO ledger
SELECT i, (i * 123456789.0123456789) - 99999999999, CASE WHEN i % 4 = 0 THEN NULL ELSE i / 3.0 END,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute',
       ARRAY['a' || i, NULL, 'quote"d', 'comma,d']
FROM generate_series(1, 2500) AS i;
"#,
    );
    assert_eq!(pg.sql(db, "SELECT count(*) FROM customers").trim(), "3000");
}

fn assert_same_tables(pg: &Pg, original: &str, restored: &str) {
    for table in TABLES {
        let a = pg.table(original, table);
        let b = pg.table(restored, table);
        assert!(!a.is_empty(), "{table} is empty in {original}");
        assert!(
            a == b,
            "table {table} differs after the restore into {restored} ({} vs {} bytes)",
            a.len(),
            b.len()
        );
    }
}

/// `cairn cat SPEC`, its output as bytes.
fn cat(env: &Env, spec: &str) -> Vec<u8> {
    let out = env.r(&["cat", spec]);
    out.assert_success();
    out.stdout_bytes
}

#[test]
fn pg_dump_through_command_restores_table_by_table() {
    let Some(pg) = Pg::from_env() else { return };
    let env = Env::new();
    env.init();
    let db = pg.fresh_db("cairn_app");
    fill(&pg, &db);

    let custom = format!("{} --format=custom {db}", pg.program("pg_dump"));
    let plain_argv =
        serde_json::json!([pg.program("pg_dump"), "--format=plain", "--no-owner", db]).to_string();
    let out = env.run(
        &[
            "-r",
            env.repo_str(),
            "--json",
            "backup",
            "--command",
            &custom,
            "--stdin-name",
            "app.dump",
            "--command-argv",
            &plain_argv,
            "--stdin-name",
            "sql/app.sql",
            "--command-timeout",
            "10min",
        ],
        None,
        &pg.vars().map(|(k, v)| (k, Some(v))),
    );
    out.assert_success();
    let summary = out.json()["summary"].clone();
    let dumps = summary["dumps"].as_array().expect("summary.dumps").clone();
    assert_eq!(dumps.len(), 2, "{summary}");
    assert_eq!(dumps[0]["path"], "/app.dump");
    assert_eq!(dumps[1]["path"], "/sql/app.sql");
    assert!(dumps
        .iter()
        .all(|d| d["exit_code"] == 0 && d["bytes"].as_u64() > Some(10_000)));

    // Custom format through pg_restore.
    let dump = cat(&env, "latest:/app.dump");
    assert_eq!(dumps[0]["bytes"], dump.len() as u64);
    assert!(dump.starts_with(b"PGDMP"), "not a custom-format dump");
    let restored = pg.fresh_db("cairn_restored");
    pg.client("pg_restore", &["--no-owner", "-d", &restored], &dump);
    assert_same_tables(&pg, &db, &restored);

    // Plain SQL through psql.
    let sql = cat(&env, "latest:/sql/app.sql");
    let replayed = pg.fresh_db("cairn_replayed");
    pg.client(
        "psql",
        &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &replayed],
        &sql,
    );
    assert_same_tables(&pg, &db, &replayed);
    env.r_ok(&["check", "--read-data"]);

    for name in [&db, &restored, &replayed] {
        pg.sql("postgres", &format!("DROP DATABASE {name}"));
    }
}

#[test]
fn pg_dump_of_a_missing_database_leaves_no_snapshot() {
    let Some(pg) = Pg::from_env() else { return };
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a.txt"), b"alpha\n");
    let vars = pg.vars().map(|(k, v)| (k, Some(v)));
    let missing = format!("cairn_no_such_db_{}", std::process::id());
    let out = env.run(
        &[
            "-r",
            env.repo_str(),
            "backup",
            src.to_str().unwrap(),
            "--command-argv",
            &serde_json::json!([pg.program("pg_dump"), "--format=custom", missing]).to_string(),
            "--stdin-name",
            "app.dump",
        ],
        None,
        &vars,
    );
    out.assert_code(exit::COMMAND_FAILED);
    assert!(
        out.stderr.contains("no snapshot was written")
            && out.stderr.contains("exited with status 1")
            && out
                .stderr
                .contains(&format!("database \"{missing}\" does not exist")),
        "the error must name the failure and show pg_dump's message\n{}",
        out.describe()
    );
    assert!(env.snapshots_json().is_empty());
    env.r_ok(&["check"]);
}

#[test]
fn a_nightly_plan_dumps_postgres_and_its_drill_restores_the_dump_into_a_new_database() {
    let Some(pg) = Pg::from_env() else { return };
    let env = Env::new();
    env.init();
    let db = pg.fresh_db("cairn_plan");
    fill(&pg, &db);
    let drilled = format!("cairn_drilled_{}", std::process::id());
    pg.sql("postgres", &format!("DROP DATABASE IF EXISTS {drilled}"));
    let plan = env.path("plan.toml");
    let state = env.path("state.json");
    // The drill's check is a real restore: a new database from the restored dump, then a row count.
    let drill_check = format!(
        "{bin}/createdb {drilled} && {bin}/pg_restore --no-owner -d {drilled} {{root}}/db/app.dump \
         && test \"$({bin}/psql -X -At -d {drilled} -c 'SELECT count(*) FROM customers')\" = 3000",
        bin = pg.bin
    );
    std::fs::write(
        &plan,
        format!(
            r#"
[repository]
location = "{repo}"
password_command = ["printf", "%s\n", "{password}"]

[[dump]]
path = "db/app.dump"
command = ["{pg_dump}", "--format=custom", "{db}"]
timeout = "10min"
min_bytes = "10K"
verify = ["{pg_restore}", "--list", "{{file}}"]

[monitor]
state_file = "{state}"
min_size = "10K"

[drill]
every = "1w"
max_rto = "1h"
checks = [["sh", "-c", {check}]]
"#,
            repo = env.repo_str(),
            password = env.password,
            pg_dump = pg.program("pg_dump"),
            pg_restore = pg.program("pg_restore"),
            state = state.display(),
            check = serde_json::to_string(&drill_check).unwrap(),
        ),
    )
    .unwrap();
    let mut vars: Vec<(&str, Option<&str>)> = pg.vars().map(|(k, v)| (k, Some(v))).to_vec();
    vars.push(("CAIRN_PASSWORD", None));
    let plan_arg = plan.to_str().unwrap();
    let out = env.run(&["--json", "run", "--plan", plan_arg], None, &vars);
    out.assert_success();
    assert_eq!(out.json()["ran"], serde_json::json!(["backup", "drill"]));
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let drill = &state["steps"]["drill"]["last_success"]["details"];
    assert_eq!(drill["verdict"], "pass", "{drill:#}");
    assert_eq!(drill["checks"][0]["name"], "dump /db/app.dump");
    assert!(drill["checks"][0]["output_tail"]
        .as_str()
        .unwrap()
        .contains("TABLE DATA"));
    assert_eq!(drill["checks"][1]["exit_code"], 0, "{drill:#}");
    // The drill's database holds what the source does, table by table.
    assert_same_tables(&pg, &db, &drilled);
    let status = env.run(
        &["status", "--plan", plan_arg, "--format", "nagios"],
        None,
        &vars,
    );
    status.assert_success();
    assert!(
        status.stdout.starts_with("CAIRN OK - "),
        "{}",
        status.describe()
    );
    for name in [&db, &drilled] {
        pg.sql("postgres", &format!("DROP DATABASE {name}"));
    }
}
