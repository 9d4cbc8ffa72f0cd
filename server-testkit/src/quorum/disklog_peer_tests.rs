//! Real [`Peer`]s over [`DiskLog`]s on temp dirs: a lagging follower catches up by DIFF, a
//! leader that logged a txn nobody else saw is truncated (TRUNC) after a restart and rebuilds
//! its tree from disk, a follower too far behind gets SNAP; every data dir ends with the same
//! history and the same tree.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use tempfile::TempDir;
use zkit_proto::txn::CreateTxn;
use zkit_proto::Acl;

use super::DiskLog;
use crate::core::{tree_digest, Committed, Database, Txn, TxnBody};
use crate::persist::logread::proposal_bytes;
use crate::persist::{recover, PersistOptions};
use crate::quorum::peer::{Event, Peer, PeerConfig, Role};
use crate::quorum::{Log, Message, Millis, Sid};

fn config(id: Sid, snap_threshold: usize) -> PeerConfig {
    PeerConfig {
        id,
        voters: [1, 2, 3].into_iter().collect(),
        observers: BTreeSet::new(),
        tick_time: 10,
        init_limit: 10,
        sync_limit: 5,
        finalize_wait: 2,
        max_notification_interval: 50,
        snap_threshold,
        config: Bytes::from_static(b"version=0"),
    }
}

fn open(dir: &TempDir) -> DiskLog {
    let opts = PersistOptions::default().prealloc(4096).roll_after(Some(3));
    recover(dir.path(), &opts, false).unwrap();
    DiskLog::open(dir.path(), opts, false).unwrap()
}

struct Cluster {
    dirs: BTreeMap<Sid, TempDir>,
    peers: BTreeMap<Sid, Peer<DiskLog>>,
    queue: VecDeque<(Sid, Sid, Message)>,
    down: BTreeSet<Sid>,
    now: Millis,
    snap_threshold: usize,
    /// TRUNCs below the applied state (Reset) and SNAPs (Restore) seen per server.
    resets: BTreeMap<Sid, usize>,
    restores: BTreeMap<Sid, usize>,
}

impl Cluster {
    fn new(snap_threshold: usize) -> Cluster {
        let mut c = Cluster {
            dirs: BTreeMap::new(),
            peers: BTreeMap::new(),
            queue: VecDeque::new(),
            down: BTreeSet::new(),
            now: 0,
            snap_threshold,
            resets: BTreeMap::new(),
            restores: BTreeMap::new(),
        };
        for id in [1, 2, 3] {
            c.dirs.insert(id, TempDir::new().unwrap());
            c.start(id);
        }
        c
    }

    /// (Re)starts a server from its data dir: recovery, the tree rebuilt, a new peer.
    fn start(&mut self, id: Sid) {
        let log = open(&self.dirs[&id]);
        let applied = log.rebuild(i64::MAX).unwrap().db.last_zxid;
        let p = Peer::new(config(id, self.snap_threshold), log, applied, self.now);
        self.peers.insert(id, p);
    }

    /// Stops a server: whatever was not fsynced is lost with it (nothing is, here).
    fn stop(&mut self, id: Sid) {
        self.peers.remove(&id);
        self.queue.retain(|(f, t, _)| *f != id && *t != id);
    }

    fn sync(p: &mut Peer<DiskLog>, now: Millis) {
        if let Some(z) = p.log().fsync() {
            p.durable(z, now);
        }
    }

    fn pump(&mut self) {
        loop {
            for (&sid, p) in self.peers.iter_mut() {
                let (out, _closes) = p.poll();
                for (to, m) in out {
                    self.queue.push_back((sid, to, m));
                }
                for e in p.events() {
                    match e {
                        // TRUNC below what was applied: rebuild from disk, never un-apply.
                        Event::Reset { zxid } => {
                            let t = p.log().rebuild(zxid).unwrap();
                            assert_eq!(t.db.last_zxid, zxid);
                            *self.resets.entry(sid).or_default() += 1;
                        }
                        Event::Restore { zxid, .. } => {
                            assert_eq!(p.log().rebuild(zxid).unwrap().db.last_zxid, zxid);
                            *self.restores.entry(sid).or_default() += 1;
                        }
                        _ => {}
                    }
                }
                assert!(
                    p.log().failure().is_none(),
                    "{sid}: {:?}",
                    p.log().failure()
                );
            }
            let Some((from, to, m)) = self.queue.pop_front() else {
                return;
            };
            if self.down.contains(&from) || self.down.contains(&to) {
                continue;
            }
            let now = self.now;
            if let Some(p) = self.peers.get_mut(&to) {
                p.step(from, m, now);
                Self::sync(p, now);
            }
        }
    }

