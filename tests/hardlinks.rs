//! Hardlinks: restore links only entries whose content and metadata agree (sharing a (device, inode)
//! pair is not enough), `--verify` reads every path a link included, and backup never stores the
//! content read through one link with the status of another taken after the file changed.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use cairn::archive::{self, BackupOptions, BackupProgress, BackupSource};
use cairn::format::tree::{ContentItem, Node, NodeKind, Timestamp, Tree};
use cairn::restore::{self, RestoreOptions, RestoreProgress};
use cairn::{BlobType, TreeId};
use common::{write_file, Env};

/// Stores, with the repository's real key, a snapshot whose root holds the files `files` (name,
/// bytes), every one claiming to be a link of the same inode (device 1, inode 7, two links).
/// Returns the snapshot id and its root tree.
fn snapshot_of_links(env: &Env, files: &[(&str, &[u8])]) -> (String, TreeId) {
    env.init();
    let template = env.path("template");
    write_file(&template.join("x"), b"x");
    env.backup_json(&[&template], &[]);
    let repo = common::open_indexed(env);
    let (_, snap) = repo.repo().find_snapshot("latest").unwrap();
    let saver = repo.saver();
    let mut tree = Tree::default();
    for (name, data) in files {
        let (id, _) = saver.save(BlobType::Data, data).unwrap();
        let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
        node.mode = 0o644;
        node.mtime = Timestamp {
            secs: 1_700_000_000,
            nanos: 0,
        };
        node.size = data.len() as u64;
        node.device = 1;
        node.inode = 7;
        node.links = 2;
        node.content = vec![ContentItem::Data {
            id,
            len: data.len() as u32,
        }];
        tree.nodes.push(node);
    }
    let (tree_id, _) = saver.save(BlobType::Tree, &tree.encode().unwrap()).unwrap();
    saver.finish().unwrap();
    let mut hostile = snap.clone();
    hostile.tree = tree_id.to_hex();
    let id = repo.repo().save_snapshot(&hostile).unwrap();
    (id.to_hex(), tree_id)
}

#[test]
fn entries_sharing_an_inode_with_other_content_are_not_linked() {
    let env = Env::new();
    let (id, _) = snapshot_of_links(
        &env,
        &[
            ("a", b"alpha bytes"),
            ("b", b"beta, longer bytes"),
            ("c", b"alpha bytes"),
        ],
    );
    let target = env.path("t");
    let out = env.r_ok(&[
        "restore",
        &id,
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]);
    assert_eq!(std::fs::read(target.join("a")).unwrap(), b"alpha bytes");
    assert_eq!(
        std::fs::read(target.join("b")).unwrap(),
        b"beta, longer bytes"
    );
    assert_eq!(std::fs::read(target.join("c")).unwrap(), b"alpha bytes");
    let ino = |name: &str| std::fs::metadata(target.join(name)).unwrap().ino();
    assert_ne!(
        ino("a"),
        ino("b"),
        "different contents must not share a file"
    );
    // Entries that agree in content and metadata are still one file.
    assert_eq!(ino("a"), ino("c"), "{}", out.describe());
}

/// Alters the restored `a` when the restore announces its last (empty) batch: after `a` was
/// written and checked, before the links are made.
struct AlterAfterFirstBatch {
    file: PathBuf,
    batches: AtomicUsize,
}

impl RestoreProgress for AlterAfterFirstBatch {
    fn planned(&self, _files: u64, _bytes: u64) {
        if self.batches.fetch_add(1, Ordering::SeqCst) == 1 {
            std::fs::write(&self.file, b"ALPHA BYTES").unwrap();
        }
    }
}

#[test]
fn verify_reads_linked_paths_too() {
    let env = Env::new();
    let (_, tree) = snapshot_of_links(&env, &[("a", b"alpha bytes"), ("b", b"alpha bytes")]);
    let repo = common::open_indexed(&env);
    let target = env.path("t");
    let progress = AlterAfterFirstBatch {
        file: target.join("a"),
        batches: AtomicUsize::new(0),
    };
    let options = RestoreOptions {
        verify: true,
        files_per_batch: Some(1),
        ..Default::default()
    };
    let err = restore::restore(&repo, &tree, &target, &options, &progress).unwrap_err();
    assert_eq!(progress.batches.load(Ordering::SeqCst), 2);
    let message = err.to_string();
    assert!(
        message.contains(&target.join("b").display().to_string()) && message.contains("differs"),
        "{message}"
    );

    // Unaltered, the same restore verifies both paths.
    let target = env.path("t2");
    let stats =
        restore::restore(&repo, &tree, &target, &options, &restore::NoRestoreProgress).unwrap();
    assert_eq!((stats.files, stats.verified), (2, 2));
}

/// Rewrites the file when backup reaches its second link, once the first link's content was read.
struct ChangeBetweenLinks {
    second: PathBuf,
    read: AtomicU64,
    changed: AtomicBool,
}

impl BackupProgress for ChangeBetweenLinks {
    fn bytes(&self, n: u64) {
        self.read.fetch_add(n, Ordering::SeqCst);
    }
    fn entry(&self, path: &Path) {
        if path != self.second || self.changed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Both links may be handled at once: give the first one's read a chance to come first.
        for _ in 0..500 {
            if self.read.load(Ordering::SeqCst) > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::write(&self.second, b"second version, longer").unwrap();
    }
}

#[test]
fn a_file_changed_between_two_links_is_stored_as_read_through_each() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a"), b"first version");
    std::fs::hard_link(src.join("a"), src.join("b")).unwrap();
    let repo = common::open_indexed(&env);
    let progress = ChangeBetweenLinks {
        second: src.join("b"),
        read: AtomicU64::new(0),
        changed: AtomicBool::new(false),
    };
    let sources = archive::normalize_sources(std::slice::from_ref(&src)).unwrap();
    let outcome = archive::backup(
        &repo,
        BackupSource::Paths(sources),
        &BackupOptions::default(),
        &progress,
    )
    .unwrap();
    assert!(progress.changed.load(Ordering::SeqCst));
    let target = env.path("t");
    let options = RestoreOptions {
        verify: true,
        ..Default::default()
    };
    restore::restore(
        &repo,
        &outcome.snapshot.tree_id(),
        &target,
        &options,
        &restore::NoRestoreProgress,
    )
    .unwrap();
    let restored = common::restored_path(&target, &src);
    // `b` was looked at after the change: its entry's status is the new one, so must its bytes be.
    assert_eq!(
        std::fs::read(restored.join("b")).unwrap(),
        b"second version, longer"
    );
    let a = std::fs::read(restored.join("a")).unwrap();
    assert!(
        a == b"first version" || a == b"second version, longer",
        "{}",
        String::from_utf8_lossy(&a)
    );
}
