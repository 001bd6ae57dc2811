//! Restore: snapshot -> trees -> index -> pack ranges -> files, then metadata, directories last.
//! Files are planned and written a batch at a time (memory holds one batch, whatever the snapshot's
//! size); within a batch contents are read by pack (`plan`, `contents`): each needed range once, each
//! blob opened once.
//!
//! Never writes bytes that failed verification: a damaged blob aborts the restore and removes the half-written file.

mod contents;
mod dry_run;
mod metadata;
pub mod plan;
mod trees;
mod verify;

pub use dry_run::{dry_run, DryRunReport};
pub use verify::file_matches;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::archive::ExcludeMatcher;
use crate::browse::walk::NamePath;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{ContentItem, Node, NodeKind};
use crate::id::{BlobType, TreeId};
use crate::repo::{fetch, IndexedRepository};
use contents::OutFile;

/// How to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Replace what exists in the target instead of refusing a non-empty target.
    pub overwrite: bool,
    /// Restore only entries matching these patterns (and what lies below a matching directory);
    /// `None` restores everything. Patterns match as in backup excludes: with a `/` against the
    /// absolute path in the snapshot, without one against the entry name.
    pub include: Option<ExcludeMatcher>,
    /// Leave out entries matching these patterns, and everything below them.
    pub exclude: ExcludeMatcher,
    /// After writing each file, read it back and check every chunk against its id.
    pub verify: bool,
    /// Files planned and written together; `None` is 32,768. Smaller batches hold less in memory
    /// and read a blob shared by files of several batches once per batch.
    pub files_per_batch: Option<usize>,
}

/// What to restore: a tree's contents, or one entry.
#[derive(Clone, Copy, Debug)]
pub enum RestoreRoot<'a> {
    /// The entries of `tree` land directly in the target; `dir` (when the tree is a directory
    /// rather than the snapshot root) gives the target its metadata.
    Tree {
        /// The tree whose contents are restored.
        tree: TreeId,
        /// The directory entry holding it, if any.
        dir: Option<&'a Node>,
    },
    /// One entry (file, symlink, ...) restored as `target/<its name>`.
    Entry(&'a Node),
}

/// Progress callbacks.
pub trait RestoreProgress: Sync {
    /// `files` more regular files holding `bytes` of data will be written. Called once per batch
    /// of files (a batch holds up to 32,768 files; a smaller restore is announced whole at once).
    fn planned(&self, _files: u64, _bytes: u64) {}
    /// `n` more bytes of content written.
    fn bytes(&self, _n: u64) {}
    /// A non-fatal problem (metadata that could not be applied).
    fn warning(&self, _message: &str) {}
}

/// A progress sink that ignores everything.
pub struct NoRestoreProgress;
impl RestoreProgress for NoRestoreProgress {}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Regular files written (hardlinks included).
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Other entries (symlinks, FIFOs, devices).
    pub others: u64,
    /// Bytes of content written.
    pub bytes: u64,
    /// Files read back and checked against the snapshot (with `verify`).
    pub verified: u64,
    /// Problems that did not stop the restore.
    pub warnings: Vec<String>,
}

struct FileJob {
    path: PathBuf,
    node: Node,
}

struct Restorer<'a> {
    repo: &'a IndexedRepository,
    options: &'a RestoreOptions,
    progress: &'a dyn RestoreProgress,
    /// Every tree below the root, fetched before planning ([`trees::load_all`]).
    trees: Option<trees::TreeStore>,
    /// Files planned and not yet written: at most one batch ([`BATCH_FILES`], [`BATCH_ITEMS`]).
    files: Vec<FileJob>,
    /// Content items of the files in `files`.
    batch_items: usize,
    /// Hardlinks made once every file is written: (first path, link path, the link's entry).
    links: Vec<(PathBuf, PathBuf, Node)>,
    /// The files written for multiply-linked entries, by (device, inode): each with the entry it
    /// was written from. A later entry links to one only when content and metadata agree; one
    /// that differs (inode numbers reused, or a tree written to mislead) gets a file of its own.
    link_sources: HashMap<(u64, u64), Vec<(PathBuf, Node)>>,
    // Applied after contents, deepest directories last in the list's reverse order.
    dirs: Vec<(PathBuf, Node)>,
    stats: RestoreStats,
}

