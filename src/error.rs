//! The library's one public error type: a kind that callers act on, and a message that says what, where and what to do.

use std::fmt;
use std::path::PathBuf;

/// What went wrong, at the granularity a caller (the CLI, a script) acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No key file opened with the given password.
    WrongPassword,
    /// The location holds no repository (or is not one).
    NotARepository,
    /// Repository bytes failed authentication, decoding or a bound check.
    Corrupted,
    /// The storage does not hold an object that was asked for (never written, removed by a
    /// concurrent prune, or lost): [`Error::object`] names it. Damage, like `Corrupted`, unless the
    /// caller knows the object may have been removed meanwhile.
    NotFound,
    /// The storage failed (I/O on the repository, not on a source file).
    Backend,
    /// Reading a source file or directory failed.
    SourceIo,
    /// The caller asked for something impossible or unsafe (bad snapshot spec, non-empty target...).
    InvalidInput,
    /// An object has a version this build does not read.
    UnsupportedVersion,
    /// A dump command of a backup failed (start, exit status, signal, timeout, too little output),
    /// or a stream read from standard input gave too little: no snapshot was written.
    CommandFailed,
    /// Another process holds the lease this operation needs (a prune, repair or re-encryption runs):
    /// nothing was changed; run it again later.
    LeaseHeld,
    /// Anything else: I/O on restore targets, the local cache.
    Other,
}

/// The library error: a kind plus a lowercase message naming the object or path involved.
///
/// Causes (I/O errors, decoder failures) are folded into the message rather than kept as a
/// `source`, so that `{:#}` chains never print them twice.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// Raw details from a lower layer (an OpenDAL error with its context), for `-v`: the message says
    /// what failed in cairn's words, the detail what the layer below said.
    detail: Option<String>,
    /// The repository object involved, when one is (boxed: errors travel in every `Result`).
    object: Option<Box<ObjectRef>>,
    /// A storage failure that a later attempt may not meet (the endpoint unreachable, a timeout,
    /// a server error), as opposed to one it will meet again (refused credentials, a missing
    /// bucket).
    retryable: bool,
}

/// A repository object named in an error: its kind as FORMAT.md names it (`pack`, `index file`,
/// `snapshot`, ...) and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub name: String,
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            detail: None,
            object: None,
            retryable: false,
        }
    }

    /// The same error, marked as one a later attempt may not meet ([`Error::is_retryable`]).
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// Whether running the command again later may succeed: a storage failure of the transient
    /// kind (set by the storage layer after its own retries gave up).
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The object `name` of kind `kind` (as FORMAT.md names kinds) is not in the storage.
    pub fn not_found(kind: &str, name: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::NotFound, message);
        e.object = Some(Box::new(ObjectRef {
            kind: kind.to_string(),
            name: name.to_string(),
        }));
        e
    }

    /// The repository object this error is about, when it names one.
    pub fn object(&self) -> Option<&ObjectRef> {
        self.object.as_deref()
    }

    /// Whether the repository lacks, or holds bad bytes for, what was asked: `Corrupted` or
    /// `NotFound`. Readers that can use another copy, and reports that list damage, branch on this.
    pub fn is_damage(&self) -> bool {
        matches!(self.kind, ErrorKind::Corrupted | ErrorKind::NotFound)
    }

    /// The same error with raw details from the layer below (shown under `-v`).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Raw details from the layer below, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// Repository bytes that are wrong: `what` names the object and the problem.
    pub fn corrupted(what: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupted, what)
    }

    /// Input from the user that cannot be acted on.
    pub fn invalid_input(what: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, what)
    }

    /// An I/O failure on `path` while doing `what`, of the given kind.
    pub fn io(kind: ErrorKind, what: &str, path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        let path = path.into();
        Self::new(kind, format!("{what} {}: {err}", path.display()))
    }

    /// Prefix the message with context (`context: message`), keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<redb::Error> for Error {
    fn from(err: redb::Error) -> Self {
        Error::new(ErrorKind::Other, format!("local index cache: {err}"))
    }
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(err: $t) -> Self {
                Error::from(redb::Error::from(err))
            }
        }
    )*};
}
redb_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
