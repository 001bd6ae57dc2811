//! Resolving where the repository and cache are and what the password is, then opening the repository.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use cairn::backend::{self, Backend, BackendOptions, CountingBackend, Location, RequestCounter};
use cairn::crypto::KdfParams;
use cairn::format::config::Config;
use cairn::{Error, Repository};

use super::GlobalArgs;

/// Said whenever a repository is created.
pub const PASSWORD_WARNING: &str =
    "keep the password safe: losing it loses the data, unless you print a recovery key now \
     (cairn key export --paper) and keep it somewhere safe";

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

/// A location argument: a URL form when it is one, else a path (which need not be UTF-8).
pub fn parse_location(arg: &Path) -> Result<Location> {
    match arg.to_str() {
        Some(text) => Ok(Location::parse(text)?),
        None => Ok(Location::Local(arg.to_path_buf())),
    }
}

/// Backend options from `-o`, `--limit-upload` and a connection count.
pub fn backend_options(
    options: &[String],
    limit_upload: Option<&str>,
    connections: usize,
) -> Result<BackendOptions> {
    let mut out = BackendOptions::from_pairs(options)?;
    out.upload_limit = limit_upload
        .map(backend::location::parse_rate)
        .transpose()?;
    out.connections = connections;
    out.on_retry = Some(super::progress::on_retry());
    Ok(out)
}

/// The storage of the repository named by the global options.
pub fn repo_backend(global: &GlobalArgs) -> Result<Box<dyn Backend>> {
    let (path, _) = repo_location(global);
    let options = backend_options(
        &global.options,
        global.limit_upload.as_deref(),
        BackendOptions::default().connections,
    )?;
    let backend = open_backend(&parse_location(&path)?, &options, global.as_of)?;
    Ok(Box::new(CountingBackend::new(
        backend,
        global.requests.clone(),
    )))
}

/// The storage at `location`; with `as_of` (`--as-of`), read-only as it was at that time.
pub fn open_backend(
    location: &Location,
    options: &BackendOptions,
    as_of: Option<DateTime<Utc>>,
) -> Result<Box<dyn Backend>> {
    match as_of {
        None => Ok(backend::open(location, options)?),
        Some(time) => super::as_of::open(location, options, time),
    }
}

/// The cache root; with `--as-of`, that of the past state ([`super::as_of::cache_root`]).
pub fn cache_root(global: &GlobalArgs) -> PathBuf {
    let root = global.cache_dir.clone().unwrap_or_else(|| {
        dirs::cache_dir()
            .map(|d| d.join("cairn"))
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("cairn-cache-{}", nix::unistd::getuid()))
            })
    });
    match global.as_of {
        Some(time) => super::as_of::cache_root(&root, time),
        None => root,
    }
}

/// The password variables of cairn's environment, taken out of it once at start.
struct EnvPassword {
    password: Option<Zeroizing<Vec<u8>>>,
    file: Option<PathBuf>,
    command: Option<String>,
}

static ENV_PASSWORD: OnceLock<EnvPassword> = OnceLock::new();

/// Reads `CAIRN_PASSWORD` and `CAIRN_PASSWORD_FILE`, then removes every password variable from
/// cairn's own environment, so that no child process inherits one, not even those started by
/// libraries (the ssh of SFTP repositories). Call first thing in `main`, while cairn has a single
/// thread: changing the environment is not safe while other threads may read it.
pub fn take_password_environment() {
    ENV_PASSWORD.get_or_init(|| {
        let taken = EnvPassword {
            password: std::env::var_os("CAIRN_PASSWORD")
                .map(|p| Zeroizing::new(p.into_encoded_bytes())),
            file: std::env::var_os("CAIRN_PASSWORD_FILE").map(PathBuf::from),
            command: std::env::var("CAIRN_PASSWORD_COMMAND").ok(),
        };
        let names = std::env::vars_os().map(|(name, _)| name);
        for name in cairn::process::secret_variables(names) {
            std::env::remove_var(name);
        }
        taken
    });
}

/// The password, from the first source given: `--password-file` (or the plan's `password_file`),
/// `--password-command` (or the plan's `password_command`), `CAIRN_PASSWORD`,
/// `CAIRN_PASSWORD_FILE`, `CAIRN_PASSWORD_COMMAND`, else a terminal prompt
/// (asked twice when `confirm`). An option given explicitly wins over the environment, and a
/// password file that cannot be read is an error, never a reason to look elsewhere.
pub fn password(global: &GlobalArgs, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(file) = &global.password_file {
        return read_password_file(file);
    }
    if let Some(argv) = &global.password_command {
        return password_from_command(argv);
    }
    take_password_environment();
    let env = ENV_PASSWORD.get();
    if let Some(pw) = env.and_then(|e| e.password.as_ref()) {
        return Ok(pw.clone());
    }
    if let Some(file) = env.and_then(|e| e.file.as_ref()) {
        return read_password_file(file);
    }
    if let Some(line) = env.and_then(|e| e.command.as_ref()) {
        return password_from_command(&["sh".to_string(), "-c".to_string(), line.clone()]);
    }
    prompt_password(
        "repository password: ",
        confirm,
        "no password given: set CAIRN_PASSWORD, CAIRN_PASSWORD_FILE or CAIRN_PASSWORD_COMMAND, or use --password-file or --password-command",
    )
}

