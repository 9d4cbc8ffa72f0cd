//! Finer conformance points, each checked against a real 3.8 server. TTL tests need extended
//! types: set `ZKIT_TEST_SERVER_EXTENDED=host:port` to a real server started with
//! `-Dzookeeper.extendedTypesEnabled=true -Dznode.container.checkIntervalMs=100`. With
//! `ZKIT_TEST_TARGET=ensemble` they run on a follower of an in-process ensemble with extended
//! types (the real ensemble of `ZK_TEST_ENSEMBLE` is not started with them).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use zkit_proto::*;
use zkit_testkit::{Ensemble, Server};

async fn extended_server() -> (Option<Running>, String) {
    if on_ensemble() {
        let s = Ensemble::builder()
            .extended_types(true)
            .start()
            .await
            .unwrap();
        let leader = s.wait_for_leader().await.unwrap();
        let a = s.server((leader + 1) % s.len()).connect_string();
        return (Some(Running::Ensemble(s)), a);
    }
    match std::env::var("ZKIT_TEST_SERVER_EXTENDED") {
        Ok(a) if !a.is_empty() => (None, a),
        _ => {
            let s = Server::builder()
                .extended_types(true)
                .reap_interval(Duration::from_millis(100))
                .start()
                .await
                .unwrap();
            let a = s.connect_string();
            (Some(Running::Server(s)), a)
        }
    }
}

fn ttl_req(path: String, flags: i32, ttl: i64) -> CreateTtlRequest {
    CreateTtlRequest {
        path,
        data: None,
        acl: open_acl(),
        flags,
        ttl,
    }
}

#[tokio::test]
async fn ttl_and_container_validation() {
    let (_s, addr) = extended_server().await;
    let mut c = RawClient::connect(&addr).await;
    let p = unique("ttlv");
    c.create(&p, b"", 0).await.unwrap();
    let r = c
        .call(
            OpCode::CreateTtl,
            Some(&ttl_req(format!("{p}/t"), 5, 100_000)),
        )
        .await;
    assert_eq!(r.header.err, 0);
    assert_eq!(r.decode::<Create2Response>().stat.ephemeral_owner, 0);
    for (flags, ttl) in [
        (5, 0),
        (5, -1),
        (0, 100),
        (6, 1i64 << 41),
        (1, 100),
        (4, 100),
    ] {
        let r = c
            .call(
                OpCode::CreateTtl,
                Some(&ttl_req(format!("{p}/x{flags}"), flags, ttl)),
            )
            .await;
        assert_eq!(r.header.err, -8, "flags {flags} ttl {ttl}");
    }
    // TTL flags without a TTL (plain create2): BadArguments.
    let req = CreateRequest {
        path: format!("{p}/y"),
        data: None,
        acl: open_acl(),
        flags: 5,
    };
    assert_eq!(c.call(OpCode::Create2, Some(&req)).await.header.err, -8);
    // createContainer ignores the flags for the node type.
    for flags in [0, 1] {
        let req = CreateRequest {
            path: format!("{p}/c{flags}"),
            data: None,
            acl: open_acl(),
            flags,
        };
        assert_eq!(
            c.call(OpCode::CreateContainer, Some(&req)).await.header.err,
            0
        );
    }
    // createTTL inside a multi answers with a create2 result.
    let m = MultiRequest {
        ops: vec![MultiOp::CreateTtl(ttl_req(format!("{p}/mt"), 5, 1000))],
    };
    let r = c.call(OpCode::Multi, Some(&m)).await;
    assert!(matches!(
        &r.decode::<MultiResponse>().results[..],
        [MultiResult::Create2(_)]
    ));
}

