//! Sessions, fault controls and the Server handle.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use zkit_proto::*;
use zkit_testkit::Server;
use zkit_testkit::WatchKind;

async fn eventually(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "condition not reached");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn reattach_with_password_and_reject_a_wrong_one() {
    // Also runs against a real server (ZKIT_TEST_SERVER).
    let (_s, addr) = server().await;
    let mut c = RawClient::connect(&addr).await;
    let e = unique("eph");
    c.create(&e, b"", 1).await.unwrap();
    let (id, pw) = (c.session_id, c.passwd.clone());

    let (mut c2, resp) = RawClient::connect_with(&addr, id, pw.clone(), 30000).await;
    assert_eq!(resp.session_id, id);
    assert_eq!(resp.timeout, 30000);
    // The old connection is closed ("client reconnect").
    assert!(c.closed_by_server().await);
    assert!(c2.exists(&e, false).await.is_ok());

    let (mut bad, resp) =
        RawClient::connect_with(&addr, id, Bytes::from_static(&[1; 16]), 30000).await;
    assert_eq!((resp.timeout, resp.session_id), (0, 0));
    assert_eq!(&resp.passwd[..], &[0; 16]);
    assert!(bad.closed_by_server().await);

    let (mut unknown, resp) = RawClient::connect_with(&addr, 12345, pw, 30000).await;
    assert_eq!((resp.timeout, resp.session_id), (0, 0));
    assert!(unknown.closed_by_server().await);
}

#[tokio::test]
async fn expire_session_deletes_ephemerals_and_notifies_watchers() {
    let s = Server::start().await.unwrap();
    let addr = s.connect_string();
    let mut owner = RawClient::connect(&addr).await;
    let mut watcher = RawClient::connect(&addr).await;
    let e = unique("eph");
    owner.create(&e, b"", 1).await.unwrap();
    watcher.exists(&e, true).await.unwrap();
    assert_eq!(s.sessions().len(), 2);
    assert!(s
        .watches()
        .iter()
        .any(|w| w.path == e && w.kind == WatchKind::Data));

    assert!(s.expire_session(owner.session_id));
    let ev = watcher.event().await;
    assert_eq!((ev.event_type, ev.path.as_str()), (2, e.as_str()));
    assert!(owner.closed_by_server().await);
    let (_, resp) =
        RawClient::connect_with(&addr, owner.session_id, owner.passwd.clone(), 30000).await;
    assert_eq!(resp.timeout, 0, "expired");
    assert!(!s.expire_session(owner.session_id));
}

