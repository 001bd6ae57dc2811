//! Lease, pending-deletion and verification objects (FORMAT.md §12): what lets prune delete safely while
//! backups run, and lets `check` rotate its data subsets.
//!
//! Both are sealed JSON bodies; decoders validate every id and time so callers never meet a malformed one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::format::envelope::{self, EnvelopeKind};
use crate::id::PackId;

/// The envelope of lease objects (`locks/*`).
pub const LEASE_ENVELOPE: EnvelopeKind = EnvelopeKind {
    magic: b"CAIRNLSE",
    aad: b"cairn lease v1",
    what: "lease",
    max_len: 64 << 10,
};

/// The envelope of pending-deletion records (`pending/*`).
pub const PENDING_ENVELOPE: EnvelopeKind = EnvelopeKind {
    magic: b"CAIRNDEL",
    aad: b"cairn pending deletion v1",
    what: "pending-deletion record",
    max_len: 64 << 20,
};

/// Who holds a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseKind {
    /// A backup: may reuse any blob it saw indexed when it started.
    Backup,
    /// A prune: at most one runs at a time.
    Prune,
}

/// A running process's claim, valid until `expires` unless refreshed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// What runs.
    pub kind: LeaseKind,
    /// Host and process id, for messages.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// When the process started (before it read anything from the repository), RFC 3339.
    pub start: String,
    /// When the lease lapses unless a newer lease object of the same process replaces it, RFC 3339.
    pub expires: String,
    /// Random hex token naming the process across refreshes.
    pub token: String,
    /// Body version: 1 when absent (written before the holder's identity was recorded), 2 with
    /// `boot_id`, `pid_start` and `pid_ns` (FORMAT.md §12).
    #[serde(default = "body_version_1")]
    pub version: u32,
    /// The holder's `/proc/sys/kernel/random/boot_id`: its pid means something only within that boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder's start time in clock ticks since boot (`/proc/PID/stat` field 22), which tells
    /// a reused pid from the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The holder's pid namespace (`/proc/self/ns/pid` link text): a pid means something only there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
}

/// The body version of leases that predate `version` (FORMAT.md §12).
pub const LEASE_BODY_V1: u32 = 1;
/// The body version written: the holder's identity, which lets a lease of a dead process go at once.
pub const LEASE_BODY_V2: u32 = 2;

fn body_version_1() -> u32 {
    LEASE_BODY_V1
}

impl Lease {
    /// The sealed object.
    ///
    /// # Errors
    /// When randomness is unavailable.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self).map_err(|e| Error::invalid_input(e.to_string()))?;
        envelope::seal(key, &LEASE_ENVELOPE, &body)
    }

    /// Opens and parses a lease object.
    ///
    /// # Errors
    /// When it is damaged or of an unknown version.
    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<Self> {
        let (_, body) = envelope::open(key, &LEASE_ENVELOPE, bytes)?;
        Self::decode_body(&body)
    }

    /// Parses a decrypted body; exposed for fuzzing.
    ///
    /// # Errors
    /// When the JSON is not a lease or a time is malformed.
    pub fn decode_body(body: &[u8]) -> Result<Self> {
        let lease: Lease =
            serde_json::from_slice(body).map_err(|e| Error::corrupted(format!("lease: {e}")))?;
        parse_time("lease", &lease.start)?;
        parse_time("lease", &lease.expires)?;
        Ok(lease)
    }

    /// Start time.
    pub fn start_time(&self) -> DateTime<Utc> {
        parse_time("lease", &self.start).unwrap_or_default()
    }

    /// Expiry time.
    pub fn expiry_time(&self) -> DateTime<Utc> {
        parse_time("lease", &self.expires).unwrap_or_default()
    }
}

/// Packs condemned by a prune at `time`; a later prune deletes them when it is safe (FORMAT.md §12).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDeletion {
    /// When the record was made, RFC 3339 (the pruning host's clock, taken before writing).
    pub time: String,
    /// Condemned packs, hex ids.
    pub packs: Vec<String>,
}

impl PendingDeletion {
    /// A record of `packs` made at `time`.
    pub fn new(time: DateTime<Utc>, packs: &[PackId]) -> Self {
        PendingDeletion {
            time: time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            packs: packs.iter().map(PackId::to_hex).collect(),
        }
    }

    /// The sealed object.
    ///
    /// # Errors
    /// When randomness is unavailable.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self).map_err(|e| Error::invalid_input(e.to_string()))?;
        envelope::seal(key, &PENDING_ENVELOPE, &body)
    }

    /// Opens and parses a record.
    ///
    /// # Errors
    /// When it is damaged or of an unknown version.
    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<Self> {
        let (_, body) = envelope::open(key, &PENDING_ENVELOPE, bytes)?;
        Self::decode_body(&body)
    }

    /// Parses a decrypted body; exposed for fuzzing.
    ///
    /// # Errors
    /// When the JSON is not a record, or a time or pack id is malformed.
    pub fn decode_body(body: &[u8]) -> Result<Self> {
        let record: PendingDeletion = serde_json::from_slice(body)
            .map_err(|e| Error::corrupted(format!("pending-deletion record: {e}")))?;
        parse_time("pending-deletion record", &record.time)?;
        for p in &record.packs {
            PackId::from_hex(p).map_err(|_| {
                Error::corrupted(format!(
                    "pending-deletion record: pack id {p:?} is malformed"
                ))
            })?;
        }
        Ok(record)
    }

    /// Record time.
    pub fn datetime(&self) -> DateTime<Utc> {
        parse_time("pending-deletion record", &self.time).unwrap_or_default()
    }

    /// The condemned packs (validated by decode).
    pub fn pack_ids(&self) -> Vec<PackId> {
        self.packs
            .iter()
            .filter_map(|p| PackId::from_hex(p).ok())
            .collect()
    }
}

