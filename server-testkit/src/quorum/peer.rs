//! One replicated server, sans-IO: election, then leading, following or observing with ZAB.
//!
//! The shell feeds [`Peer::step`] (a message from a peer), [`Peer::tick`] (time),
//! [`Peer::durable`] (the log is synced up to a zxid), [`Peer::disconnected`] (a ZAB
//! connection broke) and [`Peer::connected`] (an election connection came up), and drains
//! [`Peer::poll`]: messages to send, connections to close and [`Event`]s for the state
//! machine. Acknowledgements that promise durability (ACK of a proposal or of NEWLEADER, the
//! current-epoch write) wait for [`Peer::durable`].

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tracing::{debug, info};
use zkit_proto::quorum::{
    encode_revalidate, encode_revalidate_reply, ForwardedRequest, PacketType, QuorumPacket,
    ServerState, SessionTouch,
};
use zkit_proto::Id;

use super::election::{Election, ElectionConfig, Outcome};
use super::follower::FollowerState;
use super::leader::LeaderState;
use super::{Log, Message, Millis, Sid};

/// Builds a [`Ctx`] from a peer's fields (a macro so the borrow of `self.state` stays apart).
macro_rules! ctx {
    ($p:ident) => {
        Ctx {
            cfg: &$p.cfg,
            log: &mut $p.log,
            out: &mut $p.out,
            closes: &mut $p.closes,
            events: &mut $p.events,
            now: $p.now,
            durable: &mut $p.durable,
            delivered: &mut $p.delivered,
            fuzzy_to: &mut $p.fuzzy_to,
            last_role: &mut $p.last_role,
        }
    };
}

/// Static settings of a peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// This server's id.
    pub id: Sid,
    /// Voting members.
    pub voters: BTreeSet<Sid>,
    /// Observers.
    pub observers: BTreeSet<Sid>,
    /// ZooKeeper's `tickTime`, ms.
    pub tick_time: Millis,
    /// Ticks allowed for discovery and sync (`initLimit`).
    pub init_limit: u64,
    /// Ticks a synced peer may stay silent (`syncLimit`).
    pub sync_limit: u64,
    /// See [`ElectionConfig::finalize_wait`].
    pub finalize_wait: Millis,
    /// See [`ElectionConfig::max_notification_interval`].
    pub max_notification_interval: Millis,
    /// A learner further behind than this many txns gets a snapshot instead of a diff.
    pub snap_threshold: usize,
    /// The config text for notifications and NEWLEADER.
    pub config: Bytes,
}

impl PeerConfig {
    pub(super) fn is_quorum<'a>(&self, sids: impl IntoIterator<Item = &'a Sid>) -> bool {
        let n = sids.into_iter().filter(|s| self.voters.contains(s)).count();
        n > self.voters.len() / 2
    }
}

/// What a peer currently is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Electing.
    Looking,
    /// Leading `epoch` (chosen once a quorum reported its accepted epoch; 0 before).
    Leading {
        /// The epoch, 0 during discovery.
        epoch: u32,
        /// Whether a quorum acknowledged NEWLEADER (broadcast phase).
        established: bool,
    },
    /// Following `leader`.
    Following {
        /// The leader.
        leader: Sid,
        /// Whether UPTODATE arrived (serving).
        synced: bool,
    },
    /// Observing `leader`.
    Observing {
        /// The leader.
        leader: Sid,
        /// Whether UPTODATE arrived (serving).
        synced: bool,
    },
}

