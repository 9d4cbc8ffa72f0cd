//! The leader side of ZAB (ZooKeeper's `Leader` and `LearnerHandler`), sans-IO.
//!
//! Discovery: a quorum of FOLLOWERINFO (this server included) fixes the new epoch as one past
//! every accepted epoch seen; LEADERINFO goes out and a quorum of ACKEPOCH is awaited. A learner
//! whose (current epoch, last zxid) is ahead of the leader's ends this leadership, and so does
//! one that accepted a newer epoch than the one chosen (it could never join).
//! Sync: per learner, DIFF (the missing txns as PROPOSAL+COMMIT pairs), TRUNC (then the txns
//! after the truncation point) or SNAP, then NEWLEADER; a quorum of NEWLEADER ACKs commits the
//! leader's whole history and starts broadcast (UPTODATE). Broadcast: PROPOSAL, ACKs after the
//! learner's fsync, COMMIT strictly in zxid order to followers and INFORM to observers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use tracing::{debug, info, warn};
use zkit_proto::quorum::{
    decode_revalidate, decode_touches, int_payload, make_zxid, read_int_payload, zxid_counter,
    zxid_epoch, ForwardedRequest, LearnerInfo, PacketType, QuorumPacket, LEARNER_PROTOCOL_VERSION,
};
use zkit_proto::Record;

use super::peer::{Ctx, Event, Next, PeerError, Role};
use super::{Log, Message, Millis, Sid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Discovery,
    Sync,
    Broadcast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// FOLLOWERINFO/OBSERVERINFO received.
    Info,
    /// ACKEPOCH received; waiting for the sync phase.
    EpochAcked,
    /// Sync packets and NEWLEADER sent; receives the broadcast from now on.
    Syncing,
    /// NEWLEADER acknowledged.
    Synced,
}

#[derive(Debug)]
struct Learner {
    observer: bool,
    stage: Stage,
    peer_last: i64,
    last_heard: Millis,
    /// PINGs sent on this connection, and PING replies received (a learner answers each
    /// PING once, in order, so the n-th reply answers the n-th PING).
    pings_sent: u64,
    pings_answered: u64,
}

/// A sync waiting to be answered.
#[derive(Debug)]
struct SyncWait {
    /// Who asked (a learner, or this server).
    sid: Sid,
    /// The last proposal outstanding when it arrived, which must commit first.
    after: Option<i64>,
    /// Per learner, the PING reply that answers a PING sent after the sync arrived.
    pings: BTreeMap<Sid, u64>,
}

#[derive(Debug)]
struct Proposal {
    txn: Bytes,
    acks: BTreeSet<Sid>,
}

/// State of a leading peer.
#[derive(Debug)]
pub(super) struct LeaderState {
    started: Millis,
    /// (current epoch, last zxid) when leadership began: ZooKeeper's `StateSummary`.
    summary: (i64, i64),
    /// The last zxid of the history this leader brings into its epoch.
    history_last: i64,
    own_accepted: u32,
    epoch: Option<u32>,
    phase: Phase,
    learners: BTreeMap<Sid, Learner>,
    info_from: BTreeSet<Sid>,
    max_accepted: u32,
    epoch_acks: BTreeSet<Sid>,
    newleader_acks: BTreeSet<Sid>,
    outstanding: BTreeMap<i64, Proposal>,
    counter: u32,
    last_committed: i64,
    last_ping: Millis,
    /// Syncs not answered yet, in arrival order.
    syncs: VecDeque<SyncWait>,
}

impl LeaderState {
    pub fn new<L: Log>(log: &L, now: Millis) -> Self {
        LeaderState {
            started: now,
            summary: (log.current_epoch() as i64, log.last_zxid()),
            history_last: log.last_zxid(),
            own_accepted: log.accepted_epoch(),
            epoch: None,
            phase: Phase::Discovery,
            learners: BTreeMap::new(),
            info_from: BTreeSet::new(),
            max_accepted: 0,
            epoch_acks: BTreeSet::new(),
            newleader_acks: BTreeSet::new(),
            outstanding: BTreeMap::new(),
            counter: 0,
            last_committed: 0,
            last_ping: now,
            syncs: VecDeque::new(),
        }
    }

