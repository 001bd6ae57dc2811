//! A backup interrupted at every storage write leaves a repository that passes `check`, has no
//! half-visible snapshot, and accepts the next backup (FORMAT.md §11).

use crate::common;

use std::path::{Path, PathBuf};

use cairn::archive::{self, BackupOptions, BackupSource, NoProgress};
use cairn::backend::{Backend, LocalBackend, ObjectKind};
use cairn::check::{check, CheckOptions};
use cairn::crypto::KdfParams;
use cairn::format::config::Config;
use cairn::restore::{restore, NoRestoreProgress, RestoreOptions};
use cairn::{ErrorKind, Repository};
use common::failing::FailingBackend;

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("big.bin"), common::random_bytes(0, 3_000_000)).unwrap();
    std::fs::write(root.join("sub/small.txt"), b"hello").unwrap();
}

fn backup_with(repo_dir: &Path, cache: &Path, src: &Path, budget: i64) -> cairn::Result<()> {
    let backend = FailingBackend::new(LocalBackend::new(repo_dir), budget, false);
    let repo = Repository::open(Box::new(backend), b"pw", cache)?.into_indexed()?;
    let paths = archive::normalize_sources(&[src.to_path_buf()])?;
    archive::backup(
        &repo,
        BackupSource::Paths(paths),
        &BackupOptions::default(),
        &NoProgress,
    )
    .map(|_| ())
}

/// A source tree and an empty repository in a temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
    src: PathBuf,
    repo_dir: PathBuf,
    cache: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        make_tree(&src);
        let repo_dir = dir.path().join("repo");
        let cache = dir.path().join("cache");
        Repository::init(
            Box::new(LocalBackend::new(&repo_dir)),
            b"pw",
            KdfParams::MINIMUM,
            Config::generate().unwrap(),
            &cache,
        )
        .unwrap();
        Fixture {
            dir,
            src,
            repo_dir,
            cache,
        }
    }
}

#[test]
fn backup_failing_at_each_write_leaves_a_checkable_repository() {
    let Fixture {
        dir,
        src,
        repo_dir,
        cache,
    } = Fixture::new();

    // A complete backup of this tree writes: its lease, data pack, tree pack, index file, snapshot.
    let mut completed_at = None;
    for budget in 0..10 {
        let result = backup_with(&repo_dir, &cache, &src, budget);
        let repo = Repository::open(Box::new(LocalBackend::new(&repo_dir)), b"pw", &cache)
            .unwrap()
            .into_indexed()
            .unwrap();
        let report = check(&repo, CheckOptions::read_data()).unwrap();
        assert!(
            report.is_ok(),
            "budget {budget}: check found {:?}",
            report.errors
        );
        let snapshots = repo.repo().snapshots().unwrap();
        match result {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Backend, "budget {budget}: {e}");
                assert!(
                    snapshots.is_empty(),
                    "budget {budget}: a failed backup left a snapshot"
                );
            }
            Ok(()) => {
                assert_eq!(snapshots.len(), 1);
                completed_at = Some(budget);
                // Every interrupted attempt before it left only unreferenced packs: restore is exact.
                let target = dir.path().join("restore");
                restore(
                    &repo,
                    &snapshots[0].1.tree_id(),
                    &target,
                    &RestoreOptions::default(),
                    &NoRestoreProgress,
                )
                .unwrap();
                let restored = target.join(src.strip_prefix("/").unwrap());
                assert_eq!(
                    std::fs::read(restored.join("big.bin")).unwrap(),
                    std::fs::read(src.join("big.bin")).unwrap()
                );
                assert_eq!(
                    std::fs::read(restored.join("sub/small.txt")).unwrap(),
                    b"hello"
                );
                break;
            }
        }
    }
    assert_eq!(
        completed_at,
        Some(5),
        "a backup of this tree should need exactly 5 writes"
    );
}

