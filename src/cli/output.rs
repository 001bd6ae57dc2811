//! Small formatting helpers shared by commands: byte sizes, JSON printing, local times.

use serde::Serialize;

/// `1.5 GiB` style sizes.
pub fn bytes(n: u64) -> String {
    cairn::units::describe_size(n)
}

/// Prints a value as one JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A snapshot time in the local zone, to the second.
pub fn local_time(snap: &cairn::Snapshot) -> String {
    snap.datetime()
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// An RFC 3339 time (as snapshots and reports record it, to the nanosecond) in the local zone, to
/// the second; the text itself when it does not parse.
pub fn local_time_of(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or_else(
        |_| rfc3339.to_string(),
        |t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        },
    )
}
