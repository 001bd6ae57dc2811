//! Opening and creating a repository: keys, config, snapshots, and typed access to the pieces (index, packs, blobs).

pub mod fetch;
mod key_choice;
pub mod key_files;
pub mod lease;
mod pack_upload;
pub mod pending;
mod saver;
pub mod select;
mod snapshot_cache;
pub mod trees;

pub use saver::{BlobSaver, SaveStats, INDEX_INTERVAL};
pub use select::{JobFilter, SnapshotFilter};
pub use trees::TreeLoader;

use snapshot_cache::SnapshotCache;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{Backend, ObjectKind};
use crate::crypto::{KdfParams, MasterKey};
use crate::error::{Error, ErrorKind, Result};
use crate::format::config::Config;
use crate::format::key::{KeyFile, KeyMetadata};
use crate::format::pack::BlobEntry;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::id::{BlobId, BlobType, KeyId, PackId, SnapshotId, TreeId};
use crate::index::Index;
use crate::pack::PackReader;

/// A snapshot with its id, as listings and selections return them.
pub type SnapshotEntry = (SnapshotId, Snapshot);

/// A snapshot file that could not be loaded: its name and why.
pub type DamagedSnapshot = (String, Error);

/// An open repository: storage, master key and config.
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    config: Config,
    cache_root: PathBuf,
    /// Name of the key file the password opened; `None` when opened with a recovery key.
    opened_key: Option<String>,
}

/// A repository whose index is loaded: what reading and writing blobs needs.
pub struct IndexedRepository {
    repo: Repository,
    index: Index,
}

impl Repository {
    /// Creates a repository at an empty location with `config` (see [`Config::generate`]), protected by `password`.
    ///
    /// # Errors
    /// When the location is not empty or cannot be written.
    pub fn init(
        backend: Box<dyn Backend>,
        password: &[u8],
        kdf: KdfParams,
        config: Config,
        cache_root: &Path,
    ) -> Result<Self> {
        Self::init_locked(backend, password, kdf, config, cache_root, None)
    }

    /// [`Repository::init`], and with `lock` the location is locked first (FORMAT.md §17), so
    /// that the key and config are the first objects written with a lock.
    ///
    /// # Errors
    /// As [`Repository::init`]; `InvalidInput` when `lock` is given and the location is not an S3
    /// bucket with Object Lock.
    pub fn init_locked(
        backend: Box<dyn Backend>,
        password: &[u8],
        kdf: KdfParams,
        config: Config,
        cache_root: &Path,
        lock: Option<&crate::backend::LockSettings>,
    ) -> Result<Self> {
        config
            .validate()
            .map_err(|e| Error::invalid_input(e.to_string()))?;
        if backend.has_config()? {
            return Err(Error::invalid_input(format!(
                "{} already holds a cairn repository",
                backend.location()
            )));
        }
        backend.create()?;
        if let Some(lock) = lock {
            backend.enable_lock(lock)?;
        }
        let key = MasterKey::generate()?;
        let key_file = KeyFile::wrap(&key, password, kdf, &KeyMetadata::new(None)?)?.encode();
        let key_name = KeyId::hash_of(&key_file).to_hex();
        backend.write(ObjectKind::Key, &key_name, &key_file)?;
        // The config is written last: until it exists the location is not a repository.
        backend.write(ObjectKind::Config, "config", &config.encode(&key)?)?;
        Ok(Repository {
            backend: Arc::from(backend),
            key,
            config,
            cache_root: cache_root.to_path_buf(),
            opened_key: Some(key_name),
        })
    }

    /// Opens the repository at `backend` with `password`, trying the key files an opening pays for
    /// unasked (see [`Repository::open_hinted`]).
    ///
    /// # Errors
    /// As [`Repository::open_hinted`].
    pub fn open(backend: Box<dyn Backend>, password: &[u8], cache_root: &Path) -> Result<Self> {
        Self::open_hinted(backend, password, cache_root, None)
    }

