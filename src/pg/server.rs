//! Starting PostgreSQL on a restored data directory and waiting until recovery has reached its
//! target and promoted: what `pg restore --start` and `drill --pitr` do after a restore. The server
//! listens on 127.0.0.1 and a socket inside the data directory only, on the port given, so a
//! drill never collides with the production server's socket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

use super::session::Session;

/// A server cairn started; stopped (fast) when dropped unless [`Server::keep`] was called.
pub struct Server {
    data: PathBuf,
    pg_ctl: PathBuf,
    port: u16,
    keep: bool,
}

/// Where recovery ended.
#[derive(Clone, Debug)]
pub struct Recovered {
    /// Commit time of the last transaction replayed, RFC 3339, when PostgreSQL knows it.
    pub last_replayed: Option<String>,
    /// How long from the start to the promotion.
    pub duration: Duration,
}

/// The `pg_ctl` of the PostgreSQL major version `server_version` (`server_version_num`): Debian's
/// `/usr/lib/postgresql/<major>/bin/pg_ctl` when present, else `pg_ctl` from the `PATH`.
pub fn pg_ctl_for(server_version: u32) -> PathBuf {
    let major = server_version / 10_000;
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/pg_ctl"));
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("pg_ctl")
    }
}

impl Server {
    /// Starts a server on `data` listening on 127.0.0.1:`port` (and a socket in `data`), with
    /// `pg_ctl`; its log goes to `data/cairn-recovery.log`.
    ///
    /// # Errors
    /// `CommandFailed` with the log's tail when the server does not start.
    pub fn start(data: &Path, pg_ctl: &Path, port: u16) -> Result<Server> {
        let conf = data.join("postgresql.auto.conf");
        let settings = format!(
            "# Added by cairn to start this copy on its own address:\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
            data.display().to_string().replace('\'', "''")
        );
        let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
        text.push_str(&settings);
        std::fs::write(&conf, text)
            .map_err(|e| Error::io(ErrorKind::Other, "cannot write", &conf, e))?;
        let log = data.join("cairn-recovery.log");
        let out = crate::process::command(pg_ctl)
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(&log)
            .args(["-W", "start"])
            .output()
            .map_err(|e| {
                Error::new(
                    ErrorKind::CommandFailed,
                    format!("cannot run {}: {e} (give --pg-ctl)", pg_ctl.display()),
                )
            })?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::CommandFailed,
                format!(
                    "{} start failed ({}): {}{}",
                    pg_ctl.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    log_tail(&log)
                ),
            ));
        }
        Ok(Server {
            data: data.to_path_buf(),
            pg_ctl: pg_ctl.to_path_buf(),
            port,
            keep: false,
        })
    }

    /// A libpq connection string to the server.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} dbname=postgres", self.port)
    }

    /// Waits until the server accepts connections and is out of recovery (promoted), at most
    /// `timeout`.
    ///
    /// # Errors
    /// `CommandFailed` when it does not get there in time, or stops (its log's tail is given).
    pub fn wait_promoted(&self, psql: &str, timeout: Duration) -> Result<Recovered> {
        let started = Instant::now();
        let conninfo = self.conninfo();
        loop {
            let answer = Session::open(psql, Some(&conninfo)).and_then(|mut s| {
                s.query(
                    "SELECT pg_is_in_recovery(), coalesce(to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '')",
                )
            });
            let rows = match answer {
                Ok(rows) => Some(rows),
                // Refused, starting up, in recovery: ask again. A refusal of who asks (no such
                // role, a password, pg_hba.conf) will not change: say so at once.
                Err(e) if refuses_the_client(&e.to_string()) => {
                    return Err(Error::new(
                        ErrorKind::CommandFailed,
                        format!("the restored server refused cairn's connection ({e}); set PGUSER (and PGPASSFILE) to a role it accepts"),
                    ))
                }
                Err(_) => None,
            };
            if let Some(rows) = rows {
                if let [row] = rows.as_slice() {
                    if row.first().map(String::as_str) == Some("f") {
                        return Ok(Recovered {
                            last_replayed: row.get(1).filter(|t| !t.is_empty()).cloned(),
                            duration: started.elapsed(),
                        });
                    }
                }
            }
            if !self.data.join("postmaster.pid").exists()
                && started.elapsed() > Duration::from_secs(2)
            {
                return Err(Error::new(
                    ErrorKind::CommandFailed,
                    format!(
                        "the restored server stopped during recovery{}",
                        log_tail(&self.data.join("cairn-recovery.log"))
                    ),
                ));
            }
            if started.elapsed() >= timeout {
                return Err(Error::new(
                    ErrorKind::CommandFailed,
                    format!(
                        "recovery did not finish within {}s{}",
                        timeout.as_secs(),
                        log_tail(&self.data.join("cairn-recovery.log"))
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Leaves the server running when dropped.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.keep {
            let _ = crate::process::command(&self.pg_ctl)
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "stop"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Whether a failed connection was refused for who asked rather than because the server is not
/// ready yet.
fn refuses_the_client(message: &str) -> bool {
    [
        "does not exist",
        "authentication failed",
        "no pg_hba.conf entry",
        "password",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// The last lines of a server log, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n");
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n--- {} ---\n{tail}", log.display())
    }
}
