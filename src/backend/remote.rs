//! A repository on remote storage through OpenDAL: S3, SFTP, WebDAV or any other OpenDAL service.
//!
//! Owns the tokio runtime its operator runs on, so the rest of cairn stays synchronous. Every request goes
//! through OpenDAL's timeout and concurrency-limit layers, writes through its throttle layer when an upload
//! limit is set, and is retried here by the policy of [`super::retry`] (not by OpenDAL's retry layer, which
//! cannot tell a refused connection from a busy server, nor bound its total wait, nor say that it retries).
//! Objects are always written whole.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use opendal::blocking;
use opendal::layers::{ConcurrentLimitLayer, ThrottleLayer, TimeoutLayer};
use opendal::options::{ListOptions, ReadOptions};
use opendal::{Buffer, EntryMode, ErrorKind as DalKind, Operator};

use super::as_of::ObjectVersion;
use super::location::Location;
use super::object_lock::{self, LockSettings, Retention, LOCKING_PATH, MAX_LOCKING_LEN};
use super::retry::{self, Attempts, Failed, Health, Policy};
use super::s3_lock::S3Lock;
use super::{object_path, Backend, BackendOptions, ObjectKind, OnRetry, RetryNotice};
use crate::error::{Error, ErrorKind, Result};

/// The smallest burst of the throttle layer: the largest piece of an object it lets through at once. Larger
/// objects are written as a multipart upload of pieces this size (S3 parts must be at least 5 MiB).
const THROTTLE_BURST_MIN: u64 = 8 << 20;

/// The burst on services that take one write per object (WebDAV): it must hold the largest object, a pack of
/// the largest size FORMAT.md allows plus its header, so there the limit is an average over whole objects.
const THROTTLE_BURST_WHOLE: u64 = (1 << 30) + (64 << 20);

/// First and longest pause before a request whose SFTP connection was refused is tried again: a
/// connection is authenticated in well under a second, after which the server takes the next one.
const REFUSED_PAUSE_MIN: Duration = Duration::from_millis(100);
const REFUSED_PAUSE_MAX: Duration = Duration::from_secs(2);

/// Retries of a request whose ssh connection failed to start for a reason ssh did not pass on: the
/// `ssh -M` master behind a new connection reports only "failed to connect", the same words for a
/// refusal past `MaxStartups` (seen when two cairn processes start connections at once) and for a
/// wrong key. Five retries (about 1.5–3 s in all) ride out a refusal and delay a real error little.
const UNEXPLAINED_CONNECT_RETRIES: usize = 5;

/// Why a new ssh connection failed, as far as an OpenDAL error tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnectFailure {
    /// Closed by the server before the SSH greeting (`kex_exchange_identification: ...`,
    /// `ssh_exchange_identification` before OpenSSH 8.0): what sshd does to connections beyond
    /// `MaxStartups`. The `openssh` crate passes ssh's message on as the error's source.
    Refused,
    /// The master could not connect and said no more.
    Unexplained,
}

fn connect_failure(err: &opendal::Error) -> Option<ConnectFailure> {
    let mut unexplained = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        let message = e.to_string();
        if message.contains("kex_exchange_identification")
            || message.contains("ssh_exchange_identification")
        {
            return Some(ConnectFailure::Refused);
        }
        unexplained |= message.contains("failed to connect to the remote host");
        source = e.source();
    }
    unexplained.then_some(ConnectFailure::Unexplained)
}

/// The services compiled in (Cargo features of the `opendal` dependency), for `opendal:SCHEME`.
pub const BUILT_IN_SERVICES: [&str; 7] = ["s3", "sftp", "webdav", "gcs", "azblob", "fs", "memory"];

