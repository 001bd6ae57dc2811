//! `sync`: make a target location hold every object of a source repository, under the same names.
//!
//! Objects are opaque here: copying never needs the password (deleting packs does, to prove the
//! source pruned them rather than lost them: [`SyncPlan::protect_packs`]). Every object but the config is named by the
//! unkeyed BLAKE3 of its bytes (FORMAT.md §3), so each one is checked against its name before it is written
//! and, with `verify`, after. The config must be byte-identical on both sides: a target holding another
//! repository is refused. Kinds are written keys, config, packs, index, snapshots, and a kind starts only
//! when the previous one is complete, so a target interrupted at any moment never shows a snapshot whose
//! data is missing. Deletions (snapshots first, packs last) run only after every copy succeeded.
//!
//! Memory: an object is copied whole (read, checked against its name, written), so each transfer holds one
//! object, once, and no more than its kind's maximum ([`ObjectKind::max_len`]: a larger object is refused as
//! damaged before it is read; sync holds no password, so a pack's bound is the format's, not the config's). Transfers run `connections` at a time within [`MEMORY_BUDGET`] bytes in flight; an object
//! larger than the budget runs alone. Streaming was not chosen: an object must be checked whole before any
//! of it reaches the target (a damaged source object is never spread), and WebDAV takes objects in one
//! request anyway.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::{self, Backend, ObjectKind, WRITE_ORDER};
use crate::error::{Error, ErrorKind, Result};
use crate::id::PackId;
use crate::repo::Repository;
use crate::threads::{for_each_bounded as parallel, map_bounded};

/// Bytes of objects a sync holds in memory at most (unless a single object is larger): 8 connections of
/// default 32 MiB packs fit, and larger packs (up to 1 GiB, FORMAT.md §5) lower the number in flight instead.
pub const MEMORY_BUDGET: u64 = 256 << 20;

/// What a sync should do beyond copying what is missing.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Remove target objects the source does not have.
    pub delete: bool,
    /// Read back every object written, and every object already on the target, and check it against its name.
    pub verify: bool,
    /// Objects transferred at once.
    pub connections: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            delete: false,
            verify: false,
            connections: 8,
        }
    }
}

/// One object to act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Object {
    /// Its kind.
    #[serde(serialize_with = "kind_label")]
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
    /// Its size in bytes (on the source for copies, on the target for deletions).
    pub size: u64,
}

fn kind_label<S: serde::Serializer>(
    kind: &ObjectKind,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(kind.label())
}

/// What a sync will do, computed from the two listings; executing it is a separate step (`--dry-run` prints it).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncPlan {
    /// Objects missing from the target, in write order.
    pub copy: Vec<Object>,
    /// Objects present on the target with another size (torn uploads), replaced in write order.
    pub replace: Vec<Object>,
    /// Objects present with the right size (their content is checked when verifying).
    pub present: Vec<Object>,
    /// Target objects the source lacks, in deletion order (removed only with `delete`).
    pub extra: Vec<Object>,
    /// Target packs the source lacks but its index files still name: the source lost them, and
    /// the target may hold the last copy. Never deleted (see [`SyncPlan::protect_packs`]).
    pub protected: Vec<Object>,
    /// Whether the target held no repository yet.
    pub new_target: bool,
}

impl SyncPlan {
    /// Whether `delete` would remove packs (the only deletions that can lose data).
    pub fn deletes_packs(&self) -> bool {
        self.extra.iter().any(|o| o.kind == ObjectKind::Pack)
    }

    /// Keeps out of the deletions every target pack that `needed` (the packs the source's index
    /// files name, see [`packs_the_source_indexes`]) holds, or every pack when `needed` is `None`
    /// (nothing proves the source pruned them). A pack the source lacks while its index still
    /// names it was lost by the source, not pruned (a prune rewrites the index files before it
    /// deletes a pack, FORMAT.md §12): deleting the target's copy would delete its last copy.
    pub fn protect_packs(&mut self, needed: Option<&HashSet<PackId>>) {
        let (protected, extra): (Vec<Object>, Vec<Object>) =
            std::mem::take(&mut self.extra).into_iter().partition(|o| {
                o.kind == ObjectKind::Pack
                    && needed.is_none_or(|needed| {
                        PackId::from_hex(&o.name).is_ok_and(|id| needed.contains(&id))
                    })
            });
        self.extra = extra;
        self.protected = protected;
    }

