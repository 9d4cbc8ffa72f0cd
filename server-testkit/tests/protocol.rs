//! Raw-protocol conformance: handshake, CRUD with exact Stats and error codes, watches, multi.

mod common;

use bytes::Bytes;
use common::*;
use zkit_proto::*;

#[tokio::test]
async fn handshake_negotiates_timeout_within_bounds() {
    let (_s, addr) = server().await;
    let (c, resp) = RawClient::connect_with(&addr, 0, Bytes::from_static(&[0; 16]), 1).await;
    assert_eq!(resp.timeout, 4000, "clamped to 2 x tickTime");
    assert_ne!(c.session_id, 0);
    assert_eq!(resp.passwd.len(), 16);
    assert_eq!(resp.read_only, Some(false));
    let (_, resp) =
        RawClient::connect_with(&addr, 0, Bytes::from_static(&[0; 16]), 1_000_000).await;
    assert_eq!(resp.timeout, 40000, "clamped to 20 x tickTime");
}

#[tokio::test]
async fn create_get_set_delete_with_exact_stats() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let p = unique("crud");
    let (path, st) = c.create2(&p, b"hello", 0).await.unwrap();
    assert_eq!(path, p);
    assert_eq!(st.czxid, st.mzxid);
    assert_eq!(st.czxid, st.pzxid);
    assert_eq!((st.version, st.cversion, st.aversion), (0, 0, 0));
    assert_eq!(
        (st.data_length, st.num_children, st.ephemeral_owner),
        (5, 0, 0)
    );
    assert_eq!(st.ctime, st.mtime);

    let (data, st2) = c.get_data(&p, false).await.unwrap();
    assert_eq!(data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(st2, st);

    let st3 = c.set_data(&p, b"bye", 0).await.unwrap();
    assert_eq!(st3.version, 1);
    assert!(st3.mzxid > st.mzxid);
    assert_eq!(st3.czxid, st.czxid);
    assert_eq!(st3.data_length, 3);
    assert_eq!(c.set_data(&p, b"x", 0).await, Err(-103), "BadVersion");

    // Children change cversion and pzxid of the parent, as seen by clients.
    let child = format!("{p}/c");
    let (_, cst) = c.create2(&child, b"", 0).await.unwrap();
    let pst = c.exists(&p, false).await.unwrap();
    assert_eq!(
        (pst.cversion, pst.num_children, pst.pzxid),
        (1, 1, cst.czxid)
    );
    assert_eq!(c.delete(&p, -1).await, Err(-111), "NotEmpty");
    c.delete(&child, -1).await.unwrap();
    let pst = c.exists(&p, false).await.unwrap();
    assert_eq!((pst.cversion, pst.num_children), (2, 0));
    assert!(pst.pzxid > cst.czxid);

    assert_eq!(c.delete(&p, 5).await, Err(-103));
    c.delete(&p, 1).await.unwrap();
    assert_eq!(c.get_data(&p, false).await, Err(-101));
    assert_eq!(c.exists(&p, false).await, Err(-101));
}

#[tokio::test]
async fn create_errors_match_zookeeper() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let p = unique("errs");
    assert_eq!(c.create(&format!("{p}/x"), b"", 0).await, Err(-101));
    c.create(&p, b"", 0).await.unwrap();
    assert_eq!(c.create(&p, b"", 0).await, Err(-110));
    assert_eq!(c.create(&format!("{p}/"), b"", 0).await, Err(-8));
    assert_eq!(c.create("noslash", b"", 0).await, Err(-8));
    assert_eq!(c.create(&format!("{p}/y"), b"", 9).await, Err(-8));
    // TTL without extended types: Unimplemented.
    assert_eq!(c.create(&format!("{p}/t"), b"", 5).await, Err(-6));
    let e = format!("{p}/eph");
    c.create(&e, b"", 1).await.unwrap();
    assert_eq!(c.create(&format!("{e}/child"), b"", 0).await, Err(-108));
    assert_eq!(c.delete("/zookeeper", -1).await, Err(-8));
    // The config node is read-only for everyone.
    assert_eq!(c.set_data("/zookeeper/config", b"x", -1).await, Err(-102));
}

#[tokio::test]
async fn sequential_names_count_creates_only() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let p = unique("seq");
    c.create(&p, b"", 0).await.unwrap();
    let a = c.create(&format!("{p}/x-"), b"", 2).await.unwrap();
    assert_eq!(a, format!("{p}/x-0000000000"));
    c.delete(&a, -1).await.unwrap();
    let b = c.create(&format!("{p}/x-"), b"", 3).await.unwrap();
    assert_eq!(b, format!("{p}/x-0000000001"));
    let st = c.exists(&p, false).await.unwrap();
    assert_eq!(st.cversion, 3, "2 creates + 1 delete as clients see it");
}

