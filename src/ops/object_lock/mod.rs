//! Locks that follow the retention policy (FORMAT.md §17): until when each object of a locked
//! location must stay undeletable, and the extensions that get it there.
//!
//! A snapshot the policy keeps is needed until the policy would let it go (a daily one for the
//! daily count in days, a monthly one for the monthly count in months), and at least one lock
//! period from now while it is kept by a rule without a date (`keep_last`, tags) or no policy is
//! given; the margin is added. Everything it needs (its file, its trees and data packs, the delta
//! bases below them, the index files naming those packs, the keys, the config and the `locking`
//! settings) is needed as long as the longest-needed snapshot that needs it; a blob stored twice
//! is locked where the index finds it first. A snapshot whose claimed time is far from when
//! storage wrote it is kept out of the rules ([`forget::set_aside_untrusted`]) and needed one
//! period from now while it exists; so is archived WAL. An object whose lock ends before it is
//! needed is extended past that by half a period, so that a nightly run extends each object about
//! once per half period, not every night.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::backend::{LockSettings, ObjectKind, Retention};
use crate::error::{Error, Result};
use crate::format::tree::{ContentItem, NodeKind};
use crate::id::{BlobId, PackId};
use crate::ops::forget::{self, GroupBy};
use crate::ops::retention::{self, KeepPolicy, LocalClock};
use crate::repo::trees::TreeLoader;
use crate::repo::IndexedRepository;
use crate::threads::map_bounded;
use crate::wal::Catalog;

mod ledger;
use ledger::Ledger;

/// Trees read at once while walking a snapshot.
const TREES_IN_FLIGHT: usize = 16;

/// One object and the date until which it must stay locked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needed {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
    /// It must stay locked at least until then.
    pub until: DateTime<Utc>,
}

/// What a locked location needs locked, and until when.
#[derive(Clone, Debug, Default)]
pub struct LockPlan {
    /// Every object needed, with its date.
    pub objects: Vec<Needed>,
    /// Snapshots kept by the policy (or all of them without one).
    pub snapshots: usize,
}

/// What [`extend`] found and did.
#[derive(Clone, Debug, Default)]
pub struct LockReport {
    /// Objects whose retention was read.
    pub checked: u64,
    /// Objects whose lock was extended.
    pub extended: u64,
    /// Requests sent: one retention read per object asked about, one more per extension.
    pub requests: u64,
    /// Objects the local ledger vouched for, not asked about (FORMAT.md §17, "Ledger").
    pub from_ledger: u64,
    /// A sampled object was locked for less than the ledger said: it was thrown away and every
    /// object read.
    pub ledger_discarded: bool,
    /// Objects that ended up locked at least as long as needed.
    pub covered: u64,
    /// Needed objects that could not be extended or read, with the reason.
    pub failed: Vec<String>,
    /// The earliest lock expiry among the needed objects after the extensions.
    pub earliest_expiry: Option<DateTime<Utc>>,
}