/// The envelope of verification records (`verified/*`).
pub const VERIFIED_ENVELOPE: EnvelopeKind = EnvelopeKind {
    magic: b"CAIRNVER",
    aad: b"cairn verified v1",
    what: "verification record",
    max_len: 64 << 20,
};

/// When `check --read-data*` last verified each pack, so subsets rotate over the whole repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedPacks {
    /// Hex pack id -> RFC 3339 time of its last complete verification.
    pub packs: std::collections::BTreeMap<String, String>,
}

impl VerifiedPacks {
    /// The sealed object.
    ///
    /// # Errors
    /// When randomness is unavailable.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self).map_err(|e| Error::invalid_input(e.to_string()))?;
        envelope::seal(key, &VERIFIED_ENVELOPE, &body)
    }

    /// Opens and parses a record.
    ///
    /// # Errors
    /// When it is damaged or of an unknown version.
    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<Self> {
        let (_, body) = envelope::open(key, &VERIFIED_ENVELOPE, bytes)?;
        Self::decode_body(&body)
    }

    /// Parses a decrypted body; exposed for fuzzing.
    ///
    /// # Errors
    /// When the JSON is not a record, or a time or pack id is malformed.
    pub fn decode_body(body: &[u8]) -> Result<Self> {
        let record: VerifiedPacks = serde_json::from_slice(body)
            .map_err(|e| Error::corrupted(format!("verification record: {e}")))?;
        for (pack, time) in &record.packs {
            PackId::from_hex(pack).map_err(|_| {
                Error::corrupted(format!(
                    "verification record: pack id {pack:?} is malformed"
                ))
            })?;
            parse_time("verification record", time)?;
        }
        Ok(record)
    }

    /// Last verification of each pack (validated by decode).
    pub fn times(&self) -> impl Iterator<Item = (PackId, DateTime<Utc>)> + '_ {
        self.packs
            .iter()
            .filter_map(|(p, t)| Some((PackId::from_hex(p).ok()?, parse_time("", t).ok()?)))
    }
}

fn parse_time(what: &str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::corrupted(format!("{what}: time {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        let key = MasterKey::generate().unwrap();
        let lease = Lease {
            kind: LeaseKind::Backup,
            host: "h".into(),
            pid: 7,
            start: "2026-11-20T10:00:00Z".into(),
            expires: "2026-11-20T10:10:00Z".into(),
            token: "ab".into(),
            version: LEASE_BODY_V2,
            boot_id: Some("b".into()),
            pid_start: Some(12),
            pid_ns: Some("pid:[1]".into()),
        };
        assert_eq!(
            Lease::decode(&key, &lease.encode(&key).unwrap()).unwrap(),
            lease
        );
        let record = PendingDeletion::new(Utc::now(), &[PackId([3; 32])]);
        let bytes = record.encode(&key).unwrap();
        assert_eq!(PendingDeletion::decode(&key, &bytes).unwrap(), record);
        assert_eq!(record.pack_ids(), vec![PackId([3; 32])]);
        // A lease is not a record, even under the right key.
        assert!(PendingDeletion::decode(&key, &lease.encode(&key).unwrap()).is_err());
        assert!(PendingDeletion::decode_body(br#"{"time":"x","packs":[]}"#).is_err());
        assert!(
            PendingDeletion::decode_body(br#"{"time":"2026-11-20T10:00:00Z","packs":["zz"]}"#)
                .is_err()
        );
        assert!(Lease::decode_body(b"{}").is_err());
        // A version 1 body (no version, no holder identity) is still read.
        let old = Lease::decode_body(
            br#"{"kind":"prune","host":"h","pid":7,"start":"2026-11-20T10:00:00Z","expires":"2026-11-20T10:10:00Z","token":"ab"}"#,
        )
        .unwrap();
        assert_eq!(
            (old.version, old.boot_id, old.pid_start),
            (LEASE_BODY_V1, None, None)
        );
        let mut verified = VerifiedPacks::default();
        verified
            .packs
            .insert(PackId([4; 32]).to_hex(), "2026-11-20T10:00:00Z".into());
        let bytes = verified.encode(&key).unwrap();
        assert_eq!(VerifiedPacks::decode(&key, &bytes).unwrap(), verified);
        assert_eq!(verified.times().count(), 1);
        assert!(VerifiedPacks::decode_body(br#"{"packs":{"00":"2026-11-20T10:00:00Z"}}"#).is_err());
    }
}
