//! Backup: walk the sources, compare with the parent snapshot, feed contents through the saver, write trees and the snapshot last.

pub mod anchors;
mod command;
pub(crate) mod content;
pub mod delta_bases;
mod exclude;
mod metadata;
mod sources;

pub use command::{DumpCommand, STDERR_TAIL};
pub use exclude::{ExcludeMatcher, ExcludeOptions, ExcludePattern, TagFile, CACHEDIR_TAG};
pub use sources::{normalize_sources, read_path_list, stream_path_parts, ListFormat};

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;

use crate::chunker::ChunkerParams;
use crate::error::{Error, ErrorKind, Result};
use crate::format::lifecycle::LeaseKind;
use crate::format::snapshot::{DumpRecord, Snapshot, SourceError, Summary};
use crate::format::tree::{ContentItem, Node, NodeKind, Timestamp, Tree};
use crate::id::{BlobId, BlobType, PackId, SnapshotId, TreeId};
use crate::repo::lease::HeldLease;
use crate::repo::{BlobSaver, IndexedRepository};

use content::ContentReader;
use metadata::{kind_of, node_from, NameCache};
use sources::SourceTrie;

/// What to back up and how to label it.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// Host name recorded (default: this machine's).
    pub host: Option<String>,
    /// Tags recorded.
    pub tags: Vec<String>,
    /// The plan job recorded (`--job`); the parent is then the latest snapshot of that job.
    pub job: Option<String>,
    /// Entries to leave out by path.
    pub excludes: ExcludeMatcher,
    /// Directories holding one of these files are left out whole (`--exclude-caches`,
    /// `--exclude-if-present`).
    pub exclude_if_present: Vec<TagFile>,
    /// Regular files larger than this many bytes are left out.
    pub exclude_larger_than: Option<u64>,
    /// Do not descend into other file systems.
    pub one_file_system: bool,
    /// Parent snapshot to compare against (default: latest with the same host and paths).
    pub parent: Option<SnapshotId>,
    /// The time recorded as the snapshot's (default: now), for imports and tests.
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    /// How long a stored pack waits at most for its index file (default
    /// [`crate::repo::INDEX_INTERVAL`]): what an interrupted backup loses.
    pub index_interval: Option<std::time::Duration>,
    /// Read, chunk, compress and seal everything, but write nothing: no lease, pack, index file
    /// or snapshot. The outcome's summary says what would be added.
    pub dry_run: bool,
    /// Called once every source is stored, before the snapshot is written (in a dry run too).
    pub before_snapshot: Option<SnapshotHook>,
}

/// Work done between storing a backup's content and writing its snapshot: it may add to the
/// snapshot (a PostgreSQL base backup's stop position and label) or fail the backup, which then
/// writes no snapshot.
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct SnapshotHook(
    pub std::sync::Arc<dyn Fn(&IndexedRepository, &mut Snapshot) -> Result<()> + Send + Sync>,
);

impl std::fmt::Debug for SnapshotHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotHook")
    }
}

/// Where the data comes from: the simple cases (see [`BackupSources`] for any mix).
pub enum BackupSource<'a> {
    /// File system paths (made absolute).
    Paths(Vec<PathBuf>),
    /// A stream stored as the file `/name`.
    Stdin {
        /// The file name in the snapshot.
        name: String,
        /// The stream.
        reader: Box<dyn Read + Send + 'a>,
    },
}

/// Everything one backup stores: any number of file-system paths and any number of streams, side by
/// side in one snapshot.
///
/// ```
/// use cairn::archive::{BackupSources, DumpCommand, StreamSource};
/// let sources = BackupSources {
///     paths: vec!["/etc".into()],
///     streams: vec![
///         StreamSource::command("dumps/app.dump", DumpCommand::new(["pg_dump", "--format=custom", "app"])),
///         StreamSource::reader("notes.txt", Box::new(std::io::Cursor::new(b"hello".to_vec()))),
///     ],
/// };
/// assert_eq!(sources.streams[0].path, "dumps/app.dump");
/// ```
#[derive(Default)]
pub struct BackupSources<'a> {
    /// File system paths (absolute and normalized: see [`normalize_sources`]).
    pub paths: Vec<PathBuf>,
    /// Streams, each stored as one file.
    pub streams: Vec<StreamSource<'a>>,
}