    /// Opens the repository at `backend` with `password`. With `key_hint`, only the key file whose
    /// name starts with it is read and tried, whatever its KDF costs within the format's bounds;
    /// without, key files are tried in the order and within the work budget of FORMAT.md §4 ("What
    /// opening costs"): a key file planted by whoever can write to the storage cannot make every
    /// command run an absurd key derivation.
    ///
    /// # Errors
    /// `NotARepository` when there is none; `WrongPassword` when no key file tried opens (the
    /// message names those not tried); `InvalidInput` when `key_hint` names no key file or several;
    /// `Corrupted` for damaged keys or config.
    pub fn open_hinted(
        backend: Box<dyn Backend>,
        password: &[u8],
        cache_root: &Path,
        key_hint: Option<&str>,
    ) -> Result<Self> {
        require_config(backend.as_ref())?;
        let mut keys = backend.list(ObjectKind::Key)?;
        if keys.is_empty() {
            return Err(Error::corrupted(format!(
                "{}: the repository has no key files (keys/ is empty); it cannot be opened",
                backend.location()
            )));
        }
        let listed = keys.len();
        if let Some(hint) = key_hint {
            keys = hinted_key(backend.as_ref(), keys, hint)?;
        }
        let mut last_error = None;
        // Decoding runs no KDF, and each read is bounded by the largest key file (§3).
        let mut files = Vec::with_capacity(keys.len());
        for (name, _) in keys {
            // A file too large to be a key file is skipped like one that does not decode: a
            // planted one must not keep the others from opening.
            let bytes = match backend.read(ObjectKind::Key, &name) {
                Ok(bytes) => bytes,
                Err(e) if e.is_damage() => {
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match KeyFile::decode(&bytes) {
                Ok(file) => files.push((name, file)),
                Err(e) => last_error = Some(e.context(format!("key file {name}"))),
            }
        }
        let choice = key_choice::choose(files, key_hint.is_some());
        let mut key = None;
        for (name, file) in &choice.tries {
            match file.unwrap_key(password) {
                Ok(k) => {
                    key = Some((k, name.clone()));
                    break;
                }
                Err(e) => last_error = Some(e.context(format!("key file {name}"))),
            }
        }
        let (key, opened_key) = match key {
            Some(k) => k,
            None => {
                let e = last_error
                    .unwrap_or_else(|| Error::new(ErrorKind::WrongPassword, "wrong password"));
                let skipped = if choice.skipped.is_empty() {
                    String::new()
                } else {
                    format!("; {}", key_choice::describe_skipped(&choice.skipped))
                };
                return Err(
                    if e.kind() == ErrorKind::WrongPassword || !skipped.is_empty() {
                        Error::new(
                        ErrorKind::WrongPassword,
                        format!(
                            // Authentication cannot tell a wrong password from a damaged key file.
                            "wrong password: it opens none of the {} key file(s) tried of the {listed} of {} (if the password is right, the key files are damaged){skipped}",
                            choice.tries.len(),
                            backend.location()
                        ),
                    )
                    } else {
                        e
                    },
                );
            }
        };
        let config = Config::decode(&key, &backend.read(ObjectKind::Config, "config")?)?;
        Ok(Repository {
            backend: Arc::from(backend),
            key,
            config,
            cache_root: cache_root.to_path_buf(),
            opened_key: Some(opened_key),
        })
    }

    /// Opens the repository at `backend` with its keys themselves (a recovery key), no key file
    /// involved: how a repository whose every password is lost is opened again.
    ///
    /// # Errors
    /// `NotARepository` when there is none; `InvalidInput` when the config does not open with
    /// `key` (the key belongs to another repository).
    pub fn open_with_key(
        backend: Box<dyn Backend>,
        key: MasterKey,
        cache_root: &Path,
    ) -> Result<Self> {
        require_config(backend.as_ref())?;
        let bytes = backend.read(ObjectKind::Config, "config")?;
        let config = Config::decode(&key, &bytes).map_err(|e| {
            if e.is_damage() {
                Error::invalid_input(format!(
                    "the key does not open the config of {}: it belongs to another repository (or the config is damaged)",
                    backend.location()
                ))
            } else {
                e
            }
        })?;
        Ok(Repository {
            backend: Arc::from(backend),
            key,
            config,
            cache_root: cache_root.to_path_buf(),
            opened_key: None,
        })
    }

    /// Name of the key file the password opened (`None` when opened with [`Repository::open_with_key`]).
    pub fn opened_key(&self) -> Option<&str> {
        self.opened_key.as_deref()
    }

    /// The storage.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The storage, shared with threads that outlive a borrow (the pack writer).
    pub(crate) fn shared_backend(&self) -> Arc<dyn Backend> {
        Arc::clone(&self.backend)
    }

    /// The master key.
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This repository's directory in the local cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_root.join(&self.config.repo_id)
    }

    /// Loads the index, bringing the local cache up to date.
    ///
    /// # Errors
    /// When an index file is damaged or the cache cannot be written.
    pub fn into_indexed(self) -> Result<IndexedRepository> {
        let index = Index::open(&self.cache_dir(), self.backend(), &self.key)?;
        Ok(IndexedRepository { repo: self, index })
    }

    /// The repository with its index cache open but not yet brought up to date, for a caller that
    /// calls [`IndexedRepository::refresh_index`] before any lookup (a backup does, once it holds
    /// its lease: listing the index files earlier would only be repeated).
    ///
    /// # Errors
    /// When the cache cannot be opened.
    pub fn into_indexed_unsynced(self) -> Result<IndexedRepository> {
        let index = Index::open_unsynced(&self.cache_dir())?;
        Ok(IndexedRepository { repo: self, index })
    }

    /// All snapshots, oldest first.
    ///
    /// # Errors
    /// When a snapshot file is damaged (named in the message).
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let (out, mut damaged) = self.loadable_snapshots()?;
        match damaged.pop() {
            Some((_, e)) => Err(e),
            None => Ok(out),
        }
    }

