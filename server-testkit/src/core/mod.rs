//! The sans-IO server core: deterministic, no clock, no randomness of its own, no sockets.
//!
//! The shell feeds it connection events, received frames and the current time (ms since the
//! epoch); it answers with [`Output`]s (txns committed, frames to send, connections to close) in
//! the order they must happen. Every write becomes a [`Txn`] applied by [`Database::apply`] and
//! emitted as [`Output::Committed`] with the tree digest after it; watch notifications caused by
//! a txn are queued after it and before the reply of the request that caused it.

mod acl;
mod db;
mod digest;
mod digest_check;
mod fault_ops;
mod faults;
mod frame;
mod jhash;
mod nodes;
mod ops;
pub(crate) mod password;
mod prep;
mod readonly;
mod replica;
mod sasl;
mod speculate;
mod tree;
mod txn;
mod watch;

#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};
use zkit_proto::frame::{begin_frame, end_frame};
use zkit_proto::txn::CloseSessionTxn;
use zkit_proto::{ErrorCode, Id, Record, ReplyHeader, WatcherEvent};

use acl::check_acl;
pub use db::{ApplyResult, Database};
pub use digest::{tree_digest, TreeDigest, DIGEST_VERSION};
pub use faults::{FaultAction, FaultRule, RuleId, SessionFaults};
pub use frame::Frame;
pub(crate) use frame::FrameBuf;
pub use password::PasswordScheme;
use prep::Prep;
pub use replica::Mode;
pub use speculate::Speculated;
pub use tree::{join, AclList, Change, DataTree, NodeKind, StatPersisted};
pub use txn::{Txn, TxnBody};
pub use watch::{Fired, WatchKind, WatchManager};

/// Identifies one client connection (assigned by the shell).
pub type ConnId = u64;

/// Static configuration of the core.
#[derive(Debug, Clone)]
pub struct Config {
    /// tickTime, ms.
    pub tick_time: i32,
    /// Lowest negotiable session timeout, ms (default 2 × tickTime).
    pub min_session_timeout: i32,
    /// Highest negotiable session timeout, ms (default 20 × tickTime).
    pub max_session_timeout: i32,
    /// `user:BASE64` digest that authenticates as super.
    pub super_digest: Option<String>,
    /// TTL nodes enabled (`zookeeper.extendedTypesEnabled`).
    pub extended_types: bool,
    /// Key of session passwords (the shell supplies it; the core has no randomness).
    pub secret: Secret,
    /// How session passwords are derived (keyed by `secret` unless a mixed ensemble needs
    /// ZooKeeper's own derivation).
    pub session_passwords: PasswordScheme,
    /// Leader: attach the tree digest after each proposal, as ZooKeeper's leader does (its
    /// learners check it). Costs a second copy of the database on the leader.
    pub proposal_digests: bool,
    /// How often the container/TTL reaper runs, ms.
    pub reap_interval: i64,
    /// DIGEST-MD5 users and their passwords (a JAAS `Server` section's `user_<name>`); empty:
    /// no SASL.
    pub sasl_users: BTreeMap<String, String>,
    /// The SASL name that authenticates as super (`zookeeper.superUser`).
    pub sasl_super_user: Option<String>,
    /// Requests other than auth and sasl need a `sasl` id first
    /// (`zookeeper.sessionRequireClientSASLAuth`).
    pub require_sasl: bool,
    /// Answer a re-attach to an unknown session with a brand-new session instead of "expired"
    /// (what ClickHouse Keeper does after a restart; a fault for client tests).
    pub renew_unknown_sessions: bool,
    /// Read-only mode (`readonlymode.enabled`): a member cut off from the quorum serves
    /// read-only clients.
    pub read_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tick_time: 2000,
            min_session_timeout: 4000,
            max_session_timeout: 40000,
            super_digest: None,
            extended_types: false,
            secret: Secret::from_bytes([0x5e; Secret::LEN]),
            session_passwords: PasswordScheme::Keyed,
            proposal_digests: false,
            reap_interval: 1000,
            sasl_users: BTreeMap::new(),
            sasl_super_user: None,
            require_sasl: false,
            renew_unknown_sessions: false,
            read_only: false,
        }
    }
}

