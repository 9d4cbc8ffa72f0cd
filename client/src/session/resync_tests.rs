//! Reconnects that may have missed events: persistent watchers are told to resync, and a
//! reconnect answered with another session id is an expiry.

use std::time::{Duration, Instant};

use super::tests::*;
use super::watches::{PendingWatch, Sink, WatchKind};
use super::*;

/// A connected session (id 0x42) with a persistent watch `p` on `/a` and a one-shot data watch
/// `o` on `/b`.
fn watched(now: Instant, recreate_on_expiry: bool) -> Session<T> {
    let mut s = session_with(now, recreate_on_expiry);
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    feed(&mut s, connect_response(30_000, 0x42), now).unwrap();
    let d = drain(&mut s);
    assert!(d.resyncs.is_empty(), "the first connection is no resync");
    s.watches.register(
        PendingWatch {
            path: "/a".into(),
            kind: WatchKind::Persistent,
            id: 1,
            sink: Sink::Persistent(probe("p")),
        },
        None,
    );
    s.watches
        .register(oneshot_watch("/b", WatchKind::Data, 2, "o"), None);
    s
}

fn reconnect(s: &mut Session<T>, granted: i64, now: Instant) -> Result<(), Error> {
    s.on_connection_lost();
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(s);
    feed(s, connect_response(30_000, granted), now)
}

/// The opcode of the first frame written after the handshake.
fn first_op(s: &mut Session<T>) -> i32 {
    let f = frames(s);
    RequestHeader::from_bytes(f[0].clone()).unwrap().op
}

#[test]
fn a_reattach_tells_every_persistent_watcher_to_resync() {
    let now = Instant::now();
    let mut s = watched(now, false);
    reconnect(&mut s, 0x42, now).unwrap();
    assert_eq!(first_op(&mut s), OpCode::SetWatches2.code());
    let d = drain(&mut s);
    assert_eq!(d.resyncs, vec!["p"]);
    assert!(
        d.watches.is_empty(),
        "one-shot watchers wait for the server"
    );
    assert_eq!(s.resyncs(), 1);
}

#[test]
fn another_session_id_on_reconnect_is_expiry() {
    let now = Instant::now();
    let mut s = watched(now, false);
    assert_eq!(reconnect(&mut s, 0x43, now), Err(Error::SessionExpired));
    let d = drain(&mut s);
    assert_eq!(
        d.states,
        vec![SessionState::Disconnected, SessionState::Expired]
    );
    assert_eq!(d.watch("p"), &Err(Error::SessionExpired));
    assert_eq!(d.watch("o"), &Err(Error::SessionExpired));
    assert!(d.resyncs.is_empty());
}

#[test]
fn with_recreation_another_session_id_is_adopted_and_watches_carried_over() {
    let now = Instant::now();
    let mut s = watched(now, true);
    reconnect(&mut s, 0x43, now).unwrap();
    assert_eq!(s.session_id(), 0x43);
    assert_eq!(first_op(&mut s), OpCode::SetWatches2.code());
    let d = drain(&mut s);
    assert_eq!(
        d.states,
        vec![
            SessionState::Disconnected,
            SessionState::Expired,
            SessionState::Connecting,
            SessionState::Connected
        ]
    );
    assert!(d.watches.is_empty(), "watchers live on: {:?}", d.watches);
    assert_eq!(d.resyncs, vec!["p"]);
}

#[test]
fn with_recreation_an_expired_session_keeps_its_watchers_for_the_next() {
    let now = Instant::now();
    let mut s = watched(now, true);
    // An expired answer (timeout 0).
    s.on_connection_lost();
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    assert_eq!(
        feed(&mut s, connect_response(0, 0), now),
        Err(Error::SessionExpired)
    );
    s.renew();
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    feed(&mut s, connect_response(30_000, 0x44), now).unwrap();
    assert_eq!(first_op(&mut s), OpCode::SetWatches2.code());
    let d = drain(&mut s);
    assert!(d.watches.is_empty());
    assert_eq!(d.resyncs, vec!["p"]);
}

#[test]
fn a_resumed_session_answered_with_another_id_fails_even_with_recreation() {
    let now = Instant::now();
    let mut s = session_with(now, true);
    s.resume(0x42, Bytes::from_static(&[7; 16]));
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    assert_eq!(
        feed(&mut s, connect_response(30_000, 0x43), now),
        Err(Error::SessionExpired)
    );
    assert_eq!(s.state(), SessionState::Expired);
}
