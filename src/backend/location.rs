//! Where a repository lives: parsing `-r`/`CAIRN_REPO` (a path or a URL) and the `-o key=value` options.
//!
//! Only parsing lives here: no network, no file system. [`super::open`] turns a location into a backend.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// A parsed repository location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local file system (anything that is not one of the URL forms below).
    Local(PathBuf),
    /// `s3://BUCKET/PREFIX`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
    },
    /// `sftp://USER@HOST:PORT/PATH`.
    Sftp {
        /// Login name (empty: the ssh default).
        user: String,
        /// Host name or address.
        host: String,
        /// TCP port (22 when absent).
        port: u16,
        /// Directory on the server.
        path: String,
    },
    /// `webdav://[USER@]HOST:PORT/PATH` or `webdavs://...` (TLS).
    Webdav {
        /// Whether to speak HTTPS.
        tls: bool,
        /// Login name for basic auth (empty: none, or `-o username=`).
        user: String,
        /// `HOST[:PORT]`.
        authority: String,
        /// Collection path on the server.
        path: String,
    },
    /// `opendal:SCHEME`: any OpenDAL service, configured only by `-o key=value`.
    OpenDal {
        /// The OpenDAL service scheme (`gcs`, `azblob`, `fs`, ...).
        scheme: String,
    },
}

const URL_FORMS: &str = "s3://BUCKET/PREFIX, sftp://USER@HOST:PORT/PATH, webdav://HOST:PORT/PATH, webdavs://HOST:PORT/PATH or opendal:SCHEME";

impl Location {
    /// Parses a repository argument. Strings that start with a known scheme are URLs; everything else is a path.
    ///
    /// # Errors
    /// `InvalidInput` for a URL that is malformed (the message shows the accepted forms).
    pub fn parse(arg: &str) -> Result<Location> {
        let bad = |why: &str| {
            Error::invalid_input(format!(
                "repository location {arg:?}: {why}; accepted forms: a directory, {URL_FORMS}"
            ))
        };
        if let Some(rest) = arg.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("the bucket name is missing"));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(rest) = arg.strip_prefix("sftp://") {
            let (user, authority, path) = split_url(rest);
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad("the port is not a number"))?),
                None => (authority, 22),
            };
            if host.is_empty() {
                return Err(bad("the host is missing"));
            }
            return Ok(Location::Sftp {
                user: user.to_string(),
                host: host.to_string(),
                port,
                path: path.to_string(),
            });
        }
        for (scheme, tls) in [("webdav://", false), ("webdavs://", true)] {
            if let Some(rest) = arg.strip_prefix(scheme) {
                let (user, authority, path) = split_url(rest);
                if authority.is_empty() {
                    return Err(bad("the host is missing"));
                }
                return Ok(Location::Webdav {
                    tls,
                    user: user.to_string(),
                    authority: authority.to_string(),
                    path: path.to_string(),
                });
            }
        }
        if let Some(scheme) = arg.strip_prefix("opendal:") {
            if scheme.is_empty()
                || !scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad(
                    "give an OpenDAL service name after `opendal:`, e.g. opendal:gcs",
                ));
            }
            return Ok(Location::OpenDal {
                scheme: scheme.to_string(),
            });
        }
        if arg.is_empty() {
            return Err(bad("it is empty"));
        }
        if let Some(why) = looks_like_a_url(arg) {
            return Err(bad(&format!(
                "{why}; for a local directory of that name write ./{arg}"
            )));
        }
        Ok(Location::Local(PathBuf::from(arg)))
    }

    /// Whether the location is a local directory.
    pub fn is_local(&self) -> bool {
        matches!(self, Location::Local(_))
    }
}

/// Schemes people write for storage, known to cairn or not: a relative path starting with one of them
/// followed by `//` (`webdav//host/x`) is a URL with its colon lost.
const SCHEME_WORDS: [&str; 12] = [
    "s3", "sftp", "webdav", "webdavs", "opendal", "http", "https", "ftp", "ssh", "gs", "gcs",
    "azure",
];

/// Why a path that matched no URL form still looks like a URL (so creating a directory of that name
/// would be a surprise): `s3:/bucket`, `http://host/x`, `user@host:path`, `webdav//host/x`. An
/// absolute path, or one starting with `./`, is always a path.
fn looks_like_a_url(arg: &str) -> Option<String> {
    if arg.starts_with('/') || arg.starts_with("./") || arg.starts_with("../") {
        return None;
    }
    let first = arg.split('/').next().unwrap_or_default();
    if let Some((scheme, _)) = arg.split_once("://") {
        return Some(format!(
            "it looks like a URL, but {scheme:?} is not a scheme cairn knows (scheme names are lowercase)"
        ));
    }
    if first.contains(':') {
        return Some(
            "it looks like a URL with a malformed `scheme://` or an scp-style HOST:PATH".into(),
        );
    }
    let lowered = first.to_ascii_lowercase();
    if SCHEME_WORDS.contains(&lowered.as_str()) && arg[first.len()..].starts_with("//") {
        return Some(format!(
            "it looks like a URL whose `:` is missing (did you mean {lowered}://...?)"
        ));
    }
    None
}

