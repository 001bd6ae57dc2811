//! cairn: content-addressed, deduplicating, encrypted backups.
//!
//! The library knows nothing of terminals or argument parsing; the `cairn` binary is a thin layer on top.
//! Data flows one way through a backup: source -> [`chunker`] -> keyed BLAKE3 id -> [`index`] (dedup)
//! -> zstd -> seal -> [`pack`] -> [`backend`], then trees and the snapshot last. FORMAT.md specifies every byte.
//!
//! ```no_run
//! use cairn::{backend::LocalBackend, Repository, archive, restore};
//! # fn main() -> cairn::Result<()> {
//! let cache = std::path::Path::new("/tmp/cairn-cache");
//! let repo = Repository::open(Box::new(LocalBackend::new("/srv/backup")), b"password", cache)?
//!     .into_indexed()?;
//! let sources = archive::normalize_sources(&["/etc".into()])?;
//! let outcome = archive::backup(&repo, archive::BackupSource::Paths(sources),
//!     &archive::BackupOptions::default(), &archive::NoProgress)?;
//! restore::restore(&repo, &outcome.snapshot.tree_id(), "/tmp/restore".as_ref(),
//!     &restore::RestoreOptions::default(), &restore::NoRestoreProgress)?;
//! # Ok(()) }
//! ```

pub mod archive;
pub mod backend;
pub mod blob;
pub mod browse;
pub mod buffers;
pub mod check;
pub mod chunker;
pub mod crypto;
pub mod drill;
pub mod dump;
pub mod error;
pub mod format;
pub mod id;
pub mod index;
#[doc(hidden)]
pub mod model;
pub mod monitor;
pub mod ops;
pub mod pack;
pub mod plan;
pub mod process;
pub mod repo;
pub mod restore;
pub mod signals;
pub mod sync;
mod threads;

pub use error::{Error, ErrorKind, Result};
pub use format::snapshot::{Snapshot, Summary};
pub use id::{BlobId, BlobType, PackId, SnapshotId, TreeId};
pub use repo::{IndexedRepository, Repository, SnapshotFilter};
