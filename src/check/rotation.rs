//! Which packs a `--read-data-subset` run reads, and the shared record of when each pack was last verified
//! (`verified/*`, FORMAT.md §12), so that repeated subset runs cover the repository oldest-verified first.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::lifecycle::VerifiedPacks;
use crate::id::{IndexId, PackId};
use crate::repo::Repository;

/// Which packs have their data read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum DataSelection {
    /// None: structure only.
    #[default]
    None,
    /// Every pack.
    All,
    /// Part `n` of `m` (1-based): the packs whose id, as a number, is `n - 1` modulo `m`.
    Part {
        /// Which part.
        n: u32,
        /// Of how many.
        m: u32,
    },
    /// This percentage of the packs (rounded up), those verified longest ago (never verified first).
    Percent(f64),
}

impl DataSelection {
    /// Parses `N/M` or `P%`.
    ///
    /// # Errors
    /// `InvalidInput` for another shape, `N` outside `1..=M`, or `P` outside `0..=100`.
    pub fn parse_subset(text: &str) -> Result<Self> {
        let bad = || {
            Error::invalid_input(format!(
                "--read-data-subset {text:?}: expected N/M (e.g. 2/5) or P% (e.g. 10%)"
            ))
        };
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&p) || p.is_nan() {
                return Err(bad());
            }
            return Ok(DataSelection::Percent(p));
        }
        let (n, m) = text.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || m == 0 || n > m {
            return Err(bad());
        }
        Ok(DataSelection::Part { n, m })
    }

    /// Whether any data is read.
    pub fn reads_data(&self) -> bool {
        *self != DataSelection::None
    }

    /// The packs to read among `packs`, given when each was last verified.
    pub fn choose(
        &self,
        packs: &[PackId],
        verified: &BTreeMap<PackId, DateTime<Utc>>,
    ) -> Vec<PackId> {
        match *self {
            DataSelection::None => Vec::new(),
            DataSelection::All => packs.to_vec(),
            DataSelection::Part { n, m } => packs
                .iter()
                .filter(|p| {
                    let head = u64::from_le_bytes(p.0[..8].try_into().unwrap_or_default());
                    head % u64::from(m) == u64::from(n - 1)
                })
                .copied()
                .collect(),
            DataSelection::Percent(p) => {
                let count = ((packs.len() as f64) * p / 100.0).ceil() as usize;
                let mut order: Vec<(Option<DateTime<Utc>>, PackId)> = packs
                    .iter()
                    .map(|id| (verified.get(id).copied(), *id))
                    .collect();
                // None sorts before Some: packs never verified come first.
                order.sort();
                order.into_iter().take(count).map(|(_, id)| id).collect()
            }
        }
    }
}

/// When each pack was last verified.
pub type VerifiedTimes = BTreeMap<PackId, DateTime<Utc>>;

/// The merged verification records of the repository and their object names.
///
/// # Errors
/// When listing fails. Unreadable records are skipped: they only steer the rotation.
pub fn load(repo: &Repository) -> Result<(VerifiedTimes, Vec<String>)> {
    let mut merged = BTreeMap::new();
    let mut names = Vec::new();
    for (name, _) in repo.backend().list(ObjectKind::Verified)? {
        let Ok(bytes) = repo.backend().read(ObjectKind::Verified, &name) else {
            continue;
        };
        if let Ok(record) = VerifiedPacks::decode(repo.key(), &bytes) {
            for (pack, time) in record.times() {
                let entry = merged.entry(pack).or_insert(time);
                *entry = (*entry).max(time);
            }
        }
        names.push(name);
    }
    Ok((merged, names))
}

/// Writes one record holding `verified` restricted to `existing` packs, then removes the records it replaces
/// (a concurrent check's record written meanwhile survives: at worst some packs look older than they are).
///
/// # Errors
/// When the write fails.
pub fn save(
    repo: &Repository,
    verified: &BTreeMap<PackId, DateTime<Utc>>,
    existing: &[PackId],
    replaced: &[String],
) -> Result<()> {
    let mut record = VerifiedPacks::default();
    for id in existing {
        if let Some(t) = verified.get(id) {
            record.packs.insert(
                id.to_hex(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
    }
    let bytes = record.encode(repo.key())?;
    let name = IndexId::hash_of(&bytes).to_hex();
    repo.backend().write(ObjectKind::Verified, &name, &bytes)?;
    for old in replaced.iter().filter(|n| **n != name) {
        repo.backend().remove(ObjectKind::Verified, old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_and_rotate_oldest_first() {
        assert_eq!(
            DataSelection::parse_subset("2/5").unwrap(),
            DataSelection::Part { n: 2, m: 5 }
        );
        assert_eq!(
            DataSelection::parse_subset("10%").unwrap(),
            DataSelection::Percent(10.0)
        );
        for bad in ["0/3", "4/3", "x", "1/0", "101%", "-1%", "%"] {
            assert!(DataSelection::parse_subset(bad).is_err(), "{bad}");
        }
        let packs: Vec<PackId> = (0..10u8).map(|i| PackId([i; 32])).collect();
        // Parts partition the packs.
        let mut all: Vec<PackId> = (1..=3)
            .flat_map(|n| DataSelection::Part { n, m: 3 }.choose(&packs, &BTreeMap::new()))
            .collect();
        all.sort();
        assert_eq!(all, packs);
        // Ten 10% runs, each recording what it verified, cover every pack once.
        let mut verified = BTreeMap::new();
        let start = Utc::now();
        let mut seen = Vec::new();
        for run in 0..10 {
            let chosen = DataSelection::Percent(10.0).choose(&packs, &verified);
            assert_eq!(chosen.len(), 1);
            for p in chosen {
                verified.insert(p, start + chrono::Duration::seconds(run));
                seen.push(p);
            }
        }
        seen.sort();
        assert_eq!(seen, packs);
    }
}
