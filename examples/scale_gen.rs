//! Makes a repository of N chunks cheaply, for the scale harness (`benches/scale/run.sh`).
//!
//! Backing up N real chunks would take N × 64 KiB of input; instead this stores N tiny data blobs
//! (24 bytes each, unique) through the library's own blob saver, so they are compressed, sealed,
//! packed and indexed exactly as a backup's are, and writes one snapshot whose tree holds one file
//! per blob, 1,000 entries per directory, three levels deep (`/scale/aNNN/bNNN/fNNN`). Every path
//! that reads packs, index files, trees and snapshots then runs on the real bytes.
//!
//! Usage: `scale_gen REPO CHUNKS [SEED]`, with `CAIRN_PASSWORD` set and the repository made by
//! `cairn init`. A second run with another SEED adds N more chunks in a second snapshot.

use std::path::PathBuf;

use cairn::format::lifecycle::LeaseKind;
use cairn::format::snapshot::Summary;
use cairn::format::tree::{ContentItem, Node, NodeKind, Timestamp, Tree};
use cairn::repo::lease::HeldLease;
use cairn::{BlobId, BlobType, LocalBackend, Repository, Snapshot};

const FANOUT: u64 = 1000;
const BATCH: u64 = 10_000;

fn main() -> cairn::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: scale_gen REPO CHUNKS [SEED] (CAIRN_PASSWORD set)");
        std::process::exit(2);
    }
    let repo_path = PathBuf::from(&args[1]);
    let chunks: u64 = args[2].parse().expect("CHUNKS is a number");
    let seed: u64 = args
        .get(3)
        .map_or(1, |s| s.parse().expect("SEED is a number"));
    let password = std::env::var("CAIRN_PASSWORD").expect("CAIRN_PASSWORD is set");
    let cache = std::env::var_os("CAIRN_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("cairn-scale-cache"));
    let repo = Repository::open(
        Box::new(LocalBackend::new(&repo_path)),
        password.as_bytes(),
        &cache,
    )?
    .into_indexed()?;
    let lease = HeldLease::acquire(repo.repo(), LeaseKind::Backup)?;
    let started = std::time::Instant::now();
    let root = lease.hold_while(repo.repo(), |_| {
        let saver = repo.saver();
        let mut leaves: Vec<Node> = Vec::new();
        let mut middles: Vec<Node> = Vec::new();
        let mut tops: Vec<Node> = Vec::new();
        let save_dir = |nodes: &mut Vec<Node>, name: String| -> cairn::Result<Node> {
            let mut tree = Tree {
                nodes: std::mem::take(nodes),
            };
            tree.sort();
            let id = saver.save(BlobType::Tree, &tree.encode()?)?.0;
            let mut dir = Node::new(name.into_bytes(), NodeKind::Dir);
            dir.mode = 0o755;
            dir.subtree = Some(id);
            Ok(dir)
        };
        let mut next = 0u64;
        while next < chunks {
            let end = (next + BATCH).min(chunks);
            let blobs: Vec<[u8; 24]> = (next..end).map(|i| content(seed, i)).collect();
            let ids = saver.save_many(BlobType::Data, &blobs, 3)?;
            for (i, id) in (next..end).zip(ids) {
                leaves.push(file(i, id));
                if leaves.len() as u64 == FANOUT || i + 1 == chunks {
                    let b = (i / FANOUT) % FANOUT;
                    middles.push(save_dir(&mut leaves, format!("b{b:03}"))?);
                    if middles.len() as u64 == FANOUT || i + 1 == chunks {
                        let a = i / (FANOUT * FANOUT);
                        tops.push(save_dir(&mut middles, format!("a{a:03}"))?);
                    }
                }
            }
            next = end;
            if next % 1_000_000 == 0 || next == chunks {
                eprintln!("{next} chunks in {:.1} s", started.elapsed().as_secs_f64());
            }
        }
        let scale = save_dir(&mut tops, "scale".into())?;
        let root = save_dir(&mut vec![scale], String::new())?;
        saver.finish()?;
        Ok(root.subtree.expect("a directory has a subtree"))
    })?;
    let snapshot = Snapshot {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        host: format!("scale-{seed}"),
        username: "scale".into(),
        paths: vec!["/scale".into()],
        tags: vec!["scale".into()],
        tree: root.to_hex(),
        parent: None,
        program_version: format!("cairn {} scale_gen", env!("CARGO_PKG_VERSION")),
        summary: Summary {
            files_new: chunks,
            bytes_added: chunks * 24,
            blobs_added: chunks,
            total_bytes: Some(chunks * 24),
            duration_secs: started.elapsed().as_secs_f64(),
            ..Default::default()
        },
        repaired_from: None,
        postgres: None,
        job: None,
    };
    let id = repo.repo().save_snapshot(&snapshot)?;
    println!("snapshot {} with {chunks} chunks", id.to_hex());
    Ok(())
}

/// Chunk `i` of run `seed`: unique, so every one is stored.
fn content(seed: u64, i: u64) -> [u8; 24] {
    let mut c = [0u8; 24];
    c[..8].copy_from_slice(&seed.to_le_bytes());
    c[8..16].copy_from_slice(&i.to_le_bytes());
    c[16..].copy_from_slice(b"cairn-sc");
    c
}

fn file(i: u64, id: BlobId) -> Node {
    let mut node = Node::new(format!("f{:03}", i % FANOUT).into_bytes(), NodeKind::File);
    node.mode = 0o644;
    node.size = 24;
    node.links = 1;
    node.mtime = Timestamp {
        secs: 1_700_000_000,
        nanos: 0,
    };
    node.ctime = node.mtime;
    node.content = vec![ContentItem::Data { id, len: 24 }];
    node
}
