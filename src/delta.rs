//! Delta compression of one chunk against another (FORMAT.md §6, delta blobs): a zstd frame that
//! uses the base's plaintext as its prefix, so the bytes the two share cost a few bytes of match.
//!
//! The base is always raw-content history, never a formatted dictionary: a small pair is compressed
//! with the base loaded as a raw-content dictionary into a context each thread keeps, a large pair
//! or a base that starts with zstd's dictionary magic through a single-use prefix
//! (`ZSTD_CCtx_refPrefix`). Both make frames that decode the same way.

use std::cell::RefCell;
use std::io;

/// Longest chain of deltas a reader follows to rebuild one blob: a delta's base may itself be a
/// delta, up to this many deltas in all above a blob stored whole. Deeper chains are damage (and a
/// cycle is one).
pub const MAX_CHAIN: usize = 16;

/// Longest chain a writer builds: a new delta and the deltas below it number at most this many.
/// Half of [`MAX_CHAIN`]: a blob indexed twice (two
/// backups stored it at once, differently) may lead a reader down a longer chain than the writer
/// measured, and the slack keeps that readable.
pub const MAX_WRITTEN_CHAIN: usize = 8;

/// Smallest chunk tried as a delta: below this, the base's id and the frame's header cost more
/// than a delta can save.
pub const MIN_TARGET: usize = 4096;

/// Whether a delta frame of `frame_len` bytes is worth storing instead of `target` compressed
/// alone at `level`: at most a 32nd of the chunk is taken at once (plain zstd does not get text
/// below that), else only when it is at most half of what zstd alone gives. A delta costs a read
/// of its base on restore, so a small gain is not worth it; and a partial delta stays in its
/// chunk's lineage, where later versions (made against older members, FORMAT.md §6) pay its
/// difference again: accepting deltas that save a quarter stored 3.4% more over 30 nights.
///
/// `alone` gives the length of the chunk compressed alone (`None` when zstd failed, and the delta
/// is then kept); it is called only when the 32nd does not decide, and a caller that keeps what it
/// compressed stores the chunk from it when the delta does not pay.
pub fn pays(frame_len: usize, target_len: usize, alone: impl FnOnce() -> Option<usize>) -> bool {
    if frame_len <= target_len / 32 {
        return true;
    }
    match alone() {
        Some(alone) => frame_len * 2 <= alone.min(target_len),
        None => true,
    }
}

/// The zstd level of delta frames. On night 2 of `benches/dump_compare.sh` (3,791 changed chunks
/// of 16-256 KiB, `examples/delta_study.rs`), the chunks stored against bases chosen by anchors
/// took 12.67 MB at level 1 (zstd's single-table strategy misses most matches into the base),
/// 7.60 MB at level 2, 7.87 MB at level 3 and 7.65-7.66 MB at levels 4 to 6; level 2 also
/// indexes the base into smaller tables, the largest cost of making a delta.
pub const DELTA_LEVEL: i32 = 2;

/// The least level of a frame against a base of over [`REUSED_CONTEXT_REACH`]: for inputs that
/// large, zstd's level 2 is its single-table strategy, which level 1 showed to miss the base.
const LARGE_MIN_LEVEL: i32 = 3;

/// The first bytes of a formatted zstd dictionary (`ZSTD_MAGIC_DICTIONARY`, little-endian).
const DICTIONARY_MAGIC: [u8; 4] = 0xEC30_A437u32.to_le_bytes();

/// A base and target of up to this many bytes together are compressed in a context each thread
/// keeps: the window and hash table zstd picks for their sum reach all of the base (at level 3, a
/// 2 MiB window and a table that indexes the last 1 MiB). Larger pairs (chunks of big files) get
/// both sized by hand, in a context of their own.
const REUSED_CONTEXT_REACH: usize = 1 << 20;

/// Compresses `target` against `base` into `out` (cleared first).
///
/// # Errors
/// When zstd fails (the caller then stores the chunk whole).
pub fn compress(base: &[u8], target: &[u8], level: i32, out: &mut Vec<u8>) -> io::Result<()> {
    thread_local! {
        // A context made per delta (its tables allocated and first touched each time) took a
        // sixth of a nightly dump's backup: each thread keeps one for the common small base.
        static CCTX: RefCell<Option<zstd::zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
    }
    let zstd_err = |code| io::Error::other(zstd::zstd_safe::get_error_name(code));
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(target.len()));
    if base.len() + target.len() > REUSED_CONTEXT_REACH || base.starts_with(&DICTIONARY_MAGIC) {
        return compress_large(base, target, level, out);
    }
    // ZSTD_compress_usingDict loads a base without the dictionary magic as raw content straight
    // into the context's tables, the history a prefix gives (a frame decodes the same either
    // way), and sizes the window for base and target together.
    CCTX.with_borrow_mut(|slot| {
        slot.get_or_insert_with(zstd::zstd_safe::CCtx::create)
            .compress_using_dict(out, target, base, level)
            .map(|_| ())
            .map_err(zstd_err)
    })
}

