//! When a failed request to remote storage is tried again, and what cairn says when it gives up.
//!
//! Owns the classification of OpenDAL errors (the endpoint did not answer, the service answered with a
//! temporary or a permanent error, the bucket does not exist), the retry policy of
//! [`BackendOptions`](super::BackendOptions), and the memory one backend keeps of its endpoint: whether it
//! ever answered, and whether a request already gave up on it. Never prints: retries are told to the
//! caller's [`OnRetry`](super::OnRetry) callback, and failures become [`Error`]s whose message is in
//! cairn's words, with OpenDAL's own text kept as the error's detail for `-v`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opendal::ErrorKind as DalKind;

use crate::error::{Error, ErrorKind};

/// First pause before a retry; it doubles up to [`PAUSE_MAX`].
pub(super) const PAUSE_MIN: Duration = Duration::from_millis(200);
pub(super) const PAUSE_MAX: Duration = Duration::from_secs(30);

/// Between half and all of `pause`, at random: spreads the retries of many requests over the pause.
pub(super) fn jittered(pause: Duration) -> Duration {
    let jitter = crate::crypto::random_array::<2>()
        .map(|b| u16::from_le_bytes(b) as u32)
        .unwrap_or(0);
    pause / 2 + pause / 2 * jitter / u32::from(u16::MAX)
}

/// Why an endpoint did not answer a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NoAnswer {
    /// Nothing listens at the endpoint's address (the server is down or the port is wrong).
    Refused,
    /// The connection was closed or reset before the answer was complete (the server went away).
    Closed,
    /// The attempt ran past its timeout (the server is stopped, overloaded, or the network drops packets).
    TimedOut,
    /// No connection could be made for another reason (name resolution, no route).
    NoConnection,
}

impl NoAnswer {
    fn describe(self, timeout: Duration) -> String {
        match self {
            NoAnswer::Refused => "connection refused".to_string(),
            NoAnswer::Closed => "connection closed before an answer".to_string(),
            NoAnswer::TimedOut => format!("no answer within {} s", timeout.as_secs()),
            NoAnswer::NoConnection => "cannot connect".to_string(),
        }
    }
}

/// Whether `err` says that the endpoint did not answer, and how.
pub(super) fn no_answer(err: &opendal::Error) -> Option<NoAnswer> {
    // OpenDAL's timeout layer: "operation timeout reached", "io operation timeout reached".
    if err.message().contains("timeout reached") {
        return Some(NoAnswer::TimedOut);
    }
    let mut found = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as Io;
            match io.kind() {
                Io::ConnectionRefused => return Some(NoAnswer::Refused),
                Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::BrokenPipe
                | Io::UnexpectedEof => return Some(NoAnswer::Closed),
                Io::TimedOut => return Some(NoAnswer::TimedOut),
                _ => {}
            }
        }
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("connection refused") {
            return Some(NoAnswer::Refused);
        }
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
            || text.contains("broken pipe")
        {
            found = Some(NoAnswer::Closed);
        } else if found.is_none()
            && (text.contains("error trying to connect")
                || text.contains("dns error")
                || text.contains("client error (connect)"))
        {
            found = Some(NoAnswer::NoConnection);
        }
        source = e.source();
    }
    found
}

/// Whether `err` is S3's answer that the bucket does not exist.
pub(super) fn no_such_bucket(err: &opendal::Error) -> bool {
    err.message().contains("NoSuchBucket")
}

/// What one backend knows of its endpoint, shared by the requests in flight.
#[derive(Default)]
pub(super) struct Health {
    /// Some request got an answer (a success or an error response): the endpoint exists.
    answered: AtomicBool,
    /// Why a request gave up on the endpoint, once one has.
    down: Mutex<Option<NoAnswer>>,
}

