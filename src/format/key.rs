//! Key files (FORMAT.md §4): the repository's keys wrapped under one password through Argon2id,
//! plus (version 2) metadata sealed so that only password holders can read it.
//!
//! Decoding never runs the KDF: parameters are bounded first, so a hostile file cannot make cairn
//! allocate or spin beyond the limits of §4.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{
    self, KdfParams, MasterKey, MASTER_KEY_LEN, NONCE_LEN, SEAL_OVERHEAD, TAG_LEN,
};
use crate::error::{Error, ErrorKind, Result};
use crate::format::wire::{read_header, Reader, Writer};

/// Magic of a key file.
pub const MAGIC: &[u8; 8] = b"CAIRNKEY";
/// Version written.
pub const VERSION: u16 = 2;
/// Versions read.
pub const READABLE: &[u16] = &[1, VERSION];
const KDF_ARGON2ID: u8 = 1;
const SALT_LEN: usize = 32;
/// Offset of the nonce (v1) or the keyring length (v2): everything before it is the authenticated header.
const HEADER_LEN: usize = 8 + 2 + 1 + 4 * 3 + SALT_LEN;
/// Total length of a version 1 key file.
pub const V1_LEN: usize = HEADER_LEN + NONCE_LEN + MASTER_KEY_LEN + TAG_LEN;
/// Most data-key epochs a keyring may hold (§4).
pub const MAX_EPOCHS: usize = 1024;
/// Length of one keyring entry: epoch u32 + data key.
const EPOCH_ENTRY_LEN: usize = 4 + 32;
/// Largest sealed keyring: id key, count, entries, seal.
const MAX_SEALED_KEYRING: usize = 32 + 2 + MAX_EPOCHS * EPOCH_ENTRY_LEN + SEAL_OVERHEAD;
/// Metadata plaintext is padded with zero bytes to a multiple of this, so the file's size does not
/// tell the storage how long a label, host or user name is.
pub const METADATA_PAD: usize = 256;
/// Largest metadata plaintext (padding included).
pub const MAX_METADATA: usize = 4096;
/// Largest key file (a version 2 file with a full keyring and metadata): readers refuse a larger
/// one before reading it (FORMAT.md §3).
pub const MAX_FILE_LEN: usize =
    HEADER_LEN + 2 + MAX_SEALED_KEYRING + 4 + 2 + MAX_METADATA + SEAL_OVERHEAD;
/// Longest label accepted by [`KeyMetadata::new`].
pub const MAX_LABEL: usize = 200;
/// AAD prefix of the sealed metadata; the key file header follows it.
const METADATA_AAD: &[u8] = b"cairn key metadata v2";

/// Who made a key and when: readable by anyone holding a password of the repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMetadata {
    /// RFC 3339 creation time.
    pub created: String,
    /// Host that created the key.
    pub host: String,
    /// User that created the key.
    pub user: String,
    /// Free text given with `--label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl KeyMetadata {
    /// Metadata for a key made now by this host and user.
    ///
    /// # Errors
    /// `InvalidInput` when the label is longer than [`MAX_LABEL`] bytes or holds control characters.
    pub fn new(label: Option<String>) -> Result<Self> {
        if let Some(l) = &label {
            if l.len() > MAX_LABEL || l.chars().any(char::is_control) {
                return Err(Error::invalid_input(format!(
                    "the key label must be at most {MAX_LABEL} bytes without control characters; shorten it"
                )));
            }
        }
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default();
        Ok(KeyMetadata {
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            host: cut(host, 255),
            user: cut(user, 255),
            label,
        })
    }
}

fn cut(mut s: String, max: usize) -> String {
    while s.len() > max {
        s.pop();
    }
    s
}

/// A parsed key file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFile {
    /// Format version found (1 or 2).
    pub version: u16,
    /// Argon2id costs.
    pub params: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// nonce || sealed key material || tag (v1: the master key; v2: the keyring).
    pub sealed_key: Vec<u8>,
    /// Version 2: the data-key epoch that sealed the metadata, and the sealed metadata.
    pub sealed_metadata: Option<(u32, Vec<u8>)>,
}

