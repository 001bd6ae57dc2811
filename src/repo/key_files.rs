//! The key files of a repository as they are listed (FORMAT.md §4): which ones decode, which one
//! the password in use opened, and why any other cannot open it. `check` and `key list` read this;
//! the key commands (`ops::keys`) change the files.

use crate::backend::ObjectKind;
use crate::crypto::KdfParams;
use crate::error::Result;
use crate::format::key::{KeyFile, KeyMetadata};
use crate::id::KeyId;
use crate::repo::Repository;

/// One key file as `key list` shows it.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// The key file's name (hex of its hash).
    pub name: String,
    /// Whether the password in use opened this file.
    pub current: bool,
    /// Format version and KDF parameters; `None` when the file does not decode.
    pub file: Option<(u16, KdfParams)>,
    /// The newest data-key epoch of its keyring as the file states it in the clear (0 for
    /// version 1); `None` when the file does not decode.
    pub epoch: Option<u32>,
    /// Metadata (version 2 files whose metadata opens with this repository's key).
    pub metadata: Option<KeyMetadata>,
    /// Why the file cannot open the repository, if it cannot (damaged, foreign, unknown version).
    pub problem: Option<String>,
}

impl KeyInfo {
    /// Whether this file can open the repository as far as can be told without its password: it
    /// decodes, and (version 2) its metadata authenticates under this repository's key. A version 1
    /// file carries nothing to check it against, so one that decodes counts as usable. The file
    /// the password in use opened is usable whatever its metadata says: it just opened.
    pub fn usable(&self) -> bool {
        self.current || self.problem.is_none()
    }
}

/// Every key file, in listing order (by name).
///
/// # Errors
/// When the storage cannot list or read the key files.
pub fn list_keys(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut names: Vec<String> = repo
        .backend()
        .list(ObjectKind::Key)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        // A key file too large to be one (§3) is listed as unusable, not read.
        let (bytes, read_problem) = match repo.backend().read(ObjectKind::Key, &name) {
            Ok(bytes) => (bytes, None),
            Err(e) if e.is_damage() => (Vec::new(), Some(e.to_string())),
            Err(e) => return Err(e),
        };
        let current = repo.opened_key() == Some(name.as_str());
        let mut info = KeyInfo {
            name,
            current,
            file: None,
            epoch: None,
            metadata: None,
            problem: None,
        };
        match KeyFile::decode(&bytes) {
            Err(_) if read_problem.is_some() => info.problem = read_problem,
            Err(e) => info.problem = Some(e.to_string()),
            Ok(file) => {
                info.file = Some((file.version, file.params));
                info.epoch = Some(file.epoch_hint());
                match file.metadata(repo.key()) {
                    Ok(m) => info.metadata = m,
                    Err(e) => info.problem = Some(e.to_string()),
                }
            }
        }
        if KeyId::hash_of(&bytes).to_hex() != info.name && info.problem.is_none() {
            info.problem = Some("its content does not match its name (damaged)".into());
        }
        out.push(info);
    }
    Ok(out)
}
