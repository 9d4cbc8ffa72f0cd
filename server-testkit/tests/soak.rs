//! A bounded soak: hundreds of connections, clients that never read, a slow reader and a watch
//! flood all at once, while normal clients must keep making progress and no connection's
//! outbound queue may pass its bound. Progress is counted, never timed, so the test holds on a
//! loaded machine; it ends when the normal clients have done their work.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit_proto::frame::{take_frame, write_request};
use zkit_proto::{AddWatchRequest, OpCode, PathWatchRequest};
use zkit_testkit::Server;

/// Queue bound used by the soak: small, so the bounds are hit early and often.
const LIMIT: usize = 256 * 1024;
/// Size of the node the slow readers fetch.
const BIG: usize = 100_000;
/// Operations each normal client must complete.
const OPS: usize = 300;
/// Normal clients.
const NORMAL: usize = 4;

/// Requests `n` getData of `path` in one write.
fn get_data_batch(path: &str, first_xid: i32, n: i32) -> BytesMut {
    let req = PathWatchRequest {
        path: path.into(),
        watch: false,
    };
    let mut b = BytesMut::new();
    for xid in first_xid..first_xid + n {
        write_request(&mut b, xid, OpCode::GetData.code(), Some(&req));
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_clients_progress_under_hogs_slow_readers_and_a_watch_flood() {
    let s = Arc::new(
        Server::builder()
            .max_queued_bytes(LIMIT)
            .max_client_cnxns(0)
            .start()
            .await
            .unwrap(),
    );
    let addr = s.addr();
    let conn = s.connect_string();
    let root = unique("soak");
    let big = format!("{root}-big");
    let flood = format!("{root}-flood");
    let mut setup = RawClient::connect(&conn).await;
    setup.create(&root, b"", 0).await.unwrap();
    setup.create(&big, &vec![1u8; BIG], 0).await.unwrap();
    setup.create(&flood, b"", 0).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut background = tokio::task::JoinSet::new();

    // Many connections: silent ones and idle sessions.
    let mut idle = Vec::new();
    for i in 0..200 {
        if i % 2 == 0 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        } else {
            idle.push(RawClient::connect(&conn).await.stream);
        }
    }

    // Hogs: pipeline big reads and never read a reply.
    for _ in 0..3 {
        let mut hog = small_window_session(addr).await.0;
        let batch = get_data_batch(&big, 1, 500);
        background.spawn(async move {
            let _ = hog.write_all(&batch).await;
            std::future::pending::<()>().await;
        });
    }

    // A slow reader: keeps requesting, reads a frame now and then.
    let slow_replies = Arc::new(AtomicUsize::new(0));
    {
        let mut slow = small_window_session(addr).await.0;
        let (big, stop, replies) = (big.clone(), stop.clone(), slow_replies.clone());
        background.spawn(async move {
            let (mut rd, mut wr) = slow.split();
            let mut buf = BytesMut::new();
            let mut xid = 1;
            let mut chunk = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                let batch = get_data_batch(&big, xid, 20);
                xid += 20;
                tokio::select! {
                    r = wr.write_all(&batch) => if r.is_err() { return },
                    n = rd.read(&mut chunk) => match n {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    },
                }
                while let Ok(Some(_)) = take_frame(&mut buf, 1 << 20) {
                    replies.fetch_add(1, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
            }
        });
    }

    // Watch flood: watchers that never read, and a writer changing the watched tree.
    let mut watchers = Vec::new();
    for _ in 0..5 {
        let mut w = small_window_session(addr).await.0;
        watchers.push(w.local_addr().unwrap());
        let mut b = BytesMut::new();
        let req = AddWatchRequest {
            path: flood.clone(),
            mode: 1,
        };
        write_request(&mut b, 1, OpCode::AddWatch.code(), Some(&req));
        w.write_all(&b).await.unwrap();
        idle.push(w);
    }
    let flood_writes = Arc::new(AtomicUsize::new(0));
    {
        let (conn, flood, stop, count) = (
            conn.clone(),
            flood.clone(),
            stop.clone(),
            flood_writes.clone(),
        );
        background.spawn(async move {
            let mut c = RawClient::connect(&conn).await;
            let name = "f".repeat(200);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = format!("{flood}/{name}{}", i % 50);
                if c.create(&p, b"x", 0).await.is_err() {
                    c.set_data(&p, b"y", -1).await.unwrap();
                }
                i += 1;
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    // A monitor: no connection's queue ever passes its bound.
    let worst = Arc::new(AtomicUsize::new(0));
    {
        let (s, stop, worst) = (s.clone(), stop.clone(), worst.clone());
        background.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for c in s.connections() {
                    worst.fetch_max(c.peak_queued_bytes, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    // Normal clients: each must finish OPS operations, with the right answers.
    let mut normal = tokio::task::JoinSet::new();
    for n in 0..NORMAL {
        let (conn, root) = (conn.clone(), root.clone());
        normal.spawn(async move {
            let mut c = RawClient::connect(&conn).await;
            let mut done = 0;
            for i in 0..OPS / 3 {
                let p = format!("{root}/n{n}-{i}");
                c.create(&p, b"a", 0).await.unwrap();
                assert_eq!(
                    c.get_data(&p, false).await.unwrap().0.as_deref(),
                    Some(&b"a"[..])
                );
                c.delete(&p, -1).await.unwrap();
                done += 3;
            }
            done
        });
    }
    let mut total = 0;
    while let Some(r) = normal.join_next().await {
        total += r.unwrap();
    }
    assert_eq!(total, NORMAL * OPS, "every normal client finished its work");
    // The flood and the slow reader must get somewhere too: conditions awaited, not durations.
    // (Whether a flooded watcher is cut off depends on how much the kernel buffers for it, so
    // it is reported, not asserted; `backpressure.rs` checks the cut itself.)
    let give_up = tokio::time::Instant::now() + Duration::from_secs(90);
    while flood_writes.load(Ordering::Relaxed) < 3000 || slow_replies.load(Ordering::Relaxed) < 5 {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the flood ({}) or the slow reader ({}) starved",
            flood_writes.load(Ordering::Relaxed),
            slow_replies.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open = s.connections();
    let cut = watchers
        .iter()
        .filter(|w| !open.iter().any(|c| c.remote == **w))
        .count();
    stop.store(true, Ordering::Relaxed);

    // The bounds held for every connection still open, and over the whole run.
    for c in s.connections() {
        worst.fetch_max(c.peak_queued_bytes, Ordering::Relaxed);
    }
    let worst = worst.load(Ordering::Relaxed);
    assert!(
        worst <= 2 * LIMIT + BIG + 1024,
        "a queue reached {worst} bytes (bound {LIMIT})"
    );
    let mut check = RawClient::connect(&conn).await;
    check.ping().await;
    eprintln!(
        "soak: {total} normal ops, {} flood writes ({cut} of {} watchers cut off), \
         {} slow-reader replies, worst queue {worst} B",
        flood_writes.load(Ordering::Relaxed),
        watchers.len(),
        slow_replies.load(Ordering::Relaxed)
    );
    background.abort_all();
    drop(idle);
}
