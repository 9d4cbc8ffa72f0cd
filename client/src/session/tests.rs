//! The session state machine driven by hand with a fake clock: no sockets, no real time.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::watches::{PendingWatch, Sink, WatchKind};
use super::*;
use zkit_proto::frame::take_frame;
use zkit_proto::*;

fn session(now: Instant) -> Session {
    Session::new(
        SessionConfig {
            timeout: Duration::from_secs(30),
            read_only: false,
        },
        StateTx::new(),
        now,
    )
}

/// Splits the session's output into frames.
fn frames(s: &mut Session) -> Vec<Bytes> {
    let mut b = BytesMut::from(&s.take_output().unwrap_or_default()[..]);
    let mut v = Vec::new();
    while let Some(f) = take_frame(&mut b, 1 << 20).unwrap() {
        v.push(f);
    }
    v
}

fn connect_response(timeout: i32, id: i64) -> Bytes {
    ConnectResponse {
        protocol_version: 0,
        timeout,
        session_id: id,
        passwd: Bytes::from_static(&[7; 16]),
        read_only: Some(false),
    }
    .to_bytes()
}

fn reply(xid: i32, zxid: i64, err: i32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    ReplyHeader { xid, zxid, err }.encode(&mut b);
    b.extend_from_slice(body);
    b.freeze()
}

fn request(op: OpCode) -> (Request, oneshot::Receiver<Result<Reply, Error>>) {
    let (tx, rx) = oneshot::channel();
    (
        Request {
            op,
            body: PathWatchRequest {
                path: "/a".into(),
                watch: false,
            }
            .to_bytes(),
            watch: None,
            responder: Some(tx),
        },
        rx,
    )
}

fn connected(now: Instant) -> Session {
    let mut s = session(now);
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    s.on_frame(connect_response(30_000, 0x42), now).unwrap();
    s
}

#[test]
fn handshake_then_queued_requests_in_order() {
    let now = Instant::now();
    let mut s = session(now);
    let (r1, mut rx1) = request(OpCode::GetData);
    let (r2, mut rx2) = request(OpCode::Exists);
    s.submit(r1);
    s.submit(r2);
    s.begin_handshake(now, now + Duration::from_secs(10));
    let f = frames(&mut s);
    assert_eq!(
        f.len(),
        1,
        "only the ConnectRequest before the handshake completes"
    );
    assert_eq!(f[0].len(), 45);
    s.on_frame(connect_response(20_000, 0x42), now).unwrap();
    assert_eq!(s.state(), SessionState::Connected);
    assert_eq!(s.session_id(), 0x42);
    assert_eq!(s.negotiated_timeout(), Duration::from_secs(20));
    let f = frames(&mut s);
    let h: Vec<_> = f
        .iter()
        .map(|b| RequestHeader::from_bytes(b.clone()).unwrap())
        .collect();
    assert_eq!(h[0], RequestHeader { xid: 1, op: 4 });
    assert_eq!(h[1], RequestHeader { xid: 2, op: 3 });
    s.on_frame(reply(1, 10, 0, &[]), now).unwrap();
    s.on_frame(reply(2, 11, -101, &[]), now).unwrap();
    assert_eq!(rx1.try_recv().unwrap().unwrap().zxid, 10);
    assert_eq!(rx2.try_recv().unwrap().unwrap().err, -101);
    assert_eq!(s.last_zxid(), 11);
}

#[test]
fn out_of_order_reply_drops_the_connection() {
    let now = Instant::now();
    let mut s = connected(now);
    let (r1, mut rx1) = request(OpCode::GetData);
    s.submit(r1);
    frames(&mut s);
    assert!(s.on_frame(reply(9, 1, 0, &[]), now).is_err());
    assert_eq!(rx1.try_recv().unwrap().unwrap_err(), Error::ConnectionLoss);
}

#[test]
fn pings_at_a_third_and_gives_up_at_two_thirds() {
    let t0 = Instant::now();
    let mut s = connected(t0);
    frames(&mut s);
    s.on_sent(t0);
    // 30 s session: read timeout 20 s, ping after 10 s idle.
    assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(10)));
    s.on_timer(t0 + Duration::from_secs(9)).unwrap();
    assert!(frames(&mut s).is_empty());
    s.on_timer(t0 + Duration::from_secs(10)).unwrap();
    let f = frames(&mut s);
    assert_eq!(
        RequestHeader::from_bytes(f[0].clone()).unwrap(),
        RequestHeader { xid: -2, op: 11 }
    );
    assert_eq!(
        s.on_timer(t0 + Duration::from_secs(20)),
        Err(Error::ConnectionLoss)
    );
}

