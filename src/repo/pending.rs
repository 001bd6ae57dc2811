//! Pending-deletion records (FORMAT.md §12): listing them, and the set of packs they condemn.

use std::collections::HashSet;

use crate::backend::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use crate::format::lifecycle::PendingDeletion;
use crate::id::{IndexId, PackId};
use crate::repo::Repository;

/// A record found in the repository.
#[derive(Clone, Debug)]
pub struct FoundRecord {
    /// Object name.
    pub name: String,
    /// Content.
    pub record: PendingDeletion,
}

/// Every pending-deletion record.
///
/// # Errors
/// When one cannot be read or decoded: condemned packs must never be mistaken for live ones, so a damaged
/// record stops backup and prune (remove it by hand; it only delays deletion).
pub fn list(repo: &Repository) -> Result<Vec<FoundRecord>> {
    // A record removed between list and read was either deleted with its packs or rewritten by a
    // revive, which writes the new record before removing the old: list again to find it.
    for _ in 0..LIST_ATTEMPTS {
        if let Some(records) = list_once(repo)? {
            return Ok(records);
        }
    }
    Err(Error::new(
        ErrorKind::Backend,
        "pending-deletion records keep changing while they are read; a prune is running: run the command again when it has finished",
    ))
}

/// How many times listing starts over because a record vanished under it.
const LIST_ATTEMPTS: usize = 10;

fn list_once(repo: &Repository) -> Result<Option<Vec<FoundRecord>>> {
    let mut out = Vec::new();
    for (name, _) in repo.backend().list(ObjectKind::Pending)? {
        let bytes = match repo.backend().read(ObjectKind::Pending, &name) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let record = PendingDeletion::decode(repo.key(), &bytes)
            .map_err(|e| e.context(format!("pending/{name}")))?;
        out.push(FoundRecord { name, record });
    }
    Ok(Some(out))
}

/// The packs that any record condemns: a backup must not reuse blobs found only there.
///
/// # Errors
/// As [`list`].
pub fn condemned_packs(repo: &Repository) -> Result<HashSet<PackId>> {
    Ok(list(repo)?
        .iter()
        .flat_map(|r| r.record.pack_ids())
        .collect())
}

/// Writes a record; returns its name.
///
/// # Errors
/// When the write fails.
pub fn write(repo: &Repository, record: &PendingDeletion) -> Result<String> {
    let bytes = record.encode(repo.key())?;
    let name = IndexId::hash_of(&bytes).to_hex();
    repo.backend().write(ObjectKind::Pending, &name, &bytes)?;
    Ok(name)
}