    /// The epoch being led (0 until decided).
    pub fn epoch(&self) -> u32 {
        self.epoch.unwrap_or(0)
    }

    /// Whether broadcast has begun.
    pub fn established(&self) -> bool {
        self.phase == Phase::Broadcast
    }

    /// The zxid the next [`LeaderState::propose`] will give its txn, once broadcast has begun
    /// (a txn record carries its own zxid in its header).
    pub fn next_zxid(&self) -> Option<i64> {
        (self.phase == Phase::Broadcast)
            .then(|| make_zxid(self.epoch(), self.counter.saturating_add(1)))
    }

    /// The learners with a connection.
    pub fn learners(&self) -> Vec<Sid> {
        self.learners.keys().copied().collect()
    }

    /// Learners with a connection, and the followers and observers among them that
    /// acknowledged NEWLEADER (what `mntr` reports as learners, synced followers and
    /// synced observers).
    pub fn learner_counts(&self) -> (usize, usize, usize) {
        let synced = |observer: bool| {
            self.learners
                .values()
                .filter(|l| l.observer == observer && l.stage == Stage::Synced)
                .count()
        };
        (self.learners.len(), synced(false), synced(true))
    }

    fn newleader_zxid(&self) -> i64 {
        make_zxid(self.epoch(), 0)
    }

