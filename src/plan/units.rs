//! Spans of time and sizes as people write them in a plan file or on the command line (`90s`, `2h30min`, `7d`; `10M`).

use std::time::Duration;

/// Parses a span: a sum of `<n><unit>` with units `s`, `min`, `h`, `d`, `w` and `y` (365 days),
/// e.g. `90s`, `15min`, `2h30min`, `26h`, `7d`, `1w`. `m` is refused because it reads as month
/// in `--keep-within` and as minute elsewhere.
///
/// # Errors
/// A message naming the text and the expected shape.
pub fn parse_span(text: &str) -> Result<Duration, String> {
    let shape = || {
        format!(
            "{text:?}: expected a number and a unit (s, min, h, d, w, y), e.g. 90s, 15min, 26h, 7d"
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
        let seconds = match &rest[..unit_len] {
            "s" => 1,
            "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            "m" => {
                return Err(format!(
                    "{text:?}: \"m\" is ambiguous; write min for minutes or 30d for a month"
                ))
            }
            _ => return Err(shape()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?}: too long"))?;
    }
    Ok(Duration::from_secs(total))
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
        for bad in ["", "h", "10", "5m", "3x", "1h-2", "99999999999999999999y"] {
            assert!(parse_span(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_span("5m").unwrap_err().contains("min"));
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
