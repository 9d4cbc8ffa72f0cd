//! Scenario tests for [`Peer`], on a lossless in-order network where every disk syncs at once:
//! each reads like a step of the ZAB paper.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use bytes::Bytes;
use zkit_proto::quorum::{make_zxid, ForwardedRequest, PacketType, SessionTouch};

use super::peer::{Event, Peer, PeerConfig, PeerError, Role};
use super::sim::{MemLog, Oracle};
use super::{Log, Message, Millis, Sid};

struct Cluster {
    peers: BTreeMap<Sid, Peer<MemLog>>,
    queue: VecDeque<(Sid, Sid, Message)>,
    events: BTreeMap<Sid, Vec<Event>>,
    down: BTreeSet<Sid>,
    /// Servers whose disk does not sync until removed from here.
    stalled: BTreeSet<Sid>,
    /// Messages matching this are lost.
    lose: Option<fn(Sid, Sid, &Message) -> bool>,
    /// Whether peers may close connections with every server up (ZAB connections broken by
    /// the test, a leader stepping down).
    closes_expected: bool,
    now: Millis,
}

fn config(id: Sid, voters: &[Sid], observers: &[Sid], snap_threshold: usize) -> PeerConfig {
    PeerConfig {
        id,
        voters: voters.iter().copied().collect(),
        observers: observers.iter().copied().collect(),
        tick_time: 10,
        init_limit: 10,
        sync_limit: 5,
        finalize_wait: 2,
        max_notification_interval: 50,
        snap_threshold,
        config: Bytes::from_static(b"version=0"),
    }
}

/// A disk holding `entries` (txn text per zxid) and the given epochs.
fn disk(oracle: &Rc<RefCell<Oracle>>, id: Sid, entries: &[(i64, &str)], epochs: u32) -> MemLog {
    let mut log = MemLog::new(id, oracle.clone());
    for (z, t) in entries {
        log.append(*z, Bytes::from(t.to_string()));
    }
    log.fsync();
    log.accepted = epochs;
    log.current = epochs;
    log
}

impl Cluster {
    fn new(disks: Vec<(PeerConfig, MemLog)>) -> Self {
        let peers = disks
            .into_iter()
            .map(|(cfg, log)| (cfg.id, Peer::new(cfg, log, 0, 0)))
            .collect();
        Cluster {
            peers,
            queue: VecDeque::new(),
            events: BTreeMap::new(),
            down: BTreeSet::new(),
            stalled: BTreeSet::new(),
            lose: None,
            closes_expected: false,
            now: 0,
        }
    }

    fn pump(&mut self) {
        self.pump_until(|_, _, _| false);
    }

    /// Delivers queued messages until `stop` holds for one just delivered (then returns
    /// true) or nothing is left.
    fn pump_until(&mut self, stop: impl Fn(Sid, Sid, &Message) -> bool) -> bool {
        for _ in 0..100_000 {
            for (&sid, p) in self.peers.iter_mut() {
                let (out, closes) = p.poll();
                for (to, m) in out {
                    self.queue.push_back((sid, to, m));
                }
                assert!(
                    closes.is_empty() || !self.down.is_empty() || self.closes_expected,
                    "unexpected close"
                );
                self.events.entry(sid).or_default().extend(p.events());
            }
            let Some((from, to, m)) = self.queue.pop_front() else {
                return false;
            };
            if self.down.contains(&from)
                || self.down.contains(&to)
                || self.lose.is_some_and(|lost| lost(from, to, &m))
            {
                continue;
            }
            let stopped = stop(from, to, &m);
            let now = self.now;
            let p = self.peers.get_mut(&to).unwrap();
            p.step(from, m, now);
            if !self.stalled.contains(&to) {
                let z = p.log_mut().fsync();
                p.durable(z, now);
            }
            if stopped {
                return true;
            }
        }
        panic!("messages without end at {} ms: a livelock", self.now);
    }

    fn run(&mut self, ms: Millis) {
        self.run_until(ms, |_, _, _| false);
    }