/// One stream of a backup: where it goes in the snapshot and where its bytes come from.
pub struct StreamSource<'a> {
    /// Its path in the snapshot: `app.dump` is stored as `/app.dump`, `dumps/app.dump` as
    /// `/dumps/app.dump` below a synthetic directory. It must not collide with another source.
    pub path: String,
    /// The bytes.
    pub input: StreamInput<'a>,
}

/// Where a stream's bytes come from.
pub enum StreamInput<'a> {
    /// A reader (standard input); the snapshot is written only if it gives at least `min_bytes`.
    Reader {
        /// The stream.
        reader: Box<dyn Read + Send + 'a>,
        /// Fewer bytes than this fail the backup with [`ErrorKind::CommandFailed`] (default 1: an
        /// empty dump piped in is the silent failure of `pg_dump | cairn`; 0 accepts it).
        min_bytes: u64,
    },
    /// A command's standard output; the snapshot is written only if the command succeeds.
    Command(DumpCommand),
}

impl<'a> StreamSource<'a> {
    /// A stream read from `reader`, which must give at least 1 byte (see [`StreamSource::min_bytes`]).
    pub fn reader(path: impl Into<String>, reader: Box<dyn Read + Send + 'a>) -> Self {
        StreamSource {
            path: path.into(),
            input: StreamInput::Reader {
                reader,
                min_bytes: 1,
            },
        }
    }

    /// Sets the fewest bytes the stream must give, whether read or written by a command
    /// (0 accepts an empty stream).
    #[must_use]
    pub fn min_bytes(mut self, min_bytes: u64) -> Self {
        self.input = match self.input {
            StreamInput::Reader { reader, .. } => StreamInput::Reader { reader, min_bytes },
            StreamInput::Command(c) => StreamInput::Command(c.min_bytes(min_bytes)),
        };
        self
    }

    /// A stream produced by a dump command.
    pub fn command(path: impl Into<String>, command: DumpCommand) -> Self {
        StreamSource {
            path: path.into(),
            input: StreamInput::Command(command),
        }
    }
}

impl<'a> From<BackupSource<'a>> for BackupSources<'a> {
    fn from(source: BackupSource<'a>) -> Self {
        match source {
            BackupSource::Paths(paths) => BackupSources {
                paths,
                streams: Vec::new(),
            },
            BackupSource::Stdin { name, reader } => BackupSources {
                paths: Vec::new(),
                streams: vec![StreamSource::reader(name, reader)],
            },
        }
    }
}

/// Progress callbacks (the library never draws; the CLI does).
pub trait BackupProgress: Sync {
    /// `n` more bytes of content were read.
    fn bytes(&self, _n: u64) {}
    /// One more entry (file, directory, ...) was processed.
    fn entry(&self, _path: &Path) {}
    /// A source could not be read; the backup goes on.
    fn warning(&self, _error: &SourceError) {}
    /// The file `path` is new (no parent entry) or changed since the parent snapshot; said once
    /// its content is read, before it is stored.
    fn file_read(&self, _path: &Path, _new: bool) {}
    /// `path` was left out, for the reason `why` (the pattern, tag file or size limit).
    fn excluded(&self, _path: &Path, _why: &str) {}
    /// A dump command whose output goes to `path` (e.g. `/app.dump`) wrote `line` to its standard error.
    fn command_stderr(&self, _path: &str, _line: &str) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl BackupProgress for NoProgress {}

/// The result of a backup.
#[derive(Clone, Debug)]
pub struct BackupOutcome {
    /// The snapshot written; `None` for a dry run.
    pub snapshot_id: Option<SnapshotId>,
    /// Its content (for a dry run, what would have been written).
    pub snapshot: Snapshot,
    /// Packs the index names that the repository lacks: their blobs were stored again, but older
    /// snapshots that use them are damaged (`cairn check` names them).
    pub absent_packs: Vec<PackId>,
    /// Exclude patterns that matched no entry (a typo, or a path that is not where it was meant).
    pub unmatched_excludes: Vec<String>,
    /// Changed chunks whose delta base could not be read: stored whole, so the snapshot is
    /// complete, but the base is damaged (`cairn check --read-data` names it).
    pub unreadable_bases: u64,
    /// The dedup lookups of the backup: how many went past the index cache's filter to redb.
    pub dedup_lookups: crate::index::DedupLookups,
}

#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unchanged: AtomicU64,
    bytes_read: AtomicU64,
    // Logical size of every regular file and stream stored (Summary::total_bytes).
    total_bytes: AtomicU64,
}

