//! Per-connection backpressure: a client that never reads its replies, or lets its watch
//! notifications pile up, costs the server a bounded amount of memory while everyone else is
//! served as usual.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zkit_proto::frame::{take_frame, write_request};
use zkit_proto::{AddWatchRequest, OpCode, PathWatchRequest};
use zkit_testkit::{ConnectionSummary, Server};

/// The server's view of the connection whose client end is `local`.
fn conn_of(s: &Server, local: SocketAddr) -> Option<ConnectionSummary> {
    s.connections().into_iter().find(|c| c.remote == local)
}

/// Polls `cond` until it holds (no fixed wait: each round yields to the server).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < give_up, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_big_replies_costs_bounded_memory() {
    const N: i32 = 1000;
    const DATA: usize = 1_000_000;
    let s = Server::start().await.unwrap();
    let limit = s.max_queued_bytes();
    let addr = s.addr();
    let mut worker = RawClient::connect(&s.connect_string()).await;
    let big = unique("big");
    worker.create(&big, &vec![7u8; DATA], 0).await.unwrap();

    let (mut hog, _) = small_window_session(addr).await;
    let local = hog.local_addr().unwrap();
    let req = PathWatchRequest {
        path: big.clone(),
        watch: false,
    };
    let mut batch = BytesMut::new();
    for xid in 1..=N {
        write_request(&mut batch, xid, OpCode::GetData.code(), Some(&req));
    }
    // The server stops reading, so the write may never finish: it runs beside the test.
    let (mut hog_rd, mut hog_wr) = hog.split();
    let send = async move {
        let _ = hog_wr.write_all(&batch).await;
        std::future::pending::<()>().await
    };
    let check = async {
        until("the hog's queue reaches its bound", || {
            conn_of(&s, local).is_some_and(|c| c.queued_bytes >= limit)
        })
        .await;
        // Everyone else is served while the hog's queue is full.
        for i in 0..50 {
            let p = format!("{big}-{i}");
            worker.create(&p, b"v", 0).await.unwrap();
            assert_eq!(
                worker.get_data(&p, false).await.unwrap().0.as_deref(),
                Some(&b"v"[..])
            );
        }
        let c = conn_of(&s, local).expect("hog still connected");
        // Bounded: the limit plus the replies to one request.
        assert!(
            c.peak_queued_bytes <= limit + DATA + 1024,
            "peak {} over the bound {limit} + one reply",
            c.peak_queued_bytes
        );
        assert!(
            c.queued_frames < N as usize,
            "the server stopped taking requests"
        );
        // Reading drains the queue and the server takes requests again.
        let mut buf = BytesMut::new();
        let mut replies = 0;
        while replies < 3 * (limit / DATA + 1) {
            while let Some(f) = take_frame(&mut buf, 2 << 20).unwrap() {
                assert_eq!(f.len(), 16 + 4 + DATA + 68, "a whole getData reply");
                replies += 1;
            }
            assert!(hog_rd.read_buf(&mut buf).await.unwrap() > 0);
        }
        let c = conn_of(&s, local).expect("hog still connected");
        assert!(c.peak_queued_bytes <= limit + DATA + 1024);
    };
    tokio::select! {
        _ = send => unreachable!(),
        _ = check => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_notifications_past_twice_the_bound_close_the_connection_not_the_session() {
    let limit = 16 * 1024;
    let s = Server::builder()
        .max_queued_bytes(limit)
        .start()
        .await
        .unwrap();
    let mut writer = RawClient::connect(&s.connect_string()).await;
    // Long paths make each notification large, so the kernel buffers fill quickly.
    let node = format!("{}-{}", unique("flood"), "n".repeat(900));
    writer.create(&node, b"0", 0).await.unwrap();

    let (mut slow, session) = small_window_session(s.addr()).await;
    let local = slow.local_addr().unwrap();
    let mut b = BytesMut::new();
    let watch = AddWatchRequest {
        path: node.clone(),
        mode: 0,
    };
    write_request(&mut b, 1, OpCode::AddWatch.code(), Some(&watch));
    slow.write_all(&b).await.unwrap();
    until("the persistent watch is registered", || {
        s.watches().iter().any(|w| w.session == Some(session))
    })
    .await;
    // Writes go on until the slow connection is dropped; the writer is never held back.
    let mut writes = 0u32;
    while let Some(c) = conn_of(&s, local) {
        assert!(
            c.peak_queued_bytes <= 2 * limit,
            "peak {}",
            c.peak_queued_bytes
        );
        writer.set_data(&node, b"x", -1).await.unwrap();
        writes += 1;
        assert!(writes < 200_000, "the slow connection was never closed");
    }
    assert!(
        s.sessions().iter().any(|x| x.id == session),
        "the session survives its connection"
    );
    writer.ping().await;
}