impl KeyFile {
    /// Wraps `master` under `password` as a version 2 key file carrying `metadata`.
    ///
    /// # Errors
    /// When randomness is unavailable or `params` are out of bounds.
    pub fn wrap(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        metadata: &KeyMetadata,
    ) -> Result<Self> {
        let salt = crypto::random_array::<SALT_LEN>()?;
        let header = encode_header(VERSION, params, &salt);
        let wrapping = crypto::derive_wrapping_key(password, &salt, params)?;
        let cipher = crate::crypto::Cipher::new(&wrapping);
        let sealed_key = crypto::seal_with(&cipher, &header, &encode_keyring(master))?;
        let mut json = serde_json::to_vec(metadata)
            .map_err(|e| Error::invalid_input(format!("key metadata: {e}")))?;
        if json.len() > MAX_METADATA {
            return Err(Error::invalid_input("key metadata is too long"));
        }
        json.resize(json.len().div_ceil(METADATA_PAD) * METADATA_PAD, 0);
        // Sealed under the newest epoch, which the file names in the clear: opening picks the
        // key file of the highest epoch a password opens by trying files in that order (§15).
        let sealed = master.seal(&metadata_aad(&header), &json)?;
        Ok(KeyFile {
            version: VERSION,
            params,
            salt,
            sealed_key,
            sealed_metadata: Some((master.newest_epoch(), sealed)),
        })
    }

    /// The master key, if `password` is the one this file was wrapped with.
    ///
    /// # Errors
    /// `WrongPassword` when authentication fails; `Corrupted` for bad parameters or a malformed
    /// keyring.
    pub fn unwrap_key(&self, password: &[u8]) -> Result<MasterKey> {
        let header = encode_header(self.version, self.params, &self.salt);
        let wrapping = crypto::derive_wrapping_key(password, &self.salt, self.params)?;
        let cipher = crate::crypto::Cipher::new(&wrapping);
        let plain = Zeroizing::new(
            crypto::open_with(&cipher, &header, &self.sealed_key, "key file")
                .map_err(|_| Error::new(ErrorKind::WrongPassword, "wrong password"))?,
        );
        if self.version == 1 {
            let bytes: [u8; MASTER_KEY_LEN] = plain
                .as_slice()
                .try_into()
                .map_err(|_| Error::corrupted("key file: master key has the wrong length"))?;
            return Ok(MasterKey::from_bytes(&bytes));
        }
        decode_keyring(&plain)
    }

    /// The metadata, opened with the repository's key: `None` for a version 1 file (which has none).
    ///
    /// # Errors
    /// `Corrupted` when the metadata fails authentication under `master` (the file belongs to
    /// another repository or was altered) or is not the JSON of §4.
    pub fn metadata(&self, master: &MasterKey) -> Result<Option<KeyMetadata>> {
        let Some((epoch, sealed)) = &self.sealed_metadata else {
            return Ok(None);
        };
        let header = encode_header(self.version, self.params, &self.salt);
        let mut plain = master.open(*epoch, &metadata_aad(&header), sealed, "key file metadata")?;
        while plain.last() == Some(&0) {
            plain.pop();
        }
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|e| Error::corrupted(format!("key file metadata: {e}")))
    }

    /// The newest data-key epoch of the file's keyring, as its metadata epoch says in the clear
    /// (0 for a version 1 file). Only an ordering hint until the file is opened.
    pub fn epoch_hint(&self) -> u32 {
        self.sealed_metadata.as_ref().map_or(0, |(epoch, _)| *epoch)
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(V1_LEN + 512);
        w.bytes(&encode_header(self.version, self.params, &self.salt));
        match &self.sealed_metadata {
            None => {
                w.bytes(&self.sealed_key);
            }
            Some((epoch, sealed)) => {
                w.bytes16(&self.sealed_key).u32(*epoch).bytes16(sealed);
            }
        }
        w.into_bytes()
    }

    /// Parses a key file, checking its parameters before anything runs.
    ///
    /// # Errors
    /// When the bytes are not a version 1 or 2 key file or hold absurd parameters.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "key file");
        let version = read_header(&mut r, MAGIC, READABLE)?;
        let kdf = r.u8()?;
        if kdf != KDF_ARGON2ID {
            return Err(r.error(format!("unknown key derivation function {kdf}")));
        }
        let params = KdfParams {
            memory_kib: r.u32()?,
            time: r.u32()?,
            parallelism: r.u32()?,
        };
        params.validate()?;
        let salt = r.array::<SALT_LEN>()?;
        let (sealed_key, sealed_metadata) = if version == 1 {
            (r.take(NONCE_LEN + MASTER_KEY_LEN + TAG_LEN)?.to_vec(), None)
        } else {
            let keyring = r.bytes16(MAX_SEALED_KEYRING)?.to_vec();
            if keyring.len() < SEAL_OVERHEAD + 32 + 2 + EPOCH_ENTRY_LEN {
                return Err(r.error("the sealed keyring is too short to hold one data key"));
            }
            let epoch = r.u32()?;
            let metadata = r.bytes16(MAX_METADATA + SEAL_OVERHEAD)?.to_vec();
            if metadata.len() < SEAL_OVERHEAD {
                return Err(r.error("the sealed metadata is too short"));
            }
            (keyring, Some((epoch, metadata)))
        };
        r.finish()?;
        Ok(KeyFile {
            version,
            params,
            salt,
            sealed_key,
            sealed_metadata,
        })
    }
}

