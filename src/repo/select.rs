//! Snapshot selection shared by every command: `latest`, unique id prefixes, host/tag/path
//! filters and point-in-time `--at`.

use chrono::{DateTime, FixedOffset, Local, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;

/// Which snapshots a command considers. An empty filter keeps every snapshot.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// Keep snapshots of any of these hosts (empty: any host).
    pub hosts: Vec<String>,
    /// Keep snapshots that carry every tag of at least one of these sets (empty: any tags).
    pub tag_sets: Vec<Vec<String>>,
    /// Keep snapshots whose source paths include every one of these (empty: any paths).
    pub paths: Vec<String>,
    /// Keep snapshots taken at or before this moment.
    pub at: Option<DateTime<Utc>>,
    /// Keep snapshots of this plan job, or of no job (default: any).
    pub job: JobFilter,
}

/// Which plan job's snapshots a filter keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum JobFilter {
    /// Any job's, and those of no job.
    #[default]
    Any,
    /// Only those of no job.
    NoJob,
    /// Only this job's.
    Named(String),
}

impl JobFilter {
    /// Whether a snapshot recorded with `job` passes.
    pub fn matches(&self, job: Option<&str>) -> bool {
        match self {
            JobFilter::Any => true,
            JobFilter::NoJob => job.is_none(),
            JobFilter::Named(name) => job == Some(name.as_str()),
        }
    }
}

impl SnapshotFilter {
    /// Whether a snapshot passes every criterion.
    pub fn matches(&self, snap: &Snapshot) -> bool {
        let host_ok = self.hosts.is_empty() || self.hosts.contains(&snap.host);
        let tags_ok = self.tag_sets.is_empty()
            || self
                .tag_sets
                .iter()
                .any(|set| set.iter().all(|t| snap.tags.contains(t)));
        let paths_ok = self.paths.iter().all(|p| snap.paths.contains(p));
        let time_ok = self.at.is_none_or(|at| snap.datetime() <= at);
        host_ok && tags_ok && paths_ok && time_ok && self.job.matches(snap.job.as_deref())
    }

