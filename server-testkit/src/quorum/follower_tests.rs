//! A learner synced by a real ZooKeeper leader, packet by packet, with the server core applying
//! what it delivers and checking the leader's digests as the ensemble does.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use zkit_proto::quorum::{
    int_payload, make_zxid, Notification, PacketType, QuorumPacket, ServerState,
    LEARNER_PROTOCOL_VERSION, NOTIFICATION_VERSION,
};
use zkit_proto::txn::{CreateSessionTxn, CreateTxn, SetDataTxn};
use zkit_proto::Acl;

use super::peer::{Event, Peer, PeerConfig, Role};
use super::sim::{MemLog, Oracle};
use super::{Log, Message, Sid};
use crate::core::{tree_digest, Committed, Config, Core, Database, Txn, TxnBody};
use crate::persist::logread::proposal_bytes;
use crate::persist::txnlog::decode_payload;

const LEADER: Sid = 1;
const OBSERVER: Sid = 4;
const EPOCH: u32 = 2;

fn z(n: u32) -> i64 {
    make_zxid(EPOCH, n)
}

/// A real leader's history: each txn as its PROPOSAL / INFORM carries it (with the leader's
/// tree digest after it), and the leader's database after each one.
struct History {
    db: Database,
    txns: Vec<(i64, Bytes)>,
    dbs: Vec<Database>,
}

impl History {
    /// A session, then creates of `/n<k>` and setData of the node before.
    fn new(n: u32) -> History {
        let mut h = History {
            db: Database::new(false),
            txns: Vec::new(),
            dbs: Vec::new(),
        };
        h.push(
            z(1),
            TxnBody::CreateSession(CreateSessionTxn { time_out: 30_000 }),
        );
        for k in 2..=n {
            let body = if k % 3 == 0 {
                let path = format!("/n{}", k - 1);
                let version = h.db.tree.get(&path).map_or(0, |n| n.stat.version) + 1;
                TxnBody::SetData(SetDataTxn {
                    path,
                    data: Some(Bytes::from(format!("set at {k}"))),
                    version,
                })
            } else {
                let parent_cversion = h.db.tree.get("/").map_or(0, |n| n.stat.cversion) + 1;
                TxnBody::Create(CreateTxn {
                    path: format!("/n{k}"),
                    data: Some(Bytes::from(vec![k as u8; 4])),
                    acl: Acl::open_unsafe(),
                    ephemeral: false,
                    parent_cversion,
                })
            };
            h.push(z(k), body);
        }
        h
    }

    fn push(&mut self, zxid: i64, body: TxnBody) {
        let txn = Txn::new(0x77, 1, zxid, 1_700_000_000_000 + zxid, body);
        self.db.apply(&txn, &mut Vec::new());
        self.db.last_zxid = zxid;
        let digest = Some(tree_digest(&self.db.tree));
        self.txns
            .push((zxid, proposal_bytes(&Committed { txn, digest })));
        self.dbs.push(self.db.clone());
    }

    fn txn(&self, zxid: i64) -> Bytes {
        self.txns.iter().find(|t| t.0 == zxid).unwrap().1.clone()
    }

    /// The database after `zxid`.
    fn at(&self, zxid: i64) -> Database {
        self.dbs
            .iter()
            .find(|d| d.last_zxid == zxid)
            .unwrap()
            .clone()
    }
}

/// An observer (server 4 of voters 1-3).
fn observer() -> Peer<MemLog> {
    let cfg = PeerConfig {
        id: OBSERVER,
        voters: [1, 2, 3].into_iter().collect(),
        observers: [OBSERVER].into_iter().collect(),
        tick_time: 10,
        init_limit: 10,
        sync_limit: 5,
        finalize_wait: 2,
        max_notification_interval: 50,
        snap_threshold: 100,
        config: Bytes::from_static(b"version=0"),
    };
    let log = MemLog::new(OBSERVER, Rc::new(RefCell::new(Oracle::default())));
    Peer::new(cfg, log, 0, 0)
}

