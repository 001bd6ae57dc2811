//! The backup step of `cairn run`: the plan's paths and dumps into one snapshot, with the figures
//! the state file and `status --offline` need.

use anyhow::Result;

use cairn::archive::{self, BackupSources, DumpCommand, StreamSource};
use cairn::plan::{size_of, span_of, Plan};

use super::StepResult;
use crate::cli::{backup, context, exit, progress, GlobalArgs};

pub fn run(global: &GlobalArgs, plan: &Plan) -> Result<StepResult> {
    let section = plan.backup.clone().unwrap_or_default();
    let options = section.backup_options()?;
    let repo = context::open_repository(global)?.into_indexed_unsynced()?;
    let bar = progress::BackupBar::new(progress::wanted(global), global.verbose > 0, global.quiet);
    let paths = archive::normalize_sources(&section.paths)?;
    if !paths.is_empty() {
        bar.scan(paths.clone(), options.excludes.clone());
    }
    let streams = plan
        .dumps
        .iter()
        .map(|d| {
            let command = DumpCommand::new(d.command.clone())
                .timeout(span_of(&d.timeout))
                .min_bytes(size_of(&d.min_bytes).unwrap_or(1));
            StreamSource::command(d.path.clone(), command)
        })
        .collect();
    let sources = BackupSources { paths, streams };
    let outcome = archive::backup(&repo, sources, &options, &bar)?;
    bar.bar.finish_and_clear();
    backup::report(global, &outcome)?;
    let snap = &outcome.snapshot;
    let previous_total = match &snap.parent {
        Some(parent) => repo.repo().find_snapshot(parent)?.1.summary.total_bytes,
        None => None,
    };
    let code = if snap.summary.errors.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    };
    Ok(StepResult {
        code,
        message: (code == exit::PARTIAL)
            .then(|| format!("{} entries could not be read", snap.summary.errors.len())),
        details: serde_json::json!({
            "snapshot_id": outcome.snapshot_id.map(|id| id.to_hex()),
            "snapshot_time": snap.time,
            "group": format!("{}:{}", snap.host, snap.paths.join(",")),
            "total_bytes": snap.summary.total_bytes,
            "bytes_added": snap.summary.bytes_added,
            "previous_total_bytes": previous_total,
            "dumps": snap.summary.dumps.iter().map(|d| serde_json::json!({
                "path": d.path, "bytes": d.bytes, "duration_secs": d.duration_secs,
            })).collect::<Vec<_>>(),
        }),
    })
}
