//! Turning command-line sources into absolute paths and a trie from `/`, and deciding what is excluded.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use globset::{GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Makes each source absolute and lexically normal (`.` and `..` resolved, symlinks not followed).
///
/// # Errors
/// When the current directory is unknown.
pub fn normalize_sources(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let cwd = std::env::current_dir()
        .map_err(|e| Error::invalid_input(format!("cannot resolve relative paths: {e}")))?;
    let mut out: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            let mut normal = PathBuf::from("/");
            for c in cwd.join(p).components() {
                match c {
                    Component::Normal(n) => normal.push(n),
                    Component::ParentDir => {
                        normal.pop();
                    }
                    _ => {}
                }
            }
            normal
        })
        .collect();
    out.sort();
    out.dedup();
    // A source inside another source is already covered by it.
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    Ok(out)
}

/// The sources arranged from `/` down: inner nodes are synthetic directories, marked nodes are sources.
#[derive(Default, Debug)]
pub struct SourceTrie {
    pub(super) children: BTreeMap<Vec<u8>, SourceTrie>,
    pub(super) is_source: bool,
    /// The index of the stream stored at this node, for a stream.
    pub(super) stream: Option<usize>,
}

/// A stream's path in the snapshot as its components (`dumps/app.dump` or `/dumps/app.dump`).
///
/// # Errors
/// `InvalidInput` when the path is empty or has an empty, `.` or `..` component or a NUL byte.
pub fn stream_path_parts(path: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let bad = parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'));
    if bad {
        return Err(Error::invalid_input(format!(
            "stream name {path:?} is not a valid path in the snapshot: give a file name such as \
             app.dump, or a relative path such as dumps/app.dump (no empty, '.' or '..' parts)"
        )));
    }
    Ok(parts)
}

impl SourceTrie {
    /// The trie of normalized absolute paths. `/` itself as a source makes the root's children sources.
    pub fn build(paths: &[PathBuf]) -> Self {
        let mut root = SourceTrie::default();
        for path in paths {
            let mut node = &mut root;
            let parts: Vec<&[u8]> = path
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.as_bytes()),
                    _ => None,
                })
                .collect();
            if parts.is_empty() {
                // Backing up `/`: every entry of the root directory is a source.
                if let Ok(entries) = std::fs::read_dir("/") {
                    for e in entries.flatten() {
                        root.children
                            .entry(e.file_name().as_bytes().to_vec())
                            .or_default()
                            .is_source = true;
                    }
                }
                continue;
            }
            for part in parts {
                node = node.children.entry(part.to_vec()).or_default();
            }
            node.is_source = true;
        }
        root
    }

    /// Whether a path source is at or below this node.
    pub fn holds_paths(&self) -> bool {
        self.is_source || self.children.values().any(SourceTrie::holds_paths)
    }

    /// Whether a stream is at or below this node.
    pub fn holds_streams(&self) -> bool {
        self.stream.is_some() || self.children.values().any(SourceTrie::holds_streams)
    }

    /// Adds stream number `index` at `path` (see [`stream_path_parts`]), below synthetic directories.
    ///
    /// # Errors
    /// `InvalidInput` when the path is invalid or collides with a source path or another stream
    /// (equal to one, inside one, or holding one).
    pub fn add_stream(&mut self, path: &str, index: usize) -> Result<()> {
        let collision = || {
            Error::invalid_input(format!(
                "stream name {path:?} collides with another path or stream of this backup \
                 (the same path, or one inside the other): give it another name"
            ))
        };
        let mut node = self;
        for part in stream_path_parts(path)? {
            if node.is_source || node.stream.is_some() {
                return Err(collision());
            }
            node = node.children.entry(part.as_bytes().to_vec()).or_default();
        }
        if node.is_source || node.stream.is_some() || !node.children.is_empty() {
            return Err(collision());
        }
        node.stream = Some(index);
        Ok(())
    }
}

