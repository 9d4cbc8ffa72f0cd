//! The core in a replicated server: the interface the ensemble shell drives.
//!
//! In an ensemble the core no longer applies a write when it receives it. The leader's core
//! *prepares* it (validates it and turns it into a txn) against the committed tree plus every
//! proposal still outstanding, and hands the txn to the replication layer
//! ([`Output::Propose`]); a learner's core forwards the request to the leader
//! ([`Output::Forward`]). Every server applies txns only once the quorum committed them
//! ([`Core::deliver`]) and answers its own clients then. A session's requests are answered in
//! order on the server it is connected to: a read, ping or setWatches waits behind that
//! session's earlier writes and syncs (ZooKeeper's `CommitProcessor`).
//!
//! Sessions are global and the leader owns them: createSession and closeSession are txns,
//! only the leader expires sessions and reaps containers and TTL nodes (through proposals),
//! learners report activity ([`Output::Touch`]), and a session re-attaching to a learner is
//! revalidated by the leader, which then takes that learner as the session's owner (a write
//! through another server fails with `SessionMoved`).
//!
//! The shell maps the replication layer's events onto the calls here and the `Output`s for
//! the replication layer onto its commands.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::{Buf, Bytes};
use zkit_proto::quorum::{ForwardedRequest, SessionTouch};
use zkit_proto::txn::{CloseSessionTxn, CreateSessionTxn, ErrorTxn};
use zkit_proto::{ConnectRequest, ErrorCode, Id, OpCode, Reader, Record, RequestHeader};

use super::ops::prepare;
use super::prep::{Pending, Prep, Rec};
use super::tree::CONFIG;
use super::{Config, ConnId, Core, Database, Output, TreeDigest, Txn, TxnBody};

/// How a core serves clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One server on its own: writes are applied at once.
    #[default]
    Standalone,
    /// The established leader of epoch `epoch`: prepares and proposes.
    Leader {
        /// The ZAB epoch.
        epoch: u32,
    },
    /// A follower in broadcast: forwards writes, applies commits.
    Follower,
    /// An observer in broadcast: as a follower, without a vote.
    Observer,
    /// Not in broadcast (electing, syncing): refuses clients, as ZooKeeper does.
    NotServing,
}

impl Mode {
    /// Whether clients are served.
    pub fn serving(self) -> bool {
        self != Mode::NotServing
    }

    /// The name ZooKeeper's four-letter words give it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Leader { .. } => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::NotServing => "not serving",
        }
    }

    fn learner(self) -> bool {
        matches!(self, Mode::Follower | Mode::Observer)
    }
}

/// A request waiting on this server for its session's turn.
#[derive(Debug)]
pub(super) enum Waiting {
    /// A handshake waiting for its createSession txn or the leader's revalidation.
    Connect { conn: ConnId, timeout: i32 },
    /// A write waiting for its txn.
    Write { conn: ConnId, xid: i32, op: OpCode },
    /// A sync waiting for the leader (the frame is answered then).
    Sync { conn: ConnId, frame: Bytes },
    /// A read, ping or setWatches queued behind the entries before it.
    Later { conn: ConnId, frame: Bytes },
}

/// What the core keeps for replication.
#[derive(Debug, Default)]
pub(super) struct Replica {
    pub mode: Mode,
    /// This server's id.
    pub server_id: i64,
    /// Per session, the requests waiting on this server, in arrival order.
    pub waiting: HashMap<i64, VecDeque<Waiting>>,
    /// Sessions whose syncs were sent, in order.
    pub syncs: VecDeque<i64>,
    /// Leader: the changes of proposals not committed yet.
    pub pending: Pending,
    /// Leader: proposals not committed yet (sequence number, paths changed), in order.
    pub proposals: VecDeque<(u64, Vec<String>)>,
    /// Leader: sequence number of the last proposal.
    pub proposed: u64,
    /// Leader: sessions whose closeSession is proposed.
    pub closing: HashSet<i64>,
    /// Leader: the server each session is attached to (first come when unknown).
    pub owners: HashMap<i64, i64>,
    /// Learner: sessions with activity since the last tick, and their timeouts.
    pub touched: HashMap<i64, i32>,
    /// The ensemble's configuration, shown in `/zookeeper/config`.
    pub config: Option<Bytes>,
    /// Read-only mode: the sessions created here, known to no other server.
    pub ro_sessions: HashSet<i64>,
}

