//! The per-chunk hot path of a backup: FastCDC chunking, keyed BLAKE3 ids, zstd + XChaCha20-Poly1305
//! sealing, opening, the AEAD alone, and the three chained over 32 MiB (single thread; the archiver
//! runs chunks in parallel, so multiply by cores for an upper bound).
//!
//! `cargo bench --bench hot_path` (about a minute); one group: `cargo bench --bench hot_path -- hash`.

use std::hint::black_box;
use std::time::Duration;

use cairn::blob::{open_blob, seal_blob};
use cairn::chunker::ChunkerParams;
use cairn::crypto::MasterKey;
use cairn::format::pack::BlobEntry;
use cairn::BlobType;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};

const MIB: usize = 1024 * 1024;
const STREAM_LEN: usize = 32 * MIB;
const CHUNK_LEN: usize = MIB;
const ZSTD_LEVEL: i32 = 3;

/// The repository defaults of FORMAT.md §5.
const PARAMS: ChunkerParams = ChunkerParams {
    min: 512 * 1024,
    avg: 1024 * 1024,
    max: 8 * 1024 * 1024,
    seed: 1,
};

fn key() -> MasterKey {
    MasterKey::from_bytes(&[7u8; 64])
}

/// Incompressible bytes (xorshift64).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Text-like bytes: lines of words from a small vocabulary and numbers, roughly as compressible
/// as source code or logs (zstd -3 gets about 3-4x).
fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "backup", "of", "a", "file", "is", "split", "into", "chunks", "and", "each",
        "chunk", "sealed", "with", "its", "id", "pack", "index", "tree", "snapshot", "error",
        "warning", "info", "debug", "request", "user", "time", "value", "return", "fn", "let",
        "struct", "impl", "match", "Some", "None", "Ok", "Err", "self", "=>", "{", "}", "(", ")",
    ];
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        let words = 4 + next() % 10;
        for _ in 0..words {
            let r = next();
            if r % 7 == 0 {
                out.extend_from_slice((r % 100_000).to_string().as_bytes());
            } else {
                out.extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
            }
            out.push(b' ');
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, bytes: usize) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(bytes as u64));
}

fn entry_for(key: &MasterKey, plain: &[u8], sealed: &[u8]) -> BlobEntry {
    BlobEntry {
        blob_type: BlobType::Data,
        id: key.blob_id(plain),
        offset: 10,
        length: sealed.len() as u32,
        raw_length: plain.len() as u32,
        delta: None,
    }
}

fn bench_chunk(c: &mut Criterion) {
    let data = random_bytes(STREAM_LEN, 1);
    let mut group = c.benchmark_group("chunk");
    configure(&mut group, STREAM_LEN);
    // Iterations of tens of milliseconds: the same count per sample keeps the run short.
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("fastcdc_32MiB_random", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for chunk in PARAMS.chunks(black_box(&data[..])) {
                n += chunk.unwrap().len();
            }
            assert_eq!(n, STREAM_LEN);
        })
    });
    group.finish();
}

fn bench_hash(c: &mut Criterion) {
    let key = key();
    let chunk = random_bytes(CHUNK_LEN, 2);
    let mut group = c.benchmark_group("hash");
    configure(&mut group, CHUNK_LEN);
    group.bench_function("blake3_keyed_1MiB", |b| {
        b.iter(|| key.blob_id(black_box(&chunk)))
    });
    group.finish();
}

fn inputs() -> [(&'static str, Vec<u8>); 2] {
    [
        ("random_1MiB", random_bytes(CHUNK_LEN, 3)),
        ("text_1MiB", text_bytes(CHUNK_LEN, 4)),
    ]
}

fn bench_compress_seal(c: &mut Criterion) {
    let key = key();
    let mut group = c.benchmark_group("compress_seal");
    configure(&mut group, CHUNK_LEN);
    for (name, plain) in inputs() {
        let id = key.blob_id(&plain);
        let sealed = seal_blob(&key, BlobType::Data, &id, &plain, ZSTD_LEVEL).unwrap();
        eprintln!(
            "compress_seal/{name}: sealed {} bytes ({:.2}x)",
            sealed.len(),
            plain.len() as f64 / sealed.len() as f64
        );
        group.bench_function(name, |b| {
            b.iter(|| seal_blob(&key, BlobType::Data, &id, black_box(&plain), ZSTD_LEVEL).unwrap())
        });
    }
    group.finish();
}

fn bench_open(c: &mut Criterion) {
    let key = key();
    let mut group = c.benchmark_group("open");
    // Throughput counts plaintext bytes recovered, as for sealing.
    configure(&mut group, CHUNK_LEN);
    for (name, plain) in inputs() {
        let id = key.blob_id(&plain);
        let sealed = seal_blob(&key, BlobType::Data, &id, &plain, ZSTD_LEVEL).unwrap();
        let entry = entry_for(&key, &plain, &sealed);
        assert_eq!(open_blob(&key, &entry, &sealed, None).unwrap(), plain);
        group.bench_function(name, |b| {
            b.iter(|| open_blob(&key, &entry, black_box(&sealed), None).unwrap())
        });
    }
    group.finish();
}

/// XChaCha20-Poly1305 alone (no compression): what `src/crypto/xchacha.rs` costs per byte.
fn bench_aead(c: &mut Criterion) {
    let key = key();
    let aad = [1u8; 46];
    for len in [64 * 1024, CHUNK_LEN] {
        let mut group = c.benchmark_group("aead");
        configure(&mut group, len);
        let plain = random_bytes(len, 7);
        let sealed = key.seal(&aad, &plain).unwrap();
        let kib = len / 1024;
        group.bench_function(format!("seal_{kib}KiB"), |b| {
            b.iter(|| key.seal(&aad, black_box(&plain)).unwrap())
        });
        group.bench_function(format!("open_{kib}KiB"), |b| {
            b.iter(|| key.open(0, &aad, black_box(&sealed), "bench").unwrap())
        });
        group.finish();
    }
}

fn bench_pipeline(c: &mut Criterion) {
    let key = key();
    let mut group = c.benchmark_group("pipeline");
    configure(&mut group, STREAM_LEN);
    group.sampling_mode(SamplingMode::Flat);
    for (name, data) in [
        ("chunk_hash_seal_32MiB_random", random_bytes(STREAM_LEN, 5)),
        ("chunk_hash_seal_32MiB_text", text_bytes(STREAM_LEN, 6)),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut sealed_bytes = 0usize;
                for chunk in PARAMS.chunks(black_box(&data[..])) {
                    let chunk = chunk.unwrap();
                    let id = key.blob_id(&chunk);
                    sealed_bytes += seal_blob(&key, BlobType::Data, &id, &chunk, ZSTD_LEVEL)
                        .unwrap()
                        .len();
                }
                sealed_bytes
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_chunk,
    bench_hash,
    bench_compress_seal,
    bench_open,
    bench_aead,
    bench_pipeline
);
criterion_main!(benches);
