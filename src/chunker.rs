//! Content-defined chunking: FastCDC v2020 over any reader, with the repository's sizes and secret seed.

use std::io::Read;

use fastcdc::v2020::{cut_gear, get_gear_with_seed, select_masks, Normalization};

use crate::buffers;
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

    /// Splits `source` into chunks, reading it once; memory is bounded by twice `max`.
    pub fn chunks<R: Read>(&self, source: R) -> Chunks<R> {
        let (mask_s, mask_l) = select_masks(self.avg, Normalization::Level1);
        let (gear, gear_ls) = get_gear_with_seed(self.seed);
        Chunks {
            source,
            params: *self,
            masks: [mask_s, mask_l, mask_s << 1, mask_l << 1],
            gear: gear.into_owned(),
            gear_ls: gear_ls.into_owned(),
            buf: Vec::new(),
            start: 0,
            eof: false,
        }
    }
}

/// Iterator over the chunks of one stream.
///
/// Cuts exactly where fastcdc's `StreamCDC` cuts (same masks, gear tables and windows of at
/// most `max` bytes), but without its costs: `StreamCDC` zero-fills a `max`-sized buffer per
/// stream (8 MiB for every small file: half of a backup's time went to memset) and shifts
/// the whole buffer after every chunk. Here the buffer grows only as data arrives and is
/// compacted once per `max` bytes consumed.
pub struct Chunks<R: Read> {
    source: R,
    params: ChunkerParams,
    masks: [u64; 4],
    gear: Vec<u64>,
    gear_ls: Vec<u64>,
    buf: Vec<u8>,
    // Bytes of `buf` before `start` were handed out already.
    start: usize,
    eof: bool,
}

impl<R: Read> Chunks<R> {
    /// Reads until `max` bytes past `start` are buffered or the source ends.
    fn fill(&mut self) -> std::io::Result<()> {
        let max = self.params.max;
        if self.eof || self.buf.len() - self.start >= max {
            return Ok(());
        }
        if self.start >= max {
            // Moves fewer than `max` bytes, once per `max` consumed: at most one extra copy.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let want = self.start + max - self.buf.len();
        let got = (&mut self.source)
            .take(want as u64)
            .read_to_end(&mut self.buf)?;
        if got < want {
            self.eof = true;
        }
        Ok(())
    }
}

impl<R: Read> Chunks<R> {
    /// How many bytes of `window` (at most `max` bytes starting at a cut point, shorter only at the
    /// end of the source) the next chunk takes: never zero for a non-empty window.
    fn cut(&self, window: &[u8]) -> usize {
        let [mask_s, mask_l, mask_s_ls, mask_l_ls] = self.masks;
        let (_, count) = cut_gear(
            window,
            self.params.min,
            self.params.avg,
            self.params.max,
            mask_s,
            mask_l,
            mask_s_ls,
            mask_l_ls,
            &self.gear,
            &self.gear_ls,
        );
        // cut_gear returns at least one byte for a non-empty window; guard anyway so a
        // zero would end the stream instead of looping.
        if count == 0 {
            window.len()
        } else {
            count
        }
    }

    /// Replaces the contents of `batch` with the next whole chunks of the source, at least
    /// `target` bytes of them unless the source ends first; returns whether the source may hold
    /// more. The chunks are cut where the iterator cuts them, but in place: the source is read
    /// straight into `batch`'s buffer, whose capacity a caller reuses from batch to batch, so a
    /// stream costs no allocation and no copy per chunk (fresh chunk buffers were page faults
    /// and page zeroing: a sixth of a dump backup's time). The bytes past the last cut, fewer
    /// than `max`, wait here for the next batch.
    ///
    /// # Errors
    /// `SourceIo` when reading fails.
    pub fn next_batch(&mut self, batch: &mut Batch, target: usize) -> Result<bool> {
        batch.bytes.clear();
        batch.ends.clear();
        // Bytes read for the previous batch but past its last cut come first.
        batch.bytes.extend_from_slice(&self.buf[self.start..]);
        self.buf.clear();
        self.start = 0;
        let max = self.params.max;
        let mut pos = 0;
        while pos < target.max(1) {
            if !self.eof && batch.bytes.len() - pos < max {
                // Read up to `target + max` at once: one read call per large block, not per chunk.
                // The first megabyte grows the buffer as needed (most files are smaller); past it
                // the whole batch is reserved at once (crate::buffers says why).
                let goal = (target + max).max(pos + max);
                let len = batch.bytes.len();
                let want = if len < buffers::SMALL {
                    goal.min(buffers::SMALL) - len
                } else {
                    buffers::reserve_large(&mut batch.bytes, goal);
                    goal - len
                };
                let got = (&mut self.source)
                    .take(want as u64)
                    .read_to_end(&mut batch.bytes)
                    .map_err(|io| {
                        self.eof = true;
                        Error::new(ErrorKind::SourceIo, format!("read failed: {io}"))
                    })?;
                if got < want {
                    self.eof = true;
                }
            }
            let end = batch.bytes.len().min(pos + max);
            if pos == end {
                break;
            }
            pos += self.cut(&batch.bytes[pos..end]);
            batch.ends.push(pos);
        }
        self.buf.extend_from_slice(&batch.bytes[pos..]);
        batch.bytes.truncate(pos);
        Ok(!(self.eof && self.buf.is_empty()))
    }
}

/// Whole chunks of a stream, back to back in one buffer (see [`Chunks::next_batch`]).
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
    /// Where each chunk ends in `bytes`.
    ends: Vec<usize>,
}