/// Files written per batch: the files of a snapshot are planned and written a batch at a time, so
/// memory holds one batch's jobs and read plan (about a kilobyte per file), whatever the snapshot's
/// size. Each batch reads its blobs by pack; a blob shared by files of two batches is read twice.
const BATCH_FILES: usize = 32 * 1024;
/// Content items (chunks and holes) per batch: a batch of a few huge files ends early.
const BATCH_ITEMS: usize = 256 * 1024;

/// Restores the tree `root` into `target` (the snapshot's absolute paths appear below it).
///
/// # Errors
/// `InvalidInput` for a non-empty target without `overwrite`; `Corrupted` when repository data is damaged.
pub fn restore(
    repo: &IndexedRepository,
    root: &TreeId,
    target: &Path,
    options: &RestoreOptions,
    progress: &dyn RestoreProgress,
) -> Result<RestoreStats> {
    let root = RestoreRoot::Tree {
        tree: *root,
        dir: None,
    };
    restore_from(repo, root, b"", target, options, progress)
}

/// Restores `root`, which lies at the absolute path `source` of the snapshot (`b""` for the
/// snapshot root; include and exclude patterns see paths below it), into `target`.
///
/// # Errors
/// `InvalidInput` for a non-empty target (or, for one entry, an existing `target/<name>`)
/// without `overwrite`; `Corrupted` when repository data is damaged; `Other` when `verify`
/// finds a written file that differs from the snapshot.
pub fn restore_from(
    repo: &IndexedRepository,
    root: RestoreRoot<'_>,
    source: &[u8],
    target: &Path,
    options: &RestoreOptions,
    progress: &dyn RestoreProgress,
) -> Result<RestoreStats> {
    check_root_target(root, target, options)?;
    fs::create_dir_all(target)
        .map_err(|e| Error::io(ErrorKind::Other, "cannot create", target, e))?;
    let mut r = Restorer {
        repo,
        options,
        progress,
        trees: None,
        files: Vec::new(),
        batch_items: 0,
        links: Vec::new(),
        link_sources: HashMap::new(),
        dirs: Vec::new(),
        stats: RestoreStats::default(),
    };
    crate::threads::run_in_pool(|| {
        match root {
            RestoreRoot::Tree { tree, dir } => {
                r.trees = Some(trees::load_all(repo, &tree, target)?);
                let nodes = r.tree_nodes(&tree)?;
                r.plan_nodes(&tree, nodes, target, source, false)?;
                r.trees = None;
                if let Some(node) = dir {
                    // The target takes the place of the directory: its metadata too, applied last.
                    r.dirs.push((target.to_path_buf(), node.clone()));
                }
            }
            RestoreRoot::Entry(node) => {
                let parent = source
                    .iter()
                    .rposition(|&b| b == b'/')
                    .map_or(&source[..0], |i| &source[..i]);
                // A lone entry is never a directory, so no tree id is ever named in a message.
                r.plan_nodes(
                    &TreeId::default(),
                    vec![node.clone()],
                    target,
                    parent,
                    false,
                )?;
            }
        }
        r.write_batch()?;
        r.finish()
    })
}

/// Refuses what `root` would overwrite without `overwrite`: a non-empty target for a tree, an
/// existing `target/<name>` for one entry.
fn check_root_target(root: RestoreRoot<'_>, target: &Path, options: &RestoreOptions) -> Result<()> {
    match root {
        RestoreRoot::Tree { .. } => check_target(target, options),
        RestoreRoot::Entry(node) => {
            let path = target.join(OsStr::from_bytes(&node.name));
            if !options.overwrite && fs::symlink_metadata(&path).is_ok() {
                return Err(Error::invalid_input(format!(
                    "{} exists; remove it or pass --overwrite",
                    path.display()
                )));
            }
            Ok(())
        }
    }
}

