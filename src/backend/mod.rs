//! The storage trait every repository location implements: a flat store of immutable, named objects.
//!
//! Backends move bytes; they never interpret them. A local directory is served by [`LocalBackend`] (atomic
//! writes by rename, fsync); every remote service by [`RemoteBackend`] over OpenDAL. Both lay objects out
//! under the same names ([`object_path`], FORMAT.md §3), so a directory copied to a bucket is a repository.

mod as_of;
mod counting;
mod direct;
mod local;
pub mod location;
mod memory;
pub mod object_lock;
mod remote;
mod retry;
mod s3_lock;
mod sigv4;
mod ssh;

pub use as_of::{AsOfBackend, ObjectVersion};
pub use counting::{CountingBackend, RequestCounter, Requests};
pub use local::LocalBackend;
pub use location::Location;
pub use memory::MemoryBackend;
pub use object_lock::{LockMode, LockSettings, Retention};
pub use remote::RemoteBackend;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

/// The families of objects a repository holds (FORMAT.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// The `config` object.
    Config,
    /// Key files.
    Key,
    /// Pack files.
    Pack,
    /// Index files.
    Index,
    /// Snapshot files.
    Snapshot,
    /// Leases of running backups and prunes (FORMAT.md §12).
    Lease,
    /// Pending-deletion records written by prune (FORMAT.md §12).
    Pending,
    /// When check last verified each pack (FORMAT.md §12).
    Verified,
    /// Records of archived PostgreSQL WAL files (FORMAT.md §16).
    Wal,
}

impl ObjectKind {
    /// Name used in messages.
    pub fn label(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "key file",
            ObjectKind::Pack => "pack",
            ObjectKind::Index => "index file",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Lease => "lease",
            ObjectKind::Pending => "pending-deletion record",
            ObjectKind::Verified => "verification record",
            ObjectKind::Wal => "WAL record",
        }
    }

    /// The directory (with a trailing `/`) that holds objects of this kind; empty for the config.
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Config => "",
            ObjectKind::Key => "keys/",
            ObjectKind::Pack => "data/",
            ObjectKind::Index => "index/",
            ObjectKind::Snapshot => "snapshots/",
            ObjectKind::Lease => "locks/",
            ObjectKind::Pending => "pending/",
            ObjectKind::Verified => "verified/",
            ObjectKind::Wal => "wal/",
        }
    }

    /// The largest object of this kind any reader accepts (FORMAT.md §3, "Object sizes"): the one
    /// table of these bounds. Every whole read is bounded by it before anything is allocated, so a
    /// planted sparse file of gigabytes costs a stat, not its size in memory. Packs have a tighter
    /// bound from the repository's config ([`crate::format::config::Config::max_pack_len`]) where the
    /// config is known.
    pub fn max_len(self) -> u64 {
        use crate::format::{config, index_file, key, lifecycle, pack, snapshot, wal};
        let envelope = |kind: &crate::format::envelope::EnvelopeKind| kind.max_len as u64;
        match self {
            ObjectKind::Config => envelope(&config::ENVELOPE),
            ObjectKind::Key => key::MAX_FILE_LEN as u64,
            ObjectKind::Pack => pack::MAX_PACK_LEN,
            ObjectKind::Index => envelope(&index_file::ENVELOPE),
            ObjectKind::Snapshot => envelope(&snapshot::ENVELOPE),
            ObjectKind::Lease => envelope(&lifecycle::LEASE_ENVELOPE),
            ObjectKind::Pending => envelope(&lifecycle::PENDING_ENVELOPE),
            ObjectKind::Verified => envelope(&lifecycle::VERIFIED_ENVELOPE),
            ObjectKind::Wal => envelope(&wal::ENVELOPE),
        }
    }
}

/// The error for an object the storage does not hold; `place` says where it was looked for (a path,
/// an endpoint and key), or is empty.
pub(crate) fn missing(kind: ObjectKind, name: &str, place: &str) -> Error {
    let place = if place.is_empty() {
        String::new()
    } else {
        format!(" ({place})")
    };
    Error::not_found(
        kind.label(),
        name,
        format!(
            "{} {name} is missing from the repository{place}",
            kind.label()
        ),
    )
}

