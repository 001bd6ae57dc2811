//! Reads blobs back out of packs: one range per blob, opened and verified against its id.

use crate::backend::{Backend, ObjectKind};
use crate::blob::{authenticate_blob, open_base, open_blob, verify_blob};
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::format::pack::{self, BlobEntry, PackPrefix, PREFIX_LEN_WITH_EPOCH, TRAILER_LEN};
use crate::id::PackId;

/// Reads and opens blobs of a repository's packs.
pub struct PackReader<'a> {
    backend: &'a dyn Backend,
    key: &'a MasterKey,
}

impl<'a> PackReader<'a> {
    /// A reader over `backend` with `key`.
    pub fn new(backend: &'a dyn Backend, key: &'a MasterKey) -> Self {
        PackReader { backend, key }
    }

    /// The verified plaintext of one blob; `base` is the plaintext of its base when it is a delta.
    ///
    /// # Errors
    /// When the pack is missing or short, or the blob fails verification; the message names the pack.
    pub fn read_blob(
        &self,
        pack: &PackId,
        entry: &BlobEntry,
        base: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let sealed = self.read_sealed(pack, entry)?;
        open_blob(self.key, entry, &sealed, base).map_err(|e| e.context(format!("pack {pack}")))
    }

    /// [`PackReader::read_blob`] of a blob read only as the base of a delta: not hashed (see
    /// [`crate::blob::open_base`]).
    ///
    /// # Errors
    /// As [`PackReader::read_blob`], minus the id check.
    pub fn read_base(
        &self,
        pack: &PackId,
        entry: &BlobEntry,
        base: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let sealed = self.read_sealed(pack, entry)?;
        open_base(self.key, entry, &sealed, base).map_err(|e| e.context(format!("pack {pack}")))
    }

    /// The sealed bytes of one blob, read from its pack.
    fn read_sealed(&self, pack: &PackId, entry: &BlobEntry) -> Result<Vec<u8>> {
        self.backend.read_range(
            ObjectKind::Pack,
            &pack.to_hex(),
            entry.offset as u64,
            entry.length as u64,
        )
    }

    /// Opens a blob of a whole pack already in memory (`base` as for [`PackReader::read_blob`]).
    ///
    /// # Errors
    /// When the entry lies outside `pack_bytes` or the blob fails verification.
    pub fn open_from(
        &self,
        pack: &PackId,
        pack_bytes: &[u8],
        entry: &BlobEntry,
        base: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let sealed = sealed_slice(pack, pack_bytes, entry)?;
        open_blob(self.key, entry, sealed, base).map_err(|e| e.context(format!("pack {pack}")))
    }

    /// Proves a blob of a whole pack already in memory is intact, as [`PackReader::open_from`]
    /// does, without keeping its plaintext.
    ///
    /// # Errors
    /// When the entry lies outside `pack_bytes` or the blob fails verification.
    pub fn verify_from(
        &self,
        pack: &PackId,
        pack_bytes: &[u8],
        entry: &BlobEntry,
        base: Option<&[u8]>,
    ) -> Result<()> {
        let sealed = sealed_slice(pack, pack_bytes, entry)?;
        verify_blob(self.key, entry, sealed, base).map_err(|e| e.context(format!("pack {pack}")))
    }

    /// The sealed bytes of a blob of a whole pack already in memory, authenticated but not opened.
    ///
    /// # Errors
    /// When the entry lies outside `pack_bytes` or the seal does not authenticate.
    pub fn sealed_from<'p>(
        &self,
        pack: &PackId,
        pack_bytes: &'p [u8],
        entry: &BlobEntry,
    ) -> Result<&'p [u8]> {
        let sealed = sealed_slice(pack, pack_bytes, entry)?;
        authenticate_blob(self.key, entry, sealed)
            .map_err(|e| e.context(format!("pack {pack}")))?;
        Ok(sealed)
    }
}

/// Where `entry` lies in a whole pack, or a `Corrupted` error naming the pack.
fn sealed_slice<'p>(pack: &PackId, pack_bytes: &'p [u8], entry: &BlobEntry) -> Result<&'p [u8]> {
    let start = entry.offset as usize;
    start
        .checked_add(entry.length as usize)
        .and_then(|end| pack_bytes.get(start..end))
        .ok_or_else(|| {
            Error::corrupted(format!(
                "pack {pack}: blob {} lies outside the pack",
                entry.id
            ))
        })
}

