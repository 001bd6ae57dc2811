//! WAL records (FORMAT.md §16): which PostgreSQL WAL files one `wal push` archived, and the chunks
//! that hold each one's bytes.

use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::format::envelope::{self, EnvelopeKind};
use crate::format::tree::ContentItem;
use crate::id::BlobId;

/// The envelope of WAL records.
pub const ENVELOPE: EnvelopeKind = EnvelopeKind {
    magic: b"CAIRNWAL",
    aad: b"cairn wal v1",
    what: "WAL record",
    max_len: 64 << 20,
};

/// The largest WAL file a record describes: PostgreSQL's largest segment size (`--wal-segsize`).
pub const MAX_FILE_SIZE: u64 = 1 << 30;

/// What a WAL file's name says it is (PostgreSQL's `xlog_internal.h` naming).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalKind {
    /// A segment, `TTTTTTTTXXXXXXXXYYYYYYYY`: timeline, then the segment number in two halves.
    Segment,
    /// A segment that a promoted standby had not finished, `<segment>.partial`.
    Partial,
    /// A backup history file, `<segment>.<8 hex offset>.backup`.
    Backup,
    /// A timeline history file, `TTTTTTTT.history`.
    History,
}

/// A validated WAL file name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalName {
    name: String,
    kind: WalKind,
}

fn is_upper_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

impl WalName {
    /// Parses a file name as PostgreSQL writes them.
    ///
    /// # Errors
    /// `InvalidInput` for anything else (a path, a lowercase name, a temporary file).
    pub fn parse(name: &str) -> Result<WalName> {
        let kind = match name.split('.').collect::<Vec<_>>().as_slice() {
            [seg] if seg.len() == 24 && is_upper_hex(seg) => WalKind::Segment,
            [seg, "partial"] if seg.len() == 24 && is_upper_hex(seg) => WalKind::Partial,
            [seg, off, "backup"]
                if seg.len() == 24 && is_upper_hex(seg) && off.len() == 8 && is_upper_hex(off) =>
            {
                WalKind::Backup
            }
            [tli, "history"] if tli.len() == 8 && is_upper_hex(tli) => WalKind::History,
            _ => {
                return Err(Error::invalid_input(format!(
                    "{name:?} is not the name of a PostgreSQL WAL file (a segment such as \
                     000000010000000000000003, or a .partial, .backup or .history file)"
                )))
            }
        };
        Ok(WalName {
            name: name.to_string(),
            kind,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// What the file is.
    pub fn kind(&self) -> WalKind {
        self.kind
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        u32::from_str_radix(&self.name[..8], 16).unwrap_or(0)
    }

    /// For a segment (or a file named after one): its number, counted in segments of `segment_size`
    /// bytes from the start of WAL.
    pub fn segment_number(&self, segment_size: u64) -> Option<u64> {
        if self.kind == WalKind::History || !segment_size.is_power_of_two() {
            return None;
        }
        let log = u64::from_str_radix(&self.name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&self.name[16..24], 16).ok()?;
        Some(log * segments_per_log(segment_size) + seg)
    }

    /// The name of segment `number` of `timeline` for segments of `segment_size` bytes.
    pub fn segment(timeline: u32, number: u64, segment_size: u64) -> WalName {
        let per_log = segments_per_log(segment_size);
        WalName {
            name: format!(
                "{timeline:08X}{:08X}{:08X}",
                number / per_log,
                number % per_log
            ),
            kind: WalKind::Segment,
        }
    }
}

/// Segments in one 4 GiB "log" of WAL, the unit of the name's middle field.
fn segments_per_log(segment_size: u64) -> u64 {
    (0x1_0000_0000 / segment_size.max(1)).max(1)
}

impl std::fmt::Display for WalName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// One archived file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalFile {
    /// The file's name as PostgreSQL gave it.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its bytes, in order: `[hex chunk id, length]` pairs.
    pub chunks: Vec<(String, u32)>,
    /// For a segment or `.partial` file: the system identifier of the cluster that wrote it
    /// (decimal), from its first page's header; absent when the header does not carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
}

/// The system identifier in a WAL segment's first page, when `head` (its first bytes) starts
/// with a long page header: `xlp_info` has `XLP_LONG_HEADER` (2), and the `u64` at byte 24
/// follows the 20-byte standard header padded to 24 (PostgreSQL's `XLogLongPageHeaderData`,
/// little-endian on the platforms PostgreSQL and cairn share).
pub fn system_identifier_of(head: &[u8]) -> Option<u64> {
    const XLP_LONG_HEADER: u16 = 0x0002;
    let info = u16::from_le_bytes(head.get(2..4)?.try_into().ok()?);
    if info & XLP_LONG_HEADER == 0 {
        return None;
    }
    let sysid = u64::from_le_bytes(head.get(24..32)?.try_into().ok()?);
    (sysid != 0).then_some(sysid)
}

impl WalFile {
    /// The chunks as content items of a stream.
    pub fn content(&self) -> Vec<ContentItem> {
        self.chunks
            .iter()
            .map(|(id, len)| ContentItem::Data {
                // Checked in decode_body; a record made here holds only real ids.
                id: BlobId::from_hex(id).unwrap_or_default(),
                len: *len,
            })
            .collect()
    }

    /// The ids of its chunks.
    pub fn chunk_ids(&self) -> impl Iterator<Item = BlobId> + '_ {
        self.content().into_iter().filter_map(|c| match c {
            ContentItem::Data { id, .. } => Some(id),
            ContentItem::Hole { .. } => None,
        })
    }

    /// A file of `content` (data items only: a stream has no holes).
    pub fn new(name: &WalName, content: &[ContentItem]) -> WalFile {
        let mut size = 0;
        let chunks = content
            .iter()
            .filter_map(|c| match c {
                ContentItem::Data { id, len } => {
                    size += u64::from(*len);
                    Some((id.to_hex(), *len))
                }
                ContentItem::Hole { .. } => None,
            })
            .collect();
        WalFile {
            name: name.as_str().to_string(),
            size,
            chunks,
            system_identifier: None,
        }
    }

    /// The file's name, parsed.
    pub fn wal_name(&self) -> WalName {
        // Checked in decode_body.
        WalName::parse(&self.name).unwrap_or(WalName {
            name: self.name.clone(),
            kind: WalKind::Segment,
        })
    }
}

/// A WAL record: the files one push archived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRecord {
    /// When the push wrote the record, RFC 3339.
    pub time: String,
    /// The host that pushed.
    pub host: String,
    /// The files, each stored whole.
    pub files: Vec<WalFile>,
    /// What waited in `pg_wal` to be archived when the push started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<WalBacklog>,
    /// Files earlier pushes dropped unarchived because the backlog exceeded its limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<WalDrop>,
}

