//! `cairn unlock`: remove leases that no longer count (or, with `--remove-all`, every lease) and the
//! temporaries killed writes left, as restic's `unlock` does.

use anyhow::Result;

use cairn::repo::lease::{self, FoundLease, SweepExpired};

use super::{context, exit, output, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn unlock                 # leases that no longer count, and stale temporaries
  cairn unlock --remove-all    # every lease: only when you know their holders are gone

A lease no longer counts once it expired (beyond --clock-skew) or when its holder provably died
(same host, boot and pid namespace, its pid gone or reused). Live leases are kept and listed.";

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lease, live ones included. A prune that then runs beside a backup that still
    /// runs may delete data that backup relies on.
    #[arg(long)]
    pub remove_all: bool,
    /// How far hosts' clocks may disagree: a lease counts until its expiry plus this.
    #[arg(long, value_name = "DURATION", default_value = "5min", value_parser = cairn::units::parse_time_span)]
    pub clock_skew: chrono::Duration,
}

pub fn run(global: &GlobalArgs, args: &UnlockArgs) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let what = if args.remove_all {
        SweepExpired::All
    } else {
        SweepExpired::Stale
    };
    let swept = lease::sweep(&repo, args.clock_skew, what)?;
    let now = chrono::Utc::now();
    let live_removed: Vec<&FoundLease> = swept
        .expired
        .iter()
        .filter(|f| f.is_live(now, args.clock_skew))
        .collect();
    if global.json {
        let describe = |v: &[FoundLease]| v.iter().map(FoundLease::describe).collect::<Vec<_>>();
        output::print_json(&serde_json::json!({
            "removed_dead": describe(&swept.dead),
            "removed_expired": describe(&swept.expired),
            "removed_live": live_removed.iter().map(|f| f.describe()).collect::<Vec<_>>(),
            "kept": describe(&swept.kept),
            "temporaries_removed": swept.temporaries,
        }))?;
    } else if !global.quiet {
        for f in &swept.dead {
            errln!("removed the lease of a dead process: {}", f.describe());
        }
        for f in &swept.expired {
            errln!("removed lease: {}", f.describe());
        }
        for f in &swept.kept {
            errln!(
                "kept a live lease: {} (`--remove-all` removes it too)",
                f.describe()
            );
        }
        errln!(
            "removed {} lease(s), kept {}; removed {} stale temporar{}",
            swept.dead.len() + swept.expired.len(),
            swept.kept.len(),
            swept.temporaries,
            if swept.temporaries == 1 { "y" } else { "ies" }
        );
    }
    if !live_removed.is_empty() {
        errln!(
            "warning: removed {} live lease(s): if those processes still run, a prune may now delete data they rely on, and a second prune may run beside one",
            live_removed.len()
        );
    }
    Ok(exit::OK)
}
