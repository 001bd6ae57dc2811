//! Files in the repository's directories that are not objects (an editor's swap file, rsync's
//! temporary, a README): every reader ignores them (FORMAT.md §3), and `check` says where they are,
//! as notes, so that someone can remove them. It never removes or reads them.

use crate::backend::{Backend, ObjectKind};
use crate::error::Result;

/// The kinds whose directories `check` does not otherwise list whole.
const OTHER_KINDS: [ObjectKind; 5] = [
    ObjectKind::Key,
    ObjectKind::Lease,
    ObjectKind::Pending,
    ObjectKind::Verified,
    ObjectKind::Wal,
];

/// One note per file below `kind`'s directory that is not an object.
pub(super) fn notes(kind: ObjectKind, ignored: &[String]) -> Vec<String> {
    ignored
        .iter()
        .map(|name| {
            format!(
                "{}{name} is not a {} name (64 hex digits) and was ignored; remove it if nothing of yours needs it",
                kind.dir(),
                kind.label()
            )
        })
        .collect()
}

/// Notes for the files that are not objects below the directories `check` does not list itself.
///
/// # Errors
/// When the storage cannot be listed.
pub(super) fn other_notes(backend: &dyn Backend) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for kind in OTHER_KINDS {
        out.extend(notes(kind, &backend.list_classified(kind)?.ignored));
    }
    Ok(out)
}