struct Archiver<'a, 'r> {
    repo: &'r IndexedRepository,
    saver: &'a BlobSaver<'r>,
    options: &'a BackupOptions,
    progress: &'a dyn BackupProgress,
    names: NameCache,
    counters: Counters,
    errors: Mutex<Vec<SourceError>>,
    // Files with several links, by (device, inode): read once, reused for every link whose
    // status (mtime, ctime, size) is the one seen before that read.
    hardlinks: Mutex<HashMap<(u64, u64), LinkContent>>,
    chunker: ChunkerParams,
    // Streams (database dumps) use smaller chunks: their day-to-day edits are scattered.
    stream_chunker: ChunkerParams,
    // Streams by the index their trie node holds; each is taken once, when archived.
    streams: Mutex<Vec<Option<StreamSource<'a>>>>,
    dumps: Mutex<Vec<DumpRecord>>,
    // Entries each exclude pattern matched, by pattern number.
    exclude_hits: Vec<AtomicU64>,
    sketcher: anchors::Sketcher,
    // Where large files and streams keep their anchors for the next backup's delta bases.
    anchor_cache: anchors::AnchorCache,
}

/// Runs a backup and writes its snapshot.
///
/// `source` is a [`BackupSource`] or a [`BackupSources`]. The snapshot is written last, and only if
/// every dump command succeeded.
///
/// # Errors
/// When the repository fails or no source can be read at all; unreadable entries are only recorded.
/// `InvalidInput` when a stream's path is invalid or collides with another source;
/// [`ErrorKind::CommandFailed`] when a dump command fails (nothing of the backup is then referenced:
/// the packs already written are unreferenced data a prune removes).
pub fn backup<'s>(
    repo: &IndexedRepository,
    source: impl Into<BackupSources<'s>>,
    options: &BackupOptions,
    progress: &dyn BackupProgress,
) -> Result<BackupOutcome> {
    let source = source.into();
    if options.dry_run {
        // Nothing is written, so nothing needs protecting from a prune; a prune running meanwhile
        // can only make the count of new bytes too low, never damage anything.
        repo.refresh_index()?;
        let absent_packs = repo.exclude_absent_packs()?;
        let condemned = crate::repo::pending::condemned_packs(repo.repo())?;
        return backup_leased(
            repo,
            source,
            options,
            progress,
            None,
            condemned,
            absent_packs,
        );
    }
    // The lease comes before reading the pending-deletion records: a prune waits for every backup
    // that may have missed its record (FORMAT.md §12).
    let lease = HeldLease::acquire(repo.repo(), LeaseKind::Backup)?;
    lease.hold_while(repo.repo(), |lease| {
        // Housekeeping, best effort: what killed processes left (stale temporaries, leases of dead
        // holders and long-expired ones) never fails a backup; prune sweeps again and reports.
        let _ = crate::repo::lease::sweep(
            repo.repo(),
            crate::repo::lease::DEFAULT_CLOCK_SKEW,
            crate::repo::lease::SweepExpired::Long,
        );
        let condemned = crate::repo::pending::condemned_packs(repo.repo())?;
        // Only an index listed after the records were read is trusted: one read earlier may name
        // packs a prune has deleted since, their record gone too. The CLI opens the index without
        // reading it (`into_indexed_unsynced`), so this is its only listing.
        repo.refresh_index()?;
        // An index entry whose pack is gone must not pass for a stored blob (or an unchanged
        // file's content): those blobs are stored again (FORMAT.md §11).
        let absent_packs = repo.exclude_absent_packs()?;
        backup_leased(
            repo,
            source,
            options,
            progress,
            Some(lease),
            condemned,
            absent_packs,
        )
    })
}

