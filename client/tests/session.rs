//! Sessions across faults: a server restart mid-session (the session, its ephemerals, its auth
//! and its watches survive; a change made meanwhile by another client fires the watch after
//! SetWatches), a server down for longer than the session timeout (the session expires and every
//! watcher learns it), and close().
//!
//! Every test here holds `Target::exclusive`: they restart or stop the shared server.

mod common;

use std::time::Duration;

use common::{wait_state, within, Capability, Proxy, Target};
use futures::FutureExt;
use zkit::{Acl, Client, CreateOptions, Error, EventType, SessionState, WatchItem};

const LIMIT: Duration = Duration::from_secs(30);

/// The chroot part of a namespace connect string.
fn chroot_of<'a>(t: &Target, ns: &'a str) -> &'a str {
    ns.strip_prefix(t.connect.as_str())
        .expect("namespace on this target")
}

#[tokio::test]
async fn restart_keeps_session_and_fires_watches_for_changes_made_while_away() {
    let t = Target::new().await;
    if !t.supports(Capability::Restart) {
        eprintln!("skipped: target cannot restart its server (set ZK_TEST_DIR)");
        return;
    }
    let _g = t.exclusive().await;
    let ns = t.namespace().await;
    // A reaches the server through a proxy, so it can be kept away while B makes changes.
    let proxy = Proxy::start(&t.connect).await;
    let a = common::builder(&format!("{}{}", proxy.addr, chroot_of(&t, &ns)))
        .session_timeout(Duration::from_secs(30))
        .auth("digest", "a:pw")
        .connect()
        .await
        .unwrap();
    let sid = a.session_id();
    let o = CreateOptions::persistent();
    a.create("/n", b"0", &o).await.unwrap();
    a.create("/secret", b"s", &o.clone().acl(Acl::creator_all()))
        .await
        .unwrap();
    a.create("/eph", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let (_, _, data_w) = a.get_data_and_watch("/n").await.unwrap();
    let (_, _, child_w) = a.get_children_and_watch("/n").await.unwrap();
    let (_, exist_w) = a.exists_and_watch("/later").await.unwrap();
    let (_, _, quiet_w) = a.get_data_and_watch("/secret").await.unwrap();
    let mut states = a.state_changes();

    proxy.block();
    wait_state(&a, LIMIT, |s| s == SessionState::Disconnected).await;
    assert_eq!(states.next().await, Some(SessionState::Disconnected));
    t.restart().await;

    // B changes things while A is away (after A's last seen zxid).
    let b = common::connect(&ns).await.unwrap();
    b.set_data("/n", b"1", None).await.unwrap();
    b.create("/n/kid", b"", &o).await.unwrap();
    b.create("/later", b"", &o).await.unwrap();
    // A's session and its ephemeral survived the restart.
    assert_eq!(
        b.exists("/eph").await.unwrap().map(|s| s.ephemeral_owner),
        Some(sid)
    );
    // A request made while disconnected waits for the reconnect.
    let queued = a.get_data("/n");

    proxy.unblock();
    wait_state(&a, LIMIT, SessionState::is_connected).await;
    assert_eq!(a.session_id(), sid, "same session after the restart");
    // Watches re-registered with SetWatches(relativeZxid = A's last zxid) fire for what changed.
    let ev = within(LIMIT, "data watch", data_w).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/n")
    );
    let ev = within(LIMIT, "child watch", child_w).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/n")
    );
    let ev = within(LIMIT, "exists watch", exist_w).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/later")
    );
    assert_eq!(&within(LIMIT, "queued", queued).await.unwrap().0[..], b"1");
    // An unchanged node's watch did not fire, and is still registered.
    let mut quiet_w = quiet_w;
    assert!((&mut quiet_w).now_or_never().is_none());
    // Auth was replayed: the creator-only node is still readable.
    assert_eq!(&a.get_data("/secret").await.unwrap().0[..], b"s");
    b.set_data("/secret", b"t", None).await.unwrap_err();
    a.set_data("/secret", b"t", None).await.unwrap();
    let ev = within(LIMIT, "quiet watch", quiet_w).await.unwrap();
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    // The state stream saw the way back (Connecting attempts in between).
    let mut seen = Vec::new();
    while let Some(Some(s)) = states.next().now_or_never() {
        seen.push(s);
    }
    assert!(seen.last().is_some_and(|s| s.is_connected()), "{seen:?}");
    assert!(!seen.iter().any(|s| s.is_terminal()), "{seen:?}");
    b.close().await.unwrap();
    a.close().await.unwrap();
}