/// A repository on an OpenDAL service.
pub struct RemoteBackend {
    op: blocking::Operator,
    location: String,
    /// Services whose writes are not atomic (SFTP writes into the final file) write a temporary and rename.
    write_by_rename: bool,
    /// With an upload limit: the largest piece one write call may hand to the throttle layer.
    throttle_burst: Option<usize>,
    /// Whether packs are listed shard by shard: only where the service has no recursive listing of its own
    /// (SFTP, WebDAV), so OpenDAL walks `data/xx/` one request at a time anyway. A native recursive listing
    /// (S3: pages of 1000 keys) costs fewer requests than 256 shard listings; on moto each costs ~20 ms.
    shard_listing: bool,
    /// On SFTP, how often a request whose new ssh connection the server closed before its greeting
    /// (sshd's MaxStartups) is tried again; 0 elsewhere.
    refused_retries: usize,
    /// The service and its address, for messages: `s3 endpoint http://127.0.0.1:9000`.
    endpoint: String,
    /// The S3 bucket, for messages and to tell a missing bucket from a missing repository.
    bucket: Option<String>,
    policy: Policy,
    health: Health,
    on_retry: Option<OnRetry>,
    /// On S3: the service configuration, from which the Object Lock client is made when first
    /// needed (a repository without locks never needs credentials OpenDAL did not find itself).
    s3_config: Option<BTreeMap<String, String>>,
    s3_lock: OnceLock<S3Lock>,
    /// The location's Object Lock settings (FORMAT.md §17), read at the first write that needs
    /// them (outer `None`: not read yet).
    locking: RwLock<Option<Option<LockSettings>>>,
    // Declared after the operator: dropped after the operator whose requests run on it.
    _runtime: Arc<tokio::runtime::Runtime>,
    // Declared last: stops leftover ssh masters once the connections above are closed.
    _ssh_masters: Option<super::ssh::MasterGuard>,
}

