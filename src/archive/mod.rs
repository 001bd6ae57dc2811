//! Backup: walk the sources, compare with the parent snapshot, feed contents through the saver, write trees and the snapshot last.

mod content;
mod metadata;
mod sources;

pub use sources::{normalize_sources, ExcludeMatcher};

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
use crate::format::snapshot::{Snapshot, SourceError, Summary};
use crate::format::tree::{ContentItem, Node, NodeKind, Timestamp, Tree};
use crate::id::{BlobId, BlobType, PackId, SnapshotId, TreeId};
use crate::ops::lease::HeldLease;
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
    /// Entries to leave out.
    pub excludes: ExcludeMatcher,
    /// Do not descend into other file systems.
    pub one_file_system: bool,
    /// Parent snapshot to compare against (default: latest with the same host and paths).
    pub parent: Option<SnapshotId>,
    /// The time recorded as the snapshot's (default: now), for imports and tests.
    pub time: Option<chrono::DateTime<chrono::Utc>>,
}

/// Where the data comes from.
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

/// Progress callbacks (the library never draws; the CLI does).
pub trait BackupProgress: Sync {
    /// `n` more bytes of content were read.
    fn bytes(&self, _n: u64) {}
    /// One more entry (file, directory, ...) was processed.
    fn entry(&self, _path: &Path) {}
    /// A source could not be read; the backup goes on.
    fn warning(&self, _error: &SourceError) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl BackupProgress for NoProgress {}

/// The result of a backup.
#[derive(Clone, Debug)]
pub struct BackupOutcome {
    /// The snapshot written.
    pub snapshot_id: SnapshotId,
    /// Its content.
    pub snapshot: Snapshot,
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
}

struct Archiver<'a, 'r> {
    repo: &'r IndexedRepository,
    saver: &'a BlobSaver<'r>,
    options: &'a BackupOptions,
    progress: &'a dyn BackupProgress,
    names: NameCache,
    counters: Counters,
    errors: Mutex<Vec<SourceError>>,
    // Files with several links, by (device, inode): read once, reused for every link.
    hardlinks: Mutex<HashMap<(u64, u64), Vec<ContentItem>>>,
    chunker: ChunkerParams,
    // Streams (database dumps) use smaller chunks: their day-to-day edits are scattered.
    stream_chunker: ChunkerParams,
}

/// Runs a backup and writes its snapshot.
///
/// # Errors
/// When the repository fails or no source can be read at all; unreadable entries are only recorded.
pub fn backup(
    repo: &IndexedRepository,
    source: BackupSource<'_>,
    options: &BackupOptions,
    progress: &dyn BackupProgress,
) -> Result<BackupOutcome> {
    // The lease comes before reading the pending-deletion records: a prune waits for every backup
    // that may have missed its record (FORMAT.md §12).
    let lease = HeldLease::acquire(repo.repo(), LeaseKind::Backup)?;
    lease.hold_while(repo.repo(), |lease| {
        let condemned = crate::ops::pending::condemned_packs(repo.repo())?;
        // Only an index listed after the records were read is trusted: one read earlier may name
        // packs a prune has deleted since, their record gone too. The CLI opens the index without
        // reading it (`into_indexed_unsynced`), so this is its only listing.
        repo.refresh_index()?;
        backup_leased(repo, source, options, progress, lease, condemned)
    })
}

fn backup_leased(
    repo: &IndexedRepository,
    source: BackupSource<'_>,
    options: &BackupOptions,
    progress: &dyn BackupProgress,
    lease: &HeldLease,
    condemned: HashSet<PackId>,
) -> Result<BackupOutcome> {
    let started = Instant::now();
    let start_time = options.time.unwrap_or_else(chrono::Utc::now);
    let host = match &options.host {
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
    };
    let paths: Vec<String> = match &source {
        BackupSource::Paths(p) => {
            let mut v: Vec<String> = p.iter().map(|p| p.display().to_string()).collect();
            v.sort();
            v
        }
        BackupSource::Stdin { name, .. } => vec![format!("/{name}")],
    };
    let parent = find_parent(repo, options, &host, &paths)?;
    let parent_tree = match &parent {
        Some((_, snap)) => Some(repo.load_tree(&snap.tree_id())?),
        None => None,
    };
    let saver = repo.saver_excluding(condemned);
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
    };
    let root = crate::threads::run_in_pool(|| match source {
        BackupSource::Paths(paths) => archiver.archive_paths(&paths, parent_tree.as_ref()),
        BackupSource::Stdin { name, reader } => {
            archiver.archive_stdin(&name, reader, parent_tree.as_ref())
        }
    })?;
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
        total_bytes: None,
        duration_secs: started.elapsed().as_secs_f64(),
        errors: archiver
            .errors
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
    };
    let snapshot = Snapshot {
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
    };
    lease.ensure_valid()?;
    let snapshot_id = repo.repo().save_snapshot(&snapshot)?;
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
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
    Ok(repo
        .repo()
        .snapshots()?
        .into_iter()
        .rev()
        .find(|(_, s)| s.host == host && s.paths == paths))
}