impl Core {
    /// A core for a member of an ensemble with server id `server_id` (the high byte of the
    /// session ids it creates), over `db` (what the server's disk holds). It starts
    /// [`Mode::NotServing`].
    pub fn replica(cfg: Config, db: Database, now: i64, server_id: i64) -> Core {
        let mut core = Core::with_db(cfg, db, now);
        core.next_session = (((now as u64) << 24) >> 8) as i64 | (server_id << 56);
        core.deadlines.clear();
        core.replica.mode = Mode::NotServing;
        core.replica.server_id = server_id;
        core
    }

    /// Shows the ensemble's configuration (`server.N=host:quorumPort:electionPort:role`
    /// lines, then `version=...`) in `/zookeeper/config`, as ZooKeeper does when it starts: not
    /// a txn (the node is outside the tree digest), data version -1, mtime now.
    pub fn set_config(&mut self, config: Bytes, now: i64) {
        self.replica.config = Some(config);
        self.show_config(now);
    }

    fn show_config(&mut self, now: i64) {
        if let Some(c) = self.replica.config.clone() {
            let mut changes = Vec::new();
            let _ = self
                .db
                .tree
                .set_data(CONFIG, Some(c), -1, 0, now, &mut changes);
        }
    }

    /// How this core serves.
    pub fn mode(&self) -> Mode {
        self.replica.mode
    }

    /// The replication layer changed role. Any change closes every client connection and
    /// drops every waiting request (clients reconnect, as with ZooKeeper, whose server
    /// restarts its request pipeline on every role change). A new leader gives every session
    /// a full timeout from now.
    pub fn set_mode(&mut self, mode: Mode, now: i64) {
        if mode == self.replica.mode || self.replica.mode == Mode::Standalone {
            return;
        }
        tracing::info!(
            from = self.replica.mode.name(),
            to = mode.name(),
            "serving mode"
        );
        self.drop_clients("server changed role");
        self.shadow = None;
        self.replica.mode = mode;
        self.deadlines.clear();
        self.timeouts.clear();
        if let Mode::Leader { .. } = mode {
            self.deadlines = self
                .db
                .sessions
                .iter()
                .map(|(id, to)| (*id, now + *to as i64))
                .collect();
            self.last_reap = now;
        }
    }

    /// Closes every client connection and forgets everything in flight.
    fn drop_clients(&mut self, why: &'static str) {
        self.close_all_with(why);
        let r = &mut self.replica;
        r.waiting.clear();
        r.syncs.clear();
        r.pending.clear();
        r.proposals.clear();
        r.closing.clear();
        r.owners.clear();
        r.touched.clear();
        r.ro_sessions.clear();
    }

    pub(super) fn close_all_with(&mut self, why: &'static str) {
        let all: Vec<ConnId> = self.conns.keys().copied().collect();
        for c in all {
            self.close(c, why);
        }
    }

    /// A committed txn, in zxid order, each once: applied, its watches fired, and the waiting
    /// request of a local session answered.
    pub fn deliver(&mut self, txn: &Txn, now: i64) {
        self.clock = now;
        self.speculate_history(txn);
        let rc = self.commit(txn);
        let session = txn.hdr.client_id;
        if let Mode::Leader { epoch } = self.replica.mode {
            if (txn.hdr.zxid >> 32) as u32 == epoch {
                self.proposal_committed();
            }
        }
        match &txn.body {
            TxnBody::CreateSession(t) => {
                if let Mode::Leader { .. } = self.replica.mode {
                    self.deadlines.insert(session, now + t.time_out as i64);
                }
            }
            TxnBody::CloseSession(_) => {
                self.deadlines.remove(&session);
                self.timeouts.remove(&session);
                self.replica.closing.remove(&session);
                self.replica.owners.remove(&session);
            }
            _ => {}
        }
        let head = self
            .replica
            .waiting
            .get_mut(&session)
            .and_then(|q| match q.front() {
                Some(Waiting::Connect { .. }) if rc.txn_type == OpCode::CreateSession => {
                    q.pop_front()
                }
                Some(Waiting::Write { xid, .. }) if *xid == txn.hdr.cxid => q.pop_front(),
                _ => None,
            });
        match head {
            Some(Waiting::Connect { conn, timeout }) => {
                tracing::info!(
                    session_id = format_args!("0x{session:x}"),
                    "session created"
                );
                self.finish_connect(conn, session, timeout, true, now);
            }
            Some(Waiting::Write { conn, xid, op }) => self.reply_write(conn, xid, op, rc),
            _ => {}
        }
        if txn.body.op() == OpCode::CloseSession {
            // ZooKeeper closes the session's connection on every server once the close
            // commits (a client's close, or an expiry); a handshake still waiting for the
            // leader's revalidation learns that the session is gone.
            for w in self.replica.waiting.remove(&session).unwrap_or_default() {
                if let Waiting::Connect { conn, timeout } = w {
                    self.finish_connect(conn, session, timeout, false, now);
                }
            }
            if let Some(conn) = self.session_conn.remove(&session) {
                self.close(conn, "session closed");
            }
        } else {
            self.drain(session, now);
        }
    }