#[tokio::test]
async fn containers_and_ttls_are_reaped_with_a_delete_event() {
    let (_s, addr) = extended_server().await;
    let mut c = RawClient::connect(&addr).await;
    let p = unique("reap");
    c.create(&p, b"", 0).await.unwrap();
    let cont = format!("{p}/cont");
    let req = CreateRequest {
        path: cont.clone(),
        data: None,
        acl: open_acl(),
        flags: 4,
    };
    assert_eq!(
        c.call(OpCode::CreateContainer, Some(&req)).await.header.err,
        0
    );
    c.create(&format!("{cont}/k"), b"", 0).await.unwrap();
    c.exists(&cont, true).await.unwrap();
    c.delete(&format!("{cont}/k"), -1).await.unwrap();
    let ev = c.event().await;
    assert_eq!((ev.event_type, ev.path), (2, cont));

    let short = format!("{p}/short");
    let t0 = Instant::now();
    let r = c
        .call(OpCode::CreateTtl, Some(&ttl_req(short.clone(), 5, 200)))
        .await;
    assert_eq!(r.header.err, 0);
    c.exists(&short, true).await.unwrap();
    let ev = c.event().await;
    assert_eq!((ev.event_type, ev.path), (2, short));
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn multi_kinds_must_not_be_mixed() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let p = unique("mix");
    c.create(&p, b"", 0).await.unwrap();
    let read = MultiOp::GetData(PathWatchRequest {
        path: p.clone(),
        watch: false,
    });
    let write = MultiOp::Delete(DeleteRequest {
        path: format!("{p}/zz"),
        version: -1,
    });
    let m = MultiRequest {
        ops: vec![write.clone(), read.clone()],
    };
    let before = c.ping().await.zxid;
    assert_eq!(c.call(OpCode::Multi, Some(&m)).await.header.err, -5);
    assert_eq!(
        c.ping().await.zxid,
        before + 1,
        "the failed multi is an error txn"
    );
    let m = MultiRequest {
        ops: vec![read, write],
    };
    assert_eq!(c.call(OpCode::MultiRead, Some(&m)).await.header.err, -5);
    let r = c
        .call(OpCode::MultiRead, Some(&MultiRequest { ops: vec![] }))
        .await;
    assert_eq!(r.decode::<MultiResponse>().results, vec![]);
    let r = c
        .call(OpCode::Multi, Some(&MultiRequest { ops: vec![] }))
        .await;
    assert_eq!(
        (r.header.err, r.decode::<MultiResponse>().results),
        (0, vec![])
    );
}

#[tokio::test]
async fn acl_outcomes_for_an_unauthenticated_client() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let pkt = AuthPacket {
        auth_type: 0,
        scheme: "digest".into(),
        auth: Bytes::from_static(b"u:p"),
    };
    c.send_xid(-4, OpCode::Auth, Some(&pkt)).await;
    assert_eq!(
        c.wait(-4).await.header,
        ReplyHeader {
            xid: -4,
            zxid: 0,
            err: 0
        }
    );
    let a = unique("acl");
    let acl = vec![
        Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "auth".into(),
                id: String::new(),
            },
        },
        Acl {
            perms: perms::READ,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        },
    ];
    let req = CreateRequest {
        path: a.clone(),
        data: None,
        acl,
        flags: 0,
    };
    assert_eq!(c.call(OpCode::Create, Some(&req)).await.header.err, 0);

    let mut o = RawClient::connect(&addr).await;
    let r = o
        .call(OpCode::GetAcl, Some(&PathRequest { path: a.clone() }))
        .await;
    let acl = r.decode::<GetAclResponse>().acl;
    assert_eq!(acl[0].id.id, "u:x", "digest hidden without ADMIN");
    assert_eq!(acl[1].id.scheme, "world");
    let set = SetAclRequest {
        path: a.clone(),
        acl: open_acl(),
        version: -1,
    };
    assert_eq!(o.call(OpCode::SetAcl, Some(&set)).await.header.err, -102);
    let child = |acl| CreateRequest {
        path: format!("{a}/x"),
        data: None,
        acl,
        flags: 0,
    };
    assert_eq!(
        o.call(OpCode::Create, Some(&child(open_acl())))
            .await
            .header
            .err,
        -102
    );
    let bad = vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "digest".into(),
            id: "bad".into(),
        },
    }];
    // InvalidACL is found before the parent's ACL is checked.
    assert_eq!(
        o.call(OpCode::Create, Some(&child(bad))).await.header.err,
        -114
    );
    let del = DeleteRequest {
        path: format!("{a}/x"),
        version: -1,
    };
    // The parent's DELETE permission is checked before the node is looked up.
    assert_eq!(o.call(OpCode::Delete, Some(&del)).await.header.err, -102);
    let r = o
        .call(
            OpCode::GetChildren,
            Some(&PathWatchRequest {
                path: "/zookeeper".into(),
                watch: false,
            }),
        )
        .await;
    assert_eq!(
        r.decode::<GetChildrenResponse>().children,
        vec!["config", "quota"]
    );
    // An unknown scheme: AuthFailed with zxid 0, then the connection is closed.
    let pkt = AuthPacket {
        auth_type: 0,
        scheme: "bogus".into(),
        auth: Bytes::new(),
    };
    o.send_xid(-4, OpCode::Auth, Some(&pkt)).await;
    assert_eq!(
        o.wait(-4).await.header,
        ReplyHeader {
            xid: -4,
            zxid: 0,
            err: -115
        }
    );
    assert!(o.closed_by_server().await);
}
