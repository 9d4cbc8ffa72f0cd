//! The session state machine driven by hand with a fake clock: no sockets, no real time, no
//! channels. Handles are probes; what the session emits is drained and inspected.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::watches::{PendingWatch, Sink, WatchKind};
use super::*;
use zkit_proto::frame::take_frame;
use zkit_proto::*;

/// The test's handle types: every handle is a [`Probe`].
#[derive(Debug)]
pub(super) struct T;

impl Handles for T {
    type Reply = Probe;
    type Oneshot = Probe;
    type Stream = Probe;
}

/// A named handle whose receiver can be "dropped".
#[derive(Debug, Clone)]
pub(super) struct Probe {
    pub(super) name: &'static str,
    pub(super) gone: Rc<Cell<bool>>,
}

impl Handle for Probe {
    fn is_dropped(&self) -> bool {
        self.gone.get()
    }
}

pub(super) fn probe(name: &'static str) -> Probe {
    Probe {
        name,
        gone: Rc::new(Cell::new(false)),
    }
}

/// What the session emitted, by kind, each in order.
#[derive(Debug, Default)]
pub(super) struct Drained {
    pub(super) replies: Vec<(&'static str, Result<Bytes, Error>)>,
    pub(super) watches: Vec<(&'static str, Result<RawEvent, Error>)>,
    pub(super) states: Vec<SessionState>,
    pub(super) resyncs: Vec<&'static str>,
}

impl Drained {
    fn reply(&self, name: &str) -> &Result<Bytes, Error> {
        let mut it = self.replies.iter().filter(|(n, _)| *n == name);
        let r = &it.next().unwrap_or_else(|| panic!("no reply for {name}")).1;
        assert!(it.next().is_none(), "{name} completed twice");
        r
    }
    pub(super) fn watch(&self, name: &str) -> &Result<RawEvent, Error> {
        &self
            .watches
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no watch event for {name}"))
            .1
    }
}

pub(super) fn drain(s: &mut Session<T>) -> Drained {
    let mut d = Drained::default();
    while let Some(e) = s.poll_event() {
        match e {
            Event::Reply { to, result } => d.replies.push((to.name, result)),
            Event::Watch {
                to: Sink::Oneshot(p) | Sink::Persistent(p),
                result,
            } => d.watches.push((p.name, result)),
            Event::State(st) => d.states.push(st),
            Event::Resync { to } => d.resyncs.push(to.name),
        }
    }
    d
}

pub(super) fn session(now: Instant) -> Session<T> {
    session_with(now, false)
}

pub(super) fn session_with(now: Instant, recreate_on_expiry: bool) -> Session<T> {
    Session::new(
        SessionConfig {
            timeout: Duration::from_secs(30),
            read_only: false,
            max_packet: 1 << 20,
            recreate_on_expiry,
        },
        now,
    )
}

/// Splits the session's output into frames.
pub(super) fn frames(s: &mut Session<T>) -> Vec<Bytes> {
    let mut b = BytesMut::from(&s.take_output().unwrap_or_default()[..]);
    let mut v = Vec::new();
    while let Some(f) = take_frame(&mut b, 1 << 20).unwrap() {
        v.push(f);
    }
    v
}

/// Feeds one frame (given without its length prefix) as bytes read from the connection.
pub(super) fn feed(s: &mut Session<T>, payload: Bytes, now: Instant) -> Result<(), Error> {
    let mut b = BytesMut::new();
    b.put_i32(payload.len() as i32);
    b.extend_from_slice(&payload);
    s.on_read(&mut b, now)
}

pub(super) fn connect_response(timeout: i32, id: i64) -> Bytes {
    ConnectResponse {
        protocol_version: 0,
        timeout,
        session_id: id,
        passwd: Bytes::from_static(&[7; 16]),
        read_only: Some(false),
    }
    .to_bytes()
}

pub(super) fn reply(xid: i32, zxid: i64, err: i32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    ReplyHeader { xid, zxid, err }.encode(&mut b);
    b.extend_from_slice(body);
    b.freeze()
}

fn path_watch(path: &str) -> PathWatchRequest {
    PathWatchRequest {
        path: path.into(),
        watch: false,
    }
}

fn request(name: &'static str, body: Body) -> (Request<T>, Probe) {
    let p = probe(name);
    (Request::new(body, None, p.clone()), p)
}

fn get_data(name: &'static str) -> (Request<T>, Probe) {
    request(name, Body::GetData(path_watch("/a")))
}

fn exists(name: &'static str) -> (Request<T>, Probe) {
    request(name, Body::Exists(path_watch("/a")))
}

fn set_data(name: &'static str) -> (Request<T>, Probe) {
    request(
        name,
        Body::Encoded {
            op: OpCode::SetData,
            record: SetDataRequest {
                path: "/a".into(),
                data: Some(Bytes::from_static(b"x")),
                version: -1,
            }
            .to_bytes(),
        },
    )
}

pub(super) fn oneshot_watch(
    path: &str,
    kind: WatchKind,
    id: u64,
    name: &'static str,
) -> PendingWatch<T> {
    PendingWatch {
        path: path.into(),
        kind,
        id,
        sink: Sink::Oneshot(probe(name)),
    }
}

pub(super) fn connected(now: Instant) -> Session<T> {
    let mut s = session(now);
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    feed(&mut s, connect_response(30_000, 0x42), now).unwrap();
    drain(&mut s);
    s
}

#[test]
fn handshake_then_queued_requests_in_order() {
    let now = Instant::now();
    let mut s = session(now);
    let (r1, _) = get_data("r1");
    let (r2, _) = exists("r2");
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
    feed(&mut s, connect_response(20_000, 0x42), now).unwrap();
    assert_eq!(s.state(), SessionState::Connected);
    assert_eq!(drain(&mut s).states, vec![SessionState::Connected]);
    assert_eq!(s.session_id(), 0x42);
    assert_eq!(s.negotiated_timeout(), Duration::from_secs(20));
    let f = frames(&mut s);
    let h: Vec<_> = f
        .iter()
        .map(|b| RequestHeader::from_bytes(b.clone()).unwrap())
        .collect();
    assert_eq!(h[0], RequestHeader { xid: 1, op: 4 });
    assert_eq!(h[1], RequestHeader { xid: 2, op: 3 });
    feed(&mut s, reply(1, 10, 0, &[]), now).unwrap();
    assert_eq!(s.last_zxid, 10);
    feed(&mut s, reply(2, 11, -101, &[]), now).unwrap();
    let d = drain(&mut s);
    assert!(d.reply("r1").is_ok());
    assert_eq!(d.reply("r2"), &Err(Error::NoNode));
    assert_eq!(s.last_zxid, 11);
    // The highest zxid seen is what the next handshake presents.
    s.on_connection_lost();
    s.begin_handshake(now, now + Duration::from_secs(10));
    let c = ConnectRequest::from_bytes(frames(&mut s)[0].clone()).unwrap();
    assert_eq!(c.last_zxid_seen, 11);
}

#[test]
fn out_of_order_reply_drops_the_connection() {
    let now = Instant::now();
    let mut s = connected(now);
    let (r1, _) = get_data("r1");
    s.submit(r1);
    frames(&mut s);
    assert!(feed(&mut s, reply(9, 1, 0, &[]), now).is_err());
    assert_eq!(drain(&mut s).reply("r1"), &Err(Error::ConnectionLoss));
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
    feed(&mut s, reply(-2, 5, 0, &[]), t0 + Duration::from_secs(15)).unwrap();
    assert!(s.on_timer(t0 + Duration::from_secs(21)).is_ok());
}

#[test]
fn expired_handshake_fails_requests_and_watchers() {
    let now = Instant::now();
    let mut s = connected(now);
    s.watches
        .register(oneshot_watch("/a", WatchKind::Data, 1, "w"), None);
    s.on_connection_lost();
    assert_eq!(s.state(), SessionState::Disconnected);
    let (r, _) = get_data("r");
    s.submit(r);
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    assert_eq!(
        feed(&mut s, connect_response(0, 0), now),
        Err(Error::SessionExpired)
    );
    assert_eq!(s.state(), SessionState::Expired);
    let d = drain(&mut s);
    assert_eq!(d.reply("r"), &Err(Error::SessionExpired));
    assert_eq!(d.watch("w"), &Err(Error::SessionExpired));
    assert_eq!(
        d.states,
        vec![SessionState::Disconnected, SessionState::Expired]
    );
    let (r, _) = get_data("later");
    s.submit(r);
    assert_eq!(drain(&mut s).reply("later"), &Err(Error::SessionExpired));
}

#[test]
fn reconnect_resends_watches_then_auth_then_requests() {
    let now = Instant::now();
    let mut s = connected(now);
    s.watches
        .register(oneshot_watch("/w", WatchKind::Data, 1, "w"), None);
    s.add_auth("digest".into(), Bytes::from_static(b"u:p"), probe("auth"));
    let (r, _) = get_data("r");
    s.submit(r);
    frames(&mut s);
    feed(&mut s, reply(-4, 0, 0, &[]), now).unwrap();
    feed(&mut s, reply(1, 77, 0, &[]), now).unwrap();
    let d = drain(&mut s);
    assert_eq!(d.reply("auth"), &Ok(Bytes::new()));
    s.on_connection_lost();
    let (r, _) = exists("r2");
    s.submit(r);
    s.begin_handshake(now, now + Duration::from_secs(10));
    let f = frames(&mut s);
    let c = ConnectRequest::from_bytes(f[0].clone()).unwrap();
    assert_eq!((c.session_id, c.last_zxid_seen), (0x42, 77));
    assert_eq!(&c.passwd[..], &[7; 16]);
    feed(&mut s, connect_response(30_000, 0x42), now).unwrap();
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
    // The replayed auth's answer goes to nobody: its caller was answered the first time.
    feed(&mut s, reply(-4, 0, 0, &[]), now).unwrap();
    assert!(drain(&mut s).replies.is_empty());
}

#[test]
fn auth_is_replayed_in_the_order_it_was_added_and_answers_its_own_caller() {
    let now = Instant::now();
    let mut s = connected(now);
    s.add_auth("digest".into(), Bytes::from_static(b"a:1"), probe("a"));
    frames(&mut s);
    s.on_connection_lost();
    // `a` was sent and not answered: the connection loss is its answer.
    assert_eq!(drain(&mut s).reply("a"), &Err(Error::ConnectionLoss));
    s.add_auth("digest".into(), Bytes::from_static(b"b:2"), probe("b"));
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    feed(&mut s, connect_response(30_000, 0x42), now).unwrap();
    let schemes: Vec<Bytes> = frames(&mut s)
        .into_iter()
        .map(|f| {
            let mut r = Reader::new(f);
            assert_eq!(RequestHeader::decode(&mut r).unwrap().xid, -4);
            AuthPacket::decode(&mut r).unwrap().auth
        })
        .collect();
    assert_eq!(schemes, vec![&b"a:1"[..], &b"b:2"[..]]);
    // The first answer is `a`'s (nobody waits any more), the second is `b`'s.
    feed(&mut s, reply(-4, 0, 0, &[]), now).unwrap();
    assert!(drain(&mut s).replies.is_empty());
    feed(&mut s, reply(-4, 0, -102, &[]), now).unwrap();
    assert_eq!(drain(&mut s).reply("b"), &Err(Error::NoAuth));
}

#[test]
fn notification_is_delivered_before_the_reply_that_follows_it() {
    let now = Instant::now();
    let mut s = connected(now);
    s.watches
        .register(oneshot_watch("/a", WatchKind::Data, 1, "w"), None);
    let (r, _) = set_data("r");
    s.submit(r);
    frames(&mut s);
    let ev = WatcherEvent {
        event_type: 3,
        state: 3,
        path: "/a".into(),
    }
    .to_bytes();
    feed(&mut s, reply(-1, -1, 0, &ev), now).unwrap();
    let d = drain(&mut s);
    assert!(d.replies.is_empty(), "reply not yet received");
    assert_eq!(
        d.watch("w").as_ref().unwrap().event_type,
        EventType::NodeDataChanged
    );
    // Both in one read: the event still comes out first.
    let (r2, _) = set_data("r2");
    s.submit(r2);
    s.watches
        .register(oneshot_watch("/a", WatchKind::Data, 2, "w2"), None);
    let mut b = BytesMut::new();
    for f in [
        reply(-1, -1, 0, &ev),
        reply(1, 5, 0, &[]),
        reply(2, 6, 0, &[]),
    ] {
        b.put_i32(f.len() as i32);
        b.extend_from_slice(&f);
    }
    s.on_read(&mut b, now).unwrap();
    let order: Vec<_> = std::iter::from_fn(|| s.poll_event())
        .map(|e| match e {
            Event::Reply { to, .. } => to.name,
            Event::Watch {
                to: Sink::Oneshot(p),
                ..
            } => p.name,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, vec!["w2", "r", "r2"]);
}

#[test]
fn auth_failure_is_fatal() {
    let now = Instant::now();
    let mut s = connected(now);
    s.add_auth("digest".into(), Bytes::from_static(b"u:p"), probe("auth"));
    frames(&mut s);
    assert_eq!(
        feed(&mut s, reply(-4, 0, -115, &[]), now),
        Err(Error::AuthFailed)
    );
    assert_eq!(s.state(), SessionState::AuthFailed);
    let d = drain(&mut s);
    assert_eq!(d.reply("auth"), &Err(Error::AuthFailed));
    assert_eq!(d.states, vec![SessionState::AuthFailed]);
}

#[test]
fn client_side_expiry_after_four_thirds_of_the_timeout() {
    let t0 = Instant::now();
    let mut s = connected(t0);
    s.on_connection_lost();
    assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(40)));
    assert!(!s.check_local_expiry(t0 + Duration::from_secs(39)));
    assert_eq!(s.on_timer(t0 + Duration::from_secs(39)), Ok(()));
    assert!(s.check_local_expiry(t0 + Duration::from_secs(40)));
    assert_eq!(s.state(), SessionState::Expired);
    assert_eq!(s.next_deadline(), None);
    // The same through the timer.
    let mut s = connected(t0);
    s.on_connection_lost();
    assert_eq!(
        s.on_timer(t0 + Duration::from_secs(40)),
        Err(Error::SessionExpired)
    );
    assert_eq!(s.state(), SessionState::Expired);
}

#[test]
fn close_sends_close_session_and_ends_on_the_reply() {
    let now = Instant::now();
    let mut s = connected(now);
    s.close(Some(probe("close")));
    let f = frames(&mut s);
    assert_eq!(
        RequestHeader::from_bytes(f[0].clone()).unwrap(),
        RequestHeader { xid: 1, op: -11 }
    );
    let (r, _) = get_data("r");
    s.submit(r);
    assert_eq!(drain(&mut s).reply("r"), &Err(Error::Closed));
    feed(&mut s, reply(1, 9, 0, &[]), now).unwrap();
    assert_eq!(s.state(), SessionState::Closed);
    let d = drain(&mut s);
    assert!(d.reply("close").is_ok());
    assert_eq!(d.states, vec![SessionState::Closed]);
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let now = Instant::now();
    let mut s = connected(now);
    for junk in [&[][..], &[0, 0, 0], &[0xff, 0xff, 0xff, 0xff, 0, 0]] {
        assert!(feed(&mut s, Bytes::copy_from_slice(junk), now).is_err());
    }
    let mut s = session(now);
    s.begin_handshake(now, now + Duration::from_secs(1));
    assert!(feed(&mut s, Bytes::from_static(&[1, 2]), now).is_err());
    // Bad framing: a negative or oversized length.
    let mut s = connected(now);
    for len in [-1i32, 2 << 20] {
        let mut b = BytesMut::new();
        b.put_i32(len);
        assert!(matches!(s.on_read(&mut b, now), Err(Error::Protocol(_))));
    }
    // A partial frame waits for the rest.
    let mut b = BytesMut::from(&[0u8, 0, 0, 16, 0, 0][..]);
    assert_eq!(s.on_read(&mut b, now), Ok(()));
    assert_eq!(b.len(), 6);
}

#[test]
fn reconnecting_an_existing_session_stays_disconnected_until_connected() {
    let now = Instant::now();
    let mut s = connected(now);
    s.on_connection_lost();
    assert_eq!(s.state(), SessionState::Disconnected);
    s.begin_handshake(now, now + Duration::from_secs(10));
    assert_eq!(s.state(), SessionState::Disconnected);
    feed(&mut s, connect_response(30_000, 0x42), now).unwrap();
    assert_eq!(s.state(), SessionState::Connected);
    assert_eq!(
        drain(&mut s).states,
        vec![SessionState::Disconnected, SessionState::Connected]
    );
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
fn a_handshake_past_its_deadline_drops_the_connection() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.begin_handshake(t0, t0 + Duration::from_secs(5));
    assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(5)));
    assert_eq!(s.on_timer(t0 + Duration::from_secs(4)), Ok(()));
    assert_eq!(
        s.on_timer(t0 + Duration::from_secs(5)),
        Err(Error::ConnectionLoss)
    );
    assert_eq!(s.state(), SessionState::Connecting);
}

