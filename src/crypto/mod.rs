//! Key material and the two primitives everything else uses: keyed BLAKE3 ids and XChaCha20-Poly1305 seal/open.
//!
//! Never returns plaintext that failed authentication; secret keys are zeroized on drop.

mod kdf;
mod xchacha;

pub use kdf::{
    derive_wrapping_key, KdfParams, OPEN_BUDGET, UNNAMED_MAX_COST, UNNAMED_MAX_MEMORY_KIB,
};
pub use xchacha::Cipher;

use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::id::BlobId;

pub use xchacha::{NONCE_LEN, TAG_LEN};
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

/// One data key of the keyring: the epoch it belongs to and its cipher.
#[derive(Clone)]
struct DataKey {
    epoch: u32,
    bytes: Zeroizing<[u8; 32]>,
    cipher: Cipher,
}

impl DataKey {
    fn new(epoch: u32, bytes: &[u8; 32]) -> Self {
        DataKey {
            epoch,
            bytes: Zeroizing::new(*bytes),
            cipher: Cipher::new(bytes),
        }
    }
}

/// The repository's keys: the id key (keyed BLAKE3, never rotates) and a keyring of data keys by
/// epoch (FORMAT.md §15). The newest epoch seals; any epoch of the keyring opens what names it.
#[derive(Clone)]
pub struct MasterKey {
    id_key: Zeroizing<[u8; 32]>,
    /// Strictly increasing epochs, newest last; never empty.
    data: Vec<DataKey>,
}

impl PartialEq for MasterKey {
    /// Same id key and same keyring (epochs and data keys).
    fn eq(&self, other: &Self) -> bool {
        *self.id_key == *other.id_key
            && self.data.len() == other.data.len()
            && self
                .data
                .iter()
                .zip(&other.data)
                .all(|(a, b)| a.epoch == b.epoch && *a.bytes == *b.bytes)
    }
}

