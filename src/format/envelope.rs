//! The envelope shared by config, index, snapshot, lease, pending and verified files: magic,
//! version, (version 2) the data-key epoch, then one sealed body (FORMAT.md §2, §15).
//!
//! Version 1 is epoch 0. Writers keep writing version 1 while the key's newest epoch is 0, so a
//! repository that was never rotated stays readable by builds that predate epochs. Versions 3 and
//! 4 are 1 and 2 for an index file that lists delta entries (FORMAT.md §8): the layout is the
//! same, the version tells builds that predate deltas to refuse the file.

use crate::crypto::{MasterKey, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::format::wire::{read_header, Reader, Writer};

/// Version of objects sealed under epoch 0, without an epoch field.
pub const VERSION_EPOCH_0: u16 = 1;
/// Version of objects that name their epoch (`u32` after the version).
pub const VERSION_WITH_EPOCH: u16 = 2;
/// Version 1 with a body that may hold delta entries.
pub const VERSION_EPOCH_0_DELTAS: u16 = 3;
/// Version 2 with a body that may hold delta entries.
pub const VERSION_WITH_EPOCH_DELTAS: u16 = 4;
/// Versions read of every object.
pub const READABLE: &[u16] = &[VERSION_EPOCH_0, VERSION_WITH_EPOCH];
/// Versions read of index files.
const READABLE_WITH_DELTAS: &[u16] = &[
    VERSION_EPOCH_0,
    VERSION_WITH_EPOCH,
    VERSION_EPOCH_0_DELTAS,
    VERSION_WITH_EPOCH_DELTAS,
];

/// What an object's version says beyond its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The epoch whose data key sealed it.
    pub epoch: u32,
    /// Whether the body may hold delta entries (versions 3 and 4).
    pub deltas: bool,
}

fn has_epoch(version: u16) -> bool {
    version == VERSION_WITH_EPOCH || version == VERSION_WITH_EPOCH_DELTAS
}

/// What distinguishes one enveloped object kind from another.
pub struct EnvelopeKind {
    /// 8-byte magic.
    pub magic: &'static [u8; 8],
    /// Additional authenticated data of the seal (binds the body to its kind); version 2 appends
    /// the epoch.
    pub aad: &'static [u8],
    /// Name for error messages.
    pub what: &'static str,
    /// Largest file accepted.
    pub max_len: usize,
}

/// The AAD of a version 2 object: the kind's AAD followed by the epoch, so that the epoch in the
/// clear cannot be changed without the seal failing.
fn aad_with_epoch(aad: &[u8], epoch: u32) -> Vec<u8> {
    [aad, &epoch.to_le_bytes()].concat()
}

/// Seals `body` into a complete object under the key's newest epoch.
///
/// # Errors
/// When randomness is unavailable.
pub fn seal(key: &MasterKey, kind: &EnvelopeKind, body: &[u8]) -> Result<Vec<u8>> {
    seal_with(key, kind, body, false)
}

/// [`seal`], as version 3 or 4 when the body holds delta entries (`deltas`).
///
/// # Errors
/// When randomness is unavailable.
pub fn seal_with(
    key: &MasterKey,
    kind: &EnvelopeKind,
    body: &[u8],
    deltas: bool,
) -> Result<Vec<u8>> {
    let epoch = key.newest_epoch();
    let mut w = Writer::with_capacity(14 + SEAL_OVERHEAD + body.len());
    let version = |plain, with_deltas| if deltas { with_deltas } else { plain };
    if epoch == 0 {
        w.bytes(kind.magic)
            .u16(version(VERSION_EPOCH_0, VERSION_EPOCH_0_DELTAS))
            .bytes(&key.seal(kind.aad, body)?);
    } else {
        let sealed = key.seal(&aad_with_epoch(kind.aad, epoch), body)?;
        w.bytes(kind.magic)
            .u16(version(VERSION_WITH_EPOCH, VERSION_WITH_EPOCH_DELTAS))
            .u32(epoch)
            .bytes(&sealed);
    }
    Ok(w.into_bytes())
}