fn backup_leased(
    repo: &IndexedRepository,
    source: BackupSources<'_>,
    options: &BackupOptions,
    progress: &dyn BackupProgress,
    lease: Option<&HeldLease>,
    condemned: HashSet<PackId>,
    absent_packs: Vec<PackId>,
) -> Result<BackupOutcome> {
    let started = Instant::now();
    let start_time = options.time.unwrap_or_else(chrono::Utc::now);
    let host = match &options.host {
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
    };
    let BackupSources {
        paths: sources,
        streams,
    } = source;
    // Checked here, before anything is written: stream paths are valid and collide with nothing.
    let mut trie = SourceTrie::build(&sources);
    let mut paths: Vec<String> = sources.iter().map(|p| p.display().to_string()).collect();
    for (i, stream) in streams.iter().enumerate() {
        trie.add_stream(&stream.path, i)?;
        paths.push(format!("/{}", stream_path_parts(&stream.path)?.join("/")));
    }
    paths.sort();
    if paths.is_empty() {
        return Err(Error::invalid_input(
            "nothing to back up: give paths, standard input or a dump command",
        ));
    }
    let parent = find_parent(repo, options, &host, &paths)?;
    let parent_tree = match &parent {
        Some((_, snap)) => parent_tree(repo, &snap.tree_id())?,
        None => None,
    };
    let mut saver = repo.saver_excluding(condemned);
    if let Some(interval) = options.index_interval {
        saver = saver.with_index_interval(interval);
    }
    if options.dry_run {
        saver = saver.dry_run();
    }
    let archiver = Archiver {
        repo,
        saver: &saver,
        options,
        progress,
        names: NameCache::default(),
        counters: Counters::default(),
        errors: Mutex::new(Vec::new()),
        hardlinks: Mutex::new(HashMap::new()),
        chunker: ChunkerParams::from_config(repo.repo().config()),
        stream_chunker: ChunkerParams::for_streams(repo.repo().config()),
        streams: Mutex::new(streams.into_iter().map(Some).collect()),
        dumps: Mutex::new(Vec::new()),
        exclude_hits: options
            .excludes
            .patterns()
            .iter()
            .map(|_| AtomicU64::new(0))
            .collect(),
        sketcher: anchors::Sketcher::new(repo.repo().config().chunker_seed),
        anchor_cache: anchors::AnchorCache::new(&repo.repo().cache_dir()),
    };
    if !options.dry_run {
        archiver.anchor_cache.sweep();
    }
    let root =
        crate::threads::run_in_pool(|| archiver.archive_sources(&sources, parent_tree.as_ref()))?;
    let stats = saver.finish()?;
    let c = &archiver.counters;
    let summary = Summary {
        files_new: c.files_new.load(Ordering::Relaxed),
        files_changed: c.files_changed.load(Ordering::Relaxed),
        files_unchanged: c.files_unchanged.load(Ordering::Relaxed),
        dirs_new: c.dirs_new.load(Ordering::Relaxed),
        dirs_changed: c.dirs_changed.load(Ordering::Relaxed),
        dirs_unchanged: c.dirs_unchanged.load(Ordering::Relaxed),
        bytes_read: c.bytes_read.load(Ordering::Relaxed),
        bytes_added: stats.bytes,
        blobs_added: stats.blobs,
        deltas_added: stats.deltas,
        total_bytes: Some(c.total_bytes.load(Ordering::Relaxed)),
        duration_secs: started.elapsed().as_secs_f64(),
        errors: archiver
            .errors
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
        dumps: archiver
            .dumps
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
    };
    let mut snapshot = Snapshot {
        time: start_time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        host,
        username: nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default(),
        paths,
        tags: options.tags.clone(),
        tree: root.to_hex(),
        parent: parent.map(|(id, _)| id.to_hex()),
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        summary,
        repaired_from: None,
        postgres: None,
        job: options.job.clone(),
    };
    if let Some(hook) = &options.before_snapshot {
        (hook.0)(repo, &mut snapshot)?;
    }
    let snapshot_id = match lease {
        Some(lease) => {
            lease.ensure_valid()?;
            Some(repo.repo().save_snapshot(&snapshot)?)
        }
        None => None,
    };
    let unmatched_excludes = options
        .excludes
        .patterns()
        .iter()
        .zip(&archiver.exclude_hits)
        .filter(|(_, hits)| hits.load(Ordering::Relaxed) == 0)
        .map(|(p, _)| p.clone())
        .collect();
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
        absent_packs,
        unmatched_excludes,
        unreadable_bases: stats.unreadable_bases,
        dedup_lookups: repo.index().dedup_lookups(),
    })
}

