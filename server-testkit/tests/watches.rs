//! Watch semantics over the wire; also runs against a real server (`ZKIT_TEST_SERVER`).

mod common;

use common::*;
use zkit_proto::*;

fn events(c: &mut RawClient) -> Vec<(i32, String)> {
    c.events.drain(..).map(|e| (e.event_type, e.path)).collect()
}

#[tokio::test]
async fn set_watches_replay_rules() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let (a, b, gone, missing) = (unique("a"), unique("b"), unique("gone"), unique("missing"));
    c.create(&a, b"", 0).await.unwrap();
    c.create(&b, b"", 0).await.unwrap();
    let rel = c.ping().await.zxid;
    c.set_data(&a, b"changed", -1).await.unwrap();
    c.create(&format!("{b}/kid"), b"", 0).await.unwrap();
    let later = unique("later");
    c.create(&later, b"", 0).await.unwrap();
    let sw = SetWatches {
        relative_zxid: rel,
        data_watches: vec![a.clone(), gone.clone()],
        exist_watches: vec![later.clone(), missing.clone()],
        child_watches: vec![b.clone(), gone.clone()],
    };
    c.send_xid(-8, OpCode::SetWatches, Some(&sw)).await;
    let r = c.wait(-8).await;
    assert_eq!(r.header.err, 0);
    assert_eq!(
        events(&mut c),
        vec![
            (3, a.clone()),
            (2, gone.clone()),
            (1, later.clone()),
            (4, b.clone()),
            (2, gone.clone())
        ]
    );
    // The exists watch on the missing node was registered.
    c.create(&missing, b"", 0).await.unwrap();
    assert_eq!(events(&mut c), vec![(1, missing.clone())]);
}

#[tokio::test]
async fn persistent_and_recursive_watches() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let mut other = RawClient::connect(&addr).await;
    let p = unique("pw");
    let r = other
        .call(
            OpCode::AddWatch,
            Some(&AddWatchRequest {
                path: p.clone(),
                mode: 0,
            }),
        )
        .await;
    assert_eq!((r.header.err, r.decode::<IntResponse>().value), (0, 0));
    let rp = unique("rw");
    let r = other
        .call(
            OpCode::AddWatch,
            Some(&AddWatchRequest {
                path: rp.clone(),
                mode: 1,
            }),
        )
        .await;
    assert_eq!(r.header.err, 0);

    c.create(&p, b"", 0).await.unwrap();
    c.set_data(&p, b"1", -1).await.unwrap();
    c.create(&format!("{p}/k"), b"", 0).await.unwrap();
    c.set_data(&format!("{p}/k"), b"1", -1).await.unwrap(); // not seen: not recursive
    c.delete(&format!("{p}/k"), -1).await.unwrap();
    c.delete(&p, -1).await.unwrap();
    c.create(&p, b"", 0).await.unwrap(); // still registered after delete

    c.create(&rp, b"", 0).await.unwrap();
    c.create(&format!("{rp}/x"), b"", 0).await.unwrap();
    c.create(&format!("{rp}/x/y"), b"", 0).await.unwrap();
    c.set_data(&format!("{rp}/x/y"), b"", -1).await.unwrap();
    c.delete(&format!("{rp}/x/y"), -1).await.unwrap();
    other.ping().await;
    assert_eq!(
        events(&mut other),
        vec![
            (1, p.clone()),
            (3, p.clone()),
            (4, p.clone()),
            (4, p.clone()),
            (2, p.clone()),
            (1, p.clone()),
            (1, rp.clone()),
            (1, format!("{rp}/x")),
            (1, format!("{rp}/x/y")),
            (3, format!("{rp}/x/y")),
            (2, format!("{rp}/x/y")),
        ]
    );
    // Only Children (1), Data (2) and Any (3) are accepted by a 3.8 server here.
    let req = WatchesRequest {
        path: rp.clone(),
        watcher_type: 3,
    };
    assert_eq!(
        other
            .call(OpCode::RemoveWatches, Some(&req))
            .await
            .header
            .err,
        0
    );
    assert_eq!(
        other
            .call(OpCode::RemoveWatches, Some(&req))
            .await
            .header
            .err,
        -121
    );
}