/// The prefix of a pack of `len` bytes and where its sealed header lies, from its first (up to
/// 14) and last 4 bytes.
fn locate_header(len: u64, prefix: &[u8], trailer: &[u8]) -> Result<(PackPrefix, u64, u64)> {
    if len < (pack::PREFIX_LEN + TRAILER_LEN) as u64 {
        return Err(Error::corrupted(format!(
            "{len} bytes is too short for a pack"
        )));
    }
    let prefix = PackPrefix::decode(prefix)?;
    let trailer: [u8; 4] = trailer.try_into().unwrap_or_default();
    let (start, header_len) = pack::header_range(len, prefix.len, trailer)?;
    Ok((prefix, start, header_len))
}

/// The prefix of a stored pack (its epoch), from its first 14 bytes; nothing is authenticated.
///
/// # Errors
/// When the pack is missing or does not start like a pack.
pub fn read_pack_prefix(backend: &dyn Backend, pack: &PackId) -> Result<PackPrefix> {
    let name = pack.to_hex();
    let len = backend.size(ObjectKind::Pack, &name)?;
    let bytes = backend.read_range(
        ObjectKind::Pack,
        &name,
        0,
        (PREFIX_LEN_WITH_EPOCH as u64).min(len),
    )?;
    PackPrefix::decode(&bytes).map_err(|e| e.context(format!("pack {name}")))
}

/// Reads and verifies the header of a stored pack, fetching only its ends (index rebuild, check).
///
/// # Errors
/// When the pack is missing, truncated, or its header fails verification.
pub fn read_pack_header(
    backend: &dyn Backend,
    key: &MasterKey,
    pack: &PackId,
) -> Result<Vec<BlobEntry>> {
    let name = pack.to_hex();
    let ctx = |e: Error| e.context(format!("pack {name}"));
    let len = backend.size(ObjectKind::Pack, &name)?;
    let prefix_len = (PREFIX_LEN_WITH_EPOCH as u64).min(len);
    let prefix = backend.read_range(ObjectKind::Pack, &name, 0, prefix_len)?;
    let trailer_start = len.saturating_sub(TRAILER_LEN as u64);
    let trailer =
        backend.read_range(ObjectKind::Pack, &name, trailer_start, len - trailer_start)?;
    let (prefix, start, header_len) = locate_header(len, &prefix, &trailer).map_err(ctx)?;
    let sealed = backend.read_range(ObjectKind::Pack, &name, start, header_len)?;
    pack::decode_header(key, prefix, &sealed, start).map_err(ctx)
}

/// Verifies the header of a whole pack held in memory (check --read-data reads each pack once).
///
/// # Errors
/// When the bytes are not a pack or the header fails verification.
pub fn parse_pack_header(key: &MasterKey, pack: &PackId, bytes: &[u8]) -> Result<Vec<BlobEntry>> {
    parse_pack(key, pack, bytes).map(|(_, entries)| entries)
}

/// The prefix (epoch) and verified header of a whole pack held in memory (prune's repack needs
/// the epoch to know whether a blob must be sealed again).
///
/// # Errors
/// When the bytes are not a pack or the header fails verification.
pub fn parse_pack(
    key: &MasterKey,
    pack: &PackId,
    bytes: &[u8],
) -> Result<(PackPrefix, Vec<BlobEntry>)> {
    let ctx = |e: Error| e.context(format!("pack {pack}"));
    let len = bytes.len() as u64;
    let prefix = &bytes[..bytes.len().min(PREFIX_LEN_WITH_EPOCH)];
    let trailer = &bytes[bytes.len().saturating_sub(TRAILER_LEN)..];
    let (prefix, start, header_len) = locate_header(len, prefix, trailer).map_err(ctx)?;
    let sealed = &bytes[start as usize..(start + header_len) as usize];
    let entries = pack::decode_header(key, prefix, sealed, start).map_err(ctx)?;
    Ok((prefix, entries))
}
