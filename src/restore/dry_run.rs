//! `restore --dry-run`: what a restore would write, decided by the same rules (target checks,
//! include and exclude patterns), with every chunk it would read looked up in the index; nothing
//! is created or written.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::browse::walk::{walk, Descend};
use crate::error::Result;
use crate::format::tree::{ContentItem, Node, NodeKind};
use crate::id::BlobId;
use crate::repo::IndexedRepository;
use crate::repo::TreeLoader;

use super::{check_root_target, selected, RestoreOptions, RestoreRoot, RestoreStats};

/// What a restore would do.
#[derive(Clone, Debug, Default)]
pub struct DryRunReport {
    /// Entries that would be written, counted as a restore counts them (`verified` stays 0).
    pub stats: RestoreStats,
    /// Chunks of the files that the index does not name: a restore would fail on them.
    pub missing_chunks: u64,
}

/// Walks what [`super::restore_from`] would restore and calls `visit` with each entry's path in
/// the target, in path order; checks the target the same way (a non-empty target without
/// `overwrite` is refused, as the restore would refuse it).
///
/// # Errors
/// As the restore's own checks, and repository errors while loading trees.
pub fn dry_run(
    repo: &IndexedRepository,
    root: RestoreRoot<'_>,
    source: &[u8],
    target: &Path,
    options: &RestoreOptions,
    mut visit: impl FnMut(&Path, &Node),
) -> Result<DryRunReport> {
    let mut report = DryRunReport::default();
    let loader = TreeLoader::cached(repo);
    let count = |report: &mut DryRunReport, node: &Node| -> Result<()> {
        match node.kind {
            NodeKind::Dir => report.stats.dirs += 1,
            NodeKind::File => {
                report.stats.files += 1;
                report.stats.bytes += node.size;
                report.missing_chunks += missing_chunks(repo, &node.content)?;
            }
            _ => report.stats.others += 1,
        }
        Ok(())
    };
    check_root_target(root, target, options)?;
    match root {
        RestoreRoot::Entry(node) => {
            let in_snapshot = Path::new(OsStr::from_bytes(source));
            let is_dir = node.kind == NodeKind::Dir;
            if let (true, true) = selected(options, in_snapshot, is_dir, false) {
                visit(&target.join(OsStr::from_bytes(&node.name)), node);
                count(&mut report, node)?;
            }
        }
        RestoreRoot::Tree { tree, .. } => {
            // The depth of the shallowest entry an include matched: everything below it is
            // included too.
            let mut included_at: Option<usize> = None;
            // Walked directories not included themselves, on the way to the entry visited: the
            // restore creates one only if something below it is restored.
            let mut pending: Vec<(usize, PathBuf, Node)> = Vec::new();
            walk(&loader, &tree, source, |path, node| {
                let d = depth(path);
                if included_at.is_some_and(|at| d <= at) {
                    included_at = None;
                }
                // Those at this depth or deeper were siblings' subtrees: they led to nothing.
                pending.retain(|(at, ..)| *at < d);
                let is_dir = node.kind == NodeKind::Dir;
                let in_snapshot = Path::new(OsStr::from_bytes(path));
                let (walked, included) =
                    selected(options, in_snapshot, is_dir, included_at.is_some());
                if !walked {
                    return Ok(Descend::No);
                }
                if included && included_at.is_none() && options.include.is_some() {
                    included_at = Some(d);
                }
                let in_target = target_path(target, &path[source.len()..]);
                if included {
                    for (_, dir_path, dir) in pending.drain(..) {
                        visit(&dir_path, &dir);
                        count(&mut report, &dir)?;
                    }
                    visit(&in_target, node);
                    count(&mut report, node)?;
                } else if is_dir {
                    pending.push((d, in_target, node.clone()));
                }
                Ok(Descend::Yes)
            })?;
        }
    }
    Ok(report)
}

fn depth(path: &[u8]) -> usize {
    path.iter().filter(|&&b| b == b'/').count()
}

fn target_path(target: &Path, below: &[u8]) -> PathBuf {
    let relative = below.strip_prefix(b"/").unwrap_or(below);
    target.join(OsStr::from_bytes(relative))
}

/// How many of the chunks of a file's content the index does not name, or names as a delta whose
/// chain lacks a link.
fn missing_chunks(repo: &IndexedRepository, content: &[ContentItem]) -> Result<u64> {
    let ids: Vec<BlobId> = content.iter().filter_map(ContentItem::data_id).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let complete = repo.chains_complete(&ids)?;
    Ok(complete.iter().filter(|ok| !**ok).count() as u64)
}
