//! `prune`: reclaims the space of blobs no snapshot references, safely while backups run (FORMAT.md §12).
//!
//! Two phases, run by successive prunes: a prune *condemns* unused packs (and packs it repacked) in a
//! pending-deletion record; a later prune *deletes* them once the record is ripe, after reviving any pack
//! that a snapshot written meanwhile needs. Plan first, execute second; `--dry-run` prints the plan.

mod blob_table;
mod execute;
mod usage;

pub use execute::{execute, execute_with_progress, PruneOutcome};
pub use usage::PackUsage;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::backend::ObjectKind;
use crate::error::Result;
use crate::format::lifecycle::LeaseKind;
use crate::format::wal::WalRecord;
use crate::id::PackId;
use crate::id::WalRecordId;
use crate::index::files::BLOBS_PER_FILE;
use crate::pack::read_pack_prefix as pack_prefix;
use crate::repo::Repository;
use crate::repo::{lease, pending};
use crate::wal::{retention, Catalog};

use usage::Usage;

/// How prune decides.
#[derive(Clone, Copy, Debug)]
pub struct PruneOptions {
    /// Repack a pack when more than this share of its bytes is unused (0.0..=1.0).
    pub max_unused: f64,
    /// A pending-deletion record is acted on only when at least this old.
    pub grace: Duration,
    /// How far the clocks of hosts sharing the repository may disagree.
    pub clock_skew: Duration,
    /// Index entries up to which the blob table is kept in memory; above, it goes to a temporary
    /// database on disk (default 500,000, `blob_table::MEMORY_BLOBS`).
    pub memory_blobs: u64,
    /// Also repack every used pack of an older data-key epoch than the key's newest, whatever its
    /// unused share (`key rotate --reencrypt`, FORMAT.md §15); costs one small read per pack.
    pub reencrypt: bool,
    /// Keep archived PostgreSQL WAL archived within this span even when no base backup needs it
    /// (a recovery window); without it, WAL before the oldest base backup's start is removed.
    pub keep_wal_within: Option<Duration>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            grace: Duration::hours(1),
            clock_skew: lease::DEFAULT_CLOCK_SKEW,
            memory_blobs: blob_table::MEMORY_BLOBS,
            reencrypt: false,
            keep_wal_within: None,
        }
    }
}

/// The steps of a prune that take time in proportion to the repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneStep {
    /// Reading the index files (counted in files).
    IndexFiles,
    /// Walking each snapshot's trees (counted in snapshots).
    Snapshots,
    /// Copying the used blobs out of wasteful packs (counted in packs).
    Repack,
    /// Removing the packs of ripe records (counted in packs).
    Delete,
}

/// Told how a prune advances; every method does nothing by default.
pub trait PruneProgress: Sync {
    /// A step starts with `total` items to go.
    fn step(&self, _step: PruneStep, _total: u64) {}
    /// `n` more items of the current step are done.
    fn advance(&self, _n: u64) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl PruneProgress for NoProgress {}

/// What prune will do.
pub struct PrunePlan {
    /// Snapshots whose references were walked.
    pub snapshots: usize,
    /// Distinct blobs they reference.
    pub referenced_blobs: u64,
    /// Per pack: size and use.
    pub packs: HashMap<PackId, PackUsage>,
    /// Condemned packs deleted now (their record is ripe), with sizes.
    pub delete: Vec<(PackId, u64)>,
    /// Ripe condemned packs whose Object Lock has not expired (FORMAT.md §17), with size and
    /// retain-until date: they stay condemned, in a new record, until a prune after that date.
    pub locked: Vec<(PackId, u64, DateTime<Utc>)>,
    /// Condemned packs that a snapshot needs after all: they leave their record.
    pub revive: Vec<PackId>,
    /// Packs with no referenced blob (including packs of interrupted backups), condemned now.
    pub condemn: Vec<(PackId, u64)>,
    /// Packs whose referenced blobs are copied to new packs, then condemned.
    pub repack: Vec<(PackId, PackUsage)>,
    /// Why records are not acted on yet.
    pub waiting: Vec<String>,
    /// Referenced blobs found nowhere: prune refuses to delete anything then.
    pub missing: Vec<String>,
    /// WAL records no kept base backup needs (FORMAT.md §16): removed first, so their blobs are
    /// condemned now with the packs no longer referenced.
    pub wal_expired: Vec<WalRecordId>,
    /// The WAL files those records hold.
    pub wal_expired_files: usize,
    /// Index files listed (step 2).
    pub index_file_count: usize,
    /// They are many more than their entries need (each backup, WAL push and interrupted run
    /// adds one): they are rewritten into as few as hold the entries, even with no pack to delete.
    pub consolidate_index: bool,
    records: Vec<pending::FoundRecord>,
    ripe: HashSet<String>,
    index_files: Vec<String>,
    usage: Usage,
}

impl PrunePlan {
    /// Bytes that deleting the ripe packs frees now.
    pub fn bytes_freed_now(&self) -> u64 {
        self.delete.iter().map(|(_, s)| s).sum()
    }

