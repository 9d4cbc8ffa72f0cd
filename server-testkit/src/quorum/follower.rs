//! The learner side of ZAB (ZooKeeper's `Learner`, `Follower` and `Observer`), sans-IO.
//!
//! FOLLOWERINFO/OBSERVERINFO with the accepted epoch; LEADERINFO makes the new epoch the
//! accepted one (durably) and is answered with ACKEPOCH (current epoch, last zxid); then the
//! sync packets; NEWLEADER is acknowledged once everything logged is durable, and only then is
//! the current epoch written; UPTODATE starts serving and delivers every committed txn.
//! Proposals are acknowledged after their fsync, and never before NEWLEADER: an ACK from a
//! learner still on an older current epoch could count towards a commit that a later election
//! would not see.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tracing::{debug, info, warn};
use zkit_proto::quorum::{
    decode_revalidate_reply, encode_touches, int_payload, make_zxid, read_int_payload, zxid_epoch,
    LearnerInfo, PacketType, QuorumPacket, SessionTouch, LEARNER_PROTOCOL_VERSION,
};
use zkit_proto::Record;

use super::peer::{Ctx, Event, Next};
use super::{Log, Millis, Sid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Sent FOLLOWERINFO, waiting for LEADERINFO.
    AwaitLeaderInfo,
    /// Sent ACKEPOCH, waiting for DIFF / TRUNC / SNAP.
    AwaitSync,
    /// Got SNAP at this zxid, waiting for the snapshot itself.
    AwaitSnapshot(i64),
    /// Receiving the sync txns.
    InSync,
    /// Got NEWLEADER (acknowledged once durable), waiting for UPTODATE.
    AwaitUpToDate,
    /// Serving.
    Serving,
}

/// State of a following or observing peer.
#[derive(Debug)]
pub(super) struct FollowerState {
    leader: Sid,
    observer: bool,
    stage: Stage,
    new_epoch: u32,
    /// Everything in the log up to here is committed (from the sync header).
    commit_floor: i64,
    /// The highest COMMIT / INFORM received.
    committed: i64,
    /// NEWLEADER's zxid and the log position that must be durable before acknowledging it.
    newleader: Option<(i64, i64)>,
    newleader_acked: bool,
    /// Proposals logged and not yet acknowledged.
    unacked: BTreeSet<i64>,
    /// Sessions seen active since the last PING reply (session -> timeout).
    touches: BTreeMap<i64, i32>,
    last_heard: Millis,
}

impl FollowerState {
    pub fn new<L: Log>(ctx: &mut Ctx<'_, L>, leader: Sid, observer: bool) -> Self {
        let info = LearnerInfo {
            server_id: ctx.cfg.id,
            protocol_version: LEARNER_PROTOCOL_VERSION,
            config_version: 0,
        };
        let kind = if observer {
            PacketType::ObserverInfo
        } else {
            PacketType::FollowerInfo
        };
        let zxid = make_zxid(ctx.log.accepted_epoch(), 0);
        ctx.send(leader, QuorumPacket::new(kind, zxid, Some(info.to_bytes())));
        FollowerState {
            leader,
            observer,
            stage: Stage::AwaitLeaderInfo,
            new_epoch: 0,
            commit_floor: 0,
            committed: 0,
            newleader: None,
            newleader_acked: false,
            unacked: BTreeSet::new(),
            touches: BTreeMap::new(),
            last_heard: ctx.now,
        }
    }

    pub fn leader(&self) -> Sid {
        self.leader
    }

    /// The epoch the leader announced (0 before LEADERINFO).
    pub fn epoch(&self) -> u32 {
        self.new_epoch
    }

    pub fn observer(&self) -> bool {
        self.observer
    }

    /// Records activity on a session for the next PING reply.
    pub fn touch(&mut self, session_id: i64, timeout: i32) {
        self.touches.insert(session_id, timeout);
    }

    pub fn synced(&self) -> bool {
        self.stage == Stage::Serving
    }

