//! Restore: snapshot -> trees -> index -> pack ranges -> files, then metadata, directories last.
//!
//! Never writes bytes that failed verification: a damaged blob aborts the restore and removes the half-written file.

mod metadata;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{ContentItem, Node, NodeKind};
use crate::id::{BlobType, TreeId};
use crate::repo::IndexedRepository;

/// How to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Replace what exists in the target instead of refusing a non-empty target.
    pub overwrite: bool,
}

/// Progress callbacks.
pub trait RestoreProgress: Sync {
    /// The snapshot was walked: `files` regular files holding `bytes` of data will be written.
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
    files: Vec<FileJob>,
    links: Vec<(PathBuf, PathBuf)>,
    link_sources: HashMap<(u64, u64), PathBuf>,
    // Applied after contents, deepest directories last in the list's reverse order.
    dirs: Vec<(PathBuf, Node)>,
    others: Vec<(PathBuf, Node)>,
    stats: RestoreStats,
}

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
    check_target(target, options)?;
    fs::create_dir_all(target)
        .map_err(|e| Error::io(ErrorKind::Other, "cannot create", target, e))?;
    let mut r = Restorer {
        repo,
        options,
        progress,
        files: Vec::new(),
        links: Vec::new(),
        link_sources: HashMap::new(),
        dirs: Vec::new(),
        others: Vec::new(),
        stats: RestoreStats::default(),
    };
    crate::threads::run_in_pool(|| {
        r.plan_dir(root, target)?;
        let data_bytes = r.files.iter().map(|job| data_len(&job.node)).sum();
        progress.planned(r.files.len() as u64, data_bytes);
        r.write_files()?;
        r.finish()
    })
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

fn io_err<'a>(what: &str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    let what = what.to_string();
    move |e| Error::io(ErrorKind::Other, &what, path, e)
}

impl Restorer<'_> {
    /// Walks a tree, creating directories and special files, and queueing regular files.
    fn plan_dir(&mut self, tree_id: &TreeId, dir: &Path) -> Result<()> {
        let tree = self.repo.load_tree(tree_id)?;
        for node in tree.nodes {
            let path = dir.join(OsStr::from_bytes(&node.name));
            if self.options.overwrite {
                clear_conflict(&path, node.kind)?;
            }
            match node.kind {
                NodeKind::Dir => {
                    match fs::create_dir(&path) {
                        Ok(()) => {}
                        Err(e)
                            if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
                        Err(e) => return Err(io_err("cannot create directory", &path)(e)),
                    }
                    self.stats.dirs += 1;
                    let sub = node.subtree.ok_or_else(|| {
                        Error::corrupted(format!(
                            "tree {tree_id}: directory {} has no subtree",
                            path.display()
                        ))
                    })?;
                    self.plan_dir(&sub, &path)?;
                    self.dirs.push((path, node));
                }
                NodeKind::File => {
                    if node.links > 1 {
                        let key = (node.device, node.inode);
                        if let Some(first) = self.link_sources.get(&key) {
                            self.links.push((first.clone(), path));
                            continue;
                        }
                        self.link_sources.insert(key, path.clone());
                    }
                    self.files.push(FileJob { path, node });
                }
                NodeKind::Symlink => {
                    std::os::unix::fs::symlink(OsStr::from_bytes(&node.target), &path)
                        .map_err(io_err("cannot create symlink", &path))?;
                    self.others.push((path, node));
                }
                NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                    match metadata::make_special(&path, &node) {
                        Ok(()) => self.others.push((path, node)),
                        Err(e) => self.warn(format!("cannot create {}: {e}", path.display())),
                    }
                }
                NodeKind::Socket => {
                    self.warn(format!("{}: sockets are not restored", path.display()));
                }
            }
        }
        Ok(())
    }

    fn warn(&mut self, message: String) {
        self.progress.warning(&message);
        self.stats.warnings.push(message);
    }

    fn write_files(&mut self) -> Result<()> {
        let bytes = AtomicU64::new(0);
        let warnings = Mutex::new(Vec::new());
        self.files.par_iter().try_for_each(|job| -> Result<()> {
            let written = self.write_file(job).inspect_err(|_| {
                let _ = fs::remove_file(&job.path);
            })?;
            bytes.fetch_add(written, Ordering::Relaxed);
            if let Err(e) = metadata::apply(&job.path, &job.node) {
                warnings.lock().unwrap_or_else(|p| p.into_inner()).push(e);
            }
            Ok(())
        })?;
        self.stats.bytes += bytes.into_inner();
        self.stats.files += self.files.len() as u64;
        for w in warnings.into_inner().unwrap_or_else(|p| p.into_inner()) {
            self.warn(w);
        }
        Ok(())
    }

    fn write_file(&self, job: &FileJob) -> Result<u64> {
        let path = &job.path;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io_err("cannot create", path))?;
        let mut written = 0u64;
        let mut pos = 0u64;
        for item in &job.node.content {
            match *item {
                ContentItem::Data { id, len } => {
                    let data = self
                        .repo
                        .read_blob(&id, BlobType::Data)
                        .map_err(|e| e.context(format!("restoring {}", path.display())))?;
                    if data.len() != len as usize {
                        return Err(Error::corrupted(format!(
                            "restoring {}: blob {id} has {} bytes, the tree says {len}",
                            path.display(),
                            data.len()
                        )));
                    }
                    file.write_all(&data)
                        .map_err(io_err("cannot write", path))?;
                    written += len as u64;
                    self.progress.bytes(len as u64);
                }
                ContentItem::Hole { len } => {
                    file.seek(SeekFrom::Current(len as i64))
                        .map_err(io_err("cannot seek in", path))?;
                }
            }
            pos += item.len();
        }
        // Trailing holes: extend without writing so they stay holes.
        file.set_len(pos)
            .map_err(io_err("cannot set length of", path))?;
        Ok(written)
    }

    fn finish(mut self) -> Result<RestoreStats> {
        for (first, path) in std::mem::take(&mut self.links) {
            fs::hard_link(&first, &path).map_err(io_err("cannot create hardlink", &path))?;
            self.stats.files += 1;
        }
        for (path, node) in std::mem::take(&mut self.others) {
            if let Err(e) = metadata::apply(&path, &node) {
                self.warn(e);
            }
            self.stats.others += 1;
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