impl Health {
    pub(super) fn answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
        if let Ok(mut down) = self.down.lock() {
            *down = None;
        }
    }

    pub(super) fn down(&self) -> Option<NoAnswer> {
        self.down.lock().ok().and_then(|d| *d)
    }

    fn give_up(&self, why: NoAnswer) {
        if let Ok(mut down) = self.down.lock() {
            *down = Some(why);
        }
    }
}

/// A request that failed for good, with what the retries saw.
pub(super) struct Failed {
    /// The last error (`None` when the request was not tried: an earlier one gave up on the endpoint).
    pub err: Option<opendal::Error>,
    /// How the endpoint failed to answer, when it did not.
    pub no_answer: Option<NoAnswer>,
    /// Attempts made.
    pub attempts: usize,
    /// Time from the first attempt to giving up.
    pub waited: Duration,
}

impl Failed {
    /// OpenDAL's kind of the last error (`Unexpected` when none was made).
    pub fn kind(&self) -> DalKind {
        self.err.as_ref().map_or(DalKind::Unexpected, |e| e.kind())
    }

    /// A failure not worth retrying, from an error seen outside the retry loop.
    pub fn once(err: opendal::Error) -> Failed {
        Failed {
            no_answer: no_answer(&err),
            err: Some(err),
            attempts: 1,
            waited: Duration::ZERO,
        }
    }
}

/// The retry policy of one backend (see [`BackendOptions`](super::BackendOptions)).
pub(super) struct Policy {
    pub timeout: Duration,
    pub retries: usize,
    pub retry_for: Duration,
}

/// One request's retries: decides whether a failure is tried again and after which pause.
pub(super) struct Attempts<'a> {
    policy: &'a Policy,
    health: &'a Health,
    started: Instant,
    retries: usize,
    pause: Duration,
}

impl<'a> Attempts<'a> {
    pub fn new(policy: &'a Policy, health: &'a Health) -> Self {
        Attempts {
            policy,
            health,
            started: Instant::now(),
            retries: 0,
            pause: PAUSE_MIN,
        }
    }

    /// A request that is not tried because an earlier one gave up on the endpoint.
    pub fn skipped(&self) -> Option<Failed> {
        self.health.down().map(|why| Failed {
            err: None,
            no_answer: Some(why),
            attempts: 0,
            waited: Duration::ZERO,
        })
    }

    /// The request succeeded.
    pub fn succeeded(&self) {
        self.health.answered();
    }

    /// The pause before trying again after `err`, or the failure to return.
    pub fn after(&mut self, err: opendal::Error) -> Result<(Duration, usize), Failed> {
        let why = no_answer(&err);
        if why.is_none() {
            // An error response: the endpoint is there, whatever it said.
            self.health.answered();
        }
        let retry = match why {
            // Refused before anything ever answered: a wrong endpoint or a server that is not running,
            // which waiting does not fix.
            Some(NoAnswer::Refused) => self.health.answered.load(Ordering::Relaxed),
            Some(_) => true,
            None => err.is_temporary(),
        } && self.health.down().is_none()
            && self.retries < self.policy.retries
            && self.started.elapsed() < self.policy.retry_for;
        if !retry {
            if let Some(why) = why {
                self.health.give_up(why);
            }
            return Err(Failed {
                err: Some(err),
                no_answer: why,
                attempts: self.retries + 1,
                waited: self.started.elapsed(),
            });
        }
        self.retries += 1;
        let delay = jittered(self.pause);
        self.pause = (self.pause * 2).min(PAUSE_MAX);
        Ok((delay, self.retries))
    }
}