/// The error for an object larger than a reader accepts: damage or a planted file, refused before it is
/// read.
pub(crate) fn too_large(kind: ObjectKind, name: &str, size: u64, max: u64) -> Error {
    let what = match kind {
        ObjectKind::Config => "the config".to_string(),
        _ => format!("{} {name}", kind.label()),
    };
    Error::corrupted(format!(
        "{what} is {size} bytes, more than the {max} bytes any {} may be (FORMAT.md §3); it is damaged or \
         was not written by cairn: move it out of the repository (`cairn check` tells what it held)",
        kind.label()
    ))
}

/// The error for a ranged read past the end of an object (`size`, when known): a truncated or
/// replaced object, or an index that names bytes it never held.
pub(crate) fn too_short(
    kind: ObjectKind,
    name: &str,
    size: Option<u64>,
    offset: u64,
    len: u64,
) -> Error {
    let size = size
        .map(|s| format!(" is {s} bytes,"))
        .unwrap_or_else(|| " is".into());
    Error::corrupted(format!(
        "{} {name}{size} too short for bytes {offset}..{} (truncated?)",
        kind.label(),
        offset.saturating_add(len)
    ))
}

/// Every kind, in the order a copy must write them so that a reader never sees an object whose
/// dependencies are missing: keys and config (the target becomes a repository), packs, index, then
/// snapshots and WAL records (both name blobs only). Leases, pending-deletion and verification records
/// are per-location bookkeeping and not copied.
pub const WRITE_ORDER: [ObjectKind; 6] = [
    ObjectKind::Key,
    ObjectKind::Config,
    ObjectKind::Pack,
    ObjectKind::Index,
    ObjectKind::Snapshot,
    ObjectKind::Wal,
];

/// The path of an object relative to the repository root, `/`-separated (FORMAT.md §3).
///
/// # Errors
/// `Corrupted` when `name` is not a plain alphanumeric object name (names come from listings of untrusted storage).
pub fn object_path(kind: ObjectKind, name: &str) -> Result<String> {
    if kind == ObjectKind::Config {
        return Ok("config".to_string());
    }
    if name.len() < 2 || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::corrupted(format!(
            "{} name {name:?} is not a valid object name",
            kind.label()
        )));
    }
    Ok(match kind {
        ObjectKind::Pack => format!("data/{}/{name}", &name[..2]),
        _ => format!("{}{name}", kind.dir()),
    })
}

/// Length of an object name: the hex of a 32-byte hash (FORMAT.md §3).
const OBJECT_NAME_LEN: usize = 64;

/// Whether `name`, listed below the directory of `kind`, names an object: `config` for the config,
/// else 64 lowercase hex digits (FORMAT.md §3). Anything else (an editor's swap file, rsync's
/// temporary, a README) is not part of the repository and readers ignore it.
pub fn is_object_name(kind: ObjectKind, name: &str) -> bool {
    match kind {
        ObjectKind::Config => name == "config",
        _ => {
            name.len() == OBJECT_NAME_LEN
                && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }
    }
}

/// A listing of one kind split into its objects and the files that are not objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Names and sizes of the objects, in listing order.
    pub objects: Vec<(String, u64)>,
    /// Names of the other files found there, which every reader ignores ([`is_object_name`]).
    pub ignored: Vec<String>,
}

impl Listing {
    /// Splits the files listed below the directory of `kind`.
    pub fn of(kind: ObjectKind, files: Vec<(String, u64)>) -> Listing {
        let mut listing = Listing::default();
        for (name, size) in files {
            if is_object_name(kind, &name) {
                listing.objects.push((name, size));
            } else {
                listing.ignored.push(name);
            }
        }
        listing
    }
}

/// Whether a directory below `data/` can be a shard: a plain alphanumeric name. Anything else is not part of
/// the layout and is ignored, like files that are not objects.
fn is_shard_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Refuses a shard name that is not a plain directory name (shard names come from listings of untrusted storage).
fn check_shard(shard: &str) -> Result<()> {
    if !is_shard_name(shard) {
        return Err(Error::corrupted(format!(
            "data/{shard:?} is not a valid pack directory name"
        )));
    }
    Ok(())
}