#[test]
fn a_queued_request_its_caller_abandoned_is_not_sent_after_reconnect() {
    let now = Instant::now();
    let mut s = connected(now);
    s.on_connection_lost();
    let (kept, _keep) = exists("kept");
    let (abandoned, gone) = set_data("abandoned");
    s.submit(abandoned);
    s.submit(kept);
    gone.gone.set(true); // the caller's request timeout fired while we were away
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    feed(&mut s, connect_response(30_000, 0x42), now).unwrap();
    let f = frames(&mut s);
    let ops: Vec<i32> = f
        .iter()
        .map(|b| RequestHeader::from_bytes(b.clone()).unwrap().op)
        .collect();
    assert_eq!(ops, vec![OpCode::Exists.code()]);
}

#[test]
fn the_watch_flag_follows_the_request_and_yields_to_a_persistent_watch() {
    let now = Instant::now();
    let mut s = connected(now);
    let flag = |s: &mut Session<T>| {
        let mut r = Reader::new(frames(s).remove(0));
        RequestHeader::decode(&mut r).unwrap();
        PathWatchRequest::decode(&mut r).unwrap().watch
    };
    let (plain, _) = get_data("plain");
    s.submit(plain);
    assert!(!flag(&mut s));
    let p = probe("w");
    s.submit(Request::new(
        Body::GetData(path_watch("/a")),
        Some(oneshot_watch("/a", WatchKind::Data, 1, "w")),
        p,
    ));
    assert!(flag(&mut s));
    // With a persistent watch on the path, the one-shot is kept locally only: ZooKeeper 3.6-3.8
    // would replace the persistent watch by it.
    s.watches.register(
        PendingWatch {
            path: "/a".into(),
            kind: WatchKind::Persistent,
            id: 2,
            sink: Sink::Persistent(probe("p")),
        },
        None,
    );
    s.submit(Request::new(
        Body::GetData(path_watch("/a")),
        Some(oneshot_watch("/a", WatchKind::Data, 3, "w3")),
        probe("r3"),
    ));
    assert!(!flag(&mut s));
}

