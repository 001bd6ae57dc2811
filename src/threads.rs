//! The worker pool for backup and restore: rayon threads with stacks deep enough for any directory depth the OS allows.

use crate::error::{Error, ErrorKind, Result};

/// Stack per worker. Directory recursion costs a few KiB per level and absolute paths cap depth near
/// 2,048 levels (PATH_MAX), so 64 MiB leaves a wide margin; the memory is reserved, not committed.
const WORKER_STACK: usize = 64 << 20;

/// Runs `f` on a fresh rayon pool whose threads have deep stacks (every `par_iter` inside uses it).
///
/// # Errors
/// When the threads cannot be started; otherwise whatever `f` returns.
pub fn run_in_pool<R: Send>(f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(WORKER_STACK)
        .thread_name(|i| format!("cairn-worker-{i}"))
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("cannot start worker threads: {e}"),
            )
        })?;
    pool.install(f)
}