#[tokio::test]
async fn silent_session_expires_after_its_timeout() {
    let s = Server::builder()
        .tick_time(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let addr = s.connect_string();
    let (mut c, resp) = RawClient::connect_with(&addr, 0, Bytes::from_static(&[0; 16]), 100).await;
    assert_eq!(resp.timeout, 100);
    let e = unique("eph");
    c.create(&e, b"", 1).await.unwrap();
    let start = Instant::now();
    assert!(c.closed_by_server().await);
    assert!(start.elapsed() >= Duration::from_millis(90));
    eventually(|| s.sessions().is_empty()).await;
    let mut other = RawClient::connect(&addr).await;
    assert_eq!(other.exists(&e, false).await, Err(-101));
}

#[tokio::test]
async fn close_session_deletes_ephemerals_and_closes() {
    let s = Server::start().await.unwrap();
    let mut c = RawClient::connect(&s.connect_string()).await;
    let e = unique("eph");
    c.create(&e, b"", 3).await.unwrap();
    let h = c.close_session().await;
    assert_eq!(h.err, 0);
    assert!(c.closed_by_server().await);
    assert!(s.sessions().is_empty());
}

#[tokio::test]
async fn close_session_connection_keeps_the_session() {
    let s = Server::start().await.unwrap();
    let addr = s.connect_string();
    let mut c = RawClient::connect(&addr).await;
    assert!(s.close_session_connection(c.session_id));
    assert!(c.closed_by_server().await);
    eventually(|| s.sessions().iter().all(|x| !x.connected)).await;
    let (mut c2, resp) =
        RawClient::connect_with(&addr, c.session_id, c.passwd.clone(), 30000).await;
    assert_eq!(resp.session_id, c.session_id);
    c2.ping().await;
    s.close_all_connections();
    assert!(c2.closed_by_server().await);
}

#[tokio::test]
async fn restart_keeps_port_data_and_sessions() {
    let mut s = Server::start().await.unwrap();
    let addr = s.connect_string();
    let mut c = RawClient::connect(&addr).await;
    let p = unique("keep");
    c.create(&p, b"data", 0).await.unwrap();
    let (id, pw) = (c.session_id, c.passwd.clone());
    s.restart().await.unwrap();
    assert_eq!(s.connect_string(), addr);
    assert!(c.closed_by_server().await);
    let (mut c2, resp) = RawClient::connect_with(&addr, id, pw, 30000).await;
    assert_eq!(resp.session_id, id);
    assert_eq!(
        c2.get_data(&p, false).await.unwrap().0.as_deref(),
        Some(&b"data"[..])
    );
    s.stop().await;
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

#[tokio::test]
async fn pause_stalls_replies_until_resume() {
    let s = Server::start().await.unwrap();
    let mut c = RawClient::connect(&s.connect_string()).await;
    s.pause_responses();
    c.send_xid(-2, OpCode::Ping, None).await;
    let stalled = tokio::time::timeout(Duration::from_millis(200), c.next()).await;
    assert!(stalled.is_err(), "no reply while paused");
    s.resume();
    assert_eq!(c.wait(-2).await.header.err, 0);
    // A timed pause resumes by itself.
    s.pause(Duration::from_millis(100));
    let start = Instant::now();
    c.ping().await;
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn set_watches_replays_changes_since_relative_zxid() {
    let s = Server::start().await.unwrap();
    let addr = s.connect_string();
    let mut c = RawClient::connect(&addr).await;
    let (a, b, gone, missing) = (unique("a"), unique("b"), unique("gone"), unique("missing"));
    c.create(&a, b"", 0).await.unwrap();
    c.create(&b, b"", 0).await.unwrap();
    let rel = c.ping().await.zxid;
    c.set_data(&a, b"changed", -1).await.unwrap();
    c.create(&format!("{b}/kid"), b"", 0).await.unwrap();
    let created_later = unique("later");
    c.create(&created_later, b"", 0).await.unwrap();
    let sw = SetWatches2 {
        relative_zxid: rel,
        data_watches: vec![a.clone(), gone.clone()],
        exist_watches: vec![created_later.clone(), missing.clone()],
        child_watches: vec![b.clone()],
        persistent_watches: vec![],
        persistent_recursive_watches: vec![missing.clone()],
    };
    c.send_xid(-8, OpCode::SetWatches2, Some(&sw)).await;
    let r = c.wait(-8).await;
    assert_eq!(r.header.err, 0);
    let evs: Vec<(i32, String)> = c.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    assert_eq!(
        evs,
        vec![
            (3, a.clone()),
            (2, gone),
            (1, created_later),
            (4, b.clone())
        ]
    );
    let w = s.watches();
    // One registration per path and table: the recursive mode replaced the exists watch.
    assert!(!w
        .iter()
        .any(|w| w.path == missing && w.kind == WatchKind::Data));
    assert!(w
        .iter()
        .any(|w| w.path == missing && w.kind == WatchKind::PersistentRecursive));
    // The recursive watch sees a create below it, with no child event.
    c.create(&missing, b"", 0).await.unwrap();
    c.create(&format!("{missing}/x"), b"", 0).await.unwrap();
    let evs: Vec<(i32, String)> = c.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    assert_eq!(evs, vec![(1, missing.clone()), (1, format!("{missing}/x"))]);
}

#[tokio::test]
async fn containers_and_ttl_nodes_are_reaped() {
    let s = Server::builder()
        .extended_types(true)
        .reap_interval(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let mut c = RawClient::connect(&s.connect_string()).await;
    let cont = unique("cont");
    let req = CreateRequest {
        path: cont.clone(),
        data: None,
        acl: open_acl(),
        flags: 4,
    };
    let r = c.call(OpCode::CreateContainer, Some(&req)).await;
    assert_eq!(r.header.err, 0);
    let st = r.decode::<Create2Response>().stat;
    assert_eq!(st.ephemeral_owner, 0, "containers show owner 0 to clients");
    c.create(&format!("{cont}/kid"), b"", 0).await.unwrap();
    c.exists(&cont, true).await.unwrap();
    c.delete(&format!("{cont}/kid"), -1).await.unwrap();
    let ev = c.event().await;
    assert_eq!((ev.event_type, ev.path.as_str()), (2, cont.as_str()));

    let ttl = unique("ttl");
    let req = CreateTtlRequest {
        path: ttl.clone(),
        data: None,
        acl: open_acl(),
        flags: 5,
        ttl: 50,
    };
    let r = c.call(OpCode::CreateTtl, Some(&req)).await;
    assert_eq!(r.header.err, 0);
    c.exists(&ttl, true).await.unwrap();
    let ev = c.event().await;
    assert_eq!((ev.event_type, ev.path.as_str()), (2, ttl.as_str()));
    let bad = CreateTtlRequest { ttl: 0, ..req };
    assert_eq!(c.call(OpCode::CreateTtl, Some(&bad)).await.header.err, -8);
}

#[tokio::test]
async fn server_starts_fast() {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let s = Server::start().await.unwrap();
        let mut c = RawClient::connect(&s.connect_string()).await;
        c.ping().await;
        best = best.min(t.elapsed());
    }
    eprintln!("startup to first served request: {best:?}");
    assert!(best < Duration::from_millis(100), "{best:?}");
}

#[tokio::test]
async fn drop_shuts_everything_down() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Server>();
    let s = Server::start().await.unwrap();
    let addr = s.connect_string();
    let mut c = RawClient::connect(&addr).await;
    c.ping().await;
    drop(s);
    assert!(
        c.closed_by_server().await,
        "connection tasks are aborted with the server"
    );
    eventually(|| std::net::TcpStream::connect(&addr).is_err()).await;
}

#[tokio::test]
async fn builder_rejects_inverted_session_bounds() {
    let r = Server::builder()
        .min_session_timeout(Duration::from_secs(10))
        .max_session_timeout(Duration::from_secs(5))
        .start()
        .await;
    assert!(matches!(r, Err(zkit_testkit::Error::Config(_))));
}

#[tokio::test]
async fn paused_tokio_clock_drives_session_expiry() {
    let s = Server::start().await.unwrap();
    let addr = s.connect_string();
    let mut c = RawClient::connect(&addr).await;
    let e = unique("eph");
    c.create(&e, b"", 1).await.unwrap();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(20)).await;
    c.ping().await; // still alive, and touched
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(c.closed_by_server().await, "expired after 30 s of silence");
    tokio::time::resume();
    assert!(s.sessions().is_empty());
}