/// Voters 1 and 2 tell the observer that 1 leads (election round `round`); it connects to 1
/// and is then told that 1 leads epoch `epoch`.
fn follow_leader(p: &mut Peer<MemLog>, round: i64, epoch: u32) {
    for (from, state) in [(1, ServerState::Leading), (2, ServerState::Following)] {
        let n = Notification {
            state,
            leader: LEADER,
            zxid: 0,
            election_epoch: round,
            peer_epoch: round,
            version: NOTIFICATION_VERSION,
            config: Bytes::from_static(b"version=0"),
        };
        p.step(from, Message::Election(n), 1);
    }
    assert_eq!(
        p.role(),
        Role::Observing {
            leader: LEADER,
            synced: false
        }
    );
    let version = Some(int_payload(LEARNER_PROTOCOL_VERSION));
    zab(p, PacketType::LeaderInfo, make_zxid(epoch, 0), version);
}

fn zab(p: &mut Peer<MemLog>, kind: PacketType, zxid: i64, data: Option<Bytes>) {
    p.step(LEADER, Message::Zab(QuorumPacket::new(kind, zxid, data)), 2);
}

/// SNAP at `at`, then the snapshot (the log's form of the history up to `at`).
fn snap(p: &mut Peer<MemLog>, h: &History, at: i64) {
    zab(p, PacketType::Snap, at, None);
    let mut log = MemLog::new(LEADER, Rc::new(RefCell::new(Oracle::default())));
    for (zxid, t) in h.txns.iter().filter(|t| t.0 <= at) {
        log.append(*zxid, t.clone());
    }
    p.step(LEADER, Message::Snapshot(log.snapshot(at)), 2);
}

/// NEWLEADER of `epoch` (acknowledged once the log is durable), then UPTODATE.
fn finish_sync(p: &mut Peer<MemLog>, epoch: u32) {
    zab(p, PacketType::NewLeader, make_zxid(epoch, 0), None);
    p.durable(p.log().last_zxid(), 2);
    zab(p, PacketType::UpToDate, make_zxid(epoch, 0), None);
    assert_eq!(
        p.role(),
        Role::Observing {
            leader: LEADER,
            synced: true
        }
    );
}

/// The delivered zxids, with whether each was fuzzy.
fn deliveries(events: &[Event]) -> Vec<(i64, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Deliver { zxid, fuzzy, .. } => Some((*zxid, *fuzzy)),
            _ => None,
        })
        .collect()
}

/// What the ensemble's apply task does with a learner's events: a snapshot replaces the
/// state (with `snapshot`, the tree the leader's snapshot held), a delivered txn is applied
/// and the leader's digest checked.
fn apply(core: &mut Core, events: Vec<Event>, snapshot: &Database) {
    for e in events {
        match e {
            Event::Restore { zxid, .. } => {
                assert_eq!(zxid, snapshot.last_zxid);
                core.reset(snapshot.clone(), 0);
            }
            Event::Deliver { zxid, txn, fuzzy } => {
                let (txn, digest) = decode_payload(txn).unwrap();
                assert_eq!(txn.hdr.zxid, zxid);
                core.deliver_checked(&txn, digest, fuzzy, 0);
            }
            _ => {}
        }
    }
}

/// The tree of the leader's database after `upto`, as a snapshot taken at `at` holds it.
fn fuzzy_snapshot(h: &History, at: i64, upto: i64) -> Database {
    let mut db = h.at(upto);
    db.last_zxid = at;
    db
}

/// ZooKeeper's leader serializes its snapshot for a SNAP while it keeps applying commits
/// (`LearnerHandler`: SNAP names the zxid applied when it starts, the tree is written after):
/// the snapshot can hold txns past its zxid. Everything committed until then was queued for
/// the learner before NEWLEADER (PROPOSAL + COMMIT for what was committed and not yet applied
/// when forwarding started, INFORM for what committed after), so the learner re-applies txns
/// the tree already holds. ZooKeeper's learner applies what comes before NEWLEADER without
/// comparing digests (`Learner.syncWithLeader` hands it to `processTxn` without one); from
/// NEWLEADER on the tree is exact and every digest is compared.
#[test]
fn txns_reapplied_onto_a_fuzzy_snapshot_count_no_digest_mismatch() {
    let h = History::new(12);
    let mut p = observer();
    let mut core = Core::replica(Config::default(), Database::new(false), 0, OBSERVER);

    follow_leader(&mut p, 1, EPOCH);
    // The snapshot says 5 but holds everything up to 8.
    snap(&mut p, &h, z(5));
    // Committed before forwarding started, applied by the leader since.
    zab(&mut p, PacketType::Proposal, z(6), Some(h.txn(z(6))));
    zab(&mut p, PacketType::Commit, z(6), None);
    // Committed while the snapshot was being written.
    for n in 7..=9 {
        zab(&mut p, PacketType::Inform, z(n), Some(h.txn(z(n))));
    }
    finish_sync(&mut p, EPOCH);
    for n in 10..=12 {
        zab(&mut p, PacketType::Inform, z(n), Some(h.txn(z(n))));
    }
    let events = p.events();
    let expected: Vec<(i64, bool)> = (6..=12).map(|n| (z(n), n <= 9)).collect();
    assert_eq!(
        deliveries(&events),
        expected,
        "what came before NEWLEADER is fuzzy"
    );
    apply(&mut core, events, &fuzzy_snapshot(&h, z(5), z(8)));

    let c = core.counters();
    assert_eq!(
        (c.digest_mismatches, c.digest_checks),
        (0, 3),
        "only the txns after NEWLEADER are checked, and they match"
    );
    assert_eq!(core.db().last_zxid, z(12));
    assert_eq!(core.digest(), tree_digest(&h.at(z(12)).tree));
}

