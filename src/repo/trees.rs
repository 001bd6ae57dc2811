//! The one tree loader: a tree by id, read from its pack (another indexed copy when that fails),
//! and optionally through a local cache of sealed tree blobs, so that a second `ls`, `find` or
//! `diff` reads nothing from the repository but the index and snapshot lists. Restore's bulk
//! fetch (`restore::trees`) falls back on it for a tree its ranges could not give.
//!
//! The cache holds blobs exactly as stored in packs (still encrypted), one file per blob at
//! `<cache dir>/<repo id>/trees/<first 2 hex>/<hex blob id>`. A cached blob is opened and
//! verified like one read from a pack (authenticated, bound to its id and type), so a damaged
//! or planted cache file is detected, deleted and read again from the repository.

use std::fs;
use std::path::{Path, PathBuf};

use super::IndexedRepository;
use crate::backend::ObjectKind;
use crate::blob::open_blob;
use crate::error::Result;
use crate::format::tree::Tree;
use crate::id::{BlobType, TreeId};

/// Loads and decodes trees, through the local cache when one is given.
pub struct TreeLoader<'a> {
    repo: &'a IndexedRepository,
    cache: Option<PathBuf>,
}

impl<'a> TreeLoader<'a> {
    /// A loader that keeps sealed tree blobs under the repository's cache directory.
    pub fn cached(repo: &'a IndexedRepository) -> Self {
        TreeLoader {
            repo,
            cache: Some(repo.repo().cache_dir().join("trees")),
        }
    }

    /// A loader that always reads from the repository.
    pub fn uncached(repo: &'a IndexedRepository) -> Self {
        TreeLoader { repo, cache: None }
    }

    /// The repository behind the loader.
    pub fn repo(&self) -> &'a IndexedRepository {
        self.repo
    }

    /// A decoded tree.
    ///
    /// # Errors
    /// When the tree is not indexed, its pack is missing or damaged, or it does not decode.
    pub fn load(&self, id: &TreeId) -> Result<Tree> {
        let bytes = self.plaintext(id)?;
        Tree::decode(&bytes).map_err(|e| e.context(format!("tree {id}")))
    }

    fn plaintext(&self, id: &TreeId) -> Result<Vec<u8>> {
        let Some(dir) = &self.cache else {
            return self.repo.read_blob(id, BlobType::Tree);
        };
        let loc = self.repo.index().locate(id, BlobType::Tree)?;
        let key = self.repo.repo().key();
        let path = cache_path(dir, id);
        if let Ok(sealed) = fs::read(&path) {
            match open_blob(key, &loc.entry, &sealed, None) {
                Ok(plain) => return Ok(plain),
                // Damaged or foreign: forget it and fetch the real one below.
                Err(_) => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let read = self
            .repo
            .repo()
            .backend()
            .read_range(
                ObjectKind::Pack,
                &loc.pack.to_hex(),
                loc.entry.offset as u64,
                loc.entry.length as u64,
            )
            .and_then(|sealed| {
                open_blob(key, &loc.entry, &sealed, None)
                    .map(|plain| (sealed, plain))
                    .map_err(|e| e.context(format!("pack {}", loc.pack)))
            });
        match read {
            Ok((sealed, plain)) => {
                // The cache only saves time: failing to write it is not an error.
                let _ = crate::index::cache_file::store(&path, &sealed);
                Ok(plain)
            }
            // Not this tree's only copy, perhaps: read another (and cache nothing).
            Err(e) => self
                .repo
                .read_blob_elsewhere(id, BlobType::Tree, &loc.pack, e),
        }
    }
}

fn cache_path(dir: &Path, id: &TreeId) -> PathBuf {
    let hex = id.to_hex();
    dir.join(&hex[..2]).join(hex)
}
