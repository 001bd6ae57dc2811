//! Reproducible test bytes for the library's unit tests: one generator instead of one per module.

/// `len` bytes of xorshift noise from `seed`: what zstd cannot compress and content-defined
/// chunking cuts at random places.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `len` hexadecimal digits from `seed`: text that compresses by half and no more.
pub fn hex_text(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = noise(len, seed);
    for b in &mut bytes {
        *b = b"0123456789abcdef"[usize::from(*b & 15)];
    }
    bytes
}
