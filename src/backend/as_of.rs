//! A repository on S3 read as it was at a past time, from the versions a versioned bucket keeps: for
//! every key, the newest version written at or before that time, unless that version is a delete marker.
//!
//! Lists every version once, when opened, and serves reads of the chosen versions by their ids, so the view
//! does not change while a command reads it (FORMAT.md §1, "Reading a past state"). It never writes,
//! removes or creates anything: every such call is refused with an `InvalidInput` error.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use super::location::Location;
use super::remote::RemoteBackend;
use super::{object_path, Backend, BackendOptions, ObjectKind};
use crate::error::{Error, ErrorKind, Result};

/// One version of one object, as a versioned listing names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The object's path relative to the repository root (`config`, `data/ab/ab…`).
    pub path: String,
    /// The id the storage gave this version.
    pub version: String,
    /// When the storage stored it (S3's `LastModified`, to the second on most servers).
    pub modified: DateTime<Utc>,
    /// Its length; 0 for a delete marker.
    pub size: u64,
    /// Whether this version is a delete marker: the object was deleted then.
    pub deleted: bool,
    /// Whether this is the newest version of the object (what a plain read returns today).
    pub current: bool,
}

/// The version of an object a past view reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Chosen {
    /// The version id to read.
    pub version: String,
    /// Its length.
    pub size: u64,
}

/// For every path, the version current at `time`: the newest of those stored at or before `time`, left
/// out when that is a delete marker or when there is none. Versions stored after `time` play no part.
///
/// Times are often whole seconds, so two versions of one object may carry the same time. S3 lists the
/// versions of a key newest first, but a listing reports delete markers apart from the other versions;
/// so among versions of equal time, the one the storage calls current wins (it is the newest of all),
/// then a version with data over a delete marker (reading an object deleted within the second it was
/// written does less harm than losing one), then the one listed first.
pub(crate) fn choose(
    versions: Vec<ObjectVersion>,
    time: DateTime<Utc>,
) -> BTreeMap<String, Chosen> {
    let mut newest: BTreeMap<String, (usize, ObjectVersion)> = BTreeMap::new();
    for (order, v) in versions.into_iter().enumerate() {
        if v.modified > time {
            continue;
        }
        let rank = |(order, v): &(usize, ObjectVersion)| {
            (v.modified, v.current, !v.deleted, std::cmp::Reverse(*order))
        };
        let candidate = (order, v);
        match newest.get(&candidate.1.path) {
            Some(held) if rank(held) >= rank(&candidate) => {}
            _ => {
                newest.insert(candidate.1.path.clone(), candidate);
            }
        }
    }
    newest
        .into_iter()
        .filter(|(_, (_, v))| !v.deleted)
        .map(|(path, (_, v))| {
            let chosen = Chosen {
                version: v.version,
                size: v.size,
            };
            (path, chosen)
        })
        .collect()
}

/// A read-only view of an S3 repository as it was at a past time.
///
/// Readers of a view need no lease (FORMAT.md §12), and cannot write one: a prune of the live
/// repository deletes by adding delete markers, which leave every version the view reads in place.
pub struct AsOfBackend {
    remote: RemoteBackend,
    time: DateTime<Utc>,
    /// The version each object had at `time`, by path relative to the repository root.
    objects: BTreeMap<String, Chosen>,
}

