//! The client session as a sans-IO state machine.
//!
//! [`Session`] is fed received frames, submitted requests and the current time; it writes outgoing
//! frames into a buffer the driver drains, completes requests through their responders, routes
//! watch events, and publishes state changes. It never touches a socket, never reads the clock and
//! never draws randomness, so every rule here is unit-tested with a fake clock.

pub mod watches;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;

use crate::error::Error;
use watches::{PendingWatch, RawEvent, WatchKind, WatchRegistry};
use zkit_proto::frame::{begin_frame, end_frame, write_record};
use zkit_proto::{
    xid, AuthPacket, ConnectRequest, ConnectResponse, ErrorCode, EventType, OpCode, Reader, Record,
    ReplyHeader, RequestHeader, SetWatches, SetWatches2, WatcherEvent, WatchesRequest,
};

/// The session's state as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// Looking for a server (first connect, or after a disconnect).
    Connecting,
    /// Connected to a server that accepts writes.
    Connected,
    /// Connected to a read-only server: reads work, writes fail with `NotReadOnly`.
    ConnectedReadOnly,
    /// The connection was lost; the session may still be alive on the ensemble (a "suspended"
    /// state: a lock holder should assume it may have lost its lock until reconnected).
    Disconnected,
    /// The session expired: its ephemerals are gone and its watches are void.
    Expired,
    /// Authentication failed; the session is unusable.
    AuthFailed,
    /// The client was closed.
    Closed,
}

impl SessionState {
    /// Whether the session can never serve requests again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed
        )
    }

    /// Whether a server connection is up.
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            SessionState::Connected | SessionState::ConnectedReadOnly
        )
    }

    /// The error requests get in this terminal state.
    pub fn terminal_error(self) -> Option<Error> {
        match self {
            SessionState::Expired => Some(Error::SessionExpired),
            SessionState::AuthFailed => Some(Error::AuthFailed),
            SessionState::Closed => Some(Error::Closed),
            _ => None,
        }
    }
}

/// A reply to one request: the header's zxid and error code, and the body (empty on error).
#[derive(Debug, Clone)]
pub struct Reply {
    /// Server's last zxid when it replied.
    pub zxid: i64,
    /// Error code (0 = OK).
    pub err: i32,
    /// Response record bytes.
    pub body: Bytes,
}

/// Completes one request.
pub type Responder = oneshot::Sender<Result<Reply, Error>>;

/// A request on its way to the server.
#[derive(Debug)]
pub struct Request {
    /// Opcode.
    pub op: OpCode,
    /// Encoded request record (may be empty).
    pub body: Bytes,
    /// Watch to register when the reply allows it.
    pub watch: Option<PendingWatch>,
    /// Where the reply goes; `None` for fire-and-forget internal requests.
    pub responder: Option<Responder>,
}

#[derive(Debug)]
struct Inflight {
    xid: i32,
    op: OpCode,
    watch: Option<PendingWatch>,
    responder: Option<Responder>,
}

/// Static session parameters.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Requested session timeout.
    pub timeout: Duration,
    /// Whether a read-only server is acceptable.
    pub read_only: bool,
}

/// Publishes state changes: current value plus a stream of transitions.
#[derive(Debug, Clone)]
pub struct StateTx {
    /// Current state.
    pub current: watch::Sender<SessionState>,
    /// Every transition (bounded; a lagging reader skips to the newest).
    pub changes: broadcast::Sender<SessionState>,
}

impl StateTx {
    /// A new publisher starting in `Connecting`.
    pub fn new() -> Self {
        StateTx {
            current: watch::channel(SessionState::Connecting).0,
            changes: broadcast::channel(256).0,
        }
    }
}

impl Default for StateTx {
    fn default() -> Self {
        Self::new()
    }
}

/// SetWatches batches stay under this much path text, like the Java client (~128 KiB).
const SET_WATCHES_MAX_BYTES: usize = 128 * 1024;
/// Pings are sent at least this often when the connection is idle (Java's MAX_SEND_PING_INTERVAL).
const MAX_PING_INTERVAL: Duration = Duration::from_secs(10);

