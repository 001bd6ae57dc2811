//! The plan's hooks (`[hooks] before`, `on_failure`, `finally`): what each one is told through its
//! environment, and what a `before` hook decides: go on, skip the run (exit 75, EX_TEMPFAIL), or
//! fail it.

use std::time::Duration;

use crate::process::run::{run_command, CommandRun};

/// Exit code of a `before` hook that asks to skip the run (EX_TEMPFAIL).
pub const SKIP_CODE: i32 = 75;

/// How long a hook may run unless `[hooks] timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What a run tells its hooks.
#[derive(Clone, Debug)]
pub struct HookEvent<'a> {
    /// `before`, `on_failure` or `finally`.
    pub event: &'a str,
    /// `started`, `ok`, `failed` or `skipped`.
    pub status: &'a str,
    /// The run's exit code so far.
    pub exit_code: i32,
    /// The snapshot the run's backup wrote, if any.
    pub snapshot_id: Option<&'a str>,
    pub run_id: &'a str,
    pub plan_path: &'a str,
    pub repository: &'a str,
}

impl HookEvent<'_> {
    /// The variables a hook gets: `CAIRN_EVENT`, `CAIRN_STATUS`, `CAIRN_EXIT_CODE`,
    /// `CAIRN_SNAPSHOT_ID`, `CAIRN_RUN_ID`, `CAIRN_PLAN`, `CAIRN_REPO`.
    pub fn environment(&self) -> Vec<(String, String)> {
        [
            ("CAIRN_EVENT", self.event.to_string()),
            ("CAIRN_STATUS", self.status.to_string()),
            ("CAIRN_EXIT_CODE", self.exit_code.to_string()),
            (
                "CAIRN_SNAPSHOT_ID",
                self.snapshot_id.unwrap_or("").to_string(),
            ),
            ("CAIRN_RUN_ID", self.run_id.to_string()),
            ("CAIRN_PLAN", self.plan_path.to_string()),
            ("CAIRN_REPO", self.repository.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// What the hooks of an event decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookVerdict {
    /// Every hook passed (or, after `before`, the failures do not matter).
    Go,
    /// A `before` hook exited 75: skip this run.
    Skip,
    /// A `before` hook failed: the run fails without running a step.
    Fail,
}

/// Runs the hooks `list` of `event` in order. A failing hook is reported to `failed` (its argv,
/// how it ended, and its run when it started); after `before`, the first failure or skip ends the
/// list, after the other events every hook runs.
pub fn run_hooks(
    list: &[Vec<String>],
    event: &HookEvent<'_>,
    timeout: Duration,
    mut failed: impl FnMut(&[String], &str, Option<&CommandRun>),
) -> HookVerdict {
    let env = event.environment();
    let before = event.event == "before";
    for argv in list {
        let result = run_command(argv, &env, timeout);
        let (ok, skip, what) = match &result {
            Ok(r) => (r.passed(), r.exit_code == Some(SKIP_CODE), r.describe_end()),
            Err(e) => (false, false, e.to_string()),
        };
        if ok {
            continue;
        }
        if before && skip {
            return HookVerdict::Skip;
        }
        failed(argv, &what, result.as_ref().ok());
        if before {
            return HookVerdict::Fail;
        }
    }
    HookVerdict::Go
}
