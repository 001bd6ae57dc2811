//! `forget`: groups snapshots, applies a keep policy to each group, and removes the snapshot files it does not keep.
//!
//! Plan first, execute second: `--dry-run` is printing the plan. Never touches packs or indexes (prune does).

use std::collections::BTreeMap;

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::ops::retention::{self, Candidate, KeepPolicy, LocalClock};
use crate::repo::{Repository, SnapshotFilter};

/// Which snapshot fields form a group (each group gets the policy separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// Same host.
    pub host: bool,
    /// Same set of source paths.
    pub paths: bool,
    /// Same set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// Parses `host,paths,tags` (any subset; empty: one group).
    ///
    /// # Errors
    /// `InvalidInput` for another word.
    pub fn parse(text: &str) -> Result<Self> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for word in text.split(',').filter(|w| !w.is_empty()) {
            match word {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                _ => {
                    return Err(Error::invalid_input(format!(
                        "--group-by: unknown field {word:?} (use host, paths, tags)"
                    )))
                }
            }
        }
        Ok(g)
    }

    fn key(&self, snap: &Snapshot) -> GroupKey {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        GroupKey {
            host: self.host.then(|| snap.host.clone()),
            paths: self.paths.then(|| sorted(&snap.paths)),
            tags: self.tags.then(|| sorted(&snap.tags)),
        }
    }
}

/// The fields a group shares (`None`: not grouped by that field).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct GroupKey {
    /// Host.
    pub host: Option<String>,
    /// Sorted source paths.
    pub paths: Option<Vec<String>>,
    /// Sorted tags.
    pub tags: Option<Vec<String>>,
}

/// One snapshot's fate.
#[derive(Clone, Debug)]
pub struct SnapshotDecision {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its content.
    pub snapshot: Snapshot,
    /// The rules that keep it; empty when it is removed.
    pub reasons: Vec<String>,
}

impl SnapshotDecision {
    /// Whether the snapshot stays.
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The plan for one group, oldest snapshot first.
#[derive(Clone, Debug)]
pub struct GroupPlan {
    /// What the group shares.
    pub key: GroupKey,
    /// Each snapshot of the group.
    pub snapshots: Vec<SnapshotDecision>,
}

/// What forget will do.
#[derive(Clone, Debug, Default)]
pub struct ForgetPlan {
    /// Groups, in key order.
    pub groups: Vec<GroupPlan>,
    /// Snapshots left out of the rules because their claimed time is not to be trusted (on a
    /// locked location, [`set_aside_untrusted`]): they are kept.
    pub set_aside: Vec<SetAside>,
}

/// How far a snapshot's claimed time may be from when the storage wrote its file, on a locked
/// location (FORMAT.md §17, "Forged times").
#[derive(Clone, Copy, Debug)]
pub struct TimeTrust {
    /// Claimed after the write: only clocks that disagree (default 1 hour).
    pub ahead: chrono::Duration,
    /// Claimed before the write: the backup's own duration and the delay until a sync copied
    /// it (default 2 days).
    pub behind: chrono::Duration,
}

impl Default for TimeTrust {
    fn default() -> Self {
        TimeTrust {
            ahead: chrono::Duration::hours(1),
            behind: chrono::Duration::days(2),
        }
    }
}

/// A snapshot whose claimed time is too far from when its file was written.
#[derive(Clone, Debug)]
pub struct SetAside {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its content (with the claimed time).
    pub snapshot: Snapshot,
    /// When the storage wrote its file.
    pub written: chrono::DateTime<chrono::Utc>,
}

/// Snapshots split by [`set_aside_untrusted`].
pub struct TrustSplit {
    /// Claimed within the trusted window of their write.
    pub trusted: Vec<(SnapshotId, Snapshot)>,
    /// The others.
    pub set_aside: Vec<SetAside>,
}

/// Splits `snapshots` into those whose claimed time lies within `trust` of when `backend` wrote
/// their file and those it does not. A host holding the key can claim any time (`backup --time`);
/// storage write times it cannot choose. A snapshot claimed far from its write is set aside: it
/// pushes no other snapshot out of a rule, and is itself kept. A backend that cannot tell write
/// times trusts every snapshot.
///
/// # Errors
/// When a snapshot file's write time cannot be read.
pub fn set_aside_untrusted(
    backend: &dyn crate::backend::Backend,
    snapshots: Vec<(SnapshotId, Snapshot)>,
    trust: TimeTrust,
) -> Result<TrustSplit> {
    let written = crate::threads::map_bounded(&snapshots, 16, |(id, _)| {
        backend.modified(crate::backend::ObjectKind::Snapshot, &id.to_hex())
    });
    let mut trusted = Vec::new();
    let mut aside = Vec::new();
    for ((id, snapshot), written) in snapshots.into_iter().zip(written) {
        match written? {
            Some(w)
                if snapshot.datetime() > w + trust.ahead
                    || snapshot.datetime() < w - trust.behind =>
            {
                aside.push(SetAside {
                    id,
                    snapshot,
                    written: w,
                })
            }
            _ => trusted.push((id, snapshot)),
        }
    }
    Ok(TrustSplit {
        trusted,
        set_aside: aside,
    })
}

impl ForgetPlan {
    /// The snapshots to remove.
    pub fn removals(&self) -> impl Iterator<Item = &SnapshotDecision> {
        self.groups
            .iter()
            .flat_map(|g| g.snapshots.iter())
            .filter(|d| !d.keep())
    }