/// Keyring plaintext (§4): id key, epoch count, (epoch, data key) pairs, oldest first.
pub(crate) fn encode_keyring(master: &MasterKey) -> Zeroizing<Vec<u8>> {
    let epochs: Vec<(u32, &[u8; 32])> = master.data_keys().collect();
    let mut out = Zeroizing::new(Vec::with_capacity(32 + 2 + EPOCH_ENTRY_LEN * epochs.len()));
    out.extend_from_slice(master.id_key());
    // A keyring never holds more than MAX_EPOCHS: read_keyring refuses more, and rotation adds one
    // to a keyring that was read.
    out.extend_from_slice(&(epochs.len() as u16).to_le_bytes());
    for (epoch, key) in epochs {
        out.extend_from_slice(&epoch.to_le_bytes());
        out.extend_from_slice(key);
    }
    out
}

fn decode_keyring(plain: &[u8]) -> Result<MasterKey> {
    let mut r = Reader::new(plain, "key file keyring");
    let key = read_keyring(&mut r)?;
    r.finish()?;
    Ok(key)
}

/// Reads a keyring (§4) from `r`; shared with the recovery key (§4, Recovery key), which embeds one.
///
/// # Errors
/// `Corrupted` when malformed: no epoch, more than [`MAX_EPOCHS`], epochs not strictly increasing.
pub(crate) fn read_keyring(r: &mut Reader<'_>) -> Result<MasterKey> {
    let id_key = Zeroizing::new(r.array::<32>()?);
    let count = r.u16()? as usize;
    if count == 0 || count > MAX_EPOCHS {
        return Err(r.error(format!(
            "{count} data-key epochs (a keyring holds 1 to {MAX_EPOCHS})"
        )));
    }
    let mut epochs: Vec<(u32, Zeroizing<[u8; 32]>)> = Vec::with_capacity(count);
    for _ in 0..count {
        let epoch = r.u32()?;
        let key = Zeroizing::new(r.array::<32>()?);
        if epochs.last().is_some_and(|(p, _)| epoch <= *p) {
            return Err(r.error("data-key epochs are not strictly increasing"));
        }
        epochs.push((epoch, key));
    }
    MasterKey::from_keyring(&id_key, &epochs)
}

fn metadata_aad(header: &[u8]) -> Vec<u8> {
    [METADATA_AAD, header].concat()
}