    /// The snapshots that load, oldest first, and the names of the damaged ones with why: for readers
    /// of one snapshot, which one damaged snapshot file must not stop (`check` reports it).
    ///
    /// # Errors
    /// When the snapshots cannot be listed or read (damage is not an error here).
    pub fn loadable_snapshots(&self) -> Result<(Vec<SnapshotEntry>, Vec<DamagedSnapshot>)> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        let listed = self.backend.list(ObjectKind::Snapshot)?;
        let cache = SnapshotCache::new(self.cache_dir());
        cache.keep_only(listed.iter().map(|(name, _)| name.as_str()));
        for (name, _) in listed {
            let loaded = SnapshotId::from_hex(&name)
                .map_err(|_| Error::corrupted(format!("snapshots/{name}: not a snapshot name")))
                .and_then(|id| Ok((id, self.load_listed_snapshot(&id, &cache)?)));
            match loaded {
                Ok(snapshot) => out.push(snapshot),
                Err(e) if e.is_damage() => damaged.push((name, e)),
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.1.datetime().cmp(&b.1.datetime()).then(a.0.cmp(&b.0)));
        Ok((out, damaged))
    }

    /// One snapshot by id, read from the repository (`check` reads them so, never from the cache).
    ///
    /// # Errors
    /// When it is missing or damaged.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let name = id.to_hex();
        let bytes = self.backend.read(ObjectKind::Snapshot, &name)?;
        self.decode_snapshot(id, &bytes)
    }

    /// A snapshot a listing of the repository just named: from the local cache when it holds it
    /// (its bytes hash to its name, so they are the repository's), else read and then cached. A
    /// backup lists the snapshots to find its parent: without the cache it would read every one,
    /// a request each, as the repository grows.
    fn load_listed_snapshot(&self, id: &SnapshotId, cache: &SnapshotCache) -> Result<Snapshot> {
        if let Some(bytes) = cache.get(id) {
            return self.decode_snapshot(id, &bytes);
        }
        let bytes = self.backend.read(ObjectKind::Snapshot, &id.to_hex())?;
        let snapshot = self.decode_snapshot(id, &bytes)?;
        cache.put(id, &bytes);
        Ok(snapshot)
    }

    fn decode_snapshot(&self, id: &SnapshotId, bytes: &[u8]) -> Result<Snapshot> {
        let name = id.to_hex();
        if SnapshotId::hash_of(bytes) != *id {
            return Err(Error::corrupted(format!(
                "snapshot {name}: its content does not match its name (damaged)"
            )));
        }
        Snapshot::decode(&self.key, bytes).map_err(|e| e.context(format!("snapshot {name}")))
    }

    /// Resolves `latest` or a unique id prefix.
    ///
    /// # Errors
    /// `InvalidInput` when nothing or several snapshots match.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        self.select_snapshot(spec, &SnapshotFilter::default())
    }

    /// Resolves `latest` or a unique id prefix among the snapshots that pass `filter`.
    ///
    /// # Errors
    /// `InvalidInput` when nothing or several snapshots match.
    pub fn select_snapshot(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<(SnapshotId, Snapshot)> {
        let snapshots = self.selectable_snapshots(spec)?;
        filter
            .resolve(spec, snapshots)
            .map_err(|e| e.context(format!("repository {}", self.backend.location())))
    }

    /// The snapshots `spec` is chosen among: every one that loads. A damaged snapshot stops the
    /// choice only when it may be the one asked for: its name matches the prefix, or (its time
    /// unknown) it may be the latest.
    fn selectable_snapshots(&self, spec: &str) -> Result<Vec<SnapshotEntry>> {
        let (snapshots, damaged) = self.loadable_snapshots()?;
        let prefix = spec.to_ascii_lowercase();
        if let Some((name, e)) = damaged
            .into_iter()
            .find(|(name, _)| spec == "latest" || name.starts_with(&prefix))
        {
            let which = if spec == "latest" {
                format!(
                    "snapshot {name} is damaged and may be the latest; give the id of an intact one (`cairn snapshots`)"
                )
            } else {
                format!("snapshot {name} is damaged")
            };
            return Err(Error::corrupted(format!("{which}: {e}")));
        }
        Ok(snapshots)
    }

    /// Resolves `spec` for a command that reads `path` of the snapshot (see
    /// [`SnapshotFilter::resolve_holding`]); also returns, when a bare `latest` chose among
    /// snapshots of several source groups, the newest of each group it passed over.
    ///
    /// # Errors
    /// `InvalidInput` when nothing matches or no matching snapshot holds `path`.
    pub fn select_snapshot_holding(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
        path: &[u8],
    ) -> Result<(SnapshotEntry, Vec<SnapshotEntry>)> {
        let snapshots = self.selectable_snapshots(spec)?;
        let chosen = filter
            .resolve_holding(spec, snapshots.clone(), path)
            .map_err(|e| e.context(format!("repository {}", self.backend.location())))?;
        let passed_over = if spec == "latest" && path == b"/" {
            filter.other_groups(&chosen.1, &snapshots)
        } else {
            Vec::new()
        };
        Ok((chosen, passed_over))
    }

    /// Stores a snapshot file; the last step of a backup.
    ///
    /// # Errors
    /// When the write fails.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let bytes = snapshot.encode(&self.key)?;
        let id = SnapshotId::hash_of(&bytes);
        self.backend
            .write(ObjectKind::Snapshot, &id.to_hex(), &bytes)?;
        Ok(id)
    }
}