    /// Groups that would lose every snapshot.
    pub fn emptied_groups(&self) -> impl Iterator<Item = &GroupPlan> {
        self.groups
            .iter()
            .filter(|g| g.snapshots.iter().all(|d| !d.keep()))
    }
}

/// Plans forget over the snapshots passing `filter`.
///
/// # Errors
/// When snapshots cannot be listed or read.
pub fn plan(
    repo: &Repository,
    filter: &SnapshotFilter,
    group_by: GroupBy,
    policy: &KeepPolicy,
    local: LocalClock<'_>,
) -> Result<ForgetPlan> {
    let snapshots = filter.apply(repo.snapshots()?);
    // On a locked location the locks protect what the rules keep: a forged time must not move
    // real snapshots out of them (FORMAT.md §17).
    let TrustSplit {
        trusted: snapshots,
        set_aside,
    } = if repo.backend().lock_settings()?.is_some() {
        set_aside_untrusted(repo.backend(), snapshots, TimeTrust::default())?
    } else {
        TrustSplit {
            trusted: snapshots,
            set_aside: Vec::new(),
        }
    };
    let mut plan = plan_snapshots(snapshots, group_by, policy, local);
    // Listed in their groups as kept, so reports show them where they belong.
    for s in &set_aside {
        let key = group_by.key(&s.snapshot);
        let decision = SnapshotDecision {
            id: s.id,
            snapshot: s.snapshot.clone(),
            reasons: vec![format!(
                "time not trusted (written {})",
                s.written.to_rfc3339()
            )],
        };
        match plan.groups.iter_mut().find(|g| g.key == key) {
            Some(group) => {
                group.snapshots.push(decision);
                group.snapshots.sort_by_key(|d| d.snapshot.datetime());
            }
            None => plan.groups.push(GroupPlan {
                key,
                snapshots: vec![decision],
            }),
        }
    }
    plan.groups.sort_by(|a, b| a.key.cmp(&b.key));
    plan.set_aside = set_aside;
    Ok(plan)
}

/// Plans forget over given snapshots (oldest first).
pub fn plan_snapshots(
    snapshots: Vec<(SnapshotId, Snapshot)>,
    group_by: GroupBy,
    policy: &KeepPolicy,
    local: LocalClock<'_>,
) -> ForgetPlan {
    let mut groups: BTreeMap<GroupKey, Vec<(SnapshotId, Snapshot)>> = BTreeMap::new();
    for (id, snap) in snapshots {
        groups
            .entry(group_by.key(&snap))
            .or_default()
            .push((id, snap));
    }
    let groups = groups
        .into_iter()
        .map(|(key, members)| {
            let candidates: Vec<Candidate<'_>> = members
                .iter()
                .map(|(_, s)| Candidate {
                    time: s.datetime(),
                    tags: &s.tags,
                })
                .collect();
            let reasons = retention::apply(policy, &candidates, local);
            GroupPlan {
                key,
                snapshots: members
                    .into_iter()
                    .zip(reasons)
                    .map(|((id, snapshot), reasons)| SnapshotDecision {
                        id,
                        snapshot,
                        reasons,
                    })
                    .collect(),
            }
        })
        .collect();
    ForgetPlan {
        groups,
        set_aside: Vec::new(),
    }
}

/// Removes the snapshot files the plan does not keep; returns how many.
///
/// # Errors
/// `InvalidInput` when a group would lose every snapshot and `allow_remove_all` is false (nothing is
/// removed then); backend errors.
pub fn execute(repo: &Repository, plan: &ForgetPlan, allow_remove_all: bool) -> Result<usize> {
    if !allow_remove_all {
        if let Some(g) = plan.emptied_groups().next() {
            return Err(Error::invalid_input(format!(
                "refusing to remove all {} snapshot(s) of group {}; add a --keep-* rule that keeps one, or pass --allow-remove-all",
                g.snapshots.len(),
                describe_group(&g.key)
            )));
        }
    }
    let mut removed = 0;
    for d in plan.removals() {
        repo.backend()
            .remove(ObjectKind::Snapshot, &d.id.to_hex())?;
        removed += 1;
    }
    Ok(removed)
}

/// Removes the snapshots `ids` named (restic's `forget ID...`); returns how many.
///
/// # Errors
/// Backend errors (the ones removed before stay removed).
pub fn remove(repo: &Repository, ids: &[SnapshotId]) -> Result<usize> {
    for id in ids {
        repo.backend().remove(ObjectKind::Snapshot, &id.to_hex())?;
    }
    Ok(ids.len())
}

/// A group key for messages, e.g. `host db1, paths /etc,/home`.
pub fn describe_group(key: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &key.host {
        parts.push(format!("host {h}"));
    }
    if let Some(p) = &key.paths {
        parts.push(format!("paths {}", p.join(",")));
    }
    if let Some(t) = &key.tags {
        parts.push(format!(
            "tags {}",
            if t.is_empty() {
                "(none)".into()
            } else {
                t.join(",")
            }
        ));
    }
    if parts.is_empty() {
        "(all snapshots)".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Summary;

    fn snap(host: &str, time: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            time: time.into(),
            host: host.into(),
            username: "u".into(),
            paths: vec!["/etc".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tree: "00".repeat(32),
            parent: None,
            program_version: "cairn test".into(),
            summary: Summary::default(),
            repaired_from: None,
            postgres: None,
            job: None,
        }
    }

    #[test]
    fn groups_by_host_and_refuses_to_empty_a_group() {
        let snaps = vec![
            (SnapshotId([1; 32]), snap("a", "2026-01-01T00:00:00Z", &[])),
            (
                SnapshotId([2; 32]),
                snap("a", "2026-01-02T00:00:00Z", &["x"]),
            ),
            (SnapshotId([3; 32]), snap("b", "2026-01-01T00:00:00Z", &[])),
        ];
        let local = |t: chrono::DateTime<chrono::Utc>| t.naive_utc();
        let policy = KeepPolicy {
            last: 1,
            ..Default::default()
        };
        let plan = plan_snapshots(snaps.clone(), GroupBy::default(), &policy, &local);
        assert_eq!(plan.groups.len(), 2);
        let removed: Vec<SnapshotId> = plan.removals().map(|d| d.id).collect();
        assert_eq!(removed, vec![SnapshotId([1; 32])]);
        assert_eq!(plan.emptied_groups().count(), 0);

        let by_tag = KeepPolicy {
            tags: vec!["x".into()],
            ..Default::default()
        };
        let plan = plan_snapshots(snaps, GroupBy::parse("").unwrap(), &by_tag, &local);
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.removals().count(), 2);
        assert!(GroupBy::parse("host,colour").is_err());
    }
}
