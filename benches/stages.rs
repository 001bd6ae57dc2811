//! The stages around the per-chunk hot path: pack writing, index lookups (hit and miss), tree
//! encoding and decoding, restore's read planning, and an end-to-end backup and restore of a generated tree through the
//! library (a local repository in a temporary directory, page cache warm).
//!
//! `cargo bench --bench stages` (about two minutes); one group: `cargo bench --bench stages -- index`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use cairn::archive::{self, BackupOptions, BackupSource, NoProgress};
use cairn::backend::{Backend, LocalBackend};
use cairn::crypto::{KdfParams, MasterKey};
use cairn::format::config::Config;
use cairn::format::index_file::{IndexFile, PackEntries};
use cairn::format::pack::BlobEntry;
use cairn::format::tree::{ContentItem, Node, NodeKind, Timestamp, Tree};
use cairn::index::{BlobLocation, Index};
use cairn::pack::PackWriter;
use cairn::restore::{self, plan, NoRestoreProgress, RestoreOptions};
use cairn::{BlobId, BlobType, PackId, Repository};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

const MIB: usize = 1024 * 1024;
const INDEX_ENTRIES: u32 = 200_000;

fn key() -> MasterKey {
    MasterKey::from_bytes(&[7u8; 64])
}

/// A blob id that is the same for the same `n` (not a real keyed hash; only its bytes matter here).
fn fake_id(n: u32) -> BlobId {
    BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn bench_pack_writing(c: &mut Criterion) {
    let key = key();
    // 1 MiB sealed blobs into the default 32 MiB packs: the copy and the sealed header.
    let sealed = vec![0x5au8; MIB];
    let mut group = c.benchmark_group("pack");
    group.throughput(Throughput::Bytes(32 * MIB as u64));
    group.sample_size(20);
    group.bench_function("write 32 MiB pack", |b| {
        b.iter(|| {
            let mut writer = PackWriter::new(BlobType::Data, 32 * MIB);
            let mut finished = None;
            for n in 0..32 {
                if let Some(pack) = writer
                    .add(&key, fake_id(n), MIB as u32, None, &sealed)
                    .unwrap()
                {
                    finished = Some(pack);
                }
            }
            black_box(finished.or_else(|| writer.finish(&key).unwrap()))
        })
    });
    group.finish();
}

fn filled_index(dir: &Path) -> Index {
    let backend = LocalBackend::new(dir.join("repo"));
    backend.create().unwrap();
    let index = Index::open(&dir.join("cache"), &backend, &key()).unwrap();
    // 200k entries in packs of 1000 blobs, as a 200 GB repository of 1 MiB chunks would hold.
    let packs = (0..INDEX_ENTRIES / 1000)
        .map(|p| PackEntries {
            pack: PackId(*blake3::hash(&p.to_be_bytes()).as_bytes()),
            blobs: (0..1000)
                .map(|i| BlobEntry {
                    blob_type: BlobType::Data,
                    id: fake_id(p * 1000 + i),
                    offset: i * 4096,
                    length: 4096,
                    raw_length: 4000,
                    delta: None,
                })
                .collect(),
        })
        .collect();
    let file = IndexFile {
        supersedes: Vec::new(),
        packs,
    };
    index.insert_files(&[("bench".to_string(), file)]).unwrap();
    index
}

fn bench_index(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let index = filled_index(dir.path());
    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 lookups, hit", |b| {
        let mut n = 0u32;
        b.iter(|| {
            for _ in 0..1000 {
                n = (n + 7919) % INDEX_ENTRIES;
                black_box(index.lookup(&fake_id(n)).unwrap().unwrap());
            }
        })
    });
    group.bench_function("1000 lookups, miss", |b| {
        let mut n = INDEX_ENTRIES;
        b.iter(|| {
            for _ in 0..1000 {
                n += 1;
                assert!(index.lookup(&fake_id(n)).unwrap().is_none());
            }
        })
    });
    group.finish();
}

/// A directory of 1000 files with two chunks each, as a source tree would give.
fn sample_tree() -> Tree {
    let nodes = (0..1000u32)
        .map(|i| {
            let mut node = Node::new(format!("file-{i:05}.txt").into_bytes(), NodeKind::File);
            node.mode = 0o644;
            node.user = b"www-data".to_vec();
            node.group = b"www-data".to_vec();
            node.mtime = Timestamp {
                secs: 1_763_600_000 + i64::from(i),
                nanos: i * 1000,
            };
            node.ctime = node.mtime;
            node.size = 2 * 65_536;
            node.inode = u64::from(i) + 1000;
            node.links = 1;
            node.content = vec![
                ContentItem::Data {
                    id: fake_id(2 * i),
                    len: 65_536,
                },
                ContentItem::Data {
                    id: fake_id(2 * i + 1),
                    len: 65_536,
                },
            ];
            node
        })
        .collect();
    Tree { nodes }
}

