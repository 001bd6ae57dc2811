//! Cron expressions for a job's `schedule`: the five fields of crontab(5) (minute, hour, day of
//! month, month, day of week) with `*`, lists, ranges, steps, month and weekday names and the
//! `@daily`-style shorthands, read in the machine's local time as cron reads them. Answers the one
//! question a catching-up runner asks (the latest slot at or before now) and writes the same
//! times as systemd `OnCalendar=` lines.

use chrono::{DateTime, Datelike, Duration, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Day of month and day of week both restricted: a day matches either (crontab(5)).
    either_day: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
/// How far back a slot is looked for: a `29 2 *` schedule matches once in four years (eight
/// when a century year skips its leap day).
const SEARCH_DAYS: i64 = 366 * 8 + 2;

impl Cron {
    /// Parses `text`.
    ///
    /// # Errors
    /// A message naming the field and what is wrong with it.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            t if t.starts_with('@') => {
                return Err(format!(
                    "{t:?}: the shorthands are @hourly, @daily, @weekly, @monthly, @yearly"
                ))
            }
            t => t,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "{text:?} has {} fields; a cron expression has five: minute hour day-of-month month day-of-week (e.g. \"0 */6 * * *\")",
                fields.len()
            ));
        }
        let minutes = field(fields[0], "minute", 0, 59, &[])?;
        let hours = field(fields[1], "hour", 0, 23, &[])?;
        let days = field(fields[2], "day of month", 1, 31, &[])?;
        let months = field(fields[3], "month", 1, 12, &MONTHS)?;
        let mut weekdays = field(fields[4], "day of week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            // 7 is Sunday too.
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Cron {
            text: text.trim().to_string(),
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            either_day: !fields[2].starts_with('*') && !fields[4].starts_with('*'),
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The latest slot at or before `now`, in local time; `None` when none falls in the eight
    /// years before it (a schedule such as `0 0 31 2 *` never fires).
    pub fn latest_at_or_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.latest_in(&Local, now)
    }

    fn latest_in<Z: TimeZone>(&self, zone: &Z, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_now = now.with_timezone(zone).naive_local();
        let today = local_now.date();
        for back in 0..SEARCH_DAYS {
            let date = today - Duration::days(back);
            if !self.day_matches(date) {
                continue;
            }
            for hour in (0..24u32).rev().filter(|h| self.hours & (1 << h) != 0) {
                for minute in (0..60u32).rev().filter(|m| self.minutes & (1 << m) != 0) {
                    let Some(naive) = date.and_hms_opt(hour, minute, 0) else {
                        continue;
                    };
                    if back == 0 && naive > local_now {
                        continue;
                    }
                    // A time skipped by a daylight-saving change does not exist; a repeated one
                    // fires at its first occurrence.
                    if let Some(t) = in_zone(zone, naive) {
                        if t <= now {
                            return Some(t);
                        }
                    }
                }
            }
        }
        None
    }

    /// The same times as systemd `OnCalendar=` values (two when both day fields are restricted,
    /// since a calendar expression cannot say "this day of the month or this weekday").
    pub fn on_calendar(&self) -> Vec<String> {
        let list = |bits: u64, lo: u32, hi: u32| -> String {
            let all = (lo..=hi).all(|v| bits & (1 << v) != 0);
            if all {
                return "*".into();
            }
            (lo..=hi)
                .filter(|v| bits & (1 << v) != 0)
                .map(|v| format!("{v:02}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let weekday_names = || -> String {
            (0..7u32)
                .filter(|d| self.weekdays & (1 << d) != 0)
                .map(|d| ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][d as usize])
                .collect::<Vec<_>>()
                .join(",")
        };
        let months = list(u64::from(self.months), 1, 12);
        let days = list(u64::from(self.days), 1, 31);
        let time = format!(
            "{}:{}:00",
            list(u64::from(self.hours), 0, 23),
            list(self.minutes, 0, 59)
        );
        let all_weekdays = self.weekdays == 0x7f;
        let line = |weekdays: Option<String>, days: &str| match weekdays {
            Some(w) => format!("{w} *-{months}-{days} {time}"),
            None => format!("*-{months}-{days} {time}"),
        };
        if self.either_day {
            vec![line(Some(weekday_names()), "*"), line(None, &days)]
        } else if all_weekdays {
            vec![line(None, &days)]
        } else {
            vec![line(Some(weekday_names()), &days)]
        }
    }
}

fn in_zone<Z: TimeZone>(zone: &Z, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// The bit set of one field: each value `v` in it sets bit `v`.
fn field(text: &str, name: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let bad = |why: String| format!("{name} field {text:?}: {why}");
    let value = |t: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            return Ok(i as u32 + lo);
        }
        let v: u32 = t
            .parse()
            .map_err(|_| bad(format!("{t:?} is not a number from {lo} to {hi}")))?;
        if !(lo..=hi).contains(&v) {
            return Err(bad(format!("{v} is outside {lo}-{hi}")));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| bad(format!("step {s:?} is not a positive number")))?;
                (r, s)
            }
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `5/15` runs from 5 to the end, as Vixie cron reads it.
                None if step > 1 => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(bad(format!("the range {from}-{to} runs backwards")));
        }
        for v in (from..=to).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn latest(expr: &str, now: &str) -> String {
        Cron::parse(expr)
            .unwrap()
            .latest_in(&Utc, utc(now))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn the_latest_slot_at_or_before_now() {
        assert_eq!(
            latest("0 */6 * * *", "2026-12-07T13:59:00Z"),
            "2026-12-07T12:00:00+00:00"
        );
        assert_eq!(
            latest("0 */6 * * *", "2026-12-07T12:00:00Z"),
            "2026-12-07T12:00:00+00:00"
        );
        assert_eq!(
            latest("30 3 * * *", "2026-12-07T03:29:59Z"),
            "2026-12-06T03:30:00+00:00"
        );
        // Sunday 2026-12-06; weekly on Sunday at 04:00.
        assert_eq!(
            latest("0 4 * * sun", "2026-12-10T00:00:00Z"),
            "2026-12-06T04:00:00+00:00"
        );
        assert_eq!(
            latest("0 4 * * 7", "2026-12-10T00:00:00Z"),
            "2026-12-06T04:00:00+00:00"
        );
        assert_eq!(
            latest("@monthly", "2026-12-07T00:00:00Z"),
            "2026-12-01T00:00:00+00:00"
        );
        assert_eq!(
            latest("15-45/15 9-17 * jan-dec mon-fri", "2026-12-07T09:40:00Z"),
            "2026-12-07T09:30:00+00:00"
        );
        // Day 1 or Friday (2026-12-04 is a Friday).
        assert_eq!(
            latest("0 0 1 * 5", "2026-12-07T00:00:00Z"),
            "2026-12-04T00:00:00+00:00"
        );
        assert_eq!(
            latest("0 0 29 2 *", "2026-12-07T00:00:00Z"),
            "2024-02-29T00:00:00+00:00"
        );
        assert!(Cron::parse("0 0 31 2 *")
            .unwrap()
            .latest_in(&Utc, utc("2026-12-07T00:00:00Z"))
            .is_none());
    }

    #[test]
    fn slots_are_read_in_the_zone_s_local_time() {
        let zone = chrono::FixedOffset::east_opt(3600).unwrap();
        let c = Cron::parse("0 3 * * *").unwrap();
        assert_eq!(
            c.latest_in(&zone, utc("2026-12-07T02:30:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-12-07T02:00:00+00:00"
        );
    }

    #[test]
    fn bad_expressions_name_their_field() {
        for (expr, expected) in [
            ("0 */6 * *", "has 4 fields"),
            ("60 * * * *", "minute field \"60\": 60 is outside 0-59"),
            ("0 25 * * *", "hour field"),
            ("0 0 0 * *", "day of month field"),
            ("0 0 * foo *", "month field \"foo\""),
            ("0 0 * * 8", "day of week field"),
            ("*/0 * * * *", "step \"0\""),
            ("0 5-1 * * *", "runs backwards"),
            ("@sometimes", "shorthands"),
        ] {
            let e = Cron::parse(expr).unwrap_err();
            assert!(e.contains(expected), "{expr}: {e}");
        }
    }

    #[test]
    fn systemd_calendar_lines_say_the_same_times() {
        let on = |e: &str| Cron::parse(e).unwrap().on_calendar();
        assert_eq!(on("0 */6 * * *"), ["*-*-* 00,06,12,18:00:00"]);
        assert_eq!(on("30 3 * * *"), ["*-*-* 03:30:00"]);
        assert_eq!(on("0 4 * * sun"), ["Sun *-*-* 04:00:00"]);
        assert_eq!(on("*/30 * 1 jan *"), ["*-01-01 *:00,30:00"]);
        assert_eq!(on("0 0 1 * 5"), ["Fri *-*-* 00:00:00", "*-*-01 00:00:00"]);
    }
}