/// What the state machine above the peer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Apply this committed txn (in zxid order, each once).
    Deliver {
        /// Its zxid.
        zxid: i64,
        /// The txn.
        txn: Bytes,
        /// The state may hold this txn already: it came after a leader's snapshot that can
        /// hold txns past its zxid (ZooKeeper's leader writes it while it goes on applying)
        /// and before the NEWLEADER that ends that sync. Apply it all the same (a txn applied
        /// again leaves the tree as the leader's), but until the last of them the tree is not
        /// the leader's tree at this zxid, so the leader's digest of it says nothing:
        /// ZooKeeper's learner compares none of them.
        fuzzy: bool,
    },
    /// Replace the state with this snapshot (taken at `zxid`) before further deliveries.
    /// A learner gets it as soon as its log takes the leader's snapshot during sync, so it may
    /// hold the new leader's history before that is committed; should that leader fall, the
    /// next sync takes back what never commits ([`Event::Reset`]).
    Restore {
        /// The snapshot's zxid.
        zxid: i64,
        /// The snapshot.
        snapshot: Bytes,
    },
    /// The log was truncated below what the state machine holds (txns that never committed:
    /// a restarted server's uncommitted tail, or a snapshot's): rebuild the state from the
    /// log.
    Reset {
        /// The zxid the log now ends at.
        zxid: i64,
    },
    /// The role changed.
    RoleChanged(Role),
    /// Leader: a learner forwarded a client request (REQUEST); prepare it and propose it.
    Request {
        /// The learner.
        from: Sid,
        /// The request.
        request: ForwardedRequest,
        /// The client's auth info.
        authinfo: Vec<Id>,
    },
    /// Leader: a learner asks whether a session may move to it (REVALIDATE); answer with
    /// [`Peer::revalidate_reply`].
    Revalidate {
        /// The learner.
        from: Sid,
        /// The session.
        session_id: i64,
        /// Its timeout, ms.
        timeout: i32,
    },
    /// Learner: the leader's answer to [`Peer::revalidate`].
    Revalidated {
        /// The session.
        session_id: i64,
        /// Whether it is still valid.
        valid: bool,
    },
    /// Leader: sessions a learner saw activity on (its PING reply).
    Touches {
        /// The learner.
        from: Sid,
        /// The sessions.
        touches: Vec<SessionTouch>,
    },
    /// A `sync` completed: everything proposed before it is committed. A learner gets one per
    /// forwarded sync, in order; the leader one per [`Peer::sync_for`] of its own id.
    Synced,
}

/// Why a [`Peer`] refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// This peer is not an established leader.
    #[error("not an established leader")]
    NotLeader,
    /// This peer is not a learner that finished its sync.
    #[error("not a synced learner")]
    NotSyncedLearner,
    /// The epoch's 32-bit counter is exhausted; a new election is needed.
    #[error("zxid counter exhausted")]
    CounterExhausted,
}

/// The mutable context a role works with.
pub(super) struct Ctx<'a, L: Log> {
    pub cfg: &'a PeerConfig,
    pub log: &'a mut L,
    pub out: &'a mut Vec<(Sid, Message)>,
    pub closes: &'a mut Vec<Sid>,
    pub events: &'a mut Vec<Event>,
    pub now: Millis,
    pub durable: &'a mut i64,
    pub delivered: &'a mut i64,
    /// See [`Peer`]'s field.
    pub fuzzy_to: &'a mut i64,
    pub last_role: &'a mut Option<Role>,
}

impl<L: Log> Ctx<'_, L> {
    /// Reports a role change in the event stream, at the point it happens (so the events of
    /// the new role follow it).
    pub fn role_changed(&mut self, role: Role) {
        if *self.last_role != Some(role) {
            *self.last_role = Some(role);
            self.events.push(Event::RoleChanged(role));
        }
    }

    pub fn send(&mut self, to: Sid, p: QuorumPacket) {
        self.out.push((to, Message::Zab(p)));
    }

    /// Appends a txn (zxids only grow within a log); durable once the shell says so.
    pub fn append(&mut self, zxid: i64, txn: Bytes) {
        self.log.append(zxid, txn);
    }

    /// Truncates the log after `zxid`; a delivered txn being dropped forces a reset.
    pub fn truncate(&mut self, zxid: i64) {
        self.log.truncate(zxid);
        *self.durable = (*self.durable).min(zxid);
        if *self.delivered > zxid {
            *self.delivered = self.log.last_zxid();
            self.events.push(Event::Reset {
                zxid: *self.delivered,
            });
        }
    }

    /// Replaces the history with a snapshot (durable at once).
    pub fn load_snapshot(&mut self, zxid: i64, snapshot: Bytes) {
        self.log.load_snapshot(zxid, snapshot);
        *self.durable = zxid;
    }

    /// Delivers every logged txn up to `zxid` not delivered yet.
    pub fn deliver_to(&mut self, zxid: i64) {
        if zxid <= *self.delivered {
            return;
        }
        match self.log.entries_after(*self.delivered) {
            Some(entries) => {
                for (z, txn) in entries.into_iter().take_while(|(z, _)| *z <= zxid) {
                    let fuzzy = z <= *self.fuzzy_to;
                    self.events.push(Event::Deliver {
                        zxid: z,
                        txn,
                        fuzzy,
                    });
                    *self.delivered = z;
                }
            }
            None => {
                // The log was compacted past what the state machine has: start from its snapshot.
                let snapshot = self.log.snapshot(zxid);
                self.events.push(Event::Restore { zxid, snapshot });
                *self.delivered = zxid;
            }
        }
    }
}