#[tokio::test]
async fn watches_fire_before_the_reply_that_caused_them() {
    let (_s, addr) = server().await;
    let mut w = RawClient::connect(&addr).await;
    let mut c = RawClient::connect(&addr).await;
    let p = unique("watch");
    assert_eq!(w.exists(&p, true).await, Err(-101));
    // A watch on our own change: the event precedes the reply on the same connection.
    c.create(&p, b"", 0).await.unwrap();
    let ev = w.event().await;
    assert_eq!(
        (ev.event_type, ev.state, ev.path.as_str()),
        (1, 3, p.as_str())
    );

    c.get_data(&p, true).await.unwrap();
    let req = SetDataRequest {
        path: p.clone(),
        data: Some(Bytes::from_static(b"v")),
        version: -1,
    };
    let xid = c.send(OpCode::SetData, Some(&req)).await;
    let first = c.next().await.unwrap();
    assert_eq!(first.header.xid, -1, "notification first");
    assert_eq!(
        first.header.zxid, -1,
        "3.8 sends notifications with zxid -1"
    );
    assert_eq!(first.event().event_type, EventType::NodeDataChanged.code());
    let reply = c.next().await.unwrap();
    assert_eq!(reply.header.xid, xid);

    // Child watch and delete: NodeDeleted once to a client with both data and child watches.
    w.children(&p, true).await.unwrap();
    w.get_data(&p, true).await.unwrap();
    c.delete(&p, -1).await.unwrap();
    let ev = w.event().await;
    assert_eq!(ev.event_type, EventType::NodeDeleted.code());
    w.ping().await;
    assert!(w.events.is_empty(), "only one event: {:?}", w.events);
}

#[tokio::test]
async fn multi_abort_reports_per_op_results() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let p = unique("multi");
    let m = MultiRequest {
        ops: vec![
            MultiOp::Create {
                op: OpCode::Create,
                req: CreateRequest {
                    path: p.clone(),
                    data: None,
                    acl: open_acl(),
                    flags: 0,
                },
            },
            MultiOp::Check(CheckVersionRequest {
                path: p.clone(),
                version: 5,
            }),
            MultiOp::Delete(DeleteRequest {
                path: p.clone(),
                version: -1,
            }),
        ],
    };
    let r = c.call(OpCode::Multi, Some(&m)).await;
    assert_eq!(r.header.err, 0);
    let resp: MultiResponse = r.decode();
    assert_eq!(
        resp.results,
        vec![
            MultiResult::Error(0),
            MultiResult::Error(-103),
            MultiResult::Error(-2)
        ]
    );
    assert_eq!(c.exists(&p, false).await, Err(-101), "rolled back");

    // A successful multi: later ops see earlier ones.
    let m = MultiRequest {
        ops: vec![
            MultiOp::Create {
                op: OpCode::Create2,
                req: CreateRequest {
                    path: p.clone(),
                    data: None,
                    acl: open_acl(),
                    flags: 0,
                },
            },
            MultiOp::SetData(SetDataRequest {
                path: p.clone(),
                data: Some(Bytes::from_static(b"d")),
                version: 0,
            }),
            MultiOp::Check(CheckVersionRequest {
                path: p.clone(),
                version: 1,
            }),
        ],
    };
    let r = c.call(OpCode::Multi, Some(&m)).await;
    let resp: MultiResponse = r.decode();
    match &resp.results[..] {
        // A 3.8 server answers create2 inside a multi with a plain create result.
        [MultiResult::Create(path), MultiResult::SetData(st), MultiResult::Check] => {
            assert_eq!(path, &p);
            assert_eq!(st.version, 1);
            assert_eq!(st.czxid, st.mzxid, "one zxid for the whole multi");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn acl_digest_auth_and_whoami() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let p = unique("acl");
    let auth_acl = vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "auth".into(),
            id: String::new(),
        },
    }];
    let req = CreateRequest {
        path: p.clone(),
        data: None,
        acl: auth_acl.clone(),
        flags: 0,
    };
    let r = c.call(OpCode::Create, Some(&req)).await;
    assert_eq!(
        r.header.err, -114,
        "auth ACL without credentials is InvalidACL"
    );
    let pkt = AuthPacket {
        auth_type: 0,
        scheme: "digest".into(),
        auth: Bytes::from_static(b"user:pass"),
    };
    c.send_xid(-4, OpCode::Auth, Some(&pkt)).await;
    assert_eq!(c.wait(-4).await.header.err, 0);
    let r = c.call(OpCode::Create, Some(&req)).await;
    assert_eq!(r.header.err, 0);
    let r = c
        .call(OpCode::GetAcl, Some(&PathRequest { path: p.clone() }))
        .await;
    let acl: GetAclResponse = r.decode();
    assert_eq!(acl.acl[0].id.scheme, "digest");
    assert_eq!(acl.acl[0].id.id, "user:smGaoVKd/cQkjm7b88GyorAUz20=");

    let r = c.call(OpCode::WhoAmI, None).await;
    let who: WhoAmIResponse = r.decode();
    let schemes: Vec<_> = who
        .client_info
        .iter()
        .map(|i| (i.auth_scheme.as_str(), i.user.as_str()))
        .collect();
    assert_eq!(schemes, vec![("ip", "127.0.0.1"), ("digest", "user")]);

    let mut other = RawClient::connect(&addr).await;
    assert_eq!(other.get_data(&p, false).await, Err(-102));
    assert_eq!(other.set_data(&p, b"", -1).await, Err(-102));
    // exists has no ACL check on a 3.8 server.
    assert!(other.exists(&p, false).await.is_ok());
}
