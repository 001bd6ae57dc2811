//! Commands on the repository as a whole: forget (with its keep policies), prune, repair, key
//! management, re-encryption and Object Lock extensions. Each plans first and executes second.

pub mod forget;
pub mod keys;
pub mod object_lock;
pub mod prune;
pub mod reencrypt;
pub mod repair;

pub mod retention;
