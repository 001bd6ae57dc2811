//! Measures where the bytes of a night's dump go when its changed chunks are stored as deltas, and
//! what other rules would store.
//!
//! It chunks OLD and NEW as a stream backup does (16/64/256 KiB, a fixed seed, so figures differ
//! a little from a repository's) and pairs each chunk of NEW that OLD lacks with a base through
//! cairn's own `DeltaBases`: by place alone (a backup without the parent's anchors) and by
//! anchors (a backup with them). Each is stored as a backup stores it: a zstd-3 delta when
//! `delta::pays`, else whole. Then the alternatives cairn's rules rest on (FORMAT.md §6): looser
//! rules for when a delta pays, and "extra bases", the old chunks sharing the most anchors put
//! before the base in zstd's prefix (not in the format: a measure of what deltas against several
//! bases would add). Per-blob framing is counted (seal, pack header and index entries).
//!
//! `cargo run --release --example delta_study -- night1.sql night2.sql`

use std::collections::{HashMap, HashSet};

use cairn::archive::anchors::{Sketcher, VersionAnchors};
use cairn::archive::delta_bases::DeltaBases;
use cairn::chunker::ChunkerParams;
use cairn::format::tree::ContentItem;
use cairn::id::BlobId;

const KIB: usize = 1024;
const SEED: u64 = 0x5eed;
/// Seal (nonce and tag) plus the pack-header and index-file entries of a whole blob / a delta.
const WHOLE_FRAMING: usize = 40 + 45 + 45;
const DELTA_FRAMING: usize = 40 + 81 + 81;
/// What one more base would cost in the pack header and the index file.
const EXTRA_FRAMING: usize = 32 + 32;
/// The zstd level `cairn init` sets for streams: what a changed chunk stored whole costs.
const STREAM_LEVEL: i32 = 1;

/// Rules tried for "a delta pays": at most num/den of the chunk compressed alone.
const THRESHOLDS: [(usize, usize); 4] = [(1, 2), (2, 3), (3, 4), (9, 10)];
/// Extra bases tried.
const EXTRAS: [usize; 4] = [1, 2, 4, 8];

/// One version: its bytes, and each chunk's start, length and id.
struct Version {
    bytes: Vec<u8>,
    chunks: Vec<(usize, usize, BlobId)>,
}

impl Version {
    fn read(path: &str) -> Self {
        let bytes = std::fs::read(path).expect("read the dump");
        let params = ChunkerParams {
            min: 16 * KIB,
            avg: 64 * KIB,
            max: 256 * KIB,
            seed: SEED,
        };
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in params.chunks(&bytes[..]) {
            let c = c.expect("reading from memory");
            chunks.push((at, c.len(), BlobId(*blake3::hash(&c).as_bytes())));
            at += c.len();
        }
        Version { bytes, chunks }
    }

    fn chunk(&self, i: usize) -> &[u8] {
        let (at, len, _) = self.chunks[i];
        &self.bytes[at..at + len]
    }

    fn content(&self) -> Vec<ContentItem> {
        self.chunks
            .iter()
            .map(|&(_, len, id)| ContentItem::Data {
                id,
                len: len as u32,
            })
            .collect()
    }
}

fn delta_len(prefix: &[u8], target: &[u8]) -> usize {
    let mut frame = Vec::new();
    cairn::delta::compress(prefix, target, cairn::delta::DELTA_LEVEL, &mut frame).expect("zstd");
    frame.len()
}

