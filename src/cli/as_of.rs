//! `--as-of TIME`: an S3 repository opened read-only as it was at TIME, from the versions its bucket keeps
//! ([`cairn::backend::AsOfBackend`]). Which commands take it, how their storage is opened with it, and the
//! cache it gets. It never lets a command write to the repository it reads.

use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, SecondsFormat, Utc};

use cairn::backend::{AsOfBackend, Backend, BackendOptions, Location};
use cairn::repo::select::parse_point_in_time;
use cairn::{Error, ErrorKind};

use super::Command;

/// The commands `--as-of` serves: those that only read the repository. For `sync` it applies to the
/// source (`-r` with `--to`, the `--from` location with `--from`); the target is written as usual.
const READERS: &str = "snapshots, ls, cat, dump, find, stats, diff, restore, check and sync";

/// Parses the value of `--as-of` as `--time` takes it.
pub fn parse_time(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    parse_point_in_time(text).map_err(|e| e.to_string())
}

/// Refuses, before anything is opened, a command that writes to the repository (or hands it to other
/// processes that would not read it as of the time): a past state is there to be read and copied out.
///
/// # Errors
/// `InvalidInput` (exit 2) naming `--as-of` for every command but the readers.
pub fn refuse_writers(command: &Command) -> Result<()> {
    let name = match command {
        Command::Snapshots(_)
        | Command::Ls(_)
        | Command::Cat(_)
        | Command::Dump(_)
        | Command::Find(_)
        | Command::Stats(_)
        | Command::Diff(_)
        | Command::Restore(_)
        | Command::Check(_)
        | Command::Sync(_) => return Ok(()),
        Command::Init(_) => "init",
        Command::Backup(_) => "backup",
        Command::Forget(_) => "forget",
        Command::Prune(_) => "prune",
        Command::Repair(_) => "repair",
        Command::Unlock(_) => "unlock",
        Command::Retention(_) => "retention",
        Command::Key(_) => "key",
        Command::Wal(_) => "wal",
        Command::Pg(_) => "pg",
        Command::Plan(_) => "plan",
        Command::Run(_) => "run",
        Command::Status(_) => "status",
        Command::Drill(_) => "drill",
        Command::Completions(_) => "completions",
        Command::Man(_) => "man",
    };
    Err(Error::invalid_input(format!(
        "--as-of opens the repository read-only, as it was at a past time, and `{name}` does not \
         take it: it serves {READERS}. To recover, copy the past state out with \
         `cairn -r NEW sync --from S3-URL --as-of TIME` and work on the copy"
    ))
    .into())
}

/// The storage of `location` as it was at `time`, read-only.
///
/// # Errors
/// `InvalidInput` when the location is not on S3 or its bucket keeps no versions; `NotARepository`
/// when no repository was there at `time`; storage failures.
pub fn open(
    location: &Location,
    options: &BackendOptions,
    time: DateTime<Utc>,
) -> Result<Box<dyn Backend>> {
    let view = AsOfBackend::open(location, options, time).map_err(|e| match e.kind() {
        // Not on S3, or a bucket without versioning.
        ErrorKind::InvalidInput => e.context("--as-of needs an S3 repository with versioning"),
        _ => e,
    })?;
    Ok(Box::new(view))
}

/// The cache of a past state: its own directory below the cache root, one per time, so that the index
/// cache of the repository as it is now is never mixed with (or rebuilt for) the one of a past state.
/// A view at one time lists the same objects whenever it is opened, so its cache stays valid.
pub fn cache_root(root: &Path, time: DateTime<Utc>) -> PathBuf {
    let stamp = time
        .to_rfc3339_opts(SecondsFormat::Nanos, true)
        .replace(':', "");
    root.join("as-of").join(stamp)
}