impl RemoteBackend {
    /// Connects (lazily: no request is made yet) to a remote location.
    ///
    /// # Errors
    /// `InvalidInput` when the options do not configure a usable service; `Backend` when the runtime cannot start.
    pub fn new(location: &Location, options: &BackendOptions) -> Result<Self> {
        let (scheme, config) = service_config(location, &options.service)?;
        let endpoint = endpoint_label(&scheme, &config, location);
        let bucket = (scheme == "s3")
            .then(|| config.get("bucket").cloned())
            .flatten();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.connections.clamp(2, 8))
            .thread_name("cairn-storage")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Backend,
                    format!("cannot start the storage runtime: {e}"),
                )
            })?;
        let s3_config = (scheme == "s3").then(|| config.clone());
        let op = Operator::via_iter(&scheme, config).map_err(|e| {
            let hint = if e.kind() == DalKind::Unsupported {
                format!(
                    "this cairn is built with the OpenDAL services {}",
                    BUILT_IN_SERVICES.join(", ")
                )
            } else {
                "check the -o options".to_string()
            };
            Error::invalid_input(format!(
                "cannot configure {location} (OpenDAL service {scheme}): {e}; {hint}"
            ))
        })?;
        let multi_write = op.info().capability().write_can_multi;
        let shard_listing = !op.info().capability().list_with_recursive;
        let burst = options.upload_limit.map(|rate| {
            let floor = if multi_write {
                THROTTLE_BURST_MIN
            } else {
                THROTTLE_BURST_WHOLE
            };
            rate.max(floor).min(u32::MAX as u64)
        });
        let op = layered(op, options, burst);
        let op = {
            let _guard = runtime.enter();
            blocking::Operator::new(op).map_err(|e| {
                Error::new(
                    ErrorKind::Backend,
                    format!("cannot start the storage client for {location}: {e}"),
                )
            })?
        };
        Ok(RemoteBackend {
            op,
            location: location.to_string(),
            write_by_rename: scheme == "sftp",
            throttle_burst: burst.map(|b| b as usize),
            shard_listing,
            refused_retries: if scheme == "sftp" { options.retries } else { 0 },
            endpoint,
            bucket,
            policy: Policy {
                timeout: options.timeout,
                retries: options.retries,
                retry_for: options.retry_for,
            },
            health: Health::default(),
            on_retry: options.on_retry.clone(),
            s3_config,
            s3_lock: OnceLock::new(),
            locking: RwLock::new(None),
            _runtime: Arc::new(runtime),
            _ssh_masters: (scheme == "sftp").then(super::ssh::MasterGuard::adopt),
        })
    }

    /// Runs one request, and again by the retry policy ([`super::retry`]) while it fails in a way that
    /// waiting can fix; `what` and `path` say what it does, for the retry notices.
    ///
    /// On SFTP a request is also tried again after a pause while the server refuses new connections.
    /// Why: OpenDAL's SFTP service opens one `ssh` connection per request in flight, and sshd drops
    /// connections beyond `MaxStartups` (default 10 unauthenticated at once, then at random) before the
    /// SSH greeting. OpenDAL reports that as a permanent error, so `--connections 64` failed objects. Only
    /// that failure is retried that way: a wrong key or host key fails as before, without waiting.
    fn again<T>(
        &self,
        what: &str,
        path: &str,
        mut request: impl FnMut() -> std::result::Result<T, opendal::Error>,
    ) -> std::result::Result<T, Failed> {
        let mut attempts = Attempts::new(&self.policy, &self.health);
        if let Some(skipped) = attempts.skipped() {
            return Err(skipped);
        }
        let mut pause = REFUSED_PAUSE_MIN;
        let mut ssh_retries = 0;
        loop {
            let err = match request() {
                Ok(value) => {
                    attempts.succeeded();
                    return Ok(value);
                }
                Err(e) => e,
            };
            if let Some(failure) = connect_failure(&err) {
                if !self.may_retry(failure, ssh_retries) {
                    return Err(Failed::once(err));
                }
                ssh_retries += 1;
                std::thread::sleep(retry::jittered(pause));
                pause = (pause * 2).min(REFUSED_PAUSE_MAX);
                // A signal during the pause: a new try would start a master nobody stops.
                if super::ssh::stopping() {
                    return Err(Failed::once(err));
                }
                continue;
            }
            if super::ssh::stopping() {
                return Err(Failed::once(err));
            }
            let message = retry::retrying(
                &err,
                what,
                &self.where_(path),
                &self.endpoint,
                self.policy.timeout,
            );
            let (delay, retry) = attempts.after(err)?;
            if let Some(OnRetry(tell)) = &self.on_retry {
                tell(&RetryNotice {
                    message: &message,
                    retry,
                    retries: self.policy.retries,
                    delay,
                });
            }
            std::thread::sleep(delay);
        }
    }

    /// Whether a request whose ssh connection failed with `failure` after `attempt` retries is tried again.
    fn may_retry(&self, failure: ConnectFailure, attempt: usize) -> bool {
        if super::ssh::stopping() {
            return false;
        }
        match failure {
            ConnectFailure::Refused => attempt < self.refused_retries,
            ConnectFailure::Unexplained => {
                attempt < self.refused_retries.min(UNEXPLAINED_CONNECT_RETRIES)
            }
        }
    }

    fn where_(&self, path: &str) -> String {
        format!("{}/{path}", self.location.trim_end_matches('/'))
    }

    fn error(&self, failed: Failed, what: &str, path: &str) -> Error {
        retry::error(
            &failed,
            what,
            &self.where_(path),
            &self.endpoint,
            self.bucket.as_deref(),
            self.policy.timeout,
        )
    }

    /// On S3, an error when the bucket does not exist (where a missing config would otherwise read as
    /// "no repository here, run init", and init would fail on its first write).
    fn check_bucket(&self) -> Result<()> {
        if self.bucket.is_none() {
            return Ok(());
        }
        let probe = self.again("cannot list", "", || {
            self.op.list_options(
                "",
                ListOptions {
                    limit: Some(1),
                    ..Default::default()
                },
            )
        });
        match probe {
            Err(failed) if failed.err.as_ref().is_some_and(retry::no_such_bucket) => {
                Err(self.error(failed, "cannot list", ""))
            }
            _ => Ok(()),
        }
    }

    fn missing(&self, kind: ObjectKind, name: &str, path: &str) -> Error {
        super::missing(kind, name, &self.where_(path))
    }

    /// Writes `bytes` whole. They are owned so that OpenDAL (and its retries) send them without a copy;
    /// the throttled pieces below are slices of the same allocation.
    fn put(&self, path: &str, bytes: Buffer) -> std::result::Result<(), opendal::Error> {
        match self.throttle_burst {
            // The throttle layer refuses a single write larger than its burst: hand it exact pieces.
            Some(burst) if bytes.len() > burst => {
                let mut writer = self.op.writer_options(
                    path,
                    opendal::options::WriteOptions {
                        chunk: Some(burst),
                        ..Default::default()
                    },
                )?;
                for start in (0..bytes.len()).step_by(burst) {
                    writer.write(bytes.slice(start..(start + burst).min(bytes.len())))?;
                }
                writer.close().map(|_| ())
            }
            _ => self.op.write(path, bytes).map(|_| ()),
        }
    }

    /// The Object Lock client; `InvalidInput` off S3 or without credentials.
    fn lock_client(&self) -> Result<&S3Lock> {
        if let Some(client) = self.s3_lock.get() {
            return Ok(client);
        }
        let Some(config) = &self.s3_config else {
            return Err(Error::invalid_input(format!(
                "{} is not on S3: Object Lock needs an S3 bucket",
                self.location
            )));
        };
        let client = S3Lock::new(config, self.policy.timeout)?;
        Ok(self.s3_lock.get_or_init(|| client))
    }

    /// Runs an Object Lock request of `client` on this backend's runtime, retried by the same
    /// policy as every other request.
    fn lock_request<T, F>(&self, what: &str, path: &str, request: impl Fn() -> F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, opendal::Error>>,
    {
        self.again(what, path, || self._runtime.block_on(request()))
            .map_err(|e| self.error(e, what, path))
    }

    /// Writes one object: in place where writes are atomic, else to `tmp/` and renamed; with
    /// its retention where the location is locked and the kind is one that is.
    fn put_object(&self, kind: ObjectKind, name: &str, bytes: Buffer) -> Result<()> {
        let path = object_path(kind, name)?;
        if object_lock::is_locked_kind(kind) {
            if let Some(settings) = self.lock_settings()? {
                let retention = settings.on_write(chrono::Utc::now());
                // Shared, not copied, by every attempt: a pack is held once.
                let (s3, body) = (self.lock_client()?, bytes.to_bytes());
                return self.lock_request("cannot write", &path, || {
                    s3.put(&path, body.clone(), &retention)
                });
            }
        }
        if !self.write_by_rename {
            return self
                .again("cannot write", &path, || self.put(&path, bytes.clone()))
                .map_err(|e| self.error(e, "cannot write", &path));
        }
        let suffix = hex::encode(crate::crypto::random_array::<8>()?);
        let tmp = format!("tmp/{name}.{suffix}");
        let result = self
            .again("cannot write", &tmp, || self.put(&tmp, bytes.clone()))
            .and_then(|()| self.again("cannot rename to", &path, || self.op.rename(&tmp, &path)));
        if let Err(e) = result {
            let _ = self.op.delete(&tmp);
            return Err(self.error(e, "cannot write", &path));
        }
        Ok(())
    }

    /// Names and sizes of the files below `dir` (recursively), sorted.
    fn list_files(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let entries = match self.again("cannot list", dir, || {
            self.op.list_options(
                dir,
                ListOptions {
                    recursive: true,
                    ..Default::default()
                },
            )
        }) {
            Ok(entries) => entries,
            Err(e) if e.kind() == DalKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e, "cannot list", dir)),
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.metadata().mode() != EntryMode::FILE {
                continue;
            }
            let mut size = entry.metadata().content_length();
            if size == 0 {
                // Some listings (WebDAV without getcontentlength) leave sizes out: ask.
                size = self
                    .again("cannot stat", entry.path(), || self.op.stat(entry.path()))
                    .map_err(|e| self.error(e, "cannot stat", entry.path()))?
                    .content_length();
            }
            out.push((entry.name().to_string(), size));
        }
        out.sort();
        Ok(out)
    }
}