/// [`compress`] in a context of its own, with `base` as a single-use raw-content prefix
/// (`ZSTD_CCtx_refPrefix`): for large bases, and for a base that starts like a formatted
/// dictionary.
fn compress_large(base: &[u8], target: &[u8], level: i32, out: &mut Vec<u8>) -> io::Result<()> {
    let mut cctx = zstd::zstd_safe::CCtx::create();
    let zstd_err = |code| io::Error::other(zstd::zstd_safe::get_error_name(code));
    cctx.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(
        level.max(LARGE_MIN_LEVEL),
    ))
    .map_err(zstd_err)?;
    cctx.set_pledged_src_size(Some(target.len() as u64))
        .map_err(zstd_err)?;
    // The window must reach from the end of the target back to the start of the base: sized
    // for the target alone (zstd's choice for a known size), a 1 MiB chunk could not see the
    // start of its 1 MiB base, and a delta of a file chunk would store most of it again.
    let reach = (base.len() + target.len()).max(1 << 10);
    let window_log = (usize::BITS - (reach - 1).leading_zeros()).clamp(10, 27);
    cctx.set_parameter(zstd::zstd_safe::CParameter::WindowLog(window_log))
        .map_err(zstd_err)?;
    // zstd indexes only the last `1 << (hashLog + 3)` bytes of a prefix (1 MiB at level 3): a
    // larger base gets a hash table that covers all of it (8 MiB of table for a 16 MiB base).
    let base_log = usize::BITS - base.len().max(1).leading_zeros();
    if base_log > 20 {
        let hash_log = (base_log - 3).min(24);
        cctx.set_parameter(zstd::zstd_safe::CParameter::HashLog(hash_log))
            .map_err(zstd_err)?;
    }
    cctx.ref_prefix(base).map_err(zstd_err)?;
    cctx.compress2(out, target).map_err(zstd_err)?;
    Ok(())
}

