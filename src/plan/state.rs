//! The state file of a plan (FORMAT.md §14): each step's last attempt and last success, so that
//! `cairn run` knows what is due and `cairn status --offline` can answer without the password.
//! Written atomically (temporary file, fsync, rename); a missing file is an empty state.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// Version of the state file this build writes and reads.
pub const STATE_VERSION: u32 = 1;
/// Largest state file read (a hostile or broken file must not exhaust memory).
const MAX_STATE_LEN: u64 = 16 << 20;

/// The steps of `cairn run`, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// Back up the sources and dumps.
    Backup,
    /// Take a PostgreSQL base backup (`[postgres]`).
    Postgres,
    /// Forget (and prune, in a plan without jobs).
    Retention,
    /// Prune after the jobs' retention (plans with jobs).
    Prune,
    /// Verify the repository.
    Check,
    /// Copy to each offsite target.
    Offsite,
    /// Restore drill.
    Drill,
}

impl Step {
    /// Every step, in run order.
    pub const ALL: [Step; 7] = [
        Step::Backup,
        Step::Postgres,
        Step::Retention,
        Step::Prune,
        Step::Check,
        Step::Offsite,
        Step::Drill,
    ];

    /// The step's name in the state file, `--only` and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Step::Backup => "backup",
            Step::Postgres => "postgres",
            Step::Retention => "retention",
            Step::Prune => "prune",
            Step::Check => "check",
            Step::Offsite => "offsite",
            Step::Drill => "drill",
        }
    }

    /// The step named `name`.
    ///
    /// # Errors
    /// `InvalidInput` listing the known names.
    pub fn parse(name: &str) -> Result<Step> {
        Step::ALL
            .into_iter()
            .find(|s| s.name() == name.trim())
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "unknown step {name:?}: the steps are backup, postgres, retention, prune, check, offsite, drill"
                ))
            })
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Done, with warnings (a backup that could not read some entries).
    Partial,
    /// Failed.
    Failed,
}

/// One attempt of a step (or of one offsite target).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started.
    #[serde(with = "crate::format::rfc3339")]
    pub started: DateTime<Utc>,
    /// How long it took, in seconds.
    pub duration_secs: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// cairn's exit code for it (0 when it succeeded).
    pub exit_code: i32,
    /// What went wrong, for a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Step-specific figures (snapshot id and sizes, drill RTO and RPO...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl Attempt {
    /// When it ended.
    pub fn ended(&self) -> DateTime<Utc> {
        self.started
            + chrono::Duration::from_std(Duration::from_secs_f64(self.duration_secs.max(0.0)))
                .unwrap_or_default()
    }

    /// Whether it succeeded (partial counts: the snapshot was written).
    pub fn succeeded(&self) -> bool {
        self.outcome != Outcome::Failed
    }
}

/// The record of one step (or one offsite target, keyed `offsite.NAME`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The newest attempt, whatever its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<Attempt>,
    /// The newest attempt that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Attempt>,
}

/// The whole state file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The repository location the plan names (status shows it).
    #[serde(default)]
    pub repository: String,
    /// Records by key: a step name, or `offsite.NAME`.
    #[serde(default)]
    pub steps: BTreeMap<String, StepRecord>,
    /// The last `cairn run`: its id, start, outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunRecord>,
}

/// The summary of one `cairn run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Random id, also given to hooks as `CAIRN_RUN_ID`.
    pub run_id: String,
    /// The attempt as a whole.
    pub attempt: Attempt,
    /// Steps that ran.
    pub ran: Vec<String>,
    /// Steps that failed.
    pub failed: Vec<String>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            repository: String::new(),
            steps: BTreeMap::new(),
            last_run: None,
        }
    }
}

