//! One session with a PostgreSQL server through `psql`, held open across queries: a base backup
//! must start and stop in the same session (PostgreSQL's non-exclusive backup API), and ends by
//! itself on the server when the session does, so a failed or killed cairn leaves no backup
//! running. Connecting follows libpq's conventions: a conninfo string or URI, or `PGHOST`,
//! `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSFILE` from the environment.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result};

/// Marks the end of one query's output.
const END: &str = "__cairn_end_of_result__";

/// An open `psql` session.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
}

impl Session {
    /// Starts `psql` (from `psql_program`) connected by `conninfo` (libpq's environment when `None`).
    ///
    /// # Errors
    /// `CommandFailed` when psql cannot start or the server cannot be reached.
    pub fn open(psql_program: &str, conninfo: Option<&str>) -> Result<Session> {
        let mut command = crate::process::command(psql_program);
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .env("PGAPPNAME", "cairn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(conninfo) = conninfo {
            command.args(["-d", conninfo]);
        }
        let mut child = command.spawn().map_err(|e| {
            Error::new(
                ErrorKind::CommandFailed,
                format!("cannot run {psql_program} to reach PostgreSQL: {e} (install PostgreSQL's client, or give --psql)"),
            )
        })?;
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut err, &mut text);
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            });
        }
        let stdin = child.stdin.take();
        let stdout =
            child.stdout.take().map(BufReader::new).ok_or_else(|| {
                Error::new(ErrorKind::CommandFailed, "psql gave no standard output")
            })?;
        let mut session = Session {
            child,
            stdin,
            stdout,
            stderr,
        };
        session.query("SELECT 1")?;
        Ok(session)
    }

    /// Runs one SQL statement and returns its rows, each a list of fields (`|`-separated by psql;
    /// callers select values that contain no `|` or newline, or encode them).
    ///
    /// # Errors
    /// `CommandFailed` with the server's message when the statement fails (the session is then
    /// over: psql stops on the first error).
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<String>>> {
        let input = format!("{sql};\n\\echo {END}\n");
        let sent = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(input.as_bytes())
                .and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("the session is closed")),
        };
        if sent.is_err() {
            return Err(self.failure(sql));
        }
        let mut rows = Vec::new();
        loop {
            let mut line = String::new();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return Err(self.failure(sql)),
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line == END {
                return Ok(rows);
            }
            rows.push(line.split('|').map(str::to_string).collect());
        }
    }

    /// The single value of a query that returns one row of one column.
    ///
    /// # Errors
    /// As [`Session::query`]; `CommandFailed` when it returned something else.
    pub fn value(&mut self, sql: &str) -> Result<String> {
        let rows = self.query(sql)?;
        match rows.as_slice() {
            [row] if row.len() == 1 => Ok(row[0].clone()),
            _ => Err(Error::new(
                ErrorKind::CommandFailed,
                format!(
                    "PostgreSQL answered {sql:?} with {} row(s), one was expected",
                    rows.len()
                ),
            )),
        }
    }

    fn failure(&mut self, sql: &str) -> Error {
        // psql exits on the error: wait for it so its standard error is complete.
        self.stdin = None;
        let status = self.child.wait();
        // The reader thread ends with psql; give it a moment to hand over the text.
        for _ in 0..50 {
            if !self
                .stderr
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .trim()
            .to_string();
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        Error::new(
            ErrorKind::CommandFailed,
            format!("PostgreSQL failed on {sql:?} (psql {status}): {stderr}"),
        )
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing standard input ends psql, and with it the session (and any backup it started).
        self.stdin = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
