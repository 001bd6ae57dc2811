//! Depth-first, pre-order walks of snapshot trees without recursion (any directory depth the OS
//! allows fits in a heap-allocated stack), with the visitor deciding whether to enter directories.

use crate::browse::trees::TreeLoader;
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::TreeId;

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
    let mut stack = vec![(prefix.to_vec(), loader.load(root)?.nodes.into_iter())];
    while let Some((dir, entries)) = stack.last_mut() {
        let Some(node) = entries.next() else {
            stack.pop();
            continue;
        };
        let path = child_path(dir, &node.name);
        if visit(&path, &node)? == Descend::Yes && node.kind == NodeKind::Dir {
            let sub = subtree_of(&node, &path)?;
            let nodes = loader.load(&sub)?.nodes.into_iter();
            stack.push((path, nodes));
        }
    }
    Ok(())
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