fn now_timestamp() -> Timestamp {
    let now = chrono::Utc::now();
    Timestamp {
        secs: now.timestamp(),
        nanos: now.timestamp_subsec_nanos().min(999_999_999),
    }
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

    fn archive_stdin(
        &self,
        name: &str,
        reader: Box<dyn Read + Send + '_>,
        parent: Option<&Tree>,
    ) -> Result<TreeId> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::invalid_input(format!(
                "--stdin-name {name:?} must be a plain file name (no '/')"
            )));
        }
        let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
        node.mode = 0o644;
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        node.uid = uid;
        node.gid = gid;
        node.mtime = now_timestamp();
        node.ctime = node.mtime;
        node.links = 1;
        // A stream is always read in full: it has no metadata that could prove it unchanged.
        let level = self.saver.config().zstd_level_for_streams();
        self.content_reader(self.stream_chunker, level)
            .read_stream(reader, &mut node.content)
            .map_err(|e| e.context("standard input"))?;
        node.size = node.content.iter().map(ContentItem::len).sum();
        let previous = parent.and_then(|p| p.find(name.as_bytes()));
        let counter = match previous {
            None => &self.counters.files_new,
            Some(old) if old.content == node.content => &self.counters.files_unchanged,
            Some(_) => &self.counters.files_changed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.store_tree(Tree { nodes: vec![node] })
    }

    fn archive_paths(&self, paths: &[PathBuf], parent: Option<&Tree>) -> Result<TreeId> {
        let mut readable = Vec::with_capacity(paths.len());
        for p in paths {
            match std::fs::symlink_metadata(p) {
                Ok(_) => readable.push(p.clone()),
                Err(e) => self.record_error(p, &e),
            }
        }
        let trie = SourceTrie::build(&readable);
        if readable.is_empty() {
            return Err(Error::invalid_input(
                "none of the paths to back up exists or can be read; nothing was saved",
            ));
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
            } else {
                let meta = match std::fs::symlink_metadata(&path) {
                    Ok(m) => m,
                    Err(_) => continue, // the source below it is missing; already recorded
                };
                let mut node = node_from(name, &path, &meta, NodeKind::Dir, &self.names)
                    .map_err(|e| Error::io(ErrorKind::SourceIo, "cannot read", &path, e))?;
                let parent_sub = self.parent_subtree(parent_node)?;
                node.subtree = Some(self.archive_trie(child, &path, parent_sub.as_ref())?);
                Some(node)
            };
            nodes.extend(node);
        }
        self.store_tree(Tree { nodes })
    }

    fn parent_subtree(&self, parent_node: Option<&Node>) -> Result<Option<Tree>> {
        match parent_node {
            Some(Node {
                kind: NodeKind::Dir,
                subtree: Some(id),
                ..
            }) => Ok(Some(self.repo.load_tree(id)?)),
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
        if self.options.excludes.is_excluded(path) {
            return Ok(None);
        }
        self.progress.entry(path);
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.record_error(path, &e);
                return Ok(None);
            }
        };
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
            NodeKind::Dir => {
                let root_device = root_device.unwrap_or(meta.dev());
                let descend = !self.options.one_file_system || meta.dev() == root_device;
                let parent_sub = self.parent_subtree(parent_node)?;
                let tree = if descend {
                    match self.archive_dir(path, parent_sub.as_ref(), root_device)? {
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

    /// Reads a directory's entries in parallel; `None` when the directory itself cannot be listed.
    fn archive_dir(
        &self,
        path: &Path,
        parent: Option<&Tree>,
        root_device: u64,
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
        let cached = link_key.and_then(|k| {
            self.hardlinks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&k)
                .cloned()
        });
        let content = match cached {
            Some(c) => c,
            None => match self
                .content_reader(self.chunker, self.saver.config().zstd_level)
                .read_file(path)
            {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::SourceIo => {
                    self.record_error(path, &e);
                    return Ok(false);
                }
                Err(e) => return Err(e),
            },
        };
        if let Some(k) = link_key {
            self.hardlinks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(k, content.clone());
        }
        node.size = content.iter().map(ContentItem::len).sum();
        node.content = content;
        let counter = if parent_node.is_some() {
            &self.counters.files_changed
        } else {
            &self.counters.files_new
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    fn all_indexed(&self, content: &[ContentItem]) -> Result<bool> {
        let ids: Vec<BlobId> = content
            .iter()
            .filter_map(|item| match item {
                ContentItem::Data { id, .. } => Some(*id),
                ContentItem::Hole { .. } => None,
            })
            .collect();
        Ok(self.saver.known_many(&ids)?.into_iter().all(|known| known))
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
