//! Model-based check of a repository's lifecycle, shared by the `model` fuzz target and `tests/model.rs`
//! (not part of the public API): random backups of small generated trees, forgets, prunes with no grace
//! period, lost packs, crashes (a backend that fails after N changes) and cold caches, over an
//! in-memory repository. After every step each kept snapshot restores exactly as the model says, or
//! fails and is named by `check` as damaged (only snapshots that existed when a pack was lost may);
//! never silently wrong. Without a lost pack, `check --read-data` finds nothing at all.
//!
//! Steps are decoded from bytes, so a fuzzer can steer them and a seeded generator can replay them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration as StdDuration, SystemTime};

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::archive::{self, BackupOptions, BackupSource};
use crate::backend::{Backend, MemoryBackend, ObjectKind};
use crate::check::{check, CheckOptions};
use crate::crypto::{KdfParams, MasterKey};
use crate::error::{Error, ErrorKind, Result};
use crate::format::config::Config;
use crate::id::SnapshotId;
use crate::ops::forget::{self, GroupBy};
use crate::ops::prune;
use crate::ops::retention::KeepPolicy;
use crate::repo::lease;
use crate::repo::{IndexedRepository, Repository, SnapshotFilter};
use crate::restore::{restore, NoRestoreProgress, RestoreOptions};

/// Steps a fuzzed run takes at most, whatever the input's length.
pub const MAX_STEPS: usize = 24;

/// Relative path -> content of every regular file of a tree.
type Files = BTreeMap<String, Vec<u8>>;

/// Reads step parameters from the input; zeros once it runs out.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// One step of a run.
#[derive(Debug)]
enum Step {
    /// Back up `files` (replacing the source tree), the backend failing after `crash_after` writes.
    Backup {
        files: Files,
        crash_after: Option<i64>,
    },
    /// Keep the newest `keep` snapshots.
    Forget { keep: u32 },
    /// Prune with no grace period, failing after `crash_after` changes.
    Prune {
        max_unused: f64,
        crash_after: Option<i64>,
    },
    /// Delete the `nth` pack (modulo their number).
    LosePack { nth: usize },
    /// Delete the local cache.
    DropCache,
}

/// Lengths of generated file contents: empty, one small chunk, and several chunks.
const LENGTHS: [usize; 6] = [0, 1, 700, 9_000, 80_000, 600_000];

/// Deterministic content: a few seeds and lengths, so files repeat across backups and deduplicate.
fn content(seed: u8, len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed).wrapping_mul(0xA24B_AED4_963E_E407);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn decode_step(input: &mut Input<'_>) -> Step {
    let op = input.byte();
    let crash = |input: &mut Input<'_>| {
        let b = input.byte();
        (b & 0x80 != 0).then_some(i64::from(b & 0x0f))
    };
    match op % 10 {
        0..=3 => {
            let count = 1 + input.byte() % 5;
            let mut files = Files::new();
            for _ in 0..count {
                let name = input.byte();
                let dir = ["", "d/", "d/e/", "f/"][usize::from(name >> 6)];
                let path = format!("{dir}file{}", name % 6);
                let shape = input.byte();
                let len = LENGTHS[usize::from(shape % 6)];
                let mut bytes = content(shape >> 3, len);
                if shape & 0x04 != 0 {
                    // A shared prefix with a different tail: some chunks deduplicate, some do not.
                    bytes.extend(content(input.byte(), len / 2));
                }
                files.insert(path, bytes);
            }
            Step::Backup {
                files,
                crash_after: crash(input),
            }
        }
        4 => Step::Forget {
            keep: 1 + u32::from(input.byte() % 3),
        },
        5 | 6 => Step::Prune {
            max_unused: [0.0, 0.05, 0.5][usize::from(input.byte() % 3)],
            crash_after: crash(input),
        },
        7 => Step::LosePack {
            nth: usize::from(input.byte()),
        },
        _ => Step::DropCache,
    }
}

/// A backend that lets `budget` changes through and fails every later one, as a crash would.
struct FailAfter {
    inner: MemoryBackend,
    budget: AtomicI64,
    count_removes: bool,
}

impl FailAfter {
    fn spend(&self, kind: ObjectKind, name: &str) -> Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(Error::new(
                ErrorKind::Backend,
                format!("injected crash at {} {name}", kind.label()),
            ));
        }
        Ok(())
    }
}