    pub fn on_packet<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, from: Sid, p: QuorumPacket) -> Next {
        if let Some(l) = self.learners.get_mut(&from) {
            l.last_heard = ctx.now;
            if p.kind == PacketType::Ping {
                l.pings_answered += 1;
                self.answer_syncs(ctx);
            }
        }
        match p.kind {
            PacketType::FollowerInfo | PacketType::ObserverInfo => self.on_info(ctx, from, p),
            PacketType::AckEpoch => self.on_ack_epoch(ctx, from, p),
            PacketType::Ack => self.on_ack(ctx, from, p.zxid),
            PacketType::Ping | PacketType::Request | PacketType::Revalidate => {
                self.on_session_traffic(ctx, from, p)
            }
            other => {
                warn!(learner = from, kind = ?other, "unexpected packet from a learner");
                self.drop_learner(ctx, from);
                Next::Stay
            }
        }
    }

    /// PING replies (session touches), forwarded requests and revalidations, from a learner
    /// that acknowledged NEWLEADER; anything malformed drops the learner.
    fn on_session_traffic<L: Log>(
        &mut self,
        ctx: &mut Ctx<'_, L>,
        from: Sid,
        p: QuorumPacket,
    ) -> Next {
        if self
            .learners
            .get(&from)
            .is_none_or(|l| l.stage != Stage::Synced)
        {
            return Next::Stay;
        }
        let data = p.data.unwrap_or_default();
        let event = match p.kind {
            PacketType::Ping => match decode_touches(&data) {
                Ok(t) if t.is_empty() => return Next::Stay,
                Ok(touches) => Ok(Event::Touches { from, touches }),
                Err(e) => Err(e),
            },
            PacketType::Request => ForwardedRequest::decode(data).map(|request| Event::Request {
                from,
                request,
                authinfo: p.authinfo,
            }),
            _ => decode_revalidate(data).map(|(session_id, timeout)| Event::Revalidate {
                from,
                session_id,
                timeout,
            }),
        };
        match event {
            Ok(e) => ctx.events.push(e),
            Err(_) => {
                warn!(learner = from, kind = ?p.kind, "malformed packet from a learner");
                self.drop_learner(ctx, from);
            }
        }
        Next::Stay
    }

    /// Answers a sync for `sid` once the last proposal outstanding now is committed and a
    /// quorum of followers answered a PING sent after the sync arrived (one goes out now).
    ///
    /// The PINGs are what makes a sync then read linearizable: a leader that lost its quorum
    /// without noticing yet (stalled, or cut off while the others elected a new leader and
    /// committed writes) would otherwise answer from its old state. A follower that answers
    /// this leader's PING has not joined a newer epoch, and any quorum of a newer epoch shares
    /// a follower with this one, so nothing of a newer epoch committed before the sync
    /// arrived (etcd's ReadIndex does the same with heartbeats).
    pub fn sync_for<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, sid: Sid) -> Result<(), PeerError> {
        if self.phase != Phase::Broadcast {
            return Err(PeerError::NotLeader);
        }
        // Learners connected later answer only PINGs sent after this: their first reply counts.
        let pings = self
            .learners
            .iter()
            .map(|(s, l)| (*s, l.pings_sent + 1))
            .collect();
        self.syncs.push_back(SyncWait {
            sid,
            after: self.outstanding.last_key_value().map(|(z, _)| *z),
            pings,
        });
        self.ping(ctx);
        self.answer_syncs(ctx);
        Ok(())
    }

    /// Sends a PING to every learner that receives the broadcast.
    fn ping<L: Log>(&mut self, ctx: &mut Ctx<'_, L>) {
        let last = ctx.log.last_zxid();
        for (sid, l) in &mut self.learners {
            if l.stage >= Stage::Syncing {
                l.pings_sent += 1;
                let p = QuorumPacket::new(PacketType::Ping, last, None);
                ctx.out.push((*sid, Message::Zab(p)));
            }
        }
    }

    /// Answers the syncs whose proposals committed and whose PINGs a quorum answered, in
    /// order (a later sync waits for at least what an earlier one does).
    fn answer_syncs<L: Log>(&mut self, ctx: &mut Ctx<'_, L>) {
        while let Some(w) = self.syncs.front() {
            if w.after.is_some_and(|z| z > self.last_committed) {
                return;
            }
            let mut heard: BTreeSet<Sid> = self
                .learners
                .iter()
                .filter(|(s, l)| {
                    !l.observer
                        && l.stage == Stage::Synced
                        && l.pings_answered >= w.pings.get(s).copied().unwrap_or(1)
                })
                .map(|(s, _)| *s)
                .collect();
            heard.insert(ctx.cfg.id);
            if !ctx.cfg.is_quorum(&heard) {
                return;
            }
            let sid = w.sid;
            self.syncs.pop_front();
            self.send_sync(ctx, sid);
        }
    }

    fn send_sync<L: Log>(&self, ctx: &mut Ctx<'_, L>, sid: Sid) {
        if sid == ctx.cfg.id {
            ctx.events.push(Event::Synced);
        } else if self.learners.contains_key(&sid) {
            ctx.send(sid, QuorumPacket::new(PacketType::Sync, 0, None));
        }
    }

    fn on_info<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, from: Sid, p: QuorumPacket) -> Next {
        let observer = p.kind == PacketType::ObserverInfo;
        let info = LearnerInfo::from_bytes(p.data.clone().unwrap_or_default());
        let ok = info.is_ok_and(|i| i.protocol_version >= LEARNER_PROTOCOL_VERSION);
        // A server not configured in the role it claims, or a pre-3.4 learner, is refused.
        let member = if observer {
            ctx.cfg.observers.contains(&from)
        } else {
            ctx.cfg.voters.contains(&from)
        };
        if !ok || !member {
            self.drop_learner(ctx, from);
            return Next::Stay;
        }
        self.learners.insert(
            from,
            Learner {
                observer,
                stage: Stage::Info,
                peer_last: 0,
                last_heard: ctx.now,
                pings_sent: 0,
                pings_answered: 0,
            },
        );
        let accepted = zxid_epoch(p.zxid);
        match self.epoch {
            // The learner promised a newer epoch to a would-be leader whose discovery never
            // completed: it refuses LEADERINFO and is back after every election while this
            // leadership lasts (in ZooKeeper, forever). Elect again, for an epoch past this
            // one (and past the learner's when it is among the first to report).
            Some(e) if accepted > e => {
                warn!(learner = from, accepted, "learner accepted a newer epoch");
                return Next::Elect("a learner accepted a newer epoch");
            }
            Some(e) => ctx.send(
                from,
                QuorumPacket::new(
                    PacketType::LeaderInfo,
                    make_zxid(e, 0),
                    Some(int_payload(LEARNER_PROTOCOL_VERSION)),
                ),
            ),
            None => {
                self.max_accepted = self.max_accepted.max(accepted);
                if !observer {
                    self.info_from.insert(from);
                }
            }
        }
        self.progress(ctx)
    }

    fn on_ack_epoch<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, from: Sid, p: QuorumPacket) -> Next {
        let Some(l) = self.learners.get_mut(&from) else {
            return Next::Stay;
        };
        if l.stage != Stage::Info || self.epoch.is_none() {
            self.drop_learner(ctx, from);
            return Next::Stay;
        }
        let Ok(cur) = read_int_payload(p.data.as_ref()) else {
            self.drop_learner(ctx, from);
            return Next::Stay;
        };
        let theirs = (cur as i64, p.zxid);
        if cur != -1 && theirs > self.summary {
            warn!(learner = from, "learner is ahead of the leader");
            return Next::Elect("a learner is ahead of this leader");
        }
        l.stage = Stage::EpochAcked;
        l.peer_last = p.zxid;
        // -1: the learner had accepted this epoch already (from this leader before a
        // reconnect, or from another would-be leader that chose the same number): synced all
        // the same, but no ack, or one promise could establish two leaders in one epoch
        // (ZooKeeper's `waitForEpochAck` skips it too).
        if !l.observer && cur != -1 {
            self.epoch_acks.insert(from);
        }
        if self.phase >= Phase::Sync {
            self.sync(ctx, from);
        }
        self.progress(ctx)
    }

    fn on_ack<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, from: Sid, zxid: i64) -> Next {
        let newleader_zxid = self.newleader_zxid();
        let Some(l) = self.learners.get_mut(&from) else {
            return Next::Stay;
        };
        if zxid_counter(zxid) == 0 {
            if zxid == newleader_zxid && l.stage == Stage::Syncing {
                l.stage = Stage::Synced;
                if !l.observer {
                    self.newleader_acks.insert(from);
                }
                if self.phase == Phase::Broadcast {
                    ctx.send(from, QuorumPacket::new(PacketType::UpToDate, -1, None));
                }
            }
            return self.progress(ctx);
        }
        if l.observer || l.stage < Stage::Syncing {
            return Next::Stay;
        }
        if let Some(p) = self.outstanding.get_mut(&zxid) {
            p.acks.insert(from);
        }
        self.progress(ctx)
    }

    /// Moves through the phases as far as the quorums and the disk allow.
    pub fn progress<L: Log>(&mut self, ctx: &mut Ctx<'_, L>) -> Next {
        let me = ctx.cfg.id;
        if self.epoch.is_none() {
            let mut from = self.info_from.clone();
            from.insert(me);
            if !ctx.cfg.is_quorum(&from) {
                return Next::Stay;
            }
            let Some(e) = self.max_accepted.max(self.own_accepted).checked_add(1) else {
                return Next::Elect("epoch space exhausted");
            };
            ctx.log.set_accepted_epoch(e);
            self.epoch = Some(e);
            info!(sid = me, epoch = e, "new epoch proposed");
            let learners: Vec<Sid> = self.learners.keys().copied().collect();
            for sid in learners {
                let info = QuorumPacket::new(
                    PacketType::LeaderInfo,
                    make_zxid(e, 0),
                    Some(int_payload(LEARNER_PROTOCOL_VERSION)),
                );
                ctx.send(sid, info);
            }
        }
        if self.phase == Phase::Discovery {
            let mut acks = self.epoch_acks.clone();
            acks.insert(me);
            // The history must be durable before the current epoch claims it.
            if !ctx.cfg.is_quorum(&acks) || *ctx.durable < self.history_last {
                return Next::Stay;
            }
            ctx.log.set_current_epoch(self.epoch());
            self.phase = Phase::Sync;
            let ready: Vec<Sid> = self
                .learners
                .iter()
                .filter(|(_, l)| l.stage == Stage::EpochAcked)
                .map(|(s, _)| *s)
                .collect();
            for sid in ready {
                self.sync(ctx, sid);
            }
        }
        if self.phase == Phase::Sync {
            let mut acks = self.newleader_acks.clone();
            acks.insert(me);
            if !ctx.cfg.is_quorum(&acks) {
                return Next::Stay;
            }
            self.phase = Phase::Broadcast;
            self.last_committed = self.history_last;
            info!(sid = me, epoch = self.epoch(), "leading: broadcast phase");
            ctx.role_changed(Role::Leading {
                epoch: self.epoch(),
                established: true,
            });
            ctx.deliver_to(self.history_last);
            let synced: Vec<Sid> = self
                .learners
                .iter()
                .filter(|(_, l)| l.stage == Stage::Synced)
                .map(|(s, _)| *s)
                .collect();
            for sid in synced {
                ctx.send(sid, QuorumPacket::new(PacketType::UpToDate, -1, None));
            }
        }
        self.try_commit(ctx);
        Next::Stay
    }

    /// Brings one learner up to date: DIFF, TRUNC or SNAP, the txns, then NEWLEADER.
    fn sync<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, sid: Sid) {
        let Some(l) = self.learners.get_mut(&sid) else {
            return;
        };
        let commit_point = if self.phase == Phase::Broadcast {
            self.last_committed
        } else {
            self.history_last
        };
        let peer_last = l.peer_last;
        // DIFF from the learner's last zxid when it is committed here; otherwise TRUNC to the
        // newest committed zxid below it (ZooKeeper's `syncFollower`): a learner that diverged,
        // or one holding proposals still outstanding here, which it would never acknowledge
        // (a learner acknowledges what it logs in a session): truncated, it gets them again.
        let (header, from) = if peer_last == commit_point
            || (peer_last < commit_point && ctx.log.contains(peer_last))
        {
            (PacketType::Diff, peer_last)
        } else {
            (
                PacketType::Trunc,
                ctx.log.floor(peer_last.min(commit_point)),
            )
        };
        // Its ACKs from before are no evidence now (a TRUNC or a SNAP drops those txns).
        for p in self.outstanding.values_mut() {
            p.acks.remove(&sid);
        }
        let entries = ctx.log.entries_after(from);
        let snap = entries
            .as_ref()
            .is_none_or(|e| e.len() > ctx.cfg.snap_threshold);
        debug!(learner = sid, ?header, from, snap, "syncing learner");
        let mut out = Vec::new();
        let entries = if snap {
            out.push(QuorumPacket::new(PacketType::Snap, commit_point, None));
            let rest = ctx.log.entries_after(commit_point).unwrap_or_default();
            ctx.out
                .extend(out.drain(..).map(|p| (sid, Message::Zab(p))));
            ctx.out
                .push((sid, Message::Snapshot(ctx.log.snapshot(commit_point))));
            rest
        } else {
            let zxid = if header == PacketType::Diff {
                commit_point
            } else {
                from
            };
            out.push(QuorumPacket::new(header, zxid, None));
            entries.unwrap_or_default()
        };
        for (z, txn) in entries {
            if z <= commit_point {
                out.push(QuorumPacket::new(PacketType::Proposal, z, Some(txn)));
                out.push(QuorumPacket::new(PacketType::Commit, z, None));
            } else if !l.observer {
                out.push(QuorumPacket::new(PacketType::Proposal, z, Some(txn)));
            }
        }
        out.push(QuorumPacket::new(
            PacketType::NewLeader,
            make_zxid(self.epoch.unwrap_or(0), 0),
            Some(ctx.cfg.config.clone()),
        ));
        ctx.out
            .extend(out.into_iter().map(|p| (sid, Message::Zab(p))));
        l.stage = Stage::Syncing;
    }

    pub fn propose<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, txn: Bytes) -> Result<i64, PeerError> {
        if self.phase != Phase::Broadcast {
            return Err(PeerError::NotLeader);
        }
        // ZooKeeper forces an election before the counter wraps (ZOOKEEPER-1277).
        if self.counter == u32::MAX - 1 {
            return Err(PeerError::CounterExhausted);
        }
        self.counter += 1;
        let zxid = make_zxid(self.epoch(), self.counter);
        ctx.append(zxid, txn.clone());
        for (sid, l) in &self.learners {
            if !l.observer && l.stage >= Stage::Syncing {
                let p = QuorumPacket::new(PacketType::Proposal, zxid, Some(txn.clone()));
                ctx.out.push((*sid, Message::Zab(p)));
            }
        }
        self.outstanding.insert(
            zxid,
            Proposal {
                txn,
                acks: BTreeSet::new(),
            },
        );
        self.try_commit(ctx);
        Ok(zxid)
    }

    /// Commits outstanding proposals in zxid order while each has a quorum of durable copies.
    fn try_commit<L: Log>(&mut self, ctx: &mut Ctx<'_, L>) {
        if self.phase != Phase::Broadcast {
            return;
        }
        let me = ctx.cfg.id;
        while let Some((&zxid, p)) = self.outstanding.first_key_value() {
            let mut acks = p.acks.clone();
            if *ctx.durable >= zxid {
                acks.insert(me);
            }
            if !ctx.cfg.is_quorum(&acks) {
                break;
            }
            let p = self.outstanding.remove(&zxid).expect("first key exists");
            self.last_committed = zxid;
            for (sid, l) in &self.learners {
                if l.stage < Stage::Syncing {
                    continue;
                }
                let pkt = if l.observer {
                    QuorumPacket::new(PacketType::Inform, zxid, Some(p.txn.clone()))
                } else {
                    QuorumPacket::new(PacketType::Commit, zxid, None)
                };
                ctx.out.push((*sid, Message::Zab(pkt)));
            }
            ctx.deliver_to(zxid);
        }
        self.answer_syncs(ctx);
    }

    pub fn on_disconnect<L: Log>(&mut self, _ctx: &mut Ctx<'_, L>, sid: Sid) -> Next {
        self.learners.remove(&sid);
        if self.epoch.is_none() {
            self.info_from.remove(&sid);
        }
        Next::Stay
    }

    fn drop_learner<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, sid: Sid) {
        self.learners.remove(&sid);
        ctx.closes.push(sid);
    }

    /// Pings learners twice a tick, drops silent ones and gives up without a quorum.
    pub fn tick<L: Log>(&mut self, ctx: &mut Ctx<'_, L>) -> Next {
        let tick = ctx.cfg.tick_time;
        let now = ctx.now;
        if self.phase != Phase::Broadcast
            && now.saturating_sub(self.started) > ctx.cfg.init_limit * tick
        {
            return Next::Elect("no quorum synced within initLimit");
        }
        let silent: Vec<Sid> = self
            .learners
            .iter()
            .filter(|(_, l)| {
                let limit = if l.stage == Stage::Synced {
                    ctx.cfg.sync_limit
                } else {
                    ctx.cfg.init_limit
                };
                now.saturating_sub(l.last_heard) > limit * tick
            })
            .map(|(s, _)| *s)
            .collect();
        for sid in silent {
            debug!(learner = sid, "learner silent; dropping it");
            self.drop_learner(ctx, sid);
        }
        if self.phase == Phase::Broadcast {
            let mut live: BTreeSet<Sid> = self
                .learners
                .iter()
                .filter(|(_, l)| l.stage == Stage::Synced)
                .map(|(s, _)| *s)
                .collect();
            live.insert(ctx.cfg.id);
            if !ctx.cfg.is_quorum(&live) {
                return Next::Elect("lost the quorum of synced followers");
            }
        }
        if now.saturating_sub(self.last_ping) >= tick / 2 {
            self.last_ping = now;
            self.ping(ctx);
        }
        Next::Stay
    }
}
