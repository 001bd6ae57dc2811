//! Which key files an opening runs the KDF on, and in what order (FORMAT.md §4, "What opening
//! costs").
//!
//! The KDF is the one expensive step of opening, and its parameters are in the clear, chosen by
//! whoever wrote the key file: anyone who can write to the storage. So a key file nobody named runs
//! only within a per-file ceiling, and all of them together within a budget; a key file above the
//! ceiling opens only when named (`--key-hint`). This module decides; it never runs the KDF.

use crate::crypto::{KdfParams, OPEN_BUDGET};
use crate::format::key::KeyFile;

/// Why a key file was not tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Skip {
    /// Its parameters exceed what runs on a key file nobody named.
    AboveCeiling,
    /// The files tried before it spent the budget.
    OverBudget,
}

/// The key files to try, in order, and those left untried.
#[derive(Debug)]
pub(super) struct KeyChoice {
    /// Names and files, in the order to try them.
    pub tries: Vec<(String, KeyFile)>,
    /// Names, parameters and reasons of the files not tried.
    pub skipped: Vec<(String, KdfParams, Skip)>,
}

/// Orders `files` and drops those an opening must not pay for.
///
/// Order: files that cost at most the default parameters first, newest epoch first among them
/// (§15: after a crash in `key rotate`, the new file of a password, written with the default
/// parameters, must be tried before the old one); then the others cheapest first, newest epoch
/// first among equal costs. A `named` choice (one file given by `--key-hint`) is tried whatever it
/// costs within the bounds every key file is held to ([`KdfParams::validate`]).
pub(super) fn choose(mut files: Vec<(String, KeyFile)>, named: bool) -> KeyChoice {
    if named {
        return KeyChoice {
            tries: files,
            skipped: Vec::new(),
        };
    }
    let default_cost = KdfParams::default().cost();
    files.sort_by_key(|(name, file)| {
        let cost = file.params.cost();
        let class = if cost <= default_cost { 0 } else { cost };
        (class, std::cmp::Reverse(file.epoch_hint()), name.clone())
    });
    let mut spent = 0u64;
    let mut choice = KeyChoice {
        tries: Vec::new(),
        skipped: Vec::new(),
    };
    for (name, file) in files {
        let params = file.params;
        let skip = if !params.runs_unnamed() {
            Some(Skip::AboveCeiling)
        } else if spent + params.cost() > OPEN_BUDGET {
            Some(Skip::OverBudget)
        } else {
            None
        };
        match skip {
            Some(why) => choice.skipped.push((name, params, why)),
            None => {
                spent += params.cost();
                choice.tries.push((name, file));
            }
        }
    }
    choice
}

/// A sentence naming the files not tried, for the error of an opening that found no key: what each
/// would cost and how to name one.
pub(super) fn describe_skipped(skipped: &[(String, KdfParams, Skip)]) -> String {
    const SHOWN: usize = 5;
    let mut parts: Vec<String> = skipped
        .iter()
        .take(SHOWN)
        .map(|(name, p, why)| {
            format!(
                "{} ({} MiB, {} passes{})",
                // Names come from a listing of untrusted storage: cut by characters.
                name.chars().take(8).collect::<String>(),
                p.memory_kib / 1024,
                p.time,
                match why {
                    Skip::AboveCeiling => ", above what runs unnamed",
                    Skip::OverBudget => ", past the budget of one opening",
                }
            )
        })
        .collect();
    if skipped.len() > SHOWN {
        parts.push(format!("and {} more", skipped.len() - SHOWN));
    }
    format!(
        "{} key file(s) were not tried, to bound the key derivation work of an opening (FORMAT.md §4): {}; \
         if the password belongs to one of them, name it with --key-hint ID (or CAIRN_KEY_HINT)",
        skipped.len(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{MasterKey, UNNAMED_MAX_COST};
    use crate::format::key::KeyMetadata;

    fn file(master: &MasterKey, params: KdfParams) -> KeyFile {
        let mut f = KeyFile::wrap(
            master,
            b"pw",
            KdfParams::MINIMUM,
            &KeyMetadata::new(None).unwrap(),
        )
        .unwrap();
        // Decoding checks only the bounds every file is held to; the KDF never runs here.
        f.params = params;
        f
    }

    fn names(choice: &KeyChoice) -> Vec<&str> {
        choice.tries.iter().map(|(n, _)| n.as_str()).collect()
    }

    const ABSURD: KdfParams = KdfParams {
        memory_kib: 4 * 1024 * 1024,
        time: 64,
        parallelism: 64,
    };

    #[test]
    fn a_planted_key_file_with_absurd_parameters_is_not_tried_unless_named() {
        let master = MasterKey::generate().unwrap();
        let absurd = file(&master, ABSURD);
        assert!(
            absurd.params.validate().is_ok(),
            "within the format's bounds"
        );
        let files = vec![
            ("aa".repeat(32), absurd.clone()),
            ("bb".repeat(32), file(&master, KdfParams::default())),
        ];
        let choice = choose(files.clone(), false);
        assert_eq!(names(&choice), ["bb".repeat(32)]);
        assert_eq!(
            choice.skipped,
            vec![("aa".repeat(32), ABSURD, Skip::AboveCeiling)]
        );
        let named = choose(vec![files[0].clone()], true);
        assert_eq!(names(&named), ["aa".repeat(32)]);
    }

    #[test]
    fn the_total_work_of_an_opening_is_bounded_whatever_the_number_of_key_files() {
        let master = MasterKey::generate().unwrap();
        let at_ceiling = KdfParams {
            memory_kib: 1024 * 1024,
            time: 4,
            parallelism: 4,
        };
        assert_eq!(at_ceiling.cost(), UNNAMED_MAX_COST);
        let mut files: Vec<(String, KeyFile)> = (0..100)
            .map(|i| (format!("{i:064}"), file(&master, KdfParams::default())))
            .collect();
        files.extend((0..5).map(|i| (format!("c{i:063}"), file(&master, at_ceiling))));
        let choice = choose(files, false);
        let spent: u64 = choice.tries.iter().map(|(_, f)| f.params.cost()).sum();
        assert!(spent <= OPEN_BUDGET, "{spent}");
        assert_eq!(choice.tries.len(), 42, "the cheap files go first");
        assert_eq!(choice.skipped.len(), 63);
        assert!(choice
            .skipped
            .iter()
            .all(|(_, _, s)| *s == Skip::OverBudget));
        assert!(describe_skipped(&choice.skipped).contains("and 58 more"));
    }

    #[test]
    fn a_rotated_key_file_is_tried_before_the_old_one_of_its_password() {
        let master = MasterKey::generate().unwrap();
        let rotated = master.with_new_epoch().unwrap();
        let new = file(&rotated, KdfParams::default());
        // The old file is cheaper (written with other parameters), and a planted one costs more
        // than the default while claiming a later epoch.
        let old = file(&master, KdfParams::MINIMUM);
        let planted = KeyFile {
            sealed_metadata: Some((7, vec![0; 64])),
            ..file(&master, at(128 * 1024))
        };
        let choice = choose(
            vec![
                ("aa".repeat(32), old),
                ("bb".repeat(32), new),
                ("cc".repeat(32), planted),
            ],
            false,
        );
        assert_eq!(
            names(&choice),
            ["bb".repeat(32), "aa".repeat(32), "cc".repeat(32)]
        );
    }

    fn at(memory_kib: u32) -> KdfParams {
        KdfParams {
            memory_kib,
            time: 3,
            parallelism: 1,
        }
    }
}