/// What a reader of past versions ([`super::AsOfBackend`]) asks of the storage: kept apart from the
/// [`Backend`] calls above, which see only the current objects.
impl RemoteBackend {
    /// Every version of every object below `prefix` (recursively), delete markers included, as the
    /// service lists them. Only a service that keeps versions lists them (S3 with bucket versioning).
    ///
    /// # Errors
    /// `InvalidInput` when the service cannot list and read versions; `Backend` when the listing
    /// fails or names a version without its id or time.
    pub fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>> {
        let capability = self.op.info().capability();
        if !(capability.list_with_versions
            && capability.list_with_deleted
            && capability.read_with_version)
        {
            return Err(Error::invalid_input(format!(
                "{} keeps no object versions cairn can read (OpenDAL service {}): only S3 lists them",
                self.location,
                self.op.info().scheme()
            )));
        }
        let what = "cannot list the object versions of";
        let entries = match self.again(what, prefix, || {
            self.op.list_options(
                prefix,
                ListOptions {
                    recursive: true,
                    versions: true,
                    deleted: true,
                    ..Default::default()
                },
            )
        }) {
            Ok(entries) => entries,
            Err(e) if e.kind() == DalKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e, what, prefix)),
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let meta = entry.metadata();
            // Delete markers are listed as files of no length.
            if meta.mode() != EntryMode::FILE {
                continue;
            }
            let unplaced = |field: &str| {
                Error::new(
                    ErrorKind::Backend,
                    format!(
                        "{} lists a version of {} without its {field}; cannot tell which version was current when",
                        self.endpoint,
                        self.where_(entry.path())
                    ),
                )
            };
            let version = meta.version().ok_or_else(|| unplaced("version id"))?;
            let modified = meta
                .last_modified()
                .ok_or_else(|| unplaced("modification time"))?;
            out.push(ObjectVersion {
                path: entry.path().to_string(),
                version: version.to_string(),
                modified: std::time::SystemTime::from(modified).into(),
                size: meta.content_length(),
                deleted: meta.is_deleted(),
                current: meta.is_current() == Some(true),
            });
        }
        Ok(out)
    }

    /// Bytes `range` of version `version` of an object (an id [`RemoteBackend::list_versions`]
    /// listed) into `buf`, cleared first; fewer bytes than asked is a `Corrupted` error.
    ///
    /// # Errors
    /// When the version is missing (its history was cut meanwhile), unreadable or too short.
    pub fn read_version_into(
        &self,
        kind: ObjectKind,
        name: &str,
        version: &str,
        range: std::ops::Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let path = object_path(kind, name)?;
        buf.clear();
        if range.is_empty() {
            return Ok(());
        }
        let options = opendal::options::ReaderOptions {
            version: Some(version.to_string()),
            ..Default::default()
        };
        let place = format!("{path}, version {version}");
        match self.again("cannot read", &place, || {
            buf.clear();
            self.op
                .reader_options(&path, options.clone())
                .and_then(|r| r.read_into(buf, range.clone()))
        }) {
            Ok(_) if buf.len() as u64 == range.end - range.start => Ok(()),
            Ok(_) => Err(
                super::too_short(kind, name, None, range.start, range.end - range.start)
                    .context(format!("version {version}")),
            ),
            Err(e) if e.kind() == DalKind::NotFound => Err(self.missing(kind, name, &place)),
            Err(e) => Err(self.error(e, "cannot read", &place)),
        }
    }
}

