//! ZooKeeper's answers to bad input, checked against the testkit and, with `ZKIT_TEST_SERVER`
//! set, a real 3.8 server: invalid UTF-8 in paths and ACL ids, null or malformed credentials,
//! IPv6 `ip` ACLs, unknown opcodes.

mod common;

use bytes::{BufMut, BytesMut};
use common::*;
use tokio::io::AsyncWriteExt;
use zkit_proto::*;

/// A request body written byte by byte (to carry what a typed record cannot: invalid UTF-8,
/// null strings).
#[derive(Default)]
struct Raw(BytesMut);

impl Raw {
    fn string(mut self, s: &[u8]) -> Self {
        self.0.put_i32(s.len() as i32);
        self.0.put_slice(s);
        self
    }
    fn null(mut self) -> Self {
        self.0.put_i32(-1);
        self
    }
    fn int(mut self, v: i32) -> Self {
        self.0.put_i32(v);
        self
    }
    fn bool(mut self, v: bool) -> Self {
        self.0.put_u8(v as u8);
        self
    }
    /// A one-entry ACL list with this id.
    fn acl(self, scheme: &[u8], id: &[u8]) -> Self {
        self.int(1).int(perms::ALL).string(scheme).string(id)
    }
}

/// Sends `body` as opcode `op` with `xid` and returns the reply header's err, or None when
/// the server closed the connection instead of answering.
async fn raw_call(c: &mut RawClient, xid: i32, op: i32, body: &Raw) -> Option<i32> {
    let mut b = BytesMut::new();
    b.put_i32(8 + body.0.len() as i32);
    b.put_i32(xid);
    b.put_i32(op);
    b.put_slice(&body.0);
    c.stream.write_all(&b).await.ok()?;
    loop {
        let r = c.next().await?;
        if r.header.xid == xid {
            return Some(r.header.err);
        }
    }
}

/// Whether the server closes the connection: EOF (or a reset) within the timeout, after any
/// frames still in flight. A connection that stays open is not closed.
async fn closed(c: &mut RawClient) -> bool {
    use tokio::io::AsyncReadExt;
    loop {
        match tokio::time::timeout(TIMEOUT, c.stream.read_buf(&mut c.buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => c.buf.clear(),
        }
    }
}

/// `/` followed by an invalid UTF-8 sequence.
const BAD_PATH: &[u8] = b"/bad-\xff\xfe";

#[tokio::test]
async fn invalid_utf8_in_a_path_is_bad_arguments_for_writes_and_no_node_for_reads() {
    // ZooKeeper decodes strings the Java way: an invalid sequence becomes U+FFFD, which path
    // validation refuses (BadArguments) and no node can have (NoNode).
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let open = |r: Raw| r.acl(b"world", b"anyone");
    let cases: Vec<(&str, i32, Raw, i32)> = vec![
        (
            "create",
            1,
            open(Raw::default().string(BAD_PATH).null()).int(0),
            -8,
        ),
        (
            "create2",
            15,
            open(Raw::default().string(BAD_PATH).null()).int(0),
            -8,
        ),
        // delete looks the node up before it validates the path.
        ("delete", 2, Raw::default().string(BAD_PATH).int(-1), -101),
        (
            "setData",
            5,
            Raw::default().string(BAD_PATH).null().int(-1),
            -8,
        ),
        (
            "exists",
            3,
            Raw::default().string(BAD_PATH).bool(false),
            -101,
        ),
        (
            "getData",
            4,
            Raw::default().string(BAD_PATH).bool(false),
            -101,
        ),
        (
            "getChildren2",
            12,
            Raw::default().string(BAD_PATH).bool(false),
            -101,
        ),
        ("getACL", 6, Raw::default().string(BAD_PATH), -101),
        (
            "setACL",
            7,
            open(Raw::default().string(BAD_PATH)).int(-1),
            -8,
        ),
    ];
    let mut got = Vec::new();
    for (i, (name, op, body, _)) in cases.iter().enumerate() {
        got.push((*name, raw_call(&mut c, 100 + i as i32, *op, body).await));
    }
    let want: Vec<_> = cases.iter().map(|(n, _, _, e)| (*n, Some(*e))).collect();
    assert_eq!(got, want);
    c.ping().await;
}

#[tokio::test]
async fn invalid_utf8_in_an_acl_id_is_kept_or_refused_by_its_scheme() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let p = unique("badacl");
    let body = Raw::default()
        .string(p.as_bytes())
        .null()
        .acl(b"digest", b"u\xff:x")
        .int(0);
    let digest = raw_call(&mut c, 1, 1, &body).await;
    let body = Raw::default()
        .string(p.as_bytes())
        .null()
        .acl(b"world", b"any\xffone")
        .int(0);
    let world = raw_call(&mut c, 2, 1, &body).await;
    // A digest id only needs the `user:hash` shape (its U+FFFD is kept); `world` must be
    // `anyone`.
    assert_eq!((digest, world), (Some(0), Some(-114)));
}

#[tokio::test]
async fn ipv6_ip_acl_is_invalid_acl() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let req = CreateRequest {
        path: unique("ip6"),
        data: None,
        acl: vec![Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "ip".into(),
                id: "::1".into(),
            },
        }],
        flags: 0,
    };
    assert_eq!(c.call(OpCode::Create, Some(&req)).await.header.err, -114);
}

/// An auth packet whose scheme and credential are written raw; returns the reply's err (None:
/// closed without a reply) and whether the server then closed the connection.
async fn auth(addr: &str, scheme: Option<&[u8]>, cred: Option<&[u8]>) -> (Option<i32>, bool) {
    let mut c = RawClient::connect(addr).await;
    let mut body = Raw::default().int(0);
    body = match scheme {
        Some(s) => body.string(s),
        None => body.null(),
    };
    body = match cred {
        Some(s) => body.string(s),
        None => body.null(),
    };
    let err = raw_call(&mut c, -4, 100, &body).await;
    let closed = err.is_none() || closed(&mut c).await;
    (err, closed)
}

#[tokio::test]
async fn bad_credentials_get_auth_failed_then_close() {
    let (_s, addr) = server().await;
    assert_eq!(
        auth(&addr, Some(b"digest"), None).await,
        (Some(-115), true),
        "null digest credential"
    );
    assert_eq!(
        auth(&addr, None, Some(b"u:p")).await,
        (Some(-115), true),
        "null scheme"
    );
    assert_eq!(
        auth(&addr, Some(b"dig\xffest"), Some(b"u:p")).await,
        (Some(-115), true),
        "non-UTF-8 scheme"
    );
}

#[tokio::test]
async fn unknown_opcode_closes_the_connection() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let err = raw_call(&mut c, 1, 9999, &Raw::default()).await;
    assert_eq!(
        err,
        Some(-6),
        "Unimplemented, then the connection is closed"
    );
    assert!(closed(&mut c).await);
    let mut d = RawClient::connect(&addr).await;
    d.ping().await;
}