    /// Bytes the plan transfers.
    pub fn bytes_to_copy(&self) -> u64 {
        self.copy.iter().chain(&self.replace).map(|o| o.size).sum()
    }
}

/// Counts of objects and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Objects.
    pub objects: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, size: u64) {
        self.objects += 1;
        self.bytes += size;
    }
}

/// What a sync did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncReport {
    /// Objects written to the target (missing ones and replaced ones).
    pub copied: Tally,
    /// Of `copied`, objects that replaced a damaged or torn target object.
    pub replaced: Tally,
    /// Objects already present.
    pub skipped: Tally,
    /// Objects removed from the target.
    pub deleted: Tally,
    /// Objects read back and checked against their name.
    pub verified: Tally,
    /// Objects that could not be copied, checked or deleted.
    pub failed: Tally,
    /// One message per failure, naming the object.
    pub errors: Vec<String>,
    /// Temporaries of interrupted writes removed from the target's `tmp/` (idle longer than a
    /// lease lasts).
    pub temporaries_removed: u64,
    /// Target objects the source lacks that were left in place (no `delete`).
    pub extra: Tally,
    /// With `delete` on a locked target (FORMAT.md §17): packs the source lacks that were left in
    /// place because their lock has not expired; a later sync deletes them.
    pub locked: Tally,
    /// Whether the target now holds every object of the source, intact as far as checked.
    pub complete: bool,
    /// Wall time.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Every pack the source repository's index files name, the index brought up to date first: what
/// [`SyncPlan::protect_packs`] needs to tell a pack the source lost from one it pruned.
///
/// # Errors
/// When an index file cannot be read or decoded.
pub fn packs_the_source_indexes(source: Repository) -> Result<HashSet<PackId>> {
    source.into_indexed()?.index().packs()
}

/// Callbacks for a progress display (called from worker threads).
pub trait SyncProgress: Sync {
    /// The plan is known: `bytes` will be transferred.
    fn start(&self, _bytes: u64) {}
    /// `bytes` more were written to the target.
    fn transferred(&self, _bytes: u64) {}
}

/// No progress display.
pub struct NoSyncProgress;

impl SyncProgress for NoSyncProgress {}

/// Lists both sides and decides what to copy, replace and delete. Both sides are listed at the same time,
/// every kind at once, and packs shard by shard ([`backend::list_concurrently`]), with up to
/// `connections` listing requests per side.
///
/// # Errors
/// `NotARepository` when the source holds none; `InvalidInput` when the target holds a different repository
/// or unrelated files; `Backend` when a listing fails.
pub fn plan(source: &dyn Backend, target: &dyn Backend, connections: usize) -> Result<SyncPlan> {
    if !source.has_config()? {
        return Err(Error::new(
            ErrorKind::NotARepository,
            format!(
                "there is no cairn repository at {} to copy from",
                source.location()
            ),
        ));
    }
    let sides = [source, target];
    let jobs: Vec<(usize, ObjectKind)> = (0..sides.len())
        .flat_map(|side| WRITE_ORDER.map(|kind| (side, kind)))
        .collect();
    // Packs take one thread per side that fans out on its own; the small kinds share the rest.
    let mut listings = map_bounded(&jobs, jobs.len(), |&(side, kind)| {
        backend::list_concurrently(sides[side], kind, connections)
    })
    .into_iter();
    let ours_by_kind: Vec<_> = listings
        .by_ref()
        .take(WRITE_ORDER.len())
        .collect::<Result<_>>()?;
    let theirs_by_kind: Vec<_> = listings.collect::<Result<_>>()?;
    let mut plan = SyncPlan::default();
    let mut extras = Vec::new();
    for ((kind, ours), theirs) in WRITE_ORDER
        .into_iter()
        .zip(ours_by_kind)
        .zip(theirs_by_kind)
    {
        let theirs: BTreeMap<String, u64> = theirs.into_iter().collect();
        for (name, size) in &ours {
            let object = Object {
                kind,
                name: name.clone(),
                size: *size,
            };
            match theirs.get(name) {
                None => plan.copy.push(object),
                Some(s) if s == size => plan.present.push(object),
                Some(_) => plan.replace.push(object),
            }
        }
        let ours: BTreeMap<_, _> = ours.into_iter().collect();
        extras.extend(
            theirs
                .into_iter()
                .filter(|(name, _)| !ours.contains_key(name))
                .map(|(name, size)| Object { kind, name, size }),
        );
    }
    check_target_is_ours(source, target, &mut plan, &extras)?;
    // Deletion order is the reverse of write order: snapshots first, packs and keys last.
    extras.sort_by_key(|o| std::cmp::Reverse(write_rank(o.kind)));
    plan.extra = extras;
    Ok(plan)
}

