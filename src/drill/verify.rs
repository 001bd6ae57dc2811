//! The drill's second look: every entry of the snapshot is compared with what landed in the
//! scratch directory (kind, size, symlink target) and every regular file is re-hashed chunk by
//! chunk against the ids the snapshot records, independently of the restore that wrote it.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::browse::walk::{walk, Descend};
use crate::error::Result;
use crate::format::tree::{Node, NodeKind};
use crate::id::TreeId;
use crate::repo::IndexedRepository;
use crate::repo::TreeLoader;

/// Most mismatches listed in a report (the count covers all).
pub const MAX_REPORTED: usize = 100;

/// An entry of the restored tree that differs from the snapshot.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Mismatch {
    /// Absolute path in the snapshot (lossy).
    pub path: String,
    /// What differs.
    pub problem: String,
}

/// What the comparison found.
#[derive(Debug, Default)]
pub struct Verified {
    /// Regular files re-hashed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The first [`MAX_REPORTED`] differences.
    pub mismatches: Vec<Mismatch>,
    /// All differences.
    pub mismatch_count: u64,
}

/// Compares the tree `root` of a snapshot with its restore below `target`.
///
/// # Errors
/// Repository errors while loading trees.
pub fn tree_matches(repo: &IndexedRepository, root: &TreeId, target: &Path) -> Result<Verified> {
    let loader = TreeLoader::uncached(repo);
    let mut files: Vec<(Vec<u8>, Node)> = Vec::new();
    let mut found = Verified::default();
    let note = |found: &mut Verified, path: &[u8], problem: String| {
        found.mismatch_count += 1;
        if found.mismatches.len() < MAX_REPORTED {
            found.mismatches.push(Mismatch {
                path: String::from_utf8_lossy(path).into_owned(),
                problem,
            });
        }
    };
    walk(&loader, root, b"", |path, node| {
        let on_disk = restored_path(target, path);
        let meta = match std::fs::symlink_metadata(&on_disk) {
            Ok(m) => m,
            Err(e) => {
                note(&mut found, path, format!("missing from the restore: {e}"));
                return Ok(Descend::No);
            }
        };
        let kind_ok = match node.kind {
            NodeKind::File => meta.file_type().is_file(),
            NodeKind::Dir => meta.file_type().is_dir(),
            NodeKind::Symlink => meta.file_type().is_symlink(),
            _ => true,
        };
        if !kind_ok {
            note(
                &mut found,
                path,
                format!("restored as another kind of entry than {:?}", node.kind),
            );
            return Ok(Descend::No);
        }
        match node.kind {
            NodeKind::File if meta.len() != node.size => {
                note(
                    &mut found,
                    path,
                    format!("size {} instead of {}", meta.len(), node.size),
                );
            }
            NodeKind::File => files.push((path.to_vec(), node.clone())),
            NodeKind::Symlink => {
                let target_ok = std::fs::read_link(&on_disk)
                    .is_ok_and(|t| t.as_os_str().as_bytes() == node.target.as_slice());
                if !target_ok {
                    note(&mut found, path, "symlink target differs".into());
                }
            }
            _ => {}
        }
        Ok(Descend::Yes)
    })?;
    let key = repo.repo().key();
    let failures: Vec<(Vec<u8>, String)> = files
        .par_iter()
        .filter_map(|(path, node)| {
            crate::restore::file_matches(key, &restored_path(target, path), &node.content)
                .err()
                .map(|e| (path.clone(), e.to_string()))
        })
        .collect();
    found.files = files.len() as u64;
    found.bytes = files.iter().map(|(_, n)| n.size).sum();
    for (path, problem) in failures {
        note(&mut found, &path, problem);
    }
    Ok(found)
}

fn restored_path(target: &Path, snapshot_path: &[u8]) -> PathBuf {
    let relative = snapshot_path.strip_prefix(b"/").unwrap_or(snapshot_path);
    target.join(std::ffi::OsStr::from_bytes(relative))
}