#[test]
fn a_watcher_dropped_before_its_reply_is_removed_on_the_server() {
    let now = Instant::now();
    let mut s = connected(now);
    let w = oneshot_watch("/a", WatchKind::Data, 1, "w");
    let Sink::Oneshot(handle) = &w.sink else {
        unreachable!()
    };
    let handle = handle.clone();
    s.submit(Request::new(
        Body::GetData(path_watch("/a")),
        Some(w),
        probe("r"),
    ));
    frames(&mut s);
    // The watcher goes away while the request is in flight: nothing registered to remove yet.
    handle.gone.set(true);
    s.unwatch("/a", WatchKind::Data, 1);
    assert!(frames(&mut s).is_empty());
    feed(
        &mut s,
        reply(1, 3, 0, &GetDataResponse::default().to_bytes()),
        now,
    )
    .unwrap();
    assert!(drain(&mut s).reply("r").is_ok());
    let f = frames(&mut s);
    let mut r = Reader::new(f[0].clone());
    assert_eq!(RequestHeader::decode(&mut r).unwrap().op, 18);
    let req = WatchesRequest::decode(&mut r).unwrap();
    assert_eq!(
        (req.path.as_str(), req.watcher_type),
        ("/a", WatcherType::Data.code())
    );
    assert!(s.watches.is_empty());
}

