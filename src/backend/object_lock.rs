//! S3 Object Lock settings of a storage location (FORMAT.md §17): the mode and the lock every
//! object cairn writes there carries, kept in the location's `locking` object so that every
//! writer (backup, WAL push, prune, sync) locks alike without being told.
//!
//! The settings belong to the location, not to the repository: a repository synced to a locked
//! bucket keeps the same config and keys, and its local copy stays unlocked.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::ObjectKind;
use crate::error::{Error, Result};

/// Name of the object that holds the settings, beside `config`.
pub const LOCKING_PATH: &str = "locking";

/// The largest `locking` object a reader accepts.
pub const MAX_LOCKING_LEN: u64 = 4096;

/// Longest lock period accepted: a longer one is a typo (compliance locks cannot be undone).
const MAX_PERIOD_DAYS: i64 = 36_600;

/// S3's two retention modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still shorten or remove the lock.
    Governance,
    /// Nobody, the account's root included, can shorten or remove the lock before it expires.
    Compliance,
}

impl LockMode {
    /// The value of `x-amz-object-lock-mode`.
    pub fn header(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// The mode from a header value.
    pub fn from_header(text: &str) -> Option<LockMode> {
        match text.to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }

    /// The mode from its name on the command line or in a plan file.
    ///
    /// # Errors
    /// `InvalidInput` for anything but `governance` or `compliance`.
    pub fn parse(text: &str) -> Result<LockMode> {
        match text {
            "governance" => Ok(LockMode::Governance),
            "compliance" => Ok(LockMode::Compliance),
            _ => Err(Error::invalid_input(format!(
                "lock mode {text:?}: give governance or compliance"
            ))),
        }
    }
}

/// One object version's retention: its mode and until when it cannot be deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Mode.
    pub mode: LockMode,
    /// Retain-until date.
    pub until: DateTime<Utc>,
}

/// The `locking` object: how objects written to this location are locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockSettings {
    /// Format version of this object: 1.
    pub version: u32,
    /// Retention mode of every lock cairn sets.
    pub mode: LockMode,
    /// Every object is locked for at least this long from its write, in seconds.
    pub period_seconds: i64,
    /// Added to the date until which the retention policy keeps a snapshot when its objects'
    /// locks are extended, in seconds.
    pub margin_seconds: i64,
}

impl LockSettings {
    /// Settings of `mode` with a lock `period` and extension `margin`.
    ///
    /// # Errors
    /// `InvalidInput` for a period that is not positive or longer than 100 years, or a negative margin.
    pub fn new(mode: LockMode, period: Duration, margin: Duration) -> Result<LockSettings> {
        let settings = LockSettings {
            version: 1,
            mode,
            period_seconds: period.num_seconds(),
            margin_seconds: margin.num_seconds(),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// The lock period.
    pub fn period(&self) -> Duration {
        Duration::seconds(self.period_seconds)
    }

    /// The extension margin.
    pub fn margin(&self) -> Duration {
        Duration::seconds(self.margin_seconds)
    }

    /// The retention a new object written at `now` gets.
    pub fn on_write(&self, now: DateTime<Utc>) -> Retention {
        Retention {
            mode: self.mode,
            until: now + self.period(),
        }
    }

    /// The JSON stored in the `locking` object.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Reads a `locking` object.
    ///
    /// # Errors
    /// `Corrupted` when it is not version 1 settings within bounds.
    pub fn from_bytes(bytes: &[u8]) -> Result<LockSettings> {
        let settings: LockSettings = serde_json::from_slice(bytes).map_err(|e| {
            Error::corrupted(format!(
                "the {LOCKING_PATH} object is not Object Lock settings: {e}"
            ))
        })?;
        if settings.version != 1 {
            return Err(Error::new(crate::error::ErrorKind::UnsupportedVersion, format!(
                "the {LOCKING_PATH} object is version {}; this cairn reads version 1: upgrade cairn",
                settings.version
            ),
            ));
        }
        settings
            .validate()
            .map_err(|e| Error::corrupted(format!("the {LOCKING_PATH} object: {e}")))?;
        Ok(settings)
    }

    fn validate(&self) -> Result<()> {
        if self.period_seconds <= 0 || self.period_seconds > MAX_PERIOD_DAYS * 86_400 {
            return Err(Error::invalid_input(format!(
                "lock period of {} s: give a period between 1 s and 100 years (e.g. 30d)",
                self.period_seconds
            )));
        }
        if self.margin_seconds < 0 || self.margin_seconds > MAX_PERIOD_DAYS * 86_400 {
            return Err(Error::invalid_input(format!(
                "lock margin of {} s: give 0 or a positive span (e.g. 7d)",
                self.margin_seconds
            )));
        }
        Ok(())
    }
}

/// Whether objects of `kind` are locked: everything a restore needs (keys, config, packs, index
/// files, snapshots, WAL records). Leases, pending-deletion and verification records are
/// bookkeeping that must stay removable.
pub fn is_locked_kind(kind: ObjectKind) -> bool {
    super::WRITE_ORDER.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_hostile_ones_are_refused() {
        let s =
            LockSettings::new(LockMode::Compliance, Duration::days(30), Duration::days(7)).unwrap();
        assert_eq!(LockSettings::from_bytes(&s.to_bytes()).unwrap(), s);
        assert!(
            LockSettings::new(LockMode::Governance, Duration::zero(), Duration::zero()).is_err()
        );
        assert!(LockSettings::from_bytes(b"{\"version\":1}").is_err());
        let future = String::from_utf8(s.to_bytes())
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        assert_eq!(
            LockSettings::from_bytes(future.as_bytes())
                .unwrap_err()
                .kind(),
            crate::error::ErrorKind::UnsupportedVersion
        );
        let huge = String::from_utf8(s.to_bytes())
            .unwrap()
            .replace("2592000", "999999999999");
        assert!(LockSettings::from_bytes(huge.as_bytes()).is_err());
        assert!(is_locked_kind(ObjectKind::Pack) && !is_locked_kind(ObjectKind::Lease));
        assert_eq!(
            LockMode::from_header("governance"),
            Some(LockMode::Governance)
        );
    }
}