#[test]
fn damaged_objects_are_reported_by_check() {
    let Fixture {
        dir: _keep_alive,
        src,
        repo_dir,
        cache,
    } = Fixture::new();
    backup_with(&repo_dir, &cache, &src, i64::MAX).unwrap();
    let backend = LocalBackend::new(&repo_dir);
    let packs = backend.list(ObjectKind::Pack).unwrap();
    let (largest, _) = packs.iter().max_by_key(|(_, size)| *size).unwrap().clone();
    let path = repo_dir.join("data").join(&largest[..2]).join(&largest);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let repo = Repository::open(Box::new(backend), b"pw", &cache)
        .unwrap()
        .into_indexed()
        .unwrap();
    let structural = check(&repo, CheckOptions::default()).unwrap();
    assert!(
        structural.is_ok(),
        "a flipped data byte is only visible when reading data"
    );
    let report = check(&repo, CheckOptions::read_data()).unwrap();
    assert!(!report.is_ok());
    assert!(
        report.errors.iter().any(|e| e.contains(&largest)),
        "errors should name pack {largest}: {:?}",
        report.errors
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("blob ") && e.contains("authentication failed")),
        "errors should name the damaged blob, not only the pack: {:?}",
        report.errors
    );

    // A pack that disappears is reported by the structural check.
    std::fs::remove_file(&path).unwrap();
    let report = check(&repo, CheckOptions::default()).unwrap();
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains(&largest) && e.contains("missing")),
        "errors should say pack {largest} is missing: {:?}",
        report.errors
    );
}

/// `check --read-data` verifies the packs one after another with all threads on each pack's blobs:
/// in a repository of many small packs, a byte flipped in one of them is found, named with its pack
/// and the file it damages, and every other pack still counts as verified.
#[test]
fn read_data_finds_a_flipped_byte_among_many_packs() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for i in 0..12u64 {
        std::fs::create_dir_all(&src).unwrap();
        let noise = common::random_bytes(i + 1, 700_000);
        std::fs::write(src.join(format!("f{i:02}.bin")), noise).unwrap();
    }
    let repo_dir = dir.path().join("repo");
    let cache = dir.path().join("cache");
    let mut config = Config::generate().unwrap();
    config.pack_size = 1 << 20;
    Repository::init(
        Box::new(LocalBackend::new(&repo_dir)),
        b"pw",
        KdfParams::MINIMUM,
        config,
        &cache,
    )
    .unwrap();
    backup_with(&repo_dir, &cache, &src, i64::MAX).unwrap();
    let backend = LocalBackend::new(&repo_dir);
    let mut packs = backend.list(ObjectKind::Pack).unwrap();
    assert!(packs.len() >= 6, "test setup: only {} packs", packs.len());
    packs.sort();
    // A data pack (the tree pack is small), so the damage lands in a file's content.
    let (victim, _) = packs
        .iter()
        .find(|(_, size)| *size > 500_000)
        .unwrap()
        .clone();
    let repo = Repository::open(Box::new(backend), b"pw", &cache)
        .unwrap()
        .into_indexed()
        .unwrap();
    let clean = check(&repo, CheckOptions::read_data()).unwrap();
    assert!(clean.is_ok(), "{:?}", clean.errors);
    assert_eq!(clean.packs_read, packs.len() as u64);

    let path = repo_dir.join("data").join(&victim[..2]).join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let report = check(&repo, CheckOptions::read_data()).unwrap();
    assert_eq!(report.packs_read, packs.len() as u64);
    assert!(
        report.errors.iter().any(|e| e.contains(&format!(
            "pack {victim}: its content does not match its name"
        ))),
        "{:?}",
        report.errors
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains(&victim) && e.contains("authentication failed")),
        "the damaged blob is named with its pack: {:?}",
        report.errors
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("file /") && e.contains(".bin")),
        "the damaged file is named: {:?}",
        report.errors
    );
    assert_eq!(
        report.blobs_verified + 1,
        clean.blobs_verified,
        "exactly one blob is damaged: {:?}",
        report.errors
    );

    // A second pack cut in half: its header (at the end) is gone, so nothing of it can be opened;
    // its buffer goes back to the reader and every pack after it is still verified.
    let (cut, _) = packs
        .iter()
        .rev()
        .find(|(name, size)| *name != victim && *size > 500_000)
        .unwrap()
        .clone();
    let cut_path = repo_dir.join("data").join(&cut[..2]).join(&cut);
    let whole = std::fs::read(&cut_path).unwrap();
    std::fs::write(&cut_path, &whole[..whole.len() / 2]).unwrap();
    let mut cut_blobs = 0u64;
    repo.index()
        .for_each(|loc| {
            cut_blobs += u64::from(loc.pack.to_hex() == cut);
            Ok(())
        })
        .unwrap();
    assert!(cut_blobs > 0);
    let report = check(&repo, CheckOptions::read_data()).unwrap();
    assert_eq!(report.packs_read, packs.len() as u64);
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains(&format!("pack {cut}: its content does not match its name"))),
        "{:?}",
        report.errors
    );
    assert_eq!(
        report.blobs_verified + 1 + cut_blobs,
        clean.blobs_verified,
        "every blob of the other packs verified: {:?}",
        report.errors
    );
}

