//! The client session as a sans-IO state machine, in the shape of raft-rs's `RawNode`.
//!
//! [`Session`] is fed what happens — bytes read from the connection ([`Session::on_read`]), the
//! caller's requests ([`Session::submit`]), the passing of time ([`Session::on_timer`]) — and
//! produces what must happen next: bytes to write ([`Session::take_output`]), [`Event`]s to
//! deliver (a request's reply, a watch event, a state change; [`Session::poll_event`]) and the
//! instant it wants to be woken at ([`Session::next_deadline`]). The driver owns the socket, the
//! clock and the channels; the session never touches any of them, so every rule here is
//! unit-tested with a fake clock.
//!
//! The caller's handles (whatever completes a request or receives a watch event) are opaque to
//! the session: it stores them, asks whether their receiver is gone ([`Handle`]), and hands them
//! back inside its events.

mod request;
mod sasl;
mod state;
pub mod watches;

use std::collections::VecDeque;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::error::Error;
pub use request::{Body, Create, Request};
pub use state::SessionState;
use watches::{PendingWatch, RawEvent, Sink, WatchKind, WatchRegistry};
use zkit_proto::frame::{begin_frame, end_frame, take_frame, write_record};
use zkit_proto::{
    xid, AuthPacket, ConnectRequest, ConnectResponse, ErrorCode, EventType, OpCode, Reader, Record,
    ReplyHeader, RequestHeader, SetWatches, SetWatches2, WatcherEvent, WatcherType, WatchesRequest,
};

/// A caller-side handle the session keeps until it has something to deliver to it.
pub trait Handle: Debug {
    /// Whether the receiving side is gone (the caller dropped its future or watcher).
    fn is_dropped(&self) -> bool;
}

/// The handle types a driver gives the session.
pub trait Handles: Debug {
    /// Completes one request (or one auth) with its reply body or error.
    type Reply: Handle;
    /// Receives the event of one one-shot watch.
    type Oneshot: Handle;
    /// Receives the events of one persistent watch; cloned for each event.
    type Stream: Handle + Clone;
}

/// Something the driver must deliver, in the order the session produced them.
#[derive(Debug)]
pub enum Event<H: Handles> {
    /// A request (or auth) finished: the reply's record bytes, or why it failed.
    Reply {
        /// The caller's handle.
        to: H::Reply,
        /// The reply record (empty for record-less replies), or the error.
        result: Result<Bytes, Error>,
    },
    /// A watcher's event, or the error that ended it.
    Watch {
        /// The watcher's handle.
        to: Sink<H>,
        /// The event, or why the watch ended.
        result: Result<RawEvent, Error>,
    },
    /// The session moved to a new state.
    State(SessionState),
    /// A persistent watcher's watch was carried over a reconnect (or into the session that
    /// replaced an expired one): events may have been missed meanwhile (ZOOKEEPER-4698).
    Resync {
        /// The watcher's handle.
        to: H::Stream,
    },
}

#[derive(Debug)]
struct Inflight<H: Handles> {
    xid: i32,
    op: OpCode,
    watch: Option<PendingWatch<H>>,
    reply: Option<H::Reply>,
}

/// An auth credential: replayed after every reconnect, in the order it was added.
#[derive(Debug)]
struct Auth<H: Handles> {
    scheme: String,
    data: Bytes,
    /// The caller of `add_auth`, until the server has answered (or the attempt failed).
    waiter: Option<H::Reply>,
    /// Sent on the current connection, answer not received yet. Auth answers come back in the
    /// order the packets went out, so an answer belongs to the first entry with this set.
    unanswered: bool,
}

/// Static session parameters.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Requested session timeout.
    pub timeout: Duration,
    /// Whether a read-only server is acceptable.
    pub read_only: bool,
    /// Largest frame accepted from the server.
    pub max_packet: usize,
    /// A new session replaces an expired one: watches are kept for it instead of ended.
    pub recreate_on_expiry: bool,
}

