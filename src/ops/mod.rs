//! Lifecycle commands built on the repository: forget, prune, repair. Each plans first and executes second.

pub mod forget;
pub mod index_writer;
pub mod keys;
pub mod lease;
pub mod pending;
pub mod prune;
pub mod reencrypt;
pub mod repair;

pub mod retention;
