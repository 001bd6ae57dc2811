//! An S3 server inside the test process (the `s3s-fs` crate over a temporary directory), so the S3 tests
//! run on any machine. It checks SigV4 signatures, and can fail a fraction of requests with `503 SlowDown`
//! to prove that retries carry a command through a flaky service.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "cairn-test-access";
pub const SECRET_KEY: &str = "cairn-test-secret-key";
pub const BUCKET: &str = "cairn";

/// A running server; it stops when dropped (its runtime is shut down).
pub struct S3Server {
    pub addr: SocketAddr,
    /// The directory holding the buckets: `<root>/<bucket>/<key>`.
    pub root: PathBuf,
    /// Every n-th request fails with 503 (0: none).
    fail_every: Arc<AtomicU64>,
    /// Requests answered with a failure so far.
    pub failures: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl S3Server {
    /// Starts a server over `root` (created) with the bucket `cairn`.
    pub fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fail_every = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let fs = s3s_fs::FileSystem::new(root).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let (every, failed) = (fail_every.clone(), failures.clone());
        runtime.spawn(async move {
            let counter = Arc::new(AtomicU64::new(0));
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let (every, failed, counter) = (every.clone(), failed.clone(), counter.clone());
                let flaky = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let service = service.clone();
                    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    let every = every.load(Ordering::Relaxed);
                    let fail = every > 0 && n % every == 0;
                    if fail {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    async move {
                        if fail {
                            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                                <Message>injected fault</Message></Error>";
                            return Ok(http::Response::builder()
                                .status(503)
                                .body(s3s::Body::from(body.to_string()))
                                .unwrap());
                        }
                        hyper::service::Service::call(&service, req).await
                    }
                });
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), flaky)
                        .await;
                });
            }
        });
        S3Server {
            addr,
            root: root.to_path_buf(),
            fail_every,
            failures,
            runtime: Some(runtime),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `s3://cairn/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The file behind object `key` of a repository at `prefix`.
    pub fn object_file(&self, prefix: &str, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(prefix).join(key)
    }

    /// From now on every `n`-th request fails with 503 (0 turns faults off).
    pub fn fail_every(&self, n: u64) {
        self.fail_every.store(n, Ordering::Relaxed);
    }

    /// A repository location on this server below `prefix`, with its credentials.
    pub fn remote(&self, prefix: &str) -> crate::common::offsite::Remote {
        crate::common::offsite::Remote {
            url: self.url(prefix),
            options: Vec::new(),
            vars: self
                .env()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    /// The environment a cairn process needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("AWS_ACCESS_KEY_ID", Some(ACCESS_KEY.to_string())),
            ("AWS_SECRET_ACCESS_KEY", Some(SECRET_KEY.to_string())),
            ("AWS_ENDPOINT_URL", Some(self.endpoint())),
            ("AWS_REGION", Some("us-east-1".to_string())),
            ("AWS_SESSION_TOKEN", None),
            ("AWS_PROFILE", None),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