/// Bytes a chunk costs stored against `prefix` (`bases` chunks) under `pays`, or whole.
fn stored(
    prefix: &[u8],
    bases: usize,
    target: &[u8],
    alone: usize,
    pays: impl Fn(usize) -> bool,
) -> usize {
    if bases == 0 {
        return alone;
    }
    let d = delta_len(prefix, target);
    if pays(d) {
        (d + DELTA_FRAMING + EXTRA_FRAMING * (bases - 1)).min(alone)
    } else {
        alone
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [old_path, new_path] = args.as_slice() else {
        eprintln!("usage: delta_study OLD NEW");
        std::process::exit(2);
    };
    let (old, new) = (Version::read(old_path), Version::read(new_path));
    let sketcher = Sketcher::new(SEED);
    let mut anchors = VersionAnchors::default();
    for i in 0..old.chunks.len() {
        anchors.push(&sketcher.anchors(old.chunk(i)));
    }
    let holders = anchors.first_holders();
    let ordinal: HashMap<BlobId, usize> = old
        .chunks
        .iter()
        .enumerate()
        .map(|(i, c)| (c.2, i))
        .collect();
    let content = old.content();
    let mut by_place = DeltaBases::new(&content, None).expect("OLD holds data");
    let mut by_anchors = DeltaBases::new(&content, Some(anchors)).expect("OLD holds data");

    let mut seen: HashSet<BlobId> = ordinal.keys().copied().collect();
    let (mut changed, mut whole, mut no_base) = (0, 0, 0);
    let (mut place_total, mut anchors_total, mut moved) = (0, 0, 0);
    let mut by_rule = [0usize; THRESHOLDS.len()];
    let mut by_extras = [0usize; EXTRAS.len()];
    for (i, &(_, len, id)) in new.chunks.iter().enumerate() {
        let target = new.chunk(i);
        let known = !seen.insert(id);
        let sketch = if known {
            Vec::new()
        } else {
            sketcher.anchors(target)
        };
        let place = by_place.propose(&[id], &[len], &[known], &[])[0];
        let chosen = by_anchors.propose(&[id], &[len], &[known], std::slice::from_ref(&sketch))[0];
        if known {
            continue;
        }
        changed += 1;
        let alone = zstd::bulk::compress(target, STREAM_LEVEL)
            .expect("zstd")
            .len()
            + WHOLE_FRAMING;
        whole += alone;
        let paid = |d: usize| cairn::delta::pays(d, target.len(), || Some(alone - WHOLE_FRAMING));
        let base_of = |b: Option<BlobId>| b.map(|b| old.chunk(ordinal[&b]));
        place_total += base_of(place).map_or(alone, |b| stored(b, 1, target, alone, paid));
        no_base += usize::from(place.is_none());
        moved += usize::from(chosen != place);
        let Some(base) = base_of(chosen) else {
            anchors_total += alone;
            for slot in by_rule.iter_mut().chain(by_extras.iter_mut()) {
                *slot += alone;
            }
            continue;
        };
        anchors_total += stored(base, 1, target, alone, paid);
        let d = delta_len(base, target);
        for ((num, den), slot) in THRESHOLDS.iter().zip(&mut by_rule) {
            let pays = d <= target.len() / 32 || d * den <= (alone - WHOLE_FRAMING) * num;
            *slot += if pays {
                (d + DELTA_FRAMING).min(alone)
            } else {
                alone
            };
        }
        // The other old chunks sharing the most anchors, before the base in the prefix.
        let mut hits: HashMap<u32, usize> = HashMap::new();
        for anchor in &sketch {
            if let Some(&o) = holders.get(anchor) {
                *hits.entry(o).or_default() += 1;
            }
        }
        let mut ranked: Vec<(u32, usize)> = hits
            .into_iter()
            .filter(|&(o, _)| Some(old.chunks[o as usize].2) != chosen)
            .collect();
        ranked.sort_by_key(|&(o, n)| (std::cmp::Reverse(n), o));
        for (&k, slot) in EXTRAS.iter().zip(&mut by_extras) {
            let mut prefix: Vec<u8> = Vec::new();
            for &(o, _) in ranked.iter().take(k) {
                prefix.extend_from_slice(old.chunk(o as usize));
            }
            let bases = 1 + ranked.len().min(k);
            prefix.extend_from_slice(base);
            *slot += stored(&prefix, bases, target, alone, paid);
        }
    }
    let mb = |n: usize| n as f64 / 1e6;
    println!(
        "OLD {} chunks, NEW {} chunks, {changed} of them changed: {:.2} MB stored whole",
        old.chunks.len(),
        new.chunks.len(),
        mb(whole)
    );
    println!(
        "base by place: {:.2} MB ({no_base} chunks past OLD's end have none)",
        mb(place_total)
    );
    println!(
        "base by anchors: {:.2} MB ({moved} chunks took another base)",
        mb(anchors_total)
    );
    for ((num, den), total) in THRESHOLDS.iter().zip(&by_rule) {
        println!(
            "  a delta pays at most {num}/{den} of the chunk alone: {:.2} MB",
            mb(*total)
        );
    }
    for (k, total) in EXTRAS.iter().zip(&by_extras) {
        println!("  with up to {k} extra bases: {:.2} MB", mb(*total));
    }
}