#[test]
fn renewing_after_expiry_starts_a_new_session_from_connecting() {
    let t0 = Instant::now();
    let mut s = connected(t0);
    s.on_connection_lost();
    assert_eq!(
        s.on_timer(t0 + Duration::from_secs(40)),
        Err(Error::SessionExpired)
    );
    s.renew();
    assert_eq!(
        drain(&mut s).states,
        vec![
            SessionState::Disconnected,
            SessionState::Expired,
            SessionState::Connecting
        ]
    );
    assert_eq!(s.session_id(), 0);
    s.begin_handshake(t0, t0 + Duration::from_secs(10));
    let c = ConnectRequest::from_bytes(frames(&mut s)[0].clone()).unwrap();
    assert_eq!((c.session_id, &c.passwd[..]), (0, &[0u8; 16][..]));
}

#[test]
fn a_persistent_watcher_dropped_as_an_event_arrives_is_still_removed_on_the_server() {
    let now = Instant::now();
    let mut s = connected(now);
    let p = probe("p");
    s.submit(Request::new(
        Body::AddWatch(AddWatchRequest {
            path: "/a".into(),
            mode: AddWatchMode::Persistent.code(),
        }),
        Some(PendingWatch {
            path: "/a".into(),
            kind: WatchKind::Persistent,
            id: 1,
            sink: Sink::Persistent(p.clone()),
        }),
        probe("r"),
    ));
    frames(&mut s);
    feed(&mut s, reply(1, 3, 0, &[0, 0, 0, 0]), now).unwrap();
    assert!(drain(&mut s).reply("r").is_ok());
    // The watcher is dropped; an event for its path is read before its unregistration.
    p.gone.set(true);
    let ev = WatcherEvent {
        event_type: EventType::NodeDataChanged.code(),
        state: 3,
        path: "/a".into(),
    }
    .to_bytes();
    feed(&mut s, reply(-1, -1, 0, &ev), now).unwrap();
    s.unwatch("/a", WatchKind::Persistent, 1);
    let f = frames(&mut s);
    assert_eq!(f.len(), 1, "one removeWatches");
    let mut r = Reader::new(f[0].clone());
    assert_eq!(
        RequestHeader::decode(&mut r).unwrap().op,
        OpCode::RemoveWatches.code()
    );
    let req = WatchesRequest::decode(&mut r).unwrap();
    assert_eq!(
        (req.path.as_str(), req.watcher_type),
        ("/a", WatcherType::Any.code())
    );
    assert!(s.watches.is_empty());
}

