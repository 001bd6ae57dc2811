//! `cairn wal push|fetch|list`: PostgreSQL's `archive_command` and `restore_command`, and what the
//! repository holds of each timeline.

use std::path::{Path, PathBuf};

use anyhow::Result;

use cairn::format::wal::WalName;
use cairn::wal::{self, fetch, push, Catalog, Queue, Spool};

use super::planned::PlanFileArg;
use super::{context, exit, output, GlobalArgs};
use cairn::plan::Plan;

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
            let (global, plan) = planned(global, &a.plan)?;
            let settings = plan.as_ref().and_then(|p| p.postgres.as_ref());
            let ahead = a
                .ahead
                .or(settings.and_then(|s| s.push_ahead))
                .unwrap_or(DEFAULT_AHEAD);
            let queue_max = a
                .queue_max
                .or(settings.and_then(|s| cairn::plan::size_of(&s.queue_max)));
            let asynchronous = a.asynchronous || settings.is_some_and(|s| s.push_async);
            run_push(&global, &a.path, ahead, queue_max, asynchronous)
        }
        WalCommand::Fetch(a) => {
            let (global, plan) = match planned(global, &a.plan) {
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
            Ok(run_fetch(&global, &a.name, &a.dest, prefetch))
        }
        WalCommand::List(a) => run_list(&planned(global, &a.plan)?.0),
        WalCommand::Prefetch(a) => run_prefetch(global, a),
        WalCommand::Archiver(a) => run_archiver(global, a),
    }
}

/// Files `wal push` archives ahead unless told otherwise.
const DEFAULT_AHEAD: usize = 16;
/// Segments `wal fetch` prefetches unless told otherwise.
const DEFAULT_PREFETCH: usize = 16;

/// The global options with the plan's repository when `--plan` names one, and the plan.
fn planned(global: &GlobalArgs, plan: &PlanFileArg) -> Result<(GlobalArgs, Option<Plan>)> {
    super::pg::planned_global(global, plan)
}

fn spool(global: &GlobalArgs) -> Spool {
    let (location, _) = context::repo_location(global);
    Spool::new(
        &context::cache_root(global),
        &location.display().to_string(),
    )
}

fn run_push(
    global: &GlobalArgs,
    path: &Path,
    ahead: usize,
    queue_max: Option<u64>,
    asynchronous: bool,
) -> Result<i32> {
    let name = push::wal_name_of(path)?;
    let spool = spool(global);
    if spool.take_pushed(&name, path) {
        if global.json {
            output::print_json(
                &serde_json::json!({ "name": name.as_str(), "result": "archived_ahead" }),
            )?;
        } else if global.verbose > 0 {
            errln!("{name}: archived ahead by an earlier push");
        }
        return Ok(exit::OK);
    }
    let queue = Queue::scan(path.parent().unwrap_or(Path::new(".")));
    let mut dropped = Vec::new();
    if let Some(max) = queue_max {
        dropped = queue.over(max);
        if dropped.iter().any(|(n, _)| *n == name) {
            return drop_unarchived(global, &spool, &queue, &dropped, &name, max);
        }
    }
    let queued = queue.files.iter().any(|(n, _, _)| *n == name);
    if asynchronous && queued {
        let pg_wal = path.parent().unwrap_or(Path::new("."));
        if archived_in_background(global, &spool, path, &name, pg_wal, ahead, queue_max)? {
            if global.json {
                output::print_json(
                    &serde_json::json!({ "name": name.as_str(), "result": "archived_async" }),
                )?;
            } else if global.verbose > 0 {
                errln!("{name}: archived by the background archiver");
            }
            return Ok(exit::OK);
        }
        // The archiver ended without it (a failure, a refusal): this call pushes it, and says
        // what is wrong with the exit code PostgreSQL logs.
    }
    let repo = context::open_repository(global)?.into_indexed_unsynced()?;
    let mut files = vec![path.to_path_buf()];
    files.extend(
        queue
            .files
            .iter()
            .filter(|(n, _, _)| *n != name && !dropped.iter().any(|(d, _)| d == n))
            .map(|(_, p, _)| p.clone())
            .take(ahead),
    );
    let notes = push::PushNotes {
        backlog: Some(queue.backlog(queue_max)),
        dropped: spool.journaled_drops(),
    };
    let outcome = push::push(&repo, &files, &notes)?;
    if outcome.record.is_some() && !notes.dropped.is_empty() {
        // The record names them now; a failure here only names them again in the next one.
        if let Err(e) = spool.settle_drops(&notes.dropped) {
            errln!("warning: {e}");
        }
    }
    for warning in &outcome.absent_packs {
        errln!("warning: pack {warning} is named by the index but missing: its blobs were stored again");
    }
    let mut main = None;
    for ((file_name, pushed), path) in outcome.files.iter().zip(&files) {
        if *file_name == name {
            main = Some(pushed.clone());
        } else if *pushed == push::Pushed::Conflict {
            errln!("warning: {file_name} is archived already with other bytes: left for PostgreSQL's own call, which will fail");
        } else if let Err(e) = spool.mark_pushed(file_name, path) {
            // PostgreSQL's own call for it then archives it again, which costs time only.
            errln!("warning: {e}");
        }
    }
    let ahead = outcome.files.len().saturating_sub(1);
    if global.json {
        output::print_json(&serde_json::json!({
            "name": name.as_str(),
            "result": match main { Some(push::Pushed::AlreadyArchived) => "already_archived", Some(push::Pushed::Conflict) => "conflict", _ => "stored" },
            "ahead": outcome.files.iter().skip(1).map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            "record": outcome.record.map(|r| r.to_hex()),
            "bytes_read": outcome.bytes_read,
            "bytes_added": outcome.bytes_added,
            "backlog": notes.backlog,
            "drops_recorded": notes.dropped.len(),
        }))?;
    }
    match main {
        Some(push::Pushed::Conflict) => Err(cairn::Error::invalid_input(format!(
            "{name} is archived already with different bytes: refused (is another cluster archiving into this repository? `cairn wal list` shows what it holds)"
        ))
        .into()),
        Some(pushed) => {
            if !global.json && !global.quiet && global.verbose > 0 {
                let what = if pushed == push::Pushed::AlreadyArchived {
                    "already archived with the same bytes"
                } else {
                    "archived"
                };
                errln!(
                    "{name}: {what}{}; {} read, {} added",
                    if ahead > 0 { format!(" (and {ahead} file(s) ahead)") } else { String::new() },
                    output::bytes(outcome.bytes_read),
                    output::bytes(outcome.bytes_added)
                );
            }
            Ok(exit::OK)
        }
        None => Ok(exit::ERROR),
    }
}