/// A leader lost after its snapshot and before NEWLEADER leaves a tree that may hold txns
/// this learner has not received yet: it stays fuzzy until the NEWLEADER of the next sync
/// (any leader since has every txn that snapshot could hold, and sends it before NEWLEADER).
#[test]
fn a_fuzzy_snapshot_stays_fuzzy_until_a_later_sync_completes() {
    let h = History::new(12);
    let mut p = observer();
    let mut core = Core::replica(Config::default(), Database::new(false), 0, OBSERVER);

    follow_leader(&mut p, 1, EPOCH);
    // The snapshot says 5 but holds everything up to 9.
    snap(&mut p, &h, z(5));
    for n in 6..=7 {
        zab(&mut p, PacketType::Inform, z(n), Some(h.txn(z(n))));
    }
    p.disconnected(LEADER, 3);
    assert_eq!(p.role(), Role::Looking);

    follow_leader(&mut p, 2, EPOCH + 1);
    zab(&mut p, PacketType::Diff, z(9), None);
    for n in 8..=9 {
        zab(&mut p, PacketType::Proposal, z(n), Some(h.txn(z(n))));
        zab(&mut p, PacketType::Commit, z(n), None);
    }
    finish_sync(&mut p, EPOCH + 1);
    for n in 10..=12 {
        zab(&mut p, PacketType::Inform, z(n), Some(h.txn(z(n))));
    }
    let events = p.events();
    let expected: Vec<(i64, bool)> = (6..=12).map(|n| (z(n), n <= 9)).collect();
    assert_eq!(deliveries(&events), expected);
    apply(&mut core, events, &fuzzy_snapshot(&h, z(5), z(9)));

    let c = core.counters();
    assert_eq!((c.digest_mismatches, c.digest_checks), (0, 3));
    assert_eq!(core.digest(), tree_digest(&h.at(z(12)).tree));
}

/// ZooKeeper's leader starts forwarding before it reads the zxid its SNAP names: a txn
/// committed in between comes as PROPOSAL + COMMIT after a snapshot that already holds it.
/// The learner keeps syncing (it used to go back to election) and applies nothing twice.
#[test]
fn a_proposal_the_snapshot_already_holds_does_not_break_the_sync() {
    let h = History::new(9);
    let mut p = observer();
    let mut core = Core::replica(Config::default(), Database::new(false), 0, OBSERVER);

    follow_leader(&mut p, 1, EPOCH);
    snap(&mut p, &h, z(5));
    for n in 4..=6 {
        zab(&mut p, PacketType::Proposal, z(n), Some(h.txn(z(n))));
        zab(&mut p, PacketType::Commit, z(n), None);
    }
    finish_sync(&mut p, EPOCH);
    for n in 7..=9 {
        zab(&mut p, PacketType::Inform, z(n), Some(h.txn(z(n))));
    }
    let events = p.events();
    let expected: Vec<(i64, bool)> = (6..=9).map(|n| (z(n), n <= 6)).collect();
    assert_eq!(deliveries(&events), expected);
    apply(&mut core, events, &fuzzy_snapshot(&h, z(5), z(5)));
    let c = core.counters();
    assert_eq!((c.digest_mismatches, c.digest_checks), (0, 3));
    assert_eq!(core.digest(), tree_digest(&h.at(z(9)).tree));
}
