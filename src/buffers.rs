//! Large byte buffers (stream batches, packs being filled): reserved whole, once, so they live in
//! mappings of their own and leave no freed memory behind in the allocator's per-thread heaps.
//!
//! glibc's malloc serves an allocation below its dynamic mmap threshold (raised up to 32 MiB by
//! every large free) from the calling thread's heap, and keeps what is freed there: buffers grown
//! by doubling through 8, 16 and 32 MiB left up to a few dozen MiB in each thread's heap, and a
//! tree backup peaked at 370 MiB instead of about 220. A buffer reserved above 32 MiB is mapped on
//! its own and unmapped when dropped; only the pages written count towards memory.

/// The smallest reservation glibc always maps on its own (its largest mmap threshold is 32 MiB).
pub const MAPPED_ON_ITS_OWN: usize = (32 << 20) + 4096;

/// Reads below this size grow the buffer as usual: most files are small, and mapping a buffer for
/// each would cost two system calls per file.
pub const SMALL: usize = 1 << 20;

/// Makes room for `len` bytes in `buffer` in one reservation that glibc maps on its own.
pub fn reserve_large(buffer: &mut Vec<u8>, len: usize) {
    if buffer.capacity() < len {
        buffer.reserve_exact(len.max(MAPPED_ON_ITS_OWN) - buffer.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_reservation_is_made_once_and_kept() {
        let mut buffer = vec![7u8; 10];
        reserve_large(&mut buffer, 5 << 20);
        assert!(buffer.capacity() >= MAPPED_ON_ITS_OWN);
        assert_eq!(buffer, vec![7u8; 10]);
        let capacity = buffer.capacity();
        reserve_large(&mut buffer, 6 << 20);
        assert_eq!(buffer.capacity(), capacity, "enough room already");
        reserve_large(&mut buffer, 64 << 20);
        assert!(buffer.capacity() >= 64 << 20);
    }
}
