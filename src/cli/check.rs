//! `cairn check`: verify the repository and report every problem.

use anyhow::Result;

use cairn::check::{self, CheckOptions, DataSelection};

use super::{context, exit, output, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Also decrypt and verify every blob of every pack.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Decrypt and verify the blobs of part of the packs: N/M (part N of M, by pack id) or P% (the P% of
    /// packs verified longest ago, so repeated runs cover the whole repository).
    #[arg(long, value_name = "N/M|P%")]
    pub read_data_subset: Option<String>,
}

impl CheckArgs {
    fn selection(&self) -> cairn::Result<DataSelection> {
        match (&self.read_data_subset, self.read_data) {
            (Some(s), _) => DataSelection::parse_subset(s),
            (None, true) => Ok(DataSelection::All),
            (None, false) => Ok(DataSelection::None),
        }
    }
}

pub fn run(global: &GlobalArgs, args: &CheckArgs) -> Result<i32> {
    check_with(global, args.selection()?)
}

/// Checks the repository, reading `read_data` of its data, and reports.
pub fn check_with(global: &GlobalArgs, read_data: DataSelection) -> Result<i32> {
    let repo = context::open_repository(global)?.into_indexed()?;
    let report = check::check(&repo, CheckOptions { read_data })?;
    if global.json {
        output::print_json(&serde_json::json!({
            "ok": report.is_ok(),
            "errors": report.errors,
            "notes": report.notes,
            "snapshots": report.snapshots,
            "trees": report.trees,
            "packs": report.packs,
            "packs_read": report.packs_read,
            "blobs_verified": report.blobs_verified,
        }))?;
    } else {
        for e in &report.errors {
            errln!("error: {e}");
        }
        if !global.quiet {
            for n in &report.notes {
                errln!("note: {n}");
            }
            outln!(
                "checked {} snapshots, {} trees, {} packs{}: {}",
                report.snapshots,
                report.trees,
                report.packs,
                if read_data.reads_data() {
                    format!(
                        ", {} blobs of {} packs verified",
                        report.blobs_verified, report.packs_read
                    )
                } else {
                    String::new()
                },
                if report.is_ok() {
                    "no problems".to_string()
                } else {
                    format!("{} problem(s)", report.errors.len())
                }
            );
        }
    }
    Ok(if report.is_ok() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}
