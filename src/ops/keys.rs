//! Key management (FORMAT.md §4): list, add, remove and re-password the key files of a repository,
//! and recover a repository whose passwords are all lost from its recovery key.
//!
//! Every change writes the new key file before it removes anything, and never removes the last
//! key file that can open the repository.

use std::path::Path;

use crate::backend::{Backend, ObjectKind};
use crate::crypto::KdfParams;
use crate::error::{Error, Result};
use crate::format::key::{KeyFile, KeyMetadata};
use crate::format::paper::RecoveryKey;
use crate::id::KeyId;
use crate::Repository;

/// One key file as `key list` shows it.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// The key file's name (hex of its hash).
    pub name: String,
    /// Whether the password in use opened this file.
    pub current: bool,
    /// Format version and KDF parameters; `None` when the file does not decode.
    pub file: Option<(u16, KdfParams)>,
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
        let bytes = repo.backend().read(ObjectKind::Key, &name)?;
        let current = repo.opened_key() == Some(name.as_str());
        let mut info = KeyInfo {
            name,
            current,
            file: None,
            metadata: None,
            problem: None,
        };
        match KeyFile::decode(&bytes) {
            Err(e) => info.problem = Some(e.to_string()),
            Ok(file) => {
                info.file = Some((file.version, file.params));
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

/// Writes a new key file wrapping the repository's keys under `password`; returns its name.
///
/// # Errors
/// `InvalidInput` for an empty password or a bad label; a storage failure.
pub fn add_key(
    repo: &Repository,
    password: &[u8],
    params: KdfParams,
    metadata: &KeyMetadata,
) -> Result<String> {
    if password.is_empty() {
        return Err(Error::invalid_input(
            "an empty password is not allowed; nothing was written",
        ));
    }
    let bytes = KeyFile::wrap(repo.key(), password, params, metadata)?.encode();
    let name = KeyId::hash_of(&bytes).to_hex();
    repo.backend().write(ObjectKind::Key, &name, &bytes)?;
    Ok(name)
}

/// The full name of the key file whose name starts with `prefix`.
///
/// # Errors
/// `InvalidInput` when no key file or several match.
pub fn find_key(keys: &[KeyInfo], prefix: &str) -> Result<String> {
    let prefix = prefix.to_ascii_lowercase();
    let matches: Vec<&KeyInfo> = keys
        .iter()
        .filter(|k| k.name.starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [one] if !prefix.is_empty() => Ok(one.name.clone()),
        [] => Err(Error::invalid_input(format!(
            "no key file matches {prefix:?}; `cairn key list` shows the ids"
        ))),
        _ => Err(Error::invalid_input(format!(
            "{} key files match {prefix:?}; give more characters of the id",
            matches.len()
        ))),
    }
}

/// What [`remove_key`] did.
#[derive(Clone, Debug)]
pub struct Removed {
    /// The removed file.
    pub name: String,
    /// Whether it was the file the password in use opened.
    pub was_current: bool,
    /// Usable key files that remain.
    pub remaining: Vec<String>,
}

/// Removes the key file `name`, unless no other usable key file would remain.
///
/// # Errors
/// `InvalidInput` when `name` is the last usable key file (removing it would lock everyone out)
/// or does not exist; a storage failure.
pub fn remove_key(repo: &Repository, name: &str) -> Result<Removed> {
    let keys = list_keys(repo)?;
    let target = keys
        .iter()
        .find(|k| k.name == name)
        .ok_or_else(|| Error::invalid_input(format!("there is no key file {name}")))?;
    let remaining: Vec<String> = keys
        .iter()
        .filter(|k| k.name != name && k.usable())
        .map(|k| k.name.clone())
        .collect();
    if target.usable() && remaining.is_empty() {
        return Err(Error::invalid_input(format!(
            "key {} is the last usable key of the repository: removing it would lock everyone out. \
             Add another first (`cairn key add`), or change its password with `cairn key passwd`",
            short(name)
        )));
    }
    repo.backend().remove(ObjectKind::Key, name)?;
    Ok(Removed {
        name: name.to_string(),
        was_current: target.current,
        remaining,
    })
}

/// Replaces the key file the password opened with one for `new_password`, keeping its label
/// unless `label` is given: the new file is written first, so a crash leaves two keys, never none.
/// Returns (new name, old name).
///
/// # Errors
/// `InvalidInput` when the repository was not opened by a password or the new password is empty.
pub fn change_password(
    repo: &Repository,
    new_password: &[u8],
    params: KdfParams,
    label: Option<String>,
) -> Result<(String, String)> {
    let old = repo.opened_key().ok_or_else(|| {
        Error::invalid_input(
            "the repository was not opened with a password; use `cairn key add` to give it one",
        )
    })?;
    let label = match label {
        Some(l) => Some(l),
        None => list_keys(repo)?
            .into_iter()
            .find(|k| k.name == old)
            .and_then(|k| k.metadata)
            .and_then(|m| m.label),
    };
    let new = add_key(repo, new_password, params, &KeyMetadata::new(label)?)?;
    repo.backend().remove(ObjectKind::Key, old)?;
    Ok((new, old.to_string()))
}

/// The recovery key of an open repository (FORMAT.md §4, Recovery key).
///
/// # Errors
/// When the config's repository id is malformed.
pub fn recovery_key(repo: &Repository) -> Result<RecoveryKey> {
    RecoveryKey::new(&repo.config().repo_id, repo.key())
}

/// Opens the repository at `backend` with a recovery key, to give it a new password with
/// [`add_key`] when every password is lost.
///
/// # Errors
/// `InvalidInput` when the recovery key belongs to another repository; `NotARepository` when
/// there is none.
pub fn open_with_recovery_key(
    backend: Box<dyn Backend>,
    recovery: &RecoveryKey,
    cache_root: &Path,
) -> Result<Repository> {
    let location = backend.location();
    let prefix = hex::encode(recovery.repo_prefix);
    let key = crate::crypto::MasterKey::from_bytes(&recovery.key.to_bytes());
    let repo = Repository::open_with_key(backend, key, cache_root)
        .map_err(|e| e.context(format!("recovery key of repository {prefix}")))?;
    if !recovery.belongs_to(&repo.config().repo_id) {
        // The keys opened the config, so only the printed prefix is off; refuse all the same.
        return Err(Error::invalid_input(format!(
            "the recovery key names repository {prefix} but {location} is {}; nothing was written",
            short(&repo.config().repo_id)
        )));
    }
    Ok(repo)
}

/// The first 8 characters of an id, as the CLI shows it.
pub fn short(name: &str) -> &str {
    name.get(..8).unwrap_or(name)
}
