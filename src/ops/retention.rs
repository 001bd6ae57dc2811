//! Keep policies: which snapshots of one group a `--keep-*` rule set keeps, and why.
//!
//! Pure logic over times and tags; no repository access. Calendar buckets (hour, day, ISO week, month,
//! year) are taken in a local time zone that the caller injects, so tests can pin DST transitions.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// Maps a UTC instant to the local wall-clock time whose calendar buckets apply.
pub type LocalClock<'a> = &'a dyn Fn(DateTime<Utc>) -> NaiveDateTime;

/// The system's local time zone.
pub fn system_local(t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&chrono::Local).naive_local()
}

/// The keep rules: the one type behind `cairn forget --keep-*` (its clap arguments), the plan
/// file's `[retention]` keys (`keep_*`, flattened there) and [`apply`]. A snapshot is kept when any
/// rule keeps it. Adding a rule is one field here plus its bucket in [`apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct KeepPolicy {
    /// Keep the newest N snapshots.
    #[serde(rename = "keep_last", default, skip_serializing_if = "is_zero")]
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "keep_last",
            long = "keep-last",
            value_name = "N",
            default_value_t = 0
        )
    )]
    pub last: u32,
    /// Keep the newest snapshot of each of the newest N hours that have one.
    #[serde(rename = "keep_hourly", default, skip_serializing_if = "is_zero")]
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "keep_hourly",
            long = "keep-hourly",
            value_name = "N",
            default_value_t = 0
        )
    )]
    pub hourly: u32,
    /// Keep the newest snapshot of each of the newest N local calendar days that have one.
    #[serde(rename = "keep_daily", default, skip_serializing_if = "is_zero")]
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "keep_daily",
            long = "keep-daily",
            value_name = "N",
            default_value_t = 0
        )
    )]
    pub daily: u32,
    /// Likewise for ISO 8601 weeks (Monday to Sunday; a year may have week 53).
    #[serde(rename = "keep_weekly", default, skip_serializing_if = "is_zero")]
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "keep_weekly",
            long = "keep-weekly",
            value_name = "N",
            default_value_t = 0
        )
    )]
    pub weekly: u32,
    /// Likewise for calendar months.
    #[serde(rename = "keep_monthly", default, skip_serializing_if = "is_zero")]
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "keep_monthly",
            long = "keep-monthly",
            value_name = "N",
            default_value_t = 0
        )
    )]
    pub monthly: u32,
    /// Likewise for calendar years.
    #[serde(rename = "keep_yearly", default, skip_serializing_if = "is_zero")]
    #[cfg_attr(
        feature = "cli",
        arg(
            id = "keep_yearly",
            long = "keep-yearly",
            value_name = "N",
            default_value_t = 0
        )
    )]
    pub yearly: u32,
    /// Keep every snapshot at most this much older than the group's newest (e.g. 30d, 1y6mo, 12h).
    #[serde(
        rename = "keep_within",
        default,
        with = "span_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(
        feature = "cli",
        arg(id = "keep_within", long = "keep-within", value_name = "DURATION", value_parser = crate::units::parse_time_span)
    )]
    pub within: Option<Duration>,
    /// Keep every snapshot with this tag (repeat for several).
    #[serde(rename = "keep_tag", default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(
        feature = "cli",
        arg(id = "keep_tag", long = "keep-tag", value_name = "TAG")
    )]
    pub tags: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `keep_within` in the plan file: a span as `--keep-within` takes it (`30d`, `1y6mo`).
