//! A backend wrapper that counts the operations a command asks of storage, by kind, and the bytes
//! it moves: what the command cost on a metered object store, and how little of a repository it
//! touched (tests prove both with it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::{Backend, ObjectKind};
use crate::error::Result;

/// Operations on storage by kind, and bytes moved. An operation is one call of the backend: a
/// listing counts once whatever its length (an object store pages it, 1,000 names a request on
/// S3, hence `listed`), and a read of a whole object of unknown size may cost a size request too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    /// Listings of a directory of objects.
    pub list: u64,
    /// Names those listings returned.
    pub listed: u64,
    /// Size, date or retention asked of one object.
    pub head: u64,
    /// Reads of an object or of a range of one.
    pub get: u64,
    /// Objects written (and retentions extended).
    pub put: u64,
    /// Objects removed.
    pub delete: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
}

impl Requests {
    /// What was counted after `earlier` (a snapshot of the same counter).
    pub fn since(&self, earlier: &Requests) -> Requests {
        Requests {
            list: self.list - earlier.list,
            listed: self.listed - earlier.listed,
            head: self.head - earlier.head,
            get: self.get - earlier.get,
            put: self.put - earlier.put,
            delete: self.delete - earlier.delete,
            bytes_read: self.bytes_read - earlier.bytes_read,
            bytes_written: self.bytes_written - earlier.bytes_written,
        }
    }
}

/// A shared count of requests; clones see the same counts.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    list: AtomicU64,
    listed: AtomicU64,
    head: AtomicU64,
    get: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

impl RequestCounter {
    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.0.bytes_read.load(Ordering::Relaxed)
    }

    /// The counts so far.
    pub fn requests(&self) -> Requests {
        let c = &self.0;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Requests {
            list: get(&c.list),
            listed: get(&c.listed),
            head: get(&c.head),
            get: get(&c.get),
            put: get(&c.put),
            delete: get(&c.delete),
            bytes_read: get(&c.bytes_read),
            bytes_written: get(&c.bytes_written),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn listing<T>(&self, listed: Result<Vec<T>>) -> Result<Vec<T>> {
        Self::add(&self.0.list, 1);
        if let Ok(names) = &listed {
            Self::add(&self.0.listed, names.len() as u64);
        }
        listed
    }

    fn read(&self, bytes: usize) {
        Self::add(&self.0.get, 1);
        Self::add(&self.0.bytes_read, bytes as u64);
    }

    fn head(&self) {
        Self::add(&self.0.head, 1);
    }

    fn written(&self, bytes: usize) {
        Self::add(&self.0.put, 1);
        Self::add(&self.0.bytes_written, bytes as u64);
    }
}

/// Passes every call to the inner backend and counts it.
pub struct CountingBackend {
    inner: Box<dyn Backend>,
    counter: RequestCounter,
}

impl CountingBackend {
    /// Wraps `inner`, adding to `counter`.
    pub fn new(inner: Box<dyn Backend>, counter: RequestCounter) -> Self {
        CountingBackend { inner, counter }
    }
}

impl Backend for CountingBackend {
    fn modified(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        self.counter.head();
        self.inner.modified(kind, name)
    }

    fn lock_settings(&self) -> Result<Option<super::LockSettings>> {
        self.inner.lock_settings()
    }

    fn enable_lock(&self, settings: &super::LockSettings) -> Result<()> {
        self.inner.enable_lock(settings)
    }

    fn retention(&self, kind: ObjectKind, name: &str) -> Result<Option<super::Retention>> {
        self.counter.head();
        self.inner.retention(kind, name)
    }

    fn extend_retention(
        &self,
        kind: ObjectKind,
        name: &str,
        retention: &super::Retention,
    ) -> Result<()> {
        self.counter.written(0);
        self.inner.extend_retention(kind, name, retention)
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn has_config(&self) -> Result<bool> {
        self.counter.head();
        self.inner.has_config()
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn list_all(&self, kind: ObjectKind) -> Result<Vec<(String, u64)>> {
        self.counter.listing(self.inner.list_all(kind))
    }

    fn pack_shards(&self) -> Result<Option<Vec<String>>> {
        let shards = self.inner.pack_shards();
        if let Ok(Some(shards)) = &shards {
            RequestCounter::add(&self.counter.0.list, 1);
            RequestCounter::add(&self.counter.0.listed, shards.len() as u64);
        }
        shards
    }

    fn list_pack_shard(&self, shard: &str) -> Result<Vec<(String, u64)>> {
        self.counter.listing(self.inner.list_pack_shard(shard))
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let bytes = self.inner.read(kind, name)?;
        self.counter.read(bytes.len());
        Ok(bytes)
    }

    fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.read_into(kind, name, buf)?;
        self.counter.read(buf.len());
        Ok(())
    }

    fn read_bounded_into(
        &self,
        kind: ObjectKind,
        name: &str,
        max: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.read_bounded_into(kind, name, max, buf)?;
        self.counter.read(buf.len());
        Ok(())
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let bytes = self.inner.read_range(kind, name, offset, len)?;
        self.counter.read(bytes.len());
        Ok(bytes)
    }

    fn size(&self, kind: ObjectKind, name: &str) -> Result<u64> {
        self.counter.head();
        self.inner.size(kind, name)
    }

    fn write(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        self.counter.written(bytes.len());
        self.inner.write(kind, name, bytes)
    }

    fn write_owned(&self, kind: ObjectKind, name: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.counter.written(bytes.len());
        self.inner.write_owned(kind, name, bytes)
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        RequestCounter::add(&self.counter.0.delete, 1);
        self.inner.remove(kind, name)
    }

    fn remove_stale_temporaries(&self, idle: std::time::Duration) -> Result<u64> {
        RequestCounter::add(&self.counter.0.list, 1);
        let removed = self.inner.remove_stale_temporaries(idle)?;
        RequestCounter::add(&self.counter.0.delete, removed);
        Ok(removed)
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }
}
