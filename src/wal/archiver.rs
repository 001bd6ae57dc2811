//! The background archiver of `wal push --async`: one process per spool (under a lock) that keeps
//! the repository open and archives the files PostgreSQL marks ready as they come, in batches,
//! marking each in the spool, so that PostgreSQL's own call for a file finds it marked and returns
//! at once (pgBackRest's `archive-async`). Nothing is acknowledged before its record is written:
//! a mark is made only after that. The archiver ends after a spell with nothing to archive, or
//! at its first failure, which it leaves in the spool; the waiting call then pushes by itself,
//! so the failure reaches PostgreSQL's log with its exit code.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::format::wal::WalName;
use crate::repo::IndexedRepository;

use super::push::{self, Pushed};
use super::{Queue, Spool};

/// How the archiver works.
#[derive(Clone, Debug)]
pub struct ArchiverOptions {
    /// PostgreSQL's `pg_wal` directory.
    pub pg_wal: PathBuf,
    /// Most files archived in one record.
    pub batch: usize,
    /// End after this long with nothing to archive.
    pub idle: Duration,
    /// The queue limit recorded with each batch (drops are the calls' decision, not the
    /// archiver's).
    pub queue_max: Option<u64>,
}

/// What an archiver did before it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiverReport {
    /// Records written.
    pub batches: usize,
    /// Files archived (or found archived with the same bytes).
    pub files: usize,
    /// Files refused because other bytes are archived under their name.
    pub refused: Vec<WalName>,
}

/// How often an idle archiver looks at the queue.
const POLL: Duration = Duration::from_millis(50);

/// Archives the queue of `options.pg_wal` until it stays empty for `options.idle`.
///
/// # Errors
/// The first failure of a push; it is also left in the spool ([`Spool::archiver_error`]).
pub fn run(
    repo: &IndexedRepository,
    spool: &Spool,
    options: &ArchiverOptions,
) -> Result<ArchiverReport> {
    let mut report = ArchiverReport::default();
    // Archived in this process's life, as they were then: PostgreSQL may still list a file as
    // ready for a moment after its call took the mark.
    let mut done: HashSet<(WalName, String)> = HashSet::new();
    let mut idle_since = Instant::now();
    loop {
        let queue = Queue::scan(&options.pg_wal);
        let todo: Vec<(WalName, PathBuf)> = queue
            .files
            .iter()
            .filter(|(name, path, _)| {
                let now = super::spool::stamp(path).unwrap_or_default();
                !done.contains(&(name.clone(), now))
                    && !report.refused.contains(name)
                    && !spool.is_pushed(name, path)
            })
            .take(options.batch.max(1))
            .map(|(name, path, _)| (name.clone(), path.clone()))
            .collect();
        if todo.is_empty() {
            if idle_since.elapsed() >= options.idle {
                return Ok(report);
            }
            std::thread::sleep(POLL);
            continue;
        }
        let paths: Vec<PathBuf> = todo.iter().map(|(_, p)| p.clone()).collect();
        let backlog = queue.backlog(options.queue_max);
        let outcome = match push::push_spooled(repo, spool, &paths, backlog, None) {
            Ok(outcome) => outcome,
            Err(e) => {
                spool.set_archiver_error(&e.to_string());
                return Err(e);
            }
        };
        report.batches += usize::from(outcome.record.is_some());
        for ((name, pushed), path) in outcome.files.iter().zip(&paths) {
            if *pushed == Pushed::Conflict {
                spool.set_archiver_error(&format!(
                    "{name} is archived already with different bytes"
                ));
                report.refused.push(name.clone());
            } else {
                done.insert((name.clone(), super::spool::stamp(path).unwrap_or_default()));
                report.files += 1;
            }
        }
        idle_since = Instant::now();
    }
}