#[tokio::test]
async fn exists_watch_on_missing_node_and_child_watch() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let mut w = RawClient::connect(&addr).await;
    let p = unique("ew");
    assert_eq!(w.exists(&p, true).await, Err(-101));
    assert_eq!(w.get_data(&p, true).await, Err(-101)); // no watch left by a failed getData
    c.create(&p, b"", 0).await.unwrap();
    assert_eq!(w.children(&p, true).await.unwrap(), Vec::<String>::new());
    c.create(&format!("{p}/a"), b"", 0).await.unwrap();
    c.create(&format!("{p}/b"), b"", 0).await.unwrap(); // one-shot: fired already
    w.ping().await;
    assert_eq!(events(&mut w), vec![(1, p.clone()), (4, p.clone())]);
}

#[tokio::test]
async fn one_shot_watch_turns_a_persistent_data_watch_into_one_shot_like_3_8() {
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let q = unique("mode");
    let r = c
        .call(
            OpCode::AddWatch,
            Some(&AddWatchRequest {
                path: q.clone(),
                mode: 0,
            }),
        )
        .await;
    assert_eq!(r.header.err, 0);
    let _ = c.exists(&q, true).await; // replaces the data-table mode with a one-shot watch
    c.create(&q, b"", 0).await.unwrap();
    c.set_data(&q, b"x", -1).await.unwrap();
    c.create(&format!("{q}/k"), b"", 0).await.unwrap();
    c.create(&format!("{q}/k2"), b"", 0).await.unwrap();
    c.ping().await;
    assert_eq!(
        events(&mut c),
        vec![(1, q.clone()), (4, q.clone()), (4, q.clone())]
    );
    // checkWatches answers for the path, whoever watches it (3.6-3.8 containsWatcher).
    let mut other = RawClient::connect(&addr).await;
    let req = WatchesRequest {
        path: q.clone(),
        watcher_type: 1,
    };
    assert_eq!(
        other
            .call(OpCode::CheckWatches, Some(&req))
            .await
            .header
            .err,
        0
    );
    assert_eq!(
        other
            .call(OpCode::RemoveWatches, Some(&req))
            .await
            .header
            .err,
        -121
    );
}

#[tokio::test]
async fn notifications_need_read_permission_on_the_node() {
    // CVE-2024-23944, fixed in Debian's 3.8.0-11+deb12u2: events are filtered by the ACL.
    let (_s, addr) = server().await;
    let mut owner = RawClient::connect(&addr).await;
    let mut spy = RawClient::connect(&addr).await;
    let pkt = AuthPacket {
        auth_type: 0,
        scheme: "digest".into(),
        auth: bytes::Bytes::from_static(b"owner:pw"),
    };
    owner.send_xid(-4, OpCode::Auth, Some(&pkt)).await;
    owner.wait(-4).await;
    let base = unique("secret");
    owner.create(&base, b"", 0).await.unwrap();
    let r = spy
        .call(
            OpCode::AddWatch,
            Some(&AddWatchRequest {
                path: base.clone(),
                mode: 1,
            }),
        )
        .await;
    assert_eq!(r.header.err, 0);
    let private = vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "auth".into(),
            id: String::new(),
        },
    }];
    let req = CreateRequest {
        path: format!("{base}/hidden"),
        data: None,
        acl: private,
        flags: 0,
    };
    assert_eq!(owner.call(OpCode::Create, Some(&req)).await.header.err, 0);
    owner
        .create(&format!("{base}/visible"), b"", 0)
        .await
        .unwrap();
    spy.ping().await;
    assert_eq!(events(&mut spy), vec![(1, format!("{base}/visible"))]);
}
