//! `check`: proves that every snapshot can be restored (structure), and optionally that every blob decrypts and verifies.
//!
//! Read-only: never modifies the repository.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::backend::ObjectKind;
use crate::error::Result;
use crate::format::tree::{ContentItem, NodeKind};
use crate::id::{BlobType, PackId, TreeId};
use crate::pack::{read_pack_header, PackReader};
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
    let key = repo.repo().key();

    // Packs: every header must open, and agree with the index.
    let packs = backend.list(ObjectKind::Pack)?;
    let headers: Vec<(String, Result<Vec<crate::format::pack::BlobEntry>>)> = packs
        .par_iter()
        .map(|(name, _)| {
            let id = PackId::from_hex(name);
            let entries = id.and_then(|id| {
                if options.read_data {
                    let bytes = backend.read(ObjectKind::Pack, name)?;
                    if PackId::hash_of(&bytes) != id {
                        return Err(crate::error::Error::corrupted(format!(
                            "pack {name}: its content does not match its name"
                        )));
                    }
                }
                read_pack_header(backend, key, &id)
            });
            (name.clone(), entries)
        })
        .collect();
    let mut pack_blobs: HashMap<PackId, usize> = HashMap::new();
    for (name, entries) in &headers {
        report.packs += 1;
        match entries {
            Ok(e) => {
                if let Ok(id) = PackId::from_hex(name) {
                    pack_blobs.insert(id, e.len());
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    let mut indexed_packs: HashSet<PackId> = HashSet::new();
    repo.index().for_each(|loc| {
        indexed_packs.insert(loc.pack);
        Ok(())
    })?;
    for pack in &indexed_packs {
        if !pack_blobs.contains_key(pack) && !headers.iter().any(|(n, _)| *n == pack.to_hex()) {
            report.errors.push(format!(
                "pack {pack} is listed in the index but missing from the repository"
            ));
        }
    }
    for pack in pack_blobs.keys() {
        if !indexed_packs.contains(pack) {
            report.notes.push(format!(
                "pack {pack} is in no index file (left by an interrupted backup; harmless, a later prune removes it)"
            ));
        }
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

    if options.read_data {
        let reader = PackReader::new(backend, key);
        let results: Vec<(u64, Vec<String>)> = headers
            .par_iter()
            .filter_map(|(name, entries)| {
                Some((PackId::from_hex(name).ok()?, entries.as_ref().ok()?))
            })
            .map(|(pack, entries)| {
                let mut errors = Vec::new();
                let bytes = match backend.read(ObjectKind::Pack, &pack.to_hex()) {
                    Ok(b) => b,
                    Err(e) => return (0, vec![e.to_string()]),
                };
                let mut ok = 0;
                for entry in entries.iter() {
                    match reader.open_from(&pack, &bytes, 0, entry) {
                        Ok(_) => ok += 1,
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (ok, errors)
            })
            .collect();
        for (ok, errors) in results {
            report.blobs_verified += ok;
            report.errors.extend(errors);
        }
    }
    Ok(report)
}
