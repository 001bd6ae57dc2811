//! An interrupted backup is not started over: the packs it stored are indexed within
//! `index_interval` of being written, so the next backup finds them and stores only the rest.

use crate::common;

use std::time::Duration;

use cairn::archive::{self, BackupOptions, BackupSource, NoProgress};
use cairn::backend::LocalBackend;
use cairn::crypto::KdfParams;
use cairn::format::config::Config;
use cairn::Repository;
use common::failing::FailingBackend;
use common::{random_bytes, write_file};

fn backup(
    repo: Box<dyn cairn::backend::Backend>,
    cache: &std::path::Path,
    src: &std::path::Path,
    interval: Duration,
) -> cairn::Result<archive::BackupOutcome> {
    let repo = Repository::open(repo, b"pw", cache)?.into_indexed()?;
    let options = BackupOptions {
        index_interval: Some(interval),
        ..Default::default()
    };
    let paths = archive::normalize_sources(&[src.to_path_buf()])?;
    archive::backup(&repo, BackupSource::Paths(paths), &options, &NoProgress)
}

#[test]
fn the_next_backup_reuses_the_packs_an_interrupted_one_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (src, repo_dir, cache) = (
        dir.path().join("src"),
        dir.path().join("repo"),
        dir.path().join("cache"),
    );
    for i in 0..16 {
        write_file(&src.join(format!("f{i}.bin")), &random_bytes(i, 1_000_000));
    }
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
    // The storage fails after the lease and a dozen writes: about half the data, each pack
    // followed by its index file.
    let failing = FailingBackend::new(LocalBackend::new(&repo_dir), 13, false);
    let err = backup(Box::new(failing), &cache, &src, Duration::ZERO).unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let indexed_before = std::fs::read_dir(repo_dir.join("index")).unwrap().count();
    assert!(
        indexed_before > 0,
        "the interrupted backup indexed what it stored"
    );

    let done = backup(
        Box::new(LocalBackend::new(&repo_dir)),
        &cache,
        &src,
        Duration::ZERO,
    )
    .unwrap();
    let total: u64 = 16_000_000;
    let added = done.snapshot.summary.bytes_added;
    assert!(
        added < total * 3 / 4,
        "the second backup must reuse what the first stored: it added {added} of {total} bytes"
    );
    let target = dir.path().join("restored");
    let repo = Repository::open(Box::new(LocalBackend::new(&repo_dir)), b"pw", &cache)
        .unwrap()
        .into_indexed()
        .unwrap();
    cairn::restore::restore(
        &repo,
        &done.snapshot.tree_id(),
        &target,
        &cairn::restore::RestoreOptions::default(),
        &cairn::restore::NoRestoreProgress,
    )
    .unwrap();
    assert_eq!(
        common::tree_listing(&common::restored_path(&target, &src)),
        common::tree_listing(&src)
    );
}