impl Backend for FailAfter {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn has_config(&self) -> Result<bool> {
        self.inner.has_config()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn list_all(&self, kind: ObjectKind) -> Result<Vec<(String, u64)>> {
        self.inner.list_all(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        self.inner.read(kind, name)
    }
    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read_range(kind, name, offset, len)
    }
    fn size(&self, kind: ObjectKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }
    fn write(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        self.spend(kind, name)?;
        self.inner.write(kind, name, bytes)
    }
    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        if self.count_removes {
            self.spend(kind, name)?;
        }
        self.inner.remove(kind, name)
    }
}

/// What the repository should hold.
struct Model {
    backend: MemoryBackend,
    key: MasterKey,
    dir: tempfile::TempDir,
    /// Kept snapshots and the files each must restore.
    snapshots: BTreeMap<SnapshotId, Files>,
    /// Snapshots that existed when a pack was lost: they may fail to restore (never restore wrong).
    maybe_damaged: BTreeSet<SnapshotId>,
    /// Whether a pack was ever lost (then check may report damage).
    lost_pack: bool,
    /// What the source directory holds now.
    source: Files,
    /// Times handed out: backups get increasing snapshot times, files increasing mtimes.
    clock: u32,
    /// What happened so far, for the report of a failure.
    log: String,
}

/// Runs up to `max_steps` of the steps `data` encodes, checking every invariant after each.
///
/// # Errors
/// A description of the first broken invariant, with the steps that led to it.
pub fn run(data: &[u8], max_steps: usize) -> std::result::Result<(), String> {
    let mut model = Model::new().map_err(|e| format!("setting up the model: {e}"))?;
    let mut input = Input { data, pos: 0 };
    for _ in 0..max_steps {
        if input.exhausted() {
            break;
        }
        let step = decode_step(&mut input);
        let _ = writeln!(model.log, "{}", describe(&step));
        model
            .apply(step)
            .and_then(|()| model.verify())
            .map_err(|e| format!("{e}\nsteps:\n{}", model.log))?;
    }
    Ok(())
}

fn describe(step: &Step) -> String {
    match step {
        Step::Backup { files, crash_after } => format!(
            "backup {:?} crash_after={crash_after:?}",
            files.iter().map(|(p, c)| (p, c.len())).collect::<Vec<_>>()
        ),
        other => format!("{other:?}"),
    }
}

/// A step's failure that breaks an invariant (not an expected error).
fn broken(what: impl std::fmt::Display) -> String {
    what.to_string()
}

impl Model {
    fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("cairn-model-")
            .tempdir()
            .map_err(|e| Error::io(ErrorKind::Other, "cannot create", Path::new("tempdir"), e))?;
        let backend = MemoryBackend::new();
        let config = Config::generate()?;
        let repo = Repository::init(
            Box::new(backend.clone()),
            b"model",
            KdfParams::MINIMUM,
            config,
            &dir.path().join("cache"),
        )?;
        Ok(Model {
            key: repo.key().clone(),
            backend,
            dir,
            snapshots: BTreeMap::new(),
            maybe_damaged: BTreeSet::new(),
            lost_pack: false,
            source: Files::new(),
            clock: 0,
            log: String::new(),
        })
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    fn open(&self, backend: Box<dyn Backend>) -> Result<Repository> {
        Repository::open_with_key(backend, self.key.clone(), &self.cache())
    }

    fn open_failing(&self, crash_after: Option<i64>, count_removes: bool) -> Result<Repository> {
        match crash_after {
            None => self.open(Box::new(self.backend.clone())),
            Some(budget) => self.open(Box::new(FailAfter {
                inner: self.backend.clone(),
                budget: AtomicI64::new(budget),
                count_removes,
            })),
        }
    }

    fn tick(&mut self) -> u32 {
        self.clock += 1;
        self.clock
    }

    fn time(&self, tick: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(i64::from(tick))
    }

