//! `wal push`: archives WAL files as PostgreSQL's `archive_command` hands them over. A file is
//! archived once its chunks' packs, the index file naming them and the WAL record naming the file
//! are written (FORMAT.md §11 order); a file archived before with the same bytes costs nothing, one
//! with other bytes under the same name is refused.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use crate::archive::content::ContentReader;
use crate::archive::NoProgress;
use crate::backend::ObjectKind;
use crate::chunker::ChunkerParams;
use crate::error::{Error, ErrorKind, Result};
use crate::format::lifecycle::LeaseKind;
use crate::format::tree::ContentItem;
use crate::format::wal::{
    system_identifier_of, WalBacklog, WalDrop, WalFile, WalKind, WalName, WalRecord, MAX_FILE_SIZE,
};
use crate::id::{PackId, WalRecordId};
use crate::repo::lease::HeldLease;
use crate::repo::IndexedRepository;

use super::{Catalog, Spool};

/// zstd level of WAL chunks: WAL compresses well and is most of what a busy cluster's repository
/// grows by, so it gets pgBackRest's default level rather than the file default (2).
pub const WAL_ZSTD_LEVEL: i32 = 3;

/// What became of one file handed to [`push`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Stored now.
    Stored,
    /// Already archived with the same bytes: nothing stored.
    AlreadyArchived,
    /// Archived before with other bytes: refused, nothing stored for it.
    Conflict,
}

/// What a push records besides its files: the queue it saw and the drops no record names yet.
#[derive(Clone, Debug, Default)]
pub struct PushNotes {
    /// The archive queue when the push started.
    pub backlog: Option<WalBacklog>,
    /// Files dropped unarchived, from the spool's journal.
    pub dropped: Vec<WalDrop>,
}

/// The outcome of a push.
#[derive(Debug, Default)]
pub struct PushOutcome {
    /// Each file with what became of it, in the order given.
    pub files: Vec<(WalName, Pushed)>,
    /// The record written (none when every file was already archived or refused and there was
    /// no drop to record).
    pub record: Option<WalRecordId>,
    /// Sealed bytes added to packs.
    pub bytes_added: u64,
    /// Bytes read from the files.
    pub bytes_read: u64,
    /// Packs the index names that the repository lacks: their blobs were stored again.
    pub absent_packs: Vec<PackId>,
}

/// Archives `files` (paths of WAL files, named as PostgreSQL names them) in one record.
///
/// Holds a backup lease meanwhile (FORMAT.md §12), so a concurrent prune keeps what this push
/// relies on.
///
/// # Errors
/// `InvalidInput` when a name is not a WAL file name or a file is too large; `SourceIo` when a
/// file cannot be read; other kinds when the repository fails. A conflict is not an error here:
/// it is reported per file.
pub fn push(repo: &IndexedRepository, files: &[PathBuf], notes: &PushNotes) -> Result<PushOutcome> {
    let names = files
        .iter()
        .map(|path| wal_name_of(path))
        .collect::<Result<Vec<_>>>()?;
    let lease = HeldLease::acquire(repo.repo(), LeaseKind::Backup)?;
    lease.hold_while(repo.repo(), |lease| {
        let condemned = crate::repo::pending::condemned_packs(repo.repo())?;
        repo.refresh_index()?;
        let absent_packs = repo.exclude_absent_packs()?;
        let mut catalog = Catalog::load(repo.repo())?;
        let saver = repo.saver_excluding(condemned);
        let bytes_read = AtomicU64::new(0);
        let reader = ContentReader {
            saver: &saver,
            // WAL does not repeat itself from segment to segment: large chunks keep the index small.
            chunker: ChunkerParams::from_config(repo.repo().config()),
            zstd_level: WAL_ZSTD_LEVEL,
            bytes_read: &bytes_read,
            progress: &NoProgress,
            delta_bases: None,
            // Segments have no parent version: no anchors to find or keep.
            sketcher: None,
            recorded: None,
        };
        let mut outcome = PushOutcome {
            absent_packs,
            ..PushOutcome::default()
        };
        let mut stored = Vec::new();
        for (path, name) in files.iter().zip(names) {
            let content = read_file(&reader, path)?;
            let mut file = WalFile::new(&name, &content);
            if matches!(name.kind(), WalKind::Segment | WalKind::Partial) {
                file.system_identifier = head_of(path)
                    .as_deref()
                    .and_then(system_identifier_of)
                    .map(|id| id.to_string());
            }
            let pushed = match catalog.file(&name) {
                Some(old) if old.chunks == file.chunks => Pushed::AlreadyArchived,
                Some(_) => Pushed::Conflict,
                None => {
                    stored.push(file);
                    Pushed::Stored
                }
            };
            outcome.files.push((name, pushed));
        }
        let stats = saver.finish()?;
        outcome.bytes_added = stats.bytes;
        outcome.bytes_read = bytes_read.into_inner();
        if stored.is_empty() && notes.dropped.is_empty() {
            return Ok(outcome);
        }
        let record = WalRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            host: crate::repo::lease::hostname(),
            files: stored,
            backlog: notes.backlog,
            dropped: notes.dropped.clone(),
        };
        let bytes = record.encode(repo.repo().key())?;
        let id = WalRecordId::hash_of(&bytes);
        // Written only while the lease holds: a prune that saw this process gone may have removed
        // what the record names.
        lease.ensure_valid()?;
        repo.repo()
            .backend()
            .write(ObjectKind::Wal, &id.to_hex(), &bytes)?;
        catalog.add(repo.repo(), id, &bytes, record);
        outcome.record = Some(id);
        Ok(outcome)
    })
}

