//! The backup steps of `cairn run`: a job's paths and dumps into one snapshot, and the
//! `[postgres]` cluster's base backup, with the figures the state file and `status --offline` need.

use anyhow::Result;
use chrono::{DateTime, Utc};

use cairn::archive;
use cairn::plan::{steps, Job, Plan};

use super::StepResult;
use crate::cli::{backup, context, exit, progress, GlobalArgs};

/// A job's backup, its snapshot dated `now` (the run's clock) and named after the job.
pub fn run(global: &GlobalArgs, job: &Job<'_>, now: DateTime<Utc>) -> Result<StepResult> {
    let mut options = steps::backup_options(job)?;
    options.time = Some(now);
    let sources = steps::backup_sources(job)?;
    let since = global.requests.requests();
    let repo = context::open_repository(global)?.into_indexed_unsynced()?;
    let bar = progress::BackupBar::new(progress::wanted(global), global.verbose > 0, global.quiet);
    if !sources.paths.is_empty() {
        bar.scan(sources.paths.clone(), options.excludes.clone());
    }
    let outcome = archive::backup(&repo, sources, &options, &bar)?;
    bar.bar.finish_and_clear();
    backup::report(global, &outcome, since)?;
    Ok(ended(&outcome, steps::backup_details(&repo, &outcome)?))
}

/// The `[postgres]` step: a base backup, as `cairn pg backup` takes it with the plan's options.
pub fn postgres(global: &GlobalArgs, plan: &Plan) -> Result<StepResult> {
    let options = steps::pg_backup_options(plan)?;
    let since = global.requests.requests();
    let repo = context::open_repository(global)?.into_indexed_unsynced()?;
    let outcome = crate::cli::pg::base_backup(global, &repo, &options, since)?;
    Ok(ended(&outcome, steps::pg_backup_details(&repo, &outcome)?))
}

/// How a backup step ended: its exit code, why it was partial, what the state file keeps.
fn ended(outcome: &archive::BackupOutcome, details: serde_json::Value) -> StepResult {
    let code = backup::exit_code(outcome);
    let errors = outcome.snapshot.summary.errors.len();
    StepResult {
        code,
        message: (code == exit::PARTIAL).then(|| format!("{errors} entries could not be read")),
        details,
    }
}
