//! Fast leader election, sans-IO (ZooKeeper's `FastLeaderElection`).
//!
//! Fed notifications with [`Election::step`] and time with [`Election::tick`]; drained of
//! notifications to send with [`Election::poll`]. Votes are ordered by (peerEpoch, zxid, sid);
//! a round ends once a majority of voters agrees with this server's proposal and no better vote
//! arrives for `finalize_wait`, or once a majority reports following/leading the same leader and
//! the leader itself says it leads. Observers run the same rounds but are never counted.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tracing::{debug, info};
use zkit_proto::quorum::{Notification, ServerState, NOTIFICATION_VERSION};

use super::{Millis, Sid};

/// Who is in the ensemble and how patient the election is.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// This server's id.
    pub id: Sid,
    /// The voting members (participants), this server included when it votes.
    pub voters: BTreeSet<Sid>,
    /// Non-voting members.
    pub observers: BTreeSet<Sid>,
    /// How long a quorum must stand unchallenged before the round ends (`finalizeWait`,
    /// 200 ms in ZooKeeper); also the first resend interval.
    pub finalize_wait: Millis,
    /// Resend interval cap (`maxNotificationInterval`, 60 s in ZooKeeper).
    pub max_notification_interval: Millis,
    /// The config text sent in every notification (`QuorumVerifier.toString()`).
    pub config: Bytes,
}

impl ElectionConfig {
    /// Whether `sid` votes.
    pub fn is_voter(&self, sid: Sid) -> bool {
        self.voters.contains(&sid)
    }

    /// Whether `sids` holds a majority of the voters (`QuorumMaj.containsQuorum`).
    pub fn is_quorum<'a>(&self, sids: impl IntoIterator<Item = &'a Sid>) -> bool {
        let n = sids.into_iter().filter(|s| self.voters.contains(s)).count();
        n > self.voters.len() / 2
    }
}

/// A proposed leader: compared by (peer epoch, zxid, sid), ZooKeeper's `totalOrderPredicate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vote {
    /// The proposed leader.
    pub leader: Sid,
    /// Its last logged zxid.
    pub zxid: i64,
    /// Its current epoch.
    pub peer_epoch: i64,
}

impl Vote {
    fn key(&self) -> (i64, i64, Sid) {
        (self.peer_epoch, self.zxid, self.leader)
    }

    /// Whether `self` beats `other`.
    pub fn beats(&self, other: &Vote) -> bool {
        self.key() > other.key()
    }
}

/// How a round ended for this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This server leads.
    Leading,
    /// This server follows `leader`.
    Following(Sid),
    /// This (non-voting) server observes `leader`.
    Observing(Sid),
}

/// A vote as recorded from a notification (ZooKeeper's `Vote` with its state and version).
#[derive(Debug, Clone, Copy)]
struct Recorded {
    vote: Vote,
    election_epoch: i64,
    state: ServerState,
    version: i32,
}

impl Recorded {
    /// `Vote.equals`: full match when either side is looking, else leader (and peer epoch when
    /// both sides have versions).
    fn matches(&self, o: &Recorded) -> bool {
        if self.state == ServerState::Looking || o.state == ServerState::Looking {
            self.vote == o.vote && self.election_epoch == o.election_epoch
        } else if (self.version > 0) ^ (o.version > 0) {
            self.vote.leader == o.vote.leader
        } else {
            self.vote.leader == o.vote.leader && self.vote.peer_epoch == o.vote.peer_epoch
        }
    }
}

/// The election state machine of one server; it lives across rounds.
#[derive(Debug)]
pub struct Election {
    cfg: ElectionConfig,
    /// The round number (`logicalclock`).
    logical_clock: i64,
    /// This server's own (peer epoch, last zxid), the round's starting vote.
    init: Vote,
    proposal: Vote,
    /// Votes of this round (`recvset`).
    recvset: BTreeMap<Sid, Recorded>,
    /// Votes of servers already out of election (`outofelection`).
    out_of_election: BTreeMap<Sid, Recorded>,
    /// This server's state as told to others.
    state: ServerState,
    /// The vote this server ended its last round with.
    current: Option<(Vote, i64)>,
    outcome: Option<Outcome>,
    /// When the quorum for the proposal stood; the round ends `finalize_wait` later.
    finalize_at: Option<Millis>,
    resend_at: Millis,
    resend_interval: Millis,
    outbox: Vec<(Sid, Notification)>,
    /// The last notification addressed to each server (`QuorumCnxManager`'s
    /// `lastMessageSent`), sent again when a connection to it comes up.
    last_sent: BTreeMap<Sid, Notification>,
}

