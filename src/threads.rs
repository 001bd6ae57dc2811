//! Threads: the worker pool for backup and restore (rayon threads with stacks deep enough for any directory
//! depth the OS allows), and a bounded fan-out of blocking storage requests for sync and listings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

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

/// Runs `work` on every item with at most `threads` running at once (the caller's thread is one of them).
/// For blocking storage requests, which wait on the network rather than the CPU: each thread holds one
/// request in flight, so `threads` is the number of connections used.
pub fn for_each_bounded<T: Sync>(items: &[T], threads: usize, work: impl Fn(&T) + Sync) {
    let next = AtomicUsize::new(0);
    let worker = || {
        while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
            work(item);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads.clamp(1, items.len().max(1)) {
            scope.spawn(worker);
        }
        worker();
    });
}

/// [`for_each_bounded`] collecting what `work` returns, in the order of `items`.
pub fn map_bounded<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let indexed: Vec<usize> = (0..items.len()).collect();
    for_each_bounded(&indexed, threads, |&i| {
        let out = work(&items[i]);
        *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
    });
    slots
        .into_iter()
        .filter_map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_bounded_keeps_order_and_bounds_threads() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<u32> = (0..200).collect();
        let out = map_bounded(&items, 3, |&i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::yield_now();
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(map_bounded(&[] as &[u32], 4, |&i| i).is_empty());
    }
}
