//! Measures where the bytes of a night's dump go when its changed chunks are stored as deltas, and
//! how much more a delta would save with more than one base.
//!
//! It chunks OLD and NEW as a stream backup does (16/64/256 KiB), pairs each chunk of NEW that OLD
//! lacks with its positional base (the chunk at the same distance after the last shared chunk,
//! as a backup without the parent's anchors does), and stores it: a zstd-3 delta when that pays,
//! else whole. Then it tries the alternatives cairn's rules rest on (FORMAT.md §6): one base
//! chosen by anchors (sampled content hashes, an anchor wherever the gear hash's top bits are
//! zero), as a backup does, under several rules for when a delta pays; and "extra bases", the old
//! chunks sharing the most anchors given to zstd as a longer prefix (not in the format: a measure
//! of what deltas against several bases would add). Per-blob framing is counted (seal, pack header
//! and index entries). The chunker seed is fixed, so figures differ a little from a repository's.
//!
//! `cargo run --release --example delta_study -- night1.sql night2.sql`

use std::collections::{HashMap, HashSet};

use cairn::chunker::ChunkerParams;

const KIB: usize = 1024;
/// Seal (nonce and tag) plus the pack-header and index-file entries of a whole blob / a delta.
const WHOLE_FRAMING: usize = 40 + 45 + 45;
const DELTA_FRAMING: usize = 40 + 81 + 81;
/// What one more base costs in the pack header and the index file.
const EXTRA_FRAMING: usize = 32 + 32;
/// Thresholds tried for "a delta pays": at most num/den of the chunk compressed alone.
const THRESHOLDS: [(usize, usize); 4] = [(1, 2), (2, 3), (3, 4), (9, 10)];

fn gear() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for slot in &mut table {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *slot = x;
    }
    table
}

/// Anchors of `data`: the gear hash (a window of the last 32 bytes) where its top `bits` are zero.
fn anchors(data: &[u8], bits: u32, gear: &[u64; 256], mut each: impl FnMut(u64)) {
    let mask = !(u64::MAX >> bits);
    let mut h = 0u64;
    for (i, &b) in data.iter().enumerate() {
        h = (h << 2).wrapping_add(gear[b as usize]);
        if i >= 31 && h & mask == 0 {
            each(h);
        }
    }
}

fn chunk(params: ChunkerParams, data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    for c in params.chunks(data) {
        let c = c.expect("reading from memory");
        out.push((at, c.len()));
        at += c.len();
    }
    out
}