    pub fn on_packet<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, p: QuorumPacket) -> Next {
        self.last_heard = ctx.now;
        if self.stage == Stage::AwaitSync
            && matches!(
                p.kind,
                PacketType::Diff | PacketType::Trunc | PacketType::Snap
            )
        {
            info!(
                sid = ctx.cfg.id,
                leader = self.leader,
                sync = ?p.kind,
                zxid = format_args!("0x{:x}", p.zxid),
                our_zxid = format_args!("0x{:x}", ctx.log.last_zxid()),
                "syncing with the leader"
            );
        }
        match (p.kind, self.stage) {
            (PacketType::LeaderInfo, Stage::AwaitLeaderInfo) => self.on_leader_info(ctx, p),
            (PacketType::Diff, Stage::AwaitSync) => {
                self.commit_floor = ctx.log.last_zxid().min(p.zxid);
                self.stage = Stage::InSync;
                Next::Stay
            }
            (PacketType::Trunc, Stage::AwaitSync) => {
                ctx.truncate(p.zxid);
                self.commit_floor = ctx.log.last_zxid().min(p.zxid);
                self.stage = Stage::InSync;
                Next::Stay
            }
            (PacketType::Snap, Stage::AwaitSync) => {
                self.stage = Stage::AwaitSnapshot(p.zxid);
                Next::Stay
            }
            (PacketType::Proposal, Stage::InSync | Stage::AwaitUpToDate | Stage::Serving) => {
                self.on_proposal(ctx, p)
            }
            (PacketType::Commit, Stage::InSync | Stage::AwaitUpToDate | Stage::Serving) => {
                if p.zxid > ctx.log.last_zxid() {
                    return Next::Elect("COMMIT for a txn never proposed");
                }
                self.commit(ctx, p.zxid);
                Next::Stay
            }
            (
                kind @ (PacketType::Inform | PacketType::InformAndActivate),
                Stage::InSync | Stage::AwaitUpToDate | Stage::Serving,
            ) if self.observer => {
                let mut data = p.data.unwrap_or_default();
                if kind == PacketType::InformAndActivate {
                    // A reconfig: the designated leader's id (8 bytes), then the txn. The txn
                    // is applied like any other; the new configuration is not activated here.
                    if data.len() < 8 {
                        return Next::Elect("malformed INFORMANDACTIVATE from the leader");
                    }
                    let _ = data.split_to(8);
                    warn!(
                        sid = ctx.cfg.id,
                        zxid = p.zxid,
                        "reconfig applied as data only"
                    );
                }
                if p.zxid > ctx.log.last_zxid() {
                    ctx.append(p.zxid, data);
                }
                self.commit(ctx, p.zxid);
                Next::Stay
            }
            (
                PacketType::CommitAndActivate,
                Stage::InSync | Stage::AwaitUpToDate | Stage::Serving,
            ) => {
                if p.zxid > ctx.log.last_zxid() {
                    return Next::Elect("COMMITANDACTIVATE for a txn never proposed");
                }
                warn!(
                    sid = ctx.cfg.id,
                    zxid = p.zxid,
                    "reconfig applied as data only"
                );
                self.commit(ctx, p.zxid);
                Next::Stay
            }
            (PacketType::NewLeader, Stage::InSync) => {
                // Everything a leader's snapshot could hold past its zxid was committed before
                // it was written, so was queued for this learner before NEWLEADER (ZooKeeper's
                // `LearnerHandler` queues NEWLEADER only after writing the snapshot): logged
                // by now.
                if *ctx.fuzzy_to == i64::MAX {
                    *ctx.fuzzy_to = ctx.log.last_zxid();
                }
                self.stage = Stage::AwaitUpToDate;
                self.newleader = Some((p.zxid, ctx.log.last_zxid()));
                self.progress(ctx)
            }
            (PacketType::UpToDate, Stage::AwaitUpToDate) if self.newleader_acked => {
                self.stage = Stage::Serving;
                ctx.deliver_to(self.commit_floor.max(self.committed));
                // ZooKeeper's learner acknowledges UPTODATE with the epoch's zxid; leaders
                // ignore it, but a real one may count on seeing it.
                let ack = QuorumPacket::new(PacketType::Ack, make_zxid(self.new_epoch, 0), None);
                ctx.send(self.leader, ack);
                debug!(sid = ctx.cfg.id, leader = self.leader, "up to date");
                Next::Stay
            }
            (PacketType::Ping, _) => {
                let touches: Vec<SessionTouch> = std::mem::take(&mut self.touches)
                    .into_iter()
                    .map(|(session_id, timeout)| SessionTouch {
                        session_id,
                        timeout,
                    })
                    .collect();
                let data = encode_touches(&touches);
                ctx.send(
                    self.leader,
                    QuorumPacket::new(PacketType::Ping, p.zxid, Some(data)),
                );
                Next::Stay
            }
            (PacketType::Sync, Stage::Serving) => {
                ctx.events.push(Event::Synced);
                Next::Stay
            }
            (PacketType::Revalidate, Stage::Serving) => {
                match decode_revalidate_reply(p.data.unwrap_or_default()) {
                    Ok((session_id, valid)) => {
                        ctx.events.push(Event::Revalidated { session_id, valid });
                        Next::Stay
                    }
                    Err(_) => Next::Elect("malformed REVALIDATE from the leader"),
                }
            }
            (kind, stage) => {
                warn!(
                    sid = ctx.cfg.id,
                    ?kind,
                    ?stage,
                    "unexpected packet from the leader"
                );
                Next::Elect("protocol error from the leader")
            }
        }
    }

    fn on_leader_info<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, p: QuorumPacket) -> Next {
        let version = read_int_payload(p.data.as_ref()).unwrap_or(0);
        if version < LEARNER_PROTOCOL_VERSION {
            return Next::Elect("leader speaks an old protocol");
        }
        let epoch = zxid_epoch(p.zxid);
        let accepted = ctx.log.accepted_epoch();
        let current = if epoch > accepted {
            ctx.log.set_accepted_epoch(epoch);
            ctx.log.current_epoch() as i32
        } else if epoch == accepted {
            // Already accepted (a reconnect): ZooKeeper answers -1.
            -1
        } else {
            return Next::Elect("leader's epoch is older than the accepted one");
        };
        self.new_epoch = epoch;
        let ack = QuorumPacket::new(
            PacketType::AckEpoch,
            ctx.log.last_zxid(),
            Some(int_payload(current)),
        );
        ctx.send(self.leader, ack);
        self.stage = Stage::AwaitSync;
        Next::Stay
    }

    pub fn on_snapshot<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, snapshot: Bytes) -> Next {
        self.last_heard = ctx.now;
        let Stage::AwaitSnapshot(zxid) = self.stage else {
            return Next::Elect("snapshot out of place");
        };
        ctx.load_snapshot(zxid, snapshot.clone());
        // The state machine takes the snapshot when the log does (ZooKeeper's learner loads a
        // SNAP at once), not at UPTODATE: if the leader falls before UPTODATE, the state
        // machine must not keep what the log no longer holds (a restarted server applied its
        // whole log, uncommitted tail included), or a later DIFF builds on top of it.
        ctx.events.push(Event::Restore { zxid, snapshot });
        *ctx.delivered = zxid;
        // ZooKeeper's leader writes the snapshot while it goes on applying txns: the tree may
        // hold some past `zxid`, which come again before NEWLEADER.
        *ctx.fuzzy_to = i64::MAX;
        self.commit_floor = zxid;
        self.stage = Stage::InSync;
        Next::Stay
    }

    fn on_proposal<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, p: QuorumPacket) -> Next {
        if p.zxid <= ctx.log.last_zxid() {
            // ZooKeeper's leader starts forwarding to a learner before it reads the zxid its
            // SNAP names, so txns committed in between come again as PROPOSAL + COMMIT after a
            // snapshot that holds them already: nothing to log (a real learner applies them
            // again, to the same effect).
            if self.stage != Stage::Serving && p.zxid <= self.commit_floor {
                return Next::Stay;
            }
            return Next::Elect("proposal out of order");
        }
        ctx.append(p.zxid, p.data.unwrap_or_default());
        if !self.observer {
            self.unacked.insert(p.zxid);
        }
        Next::Stay
    }

    fn commit<L: Log>(&mut self, ctx: &mut Ctx<'_, L>, zxid: i64) {
        self.committed = self.committed.max(zxid);
        if self.stage == Stage::Serving {
            ctx.deliver_to(zxid);
        }
    }

    /// Sends what durability now allows: the NEWLEADER ACK (after writing the current
    /// epoch), then ACKs of logged proposals.
    pub fn progress<L: Log>(&mut self, ctx: &mut Ctx<'_, L>) -> Next {
        if let Some((zxid, needed)) = self.newleader {
            if !self.newleader_acked && *ctx.durable >= needed {
                ctx.log.set_current_epoch(self.new_epoch);
                ctx.send(self.leader, QuorumPacket::new(PacketType::Ack, zxid, None));
                self.newleader_acked = true;
                // Txns committed in the sync need no ACK.
                let floor = self.commit_floor.max(self.committed);
                self.unacked.retain(|z| *z > floor);
            }
        }
        if self.newleader_acked {
            while let Some(&z) = self.unacked.first() {
                if *ctx.durable < z {
                    break;
                }
                self.unacked.remove(&z);
                ctx.send(self.leader, QuorumPacket::new(PacketType::Ack, z, None));
            }
        }
        Next::Stay
    }

    /// Gives up on a silent leader: `initLimit` ticks before serving, `syncLimit` after.
    pub fn tick<L: Log>(&mut self, ctx: &mut Ctx<'_, L>) -> Next {
        let limit = if self.stage == Stage::Serving {
            ctx.cfg.sync_limit
        } else {
            ctx.cfg.init_limit
        };
        if ctx.now.saturating_sub(self.last_heard) > limit * ctx.cfg.tick_time {
            return Next::Elect("leader silent");
        }
        Next::Stay
    }
}