    /// Leader: the oldest outstanding proposal committed; its pending changes are now in the
    /// tree (unless a later proposal changed the same path again).
    fn proposal_committed(&mut self) {
        let r = &mut self.replica;
        if let Some((seq, paths)) = r.proposals.pop_front() {
            for p in paths {
                if r.pending.get(&p).is_some_and(|(s, _)| *s == seq) {
                    r.pending.remove(&p);
                }
            }
        }
    }

    /// The state was rebuilt from disk (TRUNC) or a snapshot (SNAP): replaces the database.
    /// Closes every client connection.
    pub fn reset(&mut self, db: Database, now: i64) {
        self.drop_clients("server state rebuilt");
        self.shadow = None;
        self.digest = TreeDigest::of(&db.tree);
        self.db = db;
        self.show_config(now);
        self.watches = Default::default();
        self.deadlines.clear();
        self.last_reap = now;
    }

    /// Leader: a learner forwarded a client request (or a createSession/closeSession/sync).
    pub fn learner_request(
        &mut self,
        from: i64,
        request: ForwardedRequest,
        authinfo: Vec<Id>,
        now: i64,
    ) {
        if !matches!(self.replica.mode, Mode::Leader { .. }) {
            return;
        }
        let ForwardedRequest {
            session_id,
            cxid,
            op,
            body,
        } = request;
        match OpCode::from_code(op) {
            Ok(OpCode::CreateSession) => {
                let mut b = body;
                if b.remaining() < 4 {
                    tracing::warn!(from, "malformed forwarded createSession ignored");
                    return;
                }
                let timeout = b.get_i32();
                self.replica.owners.insert(session_id, from);
                let body = TxnBody::CreateSession(CreateSessionTxn { time_out: timeout });
                self.propose(Txn::new(session_id, cxid, 0, now, body), Default::default());
            }
            Ok(OpCode::CloseSession) => self.propose_close(session_id, cxid, Some(from), now),
            Ok(OpCode::Sync) => self.out.push(Output::SyncFor(from)),
            Ok(op) => self.propose_request(session_id, cxid, op, body, &authinfo, from, now),
            Err(_) => {
                let err = TxnBody::Error(ErrorTxn {
                    err: ErrorCode::Unimplemented.code(),
                });
                self.propose(Txn::new(session_id, cxid, 0, now, err), Default::default());
            }
        }
    }

    /// Leader: whether `session` may issue a write through server `owner`
    /// (`SessionTracker.checkSession`).
    fn check_session(&mut self, session: i64, owner: i64) -> Result<(), ErrorCode> {
        if !self.db.sessions.contains_key(&session) || self.replica.closing.contains(&session) {
            return Err(ErrorCode::SessionExpired);
        }
        let o = self.replica.owners.entry(session).or_insert(owner);
        if *o != owner {
            return Err(ErrorCode::SessionMoved);
        }
        Ok(())
    }

    /// Leader: prepares a client write of `session` (arrived at server `owner`) and proposes it.
    #[allow(clippy::too_many_arguments)]
    fn propose_request(
        &mut self,
        session: i64,
        cxid: i32,
        op: OpCode,
        body: Bytes,
        ids: &[Id],
        owner: i64,
        now: i64,
    ) {
        let zxid = self.db.last_zxid + 1;
        let (txn_body, changes) = match self.check_session(session, owner) {
            Err(e) => (TxnBody::Error(ErrorTxn { err: e.code() }), HashMap::new()),
            Ok(()) => {
                let mut r = Reader::new(body).java_strings();
                let pending = &self.replica.pending;
                prepare(
                    &self.db.tree,
                    Some(pending),
                    session,
                    ids,
                    op,
                    &mut r,
                    zxid,
                    now,
                )
            }
        };
        self.propose(Txn::new(session, cxid, zxid, now, txn_body), changes);
    }