/// The sans-IO client session.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: SessionState,
    state_tx: StateTx,
    session_id: i64,
    passwd: Bytes,
    negotiated: Duration,
    last_zxid: i64,
    next_xid: i32,
    queued: VecDeque<Request>,
    inflight: VecDeque<Inflight>,
    auths: Vec<(String, Bytes)>,
    deferred_auth_waiters: VecDeque<oneshot::Sender<Result<(), Error>>>,
    auth_waiters: VecDeque<Option<oneshot::Sender<Result<(), Error>>>>,
    closing: bool,
    /// Registered watches.
    pub watches: WatchRegistry,
    out: BytesMut,
    handshake_deadline: Option<Instant>,
    last_recv: Instant,
    last_send: Instant,
    last_heard: Option<Instant>,
}

impl Session {
    /// A session that has not connected yet.
    pub fn new(cfg: SessionConfig, state_tx: StateTx, now: Instant) -> Self {
        Session {
            cfg,
            state: SessionState::Connecting,
            state_tx,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            negotiated: Duration::ZERO,
            last_zxid: 0,
            next_xid: 1,
            queued: VecDeque::new(),
            inflight: VecDeque::new(),
            auths: Vec::new(),
            deferred_auth_waiters: VecDeque::new(),
            auth_waiters: VecDeque::new(),
            closing: false,
            watches: WatchRegistry::default(),
            out: BytesMut::with_capacity(64 * 1024),
            handshake_deadline: None,
            last_recv: now,
            last_send: now,
            last_heard: None,
        }
    }

    /// Makes the first handshake re-attach an existing session instead of creating one.
    pub fn resume(&mut self, session_id: i64, passwd: Bytes) {
        self.session_id = session_id;
        self.passwd = passwd;
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
    /// Highest zxid seen in a reply.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }
    /// Requests sent and not answered yet.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    fn set_state(&mut self, s: SessionState) {
        if self.state != s {
            tracing::info!(from = ?self.state, to = ?s, session_id = format_args!("{:#x}", self.session_id), "session state");
            self.state = s;
            self.state_tx.current.send_replace(s);
            let _ = self.state_tx.changes.send(s);
        }
    }

    /// Bytes to write, if any.
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

