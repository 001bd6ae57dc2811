//! Leases (FORMAT.md §12): a running backup or prune announces itself with an expiring object it refreshes.
//!
//! A lease is never a lock that can go stale forever: a process that dies stops refreshing, and its lease
//! stops counting once it has expired. Owns writing, refreshing, listing and releasing lease objects.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};

use crate::backend::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use crate::format::lifecycle::{Lease, LeaseKind};
use crate::id::KeyId;
use crate::repo::Repository;

/// How long a lease lasts without a refresh.
pub const LEASE_TTL: Duration = Duration::minutes(10);

/// How often a held lease is refreshed (a quarter of its life, so three refreshes may fail in a row).
const REFRESH_EVERY: StdDuration = StdDuration::from_secs(150);

/// A lease this process holds.
pub struct HeldLease {
    state: Mutex<(String, Lease)>,
}

/// A lease found in the repository.
#[derive(Clone, Debug)]
pub struct FoundLease {
    /// Object name.
    pub name: String,
    /// Content.
    pub lease: Lease,
}

impl FoundLease {
    /// Whether it still counts at `now`, allowing `skew` for the holder's clock.
    pub fn is_live(&self, now: DateTime<Utc>, skew: Duration) -> bool {
        self.lease.expiry_time() + skew > now
    }

    /// `backup on host pid 123 since <time>` for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} on {} pid {} since {} (lease expires {})",
            match self.lease.kind {
                LeaseKind::Backup => "backup",
                LeaseKind::Prune => "prune",
            },
            self.lease.host,
            self.lease.pid,
            self.lease.start,
            self.lease.expires
        )
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn write_lease(repo: &Repository, lease: &Lease) -> Result<String> {
    let bytes = lease.encode(repo.key())?;
    let name = KeyId::hash_of(&bytes).to_hex();
    repo.backend().write(ObjectKind::Lease, &name, &bytes)?;
    Ok(name)
}

impl HeldLease {
    /// Writes a new lease of `kind` that starts now.
    ///
    /// # Errors
    /// When the write fails or randomness is unavailable.
    pub fn acquire(repo: &Repository, kind: LeaseKind) -> Result<Self> {
        let start = Utc::now();
        let lease = Lease {
            kind,
            host: hostname(),
            pid: std::process::id(),
            start: start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            expires: (start + LEASE_TTL).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            token: hex::encode(crate::crypto::random_array::<16>()?),
        };
        let name = write_lease(repo, &lease)?;
        Ok(HeldLease {
            state: Mutex::new((name, lease)),
        })
    }

    /// A copy of the current lease and its object name.
    pub fn current(&self) -> (String, Lease) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Extends the lease: writes the new object before removing the old, so one is always visible.
    ///
    /// # Errors
    /// When the write fails.
    pub fn refresh(&self, repo: &Repository) -> Result<()> {
        let (old_name, mut lease) = self.current();
        lease.expires =
            (Utc::now() + LEASE_TTL).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let name = write_lease(repo, &lease)?;
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (name, lease);
        repo.backend().remove(ObjectKind::Lease, &old_name)
    }

    /// Fails when the lease has lapsed: others may have acted as if this process were gone.
    ///
    /// # Errors
    /// `Other` naming the expiry.
    pub fn ensure_valid(&self) -> Result<()> {
        let (_, lease) = self.current();
        if lease.expiry_time() <= Utc::now() {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "this process's lease expired at {} (it could not be refreshed in time); a prune may have deleted data it relied on, so it stops here: run it again",
                    lease.expires
                ),
            ));
        }
        Ok(())
    }

    /// Removes the lease object.
    ///
    /// # Errors
    /// When the removal fails.
    pub fn release(self, repo: &Repository) -> Result<()> {
        let (name, _) = self.current();
        repo.backend().remove(ObjectKind::Lease, &name)
    }

    /// Runs `work` while a thread refreshes the lease; releases the lease afterwards, whatever the outcome.
    ///
    /// # Errors
    /// `work`'s error, or the release's.
    pub fn hold_while<T>(
        self,
        repo: &Repository,
        work: impl FnOnce(&HeldLease) -> Result<T>,
    ) -> Result<T> {
        let (stop, stopped) = mpsc::channel::<()>();
        let held = &self;
        let result = std::thread::scope(|s| {
            s.spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH_EVERY) {
                    // A failed refresh is retried; ensure_valid catches a lease that lapsed meanwhile.
                    let _ = held.refresh(repo);
                }
            });
            let result = work(&self);
            let _ = stop.send(());
            result
        });
        let released = self.release(repo);
        let value = result?;
        released?;
        Ok(value)
    }
}

/// Every lease object that decodes; damaged ones are skipped (they must never block anything forever).
///
/// # Errors
/// When the storage cannot be listed.
pub fn list(repo: &Repository) -> Result<Vec<FoundLease>> {
    let mut out = Vec::new();
    for (name, _) in repo.backend().list(ObjectKind::Lease)? {
        // Gone between list and read (refreshed or released): not an error.
        let Ok(bytes) = repo.backend().read(ObjectKind::Lease, &name) else {
            continue;
        };
        if let Ok(lease) = Lease::decode(repo.key(), &bytes) {
            out.push(FoundLease { name, lease });
        }
    }
    Ok(out)
}

/// Acquires the prune lease: at most one prune (or repair) acts on a repository at a time.
///
/// Written first, then compared: of two prunes that start together, the one with the later start
/// (or larger name) steps back; both stepping back is harmless.
///
/// # Errors
/// `InvalidInput` naming the other prune when one holds a live lease; backend errors.
pub fn acquire_exclusive(repo: &Repository, skew: Duration) -> Result<HeldLease> {
    let held = HeldLease::acquire(repo, LeaseKind::Prune)?;
    let (my_name, mine) = held.current();
    let now = Utc::now();
    let other = list(repo)?.into_iter().find(|f| {
        f.lease.kind == LeaseKind::Prune
            && f.lease.token != mine.token
            && f.is_live(now, skew)
            && (f.lease.start_time(), &f.name) <= (mine.start_time(), &my_name)
    });
    if let Some(other) = other {
        held.release(repo)?;
        return Err(Error::invalid_input(format!(
            "another prune or repair holds the repository: {}; wait for it, or for its lease to expire if it crashed",
            other.describe()
        )));
    }
    Ok(held)
}
