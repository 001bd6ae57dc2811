//! How entry names (arbitrary bytes) are written as text and read back: printable UTF-8 as is,
//! a backslash as `\\`, and every other byte (invalid UTF-8, control characters) as `\xNN`.
//!
//! The same escaping is used for output (`ls`, `find`, `diff`) and for `SNAP:PATH` arguments, so
//! any name that cairn prints can be pasted back into a command.

use crate::error::{Error, Result};

/// Writes `bytes` as text: valid printable UTF-8 unchanged, `\` as `\\`, anything else as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Reads text written by [`escape`] (or typed by a user) back into bytes.
///
/// # Errors
/// `InvalidInput` for a backslash followed by anything but `\` or `xNN` (two hex digits).
pub fn unescape(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let byte = bytes
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad_escape(text))?;
                out.push(byte);
                i += 4;
            }
            _ => return Err(bad_escape(text)),
        }
    }
    Ok(out)
}

fn bad_escape(text: &str) -> Error {
    Error::invalid_input(format!(
        "{text:?}: a backslash in a path must start `\\\\` (a backslash) or `\\xNN` (the byte NN in hex)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(escape(b"caf\xc3\xa9"), "café");
        assert_eq!(escape(b"a\xffb"), "a\\xffb");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape(b"new\nline"), "new\\x0aline");
        assert_eq!(unescape("a\\xFFb").unwrap(), b"a\xffb");
        assert!(unescape("a\\qb").is_err());
        assert!(unescape("a\\x4").is_err());
        assert!(unescape("trailing\\").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(unescape(&escape(&bytes)).unwrap(), bytes);
        }
    }
}
