//! The S3 requests of Object Lock that OpenDAL cannot send (FORMAT.md §17), signed here with
//! [`super::sigv4`]: a put that carries its retention (with the checksum S3 requires of such a
//! put), a head that reads an object's retention, a retention extension (`PutObjectRetention`),
//! and the bucket's versioning and lock settings.
//!
//! Why not OpenDAL: its S3 writer has no way to add the `x-amz-object-lock-*` headers, and
//! headers added after its signer ran would be unsigned, which S3 refuses. Reads, listings and
//! deletions stay with OpenDAL. Errors are `opendal::Error`s, so these requests go through the
//! backend's one retry policy like every other.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use opendal::{Error as DalError, ErrorKind as DalKind};

use super::object_lock::{LockMode, Retention};
use super::sigv4::{self, Credentials};
use crate::error::{Error, Result};

/// The bucket-level settings a locked repository needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketLock {
    /// Versioning is enabled (Object Lock requires it; point-in-time reads rely on it).
    pub versioning: bool,
    /// Object Lock is enabled on the bucket (only possible at its creation on AWS).
    pub object_lock: bool,
}

/// A signed-request client for one bucket and key prefix.
pub struct S3Lock {
    client: reqwest::Client,
    /// `http://127.0.0.1:9000` or `https://s3.eu-west-1.amazonaws.com`.
    endpoint: String,
    /// The host header (with the port when not the scheme's default).
    host: String,
    bucket: String,
    /// Key prefix of the repository: empty, or ending in `/`.
    prefix: String,
    region: String,
    credentials: Credentials,
    /// `https://bucket.host/key` instead of `https://host/bucket/key`.
    virtual_host: bool,
}

