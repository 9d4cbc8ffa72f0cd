//! A 3-server ensemble, the same assertions on the in-process testkit ensemble and on real
//! ZooKeeper's (`ZK_TEST_ENSEMBLE`, `ZK_TEST_ENSEMBLE_DIR`): the session moves when its server
//! dies, its watches are re-registered on another member and fire; a server behind the client's
//! last zxid refuses it and the client moves on; `sync` then read sees the latest write made
//! through another member; the ephemerals of a closed or expired session are gone on every
//! member.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::ensemble::served_zxid;
use common::{wait_state, within, Ensemble, Proxy, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit::{Client, CreateOptions, EventType, SessionState, WatchItem};
use zkit_proto::frame::{take_frame, write_record};
use zkit_proto::{ConnectRequest, ConnectResponse, Record};

const LIMIT: Duration = Duration::from_secs(60);

/// The target's ensemble, or None (and a note) when the real target has none configured.
async fn ensemble(t: &Target) -> Option<&Ensemble> {
    let e = t.ensemble().await;
    if e.is_none() {
        eprintln!("skipped: no ensemble (set ZK_TEST_ENSEMBLE and ZK_TEST_ENSEMBLE_DIR)");
    }
    e
}

async fn client(connect: &str) -> Client {
    Client::builder(connect)
        .session_timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_clients_server_moves_the_session_with_its_watches() {
    let t = Target::new().await;
    let Some(ens) = ensemble(&t).await else {
        return;
    };
    let _g = t.exclusive().await;
    let ns = Target::namespace_on(&ens.connect).await;
    let a = client(&ns).await;
    let sid = a.session_id();
    let first = a.connected_server().expect("connected");
    let member = ens.member_at(first);
    a.create("/n", b"0", &CreateOptions::persistent())
        .await
        .unwrap();
    a.create("/eph", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let (_, _, data_w) = a.get_data_and_watch("/n").await.unwrap();
    let (_, exist_w) = a.exists_and_watch("/later").await.unwrap();
    let mut pw = a
        .add_watch("/n", zkit::AddWatchMode::Persistent)
        .await
        .unwrap();
    let mut states = a.state_changes();

    ens.stop_member(member).await;
    // The disconnect first: when the script returns, the client may not have read the EOF yet
    // and still show Connected (to the stopped member).
    assert_eq!(
        within(LIMIT, "disconnect", states.next()).await,
        Some(SessionState::Disconnected)
    );
    wait_state(&a, LIMIT, SessionState::is_connected).await;
    let second = a.connected_server().expect("connected");
    assert_ne!(second, first, "moved to another member");
    assert_eq!(a.session_id(), sid, "same session");
    // Another client, on whichever member it picks, changes what A watches.
    let b = Client::connect(&ns).await.unwrap();
    assert_eq!(
        b.exists("/eph").await.unwrap().map(|s| s.ephemeral_owner),
        Some(sid)
    );
    b.set_data("/n", b"1", None).await.unwrap();
    b.create("/later", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let ev = within(LIMIT, "data watch", data_w).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/n")
    );
    let ev = within(LIMIT, "exists watch", exist_w).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/later")
    );
    // The move to another member may have missed events: the stream says so first.
    assert_eq!(
        within(LIMIT, "resync", pw.next()).await,
        Some(Ok(WatchItem::Resync))
    );
    let ev = within(LIMIT, "persistent watch", pw.next())
        .await
        .unwrap()
        .unwrap()
        .into_event()
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/n")
    );
    // A's own writes work on the new member, and sync brings it up to date.
    a.sync("/").await.unwrap();
    assert_eq!(&a.get_data("/n").await.unwrap().0[..], b"1");
    a.set_data("/n", b"2", None).await.unwrap();

    ens.start_member(member).await;
    // The restarted member serves again: a client pinned to it sees A's data.
    let c = Client::connect(&ens.on_member(member, &ns)).await.unwrap();
    c.sync("/").await.unwrap();
    assert_eq!(&c.get_data("/n").await.unwrap().0[..], b"2");
    assert_eq!(
        c.exists("/eph").await.unwrap().map(|s| s.ephemeral_owner),
        Some(sid)
    );
    c.close().await.unwrap();
    b.close().await.unwrap();
    a.close().await.unwrap();
}

/// A bare handshake for a new session from a client that has seen `last_zxid_seen`: the
/// server's answer, or None when it closed the connection without one.
async fn handshake(addr: SocketAddr, last_zxid_seen: i64) -> Option<ConnectResponse> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut b = BytesMut::new();
    write_record(
        &mut b,
        &ConnectRequest {
            protocol_version: 0,
            last_zxid_seen,
            timeout: 4000,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        },
    );
    s.write_all(&b).await.expect("send the handshake");
    let mut buf = BytesMut::new();
    within(LIMIT, "an answer or a close", async {
        loop {
            if let Some(f) = take_frame(&mut buf, 1 << 20).expect("a valid frame") {
                return Some(ConnectResponse::from_bytes(f).expect("a ConnectResponse"));
            }
            match s.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
}

/// Every member, the leader included, refuses a client that has seen a zxid it has not
/// applied yet (it closes the connection unanswered), and accepts one that has seen exactly
/// its last zxid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_refuses_a_client_that_has_seen_more_than_it_applied() {
    let t = Target::new().await;
    let Some(ens) = ensemble(&t).await else {
        return;
    };
    let _g = t.shared().await;
    let ns = Target::namespace_on(&ens.connect).await;
    let w = client(&ns).await;
    w.create("/n", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let z = w.set_data("/n", b"1", None).await.unwrap().mzxid;
    for n in 1..=ens.len() {
        // After a sync through it, the member has applied `z`.
        let p = client(&ens.on_member(n, &ns)).await;
        p.sync("/").await.unwrap();
        // A million txns ahead: no member gets there during the test.
        assert!(
            handshake(ens.member_addr(n), z + 1_000_000).await.is_none(),
            "member {n} accepted a client ahead of it"
        );
        let ok = handshake(ens.member_addr(n), z)
            .await
            .unwrap_or_else(|| panic!("member {n} refused a client that has seen what it applied"));
        assert!(ok.session_id != 0 && ok.timeout > 0, "member {n}: {ok:?}");
        p.close().await.unwrap();
    }
    w.close().await.unwrap();
}

/// A server behind the client's last zxid refuses the session; the client tries it again and
/// again (refused each time, never connected), and moves on to a member that is up to date,
/// keeping its session.
///
/// Which server lags differs by target (the assertions do not): on the testkit, a follower of
/// the ensemble whose quorum link to the leader is delayed by an hour, so it keeps following
/// and serving but applies nothing newer (syncLimit is raised so that the leader keeps it).
/// Real ZooKeeper offers no way to hold a serving follower back from outside (a stopped or
/// SIGSTOPped one answers nobody, a restarted one syncs before it serves, and a follower's
/// ordinary lag is a race), so there the lagging server is the standalone one of the target:
/// its zxids are of epoch 0, every zxid of the ensemble is of a later epoch. The refusal itself
/// is checked on every real member by the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_server_refuses_the_session_and_the_client_moves_on() {
    let t = Target::new().await;
    let own;
    let ens = if t.real {
        let Some(ens) = ensemble(&t).await else {
            return;
        };
        ens
    } else {
        own = Ensemble::start_testkit(zkit_testkit::Ensemble::builder().sync_limit(100_000)).await;
        &own
    };
    let _g = t.exclusive().await;
    let (leader, followers) = ens.roles().await;
    let (good, lagging): (usize, SocketAddr) = match ens.testkit() {
        Some(e) => {
            let lagging = followers[0];
            e.lock()
                .await
                .delay(lagging - 1, leader - 1, Duration::from_secs(3600))
                .await;
            (followers[1], ens.member_addr(lagging))
        }
        None => (
            followers[0],
            t.connect.parse().expect("a standalone address"),
        ),
    };
    let ns = Target::namespace_on(&ens.connect).await;
    let chroot = ns.strip_prefix(&ens.connect).unwrap();
    let ahead = Proxy::start(&ens.member_addr(good).to_string()).await;
    let behind = Proxy::start(&lagging.to_string()).await;
    behind.block();
    let x = client(&format!("{},{}{chroot}", ahead.addr, behind.addr)).await;
    assert_eq!(x.connected_server(), Some(ahead.addr));
    let sid = x.session_id();
    let mut z = 0;
    for i in 0..20 {
        let p = format!("/n{i}");
        x.create(&p, b"", &CreateOptions::persistent())
            .await
            .unwrap();
        z = x.set_data(&p, b"1", None).await.unwrap().mzxid;
    }
    let behind_zxid = served_zxid(lagging).await;
    assert!(
        behind_zxid < z,
        "the lagging server is at 0x{behind_zxid:x}, the client has seen 0x{z:x}"
    );

    let mut states = x.state_changes();
    behind.unblock();
    ahead.block();
    assert_eq!(
        within(LIMIT, "disconnect", states.next()).await,
        Some(SessionState::Disconnected)
    );
    let tried = behind.forwarded();
    within(LIMIT, "the lagging server tried twice", async {
        while behind.forwarded() < tried + 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Refused each time: had it been accepted once, the client would be connected to it.
    assert_eq!(x.state(), SessionState::Disconnected);
    assert!(served_zxid(lagging).await < z, "still behind");

    ahead.unblock();
    wait_state(&x, LIMIT, SessionState::is_connected).await;
    assert_eq!(x.session_id(), sid, "same session");
    assert_eq!(x.connected_server(), Some(ahead.addr));
    assert!(x.exists("/n19").await.unwrap().is_some());
    x.close().await.unwrap();
}

/// A write through one follower, then `sync` and a read through the other: the read sees
/// that write (same data, same Stat), every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_then_read_on_another_member_sees_the_latest_write() {
    let t = Target::new().await;
    let Some(ens) = ensemble(&t).await else {
        return;
    };
    let _g = t.shared().await;
    let (leader, followers) = ens.roles().await;
    let ns = Target::namespace_on(&ens.connect).await;
    let writers = [
        client(&ens.on_member(followers[0], &ns)).await,
        client(&ens.on_member(leader, &ns)).await,
    ];
    let reader = client(&ens.on_member(followers[1], &ns)).await;
    assert_eq!(
        reader.connected_server(),
        Some(ens.member_addr(followers[1]))
    );
    writers[0]
        .create("/v", b"0", &CreateOptions::persistent())
        .await
        .unwrap();
    for i in 1..=40 {
        let data = i.to_string();
        let written = writers[i % 2].set_data("/v", &data, None).await.unwrap();
        reader.sync("/v").await.unwrap();
        let (read, stat) = reader.get_data("/v").await.unwrap();
        assert_eq!(&read[..], data.as_bytes(), "read {i}");
        assert_eq!(stat, written, "read {i}");
    }
    for c in writers.iter().chain([&reader]) {
        c.close().await.unwrap();
    }
}

/// Clients pinned to each member, each watching `paths` (which exist on every member).
async fn watch_on_every_member(
    ens: &Ensemble,
    ns: &str,
    paths: &[&str],
) -> Vec<(usize, Client, Vec<zkit::OneshotWatcher>)> {
    let mut out = Vec::new();
    for n in 1..=ens.len() {
        let c = client(&ens.on_member(n, ns)).await;
        c.sync("/").await.unwrap();
        let mut ws = Vec::new();
        for p in paths {
            let (stat, w) = c.exists_and_watch(p).await.unwrap();
            assert!(stat.is_some(), "member {n} has {p}");
            ws.push(w);
        }
        out.push((n, c, ws));
    }
    out
}

/// Every member deletes `paths` (each watch fires NodeDeleted) and has none of them then.
async fn gone_on_every_member(
    watchers: Vec<(usize, Client, Vec<zkit::OneshotWatcher>)>,
    paths: &[&str],
) {
    for (n, c, ws) in watchers {
        for (w, p) in ws.into_iter().zip(paths) {
            let ev = within(LIMIT, "the delete event", w).await.unwrap();
            assert_eq!(
                (ev.event_type, ev.path.as_str()),
                (EventType::NodeDeleted, *p),
                "member {n}"
            );
            assert!(c.exists(p).await.unwrap().is_none(), "member {n} has {p}");
        }
        c.close().await.unwrap();
    }
}

/// The ephemerals of a session that closed, and of one that expired (its client cut off for
/// longer than its timeout), are deleted on every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemerals_of_a_closed_or_expired_session_are_gone_on_every_member() {
    let t = Target::new().await;
    let Some(ens) = ensemble(&t).await else {
        return;
    };
    let _g = t.shared().await;
    let (_, followers) = ens.roles().await;
    let ns = Target::namespace_on(&ens.connect).await;
    let paths = ["/e1", "/e2"];

    // Closed.
    let owner = client(&ens.on_member(followers[0], &ns)).await;
    for p in paths {
        owner
            .create(p, b"", &CreateOptions::ephemeral())
            .await
            .unwrap();
    }
    let watchers = watch_on_every_member(ens, &ns, &paths).await;
    owner.close().await.unwrap();
    gone_on_every_member(watchers, &paths).await;

    // Expired: the owner, on a follower through a proxy, is cut off; the leader expires its
    // session once the (shortest) timeout has passed without a ping.
    let proxy = Proxy::start(&ens.member_addr(followers[1]).to_string()).await;
    let chroot = ns.strip_prefix(&ens.connect).unwrap();
    let owner = Client::builder(&format!("{}{chroot}", proxy.addr))
        .recreate_on_expiry(false)
        .session_timeout(Duration::from_secs(4))
        .connect()
        .await
        .unwrap();
    for p in paths {
        owner
            .create(p, b"", &CreateOptions::ephemeral())
            .await
            .unwrap();
    }
    let watchers = watch_on_every_member(ens, &ns, &paths).await;
    proxy.block();
    gone_on_every_member(watchers, &paths).await;
    proxy.unblock();
    wait_state(&owner, LIMIT, |s| s == SessionState::Expired).await;
}
