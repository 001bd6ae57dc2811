//! `cairn repair index|snapshots`: rebuild the index from the packs, or rewrite damaged snapshots without
//! what they lost.

use anyhow::Result;
use indicatif::ProgressBar;

use cairn::ops::repair::{
    self, IndexRepairOutcome, IndexRepairPlan, RepairProgress, SnapshotRepairOptions,
    SnapshotRepairReport,
};
use cairn::repo::lease;

use super::{context, exit, output, progress, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn repair index --dry-run
  cairn repair index
  cairn repair snapshots --dry-run
  cairn repair snapshots --forget

After damage (a lost pack, a lost index file), run `cairn check`, then `repair index` to rebuild the
index from the packs that remain, then `repair snapshots` to write, for each snapshot that lost data,
a copy without the files that cannot be restored (tagged `repaired`), then `cairn check` again.";

pub const INDEX_EXAMPLES: &str = "\
Examples:
  cairn repair index --dry-run
  cairn repair index --json

Reads the header of every pack and writes new index files listing every blob of every readable pack,
then removes the old index files. Packs whose header cannot be read are listed and left in place (never
deleted). Takes the prune lease: it does not run while a prune does. Backups may run meanwhile.";

pub const SNAPSHOTS_EXAMPLES: &str = "\
Examples:
  cairn repair snapshots --dry-run
  cairn repair snapshots
  cairn repair snapshots --forget --json

For each snapshot referencing blobs that are not in the index or whose pack is gone, writes a new
snapshot without the files that cannot be restored (a directory whose listing is lost becomes empty),
tagged `repaired` and naming the original. The original is kept unless --forget. Run `repair index`
first when index files or packs were lost: when a pack still holds data the index does not lead to,
repair snapshots changes nothing and says so. File data is not read: use `check --read-data` for that.";

#[derive(clap::Args, Debug)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub what: RepairCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers.
    #[command(after_help = INDEX_EXAMPLES)]
    Index(IndexArgs),
    /// Write a repaired copy of every snapshot that references lost data.
    #[command(after_help = SNAPSHOTS_EXAMPLES)]
    Snapshots(SnapshotsArgs),
}

#[derive(clap::Args, Debug)]
pub struct IndexArgs {
    /// Read the packs and print what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How far the clocks of hosts using the repository may disagree (e.g. 5min, 1h; for the prune lease).
    #[arg(long, value_name = "DURATION", default_value = "5min", value_parser = cairn::units::parse_time_span)]
    pub clock_skew: chrono::Duration,
}

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    /// Remove each damaged snapshot once its repaired copy is written.
    #[arg(long)]
    pub forget: bool,
    /// Print the damage and what would be removed; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(global: &GlobalArgs, args: &RepairArgs) -> Result<i32> {
    match &args.what {
        RepairCommand::Index(a) => run_index(global, a),
        RepairCommand::Snapshots(a) => run_snapshots(global, a),
    }
}

/// A pack-count bar on a terminal.
struct PackBar(ProgressBar);

impl RepairProgress for PackBar {
    fn total(&self, packs: u64) {
        self.0.set_length(packs);
    }
    fn pack_done(&self) {
        self.0.inc(1);
    }
}

fn run_index(global: &GlobalArgs, args: &IndexArgs) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let held = lease::acquire_exclusive(&repo, args.clock_skew)?;
    let bar = PackBar(progress::count_bar(progress::wanted(global), "packs"));
    let (plan, outcome) = held.hold_while(&repo, |held| {
        let plan = repair::plan_index(&repo, &bar)?;
        bar.0.finish_and_clear();
        if args.dry_run {
            return Ok((plan, None));
        }
        let outcome = repair::execute_index(&repo, &plan, held)?;
        Ok((plan, Some(outcome)))
    })?;
    report_index(global, &plan, outcome.as_ref())?;
    Ok(exit::OK)
}

fn report_index(
    global: &GlobalArgs,
    plan: &IndexRepairPlan,
    outcome: Option<&IndexRepairOutcome>,
) -> Result<()> {
    let hexes = |v: &[cairn::PackId]| v.iter().map(|p| p.to_hex()).collect::<Vec<_>>();
    if global.json {
        return output::print_json(&serde_json::json!({
            "dry_run": outcome.is_none(),
            "packs_read": plan.packs_read,
            "blobs_indexed": plan.blobs,
            "packs_unreadable": plan.unreadable,
            "packs_missing": hexes(&plan.missing),
            "packs_added": hexes(&plan.added),
            "index_files_damaged": plan.damaged_index_files,
            "index_files_written": outcome.map_or(plan.index_files_to_write, |o| o.index_files_written),
            "index_files_removed": outcome.map_or(plan.old_index_files.len() as u64, |o| o.index_files_removed),
        }));
    }
    for u in &plan.unreadable {
        errln!(
            "warning: pack {} is left out of the index, its header cannot be read: {}",
            u.name,
            u.reason
        );
    }
    for f in &plan.damaged_index_files {
        errln!("warning: index file {} is damaged: {}", f.name, f.reason);
    }
    if global.quiet {
        return Ok(());
    }
    let verb = if outcome.is_some() { "" } else { "would " };
    outln!(
        "read {} pack header(s): {} blob(s); {} pack(s) unreadable",
        plan.packs_read,
        plan.blobs,
        plan.unreadable.len()
    );
    outln!(
        "{} pack(s) newly indexed, {} indexed pack(s) missing from the repository",
        plan.added.len(),
        plan.missing.len()
    );
    outln!(
        "{verb}write {} index file(s) and remove {} old one(s)",
        outcome.map_or(plan.index_files_to_write, |o| o.index_files_written),
        outcome.map_or(plan.old_index_files.len() as u64, |o| o.index_files_removed),
    );
    Ok(())
}

fn run_snapshots(global: &GlobalArgs, args: &SnapshotsArgs) -> Result<i32> {
    let repo = context::open_repository(global)?.into_indexed()?;
    let report = repair::repair_snapshots(
        &repo,
        SnapshotRepairOptions {
            forget: args.forget,
            dry_run: args.dry_run,
        },
    )?;
    report_snapshots(global, &report, args.dry_run)?;
    Ok(exit::OK)
}

fn report_snapshots(
    global: &GlobalArgs,
    report: &SnapshotRepairReport,
    dry_run: bool,
) -> Result<()> {
    if global.json {
        return output::print_json(&serde_json::json!({
            "dry_run": dry_run,
            "snapshots": report.snapshots,
            "damaged": report.repairs.len(),
            "trees_written": report.trees_written,
            "repairs": report.repairs,
        }));
    }
    if global.quiet {
        return Ok(());
    }
    for r in &report.repairs {
        let what = match (&r.repaired, r.already_repaired) {
            (Some(id), true) => format!("already repaired as {}", id.short()),
            (Some(id), false) => format!("repaired as {}", id.short()),
            (None, _) => "would be repaired".to_string(),
        };
        let forgotten = if r.forgotten {
            ", original removed"
        } else {
            ""
        };
        outln!(
            "snapshot {}: {} path(s) lost, {what}{forgotten}",
            r.original.short(),
            r.removed.len()
        );
        for p in &r.removed {
            outln!("  removed {}: {}", p.path, p.reason);
        }
    }
    outln!(
        "{} of {} snapshot(s) damaged{}",
        report.repairs.len(),
        report.snapshots,
        if dry_run {
            "; nothing written (dry run)"
        } else {
            ""
        }
    );
    Ok(())
}