fn find_parent(
    repo: &IndexedRepository,
    options: &BackupOptions,
    host: &str,
    paths: &[String],
) -> Result<Option<(SnapshotId, Snapshot)>> {
    if let Some(id) = &options.parent {
        return Ok(Some((*id, repo.repo().load_snapshot(id)?)));
    }
    // A damaged snapshot cannot be a parent, and must not stop the backup: `check` names it.
    Ok(repo
        .repo()
        .loadable_snapshots()?
        .0
        .into_iter()
        .rev()
        .find(|(_, s)| s.host == host && s.paths == paths && s.job == options.job))
}

fn now_timestamp() -> Timestamp {
    let now = chrono::Utc::now();
    Timestamp {
        secs: now.timestamp(),
        nanos: now.timestamp_subsec_nanos().min(999_999_999),
    }
}

/// An entry with no file behind it (a stream, a directory above streams): owned by the user running
/// the backup, dated now.
fn synthetic_node(name: &[u8], kind: NodeKind, mode: u32) -> Node {
    let mut node = Node::new(name.to_vec(), kind);
    node.mode = mode;
    node.uid = nix::unistd::geteuid().as_raw();
    node.gid = nix::unistd::getegid().as_raw();
    node.mtime = now_timestamp();
    node.ctime = node.mtime;
    node.links = 1;
    node
}

impl Archiver<'_, '_> {
    fn record_error(&self, path: &Path, err: &dyn std::fmt::Display) {
        let error = SourceError {
            path: path.display().to_string(),
            message: err.to_string(),
        };
        self.progress.warning(&error);
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(error);
    }

    fn content_reader(&self, chunker: ChunkerParams, zstd_level: i32) -> ContentReader<'_, '_> {
        ContentReader {
            saver: self.saver,
            chunker,
            zstd_level,
            bytes_read: &self.counters.bytes_read,
            progress: self.progress,
            delta_bases: None,
            sketcher: Some(&self.sketcher),
            recorded: None,
        }
    }

    /// The parent's tree id when the directory's entries are exactly the parent's (and its
    /// blob is still indexed): an unchanged directory costs no encoding, hashing or storing.
    fn reuse_or_store_tree(
        &self,
        mut tree: Tree,
        parent_node: Option<&Node>,
        parent_tree: Option<&Tree>,
    ) -> Result<TreeId> {
        if let (Some(old_id), Some(old_tree)) = (parent_node.and_then(|n| n.subtree), parent_tree) {
            tree.sort();
            if tree == *old_tree && self.saver.is_known(&old_id)? {
                return Ok(old_id);
            }
        }
        self.store_tree(tree)
    }

    fn store_tree(&self, mut tree: Tree) -> Result<TreeId> {
        tree.sort();
        let bytes = tree.encode()?;
        Ok(self.saver.save(BlobType::Tree, &bytes)?.0)
    }