/// Collects what a dump command writes to stderr, as the CLI would show it.
#[derive(Default)]
struct StderrLines(std::sync::Mutex<Vec<String>>);

impl archive::BackupProgress for StderrLines {
    fn command_stderr(&self, path: &str, line: &str) {
        self.0.lock().unwrap().push(format!("[{path}] {line}"));
    }
}

/// Storage failing while a dump command still writes: the backup fails with the storage error, the
/// command and everything in its process group are ended (not left blocked on a full pipe), no
/// snapshot appears, and `check` accepts what was written.
#[test]
fn storage_failing_during_a_dump_ends_the_command() {
    let fx = Fixture::new();
    let pids = fx.dir.path().join("pids");
    // Endless output; a second process in the group shows that the whole group is ended. The
    // timeout only bounds the test should the storage error never reach the reader.
    let script = format!(
        "echo starting >&2; echo $$ > '{0}'; sleep 600 & echo $! >> '{0}'; exec cat /dev/urandom",
        pids.display()
    );
    let command =
        archive::DumpCommand::shell(&script).timeout(Some(std::time::Duration::from_secs(600)));
    // The lease is the one write let through: every pack write fails.
    let backend = FailingBackend::new(LocalBackend::new(&fx.repo_dir), 1, false);
    let repo = Repository::open(Box::new(backend), b"pw", &fx.cache)
        .unwrap()
        .into_indexed()
        .unwrap();
    let sources = archive::BackupSources {
        paths: archive::normalize_sources(std::slice::from_ref(&fx.src)).unwrap(),
        streams: vec![archive::StreamSource::command(
            "dumps/endless.dump",
            command,
        )],
    };
    let progress = StderrLines::default();
    let err = archive::backup(&repo, sources, &BackupOptions::default(), &progress)
        .expect_err("the backup must fail");
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().contains("storing the output of"), "{err}");
    assert_eq!(
        *progress.0.lock().unwrap(),
        ["[/dumps/endless.dump] starting"]
    );
    for pid in std::fs::read_to_string(&pids).unwrap().split_whitespace() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().chars().next());
        assert!(
            matches!(state, None | Some(Some('Z' | 'X'))),
            "process {pid} of the dump outlived the failed backup: {stat}"
        );
    }
    let repo =
        Repository::open(Box::new(LocalBackend::new(&fx.repo_dir)), b"pw", &fx.cache).unwrap();
    assert!(repo.snapshots().unwrap().is_empty());
    let report = check(&repo.into_indexed().unwrap(), CheckOptions::default()).unwrap();
    assert!(report.is_ok(), "{report:?}");
}