    /// Runs for up to `ms`, stopping right after a message for which `stop` holds.
    fn run_until(&mut self, ms: Millis, stop: impl Fn(Sid, Sid, &Message) -> bool) -> bool {
        for _ in 0..ms {
            self.now += 1;
            let now = self.now;
            for (sid, p) in self.peers.iter_mut() {
                if !self.down.contains(sid) {
                    if !self.stalled.contains(sid) {
                        let z = p.log_mut().fsync();
                        p.durable(z, now);
                    }
                    p.tick(now);
                }
            }
            if self.pump_until(&stop) {
                return true;
            }
        }
        false
    }

    /// The ZAB connection between `a` and `b` breaks; both ends are told.
    fn break_zab(&mut self, a: Sid, b: Sid) {
        self.closes_expected = true;
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            self.peers.get_mut(&x).unwrap().disconnected(y, now);
        }
        self.pump();
    }

    fn role(&self, sid: Sid) -> Role {
        self.peers[&sid].role()
    }

    fn delivered(&self, sid: Sid) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.events[&sid] {
            match e {
                Event::Deliver { txn, .. } => out.push(String::from_utf8_lossy(txn).into_owned()),
                Event::Restore { snapshot, .. } => {
                    out = MemLog::decode(snapshot.clone())
                        .into_iter()
                        .map(|(_, t)| String::from_utf8_lossy(&t).into_owned())
                        .collect()
                }
                _ => {}
            }
        }
        out
    }

    fn log_zxids(&self, sid: Sid) -> Vec<i64> {
        self.peers[&sid].log().entries.iter().map(|e| e.0).collect()
    }
}

fn fresh(voters: &[Sid], observers: &[Sid]) -> Cluster {
    let oracle = Rc::new(RefCell::new(Oracle::default()));
    let all: Vec<Sid> = voters.iter().chain(observers).copied().collect();
    Cluster::new(
        all.iter()
            .map(|&id| {
                (
                    config(id, voters, observers, 100),
                    disk(&oracle, id, &[], 0),
                )
            })
            .collect(),
    )
}

#[test]
fn three_servers_elect_then_commit_in_zxid_order() {
    let mut c = fresh(&[1, 2, 3], &[]);
    c.run(50);
    assert_eq!(
        c.role(3),
        Role::Leading {
            epoch: 1,
            established: true
        }
    );
    assert_eq!(
        c.role(1),
        Role::Following {
            leader: 3,
            synced: true
        }
    );
    let p = c.peers.get_mut(&3).unwrap();
    assert_eq!(p.propose(Bytes::from("a")), Ok(make_zxid(1, 1)));
    assert_eq!(p.propose(Bytes::from("b")), Ok(make_zxid(1, 2)));
    c.run(5);
    for sid in [1, 2, 3] {
        assert_eq!(c.delivered(sid), ["a", "b"], "server {sid}");
    }
}

#[test]
fn followers_refuse_proposals_and_the_leader_refuses_before_broadcast() {
    let mut c = fresh(&[1, 2, 3], &[]);
    assert!(c
        .peers
        .get_mut(&3)
        .unwrap()
        .propose(Bytes::from("x"))
        .is_err());
    c.run(50);
    assert!(c
        .peers
        .get_mut(&1)
        .unwrap()
        .propose(Bytes::from("x"))
        .is_err());
}

#[test]
fn a_diverged_follower_is_truncated_then_diffed() {
    let oracle = Rc::new(RefCell::new(Oracle::default()));
    let shared = [(make_zxid(1, 1), "a"), (make_zxid(1, 2), "b")];
    // Server 1 logged 1:3 that never committed; 2 and 3 went on in epoch 2.
    let mut one = shared.to_vec();
    one.push((make_zxid(1, 3), "lost"));
    let mut two = shared.to_vec();
    two.push((make_zxid(2, 1), "c"));
    let v = [1, 2, 3];
    let mut c = Cluster::new(vec![
        (config(1, &v, &[], 100), disk(&oracle, 1, &one, 1)),
        (config(2, &v, &[], 100), disk(&oracle, 2, &two, 2)),
        (config(3, &v, &[], 100), disk(&oracle, 3, &two, 2)),
    ]);
    c.run(60);
    assert_eq!(
        c.role(3),
        Role::Leading {
            epoch: 3,
            established: true
        }
    );
    let want = vec![make_zxid(1, 1), make_zxid(1, 2), make_zxid(2, 1)];
    for sid in [1, 2, 3] {
        assert_eq!(c.log_zxids(sid), want, "server {sid}");
        assert_eq!(c.delivered(sid), ["a", "b", "c"], "server {sid}");
    }
    assert_eq!(c.peers[&1].log().current_epoch(), 3);
}