impl MasterKey {
    /// A fresh random key: a new id key and the data key of epoch 0.
    ///
    /// # Errors
    /// When the OS cannot provide randomness.
    pub fn generate() -> Result<Self> {
        let mut bytes = random_array::<MASTER_KEY_LEN>()?;
        let key = Self::from_bytes(&bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// The key of a version 1 key file: `data key of epoch 0 || id key`.
    pub fn from_bytes(bytes: &[u8; MASTER_KEY_LEN]) -> Self {
        let (data, id) = bytes.split_at(32);
        let data: &[u8; 32] = data.try_into().expect("64 bytes split at 32");
        let id: &[u8; 32] = id.try_into().expect("64 bytes split at 32");
        MasterKey {
            id_key: Zeroizing::new(*id),
            data: vec![DataKey::new(0, data)],
        }
    }

    /// A key from its keyring: the id key and `(epoch, data key)` pairs.
    ///
    /// # Errors
    /// `Corrupted` when the keyring is empty or its epochs are not strictly increasing.
    pub fn from_keyring(id_key: &[u8; 32], epochs: &[(u32, Zeroizing<[u8; 32]>)]) -> Result<Self> {
        if epochs.is_empty() {
            return Err(Error::corrupted("keyring: no data key"));
        }
        if epochs.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err(Error::corrupted(
                "keyring: data-key epochs are not strictly increasing",
            ));
        }
        Ok(MasterKey {
            id_key: Zeroizing::new(*id_key),
            data: epochs.iter().map(|(e, k)| DataKey::new(*e, k)).collect(),
        })
    }

    /// The same keys plus a new epoch (newest + 1) with a fresh random data key: `key rotate`.
    ///
    /// # Errors
    /// When the OS cannot provide randomness or the newest epoch is `u32::MAX`.
    pub fn with_new_epoch(&self) -> Result<Self> {
        let epoch = self.newest_epoch().checked_add(1).ok_or_else(|| {
            Error::invalid_input("the keyring is at the last possible epoch; it cannot rotate")
        })?;
        let bytes = Zeroizing::new(random_array::<32>()?);
        let mut key = self.clone();
        key.data.push(DataKey::new(epoch, &bytes));
        Ok(key)
    }

    /// The version 1 key file form, `data key of the oldest epoch || id key`: the whole key only
    /// while the keyring holds one epoch (version 2 key files and recovery keys hold them all).
    pub fn to_bytes(&self) -> Zeroizing<[u8; MASTER_KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        out[..32].copy_from_slice(&*self.data[0].bytes);
        out[32..].copy_from_slice(&*self.id_key);
        out
    }

    /// The id key (for encoding a keyring).
    pub(crate) fn id_key(&self) -> &[u8; 32] {
        &self.id_key
    }

    /// `(epoch, data key)` pairs, oldest first (for encoding a keyring).
    pub(crate) fn data_keys(&self) -> impl Iterator<Item = (u32, &[u8; 32])> {
        self.data.iter().map(|d| (d.epoch, &*d.bytes))
    }

    /// The epochs of the keyring, oldest first.
    pub fn epochs(&self) -> Vec<u32> {
        self.data.iter().map(|d| d.epoch).collect()
    }

    /// The epoch that seals new objects: the newest of the keyring.
    pub fn newest_epoch(&self) -> u32 {
        self.newest().epoch
    }

    fn newest(&self) -> &DataKey {
        self.data
            .last()
            .expect("a keyring holds at least one data key")
    }

    /// The id of a blob plaintext: keyed BLAKE3 under the id key.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// A keyed hasher for ids of plaintexts streamed in pieces.
    pub fn blob_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.id_key)
    }

    /// `nonce || ciphertext || tag` of `plaintext` bound to `aad`, under the newest epoch's key.
    ///
    /// # Errors
    /// When the OS gives no nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.newest().cipher, aad, plaintext)
    }

    /// [`MasterKey::seal`] of the concatenation of `parts`, built in the one buffer it returns:
    /// a blob's flag byte and compressed body are sealed without being joined first.
    ///
    /// # Errors
    /// When the OS gives no nonce.
    pub fn seal_parts(&self, aad: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.seal_parts_into(aad, parts, &mut out)?;
        Ok(out)
    }

    /// [`MasterKey::seal_parts`] into `out` (cleared first, its capacity reused): a backup seals
    /// every new blob into one buffer per thread instead of a fresh allocation per blob.
    ///
    /// # Errors
    /// When the OS gives no nonce.
    pub fn seal_parts_into(&self, aad: &[u8], parts: &[&[u8]], out: &mut Vec<u8>) -> Result<()> {
        seal_parts_with(&self.newest().cipher, aad, parts, out)
    }

    /// The plaintext of a message sealed under the data key of `epoch`, or a corruption error
    /// naming `what`.
    ///
    /// # Errors
    /// `UnsupportedVersion` when the keyring lacks `epoch` (§15: the keys were rotated after
    /// this key file was written); `Corrupted` when the message is too short or fails
    /// authentication (altered, wrong key, wrong aad).
    pub fn open(&self, epoch: u32, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        let key = self
            .data
            .iter()
            .find(|d| d.epoch == epoch)
            .ok_or_else(|| self.unknown_epoch(epoch, what))?;
        open_with(&key.cipher, aad, sealed, what)
    }

    /// Opens a message whose epoch is not written next to it (a blob read through the index, §15):
    /// tries the data keys newest first. A wrong key fails authentication, never yields bytes.
    ///
    /// # Errors
    /// `Corrupted` when no data key of the keyring opens it.
    pub fn open_any_epoch(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_any_epoch_into(aad, sealed, &mut out, || what.to_string())?;
        Ok(out)
    }

    /// [`MasterKey::open_any_epoch`] into `out` (cleared first, its capacity reused), for loops
    /// over many blobs: no allocation once `out` is large enough, and `what` is only called to
    /// name the message in an error.
    ///
    /// # Errors
    /// `Corrupted` when no data key of the keyring opens it; `out` is then empty.
    pub fn open_any_epoch_into(
        &self,
        aad: &[u8],
        sealed: &[u8],
        out: &mut Vec<u8>,
        what: impl Fn() -> String,
    ) -> Result<()> {
        out.clear();
        let (nonce, ciphertext, tag) =
            split_sealed(sealed).ok_or_else(|| too_short(&what(), sealed))?;
        out.resize(ciphertext.len(), 0);
        for key in self.data.iter().rev() {
            // Decrypted straight from `sealed`; a failed attempt leaves zeroes, never plaintext.
            if key
                .cipher
                .decrypt_detached(nonce, aad, ciphertext, tag, out)
                .is_ok()
            {
                return Ok(());
            }
        }
        out.clear();
        Err(if self.data.len() == 1 {
            not_authentic(&what())
        } else {
            Error::corrupted(format!(
                "{}: authentication failed under every data-key epoch of this keyring ({}): \
                 the bytes were altered or belong elsewhere, or they were sealed under an epoch made \
                 after this key file was written",
                what(),
                self.epoch_list()
            ))
        })
    }

    fn epoch_list(&self) -> String {
        let epochs: Vec<String> = self.data.iter().map(|d| d.epoch.to_string()).collect();
        epochs.join(", ")
    }

    /// The error of §15 for an object sealed under an epoch the keyring lacks.
    pub(crate) fn unknown_epoch(&self, epoch: u32, what: &str) -> Error {
        Error::new(
            crate::error::ErrorKind::UnsupportedVersion,
            format!(
                "{what}: sealed under data-key epoch {epoch}, which this key's keyring lacks (it \
                 holds epochs {}): the repository's keys were rotated after this password's key \
                 file (or this recovery key) was made, or by a newer cairn. Open the repository \
                 with a current password (ask for one) or upgrade cairn",
                self.epoch_list()
            ),
        )
    }
}