/// SetWatches batches stay under this much path text, like the Java client (~128 KiB).
const SET_WATCHES_MAX_BYTES: usize = 128 * 1024;
/// Pings are sent at least this often when the connection is idle (Java's MAX_SEND_PING_INTERVAL).
const MAX_PING_INTERVAL: Duration = Duration::from_secs(10);

/// The sans-IO client session.
#[derive(Debug)]
pub struct Session<H: Handles> {
    cfg: SessionConfig,
    state: SessionState,
    session_id: i64,
    passwd: Bytes,
    negotiated: Duration,
    last_zxid: i64,
    next_xid: i32,
    queued: VecDeque<Request<H>>,
    inflight: VecDeque<Inflight<H>>,
    /// How many of `inflight` are addWatch requests (their persistent watch is not registered
    /// until the reply).
    persistent_in_flight: usize,
    auths: Vec<Auth<H>>,
    closing: bool,
    watches: WatchRegistry<H>,
    out: BytesMut,
    events: VecDeque<Event<H>>,
    handshake_deadline: Option<Instant>,
    last_recv: Instant,
    last_send: Instant,
    last_heard: Option<Instant>,
    /// SASL settings and the current connection's exchange (`sasl.rs`).
    sasl: sasl::Sasl,
    /// Whether a handshake ever completed (a later one is a reconnect that may miss events).
    had_connection: bool,
    /// How many reconnects re-registered the watches (see [`Session::resyncs`]).
    resyncs: u64,
    /// Whether a read-write server ever accepted the session. Until then the session is one
    /// a read-only server made up locally, unknown to the quorum: like the Java client
    /// (`seenRwServerBefore`), the handshake then asks for a new session.
    seen_rw: bool,
}

impl<H: Handles> Session<H> {
    /// A session that has not connected yet.
    pub fn new(cfg: SessionConfig, now: Instant) -> Self {
        Session {
            cfg,
            state: SessionState::Connecting,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            negotiated: Duration::ZERO,
            last_zxid: 0,
            next_xid: 1,
            queued: VecDeque::new(),
            inflight: VecDeque::new(),
            persistent_in_flight: 0,
            auths: Vec::new(),
            closing: false,
            watches: WatchRegistry::default(),
            out: BytesMut::with_capacity(64 * 1024),
            events: VecDeque::new(),
            handshake_deadline: None,
            last_recv: now,
            last_send: now,
            last_heard: None,
            sasl: sasl::Sasl::default(),
            had_connection: false,
            resyncs: 0,
            seen_rw: false,
        }
    }

    /// Makes the first handshake re-attach an existing session instead of creating one.
    pub fn resume(&mut self, session_id: i64, passwd: Bytes) {
        self.session_id = session_id;
        self.passwd = passwd;
        self.seen_rw = true;
    }

    /// Current state.
    pub fn state(&self) -> SessionState {
        self.state
    }
    /// Session id (0 before the first handshake).
    pub fn session_id(&self) -> i64 {
        self.session_id
    }
    /// Session password.
    pub fn password(&self) -> &Bytes {
        &self.passwd
    }
    /// Negotiated timeout (zero before the first handshake).
    pub fn negotiated_timeout(&self) -> Duration {
        self.negotiated
    }
    /// Whether a handshake has completed on the current connection.
    pub fn is_connected(&self) -> bool {
        self.state.is_connected() && self.handshake_deadline.is_none()
    }
    /// How many reconnects (re-attaches or new sessions) carried the watches over so far.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }
    /// Whether a close is under way.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The one place the state changes: every change becomes an [`Event::State`].
    fn set_state(&mut self, s: SessionState) {
        if self.state != s {
            tracing::info!(from = ?self.state, to = ?s, session_id = format_args!("{:#x}", self.session_id), "session state");
            self.state = s;
            self.events.push_back(Event::State(s));
        }
    }

    fn complete(&mut self, to: Option<H::Reply>, result: Result<Bytes, Error>) {
        if let Some(to) = to {
            self.events.push_back(Event::Reply { to, result });
        }
    }