/// The one listed key file whose name starts with `hint`.
fn hinted_key(
    backend: &dyn Backend,
    keys: Vec<(String, u64)>,
    hint: &str,
) -> Result<Vec<(String, u64)>> {
    let prefix = hint.trim().to_ascii_lowercase();
    let matching: Vec<(String, u64)> = keys
        .into_iter()
        .filter(|(name, _)| !prefix.is_empty() && name.starts_with(&prefix))
        .collect();
    match matching.len() {
        1 => Ok(matching),
        0 => Err(Error::invalid_input(format!(
            "--key-hint {hint:?}: no key file of {} starts with it; the key files are the names in its keys/ directory",
            backend.location()
        ))),
        n => Err(Error::invalid_input(format!(
            "--key-hint {hint:?}: {n} key files of {} start with it; give more of the name",
            backend.location()
        ))),
    }
}

fn require_config(backend: &dyn Backend) -> Result<()> {
    if backend.has_config()? {
        return Ok(());
    }
    // Key files are written before the config (an interrupted `init` leaves them alone); snapshots
    // or packs beside them mean a repository whose config is gone, which `init` must not be
    // suggested for.
    let has = |kind: ObjectKind| backend.list(kind).is_ok_and(|l| !l.is_empty());
    if has(ObjectKind::Snapshot) || has(ObjectKind::Pack) {
        return Err(Error::corrupted(format!(
            "{} holds a repository's snapshots and packs but no config: the config was deleted or lost, and without it nothing can be read; copy it back from an offsite copy of this repository (`cairn sync`, or any copy of its `config` object), or, on an S3 bucket with versioning, read the repository as it was before with `--as-of TIME`",
            backend.location()
        )));
    }
    if has(ObjectKind::Key) {
        return Err(Error::new(
            ErrorKind::NotARepository,
            format!(
                "{} holds key files but no config: `cairn init` was interrupted (remove the directory and run it again) or the config was lost (copy it back from an offsite copy)",
                backend.location()
            ),
        ));
    }
    Err(Error::new(
        ErrorKind::NotARepository,
        format!(
            "there is no cairn repository at {}; create one with `cairn init -r {}`",
            backend.location(),
            backend.location()
        ),
    ))
}