/// What a role asks of the peer after handling something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Next {
    Stay,
    /// Give up the role and elect again.
    Elect(&'static str),
}

enum State {
    Looking,
    Leading(LeaderState),
    Learning(FollowerState),
}

/// A replicated server: election plus ZAB, over a [`Log`].
pub struct Peer<L: Log> {
    cfg: PeerConfig,
    log: L,
    election: Election,
    state: State,
    /// FOLLOWERINFO/OBSERVERINFO that arrived while this peer was still electing (the
    /// connection is held until it knows whether it leads).
    pending_learners: BTreeMap<Sid, QuorumPacket>,
    out: Vec<(Sid, Message)>,
    closes: Vec<Sid>,
    events: Vec<Event>,
    durable: i64,
    delivered: i64,
    /// Deliveries up to here are [`Event::Deliver`]`::fuzzy`: `i64::MAX` from a leader's
    /// snapshot until the history after it is known (the sync's NEWLEADER, or leading).
    fuzzy_to: i64,
    now: Millis,
    last_role: Option<Role>,
}

impl<L: Log> Peer<L> {
    /// A peer over `log`, whose state machine already reflects `applied` (0 for none), starting
    /// an election at `now`. Whatever is in `log` is taken as durable.
    pub fn new(cfg: PeerConfig, log: L, applied: i64, now: Millis) -> Self {
        let ecfg = ElectionConfig {
            id: cfg.id,
            voters: cfg.voters.clone(),
            observers: cfg.observers.clone(),
            finalize_wait: cfg.finalize_wait,
            max_notification_interval: cfg.max_notification_interval,
            config: cfg.config.clone(),
        };
        let durable = log.last_zxid();
        let mut p = Peer {
            election: Election::new(ecfg),
            cfg,
            log,
            state: State::Looking,
            pending_learners: BTreeMap::new(),
            out: Vec::new(),
            closes: Vec::new(),
            events: Vec::new(),
            durable,
            delivered: applied,
            fuzzy_to: 0,
            now,
            last_role: None,
        };
        p.look(now);
        p
    }

    /// The id.
    pub fn id(&self) -> Sid {
        self.cfg.id
    }

    /// The log.
    pub fn log(&self) -> &L {
        &self.log
    }

    /// The log, mutably (for the shell's own bookkeeping; not for appends).
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    /// Stops the peer, handing its log back (a crash or a shutdown).
    pub fn into_log(self) -> L {
        self.log
    }

    /// The last zxid delivered to the state machine.
    pub fn delivered(&self) -> i64 {
        self.delivered
    }

    /// The current role.
    pub fn role(&self) -> Role {
        match &self.state {
            State::Looking => Role::Looking,
            State::Leading(l) => Role::Leading {
                epoch: l.epoch(),
                established: l.established(),
            },
            State::Learning(f) if f.observer() => Role::Observing {
                leader: f.leader(),
                synced: f.synced(),
            },
            State::Learning(f) => Role::Following {
                leader: f.leader(),
                synced: f.synced(),
            },
        }
    }

    /// Leader: learners connected, and synced followers and observers among them (zeros on
    /// other roles).
    pub fn learner_counts(&self) -> (usize, usize, usize) {
        match &self.state {
            State::Leading(l) => l.learner_counts(),
            _ => (0, 0, 0),
        }
    }

    /// The zxid the next [`Peer::propose`] will return, on an established leader.
    pub fn next_zxid(&self) -> Option<i64> {
        match &self.state {
            State::Leading(l) => l.next_zxid(),
            _ => None,
        }
    }

    /// Proposes a txn (leader only): returns its zxid. It commits once a quorum logged it.
    pub fn propose(&mut self, txn: Bytes) -> Result<i64, PeerError> {
        let State::Leading(l) = &mut self.state else {
            return Err(PeerError::NotLeader);
        };
        let mut ctx = ctx!(self);
        let r = l.propose(&mut ctx, txn);
        self.after();
        r
    }

    /// Learner: forwards a client request to the leader (REQUEST); a `sync` goes this way too
    /// and completes with [`Event::Synced`].
    pub fn forward(
        &mut self,
        request: ForwardedRequest,
        authinfo: Vec<Id>,
    ) -> Result<(), PeerError> {
        let leader = self.synced_leader()?;
        let mut p = QuorumPacket::new(PacketType::Request, -1, Some(request.encode()));
        p.authinfo = authinfo;
        self.out.push((leader, Message::Zab(p)));
        Ok(())
    }

