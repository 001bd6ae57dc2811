//! Fetching every tree below a restore's root before planning it: one directory level at a time, the
//! trees of a level read by pack, neighbours merged into one range, [`READS_IN_FLIGHT`] ranges at once.
//!
//! Why: planning walks the directories depth first, and loading each tree when its directory is reached
//! costs one storage request per directory, one after another. On a local disk that is a cached read;
//! on S3 a round trip each (about 20 ms on moto on loopback), so 3,300 directories took most of a
//! 100 s restore. Never decides what is restored; only fetches.
//!
//! The fetched trees wait in an unnamed temporary file, not in memory: decoded, they took about a
//! quarter of a kilobyte per file of the snapshot, so memory grew with the number of files.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::BlobEntry;
use crate::format::tree::{NodeKind, Tree};
use crate::id::{BlobType, TreeId};
use crate::index::BlobLocation;
use crate::repo::fetch::{self, push_merged, PackRange};
use crate::repo::IndexedRepository;

/// Range reads of trees in flight: the default number of connections of a remote backend.
pub const READS_IN_FLIGHT: usize = 8;

/// Verified tree plaintexts in a temporary file that vanishes when this is dropped (or the process
/// ends), and where each lies: memory grows by about 50 bytes per directory, not per file.
pub struct TreeStore {
    file: File,
    at: HashMap<TreeId, (u64, usize)>,
}

impl TreeStore {
    /// A decoded tree: from the store, or from the repository when the store lacks it.
    ///
    /// # Errors
    /// When the temporary file cannot be read, or the tree cannot be loaded or decoded.
    pub fn tree(&self, repo: &IndexedRepository, id: &TreeId) -> Result<Tree> {
        let Some(&(offset, len)) = self.at.get(id) else {
            return repo.load_tree(id);
        };
        let mut plain = vec![0u8; len];
        self.file
            .read_exact_at(&mut plain, offset)
            .map_err(|e| Error::new(ErrorKind::Other, format!("cannot read the trees fetched for this restore back from their temporary file: {e}")))?;
        Tree::decode(&plain).map_err(|e| e.context(format!("tree {id}")))
    }
}

/// Fetches every tree reachable from `root` (itself included) into a [`TreeStore`] whose file lies
/// in `spill_dir` (the restore target: the filesystem about to receive the files).
///
/// # Errors
/// When a tree is not indexed, its pack is missing or damaged, it does not decode, or the temporary
/// file cannot be written.
pub fn load_all(repo: &IndexedRepository, root: &TreeId, spill_dir: &Path) -> Result<TreeStore> {
    let spill_error = |e: std::io::Error| {
        Error::io(
            ErrorKind::Other,
            "cannot write the trees fetched for this restore to a temporary file in",
            spill_dir,
            e,
        )
    };
    let file = tempfile::tempfile_in(spill_dir).map_err(spill_error)?;
    // Each range's trees go to the file as soon as they are read: a level of a wide snapshot held
    // whole in memory was most of the snapshot.
    let spill = std::sync::Mutex::new((std::io::BufWriter::new(&file), 0u64));
    let mut at = HashMap::new();
    // Each tree with the length of its directory's path in the target: trees whose entries would
    // lie beyond PATH_MAX are not fetched (planning refuses them, and a hostile snapshot 100,000
    // levels deep would be fetched whole for nothing).
    let mut level = vec![(*root, spill_dir.as_os_str().len())];
    while !level.is_empty() {
        let mut seen = HashMap::new();
        level.retain(|(id, len)| {
            *len < super::PATH_MAX && !at.contains_key(id) && seen.insert(*id, *len).is_none()
        });
        let level_ids: Vec<TreeId> = level.iter().map(|(id, _)| *id).collect();
        let locations = repo
            .index()
            .locate_many(&level_ids, BlobType::Tree)?
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let ranges = merge(locations);
        let stored = crate::threads::map_bounded(&ranges, READS_IN_FLIGHT, |range| {
            let mut out = Vec::new();
            read_range(repo, range, |id, plain, tree| {
                let len = seen.get(&id).copied().unwrap_or(0);
                let subtrees: Vec<(TreeId, usize)> = tree
                    .nodes
                    .iter()
                    .filter(|n| n.kind == NodeKind::Dir)
                    .filter_map(|n| n.subtree.map(|sub| (sub, len + 1 + n.name.len())))
                    .collect();
                let mut guard = spill.lock().unwrap_or_else(|p| p.into_inner());
                let (writer, end) = &mut *guard;
                writer.write_all(&plain).map_err(spill_error)?;
                out.push((id, (*end, plain.len()), subtrees));
                *end += plain.len() as u64;
                Ok(())
            })?;
            Ok::<_, Error>(out)
        });
        let mut next = Vec::new();
        for range in stored {
            for (id, place, subtrees) in range? {
                at.insert(id, place);
                next.extend(subtrees);
            }
        }
        level = next;
    }
    let (mut writer, _) = spill.into_inner().unwrap_or_else(|p| p.into_inner());
    writer.flush().map_err(spill_error)?;
    drop(writer);
    Ok(TreeStore { file, at })
}

/// Groups tree locations by pack and merges neighbours, as the read plan of file contents does.
fn merge(mut locations: Vec<BlobLocation>) -> Vec<PackRange<BlobEntry>> {
    locations.sort_by_key(|l| (l.pack, l.entry.offset));
    let mut out = Vec::new();
    for BlobLocation { pack, entry } in locations {
        push_merged(&mut out, pack, &entry, entry);
    }
    out
}

/// Reads one range and hands each of its trees to `each` in turn (id, verified plaintext, decoded),
/// so that no more than one of them is held decoded.
fn read_range(
    repo: &IndexedRepository,
    range: &PackRange<BlobEntry>,
    mut each: impl FnMut(TreeId, Vec<u8>, Tree) -> Result<()>,
) -> Result<()> {
    fetch::read_range(
        repo,
        range,
        &fetch::Bases::default(),
        |entry| entry,
        |entry, plain| {
            let plain = plain?;
            let tree = Tree::decode(&plain).map_err(|e| e.context(format!("tree {}", entry.id)))?;
            each(entry.id, plain, tree)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{BlobId, PackId};
    use crate::repo::fetch::MAX_GAP;

    fn at(pack: u8, offset: u32, length: u32, n: u8) -> BlobLocation {
        BlobLocation {
            pack: PackId([pack; 32]),
            entry: BlobEntry {
                blob_type: BlobType::Tree,
                id: BlobId([n; 32]),
                offset,
                length,
                raw_length: length,
                delta: None,
            },
        }
    }

    #[test]
    fn neighbours_of_a_pack_share_a_read_and_others_get_their_own() {
        let gap = MAX_GAP as u32;
        let ranges = merge(vec![
            at(2, 0, 50, 5),          // another pack: its own range, sorted after pack 1
            at(1, 300, 100, 2),       // given out of order: sorted by offset
            at(1, 0, 100, 1),         // first of pack 1
            at(1, 400 + gap, 100, 3), // after a gap too long: a new range
            at(1, 500 + gap, 100, 4), // adjacent: the same range
        ]);
        let shape: Vec<(u8, u64, u64, usize)> = ranges
            .iter()
            .map(|r| (r.pack.0[0], r.offset, r.length, r.blobs.len()))
            .collect();
        let gap = u64::from(gap);
        assert_eq!(
            shape,
            vec![(1, 0, 400, 2), (1, 400 + gap, 200, 2), (2, 0, 50, 1)]
        );
        assert_eq!(ranges[0].blobs[1].id, BlobId([2; 32]));
    }
}
