//! `wal fetch`: PostgreSQL's `restore_command`, served from the spool when a background
//! prefetch got there first.

use std::path::Path;

use anyhow::Result;

use cairn::format::wal::WalName;
use cairn::wal::{fetch, Catalog, Spool};

use super::{spawn_background, spool, PrefetchArgs};
use crate::cli::{context, exit, output, GlobalArgs};

/// `wal fetch` never lets an error through as exit 1, which PostgreSQL reads as "not archived".
pub(super) fn run_fetch(global: &GlobalArgs, name: &str, dest: &Path, prefetch: usize) -> i32 {
    match fetch_to(global, name, dest, prefetch) {
        Ok(code) => code,
        Err(err) => {
            errln!("error: {err:#}");
            if global.json {
                let _ = output::print_json(&serde_json::json!({
                    "error": { "kind": "error", "message": format!("{err:#}"), "exit_code": exit::WAL_FETCH_FAILED }
                }));
            }
            exit::WAL_FETCH_FAILED
        }
    }
}

fn fetch_to(global: &GlobalArgs, name: &str, dest: &Path, prefetch: usize) -> Result<i32> {
    let name = WalName::parse(name)?;
    let spool = spool(global);
    spool.sweep_fetched(std::time::Duration::from_secs(3600));
    // A prefetch under way is probably fetching this very segment: wait for it rather than
    // open the repository a second time.
    let waiting_since = std::time::Instant::now();
    while !spool.fetched_path(&name).exists()
        && spool.prefetch_running()
        && waiting_since.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if spool.take_fetched(&name, dest)? {
        if global.verbose > 0 {
            errln!("{name}: fetched ahead");
        }
        start_prefetch(global, &spool, &name, dest, prefetch);
        return Ok(exit::OK);
    }
    let repo = context::open_repository(global)?.into_indexed()?;
    let catalog = Catalog::load(repo.repo())?;
    let Some(file) = fetch::find(&catalog, &name)? else {
        if !global.quiet {
            errln!("{name} is not archived in this repository");
        }
        return Ok(exit::WAL_NOT_ARCHIVED);
    };
    fetch::write_file(&repo, file, dest)?;
    start_prefetch(global, &spool, &name, dest, prefetch);
    if global.verbose > 0 {
        errln!("{name}: fetched ({})", output::bytes(file.size));
    }
    Ok(exit::OK)
}

/// Starts a background `wal prefetch` when segments after `name` are missing from the spool and
/// no prefetch runs, so that this call returns to PostgreSQL at once. It gets the password on
/// its standard input (never in its arguments or environment), fetches at most `count`
/// segments, and ends; a failure there only means recovery's next calls fetch for themselves.
fn start_prefetch(global: &GlobalArgs, spool: &Spool, name: &WalName, dest: &Path, count: usize) {
    let size = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    // Refilled when half the window is used up: one process (one key derivation and opening)
    // per count/2 segments, not one per call.
    if count == 0
        || name.kind() != cairn::format::wal::WalKind::Segment
        || !size.is_power_of_two()
        || spool.ready_ahead(name, size, count) >= count.div_ceil(2)
        || spool.lock_prefetch().is_none()
    {
        return;
    }
    let count = count.to_string();
    let _ = spawn_background(
        global,
        &["wal", "prefetch", name.as_str(), "--count", &count],
        None,
    );
}

pub(super) fn run_prefetch(global: &GlobalArgs, args: &PrefetchArgs) -> Result<i32> {
    let name = WalName::parse(&args.name)?;
    let spool = spool(global);
    let Some(_lock) = spool.lock_prefetch() else {
        return Ok(exit::OK);
    };
    let repo = context::open_repository(global)?.into_indexed()?;
    let catalog = Catalog::load(repo.repo())?;
    fetch::prefetch(&repo, &catalog, &name, args.count, &spool);
    Ok(exit::OK)
}