    /// Whether any criterion is set (used to phrase "nothing matched" errors).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.tag_sets.is_empty()
            && self.paths.is_empty()
            && self.at.is_none()
            && self.job == JobFilter::Any
    }

    /// The snapshots that pass, in their original (oldest-first) order.
    pub fn apply(&self, snapshots: Vec<(SnapshotId, Snapshot)>) -> Vec<(SnapshotId, Snapshot)> {
        snapshots
            .into_iter()
            .filter(|(_, s)| self.matches(s))
            .collect()
    }

    /// Resolves `latest` or a unique id prefix among the snapshots that pass the filter.
    /// `snapshots` must be oldest first, as `Repository::snapshots` returns them.
    ///
    /// # Errors
    /// `InvalidInput` when nothing matches, or when a prefix matches several snapshots (listed).
    pub fn resolve(
        &self,
        spec: &str,
        snapshots: Vec<(SnapshotId, Snapshot)>,
    ) -> Result<(SnapshotId, Snapshot)> {
        let total = snapshots.len();
        let mut candidates = self.apply(snapshots);
        let filtered = if self.is_empty() {
            String::new()
        } else {
            format!(
                " among the {} snapshots that pass the filters",
                candidates.len()
            )
        };
        if spec == "latest" {
            return candidates.pop().ok_or_else(|| {
                Error::invalid_input(if total == 0 {
                    "no snapshots yet; make one with `cairn backup`".to_string()
                } else {
                    format!(
                        "none of the {total} snapshots passes the filters (--host/--tag/--path/--at/--job); \
                         list them with `cairn snapshots`"
                    )
                })
            });
        }
        let prefix = spec.to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid_input(format!(
                "{spec:?} is not a snapshot: give `latest` or a snapshot id (prefix) from `cairn snapshots`"
            )));
        }
        candidates.retain(|(id, _)| id.to_hex().starts_with(&prefix));
        match candidates.len() {
            1 => Ok(candidates.remove(0)),
            0 => Err(Error::invalid_input(format!(
                "no snapshot id starts with {spec:?}{filtered}; list them with `cairn snapshots`"
            ))),
            n => Err(Error::invalid_input(format!(
                "{spec:?} matches {n} snapshots{filtered} ({}); give more characters",
                candidates
                    .iter()
                    .map(|(id, s)| format!("{} {} {}", id.short(), s.time, s.host))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// Whether a snapshot holds `path` (`/`-separated, absolute): one of its sources is the path or
/// lies above it, or lies below it (the path is one of the directories leading to a source).
pub fn holds_path(snap: &Snapshot, path: &[u8]) -> bool {
    let under = |outer: &[u8], inner: &[u8]| {
        inner.len() > outer.len()
            && inner.starts_with(outer)
            && (outer.ends_with(b"/") || inner[outer.len()] == b'/')
    };
    path == b"/"
        || snap.paths.iter().any(|source| {
            let source = source.as_bytes();
            source == path || under(source, path) || under(path, source)
        })
}

impl SnapshotFilter {
    /// [`SnapshotFilter::resolve`] for a command that reads `path` of the snapshot: `latest` is
    /// the newest snapshot that holds it (a repository backs up several sources, each into its
    /// own snapshots), and a snapshot given by id that does not hold it is refused.
    ///
    /// # Errors
    /// As [`SnapshotFilter::resolve`]; `InvalidInput` naming the sources of the newest snapshots
    /// when none holds `path`.
    pub fn resolve_holding(
        &self,
        spec: &str,
        snapshots: Vec<(SnapshotId, Snapshot)>,
        path: &[u8],
    ) -> Result<(SnapshotId, Snapshot)> {
        if spec != "latest" || path == b"/" {
            return self.resolve(spec, snapshots);
        }
        let candidates = self.apply(snapshots);
        let mut sources: Vec<&str> = candidates
            .iter()
            .rev()
            .flat_map(|(_, s)| s.paths.iter().map(String::as_str))
            .collect();
        let holding = candidates.iter().rposition(|(_, s)| holds_path(s, path));
        match holding {
            Some(i) => Ok(candidates.into_iter().nth(i).expect("position found")),
            None => {
                sources.dedup();
                sources.truncate(6);
                Err(Error::invalid_input(format!(
                    "no snapshot{} holds {}: the newest back up {}; give a path inside one of them, or choose with --path, --host or a snapshot id",
                    if self.is_empty() { "" } else { " passing the filters" },
                    String::from_utf8_lossy(path),
                    if sources.is_empty() { "nothing".to_string() } else { sources.join(", ") },
                )))
            }
        }
    }

    /// The newest snapshot of each group of sources other than `chosen`'s among those passing
    /// the filter: what a bare `latest` passed over, for a note that says how to choose them.
    pub fn other_groups(
        &self,
        chosen: &Snapshot,
        snapshots: &[(SnapshotId, Snapshot)],
    ) -> Vec<(SnapshotId, Snapshot)> {
        let mut seen: Vec<&Vec<String>> = vec![&chosen.paths];
        let mut out = Vec::new();
        for (id, snap) in snapshots.iter().rev().filter(|(_, s)| self.matches(s)) {
            if !seen.contains(&&snap.paths) {
                seen.push(&snap.paths);
                out.push((*id, snap.clone()));
            }
        }
        out
    }
}

/// Parses a point in time for `--at`: `2026-01-23 14:30`, `2026-01-23T14:30:05`, or a date
/// alone (the end of that day), in local time unless a zone follows (`Z`, `UTC`, `+02:00`,
/// `-0500`); RFC 3339 is accepted as is.
///
/// # Errors
/// `InvalidInput` naming the accepted forms, or when the local time does not exist (a DST gap).
pub fn parse_point_in_time(text: &str) -> Result<DateTime<Utc>> {
    parse_with_zone(text.trim(), &Local)
}

fn parse_with_zone<Z: TimeZone>(text: &str, local: &Z) -> Result<DateTime<Utc>> {
    let invalid = || {
        Error::invalid_input(format!(
            "{text:?} is not a point in time: use \"2026-01-23 14:30\", \"2026-01-23T14:30:05\", \
             \"2026-01-23\" (end of that day), optionally followed by a zone (Z, UTC, +02:00)"
        ))
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let (body, zone) = split_zone(text);
    let naive = parse_naive(body).ok_or_else(invalid)?;
    match zone {
        Some(Zone::Fixed(offset)) => match offset.from_local_datetime(&naive) {
            LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
            _ => Err(invalid()),
        },
        Some(Zone::Invalid) => Err(invalid()),
        None => match local.from_local_datetime(&naive) {
            LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
            // A repeated hour (DST ends): the earlier reading is the conservative "at or before".
            LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
            LocalResult::None => Err(Error::invalid_input(format!(
                "{text:?} does not exist in the local time zone (a daylight-saving gap); \
                 give a zone, e.g. \"{body} +01:00\""
            ))),
        },
    }
}

enum Zone {
    Fixed(FixedOffset),
    Invalid,
}

/// Splits a trailing zone (`Z`, `UTC`, `+HH:MM`, `+HHMM`, `+HH`) off a date-time.
fn split_zone(text: &str) -> (&str, Option<Zone>) {
    if let Some(body) = text.strip_suffix(" UTC").or_else(|| text.strip_suffix('Z')) {
        return (
            body.trim_end(),
            Some(Zone::Fixed(FixedOffset::east_opt(0).expect("zero"))),
        );
    }
    // A zone sign comes after the time part; the date's own dashes sit before position 10.
    let Some(pos) = text.rfind(['+', '-']).filter(|&p| p > 10) else {
        return (text, None);
    };
    let (body, zone) = text.split_at(pos);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    let parsed = match digits.len() {
        2 => digits.parse::<i32>().ok().map(|h| h * 3600),
        4 => {
            let h = digits[..2].parse::<i32>().ok();
            let m = digits[2..].parse::<i32>().ok();
            h.zip(m).map(|(h, m)| h * 3600 + m * 60)
        }
        _ => None,
    };
    let zone = match parsed.and_then(|secs| FixedOffset::east_opt(sign * secs)) {
        Some(offset) => Zone::Fixed(offset),
        None => Zone::Invalid,
    };
    (body.trim_end(), Some(zone))
}

fn parse_naive(body: &str) -> Option<NaiveDateTime> {
    const FORMATS: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    if let Some(t) = FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(body, f).ok())
    {
        return Some(t);
    }
    // A date alone means "as of that day": its last instant.
    NaiveDate::parse_from_str(body, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 999_999_999))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Summary;

    fn snap(time: &str, host: &str, tags: &[&str], paths: &[&str]) -> Snapshot {
        Snapshot {
            time: time.into(),
            host: host.into(),
            username: "u".into(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            tree: "00".repeat(32),
            parent: None,
            program_version: "cairn test".into(),
            summary: Summary::default(),
            repaired_from: None,
            postgres: None,
            job: None,
        }
    }

    fn id(byte: u8) -> SnapshotId {
        SnapshotId::from_hex(&format!("{byte:02x}").repeat(32)).unwrap()
    }

    fn history() -> Vec<(SnapshotId, Snapshot)> {
        vec![
            (
                id(0xa1),
                snap("2026-01-20T10:00:00Z", "web", &["nightly"], &["/etc"]),
            ),
            (
                id(0xa2),
                snap("2026-01-21T10:00:00Z", "db", &["nightly", "pg"], &["/var"]),
            ),
            (
                id(0xb3),
                snap("2026-01-22T10:00:00Z", "web", &[], &["/etc", "/srv"]),
            ),
        ]
    }

    #[test]
    fn latest_honours_filters() {
        let all = SnapshotFilter::default();
        assert_eq!(all.resolve("latest", history()).unwrap().0, id(0xb3));
        let web_nightly = SnapshotFilter {
            hosts: vec!["web".into()],
            tag_sets: vec![vec!["nightly".into()]],
            ..Default::default()
        };
        assert_eq!(
            web_nightly.resolve("latest", history()).unwrap().0,
            id(0xa1)
        );
        let pg = SnapshotFilter {
            tag_sets: vec![vec!["nightly".into(), "pg".into()]],
            ..Default::default()
        };
        assert_eq!(pg.resolve("latest", history()).unwrap().0, id(0xa2));
        let srv = SnapshotFilter {
            paths: vec!["/srv".into()],
            ..Default::default()
        };
        assert_eq!(srv.resolve("latest", history()).unwrap().0, id(0xb3));
        let none = SnapshotFilter {
            hosts: vec!["mail".into()],
            ..Default::default()
        };
        let err = none.resolve("latest", history()).unwrap_err();
        assert!(err.to_string().contains("passes the filters"), "{err}");
    }

    #[test]
    fn prefixes_must_be_unique_and_ambiguity_lists_candidates() {
        let all = SnapshotFilter::default();
        assert_eq!(all.resolve("B3", history()).unwrap().0, id(0xb3));
        let err = all.resolve("a", history()).unwrap_err().to_string();
        assert!(err.contains("matches 2 snapshots"), "{err}");
        assert!(
            err.contains("a1a1a1a1") && err.contains("a2a2a2a2"),
            "{err}"
        );
        assert!(all.resolve("c", history()).is_err());
        assert!(all.resolve("yesterday", history()).is_err());
    }

    #[test]
    fn at_picks_the_newest_at_or_before() {
        let at = |text: &str| SnapshotFilter {
            at: Some(parse_with_zone(text, &Utc).unwrap()),
            ..Default::default()
        };
        let pick = |text: &str| at(text).resolve("latest", history()).map(|(i, _)| i);
        assert_eq!(pick("2026-01-21 10:00").unwrap(), id(0xa2));
        assert_eq!(pick("2026-01-21 09:59:59").unwrap(), id(0xa1));
        assert_eq!(pick("2026-01-21").unwrap(), id(0xa2));
        assert_eq!(pick("2026-01-22T12:00:00+02:00").unwrap(), id(0xb3));
        assert_eq!(pick("2026-01-22 12:00 +03:00").unwrap(), id(0xa2));
        assert!(pick("2026-01-19").is_err());
    }

    #[test]
    fn point_in_time_forms() {
        let utc = |text: &str| parse_with_zone(text, &Utc).map(|t| t.to_rfc3339());
        assert_eq!(
            utc("2026-01-23 14:30").unwrap(),
            "2026-01-23T14:30:00+00:00"
        );
        assert_eq!(
            utc("2026-01-23 14:30 UTC").unwrap(),
            "2026-01-23T14:30:00+00:00"
        );
        assert_eq!(
            utc("2026-01-23T14:30:00Z").unwrap(),
            "2026-01-23T14:30:00+00:00"
        );
        assert_eq!(
            utc("2026-01-23 14:30 -0500").unwrap(),
            "2026-01-23T19:30:00+00:00"
        );
        assert_eq!(
            utc("2026-01-23 14:30+01").unwrap(),
            "2026-01-23T13:30:00+00:00"
        );
        assert_eq!(
            utc("2026-01-23").unwrap(),
            "2026-01-23T23:59:59.999999999+00:00"
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-01-23 14:30 +5",
            "2026-01-23 25:00",
        ] {
            assert!(utc(bad).is_err(), "{bad}");
        }
    }
}
