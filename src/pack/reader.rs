//! Reads blobs back out of packs: one range per blob, opened and verified against its id.

use crate::backend::{Backend, ObjectKind};
use crate::blob::open_blob;
use crate::crypto::MasterKey;
use crate::error::Result;
use crate::format::pack::{self, BlobEntry, TRAILER_LEN};
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

    /// The verified plaintext of one blob.
    ///
    /// # Errors
    /// When the pack is missing or short, or the blob fails verification; the message names the pack.
    pub fn read_blob(&self, pack: &PackId, entry: &BlobEntry) -> Result<Vec<u8>> {
        let name = pack.to_hex();
        let sealed = self.backend.read_range(
            ObjectKind::Pack,
            &name,
            entry.offset as u64,
            entry.length as u64,
        )?;
        open_blob(self.key, entry, &sealed).map_err(|e| e.context(format!("pack {name}")))
    }

    /// Opens a blob from bytes of the pack already in memory (`pack_bytes` starts at `base`).
    ///
    /// # Errors
    /// When the range is outside `pack_bytes` or the blob fails verification.
    pub fn open_from(
        &self,
        pack: &PackId,
        pack_bytes: &[u8],
        base: u64,
        entry: &BlobEntry,
    ) -> Result<Vec<u8>> {
        let start = (entry.offset as u64).checked_sub(base);
        let range = start.and_then(|s| {
            let s = s as usize;
            s.checked_add(entry.length as usize).map(|e| s..e)
        });
        let sealed = range.and_then(|r| pack_bytes.get(r)).ok_or_else(|| {
            crate::error::Error::corrupted(format!(
                "pack {pack}: blob {} lies outside the bytes read",
                entry.id
            ))
        })?;
        open_blob(self.key, entry, sealed).map_err(|e| e.context(format!("pack {pack}")))
    }
}

/// Reads and verifies the header of a stored pack (for rebuilding the index and for check).
///
/// # Errors
/// When the pack is missing, truncated, or its header fails verification.
pub fn read_pack_header(
    backend: &dyn Backend,
    key: &MasterKey,
    pack: &PackId,
) -> Result<Vec<BlobEntry>> {
    let name = pack.to_hex();
    let ctx = |e: crate::error::Error| e.context(format!("pack {name}"));
    let len = backend.size(ObjectKind::Pack, &name)?;
    if len < (pack::PREFIX_LEN + TRAILER_LEN) as u64 {
        return Err(ctx(crate::error::Error::corrupted(format!(
            "{len} bytes is too short for a pack"
        ))));
    }
    let prefix = backend.read_range(ObjectKind::Pack, &name, 0, pack::PREFIX_LEN as u64)?;
    pack::check_prefix(&prefix).map_err(ctx)?;
    let trailer = backend.read_range(
        ObjectKind::Pack,
        &name,
        len - TRAILER_LEN as u64,
        TRAILER_LEN as u64,
    )?;
    let trailer: [u8; 4] = trailer.as_slice().try_into().unwrap_or_default();
    let (start, header_len) = pack::header_range(len, trailer).map_err(ctx)?;
    let sealed = backend.read_range(ObjectKind::Pack, &name, start, header_len)?;
    pack::decode_header(key, &sealed, start).map_err(ctx)
}
