//! `cairn prune`: reclaim the space of unreferenced data, safely while backups run.

use anyhow::Result;

use cairn::ops::prune::{self, PruneOptions, PrunePlan};
use cairn::repo::lease;
use cairn::units::parse_time_span;
use cairn::Repository;

use super::progress::{self, PruneBar};
use super::{context, exit, output, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn prune
  cairn prune --dry-run
  cairn prune --max-unused 0 --grace 2h

Prune works in two phases so that backups may run meanwhile: it condemns packs no snapshot
needs (and packs it repacked) in a pending-deletion record, and a later prune deletes them
once the record is older than --grace and no backup that started before it is still running.";

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Print what would be condemned, repacked and deleted, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub tuning: PruneTuning,
}

/// The options of prune that `forget --prune` takes too.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Prune options")]
pub struct PruneTuning {
    /// Repack a pack when more than this percentage of it is unused.
    #[arg(long, value_name = "PERCENT", default_value = "5")]
    pub max_unused: f64,
    /// Delete condemned packs only when their record is at least this old (e.g. 30min, 1h, 2d, 0s).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_time_span)]
    pub grace: chrono::Duration,
    /// How far the clocks of hosts using the repository may disagree (e.g. 5min, 1h; 0s only for one host).
    #[arg(long, value_name = "DURATION", default_value = "5min", value_parser = parse_time_span)]
    pub clock_skew: chrono::Duration,
    /// Keep archived PostgreSQL WAL of this last span (e.g. 7d) even before the oldest base
    /// backup; without it, WAL no kept base backup can replay is removed.
    #[arg(long, value_name = "DURATION", value_parser = parse_time_span)]
    pub keep_wal_within: Option<chrono::Duration>,
}

impl Default for PruneTuning {
    /// The library's defaults (what the flags' defaults also say).
    fn default() -> Self {
        let o = PruneOptions::default();
        PruneTuning {
            max_unused: o.max_unused * 100.0,
            grace: o.grace,
            clock_skew: o.clock_skew,
            keep_wal_within: o.keep_wal_within,
        }
    }
}

impl PruneTuning {
    fn options(&self) -> Result<PruneOptions> {
        if !(0.0..=100.0).contains(&self.max_unused) {
            return Err(
                cairn::Error::invalid_input("--max-unused must be between 0 and 100").into(),
            );
        }
        Ok(PruneOptions {
            max_unused: self.max_unused / 100.0,
            grace: self.grace,
            clock_skew: self.clock_skew,
            keep_wal_within: self.keep_wal_within,
            ..PruneOptions::default()
        })
    }
}

pub fn run(global: &GlobalArgs, args: &PruneArgs) -> Result<i32> {
    let repo = context::open_repository(global)?;
    prune_repository(global, &args.tuning, args.dry_run, repo)
}

/// Runs prune on an open repository (also used by `forget --prune`).
pub fn prune_repository(
    global: &GlobalArgs,
    tuning: &PruneTuning,
    dry_run: bool,
    repo: Repository,
) -> Result<i32> {
    let options = tuning.options()?;
    let held = lease::acquire_exclusive(&repo, options.clock_skew)?;
    let repo = repo.into_indexed()?;
    let r = repo.repo();
    held.hold_while(r, |held| {
        let bar = PruneBar::new(progress::wanted(global));
        let plan = prune::plan_with_progress(r, &options, &bar)?;
        if dry_run {
            report(global, &plan, None);
            return Ok(());
        }
        let outcome = prune::execute_with_progress(&repo, &plan, held, &bar)?;
        bar.finish();
        report(global, &plan, Some(&outcome));
        Ok(())
    })?;
    Ok(exit::OK)
}

fn report(global: &GlobalArgs, plan: &PrunePlan, outcome: Option<&prune::PruneOutcome>) {
    if global.json {
        let ids =
            |v: &[(cairn::PackId, u64)]| v.iter().map(|(id, _)| id.to_hex()).collect::<Vec<_>>();
        let _ = output::print_json(&serde_json::json!({
            "dry_run": outcome.is_none(),
            "snapshots": plan.snapshots,
            "referenced_blobs": plan.referenced_blobs,
            "packs": plan.packs.len(),
            "bytes_total": plan.bytes_total(),
            "delete": ids(&plan.delete),
            "bytes_freed_now": plan.bytes_freed_now(),
            "locked": plan.locked.iter().map(|(id, size, until)| serde_json::json!({
                "pack": id.to_hex(), "size": size, "locked_until": until.to_rfc3339(),
            })).collect::<Vec<_>>(),
            "condemn": ids(&plan.condemn),
            "repack": plan.repack.iter().map(|(id, _)| id.to_hex()).collect::<Vec<_>>(),
            "bytes_freed_later": plan.bytes_freed_later(),
            "revive": plan.revive.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
            "waiting": plan.waiting,
            "missing": plan.missing,
            "wal_records_expired": plan.wal_expired.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
            "wal_files_expired": plan.wal_expired_files,
            "index_files": plan.index_file_count,
            "consolidate_index": plan.consolidate_index,
            "outcome": outcome,
        }));
        return;
    }
    if global.quiet {
        return;
    }
    let verb = if outcome.is_some() { "" } else { "would " };
    if !plan.wal_expired.is_empty() {
        outln!(
            "{verb}remove {} archived WAL file(s) in {} record(s) that no kept base backup can replay",
            plan.wal_expired_files,
            plan.wal_expired.len()
        );
    }
    outln!(
        "{} snapshot(s) reference {} blob(s) in {} pack(s) ({})",
        plan.snapshots,
        plan.referenced_blobs,
        plan.packs.len(),
        output::bytes(plan.bytes_total())
    );
    outln!(
        "{verb}delete {} condemned pack(s), freeing {}",
        plan.delete.len(),
        output::bytes(plan.bytes_freed_now())
    );
    outln!(
        "{verb}condemn {} unused pack(s) and repack {} pack(s); a later prune frees {}",
        plan.condemn.len(),
        plan.repack.len(),
        output::bytes(plan.bytes_freed_later())
    );
    if !plan.revive.is_empty() {
        outln!(
            "{verb}revive {} condemned pack(s) that a snapshot needs",
            plan.revive.len()
        );
    }
    if plan.consolidate_index {
        match outcome {
            Some(o) => outln!(
                "consolidated {} index file(s) into {}",
                o.index_files_removed,
                o.index_files_written
            ),
            None => outln!(
                "would consolidate {} index file(s), more than their entries need",
                plan.index_file_count
            ),
        }
    }
    for w in &plan.waiting {
        outln!("waiting: {w}");
    }
    for m in &plan.missing {
        errln!("error: {m}");
    }
    if let Some(o) = outcome {
        if o.repacked_blobs > 0 {
            outln!(
                "copied {} blob(s) out of {} pack(s)",
                o.repacked_blobs,
                o.repacked_packs
            );
        }
    }
}