/// [`push`] with the spool's bookkeeping, as both a call of its own and the background
/// archiver do it: the record carries the archive queue `backlog` and the journaled drops, the
/// journal forgets those once the record names them, and every file stored or found archived is
/// marked pushed, except `own` (the file of the call, which PostgreSQL asks for only once).
///
/// # Errors
/// As [`push`]; and when the spool cannot be written (the files are archived then, and
/// PostgreSQL's retry finds them so).
pub fn push_spooled(
    repo: &IndexedRepository,
    spool: &Spool,
    files: &[PathBuf],
    backlog: WalBacklog,
    own: Option<&WalName>,
) -> Result<PushOutcome> {
    let notes = PushNotes {
        backlog: Some(backlog),
        dropped: spool.journaled_drops(),
    };
    let outcome = push(repo, files, &notes)?;
    if outcome.record.is_some() && !notes.dropped.is_empty() {
        spool.settle_drops(&notes.dropped)?;
    }
    for ((name, pushed), path) in outcome.files.iter().zip(files) {
        if *pushed != Pushed::Conflict && Some(name) != own {
            spool.mark_pushed(name, path)?;
        }
    }
    Ok(outcome)
}

/// The WAL file name of `path`'s last component.
///
/// # Errors
/// `InvalidInput` when it is not one.
pub fn wal_name_of(path: &Path) -> Result<WalName> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid_input(format!("{}: not a WAL file path", path.display())))?;
    WalName::parse(name).map_err(|e| e.context(path.display().to_string()))
}

/// The first 64 bytes of a file, `None` when it cannot be read (the push itself reports that).
fn head_of(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(64);
    File::open(path)
        .ok()?
        .take(64)
        .read_to_end(&mut head)
        .ok()?;
    Some(head)
}

fn read_file(reader: &ContentReader<'_, '_>, path: &Path) -> Result<Vec<ContentItem>> {
    let io = |what: &str, e| Error::io(ErrorKind::SourceIo, what, path, e);
    let file = File::open(path).map_err(|e| io("cannot open", e))?;
    let size = file.metadata().map_err(|e| io("cannot read", e))?.len();
    if size > MAX_FILE_SIZE {
        return Err(Error::invalid_input(format!(
            "{}: {size} bytes, more than any WAL file ({MAX_FILE_SIZE})",
            path.display()
        )));
    }
    let mut content = Vec::new();
    reader
        .read_stream(file, &mut content)
        .map_err(|e| e.context(path.display().to_string()))?;
    Ok(content)
}
