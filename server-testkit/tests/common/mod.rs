//! A raw-protocol test client over a tokio TcpStream, built on `zkit_proto` records.
//!
//! Tests that take their server from [`server`] run against a target chosen by the environment
//! (against a real ZooKeeper, the caller must expect a shared tree):
//! - by default, an in-process testkit server; `ZKIT_TEST_SERVER=host:port`: a real standalone
//!   ZooKeeper instead;
//! - `ZKIT_TEST_TARGET=ensemble`: a follower of an in-process 3-server testkit ensemble (so
//!   every write is forwarded to the leader and comes back as a commit), or, when
//!   `ZK_TEST_ENSEMBLE` names a real ensemble (`host:port,host:port,...`), a follower of it.
#![allow(dead_code)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit_proto::frame::{take_frame, write_record};
use zkit_proto::*;
use zkit_testkit::{Ensemble, EnsembleBuilder, Server};

/// What a test runs against, kept alive while it runs (nothing for a real server).
pub enum Running {
    /// An in-process standalone server.
    Server(Server),
    /// An in-process ensemble (the test talks to one of its followers).
    Ensemble(Ensemble),
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// Whether the tests run against an ensemble (`ZKIT_TEST_TARGET=ensemble`): a case that only
/// holds on a standalone server skips itself there.
pub fn on_ensemble() -> bool {
    env_nonempty("ZKIT_TEST_TARGET").is_some_and(|t| t == "ensemble")
}

/// The server to test (see the module docs): starts an in-process one when the environment
/// names no real one, and returns it with the address to connect to.
pub async fn server() -> (Option<Running>, String) {
    if on_ensemble() {
        return ensemble_follower(Ensemble::builder()).await;
    }
    match env_nonempty("ZKIT_TEST_SERVER") {
        Some(addr) => (None, addr),
        None => {
            let s = Server::start().await.expect("server starts");
            let addr = s.connect_string();
            (Some(Running::Server(s)), addr)
        }
    }
}

/// A follower of the real ensemble named by `ZK_TEST_ENSEMBLE`, or else of an in-process one
/// started from `builder`.
pub async fn ensemble_follower(builder: EnsembleBuilder) -> (Option<Running>, String) {
    if let Some(hosts) = env_nonempty("ZK_TEST_ENSEMBLE") {
        return (None, real_follower(&hosts).await);
    }
    let e = builder.start().await.expect("ensemble starts");
    let leader = e.wait_for_leader().await.expect("a leader");
    let follower = (0..e.len()).find(|&i| i != leader).expect("a follower");
    let addr = e.server(follower).connect_string();
    (Some(Running::Ensemble(e)), addr)
}

/// A member of a real ensemble whose `srvr` says it follows.
async fn real_follower(hosts: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        for host in hosts.split(',') {
            let Ok(mut s) = TcpStream::connect(host).await else {
                continue;
            };
            let mut out = String::new();
            if s.write_all(b"srvr").await.is_ok()
                && tokio::time::timeout(TIMEOUT, s.read_to_string(&mut out))
                    .await
                    .is_ok_and(|r| r.is_ok())
                && out.lines().any(|l| l == "Mode: follower")
            {
                return host.to_owned();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no member of {hosts} follows"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A unique node name per test run (so tests can share a real server).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    format!("/{prefix}-{t}-{}", N.fetch_add(1, Ordering::Relaxed))
}

#[allow(unused_imports)]
pub use zkit_testkit::diff::raw::{open_acl, RawClient, Reply, TIMEOUT};

/// Sends raw bytes on a fresh connection and returns everything the server wrote before closing.
pub async fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out)).await;
    out
}

/// A connection with a 4 KiB receive buffer that completed its handshake.
pub async fn small_window_session(addr: std::net::SocketAddr) -> (TcpStream, i64) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stream = sock.connect(addr).await.unwrap();
    let mut b = BytesMut::new();
    write_record(
        &mut b,
        &ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout: 30_000,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        },
    );
    stream.write_all(&b).await.unwrap();
    let mut buf = BytesMut::new();
    let frame = loop {
        if let Some(f) = take_frame(&mut buf, 1 << 20).unwrap() {
            break f;
        }
        assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "handshake");
    };
    let resp = ConnectResponse::from_bytes(frame).unwrap();
    assert_ne!(resp.session_id, 0);
    (stream, resp.session_id)
}