fn delta_len(prefix: &[u8], target: &[u8]) -> usize {
    let mut frame = Vec::new();
    cairn::delta::compress(prefix, target, cairn::delta::DELTA_LEVEL, &mut frame).expect("zstd");
    frame.len()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [old_path, new_path] = args.as_slice() else {
        eprintln!("usage: delta_study OLD NEW");
        std::process::exit(2);
    };
    let old = std::fs::read(old_path).expect("read OLD");
    let new = std::fs::read(new_path).expect("read NEW");
    let params = ChunkerParams {
        min: 16 * KIB,
        avg: 64 * KIB,
        max: 256 * KIB,
        seed: 0x5eed,
    };
    let old_chunks = chunk(params, &old);
    let new_chunks = chunk(params, &new);
    let slice = |data: &[u8], (at, len): (usize, usize)| data[at..at + len].to_vec();
    let old_ids: HashMap<[u8; 32], usize> = old_chunks
        .iter()
        .enumerate()
        .map(|(i, &c)| (*blake3::hash(&slice(&old, c)).as_bytes(), i))
        .collect();
    let gear = gear();
    for bits in [10u32, 12] {
        let mut anchor_map: HashMap<u64, u32> = HashMap::new();
        for (i, &c) in old_chunks.iter().enumerate() {
            anchors(&old[c.0..c.0 + c.1], bits, &gear, |h| {
                anchor_map.entry(h).or_insert(i as u32);
            });
        }
        println!(
            "anchors 1/{}: {} in OLD ({} chunks)",
            1 << bits,
            anchor_map.len(),
            old_chunks.len()
        );
        study(
            &old,
            &new,
            &old_chunks,
            &new_chunks,
            &old_ids,
            &anchor_map,
            bits,
            &gear,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn study(
    old: &[u8],
    new: &[u8],
    old_chunks: &[(usize, usize)],
    new_chunks: &[(usize, usize)],
    old_ids: &HashMap<[u8; 32], usize>,
    anchor_map: &HashMap<u64, u32>,
    bits: u32,
    gear: &[u64; 256],
) {
    // Positional pairing, as archive::delta_bases does it.
    let old_end = |i: usize| old_chunks[i].0 + old_chunks[i].1;
    let nearest = |offset: usize| -> Option<usize> {
        if offset >= old.len() {
            return None;
        }
        let after = old_chunks.partition_point(|c| c.0 <= offset);
        match (after.checked_sub(1), old_chunks.get(after)) {
            (Some(b), Some(a)) => Some(if offset - old_chunks[b].0 <= a.0 - offset {
                b
            } else {
                after
            }),
            (Some(b), None) => Some(b),
            (None, Some(_)) => Some(after),
            (None, None) => None,
        }
    };
    let ks = [0usize, 1, 2, 4, 8];
    let mut totals = vec![0usize; ks.len()];
    // One base, chosen by shared anchors (the positional one when no anchor is shared).
    let mut by_anchor = 0usize;
    let mut by_anchor_moved = 0usize;
    // The same, taking the delta whenever it is smaller at all.
    let mut by_anchor_smaller = 0usize;
    let mut by_threshold = [0usize; THRESHOLDS.len()];
    let mut whole_total = 0;
    let (mut changed, mut no_base, mut not_paid) = (0, 0, 0);
    let (mut no_base_bytes, mut not_paid_bytes, mut paid_bytes) = (0, 0, 0);
    let mut pin = (0usize, 0usize);
    let mut seen = HashSet::new();
    for &(at, len) in new_chunks {
        let target = &new[at..at + len];
        let id = *blake3::hash(target).as_bytes();
        if let Some(&i) = old_ids.get(&id) {
            pin = (at + len, old_end(i));
            continue;
        }
        if !seen.insert(id) {
            continue;
        }
        changed += 1;
        let alone = zstd::bulk::compress(target, 3).expect("zstd").len() + WHOLE_FRAMING;
        whole_total += alone;
        let base = nearest(pin.1 + (at - pin.0));
        // Old chunks sharing anchors with the target, most shared first.
        let mut hits: HashMap<u32, usize> = HashMap::new();
        anchors(target, bits, gear, |h| {
            if let Some(&c) = anchor_map.get(&h) {
                *hits.entry(c).or_default() += 1;
            }
        });
        let mut ranked: Vec<(u32, usize)> = hits
            .into_iter()
            .filter(|&(c, _)| Some(c as usize) != base)
            .collect();
        ranked.sort_by_key(|&(c, n)| (std::cmp::Reverse(n), c));
        {
            let mut all: HashMap<u32, usize> = HashMap::new();
            anchors(target, bits, gear, |h| {
                if let Some(&c) = anchor_map.get(&h) {
                    *all.entry(c).or_default() += 1;
                }
            });
            let top = all
                .into_iter()
                .max_by_key(|&(c, n)| (n, Some(c as usize) == base, std::cmp::Reverse(c)))
                .map(|(c, _)| c as usize)
                .or(base);
            by_anchor_moved += usize::from(top.is_some() && top != base);
            by_anchor += match top {
                Some(b) => {
                    let d = delta_len(&old[old_chunks[b].0..old_end(b)], target);
                    by_anchor_smaller += (d + DELTA_FRAMING).min(alone);
                    for (slot, (num, den)) in THRESHOLDS.iter().enumerate() {
                        by_threshold[slot] +=
                            if d <= target.len() / 32 || d * den <= (alone - WHOLE_FRAMING) * num {
                                d + DELTA_FRAMING
                            } else {
                                alone
                            };
                    }
                    if cairn::delta::pays(d, target, 3) {
                        d + DELTA_FRAMING
                    } else {
                        alone
                    }
                }
                None => {
                    by_anchor_smaller += alone;
                    for slot in by_threshold.iter_mut() {
                        *slot += alone;
                    }
                    alone
                }
            };
        }
        let positional =
            base.map(|b| delta_len(&old[old_chunks[b].0..old_end(b)], target) + DELTA_FRAMING);
        let current = match positional {
            Some(d) if cairn::delta::pays(d - DELTA_FRAMING, target, 3) => {
                paid_bytes += d;
                d
            }
            Some(_) => {
                not_paid += 1;
                not_paid_bytes += alone;
                alone
            }
            None => {
                no_base += 1;
                no_base_bytes += alone;
                alone
            }
        };
        totals[0] += current;
        for (slot, &k) in ks.iter().enumerate().skip(1) {
            // Extras first, the positional base last (nearest to the target: cheapest offsets).
            let mut prefix = Vec::new();
            let mut bases = 0;
            for &(c, _) in ranked.iter().take(k) {
                let c = c as usize;
                prefix.extend_from_slice(&old[old_chunks[c].0..old_end(c)]);
                bases += 1;
            }
            if let Some(b) = base {
                prefix.extend_from_slice(&old[old_chunks[b].0..old_end(b)]);
                bases += 1;
            }
            let best = if bases == 0 {
                alone
            } else {
                let d = delta_len(&prefix, target);
                let framed = d + DELTA_FRAMING + EXTRA_FRAMING * (bases - 1);
                if cairn::delta::pays(d, target, 3) {
                    framed.min(alone)
                } else {
                    alone
                }
            };
            totals[slot] += best;
        }
    }
    let mb = |n: usize| n as f64 / 1e6;
    println!(
        "changed chunks {changed}: all whole {:.2} MB; no positional base {no_base} ({:.2} MB whole), \
         delta did not pay {not_paid} ({:.2} MB whole), deltas {:.2} MB",
        mb(whole_total),
        mb(no_base_bytes),
        mb(not_paid_bytes),
        mb(paid_bytes)
    );
    println!(
        "  one base chosen by anchors: {:.2} MB ({by_anchor_moved} chunks took another base than the positional one)",
        mb(by_anchor)
    );
    println!(
        "  one base chosen by anchors, delta whenever smaller: {:.2} MB",
        mb(by_anchor_smaller)
    );
    for ((num, den), total) in THRESHOLDS.iter().zip(&by_threshold) {
        println!(
            "  one base chosen by anchors, delta when at most {num}/{den} of alone: {:.2} MB",
            mb(*total)
        );
    }
    for (k, total) in ks.iter().zip(&totals) {
        println!("  up to {k} extra bases: {:.2} MB", mb(*total));
    }
}