    /// Leader: proposes the close of `session` (a client's close through `owner`, or an
    /// expiry when `owner` is None): its ephemerals, committed or pending, are deleted.
    fn propose_close(&mut self, session: i64, cxid: i32, owner: Option<i64>, now: i64) {
        if let Some(owner) = owner {
            if let Err(e) = self.check_session(session, owner) {
                let err = TxnBody::Error(ErrorTxn { err: e.code() });
                self.propose(Txn::new(session, cxid, 0, now, err), HashMap::new());
                return;
            }
        } else if self.replica.closing.contains(&session) {
            return;
        }
        let mut paths: Vec<String> = self
            .db
            .tree
            .ephemerals_of(session)
            .into_iter()
            .filter(|p| !matches!(self.replica.pending.get(p), Some((_, None))))
            .collect();
        let mut created: Vec<&String> = self
            .replica
            .pending
            .iter()
            .filter(|(p, (_, r))| {
                r.as_ref()
                    .is_some_and(|r| r.stat.ephemeral_owner == session)
                    && !paths.contains(p)
            })
            .map(|(p, _)| p)
            .collect();
        created.sort();
        paths.extend(created.into_iter().cloned());
        self.replica.closing.insert(session);
        let body = TxnBody::CloseSession(CloseSessionTxn {
            paths2_delete: paths.clone(),
        });
        // Deleting the ephemerals changes their parents too; the next prepare must see both.
        let mut changes = HashMap::new();
        for p in &paths {
            let parent = zkit_proto::path::parent(p).to_owned();
            let parent = if parent.is_empty() {
                "/".into()
            } else {
                parent
            };
            let prep = Prep::new(&self.db.tree, session, &[], 0, now).over(&self.replica.pending);
            if let Some(mut rec) = prep.record_of(&parent) {
                rec.child_count -= 1;
                changes.insert(parent, Some(rec));
            }
            changes.insert(p.clone(), None);
        }
        self.propose(Txn::new(session, cxid, 0, now, body), changes);
    }

    /// Leader: records `txn`'s changes as pending and hands it to the replication layer.
    fn propose(&mut self, txn: Txn, changes: HashMap<String, Option<Rec>>) {
        let r = &mut self.replica;
        r.proposed += 1;
        let seq = r.proposed;
        let mut paths = Vec::with_capacity(changes.len());
        for (p, rec) in changes {
            paths.push(p.clone());
            r.pending.insert(p, (seq, rec));
        }
        r.proposals.push_back((seq, paths));
        let spec = self.speculate(&txn);
        self.out.push(Output::Propose(Box::new(txn), spec));
    }

    /// Leader: a learner asks whether a session may attach to it; answered with
    /// [`Output::RevalidateReply`]. A valid session is touched and now owned by `from`.
    pub fn revalidate(&mut self, from: i64, session: i64, timeout: i32, now: i64) {
        let valid =
            self.db.sessions.contains_key(&session) && !self.replica.closing.contains(&session);
        if valid {
            self.replica.owners.insert(session, from);
            self.timeouts.insert(session, timeout);
            if self.keeps_alive(session) {
                self.deadlines.insert(session, now + timeout as i64);
            }
        }
        self.out.push(Output::RevalidateReply {
            to: from,
            session,
            valid,
        });
    }

    /// Learner: the leader's answer to an [`Output::Revalidate`].
    pub fn revalidated(&mut self, session: i64, valid: bool, now: i64) {
        self.clock = now;
        let Some(q) = self.replica.waiting.get_mut(&session) else {
            return;
        };
        // The oldest handshake waiting for the leader, wherever it is: the session may still
        // have requests of an earlier connection ahead of it (which the new connection's
        // requests then wait behind), and answers come in the order the handshakes asked.
        let Some(i) = q.iter().position(|w| matches!(w, Waiting::Connect { .. })) else {
            return;
        };
        let Some(Waiting::Connect { conn, timeout }) = q.remove(i) else {
            return;
        };
        if !self.conns.contains_key(&conn) {
            // Its connection is gone: nothing to answer, and no live one to detach.
            self.drain(session, now);
            return;
        }
        tracing::info!(
            session_id = format_args!("0x{session:x}"),
            valid,
            "session revalidated by the leader"
        );
        if valid {
            self.detach_previous(session, conn);
            self.timeouts.insert(session, timeout);
        }
        self.finish_connect(conn, session, timeout, valid, now);
        self.drain(session, now);
    }

