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
use zkit_proto::frame::{take_frame, write_record, write_request};
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

/// A reply or a notification.
#[derive(Debug, Clone)]
pub struct Reply {
    pub header: ReplyHeader,
    pub body: Bytes,
}

impl Reply {
    pub fn decode<R: Record>(&self) -> R {
        R::from_bytes(self.body.clone()).expect("decodes")
    }
    pub fn event(&self) -> WatcherEvent {
        assert_eq!(self.header.xid, -1, "not a notification: {:?}", self.header);
        self.decode()
    }
}

pub struct RawClient {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub xid: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    pub timeout: i32,
    /// Notifications read while waiting for a reply.
    pub events: Vec<WatcherEvent>,
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

impl RawClient {
    pub async fn connect(addr: &str) -> RawClient {
        Self::connect_with(addr, 0, Bytes::from_static(&[0; 16]), 30000)
            .await
            .0
    }

    /// Handshake with an explicit session id/password; returns the ConnectResponse too.
    pub async fn connect_with(
        addr: &str,
        session_id: i64,
        passwd: Bytes,
        timeout: i32,
    ) -> (RawClient, ConnectResponse) {
        let stream = TcpStream::connect(addr).await.expect("connects");
        let mut c = RawClient {
            stream,
            buf: BytesMut::new(),
            xid: 0,
            session_id: 0,
            passwd: Bytes::new(),
            timeout: 0,
            events: vec![],
        };
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout,
            session_id,
            passwd,
            read_only: Some(false),
        };
        let mut b = BytesMut::new();
        write_record(&mut b, &req);
        c.stream.write_all(&b).await.unwrap();
        let frame = c.read_frame().await.expect("connect response");
        let resp = ConnectResponse::from_bytes(frame).expect("decodes");
        c.session_id = resp.session_id;
        c.passwd = resp.passwd.clone();
        c.timeout = resp.timeout;
        (c, resp)
    }

    /// Reads one frame; None on EOF.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(f) = take_frame(&mut self.buf, 16 << 20).expect("valid frame") {
                return Some(f);
            }
            let n = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("server answers in time")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads the next reply or notification.
    pub async fn next(&mut self) -> Option<Reply> {
        let f = self.read_frame().await?;
        let mut r = Reader::new(f);
        let header = ReplyHeader::decode(&mut r).expect("reply header");
        Some(Reply {
            header,
            body: r.into_rest(),
        })
    }

    /// Sends a request without waiting; returns its xid.
    pub async fn send(&mut self, op: OpCode, body: Option<&dyn frame::Encodable>) -> i32 {
        self.xid += 1;
        let xid = self.xid;
        self.send_xid(xid, op, body).await;
        xid
    }

    pub async fn send_xid(&mut self, xid: i32, op: OpCode, body: Option<&dyn frame::Encodable>) {
        let mut b = BytesMut::new();
        write_request(&mut b, xid, op.code(), body);
        self.stream.write_all(&b).await.unwrap();
    }

    /// Sends a request and waits for its reply, collecting notifications on the way.
    pub async fn call(&mut self, op: OpCode, body: Option<&dyn frame::Encodable>) -> Reply {
        let xid = self.send(op, body).await;
        self.wait(xid).await
    }

    pub async fn wait(&mut self, xid: i32) -> Reply {
        loop {
            let r = self.next().await.expect("connection open");
            if r.header.xid == -1 {
                self.events.push(r.event());
                continue;
            }
            assert_eq!(r.header.xid, xid, "replies in order");
            return r;
        }
    }

    /// Waits for the next notification (or one already collected).
    pub async fn event(&mut self) -> WatcherEvent {
        if !self.events.is_empty() {
            return self.events.remove(0);
        }
        let r = self.next().await.expect("connection open");
        r.event()
    }

    pub async fn create(&mut self, path: &str, data: &[u8], flags: i32) -> Result<String, i32> {
        let req = CreateRequest {
            path: path.into(),
            data: Some(Bytes::copy_from_slice(data)),
            acl: open_acl(),
            flags,
        };
        let r = self.call(OpCode::Create, Some(&req)).await;
        if r.header.err != 0 {
            return Err(r.header.err);
        }
        Ok(r.decode::<PathResponse>().path)
    }

    pub async fn create2(
        &mut self,
        path: &str,
        data: &[u8],
        flags: i32,
    ) -> Result<(String, Stat), i32> {
        let req = CreateRequest {
            path: path.into(),
            data: Some(Bytes::copy_from_slice(data)),
            acl: open_acl(),
            flags,
        };
        let r = self.call(OpCode::Create2, Some(&req)).await;
        if r.header.err != 0 {
            return Err(r.header.err);
        }
        let c: Create2Response = r.decode();
        Ok((c.path, c.stat))
    }

    pub async fn get_data(
        &mut self,
        path: &str,
        watch: bool,
    ) -> Result<(Option<Bytes>, Stat), i32> {
        let req = PathWatchRequest {
            path: path.into(),
            watch,
        };
        let r = self.call(OpCode::GetData, Some(&req)).await;
        if r.header.err != 0 {
            return Err(r.header.err);
        }
        let g: GetDataResponse = r.decode();
        Ok((g.data, g.stat))
    }

    pub async fn exists(&mut self, path: &str, watch: bool) -> Result<Stat, i32> {
        let req = PathWatchRequest {
            path: path.into(),
            watch,
        };
        let r = self.call(OpCode::Exists, Some(&req)).await;
        if r.header.err != 0 {
            return Err(r.header.err);
        }
        Ok(r.decode::<StatResponse>().stat)
    }

    pub async fn set_data(&mut self, path: &str, data: &[u8], version: i32) -> Result<Stat, i32> {
        let req = SetDataRequest {
            path: path.into(),
            data: Some(Bytes::copy_from_slice(data)),
            version,
        };
        let r = self.call(OpCode::SetData, Some(&req)).await;
        if r.header.err != 0 {
            return Err(r.header.err);
        }
        Ok(r.decode::<StatResponse>().stat)
    }

    pub async fn delete(&mut self, path: &str, version: i32) -> Result<(), i32> {
        let req = DeleteRequest {
            path: path.into(),
            version,
        };
        let r = self.call(OpCode::Delete, Some(&req)).await;
        if r.header.err != 0 {
            return Err(r.header.err);
        }
        Ok(())
    }

    pub async fn children(&mut self, path: &str, watch: bool) -> Result<Vec<String>, i32> {
        let req = PathWatchRequest {
            path: path.into(),
            watch,
        };
        let r = self.call(OpCode::GetChildren, Some(&req)).await;
        if r.header.err != 0 {
            return Err(r.header.err);
        }
        Ok(r.decode::<GetChildrenResponse>().children)
    }

    pub async fn ping(&mut self) -> ReplyHeader {
        self.send_xid(-2, OpCode::Ping, None).await;
        self.wait(-2).await.header
    }

    pub async fn close_session(&mut self) -> ReplyHeader {
        self.call(OpCode::CloseSession, None).await.header
    }

    /// Whether the server closed the connection (EOF) within the timeout.
    pub async fn closed_by_server(&mut self) -> bool {
        loop {
            match self.read_frame_raw().await {
                None => return true,
                Some(_) => continue,
            }
        }
    }

    async fn read_frame_raw(&mut self) -> Option<()> {
        let n = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            None
        } else {
            Some(())
        }
    }
}

/// `world:anyone` with every permission.
pub fn open_acl() -> Vec<Acl> {
    Acl::open_unsafe()
}

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
