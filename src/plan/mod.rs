//! The nightly plan: the plan file, the state file, which steps are due, and the systemd units
//! that run it. `cairn run`, `cairn status` and `cairn drill` read their defaults from here.

mod cron;
mod file;
pub mod hooks;
pub mod job;
mod locate;
pub mod lock;
pub mod run;
mod schedule;
pub mod state;
pub mod steps;
mod systemd;

pub use cron::Cron;
pub use file::{
    size_of, span_of, BackupSection, CheckSection, DrillSection, DumpSection, HooksSection,
    MonitorSection, OffsiteSection, Plan, PostgresSection, RepositorySection, RetentionSection,
    DEFAULT_CRIT_AGE, DEFAULT_WARN_AGE,
};
pub use job::{valid_name as valid_job_name, Job, JobMonitorSection, JobSchedule, JobSection};
pub use schedule::{is_due, schedule, Due, ScheduledStep, Selection};
pub use state::{Attempt, Outcome, State, Step, StepRecord};
pub use systemd::{calendars as systemd_calendars, units as systemd_units};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

pub use crate::drill::SnapshotChoice;

/// Where the plan file is when none is given: `$CAIRN_PLAN`, else `/etc/cairn/plan.toml` for root,
/// else `~/.config/cairn/plan.toml`.
pub fn default_plan_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_PLAN") {
        return PathBuf::from(p);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/etc/cairn/plan.toml");
    }
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("cairn/plan.toml")
}

/// The state file of the plan at `plan_path`: the plan's `[monitor] state_file`, else
/// `<state dir>/cairn/<plan file stem>-<hash of its absolute path>.json`, so two plans never share one.
///
/// # Errors
/// `InvalidInput` when there is no state directory (no home directory).
pub fn state_path(plan: &Plan, plan_path: &Path) -> Result<PathBuf> {
    if let Some(p) = &plan.monitor.state_file {
        return Ok(p.clone());
    }
    let base = dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
        .ok_or_else(|| {
            Error::invalid_input(
                "no state directory (set HOME or XDG_STATE_HOME, or [monitor] state_file in the plan)",
            )
        })?;
    let absolute = std::path::absolute(plan_path).unwrap_or_else(|_| plan_path.to_path_buf());
    let hash = blake3::hash(absolute.as_os_str().as_encoded_bytes());
    let stem = plan_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plan".into());
    Ok(base
        .join("cairn")
        .join(format!("{stem}-{}.json", &hash.to_hex()[..12])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn snapshot_choices_parse() {
        assert_eq!(SnapshotChoice::parse("latest"), Ok(SnapshotChoice::Latest));
        assert_eq!(
            SnapshotChoice::parse("random-within 30d"),
            Ok(SnapshotChoice::RandomWithin(Duration::from_secs(
                30 * 86_400
            )))
        );
        assert_eq!(
            SnapshotChoice::parse("random-within=1w"),
            Ok(SnapshotChoice::RandomWithin(Duration::from_secs(
                7 * 86_400
            )))
        );
        assert_eq!(
            SnapshotChoice::parse("1a2b3c4d"),
            Ok(SnapshotChoice::Id("1a2b3c4d".into()))
        );
        assert!(SnapshotChoice::parse("yesterday").is_err());
        assert!(SnapshotChoice::parse("random-within soon").is_err());
    }

    #[test]
    fn two_plans_get_two_state_files() {
        let plan = Plan::default();
        let a = state_path(&plan, Path::new("/etc/cairn/plan.toml")).unwrap();
        let b = state_path(&plan, Path::new("/etc/cairn/other/plan.toml")).unwrap();
        assert_ne!(a, b);
        assert!(a
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("plan-"));
    }
}