impl IndexedRepository {
    /// The repository.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Re-reads the list of index files and updates the cache (FORMAT.md §12, backup step 3).
    ///
    /// # Errors
    /// When an index file cannot be read or decoded.
    pub fn refresh_index(&self) -> Result<()> {
        self.index.sync(self.repo.backend(), self.repo.key())
    }

    /// Lists the packs and marks every pack that an index file names but the repository lacks as
    /// unavailable, so that no lookup of this process trusts an entry pointing into it (a backup
    /// then stores those blobs again instead of referring to data that is gone). Returns them.
    ///
    /// Packs are listed after the index files were read: a pack is written before any index file
    /// names it, so a pack named by an index file read earlier and missing from this listing is
    /// really gone (FORMAT.md §11).
    ///
    /// # Errors
    /// When the packs cannot be listed or the cache cannot be read.
    pub fn exclude_absent_packs(&self) -> Result<Vec<PackId>> {
        let listed: HashMap<PackId, u64> = self
            .repo
            .backend()
            .list(ObjectKind::Pack)?
            .into_iter()
            .filter_map(|(name, size)| Some((PackId::from_hex(&name).ok()?, size)))
            .collect();
        self.mark_absent_packs(&listed)
    }

    /// [`IndexedRepository::exclude_absent_packs`] for a caller that listed the packs itself
    /// (ids and sizes). A listed pack shorter than the bytes its indexed blobs reach was cut
    /// (a torn copy, a swap): it counts as absent too, and is returned with them.
    ///
    /// # Errors
    /// When the cache cannot be read.
    pub fn mark_absent_packs(&self, listed: &HashMap<PackId, u64>) -> Result<Vec<PackId>> {
        let mut absent = Vec::new();
        for (pack, reach) in self.index.pack_reach()? {
            match listed.get(&pack) {
                None => {
                    self.index
                        .mark_unavailable(pack, "is missing from the repository");
                    absent.push(pack);
                }
                Some(&size) if size < reach => {
                    self.index.mark_unavailable(
                        pack,
                        format!(
                            "is {size} bytes, shorter than the {reach} its indexed blobs need (cut)"
                        ),
                    );
                    absent.push(pack);
                }
                Some(_) => {}
            }
        }
        absent.sort();
        Ok(absent)
    }