    /// Bytes a later prune will free: condemned packs, and the unused part of repacked ones.
    pub fn bytes_freed_later(&self) -> u64 {
        self.condemn.iter().map(|(_, s)| s).sum::<u64>()
            + self
                .repack
                .iter()
                .map(|(_, u)| u.unused_bytes())
                .sum::<u64>()
    }

    /// Total size of the packs.
    pub fn bytes_total(&self) -> u64 {
        self.packs.values().map(|u| u.size).sum()
    }
}

/// How many index files beyond those their entries need make a prune consolidate them: a few
/// are cheap to read, and rewriting at every prune would churn a small repository's index.
const SPARE_INDEX_FILES: usize = 32;

/// Plans a prune. The caller holds the exclusive prune lease.
///
/// Listing order matters for safety: leases, then snapshots, then index files, then packs (FORMAT.md §12).
///
/// # Errors
/// When listing or reading fails, or an index file, tree or pending record is damaged.
pub fn plan(repo: &Repository, options: &PruneOptions) -> Result<PrunePlan> {
    plan_with_progress(repo, options, &NoProgress)
}

/// [`plan`], telling `progress` how it advances.
///
/// # Errors
/// As [`plan`].
pub fn plan_with_progress(
    repo: &Repository,
    options: &PruneOptions,
    progress: &dyn PruneProgress,
) -> Result<PrunePlan> {
    let now = Utc::now();
    let leases = lease::list(repo)?;
    let records = pending::list(repo)?;
    let mut ripe = HashSet::new();
    let mut waiting = Vec::new();
    for r in &records {
        match why_not_ripe(r.record.datetime(), &leases, now, options) {
            None => {
                ripe.insert(r.name.clone());
            }
            Some(why) => waiting.push(format!(
                "{} pack(s) condemned at {} wait: {why}",
                r.record.packs.len(),
                r.record.time
            )),
        }
    }
    let condemned: HashSet<PackId> = records.iter().flat_map(|r| r.record.pack_ids()).collect();

    let snapshots = repo.snapshots()?;
    let wal = Catalog::load(repo)?;
    if let Some((name, e)) = wal.damaged().first() {
        // What it names is unknown: deleting anything could lose archived WAL.
        return Err(e.clone().context(format!(
            "WAL record {name} is damaged; prune stops (`cairn check` tells more)"
        )));
    }
    let wal_expired = retention::expired(&wal, &snapshots, options.keep_wal_within, now);
    let expired: HashSet<WalRecordId> = wal_expired.iter().copied().collect();
    let wal_kept: Vec<&(WalRecordId, WalRecord)> = wal
        .records()
        .iter()
        .filter(|(id, _)| !expired.contains(id))
        .collect();
    let wal_expired_files = wal
        .records()
        .iter()
        .filter(|(id, _)| expired.contains(id))
        .map(|(_, r)| r.files.len())
        .sum();
    let index_listing = repo.backend().list(ObjectKind::Index)?;
    let mut packs: HashMap<PackId, PackUsage> = HashMap::new();
    for (name, size) in repo.backend().list(ObjectKind::Pack)? {
        if let Ok(id) = PackId::from_hex(&name) {
            packs.insert(
                id,
                PackUsage {
                    size,
                    ..Default::default()
                },
            );
        }
    }
    let mut usage = Usage::build(
        repo,
        &index_listing,
        &mut packs,
        &condemned,
        options.memory_blobs,
        progress,
    )?;
    let walk = usage.walk(
        repo, &snapshots, &wal_kept, &mut packs, &condemned, progress,
    )?;
    let index_files: Vec<String> = index_listing.into_iter().map(|(name, _)| name).collect();
    let entries: u64 = packs.values().filter(|u| u.indexed).map(|u| u.blobs).sum();
    let needed = entries.div_ceil(BLOBS_PER_FILE as u64).max(1) as usize;
    let consolidate_index = index_files.len() > needed + SPARE_INDEX_FILES;

    let ripe_packs: HashSet<PackId> = records
        .iter()
        .filter(|r| ripe.contains(&r.name))
        .flat_map(|r| r.record.pack_ids())
        .collect();
    let mut delete = Vec::new();
    let mut condemn = Vec::new();
    let mut repack = Vec::new();
    for (id, u) in &packs {
        if walk.revive.contains(id) {
            continue;
        }
        if ripe_packs.contains(id) {
            delete.push((*id, u.size));
        } else if condemned.contains(id) {
            // Waits in its record.
        } else if u.used_blobs == 0 {
            condemn.push((*id, u.size));
        } else if u.unused_bytes() as f64 > options.max_unused * u.size as f64
            || (options.reencrypt
                && pack_prefix(repo.backend(), id)?.epoch < repo.key().newest_epoch())
        {
            repack.push((*id, *u));
        }
    }
    delete.sort();
    let locked = if repo.backend().lock_settings()?.is_some() {
        hold_locked(repo, &mut delete, &mut waiting, now)?
    } else {
        Vec::new()
    };
    condemn.sort();
    repack.sort_by_key(|(id, _)| *id);
    let mut revive: Vec<PackId> = walk.revive.into_iter().collect();
    revive.sort();
    Ok(PrunePlan {
        snapshots: snapshots.len(),
        referenced_blobs: walk.referenced,
        packs,
        delete,
        locked,
        revive,
        condemn,
        repack,
        waiting,
        missing: walk.missing,
        wal_expired,
        wal_expired_files,
        index_file_count: index_files.len(),
        consolidate_index,
        records,
        ripe,
        index_files,
        usage,
    })
}

/// Takes the packs whose lock has not expired out of `delete` (a deletion would only hide them
/// behind a delete marker and free nothing), and says until when they wait.
fn hold_locked(
    repo: &Repository,
    delete: &mut Vec<(PackId, u64)>,
    waiting: &mut Vec<String>,
    now: DateTime<Utc>,
) -> Result<Vec<(PackId, u64, DateTime<Utc>)>> {
    let retentions = crate::threads::map_bounded(delete, 8, |(id, _)| {
        repo.backend().retention(ObjectKind::Pack, &id.to_hex())
    });
    let mut locked = Vec::new();
    let mut free = Vec::new();
    for ((id, size), retention) in delete.drain(..).zip(retentions) {
        match retention {
            Ok(Some(r)) if r.until > now => locked.push((id, size, r.until)),
            Ok(_) => free.push((id, size)),
            // Gone already: nothing to wait for.
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => free.push((id, size)),
            Err(e) => return Err(e),
        }
    }
    *delete = free;
    if let (Some(first), Some(last)) = (
        locked.iter().map(|l| l.2).min(),
        locked.iter().map(|l| l.2).max(),
    ) {
        waiting.push(format!(
            "{} condemned pack(s) ({} bytes) are locked: they are deleted by a prune after their locks expire, the first at {first}, the last at {last}",
            locked.len(),
            locked.iter().map(|l| l.1).sum::<u64>()
        ));
    }
    Ok(locked)
}

/// Why a record made at `marked` cannot be acted on yet, or `None` when it can.
fn why_not_ripe(
    marked: DateTime<Utc>,
    leases: &[lease::FoundLease],
    now: DateTime<Utc>,
    options: &PruneOptions,
) -> Option<String> {
    if now < marked + options.grace {
        return Some(format!("grace period until {}", marked + options.grace));
    }
    // A backup that started before the record was surely visible may reuse its packs' blobs.
    leases
        .iter()
        .find(|l| {
            l.lease.kind == LeaseKind::Backup
                && l.is_live(now, options.clock_skew)
                && !l.holder_is_dead()
                && l.lease.start_time() <= marked + options.clock_skew
        })
        .map(|l| format!("{} may reuse its blobs", l.describe()))
}
