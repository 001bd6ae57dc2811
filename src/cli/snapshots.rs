//! `cairn snapshots`: list snapshots as a table or JSON.

use anyhow::Result;

use super::{context, output, selection, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: selection::FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &SnapshotsArgs) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let snapshots = args.filter.to_filter()?.apply(repo.snapshots()?);
    if global.json {
        let list: Vec<serde_json::Value> = snapshots
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id.to_hex(),
                    "short_id": id.short(),
                    "time": s.time,
                    "host": s.host,
                    "username": s.username,
                    "paths": s.paths,
                    "tags": s.tags,
                    "tree": s.tree,
                    "parent": s.parent,
                    "program_version": s.program_version,
                    "summary": s.summary,
                    "postgres": s.postgres,
                    "job": s.job,
                })
            })
            .collect();
        output::print_json(&list)?;
        return Ok(super::exit::OK);
    }
    // The snapshot's size (what a restore writes) and what it added to the repository: the bytes
    // read say nothing of an unchanged snapshot, which reads nothing.
    // A job column only where jobs exist, so plans without jobs list as they always did.
    let jobs = snapshots.iter().any(|(_, s)| s.job.is_some());
    let job_cell = |job: &str| {
        if jobs {
            format!("{job:<12}  ")
        } else {
            String::new()
        }
    };
    outln!(
        "{:<8}  {:<19}  {:<16}  {}{:<12}  {:>10}  {:>10}  paths",
        "id",
        "time",
        "host",
        job_cell("job"),
        "tags",
        "size",
        "added"
    );
    for (id, s) in &snapshots {
        outln!(
            "{:<8}  {:<19}  {:<16}  {}{:<12}  {:>10}  {:>10}  {}",
            id.short(),
            output::local_time(s),
            s.host,
            job_cell(s.job.as_deref().unwrap_or("-")),
            s.tags.join(","),
            s.summary
                .total_bytes
                .map_or_else(|| "?".to_string(), output::bytes),
            output::bytes(s.summary.bytes_added),
            s.paths.join(" ")
        );
    }
    if !global.quiet {
        outln!("{} snapshot(s)", snapshots.len());
    }
    Ok(super::exit::OK)
}
