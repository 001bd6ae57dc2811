//! Spans of time and sizes as people write them in a plan file or on the command line (`90s`,
//! `2h30min`, `7d`, `6mo`; `10M`). The one parser of both for every flag and every plan key, so a
//! unit means the same everywhere.

use std::time::Duration;

/// The span units, longest name first where one is a prefix of another: (name, seconds).
/// A month is 30 days and a year 365 days (spans are lengths, not calendar dates).
const SPAN_UNITS: [(&str, u64); 7] = [
    ("s", 1),
    ("min", 60),
    ("h", 3600),
    ("d", 86_400),
    ("w", 7 * 86_400),
    ("mo", 30 * 86_400),
    ("y", 365 * 86_400),
];

/// Parses a span: a sum of `<n><unit>` with units `s`, `min`, `h`, `d`, `w`, `mo` (30 days) and
/// `y` (365 days), e.g. `90s`, `15min`, `2h30min`, `26h`, `7d`, `1w`, `6mo`, `1y6mo`. A bare `m`
/// is refused: it has meant minutes to some tools and months to others (`--keep-within` once),
/// and a guess either way turns a grace period into months or a retention into minutes.
///
/// # Errors
/// A message naming the text and the expected shape.
pub fn parse_span(text: &str) -> Result<Duration, String> {
    let shape = || {
        format!(
            "{text:?}: expected a number and a unit (s, min, h, d, w, mo, y), e.g. 90s, 15min, \
             26h, 7d, 6mo"
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(shape());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(shape());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| shape())?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..unit_len];
        if unit == "m" {
            return Err(format!(
                "{text:?}: \"m\" is ambiguous; write {n}min for minutes or {n}mo for months"
            ));
        }
        let seconds = SPAN_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, seconds)| seconds)
            .ok_or_else(shape)?;
        rest = &rest[unit_len..];
        total = n
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?}: too long"))?;
    }
    Ok(Duration::from_secs(total))
}

/// [`parse_span`] for the options that compute with calendar times (`--keep-within`, `--grace`,
/// `--clock-skew`).
///
/// # Errors
/// As [`parse_span`], and when the span is beyond what a time stamp can hold.
pub fn parse_time_span(text: &str) -> Result<chrono::TimeDelta, String> {
    chrono::TimeDelta::from_std(parse_span(text)?).map_err(|_| format!("{text:?}: too long"))
}

/// Parses a size in bytes with an optional binary suffix: `512`, `64K`, `10M`, `2G`, `1T` (also `KiB`, `MB`...).
///
/// # Errors
/// A message naming the text and the expected shape.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let n: u64 = t[..split]
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 512, 64K, 10M or 2G"))?;
    let shift = match t[split..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("{text:?}: unknown size unit (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?}: too large"))
}

/// A size for people: `512 B`, `39.8 MiB` (binary units, one decimal).
pub fn describe_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A span exactly, in the form [`parse_span`] reads back: the largest units first, e.g. `30d`,
/// `1y6mo`, `2h30min`, `0s`.
pub fn format_span(span: Duration) -> String {
    let mut rest = span.as_secs();
    if rest == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    for &(name, seconds) in SPAN_UNITS.iter().rev() {
        if rest >= seconds {
            text.push_str(&format!("{}{name}", rest / seconds));
            rest %= seconds;
        }
    }
    text
}

/// A span for people: `3h 12min`, `2d 4h`, `45s`.
pub fn describe_span(span: Duration) -> String {
    let s = span.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}min", s / 60),
        7200..=172_799 => format!("{}h {}min", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_add_up_their_parts() {
        assert_eq!(parse_span("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_span("2h30min"), Ok(Duration::from_secs(9000)));
        assert_eq!(parse_span("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_span(" 26h "), Ok(Duration::from_secs(93_600)));
    }

    #[test]
    fn spans_refuse_what_they_cannot_read() {
        for bad in [
            "",
            "h",
            "10",
            "5m",
            "3x",
            "1h-2",
            "99999999999999999999y",
            "2mon",
        ] {
            assert!(parse_span(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// `prune --grace 10m` once meant ten months: `m` must never be read as either unit.
    #[test]
    fn a_bare_m_is_refused_naming_both_readings() {
        for text in ["10m", "1y6m", "2h5m"] {
            let e = parse_span(text).unwrap_err();
            assert!(
                e.contains("ambiguous") && e.contains("min") && e.contains("mo"),
                "{e}"
            );
        }
        assert!(parse_span("10m").unwrap_err().contains("10min"));
    }

    #[test]
    fn months_seconds_and_minutes_have_one_meaning() {
        assert_eq!(parse_span("10min"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_span("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_span("6mo"), Ok(Duration::from_secs(180 * 86_400)));
        assert_eq!(
            parse_span("1y6mo"),
            Ok(Duration::from_secs((365 + 180) * 86_400))
        );
        assert_eq!(parse_span("0h"), Ok(Duration::ZERO));
        assert_eq!(parse_time_span("10min"), Ok(chrono::TimeDelta::minutes(10)));
        assert!(parse_time_span("10m").is_err());
    }

    #[test]
    fn formatted_spans_read_back_as_themselves() {
        assert_eq!(format_span(Duration::from_secs(30 * 86_400)), "1mo");
        assert_eq!(
            format_span(Duration::from_secs((365 + 180) * 86_400)),
            "1y6mo"
        );
        assert_eq!(format_span(Duration::from_secs(9000)), "2h30min");
        assert_eq!(format_span(Duration::ZERO), "0s");
        for seconds in [
            1,
            59,
            61,
            3601,
            86_399,
            90_061,
            40_000_000,
            u64::from(u32::MAX),
        ] {
            let span = Duration::from_secs(seconds);
            assert_eq!(parse_span(&format_span(span)), Ok(span), "{seconds}");
        }
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(65_536));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn spans_read_well() {
        assert_eq!(describe_span(Duration::from_secs(45)), "45s");
        assert_eq!(
            describe_span(Duration::from_secs(3 * 3600 + 720)),
            "3h 12min"
        );
        assert_eq!(
            describe_span(Duration::from_secs(2 * 86_400 + 4 * 3600)),
            "2d 4h"
        );
    }
}
