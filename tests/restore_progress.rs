//! Regression: the restore progress bar took its length from the snapshot's `bytes_read`, which is
//! 0 for an unchanged re-backup. The restore now announces the bytes it will write, and reports
//! exactly that many (holes of sparse files excluded).

use std::sync::atomic::{AtomicU64, Ordering};

use cairn::archive::{self, BackupOptions, BackupSource, NoProgress};
use cairn::backend::LocalBackend;
use cairn::crypto::KdfParams;
use cairn::format::config::Config;
use cairn::restore::{restore, RestoreOptions, RestoreProgress};
use cairn::Repository;

#[derive(Default)]
struct Recorder {
    planned_files: AtomicU64,
    planned_bytes: AtomicU64,
    written: AtomicU64,
}

impl RestoreProgress for Recorder {
    fn planned(&self, files: u64, bytes: u64) {
        self.planned_files.fetch_add(files, Ordering::SeqCst);
        self.planned_bytes.fetch_add(bytes, Ordering::SeqCst);
    }
    fn bytes(&self, n: u64) {
        self.written.fetch_add(n, Ordering::SeqCst);
    }
}

#[test]
fn restore_announces_and_reports_the_bytes_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), vec![b'a'; 300_000]).unwrap();
    std::fs::write(src.join("b.txt"), b"bee").unwrap();
    let sparse = std::fs::File::create(src.join("sparse")).unwrap();
    sparse.set_len(10 << 20).unwrap();

    let cache = dir.path().join("cache");
    let backend = || Box::new(LocalBackend::new(dir.path().join("repo")));
    Repository::init(
        backend(),
        b"pw",
        KdfParams::MINIMUM,
        Config::generate().unwrap(),
        &cache,
    )
    .unwrap();
    let repo = Repository::open(backend(), b"pw", &cache)
        .unwrap()
        .into_indexed()
        .unwrap();
    let paths = archive::normalize_sources(std::slice::from_ref(&src)).unwrap();
    let backup = || {
        archive::backup(
            &repo,
            BackupSource::Paths(paths.clone()),
            &BackupOptions::default(),
            &NoProgress,
        )
        .unwrap()
    };
    backup();
    let second = backup();
    assert_eq!(
        second.snapshot.summary.bytes_read, 0,
        "the second backup reads nothing"
    );

    let recorder = Recorder::default();
    let target = dir.path().join("out");
    let stats = restore(
        &repo,
        &second.snapshot.tree_id(),
        &target,
        &RestoreOptions::default(),
        &recorder,
    )
    .unwrap();
    assert_eq!(recorder.planned_files.load(Ordering::SeqCst), 3);
    assert_eq!(recorder.planned_bytes.load(Ordering::SeqCst), 300_003);
    assert_eq!(recorder.written.load(Ordering::SeqCst), 300_003);
    assert_eq!(stats.bytes, 300_003);
}