    /// Archives the readable paths and every stream under the synthetic directories from `/`.
    fn archive_sources(&self, sources: &[PathBuf], parent: Option<&Tree>) -> Result<TreeId> {
        let mut readable = Vec::with_capacity(sources.len());
        for p in sources {
            match std::fs::symlink_metadata(p) {
                Ok(_) => readable.push(p.clone()),
                Err(e) => self.record_error(p, &e),
            }
        }
        let mut trie = SourceTrie::build(&readable);
        let streams: Vec<String> = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.as_ref().map(|s| s.path.clone()).unwrap_or_default())
            .collect();
        if readable.is_empty() && streams.is_empty() {
            return Err(Error::invalid_input(
                "none of the paths to back up exists or can be read; nothing was saved",
            ));
        }
        for (i, path) in streams.iter().enumerate() {
            trie.add_stream(path, i)?;
        }
        self.archive_trie(&trie, Path::new("/"), parent)
    }

    /// The synthetic directories from `/` down to each source (FORMAT.md §9).
    fn archive_trie(&self, trie: &SourceTrie, dir: &Path, parent: Option<&Tree>) -> Result<TreeId> {
        let mut nodes = Vec::new();
        for (name, child) in &trie.children {
            let path = dir.join(OsStr::from_bytes(name));
            let parent_node = parent.and_then(|t| t.find(name));
            let node = if child.is_source {
                self.archive_entry(&path, name, parent_node, None)?
            } else if let Some(index) = child.stream {
                Some(self.archive_stream(&path, name, index, parent_node)?)
            } else {
                // A directory above a path source has the real directory's metadata; one only
                // above streams has none to copy.
                let mut node = match std::fs::symlink_metadata(&path) {
                    Ok(meta) if child.holds_paths() => {
                        node_from(name, &path, &meta, NodeKind::Dir, &self.names)
                            .map_err(|e| Error::io(ErrorKind::SourceIo, "cannot read", &path, e))?
                    }
                    _ if child.holds_streams() => synthetic_node(name, NodeKind::Dir, 0o755),
                    _ => continue, // the source below it is missing; already recorded
                };
                let parent_sub = self.parent_subtree(parent_node)?;
                node.subtree = Some(self.archive_trie(child, &path, parent_sub.as_ref())?);
                Some(node)
            };
            nodes.extend(node);
        }
        self.store_tree(Tree { nodes })
    }

    /// Stores stream number `index` as the file `path`; a dump command that fails fails the backup.
    fn archive_stream(
        &self,
        path: &Path,
        name: &[u8],
        index: usize,
        parent_node: Option<&Node>,
    ) -> Result<Node> {
        let shown = path.display().to_string();
        let source = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| Error::new(ErrorKind::Other, format!("stream {shown} taken twice")))?;
        self.progress.entry(path);
        let mut node = synthetic_node(name, NodeKind::File, 0o644);
        // A stream is always read in full: it has no metadata that could prove it unchanged.
        let level = self.saver.config().zstd_level_for_streams();
        let parent_content = parent_node
            .filter(|n| n.kind == NodeKind::File)
            .map(|n| n.content.as_slice());
        let reader = self
            .content_reader(self.stream_chunker, level)
            .with_parent(parent_content, &self.anchor_cache)
            .recording_anchors(!self.options.dry_run);
        match source.input {
            StreamInput::Reader {
                reader: input,
                min_bytes,
            } => {
                reader
                    .read_stream(input, &mut node.content)
                    .map_err(|e| e.context(format!("stream {shown}")))?;
                let bytes: u64 = node.content.iter().map(ContentItem::len).sum();
                if bytes < min_bytes {
                    return Err(command::too_short_input(&shown, bytes, min_bytes));
                }
            }
            StreamInput::Command(command) => {
                let record = command::run_dump(
                    &command,
                    &shown,
                    |out| {
                        reader.read_stream(out, &mut node.content)?;
                        Ok(node.content.iter().map(ContentItem::len).sum())
                    },
                    &|line| self.progress.command_stderr(&shown, line),
                )?;
                self.dumps
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(record);
            }
        }
        reader.keep_anchors(&self.anchor_cache, &node.content, parent_content);
        node.size = node.content.iter().map(ContentItem::len).sum();
        self.counters
            .total_bytes
            .fetch_add(node.size, Ordering::Relaxed);
        let counter = match parent_node {
            None => &self.counters.files_new,
            Some(old) if old.content == node.content => &self.counters.files_unchanged,
            Some(_) => &self.counters.files_changed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(node)
    }

    fn parent_subtree(&self, parent_node: Option<&Node>) -> Result<Option<Tree>> {
        match parent_node {
            Some(Node {
                kind: NodeKind::Dir,
                subtree: Some(id),
                ..
            }) => parent_tree(self.repo, id),
            _ => Ok(None),
        }
    }

    /// Archives one path; `None` when it is excluded or could not be read (recorded).
    fn archive_entry(
        &self,
        path: &Path,
        name: &[u8],
        parent_node: Option<&Node>,
        root_device: Option<u64>,
    ) -> Result<Option<Node>> {
        // Patterns that need no status first: an excluded entry is not even read.
        if let Some(n) = self.options.excludes.matching_any_kind(path) {
            return Ok(self.exclude(path, n));
        }
        self.progress.entry(path);
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENAMETOOLONG) => {
                // Paths are absolute: an entry deeper than the system's limit cannot be named.
                let limit = nix::libc::PATH_MAX - 1;
                let message = format!(
                    "not backed up: its path is {} bytes, longer than this system's limit of {limit} (PATH_MAX), and cairn reads entries by absolute path, so neither it nor anything below it is in the snapshot; shorten the names or the depth of that tree to back it up",
                    path.as_os_str().len()
                );
                self.record_error(path, &message);
                return Ok(None);
            }
            Err(e) => {
                self.record_error(path, &e);
                return Ok(None);
            }
        };
        if self.excluded_by_status(path, &meta) {
            return Ok(None);
        }
        let Some(kind) = kind_of(&meta) else {
            self.record_error(path, &"unknown file type, skipped");
            return Ok(None);
        };
        let mut node = match node_from(name, path, &meta, kind, &self.names) {
            Ok(n) => n,
            Err(e) => {
                self.record_error(path, &e);
                return Ok(None);
            }
        };
        match kind {
            NodeKind::File if !self.fill_file(path, &mut node, parent_node)? => return Ok(None),
            NodeKind::File => {
                self.counters
                    .total_bytes
                    .fetch_add(node.size, Ordering::Relaxed);
            }
            NodeKind::Dir => {
                let root_device = root_device.unwrap_or(meta.dev());
                let descend = !self.options.one_file_system || meta.dev() == root_device;
                let parent_sub = self.parent_subtree(parent_node)?;
                // A tagged directory keeps only its tag file (restic's and tar's rule for
                // --exclude-caches and --exclude-if-present): the snapshot still shows what was
                // left out, and why.
                let tag = self.tag_of(path);
                let tree = if descend {
                    match self.archive_dir(path, parent_sub.as_ref(), root_device, tag)? {
                        Some(t) => t,
                        None => return Ok(None),
                    }
                } else {
                    Tree::default()
                };
                let id = self.reuse_or_store_tree(tree, parent_node, parent_sub.as_ref())?;
                let counter = match parent_node.and_then(|n| n.subtree) {
                    None => &self.counters.dirs_new,
                    Some(old) if old == id => &self.counters.dirs_unchanged,
                    Some(_) => &self.counters.dirs_changed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                node.subtree = Some(id);
            }
            _ => {}
        }
        Ok(Some(node))
    }

    /// Counts and reports an entry left out by pattern number `n`.
    fn exclude(&self, path: &Path, n: usize) -> Option<Node> {
        self.exclude_hits[n].fetch_add(1, Ordering::Relaxed);
        let pattern = &self.options.excludes.patterns()[n];
        self.progress.excluded(path, &format!("pattern {pattern}"));
        None
    }

    /// Whether the entry is left out by what its status tells: a directory-only pattern, a tag file
    /// inside the directory, or its size.
    fn excluded_by_status(&self, path: &Path, meta: &std::fs::Metadata) -> bool {
        if meta.is_dir() {
            if let Some(n) = self.options.excludes.matching_dir(path) {
                self.exclude(path, n);
                return true;
            }
        }
        match self.options.exclude_larger_than {
            Some(limit) if meta.is_file() && meta.len() > limit => {
                self.progress
                    .excluded(path, &format!("{} bytes, more than {limit}", meta.len()));
                true
            }
            _ => false,
        }
    }

    /// The name of the tag file that marks the directory `path` for `--exclude-if-present` or
    /// `--exclude-caches`, if one does.
    fn tag_of(&self, path: &Path) -> Option<&str> {
        let tag = self
            .options
            .exclude_if_present
            .iter()
            .find(|t| t.marks(path))?;
        self.progress
            .excluded(path, &format!("its contents but the tag file {}", tag.name));
        Some(&tag.name)
    }

    /// Reads a directory's entries in parallel; `None` when the directory itself cannot be listed.
    /// With `only`, the directory is tagged: that entry alone is kept.
    fn archive_dir(
        &self,
        path: &Path,
        parent: Option<&Tree>,
        root_device: u64,
        only: Option<&str>,
    ) -> Result<Option<Tree>> {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                self.record_error(path, &e);
                return Ok(None);
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => names.push(e.file_name()),
                Err(e) => self.record_error(path, &e),
            }
        }
        if let Some(tag) = only {
            names.retain(|n| n.as_bytes() == tag.as_bytes());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let nodes = names
            .par_iter()
            .map(|name| {
                let bytes = name.as_bytes();
                let parent_node = parent.and_then(|t| t.find(bytes));
                self.archive_entry(&path.join(name), bytes, parent_node, Some(root_device))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Tree {
            nodes: nodes.into_iter().flatten().collect(),
        }))
    }

    /// Fills a file's content; returns false when it could not be read (recorded).
    fn fill_file(&self, path: &Path, node: &mut Node, parent_node: Option<&Node>) -> Result<bool> {
        if let Some(old) = parent_node.filter(|old| unchanged(old, node)) {
            if self.all_indexed(&old.content)? {
                node.content = old.content.clone();
                node.size = old.size;
                self.counters
                    .files_unchanged
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
        }
        let link_key = (node.links > 1).then_some((node.device, node.inode));
        // A file changed between reading one link and seeing another is read again: the content
        // read before would be stored with the new mtime, which the next backup trusts.
        let status = LinkStatus::of(node);
        let cached = link_key.and_then(|k| {
            self.hardlinks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&k)
                .filter(|(seen, _)| *seen == status)
                .map(|(_, content)| content.clone())
        });
        let content = match cached {
            Some(c) => c,
            None => {
                let parent_content = parent_node
                    .filter(|n| n.kind == NodeKind::File)
                    .map(|n| n.content.as_slice());
                let reader = self
                    .content_reader(self.chunker, self.saver.config().zstd_level)
                    .with_parent(parent_content, &self.anchor_cache)
                    .recording_anchors(
                        !self.options.dry_run
                            && anchors::file_keeps_anchors(node.size, parent_content.is_some()),
                    );
                match reader.read_file(path) {
                    Ok(c) => {
                        reader.keep_anchors(&self.anchor_cache, &c, parent_content);
                        c
                    }
                    Err(e) if e.kind() == ErrorKind::SourceIo => {
                        self.record_error(path, &e);
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if let Some(k) = link_key {
            self.hardlinks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(k, (status, content.clone()));
        }
        node.size = content.iter().map(ContentItem::len).sum();
        node.content = content;
        let counter = if parent_node.is_some() {
            &self.counters.files_changed
        } else {
            &self.counters.files_new
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.progress.file_read(path, parent_node.is_none());
        Ok(true)
    }

    fn all_indexed(&self, content: &[ContentItem]) -> Result<bool> {
        let ids: Vec<BlobId> = content.iter().filter_map(ContentItem::data_id).collect();
        Ok(self.saver.known_many(&ids)?.into_iter().all(|known| known))
    }
}

/// A tree of the parent snapshot, or `None` when it is damaged or its pack is lost: the parent only
/// spares reading unchanged files, so the backup goes on as if the directory were new and stays
/// whole (`check` names the damaged parent; the lost pack is reported by the backup itself).
fn parent_tree(repo: &IndexedRepository, id: &TreeId) -> Result<Option<Tree>> {
    match repo.load_tree(id) {
        Ok(tree) => Ok(Some(tree)),
        Err(e) if e.is_damage() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A multiply-linked file's content as read, with the status seen before the read.
type LinkContent = (LinkStatus, Vec<ContentItem>);

/// What a file's status says of its content: a link's content read earlier is reused only while
/// this is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LinkStatus {
    mtime: Timestamp,
    ctime: Timestamp,
    size: u64,
}

impl LinkStatus {
    fn of(node: &Node) -> Self {
        LinkStatus {
            mtime: node.mtime,
            ctime: node.ctime,
            size: node.size,
        }
    }
}

/// Whether a file looks untouched since the parent snapshot (the metadata restic and Borg trust too).
fn unchanged(old: &Node, new: &Node) -> bool {
    old.kind == NodeKind::File
        && old.mtime == new.mtime
        && old.ctime == new.ctime
        && old.inode == new.inode
        && old.device == new.device
        && old.size == new.size
}