    /// The next thing to deliver, oldest first.
    pub fn poll_event(&mut self) -> Option<Event<H>> {
        self.events.pop_front()
    }

    /// Bytes to write, if any: everything encoded since the last call, in one buffer.
    pub fn take_output(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// Whether output is waiting.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Starts a handshake on a fresh connection; it must complete by `deadline`.
    pub fn begin_handshake(&mut self, now: Instant, deadline: Instant) {
        self.out.clear();
        self.handshake_deadline = Some(deadline);
        self.last_recv = now;
        self.last_send = now;
        write_record(
            &mut self.out,
            &ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: self.last_zxid,
                timeout: self.cfg.timeout.as_millis().min(i32::MAX as u128) as i32,
                session_id: if self.seen_rw { self.session_id } else { 0 },
                passwd: self.passwd.clone(),
                read_only: Some(self.cfg.read_only),
            },
        );
        // A session that exists stays Disconnected (suspended) while we look for a server;
        // only the very first session shows Connecting.
        if !self.state.is_terminal() && self.session_id == 0 {
            self.set_state(SessionState::Connecting);
        }
    }

    /// Queues or sends a request.
    pub fn submit(&mut self, req: Request<H>) {
        if let Some(err) = self.state.terminal_error() {
            self.complete(req.reply, Err(err));
        } else if self.closing {
            self.complete(req.reply, Err(Error::Closed));
        } else if self.is_connected() {
            self.write_request(req);
        } else {
            self.queued.push_back(req);
        }
    }

    fn write_request(&mut self, mut req: Request<H>) {
        // A one-shot watch is asked of the server unless a persistent watch registered on the
        // same path already brings its events (see `WatchRegistry::covered_by_persistent`).
        let watch = req
            .watch
            .as_ref()
            .is_some_and(|w| !self.covered_by_persistent(w));
        if let Some(flag) = req.body.watch_flag() {
            *flag = watch;
        }
        let xid = self.next_xid;
        self.next_xid = if self.next_xid == i32::MAX {
            1
        } else {
            self.next_xid + 1
        };
        let op = req.body.op();
        let at = begin_frame(&mut self.out);
        RequestHeader { xid, op: op.code() }.encode(&mut self.out);
        req.body.encode(&mut self.out);
        end_frame(&mut self.out, at);
        tracing::debug!(xid, ?op, "request");
        if req.watch.as_ref().is_some_and(|w| is_persistent(w.kind)) {
            self.persistent_in_flight += 1;
        }
        self.inflight.push_back(Inflight {
            xid,
            op,
            watch: req.watch,
            reply: req.reply,
        });
    }

    /// Whether a persistent watch on the one-shot `w`'s path brings its events: one registered,
    /// or one whose addWatch is still in flight (the server applies it before `w`'s request).
    fn covered_by_persistent(&self, w: &PendingWatch<H>) -> bool {
        self.watches.covered_by_persistent(&w.path, w.kind)
            || (self.persistent_in_flight > 0
                && self.inflight.iter().any(|i| {
                    i.watch
                        .as_ref()
                        .is_some_and(|p| p.path == w.path && watches::covers(p.kind, w.kind))
                }))
    }

    /// Adds an auth credential: sent now if connected, and replayed after every reconnect. The
    /// server's answer completes `waiter` (with an empty body).
    pub fn add_auth(&mut self, scheme: String, data: Bytes, waiter: H::Reply) {
        if let Some(err) = self.state.terminal_error() {
            self.complete(Some(waiter), Err(err));
            return;
        }
        self.auths.push(Auth {
            scheme,
            data,
            waiter: Some(waiter),
            unanswered: false,
        });
        if self.is_connected() {
            self.write_auth(self.auths.len() - 1);
        }
    }