    fn run(&mut self, ms: Millis) {
        for _ in 0..ms {
            self.now += 1;
            let now = self.now;
            for (sid, p) in self.peers.iter_mut() {
                if !self.down.contains(sid) {
                    Self::sync(p, now);
                    p.tick(now);
                }
            }
            self.pump();
        }
    }

    fn leader(&self) -> Sid {
        let l = self.peers.iter().find_map(|(id, p)| {
            matches!(
                p.role(),
                Role::Leading {
                    established: true,
                    ..
                }
            )
            .then_some(*id)
        });
        l.expect("an established leader")
    }

    /// Proposes a create at the leader: the txn carries the zxid the peer will give it.
    fn propose(&mut self, name: &str) -> i64 {
        let id = self.leader();
        let p = self.peers.get_mut(&id).unwrap();
        let (last, epoch) = (p.log().last_zxid(), i64::from(p.log().current_epoch()));
        let zxid = if last >> 32 == epoch {
            last + 1
        } else {
            epoch << 32 | 1
        };
        let txn = Txn::new(
            0x55,
            1,
            zxid,
            1_700_000_000_000,
            TxnBody::Create(CreateTxn {
                path: format!("/{name}"),
                data: Some(Bytes::from(name.to_owned())),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            }),
        );
        let bytes = proposal_bytes(&Committed { txn, digest: None });
        assert_eq!(p.propose(bytes), Ok(zxid));
        zxid
    }

    fn tree(&self, id: Sid) -> Database {
        self.peers[&id].log().rebuild(i64::MAX).unwrap().db
    }

    fn assert_consistent(&self) {
        let logs: Vec<_> = self
            .peers
            .values()
            .map(|p| (p.log().last_zxid(), p.log().entries_after(0)))
            .collect();
        let trees: Vec<_> = self
            .peers
            .keys()
            .map(|id| {
                let t = self.tree(*id);
                (t.last_zxid, tree_digest(&t.tree), t.tree.node_count())
            })
            .collect();
        assert!(logs.windows(2).all(|w| w[0].0 == w[1].0), "{logs:?}");
        assert!(trees.windows(2).all(|w| w[0] == w[1]), "{trees:?}");
    }
}

#[test]
fn a_lagging_follower_catches_up_by_diff_and_a_lone_txn_is_truncated() {
    let mut c = Cluster::new(1000);
    c.run(60);
    let l = c.leader();
    for i in 0..4 {
        c.propose(&format!("a{i}"));
    }
    c.run(20);
    c.assert_consistent();

    // A follower misses four txns, then comes back: DIFF from its data dir.
    let f = *c.peers.keys().find(|id| **id != l).unwrap();
    c.stop(f);
    for i in 0..4 {
        c.propose(&format!("b{i}"));
    }
    c.run(20);
    c.start(f);
    c.run(100);
    c.assert_consistent();
    assert_eq!(c.tree(f).tree.node_count(), 4 + 8);
    assert!(c.restores.is_empty(), "DIFF, not SNAP");

    // The leader logs a txn nobody else sees, then restarts: the others elect a new leader
    // and write on; the old one is truncated (its recovery snapshot holds the lone txn too).
    let l = c.leader();
    c.down.insert(l);
    let lone = c.propose("lone");
    c.run(5);
    let now = c.now;
    Cluster::sync(c.peers.get_mut(&l).unwrap(), now);
    c.stop(l);
    c.down.remove(&l);
    c.run(200);
    let l2 = c.leader();
    assert_ne!(l2, l);
    c.propose("after");
    c.run(20);
    c.start(l);
    assert_eq!(c.peers[&l].log().last_zxid(), lone);
    c.run(200);
    c.assert_consistent();
    let t = c.tree(l);
    assert!(t.tree.get("/lone").is_none() && t.tree.get("/after").is_some());
    assert_eq!(
        c.resets.get(&l),
        Some(&1),
        "TRUNC below what it had applied"
    );
    assert!(c.restores.is_empty(), "TRUNC, not SNAP");
}

#[test]
fn a_follower_too_far_behind_gets_a_snapshot() {
    let mut c = Cluster::new(3);
    c.run(60);
    let l = c.leader();
    let f = *c.peers.keys().find(|id| **id != l).unwrap();
    c.stop(f);
    for i in 0..8 {
        c.propose(&format!("s{i}"));
    }
    c.run(20);
    c.start(f);
    c.run(100);
    c.assert_consistent();
    assert_eq!(c.tree(f).tree.node_count(), 4 + 8);
    assert_eq!(c.restores.get(&f), Some(&1));
}
