//! `cairn stats`: restore size of the selected snapshots, and what they cost in the repository
//! after deduplication and compression.

use anyhow::Result;

use cairn::browse::stats;

use super::{context, output, selection, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn stats                          # every snapshot
  cairn stats latest                   # one snapshot: its size and what its chunks take
  cairn stats --host db1 --tag nightly
  cairn stats --json | jq '.compression_ratio'
Restore size: what restoring every selected snapshot would write. Deduplicated: the distinct
chunks those snapshots reference, as plaintext and as stored (compressed and encrypted).";

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Snapshots to count (ids, unique prefixes or `latest`); default: all that match the filters.
    #[arg(value_name = "SNAP")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: selection::FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &StatsArgs) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let filter = args.filter.to_filter()?;
    let selected = if args.snapshots.is_empty() {
        filter.apply(repo.snapshots()?)
    } else {
        let mut chosen = Vec::new();
        for spec in &args.snapshots {
            chosen.push(repo.select_snapshot(spec, &filter)?);
        }
        chosen
    };
    let repo = repo.into_indexed()?;
    let s = stats::stats(&repo, &selected)?;
    if global.json {
        let mut value = serde_json::to_value(&s)?;
        value["dedup_ratio"] = s.dedup_ratio().into();
        value["compression_ratio"] = s.compression_ratio().into();
        output::print_json(&value)?;
    } else if !global.quiet {
        outln!("snapshots:         {}", s.snapshots);
        outln!(
            "restore size:      {} in {} files",
            output::bytes(s.restore_size),
            s.files
        );
        outln!(
            "deduplicated:      {} in {} chunks ({:.2}x smaller)",
            output::bytes(s.data_raw_bytes),
            s.data_blobs,
            s.dedup_ratio()
        );
        outln!(
            "stored:            {} ({:.2}x compression), trees {} in {} blobs",
            output::bytes(s.data_stored_bytes),
            s.compression_ratio(),
            output::bytes(s.tree_stored_bytes),
            s.tree_blobs
        );
        if s.delta_blobs > 0 {
            outln!(
                "deltas:            {} chunks stored as deltas, {} older chunks kept as their bases",
                s.delta_blobs,
                s.base_blobs
            );
        }
    }
    if s.missing_blobs > 0 {
        errln!(
            "warning: {} blob(s) these snapshots reference are not in the index; run `cairn check`",
            s.missing_blobs
        );
        return Ok(super::exit::DAMAGED);
    }
    Ok(super::exit::OK)
}
