//! How `check` tells damage from a concurrent prune's normal work (FORMAT.md §12, Check): it remembers
//! every object it listed, and before reporting a problem lists again. A problem is reported only when
//! nothing it listed has vanished meanwhile; otherwise the check starts over on the settled repository.
//!
//! Never changes the repository; only lists it.

use std::collections::HashSet;

use crate::backend::ObjectKind;
use crate::error::Result;
use crate::repo::IndexedRepository;

/// How many times a check starts over because objects it listed were removed while it ran.
pub(super) const ATTEMPTS: usize = 5;

/// The objects one check attempt relied on, by kind.
#[derive(Default)]
pub(super) struct Listed {
    objects: Vec<(ObjectKind, HashSet<String>)>,
}

impl Listed {
    /// Remembers `names` of `kind` (adds to what was remembered of that kind before).
    pub(super) fn remember(&mut self, kind: ObjectKind, names: impl IntoIterator<Item = String>) {
        match self.objects.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, set)) => set.extend(names),
            None => self.objects.push((kind, names.into_iter().collect())),
        }
    }

    /// An object remembered earlier that a new listing no longer shows (`kind`, name), if any: then
    /// something (a prune, a forget) removed objects while the check read them, and its problems may be
    /// that work seen half done.
    ///
    /// # Errors
    /// When the storage cannot be listed.
    pub(super) fn vanished(
        &self,
        repo: &IndexedRepository,
    ) -> Result<Option<(ObjectKind, String)>> {
        for (kind, names) in &self.objects {
            let now: HashSet<String> = repo
                .repo()
                .backend()
                .list(*kind)?
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            if let Some(gone) = names.iter().find(|n| !now.contains(*n)) {
                return Ok(Some((*kind, gone.clone())));
            }
        }
        Ok(None)
    }
}
