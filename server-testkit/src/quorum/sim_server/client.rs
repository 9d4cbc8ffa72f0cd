//! A simulated ZooKeeper client: one session at a time, one connection at a time, real request
//! frames, and the checks a client can make on what it is told.
//!
//! Every client owns `/c<i>` (a persistent `/c<i>/d` only it writes, and ephemerals
//! `/c<i>/e<n>` only it deletes) and shares `/s<k>` and `/q` with the others.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::{Bytes, BytesMut};
use zkit_proto::frame::{take_frame, write_record, write_request, Encodable};
use zkit_proto::*;

use super::super::sim::Rng;
use super::super::{Millis, Sid};
use super::trace;
use crate::core::ConnId;

/// A write some client was told succeeded.
#[derive(Debug, Clone)]
pub(super) struct Ack {
    pub session: i64,
    pub cxid: i32,
    pub zxid: i64,
}

/// What the world knows of the committed history and of what clients were told.
#[derive(Default)]
pub(super) struct Ledger {
    /// Every txn some server delivered, by zxid.
    pub committed: BTreeMap<i64, Bytes>,
    /// The zxid of each client request's txn, by (session, cxid).
    pub by_cxid: HashMap<(i64, i32), i64>,
    /// Writes acknowledged with err 0.
    pub acked: Vec<Ack>,
    /// The highest zxid of an acknowledged write.
    pub max_acked: i64,
    /// Broken invariants.
    pub violations: Vec<String>,
    /// Reads after a sync that missed a write acknowledged to another client before the sync
    /// was sent. ZooKeeper allows it (a deposed leader that has not noticed yet still answers
    /// syncs), so these are counted, not failed.
    pub stale_after_sync: u64,
    /// Counts of what happened, for the summary (`ZKIT_SIM_TRACE`).
    pub stats: BTreeMap<&'static str, u64>,
}

impl Ledger {
    pub(super) fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ping,
    Sync,
    Close,
    /// The creates of `/c<i>` and `/c<i>/d` (`true` for the latter).
    Setup(bool),
    /// getData or exists on a shared path.
    Read,
    /// getData of the client's own `/c<i>/d`.
    ReadOwn,
    /// setData of the client's own `/c<i>/d` with this counter.
    WriteOwn(u64),
    /// create of one of the client's own ephemerals.
    CreateOwnEphemeral,
    /// Any other write.
    Write,
}

#[derive(Debug)]
struct Req {
    xid: i32,
    kind: Kind,
    /// For a read sent after a sync on the same connection: that sync's xid and the highest
    /// acknowledged write when it was sent (the read must see it).
    after_sync: Option<(i32, i64)>,
}

/// The live connection of a client.
#[derive(Debug)]
pub(super) struct Conn {
    pub id: ConnId,
    pub server: Sid,
    connected: bool,
    outstanding: VecDeque<Req>,
    last_heard: Millis,
    last_sent: Millis,
    /// The last sync sent on this connection and its barrier.
    sync: Option<(i32, i64)>,
    failed_syncs: HashSet<i32>,
}

/// One simulated client.
pub(super) struct Client {
    pub id: usize,
    pub conn: Option<Conn>,
    /// The session (0: none yet, or it ended).
    pub session: i64,
    passwd: Bytes,
    timeout: i32,
    xid: i32,
    last_zxid_seen: i64,
    /// Not before this time does the client connect again.
    retry_at: Millis,
    setup_done: bool,
    setup_sent: bool,
    /// The counter of the last acknowledged setData of `/c<i>/d`, and of the last one sent.
    own_acked: u64,
    own_sent: u64,
    /// The version of `/c<i>/d` the last acknowledged setData left (every change counts).
    own_version: i32,
    /// Acknowledged ephemerals the client has not asked to delete: path -> (session, zxid).
    pub ephemerals: BTreeMap<String, (i64, i64)>,
    next_eph: u64,
}

fn frame(b: &mut BytesMut) -> Bytes {
    take_frame(b, usize::MAX)
        .expect("a frame we built")
        .expect("a whole frame")
}

fn create(path: String, data: &'static [u8], flags: i32) -> CreateRequest {
    CreateRequest {
        path,
        data: Some(Bytes::from_static(data)),
        acl: Acl::open_unsafe(),
        flags,
    }
}

impl Client {
    pub(super) fn new(id: usize, rng: &mut Rng) -> Client {
        Client {
            id,
            conn: None,
            session: 0,
            passwd: Bytes::from_static(&[0; 16]),
            timeout: 150 + rng.below(250) as i32,
            xid: 0,
            last_zxid_seen: 0,
            retry_at: 0,
            setup_done: false,
            setup_sent: false,
            own_acked: 0,
            own_sent: 0,
            own_version: -1,
            ephemerals: BTreeMap::new(),
            next_eph: 0,
        }
    }