impl State {
    /// Reads the state at `path`; a missing file is an empty state.
    ///
    /// # Errors
    /// `Other` when the file cannot be read, is too large, is not a state file, or has another version.
    pub fn load(path: &Path) -> Result<State> {
        let bad = |what: String| {
            Error::new(
                ErrorKind::Other,
                format!(
                    "state file {}: {what}; move it away to start with an empty state",
                    path.display()
                ),
            )
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => {
                return Err(Error::io(
                    ErrorKind::Other,
                    "cannot read the state file",
                    path,
                    e,
                ))
            }
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_STATE_LEN + 1),
            &mut bytes,
        )
        .map_err(|e| Error::io(ErrorKind::Other, "cannot read the state file", path, e))?;
        State::decode(&bytes).map_err(bad)
    }

    /// Decodes the bytes of a state file.
    ///
    /// # Errors
    /// A message saying what is wrong: not JSON, another version, a field of the wrong type.
    pub fn decode(bytes: &[u8]) -> std::result::Result<State, String> {
        if bytes.len() as u64 > MAX_STATE_LEN {
            return Err(format!("larger than {MAX_STATE_LEN} bytes"));
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
        let version = value.get("version").and_then(|v| v.as_u64());
        if version != Some(u64::from(STATE_VERSION)) {
            return Err(format!(
                "version {version:?}, this cairn reads version {STATE_VERSION}"
            ));
        }
        serde_json::from_value(value).map_err(|e| format!("unreadable ({e})"))
    }

    /// Writes the state to `path` atomically, creating its directory.
    ///
    /// # Errors
    /// `Other` when the directory or file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Other, format!("cannot encode the state: {e}")))?;
        write_atomically(path, &text)
    }

    /// The record under `key` (`backup`, `offsite.s3`...).
    pub fn record(&self, key: &str) -> Option<&StepRecord> {
        self.steps.get(key)
    }

    /// Records an attempt under `key`.
    pub fn note(&mut self, key: &str, attempt: Attempt) {
        let record = self.steps.entry(key.to_string()).or_default();
        if attempt.succeeded() {
            record.last_success = Some(attempt.clone());
        }
        record.last_attempt = Some(attempt);
    }

    /// The newest success under `key`.
    pub fn last_success(&self, key: &str) -> Option<&Attempt> {
        self.record(key).and_then(|r| r.last_success.as_ref())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsynced and renamed,
/// so that a reader sees the old file or the new one, never a part.
///
/// # Errors
/// `Other` naming the path.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |what: &str, p: &Path, e| Error::io(ErrorKind::Other, what, p, e);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("cannot create the directory", &dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-")
        .tempfile_in(&dir)
        .map_err(|e| io("cannot create a temporary file in", &dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io("cannot write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| io("cannot rename a temporary file to", path, e.error))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        // The rename is durable once the directory is; a failure here loses only freshness.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(outcome: Outcome, at: &str) -> Attempt {
        Attempt {
            started: DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
            duration_secs: 12.5,
            outcome,
            exit_code: if outcome == Outcome::Failed { 1 } else { 0 },
            message: None,
            details: serde_json::json!({"snapshot": "ab"}),
        }
    }

    #[test]
    fn a_failure_keeps_the_last_success() {
        let mut s = State::default();
        s.note("backup", attempt(Outcome::Ok, "2026-11-20T02:00:00Z"));
        s.note("backup", attempt(Outcome::Failed, "2026-11-21T02:00:00Z"));
        let r = s.record("backup").unwrap();
        assert_eq!(r.last_attempt.as_ref().unwrap().outcome, Outcome::Failed);
        assert_eq!(
            r.last_success.as_ref().unwrap().started.to_rfc3339(),
            "2026-11-20T02:00:00+00:00"
        );
    }

    #[test]
    fn state_round_trips_through_its_file_and_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(State::load(&path).unwrap(), State::default());
        let mut s = State::default();
        s.note("drill", attempt(Outcome::Partial, "2026-11-21T03:00:00Z"));
        s.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), s);
        std::fs::write(&path, br#"{"version": 99}"#).unwrap();
        let e = State::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("version Some(99)") && e.contains("move it away"),
            "{e}"
        );
        std::fs::write(&path, b"{not json").unwrap();
        assert!(State::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
    }
}
