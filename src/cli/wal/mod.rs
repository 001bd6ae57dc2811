//! `cairn wal push|fetch|list`: PostgreSQL's `archive_command` and `restore_command`, and what the
//! repository holds of each timeline.

use std::path::{Path, PathBuf};

use anyhow::Result;

use cairn::wal::{self, Catalog, Spool};

mod fetch;
mod push;

use super::planned::PlanFileArg;
use super::{context, exit, output, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples (postgresql.conf; PostgreSQL runs them as its own user, so give that user the
password file and a cache directory it can write):
  archive_mode = on
  archive_command = 'cairn wal push --plan /etc/cairn/plan.toml %p'    # see `cairn pg setup`
  archive_command = 'CAIRN_PASSWORD_FILE=/etc/cairn/password cairn -r /srv/backup wal push %p'
  archive_command = 'cairn wal push --plan /etc/cairn/plan.toml --async --queue-max 20G %p'
  restore_command = 'CAIRN_PASSWORD_FILE=/etc/cairn/password cairn -r /srv/backup wal fetch %f %p'
  cairn -r /srv/backup wal list

`wal push` exits 0 only once the file is stored (packs, index file and WAL record written); a
file archived before with the same bytes exits 0 at once; one with other bytes under the same
name is refused (exit 2), so PostgreSQL keeps it and retries. It also archives the files
PostgreSQL has marked ready after this one (pg_wal/archive_status/*.ready, --ahead), so that
the calls for them return without opening the repository. With --async a background archiver
stores files as they become ready and each call waits for its own. With --queue-max, files
beyond that much waiting WAL are dropped unarchived (recorded; `cairn status` is CRITICAL).
`wal fetch` exits 0 with the file written, 1 when the repository does not hold it (PostgreSQL
takes that for the end of the archive), and 126 for any other failure (wrong password, damaged
data, unreachable storage), on which PostgreSQL stops recovery instead of promoting early.";

#[derive(clap::Args, Debug)]
pub struct WalArgs {
    #[command(subcommand)]
    pub command: WalCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum WalCommand {
    /// Archive a WAL file (archive_command = 'cairn ... wal push %p').
    Push(PushArgs),
    /// Write an archived WAL file where recovery wants it (restore_command = 'cairn ... wal fetch %f %p').
    Fetch(FetchArgs),
    /// The archived WAL: timelines, first and last segment, gaps.
    List(ListArgs),
    /// Fetch the segments after NAME into the local spool (what `wal fetch` starts in the
    /// background; reads the password from standard input).
    #[command(hide = true)]
    Prefetch(PrefetchArgs),
    /// Archive the files PostgreSQL marks ready until none comes for a while (what `wal push
    /// --async` starts in the background; reads the password from standard input).
    #[command(hide = true)]
    Archiver(ArchiverArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Take the repository from this plan file.
    #[command(flatten)]
    pub plan: PlanFileArg,
}

#[derive(clap::Args, Debug)]
pub struct PrefetchArgs {
    /// The segment recovery last asked for.
    pub name: String,
    /// How many segments after it.
    #[arg(long, default_value_t = 8)]
    pub count: usize,
}

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The WAL file (PostgreSQL's %p: a path relative to the data directory, or absolute).
    pub path: PathBuf,
    /// Take the repository and [postgres]'s push_ahead and queue_max from this plan file.
    #[command(flatten)]
    pub plan: PlanFileArg,
    /// Also archive up to this many other files PostgreSQL marked ready, in the same record
    /// (default 16).
    #[arg(long, value_name = "N")]
    pub ahead: Option<usize>,
    /// Largest backlog of WAL waiting in pg_wal (e.g. 8G): beyond it the oldest files are
    /// dropped unarchived, so that the primary's disk does not fill; each drop is recorded in
    /// the repository and makes `status` CRITICAL. Default: no limit.
    #[arg(long, value_name = "SIZE", value_parser = cairn::units::parse_size)]
    pub queue_max: Option<u64>,
    /// Archive through a background archiver that keeps the repository open and stores files
    /// as PostgreSQL marks them ready; this call waits until its file is stored (as pgBackRest's
    /// archive-async).
    #[arg(long = "async")]
    pub asynchronous: bool,
}

#[derive(clap::Args, Debug)]
pub struct ArchiverArgs {
    /// PostgreSQL's pg_wal directory.
    #[arg(long, value_name = "DIR")]
    pub pg_wal: PathBuf,
    /// Most files in one record.
    #[arg(long, default_value_t = DEFAULT_AHEAD + 1)]
    pub batch: usize,
    /// The queue limit to record.
    #[arg(long, value_parser = cairn::units::parse_size)]
    pub queue_max: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// The WAL file's name (PostgreSQL's %f).
    pub name: String,
    /// Where to write it (PostgreSQL's %p).
    pub dest: PathBuf,
    /// Take the repository and [postgres]'s fetch_prefetch from this plan file.
    #[command(flatten)]
    pub plan: PlanFileArg,
    /// Fetch up to this many following segments into the local spool for the next calls, in a
    /// background process (0: none; default 16).
    #[arg(long, value_name = "N")]
    pub prefetch: Option<usize>,
}

pub fn run(global: &GlobalArgs, args: &WalArgs) -> Result<i32> {
    match &args.command {
        WalCommand::Push(a) => {
            let (global, plan) = a.plan.global_for(global)?;
            let settings = plan.as_ref().and_then(|p| p.postgres.as_ref());
            let ahead = a
                .ahead
                .or(settings.and_then(|s| s.push_ahead))
                .unwrap_or(DEFAULT_AHEAD);
            let queue_max = a
                .queue_max
                .or(settings.and_then(|s| cairn::plan::size_of(&s.queue_max)));
            let asynchronous = a.asynchronous || settings.is_some_and(|s| s.push_async);
            push::run_push(&global, &a.path, ahead, queue_max, asynchronous)
        }
        WalCommand::Fetch(a) => {
            let (global, plan) = match a.plan.global_for(global) {
                Ok(p) => p,
                // Never exit 1 ("not archived") for a plan that cannot be read.
                Err(e) => {
                    errln!("error: {e:#}");
                    return Ok(exit::WAL_FETCH_FAILED);
                }
            };
            let prefetch = a
                .prefetch
                .or(plan
                    .as_ref()
                    .and_then(|p| p.postgres.as_ref())
                    .and_then(|s| s.fetch_prefetch))
                .unwrap_or(DEFAULT_PREFETCH);
            Ok(fetch::run_fetch(&global, &a.name, &a.dest, prefetch))
        }
        WalCommand::List(a) => run_list(&a.plan.global_for(global)?.0),
        WalCommand::Prefetch(a) => fetch::run_prefetch(global, a),
        WalCommand::Archiver(a) => push::run_archiver(global, a),
    }
}

/// Files `wal push` archives ahead unless told otherwise.
const DEFAULT_AHEAD: usize = 16;
/// Segments `wal fetch` prefetches unless told otherwise.
const DEFAULT_PREFETCH: usize = 16;

fn spool(global: &GlobalArgs) -> Spool {
    let (location, _) = context::repo_location(global);
    Spool::new(
        &context::cache_root(global),
        &location.display().to_string(),
    )
}

/// Starts this cairn with the repository options of `global` and `args` in the background: its
/// own process group (a signal meant for this call, PostgreSQL stopping, does not reach it), the
/// password on its standard input (never in its arguments or environment), its standard error
/// appended to `log` when given. It ends by itself.
fn spawn_background(
    global: &GlobalArgs,
    args: &[&str],
    log: Option<&Path>,
) -> Option<std::process::Child> {
    let password = context::password(global, false).ok()?;
    let exe = std::env::current_exe().ok()?;
    let (location, _) = context::repo_location(global);
    let mut command = cairn::process::command(exe);
    command
        .arg("-r")
        .arg(location)
        .arg("--cache-dir")
        .arg(context::cache_root(global))
        .args(["--password-file", "/dev/stdin", "-q"]);
    for o in &global.options {
        command.args(["-o", o]);
    }
    if let Some(hint) = &global.key_hint {
        command.args(["--key-hint", hint]);
    }
    let stderr = match log.and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    }) {
        Some(file) => std::process::Stdio::from(file),
        None => std::process::Stdio::null(),
    };
    command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = std::io::Write::write_all(&mut stdin, &password);
    }
    Some(child)
}

fn run_list(global: &GlobalArgs) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let catalog = Catalog::load(&repo)?;
    let timelines = wal::timelines(&catalog);
    let newest = catalog.records().last().map(|(_, r)| r.time.clone());
    let files = catalog.files().count();
    if global.json {
        output::print_json(&serde_json::json!({
            "files": files,
            "newest_record": newest,
            "damaged_records": catalog.damaged().iter().map(|(n, e)| serde_json::json!({"name": n, "error": e.to_string()})).collect::<Vec<_>>(),
            "conflicts": catalog.conflicts().iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            "system_identifiers": catalog
                .files()
                .filter_map(|(_, f, _)| f.system_identifier.clone())
                .collect::<std::collections::BTreeSet<_>>(),
            "timelines": timelines.iter().map(|t| serde_json::json!({
                "timeline": t.timeline,
                "segment_size": t.segment_size,
                "first": t.first.as_str(),
                "last": t.last.as_str(),
                "segments": t.segments,
                "history": t.history,
                "gaps": t.gaps.iter().map(|(a, b)| [a.as_str(), b.as_str()]).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "dropped": catalog.dropped().iter().map(|(n, d, host)| serde_json::json!({
                "name": n.as_str(), "time": d.time, "host": host,
                "backlog_bytes": d.backlog_bytes, "queue_max": d.queue_max,
            })).collect::<Vec<_>>(),
            "backlog": catalog.newest_push().and_then(|r| r.backlog),
        }))?;
    } else {
        outln!(
            "{files} WAL file(s) archived{}",
            newest
                .map(|t| format!(", newest record {t}"))
                .unwrap_or_default()
        );
        for t in &timelines {
            outln!(
                "timeline {}: {} .. {} ({} segment(s) of {}){}",
                t.timeline,
                t.first,
                t.last,
                t.segments,
                output::bytes(t.segment_size),
                if t.history {
                    ""
                } else {
                    ", history file missing"
                }
            );
            for (a, b) in &t.gaps {
                outln!("  gap: {a} .. {b} missing");
            }
        }
        for (name, d, host) in catalog.dropped() {
            outln!(
                "dropped unarchived: {name}, by {host} at {} ({} waited, more than --queue-max {})",
                d.time,
                output::bytes(d.backlog_bytes),
                output::bytes(d.queue_max)
            );
        }
        if let Some(b) = catalog.newest_push().and_then(|r| r.backlog) {
            outln!(
                "archive queue at the newest push: {} file(s), {}",
                b.files,
                output::bytes(b.bytes)
            );
        }
        for (name, e) in catalog.damaged() {
            outln!("damaged WAL record {name}: {e}");
        }
        for name in catalog.conflicts() {
            outln!("conflict: {name} archived with different bytes");
        }
    }
    let problems = catalog.damaged().len()
        + catalog.conflicts().len()
        + timelines
            .iter()
            .map(|t| t.gaps.len() + usize::from(!t.history))
            .sum::<usize>();
    Ok(if problems > 0 {
        exit::DAMAGED
    } else {
        exit::OK
    })
}