#[test]
fn an_add_watch_in_flight_covers_a_one_shot_on_its_path_until_it_is_answered() {
    let now = Instant::now();
    let mut s = connected(now);
    let flag = |s: &mut Session<T>| {
        let mut r = Reader::new(frames(s).pop().unwrap());
        RequestHeader::decode(&mut r).unwrap();
        PathWatchRequest::decode(&mut r).unwrap().watch
    };
    let add_watch = |name| {
        Request::new(
            Body::AddWatch(AddWatchRequest {
                path: "/a".into(),
                mode: AddWatchMode::PersistentRecursive.code(),
            }),
            Some(PendingWatch {
                path: "/a".into(),
                kind: WatchKind::PersistentRecursive,
                id: 1,
                sink: Sink::Persistent(probe(name)),
            }),
            probe("r"),
        )
    };
    let one_shot = |kind, id| {
        Request::new(
            if kind == WatchKind::Child {
                Body::GetChildren2(path_watch("/a"))
            } else {
                Body::GetData(path_watch("/a"))
            },
            Some(oneshot_watch("/a", kind, id, "w")),
            probe("g"),
        )
    };
    s.submit(add_watch("p"));
    s.submit(one_shot(WatchKind::Data, 2));
    assert!(!flag(&mut s), "the addWatch ahead brings the events");
    // A recursive watch brings no NodeChildrenChanged: a child watch is still asked for.
    s.submit(one_shot(WatchKind::Child, 3));
    assert!(flag(&mut s));
    // Once the connection is lost nothing is in flight any more.
    s.on_connection_lost();
    s.begin_handshake(now, now + Duration::from_secs(10));
    frames(&mut s);
    feed(&mut s, connect_response(30_000, 0x42), now).unwrap();
    frames(&mut s);
    s.submit(one_shot(WatchKind::Data, 4));
    assert!(flag(&mut s));
}

