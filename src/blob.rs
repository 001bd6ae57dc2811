//! Turning a blob plaintext into its sealed form and back (FORMAT.md §6): compress, seal, and verify on open.

use std::cell::RefCell;

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::format::pack::BlobEntry;
use crate::id::{BlobId, BlobType};

thread_local! {
    // zstd contexts are costly to create (ZSTD_createCCtx was 2% of a backup); each worker
    // thread keeps one of each.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Compresses `plaintext` into `out` (cleared first, its capacity reused).
fn compress_into(plaintext: &[u8], level: i32, out: &mut Vec<u8>) -> std::io::Result<()> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(plaintext.len()));
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some((l, c)) if *l == level => c,
            _ => &mut slot.insert((level, zstd::bulk::Compressor::new(level)?)).1,
        };
        compressor.compress_to_buffer(plaintext, out).map(|_| ())
    })
}

/// Decompresses `body` into `out`, which holds exactly the plaintext afterwards. zstd writes into
/// `raw_len` bytes, no further, so a frame that decodes to more fails ("destination buffer is too
/// small") without writing past the length the index gives: a reused buffer's spare capacity (up
/// to [`SCRATCH_KEEP`]) is never written. A fresh buffer is allocated with exactly `raw_len` bytes
/// and written without being zeroed first; of a reused one, only the bytes by which it grows are.
fn decompress_into(body: &[u8], raw_len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let written = DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        if out.capacity() == 0 {
            *out = Vec::with_capacity(raw_len);
            decompressor.decompress_to_buffer(body, out)
        } else {
            out.resize(raw_len, 0);
            decompressor.decompress_to_buffer(body, &mut out[..raw_len])
        }
    });
    match written {
        Ok(n) => {
            out.truncate(n);
            Ok(())
        }
        Err(e) => {
            out.clear();
            Err(e)
        }
    }
}

const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;
/// A delta: a zstd frame made against the plaintext of the base the AAD names ([`crate::delta`]).
const COMPRESSION_DELTA: u8 = 2;

/// The additional authenticated data that binds a sealed blob to its type and id, and a delta to
/// its base (FORMAT.md §6).
pub fn aad(blob_type: BlobType, id: &BlobId) -> [u8; 13 + 1 + 32] {
    let mut out = [0u8; 46];
    out[..13].copy_from_slice(b"cairn blob v1");
    out[13] = blob_type.to_byte();
    out[14..].copy_from_slice(&id.0);
    out
}

/// The AAD of a delta of data blob `id` against `base`: a delta opened as if made against
/// another base fails authentication instead of decoding to other bytes.
fn delta_aad(id: &BlobId, base: &BlobId) -> Vec<u8> {
    [&b"cairn delta v1"[..], &id.0, &base.0].concat()
}

/// The AAD `entry`'s blob was sealed with.
fn entry_aad(entry: &BlobEntry) -> Vec<u8> {
    match &entry.delta {
        Some(delta) => delta_aad(&entry.id, &delta.base),
        None => aad(entry.blob_type, &entry.id).to_vec(),
    }
}

/// Compresses (when it helps) and seals a plaintext whose id is already known.
///
/// # Errors
/// When compression or randomness fails.
pub fn seal_blob(
    key: &MasterKey,
    blob_type: BlobType,
    id: &BlobId,
    plaintext: &[u8],
    zstd_level: i32,
) -> Result<Vec<u8>> {
    let mut sealed = Vec::new();
    seal_blob_into(key, blob_type, id, plaintext, zstd_level, &mut sealed)?;
    Ok(sealed)
}

