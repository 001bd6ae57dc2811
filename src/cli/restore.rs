//! `cairn restore`: a snapshot into a target directory.

use std::path::PathBuf;

use anyhow::Result;

use cairn::restore::{self, RestoreOptions};

use super::{context, output, progress, selection, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn restore latest --target /tmp/restore        # writes /tmp/restore/<absolute source paths>
  cairn restore 1a2b3c4d --target /srv/restore --overwrite
  cairn restore latest --host db1 --tag nightly --at \"2026-01-23 14:30\" --target /tmp/r";

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// `latest` or a unique snapshot id prefix.
    #[arg(value_name = "SNAP")]
    pub snapshot: String,
    /// Directory to restore into (created if missing; must be empty unless --overwrite).
    #[arg(long, short = 't', value_name = "DIR")]
    pub target: PathBuf,
    /// Replace existing files in the target.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub filter: selection::FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &RestoreArgs) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let (id, snap) = repo.select_snapshot(&args.snapshot, &args.filter.to_filter()?)?;
    let repo = repo.into_indexed()?;
    let bar = progress::RestoreBar {
        // The length comes from the restore plan: the snapshot's bytes_read is only what that backup read.
        bar: progress::byte_bar(progress::wanted(global), 0),
    };
    let options = RestoreOptions {
        overwrite: args.overwrite,
    };
    let stats = restore::restore(&repo, &snap.tree_id(), &args.target, &options, &bar)?;
    bar.bar.finish_and_clear();
    if global.json {
        output::print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "target": args.target.display().to_string(),
            "files": stats.files,
            "dirs": stats.dirs,
            "others": stats.others,
            "bytes": stats.bytes,
            "warnings": stats.warnings,
        }))?;
    } else if !global.quiet {
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {} other entries, {}",
            id.short(),
            args.target.display(),
            stats.files,
            stats.dirs,
            stats.others,
            output::bytes(stats.bytes)
        );
    }
    Ok(super::exit::OK)
}