    /// The verified plaintext of a blob, from the first of its indexed locations that reads.
    ///
    /// # Errors
    /// When the blob is not indexed, or every pack holding it is missing or damaged (the error of
    /// the first).
    pub fn read_blob(&self, id: &BlobId, blob_type: BlobType) -> Result<Vec<u8>> {
        self.read_blob_in_chain(id, blob_type, 0, &fetch::Bases::default())
    }

    /// [`IndexedRepository::read_blob`] of a blob `depth` deltas below the one first asked for,
    /// located through `bases` when they hold it.
    fn read_blob_in_chain(
        &self,
        id: &BlobId,
        blob_type: BlobType,
        depth: usize,
        bases: &fetch::Bases,
    ) -> Result<Vec<u8>> {
        // One index lookup when the first location reads (a backup loads every parent tree this
        // way); the other locations are looked up only after a failure.
        let loc = match bases.get(id) {
            Some(loc) => *loc,
            None => self.index.locate(id, blob_type)?,
        };
        self.base_plaintext_in(&loc.entry, depth, bases)
            .and_then(|base| {
                let reader = PackReader::new(self.repo.backend(), self.repo.key());
                if depth == 0 {
                    reader.read_blob(&loc.pack, &loc.entry, base.as_deref())
                } else {
                    reader.read_base(&loc.pack, &loc.entry, base.as_deref())
                }
            })
            .or_else(|e| self.read_blob_elsewhere_in_chain(id, blob_type, &loc.pack, e, depth))
    }

    /// For each of `ids`, whether the index holds it and, for a delta, every link of its chain
    /// (FORMAT.md §6) within [`crate::delta::MAX_CHAIN`]: whether it can be rebuilt, as far as the
    /// index tells without reading.
    ///
    /// # Errors
    /// When the cache cannot be read.
    pub fn chains_complete(&self, ids: &[BlobId]) -> Result<Vec<bool>> {
        let none = HashSet::new();
        ids.iter()
            .map(|id| Ok(self.index.chain(id, &none)?.is_some()))
            .collect()
    }

    /// The plaintext of the base of `entry` when it is a delta (FORMAT.md §6), rebuilt through its
    /// own chain; `None` for a blob stored whole. `depth` counts the deltas above `entry`.
    ///
    /// # Errors
    /// `Corrupted` when the chain is longer than [`crate::delta::MAX_CHAIN`] (or loops), or the base
    /// cannot be read; the message names the delta and its base.
    pub fn base_plaintext(&self, entry: &BlobEntry, depth: usize) -> Result<Option<Vec<u8>>> {
        self.base_plaintext_in(entry, depth, &fetch::Bases::default())
    }

    /// [`IndexedRepository::base_plaintext`], with the links of the chain located through `bases`
    /// where they hold them (a restore locates every base it needs at once).
    ///
    /// # Errors
    /// As [`IndexedRepository::base_plaintext`].
    pub fn base_plaintext_in(
        &self,
        entry: &BlobEntry,
        depth: usize,
        bases: &fetch::Bases,
    ) -> Result<Option<Vec<u8>>> {
        let Some(base) = entry.delta.map(|d| d.base) else {
            return Ok(None);
        };
        if depth >= crate::delta::MAX_CHAIN {
            return Err(Error::corrupted(format!(
                "blob {}: its chain of deltas is longer than {} (or loops)",
                entry.id,
                crate::delta::MAX_CHAIN
            )));
        }
        self.read_blob_in_chain(&base, BlobType::Data, depth + 1, bases)
            .map(Some)
            .map_err(|e| e.context(format!("base {base} of delta {}", entry.id)))
    }