    /// Leader: sessions a learner saw activity on.
    pub fn touches(&mut self, from: i64, touches: &[SessionTouch], now: i64) {
        let _ = from;
        if !matches!(self.replica.mode, Mode::Leader { .. }) {
            return;
        }
        for t in touches {
            if self.db.sessions.contains_key(&t.session_id)
                && !self.replica.closing.contains(&t.session_id)
                && self.keeps_alive(t.session_id)
            {
                self.deadlines
                    .insert(t.session_id, now + t.timeout.max(0) as i64);
            }
        }
    }

    /// A `sync` completed (everything proposed before it is committed): the oldest waiting
    /// sync on this server is answered.
    pub fn synced(&mut self, now: i64) {
        self.clock = now;
        let Some(session) = self.replica.syncs.pop_front() else {
            return;
        };
        let Some(q) = self.replica.waiting.get_mut(&session) else {
            return;
        };
        let Some(w) = q.iter_mut().find(|w| matches!(w, Waiting::Sync { .. })) else {
            return;
        };
        // Answered in its turn: never before a request of the session ahead of it.
        if let Waiting::Sync { conn, frame } = w {
            let (conn, frame) = (*conn, frame.clone());
            *w = Waiting::Later { conn, frame };
        }
        self.drain(session, now);
    }

    /// Answers the requests at the head of `session`'s queue that no longer wait.
    fn drain(&mut self, session: i64, now: i64) {
        loop {
            let Some(q) = self.replica.waiting.get_mut(&session) else {
                return;
            };
            match q.front() {
                None => {
                    self.replica.waiting.remove(&session);
                    return;
                }
                Some(Waiting::Later { .. }) => {
                    if let Some(Waiting::Later { conn, frame }) = q.pop_front() {
                        self.serve_frame(conn, session, frame, now);
                    }
                }
                Some(_) => return,
            }
        }
    }

