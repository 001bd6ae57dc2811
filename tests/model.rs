//! The model-based lifecycle check (`cairn::model`, shared with the `model` fuzz target) over seeded
//! random runs: backups, forgets, prunes with no grace period, lost packs, crashes and cold caches on
//! an in-memory repository; after every step each kept snapshot restores exactly as the model says
//! or is named damaged by check. `CAIRN_MODEL_CASES=N` runs N seeds instead of the CI count,
//! `CAIRN_MODEL_STEPS=N` makes each run longer.

use cairn::model;

/// Seeds run in CI; each run is `STEPS` steps.
const CI_CASES: u64 = 12;
const CI_STEPS: usize = 12;

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: give a whole number")),
        Err(_) => default,
    }
}

fn run_seeds(seeds: impl Iterator<Item = u64>) {
    let steps = env_number("CAIRN_MODEL_STEPS", CI_STEPS as u64) as usize;
    for seed in seeds {
        let input = model::seeded_input(seed, steps);
        if let Err(e) = model::run(&input, steps) {
            panic!("seed {seed} ({steps} steps) broke the model: {e}");
        }
    }
}

#[test]
fn every_kept_snapshot_restores_or_is_named_damaged_after_random_lifecycles() {
    let cases = env_number("CAIRN_MODEL_CASES", CI_CASES);
    run_seeds(0..cases);
}

/// Op bytes of the steps (see `decode_step`): backup 0, forget 4, prune 5, lose a pack 7, drop cache 9.
const BACKUP: u8 = 0;
const PRUNE: u8 = 5;
const LOSE_PACK: u8 = 7;
const DROP_CACHE: u8 = 9;

#[test]
fn a_backup_after_a_lost_pack_is_whole_and_the_old_snapshot_is_named_damaged() {
    // Two files of 80 kB (shape 4: content seed 0 and shape 12: seed 1), no crash; the second
    // backup of the same files after every pack is lost, warm then cold cache.
    let backup = [BACKUP, 1, 0, 4, 1, 12, 0];
    for cold in [false, true] {
        let mut input = backup.to_vec();
        for nth in 0..3u8 {
            input.extend([LOSE_PACK, nth]);
        }
        if cold {
            input.push(DROP_CACHE);
        }
        input.extend(backup);
        // Prune refuses while referenced data is missing; the model accepts only that refusal.
        input.extend([PRUNE, 0, 0]);
        model::run(&input, 64).unwrap_or_else(|e| panic!("cold cache {cold}: {e}"));
    }
}

#[test]
fn crashed_backups_and_prunes_never_leave_a_snapshot_that_restores_wrong() {
    // Backups and prunes crashing after every budget up to 15 writes or removals.
    let mut input = Vec::new();
    for budget in 0..16u8 {
        input.extend([BACKUP, 2, budget, 4 + budget, 64 + budget, 5, 0x80 | budget]);
        input.extend([4, 0]); // forget, keep 1
        input.extend([PRUNE, 0, 0x80 | budget]);
    }
    model::run(&input, 64).unwrap();
}