impl AsOfBackend {
    /// Lists every version of every object at `location` and keeps those current at `time`.
    ///
    /// # Errors
    /// `InvalidInput` when the location is not on S3 or its bucket keeps no versions;
    /// `NotARepository` when the view holds no config (no repository at that time); `Backend` when
    /// the listing fails (a bucket that does not exist is named as such).
    pub fn open(
        location: &Location,
        options: &BackendOptions,
        time: DateTime<Utc>,
    ) -> Result<Self> {
        let elsewhere = match location {
            Location::S3 { .. } => None,
            Location::OpenDal { scheme } if scheme == "s3" => None,
            Location::Local(_) => Some("a local directory"),
            Location::Sftp { .. } => Some("an SFTP location"),
            Location::Webdav { .. } => Some("a WebDAV location"),
            Location::OpenDal { .. } => Some("not on S3"),
        };
        if let Some(kind) = elsewhere {
            return Err(Error::invalid_input(format!(
                "{location} is {kind}: only an S3 repository whose bucket keeps object versions \
                 (bucket versioning) holds its past states"
            )));
        }
        let remote = RemoteBackend::new(location, options)?;
        let versions = remote.list_versions("")?;
        // Objects written while versioning is off get the version id "null"; when every one has it,
        // the bucket never kept a past state to read.
        if !versions.is_empty() && versions.iter().all(|v| v.version == "null") {
            return Err(Error::invalid_input(format!(
                "the bucket of {location} keeps no object versions (bucket versioning is not enabled), so \
                 its past states are gone: only the current one can be read"
            )));
        }
        let first_config = versions
            .iter()
            .filter(|v| v.path == "config" && !v.deleted)
            .map(|v| v.modified)
            .min();
        let objects = choose(versions, time);
        let view = AsOfBackend {
            remote,
            time,
            objects,
        };
        if !view.objects.contains_key("config") {
            // Tells a bucket that does not exist from one that held no repository then.
            view.remote.has_config()?;
            let why = match first_config {
                Some(first) if first > time => format!(
                    "its config was first written at {}, after that time",
                    first.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
                Some(_) => "its config had been deleted by then".to_string(),
                None => "the bucket holds no version of its config".to_string(),
            };
            return Err(Error::new(
                ErrorKind::NotARepository,
                format!(
                    "there was no cairn repository at {location} as of {}: {why}",
                    view.time_label()
                ),
            ));
        }
        Ok(view)
    }

    /// The time the view shows.
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }

    fn time_label(&self) -> String {
        self.time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// The version an object had at the view's time, or the error that it had none.
    fn chosen(&self, kind: ObjectKind, name: &str) -> Result<&Chosen> {
        let path = object_path(kind, name)?;
        match self.objects.get(&path) {
            Some(chosen) => Ok(chosen),
            None => Err(super::missing(
                kind,
                name,
                &format!(
                    "{}/{path} as of {}",
                    self.remote.location().trim_end_matches('/'),
                    self.time_label()
                ),
            )),
        }
    }

    fn refused(&self, what: &str) -> Error {
        Error::invalid_input(format!(
            "cannot {what}: {} is open read-only, as it was at {} (--as-of); nothing was written",
            self.remote.location(),
            self.time_label()
        ))
    }
}

impl Backend for AsOfBackend {
    fn location(&self) -> String {
        self.remote.location()
    }

    fn has_config(&self) -> Result<bool> {
        Ok(self.objects.contains_key("config"))
    }

    fn create(&self) -> Result<()> {
        Err(self.refused("create a repository"))
    }

    fn list_all(&self, kind: ObjectKind) -> Result<Vec<(String, u64)>> {
        if kind == ObjectKind::Config {
            return Ok(self
                .objects
                .get("config")
                .map(|c| vec![("config".to_string(), c.size)])
                .unwrap_or_default());
        }
        let dir = kind.dir();
        let mut out: Vec<(String, u64)> = self
            .objects
            .range(dir.to_string()..)
            .take_while(|(path, _)| path.starts_with(dir))
            .filter_map(|(path, chosen)| {
                let name = path.rsplit('/').next().filter(|n| !n.is_empty())?;
                Some((name.to_string(), chosen.size))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn read_bounded_into(
        &self,
        kind: ObjectKind,
        name: &str,
        max: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let chosen = self.chosen(kind, name)?;
        if chosen.size > max {
            return Err(super::too_large(kind, name, chosen.size, max));
        }
        self.remote
            .read_version_into(kind, name, &chosen.version, 0..chosen.size, buf)
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let chosen = self.chosen(kind, name)?;
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= chosen.size)
            .ok_or_else(|| super::too_short(kind, name, Some(chosen.size), offset, len))?;
        let mut out = Vec::new();
        self.remote
            .read_version_into(kind, name, &chosen.version, offset..end, &mut out)?;
        Ok(out)
    }

    fn size(&self, kind: ObjectKind, name: &str) -> Result<u64> {
        Ok(self.chosen(kind, name)?.size)
    }

    fn write(&self, kind: ObjectKind, name: &str, _bytes: &[u8]) -> Result<()> {
        Err(self.refused(&format!("write {} {name}", kind.label())))
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        Err(self.refused(&format!("remove {} {name}", kind.label())))
    }

    fn read_only(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + second, 0).unwrap()
    }

    fn version(path: &str, id: &str, second: i64, size: u64) -> ObjectVersion {
        ObjectVersion {
            path: path.to_string(),
            version: id.to_string(),
            modified: at(second),
            size,
            deleted: false,
            current: false,
        }
    }

    fn marker(path: &str, id: &str, second: i64) -> ObjectVersion {
        ObjectVersion {
            deleted: true,
            ..version(path, id, second, 0)
        }
    }

    fn chosen_at(versions: &[ObjectVersion], second: i64) -> Vec<(String, String)> {
        choose(versions.to_vec(), at(second))
            .into_iter()
            .map(|(path, c)| (path, c.version))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, v)| (p.to_string(), v.to_string()))
            .collect()
    }

