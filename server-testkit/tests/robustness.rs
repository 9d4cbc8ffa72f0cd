//! Bad input closes one connection with a log line; the server keeps serving everyone else.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit_testkit::Server;

async fn still_serves(addr: &str) {
    let mut c = RawClient::connect(addr).await;
    let p = unique("alive");
    c.create(&p, b"x", 0).await.unwrap();
}

#[tokio::test]
async fn garbage_first_packet_closes_only_that_connection() {
    let s = Server::start().await.unwrap();
    let addr = s.connect_string();
    let mut survivor = RawClient::connect(&addr).await;
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xff, 0xff, 0xff, 0xff][..],          // negative length
        &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3][..], // oversized
        &[0, 0, 0, 3, 1, 2, 3][..],             // truncated ConnectRequest
        &b"xyzw"[..],                           // unknown four letters
    ] {
        let out = raw_exchange(&addr, garbage).await;
        assert!(out.is_empty(), "no answer to {garbage:?}: {out:?}");
    }
    survivor.ping().await;
    still_serves(&addr).await;
}

#[tokio::test]
async fn oversized_request_after_handshake_closes_connection() {
    let s = Server::builder().max_packet(1024).start().await.unwrap();
    let addr = s.connect_string();
    let mut c = RawClient::connect(&addr).await;
    let mut b = BytesMut::new();
    b.put_i32(4096);
    b.put_bytes(0, 4096);
    c.stream.write_all(&b).await.unwrap();
    assert!(c.closed_by_server().await);
    still_serves(&addr).await;
}

#[tokio::test]
async fn malformed_request_bodies_get_marshalling_errors_or_close() {
    let s = Server::start().await.unwrap();
    let addr = s.connect_string();
    let mut c = RawClient::connect(&addr).await;
    // A create whose body is truncated: MarshallingError (-5), the connection stays.
    let mut b = BytesMut::new();
    b.put_i32(8 + 3);
    b.put_i32(1);
    b.put_i32(1);
    b.put_slice(&[0, 0, 9]);
    c.stream.write_all(&b).await.unwrap();
    let r = c.next().await.unwrap();
    assert_eq!((r.header.xid, r.header.err), (1, -5));
    c.xid = 1;
    c.ping().await;
    // A frame too short for a request header: the connection is closed.
    c.stream.write_all(&[0, 0, 0, 2, 1, 2]).await.unwrap();
    assert!(c.closed_by_server().await);
    still_serves(&addr).await;
}

#[tokio::test]
async fn silent_client_is_disconnected_after_the_handshake_timeout() {
    let s = Server::builder()
        .handshake_timeout(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let mut silent = TcpStream::connect(s.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // Half a length prefix, then silence: also closed.
    let mut half = TcpStream::connect(s.addr()).await.unwrap();
    half.write_all(&[0, 0, 0, 45, 0]).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), half.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0);
    still_serves(&s.connect_string()).await;
}

#[tokio::test]
async fn client_that_never_reads_does_not_block_others() {
    let s = Server::start().await.unwrap();
    let addr = s.connect_string();
    let mut hog = RawClient::connect(&addr).await;
    // Pipeline many requests without reading a single reply.
    let p = unique("hog");
    hog.create(&p, &[7u8; 1000], 0).await.unwrap();
    let req = zkit_proto::PathWatchRequest {
        path: p.clone(),
        watch: false,
    };
    let mut batch = BytesMut::new();
    for i in 0..5000 {
        zkit_proto::frame::write_request(&mut batch, 100 + i, 4, Some(&req));
    }
    hog.stream.write_all(&batch).await.unwrap();
    still_serves(&addr).await;
}
