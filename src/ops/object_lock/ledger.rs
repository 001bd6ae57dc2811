//! The local ledger of locks (FORMAT.md §17, "Ledger"): until when each object of one locked
//! location was last seen or made locked, so that a nightly extension asks the storage only about
//! objects that are new or whose lock is due, not about every object every night.
//!
//! The ledger is a cache, never the truth: every run re-reads a random sample of the objects it
//! vouches for and throws it away at the first one the storage says is locked for less; and it is
//! re-read whole every half period. A ledger that cannot be read is an empty one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::ObjectKind;
use crate::error::Result;

/// One in this many objects the ledger vouches for is read from the storage anyway.
pub const SAMPLE_ONE_IN: u64 = 64;

/// At least this many are sampled when the ledger vouches for more.
pub const SAMPLE_MIN: usize = 8;

/// Which of the objects the ledger vouches for (`Some` in `vouched`) are read anyway: each with
/// a chance of one in [`SAMPLE_ONE_IN`], and at least [`SAMPLE_MIN`] of them.
pub fn sample(vouched: &[Option<DateTime<Utc>>]) -> Vec<bool> {
    let mut seed = u64::from_le_bytes(crate::crypto::random_array::<8>().unwrap_or([7; 8])) | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut picked: Vec<bool> = vouched
        .iter()
        .map(|v| v.is_some() && next() % SAMPLE_ONE_IN == 0)
        .collect();
    let mut missing = SAMPLE_MIN.saturating_sub(picked.iter().filter(|p| **p).count());
    let candidates: Vec<usize> = (0..vouched.len())
        .filter(|&i| vouched[i].is_some() && !picked[i])
        .collect();
    let mut left = candidates.len();
    for i in candidates {
        // Each remaining candidate taken with the chance that fills the quota exactly.
        if missing > 0 && (next() % left as u64) < missing as u64 {
            picked[i] = true;
            missing -= 1;
        }
        left -= 1;
    }
    picked
}

/// The ledger of one location.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// Format version: 1.
    version: u32,
    /// The location it describes, as given.
    location: String,
    /// When every needed object was last read from the storage (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_whole: Option<i64>,
    /// `kind/name` → retain-until (Unix seconds).
    until: HashMap<String, i64>,
}

/// The key of an object in the ledger.
pub fn key(kind: ObjectKind, name: &str) -> String {
    format!("{}{name}", kind.dir())
}

impl Ledger {
    /// Where the ledger of `location` lives below the repository's cache directory.
    pub fn path(cache_dir: &Path, location: &str) -> PathBuf {
        let hash = blake3::hash(location.as_bytes()).to_hex();
        cache_dir
            .join("locks")
            .join(format!("{}.json", &hash[..32]))
    }

    /// The ledger at `path` for `location`; empty when absent, unreadable or of another location.
    pub fn load(path: &Path, location: &str) -> Ledger {
        let loaded: Option<Ledger> = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        match loaded {
            Some(l) if l.version == 1 && l.location == location => l,
            _ => Ledger {
                version: 1,
                location: location.to_string(),
                ..Ledger::default()
            },
        }
    }

    /// Whether the whole location must be read this run: never read whole, or not for half a
    /// `period`.
    pub fn due_whole(&self, now: DateTime<Utc>, period: Duration) -> bool {
        self.read_whole
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .is_none_or(|t| now - t >= period / 2 || t > now)
    }

    /// Until when the ledger says `key` is locked.
    pub fn until(&self, key: &str) -> Option<DateTime<Utc>> {
        self.until
            .get(key)
            .and_then(|s| DateTime::from_timestamp(*s, 0))
    }

    /// Replaces the entries with `entries` (the needed objects and their locks after this run),
    /// and with `whole` the time the location was read whole.
    pub fn replace(
        &mut self,
        entries: HashMap<String, DateTime<Utc>>,
        whole: Option<DateTime<Utc>>,
    ) {
        self.until = entries
            .into_iter()
            .map(|(k, t)| (k, t.timestamp()))
            .collect();
        if let Some(t) = whole {
            self.read_whole = Some(t.timestamp());
        }
    }

    /// Writes the ledger atomically, private to its owner like the rest of the cache.
    ///
    /// # Errors
    /// When the cache directory cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        crate::plan::state::write_atomically(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_round_trips_and_another_locations_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = Ledger::path(dir.path(), "s3://b/r");
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut l = Ledger::load(&path, "s3://b/r");
        assert!(l.due_whole(now, Duration::days(14)));
        let k = key(ObjectKind::Pack, "ab");
        l.replace(HashMap::from([(k.clone(), now)]), Some(now));
        l.save(&path).unwrap();
        let back = Ledger::load(&path, "s3://b/r");
        assert_eq!(back.until(&k), Some(now));
        assert!(!back.due_whole(now + Duration::days(6), Duration::days(14)));
        assert!(back.due_whole(now + Duration::days(7), Duration::days(14)));
        assert_eq!(Ledger::load(&path, "s3://b/other").until(&k), None);
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(Ledger::load(&path, "s3://b/r").until(&k), None);
    }

    #[test]
    fn the_sample_takes_at_least_its_minimum_and_only_vouched_objects() {
        let t = DateTime::from_timestamp(1, 0);
        let vouched: Vec<Option<DateTime<Utc>>> = (0..1000)
            .map(|i| (i % 2 == 0).then_some(t.unwrap()))
            .collect();
        let picked = sample(&vouched);
        let n = picked.iter().filter(|p| **p).count();
        assert!((SAMPLE_MIN..=60).contains(&n), "{n}");
        assert!(picked.iter().zip(&vouched).all(|(p, v)| !p || v.is_some()));
        let few = vec![Some(t.unwrap()); 5];
        assert!(sample(&few).iter().all(|p| *p));
        assert!(sample(&[None, None]).iter().all(|p| !p));
    }
}
