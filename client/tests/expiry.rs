//! Session identity across reconnects: a reconnect answered with another session id is an
//! expiry, and a client that re-creates sessions (the default) carries on with a new one.

mod common;

use std::time::Duration;

use common::{wait_state, within};
use futures::FutureExt;
use zkit::{Client, CreateOptions, Error, SessionState, WatchItem};
use zkit_testkit::Server;

const LIMIT: Duration = Duration::from_secs(20);

/// Every state seen so far on `states`.
fn seen(states: &mut zkit::StateStream) -> Vec<SessionState> {
    let mut v = Vec::new();
    while let Some(Some(s)) = states.next().now_or_never() {
        v.push(s);
    }
    v
}

/// A server that forgets its sessions on restart and answers their re-attach with a new session
/// (ClickHouse Keeper's behaviour): the client must not accept that silently.
#[tokio::test]
async fn a_reconnect_answered_with_another_session_id_is_expiry() {
    let mut server = Server::builder()
        .forget_sessions_on_restart(true)
        .start()
        .await
        .unwrap();
    let connect = server.connect_string();
    let a = Client::builder(&connect)
        .recreate_on_expiry(false)
        .connect()
        .await
        .unwrap();
    let r = Client::connect(&connect).await.unwrap();
    assert!(r.recreates_on_expiry(), "re-creation is the default");
    let (a_sid, r_sid) = (a.session_id(), r.session_id());
    a.create("/eph", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    r.create("/n", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let mut a_watch = a
        .add_watch("/n", zkit::AddWatchMode::Persistent)
        .await
        .unwrap();
    let mut r_watch = r
        .add_watch("/n", zkit::AddWatchMode::Persistent)
        .await
        .unwrap();
    let mut a_states = a.state_changes();
    let mut r_states = r.state_changes();

    server.restart().await.unwrap();

    // The client that does not re-create sessions: Expired, for good.
    wait_state(&a, LIMIT, |s| s == SessionState::Expired).await;
    assert_eq!(
        within(LIMIT, "a's watch", a_watch.next()).await,
        Some(Err(Error::SessionExpired))
    );
    assert_eq!(a.exists("/n").await, Err(Error::SessionExpired));
    let s = seen(&mut a_states);
    assert_eq!(s.last(), Some(&SessionState::Expired), "{s:?}");
    assert!(!s.iter().any(|s| s.is_connected()), "{s:?}");

    // The default client: Expired reported, then Connected with a new session; its watch is
    // carried over and says it may have missed events.
    wait_state(&r, LIMIT, SessionState::is_connected).await;
    assert_ne!(r.session_id(), r_sid);
    assert_ne!(r.session_id(), 0);
    let s = seen(&mut r_states);
    let expired = s.iter().position(|s| *s == SessionState::Expired);
    assert!(expired.is_some(), "{s:?}");
    assert!(
        s[expired.unwrap()..].iter().any(|s| s.is_connected()),
        "{s:?}"
    );
    assert_eq!(
        within(LIMIT, "resync", r_watch.next()).await,
        Some(Ok(WatchItem::Resync))
    );
    // The old session's ephemeral is gone; the new session works and the watch fires.
    assert_eq!(r.exists("/eph").await.unwrap(), None);
    r.set_data("/n", b"1", None).await.unwrap();
    let ev = within(LIMIT, "event", r_watch.next()).await;
    assert_eq!(ev.unwrap().unwrap().event().unwrap().path, "/n");
    assert_ne!(a_sid, r.session_id());
    r.close().await.unwrap();
}

/// With the default options an expiry is reported, then a new session is connected, and a
/// one-shot watch asked for on the old session is carried over (`resynced`).
#[tokio::test]
async fn the_default_client_re_creates_its_session_after_expiry() {
    let server = Server::start().await.unwrap();
    let zk = Client::connect(&server.connect_string()).await.unwrap();
    let old = zk.session_id();
    zk.create("/n", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let (_, _, w) = zk.get_data_and_watch("/n").await.unwrap();
    let mut states = zk.state_changes();
    assert!(server.expire_session(old));
    let mut s = Vec::new();
    while !s.last().is_some_and(|s: &SessionState| s.is_connected()) {
        s.push(within(LIMIT, "states", states.next()).await.unwrap());
    }
    assert!(s.contains(&SessionState::Expired), "{s:?}");
    assert_ne!(zk.session_id(), old);
    assert!(w.resynced());
    let other = Client::connect(&server.connect_string()).await.unwrap();
    other.set_data("/n", b"1", None).await.unwrap();
    let ev = within(LIMIT, "carried watch", w).await.unwrap();
    assert_eq!(ev.path, "/n");
    zk.close().await.unwrap();
    other.close().await.unwrap();
}