/// Exclusion patterns: a pattern with `/` matches the whole absolute path, one without matches any entry name.
#[derive(Clone, Debug, Default)]
pub struct ExcludeMatcher {
    by_path: Option<GlobSet>,
    by_name: Option<GlobSet>,
}

impl ExcludeMatcher {
    /// Compiles patterns (`#` lines and blank lines are ignored).
    ///
    /// # Errors
    /// When a pattern is not a valid glob.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut by_path = GlobSetBuilder::new();
        let mut by_name = GlobSetBuilder::new();
        let (mut n_path, mut n_name) = (0, 0);
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            let glob = globset::GlobBuilder::new(p.trim_end_matches('/'))
                .literal_separator(p.contains('/'))
                .build()
                .map_err(|e| Error::invalid_input(format!("exclude pattern {p:?}: {e}")))?;
            if p.contains('/') {
                by_path.add(glob);
                n_path += 1;
            } else {
                by_name.add(glob);
                n_name += 1;
            }
        }
        let build = |b: GlobSetBuilder, n: usize| -> Result<Option<GlobSet>> {
            if n == 0 {
                return Ok(None);
            }
            b.build()
                .map(Some)
                .map_err(|e| Error::invalid_input(format!("exclude patterns: {e}")))
        };
        Ok(ExcludeMatcher {
            by_path: build(by_path, n_path)?,
            by_name: build(by_name, n_name)?,
        })
    }

    /// Reads patterns from a file, one per line.
    ///
    /// # Errors
    /// When the file cannot be read or a pattern is invalid.
    pub fn patterns_from_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid_input(format!("--exclude-file {}: {e}", path.display())))?;
        Ok(text.lines().map(str::to_string).collect())
    }

    /// Whether `path` is excluded.
    pub fn is_excluded(&self, path: &Path) -> bool {
        if let Some(set) = &self.by_path {
            if set.is_match(path) {
                return true;
            }
        }
        if let (Some(set), Some(name)) = (&self.by_name, path.file_name()) {
            if set.is_match(Path::new(name)) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_by_name_and_path() {
        let m = ExcludeMatcher::new(&["*.tmp", "/var/cache/**", "# comment", ""]).unwrap();
        assert!(m.is_excluded(Path::new("/home/a/x.tmp")));
        assert!(m.is_excluded(Path::new("/var/cache/apt/pkg")));
        assert!(!m.is_excluded(Path::new("/var/lib/x")));
        assert!(ExcludeMatcher::new(&["a[b"]).is_err());
    }

    #[test]
    fn nested_sources_collapse() {
        let out = normalize_sources(&[
            PathBuf::from("/a/b/../c"),
            PathBuf::from("/a"),
            PathBuf::from("/x/./y"),
        ])
        .unwrap();
        assert_eq!(out, vec![PathBuf::from("/a"), PathBuf::from("/x/y")]);
    }

    #[test]
    fn streams_go_below_synthetic_dirs_and_never_collide() {
        let mut trie = SourceTrie::build(&[PathBuf::from("/srv/www")]);
        trie.add_stream("app.dump", 0).unwrap();
        trie.add_stream("/dumps/a.sql", 1).unwrap();
        trie.add_stream("srv/b.sql", 2).unwrap();
        assert_eq!(trie.children[&b"app.dump".to_vec()].stream, Some(0));
        assert_eq!(
            trie.children[&b"dumps".to_vec()].children[&b"a.sql".to_vec()].stream,
            Some(1)
        );
        for clash in [
            "app.dump",
            "srv/www",
            "srv/www/x",
            "srv",
            "dumps",
            "app.dump/x",
        ] {
            let err = trie.add_stream(clash, 9).unwrap_err();
            assert!(err.to_string().contains("collides"), "{clash}: {err}");
        }
        for bad in ["", "/", "a//b", "./a", "a/..", "a/"] {
            assert!(trie.add_stream(bad, 9).is_err(), "{bad:?} accepted");
        }
    }
}
