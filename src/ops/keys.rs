//! Key management (FORMAT.md §4, §15): list, add, remove and re-password the key files of a
//! repository, rotate its data key, and recover a repository whose passwords are all lost from
//! its recovery key.
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
use crate::repo::key_files::{list_keys, KeyInfo};
use crate::Repository;

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

/// What [`rotate`] did.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The key file of the current password whose keyring holds the new epoch.
    pub key: String,
    /// The epoch new objects are sealed with from now on.
    pub epoch: u32,
    /// Whether this run finished an interrupted rotation (no new epoch was made).
    pub resumed: bool,
    /// Key files of other passwords that were removed.
    pub removed_others: Vec<String>,
    /// Older key files of the current password that were removed.
    pub removed_own: Vec<String>,
}

/// Gives the repository a new data-key epoch (FORMAT.md §15, `key rotate`): writes a key file for
/// `password` (the one that opened `repo`) whose keyring adds a fresh data key, then removes the
/// other key files (only with `remove_other_keys`), then the old file of this password.
///
/// When `repo` was opened by a file of a newer epoch than some other file that `password` also
/// opens, an earlier rotation was interrupted after its first step: this run finishes it instead of
/// making another epoch.
///
/// # Errors
/// `InvalidInput` when the repository was not opened with a password, or other key files exist
/// and `remove_other_keys` is false (the message lists them; nothing is written); a storage failure
/// (rerun: the repository opens with `password` at every step).
pub fn rotate(
    repo: &Repository,
    password: &[u8],
    params: KdfParams,
    remove_other_keys: bool,
) -> Result<Rotation> {
    let current = repo.opened_key().ok_or_else(|| {
        Error::invalid_input(
            "the repository was not opened with a password; `key rotate` rewrites the key file of \
             the password in use: open it with one",
        )
    })?;
    let keys = list_keys(repo)?;
    let epoch = repo.key().newest_epoch();
    let mut own = Vec::new();
    let mut others = Vec::new();
    for k in keys.iter().filter(|k| k.name != current) {
        // Only a file of an older epoch can be this password's leftover; trying the password on
        // it costs one KDF run.
        if k.epoch.is_some_and(|e| e < epoch) && opens_with(repo, &k.name, password) {
            own.push(k);
        } else {
            others.push(k);
        }
    }
    if !others.is_empty() && !remove_other_keys {
        let list: Vec<String> = others.iter().map(|k| describe(k)).collect();
        return Err(Error::invalid_input(format!(
            "other key files exist: {}. Rotating leaves them able to read everything written before \
             the rotation only if they are removed; give --remove-other-keys to remove them (add new \
             passwords afterwards with `cairn key add`), or remove them first with `cairn key remove`. \
             Nothing was written",
            list.join("; ")
        )));
    }
    let resumed = !own.is_empty();
    let (key, epoch) = if resumed {
        (current.to_string(), epoch)
    } else {
        let label = keys
            .iter()
            .find(|k| k.name == current)
            .and_then(|k| k.metadata.as_ref())
            .and_then(|m| m.label.clone());
        let rotated = repo.key().with_new_epoch()?;
        let bytes = KeyFile::wrap(&rotated, password, params, &KeyMetadata::new(label)?)?.encode();
        let name = KeyId::hash_of(&bytes).to_hex();
        repo.backend().write(ObjectKind::Key, &name, &bytes)?;
        (name, rotated.newest_epoch())
    };
    // Step 2: the others first, this password's old file last, so that until the end the
    // password opens the new file (newest epoch first, §15) and a rerun finishes the job.
    let mut removed_others = Vec::new();
    for k in &others {
        repo.backend().remove(ObjectKind::Key, &k.name)?;
        removed_others.push(k.name.clone());
    }
    let mut removed_own = Vec::new();
    let stale = own.iter().map(|k| k.name.as_str());
    let stale: Vec<&str> = if resumed {
        stale.collect()
    } else {
        stale.chain(std::iter::once(current)).collect()
    };
    for name in stale {
        repo.backend().remove(ObjectKind::Key, name)?;
        removed_own.push(name.to_string());
    }
    Ok(Rotation {
        key,
        epoch,
        resumed,
        removed_others,
        removed_own,
    })
}

/// Whether `password` opens the key file `name` (a damaged or absent file does not).
fn opens_with(repo: &Repository, name: &str, password: &[u8]) -> bool {
    repo.backend()
        .read(ObjectKind::Key, name)
        .and_then(|bytes| KeyFile::decode(&bytes))
        // Only within what an opening runs unasked (§4): a planted file of absurd parameters must
        // not make a rotation pay for them.
        .is_ok_and(|file| file.params.runs_unnamed() && file.unwrap_key(password).is_ok())
}

/// `id (label, host, user, created)` of a key file, for messages.
fn describe(k: &KeyInfo) -> String {
    match &k.metadata {
        Some(m) => format!(
            "{} (label {}, {}@{}, created {})",
            short(&k.name),
            m.label.as_deref().unwrap_or("-"),
            m.user,
            m.host,
            m.created
        ),
        None => match &k.problem {
            Some(p) => format!("{} (unusable: {p})", short(&k.name)),
            None => format!("{} (version 1, no metadata)", short(&k.name)),
        },
    }
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
    let key = recovery.key.clone();
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
