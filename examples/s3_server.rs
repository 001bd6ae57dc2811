//! The S3 server the tests run in-process (`s3s-fs` over a directory), as a program, so that
//! `benches/sync_compare.sh` can time cairn and rclone against the same server the tests use.
//!
//! Every directory below ROOT is a bucket, every file below it an object. Requests are checked
//! against SigV4 signatures for the access key `cairn-bench` and secret `cairn-bench-secret`.
//! It prints `listening on http://ADDR` once it accepts connections and serves until killed.
//!
//! `cargo run --release --example s3_server -- ROOT [127.0.0.1:PORT]`

use std::net::SocketAddr;
use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

const ACCESS_KEY: &str = "cairn-bench";
const SECRET_KEY: &str = "cairn-bench-secret";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: s3_server ROOT [ADDR]"))?,
    );
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".to_string())
        .parse()?;
    std::fs::create_dir_all(&root)?;
    // Two workers, as in the tests: the machine the benchmarks run on has two cores, shared with the client.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let fs = s3s_fs::FileSystem::new(&root)
            .map_err(|e| anyhow::anyhow!("cannot serve {}: {e:?}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        println!("listening on http://{}", listener.local_addr()?);
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    })
}
