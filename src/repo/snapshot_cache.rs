//! The local copies of snapshot files: `<cache dir>/<repo id>/snapshots/<hex id>`, the sealed bytes
//! as stored (no plaintext), trusted only when they hash to their name (FORMAT.md §11).
//!
//! Why: every backup lists the snapshots to find its parent, and without copies it would read each
//! one, a request per snapshot, more every night and per host sharing the repository. A copy is
//! used only for a snapshot the repository's listing has just named, so a forgotten snapshot is
//! never read from the cache; copies of snapshots no longer listed are removed then. The cache is
//! best effort: a copy that cannot be read or written is read from the repository.

use std::path::PathBuf;

use crate::id::SnapshotId;
use crate::index::cache_file;

/// The snapshot copies of one repository's cache.
pub(crate) struct SnapshotCache {
    dir: PathBuf,
}

impl SnapshotCache {
    pub(crate) fn new(cache_dir: PathBuf) -> Self {
        SnapshotCache {
            dir: cache_dir.join("snapshots"),
        }
    }

    /// The cached bytes of `id`, when present and hashing to it (a damaged copy is removed).
    pub(crate) fn get(&self, id: &SnapshotId) -> Option<Vec<u8>> {
        let path = self.dir.join(id.to_hex());
        let bytes = std::fs::read(&path).ok()?;
        if SnapshotId::hash_of(&bytes) == *id {
            return Some(bytes);
        }
        let _ = std::fs::remove_file(&path);
        None
    }

    /// Keeps a copy of `bytes`, the snapshot `id` as read from the repository.
    pub(crate) fn put(&self, id: &SnapshotId, bytes: &[u8]) {
        let _ = cache_file::store(&self.dir.join(id.to_hex()), bytes);
    }

    /// Removes the copies of snapshots not in `listed` (forgotten since).
    pub(crate) fn keep_only<'a>(&self, listed: impl Iterator<Item = &'a str>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let listed: std::collections::HashSet<&str> = listed.collect();
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_str().is_some_and(|n| listed.contains(n)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_used_only_when_it_hashes_to_its_name_and_goes_when_no_longer_listed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SnapshotCache::new(dir.path().to_path_buf());
        let (one, two) = (b"sealed one".to_vec(), b"sealed two".to_vec());
        let (id1, id2) = (SnapshotId::hash_of(&one), SnapshotId::hash_of(&two));
        assert_eq!(cache.get(&id1), None);
        cache.put(&id1, &one);
        cache.put(&id2, &two);
        assert_eq!(cache.get(&id1), Some(one.clone()));
        // A copy changed on disk is not trusted, and is removed.
        std::fs::write(dir.path().join("snapshots").join(id2.to_hex()), b"other").unwrap();
        assert_eq!(cache.get(&id2), None);
        assert!(!dir.path().join("snapshots").join(id2.to_hex()).exists());
        cache.put(&id2, &two);
        let hex1 = id1.to_hex();
        cache.keep_only([hex1.as_str()].into_iter());
        assert_eq!(cache.get(&id1), Some(one));
        assert_eq!(cache.get(&id2), None);
    }
}