    fn connected_now(&self) -> bool {
        self.state.is_connected() && self.handshake_deadline.is_none()
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
                session_id: self.session_id,
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
    pub fn submit(&mut self, req: Request) {
        if let Some(err) = self.state.terminal_error() {
            if let Some(r) = req.responder {
                let _ = r.send(Err(err));
            }
            return;
        }
        if self.closing {
            if let Some(r) = req.responder {
                let _ = r.send(Err(Error::Closed));
            }
            return;
        }
        if self.connected_now() {
            self.write_request(req);
        } else {
            self.queued.push_back(req);
        }
    }

    fn write_request(&mut self, req: Request) {
        let xid = self.next_xid;
        self.next_xid = if self.next_xid == i32::MAX {
            1
        } else {
            self.next_xid + 1
        };
        let at = begin_frame(&mut self.out);
        RequestHeader {
            xid,
            op: req.op.code(),
        }
        .encode(&mut self.out);
        self.out.extend_from_slice(&req.body);
        if let Some(w) = &req.watch {
            let flagged = matches!(
                req.op,
                OpCode::Exists | OpCode::GetData | OpCode::GetChildren | OpCode::GetChildren2
            );
            if flagged
                && !req.body.is_empty()
                && self.watches.covered_by_persistent(&w.path, w.kind)
            {
                // The persistent watch on this path delivers the events; the body's last byte is
                // the watch flag, cleared so the server keeps the persistent mode.
                let last = self.out.len() - 1;
                self.out[last] = 0;
            }
        }
        end_frame(&mut self.out, at);
        tracing::debug!(xid, op = ?req.op, "request");
        self.inflight.push_back(Inflight {
            xid,
            op: req.op,
            watch: req.watch,
            responder: req.responder,
        });
    }

    /// Adds an auth credential: sent now if connected, and replayed after every reconnect.
    pub fn add_auth(
        &mut self,
        scheme: String,
        auth: Bytes,
        waiter: oneshot::Sender<Result<(), Error>>,
    ) {
        if let Some(err) = self.state.terminal_error() {
            let _ = waiter.send(Err(err));
            return;
        }
        self.auths.push((scheme.clone(), auth.clone()));
        if self.connected_now() {
            self.write_auth(&scheme, &auth);
            self.auth_waiters.push_back(Some(waiter));
        } else {
            self.deferred_auth_waiters.push_back(waiter);
        }
    }

    fn write_auth(&mut self, scheme: &str, auth: &Bytes) {
        let at = begin_frame(&mut self.out);
        RequestHeader {
            xid: xid::AUTH,
            op: OpCode::Auth.code(),
        }
        .encode(&mut self.out);
        AuthPacket {
            auth_type: 0,
            scheme: scheme.to_owned(),
            auth: auth.clone(),
        }
        .encode(&mut self.out);
        end_frame(&mut self.out, at);
    }

    /// Unregisters a watcher; sends removeWatches when it was the last of its kind on the path.
    pub fn unwatch(&mut self, path: &str, kind: WatchKind, id: u64) {
        if let Some(t) = self.watches.unregister(path, kind, id) {
            // A one-shot on this path still waiting for its reply may rely on this persistent
            // watch on the server (see `covered_by_persistent`): keep it there.
            let persistent = matches!(kind, WatchKind::Persistent | WatchKind::PersistentRecursive);
            if persistent
                && self
                    .inflight
                    .iter()
                    .any(|i| i.watch.as_ref().is_some_and(|w| w.path == path))
            {
                return;
            }
            if self.connected_now() {
                self.write_request(Request {
                    op: OpCode::RemoveWatches,
                    body: WatchesRequest {
                        path: path.to_owned(),
                        watcher_type: t.code(),
                    }
                    .to_bytes(),
                    watch: None,
                    responder: None,
                });
            }
        }
    }

    /// Starts a graceful close: closeSession when connected, else closes at once.
    pub fn close(&mut self, responder: Responder) {
        if self.state.is_terminal() {
            let _ = responder.send(Ok(Reply {
                zxid: 0,
                err: 0,
                body: Bytes::new(),
            }));
            return;
        }
        if self.connected_now() && self.session_id != 0 {
            self.write_request(Request {
                op: OpCode::CloseSession,
                body: Bytes::new(),
                watch: None,
                responder: Some(responder),
            });
            self.closing = true;
        } else {
            self.terminate(SessionState::Closed);
            let _ = responder.send(Ok(Reply {
                zxid: 0,
                err: 0,
                body: Bytes::new(),
            }));
        }
    }

    /// Whether a close is under way.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Handles one received frame. An `Err` means the connection must be dropped (and, for
    /// `SessionExpired` / `AuthFailed`, the session is over).
    pub fn on_frame(&mut self, frame: Bytes, now: Instant) -> Result<(), Error> {
        self.last_recv = now;
        self.last_heard = Some(now);
        if self.handshake_deadline.is_some() {
            return self.on_connect_response(frame);
        }
        let mut r = Reader::new(frame);
        let h = ReplyHeader::decode(&mut r)?;
        match h.xid {
            xid::NOTIFICATION => {
                let ev = WatcherEvent::decode(&mut r)?;
                match EventType::from_code(ev.event_type) {
                    Ok(t) if t != EventType::None => {
                        tracing::debug!(path = %ev.path, event = ?t, "watch event");
                        self.watches.dispatch(&RawEvent {
                            event_type: t,
                            path: ev.path,
                            zxid: h.zxid,
                        });
                    }
                    _ => tracing::debug!(event_type = ev.event_type, "ignored event"),
                }
                Ok(())
            }
            xid::PING => Ok(()),
            xid::SET_WATCHES => Ok(()),
            xid::AUTH => {
                let waiter = self.auth_waiters.pop_front().flatten();
                if h.err == ErrorCode::AuthFailed.code() {
                    if let Some(w) = waiter {
                        let _ = w.send(Err(Error::AuthFailed));
                    }
                    tracing::warn!("authentication failed");
                    self.terminate(SessionState::AuthFailed);
                    return Err(Error::AuthFailed);
                }
                if let Some(w) = waiter {
                    let _ = w.send(if h.err == 0 {
                        Ok(())
                    } else {
                        Err(Error::from_wire(h.err))
                    });
                }
                Ok(())
            }
            x => {
                let Some(p) = self.inflight.pop_front() else {
                    return Err(Error::Protocol(format!(
                        "reply xid {x} with nothing pending"
                    )));
                };
                if p.xid != x {
                    let err = Error::Protocol(format!("reply xid {x}, expected {}", p.xid));
                    if let Some(resp) = p.responder {
                        let _ = resp.send(Err(Error::ConnectionLoss));
                    }
                    return Err(err);
                }
                if h.zxid > 0 {
                    self.last_zxid = self.last_zxid.max(h.zxid);
                }
                if let Some(w) = p.watch {
                    // The watcher may have been dropped while the request was in flight: its
                    // unregistration found nothing then, so remove the watch now.
                    let dropped = w.sink.is_closed().then(|| (w.path.clone(), w.kind, w.id));
                    if self
                        .watches
                        .register(w, ErrorCode::from_code(h.err).ok().filter(|c| !c.is_ok()))
                    {
                        if let Some((path, kind, id)) = dropped {
                            self.unwatch(&path, kind, id);
                        }
                    }
                }
                let is_close = p.op == OpCode::CloseSession;
                if let Some(resp) = p.responder {
                    let _ = resp.send(Ok(Reply {
                        zxid: h.zxid,
                        err: h.err,
                        body: r.into_rest(),
                    }));
                }
                if is_close {
                    self.terminate(SessionState::Closed);
                }
                Ok(())
            }
        }
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
        self.session_id = resp.session_id;
        self.passwd = resp.passwd;
        self.negotiated = Duration::from_millis(resp.timeout as u64);
        self.set_state(if resp.read_only == Some(true) {
            SessionState::ConnectedReadOnly
        } else {
            SessionState::Connected
        });
        self.write_set_watches();
        let n = self.auths.len();
        let deferred = self.deferred_auth_waiters.len();
        for i in 0..n {
            let (scheme, auth) = self.auths[i].clone();
            self.write_auth(&scheme, &auth);
            let w = if i >= n - deferred {
                self.deferred_auth_waiters.pop_front()
            } else {
                None
            };
            self.auth_waiters.push_back(w);
        }
        while let Some(req) = self.queued.pop_front() {
            // A request whose caller gave up while we were disconnected (its future was dropped
            // or its request timeout fired) is not sent: it must not take effect after the
            // caller was told it failed.
            if req.responder.as_ref().is_some_and(|r| r.is_closed()) {
                tracing::debug!(op = ?req.op, "dropping a request its caller abandoned");
                continue;
            }
            self.write_request(req);
        }
        Ok(())
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

    /// When [`on_timer`](Self::on_timer) must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        if let Some(d) = self.handshake_deadline {
            // A handshake nobody answers must not outlive the session (ZOOKEEPER-4508).
            return Some(self.local_expiry_deadline().map_or(d, |e| e.min(d)));
        }
        if self.connected_now() {
            let ping = self.last_send + self.ping_interval();
            let dead = self.last_recv + self.read_timeout();
            return Some(ping.min(dead));
        }
        None
    }

