//! Key files (FORMAT.md §4): the master key wrapped under one password through Argon2id.

use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;

use crate::crypto::{self, KdfParams, MasterKey, MASTER_KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::format::wire::{read_header, Reader, Writer};

/// Magic of a key file.
pub const MAGIC: &[u8; 8] = b"CAIRNKEY";
/// Version written.
pub const VERSION: u16 = 1;
const KDF_ARGON2ID: u8 = 1;
const SALT_LEN: usize = 32;
/// Offset of the nonce: everything before it is the authenticated header.
const HEADER_LEN: usize = 8 + 2 + 1 + 4 * 3 + SALT_LEN;
/// Total length of a version 1 key file.
pub const KEY_FILE_LEN: usize = HEADER_LEN + NONCE_LEN + MASTER_KEY_LEN + TAG_LEN;

/// A parsed key file: KDF parameters, salt, and the sealed master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFile {
    /// Argon2id costs.
    pub params: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// nonce || sealed master key || tag.
    pub sealed_key: Vec<u8>,
}

impl KeyFile {
    /// Wraps `master` under `password`.
    ///
    /// # Errors
    /// When randomness is unavailable or `params` are out of bounds.
    pub fn wrap(master: &MasterKey, password: &[u8], params: KdfParams) -> Result<Self> {
        let salt = crypto::random_array::<SALT_LEN>()?;
        let header = encode_header(params, &salt);
        let wrapping = crypto::derive_wrapping_key(password, &salt, params)?;
        let cipher = XChaCha20Poly1305::new(wrapping.as_ref().into());
        let sealed_key = crypto::seal_with(&cipher, &header, master.to_bytes().as_ref())?;
        Ok(KeyFile {
            params,
            salt,
            sealed_key,
        })
    }

    /// The master key, if `password` is the one this file was wrapped with.
    ///
    /// # Errors
    /// `WrongPassword` when authentication fails; `Corrupted` for bad parameters.
    pub fn unwrap_key(&self, password: &[u8]) -> Result<MasterKey> {
        let header = encode_header(self.params, &self.salt);
        let wrapping = crypto::derive_wrapping_key(password, &self.salt, self.params)?;
        let cipher = XChaCha20Poly1305::new(wrapping.as_ref().into());
        let plain = zeroize::Zeroizing::new(
            crypto::open_with(&cipher, &header, &self.sealed_key, "key file")
                .map_err(|_| Error::new(ErrorKind::WrongPassword, "wrong password"))?,
        );
        let bytes: [u8; MASTER_KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| Error::corrupted("key file: master key has the wrong length"))?;
        let key = MasterKey::from_bytes(&bytes);
        Ok(key)
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(KEY_FILE_LEN);
        w.bytes(&encode_header(self.params, &self.salt))
            .bytes(&self.sealed_key);
        w.into_bytes()
    }

    /// Parses a key file, checking its parameters before anything runs.
    ///
    /// # Errors
    /// When the bytes are not a version 1 key file or hold absurd parameters.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "key file");
        read_header(&mut r, MAGIC, &[VERSION])?;
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
        let sealed_key = r.take(NONCE_LEN + MASTER_KEY_LEN + TAG_LEN)?.to_vec();
        r.finish()?;
        Ok(KeyFile {
            params,
            salt,
            sealed_key,
        })
    }
}

fn encode_header(params: KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut w = Writer::with_capacity(HEADER_LEN);
    w.bytes(MAGIC)
        .u16(VERSION)
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

    #[test]
    fn wrap_unwrap_round_trip() {
        let master = MasterKey::generate().unwrap();
        let file = KeyFile::wrap(&master, b"secret", KdfParams::MINIMUM).unwrap();
        let bytes = file.encode();
        assert_eq!(bytes.len(), KEY_FILE_LEN);
        let parsed = KeyFile::decode(&bytes).unwrap();
        assert_eq!(parsed, file);
        let opened = parsed.unwrap_key(b"secret").unwrap();
        assert_eq!(*opened.to_bytes(), *master.to_bytes());
        let err = parsed.unwrap_key(b"wrong").err().unwrap();
        assert_eq!(err.kind(), ErrorKind::WrongPassword);
    }

    #[test]
    fn lowered_cost_is_detected() {
        let master = MasterKey::generate().unwrap();
        let mut bytes = KeyFile::wrap(&master, b"pw", KdfParams::MINIMUM)
            .unwrap()
            .encode();
        // Raise the time cost field (offset 15): the header is authenticated, so the password fails.
        bytes[15] = 2;
        let parsed = KeyFile::decode(&bytes).unwrap();
        assert!(parsed.unwrap_key(b"pw").is_err());
    }

    #[test]
    fn refuses_unknown_version_and_truncation() {
        let master = MasterKey::generate().unwrap();
        let mut bytes = KeyFile::wrap(&master, b"pw", KdfParams::MINIMUM)
            .unwrap()
            .encode();
        assert!(KeyFile::decode(&bytes[..100]).is_err());
        bytes[8] = 9;
        let err = KeyFile::decode(&bytes).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
    }
}
