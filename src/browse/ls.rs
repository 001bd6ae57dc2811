//! Listing what a snapshot path holds: a directory's entries (optionally everything below), or
//! the one entry a file path names.

use crate::browse::path::Located;
use crate::browse::walk::{child_path, walk, Descend};
use crate::error::Result;
use crate::format::tree::Node;
use crate::repo::TreeLoader;

/// Calls `each` with the absolute path and entry of everything `at` lists, in name order.
///
/// # Errors
/// Repository errors, or whatever `each` returns (such as a closed output).
pub fn list(
    loader: &TreeLoader<'_>,
    at: &Located,
    recursive: bool,
    mut each: impl FnMut(&[u8], &Node) -> Result<()>,
) -> Result<()> {
    let Some(tree) = &at.tree else {
        // A file, symlink or special entry lists as itself.
        return match &at.node {
            Some(node) => each(&at.path, node),
            None => Ok(()),
        };
    };
    if recursive {
        return walk(loader, tree, &at.path, |path, node| {
            each(path, node)?;
            Ok(Descend::Yes)
        });
    }
    for node in loader.load(tree)?.nodes {
        each(&child_path(&at.path, &node.name), &node)?;
    }
    Ok(())
}