/// Plans the locks of `repo`'s location at `now`, keeping snapshots by `policy` (grouped by
/// `group_by`; an empty policy keeps every snapshot).
///
/// # Errors
/// `InvalidInput` when the location is not locked; when snapshots, trees, index files or WAL
/// records cannot be read, or a referenced blob is in no index file (locking a partial set would
/// look complete: `cairn check` first).
pub fn plan(
    repo: &IndexedRepository,
    policy: &KeepPolicy,
    group_by: GroupBy,
    local: LocalClock<'_>,
    now: DateTime<Utc>,
) -> Result<LockPlan> {
    let r = repo.repo();
    let settings = settings_of(repo)?;
    let floor = now + settings.period() + settings.margin();
    let mut kept: Vec<(
        DateTime<Utc>,
        crate::id::SnapshotId,
        crate::format::snapshot::Snapshot,
    )> = Vec::new();
    // A forged claimed time must not take real snapshots out of the rules, and so out of their
    // locks: such snapshots are kept for one period at a time, like forget keeps them.
    let split =
        forget::set_aside_untrusted(r.backend(), r.snapshots()?, forget::TimeTrust::default())?;
    let snapshots = split.trusted;
    kept.extend(
        split
            .set_aside
            .into_iter()
            .map(|s| (floor, s.id, s.snapshot)),
    );
    if policy.is_empty() {
        kept.extend(snapshots.into_iter().map(|(id, s)| (floor, id, s)));
    } else {
        for group in forget::plan_snapshots(snapshots, group_by, policy, local).groups {
            for d in group.snapshots.into_iter().filter(|d| d.keep()) {
                let horizon = retention::horizon(policy, d.snapshot.datetime(), &d.reasons);
                let until = horizon.map_or(floor, |h| (h + settings.margin()).max(floor));
                kept.push((until, d.id, d.snapshot));
            }
        }
    }
    // Longest-needed first: the first snapshot to reach a blob needs it longest.
    kept.sort_by_key(|k| std::cmp::Reverse(k.0));
    let mut pack_until: HashMap<PackId, DateTime<Utc>> = HashMap::new();
    let mut seen: HashSet<BlobId> = HashSet::new();
    let mut objects = Vec::new();
    let none = HashSet::new();
    let mut need_blob = |id: BlobId, until: DateTime<Utc>, what: &dyn Fn() -> String| {
        if !seen.insert(id) {
            return Ok(false);
        }
        let chain = repo.index().chain(&id, &none)?.ok_or_else(|| {
            Error::corrupted(format!(
                "{}: blob {id} (or a base below it) is in no index file; run `cairn check`",
                what()
            ))
        })?;
        for link in chain {
            let slot = pack_until.entry(link.pack).or_insert(until);
            *slot = (*slot).max(until);
        }
        Ok::<bool, Error>(true)
    };
    let loader = TreeLoader::cached(repo);
    for (until, id, snapshot) in &kept {
        objects.push(Needed {
            kind: ObjectKind::Snapshot,
            name: id.to_hex(),
            until: *until,
        });
        // Level by level, each level's new trees read at once: on remote storage each is a
        // ranged read, and one after another they took most of the plan's time.
        let what = || format!("snapshot {}", id.short());
        let mut level = vec![snapshot.tree_id()];
        while !level.is_empty() {
            let mut new = Vec::with_capacity(level.len());
            for tree_id in level.drain(..) {
                if need_blob(tree_id, *until, &what)? {
                    new.push(tree_id);
                }
            }
            let trees = map_bounded(&new, TREES_IN_FLIGHT, |t| loader.load(t));
            for tree in trees {
                for node in &tree.map_err(|e| e.context(what()))?.nodes {
                    match node.kind {
                        NodeKind::Dir => level.extend(node.subtree),
                        NodeKind::File => {
                            for item in &node.content {
                                if let ContentItem::Data { id: blob, .. } = item {
                                    need_blob(*blob, *until, &what)?;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let wal = Catalog::load(r)?;
    for (record, body) in wal.records() {
        objects.push(Needed {
            kind: ObjectKind::Wal,
            name: record.to_hex(),
            until: floor,
        });
        for file in &body.files {
            for blob in file.chunk_ids() {
                let what = || format!("WAL record {}", record.short());
                need_blob(blob, floor, &what)?;
            }
        }
    }
    let latest = pack_until
        .values()
        .copied()
        .chain([floor])
        .max()
        .unwrap_or(floor);
    for (name, _) in r.backend().list(ObjectKind::Index)? {
        let file = crate::index::files::read(r.backend(), r.key(), &name)?;
        if let Some(until) = file
            .packs
            .iter()
            .filter_map(|p| pack_until.get(&p.pack))
            .max()
        {
            objects.push(Needed {
                kind: ObjectKind::Index,
                name,
                until: *until,
            });
        }
    }
    objects.extend(pack_until.iter().map(|(pack, until)| Needed {
        kind: ObjectKind::Pack,
        name: pack.to_hex(),
        until: *until,
    }));
    for kind in [ObjectKind::Key, ObjectKind::Config] {
        for (name, _) in r.backend().list(kind)? {
            objects.push(Needed {
                kind,
                name,
                until: latest,
            });
        }
    }
    // The settings themselves: deleted, later writes would go unlocked.
    objects.push(Needed {
        kind: ObjectKind::Config,
        name: crate::backend::object_lock::LOCKING_PATH.to_string(),
        until: latest,
    });
    Ok(LockPlan {
        objects,
        snapshots: kept.len(),
    })
}

/// Reads each needed object's retention and extends the locks that end before the object is
/// needed, `connections` requests at a time.
///
/// # Errors
/// `InvalidInput` when the location is not locked. Failures of single objects are in the report.
pub fn extend(repo: &IndexedRepository, plan: &LockPlan, connections: usize) -> Result<LockReport> {
    visit(repo, plan, connections, true)
}

/// Reads each needed object's retention without changing it: an object locked for less than it
/// is needed is a failure in the report (`cairn retention show`, monitoring).
///
/// # Errors
/// `InvalidInput` when the location is not locked.
pub fn inspect(
    repo: &IndexedRepository,
    plan: &LockPlan,
    connections: usize,
) -> Result<LockReport> {
    visit(repo, plan, connections, false)
}

fn visit(
    repo: &IndexedRepository,
    plan: &LockPlan,
    connections: usize,
    apply: bool,
) -> Result<LockReport> {
    let settings = settings_of(repo)?;
    if !apply {
        return Ok(pass(repo, plan, connections, &settings, Pass::Inspect).report);
    }
    let location = repo.repo().backend().location();
    let path = Ledger::path(&repo.repo().cache_dir(), &location);
    let now = Utc::now();
    let mut ledger = Ledger::load(&path, &location);
    let whole = ledger.due_whole(now, settings.period());
    let mode = if whole {
        Pass::Extend(None)
    } else {
        Pass::Extend(Some(&ledger))
    };
    let mut done = pass(repo, plan, connections, &settings, mode);
    if done.ledger_wrong {
        // The storage holds a shorter lock than the ledger says (a lock removed with governance
        // bypass, a bucket replaced): trust none of it, and read every object.
        let asked = done.report.requests;
        done = pass(repo, plan, connections, &settings, Pass::Extend(None));
        done.report.requests += asked;
        done.report.ledger_discarded = true;
    }
    let read_whole = (whole || done.report.ledger_discarded).then_some(now);
    ledger.replace(done.locks, read_whole);
    // The ledger only saves requests: a run that cannot write it has still extended every lock.
    let _ = ledger.save(&path);
    Ok(done.report)
}

/// What one pass over the needed objects does.
#[derive(Clone, Copy)]
enum Pass<'a> {
    /// Reads every lock and extends none: a short one is a failure.
    Inspect,
    /// Extends short locks; with a ledger, an object it vouches for is not asked about, except
    /// a random sample.
    Extend(Option<&'a Ledger>),
}

/// How one object fared.
enum Visit {
    /// The ledger vouches for it until then; not asked.
    Vouched(DateTime<Utc>),
    /// Read: locked long enough, until then.
    Read(DateTime<Utc>),
    /// Extended until then.
    Extended(DateTime<Utc>),
    /// Sampled, and locked for less than the ledger says.
    Wrong,
}

/// The outcome of a pass.
struct Passed {
    report: LockReport,
    /// The lock of every object now known, for the ledger.
    locks: HashMap<String, DateTime<Utc>>,
    /// A sampled object proved the ledger wrong.
    ledger_wrong: bool,
}

fn pass(
    repo: &IndexedRepository,
    plan: &LockPlan,
    connections: usize,
    settings: &LockSettings,
    mode: Pass<'_>,
) -> Passed {
    let backend = repo.repo().backend();
    let slack = Duration::seconds(settings.period_seconds / 2);
    let ledger = match mode {
        Pass::Extend(ledger) => ledger,
        Pass::Inspect => None,
    };
    let vouched: Vec<Option<DateTime<Utc>>> = plan
        .objects
        .iter()
        .map(|n| {
            ledger
                .and_then(|l| l.until(&ledger::key(n.kind, &n.name)))
                .filter(|until| *until >= n.until)
        })
        .collect();
    let sampled = ledger::sample(&vouched);
    let work: Vec<(usize, &Needed)> = plan.objects.iter().enumerate().collect();
    let results = map_bounded(&work, connections.max(1), |&(i, needed)| {
        if let (Some(until), false) = (vouched[i], sampled[i]) {
            return Ok(Visit::Vouched(until));
        }
        let current = backend.retention(needed.kind, &needed.name)?;
        if let Some(claimed) = vouched[i] {
            if current.is_none_or(|r| r.until < claimed - Duration::seconds(1)) {
                return Ok(Visit::Wrong);
            }
        }
        if let Some(r) = current.filter(|r| r.until >= needed.until) {
            return Ok(Visit::Read(r.until));
        }
        if matches!(mode, Pass::Inspect) {
            return Err(Error::invalid_input(match current {
                Some(r) => format!("locked until {}, needed until {}", r.until, needed.until),
                None => format!("not locked, needed until {}", needed.until),
            }));
        }
        let retention = Retention {
            mode: current.map_or(settings.mode, |r| r.mode),
            until: needed.until + slack,
        };
        backend.extend_retention(needed.kind, &needed.name, &retention)?;
        Ok::<_, Error>(Visit::Extended(retention.until))
    });
    let mut report = LockReport::default();
    let mut locks = HashMap::new();
    let mut ledger_wrong = false;
    for (needed, result) in plan.objects.iter().zip(results) {
        report.checked += 1;
        let until = match result {
            Ok(Visit::Vouched(until)) => {
                report.from_ledger += 1;
                until
            }
            Ok(Visit::Read(until)) => {
                report.requests += 1;
                until
            }
            Ok(Visit::Extended(until)) => {
                report.requests += 2;
                report.extended += 1;
                until
            }
            Ok(Visit::Wrong) => {
                report.requests += 1;
                ledger_wrong = true;
                continue;
            }
            Err(e) => {
                report.requests += 1;
                report
                    .failed
                    .push(format!("{} {}: {e}", needed.kind.label(), needed.name));
                continue;
            }
        };
        report.covered += 1;
        report.earliest_expiry = Some(report.earliest_expiry.map_or(until, |e| e.min(until)));
        locks.insert(ledger::key(needed.kind, &needed.name), until);
    }
    Passed {
        report,
        locks,
        ledger_wrong,
    }
}

fn settings_of(repo: &IndexedRepository) -> Result<LockSettings> {
    let backend = repo.repo().backend();
    backend.lock_settings()?.ok_or_else(|| {
        Error::invalid_input(format!(
            "{} is not locked: lock a repository with `cairn init --lock-mode MODE --lock-period SPAN` \
             or a sync target with `cairn sync --to TARGET --lock-mode MODE --lock-period SPAN`",
            backend.location()
        ))
    })
}