fn encode_header(version: u16, params: KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut w = Writer::with_capacity(HEADER_LEN);
    w.bytes(MAGIC)
        .u16(version)
        .u8(KDF_ARGON2ID)
        .u32(params.memory_kib)
        .u32(params.time)
        .u32(params.parallelism)
        .bytes(salt);
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> KeyMetadata {
        KeyMetadata::new(Some("laptop".into())).unwrap()
    }

    /// A version 1 file built from the FORMAT.md §4 table, as cairn 0.1 wrote it.
    fn v1_file(master: &MasterKey, password: &[u8]) -> Vec<u8> {
        let salt = [7u8; SALT_LEN];
        let header = encode_header(1, KdfParams::MINIMUM, &salt);
        let wrapping = crypto::derive_wrapping_key(password, &salt, KdfParams::MINIMUM).unwrap();
        let cipher = crate::crypto::Cipher::new(&wrapping);
        let sealed = crypto::seal_with(&cipher, &header, master.to_bytes().as_ref()).unwrap();
        [header, sealed].concat()
    }

    #[test]
    fn wrap_unwrap_round_trip() {
        let master = MasterKey::generate().unwrap();
        let meta = meta();
        let file = KeyFile::wrap(&master, b"secret", KdfParams::MINIMUM, &meta).unwrap();
        let bytes = file.encode();
        let parsed = KeyFile::decode(&bytes).unwrap();
        assert_eq!(parsed, file);
        assert_eq!(parsed.encode(), bytes);
        let opened = parsed.unwrap_key(b"secret").unwrap();
        assert!(opened == master);
        assert_eq!(parsed.metadata(&master).unwrap(), Some(meta));
        let err = parsed.unwrap_key(b"wrong").err().unwrap();
        assert_eq!(err.kind(), ErrorKind::WrongPassword);
        let other = MasterKey::generate().unwrap();
        assert_eq!(
            parsed.metadata(&other).err().unwrap().kind(),
            ErrorKind::Corrupted
        );
    }

    #[test]
    fn metadata_length_is_padded() {
        let master = MasterKey::generate().unwrap();
        let short = KeyFile::wrap(&master, b"pw", KdfParams::MINIMUM, &meta()).unwrap();
        let mut long_meta = meta();
        long_meta.label = Some("x".repeat(60));
        let long = KeyFile::wrap(&master, b"pw", KdfParams::MINIMUM, &long_meta).unwrap();
        assert_eq!(short.encode().len(), long.encode().len());
    }

    #[test]
    fn version_1_files_still_open() {
        let master = MasterKey::generate().unwrap();
        let bytes = v1_file(&master, b"old");
        assert_eq!(bytes.len(), V1_LEN);
        let parsed = KeyFile::decode(&bytes).unwrap();
        assert_eq!(parsed.version, 1);
        assert_eq!(parsed.encode(), bytes);
        assert_eq!(
            *parsed.unwrap_key(b"old").unwrap().to_bytes(),
            *master.to_bytes()
        );
        assert_eq!(parsed.metadata(&master).unwrap(), None);
    }

    #[test]
    fn lowered_cost_is_detected() {
        let master = MasterKey::generate().unwrap();
        for mut bytes in [
            v1_file(&master, b"pw"),
            KeyFile::wrap(&master, b"pw", KdfParams::MINIMUM, &meta())
                .unwrap()
                .encode(),
        ] {
            // Raise the time cost field (offset 15): the header is authenticated, so the password fails.
            bytes[15] = 2;
            let parsed = KeyFile::decode(&bytes).unwrap();
            assert!(parsed.unwrap_key(b"pw").is_err());
        }
    }

    #[test]
    fn refuses_unknown_version_truncation_and_bad_keyrings() {
        let master = MasterKey::generate().unwrap();
        let mut bytes = KeyFile::wrap(&master, b"pw", KdfParams::MINIMUM, &meta())
            .unwrap()
            .encode();
        for cut in [0, 10, 60, 100, bytes.len() - 1] {
            assert!(KeyFile::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(KeyFile::decode(&longer).is_err());
        bytes[8] = 9;
        let err = KeyFile::decode(&bytes).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);

        let mut ring = encode_keyring(&master).to_vec();
        // Any epoch number reads; several must be strictly increasing.
        ring[34..38].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(decode_keyring(&ring).unwrap().epochs(), vec![3]);
        let rotated = master.with_new_epoch().unwrap();
        let mut two = encode_keyring(&rotated).to_vec();
        assert!(decode_keyring(&two).unwrap() == rotated);
        two[34 + 36..38 + 36].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            decode_keyring(&two).err().unwrap().kind(),
            ErrorKind::Corrupted
        );
        ring[32..34].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(
            decode_keyring(&ring).err().unwrap().kind(),
            ErrorKind::Corrupted
        );
    }

    #[test]
    fn rotated_keyring_round_trips_and_names_its_newest_epoch() {
        let master = MasterKey::generate().unwrap().with_new_epoch().unwrap();
        // One value: `meta()` stamps the current second, which may change between two calls.
        let meta = meta();
        let file = KeyFile::wrap(&master, b"pw", KdfParams::MINIMUM, &meta).unwrap();
        let parsed = KeyFile::decode(&file.encode()).unwrap();
        assert_eq!(parsed.epoch_hint(), 1);
        assert!(parsed.unwrap_key(b"pw").unwrap() == master);
        assert_eq!(parsed.metadata(&master).unwrap(), Some(meta));
        // A keyring from before the rotation cannot read metadata sealed under epoch 1.
        let old = MasterKey::from_bytes(&master.to_bytes());
        let e = parsed.metadata(&old).unwrap_err();
        assert!(e.to_string().contains("epoch 1"), "{e}");
    }

    #[test]
    fn the_largest_key_file_is_what_format_md_says() {
        assert_eq!(MAX_FILE_LEN, 41_137);
        let master =
            (1..MAX_EPOCHS).try_fold(MasterKey::generate().unwrap(), |k, _| k.with_new_epoch());
        let mut long = meta();
        long.label = Some("x".repeat(MAX_LABEL));
        let file = KeyFile::wrap(&master.unwrap(), b"pw", KdfParams::MINIMUM, &long).unwrap();
        assert!(file.encode().len() <= MAX_FILE_LEN);
    }

    #[test]
    fn labels_are_bounded() {
        assert!(KeyMetadata::new(Some("x".repeat(MAX_LABEL + 1))).is_err());
        assert!(KeyMetadata::new(Some("a\nb".into())).is_err());
    }
}