/// Seals with an explicit cipher (the key file's wrapping key uses this too).
pub(crate) fn seal_with(cipher: &Cipher, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    seal_parts_with(cipher, aad, &[plaintext], &mut out)?;
    Ok(out)
}

/// `nonce || ciphertext of the concatenated parts || tag`, encrypted in place in one allocation.
fn seal_parts_with(cipher: &Cipher, aad: &[u8], parts: &[&[u8]], out: &mut Vec<u8>) -> Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.clear();
    out.reserve(SEAL_OVERHEAD + len);
    out.extend_from_slice(&random_array::<NONCE_LEN>()?);
    for part in parts {
        out.extend_from_slice(part);
    }
    let (nonce, message) = out.split_at_mut(NONCE_LEN);
    let nonce: &[u8; NONCE_LEN] = (&*nonce).try_into().expect("split at NONCE_LEN");
    let tag = cipher
        .encrypt_in_place_detached(nonce, aad, message)
        .map_err(|_| Error::new(crate::error::ErrorKind::Other, "encryption failed"))?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// Opens with an explicit cipher.
pub(crate) fn open_with(cipher: &Cipher, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    let (nonce, ciphertext, tag) = split_sealed(sealed).ok_or_else(|| too_short(what, sealed))?;
    let mut out = ciphertext.to_vec();
    cipher
        .decrypt_in_place_detached(nonce, aad, &mut out, tag)
        .map_err(|_| not_authentic(what))?;
    Ok(out)
}

/// `nonce || ciphertext || tag`, or `None` when too short to hold a nonce and a tag.
fn split_sealed(sealed: &[u8]) -> Option<(&[u8; NONCE_LEN], &[u8], &[u8; TAG_LEN])> {
    let (nonce, rest) = sealed.split_first_chunk::<NONCE_LEN>()?;
    let (ciphertext, tag) = rest.split_last_chunk::<TAG_LEN>()?;
    Some((nonce, ciphertext, tag))
}

fn too_short(what: &str, sealed: &[u8]) -> Error {
    Error::corrupted(format!(
        "{what}: {} bytes is too short for a sealed message",
        sealed.len()
    ))
}

fn not_authentic(what: &str) -> Error {
    Error::corrupted(format!(
        "{what}: authentication failed (the bytes were altered or belong elsewhere)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(key.open(0, b"aad", &sealed, "t").unwrap(), b"hello");
        assert!(key.open(0, b"other", &sealed, "t").is_err());
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(key.open(0, b"aad", &bad, "t").is_err());
        assert!(key.open(0, b"aad", &sealed[..10], "t").is_err());
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

    #[test]
    fn epochs_seal_with_the_newest_and_open_by_epoch() {
        let old = MasterKey::generate().unwrap();
        let new = old.with_new_epoch().unwrap();
        assert_eq!(new.epochs(), vec![0, 1]);
        assert_eq!(new.blob_id(b"x"), old.blob_id(b"x"));
        let sealed_old = old.seal(b"a", b"old").unwrap();
        let sealed_new = new.seal(b"a", b"new").unwrap();
        assert_eq!(new.open(0, b"a", &sealed_old, "t").unwrap(), b"old");
        assert_eq!(new.open(1, b"a", &sealed_new, "t").unwrap(), b"new");
        assert!(new.open(0, b"a", &sealed_new, "t").is_err());
        assert_eq!(new.open_any_epoch(b"a", &sealed_old, "t").unwrap(), b"old");
        assert_eq!(new.open_any_epoch(b"a", &sealed_new, "t").unwrap(), b"new");
        let e = old.open(1, b"a", &sealed_new, "snapshot x").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::UnsupportedVersion);
        assert!(e.to_string().contains("epoch 1"), "{e}");
        assert!(e.to_string().contains("rotated"), "{e}");
        assert!(old.open_any_epoch(b"a", &sealed_new, "t").is_err());
    }
}