    /// The attack of the issue "ransomware recovery": every object deleted, every pack overwritten.
    #[test]
    fn the_newest_version_at_or_before_the_time_wins_and_a_delete_marker_means_absent() {
        // Listed as S3 lists them: each key's versions newest first, delete markers apart.
        let mut garbage = version("data/ab/ab01", "garbage", 30, 7);
        garbage.current = true;
        let versions = vec![
            version("config", "c1", 0, 100),
            garbage,
            version("data/ab/ab01", "p1", 1, 5000),
            version("snapshots/s2", "s2", 10, 300),
            version("snapshots/s1", "s1", 2, 200),
            version("index/i1", "i1", 1, 400),
            marker("config", "cdel", 20),
            marker("data/ab/ab01", "pdel", 20),
            marker("snapshots/s1", "s1del", 5),
            marker("snapshots/s2", "s2del", 20),
            marker("index/i1", "idel", 20),
        ];
        // Before anything was written: nothing.
        assert!(chosen_at(&versions, -1).is_empty());
        // At the time of a version: it counts ("at or before").
        assert_eq!(
            chosen_at(&versions, 1),
            pairs(&[("config", "c1"), ("data/ab/ab01", "p1"), ("index/i1", "i1")])
        );
        // s1 was written, then deleted at 5: absent at 5 and after; s2 appears at 10.
        assert_eq!(
            chosen_at(&versions, 4),
            pairs(&[
                ("config", "c1"),
                ("data/ab/ab01", "p1"),
                ("index/i1", "i1"),
                ("snapshots/s1", "s1"),
            ])
        );
        let before_attack = pairs(&[
            ("config", "c1"),
            ("data/ab/ab01", "p1"),
            ("index/i1", "i1"),
            ("snapshots/s2", "s2"),
        ]);
        assert_eq!(chosen_at(&versions, 5), before_attack[..3].to_vec());
        assert_eq!(chosen_at(&versions, 19), before_attack);
        // The deletions at 20 and the garbage at 30 are after the time asked: ignored.
        let view = choose(versions.clone(), at(19));
        assert_eq!(view["data/ab/ab01"].size, 5000);
        // After the attack: only the garbage pack, which is what the storage serves today.
        assert_eq!(
            chosen_at(&versions, 25),
            Vec::<(String, String)>::new(),
            "every object was deleted at 20"
        );
        assert_eq!(
            chosen_at(&versions, 30),
            pairs(&[("data/ab/ab01", "garbage")])
        );
    }

    #[test]
    fn versions_of_the_same_second_are_told_apart_by_the_listing() {
        // The current version wins a tie: it is the newest of all.
        let mut current_marker = marker("snapshots/s", "del", 3);
        current_marker.current = true;
        let versions = vec![version("snapshots/s", "v", 3, 10), current_marker];
        assert!(chosen_at(&versions, 3).is_empty());
        // Neither current: the data version wins over a delete marker of the same second.
        let versions = vec![
            version("snapshots/s", "v", 3, 10),
            marker("snapshots/s", "del", 3),
        ];
        assert_eq!(chosen_at(&versions, 3), pairs(&[("snapshots/s", "v")]));
        // Two data versions of one second: the one listed first (S3 lists newest first).
        let versions = vec![
            version("config", "newer", 3, 10),
            version("config", "older", 3, 10),
        ];
        assert_eq!(chosen_at(&versions, 3), pairs(&[("config", "newer")]));
    }
}