/// Longest a call waits for the background archiver to store its file.
const ASYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until the background archiver (started when none runs) has stored `name`: true then,
/// false when it ended or refused the file without storing it.
///
/// # Errors
/// When it runs but has not stored the file within [`ASYNC_WAIT`] (PostgreSQL retries).
fn archived_in_background(
    global: &GlobalArgs,
    spool: &Spool,
    path: &Path,
    name: &WalName,
    pg_wal: &Path,
    ahead: usize,
    queue_max: Option<u64>,
) -> Result<bool> {
    let mut child = None;
    if !spool.archiver_running() {
        spool.clear_archiver_error();
        let dir = context::absolute(pg_wal).display().to_string();
        let batch = (ahead + 1).to_string();
        let max = queue_max.map(|m| m.to_string());
        let mut args = vec!["wal", "archiver", "--pg-wal", &dir, "--batch", &batch];
        if let Some(max) = &max {
            args.extend(["--queue-max", max]);
        }
        child = spawn_background(global, &args, Some(&spool.dir().join("archiver.log")));
    }
    let started = std::time::Instant::now();
    loop {
        if spool.take_pushed(name, path) {
            return Ok(true);
        }
        if spool
            .archiver_error()
            .is_some_and(|e| e.contains(name.as_str()))
        {
            return Ok(false);
        }
        let spawned_alive = child
            .as_mut()
            .is_some_and(|c: &mut std::process::Child| matches!(c.try_wait(), Ok(None)));
        if !spool.archiver_running() && !spawned_alive {
            // It may have stored the file just before it ended.
            return Ok(spool.take_pushed(name, path));
        }
        if started.elapsed() > ASYNC_WAIT {
            return Err(cairn::Error::new(
                cairn::ErrorKind::Other,
                format!(
                    "the background archiver has not stored {name} within {}s (its log: {})",
                    ASYNC_WAIT.as_secs(),
                    spool.dir().join("archiver.log").display()
                ),
            )
            .into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn run_archiver(global: &GlobalArgs, args: &ArchiverArgs) -> Result<i32> {
    let spool = spool(global);
    let Some(_lock) = spool.lock_archiver() else {
        return Ok(exit::OK);
    };
    let repo = context::open_repository(global)?.into_indexed_unsynced()?;
    let options = wal::archiver::ArchiverOptions {
        pg_wal: args.pg_wal.clone(),
        batch: args.batch,
        idle: ARCHIVER_IDLE,
        queue_max: args.queue_max,
    };
    let report = wal::archiver::run(&repo, &spool, &options)?;
    errln!(
        "{}: archiver ended: {} file(s) in {} record(s){}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        report.files,
        report.batches,
        if report.refused.is_empty() {
            String::new()
        } else {
            format!(
                ", refused {:?}",
                report
                    .refused
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
            )
        }
    );
    Ok(exit::OK)
}

/// How long a background archiver waits for more files before it ends.
const ARCHIVER_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The queue exceeds `--queue-max` and `name` is among its oldest files: they are acknowledged
/// to PostgreSQL unarchived (it then recycles them), journaled first so that the next record
/// names them, and said loudly in PostgreSQL's log.
fn drop_unarchived(
    global: &GlobalArgs,
    spool: &Spool,
    queue: &Queue,
    dropped: &[(WalName, PathBuf)],
    name: &WalName,
    max: u64,
) -> Result<i32> {
    spool.journal_drops(&queue.drops(dropped, max))?;
    for (other, path) in dropped.iter().filter(|(n, _)| n != name) {
        if let Err(e) = spool.mark_pushed(other, path) {
            // PostgreSQL's own call for it then decides again.
            errln!("warning: {e}");
        }
    }
    errln!(
        "WARNING: {} of WAL wait in pg_wal to be archived, more than --queue-max {}: {} file(s) \
         from {name} on dropped unarchived so that the disk does not fill. Point-in-time recovery \
         cannot cross them: fix archiving (`cairn wal push` errors above), then take a base \
         backup (`cairn pg backup`). `cairn status` reports the drop CRITICAL.",
        output::bytes(queue.bytes()),
        output::bytes(max),
        dropped.len()
    );
    if global.json {
        output::print_json(&serde_json::json!({
            "name": name.as_str(),
            "result": "dropped",
            "dropped": dropped.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            "backlog": queue.backlog(Some(max)),
        }))?;
    }
    Ok(exit::OK)
}

/// `wal fetch` never lets an error through as exit 1, which PostgreSQL reads as "not archived".
fn run_fetch(global: &GlobalArgs, name: &str, dest: &Path, prefetch: usize) -> i32 {
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

fn run_prefetch(global: &GlobalArgs, args: &PrefetchArgs) -> Result<i32> {
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