    fn write_auth(&mut self, i: usize) {
        let a = &mut self.auths[i];
        a.unanswered = true;
        let at = begin_frame(&mut self.out);
        RequestHeader {
            xid: xid::AUTH,
            op: OpCode::Auth.code(),
        }
        .encode(&mut self.out);
        AuthPacket {
            auth_type: 0,
            scheme: a.scheme.clone(),
            auth: a.data.clone(),
        }
        .encode(&mut self.out);
        end_frame(&mut self.out, at);
    }

    /// Unregisters a watcher; sends removeWatches when it was the last of its kind on the path.
    pub fn unwatch(&mut self, path: &str, kind: WatchKind, id: u64) {
        if let Some(t) = self.watches.unregister(path, kind, id) {
            self.remove_watches(path, kind, t);
        }
    }

    /// Sends removeWatches for the last watcher of `kind` on `path`, just unregistered.
    fn remove_watches(&mut self, path: &str, kind: WatchKind, t: WatcherType) {
        // A one-shot on this path still waiting for its reply may rely on this persistent
        // watch on the server (see `covered_by_persistent`): keep it there.
        if is_persistent(kind)
            && self
                .inflight
                .iter()
                .any(|i| i.watch.as_ref().is_some_and(|w| w.path == path))
        {
            return;
        }
        if self.is_connected() {
            self.write_request(Request {
                body: Body::RemoveWatches(WatchesRequest {
                    path: path.to_owned(),
                    watcher_type: t.code(),
                }),
                watch: None,
                reply: None,
            });
        }
    }

    /// Starts a graceful close: closeSession when connected, else closes at once. `reply` (if
    /// any) completes when the session is closed.
    pub fn close(&mut self, reply: Option<H::Reply>) {
        if self.state.is_terminal() {
            self.complete(reply, Ok(Bytes::new()));
        } else if self.is_connected() && self.session_id != 0 {
            self.write_request(Request {
                body: Body::CloseSession,
                watch: None,
                reply,
            });
            self.closing = true;
        } else {
            self.terminate(SessionState::Closed);
            self.complete(reply, Ok(Bytes::new()));
        }
    }