#[test]
fn a_ping_reply_keeps_the_connection_alive() {
    let t0 = Instant::now();
    let mut s = connected(t0);
    s.on_frame(reply(-2, 5, 0, &[]), t0 + Duration::from_secs(15))
        .unwrap();
    assert!(s.on_timer(t0 + Duration::from_secs(21)).is_ok());
}

#[test]
fn expired_handshake_fails_requests_and_watchers() {
    let now = Instant::now();
    let mut s = connected(now);
    let (tx, mut wrx) = oneshot::channel();
    s.watches.register(
        PendingWatch {
            path: "/a".into(),
            kind: WatchKind::Data,
            id: 1,
            sink: Sink::Oneshot(tx),
        },
        None,
    );
    s.on_connection_lost();
    assert_eq!(s.state(), SessionState::Disconnected);
    let (r, mut rx) = request(OpCode::GetData);
    s.submit(r);
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    assert_eq!(
        s.on_frame(connect_response(0, 0), now),
        Err(Error::SessionExpired)
    );
    assert_eq!(s.state(), SessionState::Expired);
    assert_eq!(rx.try_recv().unwrap().unwrap_err(), Error::SessionExpired);
    assert_eq!(wrx.try_recv().unwrap().unwrap_err(), Error::SessionExpired);
    let (r, mut rx) = request(OpCode::GetData);
    s.submit(r);
    assert_eq!(rx.try_recv().unwrap().unwrap_err(), Error::SessionExpired);
}

#[test]
fn reconnect_resends_watches_then_auth_then_requests() {
    let now = Instant::now();
    let mut s = connected(now);
    let (wtx, _w) = oneshot::channel();
    s.watches.register(
        PendingWatch {
            path: "/w".into(),
            kind: WatchKind::Data,
            id: 1,
            sink: Sink::Oneshot(wtx),
        },
        None,
    );
    let (atx, _a) = oneshot::channel();
    s.add_auth("digest".into(), Bytes::from_static(b"u:p"), atx);
    let (r, _rx) = request(OpCode::GetData);
    s.submit(r);
    frames(&mut s);
    s.on_frame(reply(-4, 0, 0, &[]), now).unwrap();
    s.on_frame(reply(1, 77, 0, &[]), now).unwrap();
    s.on_connection_lost();
    let (r, _rx2) = request(OpCode::Exists);
    s.submit(r);
    s.begin_handshake(now, now + Duration::from_secs(10));
    let f = frames(&mut s);
    let c = ConnectRequest::from_bytes(f[0].clone()).unwrap();
    assert_eq!((c.session_id, c.last_zxid_seen), (0x42, 77));
    assert_eq!(&c.passwd[..], &[7; 16]);
    s.on_frame(connect_response(30_000, 0x42), now).unwrap();
    let f = frames(&mut s);
    let mut rd = Reader::new(f[0].clone());
    assert_eq!(
        RequestHeader::decode(&mut rd).unwrap(),
        RequestHeader { xid: -8, op: 101 }
    );
    let sw = SetWatches::decode(&mut rd).unwrap();
    assert_eq!(sw.relative_zxid, 77);
    assert_eq!(sw.data_watches, vec!["/w".to_string()]);
    assert_eq!(
        RequestHeader::from_bytes(f[1].clone()).unwrap(),
        RequestHeader { xid: -4, op: 100 }
    );
    assert_eq!(RequestHeader::from_bytes(f[2].clone()).unwrap().op, 3);
}

#[test]
fn notification_is_delivered_before_the_reply_that_follows_it() {
    let now = Instant::now();
    let mut s = connected(now);
    let (wtx, mut wrx) = oneshot::channel();
    s.watches.register(
        PendingWatch {
            path: "/a".into(),
            kind: WatchKind::Data,
            id: 1,
            sink: Sink::Oneshot(wtx),
        },
        None,
    );
    let (r, mut rx) = request(OpCode::SetData);
    s.submit(r);
    frames(&mut s);
    let ev = WatcherEvent {
        event_type: 3,
        state: 3,
        path: "/a".into(),
    }
    .to_bytes();
    s.on_frame(reply(-1, -1, 0, &ev), now).unwrap();
    assert!(rx.try_recv().is_err(), "reply not yet received");
    assert_eq!(
        wrx.try_recv().unwrap().unwrap().event_type,
        EventType::NodeDataChanged
    );
    s.on_frame(reply(1, 5, 0, &[]), now).unwrap();
    assert!(rx.try_recv().is_ok());
}