impl Election {
    /// An election that has not started a round yet.
    pub fn new(cfg: ElectionConfig) -> Self {
        let init = Vote {
            leader: cfg.id,
            zxid: 0,
            peer_epoch: 0,
        };
        Election {
            resend_interval: cfg.finalize_wait,
            cfg,
            logical_clock: 0,
            init,
            proposal: init,
            recvset: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            state: ServerState::Looking,
            current: None,
            outcome: None,
            finalize_at: None,
            resend_at: 0,
            outbox: Vec::new(),
            last_sent: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ElectionConfig {
        &self.cfg
    }

    /// The current round number.
    pub fn logical_clock(&self) -> i64 {
        self.logical_clock
    }

    /// The vote this server currently proposes.
    pub fn proposal(&self) -> Vote {
        self.proposal
    }

    /// Starts a round (`lookForLeader`): bumps the logical clock, proposes itself (a voter) or
    /// nobody in particular (an observer) and notifies every voter.
    pub fn start(&mut self, last_zxid: i64, current_epoch: i64, now: Millis) {
        self.logical_clock += 1;
        self.recvset.clear();
        self.out_of_election.clear();
        self.outcome = None;
        self.finalize_at = None;
        self.state = ServerState::Looking;
        // A non-voter proposes (MIN, MIN, MIN) like ZooKeeper's `getInitId` and friends, so
        // any voter's vote replaces it and it never counts.
        self.init = if self.cfg.is_voter(self.cfg.id) {
            Vote {
                leader: self.cfg.id,
                zxid: last_zxid,
                peer_epoch: current_epoch,
            }
        } else {
            Vote {
                leader: i64::MIN,
                zxid: i64::MIN,
                peer_epoch: i64::MIN,
            }
        };
        self.proposal = self.init;
        self.resend_interval = self.cfg.finalize_wait.max(1);
        info!(
            sid = self.cfg.id,
            round = self.logical_clock,
            zxid = last_zxid,
            "looking for a leader"
        );
        self.send_notifications(now);
        // A lone voter is a quorum by itself (ZooKeeper delivers a server's notifications to
        // itself too): its round ends like any other, `finalize_wait` later.
        if self.cfg.is_voter(self.cfg.id) && self.cfg.is_quorum([self.cfg.id].iter()) {
            self.finalize_at = Some(now + self.cfg.finalize_wait);
            if self.cfg.finalize_wait == 0 {
                self.decide(now);
            }
        }
    }

    /// How the last round ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// Tells the election the server's state outside election (FOLLOWING/LEADING/OBSERVING
    /// after a round, LOOKING again when the role is lost), so replies carry it.
    pub fn set_state(&mut self, state: ServerState) {
        self.state = state;
    }

    /// Re-labels the vote this server answers with once its role is established in ZAB epoch
    /// `epoch` under `leader`. Servers that joined a leadership by different routes (one from
    /// an older round's notifications) would otherwise answer with votes that differ in peer
    /// epoch, and a server joining later could never count a quorum of them.
    pub fn settle(&mut self, leader: Sid, zxid: i64, epoch: u32) {
        if let Some((vote, _round)) = &mut self.current {
            *vote = Vote {
                leader,
                zxid,
                peer_epoch: epoch as i64,
            };
        }
    }

    /// Notifications to send, drained.
    pub fn poll(&mut self) -> Vec<(Sid, Notification)> {
        std::mem::take(&mut self.outbox)
    }

    /// A connection to `sid` came up (a first one, or one replacing a connection that broke,
    /// after a partition or a restart of either side): sends again the last notification
    /// addressed to `sid`, as `QuorumCnxManager`'s `SendWorker` does when it starts. A
    /// notification lost with the old connection (or sent while there was none) would
    /// otherwise be lost for good: a looking server resends only after `notTimeout` of
    /// silence, and other servers' notifications can keep that silence from ever happening.
    pub fn connected(&mut self, sid: Sid) {
        if let Some(n) = self.last_sent.get(&sid) {
            self.outbox.push((sid, n.clone()));
        }
    }

    fn send(&mut self, to: Sid, n: Notification) {
        self.last_sent.insert(to, n.clone());
        self.outbox.push((to, n));
    }

    fn notification(&self, vote: Vote, election_epoch: i64) -> Notification {
        Notification {
            state: self.state,
            leader: vote.leader,
            zxid: vote.zxid,
            election_epoch,
            peer_epoch: vote.peer_epoch,
            version: NOTIFICATION_VERSION,
            config: self.cfg.config.clone(),
        }
    }

    fn record_self(&mut self) {
        if self.cfg.is_voter(self.cfg.id) {
            let me = Recorded {
                vote: self.proposal,
                election_epoch: self.logical_clock,
                state: ServerState::Looking,
                version: NOTIFICATION_VERSION,
            };
            self.recvset.insert(self.cfg.id, me);
        }
    }

    fn send_notifications(&mut self, now: Millis) {
        let n = self.notification(self.proposal, self.logical_clock);
        let others: Vec<Sid> = self
            .cfg
            .voters
            .iter()
            .copied()
            .filter(|v| *v != self.cfg.id)
            .collect();
        for v in others {
            self.send(v, n.clone());
        }
        self.record_self();
        self.resend_at = now + self.resend_interval;
    }

    /// Advances time: resends notifications after a silence (doubling the interval up to the
    /// cap) and ends a round whose quorum stood for `finalize_wait`.
    pub fn tick(&mut self, now: Millis) {
        if self.outcome.is_some() || self.state != ServerState::Looking {
            return;
        }
        if let Some(at) = self.finalize_at {
            if now >= at {
                self.decide(now);
                return;
            }
        }
        if now >= self.resend_at {
            self.resend_interval =
                (self.resend_interval * 2).min(self.cfg.max_notification_interval);
            self.send_notifications(now);
        }
    }

    /// Handles a notification from `from` (`WorkerReceiver` plus the `lookForLeader` loop).
    pub fn step(&mut self, from: Sid, n: Notification, now: Millis) {
        // A non-voter is answered at once with what this server believes, and otherwise ignored.
        if !self.cfg.is_voter(from) {
            let (vote, epoch) = self.reply_vote();
            self.send(from, self.notification(vote, epoch));
            return;
        }
        if self.state != ServerState::Looking || self.outcome.is_some() {
            // Out of election: tell a looking voter who leads.
            if n.state == ServerState::Looking {
                if let Some((vote, epoch)) = self.current {
                    self.send(from, self.notification(vote, epoch));
                }
            }
            return;
        }
        if n.state == ServerState::Looking && n.election_epoch < self.logical_clock {
            let n = self.notification(self.proposal, self.logical_clock);
            self.send(from, n);
        }
        if !self.cfg.is_voter(n.leader) {
            return;
        }
        self.resend_at = now + self.resend_interval;
        let theirs = Vote {
            leader: n.leader,
            zxid: n.zxid,
            peer_epoch: n.peer_epoch,
        };
        match n.state {
            ServerState::Looking => self.on_looking(from, theirs, n.election_epoch, now),
            ServerState::Following | ServerState::Leading => self.on_decided(from, theirs, &n, now),
            ServerState::Observing => {}
        }
    }

    fn reply_vote(&self) -> (Vote, i64) {
        match (self.outcome, self.current) {
            (Some(_), Some(c)) if self.state != ServerState::Looking => c,
            _ => (self.proposal, self.logical_clock),
        }
    }

    fn on_looking(&mut self, from: Sid, theirs: Vote, election_epoch: i64, now: Millis) {
        if election_epoch > self.logical_clock {
            self.logical_clock = election_epoch;
            self.recvset.clear();
            self.finalize_at = None;
            self.proposal = if theirs.beats(&self.init) {
                theirs
            } else {
                self.init
            };
            self.send_notifications(now);
        } else if election_epoch < self.logical_clock {
            return;
        } else if theirs.beats(&self.proposal) {
            self.proposal = theirs;
            self.finalize_at = None;
            self.send_notifications(now);
        }
        self.recvset.insert(
            from,
            Recorded {
                vote: theirs,
                election_epoch,
                state: ServerState::Looking,
                version: NOTIFICATION_VERSION,
            },
        );
        let target = Recorded {
            vote: self.proposal,
            election_epoch: self.logical_clock,
            state: ServerState::Looking,
            version: NOTIFICATION_VERSION,
        };
        let agreeing: Vec<Sid> = self
            .recvset
            .iter()
            .filter(|(_, r)| r.matches(&target))
            .map(|(s, _)| *s)
            .collect();
        if self.cfg.is_quorum(&agreeing) {
            // ZooKeeper restarts the wait after each non-better notification; a fixed deadline
            // keeps a chatty peer from postponing the decision forever.
            if self.finalize_at.is_none() {
                self.finalize_at = Some(now + self.cfg.finalize_wait);
            }
            if self.cfg.finalize_wait == 0 {
                self.decide(now);
            }
        }
    }

    fn on_decided(&mut self, from: Sid, theirs: Vote, n: &Notification, now: Millis) {
        let rec = Recorded {
            vote: theirs,
            election_epoch: n.election_epoch,
            state: n.state,
            version: n.version,
        };
        if n.election_epoch == self.logical_clock {
            self.recvset.insert(
                from,
                Recorded {
                    state: ServerState::Looking,
                    ..rec
                },
            );
            if self.quorum_follows(&self.recvset, &rec)
                && self.check_leader(&self.recvset, theirs.leader, n.election_epoch)
            {
                self.conclude(theirs, n.election_epoch, now);
                return;
            }
        }
        self.out_of_election.insert(from, rec);
        if self.quorum_follows(&self.out_of_election, &rec)
            && self.check_leader(&self.out_of_election, theirs.leader, n.election_epoch)
        {
            self.logical_clock = n.election_epoch;
            self.conclude(theirs, n.election_epoch, now);
        }
    }

    fn quorum_follows(&self, votes: &BTreeMap<Sid, Recorded>, target: &Recorded) -> bool {
        self.cfg.is_quorum(
            votes
                .iter()
                .filter(|(_, r)| r.matches(target))
                .map(|(s, _)| s),
        )
    }

    /// `checkLeader`: a vote for another server counts only if that server said it leads; a
    /// vote for this server only in this round.
    fn check_leader(&self, votes: &BTreeMap<Sid, Recorded>, leader: Sid, epoch: i64) -> bool {
        if leader != self.cfg.id {
            votes
                .get(&leader)
                .is_some_and(|r| r.state == ServerState::Leading)
        } else {
            self.logical_clock == epoch
        }
    }

    fn decide(&mut self, now: Millis) {
        let (vote, epoch) = (self.proposal, self.logical_clock);
        self.conclude(vote, epoch, now);
    }

    fn conclude(&mut self, vote: Vote, election_epoch: i64, _now: Millis) {
        let outcome = if !self.cfg.is_voter(self.cfg.id) {
            Outcome::Observing(vote.leader)
        } else if vote.leader == self.cfg.id {
            Outcome::Leading
        } else {
            Outcome::Following(vote.leader)
        };
        self.state = match outcome {
            Outcome::Leading => ServerState::Leading,
            Outcome::Following(_) => ServerState::Following,
            Outcome::Observing(_) => ServerState::Observing,
        };
        self.proposal = vote;
        self.current = Some((vote, election_epoch));
        self.outcome = Some(outcome);
        self.finalize_at = None;
        debug!(
            sid = self.cfg.id,
            ?outcome,
            round = election_epoch,
            "election over"
        );
    }
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