    /// Whether the client wants to open a connection now.
    pub(super) fn wants_connection(&self, now: Millis) -> bool {
        self.conn.is_none() && now >= self.retry_at
    }

    /// Whether the handshake on the current connection succeeded.
    pub(super) fn connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.connected)
    }

    /// Opens a connection to `server`: the ConnectRequest frame to send on it.
    pub(super) fn connect(&mut self, id: ConnId, server: Sid, now: Millis) -> Bytes {
        self.conn = Some(Conn {
            id,
            server,
            connected: false,
            outstanding: VecDeque::new(),
            last_heard: now,
            last_sent: now,
            sync: None,
            failed_syncs: HashSet::new(),
        });
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: self.last_zxid_seen,
            timeout: self.timeout,
            session_id: self.session,
            passwd: self.passwd.clone(),
            read_only: Some(false),
        };
        let mut b = BytesMut::new();
        write_record(&mut b, &req);
        frame(&mut b)
    }

    /// The connection is gone (closed by the server, refused, or dropped by the client):
    /// whatever was outstanding has an unknown outcome.
    pub(super) fn disconnected(&mut self, now: Millis, rng: &mut Rng) {
        self.conn = None;
        self.setup_sent = false;
        self.retry_at = now + rng.below(20);
    }

    /// The session is over (closed or expired): the next connection starts a new one.
    fn session_ended(&mut self) {
        self.session = 0;
        self.passwd = Bytes::from_static(&[0; 16]);
        self.ephemerals.clear();
    }

    /// Housekeeping: a ping when idle, or giving up on a silent server (ZooKeeper's client
    /// read timeout, two thirds of the session timeout). `Err(())`: drop the connection.
    pub(super) fn housekeeping(&mut self, now: Millis) -> Result<Option<Bytes>, ()> {
        let timeout = self.timeout as u64;
        let Some(c) = &self.conn else {
            return Ok(None);
        };
        if now.saturating_sub(c.last_heard) > timeout * 2 / 3 {
            return Err(());
        }
        if c.connected && c.outstanding.is_empty() && now - c.last_sent >= timeout / 3 {
            return Ok(Some(self.send(now, OpCode::Ping, Kind::Ping, None, 0)));
        }
        Ok(None)
    }

    fn send(
        &mut self,
        now: Millis,
        op: OpCode,
        kind: Kind,
        body: Option<&dyn Encodable>,
        max_acked: i64,
    ) -> Bytes {
        let xid = if kind == Kind::Ping {
            xid::PING
        } else {
            self.xid += 1;
            self.xid
        };
        let c = self.conn.as_mut().expect("sending on a connection");
        c.last_sent = now;
        if kind == Kind::Sync {
            c.sync = Some((xid, max_acked));
        }
        let after_sync = match kind {
            Kind::Read | Kind::ReadOwn => c.sync,
            _ => None,
        };
        let what = format_args!("client {} sends {op:?} xid {xid} on conn {}", self.id, c.id);
        trace(now, what);
        c.outstanding.push_back(Req {
            xid,
            kind,
            after_sync,
        });
        let mut b = BytesMut::new();
        write_request(&mut b, xid, op.code(), body);
        frame(&mut b)
    }

    /// Random requests (frames to send in order), if the client is connected and not too far
    /// ahead of its replies.
    pub(super) fn random_requests(
        &mut self,
        rng: &mut Rng,
        now: Millis,
        max_acked: i64,
    ) -> Vec<Bytes> {
        let Some(c) = &self.conn else {
            return Vec::new();
        };
        if !c.connected || c.outstanding.len() >= 4 {
            return Vec::new();
        }
        let own = format!("/c{}", self.id);
        if !self.setup_done {
            if self.setup_sent {
                return Vec::new();
            }
            self.setup_sent = true;
            let a = create(own.clone(), b"", 0);
            let d = create(format!("{own}/d"), b"0", 0);
            return vec![
                self.send(now, OpCode::Create, Kind::Setup(false), Some(&a), 0),
                self.send(now, OpCode::Create, Kind::Setup(true), Some(&d), 0),
            ];
        }
        let k = rng.below(6);
        let spath = format!("/s{k}");
        let frame = match rng.below(100) {
            0..=13 => {
                self.own_sent += 1;
                let n = self.own_sent;
                let req = SetDataRequest {
                    path: format!("{own}/d"),
                    data: Some(Bytes::from(n.to_string())),
                    version: -1,
                };
                self.send(now, OpCode::SetData, Kind::WriteOwn(n), Some(&req), 0)
            }
            14..=25 => {
                let req = PathWatchRequest {
                    path: format!("{own}/d"),
                    watch: false,
                };
                self.send(now, OpCode::GetData, Kind::ReadOwn, Some(&req), 0)
            }
            26..=35 => {
                self.next_eph += 1;
                let req = create(format!("{own}/e{}", self.next_eph), b"e", 1);
                self.send(now, OpCode::Create, Kind::CreateOwnEphemeral, Some(&req), 0)
            }
            36..=40 => {
                let Some(path) = self.ephemerals.keys().next().cloned() else {
                    return Vec::new();
                };
                // Its outcome may stay unknown: no longer tracked from here on.
                self.ephemerals.remove(&path);
                let req = DeleteRequest { path, version: -1 };
                self.send(now, OpCode::Delete, Kind::Write, Some(&req), 0)
            }
            41..=54 => {
                let (path, flags) = match rng.below(5) {
                    0 => ("/q".to_owned(), 0),
                    // Mostly ephemeral, so /q does not grow without bound.
                    1 => ("/q/n-".to_owned(), if rng.chance(10) { 2 } else { 3 }),
                    _ => (spath, rng.below(2) as i32),
                };
                let req = create(path, b"s", flags);
                self.send(now, OpCode::Create, Kind::Write, Some(&req), 0)
            }
            55..=65 => {
                let req = SetDataRequest {
                    path: spath,
                    data: Some(Bytes::from(format!("{}:{}", self.id, self.xid))),
                    version: rng.below(4) as i32 - 1,
                };
                self.send(now, OpCode::SetData, Kind::Write, Some(&req), 0)
            }
            66..=72 => {
                let req = DeleteRequest {
                    path: spath,
                    version: rng.below(3) as i32 - 1,
                };
                self.send(now, OpCode::Delete, Kind::Write, Some(&req), 0)
            }
            73..=84 => {
                let req = PathWatchRequest {
                    path: spath,
                    watch: rng.chance(30),
                };
                let op = if rng.chance(50) {
                    OpCode::GetData
                } else {
                    OpCode::Exists
                };
                self.send(now, op, Kind::Read, Some(&req), 0)
            }
            85..=92 => {
                let sync = PathRequest {
                    path: spath.clone(),
                };
                let read = PathWatchRequest {
                    path: spath,
                    watch: false,
                };
                return vec![
                    self.send(now, OpCode::Sync, Kind::Sync, Some(&sync), max_acked),
                    self.send(now, OpCode::GetData, Kind::Read, Some(&read), 0),
                ];
            }
            93..=94 => self.send(now, OpCode::CloseSession, Kind::Close, None, 0),
            _ => return Vec::new(),
        };
        vec![frame]
    }

    /// Converging: a create of `/m<n>` to prove the ensemble commits again; its (session, xid).
    pub(super) fn send_marker(&mut self, now: Millis, n: u64) -> Option<(Bytes, (i64, i32))> {
        if !self.connected() {
            return None;
        }
        let req = create(format!("/m{n}"), b"m", 0);
        let f = self.send(now, OpCode::Create, Kind::Write, Some(&req), 0);
        Some((f, (self.session, self.xid)))
    }

    /// A frame from the server (payload, length prefix stripped). Returns false when the
    /// client drops the connection after it.
    pub(super) fn on_frame(&mut self, payload: Bytes, now: Millis, ledger: &mut Ledger) -> bool {
        let id = self.id;
        let Some(c) = self.conn.as_mut() else {
            return true;
        };
        c.last_heard = now;
        if !c.connected {
            let Ok(r) = ConnectResponse::from_bytes(payload) else {
                ledger
                    .violations
                    .push(format!("client {id}: malformed ConnectResponse"));
                return false;
            };
            if r.session_id == 0 {
                // Expired (or unknown): the server closes the connection next.
                ledger.count("sessions found expired");
                self.session_ended();
                return true;
            }
            if self.session != 0 && r.session_id != self.session {
                ledger.violations.push(format!(
                    "client {id}: asked for session {:#x}, got {:#x}",
                    self.session, r.session_id
                ));
            }
            trace(
                now,
                format_args!("client {id} connected with session {:#x}", r.session_id),
            );
            ledger.count(if self.session == 0 {
                "sessions created"
            } else {
                "sessions re-attached"
            });
            self.session = r.session_id;
            self.passwd = r.passwd;
            c.connected = true;
            return true;
        }
        let mut r = Reader::new(payload);
        let Ok(h) = ReplyHeader::decode(&mut r) else {
            ledger
                .violations
                .push(format!("client {id}: malformed reply"));
            return false;
        };
        if h.xid == xid::NOTIFICATION {
            return true;
        }
        let what = format_args!(
            "client {id} gets xid {} err {} zxid {:#x}",
            h.xid, h.err, h.zxid
        );
        trace(now, what);
        ledger.count("replies");
        let session = self.session;
        let Some(req) = c.outstanding.pop_front() else {
            ledger.violations.push(format!(
                "client {id}: reply to xid {} with nothing outstanding",
                h.xid
            ));
            return false;
        };
        if req.xid != h.xid {
            ledger.violations.push(format!(
                "client {id}: FIFO broken: reply to xid {} while xid {} is the oldest outstanding",
                h.xid, req.xid
            ));
            return false;
        }
        if h.zxid < self.last_zxid_seen {
            ledger.violations.push(format!(
                "client {id}: went back in time: reply to xid {} at zxid {:#x} after {:#x}",
                h.xid, h.zxid, self.last_zxid_seen
            ));
        }
        self.last_zxid_seen = self.last_zxid_seen.max(h.zxid);
        if let Some((sync_xid, barrier)) = req.after_sync {
            if !c.failed_syncs.contains(&sync_xid) && h.zxid < barrier {
                ledger.stale_after_sync += 1;
            }
        }
        let ok = h.err == 0;
        if !ok {
            ledger.count(match ErrorCode::from_code(h.err) {
                Ok(ErrorCode::SessionMoved) => "SessionMoved replies",
                Ok(ErrorCode::SessionExpired) => "SessionExpired replies",
                _ => "other error replies",
            });
        }
        let write = matches!(
            req.kind,
            Kind::Write
                | Kind::WriteOwn(_)
                | Kind::CreateOwnEphemeral
                | Kind::Setup(_)
                | Kind::Close
        );
        let mut zxid = 0;
        if write && ok {
            match ledger.by_cxid.get(&(session, req.xid)) {
                Some(&z) => {
                    zxid = z;
                    ledger.max_acked = ledger.max_acked.max(z);
                    ledger.acked.push(Ack {
                        session,
                        cxid: req.xid,
                        zxid: z,
                    });
                }
                None => ledger.violations.push(format!(
                    "client {id}: write {:#x}/{} acknowledged but no server delivered its txn",
                    session, req.xid
                )),
            }
        }
        match req.kind {
            Kind::Sync if !ok => {
                c.failed_syncs.insert(req.xid);
            }
            Kind::Setup(true) if ok || h.err == ErrorCode::NodeExists.code() => {
                self.setup_done = true;
            }
            Kind::Setup(true) => self.setup_sent = false,
            Kind::WriteOwn(n) if ok => {
                self.own_acked = self.own_acked.max(n);
                let version = Stat::decode(&mut r).map_or(-1, |s| s.version);
                if version <= self.own_version {
                    ledger.violations.push(format!(
                        "client {id}: setData of /c{id}/d left version {version} after {}",
                        self.own_version
                    ));
                }
                self.own_version = version;
            }
            Kind::ReadOwn => self.check_own_read(h.err, r, ledger),
            Kind::CreateOwnEphemeral if ok => {
                if let Ok(p) = PathResponse::decode(&mut r) {
                    self.ephemerals.insert(p.path, (session, zxid));
                }
            }
            Kind::Close if ok => self.session_ended(),
            _ => {}
        }
        true
    }

    /// A getData of `/c<i>/d`: it exists once set up, and holds a counter at least that of
    /// the client's last acknowledged setData (read-your-writes, across reconnections).
    fn check_own_read(&mut self, err: i32, mut r: Reader, ledger: &mut Ledger) {
        let id = self.id;
        if err == ErrorCode::NoNode.code() && self.setup_done {
            ledger
                .violations
                .push(format!("client {id}: /c{id}/d vanished"));
            return;
        }
        if err != 0 {
            return;
        }
        let Ok(d) = GetDataResponse::decode(&mut r) else {
            ledger
                .violations
                .push(format!("client {id}: malformed getData reply"));
            return;
        };
        let data = d.data.unwrap_or_default();
        let n: u64 = std::str::from_utf8(&data)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        if n < self.own_acked || n > self.own_sent || d.stat.version < self.own_version {
            ledger.violations.push(format!(
                "client {id}: read /c{id}/d = {n} at version {}, acknowledged {} at version {} \
                 and sent up to {}",
                d.stat.version, self.own_acked, self.own_version, self.own_sent
            ));
        }
    }
}