fn bench_tree(c: &mut Criterion) {
    let tree = sample_tree();
    let bytes = tree.encode().unwrap();
    let mut group = c.benchmark_group("tree");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("encode 1000 nodes", |b| {
        b.iter(|| black_box(tree.encode().unwrap()))
    });
    group.bench_function("decode 1000 nodes", |b| {
        b.iter(|| black_box(Tree::decode(&bytes).unwrap()))
    });
    group.finish();
}

/// Restore's read plan for 100k files (a system tree's worth) of one to three chunks, a tenth of the
/// chunks shared between files, spread over 2,000 packs: dedup, grouping by pack, range merging.
fn bench_restore_plan(c: &mut Criterion) {
    const FILES: u32 = 100_000;
    let files: Vec<Vec<ContentItem>> = (0..FILES)
        .map(|f| {
            (0..1 + f % 3)
                .map(|k| {
                    let n = f * 3 + k;
                    ContentItem::Data {
                        id: fake_id(if n % 10 == 0 { n % 1000 } else { n }),
                        len: 4000,
                    }
                })
                .collect()
        })
        .collect();
    let locate = |ids: &[BlobId]| -> cairn::Result<Vec<cairn::Result<BlobLocation>>> {
        Ok(ids
            .iter()
            .map(|id| {
                let n = u32::from_le_bytes(id.0[..4].try_into().unwrap());
                Ok(BlobLocation {
                    pack: PackId(*blake3::hash(&(n % 2000).to_le_bytes()).as_bytes()),
                    entry: BlobEntry {
                        blob_type: BlobType::Data,
                        id: *id,
                        offset: (n / 2000) % 8000 * 4096,
                        length: 4096,
                        raw_length: 4000,
                        delta: None,
                    },
                })
            })
            .collect())
    };
    let mut group = c.benchmark_group("restore plan");
    group.throughput(Throughput::Elements(u64::from(FILES)));
    group.sample_size(20);
    group.bench_function("plan 100k files", |b| {
        b.iter(|| {
            black_box(
                plan::plan_reads(files.iter().map(Vec::as_slice), locate, |f| f.to_string())
                    .unwrap(),
            )
        })
    });
    group.finish();
}

/// 600 files of mixed sizes (1 KiB to 1 MiB), text-like and random, 64 MiB in all.
fn generate_source(root: &Path) -> u64 {
    let mut total = 0;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..600u64 {
        let dir = root.join(format!("d{:02}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        let len = if i % 10 == 0 {
            MIB
        } else {
            1024 + (i as usize * 7919) % 100_000
        };
        let mut data = Vec::with_capacity(len + 8);
        while data.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 2 == 0 {
                data.extend_from_slice(&x.to_le_bytes());
            } else {
                data.extend_from_slice(format!("line {} value {}\n", x % 1000, x % 97).as_bytes());
            }
        }
        data.truncate(len);
        std::fs::write(dir.join(format!("f{i:04}")), &data).unwrap();
        total += len as u64;
    }
    total
}

fn bench_end_to_end(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let bytes = generate_source(&source);
    let open_fresh = |name: &str| {
        let repo_dir = dir.path().join(name);
        let _ = std::fs::remove_dir_all(&repo_dir);
        let _ = std::fs::remove_dir_all(dir.path().join("cache"));
        Repository::init(
            Box::new(LocalBackend::new(&repo_dir)),
            b"bench",
            KdfParams::MINIMUM,
            Config::generate().unwrap(),
            &dir.path().join("cache"),
        )
        .unwrap()
        .into_indexed()
        .unwrap()
    };
    let backup = |repo: &cairn::IndexedRepository| {
        let sources = archive::normalize_sources(std::slice::from_ref(&source)).unwrap();
        archive::backup(
            repo,
            BackupSource::Paths(sources),
            &BackupOptions::default(),
            &NoProgress,
        )
        .unwrap()
    };
    let mut group = c.benchmark_group("end to end");
    group.throughput(Throughput::Bytes(bytes));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("backup 64 MiB tree", |b| {
        b.iter(|| black_box(backup(&open_fresh("repo"))))
    });
    let repo = open_fresh("restore-repo");
    let tree = backup(&repo).snapshot.tree_id();
    group.bench_function("restore 64 MiB tree", |b| {
        b.iter(|| {
            let target = dir.path().join("target");
            let _ = std::fs::remove_dir_all(&target);
            black_box(
                restore::restore(
                    &repo,
                    &tree,
                    &target,
                    &RestoreOptions::default(),
                    &NoRestoreProgress,
                )
                .unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(
    stages,
    bench_pack_writing,
    bench_index,
    bench_tree,
    bench_restore_plan,
    bench_end_to_end
);
criterion_main!(stages);
