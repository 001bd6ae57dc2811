//! Leases (FORMAT.md §12): a running backup or prune announces itself with an expiring object it refreshes.
//!
//! A lease is never a lock that can go stale forever: a process that dies stops refreshing, and its lease
//! stops counting once it has expired, or at once when its holder is provably dead (same host, same
//! boot, same pid namespace, and its pid gone or reused). Owns writing, refreshing, listing, releasing
//! and sweeping lease objects, and the sweep of stale temporaries that goes with it.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};

use crate::backend::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use crate::format::lifecycle::{Lease, LeaseKind, LEASE_BODY_V2};
use crate::id::KeyId;
use crate::repo::Repository;

/// How long a lease lasts without a refresh.
pub const LEASE_TTL: Duration = Duration::minutes(10);

/// How far the clocks of hosts sharing a repository may disagree, unless told otherwise
/// (`--clock-skew`): lease expiry and record ages are judged with this margin.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::minutes(5);

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

impl FoundLease {
    /// Whether the holder provably no longer runs: a version 2 lease written on this host, in this
    /// boot and pid namespace, whose pid is gone or now names a process that started at another
    /// time (a reused pid). Anything less certain (another host, an old lease, no `/proc`, a pid
    /// that exists but whose start cannot be read) is not proof, and the lease counts until it expires.
    pub fn holder_is_dead(&self) -> bool {
        let l = &self.lease;
        let (Some(boot), Some(started), Some(ns)) = (&l.boot_id, l.pid_start, &l.pid_ns) else {
            return false;
        };
        if l.version != LEASE_BODY_V2
            || l.host != hostname()
            || boot_id().as_ref() != Some(boot)
            || pid_namespace().as_ref() != Some(ns)
        {
            return false;
        }
        let Ok(pid) = i32::try_from(l.pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Err(nix::errno::Errno::ESRCH) => true,
            // EPERM: it exists under another user. Its start tells the holder from a reused pid.
            Ok(()) | Err(nix::errno::Errno::EPERM) => {
                process_start(l.pid).is_some_and(|now| now != started)
            }
            Err(_) => false,
        }
    }
}

/// This boot's id: a pid means something only within one boot.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

/// This process's pid namespace (`pid:[4026531836]`): containers on one host share the boot id and
/// may share the host name, but not the pids.
fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ...": comm may hold spaces and parentheses, so fields count from the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    // After ')' come fields 3 (state), 4, ...: field 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub(crate) fn hostname() -> String {
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
            version: LEASE_BODY_V2,
            boot_id: boot_id(),
            pid_start: process_start(std::process::id()),
            pid_ns: pid_namespace(),
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

    /// Runs `work` while a thread refreshes the lease; releases the lease afterwards, whatever the
    /// outcome, a panic inside `work` included: the panic becomes an error (so the caller ends with a
    /// message, and a lease that nobody refreshes is never left to block prunes until it expires).
    ///
    /// # Errors
    /// `work`'s error, `Other` when it panicked, or the release's error.
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
            // Caught here, inside the scope: a panic that left it would wait forever for the
            // refresher, which would keep the lease alive.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&self)));
            drop(stop);
            result
        });
        let released = self.release(repo);
        let value = match result {
            Ok(outcome) => outcome?,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                return Err(Error::new(
                    ErrorKind::Other,
                    format!(
                        "internal error: a thread panicked ({what}); the operation stopped, its lease {} (what it wrote is harmless, as after a crash): please report this",
                        match released {
                            Ok(()) => "was released".to_string(),
                            Err(e) => format!("could not be released ({e}) and expires by itself"),
                        }
                    ),
                ));
            }
        };
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

/// What [`sweep`] found and removed.
#[derive(Debug, Default)]
pub struct Swept {
    /// Leases left in place.
    pub kept: Vec<FoundLease>,
    /// Leases removed because their holder is provably dead ([`FoundLease::holder_is_dead`]).
    pub dead: Vec<FoundLease>,
    /// Leases removed because they expired long ago, or (with `all`) every other lease.
    pub expired: Vec<FoundLease>,
    /// Temporaries of interrupted writes removed from `tmp/`.
    pub temporaries: u64,
}

/// What [`sweep`] removes besides the leases of dead holders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepExpired {
    /// Leases expired for longer than their lifetime ([`LEASE_TTL`], or `skew` if longer): no
    /// holder can still be refreshing them. What prune, backup and repair sweep.
    Long,
    /// Every lease that no longer counts (expired beyond `skew`): `cairn unlock`.
    Stale,
    /// Every lease, live or not: `cairn unlock --remove-all`.
    All,
}

/// Removes what interrupted processes left behind: leases that can never count again (see
/// [`SweepExpired`]; leases of provably dead holders always), and temporaries in `tmp/` untouched
/// for longer than [`LEASE_TTL`] (no write in progress is that idle: a live one would have been
/// refreshed or finished). Returns the leases kept, so callers need not list them again.
///
/// # Errors
/// When the storage cannot be listed or a removal fails.
pub fn sweep(repo: &Repository, skew: Duration, what: SweepExpired) -> Result<Swept> {
    let now = Utc::now();
    let mut swept = Swept {
        temporaries: repo
            .backend()
            .remove_stale_temporaries(LEASE_TTL.to_std().unwrap_or_default())?,
        ..Swept::default()
    };
    let ours = std::process::id();
    for found in list(repo)? {
        let gone = match what {
            SweepExpired::All => true,
            SweepExpired::Stale => !found.is_live(now, skew),
            SweepExpired::Long => found.lease.expiry_time() + LEASE_TTL.max(skew) <= now,
        };
        if found.holder_is_dead() && found.lease.pid != ours {
            repo.backend().remove(ObjectKind::Lease, &found.name)?;
            swept.dead.push(found);
        } else if gone {
            repo.backend().remove(ObjectKind::Lease, &found.name)?;
            swept.expired.push(found);
        } else {
            swept.kept.push(found);
        }
    }
    Ok(swept)
}

/// Acquires the prune lease: at most one prune (or repair) acts on a repository at a time.
///
/// Leases of dead holders and long-expired ones are swept first ([`sweep`]), so a crashed prune
/// on this host never blocks the next. Then written, then compared: of two prunes that start
/// together, the one with the later start (or larger name) steps back; both stepping back is harmless.
///
/// # Errors
/// `LeaseHeld` naming the other prune when one holds a live lease; backend errors.
pub fn acquire_exclusive(repo: &Repository, skew: Duration) -> Result<HeldLease> {
    sweep(repo, skew, SweepExpired::Long)?;
    let held = HeldLease::acquire(repo, LeaseKind::Prune)?;
    let (my_name, mine) = held.current();
    let now = Utc::now();
    let other = list(repo)?.into_iter().find(|f| {
        f.lease.kind == LeaseKind::Prune
            && f.lease.token != mine.token
            && f.is_live(now, skew)
            && !f.holder_is_dead()
            && (f.lease.start_time(), &f.name) <= (mine.start_time(), &my_name)
    });
    if let Some(other) = other {
        held.release(repo)?;
        return Err(Error::new(
            ErrorKind::LeaseHeld,
            format!(
                "another prune, repair or re-encryption holds the repository: {}; nothing was changed. Wait for it to finish; if it crashed on another host, its lease stops counting when it expires (`cairn unlock --remove-all` removes it at once, once you know it is gone)",
                other.describe()
            ),
        ));
    }
    Ok(held)
}