/// Names and sizes of all objects of `kind`, sorted, like [`Backend::list`]; packs are listed one shard per
/// request with up to `connections` shards at once when the backend splits them ([`Backend::pack_shards`]).
/// A listing is a sequence of pages (1000 keys each on S3) that one request cannot fetch in parallel, so
/// this is what makes listing a large repository take the time of its largest shard rather than of all.
///
/// # Errors
/// When a listing fails (the first failure is returned).
pub fn list_concurrently(
    backend: &dyn Backend,
    kind: ObjectKind,
    connections: usize,
) -> Result<Vec<(String, u64)>> {
    let shards = match kind {
        ObjectKind::Pack => backend.pack_shards()?,
        _ => None,
    };
    let Some(shards) = shards else {
        return backend.list(kind);
    };
    let results =
        crate::threads::map_bounded(&shards, connections, |shard| backend.list_pack_shard(shard));
    let mut all = Vec::new();
    for listed in results {
        all.extend(listed?);
    }
    all.sort();
    Ok(Listing::of(kind, all).objects)
}

/// How to reach a location: service options and the request policy of remote backends.
///
/// The policy bounds how long a remote backend waits for an endpoint that does not answer: each attempt
/// of a request takes at most `timeout`; a failed request is tried again at most `retries` times, after
/// pauses of 0.2 s doubling up to 30 s, and no retry starts later than `retry_for` after the first
/// attempt. A refused connection fails at once unless the endpoint has answered before (a server
/// restarting); once one request has given up on an endpoint that does not answer, the others fail
/// without trying.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// `key=value` options passed through to the OpenDAL service (`-o`): `endpoint`, `region`, `key`, ...
    pub service: BTreeMap<String, String>,
    /// Requests in flight at most.
    pub connections: usize,
    /// Upload bandwidth limit in bytes per second.
    pub upload_limit: Option<u64>,
    /// Time one request attempt may take before it is abandoned and retried.
    pub timeout: Duration,
    /// Retries of a failed request (temporary failures only) before giving up.
    pub retries: usize,
    /// Time after the first attempt of a request past which no retry starts.
    pub retry_for: Duration,
    /// Told of every retry before its pause, so that a caller can say what is happening.
    pub on_retry: Option<OnRetry>,
}

/// A request about to be tried again, as told to [`BackendOptions::on_retry`].
#[derive(Debug)]
pub struct RetryNotice<'a> {
    /// What failed, in cairn's words, naming the endpoint, the cause and the object.
    pub message: &'a str,
    /// Which retry this is (1 for the first).
    pub retry: usize,
    /// Retries allowed in all.
    pub retries: usize,
    /// The pause before the retry.
    pub delay: Duration,
}

/// The callback of [`BackendOptions::on_retry`]; the library never prints retries itself.
#[derive(Clone)]
pub struct OnRetry(pub Arc<dyn Fn(&RetryNotice<'_>) + Send + Sync>);

impl std::fmt::Debug for OnRetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnRetry(..)")
    }
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            service: BTreeMap::new(),
            connections: 8,
            upload_limit: None,
            timeout: Duration::from_secs(300),
            retries: 8,
            retry_for: Duration::from_secs(600),
            on_retry: None,
        }
    }
}

impl BackendOptions {
    /// Options from `-o key=value` pairs. The keys `timeout` and `retry_for` (seconds) and `retries` set
    /// the request policy; every other key goes to the OpenDAL service.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed option or value.
    pub fn from_pairs<S: AsRef<str>>(pairs: &[S]) -> Result<Self> {
        let mut service = location::parse_options(pairs)?;
        let mut options = BackendOptions::default();
        let number = |key: &str, value: &str| {
            value.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| {
                Error::invalid_input(format!("-o {key}={value}: give a positive whole number"))
            })
        };
        if let Some(v) = service.remove("timeout") {
            options.timeout = Duration::from_secs(number("timeout", &v)?);
        }
        if let Some(v) = service.remove("retries") {
            options.retries = number("retries", &v)? as usize;
        }
        if let Some(v) = service.remove("retry_for") {
            options.retry_for = Duration::from_secs(number("retry_for", &v)?);
        }
        options.service = service;
        Ok(options)
    }
}