fn write_rank(kind: ObjectKind) -> usize {
    WRITE_ORDER.iter().position(|k| *k == kind).unwrap_or(0)
}

/// Refuses to mix repositories: the target's config must equal the source's, and a target without a config
/// may hold only keys of the source (what an interrupted sync leaves) or nothing at all.
fn check_target_is_ours(
    source: &dyn Backend,
    target: &dyn Backend,
    plan: &mut SyncPlan,
    extras: &[Object],
) -> Result<()> {
    let different = || {
        Error::invalid_input(format!(
            "{} holds a different cairn repository (its config differs from {}); sync copies into an empty \
             location or a copy of the same repository only",
            target.location(),
            source.location()
        ))
    };
    if target.has_config()? {
        if plan.present.iter().any(|o| o.kind == ObjectKind::Config) {
            if source.read(ObjectKind::Config, "config")?
                != target.read(ObjectKind::Config, "config")?
            {
                return Err(different());
            }
        } else if plan.replace.iter().any(|o| o.kind == ObjectKind::Config) {
            return Err(different());
        }
        return Ok(());
    }
    plan.new_target = true;
    let foreign = extras
        .first()
        .map(|o| format!("{} {}", o.kind.label(), o.name));
    if let Some(what) = foreign {
        return Err(Error::invalid_input(format!(
            "{} holds no repository but has objects the source lacks ({what}); choose an empty location",
            target.location()
        )));
    }
    if plan.present.is_empty() && plan.replace.is_empty() {
        // A fresh target: the backend checks that the location is empty (no unrelated files) and prepares it.
        target.create()?;
    }
    Ok(())
}

/// Executes a plan: copies in write order, one kind at a time, then deletes extras when asked.
///
/// # Errors
/// Only for failures that stop the whole sync before it starts; per-object failures are in the report.
pub fn execute(
    source: &dyn Backend,
    target: &dyn Backend,
    plan: &SyncPlan,
    options: &SyncOptions,
    progress: &dyn SyncProgress,
) -> Result<SyncReport> {
    let started = Instant::now();
    let report = Mutex::new(SyncReport::default());
    let record_failure = |report: &Mutex<SyncReport>, object: &Object, err: Error| {
        let mut r = lock(report);
        r.failed.add(object.size);
        r.errors
            .push(format!("{} {}: {err}", object.kind.label(), object.name));
    };
    // What killed syncs left in the target's `tmp/`; a failure here costs space, not data.
    let idle = crate::repo::lease::LEASE_TTL.to_std().unwrap_or_default();
    match target.remove_stale_temporaries(idle) {
        Ok(n) => lock(&report).temporaries_removed = n,
        Err(e) => lock(&report)
            .errors
            .push(format!("cannot remove stale temporaries: {e}")),
    }
    progress.start(plan.bytes_to_copy());
    let budget = MemoryBudget::new(MEMORY_BUDGET);
    let copy =
        |object: &Object| copy_one(source, target, object, options.verify, progress, &budget);
    let mut stopped = false;
    for kind in WRITE_ORDER {
        let of_kind = |list: &[Object]| -> Vec<Object> {
            list.iter().filter(|o| o.kind == kind).cloned().collect()
        };
        let mut jobs: Vec<(Object, bool)> = of_kind(&plan.copy)
            .into_iter()
            .map(|o| (o, false))
            .collect();
        jobs.extend(of_kind(&plan.replace).into_iter().map(|o| (o, true)));
        let present = of_kind(&plan.present);
        // Present objects: counted as skipped, or read back and re-copied when damaged.
        parallel(&present, options.connections, |object| {
            if !options.verify {
                lock(&report).skipped.add(object.size);
                return;
            }
            let held = budget.hold(object.size);
            let checked = target
                .read(object.kind, &object.name)
                .and_then(|b| check_content(object, &b));
            drop(held);
            match checked {
                Ok(()) => {
                    let mut r = lock(&report);
                    r.skipped.add(object.size);
                    r.verified.add(object.size);
                }
                Err(e) if e.is_damage() => match copy(object) {
                    Ok(()) => {
                        let mut r = lock(&report);
                        r.copied.add(object.size);
                        r.replaced.add(object.size);
                        r.verified.add(object.size);
                    }
                    Err(e) => record_failure(&report, object, e),
                },
                Err(e) => record_failure(&report, object, e),
            }
        });
        parallel(
            &jobs,
            options.connections,
            |(object, replaces)| match copy(object) {
                Ok(()) => {
                    let mut r = lock(&report);
                    r.copied.add(object.size);
                    if *replaces {
                        r.replaced.add(object.size);
                    }
                    if options.verify {
                        r.verified.add(object.size);
                    }
                }
                Err(e) => record_failure(&report, object, e),
            },
        );
        if lock(&report).failed.objects > 0 {
            // Never write a later kind over a gap: an index or snapshot must not precede its packs.
            stopped = true;
            break;
        }
    }
    if !stopped {
        let locked_target = options.delete && target.lock_settings()?.is_some();
        let now = chrono::Utc::now();
        for object in &plan.extra {
            if !options.delete {
                lock(&report).extra.add(object.size);
                continue;
            }
            // A locked pack would only be hidden behind a delete marker and free nothing.
            if locked_target && object.kind == ObjectKind::Pack {
                match target.retention(object.kind, &object.name) {
                    Ok(Some(r)) if r.until > now => {
                        lock(&report).locked.add(object.size);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        record_failure(&report, object, e);
                        continue;
                    }
                }
            }
            match target.remove(object.kind, &object.name) {
                Ok(()) => lock(&report).deleted.add(object.size),
                Err(e) => record_failure(&report, object, e),
            }
        }
    }
    let mut report = report.into_inner().unwrap_or_else(|e| e.into_inner());
    report.complete = !stopped && report.failed.objects == 0;
    report.duration = started.elapsed();
    Ok(report)
}

