//! A backend wrapper that counts the bytes read from storage, so commands can show (and tests can
//! prove) how little of a repository they touched.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Backend, ObjectKind};
use crate::error::Result;

/// A shared count of bytes read; clones see the same count.
#[derive(Clone, Debug, Default)]
pub struct ReadCounter(Arc<AtomicU64>);

impl ReadCounter {
    /// Bytes read so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Passes every call to the inner backend and adds the length of what reads return to a counter.
pub struct CountingBackend {
    inner: Box<dyn Backend>,
    counter: ReadCounter,
}

impl CountingBackend {
    /// Wraps `inner`; the returned counter reports its reads.
    pub fn new(inner: Box<dyn Backend>) -> (Self, ReadCounter) {
        let counter = ReadCounter::default();
        (
            CountingBackend {
                inner,
                counter: counter.clone(),
            },
            counter,
        )
    }
}

impl Backend for CountingBackend {
    fn modified(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        self.inner.modified(kind, name)
    }

    fn lock_settings(&self) -> Result<Option<super::LockSettings>> {
        self.inner.lock_settings()
    }

    fn enable_lock(&self, settings: &super::LockSettings) -> Result<()> {
        self.inner.enable_lock(settings)
    }

    fn retention(&self, kind: ObjectKind, name: &str) -> Result<Option<super::Retention>> {
        self.inner.retention(kind, name)
    }

    fn extend_retention(
        &self,
        kind: ObjectKind,
        name: &str,
        retention: &super::Retention,
    ) -> Result<()> {
        self.inner.extend_retention(kind, name, retention)
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn has_config(&self) -> Result<bool> {
        self.inner.has_config()
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn list_all(&self, kind: ObjectKind) -> Result<Vec<(String, u64)>> {
        self.inner.list_all(kind)
    }

    fn pack_shards(&self) -> Result<Option<Vec<String>>> {
        self.inner.pack_shards()
    }

    fn list_pack_shard(&self, shard: &str) -> Result<Vec<(String, u64)>> {
        self.inner.list_pack_shard(shard)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let bytes = self.inner.read(kind, name)?;
        self.counter.add(bytes.len());
        Ok(bytes)
    }

    fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.read_into(kind, name, buf)?;
        self.counter.add(buf.len());
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
        self.counter.add(buf.len());
        Ok(())
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let bytes = self.inner.read_range(kind, name, offset, len)?;
        self.counter.add(bytes.len());
        Ok(bytes)
    }

    fn size(&self, kind: ObjectKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }

    fn write(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        self.inner.write(kind, name, bytes)
    }

    fn write_owned(&self, kind: ObjectKind, name: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.inner.write_owned(kind, name, bytes)
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.inner.remove(kind, name)
    }

    fn remove_stale_temporaries(&self, idle: std::time::Duration) -> Result<u64> {
        self.inner.remove_stale_temporaries(idle)
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }
}