/// How another cairn process (PostgreSQL's `restore_command`, a drill's server) can get the
/// password this one got: the arguments to give it, or `None` when the password came from a
/// variable or the terminal, which cannot be handed on without writing it down.
pub fn password_source_args(global: &GlobalArgs) -> Option<Vec<String>> {
    if let Some(file) = &global.password_file {
        return Some(vec![
            "--password-file".into(),
            absolute(file).display().to_string(),
        ]);
    }
    if let Some(line) = &global.password_command_line {
        return Some(vec!["--password-command".into(), line.clone()]);
    }
    take_password_environment();
    let env = ENV_PASSWORD.get()?;
    if env.password.is_some() {
        return None;
    }
    if let Some(file) = &env.file {
        return Some(vec![
            "--password-file".into(),
            absolute(file).display().to_string(),
        ]);
    }
    env.command
        .as_ref()
        .map(|line| vec!["--password-command".into(), line.clone()])
}

/// `path` made absolute against the current directory.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A new password for a key file: the first line of `file`, else asked twice on the terminal.
pub fn new_password(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>> {
    let pw = match file {
        Some(f) => read_password_file(f)?,
        None => prompt_password(
            "new password: ",
            true,
            "no new password given: use --new-password-file FILE (first line), or run on a terminal",
        )?,
    };
    if pw.is_empty() {
        return Err(
            Error::invalid_input("an empty password is not allowed; nothing was written").into(),
        );
    }
    Ok(pw)
}

fn read_password_file(file: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let text = Zeroizing::new(std::fs::read(file).map_err(|e| {
        Error::invalid_input(format!(
            "cannot read the password file {}: {e}",
            file.display()
        ))
    })?);
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    Ok(Zeroizing::new(first.to_vec()))
}

fn prompt_password(prompt: &str, confirm: bool, no_terminal: &str) -> Result<Zeroizing<Vec<u8>>> {
    if !std::io::stderr().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
        return Err(Error::invalid_input(no_terminal).into());
    }
    let first = Zeroizing::new(
        rpassword::prompt_password(prompt)
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
                Error::invalid_input("the two passwords differ; nothing was written").into(),
            );
        }
    }
    Ok(first)
}

/// The first line a password command prints; it must exit 0.
fn password_from_command(argv: &[String]) -> Result<Zeroizing<Vec<u8>>> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::invalid_input("the password command is empty"))?;
    let output = cairn::process::command(program)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| {
            Error::invalid_input(format!("cannot run the password command {program:?}: {e}"))
        })?;
    let text = Zeroizing::new(output.stdout);
    if !output.status.success() {
        return Err(Error::invalid_input(format!(
            "the password command {program:?} failed ({}); no password",
            output.status
        ))
        .into());
    }
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    if first.is_empty() {
        return Err(Error::invalid_input(format!(
            "the password command {program:?} printed no password"
        ))
        .into());
    }
    Ok(Zeroizing::new(first.to_vec()))
}

/// Creates a repository at the location named by the global options.
pub fn init_repository(
    global: &GlobalArgs,
    config: Config,
    lock: Option<cairn::backend::LockSettings>,
) -> Result<Repository> {
    let backend = repo_backend(global)?;
    let location = backend.location();
    let pw = password(global, true)?;
    if pw.is_empty() {
        return Err(Error::invalid_input("an empty password is not allowed").into());
    }
    let repo = Repository::init_locked(
        backend,
        &pw,
        KdfParams::default(),
        config,
        &cache_root(global),
        lock.as_ref(),
    )
    .with_context(|| format!("cannot create a repository at {location}"))?;
    Ok(repo)
}

/// Opens the repository named by the global options.
pub fn open_repository(global: &GlobalArgs) -> Result<Repository> {
    let backend = repo_backend(global)?;
    let pw = password(global, false)?;
    Ok(Repository::open_hinted(
        backend,
        &pw,
        &cache_root(global),
        global.key_hint.as_deref(),
    )?)
}

/// Opens the repository named by the global options, with the counter of its requests.
pub fn open_counted(global: &GlobalArgs) -> Result<(Repository, RequestCounter)> {
    Ok((open_repository(global)?, global.requests.clone()))
}