impl S3Lock {
    /// The client for the S3 service configured by `config` (the same keys OpenDAL's S3 service
    /// takes: `bucket`, `root`, `endpoint`, `region`, `access_key_id`, `secret_access_key`,
    /// `session_token`, `enable_virtual_host_style`), each request bounded by `timeout`.
    ///
    /// # Errors
    /// `InvalidInput` when the bucket or credentials are missing or the endpoint is not a URL.
    pub fn new(config: &BTreeMap<String, String>, timeout: Duration) -> Result<S3Lock> {
        let get = |k: &str| config.get(k).filter(|v| !v.is_empty()).cloned();
        let bucket =
            get("bucket").ok_or_else(|| Error::invalid_input("an S3 repository needs a bucket"))?;
        let region = get("region").unwrap_or_else(|| "us-east-1".into());
        let endpoint =
            get("endpoint").unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let host = endpoint
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest).to_string())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                Error::invalid_input(format!("S3 endpoint {endpoint:?} is not a URL"))
            })?;
        let (Some(access_key), Some(secret_key)) = (get("access_key_id"), get("secret_access_key"))
        else {
            return Err(Error::invalid_input(
                "Object Lock requests need credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (or -o access_key_id=... -o secret_access_key=...)",
            ));
        };
        let root = get("root").unwrap_or_default();
        let root = root.trim_matches('/');
        let prefix = if root.is_empty() {
            String::new()
        } else {
            format!("{root}/")
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::invalid_input(format!("cannot start the S3 client: {e}")))?;
        Ok(S3Lock {
            client,
            endpoint,
            host,
            bucket,
            prefix,
            region,
            credentials: Credentials {
                access_key,
                secret_key,
                session_token: get("session_token"),
            },
            virtual_host: get("enable_virtual_host_style").as_deref() == Some("true"),
        })
    }

    /// Stores `body` at `path` (relative to the repository root) with `retention`.
    ///
    /// # Errors
    /// As S3 answers; a bucket without Object Lock refuses the headers.
    pub async fn put(
        &self,
        path: &str,
        body: bytes::Bytes,
        retention: &Retention,
    ) -> Result<(), DalError> {
        use base64::Engine;
        let checksum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let headers = vec![
            ("content-length".to_string(), body.len().to_string()),
            // S3 refuses an Object Lock put without an integrity checksum.
            (
                "x-amz-checksum-sha256".to_string(),
                base64::engine::general_purpose::STANDARD.encode(checksum.as_ref()),
            ),
            (
                "x-amz-sdk-checksum-algorithm".to_string(),
                "SHA256".to_string(),
            ),
            (
                "x-amz-object-lock-mode".to_string(),
                retention.mode.header().to_string(),
            ),
            (
                "x-amz-object-lock-retain-until-date".to_string(),
                iso8601(retention.until),
            ),
        ];
        let payload = hex::encode(checksum.as_ref());
        self.send("PUT", Some(path), &[], headers, body, payload)
            .await?;
        Ok(())
    }

    /// The retention of the current version of `path`: `None` when it has none (or it expired
    /// and S3 no longer reports it).
    ///
    /// # Errors
    /// `NotFound` when there is no such object; as S3 answers otherwise.
    pub async fn retention(&self, path: &str) -> Result<Option<Retention>, DalError> {
        let response = self
            .send(
                "HEAD",
                Some(path),
                &[],
                Vec::new(),
                bytes::Bytes::new(),
                sigv4::sha256_hex(b""),
            )
            .await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (Some(mode), Some(until)) = (
            header("x-amz-object-lock-mode"),
            header("x-amz-object-lock-retain-until-date"),
        ) else {
            return Ok(None);
        };
        let mode = LockMode::from_header(&mode).ok_or_else(|| {
            DalError::new(
                DalKind::Unexpected,
                format!("unknown Object Lock mode {mode:?}"),
            )
        })?;
        let until = DateTime::parse_from_rfc3339(&until)
            .map_err(|e| {
                DalError::new(
                    DalKind::Unexpected,
                    format!("bad retain-until date {until:?}: {e}"),
                )
            })?
            .with_timezone(&Utc);
        Ok(Some(Retention { mode, until }))
    }

    /// Sets the retention of the current version of `path` to `retention` (only ever later: S3
    /// refuses to shorten a compliance lock, and cairn never asks to).
    ///
    /// # Errors
    /// As S3 answers.
    pub async fn extend(&self, path: &str, retention: &Retention) -> Result<(), DalError> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{}</RetainUntilDate></Retention>",
            retention.mode.header(),
            iso8601(retention.until)
        )
        .into_bytes();
        let md5 = content_md5(&body);
        let payload = sigv4::sha256_hex(&body);
        let headers = vec![
            ("content-length".to_string(), body.len().to_string()),
            ("content-md5".to_string(), md5),
        ];
        self.send(
            "PUT",
            Some(path),
            &[("retention", "")],
            headers,
            body.into(),
            payload,
        )
        .await?;
        Ok(())
    }

    /// Whether the bucket has versioning and Object Lock enabled.
    ///
    /// # Errors
    /// As S3 answers (a bucket without a lock configuration is not an error: `object_lock` false).
    pub async fn bucket(&self) -> Result<BucketLock, DalError> {
        let empty = sigv4::sha256_hex(b"");
        let versioning = self
            .send(
                "GET",
                None,
                &[("versioning", "")],
                Vec::new(),
                bytes::Bytes::new(),
                empty.clone(),
            )
            .await?
            .text()
            .await
            .map_err(transport)?;
        let object_lock = match self
            .send(
                "GET",
                None,
                &[("object-lock", "")],
                Vec::new(),
                bytes::Bytes::new(),
                empty,
            )
            .await
        {
            Ok(response) => response
                .text()
                .await
                .map_err(transport)?
                .contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>"),
            // ObjectLockConfigurationNotFoundError
            Err(e) if e.kind() == DalKind::NotFound => false,
            Err(e) => return Err(e),
        };
        Ok(BucketLock {
            versioning: versioning.contains("<Status>Enabled</Status>"),
            object_lock,
        })
    }

    async fn send(
        &self,
        method: &str,
        path: Option<&str>,
        query: &[(&str, &str)],
        headers: Vec<(String, String)>,
        body: bytes::Bytes,
        payload_hash: String,
    ) -> Result<reqwest::Response, DalError> {
        let key = path.map(|p| format!("{}{}", self.prefix, p.trim_start_matches('/')));
        let encoded_key = key.as_deref().map(|k| sigv4::uri_encode(k, true));
        let (host, canonical_path) = if self.virtual_host {
            (
                format!("{}.{}", self.bucket, self.host),
                format!("/{}", encoded_key.unwrap_or_default()),
            )
        } else {
            let bucket = sigv4::uri_encode(&self.bucket, false);
            let path = match encoded_key {
                Some(k) => format!("/{bucket}/{k}"),
                None => format!("/{bucket}"),
            };
            (self.host.clone(), path)
        };
        let scheme = self.endpoint.split("://").next().unwrap_or("https");
        let mut url = format!("{scheme}://{host}{canonical_path}");
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        sigv4::uri_encode(k, false)
                    } else {
                        format!(
                            "{}={}",
                            sigv4::uri_encode(k, false),
                            sigv4::uri_encode(v, false)
                        )
                    }
                })
                .collect();
            url = format!("{url}?{}", q.join("&"));
        }
        let request = sigv4::Request {
            method,
            path: &canonical_path,
            query,
            headers,
            payload_hash,
        };
        let signed = sigv4::sign(&request, &host, &self.region, &self.credentials, Utc::now());
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| DalError::new(DalKind::Unexpected, e.to_string()))?;
        let mut builder = self.client.request(method, &url);
        for (name, value) in signed {
            // reqwest sets host and content-length itself, from the URL and the body.
            if name != "host" && name != "content-length" {
                builder = builder.header(name, value);
            }
        }
        let response = builder.body(body).send().await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let code = between(&text, "<Code>", "</Code>").unwrap_or_default();
        let message = between(&text, "<Message>", "</Message>").unwrap_or_default();
        let what = if code.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status} {code}: {message}")
        };
        let kind = match status.as_u16() {
            404 => DalKind::NotFound,
            403 => DalKind::PermissionDenied,
            // A service without these calls (an S3-compatible store without Object Lock).
            501 => DalKind::Unsupported,
            _ => DalKind::Unexpected,
        };
        let err = DalError::new(kind, what);
        Err(
            if (status.is_server_error() && status.as_u16() != 501) || status.as_u16() == 429 {
                err.set_temporary()
            } else {
                err
            },
        )
    }
}