mod span_text {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(span: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        let seconds = span.map_or(0, |d| d.num_seconds().max(0) as u64);
        s.serialize_str(&crate::units::format_span(std::time::Duration::from_secs(
            seconds,
        )))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        crate::units::parse_time_span(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

impl KeepPolicy {
    /// Whether no rule is set (such a policy keeps nothing).
    pub fn is_empty(&self) -> bool {
        *self == KeepPolicy::default()
    }
}

/// What the policy is applied to: one snapshot's time and tags.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    /// Backup time.
    pub time: DateTime<Utc>,
    /// Tags.
    pub tags: &'a [String],
}

/// Applies `policy` to one group; returns, in the candidates' order, the rules that keep each one
/// (empty: removed). Among snapshots of one bucket the newest is the one kept.
pub fn apply(
    policy: &KeepPolicy,
    candidates: &[Candidate<'_>],
    local: LocalClock<'_>,
) -> Vec<Vec<String>> {
    let mut reasons = vec![Vec::new(); candidates.len()];
    // Newest first; ties keep input order so the result is deterministic.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| candidates[b].time.cmp(&candidates[a].time).then(a.cmp(&b)));

    type Bucket = fn(NaiveDateTime) -> (i32, u32, u32, u32);
    let buckets: [(&str, u32, Bucket); 5] = [
        ("hourly", policy.hourly, |t| {
            (t.year(), t.month(), t.day(), t.hour())
        }),
        ("daily", policy.daily, |t| (t.year(), t.month(), t.day(), 0)),
        ("weekly", policy.weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week(), 0, 0)
        }),
        ("monthly", policy.monthly, |t| (t.year(), t.month(), 0, 0)),
        ("yearly", policy.yearly, |t| (t.year(), 0, 0, 0)),
    ];
    for (rank, &i) in order.iter().enumerate() {
        if (rank as u64) < u64::from(policy.last) {
            reasons[i].push(format!("last {}", rank + 1));
        }
    }
    for (name, count, bucket) in buckets {
        let mut left = count;
        let mut previous = None;
        for &i in &order {
            if left == 0 {
                break;
            }
            let key = bucket(local(candidates[i].time));
            if previous != Some(key) {
                previous = Some(key);
                left -= 1;
                reasons[i].push(format!("{name} {}", count - left));
            }
        }
    }
    if let (Some(within), Some(&newest)) = (policy.within, order.first()) {
        let limit = candidates[newest].time - within;
        for &i in &order {
            if candidates[i].time >= limit {
                reasons[i].push("within".to_string());
            }
        }
    }
    for (i, c) in candidates.iter().enumerate() {
        for tag in policy.tags.iter().filter(|t| c.tags.contains(t)) {
            reasons[i].push(format!("tag {tag}"));
        }
    }
    reasons
}

/// Until when `policy` goes on keeping a snapshot taken at `time` that [`apply`] keeps for
/// `reasons`, if backups go on at least as often as its rules count: the latest over its dated
/// rules (hourly N: N hours after it; daily N: N days; weekly N: N weeks; monthly N: N months of
/// 31 days; yearly N: N years of 366 days; within: the span). `None` when only rules without a
/// date (last, tags) keep it. Object Lock extends locks to this date (FORMAT.md §17).
pub fn horizon(
    policy: &KeepPolicy,
    time: DateTime<Utc>,
    reasons: &[String],
) -> Option<DateTime<Utc>> {
    reasons
        .iter()
        .filter_map(|reason| {
            let rule = reason.split(' ').next().unwrap_or_default();
            let span = match rule {
                "hourly" => Duration::hours(i64::from(policy.hourly)),
                "daily" => Duration::days(i64::from(policy.daily)),
                "weekly" => Duration::weeks(i64::from(policy.weekly)),
                "monthly" => Duration::days(31 * i64::from(policy.monthly)),
                "yearly" => Duration::days(366 * i64::from(policy.yearly)),
                "within" => policy.within?,
                _ => return None,
            };
            Some(time + span)
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn as_utc(t: DateTime<Utc>) -> NaiveDateTime {
        t.naive_utc()
    }

    /// Europe/Berlin in 2026: CET (+1), CEST (+2) from 29 March 01:00 UTC to 25 October 01:00 UTC.
    fn berlin(t: DateTime<Utc>) -> NaiveDateTime {
        let summer = t >= utc("2026-03-29T01:00:00Z") && t < utc("2026-10-25T01:00:00Z");
        (t + Duration::hours(if summer { 2 } else { 1 })).naive_utc()
    }

    /// Runs `policy` over snapshots at `times` (no tags) and returns the indices kept.
    fn kept(policy: &KeepPolicy, times: &[&str], local: LocalClock<'_>) -> Vec<usize> {
        let candidates: Vec<Candidate<'_>> = times
            .iter()
            .map(|t| Candidate {
                time: utc(t),
                tags: &[],
            })
            .collect();
        apply(policy, &candidates, local)
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn a_snapshot_is_kept_until_its_longest_dated_rule_lets_it_go() {
        let policy = KeepPolicy {
            last: 1,
            daily: 7,
            monthly: 12,
            ..Default::default()
        };
        let t = utc("2026-01-31T23:00:00Z");
        let daily = ["daily 1".to_string()];
        assert_eq!(horizon(&policy, t, &daily), Some(t + Duration::days(7)));
        let monthly = ["daily 2".to_string(), "monthly 1".to_string()];
        assert_eq!(horizon(&policy, t, &monthly), Some(t + Duration::days(372)));
        assert_eq!(horizon(&policy, t, &["last 1".to_string()]), None);
    }

    #[test]
    fn keep_last_keeps_the_newest_whatever_the_input_order() {
        let policy = KeepPolicy {
            last: 2,
            ..Default::default()
        };
        let times = [
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-01T00:00:00Z",
        ];
        assert_eq!(kept(&policy, &times, &as_utc), vec![0, 1]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_for_n_days_that_have_snapshots() {
        let policy = KeepPolicy {
            daily: 3,
            ..Default::default()
        };
        let times = [
            "2026-01-01T08:00:00Z", // 0
            "2026-01-01T20:00:00Z", // 1: newest of 1 Jan
            "2026-01-03T09:00:00Z", // 2: newest of 3 Jan (2 Jan has none: not counted)
            "2026-01-04T01:00:00Z", // 3
            "2026-01-04T23:59:59Z", // 4: newest of 4 Jan
        ];
        assert_eq!(kept(&policy, &times, &as_utc), vec![1, 2, 4]);
    }

    #[test]
    fn weekly_uses_iso_weeks_including_week_53() {
        // 2026-12-31 (Thursday) and 2027-01-03 (Sunday) are both in ISO week 2026-W53;
        // 2026-12-27 (Sunday) is W52; 2027-01-04 (Monday) is 2027-W01.
        let policy = KeepPolicy {
            weekly: 3,
            ..Default::default()
        };
        let times = [
            "2026-12-27T12:00:00Z", // 0: W52
            "2026-12-31T12:00:00Z", // 1: W53, older
            "2027-01-03T12:00:00Z", // 2: W53, newest of the week
            "2027-01-04T12:00:00Z", // 3: 2027-W01
        ];
        assert_eq!(kept(&policy, &times, &as_utc), vec![0, 2, 3]);
    }

    #[test]
    fn monthly_and_yearly_split_at_month_and_year_ends() {
        let times = [
            "2024-02-29T23:00:00Z", // 0: Feb 2024 (leap day)
            "2024-03-01T00:30:00Z", // 1: March 2024
            "2024-03-31T23:59:59Z", // 2: March 2024, newest
            "2024-12-31T23:59:59Z", // 3: Dec 2024, newest of 2024
            "2025-01-01T00:00:00Z", // 4: 2025
        ];
        let monthly = KeepPolicy {
            monthly: 3,
            ..Default::default()
        };
        assert_eq!(kept(&monthly, &times, &as_utc), vec![2, 3, 4]);
        let yearly = KeepPolicy {
            yearly: 5,
            ..Default::default()
        };
        assert_eq!(kept(&yearly, &times, &as_utc), vec![3, 4]);
    }

    #[test]
    fn buckets_follow_the_local_calendar_across_dst_changes() {
        // 25 Oct 2026, Berlin: 02:00-03:00 happens twice (00:30Z is 02:30 CEST, 01:30Z is 02:30 CET).
        let times = [
            "2026-10-25T00:30:00Z", // 0: 02:30 local (CEST)
            "2026-10-25T01:30:00Z", // 1: 02:30 local again (CET): same local hour
            "2026-10-25T02:30:00Z", // 2: 03:30 local
        ];
        let hourly = KeepPolicy {
            hourly: 10,
            ..Default::default()
        };
        assert_eq!(kept(&hourly, &times, &berlin), vec![1, 2]);
        assert_eq!(kept(&hourly, &times, &as_utc), vec![0, 1, 2]);
        // 23:30Z on 24 Oct is already 25 Oct in Berlin (CEST), so it shares a local day with the others.
        let times = [
            "2026-10-24T21:30:00Z",
            "2026-10-24T22:30:00Z",
            "2026-10-25T02:30:00Z",
        ];
        let daily = KeepPolicy {
            daily: 10,
            ..Default::default()
        };
        assert_eq!(kept(&daily, &times, &berlin), vec![0, 2]);
        assert_eq!(kept(&daily, &times, &as_utc), vec![1, 2]);
        // Spring forward, 29 Mar 2026: 00:59Z is 01:59 CET, 01:00Z is 03:00 CEST; 02:xx never exists.
        let times = ["2026-03-29T00:59:00Z", "2026-03-29T01:00:00Z"];
        assert_eq!(kept(&hourly, &times, &berlin), vec![0, 1]);
    }

    #[test]
    fn within_is_measured_from_the_newest_snapshot_and_tags_keep_their_bearers() {
        let nightly = vec!["nightly".to_string()];
        let times = [
            "2026-01-01T00:00:00Z",
            "2026-01-20T00:00:00Z",
            "2026-01-31T00:00:00Z",
        ];
        let candidates = [
            Candidate {
                time: utc(times[0]),
                tags: &nightly,
            },
            Candidate {
                time: utc(times[1]),
                tags: &[],
            },
            Candidate {
                time: utc(times[2]),
                tags: &[],
            },
        ];
        let policy = KeepPolicy {
            within: Some(Duration::days(11)),
            tags: nightly.clone(),
            ..Default::default()
        };
        let reasons = apply(&policy, &candidates, &as_utc);
        assert_eq!(
            reasons,
            vec![
                vec!["tag nightly".to_string()],
                vec!["within".into()],
                vec!["within".into()]
            ]
        );
    }

    #[test]
    fn several_rules_name_every_reason_and_an_empty_policy_keeps_nothing() {
        let times = ["2026-05-01T10:00:00Z", "2026-05-02T10:00:00Z"];
        let candidates: Vec<Candidate<'_>> = times
            .iter()
            .map(|t| Candidate {
                time: utc(t),
                tags: &[],
            })
            .collect();
        let policy = KeepPolicy {
            last: 1,
            daily: 2,
            monthly: 1,
            ..Default::default()
        };
        let reasons = apply(&policy, &candidates, &as_utc);
        assert_eq!(reasons[1], vec!["last 1", "daily 1", "monthly 1"]);
        assert_eq!(reasons[0], vec!["daily 2"]);
        assert!(KeepPolicy::default().is_empty());
        assert!(apply(&KeepPolicy::default(), &candidates, &as_utc)
            .iter()
            .all(Vec::is_empty));
    }
}