/// A restarted server's state machine holds its whole log, including a txn that never
/// committed. The leader syncs it with a snapshot and crashes before UPTODATE: the state
/// machine must still end up holding exactly what the log holds (the snapshot reaches it when
/// the log takes it, as ZooKeeper's learner loads a SNAP at once), not the lost txn under the
/// next leader's history.
#[test]
fn a_snapshot_reaches_the_state_machine_even_if_the_leader_falls_before_uptodate() {
    let oracle = Rc::new(RefCell::new(Oracle::default()));
    let one = [(make_zxid(1, 1), "a"), (make_zxid(1, 2), "lost")];
    let two = [(make_zxid(1, 1), "a"), (make_zxid(2, 1), "b")];
    let v = [1, 2, 3];
    let mut c = Cluster::new(vec![
        (config(1, &v, &[], 0), disk(&oracle, 1, &one, 1)),
        (config(2, &v, &[], 0), disk(&oracle, 2, &two, 2)),
        (config(3, &v, &[], 0), disk(&oracle, 3, &two, 2)),
    ]);
    // Server 1 restarts with its whole log applied, as a server loads it at startup.
    let log = c.peers.remove(&1).unwrap().into_log();
    c.peers
        .insert(1, Peer::new(config(1, &v, &[], 0), log, make_zxid(1, 2), 0));
    let snapshot_to_1 = |_: Sid, to: Sid, m: &Message| to == 1 && matches!(m, Message::Snapshot(_));
    assert!(
        c.run_until(100, snapshot_to_1),
        "server 1 is synced by snapshot"
    );
    c.down.insert(3);
    c.queue.clear();
    c.run(400);
    assert!(matches!(
        c.role(1),
        Role::Following { synced: true, .. }
            | Role::Leading {
                established: true,
                ..
            }
    ));
    // The state machine: what it held at startup, then what the events told it.
    let mut state = vec!["a".to_owned(), "lost".to_owned()];
    for e in &c.events[&1] {
        match e {
            Event::Deliver { txn, .. } => state.push(String::from_utf8_lossy(txn).into_owned()),
            Event::Restore { snapshot, .. } => {
                state = MemLog::decode(snapshot.clone())
                    .into_iter()
                    .map(|(_, t)| String::from_utf8_lossy(&t).into_owned())
                    .collect()
            }
            Event::Reset { .. } => panic!("no truncation in this scenario"),
            _ => {}
        }
    }
    assert_eq!(state, ["a", "b"]);
}

#[test]
fn a_far_behind_follower_gets_a_snapshot() {
    let oracle = Rc::new(RefCell::new(Oracle::default()));
    let long: Vec<(i64, &str)> = (1..=6).map(|i| (make_zxid(1, i), "t")).collect();
    let v = [1, 2, 3];
    let mut c = Cluster::new(vec![
        (config(1, &v, &[], 2), disk(&oracle, 1, &[], 0)),
        (config(2, &v, &[], 2), disk(&oracle, 2, &long, 1)),
        (config(3, &v, &[], 2), disk(&oracle, 3, &long, 1)),
    ]);
    c.run(60);
    assert!(c.events[&1]
        .iter()
        .any(|e| matches!(e, Event::Restore { .. })));
    assert_eq!(c.log_zxids(1), c.log_zxids(3));
    assert_eq!(c.delivered(1).len(), 6);
}

#[test]
fn observers_learn_commits_but_do_not_make_a_quorum() {
    let mut c = fresh(&[1, 2, 3], &[4]);
    c.run(50);
    assert_eq!(
        c.role(4),
        Role::Observing {
            leader: 3,
            synced: true
        }
    );
    c.peers
        .get_mut(&3)
        .unwrap()
        .propose(Bytes::from("a"))
        .unwrap();
    c.run(5);
    assert_eq!(c.delivered(4), ["a"]);
    // With both other voters gone the leader cannot commit, observer or not.
    c.down.extend([1, 2]);
    c.peers
        .get_mut(&3)
        .unwrap()
        .propose(Bytes::from("b"))
        .unwrap();
    c.run(5);
    assert_eq!(c.delivered(3), ["a"]);
    assert_eq!(c.delivered(4), ["a"]);
}

