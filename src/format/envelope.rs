//! The envelope shared by config, index and snapshot files: magic, version, then one sealed body.

use crate::crypto::{MasterKey, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::format::wire::{read_header, Reader, Writer};

/// What distinguishes one enveloped object kind from another.
pub struct EnvelopeKind {
    /// 8-byte magic.
    pub magic: &'static [u8; 8],
    /// Version written by this build.
    pub version: u16,
    /// Versions this build reads.
    pub readable: &'static [u16],
    /// Additional authenticated data of the seal (binds the body to its kind).
    pub aad: &'static [u8],
    /// Name for error messages.
    pub what: &'static str,
    /// Largest file accepted.
    pub max_len: usize,
}

/// Seals `body` into a complete object.
///
/// # Errors
/// When randomness is unavailable.
pub fn seal(key: &MasterKey, kind: &EnvelopeKind, body: &[u8]) -> Result<Vec<u8>> {
    let sealed = key.seal(kind.aad, body)?;
    let mut w = Writer::with_capacity(10 + sealed.len());
    w.bytes(kind.magic).u16(kind.version).bytes(&sealed);
    Ok(w.into_bytes())
}

/// Checks the header and opens the body; returns the version found and the plaintext.
///
/// # Errors
/// When the object is too large, has another magic or an unknown version, or fails authentication.
pub fn open(key: &MasterKey, kind: &EnvelopeKind, bytes: &[u8]) -> Result<(u16, Vec<u8>)> {
    if bytes.len() > kind.max_len {
        return Err(Error::corrupted(format!(
            "{}: {} bytes exceeds the limit of {} bytes",
            kind.what,
            bytes.len(),
            kind.max_len
        )));
    }
    let mut r = Reader::new(bytes, kind.what);
    let version = read_header(&mut r, kind.magic, kind.readable)?;
    if r.remaining() < SEAL_OVERHEAD {
        return Err(r.error("truncated: no sealed body"));
    }
    let body = key.open(kind.aad, &bytes[r.position()..], kind.what)?;
    Ok((version, body))
}
