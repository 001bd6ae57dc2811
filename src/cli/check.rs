//! `cairn check`: verify the repository and report every problem.

use anyhow::Result;

use cairn::check::{self, CheckOptions};

use super::{context, exit, output, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Also decrypt and verify every blob of every pack.
    #[arg(long)]
    pub read_data: bool,
}

pub fn run(global: &GlobalArgs, args: &CheckArgs) -> Result<i32> {
    let repo = context::open_repository(global)?.into_indexed()?;
    let report = check::check(
        &repo,
        CheckOptions {
            read_data: args.read_data,
        },
    )?;
    if global.json {
        output::print_json(&serde_json::json!({
            "ok": report.is_ok(),
            "errors": report.errors,
            "notes": report.notes,
            "snapshots": report.snapshots,
            "trees": report.trees,
            "packs": report.packs,
            "blobs_verified": report.blobs_verified,
        }))?;
    } else {
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        if !global.quiet {
            for n in &report.notes {
                eprintln!("note: {n}");
            }
            println!(
                "checked {} snapshots, {} trees, {} packs{}: {}",
                report.snapshots,
                report.trees,
                report.packs,
                if args.read_data {
                    format!(", {} blobs verified", report.blobs_verified)
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
