//! cairn: content-addressed, deduplicating, encrypted backups.
//!
//! The library knows nothing of terminals or argument parsing; the `cairn` binary is a thin layer on top.
//! Data flows one way through a backup: source -> [`chunker`] -> keyed BLAKE3 id -> [`index`] (dedup)
//! -> zstd -> seal -> [`pack`] -> [`backend`], then trees and the snapshot last. FORMAT.md specifies every byte.
//!
//! # Where things live
//!
//! The modules form layers; each uses only its own layer and the ones before it in this list.
//!
//! 1. **Formats and primitives** — [`id`], [`error`], [`exit`] (exit codes), [`crypto`] (keys, ids, sealing),
//!    [`format`](mod@format) (the bytes of every object FORMAT.md specifies: a new pack or tree version goes
//!    to `format::pack` / `format::tree` with its reader kept for the old one), [`chunker`],
//!    [`blob`] (compress and seal one blob), `buffers`, [`process`] (child processes, and
//!    side commands run to completion), `signals` (crate-private), [`units`] (spans and sizes as people write
//!    them).
//! 2. **Storage and packs** — [`backend`] (the `Backend` trait; a new storage service is a new
//!    module there, passing `tests/common/conformance.rs`), [`pack`] (pack writer and reader),
//!    [`index`] (index files in the repository, `index::files`, and the local index cache).
//! 3. **The repository and its protocol** — [`repo`]: opening, keys (`repo::key_files`),
//!    snapshots and their selection, the blob saver, and the pieces of FORMAT.md §12 every
//!    writer shares (`repo::lease`, `repo::pending`).
//! 4. **Operations**, one per command family: [`archive`] (backup), [`restore`](mod@restore), [`browse`]
//!    (ls, cat, find, diff, stats), [`dump`], [`check`](mod@check), [`sync`], [`drill`], and [`ops`]
//!    (forget with its keep policies in `ops::retention`, prune, repair, keys, re-encryption).
//!    An operation may use another (drill restores, stats walks like browse); none is used by
//!    the layers before it.
//! 5. **The nightly plan** — [`plan`] (plan file, state file, schedule, hooks, and the run
//!    itself in `plan::run`; a new plan step is a section in `plan::file`, a `plan::Step`, and
//!    its work in the CLI's `StepRunner`) and [`monitor`] (`status`).
//!
//! The entry points a library user needs are re-exported at the top: open or create a
//! [`Repository`], back up with [`backup`], restore with [`restore()`], check with [`check()`].
//!
//! ```
//! use cairn::{backup, check, restore, BackupOptions, BackupSource, CheckOptions, Config,
//!     KdfParams, LocalBackend, NoProgress, NoRestoreProgress, Repository, RestoreOptions};
//! # fn main() -> cairn::Result<()> {
//! let dir = tempfile::tempdir().expect("a temporary directory");
//! let (src, cache) = (dir.path().join("src"), dir.path().join("cache"));
//! std::fs::create_dir(&src).expect("a source directory");
//! std::fs::write(src.join("hello.txt"), b"hello").expect("a file");
//!
//! let backend = Box::new(LocalBackend::new(dir.path().join("repo")));
//! let repo = Repository::init(backend, b"password", KdfParams::MINIMUM, Config::generate()?, &cache)?
//!     .into_indexed()?;
//! let sources = BackupSource::Paths(cairn::archive::normalize_sources(&[src.clone()])?);
//! let outcome = backup(&repo, sources, &BackupOptions::default(), &NoProgress)?;
//!
//! let target = dir.path().join("restored");
//! restore(&repo, &outcome.snapshot.tree_id(), &target, &RestoreOptions::default(), &NoRestoreProgress)?;
//! let restored = target.join(src.strip_prefix("/").expect("an absolute path"));
//! assert_eq!(std::fs::read(restored.join("hello.txt")).expect("restored"), b"hello");
//! assert!(check(&repo, CheckOptions::default())?.is_ok());
//! # Ok(()) }
//! ```

pub mod archive;
pub mod backend;
pub mod blob;
pub mod browse;
pub(crate) mod buffers;
pub mod check;
pub mod chunker;
pub mod crypto;
pub mod delta;
pub mod drill;
pub mod dump;
pub mod error;
pub mod exit;
pub mod format;
pub mod id;
pub mod index;
#[doc(hidden)]
pub mod model;
pub mod monitor;
pub mod ops;
pub mod pack;
pub mod pg;
pub mod plan;
pub mod process;
pub mod repo;
pub mod restore;
pub(crate) mod signals;
pub mod sync;
#[cfg(test)]
mod test_bytes;
mod threads;
pub mod units;
pub mod wal;

pub use archive::{backup, BackupOptions, BackupOutcome, BackupSource, BackupSources, NoProgress};
pub use backend::{Backend, LocalBackend};
pub use check::{check, CheckOptions, CheckReport};
pub use crypto::KdfParams;
pub use error::{Error, ErrorKind, ObjectRef, Result};
pub use format::config::Config;
pub use format::snapshot::{Snapshot, Summary};
pub use id::{BlobId, BlobType, PackId, SnapshotId, TreeId};
pub use repo::{IndexedRepository, Repository, SnapshotFilter};
pub use restore::{restore, NoRestoreProgress, RestoreOptions};