/// The backend for a location: [`LocalBackend`] for a directory, [`RemoteBackend`] for anything else.
///
/// # Errors
/// `InvalidInput` when a remote service cannot be configured from the options.
pub fn open(location: &Location, options: &BackendOptions) -> Result<Box<dyn Backend>> {
    match location {
        Location::Local(path) => {
            if !options.service.is_empty() {
                return Err(Error::invalid_input(format!(
                    "-o options apply to remote repositories only, and {} is a local directory",
                    path.display()
                )));
            }
            Ok(Box::new(LocalBackend::new(path.clone())))
        }
        remote => Ok(Box::new(RemoteBackend::new(remote, options)?)),
    }
}

/// A storage location for one repository.
///
/// Writes are atomic and durable when they return: an object is either absent or complete.
pub trait Backend: Send + Sync {
    /// Human-readable location (path or URL).
    fn location(&self) -> String;

    /// Whether the location holds a repository (its config object exists).
    ///
    /// # Errors
    /// When the storage cannot be asked.
    fn has_config(&self) -> Result<bool>;

    /// Prepares an empty location to receive a repository.
    ///
    /// # Errors
    /// When the location cannot be created.
    fn create(&self) -> Result<()>;

    /// Names and sizes of every file below the directory of `kind`, objects or not. Readers call
    /// [`Backend::list`], which leaves out what is not an object.
    ///
    /// # Errors
    /// When listing fails.
    fn list_all(&self, kind: ObjectKind) -> Result<Vec<(String, u64)>>;

    /// Names and sizes of all objects of `kind`; files whose names are not object names are left
    /// out ([`is_object_name`]), so a stray file blocks nothing.
    ///
    /// # Errors
    /// When listing fails.
    fn list(&self, kind: ObjectKind) -> Result<Vec<(String, u64)>> {
        Ok(self.list_classified(kind)?.objects)
    }

    /// The objects of `kind` and the names of the other files found with them (`check` reports those).
    ///
    /// # Errors
    /// When listing fails.
    fn list_classified(&self, kind: ObjectKind) -> Result<Listing> {
        Ok(Listing::of(kind, self.list_all(kind)?))
    }