#[test]
fn a_session_only_a_read_only_server_accepted_is_not_resumed() {
    let now = Instant::now();
    let handshake_id = |s: &mut Session<T>| {
        s.begin_handshake(now, now + Duration::from_secs(10));
        let f = frames(s).remove(0);
        ConnectRequest::from_bytes(f).unwrap().session_id
    };
    let mut s = session(now);
    assert_eq!(handshake_id(&mut s), 0);
    let ro = ConnectResponse {
        protocol_version: 0,
        timeout: 30_000,
        session_id: 0x51,
        passwd: Bytes::from_static(&[7; 16]),
        read_only: Some(true),
    };
    feed(&mut s, ro.to_bytes(), now).unwrap();
    assert_eq!(s.state(), SessionState::ConnectedReadOnly);
    s.on_connection_lost();
    // The read-only server's session is unknown to the quorum: ask for a new one.
    assert_eq!(handshake_id(&mut s), 0);
    feed(&mut s, connect_response(30_000, 0x42), now).unwrap();
    assert_eq!(s.state(), SessionState::Connected);
    s.on_connection_lost();
    // Accepted read-write once: from now on the session is resumed, even read-only.
    assert_eq!(handshake_id(&mut s), 0x42);
    let ro_resumed = ConnectResponse {
        session_id: 0x42,
        ..ro
    };
    feed(&mut s, ro_resumed.to_bytes(), now).unwrap();
    assert_eq!(s.state(), SessionState::ConnectedReadOnly);
    s.on_connection_lost();
    assert_eq!(handshake_id(&mut s), 0x42);
}
