//! Startup and pipelined throughput of the testkit, optionally compared with a real server.
//!
//! `cargo bench -p zkit-testkit --bench compare [-- REAL_HOST:PORT]`
//!
//! Startup: `Server::start()` to the first answered request (handshake + ping). Throughput: 8
//! connections, each pipelining requests in batches of 64, doing creates, then setData, then getData.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit_proto::frame::{take_frame, write_record, write_request};
use zkit_proto::*;

const CLIENTS: usize = 8;
const OPS: usize = 5_000;
const WINDOW: usize = 64;

async fn connect(addr: &str) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut b = BytesMut::new();
    write_record(
        &mut b,
        &ConnectRequest {
            timeout: 30000,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
            ..Default::default()
        },
    );
    s.write_all(&b).await.unwrap();
    let mut rbuf = BytesMut::new();
    read_frame(&mut s, &mut rbuf).await;
    (s, rbuf)
}

async fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> Bytes {
    loop {
        if let Some(f) = take_frame(buf, 1 << 24).unwrap() {
            return f;
        }
        assert!(s.read_buf(buf).await.unwrap() > 0, "server closed");
    }
}

async fn startup() -> Duration {
    let t = Instant::now();
    let server = zkit_testkit::Server::start().await.unwrap();
    let (mut s, mut rbuf) = connect(&server.connect_string()).await;
    let mut b = BytesMut::new();
    write_request(&mut b, -2, OpCode::Ping.code(), None);
    s.write_all(&b).await.unwrap();
    read_frame(&mut s, &mut rbuf).await;
    t.elapsed()
}

/// One client: `OPS` requests of kind `op` on its own subtree, `WINDOW` in flight.
async fn client(addr: String, prefix: String, op: OpCode) {
    let (s, mut rbuf) = connect(&addr).await;
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        let mut b = BytesMut::new();
        while sent < OPS {
            // Requests go out in batches of WINDOW; TCP backpressure bounds what is in flight.
            for _ in 0..WINDOW.min(OPS - sent) {
                let path = format!("{prefix}/n{sent}");
                let xid = sent as i32 + 1;
                match op {
                    OpCode::Create => write_request(
                        &mut b,
                        xid,
                        op.code(),
                        Some(&CreateRequest {
                            path,
                            data: Some(Bytes::from_static(b"value")),
                            acl: vec![Acl {
                                perms: perms::ALL,
                                id: Id {
                                    scheme: "world".into(),
                                    id: "anyone".into(),
                                },
                            }],
                            flags: 0,
                        }),
                    ),
                    OpCode::SetData => write_request(
                        &mut b,
                        xid,
                        op.code(),
                        Some(&SetDataRequest {
                            path,
                            data: Some(Bytes::from_static(b"other")),
                            version: -1,
                        }),
                    ),
                    _ => write_request(
                        &mut b,
                        xid,
                        op.code(),
                        Some(&PathWatchRequest { path, watch: false }),
                    ),
                }
                sent += 1;
            }
            wr.write_all(&b).await.unwrap();
            b.clear();
            tokio::task::yield_now().await;
        }
        wr
    });
    for _ in 0..OPS {
        let f = read_frame_half(&mut rd, &mut rbuf).await;
        let h = ReplyHeader::from_bytes(f).unwrap();
        assert_eq!(h.err, 0, "{op:?} failed: {h:?}");
    }
    let _ = writer.await;
}

async fn read_frame_half(s: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut BytesMut) -> Bytes {
    loop {
        if let Some(f) = take_frame(buf, 1 << 24).unwrap() {
            return f;
        }
        assert!(s.read_buf(buf).await.unwrap() > 0, "server closed");
    }
}

async fn throughput(addr: &str, label: &str) -> Vec<(OpCode, f64)> {
    let run = format!(
        "/bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let (mut s, mut rbuf) = connect(addr).await;
    let mk = |xid: i32, path: String| {
        let mut b = BytesMut::new();
        write_request(
            &mut b,
            xid,
            OpCode::Create.code(),
            Some(&CreateRequest {
                path,
                data: None,
                acl: vec![Acl {
                    perms: perms::ALL,
                    id: Id {
                        scheme: "world".into(),
                        id: "anyone".into(),
                    },
                }],
                flags: 0,
            }),
        );
        b
    };
    s.write_all(&mk(1, run.clone())).await.unwrap();
    read_frame(&mut s, &mut rbuf).await;
    for c in 0..CLIENTS {
        s.write_all(&mk(2 + c as i32, format!("{run}/c{c}")))
            .await
            .unwrap();
        read_frame(&mut s, &mut rbuf).await;
    }
    let mut out = Vec::new();
    for op in [OpCode::Create, OpCode::SetData, OpCode::GetData] {
        let t = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(client(addr.to_owned(), format!("{run}/c{c}"), op)))
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let rate = (CLIENTS * OPS) as f64 / t.elapsed().as_secs_f64();
        println!("{label:>8} {op:?}: {rate:>10.0} ops/s");
        out.push((op, rate));
    }
    out
}

#[tokio::main]
async fn main() {
    let given = std::env::args().skip(1).find(|a| a.contains(':'));
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..50 {
        times.push(startup().await);
    }
    times.sort();
    let ours_startup = times[times.len() / 2];
    println!(
        "testkit startup to first served request: min {:?}, median {:?}, max {:?}",
        times[0],
        ours_startup,
        times[times.len() - 1]
    );
    // Without an address, start a real Apache ZooKeeper (scripts/zookeeper.sh) and time it from
    // launch to its first served request, the same measure as the testkit's.
    let mut started = None;
    let real = match given {
        Some(r) => Some(r),
        None => real_server().map(|(dir, addr, took)| {
            println!(
                "real ZooKeeper startup (JVM launch to first served request): {took:?}; \
                 ratio real/testkit {:.0}x",
                took.as_secs_f64() / ours_startup.as_secs_f64()
            );
            started = Some(dir);
            addr
        }),
    };
    let server = zkit_testkit::Server::start().await.unwrap();
    let ours = throughput(&server.connect_string(), "testkit").await;
    if let Some(real) = real {
        let theirs = throughput(&real, "real").await;
        for ((op, a), (_, b)) in ours.iter().zip(theirs.iter()) {
            println!("ratio testkit/real {op:?}: {:.2}", a / b);
        }
    }
    if let Some(dir) = started {
        let _ = std::process::Command::new(script())
            .arg("stop")
            .arg(&dir)
            .output();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/zookeeper.sh").to_owned()
}

/// Starts a real standalone server; returns its dir, address and launch-to-served time.
fn real_server() -> Option<(std::path::PathBuf, String, Duration)> {
    let dir = std::env::temp_dir().join(format!("zkit-compare-{}", std::process::id()));
    let t = Instant::now();
    let out = std::process::Command::new(script())
        .arg("start-standalone")
        .arg(&dir)
        .env("ZK_LOG_LEVEL", "WARN")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("no real server: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let addr = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // First served request: a session handshake.
    let rt = tokio::runtime::Handle::current();
    let _ = tokio::task::block_in_place(|| rt.block_on(connect(&addr)));
    Some((dir, addr, t.elapsed()))
}