#[test]
fn a_leader_without_a_quorum_steps_down() {
    let mut c = fresh(&[1, 2, 3], &[]);
    c.run(50);
    c.down.extend([1, 2]);
    c.run(100);
    assert_eq!(c.role(3), Role::Looking);
}

#[test]
fn nothing_commits_until_a_quorum_has_synced_its_disk() {
    let mut c = fresh(&[1, 2, 3], &[]);
    c.run(50);
    c.stalled.extend([1, 2, 3]);
    c.peers
        .get_mut(&3)
        .unwrap()
        .propose(Bytes::from("a"))
        .unwrap();
    c.run(20);
    assert!(c.delivered(3).is_empty(), "committed with no durable copy");
    // The leader's own disk alone is not a quorum.
    c.stalled.remove(&3);
    c.run(20);
    assert!(
        c.delivered(3).is_empty(),
        "committed with one durable copy of three"
    );
    // One follower's fsync completes the quorum; the other learns the commit too.
    c.stalled.remove(&1);
    c.run(5);
    assert_eq!(c.delivered(3), ["a"]);
    assert_eq!(c.delivered(2), ["a"]);
}

/// A follower that restarts holding a proposal the leader has not committed yet (logged,
/// never acknowledged) must still acknowledge it once it rejoins: the leader re-sends what
/// is past its commit point, as ZooKeeper's leader truncates such a learner to its last
/// committed txn and forwards the outstanding proposals. Otherwise, with the other follower
/// unable to acknowledge, the proposal (and everything after it) never commits.
#[test]
fn a_follower_rejoining_with_an_outstanding_proposal_acknowledges_it() {
    let mut c = fresh(&[1, 2, 3], &[]);
    c.run(50);
    assert!(matches!(
        c.role(3),
        Role::Leading {
            established: true,
            ..
        }
    ));
    c.stalled.extend([1, 2]);
    c.peers
        .get_mut(&3)
        .unwrap()
        .propose(Bytes::from("x"))
        .unwrap();
    c.run(5);
    assert!(c.delivered(3).is_empty());
    // Server 1 restarts with "x" in its log (whatever survives a restart is durable).
    let now = c.now;
    let log = c.peers.remove(&1).unwrap().into_log();
    c.peers
        .insert(1, Peer::new(config(1, &[1, 2, 3], &[], 100), log, 0, now));
    c.peers.get_mut(&3).unwrap().disconnected(1, now);
    c.stalled.remove(&1);
    c.run(200);
    assert_eq!(
        c.role(1),
        Role::Following {
            leader: 3,
            synced: true
        }
    );
    assert_eq!(
        c.delivered(3),
        ["x"],
        "committed with server 1's acknowledgement"
    );
    assert_eq!(c.delivered(1), ["x"]);
}

#[test]
fn newleader_is_acknowledged_only_after_the_synced_txns_are_durable() {
    let oracle = Rc::new(RefCell::new(Oracle::default()));
    let long: Vec<(i64, &str)> = (1..=3).map(|i| (make_zxid(1, i), "t")).collect();
    let v = [1, 2, 3];
    let mut c = Cluster::new(vec![
        (config(1, &v, &[], 100), disk(&oracle, 1, &[], 0)),
        (config(2, &v, &[], 100), disk(&oracle, 2, &[], 0)),
        (config(3, &v, &[], 100), disk(&oracle, 3, &long, 1)),
    ]);
    c.stalled.extend([1, 2]);
    c.run(60);
    // Both followers got the DIFF but cannot promise it: no broadcast phase, no new epoch.
    assert_eq!(
        c.role(3),
        Role::Leading {
            epoch: 2,
            established: false
        }
    );
    assert_eq!(c.peers[&1].log().current_epoch(), 0);
    c.stalled.remove(&2);
    c.run(5);
    assert_eq!(
        c.role(3),
        Role::Leading {
            epoch: 2,
            established: true
        }
    );
    assert_eq!(c.peers[&2].log().current_epoch(), 2);
}