/// Reads one object from the source, checks it against its name, writes it, and with `verify` reads it back.
/// The object is held once: the target takes the bytes, and the read-back is compared by hash.
fn copy_one(
    source: &dyn Backend,
    target: &dyn Backend,
    object: &Object,
    verify: bool,
    progress: &dyn SyncProgress,
    budget: &MemoryBudget,
) -> Result<()> {
    let _held = budget.hold(object.size);
    let bytes = source.read(object.kind, &object.name)?;
    check_content(object, &bytes).map_err(|e| e.context("on the source, not copied"))?;
    let written = (bytes.len(), blake3::hash(&bytes));
    target.write_owned(object.kind, &object.name, bytes)?;
    progress.transferred(written.0 as u64);
    if verify {
        let back = target.read(object.kind, &object.name)?;
        if (back.len(), blake3::hash(&back)) != written {
            return Err(Error::corrupted(format!(
                "read back from {} differs from what was written",
                target.location()
            )));
        }
    }
    Ok(())
}

/// Bytes of objects in memory across transfer threads, bounded: a transfer waits until its object fits.
struct MemoryBudget {
    limit: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

/// Bytes taken from a [`MemoryBudget`], given back when dropped.
struct Held<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl MemoryBudget {
    fn new(limit: u64) -> Self {
        MemoryBudget {
            limit,
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Waits until `size` more bytes fit; an object larger than the whole budget waits until it is alone.
    fn hold(&self, size: u64) -> Held<'_> {
        let bytes = size.min(self.limit);
        let mut used = lock(&self.used);
        while *used > 0 && *used + bytes > self.limit {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += bytes;
        Held {
            budget: self,
            bytes,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        *lock(&self.budget.used) -= self.bytes;
        self.budget.freed.notify_all();
    }
}

/// Whether `bytes` are the object: its size, and (for every kind but the config) the BLAKE3 hash its name is.
fn check_content(object: &Object, bytes: &[u8]) -> Result<()> {
    if bytes.len() as u64 != object.size {
        return Err(Error::corrupted(format!(
            "{} bytes where {} were listed",
            bytes.len(),
            object.size
        )));
    }
    if object.kind != ObjectKind::Config && blake3::hash(bytes).to_hex().as_str() != object.name {
        return Err(Error::corrupted(
            "its content does not match its name (damaged or torn)",
        ));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;

    /// Plans and runs one sync; the tests look at the report.
    fn sync_with(source: &dyn Backend, target: &dyn Backend, options: &SyncOptions) -> SyncReport {
        execute(
            source,
            target,
            &plan(source, target, 4).unwrap(),
            options,
            &NoSyncProgress,
        )
        .unwrap()
    }

    fn object(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    fn repo_with(dir: &std::path::Path, objects: &[(ObjectKind, &[u8])]) -> LocalBackend {
        let b = LocalBackend::new(dir);
        b.create().unwrap();
        b.write(ObjectKind::Config, "config", b"config bytes")
            .unwrap();
        for (kind, bytes) in objects {
            b.write(*kind, &object(bytes), bytes).unwrap();
        }
        b
    }

    #[test]
    fn copies_missing_replaces_torn_deletes_extra() {
        let dir = tempfile::tempdir().unwrap();
        let source = repo_with(
            &dir.path().join("a"),
            &[
                (ObjectKind::Key, b"key"),
                (ObjectKind::Pack, b"pack one"),
                (ObjectKind::Pack, b"pack two"),
                (ObjectKind::Snapshot, b"snap"),
            ],
        );
        let target = LocalBackend::new(dir.path().join("b"));
        let report = sync_with(&source, &target, &SyncOptions::default());
        assert!(report.complete, "{report:?}");
        assert_eq!(report.copied.objects, 5);
        // A torn pack (short) and an extra snapshot on the target.
        target
            .write(ObjectKind::Pack, &object(b"pack one"), b"pack")
            .unwrap();
        target
            .write(ObjectKind::Snapshot, &object(b"old"), b"old")
            .unwrap();
        let plan2 = plan(&source, &target, 4).unwrap();
        assert_eq!(plan2.replace.len(), 1);
        assert_eq!(plan2.extra.len(), 1);
        let options = SyncOptions {
            delete: true,
            ..Default::default()
        };
        let report = execute(&source, &target, &plan2, &options, &NoSyncProgress).unwrap();
        assert!(report.complete);
        assert_eq!(
            (
                report.replaced.objects,
                report.deleted.objects,
                report.skipped.objects
            ),
            (1, 1, 4)
        );
        for kind in WRITE_ORDER {
            assert_eq!(source.list(kind).unwrap(), target.list(kind).unwrap());
        }
        // Same size, wrong content: only --verify can see it.
        target
            .write(ObjectKind::Pack, &object(b"pack two"), b"pack 2!!")
            .unwrap();
        let quick = sync_with(&source, &target, &SyncOptions::default());
        assert_eq!(quick.copied.objects, 0);
        let options = SyncOptions {
            verify: true,
            ..Default::default()
        };
        let report = sync_with(&source, &target, &options);
        assert_eq!(report.replaced.objects, 1, "{report:?}");
        assert_eq!(
            target.read(ObjectKind::Pack, &object(b"pack two")).unwrap(),
            b"pack two"
        );
    }

    #[test]
    fn refuses_another_repository_and_never_copies_a_damaged_object() {
        let dir = tempfile::tempdir().unwrap();
        let source = repo_with(&dir.path().join("a"), &[(ObjectKind::Pack, b"pack")]);
        let other = LocalBackend::new(dir.path().join("b"));
        other.create().unwrap();
        other
            .write(ObjectKind::Config, "config", b"other config")
            .unwrap();
        assert_eq!(
            plan(&source, &other, 4).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let foreign = LocalBackend::new(dir.path().join("c"));
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("c/notes.txt"), b"mine").unwrap();
        assert_eq!(
            plan(&source, &foreign, 4).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );

        // A pack whose bytes no longer match its name on the source stops the sync before the snapshots.
        source
            .write(ObjectKind::Snapshot, &object(b"snap"), b"snap")
            .unwrap();
        std::fs::write(
            dir.path()
                .join("a/data")
                .join(&object(b"pack")[..2])
                .join(object(b"pack")),
            b"pock",
        )
        .unwrap();
        let target = LocalBackend::new(dir.path().join("d"));
        let report = sync_with(&source, &target, &SyncOptions::default());
        assert!(!report.complete);
        assert_eq!(report.failed.objects, 1);
        assert!(
            report.errors[0].contains("on the source"),
            "{:?}",
            report.errors
        );
        assert!(target.list(ObjectKind::Snapshot).unwrap().is_empty());
        assert!(target.list(ObjectKind::Pack).unwrap().is_empty());
    }
}
