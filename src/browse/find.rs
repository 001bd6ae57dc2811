//! Searching snapshots for entries whose name or path matches a glob. Matches below a subtree
//! are remembered by (tree id, path), so a directory that did not change between snapshots is
//! searched once however many snapshots hold it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use crate::archive::ExcludeMatcher;
use crate::browse::trees::TreeLoader;
use crate::browse::walk::{child_path, subtree_of};
use crate::error::Result;
use crate::format::tree::{Node, NodeKind};
use crate::id::TreeId;

/// One matching entry.
#[derive(Clone, Debug)]
pub struct Match {
    /// Absolute path, raw bytes.
    pub path: Vec<u8>,
    /// The entry, without its chunk list (which a listing never needs).
    pub node: Node,
}

/// The matches below one tree: its own matching entries and the results of its subdirectories,
/// in path order. Unchanged subtrees share one `Found` between snapshots instead of copies.
#[derive(Debug, Default)]
pub struct Found {
    items: Vec<Item>,
}

#[derive(Debug)]
enum Item {
    Match(Box<Match>),
    Below(Arc<Found>),
}

impl Found {
    /// Calls `each` for every match, in path order.
    ///
    /// # Errors
    /// Whatever `each` returns.
    pub fn for_each(&self, mut each: impl FnMut(&Match) -> Result<()>) -> Result<()> {
        // A stack instead of recursion: directory depth is unbounded.
        let mut stack = vec![self.items.iter()];
        while let Some(items) = stack.last_mut() {
            match items.next() {
                Some(Item::Match(m)) => each(m)?,
                Some(Item::Below(found)) => stack.push(found.items.iter()),
                None => {
                    stack.pop();
                }
            }
        }
        Ok(())
    }
}

/// A search for one pattern, reusable across the snapshots of a repository.
pub struct Finder<'a> {
    loader: &'a TreeLoader<'a>,
    pattern: ExcludeMatcher,
    // Everything that matches below a tree at a path; unchanged subtrees hit this.
    memo: HashMap<(TreeId, Vec<u8>), Arc<Found>>,
    trees_loaded: u64,
}

impl<'a> Finder<'a> {
    /// A search for `pattern`: with a `/` it matches whole absolute paths, without one entry names.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed glob.
    pub fn new(loader: &'a TreeLoader<'a>, pattern: &str) -> Result<Self> {
        Ok(Finder {
            loader,
            pattern: ExcludeMatcher::new(&[pattern])?,
            memo: HashMap::new(),
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
        crate::threads::run_in_pool(|| self.below(root, b""))
    }

    fn below(&mut self, tree: &TreeId, prefix: &[u8]) -> Result<Arc<Found>> {
        let key = (*tree, prefix.to_vec());
        if let Some(found) = self.memo.get(&key) {
            return Ok(found.clone());
        }
        self.trees_loaded += 1;
        let mut found = Vec::new();
        for node in self.loader.load(tree)?.nodes {
            let path = child_path(prefix, &node.name);
            if self
                .pattern
                .is_excluded(Path::new(OsStr::from_bytes(&path)))
            {
                let mut slim = node.clone();
                slim.content = Vec::new();
                found.push(Item::Match(Box::new(Match {
                    path: path.clone(),
                    node: slim,
                })));
            }
            if node.kind == NodeKind::Dir {
                let sub = subtree_of(&node, &path)?;
                let below = self.below(&sub, &path)?;
                if !below.items.is_empty() {
                    found.push(Item::Below(below));
                }
            }
        }
        let found = Arc::new(Found { items: found });
        self.memo.insert(key, found.clone());
        Ok(found)
    }
}