    /// A whole object of at most [`ObjectKind::max_len`] bytes (see [`Backend::read_bounded`]). A
    /// missing object is a `Corrupted` error naming it.
    ///
    /// # Errors
    /// When the object is missing, unreadable or larger than its kind may be.
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        self.read_bounded(kind, name, kind.max_len())
    }

    /// [`Backend::read`] into `buf` (cleared first), reusing its capacity: reading one pack after
    /// another into the same buffers spares the kernel from zeroing fresh pages for each (a tenth
    /// of `check --read-data`'s CPU time went there).
    ///
    /// # Errors
    /// As [`Backend::read`].
    fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<()> {
        self.read_bounded_into(kind, name, kind.max_len(), buf)
    }

    /// A whole object, refused with a `Corrupted` error naming its size and `max` when it is larger
    /// than `max` bytes, before more than `max` bytes are allocated. This default asks the size
    /// first and reads that many bytes as a range; backends that can stat and read one handle
    /// override it.
    ///
    /// # Errors
    /// When the object is missing, unreadable or larger than `max`.
    fn read_bounded(&self, kind: ObjectKind, name: &str, max: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_bounded_into(kind, name, max, &mut out)?;
        Ok(out)
    }

    /// [`Backend::read_bounded`] into `buf` (cleared first), reusing its capacity.
    ///
    /// # Errors
    /// As [`Backend::read_bounded`].
    fn read_bounded_into(
        &self,
        kind: ObjectKind,
        name: &str,
        max: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let size = self.size(kind, name)?;
        if size > max {
            return Err(too_large(kind, name, size, max));
        }
        *buf = self.read_range(kind, name, 0, size)?;
        Ok(())
    }

    /// `len` bytes at `offset` of an object; fewer bytes than asked is a `Corrupted` error.
    ///
    /// # Errors
    /// When the object is missing, unreadable or too short.
    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;

    /// Size of an object.
    ///
    /// # Errors
    /// When the object is missing.
    fn size(&self, kind: ObjectKind, name: &str) -> Result<u64>;

    /// Stores an object atomically and durably.
    ///
    /// # Errors
    /// When the storage refuses the write.
    fn write(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()>;

    /// [`Backend::write`] of bytes the caller gives up, so a backend that must own what it sends (OpenDAL's
    /// buffers) takes them without a copy: a pack in flight is then held once, not twice. A backend that
    /// did not keep the buffer hands it back, so the caller can fill it again instead of faulting in
    /// fresh memory for every pack.
    ///
    /// # Errors
    /// When the storage refuses the write.
    fn write_owned(&self, kind: ObjectKind, name: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.write(kind, name, &bytes).map(|()| Some(bytes))
    }

    /// The shards of `data/` (the `xx` of `data/xx/`, FORMAT.md §3) that hold packs, so that
    /// [`list_concurrently`] can list them side by side; `None` when the backend lists packs in one go.
    ///
    /// # Errors
    /// When listing fails.
    fn pack_shards(&self) -> Result<Option<Vec<String>>> {
        Ok(None)
    }

    /// Names and sizes of the files in one shard named by [`Backend::pack_shards`], packs or not
    /// (as [`Backend::list_all`]; [`list_concurrently`] leaves out what is not a pack).
    ///
    /// # Errors
    /// When listing fails; `Corrupted` when `shard` is not a shard name.
    fn list_pack_shard(&self, shard: &str) -> Result<Vec<(String, u64)>> {
        check_shard(shard)?;
        let mut packs = self.list(ObjectKind::Pack)?;
        packs.retain(|(name, _)| name.starts_with(shard));
        Ok(packs)
    }

    /// Removes an object (absent is not an error).
    ///
    /// # Errors
    /// When the storage refuses.
    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()>;

    /// The Object Lock settings of this location (FORMAT.md §17); `None` where it is not locked,
    /// and on every backend but S3.
    ///
    /// # Errors
    /// When the settings cannot be read or are damaged.
    fn lock_settings(&self) -> Result<Option<LockSettings>> {
        Ok(None)
    }

    /// Makes this location locked with `settings`: checks that the bucket has versioning and
    /// Object Lock, then writes the settings, so that every later write carries a lock.
    ///
    /// # Errors
    /// `InvalidInput` off S3 or on a bucket without Object Lock (saying how to create one).
    fn enable_lock(&self, settings: &LockSettings) -> Result<()> {
        let _ = settings;
        Err(Error::invalid_input(format!(
            "{} is not on S3: Object Lock needs an S3 bucket created with Object Lock",
            self.location()
        )))
    }

    /// The retention of an object's current version; `None` when it has none. The kind
    /// [`ObjectKind::Config`] with the name `locking` names the lock settings themselves.
    ///
    /// # Errors
    /// When the object is missing or the storage cannot be asked; `InvalidInput` off S3.
    fn retention(&self, kind: ObjectKind, name: &str) -> Result<Option<Retention>> {
        let _ = (kind, name);
        Ok(None)
    }

    /// Sets the retention of an object's current version to `retention`, which is never earlier
    /// than the one it has.
    ///
    /// # Errors
    /// When the storage refuses; `InvalidInput` off S3.
    fn extend_retention(&self, kind: ObjectKind, name: &str, retention: &Retention) -> Result<()> {
        let _ = (kind, name, retention);
        Err(Error::invalid_input(format!(
            "{} is not on S3: it has no Object Lock",
            self.location()
        )))
    }

    /// When the storage wrote the object (its modification time), which the writer of its bytes
    /// cannot choose; `None` where the backend cannot tell.
    ///
    /// # Errors
    /// When the object is missing or the storage cannot be asked.
    fn modified(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let _ = (kind, name);
        Ok(None)
    }

    /// Whether every write and remove is refused: a view of the repository as it was at a past time
    /// ([`AsOfBackend`]). Readers that keep bookkeeping in the repository (`check`'s verification
    /// record) skip it rather than fail.
    fn read_only(&self) -> bool {
        false
    }

    /// Removes the temporaries in `tmp/` (FORMAT.md §3, §11) not modified for `idle`: what writes
    /// killed midway left. Returns how many were removed; 0 where the backend writes no temporaries.
    ///
    /// # Errors
    /// When `tmp/` cannot be listed or a stale temporary cannot be removed.
    fn remove_stale_temporaries(&self, idle: Duration) -> Result<u64> {
        let _ = idle;
        Ok(0)
    }
}
