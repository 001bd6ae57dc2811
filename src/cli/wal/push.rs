//! `wal push`: PostgreSQL's `archive_command`, by itself, through the background archiver
//! (`--async`), or dropping what exceeds `--queue-max`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use cairn::format::wal::WalName;
use cairn::wal::{self, push, Queue, Spool};

use super::{spawn_background, spool, ArchiverArgs};
use crate::cli::{context, exit, output, GlobalArgs};

pub(super) fn run_push(
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
    let backlog = queue.backlog(queue_max);
    let drops_recorded = spool.journaled_drops().len();
    let outcome = push::push_spooled(&repo, &spool, &files, backlog, Some(&name))?;
    for warning in &outcome.absent_packs {
        errln!("warning: pack {warning} is named by the index but missing: its blobs were stored again");
    }
    let mut main = None;
    for (file_name, pushed) in &outcome.files {
        if *file_name == name {
            main = Some(pushed.clone());
        } else if *pushed == push::Pushed::Conflict {
            errln!("warning: {file_name} is archived already with other bytes: left for PostgreSQL's own call, which will fail");
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
            "backlog": backlog,
            "drops_recorded": if outcome.record.is_some() { drops_recorded } else { 0 },
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

pub(super) fn run_archiver(global: &GlobalArgs, args: &ArchiverArgs) -> Result<i32> {
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
