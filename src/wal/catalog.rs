//! The catalog of archived WAL files: every WAL record of the repository, read through a local
//! cache of the sealed records so that a `wal fetch` during recovery reads only the new ones.
//!
//! The cache holds records exactly as stored (still sealed), one file per record at
//! `<cache dir>/<repo id>/wal/<record name>`; a cached file is used only when its bytes hash to
//! its name, and opened like one read from the repository, so a damaged or planted cache file
//! changes nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rayon::prelude::*;

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::wal::{WalDrop, WalFile, WalName, WalRecord};
use crate::id::WalRecordId;
use crate::repo::Repository;

/// Every archived WAL file of a repository.
#[derive(Default)]
pub struct Catalog {
    records: Vec<(WalRecordId, WalRecord)>,
    damaged: Vec<(String, Error)>,
    by_name: BTreeMap<WalName, Vec<(usize, usize)>>,
}

impl Catalog {
    /// Lists the repository's WAL records and reads each one (from the cache when it holds it).
    ///
    /// # Errors
    /// When listing or reading fails; a record that does not decode is not an error here but is
    /// kept in [`Catalog::damaged`].
    pub fn load(repo: &Repository) -> Result<Catalog> {
        let listed = repo.backend().list(ObjectKind::Wal)?;
        let cache = repo.cache_dir().join("wal");
        let loaded: Vec<(String, Result<(WalRecordId, WalRecord)>)> = listed
            .par_iter()
            .map(|(name, _)| (name.clone(), read_record(repo, &cache, name)))
            .collect();
        forget_unlisted(&cache, &listed);
        let mut catalog = Catalog::default();
        for (name, loaded) in loaded {
            match loaded {
                Ok(record) => catalog.records.push(record),
                Err(e) if e.is_damage() => catalog.damaged.push((name, e)),
                Err(e) => return Err(e),
            }
        }
        catalog
            .records
            .sort_by(|a, b| a.1.datetime().cmp(&b.1.datetime()).then(a.0.cmp(&b.0)));
        for (r, (_, record)) in catalog.records.iter().enumerate() {
            for (f, file) in record.files.iter().enumerate() {
                catalog
                    .by_name
                    .entry(file.wal_name())
                    .or_default()
                    .push((r, f));
            }
        }
        Ok(catalog)
    }

    /// The archived file called `name` (its oldest record when several hold the same bytes).
    pub fn file(&self, name: &WalName) -> Option<&WalFile> {
        self.entry(name).map(|(file, _)| file)
    }

    /// The archived file called `name` with the record that holds it (its oldest).
    pub fn entry(&self, name: &WalName) -> Option<(&WalFile, &WalRecord)> {
        let (r, f) = self.by_name.get(name)?.first()?;
        let record = &self.records[*r].1;
        Some((&record.files[*f], record))
    }

    /// Every archived file, by name, with the record that holds it (oldest first).
    pub fn files(&self) -> impl Iterator<Item = (&WalName, &WalFile, &WalRecord)> + '_ {
        self.by_name.iter().filter_map(|(name, at)| {
            let (r, f) = at.first()?;
            let record = &self.records[*r].1;
            Some((name, &record.files[*f], record))
        })
    }

    /// The records, oldest first.
    pub fn records(&self) -> &[(WalRecordId, WalRecord)] {
        &self.records
    }

    /// Files pushes dropped unarchived (`--queue-max`) and no record archived since, by name,
    /// with the host that recorded the drop.
    pub fn dropped(&self) -> Vec<(WalName, &WalDrop, &str)> {
        let mut out: BTreeMap<WalName, (&WalDrop, &str)> = BTreeMap::new();
        for (_, record) in &self.records {
            for drop in &record.dropped {
                if let Ok(name) = WalName::parse(&drop.name) {
                    if !self.by_name.contains_key(&name) {
                        out.entry(name).or_insert((drop, record.host.as_str()));
                    }
                }
            }
        }
        out.into_iter().map(|(n, (d, h))| (n, d, h)).collect()
    }

    /// The newest record that archived files: when and what the archive queue held then.
    pub fn newest_push(&self) -> Option<&WalRecord> {
        self.records
            .iter()
            .rev()
            .map(|(_, r)| r)
            .find(|r| !r.files.is_empty())
    }

    /// Records that could not be read, with why.
    pub fn damaged(&self) -> &[(String, Error)] {
        &self.damaged
    }

    /// Names archived with different bytes by different records (two clusters archiving into one
    /// repository, or a bug): a restore cannot know which one is right.
    pub fn conflicts(&self) -> Vec<&WalName> {
        self.by_name
            .iter()
            .filter(|(_, at)| {
                let first = &self.records[at[0].0].1.files[at[0].1];
                at.iter()
                    .any(|(r, f)| self.records[*r].1.files[*f].chunks != first.chunks)
            })
            .map(|(name, _)| name)
            .collect()
    }

    /// Adds a record this process wrote (and caches it), so that its files count at once.
    pub(crate) fn add(
        &mut self,
        repo: &Repository,
        id: WalRecordId,
        bytes: &[u8],
        record: WalRecord,
    ) {
        let cache = repo.cache_dir().join("wal");
        let _ = write_cache(&cache, &id.to_hex(), bytes);
        let r = self.records.len();
        for (f, file) in record.files.iter().enumerate() {
            self.by_name
                .entry(file.wal_name())
                .or_default()
                .push((r, f));
        }
        self.records.push((id, record));
    }
}

/// One record, verified against its name and opened.
fn read_record(repo: &Repository, cache: &Path, name: &str) -> Result<(WalRecordId, WalRecord)> {
    let id = WalRecordId::from_hex(name)
        .map_err(|_| Error::corrupted(format!("wal/{name}: not a WAL record name")))?;
    let cached = fs::read(cache.join(name))
        .ok()
        .filter(|bytes| WalRecordId::hash_of(bytes) == id);
    let bytes = match cached {
        Some(bytes) => bytes,
        None => {
            let bytes = repo.backend().read(ObjectKind::Wal, name)?;
            if WalRecordId::hash_of(&bytes) != id {
                return Err(Error::corrupted(format!(
                    "WAL record {name}: its content does not match its name (damaged)"
                )));
            }
            let _ = write_cache(cache, name, &bytes);
            bytes
        }
    };
    let record = WalRecord::decode(repo.key(), &bytes)
        .map_err(|e| e.context(format!("WAL record {name}")))?;
    Ok((id, record))
}

fn write_cache(cache: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    crate::index::cache_file::store(&cache.join(name), bytes)
}

/// Removes cached records the repository no longer lists (a prune removed them).
fn forget_unlisted(cache: &Path, listed: &[(String, u64)]) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    let listed: std::collections::HashSet<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && !listed.contains(name.as_ref()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}