#[test]
fn auth_failure_is_fatal() {
    let now = Instant::now();
    let mut s = connected(now);
    let (atx, mut arx) = oneshot::channel();
    s.add_auth("digest".into(), Bytes::from_static(b"u:p"), atx);
    frames(&mut s);
    assert_eq!(
        s.on_frame(reply(-4, 0, -115, &[]), now),
        Err(Error::AuthFailed)
    );
    assert_eq!(s.state(), SessionState::AuthFailed);
    assert_eq!(arx.try_recv().unwrap().unwrap_err(), Error::AuthFailed);
}

#[test]
fn client_side_expiry_after_four_thirds_of_the_timeout() {
    let t0 = Instant::now();
    let mut s = connected(t0);
    s.on_connection_lost();
    assert!(!s.check_local_expiry(t0 + Duration::from_secs(39)));
    assert!(s.check_local_expiry(t0 + Duration::from_secs(40)));
    assert_eq!(s.state(), SessionState::Expired);
}

#[test]
fn close_sends_close_session_and_ends_on_the_reply() {
    let now = Instant::now();
    let mut s = connected(now);
    let (tx, mut rx) = oneshot::channel();
    s.close(tx);
    let f = frames(&mut s);
    assert_eq!(
        RequestHeader::from_bytes(f[0].clone()).unwrap(),
        RequestHeader { xid: 1, op: -11 }
    );
    let (r, mut rrx) = request(OpCode::GetData);
    s.submit(r);
    assert_eq!(rrx.try_recv().unwrap().unwrap_err(), Error::Closed);
    s.on_frame(reply(1, 9, 0, &[]), now).unwrap();
    assert_eq!(s.state(), SessionState::Closed);
    assert!(rx.try_recv().unwrap().is_ok());
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let now = Instant::now();
    let mut s = connected(now);
    for junk in [&[][..], &[0, 0, 0], &[0xff, 0xff, 0xff, 0xff, 0, 0]] {
        assert!(s.on_frame(Bytes::copy_from_slice(junk), now).is_err());
    }
    let mut s = session(now);
    s.begin_handshake(now, now + Duration::from_secs(1));
    assert!(s.on_frame(Bytes::from_static(&[1, 2]), now).is_err());
}

#[test]
fn reconnecting_an_existing_session_stays_disconnected_until_connected() {
    let now = Instant::now();
    let mut s = connected(now);
    s.on_connection_lost();
    assert_eq!(s.state(), SessionState::Disconnected);
    s.begin_handshake(now, now + Duration::from_secs(10));
    assert_eq!(s.state(), SessionState::Disconnected);
    s.on_frame(connect_response(30_000, 0x42), now).unwrap();
    assert_eq!(s.state(), SessionState::Connected);
}

#[test]
fn local_expiry_fires_while_a_handshake_is_still_unanswered() {
    // ZOOKEEPER-4508 counts silence on any connection: a server that accepts TCP but never
    // answers the handshake must not keep the session alive past 4/3 of its timeout.
    let t0 = Instant::now();
    let mut s = connected(t0);
    s.on_connection_lost();
    let t1 = t0 + Duration::from_secs(21);
    s.begin_handshake(t1, t1 + Duration::from_secs(30));
    frames(&mut s);
    let expiry = t0 + Duration::from_secs(40);
    assert_eq!(s.next_deadline(), Some(expiry));
    assert_eq!(s.on_timer(expiry), Err(Error::SessionExpired));
    assert_eq!(s.state(), SessionState::Expired);
}

#[test]
fn a_queued_request_its_caller_abandoned_is_not_sent_after_reconnect() {
    let now = Instant::now();
    let mut s = connected(now);
    s.on_connection_lost();
    let (kept, _keep_rx) = request(OpCode::Exists);
    let (abandoned, rx) = request(OpCode::SetData);
    s.submit(abandoned);
    s.submit(kept);
    drop(rx); // the caller's request timeout fired while we were away
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    s.on_frame(connect_response(30_000, 0x42), now).unwrap();
    let f = frames(&mut s);
    let ops: Vec<i32> = f
        .iter()
        .map(|b| RequestHeader::from_bytes(b.clone()).unwrap().op)
        .collect();
    assert_eq!(ops, vec![OpCode::Exists.code()]);
}
