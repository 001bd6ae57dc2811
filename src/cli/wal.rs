//! `cairn wal push|fetch|list`: PostgreSQL's `archive_command` and `restore_command`, and what the
//! repository holds of each timeline.

use std::path::{Path, PathBuf};

use anyhow::Result;

use cairn::format::wal::WalName;
use cairn::wal::{self, fetch, push, Catalog, Spool};

use super::{context, exit, output, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples (postgresql.conf; PostgreSQL runs them as its own user, so give that user the
password file and a cache directory it can write):
  archive_mode = on
  archive_command = 'CAIRN_PASSWORD_FILE=/etc/cairn/password cairn -r /srv/backup wal push %p'
  restore_command = 'CAIRN_PASSWORD_FILE=/etc/cairn/password cairn -r /srv/backup wal fetch %f %p'
  cairn -r /srv/backup wal list

`wal push` exits 0 only once the file is stored (packs, index file and WAL record written); a
file archived before with the same bytes exits 0 at once; one with other bytes under the same
name is refused (exit 2), so PostgreSQL keeps it and retries. It also archives the files
PostgreSQL has marked ready after this one (pg_wal/archive_status/*.ready, --ahead), so that
the calls for them return without opening the repository.
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
    List,
    /// Fetch the segments after NAME into the local spool (what `wal fetch` starts in the
    /// background; reads the password from standard input).
    #[command(hide = true)]
    Prefetch(PrefetchArgs),
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
    /// Also archive up to this many other files PostgreSQL marked ready, in the same record.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub ahead: usize,
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// The WAL file's name (PostgreSQL's %f).
    pub name: String,
    /// Where to write it (PostgreSQL's %p).
    pub dest: PathBuf,
    /// Fetch up to this many following segments into the local spool for the next calls, in a
    /// background process (0: none).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub prefetch: usize,
}

pub fn run(global: &GlobalArgs, args: &WalArgs) -> Result<i32> {
    match &args.command {
        WalCommand::Push(a) => run_push(global, a),
        WalCommand::Fetch(a) => Ok(run_fetch(global, a)),
        WalCommand::List => run_list(global),
        WalCommand::Prefetch(a) => run_prefetch(global, a),
    }
}

fn spool(global: &GlobalArgs) -> Spool {
    let (location, _) = context::repo_location(global);
    Spool::new(
        &context::cache_root(global),
        &location.display().to_string(),
    )
}

fn run_push(global: &GlobalArgs, args: &PushArgs) -> Result<i32> {
    let name = push::wal_name_of(&args.path)?;
    let spool = spool(global);
    if spool.take_pushed(&name, &args.path) {
        if global.json {
            output::print_json(
                &serde_json::json!({ "name": name.as_str(), "result": "archived_ahead" }),
            )?;
        } else if global.verbose > 0 {
            errln!("{name}: archived ahead by an earlier push");
        }
        return Ok(exit::OK);
    }
    let repo = context::open_repository(global)?.into_indexed_unsynced()?;
    let mut files = vec![args.path.clone()];
    files.extend(ready_after(&args.path, &name, args.ahead));
    let outcome = push::push(&repo, &files)?;
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

/// Up to `ahead` files PostgreSQL marked ready for archiving besides `name`, oldest first.
fn ready_after(path: &Path, name: &WalName, ahead: usize) -> Vec<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir.join("archive_status")) else {
        return Vec::new();
    };
    let mut ready: Vec<WalName> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_str()?.strip_suffix(".ready")?.to_string();
            WalName::parse(&file).ok()
        })
        .filter(|n| n != name)
        .collect();
    // PostgreSQL archives in name order within a timeline; history files first, as it does.
    ready.sort_by_key(|n| (n.kind() != cairn::format::wal::WalKind::History, n.clone()));
    ready
        .into_iter()
        .map(|n| dir.join(n.as_str()))
        .filter(|p| p.is_file())
        .take(ahead)
        .collect()
}

/// `wal fetch` never lets an error through as exit 1, which PostgreSQL reads as "not archived".
fn run_fetch(global: &GlobalArgs, args: &FetchArgs) -> i32 {
    match fetch_to(global, args) {
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

fn fetch_to(global: &GlobalArgs, args: &FetchArgs) -> Result<i32> {
    let name = WalName::parse(&args.name)?;
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
    if spool.take_fetched(&name, &args.dest)? {
        if global.verbose > 0 {
            errln!("{name}: fetched ahead");
        }
        start_prefetch(global, &spool, &name, &args.dest, args.prefetch);
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
    fetch::write_file(&repo, file, &args.dest)?;
    start_prefetch(global, &spool, &name, &args.dest, args.prefetch);
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
    let Ok(password) = context::password(global, false) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
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
    command
        .args([
            "wal",
            "prefetch",
            name.as_str(),
            "--count",
            &count.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // Its own process group: a signal meant for this call (PostgreSQL stopping recovery) does
    // not reach it, and it ends by itself after `count` segments.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    if let Ok(mut child) = command.spawn() {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = std::io::Write::write_all(&mut stdin, &password);
        }
    }
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