fn check_target(target: &Path, options: &RestoreOptions) -> Result<()> {
    match fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() && !options.overwrite {
                return Err(Error::invalid_input(format!(
                    "the restore target {} exists and is not empty; choose an empty directory or pass --overwrite",
                    target.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            ErrorKind::InvalidInput,
            "cannot use restore target",
            target,
            e,
        )),
    }
}

/// Whether the entry at snapshot path `source` is walked (not excluded), and whether it is
/// restored itself (`included`: an ancestor matched an include pattern, or it does, or there is
/// none). A directory walked but not included is created only if something below it is.
fn selected(options: &RestoreOptions, source: &Path, is_dir: bool, included: bool) -> (bool, bool) {
    if options.exclude.is_excluded(source, is_dir) {
        return (false, false);
    }
    let included = included
        || options
            .include
            .as_ref()
            .is_none_or(|m| m.is_excluded(source, is_dir));
    (true, included)
}

pub(crate) fn io_err<'a>(what: &str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    let what = what.to_string();
    move |e| Error::io(ErrorKind::Other, &what, path, e)
}

impl Restorer<'_> {
    /// Plans the entries of one directory and everything below it, depth first with a stack (no
    /// recursion: any depth fits) and the paths kept as one buffer each: creates directories and
    /// special files, queues regular files. Returns whether anything was restored (a directory
    /// that only leads to nothing included is removed again).
    fn plan_nodes(
        &mut self,
        tree_id: &TreeId,
        nodes: Vec<Node>,
        dir: &Path,
        source_dir: &[u8],
        included: bool,
    ) -> Result<bool> {
        let mut path = NamePath::new(dir.as_os_str().as_bytes());
        let mut source = NamePath::new(source_dir);
        let mut stack = vec![PlanDir {
            tree: *tree_id,
            nodes: nodes.into_iter(),
            included,
            kept: false,
            entry: None,
        }];
        while let Some(top) = stack.last_mut() {
            let Some(node) = top.nodes.next() else {
                let done = stack.pop().expect("the stack is not empty");
                let (Some((node, created)), Some(parent)) = (done.entry, stack.last_mut()) else {
                    return Ok(done.kept);
                };
                let dir_path = PathBuf::from(OsStr::from_bytes(path.bytes()));
                path.pop();
                source.pop();
                if !done.included && !done.kept {
                    if created {
                        let _ = fs::remove_dir(&dir_path);
                    }
                    continue;
                }
                parent.kept = true;
                self.stats.dirs += 1;
                self.dirs.push((dir_path, node));
                continue;
            };
            let (tree, included) = (top.tree, top.included);
            path.push(&node.name);
            source.push(&node.name);
            match self.plan_entry(&tree, node, path.bytes(), source.bytes(), included)? {
                Planned::Skipped => {}
                Planned::Kept => {
                    if let Some(top) = stack.last_mut() {
                        top.kept = true;
                    }
                }
                Planned::Dir(below) => {
                    // Its name stays in both paths until its entries are done.
                    stack.push(*below);
                    continue;
                }
            }
            path.pop();
            source.pop();
        }
        Ok(false)
    }

    /// Plans one entry at `path` in the target (`source` in the snapshot); a directory is created
    /// and handed back to be entered.
    fn plan_entry(
        &mut self,
        tree_id: &TreeId,
        node: Node,
        path: &[u8],
        source: &[u8],
        included: bool,
    ) -> Result<Planned> {
        let is_dir = node.kind == NodeKind::Dir;
        let in_snapshot = Path::new(OsStr::from_bytes(source));
        let (walk, included) = selected(self.options, in_snapshot, is_dir, included);
        if !walk || (!included && node.kind != NodeKind::Dir) {
            return Ok(Planned::Skipped);
        }
        check_path_length(path, source)?;
        let path = PathBuf::from(OsStr::from_bytes(path));
        if self.options.overwrite {
            clear_conflict(&path, node.kind)?;
        }
        match node.kind {
            NodeKind::Dir => {
                let created = match fs::create_dir(&path) {
                    Ok(()) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {
                        false
                    }
                    Err(e) => return Err(io_err("cannot create directory", &path)(e)),
                };
                let sub = node.subtree.ok_or_else(|| {
                    Error::corrupted(format!(
                        "tree {tree_id}: directory {} has no subtree",
                        path.display()
                    ))
                })?;
                let nodes = self.tree_nodes(&sub)?;
                return Ok(Planned::Dir(Box::new(PlanDir {
                    tree: sub,
                    nodes: nodes.into_iter(),
                    included,
                    kept: false,
                    entry: Some((node, created)),
                })));
            }
            NodeKind::File => {
                if node.links > 1 {
                    let sources = self
                        .link_sources
                        .entry((node.device, node.inode))
                        .or_default();
                    if let Some((first, _)) = sources.iter().find(|(_, n)| same_inode(n, &node)) {
                        self.links.push((first.clone(), path, node));
                        return Ok(Planned::Kept);
                    }
                    let mut slim = node.clone();
                    slim.name.clear();
                    sources.push((path.clone(), slim));
                }
                self.batch_items += node.content.len();
                self.files.push(FileJob { path, node });
                let batch_files = self.options.files_per_batch.unwrap_or(BATCH_FILES);
                if self.files.len() >= batch_files.max(1) || self.batch_items >= BATCH_ITEMS {
                    self.write_batch()?;
                }
            }
            NodeKind::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&node.target), &path)
                    .map_err(io_err("cannot create symlink", &path))?;
                self.made_other(&path, &node);
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                match metadata::make_special(&path, &node) {
                    Ok(()) => self.made_other(&path, &node),
                    Err(e) => self.warn(format!("cannot create {}: {e}", path.display())),
                }
            }
            NodeKind::Socket => {
                self.warn(format!("{}: sockets are not restored", path.display()));
            }
        }
        Ok(Planned::Kept)
    }

    /// The entries of a tree, from those fetched before planning.
    fn tree_nodes(&self, id: &TreeId) -> Result<Vec<Node>> {
        match &self.trees {
            Some(store) => Ok(store.tree(self.repo, id)?.nodes),
            None => Ok(self.repo.load_tree(id)?.nodes),
        }
    }

    /// Applies the metadata of a symlink or special file just made: nothing the restore does later
    /// changes it, so it need not wait (nor take memory) until the end.
    fn made_other(&mut self, path: &Path, node: &Node) {
        if let Err(e) = metadata::apply(path, node) {
            self.warn(e);
        }
        self.stats.others += 1;
    }

    /// Announces and writes the files planned since the last batch.
    fn write_batch(&mut self) -> Result<()> {
        let data_bytes = self.files.iter().map(|job| data_len(&job.node)).sum();
        self.progress.planned(self.files.len() as u64, data_bytes);
        self.write_files()?;
        self.files.clear();
        self.batch_items = 0;
        Ok(())
    }

    fn warn(&mut self, message: String) {
        self.progress.warning(&message);
        self.stats.warnings.push(message);
    }

    /// Writes every file's contents, reading by pack (see `plan`), then per file verifies (with
    /// `verify`) and applies metadata: after all contents, so no later write changes an mtime.
    fn write_files(&mut self) -> Result<()> {
        let index = self.repo.index();
        let plan = plan::plan_reads(
            self.files.iter().map(|job| job.node.content.as_slice()),
            |ids| index.locate_many(ids, BlobType::Data),
            |i| format!("restoring {}", self.files[i].path.display()),
        )?;
        let out: Vec<OutFile<'_>> = self
            .files
            .iter()
            .map(|job| {
                // With --verify, metadata waits until the file is checked (its mode may forbid reading).
                let metadata = (!self.options.verify).then_some(&job.node);
                OutFile::new(&job.path, &job.node.content, metadata)
            })
            .collect();
        let deltas = plan
            .ranges
            .iter()
            .flat_map(|r| r.blobs.iter().map(|b| &b.entry));
        let bases = fetch::Bases::locate(self.repo, deltas)?;
        let written = contents::write_contents(self.repo, &plan, &bases, &out, self.progress)?;
        let warnings = Mutex::new(Vec::new());
        self.files
            .par_iter()
            .zip(&out)
            .try_for_each(|(job, file)| -> Result<()> {
                if let Some(applied) = file.metadata_applied() {
                    if let Err(e) = applied {
                        warnings
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(e.clone());
                    }
                    return Ok(());
                }
                file.ensure_exists()?;
                if self.options.verify {
                    // Before metadata: a mode without read permission must not stop the check.
                    verify::file_matches(self.repo.repo().key(), &job.path, &job.node.content)?;
                }
                if let Err(e) = metadata::apply(&job.path, &job.node) {
                    warnings.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                }
                Ok(())
            })?;
        self.stats.bytes += written;
        self.stats.files += self.files.len() as u64;
        if self.options.verify {
            self.stats.verified += self.files.len() as u64;
        }
        for w in warnings.into_inner().unwrap_or_else(|p| p.into_inner()) {
            self.warn(w);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<RestoreStats> {
        for (first, path, node) in std::mem::take(&mut self.links) {
            fs::hard_link(&first, &path).map_err(io_err("cannot create hardlink", &path))?;
            self.stats.files += 1;
            if self.options.verify {
                // A link is a path of its own: what it reads must be what the snapshot says of it.
                self.verify_link(&path, &node)?;
                self.stats.verified += 1;
            }
        }
        // Children were pushed before their parents: apply in push order, so a parent's mtime is set after its children change it.
        for (path, node) in std::mem::take(&mut self.dirs) {
            if let Err(e) = metadata::apply(&path, &node) {
                self.warn(e);
            }
        }
        Ok(self.stats)
    }
}

impl Restorer<'_> {
    /// Reads a hardlink back; its file's metadata is already applied, so a mode without read
    /// permission is lifted for the check and put back after it.
    fn verify_link(&self, path: &Path, node: &Node) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let unreadable = node.mode & 0o400 == 0;
        let set_mode = |mode: u32| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(io_err("cannot change the mode of", path))
        };
        if unreadable {
            set_mode(node.mode | 0o400)?;
        }
        let verified = verify::file_matches(self.repo.repo().key(), path, &node.content);
        if unreadable {
            set_mode(node.mode)?;
        }
        verified
    }
}