    /// The verified plaintext of a blob that could not be read from `failed`, from another indexed
    /// location: what a reader that read `failed` in bulk (a restore's ranges) falls back on.
    ///
    /// # Errors
    /// `error` (the failure at `failed`) when no other location holds the blob or none reads.
    pub fn read_blob_elsewhere(
        &self,
        id: &BlobId,
        blob_type: BlobType,
        failed: &PackId,
        error: Error,
    ) -> Result<Vec<u8>> {
        self.read_blob_elsewhere_in_chain(id, blob_type, failed, error, 0)
    }

    fn read_blob_elsewhere_in_chain(
        &self,
        id: &BlobId,
        blob_type: BlobType,
        failed: &PackId,
        error: Error,
        depth: usize,
    ) -> Result<Vec<u8>> {
        let reader = PackReader::new(self.repo.backend(), self.repo.key());
        let Ok(locations) = self.index.locations(id, blob_type) else {
            return Err(error);
        };
        locations
            .iter()
            .filter(|loc| loc.pack != *failed)
            .find_map(|loc| {
                let base = self.base_plaintext(&loc.entry, depth).ok()?;
                let base = base.as_deref();
                match depth {
                    0 => reader.read_blob(&loc.pack, &loc.entry, base),
                    _ => reader.read_base(&loc.pack, &loc.entry, base),
                }
                .ok()
            })
            .ok_or(error)
    }

    /// A decoded tree.
    ///
    /// # Errors
    /// When the tree blob is missing, damaged or malformed.
    pub fn load_tree(&self, id: &TreeId) -> Result<Tree> {
        TreeLoader::uncached(self).load(id)
    }

    /// A writer for new blobs.
    pub fn saver(&self) -> BlobSaver<'_> {
        BlobSaver::new(self, HashSet::new())
    }

    /// A writer for new blobs that stores again any blob indexed only in `excluded` packs.
    pub fn saver_excluding(&self, excluded: HashSet<PackId>) -> BlobSaver<'_> {
        BlobSaver::new(self, excluded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;

    #[test]
    fn any_key_file_opens_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let cache = dir.path().join("cache");
        let repo = Repository::init(
            Box::new(LocalBackend::new(&root)),
            b"first",
            KdfParams::MINIMUM,
            Config::generate().unwrap(),
            &cache,
        )
        .unwrap();
        let meta = KeyMetadata::new(None).unwrap();
        let second = KeyFile::wrap(repo.key(), b"second", KdfParams::MINIMUM, &meta)
            .unwrap()
            .encode();
        repo.backend()
            .write(ObjectKind::Key, &KeyId::hash_of(&second).to_hex(), &second)
            .unwrap();
        for pw in [&b"first"[..], b"second"] {
            let opened = Repository::open(Box::new(LocalBackend::new(&root)), pw, &cache).unwrap();
            assert_eq!(opened.config(), repo.config());
        }
        let err = Repository::open(Box::new(LocalBackend::new(&root)), b"third", &cache)
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::WrongPassword);
        assert!(err.to_string().contains("2 key file(s)"), "{err}");
    }

    #[test]
    fn init_refuses_an_existing_repository_and_a_bad_config() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let init = |config| {
            Repository::init(
                Box::new(LocalBackend::new(&root)),
                b"pw",
                KdfParams::MINIMUM,
                config,
                dir.path(),
            )
        };
        let mut bad = Config::generate().unwrap();
        bad.pack_size = 1;
        assert_eq!(init(bad).err().unwrap().kind(), ErrorKind::InvalidInput);
        assert!(
            !root.join("config").exists(),
            "a refused init must write nothing"
        );
        init(Config::generate().unwrap()).unwrap();
        assert_eq!(
            init(Config::generate().unwrap()).err().unwrap().kind(),
            ErrorKind::InvalidInput
        );
    }
}