/// [`seal_blob`] into `sealed` (cleared first, its capacity reused). A backup seals every new blob
/// into one buffer per thread: a fresh allocation per blob of up to 8 MiB left freed memory in each
/// thread's heap, a third of a tree backup's peak.
///
/// # Errors
/// When compression or randomness fails.
pub fn seal_blob_into(
    key: &MasterKey,
    blob_type: BlobType,
    id: &BlobId,
    plaintext: &[u8],
    zstd_level: i32,
    sealed: &mut Vec<u8>,
) -> Result<()> {
    thread_local! {
        // Compressed bodies are copied once, into the sealed blob: this buffer is reused.
        static COMPRESSED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    COMPRESSED.with_borrow_mut(|compressed| {
        let result = compress_alone(plaintext, zstd_level, compressed)
            .and_then(|()| seal_compressed_into(key, blob_type, id, plaintext, compressed, sealed));
        if compressed.capacity() > SCRATCH_KEEP {
            *compressed = Vec::new();
        }
        result
    })
}

/// `plaintext` compressed at `zstd_level` into `out` (cleared first), as [`seal_blob_into`]
/// compresses it: a caller that compressed a blob already (to judge a delta against it) seals
/// from that with [`seal_compressed_into`].
///
/// # Errors
/// When zstd fails.
pub fn compress_alone(plaintext: &[u8], zstd_level: i32, out: &mut Vec<u8>) -> Result<()> {
    compress_into(plaintext, zstd_level, out)
        .map_err(|e| Error::new(crate::error::ErrorKind::Other, format!("zstd: {e}")))
}

/// [`seal_blob_into`] of a plaintext already compressed by [`compress_alone`] into `compressed`:
/// the body is the compressed form when it is smaller, else the plaintext.
///
/// # Errors
/// When randomness is unavailable.
pub fn seal_compressed_into(
    key: &MasterKey,
    blob_type: BlobType,
    id: &BlobId,
    plaintext: &[u8],
    compressed: &[u8],
    sealed: &mut Vec<u8>,
) -> Result<()> {
    let aad = aad(blob_type, id);
    if compressed.len() < plaintext.len() {
        key.seal_parts_into(&aad, &[&[COMPRESSION_ZSTD], compressed], sealed)
    } else {
        key.seal_parts_into(&aad, &[&[COMPRESSION_NONE], plaintext], sealed)
    }
}

/// Seals a delta of data blob `id` against `base` (FORMAT.md §6): `frame` is what
/// [`crate::delta::compress`] made of the blob's plaintext against the base's.
///
/// # Errors
/// When randomness is unavailable.
pub fn seal_delta_into(
    key: &MasterKey,
    id: &BlobId,
    base: &BlobId,
    frame: &[u8],
    sealed: &mut Vec<u8>,
) -> Result<()> {
    key.seal_parts_into(&delta_aad(id, base), &[&[COMPRESSION_DELTA], frame], sealed)
}

/// Proves a sealed blob is intact as written (its seal authenticates under its type and id, a
/// delta's also under its base) without decompressing it: enough to copy the sealed bytes
/// elsewhere unchanged.
///
/// # Errors
/// `Corrupted` when authentication fails, the payload is empty or disagrees with the entry;
/// `UnsupportedVersion` for a compression this build does not know.
pub fn authenticate_blob(key: &MasterKey, entry: &BlobEntry, sealed: &[u8]) -> Result<()> {
    let what = format!("blob {}", entry.id);
    let payload = key.open_any_epoch(&entry_aad(entry), sealed, &what)?;
    let (&flag, _) = payload
        .split_first()
        .ok_or_else(|| Error::corrupted(format!("{what}: empty payload")))?;
    check_flag(&what, entry, flag)
}

/// Checks the compression flag against the entry (a delta's seal authenticated under its base
/// already, so the flag is all that could disagree).
fn check_flag(what: &str, entry: &BlobEntry, flag: u8) -> Result<()> {
    match (flag, entry.delta) {
        (COMPRESSION_NONE | COMPRESSION_ZSTD, None) | (COMPRESSION_DELTA, Some(_)) => Ok(()),
        (COMPRESSION_NONE | COMPRESSION_ZSTD | COMPRESSION_DELTA, _) => Err(Error::corrupted(
            format!("{what}: its compression flag {flag} disagrees with its index entry"),
        )),
        (other, _) => Err(Error::new(
            crate::error::ErrorKind::UnsupportedVersion,
            format!(
                "{what}: compression {other} is unknown to this cairn (written by a newer version); upgrade cairn"
            ),
        )),
    }
}

/// Opens a sealed blob and proves it is the plaintext `entry` names; `base` is the plaintext of
/// the entry's base when it is a delta (see [`crate::repo::IndexedRepository::read_blob`], which
/// rebuilds chains).
///
/// # Errors
/// `Corrupted` when authentication, decompression, the length or the id check fails, or a delta
/// comes without its base.
pub fn open_blob(
    key: &MasterKey,
    entry: &BlobEntry,
    sealed: &[u8],
    base: Option<&[u8]>,
) -> Result<Vec<u8>> {
    open_verified(key, entry, sealed, base).map(|(plaintext, _)| plaintext)
}

/// [`open_blob`] of a blob read only as the base of a delta, without hashing its plaintext: its
/// seal authenticated what the writer wrote, and the delta built on it is checked against its own
/// id, which a wrong base fails (a chain of 3 deltas hashed 4 chunks for one).
///
/// # Errors
/// As [`open_blob`], minus the id check.
pub fn open_base(
    key: &MasterKey,
    entry: &BlobEntry,
    sealed: &[u8],
    base: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    let mut plain = Vec::new();
    match open_into(key, entry, sealed, base, false, &mut payload, &mut plain)? {
        Opened::InPayload => plain.extend_from_slice(&payload[1..]),
        Opened::InPlain => {}
    }
    Ok(plain)
}

/// Opens a sealed blob of an older epoch, proves it as [`open_blob`] does, and seals its payload
/// again under the newest epoch, compressed as it was (FORMAT.md §15: prune's repack and
/// re-encryption never recompress). A delta is authenticated and its base checked against the
/// entry, not rebuilt: its payload is copied as written.
///
/// # Errors
/// As [`open_blob`]; when randomness is unavailable.
pub fn reseal_blob(key: &MasterKey, entry: &BlobEntry, sealed: &[u8]) -> Result<Vec<u8>> {
    let payload = if entry.delta.is_some() {
        let what = format!("blob {}", entry.id);
        let payload = key.open_any_epoch(&entry_aad(entry), sealed, &what)?;
        let (&flag, _) = payload
            .split_first()
            .ok_or_else(|| Error::corrupted(format!("{what}: empty payload")))?;
        check_flag(&what, entry, flag)?;
        payload
    } else {
        open_verified(key, entry, sealed, None)?.1
    };
    key.seal(&entry_aad(entry), &payload)
}

/// Proves a sealed blob is the plaintext `entry` names, as [`open_blob`] does, without keeping the
/// plaintext: `check --read-data` verifies every blob this way, each thread reusing its buffers.
///
/// # Errors
/// As [`open_blob`].
pub fn verify_blob(
    key: &MasterKey,
    entry: &BlobEntry,
    sealed: &[u8],
    base: Option<&[u8]>,
) -> Result<()> {
    thread_local! {
        static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with_borrow_mut(|(payload, plain)| {
        let result = open_into(key, entry, sealed, base, true, payload, plain).map(|_| ());
        // One huge blob must not pin its buffers for the rest of the run.
        for buffer in [payload, plain] {
            if buffer.capacity() > SCRATCH_KEEP {
                *buffer = Vec::new();
            }
        }
        result
    })
}

/// Largest buffer a thread keeps between blobs (a chunk is at most 8 MiB; trees may be larger).
pub(crate) const SCRATCH_KEEP: usize = 16 << 20;

/// Where [`open_into`] left the plaintext.
enum Opened {
    /// In the payload after its flag byte (stored uncompressed).
    InPayload,
    /// In the plaintext buffer (decompressed).
    InPlain,
}

/// Opens a sealed blob into `payload` (flag and body) and, when compressed, `plain`, then proves the
/// plaintext is the one `entry` names (length and id).
fn open_into(
    key: &MasterKey,
    entry: &BlobEntry,
    sealed: &[u8],
    base: Option<&[u8]>,
    check_id: bool,
    payload: &mut Vec<u8>,
    plain: &mut Vec<u8>,
) -> Result<Opened> {
    let what = || format!("blob {}", entry.id);
    key.open_any_epoch_into(&entry_aad(entry), sealed, payload, what)?;
    let (&flag, body) = payload
        .split_first()
        .ok_or_else(|| Error::corrupted(format!("{}: empty payload", what())))?;
    check_flag(&what(), entry, flag)?;
    let raw_len = entry.raw_length as usize;
    let (opened, plaintext) = match flag {
        COMPRESSION_NONE => (Opened::InPayload, body),
        COMPRESSION_ZSTD => {
            decompress_into(body, raw_len, plain).map_err(|e| {
                Error::corrupted(format!(
                    "{}: zstd: {e} (the blob decompresses to other than the {raw_len} bytes the index gives)",
                    what()
                ))
            })?;
            (Opened::InPlain, plain.as_slice())
        }
        _ => {
            let base_id = entry.delta.map(|d| d.base).unwrap_or_default();
            let base = base.ok_or_else(|| {
                Error::new(
                    crate::error::ErrorKind::Other,
                    format!(
                        "internal: {} is a delta and was opened without its base",
                        what()
                    ),
                )
            })?;
            crate::delta::decompress(base, body, raw_len, plain).map_err(|e| {
                Error::corrupted(format!(
                    "{}: its delta against base {base_id} does not rebuild ({e}): the delta or the base is damaged",
                    what()
                ))
            })?;
            (Opened::InPlain, plain.as_slice())
        }
    };
    if plaintext.len() != raw_len {
        return Err(Error::corrupted(format!(
            "{}: {} bytes after decompression, index says {raw_len}",
            what(),
            plaintext.len()
        )));
    }
    if check_id && key.blob_id(plaintext) != entry.id {
        return Err(Error::corrupted(match entry.delta.map(|d| d.base) {
            Some(base) => format!(
                "{}: rebuilt from its delta against base {base}, the content does not match its id: the delta or the base is damaged",
                what()
            ),
            None => format!("{}: content does not match its id", what()),
        }));
    }
    Ok(opened)
}

/// The verified plaintext and the payload (compression flag and body) it came from.
fn open_verified(
    key: &MasterKey,
    entry: &BlobEntry,
    sealed: &[u8],
    base: Option<&[u8]>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut payload = Vec::new();
    let mut plain = Vec::new();
    match open_into(key, entry, sealed, base, true, &mut payload, &mut plain)? {
        Opened::InPayload => plain.extend_from_slice(&payload[1..]),
        Opened::InPlain => {}
    }
    Ok((plain, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: BlobId, sealed: &[u8], raw: usize) -> BlobEntry {
        BlobEntry {
            blob_type: BlobType::Data,
            id,
            offset: 10,
            length: sealed.len() as u32,
            raw_length: raw as u32,
            delta: None,
        }
    }

    #[test]
    fn compressible_and_random_round_trip() {
        let key = MasterKey::generate().unwrap();
        for plain in [
            vec![0u8; 100_000],
            (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ] {
            let id = key.blob_id(&plain);
            let sealed = seal_blob(&key, BlobType::Data, &id, &plain, 3).unwrap();
            assert_eq!(
                open_blob(&key, &entry(id, &sealed, plain.len()), &sealed, None).unwrap(),
                plain
            );
        }
    }

    #[test]
    fn a_delta_opens_with_its_base_and_names_both_when_the_base_is_wrong() {
        let key = MasterKey::generate().unwrap();
        let mut x = 1u64;
        let base: Vec<u8> = (0..20_000)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect();
        let mut plain = base.clone();
        plain[5_000..5_010].copy_from_slice(b"0123456789");
        let (base_id, id) = (key.blob_id(&base), key.blob_id(&plain));
        let mut frame = Vec::new();
        crate::delta::compress(&base, &plain, 3, &mut frame).unwrap();
        let mut sealed = Vec::new();
        seal_delta_into(&key, &id, &base_id, &frame, &mut sealed).unwrap();
        let mut e = entry(id, &sealed, plain.len());
        e.delta = Some(crate::format::pack::Delta {
            base: base_id,
            generation: 1,
        });
        assert_eq!(open_blob(&key, &e, &sealed, Some(&base)).unwrap(), plain);
        authenticate_blob(&key, &e, &sealed).unwrap();
        // A damaged base (the right id, other bytes): an error naming the delta and the base.
        let mut damaged = base.clone();
        damaged[100] ^= 1;
        let err = match open_blob(&key, &e, &sealed, Some(&damaged)) {
            Ok(_) => panic!("a damaged base rebuilt the delta"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&id.to_hex()) && err.contains(&base_id.to_hex()),
            "{err}"
        );
        // Named as a delta against another base, or as a whole blob, it does not authenticate.
        let mut other = e;
        other.delta = Some(crate::format::pack::Delta {
            base: BlobId([7; 32]),
            generation: 1,
        });
        assert!(open_blob(&key, &other, &sealed, Some(&base)).is_err());
        let mut whole = e;
        whole.delta = None;
        assert!(open_blob(&key, &whole, &sealed, None).is_err());
        // A delta cannot be opened without its base.
        assert!(open_blob(&key, &e, &sealed, None).is_err());
    }

    #[test]
    fn type_and_id_are_bound() {
        let key = MasterKey::generate().unwrap();
        let plain = b"some content".to_vec();
        let id = key.blob_id(&plain);
        let sealed = seal_blob(&key, BlobType::Data, &id, &plain, 3).unwrap();
        let mut as_tree = entry(id, &sealed, plain.len());
        as_tree.blob_type = BlobType::Tree;
        assert!(open_blob(&key, &as_tree, &sealed, None).is_err());
        let other = entry(BlobId([9; 32]), &sealed, plain.len());
        assert!(open_blob(&key, &other, &sealed, None).is_err());
        let short = entry(id, &sealed, plain.len() - 1);
        assert!(open_blob(&key, &short, &sealed, None).is_err());
    }

    #[test]
    fn a_raw_length_that_lies_is_refused_without_decompressing_past_it() {
        let plain = vec![7u8; 1 << 20];
        let body = zstd::bulk::compress(&plain, 3).unwrap();
        // A buffer kept from a larger blob, as a thread's scratch buffer is.
        let mut out = Vec::with_capacity(SCRATCH_KEEP);
        let err = decompress_into(&body, 1000, &mut out).unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
        assert!(out.len() <= 1000, "zstd wrote {} bytes", out.len());
        // The exact length decompresses, into the same buffer.
        decompress_into(&body, plain.len(), &mut out).unwrap();
        assert_eq!(out, plain);
        // A fresh buffer is made exactly that long, and refuses the same way.
        let mut fresh = Vec::new();
        let err = decompress_into(&body, 1000, &mut fresh).unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
        assert!(fresh.len() <= 1000, "zstd wrote {} bytes", fresh.len());

        let key = MasterKey::generate().unwrap();
        let id = key.blob_id(&plain);
        let sealed = seal_blob(&key, BlobType::Data, &id, &plain, 3).unwrap();
        let e = verify_blob(&key, &entry(id, &sealed, 1000), &sealed, None).unwrap_err();
        assert!(e.to_string().contains("other than the 1000 bytes"), "{e}");
    }
}