/// The key session passwords are derived from: [`Secret::LEN`] bytes the shell supplies.
///
/// A session's password is a keyed hash of its id, so a client must have been handed the
/// password to resume a session; knowing the id (which `cons`, `dump` and the logs show) is
/// not enough. This deliberately differs from ZooKeeper, whose password is a function of the
/// session id alone (`ZooKeeperServer.generatePasswd`: `new Random(id ^ 0xB3415C00)`), which
/// lets anyone who can read an id take over the session. The shell draws the secret from the OS and, with a
/// data dir, keeps it there so sessions survive a restart of the process. `Debug` never shows
/// it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; Secret::LEN]);

impl Secret {
    /// Length of a secret in bytes.
    pub const LEN: usize = 32;

    /// A secret made of these bytes.
    pub fn from_bytes(bytes: [u8; Secret::LEN]) -> Secret {
        Secret(bytes)
    }

    /// The bytes of the secret.
    pub fn as_bytes(&self) -> &[u8; Secret::LEN] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A txn the core has applied, with the tree digest after it: what a txn log records and what
/// replication would ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The txn.
    pub txn: Txn,
    /// Tree digest after the txn (None for error txns, which ZooKeeper logs without one).
    pub digest: Option<i64>,
}

/// Something the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A txn was applied. The outputs after it (its notifications and reply) must not be
    /// released before the txn is durable, when the shell persists.
    Committed(Box<Committed>),
    /// Send this whole frame (length prefix included) on the connection. A reply to getData
    /// references the node's data rather than copying it (see [`Frame`]).
    Send(ConnId, Frame),
    /// Close the connection after everything queued before has been sent.
    Close(ConnId, &'static str),
    /// Leader: propose this txn. Its header's zxid is a placeholder: the replication layer
    /// assigns the zxid (the next of its epoch) when it logs the proposal. With
    /// [`Config::proposal_digests`], also the zxid it is expected to get and the tree digest
    /// after it (attach the digest only if the zxid is that one).
    Propose(Box<Txn>, Option<Speculated>),
    /// Learner: forward this request to the leader (REQUEST).
    Forward {
        /// The request.
        request: zkit_proto::quorum::ForwardedRequest,
        /// The client connection's auth ids.
        authinfo: Vec<Id>,
    },
    /// Learner: ask the leader whether `session` may attach here (REVALIDATE).
    Revalidate {
        /// The session.
        session: i64,
        /// The timeout the client negotiated, ms.
        timeout: i32,
    },
    /// Leader: answer learner `to`'s REVALIDATE.
    RevalidateReply {
        /// The learner.
        to: i64,
        /// The session.
        session: i64,
        /// Whether it is alive (and now owned by `to`).
        valid: bool,
    },
    /// Learner: `session` saw activity (reported to the leader in the next PING reply).
    Touch {
        /// The session.
        session: i64,
        /// Its timeout, ms.
        timeout: i32,
    },
    /// Leader: complete a `sync` for server `sid` (this one's own id included) once every
    /// earlier proposal is committed.
    SyncFor(i64),
}

/// Per-connection state the core tracks.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Peer address.
    pub remote: SocketAddr,
    /// The session, once the handshake succeeded.
    pub session: Option<i64>,
    /// Authenticated ids (starts with `ip:<addr>`).
    pub auth: Vec<Id>,
    /// Packets received.
    pub received: u64,
    /// Packets sent.
    pub sent: u64,
    /// Last cxid seen.
    pub last_cxid: i32,
    /// Last zxid sent in a reply.
    pub last_zxid: i64,
    /// Last operation, as the `cons` four-letter word names it (`GETD`, `CREA`, ...).
    pub last_op: &'static str,
    /// When the connection was opened.
    pub established: i64,
    /// Whether the client omitted the readOnly byte (pre-3.4 client).
    old_client: bool,
    /// Whether the handshake is done (a close was requested otherwise).
    closing: bool,
    /// The connection's SASL exchange, once it sent a sasl packet.
    sasl: Option<Box<zkit_proto::sasl::DigestMd5Server>>,
    /// Whether the connection was accepted read-only.
    read_only: bool,
}

