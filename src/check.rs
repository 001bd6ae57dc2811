//! `check`: proves that every snapshot can be restored (structure), and optionally that every blob decrypts and verifies.
//!
//! Read-only: never modifies the repository.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::backend::ObjectKind;
use crate::error::Result;
use crate::format::tree::{ContentItem, NodeKind};
use crate::id::{BlobType, PackId, TreeId};
use crate::ops::prune::read_index_file;
use crate::pack::{parse_pack_header, read_pack_header, PackReader};
use crate::repo::IndexedRepository;

/// What to verify.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckOptions {
    /// Decrypt and verify every blob of every pack.
    pub read_data: bool,
}

/// Findings of a check.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Problems: each names the object and, where known, the snapshot and path affected.
    pub errors: Vec<String>,
    /// Observations that are not damage (unreferenced packs left by an interrupted backup).
    pub notes: Vec<String>,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Trees checked.
    pub trees: u64,
    /// Packs whose header was read.
    pub packs: u64,
    /// Blobs decrypted and verified (with `read_data`).
    pub blobs_verified: u64,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks the repository.
///
/// # Errors
/// Only when the storage cannot be listed; damage is reported in the report.
pub fn check(repo: &IndexedRepository, options: CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let backend = repo.repo().backend();

    // Packs: every header must open and agree with the index; with read_data every blob too.
    let packs = backend.list(ObjectKind::Pack)?;
    let checked: Vec<PackCheck> = packs
        .par_iter()
        .map(|(name, _)| check_pack(repo, name, options.read_data))
        .collect();
    let mut listed: HashSet<PackId> = HashSet::new();
    for pack in checked {
        report.packs += 1;
        report.blobs_verified += pack.blobs_verified;
        report.errors.extend(pack.errors);
        listed.extend(pack.id);
    }
    // From the index files themselves: the cache keeps one location per blob, so a pack whose blobs all
    // have copies elsewhere (after a repack) would look unindexed there.
    let mut indexed_packs: HashSet<PackId> = HashSet::new();
    for (name, _) in backend.list(ObjectKind::Index)? {
        match read_index_file(repo.repo(), &name) {
            Ok(file) => indexed_packs.extend(file.packs.iter().map(|p| p.pack)),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    for pack in indexed_packs.difference(&listed) {
        report.errors.push(format!(
            "pack {pack} is listed in the index but missing from the repository"
        ));
    }
    for pack in listed.difference(&indexed_packs) {
        report.notes.push(format!(
            "pack {pack} is in no index file (left by an interrupted backup or a repack; harmless, prune removes it)"
        ));
    }

    // Snapshots and the trees they reference: every referenced blob must be indexed.
    let snapshots = match repo.repo().snapshots() {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(e.to_string());
            Vec::new()
        }
    };
    let mut seen_trees: HashSet<TreeId> = HashSet::new();
    for (id, snap) in &snapshots {
        report.snapshots += 1;
        let mut stack = vec![(snap.tree_id(), String::from("/"))];
        while let Some((tree_id, path)) = stack.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            report.trees += 1;
            let tree = match repo.load_tree(&tree_id) {
                Ok(t) => t,
                Err(e) => {
                    report
                        .errors
                        .push(format!("snapshot {} path {path}: {e}", id.short()));
                    continue;
                }
            };
            for node in &tree.nodes {
                let child = format!("{}{}", path, String::from_utf8_lossy(&node.name));
                match node.kind {
                    NodeKind::Dir => {
                        if let Some(sub) = node.subtree {
                            stack.push((sub, format!("{child}/")));
                        }
                    }
                    NodeKind::File => {
                        for item in &node.content {
                            if let ContentItem::Data { id: blob, .. } = item {
                                if let Err(e) = repo.index().locate(blob, BlobType::Data) {
                                    report
                                        .errors
                                        .push(format!("snapshot {} file {child}: {e}", id.short()));
                                    break;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    Ok(report)
}

/// What checking one pack found.
struct PackCheck {
    /// The pack's id, when its name is one.
    id: Option<PackId>,
    blobs_verified: u64,
    errors: Vec<String>,
}

/// Checks one pack: its header, and with `read_data` its hash and every blob, reading it once.
fn check_pack(repo: &IndexedRepository, name: &str, read_data: bool) -> PackCheck {
    let backend = repo.repo().backend();
    let key = repo.repo().key();
    let mut result = PackCheck {
        id: None,
        blobs_verified: 0,
        errors: Vec::new(),
    };
    let id = match PackId::from_hex(name) {
        Ok(id) => id,
        Err(e) => {
            result.errors.push(format!("data/{name}: {e}"));
            return result;
        }
    };
    result.id = Some(id);
    if !read_data {
        if let Err(e) = read_pack_header(backend, key, &id) {
            result.errors.push(e.to_string());
        }
        return result;
    }
    let bytes = match backend.read(ObjectKind::Pack, name) {
        Ok(b) => b,
        Err(e) => {
            result.errors.push(e.to_string());
            return result;
        }
    };
    if PackId::hash_of(&bytes) != id {
        result
            .errors
            .push(format!("pack {name}: its content does not match its name"));
    }
    // Go on past a hash mismatch: opening each blob tells which of them are damaged.
    let entries = match parse_pack_header(key, &id, &bytes) {
        Ok(e) => e,
        Err(e) => {
            result.errors.push(e.to_string());
            return result;
        }
    };
    let reader = PackReader::new(backend, key);
    for entry in &entries {
        match reader.open_from(&id, &bytes, entry) {
            Ok(_) => result.blobs_verified += 1,
            Err(e) => result.errors.push(e.to_string()),
        }
    }
    result
}
