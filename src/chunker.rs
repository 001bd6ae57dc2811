//! Content-defined chunking: FastCDC v2020 over any reader, with the repository's sizes and secret seed.

use std::io::Read;

use fastcdc::v2020::{Normalization, StreamCDC};

use crate::error::{Error, ErrorKind, Result};
use crate::format::config::Config;

/// Chunking parameters taken from a validated config.
#[derive(Clone, Copy, Debug)]
pub struct ChunkerParams {
    /// Minimum chunk size.
    pub min: usize,
    /// Average chunk size.
    pub avg: usize,
    /// Maximum chunk size.
    pub max: usize,
    /// Gear-table seed.
    pub seed: u64,
}

impl ChunkerParams {
    /// The parameters of a config (already validated against FastCDC's bounds).
    pub fn from_config(config: &Config) -> Self {
        ChunkerParams {
            min: config.chunker_min as usize,
            avg: config.chunker_avg as usize,
            max: config.chunker_max as usize,
            seed: config.chunker_seed,
        }
    }

    /// The parameters for streams (standard input, dump commands): the config's stream sizes,
    /// or its file sizes in configs written before stream sizes existed.
    pub fn for_streams(config: &Config) -> Self {
        let (min, avg, max) = config.stream_chunker_sizes();
        ChunkerParams {
            min: min as usize,
            avg: avg as usize,
            max: max as usize,
            seed: config.chunker_seed,
        }
    }

    /// Splits `source` into chunks, reading it once; memory is bounded by `max`.
    pub fn chunks<R: Read>(&self, source: R) -> Chunks<R> {
        Chunks {
            inner: StreamCDC::with_level_and_seed(
                source,
                self.min,
                self.avg,
                self.max,
                Normalization::Level1,
                self.seed,
            ),
        }
    }
}

/// Iterator over the chunks of one stream.
pub struct Chunks<R: Read> {
    inner: StreamCDC<R>,
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|r| {
            r.map(|c| c.data).map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => {
                    Error::new(ErrorKind::SourceIo, format!("read failed: {io}"))
                }
                other => Error::new(ErrorKind::SourceIo, format!("chunking failed: {other}")),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
            seed: 42,
        }
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
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

    proptest! {
        #[test]
        fn chunks_respect_bounds_and_reassemble(len in 0usize..200_000, seed in any::<u64>()) {
            let data = noise(len, seed);
            let p = small();
            let chunks: Vec<Vec<u8>> = p.chunks(&data[..]).map(|c| c.unwrap()).collect();
            let n = chunks.len();
            for (i, c) in chunks.iter().enumerate() {
                prop_assert!(c.len() <= p.max);
                if i + 1 < n {
                    prop_assert!(c.len() >= p.min);
                }
            }
            prop_assert_eq!(chunks.concat(), data);
        }
    }

    #[test]
    fn boundaries_survive_an_insertion() {
        let data = noise(300_000, 7);
        let mut edited = data.clone();
        edited.splice(1000..1000, b"inserted".iter().copied());
        let p = small();
        let a: std::collections::HashSet<Vec<u8>> =
            p.chunks(&data[..]).map(|c| c.unwrap()).collect();
        let b: Vec<Vec<u8>> = p.chunks(&edited[..]).map(|c| c.unwrap()).collect();
        let shared = b.iter().filter(|c| a.contains(*c)).count();
        assert!(
            shared + 3 >= b.len(),
            "only {shared} of {} chunks shared",
            b.len()
        );
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = noise(300_000, 9);
        let mut other = small();
        other.seed = 43;
        let a: Vec<usize> = small()
            .chunks(&data[..])
            .map(|c| c.unwrap().len())
            .collect();
        let b: Vec<usize> = other.chunks(&data[..]).map(|c| c.unwrap().len()).collect();
        assert_ne!(a, b);
    }
}
