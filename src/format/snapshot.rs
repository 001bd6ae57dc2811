//! Snapshot files (FORMAT.md §10): what was backed up, when, from where, and how it went.

use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::format::envelope::{self, EnvelopeKind};

/// The envelope of snapshot files (magic, version, seal AAD, size limit).
pub const ENVELOPE: EnvelopeKind = EnvelopeKind {
    magic: b"CAIRNSNP",
    aad: b"cairn snapshot v1",
    what: "snapshot",
    max_len: 64 << 20,
};

/// An entry that could not be backed up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceError {
    /// The path (lossy for display).
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Counters of one backup run.
///
/// `total_bytes` is the logical size of the snapshot's contents: every regular file's size (files
/// reused from the parent included) plus every stream's bytes; `None` in snapshots written before
/// it existed (unknown, not 0).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files in the parent whose metadata or content changed.
    pub files_changed: u64,
    /// Files identical to the parent's.
    pub files_unchanged: u64,
    /// Directories not in the parent.
    pub dirs_new: u64,
    /// Directories whose tree differs from the parent's.
    pub dirs_changed: u64,
    /// Directories whose tree is the parent's.
    pub dirs_unchanged: u64,
    /// Bytes of file content read from the sources.
    pub bytes_read: u64,
    /// Bytes of sealed blobs added to new packs.
    pub bytes_added: u64,
    /// Blobs added.
    pub blobs_added: u64,
    /// Of those, data blobs added as deltas against an older chunk (FORMAT.md §6); absent: none
    /// (or a snapshot written before deltas existed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deltas_added: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// Wall time of the backup in seconds.
    pub duration_secs: f64,
    /// Entries that could not be read.
    pub errors: Vec<SourceError>,
    /// The dump commands whose output is in the snapshot (FORMAT.md §10); absent when there were none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<DumpRecord>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One dump command of a backup: what ran, and how it ended (a snapshot exists only if every one
/// exited 0 with enough output, so `exit_code` is 0 in every stored record today).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpRecord {
    /// The path of its output in the snapshot, e.g. `/app.dump`.
    pub path: String,
    /// The program and its arguments (`["sh", "-c", SCRIPT]` for a shell command).
    pub command: Vec<String>,
    /// Its exit status.
    pub exit_code: i32,
    /// Bytes it wrote to standard output (all stored).
    pub bytes: u64,
    /// Wall time from start to exit, in seconds.
    pub duration_secs: f64,
    /// The last 4 KiB of its standard error, lossy UTF-8.
    pub stderr: String,
}

/// The decoded body of a snapshot file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Backup start, RFC 3339 with nanoseconds.
    pub time: String,
    /// Host name.
    pub host: String,
    /// User who ran the backup.
    pub username: String,
    /// Absolute source paths (lossy for display).
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Root tree id, hex.
    pub tree: String,
    /// Parent snapshot id, hex.
    pub parent: Option<String>,
    /// Writer, e.g. `cairn 0.1.0`.
    pub program_version: String,
    /// Counters.
    pub summary: Summary,
    /// For a snapshot written by `repair snapshots`: the hex id of the damaged snapshot it replaces.
    /// Absent in every other snapshot (and in snapshots written before repair existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_from: Option<String>,
    /// For a PostgreSQL base backup (`pg backup`): where it starts and ends in the WAL, and the
    /// files PostgreSQL gave to recover it. Absent in every other snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PgBackup>,
    /// The plan job that wrote it (`[[job]] name`): its retention, status and drill consider only
    /// its own snapshots. Absent for snapshots of no job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// What a PostgreSQL base backup needs besides its files (FORMAT.md §10, §16).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgBackup {
    /// The data directory backed up (its path in the snapshot).
    pub data_directory: String,
    /// `server_version_num`.
    pub server_version: u32,
    /// The cluster's system identifier (decimal).
    pub system_identifier: String,
    /// Timeline the backup started on.
    pub timeline: u32,
    /// WAL position where the backup started (`X/X`).
    pub start_lsn: String,
    /// WAL file holding the start.
    pub start_wal: String,
    /// WAL position where the backup ended: recovery must replay up to here to be consistent.
    pub stop_lsn: String,
    /// WAL file holding the stop position.
    pub stop_wal: String,
    /// When the backup ended (RFC 3339): the earliest time it can be recovered to.
    pub stop_time: String,
    /// WAL segment size in bytes.
    pub segment_size: u64,
    /// The `backup_label` file to write into the restored data directory.
    pub backup_label: String,
    /// The `tablespace_map` PostgreSQL returned when it is written as such (empty when the
    /// cluster has no tablespaces, and in backups that record `tablespaces`).
    pub tablespace_map: String,
    /// The cluster's tablespaces outside the data directory, each backed up as a path of the
    /// snapshot; their links in `pg_tblspc` are not in the snapshot (a restore makes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tablespaces: Vec<PgTablespace>,
}

/// A tablespace of a base backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgTablespace {
    /// Its OID: the name of its link in `pg_tblspc`.
    pub oid: u32,
    /// Its directory on the host (its path in the snapshot).
    pub location: String,
}