/// The path whose lock [`Backend::retention`] reads: an object's, or with the config's kind and
/// the name `locking`, the location's lock settings (FORMAT.md §17).
fn lock_path(kind: ObjectKind, name: &str) -> Result<String> {
    if kind == ObjectKind::Config && name == LOCKING_PATH {
        return Ok(LOCKING_PATH.to_string());
    }
    object_path(kind, name)
}

/// The OpenDAL scheme and configuration map for a location, `-o` options passed through.
fn service_config(
    location: &Location,
    options: &BTreeMap<String, String>,
) -> Result<(String, BTreeMap<String, String>)> {
    let mut config = options.clone();
    let mut default = |key: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            config.entry(key.to_string()).or_insert(v);
        }
    };
    let env = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok());
    let scheme = match location {
        Location::Local(path) => {
            default("root", Some(path.display().to_string()));
            "fs"
        }
        Location::S3 { bucket, prefix } => {
            default("bucket", Some(bucket.clone()));
            default("root", Some(format!("/{prefix}")));
            default(
                "endpoint",
                env(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]),
            );
            default("region", env(&["AWS_REGION", "AWS_DEFAULT_REGION"]));
            default("access_key_id", env(&["AWS_ACCESS_KEY_ID"]));
            default("secret_access_key", env(&["AWS_SECRET_ACCESS_KEY"]));
            default("session_token", env(&["AWS_SESSION_TOKEN"]));
            // A custom endpoint (MinIO, Ceph, a test server) rarely cares about regions, but signing needs one.
            let region = config
                .contains_key("endpoint")
                .then(|| "us-east-1".to_string());
            config
                .entry("region".into())
                .or_insert_with(|| region.unwrap_or_default());
            if config.get("region").is_some_and(String::is_empty) {
                config.remove("region");
            }
            "s3"
        }
        Location::Sftp {
            user,
            host,
            port,
            path,
        } => {
            default("endpoint", Some(format!("ssh://{host}:{port}")));
            default("user", Some(user.clone()));
            default("root", Some(path.clone()));
            "sftp"
        }
        Location::Webdav {
            tls,
            user,
            authority,
            path,
        } => {
            let http = if *tls { "https" } else { "http" };
            default("endpoint", Some(format!("{http}://{authority}")));
            default("root", Some(path.clone()));
            default("username", Some(user.clone()));
            default("password", env(&["CAIRN_WEBDAV_PASSWORD"]));
            "webdav"
        }
        Location::OpenDal { scheme } => scheme.as_str(),
    };
    Ok((scheme.to_string(), config))
}

