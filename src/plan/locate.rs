//! The line of the plan file a validation error speaks of. Validation names keys the way people
//! read them (`[monitor] warn_age`, `[[job]] db schedule`, `[[job]] db [[dump]] #2 (x.sql)
//! timeout`); this walks those words through the file's parsed tables, with their byte spans, as
//! far as they go, and answers the line of the deepest key reached.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The 1-based line of `text` that the start of `message` (up to its first `: `) names, when the
/// words lead to a key of the file.
pub fn line_of(text: &str, message: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let words = message.split(": ").next()?.split_whitespace();
    let mut span = None;
    let mut here: &DeTable<'_> = root.get_ref();
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    for word in words {
        if let Some(list) = array.take() {
            // After `[[name]]`: `#N` is the Nth element, another word the one with that `name`.
            let element = match word.strip_prefix('#') {
                Some(n) => list.get(n.parse::<usize>().ok()?.checked_sub(1)?),
                None => list.iter().find(|v| match v.get_ref() {
                    DeValue::Table(t) => name_of(t) == Some(word.trim_matches('"')),
                    _ => false,
                }),
            }?;
            span = Some(element.span());
            match element.get_ref() {
                DeValue::Table(t) => here = t,
                _ => break,
            }
            continue;
        }
        if word.starts_with('(') {
            continue;
        }
        let key = word.trim_start_matches('[').trim_end_matches(']');
        let Some((k, value)) = here.iter().find(|(k, _)| k.get_ref().as_ref() == key) else {
            break;
        };
        span = Some(k.span());
        match value.get_ref() {
            DeValue::Table(t) => here = t,
            DeValue::Array(list) if word.starts_with("[[") => array = Some(list),
            _ => break,
        }
    }
    let start = span?.start;
    Some(text[..start.min(text.len())].matches('\n').count() + 1)
}

fn name_of<'a>(table: &'a DeTable<'_>) -> Option<&'a str> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == "name")
        .and_then(|(_, v)| match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"[repository]
location = "/srv/backup"

[monitor]
warn_age = "soon"

[[job]]
name = "db"
schedule = "0 */6 * *"
[[job.dump]]
path = "a.sql"
command = ["pg_dump"]
[[job.dump]]
path = "b.sql"
command = ["pg_dump"]
timeout = "forever"
[job.retention]
keep_daily = 0
"#;

    #[test]
    fn messages_lead_to_the_line_of_their_key() {
        for (message, line) in [
            ("[monitor] warn_age: bad span", 5),
            ("[[job]] db schedule: has 4 fields", 9),
            ("[[job]] db [[dump]] #2 (b.sql) timeout: bad span", 16),
            ("[[job]] db retention keeps nothing", 17),
            ("[[job]] #1 name \"db\": use letters", 8),
            ("[repository] password_command: empty", 1),
        ] {
            assert_eq!(line_of(PLAN, message), Some(line), "{message}");
        }
        assert_eq!(line_of(PLAN, "[hooks] timeout: bad"), None);
        assert_eq!(line_of("not = [toml", "[monitor] x: y"), None);
    }
}