/// `[USER@]AUTHORITY[/PATH]` -> (user, authority, "/PATH").
fn split_url(rest: &str) -> (&str, &str, &str) {
    let (head, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    match head.rsplit_once('@') {
        Some((user, authority)) => (user, authority, path),
        None => ("", head, path),
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let at = if user.is_empty() { "" } else { "@" };
                write!(f, "sftp://{user}{at}{host}:{port}{path}")
            }
            Location::Webdav {
                tls,
                user,
                authority,
                path,
            } => {
                let scheme = if *tls { "webdavs" } else { "webdav" };
                let at = if user.is_empty() { "" } else { "@" };
                write!(f, "{scheme}://{user}{at}{authority}{path}")
            }
            Location::OpenDal { scheme } => write!(f, "opendal:{scheme}"),
        }
    }
}

/// Parses `key=value` options (`-o`), later ones winning.
///
/// # Errors
/// `InvalidInput` for an option without `=` or with an empty key.
pub fn parse_options<S: AsRef<str>>(options: &[S]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for option in options {
        let option = option.as_ref();
        match option.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), v.to_string());
            }
            _ => {
                return Err(Error::invalid_input(format!(
                    "option {option:?} is not KEY=VALUE (for example -o region=eu-west-1)"
                )))
            }
        }
    }
    Ok(out)
}

/// Parses a byte rate such as `500K`, `10M`, `1.5MiB` or `2000000` (bytes per second; K/M/G are powers of 1024).
///
/// # Errors
/// `InvalidInput` when the text is not a positive rate.
pub fn parse_rate(text: &str) -> Result<u64> {
    let bad = || {
        Error::invalid_input(format!(
            "{text:?} is not a rate: give bytes per second, optionally with K, M or G (powers of 1024), e.g. 10M"
        ))
    };
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let t = t.strip_suffix(['i', 'I']).unwrap_or(t);
    let (number, scale) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let scale = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(bad()),
            };
            (&t[..i], scale)
        }
        _ => (t, 1),
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    let rate = (value * scale as f64).round();
    if !rate.is_finite() || rate < 1.0 || rate > u32::MAX as f64 {
        return Err(bad());
    }
    Ok(rate as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-r s3:/bucket/x init` created a local directory named `s3:`.
    #[test]
    fn malformed_urls_are_refused_not_taken_for_directories() {
        for bad in [
            "s3:/bucket/x",
            "s3:bucket",
            "S3://bucket/x",
            "http://host/x",
            "https://minio:9000/b",
            "ftp://host/x",
            "webdav//host/x",
            "sftp//host/x",
            "backup@nas:/srv/cairn",
            "nas:backups",
        ] {
            let e = Location::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains(&format!("./{bad}")), "{e}");
        }
    }

    #[test]
    fn parses_every_url_form() {
        assert_eq!(
            Location::parse("s3://bucket/some/prefix/").unwrap(),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(
            Location::parse("s3://bucket").unwrap(),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Location::parse("sftp://backup@host.example:2222/srv/repo").unwrap(),
            Location::Sftp {
                user: "backup".into(),
                host: "host.example".into(),
                port: 2222,
                path: "/srv/repo".into()
            }
        );
        assert_eq!(
            Location::parse("webdavs://u@dav.example/remote.php/cairn").unwrap(),
            Location::Webdav {
                tls: true,
                user: "u".into(),
                authority: "dav.example".into(),
                path: "/remote.php/cairn".into()
            }
        );
        assert_eq!(
            Location::parse("opendal:gcs").unwrap(),
            Location::OpenDal {
                scheme: "gcs".into()
            }
        );
        assert_eq!(
            Location::parse("/srv/backup").unwrap(),
            Location::Local("/srv/backup".into())
        );
        assert_eq!(
            Location::parse("relative/dir").unwrap(),
            Location::Local("relative/dir".into())
        );
        for (path, dir) in [
            ("./s3:", "./s3:"),
            ("/srv/s3:/x", "/srv/s3:/x"),
            ("s3/bucket", "s3/bucket"),
            ("backups/host:2024", "backups/host:2024"),
        ] {
            assert_eq!(Location::parse(path).unwrap(), Location::Local(dir.into()));
        }
        for bad in [
            "s3://",
            "sftp://u@h:port/x",
            "webdav:///x",
            "opendal:",
            "opendal:a/b",
            "",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad:?} must be refused");
        }
        for url in [
            "s3://b/p",
            "sftp://u@h:22/p",
            "webdav://h:8080/p",
            "opendal:gcs",
        ] {
            assert_eq!(Location::parse(url).unwrap().to_string(), url);
        }
    }

    #[test]
    fn parses_options_and_rates() {
        let o = parse_options(&["region=eu", "endpoint=http://x:1/?a=b", "region=us"]).unwrap();
        assert_eq!(o["region"], "us");
        assert_eq!(o["endpoint"], "http://x:1/?a=b");
        assert!(parse_options(&["novalue"]).is_err());
        assert!(parse_options(&["=v"]).is_err());
        assert_eq!(parse_rate("2000").unwrap(), 2000);
        assert_eq!(parse_rate("500K").unwrap(), 500 << 10);
        assert_eq!(parse_rate("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_rate("1.5M/s").unwrap(), 3 << 19);
        for bad in ["", "0", "-1", "10X", "M", "9G"] {
            assert!(parse_rate(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