/// Checks the header and opens the body; returns the epoch found and the plaintext.
///
/// # Errors
/// When the object is too large, has another magic or an unknown version, names an epoch the
/// keyring lacks (`UnsupportedVersion`), or fails authentication.
pub fn open(key: &MasterKey, kind: &EnvelopeKind, bytes: &[u8]) -> Result<(u32, Vec<u8>)> {
    open_versions(key, kind, bytes, READABLE).map(|(opened, body)| (opened.epoch, body))
}

/// [`open`] for index files, whose versions 3 and 4 may list delta entries.
///
/// # Errors
/// As [`open`].
pub fn open_with(key: &MasterKey, kind: &EnvelopeKind, bytes: &[u8]) -> Result<(Opened, Vec<u8>)> {
    open_versions(key, kind, bytes, READABLE_WITH_DELTAS)
}

fn open_versions(
    key: &MasterKey,
    kind: &EnvelopeKind,
    bytes: &[u8],
    readable: &[u16],
) -> Result<(Opened, Vec<u8>)> {
    if bytes.len() > kind.max_len {
        return Err(Error::corrupted(format!(
            "{}: {} bytes exceeds the limit of {} bytes",
            kind.what,
            bytes.len(),
            kind.max_len
        )));
    }
    let mut r = Reader::new(bytes, kind.what);
    let version = read_header(&mut r, kind.magic, readable)?;
    let (epoch, aad) = if has_epoch(version) {
        let epoch = r.u32()?;
        (epoch, aad_with_epoch(kind.aad, epoch))
    } else {
        (0, kind.aad.to_vec())
    };
    if r.remaining() < SEAL_OVERHEAD {
        return Err(r.error("truncated: no sealed body"));
    }
    let body = key.open(epoch, &aad, &bytes[r.position()..], kind.what)?;
    let deltas = version >= VERSION_EPOCH_0_DELTAS;
    Ok((Opened { epoch, deltas }, body))
}

/// The epoch an object names, read from its header alone (no key needed): 0 for version 1.
///
/// # Errors
/// When the header is not one of `kind`.
pub fn epoch_of(kind: &EnvelopeKind, bytes: &[u8]) -> Result<u32> {
    let mut r = Reader::new(bytes, kind.what);
    if has_epoch(read_header(&mut r, kind.magic, READABLE_WITH_DELTAS)?) {
        r.u32()
    } else {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: EnvelopeKind = EnvelopeKind {
        magic: b"CAIRNTST",
        aad: b"cairn test v1",
        what: "test object",
        max_len: 1 << 20,
    };

    #[test]
    fn epoch_0_writes_version_1_and_later_epochs_version_2() {
        let old = MasterKey::generate().unwrap();
        let new = old.with_new_epoch().unwrap();
        let v1 = seal(&old, &KIND, b"body").unwrap();
        assert_eq!(&v1[8..10], &1u16.to_le_bytes());
        let v2 = seal(&new, &KIND, b"body").unwrap();
        assert_eq!(&v2[8..10], &2u16.to_le_bytes());
        assert_eq!(&v2[10..14], &1u32.to_le_bytes());
        assert_eq!(epoch_of(&KIND, &v2).unwrap(), 1);
        assert_eq!(open(&new, &KIND, &v1).unwrap(), (0, b"body".to_vec()));
        assert_eq!(open(&new, &KIND, &v2).unwrap(), (1, b"body".to_vec()));
        // The old keyring refuses the new epoch by name.
        let e = open(&old, &KIND, &v2).unwrap_err();
        assert!(e.to_string().contains("epoch 1"), "{e}");
        // The epoch is authenticated: changing it in the clear breaks the seal.
        let mut moved = v2.clone();
        moved[10] = 0;
        assert!(open(&new, &KIND, &moved).is_err());
    }
}
