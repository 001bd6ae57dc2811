//! Comparing two snapshot trees by their entries alone: file contents are never read. Files
//! compare by their chunk lists, and a subtree whose id is the same on both sides is skipped
//! without being loaded, so the cost follows the size of the change, not of the snapshots. The
//! walk keeps a stack of directory pairs and one path buffer: memory linear in depth.

use crate::browse::walk::{subtree_of, walk, Descend, NamePath};
use crate::error::Result;
use crate::format::tree::{Node, NodeKind};
use crate::id::TreeId;
use crate::repo::TreeLoader;

/// How an entry differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// Same kind, different content (chunks, symlink target, device number).
    Content,
    /// Same content, different metadata (mode, owner, mtime, xattrs).
    Metadata,
    /// A different kind of entry (a file became a directory, ...).
    Type,
}

impl Change {
    /// One-letter marker: `+`, `-`, `M` (content), `U` (metadata only), `T` (type).
    pub fn marker(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Content => 'M',
            Change::Metadata => 'U',
            Change::Type => 'T',
        }
    }
}

/// One difference.
#[derive(Clone, Debug)]
pub struct Difference<'a> {
    /// Absolute path, raw bytes.
    pub path: &'a [u8],
    /// What changed.
    pub change: Change,
    /// The entry in the first snapshot.
    pub old: Option<&'a Node>,
    /// The entry in the second snapshot.
    pub new: Option<&'a Node>,
}

/// Counts and byte totals of a comparison. Bytes are file sizes from the trees.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiffStats {
    /// Entries only in the second snapshot.
    pub added: u64,
    /// Entries only in the first.
    pub removed: u64,
    /// Entries whose content changed.
    pub content_modified: u64,
    /// Entries whose metadata alone changed.
    pub metadata_modified: u64,
    /// Entries that changed kind.
    pub type_changed: u64,
    /// Bytes of the added files.
    pub bytes_added: u64,
    /// Bytes of the removed files.
    pub bytes_removed: u64,
    /// Bytes of the content-modified files in the first snapshot.
    pub bytes_modified_before: u64,
    /// Bytes of the content-modified files in the second snapshot.
    pub bytes_modified_after: u64,
    /// Directory pairs skipped because their trees were identical.
    pub trees_skipped: u64,
}

/// How `new` differs from `old`, if it does. A directory whose subtree alone differs is not a
/// difference by itself (its entries are).
pub fn compare(old: &Node, new: &Node) -> Option<Change> {
    if old.kind != new.kind {
        return Some(Change::Type);
    }
    let content_differs = match old.kind {
        NodeKind::File => old.size != new.size || old.content != new.content,
        NodeKind::Symlink => old.target != new.target,
        NodeKind::CharDevice | NodeKind::BlockDevice => old.rdev != new.rdev,
        NodeKind::Dir | NodeKind::Fifo | NodeKind::Socket => false,
    };
    if content_differs {
        return Some(Change::Content);
    }
    let metadata_differs = old.mode != new.mode
        || old.uid != new.uid
        || old.gid != new.gid
        || old.user != new.user
        || old.group != new.group
        || old.mtime != new.mtime
        || old.xattrs != new.xattrs;
    metadata_differs.then_some(Change::Metadata)
}