#[test]
fn a_learner_forwards_requests_and_revalidations_to_the_leader() {
    let mut c = fresh(&[1, 2, 3], &[4]);
    c.run(50);
    let req = ForwardedRequest {
        session_id: 5,
        cxid: 1,
        op: 1,
        body: Bytes::from("create /a"),
    };
    let leader_err = c.peers.get_mut(&3).unwrap().forward(req.clone(), vec![]);
    assert_eq!(leader_err, Err(PeerError::NotSyncedLearner));
    c.peers
        .get_mut(&1)
        .unwrap()
        .forward(req.clone(), vec![])
        .unwrap();
    c.peers.get_mut(&4).unwrap().revalidate(5, 4_000).unwrap();
    c.run(1);
    let from_1 = Event::Request {
        from: 1,
        request: req,
        authinfo: vec![],
    };
    assert!(c.events[&3].contains(&from_1));
    let reval = Event::Revalidate {
        from: 4,
        session_id: 5,
        timeout: 4_000,
    };
    assert!(c.events[&3].contains(&reval));
    c.peers
        .get_mut(&3)
        .unwrap()
        .revalidate_reply(4, 5, true)
        .unwrap();
    c.run(1);
    let answer = Event::Revalidated {
        session_id: 5,
        valid: true,
    };
    assert!(c.events[&4].contains(&answer));
}

#[test]
fn a_sync_completes_only_after_the_proposals_before_it_commit() {
    let mut c = fresh(&[1, 2, 3], &[]);
    c.run(50);
    c.stalled.extend([1, 2, 3]);
    let leader = c.peers.get_mut(&3).unwrap();
    leader.propose(Bytes::from("a")).unwrap();
    leader.sync_for(1).unwrap();
    leader.sync_for(3).unwrap();
    c.run(5);
    assert!(!c.events[&1].contains(&Event::Synced));
    assert!(!c.events[&3].contains(&Event::Synced));
    c.stalled.clear();
    c.run(5);
    for sid in [1, 3] {
        let ev = &c.events[&sid];
        let synced = ev.iter().position(|e| *e == Event::Synced).expect("synced");
        let applied = ev
            .iter()
            .position(|e| matches!(e, Event::Deliver { txn, .. } if txn == "a"))
            .expect("delivered");
        assert!(
            applied < synced,
            "server {sid}: sync answered before the write it follows"
        );
    }
    // With nothing outstanding a sync is answered at once.
    c.peers.get_mut(&3).unwrap().sync_for(2).unwrap();
    c.run(1);
    assert!(c.events[&2].contains(&Event::Synced));
}

#[test]
fn a_sync_is_answered_once_a_quorum_answered_a_ping_sent_after_it() {
    let mut c = fresh(&[1, 2, 3], &[]);
    c.run(50);
    // One follower gone: the other and the leader are a quorum.
    c.down.insert(1);
    let leader = c.peers.get_mut(&3).unwrap();
    leader.sync_for(3).unwrap();
    assert!(
        !leader.events().contains(&Event::Synced),
        "answered before any follower vouched for the leader"
    );
    c.run(1);
    assert!(c.events[&3].contains(&Event::Synced));
}

#[test]
fn a_stalled_leader_that_lost_its_quorum_does_not_answer_a_sync() {
    let mut c = fresh(&[1, 2, 3], &[]);
    c.run(50);
    // The leader stalls; the others give up on it, elect one of them and commit a write.
    c.down.insert(3);
    c.run(200);
    let new = [1, 2]
        .into_iter()
        .find(|s| {
            matches!(
                c.role(*s),
                Role::Leading {
                    established: true,
                    ..
                }
            )
        })
        .expect("a new leader");
    c.peers
        .get_mut(&new)
        .unwrap()
        .propose(Bytes::from("b"))
        .unwrap();
    c.run(5);
    assert_eq!(c.delivered(new), ["b"]);
    // The old leader resumes believing it leads; a sync reaches it before its next tick.
    assert!(matches!(c.role(3), Role::Leading { epoch: 1, .. }));
    let now = c.now;
    let old = c.peers.get_mut(&3).unwrap();
    old.sync_for(3).unwrap();
    assert!(!old.events().contains(&Event::Synced), "a stale sync");
    old.tick(now);
    assert_eq!(old.role(), Role::Looking);
    assert!(!old.events().contains(&Event::Synced), "a stale sync");
}