/// Wraps an operator in the layers every request goes through, innermost first.
fn layered(op: Operator, options: &BackendOptions, throttle_burst: Option<u64>) -> Operator {
    // Timeouts apply per attempt (innermost), so a stalled request is retried rather than fatal.
    let op = op.layer(
        TimeoutLayer::new()
            .with_timeout(options.timeout)
            .with_io_timeout(options.timeout),
    );
    let op = op.layer(ConcurrentLimitLayer::new(options.connections.max(1)));
    // Throttling outside the timeout: waiting for upload quota is not a stalled request.
    match (options.upload_limit, throttle_burst) {
        (Some(rate), Some(burst)) => {
            let rate = rate.clamp(1, u32::MAX as u64) as u32;
            op.layer(ThrottleLayer::new(rate, burst as u32))
        }
        _ => op,
    }
}

/// The service and address requests go to, as messages name it: `s3 endpoint http://127.0.0.1:9000`.
fn endpoint_label(scheme: &str, config: &BTreeMap<String, String>, location: &Location) -> String {
    match config.get("endpoint") {
        Some(endpoint) => format!("{scheme} endpoint {endpoint}"),
        None if scheme == "s3" => match config.get("region") {
            Some(region) => format!("s3 endpoint https://s3.{region}.amazonaws.com"),
            None => "the s3 endpoint of AWS".to_string(),
        },
        None => format!("the {scheme} service of {location}"),
    }
}