    /// Learner: asks the leader whether a session that reconnected here is still valid; the
    /// answer comes as [`Event::Revalidated`].
    pub fn revalidate(&mut self, session_id: i64, timeout: i32) -> Result<(), PeerError> {
        let leader = self.synced_leader()?;
        let data = encode_revalidate(session_id, timeout);
        let p = QuorumPacket::new(PacketType::Revalidate, -1, Some(data));
        self.out.push((leader, Message::Zab(p)));
        Ok(())
    }

    /// Learner: records activity on a session, reported in the next PING reply.
    pub fn touch(&mut self, session_id: i64, timeout: i32) -> Result<(), PeerError> {
        self.synced_leader()?;
        if let State::Learning(f) = &mut self.state {
            f.touch(session_id, timeout);
        }
        Ok(())
    }

    /// Leader: answers an [`Event::Revalidate`].
    pub fn revalidate_reply(
        &mut self,
        to: Sid,
        session_id: i64,
        valid: bool,
    ) -> Result<(), PeerError> {
        if !matches!(
            self.role(),
            Role::Leading {
                established: true,
                ..
            }
        ) {
            return Err(PeerError::NotLeader);
        }
        let data = encode_revalidate_reply(session_id, valid);
        let p = QuorumPacket::new(PacketType::Revalidate, -1, Some(data));
        self.out.push((to, Message::Zab(p)));
        Ok(())
    }

    /// Leader: completes a `sync` for `sid` (a learner's forwarded one, or this server's own)
    /// once everything proposed so far is committed (`Leader.processSync`) and a quorum has
    /// answered a PING sent after it, so that a leader that lost its quorum without noticing
    /// yet never answers it.
    pub fn sync_for(&mut self, sid: Sid) -> Result<(), PeerError> {
        let State::Leading(l) = &mut self.state else {
            return Err(PeerError::NotLeader);
        };
        let mut ctx = ctx!(self);
        l.sync_for(&mut ctx, sid)
    }

    fn synced_leader(&self) -> Result<Sid, PeerError> {
        match self.role() {
            Role::Following {
                leader,
                synced: true,
            }
            | Role::Observing {
                leader,
                synced: true,
            } => Ok(leader),
            _ => Err(PeerError::NotSyncedLearner),
        }
    }

    /// Handles a message from `from`.
    pub fn step(&mut self, from: Sid, msg: Message, now: Millis) {
        self.now = self.now.max(now);
        if !self.cfg.voters.contains(&from) && !self.cfg.observers.contains(&from) {
            debug!(
                sid = self.cfg.id,
                from, "message from a server outside the ensemble"
            );
            return;
        }
        let mut next = match msg {
            Message::Election(n) => {
                self.election.step(from, n, self.now);
                Next::Stay
            }
            Message::Zab(p) => self.on_zab(from, p),
            Message::Snapshot(s) => match &mut self.state {
                State::Learning(f) if f.leader() == from => {
                    let mut ctx = ctx!(self);
                    f.on_snapshot(&mut ctx, s)
                }
                _ => Next::Stay,
            },
        };
        if next == Next::Stay {
            next = self.progress();
        }
        self.handle(next);
    }

    fn on_zab(&mut self, from: Sid, p: QuorumPacket) -> Next {
        match &mut self.state {
            State::Leading(l) => {
                let mut ctx = ctx!(self);
                l.on_packet(&mut ctx, from, p)
            }
            State::Learning(f) if f.leader() == from => {
                let mut ctx = ctx!(self);
                f.on_packet(&mut ctx, p)
            }
            State::Looking
                if matches!(p.kind, PacketType::FollowerInfo | PacketType::ObserverInfo) =>
            {
                self.pending_learners.insert(from, p);
                Next::Stay
            }
            // A packet on a connection this peer does not have (any more): refuse it.
            _ => {
                self.closes.push(from);
                Next::Stay
            }
        }
    }

    /// An election connection to `sid` came up (a new one, or one replacing a connection that
    /// broke): the last notification addressed to `sid` goes out again, since it may have
    /// been lost with the old connection (see [`Election::connected`]).
    pub fn connected(&mut self, sid: Sid, now: Millis) {
        self.now = self.now.max(now);
        self.election.connected(sid);
    }

    /// The ZAB connection to `sid` broke.
    pub fn disconnected(&mut self, sid: Sid, now: Millis) {
        self.now = self.now.max(now);
        self.pending_learners.remove(&sid);
        let next = match &mut self.state {
            State::Leading(l) => {
                let mut ctx = ctx!(self);
                l.on_disconnect(&mut ctx, sid)
            }
            State::Learning(f) if f.leader() == sid => Next::Elect("lost the leader"),
            _ => Next::Stay,
        };
        self.handle(next);
    }