/// What failed, in cairn's words: `what` is the action (`cannot write`), `place` the object's URL,
/// `endpoint` the service and address (`s3 endpoint http://127.0.0.1:9000`).
pub(super) fn describe(
    failed: &Failed,
    what: &str,
    place: &str,
    endpoint: &str,
    bucket: Option<&str>,
    timeout: Duration,
) -> String {
    let tries = match failed.attempts {
        0 => "not tried, as an earlier request gave up".to_string(),
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts over {:.1} s", failed.waited.as_secs_f64()),
    };
    if let Some(why) = failed.no_answer {
        return format!(
            "cannot reach {endpoint} ({}, {tries}): {what} {place}",
            why.describe(timeout)
        );
    }
    let Some(err) = &failed.err else {
        return format!("{what} {place}");
    };
    if no_such_bucket(err) {
        return format!(
            "the bucket {} does not exist at {endpoint}: {what} {place}",
            bucket.unwrap_or("of the location")
        );
    }
    let said = match err.kind() {
        DalKind::PermissionDenied => "permission denied".to_string(),
        DalKind::NotFound => "not found".to_string(),
        DalKind::RateLimited => format!("the service is throttling requests ({tries})"),
        DalKind::ConfigInvalid => "the service rejects the configuration".to_string(),
        DalKind::Unsupported => format!("the service does not support it ({})", err.message()),
        _ if err.is_temporary() || failed.attempts > 1 => {
            format!("{endpoint} failed the request ({tries})")
        }
        _ => format!("{endpoint} failed the request"),
    };
    format!("{what} {place}: {said}")
}

/// What a failed attempt that is about to be retried ran into, for the retry notice.
pub(super) fn retrying(
    err: &opendal::Error,
    what: &str,
    place: &str,
    endpoint: &str,
    timeout: Duration,
) -> String {
    match no_answer(err) {
        Some(why) => format!(
            "cannot reach {endpoint} ({}): {what} {place}",
            why.describe(timeout)
        ),
        None if err.kind() == DalKind::RateLimited => {
            format!("{what} {place}: {endpoint} is throttling requests")
        }
        None => format!("{what} {place}: {endpoint} failed the request"),
    }
}

/// What to check after a failure, appended to the final error.
fn hint(failed: &Failed, bucket: Option<&str>) -> &'static str {
    if let Some(why) = failed.no_answer {
        return match why {
            NoAnswer::Refused | NoAnswer::NoConnection => {
                "; check that the server is running and the endpoint is right (-o endpoint=URL, AWS_ENDPOINT_URL), then run the command again"
            }
            NoAnswer::Closed | NoAnswer::TimedOut => {
                "; check the server and the network, then run the command again (-o timeout=SECONDS, -o retries=N and -o retry_for=SECONDS set how long cairn waits)"
            }
        };
    }
    let Some(err) = &failed.err else {
        return "";
    };
    if no_such_bucket(err) {
        return if bucket.is_some() {
            "; create the bucket (cairn does not create buckets) or correct its name in the URL"
        } else {
            "; create the bucket (cairn does not create buckets) or correct the bucket option"
        };
    }
    match err.kind() {
        DalKind::PermissionDenied => {
            "; check the credentials (AWS_* variables, -o options, ssh key) and their permissions"
        }
        DalKind::ConfigInvalid => "; check the repository URL and -o options",
        DalKind::RateLimited => "; try again later or with fewer --connections",
        _ if err.is_temporary() => {
            "; the storage failed after retries: check the server, then run the command again"
        }
        _ => "",
    }
}

