//! A raw-protocol client over a tokio `TcpStream`, built on `zkit_proto` records: what the
//! differential checker and the protocol tests speak. Test support: it panics when the server
//! misbehaves (a closed connection, an undecodable frame), which is the failure a test or
//! `zkit-diff` reports.
#![allow(missing_docs, clippy::missing_panics_doc)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit_proto::frame::{take_frame, write_record, write_request};
use zkit_proto::*;

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
