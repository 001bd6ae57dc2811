//! Browsing snapshots without restoring them: addressing a path inside a snapshot (`SNAP:PATH`),
//! listing, streaming file contents, searching across snapshots and comparing two snapshots.
//!
//! Everything here reads trees (through a local cache) and, only where file bytes are wanted,
//! the data blobs of those files; it never writes to the repository.

pub mod content;
pub mod diff;
pub mod escape;
pub mod find;
pub mod ls;
pub mod path;
pub mod stats;
pub mod walk;

pub use crate::repo::TreeLoader;
pub use path::{locate, Located, SnapPath};