/// The final error for a failed request: cairn's message and hint, OpenDAL's text as the detail.
pub(super) fn error(
    failed: &Failed,
    what: &str,
    place: &str,
    endpoint: &str,
    bucket: Option<&str>,
    timeout: Duration,
) -> Error {
    let message = format!(
        "{}{}",
        describe(failed, what, place, endpoint, bucket, timeout),
        hint(failed, bucket)
    );
    let mut error = Error::new(ErrorKind::Backend, message);
    // Unreachable, timed out or a temporary server error: a later run may get through.
    if failed.no_answer.is_some() || failed.err.as_ref().is_some_and(|e| e.is_temporary()) {
        error = error.retryable();
    }
    match &failed.err {
        Some(err) => error.with_detail(format!("{err}")),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> opendal::Error {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        opendal::Error::new(DalKind::Unexpected, "send http request")
            .set_temporary()
            .set_source(anyhow::Error::from(io))
    }

    fn policy() -> Policy {
        Policy {
            timeout: Duration::from_secs(1),
            retries: 3,
            retry_for: Duration::from_secs(600),
        }
    }

    #[test]
    fn a_refusal_before_any_answer_is_not_retried() {
        let (policy, health) = (policy(), Health::default());
        let mut attempts = Attempts::new(&policy, &health);
        let failed = attempts.after(refused()).expect_err("no retry");
        assert_eq!(failed.attempts, 1);
        assert_eq!(failed.no_answer, Some(NoAnswer::Refused));
        // The endpoint is now known to be down: the next request is not even tried.
        let next = Attempts::new(&policy, &health);
        assert_eq!(next.skipped().map(|f| f.attempts), Some(0));
    }

    #[test]
    fn a_refusal_after_an_answer_is_retried_up_to_the_retries() {
        let (policy, health) = (policy(), Health::default());
        health.answered();
        let mut attempts = Attempts::new(&policy, &health);
        for n in 1..=3 {
            let (delay, retry) = attempts.after(refused()).ok().expect("retried");
            assert_eq!(retry, n);
            assert!(delay <= PAUSE_MAX);
        }
        let failed = attempts.after(refused()).expect_err("given up");
        assert_eq!(failed.attempts, 4);
    }

    #[test]
    fn no_retry_starts_past_retry_for() {
        let policy = Policy {
            retry_for: Duration::ZERO,
            ..policy()
        };
        let health = Health::default();
        let timeout = opendal::Error::new(DalKind::Unexpected, "io operation timeout reached")
            .set_temporary();
        let mut attempts = Attempts::new(&policy, &health);
        let failed = attempts.after(timeout).expect_err("no time left");
        assert_eq!(failed.no_answer, Some(NoAnswer::TimedOut));
    }

    #[test]
    fn a_permanent_error_response_is_not_retried_and_says_the_endpoint_answered() {
        let (policy, health) = (policy(), Health::default());
        let mut attempts = Attempts::new(&policy, &health);
        let denied = opendal::Error::new(DalKind::PermissionDenied, "AccessDenied");
        let failed = attempts.after(denied).expect_err("not retried");
        assert_eq!(failed.attempts, 1);
        let message = describe(
            &failed,
            "cannot read",
            "s3://b/p/config",
            "s3 endpoint x",
            None,
            policy.timeout,
        );
        assert_eq!(message, "cannot read s3://b/p/config: permission denied");
        // A refusal now is a server restarting: retried.
        assert!(Attempts::new(&policy, &health).after(refused()).is_ok());
    }

    #[test]
    fn messages_name_the_endpoint_and_the_cause_and_keep_opendal_for_the_detail() {
        let failed = Failed::once(refused());
        let err = error(
            &failed,
            "cannot access",
            "s3://b/p/config",
            "s3 endpoint http://127.0.0.1:9",
            Some("b"),
            Duration::from_secs(300),
        );
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach s3 endpoint http://127.0.0.1:9 (connection refused, 1 attempt): cannot access s3://b/p/config; check that the server is running"),
            "{text}"
        );
        assert!(!text.contains("send http request"), "{text}");
        assert!(err
            .detail()
            .is_some_and(|d| d.contains("send http request")));
        assert!(
            err.is_retryable(),
            "an unreachable endpoint may be back later"
        );
        let bucket = Failed::once(opendal::Error::new(
            DalKind::ConfigInvalid,
            "S3Error { code: \"NoSuchBucket\", message: \"The specified bucket does not exist\" }",
        ));
        let missing = error(
            &bucket,
            "cannot list",
            "s3://b/p/",
            "s3 endpoint e",
            Some("b"),
            Duration::ZERO,
        );
        assert!(!missing.is_retryable(), "a missing bucket stays missing");
        let text = missing.to_string();
        assert!(
            text.starts_with("the bucket b does not exist at s3 endpoint e"),
            "{text}"
        );
    }
}
