//! Measures how chunker parameters trade dedup of day-to-day changes against index size and speed.
//!
//! For each (min, avg, max) it chunks OLD and NEW with cairn's chunker, then counts the chunks of
//! NEW that OLD lacks (what a backup of NEW after OLD stores) and their zstd-3 size, the number of
//! chunks (each costs one index entry of 45 bytes in an index file plus a cache row) and the
//! chunking speed. Used to choose the repository defaults recorded in FORMAT.md.
//!
//! `cargo run --release --example chunking_study -- day1.sql day2.sql`
//! (dumps from `benches/gen_dump.py`, or two real `pg_dump` outputs a day apart).

use std::collections::HashSet;
use std::time::Instant;

use cairn::chunker::ChunkerParams;

const KIB: usize = 1024;
const CANDIDATES: [(usize, usize, usize); 7] = [
    (16 * KIB, 64 * KIB, 256 * KIB),
    (32 * KIB, 128 * KIB, 512 * KIB),
    (64 * KIB, 256 * KIB, 1024 * KIB),
    (128 * KIB, 512 * KIB, 2048 * KIB),
    (256 * KIB, 1024 * KIB, 4096 * KIB),
    (512 * KIB, 1024 * KIB, 8192 * KIB),
    (1024 * KIB, 2048 * KIB, 8192 * KIB),
];

struct Outcome {
    chunks_old: usize,
    chunks_new: usize,
    new_raw: u64,
    new_stored: u64,
    mib_per_sec: f64,
}

fn study(params: ChunkerParams, old: &[u8], new: &[u8]) -> Outcome {
    let started = Instant::now();
    let mut known = HashSet::new();
    let mut chunks_old = 0;
    for chunk in params.chunks(old) {
        let chunk = chunk.expect("reading from memory");
        known.insert(*blake3::hash(&chunk).as_bytes());
        chunks_old += 1;
    }
    let mut chunks_new = 0;
    let mut fresh = Vec::new();
    for chunk in params.chunks(new) {
        let chunk = chunk.expect("reading from memory");
        chunks_new += 1;
        if known.insert(*blake3::hash(&chunk).as_bytes()) {
            fresh.push(chunk);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let new_raw = fresh.iter().map(|c| c.len() as u64).sum();
    let new_stored = fresh
        .iter()
        .map(|c| zstd::bulk::compress(c, 3).expect("zstd").len() as u64)
        .sum();
    Outcome {
        chunks_old,
        chunks_new,
        new_raw,
        new_stored,
        mib_per_sec: (old.len() + new.len()) as f64 / (1 << 20) as f64 / secs,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [old_path, new_path] = args.as_slice() else {
        eprintln!("usage: chunking_study OLD NEW");
        std::process::exit(2);
    };
    let old = std::fs::read(old_path).expect("read OLD");
    let new = std::fs::read(new_path).expect("read NEW");
    let mib = |n: u64| n as f64 / (1 << 20) as f64;
    println!(
        "OLD {:.1} MiB, NEW {:.1} MiB; all of NEW through zstd-3: {:.1} MiB",
        mib(old.len() as u64),
        mib(new.len() as u64),
        mib(zstd::bulk::compress(&new, 3).expect("zstd").len() as u64)
    );
    println!("| min / avg / max | chunks OLD+NEW | NEW not in OLD (raw) | stored (zstd-3) | index entries bytes | chunk+hash MiB/s |");
    println!("|---|---|---|---|---|---|");
    for (min, avg, max) in CANDIDATES {
        let params = ChunkerParams {
            min,
            avg,
            max,
            seed: 0x5eed,
        };
        let o = study(params, &old, &new);
        println!(
            "| {} / {} / {} KiB | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB | {:.0} |",
            min / KIB,
            avg / KIB,
            max / KIB,
            o.chunks_old + o.chunks_new,
            mib(o.new_raw),
            mib(o.new_stored),
            ((o.chunks_old + o.chunks_new) * 45) as f64 / 1024.0,
            o.mib_per_sec
        );
    }
}
