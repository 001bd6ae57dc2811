//! Searching snapshots for entries whose name or path matches a glob. Matches below a subtree
//! are remembered by (tree id, path), so a directory that did not change between snapshots is
//! searched once however many snapshots hold it. The walk keeps a stack, not recursion, and
//! memory linear in depth.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use crate::archive::ExcludeMatcher;
use crate::browse::walk::{subtree_of, NamePath};
use crate::error::Result;
use crate::format::tree::{Node, NodeKind};
use crate::id::TreeId;
use crate::repo::TreeLoader;

/// The matches below one tree: its own matching entries and the results of its subdirectories,
/// in path order. Unchanged subtrees share one `Found` between snapshots instead of copies.
/// Paths are not stored: each item holds its name, and [`Found::for_each`] rebuilds the path, so
/// memory stays linear in depth (a full path per match grows with depth squared).
#[derive(Debug, Default)]
pub struct Found {
    items: Vec<Item>,
}

#[derive(Debug)]
enum Item {
    /// A matching entry (without its chunk list, which a listing never needs).
    Match(Box<Node>),
    /// The matches below the subdirectory of this name.
    Below(Vec<u8>, Arc<Found>),
}

impl Found {
    /// Calls `each` with the absolute path and entry of every match, in path order.
    ///
    /// # Errors
    /// Whatever `each` returns.
    pub fn for_each(&self, mut each: impl FnMut(&[u8], &Node) -> Result<()>) -> Result<()> {
        // A stack instead of recursion: directory depth is unbounded.
        let mut path = NamePath::new(b"");
        let mut stack = vec![self.items.iter()];
        while let Some(items) = stack.last_mut() {
            match items.next() {
                Some(Item::Match(node)) => {
                    path.push(&node.name);
                    each(path.bytes(), node)?;
                    path.pop();
                }
                Some(Item::Below(name, found)) => {
                    path.push(name);
                    stack.push(found.items.iter());
                }
                None => {
                    stack.pop();
                    path.pop();
                }
            }
        }
        Ok(())
    }
}

impl Drop for Found {
    // A chain of results as deep as the snapshot would be dropped one recursion per level.
    fn drop(&mut self) {
        let mut pending = std::mem::take(&mut self.items);
        while let Some(item) = pending.pop() {
            if let Item::Below(_, found) = item {
                if let Ok(mut found) = Arc::try_unwrap(found) {
                    pending.append(&mut found.items);
                }
            }
        }
    }
}

/// A directory being searched: its matches so far and the entries left.
struct Frame {
    key: (TreeId, u32),
    name: Vec<u8>,
    nodes: std::vec::IntoIter<Node>,
    items: Vec<Item>,
}

/// A search for one pattern, reusable across the snapshots of a repository.
pub struct Finder<'a> {
    loader: &'a TreeLoader<'a>,
    pattern: ExcludeMatcher,
    // Everything that matches below a tree at a path; unchanged subtrees hit this. Paths are
    // numbered: (parent's number, name) -> number, one entry per directory path, the root 0.
    memo: HashMap<(TreeId, u32), Arc<Found>>,
    paths: HashMap<(u32, Vec<u8>), u32>,
    trees_loaded: u64,
}

impl<'a> Finder<'a> {
    /// A search for `pattern`, with the rules of exclude patterns ([`ExcludeMatcher::with_base`]):
    /// `/etc/ssh` is that path, `*.conf` or `etc/ssh` match at any depth, `ssh/` directories only.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed glob.
    pub fn new(loader: &'a TreeLoader<'a>, pattern: &str) -> Result<Self> {
        Ok(Finder {
            loader,
            pattern: ExcludeMatcher::new(&[pattern])?,
            memo: HashMap::new(),
            paths: HashMap::new(),
            trees_loaded: 0,
        })
    }

    /// Trees loaded so far (the memo spares the others).
    pub fn trees_loaded(&self) -> u64 {
        self.trees_loaded
    }

    /// Every match in the snapshot whose root tree is `root`, in path order.
    ///
    /// # Errors
    /// Repository errors.
    pub fn search(&mut self, root: &TreeId) -> Result<Arc<Found>> {
        if let Some(found) = self.memo.get(&(*root, 0)) {
            return Ok(found.clone());
        }
        let mut path = NamePath::new(b"");
        let mut stack = vec![self.open((*root, 0), Vec::new())?];
        loop {
            let frame = stack.last_mut().expect("the root frame is popped last");
            let Some(node) = frame.nodes.next() else {
                let frame = stack.pop().expect("a frame is on the stack");
                path.pop();
                let found = Arc::new(Found { items: frame.items });
                self.memo.insert(frame.key, found.clone());
                match stack.last_mut() {
                    Some(parent) if !found.items.is_empty() => {
                        parent.items.push(Item::Below(frame.name, found));
                    }
                    Some(_) => {}
                    None => return Ok(found),
                }
                continue;
            };
            path.push(&node.name);
            if self.pattern.is_excluded(
                Path::new(OsStr::from_bytes(path.bytes())),
                node.kind == NodeKind::Dir,
            ) {
                let mut slim = node.clone();
                slim.content = Vec::new();
                frame.items.push(Item::Match(Box::new(slim)));
            }
            if node.kind != NodeKind::Dir {
                path.pop();
                continue;
            }
            let sub = subtree_of(&node, path.bytes())?;
            let next = self.paths.len() as u32 + 1;
            let number = *self
                .paths
                .entry((frame.key.1, node.name.clone()))
                .or_insert(next);
            match self.memo.get(&(sub, number)) {
                Some(found) => {
                    if !found.items.is_empty() {
                        frame.items.push(Item::Below(node.name, found.clone()));
                    }
                    path.pop();
                }
                // Its name stays pushed until its frame is done.
                None => stack.push(self.open((sub, number), node.name)?),
            }
        }
    }

    fn open(&mut self, key: (TreeId, u32), name: Vec<u8>) -> Result<Frame> {
        self.trees_loaded += 1;
        Ok(Frame {
            key,
            name,
            nodes: self.loader.load(&key.0)?.nodes.into_iter(),
            items: Vec::new(),
        })
    }
}