#[test]
fn session_touches_ride_on_ping_replies() {
    let mut c = fresh(&[1, 2, 3], &[]);
    c.run(50);
    c.peers.get_mut(&2).unwrap().touch(7, 3_000).unwrap();
    c.run(20);
    let touched = Event::Touches {
        from: 2,
        touches: vec![SessionTouch {
            session_id: 7,
            timeout: 3_000,
        }],
    };
    assert!(c.events[&3].contains(&touched));
}

#[test]
fn a_leader_steps_down_for_a_learner_that_accepted_a_newer_epoch() {
    // Server 1 promised epoch 5 to a would-be leader whose discovery never completed, while 2
    // and 3 went on to establish epoch 4 without it.
    let oracle = Rc::new(RefCell::new(Oracle::default()));
    let v = [1, 2, 3];
    let mut one = disk(&oracle, 1, &[], 3);
    one.accepted = 5;
    let mut c = Cluster::new(vec![
        (config(1, &v, &[], 100), one),
        (config(2, &v, &[], 100), disk(&oracle, 2, &[], 3)),
        (config(3, &v, &[], 100), disk(&oracle, 3, &[], 3)),
    ]);
    c.down.insert(1);
    c.run(50);
    let established_4 = Role::Leading {
        epoch: 4,
        established: true,
    };
    assert_eq!(c.role(3), established_4);
    // Server 1 refuses epoch 4 and would come back to it after every election: the leader
    // makes way for an epoch server 1 can join.
    c.down.remove(&1);
    c.closes_expected = true;
    c.run(200);
    let synced = Role::Following {
        leader: 3,
        synced: true,
    };
    assert_eq!(c.role(1), synced);
    assert!(matches!(c.role(3), Role::Leading { epoch, established: true } if epoch >= 5));
}

#[test]
fn a_learner_holding_outstanding_proposals_is_truncated_and_acknowledges_them_again() {
    let mut c = fresh(&[1, 2, 3], &[]);
    c.run(50);
    // Both followers log the proposal but cannot acknowledge it yet.
    c.stalled.extend([1, 2]);
    let zxid = c
        .peers
        .get_mut(&3)
        .unwrap()
        .propose(Bytes::from("x"))
        .unwrap();
    c.run(5);
    assert_eq!(c.log_zxids(1), [zxid]);
    // One after the other (the leader keeps its quorum), each loses its connection to the
    // leader, syncs its disk and comes back with the proposal already in its log.
    for sid in [1, 2] {
        c.break_zab(sid, 3);
        c.stalled.remove(&sid);
        c.run(30);
        assert!(matches!(c.role(sid), Role::Following { synced: true, .. }));
    }
    for sid in [1, 2, 3] {
        assert_eq!(c.delivered(sid), ["x"], "server {sid}");
    }
}

#[test]
fn an_epoch_acknowledged_with_minus_one_does_not_count() {
    let mut c = fresh(&[1, 2, 3], &[]);
    // Both followers accept the leader's epoch, but their ACKEPOCHs are lost.
    c.lose = Some(|_, _, m| matches!(m, Message::Zab(p) if p.kind == PacketType::AckEpoch));
    c.run(20);
    assert_eq!(c.peers[&2].log().accepted_epoch(), 1);
    c.lose = None;
    // Server 2 comes back on a new connection and answers the same epoch with -1: it had
    // promised it already (to this leader, or for all it knows to another one), which is no
    // ack of this leadership.
    c.break_zab(2, 3);
    c.run(30);
    assert_eq!(
        c.role(2),
        Role::Following {
            leader: 3,
            synced: false
        }
    );
    assert_eq!(
        c.role(3),
        Role::Leading {
            epoch: 1,
            established: false
        }
    );
    // Discovery times out (initLimit) and the next epoch is acknowledged for real.
    c.run(200);
    assert!(matches!(c.role(3), Role::Leading { epoch, established: true } if epoch >= 2));
}
