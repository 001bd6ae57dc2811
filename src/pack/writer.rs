//! Builds one pack in memory up to the target size, then hands it out whole, named by its hash.

use crate::crypto::MasterKey;
use crate::error::Result;
use crate::format::pack::{self, BlobEntry, Delta, PackPrefix};
use crate::id::{BlobId, BlobType, PackId};

/// A complete pack ready to store.
pub struct FinishedPack {
    /// Hash of `bytes`.
    pub id: PackId,
    /// The whole file.
    pub bytes: Vec<u8>,
    /// Its blobs.
    pub entries: Vec<BlobEntry>,
}

/// A complete pack not yet named: hashing 32 MiB takes milliseconds, so the saver names a pack
/// after it releases the lock its workers share, not while holding it.
pub struct ClosedPack {
    bytes: Vec<u8>,
    entries: Vec<BlobEntry>,
}

impl ClosedPack {
    /// The pack with its name, the hash of its bytes.
    pub fn named(self) -> FinishedPack {
        FinishedPack {
            id: PackId::hash_of(&self.bytes),
            bytes: self.bytes,
            entries: self.entries,
        }
    }
}

/// Accumulates sealed blobs of one type.
pub struct PackWriter {
    blob_type: BlobType,
    target_size: usize,
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
    /// The prefix of the pack being filled: the epoch of the key that sealed its first blob.
    prefix: PackPrefix,
}

impl PackWriter {
    /// A writer for blobs of `blob_type`, closing packs at `target_size` bytes.
    pub fn new(blob_type: BlobType, target_size: usize) -> Self {
        PackWriter {
            blob_type,
            target_size,
            buf: Vec::new(),
            entries: Vec::new(),
            prefix: PackPrefix::for_epoch(0),
        }
    }

    /// Whether no pack is being filled (the next blob starts one).
    pub fn is_idle(&self) -> bool {
        self.entries.is_empty()
    }

    /// Fills the next pack in `buffer` (an empty buffer of a pack already stored) instead of fresh
    /// memory. Call only when [`PackWriter::is_idle`]; a smaller buffer than the one held is dropped.
    pub fn reuse(&mut self, mut buffer: Vec<u8>) {
        debug_assert!(self.is_idle(), "a pack is being filled");
        if buffer.capacity() > self.buf.capacity() {
            buffer.clear();
            self.buf = buffer;
        }
    }

    /// Adds a blob sealed under `key`'s newest epoch (a delta when `delta` says against what);
    /// returns the finished pack when the target size is reached.
    ///
    /// # Errors
    /// When sealing the header fails.
    pub fn add(
        &mut self,
        key: &MasterKey,
        id: BlobId,
        raw_length: u32,
        delta: Option<Delta>,
        sealed: &[u8],
    ) -> Result<Option<ClosedPack>> {
        if self.buf.is_empty() {
            self.prefix = PackPrefix::for_epoch(key.newest_epoch());
            if self.blob_type == BlobType::Data && self.target_size >= crate::buffers::SMALL {
                // A data pack fills its target: room for it and a last blob like this one,
                // reserved once (crate::buffers says why).
                crate::buffers::reserve_large(&mut self.buf, self.target_size + sealed.len());
            } else {
                self.buf
                    .reserve(self.target_size.min(sealed.len() * 4 + self.prefix.len));
            }
            self.buf.extend_from_slice(&self.prefix.encode());
        }
        self.entries.push(BlobEntry {
            blob_type: self.blob_type,
            id,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            raw_length,
            delta,
        });
        if delta.is_some() && !self.prefix.deltas {
            // Versions 3 and 4 differ from 1 and 2 in the version bytes only (same prefix length).
            self.prefix.deltas = true;
            self.buf[8..10].copy_from_slice(&self.prefix.version().to_le_bytes());
        }
        self.buf.extend_from_slice(sealed);
        if self.buf.len() >= self.target_size {
            return self.finish(key);
        }
        Ok(None)
    }

    /// Closes the pending pack, if any.
    ///
    /// # Errors
    /// When sealing the header fails.
    pub fn finish(&mut self, key: &MasterKey) -> Result<Option<ClosedPack>> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let entries = std::mem::take(&mut self.entries);
        let mut bytes = std::mem::take(&mut self.buf);
        bytes.extend_from_slice(&pack::encode_trailer(key, self.prefix, &entries)?);
        Ok(Some(ClosedPack { bytes, entries }))
    }
}