impl Backend for RemoteBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn has_config(&self) -> Result<bool> {
        let exists = self
            .again("cannot access", "config", || self.op.exists("config"))
            .map_err(|e| self.error(e, "cannot access", "config"))?;
        if !exists {
            self.check_bucket()?;
        }
        Ok(exists)
    }

    fn create(&self) -> Result<()> {
        // Object stores have no directories to make: a location is empty when it holds no object at all.
        let entries = match self.again("cannot list", "", || {
            self.op.list_options(
                "",
                ListOptions {
                    recursive: true,
                    limit: Some(16),
                    ..Default::default()
                },
            )
        }) {
            Ok(e) => e,
            Err(e) if e.kind() == DalKind::NotFound => Vec::new(),
            Err(e) => return Err(self.error(e, "cannot list", "")),
        };
        // A lone `locking` object is what an `init --lock-mode` stopped before its key file left:
        // the location holds no repository yet.
        if entries
            .iter()
            .any(|e| e.metadata().mode() == EntryMode::FILE && e.path() != LOCKING_PATH)
        {
            return Err(Error::invalid_input(format!(
                "{} is not empty; choose an empty or new location for the repository",
                self.location
            )));
        }
        Ok(())
    }

    fn list_all(&self, kind: ObjectKind) -> Result<Vec<(String, u64)>> {
        if kind == ObjectKind::Config {
            return match self.again("cannot access", "config", || self.op.stat("config")) {
                Ok(meta) => Ok(vec![("config".to_string(), meta.content_length())]),
                Err(e) if e.kind() == DalKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(self.error(e, "cannot access", "config")),
            };
        }
        self.list_files(kind.dir())
    }

    fn pack_shards(&self) -> Result<Option<Vec<String>>> {
        if !self.shard_listing {
            return Ok(None);
        }
        // One request (a delimited listing on S3) names the shards; each is then listed on its own.
        let dir = ObjectKind::Pack.dir();
        let entries = match self.again("cannot list", dir, || self.op.list(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == DalKind::NotFound => return Ok(Some(Vec::new())),
            Err(e) => return Err(self.error(e, "cannot list", dir)),
        };
        let mut shards: Vec<String> = entries
            .iter()
            // SFTP and WebDAV list the directory itself too.
            .filter(|e| e.metadata().mode() == EntryMode::DIR && e.path() != dir)
            .map(|e| e.name().trim_end_matches('/').to_string())
            .filter(|name| super::is_shard_name(name))
            .collect();
        shards.sort();
        shards.dedup();
        Ok(Some(shards))
    }

    fn list_pack_shard(&self, shard: &str) -> Result<Vec<(String, u64)>> {
        super::check_shard(shard)?;
        self.list_files(&format!("{}{shard}/", ObjectKind::Pack.dir()))
    }

    fn read_bounded_into(
        &self,
        kind: ObjectKind,
        name: &str,
        max: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let path = object_path(kind, name)?;
        // The size first, so a planted object of gigabytes costs one request, not its size in
        // memory; then exactly that many bytes, so an object replaced by a larger one meanwhile is
        // still read no further.
        let size = self.size(kind, name)?;
        if size > max {
            return Err(super::too_large(kind, name, size, max));
        }
        buf.clear();
        if size == 0 {
            return Ok(());
        }
        // Into one growing vector as the body arrives: collecting OpenDAL's buffer and then flattening it
        // would hold the object twice at the end.
        match self.again("cannot read", &path, || {
            buf.clear();
            self.op
                .reader(&path)
                .and_then(|r| r.read_into(buf, 0..size))
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == DalKind::NotFound => Err(self.missing(kind, name, &path)),
            Err(e) => Err(self.error(e, "cannot read", &path)),
        }
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = object_path(kind, name)?;
        let short = || super::too_short(kind, name, None, offset, len);
        let end = offset.checked_add(len).ok_or_else(short)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let options = ReadOptions {
            range: (offset..end).into(),
            ..Default::default()
        };
        match self.again("cannot read", &path, || {
            self.op.read_options(&path, options.clone())
        }) {
            Ok(buf) if buf.len() as u64 == len => Ok(buf.to_vec()),
            Ok(_) => Err(short()),
            Err(e) if e.kind() == DalKind::NotFound => Err(self.missing(kind, name, &path)),
            // Services report a range past the end differently (416, a short body): the size tells.
            Err(e) => match self.again("cannot stat", &path, || self.op.stat(&path)) {
                Ok(meta) if meta.content_length() < end => Err(short()),
                Err(s) if s.kind() == DalKind::NotFound => Err(self.missing(kind, name, &path)),
                _ => Err(self.error(e, "cannot read", &path)),
            },
        }
    }

    fn size(&self, kind: ObjectKind, name: &str) -> Result<u64> {
        let path = object_path(kind, name)?;
        match self.again("cannot stat", &path, || self.op.stat(&path)) {
            Ok(meta) => Ok(meta.content_length()),
            Err(e) if e.kind() == DalKind::NotFound => Err(self.missing(kind, name, &path)),
            Err(e) => Err(self.error(e, "cannot stat", &path)),
        }
    }

    fn modified(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let path = object_path(kind, name)?;
        match self.again("cannot stat", &path, || self.op.stat(&path)) {
            Ok(meta) => Ok(meta
                .last_modified()
                .map(|t| std::time::SystemTime::from(t).into())),
            Err(e) if e.kind() == DalKind::NotFound => Err(self.missing(kind, name, &path)),
            Err(e) => Err(self.error(e, "cannot stat", &path)),
        }
    }

    fn write(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        self.put_object(kind, name, Buffer::from(bytes.to_vec()))
    }

    fn write_owned(&self, kind: ObjectKind, name: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.put_object(kind, name, bytes.into()).map(|()| None)
    }

    fn lock_settings(&self) -> Result<Option<LockSettings>> {
        if let Some(settings) = *self.locking.read().unwrap_or_else(|e| e.into_inner()) {
            return Ok(settings);
        }
        if self.s3_config.is_none() {
            return Ok(None);
        }
        let read = self.again("cannot read", LOCKING_PATH, || {
            let meta = self.op.stat(LOCKING_PATH)?;
            if meta.content_length() > MAX_LOCKING_LEN {
                return Ok(Err(meta.content_length()));
            }
            self.op.read(LOCKING_PATH).map(|b| Ok(b.to_vec()))
        });
        let settings = match read {
            Ok(Ok(bytes)) => Some(LockSettings::from_bytes(&bytes)?),
            Ok(Err(size)) => {
                return Err(Error::corrupted(format!(
                    "the {LOCKING_PATH} object of {} is {size} bytes, more than the {MAX_LOCKING_LEN} it may be",
                    self.location
                )))
            }
            Err(e) if e.kind() == DalKind::NotFound => None,
            Err(e) => return Err(self.error(e, "cannot read", LOCKING_PATH)),
        };
        *self.locking.write().unwrap_or_else(|e| e.into_inner()) = Some(settings);
        Ok(settings)
    }

    fn enable_lock(&self, settings: &LockSettings) -> Result<()> {
        let s3 = self.lock_client()?;
        let what = "cannot read the lock settings of";
        let bucket =
            match self.again(what, "", || self._runtime.block_on(s3.bucket())) {
                Ok(bucket) => bucket,
                Err(e) if e.kind() == DalKind::Unsupported => {
                    return Err(Error::invalid_input(format!(
                    "the S3 service at {} does not support Object Lock ({}): a locked repository \
                     needs a service with S3 Object Lock (AWS S3, MinIO, Ceph RGW)",
                    self.endpoint,
                    e.err.as_ref().map(|e| e.message().to_string()).unwrap_or_default()
                )))
                }
                Err(e) => return Err(self.error(e, what, "")),
            };
        let name = self.bucket.as_deref().unwrap_or("the bucket");
        if !bucket.versioning || !bucket.object_lock {
            return Err(Error::invalid_input(format!(
                "{name} at {} has {}: a locked repository needs a bucket created with Object Lock, \
                 e.g. `aws s3api create-bucket --bucket {name} --object-lock-enabled-for-bucket` \
                 (which also enables versioning); see README, \"Protecting backups from ransomware\"",
                self.endpoint,
                if bucket.versioning {
                    "no Object Lock"
                } else {
                    "neither versioning nor Object Lock"
                }
            )));
        }
        let retention = settings.on_write(chrono::Utc::now());
        let body = bytes::Bytes::from(settings.to_bytes());
        self.lock_request("cannot write", LOCKING_PATH, || {
            s3.put(LOCKING_PATH, body.clone(), &retention)
        })?;
        *self.locking.write().unwrap_or_else(|e| e.into_inner()) = Some(Some(*settings));
        Ok(())
    }

    fn retention(&self, kind: ObjectKind, name: &str) -> Result<Option<Retention>> {
        let path = lock_path(kind, name)?;
        let s3 = self.lock_client()?;
        match self.again("cannot read the retention of", &path, || {
            self._runtime.block_on(s3.retention(&path))
        }) {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == DalKind::NotFound => Err(self.missing(kind, name, &path)),
            Err(e) => Err(self.error(e, "cannot read the retention of", &path)),
        }
    }

    fn extend_retention(&self, kind: ObjectKind, name: &str, retention: &Retention) -> Result<()> {
        let path = lock_path(kind, name)?;
        let s3 = self.lock_client()?;
        self.lock_request("cannot extend the lock of", &path, || {
            s3.extend(&path, retention)
        })
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let path = object_path(kind, name)?;
        match self.again("cannot remove", &path, || self.op.delete(&path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == DalKind::NotFound => Ok(()),
            Err(e) => Err(self.error(e, "cannot remove", &path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh_error(source: &str) -> opendal::Error {
        opendal::Error::new(opendal::ErrorKind::Unexpected, "ssh error")
            .set_source(anyhow::anyhow!(source.to_string()))
    }

    #[test]
    fn connection_failures_are_told_apart_by_what_ssh_said() {
        assert_eq!(
            connect_failure(&ssh_error(
                "kex_exchange_identification: Connection closed by remote host"
            )),
            Some(ConnectFailure::Refused)
        );
        assert_eq!(
            connect_failure(&ssh_error("failed to connect to the remote host")),
            Some(ConnectFailure::Unexplained)
        );
        assert_eq!(connect_failure(&ssh_error("No such file")), None);
        assert_eq!(
            connect_failure(&opendal::Error::new(
                opendal::ErrorKind::NotFound,
                "not found"
            )),
            None
        );
    }
}
