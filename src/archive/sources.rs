//! Turning command-line sources into absolute paths and a trie from `/`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

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

/// How a list of paths (`--files-from` and kin) is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    /// One path per line; blank lines and `#` comments skipped, surrounding blanks trimmed.
    Lines,
    /// One path per line exactly as written; only empty lines are skipped.
    Verbatim,
    /// Paths separated by NUL bytes (`find -print0`); any name, newlines included.
    Nul,
}

/// Reads a list of paths from `file` (`-`: standard input). Names need not be UTF-8.
///
/// # Errors
/// `InvalidInput` when the file cannot be read.
pub fn read_path_list(file: &Path, format: ListFormat) -> Result<Vec<PathBuf>> {
    let mut bytes = Vec::new();
    let read = if file == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    read.map_err(|e| Error::invalid_input(format!("cannot read the list of paths: {e}")))?;
    Ok(parse_path_list(&bytes, format))
}

fn parse_path_list(bytes: &[u8], format: ListFormat) -> Vec<PathBuf> {
    let items: Vec<&[u8]> = match format {
        ListFormat::Nul => bytes.split(|&b| b == 0).collect(),
        ListFormat::Verbatim => bytes.split(|&b| b == b'\n').collect(),
        ListFormat::Lines => bytes
            .split(|&b| b == b'\n')
            .map(<[u8]>::trim_ascii)
            .filter(|l| !l.starts_with(b"#"))
            .collect(),
    };
    items
        .into_iter()
        .filter(|i| !i.is_empty())
        .map(|i| PathBuf::from(std::ffi::OsStr::from_bytes(i)))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lists_in_three_formats() {
        let text = b"/etc\n  # comment\n\n ./rel \nname\xff\r\n";
        let lines = parse_path_list(text, ListFormat::Lines);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], PathBuf::from("./rel"));
        assert_eq!(lines[2].as_os_str().as_bytes(), b"name\xff");
        let verbatim = parse_path_list(text, ListFormat::Verbatim);
        assert_eq!(verbatim.len(), 4);
        assert_eq!(verbatim[1], PathBuf::from("  # comment"));
        assert_eq!(verbatim[2], PathBuf::from(" ./rel "));
        let nul = parse_path_list(b"a\nb\0/c\0\0", ListFormat::Nul);
        assert_eq!(nul, vec![PathBuf::from("a\nb"), PathBuf::from("/c")]);
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
