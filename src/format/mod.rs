//! The on-disk types of FORMAT.md, each with its magic and version: key, config, pack, index, tree, snapshot.
//!
//! Decoders here treat their input as hostile: every length and count is bounded, nothing panics.

pub mod config;
pub mod envelope;
pub mod index_file;
pub mod key;
pub mod lifecycle;
pub mod pack;
pub mod paper;
pub mod rfc3339;
pub mod snapshot;
pub mod tree;
pub mod wal;
pub mod wire;
