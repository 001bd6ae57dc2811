//! Key material and the two primitives everything else uses: keyed BLAKE3 ids and XChaCha20-Poly1305 seal/open.
//!
//! Never returns plaintext that failed authentication; secret keys are zeroized on drop.

mod kdf;

pub use kdf::{derive_wrapping_key, KdfParams};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::id::BlobId;

/// Length of an XChaCha20 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes a seal adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length of the serialized master key (data key || id key).
pub const MASTER_KEY_LEN: usize = 64;

/// Fills `buf` from the operating system's random source.
///
/// # Errors
/// When the OS cannot provide randomness.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        Error::new(
            crate::error::ErrorKind::Other,
            format!("the operating system gave no random bytes: {e}"),
        )
    })
}

/// `N` random bytes from the OS.
///
/// # Errors
/// When the OS cannot provide randomness.
pub fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    fill_random(&mut out)?;
    Ok(out)
}

/// The repository's master key: the data key (sealing) and the id key (keyed BLAKE3).
pub struct MasterKey {
    bytes: Zeroizing<[u8; MASTER_KEY_LEN]>,
    cipher: XChaCha20Poly1305,
}

impl MasterKey {
    /// A fresh random master key.
    ///
    /// # Errors
    /// When the OS cannot provide randomness.
    pub fn generate() -> Result<Self> {
        let mut bytes = random_array::<MASTER_KEY_LEN>()?;
        let key = Self::from_bytes(&bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// The key from its 64 serialized bytes.
    pub fn from_bytes(bytes: &[u8; MASTER_KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(*bytes);
        let cipher = XChaCha20Poly1305::new(bytes[..32].into());
        MasterKey { bytes, cipher }
    }

    /// The 64 serialized bytes (for wrapping into a key file).
    pub fn to_bytes(&self) -> Zeroizing<[u8; MASTER_KEY_LEN]> {
        self.bytes.clone()
    }

    fn id_key(&self) -> &[u8; 32] {
        self.bytes[32..]
            .try_into()
            .expect("master key is 64 bytes: the id key is its second half")
    }

    /// The id of a blob plaintext: keyed BLAKE3 under the id key.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(self.id_key(), plaintext).as_bytes())
    }

    /// A keyed hasher for ids of plaintexts streamed in pieces.
    pub fn blob_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(self.id_key())
    }

    /// `nonce || ciphertext || tag` of `plaintext` bound to `aad`.
    ///
    /// # Errors
    /// When the OS gives no nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.cipher, aad, plaintext)
    }

    /// The plaintext of a sealed message, or a corruption error naming `what`.
    ///
    /// # Errors
    /// When the message is too short or fails authentication (altered, wrong key, wrong aad).
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        open_with(&self.cipher, aad, sealed, what)
    }
}

/// Seals with an explicit cipher (the key file's wrapping key uses this too).
pub(crate) fn seal_with(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let nonce = random_array::<NONCE_LEN>()?;
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::new(crate::error::ErrorKind::Other, "encryption failed"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens with an explicit cipher.
pub(crate) fn open_with(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    sealed: &[u8],
    what: &str,
) -> Result<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Error::corrupted(format!(
            "{what}: {} bytes is too short for a sealed message",
            sealed.len()
        )));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| {
            Error::corrupted(format!(
                "{what}: authentication failed (the bytes were altered or belong elsewhere)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(key.open(b"aad", &sealed, "t").unwrap(), b"hello");
        assert!(key.open(b"other", &sealed, "t").is_err());
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(key.open(b"aad", &bad, "t").is_err());
        assert!(key.open(b"aad", &sealed[..10], "t").is_err());
    }

    #[test]
    fn ids_are_keyed() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        let mut h = a.blob_hasher();
        h.update(b"x");
        assert_eq!(BlobId(*h.finalize().as_bytes()), a.blob_id(b"x"));
    }
}