    /// Answers a request frame that waited its turn.
    fn serve_frame(&mut self, conn: ConnId, session: i64, frame: Bytes, now: i64) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let mut r = Reader::new(frame).java_strings();
        let Ok(h) = RequestHeader::decode(&mut r) else {
            return;
        };
        if let Ok(op) = OpCode::from_code(h.op) {
            self.serve(conn, session, h, op, &mut r, now);
        }
    }

    /// A handshake in an ensemble: a new session is a createSession txn; a session that
    /// re-attaches is revalidated by the leader.
    pub(super) fn replica_handshake(
        &mut self,
        conn: ConnId,
        req: &ConnectRequest,
        timeout: i32,
        now: i64,
    ) {
        if self.read_only_now() {
            self.ro_handshake(conn, req, timeout, now);
            return;
        }
        let leader = matches!(self.replica.mode, Mode::Leader { .. });
        if req.session_id == 0 {
            let id = self.next_session;
            self.next_session += 1;
            self.enqueue(id, Waiting::Connect { conn, timeout });
            if leader {
                self.replica.owners.insert(id, self.replica.server_id);
                let body = TxnBody::CreateSession(CreateSessionTxn { time_out: timeout });
                self.propose(Txn::new(id, 0, 0, now, body), HashMap::new());
            } else {
                self.out.push(Output::Forward {
                    request: ForwardedRequest {
                        session_id: id,
                        cxid: 0,
                        op: OpCode::CreateSession.code(),
                        body: Bytes::copy_from_slice(&timeout.to_be_bytes()),
                    },
                    authinfo: Vec::new(),
                });
            }
            return;
        }
        let id = req.session_id;
        if req.passwd != self.password(id) {
            tracing::info!(
                session_id = format_args!("0x{id:x}"),
                "bad session password, answering expired"
            );
            self.finish_connect(conn, id, timeout, false, now);
            return;
        }
        if leader {
            let valid = self.db.sessions.contains_key(&id) && !self.replica.closing.contains(&id);
            if valid {
                self.detach_previous(id, conn);
                self.replica.owners.insert(id, self.replica.server_id);
                self.timeouts.insert(id, timeout);
            }
            self.finish_connect(conn, id, timeout, valid, now);
        } else {
            self.enqueue(id, Waiting::Connect { conn, timeout });
            self.out.push(Output::Revalidate {
                session: id,
                timeout,
            });
        }
    }

    fn enqueue(&mut self, session: i64, w: Waiting) {
        self.replica
            .waiting
            .entry(session)
            .or_default()
            .push_back(w);
    }

    /// A request in an ensemble: writes are proposed (leader) or forwarded (learner) and wait
    /// for their txn; a sync waits for the leader; anything else waits behind what its
    /// session already has waiting. Returns false when the request is to be served now.
    pub(super) fn replica_request(
        &mut self,
        conn: ConnId,
        session: i64,
        h: &RequestHeader,
        op: OpCode,
        frame: Bytes,
        now: i64,
    ) -> bool {
        let leader = matches!(self.replica.mode, Mode::Leader { .. });
        match op {
            OpCode::Auth | OpCode::Sasl => false,
            OpCode::Create
            | OpCode::Create2
            | OpCode::CreateContainer
            | OpCode::CreateTtl
            | OpCode::Delete
            | OpCode::SetData
            | OpCode::SetAcl
            | OpCode::Check
            | OpCode::Multi
            | OpCode::Reconfig
            | OpCode::CloseSession => {
                self.enqueue(
                    session,
                    Waiting::Write {
                        conn,
                        xid: h.xid,
                        op,
                    },
                );
                let body = frame.slice(8.min(frame.len())..);
                let ids = self
                    .conns
                    .get(&conn)
                    .map(|c| c.auth.clone())
                    .unwrap_or_default();
                if leader {
                    let me = self.replica.server_id;
                    if op == OpCode::CloseSession {
                        self.propose_close(session, h.xid, Some(me), now);
                    } else {
                        self.propose_request(session, h.xid, op, body, &ids, me, now);
                    }
                } else {
                    self.out.push(Output::Forward {
                        request: ForwardedRequest {
                            session_id: session,
                            cxid: h.xid,
                            op: op.code(),
                            body,
                        },
                        authinfo: ids,
                    });
                }
                true
            }
            OpCode::Sync => {
                self.enqueue(
                    session,
                    Waiting::Sync {
                        conn,
                        frame: frame.clone(),
                    },
                );
                self.replica.syncs.push_back(session);
                if leader {
                    self.out.push(Output::SyncFor(self.replica.server_id));
                } else {
                    self.out.push(Output::Forward {
                        request: ForwardedRequest {
                            session_id: session,
                            cxid: h.xid,
                            op: op.code(),
                            body: frame.slice(8.min(frame.len())..),
                        },
                        authinfo: Vec::new(),
                    });
                }
                true
            }
            _ => {
                if self.replica.waiting.contains_key(&session) {
                    self.enqueue(session, Waiting::Later { conn, frame });
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Leader: expires silent sessions and reaps containers and TTL nodes, by proposals.
    /// Learner: reports the sessions that saw activity.
    pub(super) fn replica_tick(&mut self, now: i64) {
        match self.replica.mode {
            Mode::Leader { .. } => {
                let mut expired: Vec<i64> = self
                    .deadlines
                    .iter()
                    .filter(|(_, d)| **d <= now)
                    .map(|(s, _)| *s)
                    .collect();
                expired.sort();
                for s in expired {
                    tracing::info!(session_id = format_args!("0x{s:x}"), "session expired");
                    self.deadlines.remove(&s);
                    self.propose_close(s, 0, None, now);
                }
                if now - self.last_reap >= self.cfg.reap_interval {
                    self.last_reap = now;
                    for path in self.reap_candidates(now) {
                        let body = {
                            let mut prep = Prep::new(&self.db.tree, 0, &[], 0, now)
                                .over(&self.replica.pending);
                            match prep.delete_container(&path) {
                                Ok(b) => Some((b, prep.into_changes())),
                                Err(_) => None,
                            }
                        };
                        if let Some((b, changes)) = body {
                            self.propose(Txn::new(0, 0, 0, now, b), changes);
                        }
                    }
                }
            }
            Mode::Follower | Mode::Observer => {
                for (session, timeout) in std::mem::take(&mut self.replica.touched) {
                    self.out.push(Output::Touch { session, timeout });
                }
            }
            _ => {}
        }
    }

    /// Leader: expires a session now (a test fault): its close is proposed.
    pub(super) fn replica_expire(&mut self, session: i64, now: i64) -> bool {
        if !matches!(self.replica.mode, Mode::Leader { .. })
            || !self.db.sessions.contains_key(&session)
            || self.replica.closing.contains(&session)
        {
            return false;
        }
        self.deadlines.remove(&session);
        self.propose_close(session, 0, None, now);
        true
    }

    /// Records activity on a session: a deadline on the leader, a touch to report on a
    /// learner.
    pub(super) fn replica_touch(&mut self, session: i64, timeout: i32, now: i64) {
        match self.replica.mode {
            Mode::Leader { .. } => {
                self.deadlines.insert(session, now + timeout as i64);
            }
            m if m.learner() => {
                self.replica.touched.insert(session, timeout);
            }
            _ => {}
        }
    }
}
