//! One `cairn run` of a plan at a time: an exclusive lock on `<state file>.lock`, held until exit.
//! The kernel drops it when the process dies, so a crashed run never blocks the next one.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, ErrorKind, Result};

/// The held lock.
pub struct RunLock {
    _lock: Flock<File>,
}

impl RunLock {
    /// Takes the lock of the plan whose state file is `state_file`, or fails at once.
    ///
    /// # Errors
    /// `Other` when another run holds it or the lock file cannot be opened.
    pub fn acquire(state_file: &Path) -> Result<RunLock> {
        let path = state_file.with_extension("lock");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(ErrorKind::Other, "cannot create", dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(ErrorKind::Other, "cannot open the run lock", &path, e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(RunLock { _lock: lock }),
            Err((_, errno)) => Err(Error::new(
                ErrorKind::Other,
                format!(
                    "another `cairn run` of this plan is running (it holds {}: {errno}); this run does nothing",
                    path.display()
                ),
            )),
        }
    }
}
