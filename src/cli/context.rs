//! Resolving where the repository and cache are and what the password is, then opening the repository.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use zeroize::Zeroizing;

use cairn::backend::{CountingBackend, LocalBackend, ReadCounter};
use cairn::crypto::KdfParams;
use cairn::format::config::Config;
use cairn::{Error, Repository};

use super::GlobalArgs;

/// Said whenever a repository is created.
pub const PASSWORD_WARNING: &str =
    "keep the password safe: losing it loses the data, nobody can recover it";

/// The default repository location: `<data dir>/cairn/repository`.
pub fn default_repo() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from(".local/share"))
        .join("cairn")
        .join("repository")
}

/// The repository location, and whether it is the implicit default.
pub fn repo_location(global: &GlobalArgs) -> (PathBuf, bool) {
    match &global.repo {
        Some(r) => (r.clone(), false),
        None => (default_repo(), true),
    }
}

/// The cache root.
pub fn cache_root(global: &GlobalArgs) -> PathBuf {
    global.cache_dir.clone().unwrap_or_else(|| {
        dirs::cache_dir()
            .map(|d| d.join("cairn"))
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("cairn-cache-{}", nix::unistd::getuid()))
            })
    })
}

/// The password from the environment, a file, or a terminal prompt (asked twice when `confirm`).
pub fn password(global: &GlobalArgs, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    if let Ok(pw) = std::env::var("CAIRN_PASSWORD") {
        return Ok(Zeroizing::new(pw.into_bytes()));
    }
    if let Some(file) = &global.password_file {
        let text = Zeroizing::new(std::fs::read(file).map_err(|e| {
            Error::invalid_input(format!(
                "cannot read the password file {}: {e}",
                file.display()
            ))
        })?);
        let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let first = first.strip_suffix(b"\r").unwrap_or(first);
        return Ok(Zeroizing::new(first.to_vec()));
    }
    if !std::io::stderr().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
        return Err(Error::invalid_input(
            "no password given: set CAIRN_PASSWORD or CAIRN_PASSWORD_FILE, or use --password-file",
        )
        .into());
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("repository password: ")
            .context("cannot read the password from the terminal")?
            .into_bytes(),
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("repeat the password: ")
                .context("cannot read the password from the terminal")?
                .into_bytes(),
        );
        if *first != *again {
            return Err(
                Error::invalid_input("the two passwords differ; nothing was created").into(),
            );
        }
    }
    Ok(first)
}

/// Creates a repository at `path`.
pub fn init_repository(global: &GlobalArgs, path: PathBuf, config: Config) -> Result<Repository> {
    let pw = password(global, true)?;
    if pw.is_empty() {
        return Err(Error::invalid_input("an empty password is not allowed").into());
    }
    let repo = Repository::init(
        Box::new(LocalBackend::new(path.clone())),
        &pw,
        KdfParams::default(),
        config,
        &cache_root(global),
    )
    .with_context(|| format!("cannot create a repository at {}", path.display()))?;
    Ok(repo)
}

/// Opens the repository named by the global options.
pub fn open_repository(global: &GlobalArgs) -> Result<Repository> {
    let (path, _) = repo_location(global);
    let pw = password(global, false)?;
    Ok(Repository::open(
        Box::new(LocalBackend::new(path)),
        &pw,
        &cache_root(global),
    )?)
}

/// Opens the repository named by the global options, counting the bytes read from storage.
pub fn open_counted(global: &GlobalArgs) -> Result<(Repository, ReadCounter)> {
    let (path, _) = repo_location(global);
    let pw = password(global, false)?;
    let (backend, counter) = CountingBackend::new(Box::new(LocalBackend::new(path)));
    let repo = Repository::open(Box::new(backend), &pw, &cache_root(global))?;
    Ok((repo, counter))
}