    /// Runs timers: sends a ping when idle, reports a dead connection.
    pub fn on_timer(&mut self, now: Instant) -> Result<(), Error> {
        if let Some(d) = self.handshake_deadline {
            if self.check_local_expiry(now) {
                return Err(Error::SessionExpired);
            }
            if now >= d {
                return Err(Error::ConnectionLoss);
            }
            return Ok(());
        }
        if !self.connected_now() {
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
    pub fn check_local_expiry(&mut self, now: Instant) -> bool {
        if self.state.is_terminal() || self.session_id == 0 || self.connected_now() {
            return false;
        }
        let Some(heard) = self.last_heard else {
            return false;
        };
        if now >= heard + self.negotiated * 4 / 3 {
            tracing::warn!("no server reached within 4/3 of the session timeout: expired");
            self.terminate(SessionState::Expired);
            return true;
        }
        false
    }

    /// When [`check_local_expiry`](Self::check_local_expiry) would fire.
    pub fn local_expiry_deadline(&self) -> Option<Instant> {
        if self.session_id == 0 || self.state.is_terminal() {
            return None;
        }
        self.last_heard.map(|h| h + self.negotiated * 4 / 3)
    }

    fn fail_pending(&mut self, err: &Error) {
        for p in self.inflight.drain(..) {
            if let Some(r) = p.responder {
                let _ = r.send(Err(err.clone()));
            }
        }
        for q in self.queued.drain(..) {
            if let Some(r) = q.responder {
                let _ = r.send(Err(err.clone()));
            }
        }
        for w in self.auth_waiters.drain(..).flatten() {
            let _ = w.send(Err(err.clone()));
        }
    }

    /// Ends the session for good: every request and watcher is told why.
    pub fn terminate(&mut self, state: SessionState) {
        let err = state.terminal_error().unwrap_or(Error::Closed);
        self.fail_pending(&err);
        for w in self.deferred_auth_waiters.drain(..) {
            let _ = w.send(Err(err.clone()));
        }
        self.watches.fail_all(&err);
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
        self.state = SessionState::Connecting;
        self.state_tx.current.send_replace(SessionState::Connecting);
        let _ = self.state_tx.changes.send(SessionState::Connecting);
    }
}

#[cfg(test)]
mod tests;
