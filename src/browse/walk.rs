//! Depth-first, pre-order walks of snapshot trees without recursion (any depth fits in a
//! heap-allocated stack), with the visitor deciding whether to enter directories; and the two
//! ways walks keep the path they are at in memory linear in depth: [`NamePath`] (one buffer, a
//! name pushed per level entered) and [`PathChain`] (each directory holding its name and a link
//! to its parent, for walks whose pending directories are not a single line of ancestors).
//!
//! Never copies a whole path per level: a snapshot 100,000 levels deep would need gigabytes.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::TreeId;
use crate::repo::TreeLoader;

/// What the walk does after visiting a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descend {
    /// Visit its contents next.
    Yes,
    /// Skip its contents.
    No,
}

/// Visits every entry below `root` in name order, parents before children. `prefix` is the raw
/// absolute path of `root` (`b""` for the snapshot root, `b"/etc"` for /etc), and each visit gets
/// the entry's absolute path.
///
/// # Errors
/// Repository errors, or whatever `visit` returns.
pub fn walk(
    loader: &TreeLoader<'_>,
    root: &TreeId,
    prefix: &[u8],
    mut visit: impl FnMut(&[u8], &Node) -> Result<Descend>,
) -> Result<()> {
    let mut path = NamePath::new(prefix);
    let mut stack = vec![loader.load(root)?.nodes.into_iter()];
    while let Some(entries) = stack.last_mut() {
        let Some(node) = entries.next() else {
            stack.pop();
            path.pop();
            continue;
        };
        path.push(&node.name);
        if visit(path.bytes(), &node)? == Descend::Yes && node.kind == NodeKind::Dir {
            let sub = subtree_of(&node, path.bytes())?;
            // The name stays pushed while its entries are visited.
            stack.push(loader.load(&sub)?.nodes.into_iter());
        } else {
            path.pop();
        }
    }
    Ok(())
}

/// An absolute path (raw bytes) grown and shrunk one name at a time: one buffer and the length
/// it had before each name, so a walk's memory for its path is linear in depth.
#[derive(Clone, Debug, Default)]
pub struct NamePath {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl NamePath {
    /// Starts at `prefix` (`b""` or `b"/"` for the root, else an absolute path).
    pub fn new(prefix: &[u8]) -> Self {
        NamePath {
            bytes: prefix.to_vec(),
            ends: Vec::new(),
        }
    }

    /// Enters `name`: the path becomes `path/name`.
    pub fn push(&mut self, name: &[u8]) {
        self.ends.push(self.bytes.len());
        if !self.bytes.ends_with(b"/") {
            self.bytes.push(b'/');
        }
        self.bytes.extend_from_slice(name);
    }

    /// Leaves the last name pushed; at the starting prefix, does nothing.
    pub fn pop(&mut self) {
        if let Some(end) = self.ends.pop() {
            self.bytes.truncate(end);
        }
    }

    /// The path now.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Names pushed and not popped.
    pub fn depth(&self) -> usize {
        self.ends.len()
    }
}

/// A directory's path as its name and a link to its parent's: directories waiting in a walk's
/// stack share their ancestors, so the stack holds each name once (a full path per pending
/// directory grows with depth squared). The full path is built only when asked for, for a message.
#[derive(Debug)]
pub struct PathChain {
    parent: Option<Arc<PathChain>>,
    name: Vec<u8>,
}

impl PathChain {
    /// The root, `/`.
    pub fn root() -> Arc<Self> {
        Arc::new(PathChain {
            parent: None,
            name: Vec::new(),
        })
    }

    /// The directory `name` inside `parent`.
    pub fn child(parent: &Arc<Self>, name: &[u8]) -> Arc<Self> {
        Arc::new(PathChain {
            parent: Some(parent.clone()),
            name: name.to_vec(),
        })
    }

    /// The path with a trailing `/` (`/` for the root, `/a/b/` below), lossily as text.
    pub fn dir_display(&self) -> String {
        let mut names = Vec::new();
        let mut at = Some(self);
        while let Some(link) = at {
            if link.parent.is_some() {
                names.push(link.name.as_slice());
            }
            at = link.parent.as_deref();
        }
        let mut out = String::from("/");
        for name in names.iter().rev() {
            out.push_str(&String::from_utf8_lossy(name));
            out.push('/');
        }
        out
    }
}

impl Drop for PathChain {
    // Dropping a long chain link by link would recurse once per level: unlink it in a loop.
    fn drop(&mut self) {
        let mut next = self.parent.take();
        while let Some(link) = next {
            next = match Arc::try_unwrap(link) {
                Ok(mut owned) => owned.parent.take(),
                Err(_) => None,
            };
        }
    }
}

/// `dir/name` as raw bytes; `dir` is `b""` or `b"/"` for the root.
pub fn child_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let dir = dir.strip_suffix(b"/").unwrap_or(dir);
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    path.extend_from_slice(dir);
    path.push(b'/');
    path.extend_from_slice(name);
    path
}

/// A directory's subtree id, or a `Corrupted` error naming the directory.
///
/// # Errors
/// When the directory entry has no subtree.
pub fn subtree_of(node: &Node, path: &[u8]) -> Result<TreeId> {
    node.subtree.ok_or_else(|| {
        Error::corrupted(format!(
            "directory {} has no subtree",
            crate::browse::escape::escape(path)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_path_pushes_and_pops_names() {
        for prefix in [&b""[..], b"/"] {
            let mut path = NamePath::new(prefix);
            path.push(b"etc");
            path.push(b"ssh");
            assert_eq!(path.bytes(), b"/etc/ssh");
            assert_eq!(path.depth(), 2);
            path.pop();
            path.push(b"hosts");
            assert_eq!(path.bytes(), b"/etc/hosts");
            path.pop();
            path.pop();
            assert_eq!(path.bytes(), prefix);
            path.pop();
            assert_eq!(path.bytes(), prefix);
        }
        let mut below = NamePath::new(b"/srv");
        below.push(b"www");
        assert_eq!(below.bytes(), b"/srv/www");
        below.pop();
        assert_eq!(below.bytes(), b"/srv");
    }

    #[test]
    fn path_chains_share_parents_and_drop_a_deep_chain_without_recursion() {
        let root = PathChain::root();
        let etc = PathChain::child(&root, b"etc");
        let ssh = PathChain::child(&etc, b"ssh");
        assert_eq!(root.dir_display(), "/");
        assert_eq!(ssh.dir_display(), "/etc/ssh/");
        let mut deep = root.clone();
        for _ in 0..1_000_000 {
            deep = PathChain::child(&deep, b"d");
        }
        drop(deep);
        assert_eq!(etc.dir_display(), "/etc/");
    }
}