/// One live session, as listed by [`Core::sessions`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Session id.
    pub id: i64,
    /// Negotiated timeout, ms.
    pub timeout: i32,
    /// Connection it is attached to, if any.
    pub conn: Option<ConnId>,
    /// Ephemeral nodes it owns.
    pub ephemerals: Vec<String>,
}

/// Server counters for the four-letter words.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Packets received.
    pub received: u64,
    /// Packets sent.
    pub sent: u64,
    /// Txns whose leader-computed tree digest was compared with ours after applying them.
    pub digest_checks: u64,
    /// Of those, how many differed (`zk_digest_mismatches_count`).
    pub digest_mismatches: u64,
}

/// The server state machine.
#[derive(Debug)]
pub struct Core {
    cfg: Config,
    db: Database,
    watches: WatchManager,
    conns: BTreeMap<ConnId, ConnInfo>,
    session_conn: HashMap<i64, ConnId>,
    deadlines: HashMap<i64, i64>,
    /// Timeouts negotiated on re-attach (local to this server, not replicated).
    timeouts: HashMap<i64, i32>,
    next_session: i64,
    last_reap: i64,
    started: i64,
    counters: Counters,
    out: Vec<Output>,
    /// Running digest of `db.tree`.
    digest: TreeDigest,
    /// Replication state (idle in standalone mode).
    replica: replica::Replica,
    /// SASL exchanges started (part of each one's nonce).
    sasl_nonces: u64,
    /// Targeted faults a test installed (idle otherwise).
    faults: faults::Faults,
    /// The time of the latest input (for the faults that delay frames).
    clock: i64,
    /// Leader: the speculative database behind [`Speculated`] digests.
    shadow: Option<speculate::Shadow>,
}

impl Core {
    /// A core with a fresh database; `now` seeds session ids like ZooKeeper
    /// (`(now << 24) >>> 8 | 1 << 56`).
    pub fn new(cfg: Config, now: i64) -> Core {
        let extended = cfg.extended_types;
        Core::with_db(cfg, Database::new(extended), now)
    }

    /// A core over an existing database (restart with the same data).
    pub fn with_db(cfg: Config, db: Database, now: i64) -> Core {
        let digest = TreeDigest::of(&db.tree);
        Core::with_digested_db(cfg, db, digest, now)
    }

