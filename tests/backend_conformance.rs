//! Every storage keeps the `Backend` contract: local directories and S3 (in-process s3s) always; SFTP, WebDAV
//! and moto S3 when `tests/servers/start.sh` has started them (see `remote_servers.rs`).

use crate::common::conformance;
use crate::common::s3;

use cairn::backend::{self, BackendOptions, LocalBackend, Location, MemoryBackend};

#[test]
fn local_directory() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run(&LocalBackend::new(dir.path().join("repo")));
}

#[test]
fn in_memory() {
    conformance::run(&MemoryBackend::new());
}

#[test]
fn in_process_s3() {
    let dir = tempfile::tempdir().unwrap();
    let server = s3::S3Server::start(&dir.path().join("s3"));
    let mut options = BackendOptions::from_pairs(&[
        format!("endpoint={}", server.endpoint()),
        format!("access_key_id={}", s3::ACCESS_KEY),
        format!("secret_access_key={}", s3::SECRET_KEY),
        "region=us-east-1".to_string(),
    ])
    .unwrap();
    options.retries = 2;
    let b = backend::open(
        &Location::parse(&server.url("conf/repo")).unwrap(),
        &options,
    )
    .unwrap();
    conformance::run(b.as_ref());
}

#[test]
fn s3_errors_say_what_where_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let server = s3::S3Server::start(&dir.path().join("s3"));
    let mut options = BackendOptions::from_pairs(&[
        format!("endpoint={}", server.endpoint()),
        "access_key_id=wrong".to_string(),
        "secret_access_key=wrong".to_string(),
    ])
    .unwrap();
    options.retries = 1;
    let b = backend::open(&Location::parse(&server.url("x")).unwrap(), &options).unwrap();
    let err = b.has_config().unwrap_err();
    assert_eq!(err.kind(), cairn::ErrorKind::Backend);
    let msg = err.to_string();
    assert!(
        msg.contains("s3://cairn/x/config"),
        "names the object: {msg}"
    );
    assert!(msg.contains("credentials"), "says what to check: {msg}");
}