/// The archive queue a push saw: the files PostgreSQL had marked ready, this one included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalBacklog {
    /// How many.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The push's limit on `bytes` (`--queue-max`), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_max: Option<u64>,
}

/// A file a push acknowledged to PostgreSQL without archiving it, because the backlog exceeded
/// the push's `--queue-max`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalDrop {
    /// The file's name.
    pub name: String,
    /// When it was dropped, RFC 3339.
    pub time: String,
    /// The backlog's bytes then.
    pub backlog_bytes: u64,
    /// The limit it exceeded.
    pub queue_max: u64,
}

impl WalRecord {
    /// The sealed record.
    ///
    /// # Errors
    /// When randomness is unavailable.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self).map_err(|e| Error::invalid_input(e.to_string()))?;
        envelope::seal(key, &ENVELOPE, &body)
    }

    /// Opens and parses a record.
    ///
    /// # Errors
    /// When it is damaged or of an unknown version.
    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<Self> {
        let (_, body) = envelope::open(key, &ENVELOPE, bytes)?;
        Self::decode_body(&body)
    }

    /// Parses a decrypted body, checking every name, id and length; exposed for fuzzing.
    ///
    /// # Errors
    /// `Corrupted` when it does not describe WAL files.
    pub fn decode_body(body: &[u8]) -> Result<Self> {
        let record: WalRecord = serde_json::from_slice(body)
            .map_err(|e| Error::corrupted(format!("WAL record: {e}")))?;
        chrono::DateTime::parse_from_rfc3339(&record.time)
            .map_err(|e| Error::corrupted(format!("WAL record: time {:?}: {e}", record.time)))?;
        for dropped in &record.dropped {
            WalName::parse(&dropped.name)
                .map_err(|e| Error::corrupted(format!("WAL record: dropped file: {e}")))?;
            chrono::DateTime::parse_from_rfc3339(&dropped.time).map_err(|e| {
                Error::corrupted(format!(
                    "WAL record: dropped file {}: time {:?}: {e}",
                    dropped.name, dropped.time
                ))
            })?;
        }
        for file in &record.files {
            WalName::parse(&file.name).map_err(|e| Error::corrupted(format!("WAL record: {e}")))?;
            let mut sum: u64 = 0;
            for (id, len) in &file.chunks {
                BlobId::from_hex(id).map_err(|_| {
                    Error::corrupted(format!("WAL record: {}: chunk id is malformed", file.name))
                })?;
                sum += u64::from(*len);
            }
            if file
                .system_identifier
                .as_ref()
                .is_some_and(|s| s.parse::<u64>().is_err())
            {
                return Err(Error::corrupted(format!(
                    "WAL record: {}: system identifier is not a number",
                    file.name
                )));
            }
            if sum != file.size || file.size > MAX_FILE_SIZE {
                return Err(Error::corrupted(format!(
                    "WAL record: {}: size {} does not match its chunks ({sum} bytes) or exceeds {MAX_FILE_SIZE}",
                    file.name, file.size
                )));
            }
        }
        Ok(record)
    }

    /// When the record was written.
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
    fn names_postgresql_writes_parse_and_others_are_refused() {
        for (name, kind) in [
            ("000000010000000000000003", WalKind::Segment),
            ("000000020000000A000000FF.partial", WalKind::Partial),
            ("000000010000000000000002.00000028.backup", WalKind::Backup),
            ("00000002.history", WalKind::History),
        ] {
            assert_eq!(WalName::parse(name).unwrap().kind(), kind, "{name}");
        }
        for bad in [
            "",
            "00000001000000000000000",
            "000000010000000000000003 ",
            "000000010000000000000003.tmp",
            "00000001000000000000000a",
            "../00000001000000000000003",
            "pg_wal/000000010000000000000003",
            "RECOVERYXLOG",
        ] {
            let err = WalName::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn the_system_identifier_is_read_from_a_long_page_header_only() {
        let mut page = vec![0u8; 40];
        page[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        page[2..4].copy_from_slice(&0x0006u16.to_le_bytes());
        page[24..32].copy_from_slice(&7_312_345_678_901_234_567u64.to_le_bytes());
        assert_eq!(system_identifier_of(&page), Some(7_312_345_678_901_234_567));
        page[2..4].copy_from_slice(&0x0004u16.to_le_bytes());
        assert_eq!(system_identifier_of(&page), None);
        assert_eq!(system_identifier_of(&page[..20]), None);
    }

    #[test]
    fn segment_numbers_round_trip_through_names_for_any_segment_size() {
        for size in [1u64 << 20, 16 << 20, 1 << 30] {
            for number in [0u64, 1, 255, 256, 4095, 4096, 100_000] {
                let name = WalName::segment(3, number, size);
                assert_eq!(name.timeline(), 3);
                assert_eq!(name.segment_number(size), Some(number), "{name}");
            }
        }
        let n = WalName::parse("0000000100000001000000FF").unwrap();
        assert_eq!(n.segment_number(16 << 20), Some(256 + 255));
    }

    #[test]
    fn a_record_round_trips_and_a_wrong_size_or_id_is_refused() {
        let key = MasterKey::generate().unwrap();
        let name = WalName::parse("000000010000000000000003").unwrap();
        let content = [
            ContentItem::Data {
                id: BlobId([1; 32]),
                len: 10,
            },
            ContentItem::Data {
                id: BlobId([2; 32]),
                len: 5,
            },
        ];
        let record = WalRecord {
            time: "2026-12-07T04:00:00Z".into(),
            host: "db1".into(),
            files: vec![WalFile::new(&name, &content)],
            backlog: Some(WalBacklog {
                files: 3,
                bytes: 48 << 20,
                queue_max: Some(1 << 30),
            }),
            dropped: vec![WalDrop {
                name: "000000010000000000000001".into(),
                time: "2026-12-07T03:00:00Z".into(),
                backlog_bytes: 2 << 30,
                queue_max: 1 << 30,
            }],
        };
        assert_eq!(record.files[0].size, 15);
        let mut wrong = record.clone();
        wrong.dropped[0].name = "../x".into();
        let body = serde_json::to_vec(&wrong).unwrap();
        assert!(WalRecord::decode_body(&body)
            .unwrap_err()
            .to_string()
            .contains("dropped file"));
        let bytes = record.encode(&key).unwrap();
        assert_eq!(WalRecord::decode(&key, &bytes).unwrap(), record);
        assert_eq!(record.files[0].content(), content);

        let mut wrong = record.clone();
        wrong.files[0].size = 16;
        let body = serde_json::to_vec(&wrong).unwrap();
        assert!(WalRecord::decode_body(&body)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        let mut wrong = record;
        wrong.files[0].chunks[0].0 = "xyz".into();
        let body = serde_json::to_vec(&wrong).unwrap();
        assert!(WalRecord::decode_body(&body)
            .unwrap_err()
            .to_string()
            .contains("malformed"));
    }
}