/// Decompresses a frame made by [`compress`] against `base` into `out`, which holds exactly
/// `raw_len` bytes afterwards; a frame that decodes to more fails without writing past them.
///
/// # Errors
/// When the frame is damaged, was made against another base, or does not decode to `raw_len` bytes.
pub fn decompress(base: &[u8], frame: &[u8], raw_len: usize, out: &mut Vec<u8>) -> io::Result<()> {
    thread_local! {
        // Creating a decompression context cost a tenth of a restore of deltas: each thread
        // keeps one.
        static DCTX: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
    }
    let zstd_err = |code| io::Error::other(zstd::zstd_safe::get_error_name(code));
    // zstd writes into `raw_len` bytes and no further: a fresh buffer of exactly that capacity,
    // not zeroed first (restoring a night of deltas zeroed a gigabyte of bases), or the first
    // `raw_len` bytes of a reused one, never its spare capacity.
    let fresh = out.capacity() == 0;
    if fresh {
        *out = Vec::with_capacity(raw_len);
    } else {
        out.resize(raw_len, 0);
    }
    let written = if base.starts_with(&DICTIONARY_MAGIC) {
        // zstd would read such a base as a formatted dictionary: give it as a prefix, raw
        // content as the frame was made.
        let mut dctx = zstd::zstd_safe::DCtx::create();
        dctx.ref_prefix(base).map_err(zstd_err)?;
        if fresh {
            dctx.decompress(out, frame)
        } else {
            dctx.decompress(&mut out[..raw_len], frame)
        }
    } else {
        // A base without the magic is raw content to ZSTD_decompress_usingDict, the same
        // history a prefix gives, and the call takes no lifetime from it.
        DCTX.with_borrow_mut(|slot| {
            let dctx = slot.get_or_insert_with(zstd::zstd_safe::DCtx::create);
            if fresh {
                dctx.decompress_using_dict(out, frame, base)
            } else {
                dctx.decompress_using_dict(&mut out[..raw_len], frame, base)
            }
        })
    };
    let written = written.map_err(zstd_err).inspect_err(|_| out.clear())?;
    if written != raw_len {
        out.clear();
        return Err(io::Error::other(format!(
            "decodes to {written} bytes, not {raw_len}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bytes::noise;

    fn text(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"abcdefghij klmnopqrstuvwxyz,0123456789\n"[(x >> 59) as usize % 38]
            })
            .collect()
    }

    #[test]
    fn a_small_edit_costs_a_small_frame_and_round_trips() {
        let base = text(64 << 10, 1);
        let mut target = base.clone();
        target[30_000..30_040].copy_from_slice(&text(40, 2));
        target.splice(50_000..50_000, text(100, 3));
        let mut frame = Vec::new();
        compress(&base, &target, DELTA_LEVEL, &mut frame).unwrap();
        let alone = zstd::bulk::compress(&target, DELTA_LEVEL).unwrap();
        assert!(frame.len() < 400, "{} bytes", frame.len());
        assert!(
            frame.len() * 50 < alone.len(),
            "{} against {}",
            frame.len(),
            alone.len()
        );
        let mut out = Vec::new();
        decompress(&base, &frame, target.len(), &mut out).unwrap();
        assert_eq!(out, target);
    }

    /// File chunks are up to 8 MiB (16 MiB in the format): the base must stay within reach.
    #[test]
    fn a_large_chunk_reaches_back_to_the_start_of_its_base() {
        let base = noise((3 << 20) + 12_345, 7);
        let mut target = base.clone();
        target[10..26].copy_from_slice(b"changed in place");
        let mut frame = Vec::new();
        compress(&base, &target, DELTA_LEVEL, &mut frame).unwrap();
        assert!(frame.len() < 10_000, "{} bytes", frame.len());
        let mut out = Vec::new();
        decompress(&base, &frame, target.len(), &mut out).unwrap();
        assert!(out == target);
    }

    /// The largest pair a thread's own context compresses: the frame still reaches the start of
    /// the base, and the context keeps nothing of the previous base.
    #[test]
    fn a_reused_context_reaches_the_whole_base_and_forgets_it_after() {
        let base = noise(REUSED_CONTEXT_REACH / 2, 11);
        let mut target = base.clone();
        target[10..26].copy_from_slice(b"changed in place");
        let mut frame = Vec::new();
        compress(&base, &target, DELTA_LEVEL, &mut frame).unwrap();
        assert!(frame.len() < 2_000, "{} bytes", frame.len());
        let other = noise(40_000, 12);
        let mut second = Vec::new();
        compress(&other, &other[..30_000], DELTA_LEVEL, &mut second).unwrap();
        let mut out = Vec::new();
        decompress(&other, &second, 30_000, &mut out).unwrap();
        assert!(out == other[..30_000]);
        decompress(&base, &frame, target.len(), &mut out).unwrap();
        assert!(out == target);
    }

    #[test]
    fn the_wrong_base_or_length_is_an_error_never_other_bytes() {
        let base = text(20_000, 4);
        let mut target = base.clone();
        target[100] ^= 1;
        let mut frame = Vec::new();
        compress(&base, &target, DELTA_LEVEL, &mut frame).unwrap();
        let mut out = Vec::new();
        assert!(decompress(&base, &frame, target.len() - 1, &mut out).is_err());
        assert!(out.is_empty());
        assert!(decompress(&base, &frame, target.len() + 1, &mut out).is_err());
        // Another base of the same length gives other bytes or an error: the caller's id check
        // is what proves a rebuilt chunk, and it would fail here.
        let other = text(20_000, 5);
        if decompress(&other, &frame, target.len(), &mut out).is_ok() {
            assert_ne!(out, target);
        }
    }

    #[test]
    fn a_base_that_looks_like_a_zstd_dictionary_is_plain_content() {
        let mut base = 0xEC30_A437u32.to_le_bytes().to_vec();
        base.extend(text(10_000, 6));
        let target = [&base[..5000], b"edit", &base[5000..]].concat();
        let mut frame = Vec::new();
        compress(&base, &target, DELTA_LEVEL, &mut frame).unwrap();
        let mut out = Vec::new();
        decompress(&base, &frame, target.len(), &mut out).unwrap();
        assert_eq!(out, target);
    }

    proptest::proptest! {
        #[test]
        fn any_base_and_target_round_trip(
            base in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            target in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            level in 1i32..6,
        ) {
            let mut frame = Vec::new();
            compress(&base, &target, level, &mut frame).unwrap();
            let mut out = Vec::new();
            decompress(&base, &frame, target.len(), &mut out).unwrap();
            proptest::prop_assert_eq!(out, target);
        }
    }
}