#[tokio::test]
async fn restart_of_the_server_is_survived_directly() {
    let t = Target::new().await;
    if !t.supports(Capability::Restart) {
        eprintln!("skipped: target cannot restart its server (set ZK_TEST_DIR)");
        return;
    }
    let _g = t.exclusive().await;
    let ns = t.namespace().await;
    let a = common::builder(&ns)
        .session_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let sid = a.session_id();
    a.create("/eph", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let mut pw = a
        .add_watch("/", zkit::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let mut states = a.state_changes();
    t.restart().await;
    wait_state(&a, LIMIT, SessionState::is_connected).await;
    assert_eq!(states.next().await, Some(SessionState::Disconnected));
    assert_eq!(a.session_id(), sid);
    assert_eq!(
        a.exists("/eph").await.unwrap().map(|s| s.ephemeral_owner),
        Some(sid)
    );
    // The persistent recursive watch was re-registered (SetWatches2).
    a.create("/after", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(
        within(LIMIT, "resync", pw.next()).await,
        Some(Ok(WatchItem::Resync))
    );
    let ev = within(LIMIT, "recursive watch", pw.next())
        .await
        .unwrap()
        .unwrap()
        .into_event()
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/after")
    );
    a.close().await.unwrap();
}

#[tokio::test]
async fn server_down_longer_than_the_session_timeout_expires_the_session() {
    let t = Target::new().await;
    let can_stop = t.supports(Capability::StopStart);
    if !can_stop && !t.supports(Capability::ExpireSession) {
        eprintln!("skipped: target can neither stop its server nor expire a session");
        return;
    }
    let _g = t.exclusive().await;
    let ns = t.namespace().await;
    // The shortest timeout the server allows (it clamps to 2 x tickTime).
    let a = common::builder(&ns)
        .recreate_on_expiry(false)
        .session_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let renewing = common::builder(&ns)
        .session_timeout(Duration::from_secs(2))
        .recreate_on_expiry(true)
        .connect()
        .await
        .unwrap();
    let old_sid = renewing.session_id();
    let timeout = a.negotiated_timeout();
    assert!(timeout >= Duration::from_secs(2), "{timeout:?}");
    a.create("/n", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    a.create("/eph", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let (_, _, data_w) = a.get_data_and_watch("/n").await.unwrap();
    let (_, exist_w) = a.exists_and_watch("/missing").await.unwrap();
    let mut pw = a
        .add_watch("/n", zkit::AddWatchMode::Persistent)
        .await
        .unwrap();
    let mut states = a.state_changes();
    let mut renew_states = renewing.state_changes();

    let limit = timeout * 3 + Duration::from_secs(20);
    if can_stop {
        t.stop().await;
        wait_state(&a, limit, |s| s == SessionState::Expired).await;
    } else {
        assert!(t.expire_session(a.session_id()).await);
        wait_state(&a, limit, |s| s == SessionState::Expired).await;
    }
    // Disconnected (suspended) first, then Expired, and nothing after it.
    let mut seen = Vec::new();
    while let Some(Some(s)) = states.next().now_or_never() {
        seen.push(s);
    }
    if can_stop {
        assert_eq!(seen.first(), Some(&SessionState::Disconnected), "{seen:?}");
    }
    assert_eq!(seen.last(), Some(&SessionState::Expired), "{seen:?}");
    assert!(!seen.iter().any(|s| s.is_connected()), "{seen:?}");
    // Every watcher learns it.
    assert_eq!(
        within(LIMIT, "data watch", data_w).await,
        Err(Error::SessionExpired)
    );
    assert_eq!(
        within(LIMIT, "exists watch", exist_w).await,
        Err(Error::SessionExpired)
    );
    assert_eq!(
        within(LIMIT, "persistent", pw.next()).await,
        Some(Err(Error::SessionExpired))
    );
    assert_eq!(pw.next().await, None);
    // And every later request.
    assert_eq!(a.exists("/n").await, Err(Error::SessionExpired));
    assert!(a.state().is_terminal());

    if can_stop {
        t.start().await;
    }
    // The server forgets the session too: its ephemeral goes.
    let b = common::connect(&ns).await.unwrap();
    let (st, gone) = b.exists_and_watch("/eph").await.unwrap();
    if st.is_some() {
        let ev = within(timeout * 3 + LIMIT, "ephemeral deleted", gone)
            .await
            .unwrap();
        assert_eq!(ev.event_type, EventType::NodeDeleted);
    }
    // The client that re-creates sessions came back with a new one.
    wait_state(&renewing, LIMIT, SessionState::is_connected).await;
    assert_ne!(renewing.session_id(), old_sid);
    let mut seen = Vec::new();
    while let Some(Some(s)) = renew_states.next().now_or_never() {
        seen.push(s);
    }
    let expired_at = seen.iter().position(|s| *s == SessionState::Expired);
    assert!(expired_at.is_some(), "{seen:?}");
    assert!(seen.last().unwrap().is_connected(), "{seen:?}");
    renewing.exists("/n").await.unwrap();
    renewing.close().await.unwrap();
    b.close().await.unwrap();
    let _ = a.close().await;
}

#[tokio::test]
async fn close_ends_the_session_for_watchers_and_the_state_stream() {
    let t = Target::new().await;
    let _g = t.shared().await;
    let (a, ns) = t.client().await;
    a.create("/eph", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let (_, _, w) = a.get_data_and_watch("/eph").await.unwrap();
    let mut pw = a
        .add_watch("/", zkit::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let mut states = a.state_changes();
    let b = common::connect(&ns).await.unwrap();
    let (_, gone) = b.exists_and_watch("/eph").await.unwrap();
    a.close().await.unwrap();
    // closeSession deleted the ephemeral: another client is told.
    assert_eq!(
        within(LIMIT, "ephemeral deleted", gone)
            .await
            .unwrap()
            .event_type,
        EventType::NodeDeleted
    );
    assert_eq!(b.exists("/eph").await.unwrap(), None);
    // Our own watchers: the close deleted /eph first, so the one-shot may have fired with that;
    // otherwise it ends with Closed.
    match within(LIMIT, "own watch", w).await {
        Ok(ev) => assert_eq!(ev.event_type, EventType::NodeDeleted),
        Err(e) => assert_eq!(e, Error::Closed),
    }
    loop {
        match within(LIMIT, "own persistent watch", pw.next()).await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                assert_eq!(e, Error::Closed);
                break;
            }
            None => break,
        }
    }
    assert_eq!(states.next().await, Some(SessionState::Closed));
    assert_eq!(a.state(), SessionState::Closed);
    assert_eq!(a.get_data("/").await.map(|_| ()), Err(Error::Closed));
    b.close().await.unwrap();
}

#[tokio::test]
async fn a_session_can_be_resumed_by_id_and_password() {
    let t = Target::new().await;
    let _g = t.shared().await;
    let ns = t.namespace().await;
    // The first handle reaches the server through a proxy we can cut, so that it does not
    // win the session back (ZooKeeper hands a session to whichever connection attached last).
    let proxy = Proxy::start(&t.connect).await;
    let a = common::builder(&format!("{}{}", proxy.addr, chroot_of(&t, &ns)))
        .recreate_on_expiry(false)
        .session_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    a.create("/mine", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    proxy.block();
    wait_state(&a, LIMIT, |s| s == SessionState::Disconnected).await;
    let b = common::builder(&ns)
        .resume_session(a.session_id(), a.session_password())
        .connect()
        .await
        .unwrap();
    assert_eq!(b.session_id(), a.session_id());
    // The ephemeral belongs to the resumed session.
    let eph = b.get_ephemerals("/").await.unwrap();
    assert_eq!(eph, vec!["/mine".to_string()]);
    // Closing it through the second handle ends the session for the first too.
    b.close().await.unwrap();
    proxy.unblock();
    wait_state(&a, LIMIT, |s| s == SessionState::Expired).await;
    a.close().await.unwrap();
}

#[tokio::test]
async fn resuming_with_a_wrong_password_is_refused_as_expired() {
    let t = Target::new().await;
    let _g = t.shared().await;
    let (a, ns) = t.client().await;
    let r = common::builder(&ns)
        .resume_session(a.session_id(), vec![0u8; 16])
        .connect()
        .await;
    assert_eq!(r.err(), Some(Error::SessionExpired));
    // The real owner keeps its session. (ZooKeeper closes the session's current connection
    // before it checks the password, so the owner may see one ConnectionLoss and reconnect.)
    let sid = a.session_id();
    let mut tries = 0;
    loop {
        match a.exists("/").await {
            Ok(_) => break,
            Err(Error::ConnectionLoss) if tries < 50 => {
                tries += 1;
                wait_state(&a, LIMIT, SessionState::is_connected).await;
            }
            Err(e) => panic!("the owner's session was hurt: {e}"),
        }
    }
    assert_eq!(a.session_id(), sid);
    a.close().await.unwrap();
}

#[tokio::test]
async fn a_stalled_server_is_left_after_two_thirds_of_the_timeout_and_the_session_survives() {
    let t = Target::new().await;
    if !t.supports(Capability::Stall) {
        eprintln!("skipped: target cannot stall its server");
        return;
    }
    let _g = t.exclusive().await;
    let ns = t.namespace().await;
    // The client leaves at 2/3 of the timeout; the server expires the session at the full
    // timeout after its last touch, which can be a ping interval (1/3) before the stall. The
    // remaining third is all the time there is to resume the server (SIGCONT) and reconnect, so
    // it must be seconds even on a loaded machine: 15 s leaves 5.
    let zk = common::builder(&ns)
        .session_timeout(Duration::from_secs(15))
        .connect()
        .await
        .unwrap();
    let id = zk.session_id();
    let timeout = zk.negotiated_timeout();
    let started = std::time::Instant::now();
    t.stall().await;
    // No bytes for 2/3 of the timeout: the client gives the connection up.
    let pending = zk.get_data("/");
    wait_state(&zk, LIMIT, |s| s == SessionState::Disconnected).await;
    let waited = started.elapsed();
    assert!(
        waited >= timeout * 2 / 3 - Duration::from_millis(100),
        "{waited:?}"
    );
    assert_eq!(pending.await, Err(Error::ConnectionLoss));
    t.unstall().await;
    // Back within the session timeout: same session.
    wait_state(&zk, LIMIT, |s| s.is_connected()).await;
    assert_eq!(zk.session_id(), id);
    zk.exists("/").await.unwrap();
    zk.close().await.unwrap();
}

/// A server that is behind the client's last zxid must refuse the session (it closes the
/// connection unanswered) and the client must move on to another server, keeping its session.
#[tokio::test]
async fn a_server_behind_our_last_zxid_is_refused_and_the_next_one_tried() {
    let t = Target::new().await;
    if t.real {
        eprintln!("skipped: needs two independent in-process servers");
        return;
    }
    let mut ahead = zkit_testkit::Server::start().await.unwrap();
    let behind = zkit_testkit::Server::start().await.unwrap();
    // `behind` sits behind a proxy that refuses connections until the session lives on `ahead`.
    let proxy = Proxy::start(&behind.connect_string()).await;
    proxy.block();
    let zk = Client::builder(&format!("{},{}", ahead.connect_string(), proxy.addr))
        .session_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    assert_eq!(zk.connected_server(), Some(ahead.addr()));
    for i in 0..20 {
        zk.create(&format!("/n{i}"), b"", &CreateOptions::persistent())
            .await
            .unwrap();
    }
    let id = zk.session_id();
    proxy.unblock();
    ahead.stop().await;
    wait_state(&zk, LIMIT, |s| s == SessionState::Disconnected).await;
    // The client tries `behind` again and again; each time it is refused.
    let tried = proxy.forwarded();
    within(LIMIT, "the lagging server is tried twice", async {
        while proxy.forwarded() < tried + 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(zk.state(), SessionState::Disconnected);
    assert!(behind.sessions().is_empty(), "{:?}", behind.sessions());
    ahead.restart().await.unwrap();
    wait_state(&zk, LIMIT, |s| s.is_connected()).await;
    assert_eq!(zk.session_id(), id);
    assert_eq!(zk.connected_server(), Some(ahead.addr()));
    assert!(zk.exists("/n19").await.unwrap().is_some());
    zk.close().await.unwrap();
}

/// The server grants far less than the client asked for and then stalls: the client must expire
/// the session after 4/3 of the *negotiated* timeout, even while a reconnect handshake to the
/// stalled server is still unanswered (its per-host budget is the negotiated timeout too).
#[tokio::test]
async fn a_stalled_server_expires_a_clamped_session_on_time_even_mid_handshake() {
    let t = Target::new().await;
    if t.real {
        eprintln!("skipped: needs an in-process server with a small maxSessionTimeout");
        return;
    }
    let server = zkit_testkit::Server::builder()
        .min_session_timeout(Duration::from_secs(1))
        .max_session_timeout(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    let zk = Client::builder(&server.connect_string())
        .recreate_on_expiry(false)
        .session_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let timeout = zk.negotiated_timeout();
    assert!(timeout <= Duration::from_secs(2), "{timeout:?}");
    let started = std::time::Instant::now();
    server.pause_responses();
    wait_state(&zk, LIMIT, |s| s == SessionState::Expired).await;
    let waited = started.elapsed();
    assert!(
        waited < timeout * 4 / 3 + Duration::from_secs(2),
        "expired only after {waited:?}"
    );
    assert_eq!(zk.exists("/").await, Err(Error::SessionExpired));
}

/// With `recreate_on_expiry`, the expired session's id is never reported once the client is
/// negotiating its new session (recipes compare ids to detect a changed session).
#[tokio::test]
async fn a_recreated_session_never_reports_the_expired_id() {
    let t = Target::new().await;
    if !t.supports(Capability::ExpireSession) {
        eprintln!("skipped: target cannot expire a session on demand");
        return;
    }
    let ns = t.namespace().await;
    let zk = common::builder(&ns)
        .recreate_on_expiry(true)
        .connect()
        .await
        .unwrap();
    let old = zk.session_id();
    let mut states = zk.state_changes();
    assert!(t.expire_session(old).await);
    // Every state after Expired belongs to the new session: the old id is gone by then.
    within(LIMIT, "expiry and renewal", async {
        while states.next().await != Some(SessionState::Expired) {}
        let next = states.next().await;
        assert!(
            matches!(
                next,
                Some(SessionState::Connecting | SessionState::Connected)
            ),
            "{next:?}"
        );
        assert_ne!(zk.session_id(), old);
    })
    .await;
    wait_state(&zk, LIMIT, |s| s.is_connected()).await;
    assert_ne!(zk.session_id(), old);
    assert_ne!(zk.session_id(), 0);
    zk.close().await.unwrap();
}