    /// Everything appended up to `zxid` is durable: report the last zxid appended when the
    /// sync began (a truncation after it makes the report count only for what remains).
    pub fn durable(&mut self, zxid: i64, now: Millis) {
        self.now = self.now.max(now);
        self.durable = self.durable.max(zxid.min(self.log.last_zxid()));
        let next = self.progress();
        self.handle(next);
    }

    /// Advances time.
    pub fn tick(&mut self, now: Millis) {
        self.now = self.now.max(now);
        self.election.tick(self.now);
        let next = match &mut self.state {
            State::Leading(l) => {
                let mut ctx = ctx!(self);
                l.tick(&mut ctx)
            }
            State::Learning(f) => {
                let mut ctx = ctx!(self);
                f.tick(&mut ctx)
            }
            State::Looking => Next::Stay,
        };
        self.handle(next);
    }

    fn progress(&mut self) -> Next {
        match &mut self.state {
            State::Leading(l) => {
                let mut ctx = ctx!(self);
                l.progress(&mut ctx)
            }
            State::Learning(f) => {
                let mut ctx = ctx!(self);
                f.progress(&mut ctx)
            }
            State::Looking => Next::Stay,
        }
    }

    fn handle(&mut self, next: Next) {
        if let Next::Elect(why) = next {
            info!(sid = self.cfg.id, reason = why, "back to election");
            self.close_all();
            self.look(self.now);
        }
        if matches!(self.state, State::Looking) {
            if let Some(outcome) = self.election.outcome() {
                self.become_(outcome);
            }
        }
        self.after();
    }

    fn after(&mut self) {
        let role = self.role();
        let settled = match (&self.state, role) {
            (
                State::Leading(l),
                Role::Leading {
                    established: true, ..
                },
            ) => Some((self.cfg.id, l.epoch())),
            (State::Learning(f), Role::Following { synced: true, .. })
            | (State::Learning(f), Role::Observing { synced: true, .. }) => {
                Some((f.leader(), f.epoch()))
            }
            _ => None,
        };
        if let Some((leader, epoch)) = settled {
            self.election.settle(leader, self.log.last_zxid(), epoch);
        }
        if self.last_role != Some(role) {
            self.last_role = Some(role);
            self.events.push(Event::RoleChanged(role));
        }
    }

    fn close_all(&mut self) {
        match std::mem::replace(&mut self.state, State::Looking) {
            State::Leading(l) => self.closes.extend(l.learners()),
            State::Learning(f) => self.closes.push(f.leader()),
            State::Looking => {}
        }
    }

    fn look(&mut self, now: Millis) {
        self.state = State::Looking;
        self.after();
        self.election.set_state(ServerState::Looking);
        self.election
            .start(self.log.last_zxid(), self.log.current_epoch() as i64, now);
    }

    fn become_(&mut self, outcome: Outcome) {
        let pending = std::mem::take(&mut self.pending_learners);
        match outcome {
            Outcome::Leading => {
                // A leader's tree holds nothing past its log that ever committed (a quorum
                // holding it would not have elected this server).
                self.fuzzy_to = self.fuzzy_to.min(self.log.last_zxid());
                let mut l = LeaderState::new(&self.log, self.now);
                let mut next = Next::Stay;
                {
                    let mut ctx = ctx!(self);
                    for (sid, p) in pending {
                        if next == Next::Stay {
                            next = l.on_packet(&mut ctx, sid, p);
                        }
                    }
                    if next == Next::Stay {
                        next = l.progress(&mut ctx);
                    }
                }
                self.state = State::Leading(l);
                if next != Next::Stay {
                    self.handle(next);
                }
            }
            Outcome::Following(leader) | Outcome::Observing(leader) => {
                self.closes.extend(pending.into_keys());
                let observer = matches!(outcome, Outcome::Observing(_));
                let f = {
                    let mut ctx = ctx!(self);
                    FollowerState::new(&mut ctx, leader, observer)
                };
                self.state = State::Learning(f);
            }
        }
    }

    /// Messages to send and connections to close, drained.
    pub fn poll(&mut self) -> (Vec<(Sid, Message)>, Vec<Sid>) {
        let mut out: Vec<(Sid, Message)> = self
            .election
            .poll()
            .into_iter()
            .map(|(to, n)| (to, Message::Election(n)))
            .collect();
        out.append(&mut self.out);
        (out, std::mem::take(&mut self.closes))
    }

    /// State-machine events, drained.
    pub fn events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}