/// A directory being planned: the entries left, and what its own entry needs once they are done.
struct PlanDir {
    tree: TreeId,
    nodes: std::vec::IntoIter<Node>,
    /// Whether an include pattern matched it or an ancestor.
    included: bool,
    /// Whether anything below it is restored.
    kept: bool,
    /// Its entry, and whether this restore created it; `None` for where planning started.
    entry: Option<(Node, bool)>,
}

/// What planning one entry gave.
enum Planned {
    /// Left out by the include and exclude patterns.
    Skipped,
    /// Restored (or queued to be).
    Kept,
    /// A directory created, its entries to plan next.
    Dir(Box<PlanDir>),
}

/// The longest path the system accepts, the terminating NUL included.
const PATH_MAX: usize = nix::libc::PATH_MAX as usize;

/// Refuses an entry whose path in the target the system would refuse, with a message that says
/// which and what to do, before anything is created there.
fn check_path_length(path: &[u8], source: &[u8]) -> Result<()> {
    if path.len() < PATH_MAX {
        return Ok(());
    }
    let shown = |bytes: &[u8]| {
        let text = crate::browse::escape::escape(bytes);
        match text.char_indices().nth(120) {
            Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], bytes.len()),
            None => text,
        }
    };
    Err(Error::invalid_input(format!(
        "cannot restore {}: its path in the target would be {} bytes, and this system takes at most {} (PATH_MAX); restore a directory nearer to it on its own, to a short target: `cairn restore SNAPSHOT:/PATH/OF/A/DIRECTORY --target /r`",
        shown(source),
        path.len(),
        PATH_MAX - 1
    )))
}

/// Whether two entries of one (device, inode) may be one file: same content and the metadata a
/// link shares (the name, the times of the change detection and the link count aside).
fn same_inode(a: &Node, b: &Node) -> bool {
    a.content == b.content
        && a.size == b.size
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.user == b.user
        && a.group == b.group
        && a.mtime == b.mtime
        && a.xattrs == b.xattrs
}

/// Bytes of a file that are written (its holes are not).
fn data_len(node: &Node) -> u64 {
    node.content
        .iter()
        .filter(|item| matches!(item, ContentItem::Data { .. }))
        .map(ContentItem::len)
        .sum()
}

/// With `--overwrite`, removes what stands where an entry of another kind must go.
fn clear_conflict(path: &Path, kind: NodeKind) -> Result<()> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    let is_dir = meta.file_type().is_dir();
    if kind == NodeKind::Dir && is_dir {
        return Ok(());
    }
    let result = if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.map_err(io_err("cannot replace", path))
}
