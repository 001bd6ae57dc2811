//! Exit codes, the contract with scripts (README, "Exit codes"): what the CLI exits with, and
//! what the plan's state file records of each step, which `status` judges.

/// Success.
pub const OK: i32 = 0;
/// Any failure not listed below.
pub const ERROR: i32 = 1;
/// Invalid usage or input: bad flags, unknown snapshot, non-empty restore target.
pub const USAGE: i32 = 2;
/// Backup saved, but some sources could not be read.
pub const PARTIAL: i32 = 3;
/// Repository data is damaged: corrupt, tampered or missing objects.
pub const DAMAGED: i32 = 4;
/// A dump command of a backup failed: no snapshot was written.
pub const COMMAND_FAILED: i32 = 5;
/// An object has a format version this cairn does not read: a newer cairn wrote it.
pub const UNSUPPORTED_VERSION: i32 = 6;
/// No repository at the given location.
pub const NO_REPOSITORY: i32 = 10;
/// Another process holds the lease the command needs (a prune, repair or re-encryption runs):
/// nothing was changed; run it again later.
pub const LEASE_HELD: i32 = 11;
/// The password opens no key of the repository.
pub const WRONG_PASSWORD: i32 = 12;
/// `wal fetch` only: the repository does not hold the WAL file (PostgreSQL's `restore_command`
/// convention for "not archived", which ends recovery's reading of the archive).
pub const WAL_NOT_ARCHIVED: i32 = 1;
/// `wal fetch` only: any failure but "not archived". PostgreSQL stops recovery on an exit code
/// above 125 instead of taking the file for absent and promoting early.
pub const WAL_FETCH_FAILED: i32 = 126;

/// The exit code of a command that failed with an error of `kind`.
pub fn for_kind(kind: crate::ErrorKind) -> i32 {
    use crate::ErrorKind as K;
    match kind {
        K::WrongPassword => WRONG_PASSWORD,
        K::NotARepository => NO_REPOSITORY,
        K::Corrupted | K::NotFound => DAMAGED,
        K::UnsupportedVersion => UNSUPPORTED_VERSION,
        K::InvalidInput => USAGE,
        K::CommandFailed => COMMAND_FAILED,
        K::LeaseHeld => LEASE_HELD,
        K::Backend | K::SourceIo | K::Other => ERROR,
    }
}