    /// A core over a database whose tree digest is already known (recovered from disk).
    pub fn with_digested_db(cfg: Config, db: Database, digest: TreeDigest, now: i64) -> Core {
        let next_session = (((now as u64) << 24) >> 8) as i64 | (1i64 << 56);
        // Sessions restored from the database get a full timeout from now.
        let deadlines = db
            .sessions
            .iter()
            .map(|(id, to)| (*id, now + *to as i64))
            .collect();
        Core {
            cfg,
            db,
            watches: WatchManager::default(),
            conns: BTreeMap::new(),
            session_conn: HashMap::new(),
            deadlines,
            timeouts: HashMap::new(),
            next_session,
            last_reap: now,
            started: now,
            counters: Counters::default(),
            out: Vec::new(),
            digest,
            replica: Default::default(),
            sasl_nonces: 0,
            faults: Default::default(),
            clock: now,
            shadow: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The replicated state.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Consumes the core, keeping the database (for restart).
    pub fn into_db(self) -> Database {
        self.db
    }

    /// The tree digest after the last applied txn.
    pub fn digest(&self) -> i64 {
        self.digest.value()
    }

    /// Takes the pending outputs.
    pub fn take_output(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// When the core was created (ms).
    pub fn started(&self) -> i64 {
        self.started
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Open connections.
    pub fn connections(&self) -> impl Iterator<Item = (&ConnId, &ConnInfo)> {
        self.conns.iter()
    }

    /// The watch manager.
    pub fn watch_manager(&self) -> &WatchManager {
        &self.watches
    }

    /// A new connection from `remote`.
    pub fn conn_opened(&mut self, conn: ConnId, remote: SocketAddr, now: i64) {
        self.conns.insert(
            conn,
            ConnInfo {
                remote,
                session: None,
                auth: vec![Id {
                    scheme: "ip".into(),
                    id: remote.ip().to_string(),
                }],
                received: 0,
                sent: 0,
                last_cxid: 0,
                last_zxid: 0,
                last_op: "NA",
                established: now,
                old_client: false,
                closing: false,
                sasl: None,
                read_only: false,
            },
        );
    }

    /// The connection is gone: its watches go, its session stays until it expires.
    pub fn conn_closed(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(s) = c.session {
                if self.session_conn.get(&s) == Some(&conn) {
                    self.session_conn.remove(&s);
                }
            }
        }
        self.watches.remove_conn(conn);
        self.faults.conn_closed(conn);
    }

    /// A frame arrived on `conn` (payload without the length prefix).
    pub fn receive(&mut self, conn: ConnId, frame: Bytes, now: i64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing {
            return;
        }
        c.received += 1;
        let handshaken = c.session.is_some();
        self.clock = now;
        self.counters.received += 1;
        if !self.replica.mode.serving() && !self.read_only_now() {
            // Like ZooKeeper outside broadcast: no client is served.
            self.close(conn, "server not serving");
            return;
        }
        if !handshaken {
            self.handshake(conn, frame, now);
        } else {
            self.request(conn, frame, now);
        }
    }

    /// Advances time: expires silent sessions, reaps containers and TTL nodes.
    pub fn tick(&mut self, now: i64) {
        self.clock = now;
        self.fault_tick(now);
        if self.replica.mode != Mode::Standalone {
            self.replica_tick(now);
            return;
        }
        let mut expired: Vec<i64> = self
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(s, _)| *s)
            .collect();
        expired.sort();
        for s in expired {
            tracing::info!(session_id = format_args!("0x{s:x}"), "session expired");
            self.expire_session(s, now);
        }
        if now - self.last_reap >= self.cfg.reap_interval {
            self.last_reap = now;
            self.reap(now);
        }
    }

    /// Keeps every session alive as of `now` (after a pause of the whole server).
    pub fn touch_all(&mut self, now: i64) {
        let ids: Vec<i64> = self.deadlines.keys().copied().collect();
        for s in ids {
            let to = self.timeout_of(s).unwrap_or(0) as i64;
            if let Some(d) = self.deadlines.get_mut(&s) {
                *d = (*d).max(now + to);
            }
        }
    }

    /// Expires a session now: its ephemerals are deleted, its connection closed.
    /// Returns false if there is no such session.
    pub fn expire_session(&mut self, session: i64, now: i64) -> bool {
        if self.replica.mode != Mode::Standalone {
            return self.replica_expire(session, now);
        }
        if !self.db.sessions.contains_key(&session) {
            return false;
        }
        self.close_session(session, 0, now);
        if let Some(conn) = self.session_conn.remove(&session) {
            self.close(conn, "session expired");
        }
        true
    }

    /// Closes the connection a session is attached to (the session lives on).
    pub fn close_session_connection(&mut self, session: i64) -> bool {
        match self.session_conn.get(&session).copied() {
            Some(conn) => {
                self.close(conn, "closed by test");
                true
            }
            None => false,
        }
    }

    /// Closes every connection.
    pub fn close_all_connections(&mut self) {
        self.close_all_with("closed by test");
    }

    /// Live sessions.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.db
            .sessions
            .keys()
            .map(|id| SessionInfo {
                id: *id,
                timeout: self.timeout_of(*id).unwrap_or(0),
                conn: self.session_conn.get(id).copied(),
                ephemerals: self.db.tree.ephemerals_of(*id),
            })
            .collect()
    }

    /// The session a connection is attached to.
    pub fn session_of(&self, conn: ConnId) -> Option<i64> {
        self.conns.get(&conn).and_then(|c| c.session)
    }

    /// Password of a session: a hash of the configured [`Secret`] and the session id (never
    /// of the id alone; see [`Secret`]), or ZooKeeper's when so configured
    /// ([`PasswordScheme::ZooKeeper`]).
    pub fn password(&self, session: i64) -> Bytes {
        if self.cfg.session_passwords == PasswordScheme::ZooKeeper {
            return Bytes::copy_from_slice(&password::zookeeper_password(session));
        }
        let mut h = Sha1::new();
        h.update(self.cfg.secret.as_bytes());
        h.update(session.to_be_bytes());
        Bytes::copy_from_slice(&h.finalize()[..16])
    }

    fn close(&mut self, conn: ConnId, reason: &'static str) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if !c.closing {
                c.closing = true;
                self.out.push(Output::Close(conn, reason));
            }
        }
    }

    fn send(&mut self, conn: ConnId, frame: Frame) {
        self.emit(conn, None, false, frame);
    }

    /// Queues a frame for `conn` (a reply to `xid`, a watch `event`, or neither) through the
    /// faults a test installed.
    fn emit(&mut self, conn: ConnId, xid: Option<i32>, event: bool, frame: Frame) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing {
            return;
        }
        c.sent += 1;
        self.counters.sent += 1;
        if self.faults.is_idle() {
            self.out.push(Output::Send(conn, frame));
        } else {
            self.route_faulted(conn, xid, event, frame);
        }
    }

    /// Sends a reply: header, then `body` on success.
    fn reply(
        &mut self,
        conn: ConnId,
        xid: i32,
        err: ErrorCode,
        body: Option<&dyn Fn(&mut BytesMut)>,
    ) {
        let header = self.reply_header(conn, xid, err);
        self.emit(conn, Some(xid), false, reply_frame(header, body));
    }

    /// Sends a reply: header, then the body built in `body` on success.
    fn reply_with(&mut self, conn: ConnId, xid: i32, err: ErrorCode, body: FrameBuf) {
        let header = self.reply_header(conn, xid, err);
        self.emit(conn, Some(xid), false, body.finish(header));
    }

    /// The header of a reply sent now on `conn` (whose last zxid it records).
    fn reply_header(&mut self, conn: ConnId, xid: i32, err: ErrorCode) -> ReplyHeader {
        let zxid = self.db.last_zxid;
        if !err.is_ok() {
            tracing::debug!(conn, xid, err = %err, "request failed");
        }
        let header = ReplyHeader {
            xid,
            zxid,
            err: err.code(),
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_zxid = zxid;
        }
        header
    }

    fn notify(&mut self, fired: Vec<Fired>) {
        for f in fired {
            // Like a patched 3.8 server (CVE-2024-23944): no event without READ on the node.
            let allowed = self
                .conns
                .get(&f.conn)
                .is_some_and(|c| check_acl(&f.acl, zkit_proto::perms::READ, &c.auth).is_ok());
            if !allowed {
                continue;
            }
            // 3.8 servers send notifications with zxid -1.
            let header = ReplyHeader {
                xid: zkit_proto::xid::NOTIFICATION,
                zxid: -1,
                err: ErrorCode::Ok.code(),
            };
            let event = WatcherEvent {
                event_type: f.event.code(),
                state: zkit_proto::KeeperState::SyncConnected.code(),
                path: f.path,
            };
            let frame = reply_frame(header, Some(&|b: &mut BytesMut| event.encode(b)));
            self.emit(f.conn, None, true, frame);
        }
    }

    /// Applies a txn, emits it as [`Output::Committed`] and queues the notifications it causes.
    fn commit(&mut self, txn: &Txn) -> ApplyResult {
        let mut changes = Vec::new();
        let pre = self.digest.before(&self.db.tree, txn);
        let rc = self.db.apply(txn, &mut changes);
        self.digest.after(&self.db.tree, pre);
        // In an ensemble the replication layer logged the txn already.
        if self.replica.mode == Mode::Standalone {
            let digest = match txn.body {
                TxnBody::Error(_) => None,
                _ => Some(self.digest.value()),
            };
            self.out.push(Output::Committed(Box::new(Committed {
                txn: txn.clone(),
                digest,
            })));
        }
        let mut fired = Vec::new();
        for ch in changes {
            match ch {
                Change::Created {
                    path,
                    acl,
                    parent_acl,
                } => self.watches.created(&path, &acl, &parent_acl, &mut fired),
                Change::Deleted {
                    path,
                    acl,
                    parent_acl,
                } => self.watches.deleted(&path, &acl, &parent_acl, &mut fired),
                Change::DataChanged { path, acl } => {
                    self.watches.data_changed(&path, &acl, &mut fired)
                }
            }
        }
        self.notify(fired);
        rc
    }

    fn next_zxid(&self) -> i64 {
        self.db.last_zxid + 1
    }

    /// The closeSession txn of `session` (deletes its ephemerals).
    fn close_session(&mut self, session: i64, cxid: i32, now: i64) -> ApplyResult {
        let paths = self.db.tree.ephemerals_of(session);
        let txn = Txn::new(
            session,
            cxid,
            self.next_zxid(),
            now,
            TxnBody::CloseSession(CloseSessionTxn {
                paths2_delete: paths,
            }),
        );
        self.deadlines.remove(&session);
        self.timeouts.remove(&session);
        self.commit(&txn)
    }

    /// The timeout a session is currently held to.
    fn timeout_of(&self, session: i64) -> Option<i32> {
        let replicated = self.db.sessions.get(&session)?;
        Some(*self.timeouts.get(&session).unwrap_or(replicated))
    }

    fn touch(&mut self, session: i64, now: i64) {
        if !self.keeps_alive(session) {
            return;
        }
        if let Some(to) = self.timeout_of(session) {
            if self.replica.mode == Mode::Standalone {
                self.deadlines.insert(session, now + to as i64);
            } else {
                self.replica_touch(session, to, now);
            }
        }
    }

    fn reap(&mut self, now: i64) {
        for path in self.reap_candidates(now) {
            let zxid = self.next_zxid();
            let body = {
                let mut prep = Prep::new(&self.db.tree, 0, &[], zxid, now);
                prep.delete_container(&path).unwrap_or_else(|err| {
                    TxnBody::Error(zkit_proto::txn::ErrorTxn { err: err.code() })
                })
            };
            tracing::debug!(path = %path, "reaping container/TTL node");
            self.commit(&Txn::new(0, 0, zxid, now, body));
        }
    }

    /// Empty containers that once had children, and expired empty TTL nodes.
    fn reap_candidates(&self, now: i64) -> Vec<String> {
        let mut candidates = Vec::new();
        for p in self.db.tree.containers() {
            if let Some(n) = self.db.tree.get(p) {
                if n.children.is_empty() && n.stat.cversion > 0 {
                    candidates.push(p.clone());
                }
            }
        }
        for p in self.db.tree.ttls() {
            if let Some(n) = self.db.tree.get(p) {
                if let NodeKind::Ttl(ttl) = NodeKind::of(n.stat.ephemeral_owner, true) {
                    if n.children.is_empty() && ttl != 0 && now - n.stat.mtime > ttl {
                        candidates.push(p.clone());
                    }
                }
            }
        }
        candidates
    }
}

/// One frame from the server: the reply header, then `body` only when the header says success
/// (a failed request's reply is the header alone, like ZooKeeper's).
fn reply_frame(header: ReplyHeader, body: Option<&dyn Fn(&mut BytesMut)>) -> Frame {
    let ok = header.err == ErrorCode::Ok.code();
    let mut b = BytesMut::new();
    let at = begin_frame(&mut b);
    header.encode(&mut b);
    if let (true, Some(f)) = (ok, body) {
        f(&mut b);
    }
    end_frame(&mut b, at);
    Frame::from(b.freeze())
}
