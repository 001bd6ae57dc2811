//! The storage trait every repository location implements: a flat store of immutable, named objects.
//!
//! Backends move bytes; they never interpret them. Remote services come later behind the same trait.

mod local;

pub use local::LocalBackend;

use crate::error::Result;

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
        }
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

    /// Names and sizes of all objects of `kind`.
    ///
    /// # Errors
    /// When listing fails.
    fn list(&self, kind: ObjectKind) -> Result<Vec<(String, u64)>>;

    /// A whole object. A missing object is a `Corrupted` error naming it.
    ///
    /// # Errors
    /// When the object is missing or unreadable.
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>>;

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

    /// Removes an object (absent is not an error).
    ///
    /// # Errors
    /// When the storage refuses.
    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()>;
}