    /// Handles bytes read from the connection: every whole frame in `buf` is taken and
    /// processed, a partial one is left for the next read. An `Err` means the connection must be
    /// dropped (and, for `SessionExpired` / `AuthFailed`, the session is over).
    pub fn on_read(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), Error> {
        while let Some(frame) =
            take_frame(buf, self.cfg.max_packet).map_err(|e| Error::Protocol(e.to_string()))?
        {
            self.on_frame(frame, now)?;
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Bytes, now: Instant) -> Result<(), Error> {
        self.last_recv = now;
        self.last_heard = Some(now);
        if self.handshake_deadline.is_some() {
            return self.on_connect_response(frame);
        }
        if self.sasl_in_progress() {
            return self.on_sasl_frame(frame, now);
        }
        let mut r = Reader::new(frame);
        let h = ReplyHeader::decode(&mut r)?;
        match h.xid {
            xid::NOTIFICATION => {
                let ev = WatcherEvent::decode(&mut r)?;
                match EventType::from_code(ev.event_type) {
                    Ok(t) if t != EventType::None => {
                        tracing::debug!(path = %ev.path, event = ?t, "watch event");
                        let ev = RawEvent {
                            event_type: t,
                            path: ev.path,
                            zxid: h.zxid,
                        };
                        for (path, kind, t) in self.watches.dispatch(&ev, &mut self.events) {
                            self.remove_watches(&path, kind, t);
                        }
                    }
                    _ => tracing::debug!(event_type = ev.event_type, "ignored event"),
                }
                Ok(())
            }
            xid::PING | xid::SET_WATCHES => Ok(()),
            xid::AUTH => self.on_auth_reply(h.err),
            x => self.on_reply(x, h, r),
        }
    }

    fn on_auth_reply(&mut self, err: i32) -> Result<(), Error> {
        let waiter = self.auths.iter_mut().find(|a| a.unanswered).and_then(|a| {
            a.unanswered = false;
            a.waiter.take()
        });
        if err == ErrorCode::AuthFailed.code() {
            self.complete(waiter, Err(Error::AuthFailed));
            tracing::warn!("authentication failed");
            self.terminate(SessionState::AuthFailed);
            return Err(Error::AuthFailed);
        }
        let result = if err == 0 {
            Ok(Bytes::new())
        } else {
            Err(Error::from_wire(err))
        };
        self.complete(waiter, result);
        Ok(())
    }

    fn on_reply(&mut self, x: i32, h: ReplyHeader, r: Reader) -> Result<(), Error> {
        let Some(p) = self.inflight.pop_front() else {
            return Err(Error::Protocol(format!(
                "reply xid {x} with nothing pending"
            )));
        };
        if p.xid != x {
            self.complete(p.reply, Err(Error::ConnectionLoss));
            return Err(Error::Protocol(format!(
                "reply xid {x}, expected {}",
                p.xid
            )));
        }
        if h.zxid > 0 {
            self.last_zxid = self.last_zxid.max(h.zxid);
        }
        let is_close = p.op == OpCode::CloseSession;
        let result = if h.err == 0 || is_close {
            // Whatever the server says to closeSession, the session is over.
            Ok(r.into_rest())
        } else {
            Err(Error::from_wire(h.err))
        };
        if let Some(w) = p.watch {
            if is_persistent(w.kind) {
                self.persistent_in_flight = self.persistent_in_flight.saturating_sub(1);
            }
            // The watcher may have been dropped while the request was in flight: its
            // unregistration found nothing then, so remove the watch now.
            let dropped = w.sink.is_closed().then(|| (w.path.clone(), w.kind, w.id));
            if self.watches.register(w, result.as_ref().err()) {
                if let Some((path, kind, id)) = dropped {
                    self.unwatch(&path, kind, id);
                }
            }
        }
        self.complete(p.reply, result);
        if is_close {
            self.terminate(SessionState::Closed);
        }
        Ok(())
    }

    fn on_connect_response(&mut self, frame: Bytes) -> Result<(), Error> {
        let resp = ConnectResponse::decode(&mut Reader::new(frame))?;
        self.handshake_deadline = None;
        if resp.timeout <= 0 {
            tracing::warn!(
                session_id = format_args!("{:#x}", self.session_id),
                "session expired"
            );
            self.terminate(SessionState::Expired);
            return Err(Error::SessionExpired);
        }
        // Only a re-attach can be answered with another session: a session only a read-only
        // server ever accepted is not re-attached (`begin_handshake` asks for a new one).
        if self.seen_rw && self.session_id != 0 && resp.session_id != self.session_id {
            // Some servers (ClickHouse Keeper after a restart) answer a re-attach they cannot
            // honour with a brand-new session instead of "expired": the old session, its
            // ephemerals and its server-side watches are gone all the same.
            tracing::warn!(
                requested = format_args!("{:#x}", self.session_id),
                granted = format_args!("{:#x}", resp.session_id),
                "server answered with another session: expired"
            );
            self.terminate(SessionState::Expired);
            if !(self.cfg.recreate_on_expiry && self.had_connection) {
                return Err(Error::SessionExpired);
            }
            self.renew();
        }
        self.session_id = resp.session_id;
        self.passwd = resp.passwd;
        self.negotiated = Duration::from_millis(resp.timeout as u64);
        self.seen_rw |= resp.read_only != Some(true);
        if self.begin_sasl(resp.read_only == Some(true))? {
            return Ok(());
        }
        self.on_established(resp.read_only == Some(true));
        Ok(())
    }

    /// The connection is ready (handshake and any SASL done): the session is connected; its
    /// watches, auth and queued requests go out.
    fn on_established(&mut self, read_only: bool) {
        self.set_state(if read_only {
            SessionState::ConnectedReadOnly
        } else {
            SessionState::Connected
        });
        // Watches first, then auth, then the requests that waited: a request never runs on
        // the server before the session's identity and watches are back.
        self.write_set_watches();
        if std::mem::replace(&mut self.had_connection, true) {
            self.resyncs += 1;
            self.watches.resync(&mut self.events);
        }
        for i in 0..self.auths.len() {
            self.write_auth(i);
        }
        while let Some(req) = self.queued.pop_front() {
            // A request whose caller gave up while we were disconnected (its future was dropped
            // or its request timeout fired) is not sent: it must not take effect after the
            // caller was told it failed.
            if req.reply.as_ref().is_some_and(Handle::is_dropped) {
                tracing::debug!(op = ?req.body.op(), "dropping a request its caller abandoned");
                continue;
            }
            self.write_request(req);
        }
    }

    fn write_set_watches(&mut self) {
        self.watches.prune_closed();
        if self.watches.is_empty() {
            return;
        }
        let [data, exist, child, persistent, recursive] = self.watches.paths();
        let v2 = !persistent.is_empty() || !recursive.is_empty();
        let mut lists = [data, exist, child, persistent, recursive];
        let mut cursors = [0usize; 5];
        loop {
            let mut batch: [Vec<String>; 5] = Default::default();
            let mut size = 0;
            for k in 0..5 {
                while cursors[k] < lists[k].len() && size < SET_WATCHES_MAX_BYTES {
                    let p = std::mem::take(&mut lists[k][cursors[k]]);
                    size += p.len() + 4;
                    batch[k].push(p);
                    cursors[k] += 1;
                }
            }
            if size == 0 {
                break;
            }
            let [d, e, c, p, r] = batch;
            let at = begin_frame(&mut self.out);
            RequestHeader {
                xid: xid::SET_WATCHES,
                op: if v2 {
                    OpCode::SetWatches2.code()
                } else {
                    OpCode::SetWatches.code()
                },
            }
            .encode(&mut self.out);
            if v2 {
                SetWatches2 {
                    relative_zxid: self.last_zxid,
                    data_watches: d,
                    exist_watches: e,
                    child_watches: c,
                    persistent_watches: p,
                    persistent_recursive_watches: r,
                }
                .encode(&mut self.out);
            } else {
                SetWatches {
                    relative_zxid: self.last_zxid,
                    data_watches: d,
                    exist_watches: e,
                    child_watches: c,
                }
                .encode(&mut self.out);
            }
            end_frame(&mut self.out, at);
        }
    }

    /// Records that output was written at `now`.
    pub fn on_sent(&mut self, now: Instant) {
        self.last_send = now;
    }

    fn read_timeout(&self) -> Duration {
        self.negotiated * 2 / 3
    }

    fn ping_interval(&self) -> Duration {
        (self.read_timeout() / 2).min(MAX_PING_INTERVAL)
    }

    /// When [`on_timer`](Self::on_timer) must run next: the next ping or read timeout while
    /// connected, the handshake deadline while handshaking, and the local expiry (ZOOKEEPER-4508)
    /// whenever the session is not connected.
    pub fn next_deadline(&self) -> Option<Instant> {
        if let Some(d) = self.handshake_deadline.or(self.sasl_deadline()) {
            // A handshake nobody answers must not outlive the session (ZOOKEEPER-4508).
            return Some(self.local_expiry_deadline().map_or(d, |e| e.min(d)));
        }
        if self.is_connected() {
            let ping = self.last_send + self.ping_interval();
            let dead = self.last_recv + self.read_timeout();
            return Some(ping.min(dead));
        }
        self.local_expiry_deadline()
    }

    /// Runs timers: sends a ping when idle, reports a dead connection (`ConnectionLoss`), a
    /// handshake past its deadline (`ConnectionLoss`) and a session expired locally
    /// (`SessionExpired`, the session is then over).
    pub fn on_timer(&mut self, now: Instant) -> Result<(), Error> {
        if !self.is_connected() {
            if self.check_local_expiry(now) {
                return Err(Error::SessionExpired);
            }
            if self
                .handshake_deadline
                .or(self.sasl_deadline())
                .is_some_and(|d| now >= d)
            {
                return Err(Error::ConnectionLoss);
            }
            return Ok(());
        }
        if now >= self.last_recv + self.read_timeout() {
            tracing::warn!(
                silent_ms = (now - self.last_recv).as_millis() as u64,
                "no reply within the read timeout"
            );
            return Err(Error::ConnectionLoss);
        }
        if now >= self.last_send + self.ping_interval() {
            let at = begin_frame(&mut self.out);
            RequestHeader {
                xid: xid::PING,
                op: OpCode::Ping.code(),
            }
            .encode(&mut self.out);
            end_frame(&mut self.out, at);
            self.last_send = now;
        }
        Ok(())
    }

    /// The connection is gone: fail what was in flight, move to Disconnected.
    pub fn on_connection_lost(&mut self) {
        self.handshake_deadline = None;
        self.sasl_reset();
        self.out.clear();
        self.fail_pending(&Error::ConnectionLoss);
        if self.closing {
            self.terminate(SessionState::Closed);
            return;
        }
        if !self.state.is_terminal() {
            self.set_state(if self.session_id == 0 {
                SessionState::Connecting
            } else {
                SessionState::Disconnected
            });
        }
    }

    /// Client-side expiry (ZOOKEEPER-4508): nothing heard for 4/3 of the negotiated timeout while
    /// disconnected means the ensemble has expired the session. Returns true when it expired.
    fn check_local_expiry(&mut self, now: Instant) -> bool {
        match self.local_expiry_deadline() {
            Some(at) if now >= at && !self.is_connected() => {
                tracing::warn!("no server reached within 4/3 of the session timeout: expired");
                self.terminate(SessionState::Expired);
                true
            }
            _ => false,
        }
    }

    fn local_expiry_deadline(&self) -> Option<Instant> {
        if self.session_id == 0 || self.state.is_terminal() {
            return None;
        }
        self.last_heard.map(|h| h + self.negotiated * 4 / 3)
    }

    /// Fails every request in flight or queued, and every auth sent on this connection.
    fn fail_pending(&mut self, err: &Error) {
        self.persistent_in_flight = 0;
        for p in self.inflight.drain(..) {
            if let Some(to) = p.reply {
                self.events.push_back(Event::Reply {
                    to,
                    result: Err(err.clone()),
                });
            }
        }
        for q in self.queued.drain(..) {
            if let Some(to) = q.reply {
                self.events.push_back(Event::Reply {
                    to,
                    result: Err(err.clone()),
                });
            }
        }
        for a in &mut self.auths {
            if std::mem::take(&mut a.unanswered) {
                if let Some(to) = a.waiter.take() {
                    self.events.push_back(Event::Reply {
                        to,
                        result: Err(err.clone()),
                    });
                }
            }
        }
    }

    /// Ends the session for good: every request, auth and watcher is told why.
    fn terminate(&mut self, state: SessionState) {
        let err = state.terminal_error().unwrap_or(Error::Closed);
        self.fail_pending(&err);
        for a in &mut self.auths {
            if let Some(to) = a.waiter.take() {
                self.events.push_back(Event::Reply {
                    to,
                    result: Err(err.clone()),
                });
            }
        }
        // With re-creation the watches move to the next session: SetWatches re-registers them
        // and each persistent watcher is told to resync.
        if !(state == SessionState::Expired && self.cfg.recreate_on_expiry) {
            self.watches.fail_all(&err, &mut self.events);
        }
        self.handshake_deadline = None;
        self.set_state(state);
    }

    /// After expiry, starts over with a brand-new session (keeps auth credentials and the last
    /// zxid, so the client never goes back in time).
    pub fn renew(&mut self) {
        self.session_id = 0;
        self.passwd = Bytes::from_static(&[0; 16]);
        self.negotiated = Duration::ZERO;
        self.closing = false;
        self.last_heard = None;
        self.set_state(SessionState::Connecting);
    }
}

fn is_persistent(kind: WatchKind) -> bool {
    matches!(kind, WatchKind::Persistent | WatchKind::PersistentRecursive)
}

#[cfg(test)]
mod resync_tests;
#[cfg(test)]
mod tests;
