//! AWS Signature Version 4 for the S3 requests cairn sends itself (Object Lock, FORMAT.md §17):
//! those OpenDAL has no call for: a put with retention headers, a retention extension, the
//! bucket's lock and versioning settings.
//!
//! Every header the request carries is signed, `x-amz-*` ones included (S3 refuses unsigned
//! `x-amz-*` headers), and the payload hash is the body's SHA-256, never `UNSIGNED-PAYLOAD`.

use aws_lc_rs::{digest, hmac};
use chrono::{DateTime, Utc};

/// Who signs: an access key, its secret, and a session token for temporary credentials.
#[derive(Clone)]
pub struct Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token (temporary credentials), sent as `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ..)", self.access_key)
    }
}

/// The hex of SHA-256 of `bytes`: the payload hash of a signed request.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes))
}

/// Percent-encodes `text` as SigV4's canonical form wants: unreserved characters as they are,
/// `/` kept when `keep_slash` (a path), everything else as `%XX` in upper case.
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One request to sign: its method, encoded path, query pairs (unencoded) and headers.
pub struct Request<'a> {
    /// `GET`, `PUT`, `HEAD`, ...
    pub method: &'a str,
    /// The path as sent, already encoded (`/bucket/key`).
    pub path: &'a str,
    /// Query parameters, unencoded; a subresource like `?retention` is `("retention", "")`.
    pub query: &'a [(&'a str, &'a str)],
    /// Headers sent (besides those [`sign`] adds); names in any case.
    pub headers: Vec<(String, String)>,
    /// Hex SHA-256 of the body.
    pub payload_hash: String,
}

/// Signs `request` for `host` in `region` at `now`: returns every header to send, the given ones
/// with `host`, `x-amz-date`, `x-amz-content-sha256`, the session token and `authorization`.
pub fn sign(
    request: &Request<'_>,
    host: &str,
    region: &str,
    credentials: &Credentials,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let day = now.format("%Y%m%d").to_string();
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    headers.push(("host".into(), host.to_string()));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    headers.push(("x-amz-content-sha256".into(), request.payload_hash.clone()));
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".into(), token.clone()));
    }
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method, request.path, request.payload_hash
    );
    let scope = format!("{day}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mac = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
            .as_ref()
            .to_vec()
    };
    let secret = format!("AWS4{}", credentials.secret_key);
    let key = mac(secret.as_bytes(), &day);
    let key = mac(&key, region);
    let key = mac(&key, "s3");
    let key = mac(&key, "aws4_request");
    let signature = hex::encode(mac(&key, &string_to_sign));
    headers.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key
        ),
    ));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "GET Object" example of AWS's SigV4 documentation for S3 ("Signature Calculations for
    /// the Authorization Header: Transferring Payload in a Single Chunk").
    #[test]
    fn the_documented_example_signs_to_the_documented_signature() {
        let credentials = Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let request = Request {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: vec![("Range".into(), "bytes=0-9".into())],
            payload_hash: sha256_hex(b""),
        };
        let now = DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let headers = sign(
            &request,
            "examplebucket.s3.amazonaws.com",
            "us-east-1",
            &credentials,
            now,
        );
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn paths_keep_their_slashes_and_queries_do_not() {
        assert_eq!(uri_encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}
