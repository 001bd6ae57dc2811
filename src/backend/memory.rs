//! An in-memory backend: objects in a map, gone with the process. For tests and fuzz targets that need a
//! real repository without a file system; clones share one store, so a test can keep a handle while a
//! repository owns another, and damage or inspect objects behind its back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{object_path, Backend, ObjectKind};
use crate::error::{Error, Result};

/// Objects by (kind, name).
type Store = BTreeMap<(Kind, String), Arc<Vec<u8>>>;

/// [`ObjectKind`] with an order, for the map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Kind(u8);

impl From<ObjectKind> for Kind {
    fn from(kind: ObjectKind) -> Self {
        Kind(match kind {
            ObjectKind::Config => 0,
            ObjectKind::Key => 1,
            ObjectKind::Pack => 2,
            ObjectKind::Index => 3,
            ObjectKind::Snapshot => 4,
            ObjectKind::Lease => 5,
            ObjectKind::Pending => 6,
            ObjectKind::Verified => 7,
            ObjectKind::Wal => 8,
        })
    }
}

/// A repository location held in memory. Writes are atomic (an object is replaced whole under a lock);
/// names are validated as a real backend's paths are ([`object_path`]).
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    store: Arc<Mutex<Store>>,
}

impl MemoryBackend {
    /// An empty location.
    pub fn new() -> Self {
        Self::default()
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the map half-changed: every change is one insert or remove.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Arc<Vec<u8>>> {
        object_path(kind, name)?;
        self.store()
            .get(&(kind.into(), name.to_string()))
            .cloned()
            .ok_or_else(|| super::missing(kind, name, ""))
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory:".to_string()
    }

    fn has_config(&self) -> Result<bool> {
        Ok(self
            .store()
            .contains_key(&(ObjectKind::Config.into(), "config".to_string())))
    }

    fn create(&self) -> Result<()> {
        if !self.store().is_empty() {
            return Err(Error::invalid_input(
                "memory: is not empty; choose a new location for the repository",
            ));
        }
        Ok(())
    }

    fn list_all(&self, kind: ObjectKind) -> Result<Vec<(String, u64)>> {
        let k = Kind::from(kind);
        Ok(self
            .store()
            .iter()
            .filter(|((ok, _), _)| *ok == k)
            .map(|((_, name), bytes)| (name.clone(), bytes.len() as u64))
            .collect())
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let bytes = self.get(kind, name)?;
        let size = bytes.len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(bytes[offset as usize..end as usize].to_vec()),
            _ => Err(super::too_short(kind, name, Some(size), offset, len)),
        }
    }

    fn size(&self, kind: ObjectKind, name: &str) -> Result<u64> {
        Ok(self.get(kind, name)?.len() as u64)
    }

    fn write(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        object_path(kind, name)?;
        self.store()
            .insert((kind.into(), name.to_string()), Arc::new(bytes.to_vec()));
        Ok(())
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        object_path(kind, name)?;
        self.store().remove(&(kind.into(), name.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_store_and_missing_objects_are_not_found_errors() {
        let a = MemoryBackend::new();
        a.create().unwrap();
        let b = a.clone();
        b.write(ObjectKind::Pack, "abcd", b"0123456789").unwrap();
        assert_eq!(
            a.list_all(ObjectKind::Pack).unwrap(),
            vec![("abcd".into(), 10)]
        );
        assert!(a.list(ObjectKind::Index).unwrap().is_empty());
        assert_eq!(
            a.read_range(ObjectKind::Pack, "abcd", 2, 3).unwrap(),
            b"234"
        );
        let short = a.read_range(ObjectKind::Pack, "abcd", 8, 3).unwrap_err();
        assert_eq!(short.kind(), crate::ErrorKind::Corrupted);
        assert!(
            b.create().is_err(),
            "a location holding objects is not created again"
        );
        a.remove(ObjectKind::Pack, "abcd").unwrap();
        let gone = b.read(ObjectKind::Pack, "abcd").unwrap_err();
        assert_eq!(gone.kind(), crate::ErrorKind::NotFound);
        assert!(gone.to_string().contains("abcd"), "{gone}");
        assert!(a.write(ObjectKind::Index, "../x", b"").is_err());
    }
}