impl Batch {
    /// The chunks, in stream order.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> + Clone {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }

    /// The chunks as slices, for parallel work over them.
    pub fn chunk_slices(&self) -> Vec<&[u8]> {
        self.chunks().collect()
    }

    /// Bytes in all chunks.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the batch holds no chunk.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Memory the batch holds on to.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(io) = self.fill() {
            self.eof = true;
            self.buf.clear();
            self.start = 0;
            return Some(Err(Error::new(
                ErrorKind::SourceIo,
                format!("read failed: {io}"),
            )));
        }
        let end = self.buf.len().min(self.start + self.params.max);
        let window = &self.buf[self.start..end];
        if window.is_empty() {
            return None;
        }
        let count = self.cut(window);
        let chunk = window[..count].to_vec();
        self.start += count;
        Some(Ok(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bytes::noise;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
            seed: 42,
        }
    }

    /// A reader that hands out at most `step` bytes per call, like a pipe.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// A source that yields this many bytes, then fails.
    struct Failing(usize);

    impl Read for Failing {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = self.0.min(out.len());
            out[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }

    proptest! {
        // Changing the cut points would cost every existing repository its dedup: they must
        // stay those of fastcdc's own StreamCDC, whatever the reads look like.
        #[test]
        fn cuts_where_fastcdc_streamcdc_cuts(len in 0usize..120_000, seed in any::<u64>(), step in 1usize..40_000) {
            let data = noise(len, seed);
            let p = ChunkerParams { seed, ..small() };
            let ours: Vec<Vec<u8>> = p
                .chunks(Trickle { data: &data, step })
                .map(|c| c.unwrap())
                .collect();
            let reference: Vec<Vec<u8>> = fastcdc::v2020::StreamCDC::with_level_and_seed(
                &data[..], p.min, p.avg, p.max, Normalization::Level1, seed,
            )
            .map(|c| c.unwrap().data)
            .collect();
            prop_assert_eq!(ours, reference);
        }

        // Batches must cut where the iterator (so StreamCDC) cuts, for any batch size and any
        // way the source hands out its bytes.
        #[test]
        fn batches_cut_where_the_iterator_cuts(len in 0usize..150_000, seed in any::<u64>(), step in 1usize..40_000, target in 0usize..50_000) {
            let data = noise(len, seed);
            let p = ChunkerParams { seed, ..small() };
            let reference: Vec<Vec<u8>> = p.chunks(&data[..]).map(|c| c.unwrap()).collect();
            let mut chunks = p.chunks(Trickle { data: &data, step });
            let mut batch = Batch::default();
            let mut ours: Vec<Vec<u8>> = Vec::new();
            loop {
                let more = chunks.next_batch(&mut batch, target).unwrap();
                if more {
                    prop_assert!(batch.len() >= target.max(1), "a batch that is not the last holds {} bytes", batch.len());
                }
                prop_assert_eq!(batch.chunks().map(<[u8]>::len).sum::<usize>(), batch.len());
                ours.extend(batch.chunks().map(<[u8]>::to_vec));
                if !more {
                    break;
                }
            }
            prop_assert_eq!(ours, reference);
        }

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
    fn a_read_error_ends_the_stream_with_that_error() {
        let results: Vec<_> = small().chunks(Failing(5000)).collect();
        let err = results.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SourceIo);
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert!(results[..results.len() - 1].iter().all(|r| r.is_ok()));
    }

    #[test]
    fn a_read_error_ends_a_batch_with_that_error() {
        let mut chunks = small().chunks(Failing(50_000));
        let mut batch = Batch::default();
        assert!(chunks.next_batch(&mut batch, 10_000).unwrap());
        let err = chunks.next_batch(&mut batch, 1 << 20).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SourceIo);
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }

    #[test]
    fn a_batch_buffer_is_reused_without_growing() {
        let data = noise(2_000_000, 3);
        let mut chunks = small().chunks(&data[..]);
        let mut batch = Batch::default();
        let mut capacities = Vec::new();
        while chunks.next_batch(&mut batch, 100_000).unwrap() {
            capacities.push(batch.capacity());
        }
        // Every batch reads at most target + max bytes, so the first buffer fits them all.
        assert!(
            capacities.iter().all(|&c| c == capacities[0]),
            "{capacities:?}"
        );
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