/// Compares two trees (either may be absent: everything in the other is added or removed) whose
/// entries lie below the absolute path `prefix`, calling `each` per difference in path order.
///
/// # Errors
/// Repository errors, or whatever `each` returns.
pub fn diff_trees(
    loader: &TreeLoader<'_>,
    old: Option<&TreeId>,
    new: Option<&TreeId>,
    prefix: &[u8],
    each: &mut (dyn FnMut(&Difference<'_>) -> Result<()> + Send),
) -> Result<DiffStats> {
    let mut differ = Differ::new(loader, each, prefix);
    differ.trees(old, new)?;
    differ.run()
}

/// Compares two entries found at the same path `path` (either may be absent).
///
/// # Errors
/// Repository errors, or whatever `each` returns.
pub fn diff_entries(
    loader: &TreeLoader<'_>,
    old: Option<&Node>,
    new: Option<&Node>,
    path: &[u8],
    each: &mut (dyn FnMut(&Difference<'_>) -> Result<()> + Send),
) -> Result<DiffStats> {
    let mut differ = Differ::new(loader, each, path);
    differ.entries(old, new)?;
    differ.run()
}

/// Two directories being compared: the entries of each not yet visited.
struct Pair {
    old: std::iter::Peekable<std::vec::IntoIter<Node>>,
    new: std::iter::Peekable<std::vec::IntoIter<Node>>,
}

struct Differ<'a, 'f> {
    loader: &'a TreeLoader<'a>,
    each: &'f mut (dyn FnMut(&Difference<'_>) -> Result<()> + Send),
    stats: DiffStats,
    /// The path of the entries compared now; a name per pair on the stack but the first.
    path: NamePath,
    /// The directory pairs entered and not finished, innermost last.
    stack: Vec<Pair>,
}

impl<'a, 'f> Differ<'a, 'f> {
    fn new(
        loader: &'a TreeLoader<'a>,
        each: &'f mut (dyn FnMut(&Difference<'_>) -> Result<()> + Send),
        path: &[u8],
    ) -> Self {
        Differ {
            loader,
            each,
            stats: DiffStats::default(),
            path: NamePath::new(path),
            stack: Vec::new(),
        }
    }

    /// Compares the pairs entered, depth first, until none is left.
    fn run(mut self) -> Result<DiffStats> {
        while let Some(pair) = self.stack.last_mut() {
            let order = match (pair.old.peek(), pair.new.peek()) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => {
                    self.stack.pop();
                    self.path.pop();
                    continue;
                }
            };
            let old = (order != std::cmp::Ordering::Greater)
                .then(|| pair.old.next())
                .flatten();
            let new = (order != std::cmp::Ordering::Less)
                .then(|| pair.new.next())
                .flatten();
            let name = old.as_ref().or(new.as_ref()).map(|n| n.name.clone());
            self.path.push(&name.unwrap_or_default());
            let depth = self.stack.len();
            self.entries(old.as_ref(), new.as_ref())?;
            if self.stack.len() == depth {
                // Nothing entered: the name goes now, not when a pair below is done.
                self.path.pop();
            }
        }
        Ok(self.stats)
    }

    /// Compares two trees at the current path: enters them (a pair on the stack) when they
    /// differ, reports everything in one of them when the other is absent.
    fn trees(&mut self, old: Option<&TreeId>, new: Option<&TreeId>) -> Result<()> {
        match (old, new) {
            (Some(a), Some(b)) if a == b => {
                self.stats.trees_skipped += 1;
            }
            (Some(a), Some(b)) => {
                let (a, b) = (self.loader.load(a)?.nodes, self.loader.load(b)?.nodes);
                self.stack.push(Pair {
                    old: a.into_iter().peekable(),
                    new: b.into_iter().peekable(),
                });
            }
            (Some(a), None) => self.everything(a, Change::Removed)?,
            (None, Some(b)) => self.everything(b, Change::Added)?,
            (None, None) => {}
        }
        Ok(())
    }

    fn entries(&mut self, old: Option<&Node>, new: Option<&Node>) -> Result<()> {
        let change = match (old, new) {
            (Some(a), Some(b)) => compare(a, b),
            (Some(_), None) => Some(Change::Removed),
            (None, Some(_)) => Some(Change::Added),
            (None, None) => None,
        };
        if let Some(change) = change {
            let path = std::mem::take(&mut self.path);
            let reported = self.report(path.bytes(), change, old, new);
            self.path = path;
            reported?;
        }
        let subtree = |n: Option<&Node>| -> Result<Option<TreeId>> {
            match n {
                Some(n) if n.kind == NodeKind::Dir => subtree_of(n, self.path.bytes()).map(Some),
                _ => Ok(None),
            }
        };
        let (a, b) = (subtree(old)?, subtree(new)?);
        self.trees(a.as_ref(), b.as_ref())
    }

    /// Reports every entry below `tree` as added or removed.
    fn everything(&mut self, tree: &TreeId, change: Change) -> Result<()> {
        let loader = self.loader;
        let path = std::mem::take(&mut self.path);
        let walked = walk(loader, tree, path.bytes(), |path, node| {
            let (old, new) = match change {
                Change::Removed => (Some(node), None),
                _ => (None, Some(node)),
            };
            self.report(path, change, old, new)?;
            Ok(Descend::Yes)
        });
        self.path = path;
        walked
    }

    fn report(
        &mut self,
        path: &[u8],
        change: Change,
        old: Option<&Node>,
        new: Option<&Node>,
    ) -> Result<()> {
        let file_size =
            |n: Option<&Node>| n.filter(|n| n.kind == NodeKind::File).map_or(0, |n| n.size);
        let s = &mut self.stats;
        match change {
            Change::Added => {
                s.added += 1;
                s.bytes_added += file_size(new);
            }
            Change::Removed => {
                s.removed += 1;
                s.bytes_removed += file_size(old);
            }
            Change::Content => {
                s.content_modified += 1;
                s.bytes_modified_before += file_size(old);
                s.bytes_modified_after += file_size(new);
            }
            Change::Metadata => s.metadata_modified += 1,
            Change::Type => {
                s.type_changed += 1;
                s.bytes_removed += file_size(old);
                s.bytes_added += file_size(new);
            }
        }
        (self.each)(&Difference {
            path,
            change,
            old,
            new,
        })
    }
}