/// A transport failure (refused, reset, timed out): temporary, with reqwest's error as source.
fn transport(e: reqwest::Error) -> DalError {
    let kind = DalKind::Unexpected;
    DalError::new(kind, "request failed")
        .set_source(anyhow::Error::new(e))
        .set_temporary()
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

/// S3's date form for retain-until: RFC 3339 in UTC with a `Z`.
fn iso8601(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `Content-MD5`, which `PutObjectRetention` requires.
fn content_md5(data: &[u8]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_is_the_base64_of_the_digest() {
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn keys_go_below_the_root_and_errors_are_read_from_the_body() {
        let config: BTreeMap<String, String> = [
            ("bucket", "b"),
            ("root", "/repo/"),
            ("endpoint", "http://127.0.0.1:9/"),
            ("access_key_id", "a"),
            ("secret_access_key", "s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s3 = S3Lock::new(&config, Duration::from_secs(1)).unwrap();
        assert_eq!(
            (s3.prefix.as_str(), s3.host.as_str()),
            ("repo/", "127.0.0.1:9")
        );
        assert_eq!(
            between(
                "<Error><Code>AccessDenied</Code></Error>",
                "<Code>",
                "</Code>"
            ),
            Some("AccessDenied")
        );
        let mut config = config;
        config.remove("secret_access_key");
        assert!(S3Lock::new(&config, Duration::from_secs(1)).is_err());
    }
}