impl Snapshot {
    /// The sealed file.
    ///
    /// # Errors
    /// When randomness is unavailable.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self).map_err(|e| Error::invalid_input(e.to_string()))?;
        envelope::seal(key, &ENVELOPE, &body)
    }

    /// Opens and parses a snapshot file.
    ///
    /// # Errors
    /// When the file is damaged or of an unknown version.
    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<Self> {
        let (_, body) = envelope::open(key, &ENVELOPE, bytes)?;
        Self::decode_body(&body)
    }

    /// Parses a decrypted body; exposed for fuzzing.
    ///
    /// # Errors
    /// When the JSON does not describe a snapshot or its tree id is malformed.
    pub fn decode_body(body: &[u8]) -> Result<Self> {
        let snap: Snapshot =
            serde_json::from_slice(body).map_err(|e| Error::corrupted(format!("snapshot: {e}")))?;
        crate::id::TreeId::from_hex(&snap.tree)
            .map_err(|_| Error::corrupted("snapshot: root tree id is malformed"))?;
        if let Some(parent) = &snap.parent {
            crate::id::SnapshotId::from_hex(parent)
                .map_err(|_| Error::corrupted("snapshot: parent id is malformed"))?;
        }
        if let Some(original) = &snap.repaired_from {
            crate::id::SnapshotId::from_hex(original)
                .map_err(|_| Error::corrupted("snapshot: repaired_from id is malformed"))?;
        }
        chrono::DateTime::parse_from_rfc3339(&snap.time)
            .map_err(|e| Error::corrupted(format!("snapshot: time {:?}: {e}", snap.time)))?;
        Ok(snap)
    }

    /// The root tree id.
    pub fn tree_id(&self) -> crate::id::TreeId {
        // Checked in decode_body and produced by the archiver.
        crate::id::TreeId::from_hex(&self.tree).unwrap_or_default()
    }

    /// Backup time as a UTC date.
    pub fn datetime(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusal() {
        let key = MasterKey::generate().unwrap();
        let snap = Snapshot {
            time: "2026-11-20T10:00:00.123456789Z".into(),
            host: "h".into(),
            username: "u".into(),
            paths: vec!["/etc".into()],
            tags: vec!["nightly".into()],
            tree: "00".repeat(32),
            parent: None,
            program_version: "cairn 0.1.0".into(),
            summary: Summary::default(),
            repaired_from: None,
            postgres: None,
            job: None,
        };
        let bytes = snap.encode(&key).unwrap();
        assert_eq!(Snapshot::decode(&key, &bytes).unwrap(), snap);
        let other = MasterKey::generate().unwrap();
        assert!(Snapshot::decode(&other, &bytes).is_err());
        assert!(Snapshot::decode_body(b"{}").is_err());
    }

    #[test]
    fn repaired_from_is_optional_and_checked() {
        let key = MasterKey::generate().unwrap();
        let mut snap = Snapshot {
            time: "2026-11-20T10:00:00Z".into(),
            host: "h".into(),
            username: "u".into(),
            paths: vec!["/etc".into()],
            tags: vec![],
            tree: "00".repeat(32),
            parent: None,
            program_version: "cairn 0.1.0".into(),
            summary: Summary::default(),
            repaired_from: None,
            postgres: None,
            job: None,
        };
        // Snapshots written before the field existed have no such key and stay readable.
        let body = serde_json::to_vec(&snap).unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("repaired_from"));
        assert_eq!(Snapshot::decode_body(&body).unwrap(), snap);
        snap.repaired_from = Some("11".repeat(32));
        let bytes = snap.encode(&key).unwrap();
        assert_eq!(Snapshot::decode(&key, &bytes).unwrap(), snap);
        snap.repaired_from = Some("nope".into());
        let body = serde_json::to_vec(&snap).unwrap();
        assert!(Snapshot::decode_body(&body).is_err());
    }

    #[test]
    fn dumps_and_total_bytes_are_optional() {
        // A body as cairn wrote it before `dumps` and `total_bytes` existed.
        let old = format!(
            r#"{{"time":"2026-11-20T10:00:00Z","host":"h","username":"u","paths":["/app.dump"],
            "tags":[],"tree":"{}","parent":null,"program_version":"cairn 0.1.0","summary":
            {{"files_new":1,"files_changed":0,"files_unchanged":0,"dirs_new":0,"dirs_changed":0,
            "dirs_unchanged":0,"bytes_read":12,"bytes_added":90,"blobs_added":2,
            "duration_secs":0.25,"errors":[]}}}}"#,
            "00".repeat(32)
        );
        let mut snap = Snapshot::decode_body(old.as_bytes()).unwrap();
        assert_eq!(snap.summary.total_bytes, None);
        assert!(snap.summary.dumps.is_empty());
        // Without dumps or a total the keys are omitted again.
        let body = String::from_utf8(serde_json::to_vec(&snap).unwrap()).unwrap();
        assert!(
            !body.contains("dumps") && !body.contains("total_bytes"),
            "{body}"
        );
        snap.summary.total_bytes = Some(12);
        snap.summary.dumps.push(DumpRecord {
            path: "/app.dump".into(),
            command: vec!["pg_dump".into(), "app".into()],
            exit_code: 0,
            bytes: 12,
            duration_secs: 0.5,
            stderr: "warning\n".into(),
        });
        let body = serde_json::to_vec(&snap).unwrap();
        assert_eq!(Snapshot::decode_body(&body).unwrap(), snap);
    }
}