    /// Makes the source directory hold `files`: changed files are written with a new mtime, unchanged
    /// ones are left alone (so the backup reuses its parent's entries for them).
    fn write_source(&mut self, files: &Files) -> std::result::Result<(), String> {
        let src = self.src();
        let io = |e: std::io::Error| broken(format!("writing the source tree: {e}"));
        if src.exists() {
            for path in self.source.keys() {
                if !files.contains_key(path) {
                    fs::remove_file(src.join(path)).map_err(io)?;
                }
            }
        }
        fs::create_dir_all(&src).map_err(io)?;
        for (path, bytes) in files {
            if self.source.get(path) == Some(bytes) {
                continue;
            }
            // Directory names (d, e, f) are never file names (fileN): no path is both.
            let full = src.join(path);
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent).map_err(io)?;
            }
            fs::write(&full, bytes).map_err(io)?;
            let mtime = SystemTime::UNIX_EPOCH
                + StdDuration::from_secs(1_900_000_000 + u64::from(self.tick()));
            fs::File::options()
                .write(true)
                .open(&full)
                .and_then(|f| f.set_modified(mtime))
                .map_err(io)?;
        }
        self.source = files.clone();
        Ok(())
    }

    /// Removes the leases a crashed command left: the model stands in for their expiry.
    fn expire_leases(&self) -> std::result::Result<(), String> {
        let leases = self
            .backend
            .list(ObjectKind::Lease)
            .map_err(|e| broken(format!("listing leases: {e}")))?;
        for (name, _) in leases {
            self.backend
                .remove(ObjectKind::Lease, &name)
                .map_err(|e| broken(format!("removing lease {name}: {e}")))?;
        }
        Ok(())
    }

    fn apply(&mut self, step: Step) -> std::result::Result<(), String> {
        match step {
            Step::Backup { files, crash_after } => self.backup(&files, crash_after),
            Step::Forget { keep } => self.forget(keep),
            Step::Prune {
                max_unused,
                crash_after,
            } => self.prune(max_unused, crash_after),
            Step::LosePack { nth } => {
                let packs = self
                    .backend
                    .list(ObjectKind::Pack)
                    .map_err(|e| broken(format!("listing packs: {e}")))?;
                if let Some((name, _)) = packs.get(nth % packs.len().max(1)) {
                    self.backend
                        .remove(ObjectKind::Pack, name)
                        .map_err(|e| broken(format!("removing pack {name}: {e}")))?;
                    self.lost_pack = true;
                    self.maybe_damaged.extend(self.snapshots.keys().copied());
                }
                Ok(())
            }
            Step::DropCache => {
                let cache = self.cache();
                if cache.exists() {
                    fs::remove_dir_all(&cache)
                        .map_err(|e| broken(format!("removing the cache: {e}")))?;
                }
                Ok(())
            }
        }
    }

    fn backup(
        &mut self,
        files: &Files,
        crash_after: Option<i64>,
    ) -> std::result::Result<(), String> {
        self.write_source(files)?;
        let tick = self.tick();
        let options = BackupOptions {
            host: Some("model".into()),
            time: Some(self.time(tick)),
            ..Default::default()
        };
        let src = self.src();
        let result = self
            .open_failing(crash_after, false)
            .and_then(Repository::into_indexed)
            .and_then(|repo| {
                let paths = archive::normalize_sources(&[src])?;
                archive::backup(
                    &repo,
                    BackupSource::Paths(paths),
                    &options,
                    &archive::NoProgress,
                )
            });
        match result {
            Ok(outcome) => {
                let id = outcome
                    .snapshot_id
                    .ok_or_else(|| "a backup without a snapshot".to_string())?;
                self.snapshots.insert(id, files.clone());
                Ok(())
            }
            Err(e) if crash_after.is_some() => {
                let _ = writeln!(self.log, "  crashed: {e}");
                self.expire_leases()?;
                // A crash after the snapshot was written leaves a complete snapshot.
                for (name, _) in self
                    .backend
                    .list(ObjectKind::Snapshot)
                    .map_err(|e| broken(format!("listing snapshots: {e}")))?
                {
                    let id = SnapshotId::from_hex(&name)
                        .map_err(|e| broken(format!("snapshot name {name}: {e}")))?;
                    self.snapshots.entry(id).or_insert_with(|| files.clone());
                }
                Ok(())
            }
            Err(e) => Err(broken(format!("backup failed without a crash: {e}"))),
        }
    }

    fn forget(&mut self, keep: u32) -> std::result::Result<(), String> {
        let repo = self
            .open(Box::new(self.backend.clone()))
            .map_err(|e| broken(format!("opening for forget: {e}")))?;
        let policy = KeepPolicy {
            last: keep,
            ..Default::default()
        };
        let utc = |t: DateTime<Utc>| t.naive_utc();
        let plan = forget::plan(
            &repo,
            &SnapshotFilter::default(),
            GroupBy::default(),
            &policy,
            &utc,
        )
        .map_err(|e| broken(format!("forget plan: {e}")))?;
        forget::execute(&repo, &plan, false).map_err(|e| broken(format!("forget: {e}")))?;
        for removed in plan.removals() {
            self.snapshots.remove(&removed.id);
            self.maybe_damaged.remove(&removed.id);
        }
        Ok(())
    }

    fn prune(
        &mut self,
        max_unused: f64,
        crash_after: Option<i64>,
    ) -> std::result::Result<(), String> {
        let options = prune::PruneOptions {
            max_unused,
            grace: Duration::zero(),
            clock_skew: Duration::zero(),
            ..Default::default()
        };
        let result = self.open_failing(crash_after, true).and_then(|repo| {
            let held = lease::acquire_exclusive(&repo, options.clock_skew)?;
            let repo = repo.into_indexed()?;
            held.hold_while(repo.repo(), |held| {
                let plan = prune::plan(repo.repo(), &options)?;
                prune::execute(&repo, &plan, held)
            })
        });
        match result {
            Ok(_) => Ok(()),
            Err(e) if crash_after.is_some() => {
                let _ = writeln!(self.log, "  crashed: {e}");
                self.expire_leases()
            }
            // Prune refuses to delete anything while referenced data is missing.
            Err(e) if self.lost_pack && e.is_damage() => {
                let _ = writeln!(self.log, "  refused: {e}");
                Ok(())
            }
            Err(e) => Err(broken(format!("prune failed without a crash: {e}"))),
        }
    }

    fn indexed(&self) -> std::result::Result<IndexedRepository, String> {
        self.open(Box::new(self.backend.clone()))
            .and_then(Repository::into_indexed)
            .map_err(|e| broken(format!("opening the repository: {e}")))
    }

    /// Every invariant, after a step.
    fn verify(&self) -> std::result::Result<(), String> {
        let repo = self.indexed()?;
        let report = check(&repo, CheckOptions::read_data())
            .map_err(|e| broken(format!("check failed to run: {e}")))?;
        if !self.lost_pack && !report.is_ok() {
            return Err(broken(format!(
                "check reports damage though no pack was lost: {:?}",
                report.errors
            )));
        }
        let listed: BTreeSet<SnapshotId> = repo
            .repo()
            .snapshots()
            .map_err(|e| broken(format!("listing snapshots: {e}")))?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let expected: BTreeSet<SnapshotId> = self.snapshots.keys().copied().collect();
        if listed != expected {
            return Err(broken(format!(
                "the repository holds snapshots {listed:?}, the model {expected:?}"
            )));
        }
        for (id, files) in &self.snapshots {
            let target = self.dir.path().join("restore");
            if target.exists() {
                fs::remove_dir_all(&target).map_err(|e| broken(format!("cleaning up: {e}")))?;
            }
            let restored = repo.repo().load_snapshot(id).and_then(|snapshot| {
                restore(
                    &repo,
                    &snapshot.tree_id(),
                    &target,
                    &RestoreOptions::default(),
                    &NoRestoreProgress,
                )
            });
            match restored {
                Ok(_) => {
                    let root = target.join(self.src().strip_prefix("/").unwrap_or(&self.src()));
                    let got = read_tree(&root)
                        .map_err(|e| broken(format!("reading the restore: {e}")))?;
                    if &got != files {
                        return Err(broken(format!(
                            "snapshot {} restored wrong bytes (silently): got {:?}, expected {:?}",
                            id.short(),
                            got.iter().map(|(p, c)| (p, c.len())).collect::<Vec<_>>(),
                            files.iter().map(|(p, c)| (p, c.len())).collect::<Vec<_>>()
                        )));
                    }
                }
                Err(e) => {
                    if !self.maybe_damaged.contains(id) {
                        return Err(broken(format!(
                            "snapshot {} fails to restore though no pack it could use was lost: {e}",
                            id.short()
                        )));
                    }
                    if !e.is_damage() {
                        return Err(broken(format!(
                            "snapshot {} fails to restore with an error that is not damage: {e}",
                            id.short()
                        )));
                    }
                    let short = id.short();
                    if !report.errors.iter().any(|line| line.contains(&short)) {
                        return Err(broken(format!(
                            "snapshot {short} cannot be restored ({e}) but check does not name it: {:?}",
                            report.errors
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Every regular file below `root`, by path relative to it.
fn read_tree(root: &Path) -> std::io::Result<Files> {
    let mut files = Files::new();
    if !root.exists() {
        return Ok(files);
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, fs::read(&path)?);
            }
        }
    }
    Ok(files)
}

/// Input bytes for a run of `steps` steps, from a seed (the fuzz target gets its own bytes).
pub fn seeded_input(seed: u64, steps: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    // No step reads more than 18 bytes; most read far fewer.
    (0..steps * 16)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}
