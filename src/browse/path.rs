//! `SNAP:PATH` arguments and finding a path inside a snapshot by walking only the trees on the way.
//!
//! Syntax: everything before the first `:` names the snapshot (`latest` or an id prefix, which
//! never contain `:`); everything after it is the path, colons included, so `latest:/a:b` is the
//! file `/a:b`. Without a `:` the path is the snapshot root. Paths are absolute inside the
//! snapshot (a leading `/` is optional); bytes that are not printable UTF-8 are written `\xNN`
//! and a backslash `\\` (see [`super::escape`]).

use crate::browse::escape::{escape, unescape};
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::TreeId;
use crate::repo::TreeLoader;

/// A parsed `SNAP[:PATH]` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapPath {
    /// The snapshot spec (`latest` or an id prefix).
    pub snapshot: String,
    /// Path components as raw bytes; empty for the snapshot root.
    pub components: Vec<Vec<u8>>,
}

impl SnapPath {
    /// Parses `SNAP[:PATH]`.
    ///
    /// # Errors
    /// `InvalidInput` for a bad escape or a `..` component.
    pub fn parse(arg: &str) -> Result<Self> {
        let (snapshot, path) = arg.split_once(':').unwrap_or((arg, ""));
        Ok(SnapPath {
            snapshot: snapshot.to_string(),
            components: parse_path(path)?,
        })
    }

    /// Whether a path was given (other than the root).
    pub fn has_path(&self) -> bool {
        !self.components.is_empty()
    }
}

/// Splits an escaped absolute or relative path into raw components (`.` and empty ones dropped).
///
/// # Errors
/// `InvalidInput` for a bad escape or a `..` component.
pub fn parse_path(text: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for part in unescape(text)?.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(Error::invalid_input(format!(
                    "{text:?}: `..` is not allowed in a snapshot path; give the path from the root"
                )))
            }
            name => out.push(name.to_vec()),
        }
    }
    Ok(out)
}

/// Raw bytes of an absolute path from components (`/` for none).
pub fn join(components: &[Vec<u8>]) -> Vec<u8> {
    if components.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for c in components {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
}

/// What a path names in a snapshot.
#[derive(Clone, Debug)]
pub struct Located {
    /// Its absolute path, raw bytes (`/` for the root).
    pub path: Vec<u8>,
    /// Its entry; `None` for the snapshot root, which has no entry of its own.
    pub node: Option<Node>,
    /// The tree it holds: the root tree, or a directory's subtree; `None` for other entries.
    pub tree: Option<TreeId>,
}

impl Located {
    /// The printable path.
    pub fn display(&self) -> String {
        escape(&self.path)
    }
}

/// Finds `components` below `root`, loading one tree per directory on the way.
///
/// # Errors
/// `InvalidInput` when the path does not exist (the message names the deepest existing parent
/// and close names) or passes through something that is not a directory; repository errors
/// when a tree cannot be read.
pub fn locate(loader: &TreeLoader<'_>, root: &TreeId, components: &[Vec<u8>]) -> Result<Located> {
    let mut tree_id = *root;
    let mut node: Option<Node> = None;
    for (depth, name) in components.iter().enumerate() {
        let parent = &components[..depth];
        if let Some(n) = &node {
            if n.kind != NodeKind::Dir {
                return Err(Error::invalid_input(format!(
                    "{} is not a directory, so it has no {}",
                    escape(&join(parent)),
                    escape(&join(components))
                )));
            }
        }
        let tree = loader.load(&tree_id)?;
        let Some(found) = tree.find(name) else {
            let names: Vec<&[u8]> = tree.nodes.iter().map(|n| n.name.as_slice()).collect();
            return Err(missing(parent, name, components, &names));
        };
        if found.kind == NodeKind::Dir {
            tree_id = found.subtree.ok_or_else(|| {
                Error::corrupted(format!(
                    "tree {tree_id}: directory {} has no subtree",
                    escape(&join(&components[..=depth]))
                ))
            })?;
        }
        node = Some(found.clone());
    }
    let tree = match &node {
        None => Some(*root),
        Some(n) if n.kind == NodeKind::Dir => Some(tree_id),
        Some(_) => None,
    };
    Ok(Located {
        path: join(components),
        node,
        tree,
    })
}

fn missing(parent: &[Vec<u8>], name: &[u8], components: &[Vec<u8>], names: &[&[u8]]) -> Error {
    let close = close_names(name, names);
    let hint = if close.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = close.iter().map(|n| escape(n)).collect();
        format!("; did you mean {}?", list.join(", "))
    };
    Error::invalid_input(format!(
        "no {} in the snapshot: the deepest existing parent is {}, which has no entry {:?}{hint}",
        escape(&join(components)),
        escape(&join(parent)),
        escape(name),
    ))
}

/// Up to three names close to `wanted`: small edit distance, or `wanted` as a prefix.
pub fn close_names<'n>(wanted: &[u8], names: &[&'n [u8]]) -> Vec<&'n [u8]> {
    let limit = (wanted.len() / 2).max(2);
    let mut scored: Vec<(usize, &[u8])> = names
        .iter()
        .filter_map(|&n| {
            let d = edit_distance(wanted, n);
            let prefix = n.len() > wanted.len() && n.starts_with(wanted);
            (d <= limit || prefix).then_some((if prefix { d.min(limit) } else { d }, n))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

/// Levenshtein distance over bytes, one row of memory.
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_path_split_at_the_first_colon() {
        let p = SnapPath::parse("latest:/etc/a:b").unwrap();
        assert_eq!(p.snapshot, "latest");
        assert_eq!(p.components, vec![b"etc".to_vec(), b"a:b".to_vec()]);
        let root = SnapPath::parse("1a2b").unwrap();
        assert_eq!(root.snapshot, "1a2b");
        assert!(!root.has_path());
        let escaped = SnapPath::parse("latest:srv/caf\\xe9/./x").unwrap();
        assert_eq!(
            escaped.components,
            vec![b"srv".to_vec(), b"caf\xe9".to_vec(), b"x".to_vec()]
        );
        assert!(SnapPath::parse("latest:/etc/../x").is_err());
        assert_eq!(join(&escaped.components), b"/srv/caf\xe9/x");
        assert_eq!(join(&[]), b"/");
    }

    #[test]
    fn close_names_rank_by_distance() {
        let names: Vec<&[u8]> = vec![b"passwd", b"password.bak", b"group", b"hosts", b"shadow"];
        assert_eq!(close_names(b"pasword", &names), vec![&b"passwd"[..]]);
        assert_eq!(close_names(b"host", &names), vec![&b"hosts"[..]]);
        assert_eq!(
            close_names(b"passw", &names),
            vec![&b"passwd"[..], &b"password.bak"[..]]
        );
        assert!(close_names(b"zzzzzzzz", &names).is_empty());
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
    }
}
