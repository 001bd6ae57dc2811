//! Typed 32-byte ids (blobs, packs, index files, snapshots, keys) so that one kind is never passed for another.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id as lowercase hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex characters, for display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// Parse 64 hex characters.
            ///
            /// # Errors
            /// When `s` is not exactly 64 hex characters.
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|_| {
                    Error::invalid_input(format!(
                        "{s:?} is not a {} (64 hex characters)",
                        stringify!($name)
                    ))
                })?;
                Ok($name(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::from_hex(s)
            }
        }
    };
}

define_id!(
    /// A blob: keyed BLAKE3 of its plaintext (data chunk or tree).
    BlobId
);
define_id!(
    /// A pack file: unkeyed BLAKE3 of its bytes.
    PackId
);
define_id!(
    /// An index file: unkeyed BLAKE3 of its bytes.
    IndexId
);
define_id!(
    /// A snapshot file: unkeyed BLAKE3 of its bytes.
    SnapshotId
);
define_id!(
    /// A key file: unkeyed BLAKE3 of its bytes.
    KeyId
);
define_id!(
    /// A WAL record: unkeyed BLAKE3 of its bytes.
    WalRecordId
);

/// Storage objects are named by the unkeyed BLAKE3 of their bytes (FORMAT.md §3). Blob ids are
/// keyed (`MasterKey::blob_id`), so `BlobId` deliberately has no `hash_of`.
macro_rules! content_named {
    ($($name:ident),*) => {$(
        impl $name {
            /// The name of an object with these bytes: unkeyed BLAKE3.
            pub fn hash_of(bytes: &[u8]) -> Self {
                $name(*blake3::hash(bytes).as_bytes())
            }
        }
    )*};
}
content_named!(PackId, IndexId, SnapshotId, KeyId, WalRecordId);

/// Tree blobs are blobs; the alias documents intent where a tree is expected.
pub type TreeId = BlobId;

/// The type of a blob, bound into its seal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// An encoded directory.
    Tree,
}

impl BlobType {
    /// The byte written for this type (FORMAT.md §6).
    pub fn to_byte(self) -> u8 {
        match self {
            BlobType::Data => 1,
            BlobType::Tree => 2,
        }
    }

    /// The type for a byte read from the repository.
    ///
    /// # Errors
    /// When the byte names no blob type.
    pub fn from_byte(b: u8) -> Result<Self> {
        match b {
            1 => Ok(BlobType::Data),
            2 => Ok(BlobType::Tree),
            other => Err(Error::corrupted(format!("unknown blob type {other}"))),
        }
    }

    /// The largest plaintext a blob of this type may have (FORMAT.md §6).
    pub fn max_raw_len(self) -> u32 {
        match self {
            BlobType::Data => 16 << 20,
            BlobType::Tree => 256 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = PackId::hash_of(b"x");
        assert_eq!(PackId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.short().len(), 8);
        assert!(BlobId::from_hex("zz").is_err());
    }
}
