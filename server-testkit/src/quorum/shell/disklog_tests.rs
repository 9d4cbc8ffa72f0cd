//! Three shell-driven peers on loopback over [`DiskLog`]s in temp data dirs: they elect,
//! replicate real txn records, fail over, and a killed server restarts from its data dir and
//! catches up; every dir ends with the same history and tree, and survives a full restart.
//! Every wait is on a condition, with a generous bound.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tempfile::TempDir;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use zkit_proto::txn::CreateTxn;
use zkit_proto::Acl;

use super::*;
use crate::core::{tree_digest, Committed, Txn, TxnBody};
use crate::persist::logread::proposal_bytes;
use crate::persist::{recover, PersistOptions};
use crate::quorum::disklog::DiskLog;
use crate::quorum::Log;

/// Upper bound for any single wait: far above what an idle machine needs.
const PATIENCE: Duration = Duration::from_secs(60);

fn opts() -> PersistOptions {
    PersistOptions::default()
        .prealloc(4096)
        .roll_after(Some(16))
}

/// Recovers a data dir and opens it: the log, and the zxid its rebuilt tree is at.
fn open(dir: &TempDir) -> (DiskLog, i64) {
    recover(dir.path(), &opts(), false).expect("recover");
    let log = DiskLog::open(dir.path(), opts(), false).expect("open");
    let applied = log.rebuild(i64::MAX).expect("rebuild").db.last_zxid;
    (log, applied)
}

/// A create of `/name` as a txn record carrying the zxid it gets.
fn create(name: String) -> impl FnOnce(i64) -> Bytes + Send + 'static {
    move |zxid| {
        let txn = Txn::new(
            0x55,
            1,
            zxid,
            1_700_000_000_000,
            TxnBody::Create(CreateTxn {
                path: format!("/{name}"),
                data: Some(Bytes::from(name)),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            }),
        );
        proposal_bytes(&Committed { txn, digest: None })
    }
}

struct Node {
    peer: Option<QuorumPeer<DiskLog>>,
    status: watch::Receiver<Status>,
    tasks: Vec<JoinHandle<()>>,
}

struct Cluster {
    dirs: BTreeMap<Sid, TempDir>,
    cfgs: BTreeMap<Sid, ShellConfig>,
    nodes: BTreeMap<Sid, Node>,
    progress: watch::Sender<u64>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in self.nodes.values().flat_map(|n| &n.tasks) {
            t.abort();
        }
    }
}

impl Cluster {
    async fn start(all: &[Sid]) -> Cluster {
        let mut listeners = BTreeMap::new();
        let (mut election_addrs, mut quorum_addrs) = (BTreeMap::new(), BTreeMap::new());
        for &id in all {
            let l = Listeners::bind_loopback().await.expect("bind loopback");
            election_addrs.insert(id, l.election_addr().expect("addr"));
            quorum_addrs.insert(id, l.quorum_addr().expect("addr"));
            listeners.insert(id, l);
        }
        let mut c = Cluster {
            dirs: BTreeMap::new(),
            cfgs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            progress: watch::channel(0).0,
        };
        for (id, l) in listeners {
            let peer = PeerConfig {
                id,
                voters: all.iter().copied().collect(),
                observers: Default::default(),
                tick_time: 50,
                // Generous limits: failover here comes from sockets closing, not timeouts.
                init_limit: 100,
                sync_limit: 100,
                finalize_wait: 5,
                max_notification_interval: 400,
                snap_threshold: 10_000,
                config: Bytes::from_static(b"version=0"),
            };
            c.cfgs.insert(
                id,
                ShellConfig {
                    peer,
                    election_addrs: election_addrs.clone(),
                    quorum_addrs: quorum_addrs.clone(),
                    tick_interval: Duration::from_millis(5),
                    connect_timeout: Duration::from_secs(5),
                    seed: 0,
                },
            );
            c.dirs.insert(id, TempDir::new().expect("temp dir"));
            c.launch(id, l);
        }
        c
    }

    /// Starts `id` from its data dir.
    fn launch(&mut self, id: Sid, listeners: Listeners) {
        let (log, applied) = open(&self.dirs[&id]);
        let (tx, mut rx) = mpsc::channel(256);
        let progress = self.progress.clone();
        let events = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                progress.send_modify(|n| *n += 1);
            }
        });
        let peer = QuorumPeer::start(self.cfgs[&id].clone(), listeners, log, applied, tx);
        let mut status = peer.status();
        let progress = self.progress.clone();
        let statuses = tokio::spawn(async move {
            while status.changed().await.is_ok() {
                progress.send_modify(|n| *n += 1);
            }
            // The server stopped.
            progress.send_modify(|n| *n += 1);
        });
        let node = Node {
            status: peer.status(),
            peer: Some(peer),
            tasks: vec![events, statuses],
        };
        if let Some(old) = self.nodes.insert(id, node) {
            old.tasks.iter().for_each(JoinHandle::abort);
        }
    }

    /// Kills `id`: its tasks end, what its log writer had not written is lost.
    async fn kill(&mut self, id: Sid) {
        let node = self.nodes.get_mut(&id).expect("node");
        let peer = node.peer.take().expect("running");
        drop(peer.kill().await);
    }

    /// Restarts a killed `id` from its data dir, at its old addresses.
    async fn restart(&mut self, id: Sid) {
        let cfg = &self.cfgs[&id];
        let l = Listeners::bind(cfg.election_addrs[&id], cfg.quorum_addrs[&id])
            .await
            .expect("rebind");
        self.launch(id, l);
    }

    fn status(&self, id: Sid) -> Status {
        *self.nodes[&id].status.borrow()
    }

    async fn wait(&self, what: &str, mut cond: impl FnMut(&Cluster) -> bool) {
        let mut rx = self.progress.subscribe();
        let r = tokio::time::timeout(PATIENCE, async {
            loop {
                rx.borrow_and_update();
                if cond(self) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(r.is_ok(), "timed out waiting for {what}");
    }

    fn assert_running(&self, among: &[Sid]) {
        for id in among {
            let p = self.nodes[id].peer.as_ref().expect("running");
            assert!(
                !p.stopped(),
                "server {id} stopped: {:?}",
                p.disk().failure()
            );
        }
    }

    fn settled(&self, among: &[Sid]) -> Option<Sid> {
        let leader = among.iter().copied().find(|&id| {
            matches!(
                self.status(id).role,
                Role::Leading {
                    established: true,
                    ..
                }
            )
        })?;
        among
            .iter()
            .filter(|&&id| id != leader)
            .all(|&id| {
                self.status(id).role
                    == Role::Following {
                        leader,
                        synced: true,
                    }
            })
            .then_some(leader)
    }

    async fn wait_settled(&self, among: &[Sid], what: &str) -> Sid {
        self.wait(what, |c| c.settled(among).is_some()).await;
        self.assert_running(among);
        self.settled(among).expect("settled")
    }

    /// Proposes creates of `/{prefix}{i}` at `leader`; the last zxid.
    async fn propose(&self, leader: Sid, prefix: &str, n: usize) -> i64 {
        let peer = self.nodes[&leader].peer.as_ref().expect("running");
        let mut last = 0;
        for i in 0..n {
            last = peer
                .propose_at(create(format!("{prefix}{i}")))
                .await
                .expect("the leader accepts proposals");
        }
        last
    }

    /// Waits until every server of `among` delivered and synced `zxid`.
    async fn wait_applied(&self, among: &[Sid], zxid: i64) {
        self.wait(&format!("{zxid:#x} on {among:?}"), |c| {
            among.iter().all(|&id| {
                let s = c.status(id);
                s.delivered >= zxid && s.synced >= zxid
            })
        })
        .await;
        self.assert_running(among);
    }

    /// Each dir's last zxid and rebuilt tree (zxid, digest, node count), as disk has them.
    fn on_disk(&self, id: Sid) -> (i64, (i64, i64, usize)) {
        let log = self.nodes[&id].peer.as_ref().expect("running").disk();
        let db = log.rebuild(i64::MAX).expect("rebuild").db;
        let tree = (db.last_zxid, tree_digest(&db.tree), db.tree.node_count());
        (log.last_zxid(), tree)
    }

    fn assert_same_everywhere(&self, all: &[Sid], last: i64, names: &[String]) {
        let first = self.on_disk(all[0]);
        assert_eq!(first.0, last, "last zxid of server {}", all[0]);
        for &id in &all[1..] {
            assert_eq!(self.on_disk(id), first, "server {id} differs");
        }
        let log = self.nodes[&all[0]].peer.as_ref().expect("running").disk();
        let db = log.rebuild(i64::MAX).expect("rebuild").db;
        for n in names {
            assert!(db.tree.get(&format!("/{n}")).is_some(), "/{n} lost");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_data_dirs_fail_over_restart_from_disk_and_keep_every_commit() {
    let all = [1, 2, 3];
    let mut c = Cluster::start(&all).await;
    let leader = c.wait_settled(&all, "the first leader").await;
    let mut names: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    let last = c.propose(leader, "a", 50).await;
    c.wait_applied(&all, last).await;

    // The leader dies; the two others elect again and go on.
    c.kill(leader).await;
    let rest: Vec<Sid> = all.iter().copied().filter(|&s| s != leader).collect();
    let leader2 = c.wait_settled(&rest, "a new leader").await;
    assert_ne!(leader2, leader);
    names.extend((0..20).map(|i| format!("b{i}")));
    let epoch = last >> 32;
    let last = c.propose(leader2, "b", 20).await;
    assert!(last >> 32 > epoch, "a new epoch");
    c.wait_applied(&rest, last).await;

    // The old leader comes back from its data dir and catches up.
    c.restart(leader).await;
    c.wait_settled(&all, "the old leader following").await;
    c.wait_applied(&all, last).await;
    c.assert_same_everywhere(&all, last, &names);

    // Everyone restarts from disk: nothing committed is lost, and writes go on.
    for id in all {
        c.kill(id).await;
    }
    for id in all {
        c.restart(id).await;
    }
    let leader3 = c
        .wait_settled(&all, "a leader after the full restart")
        .await;
    c.assert_same_everywhere(&all, last, &names);
    names.extend((0..5).map(|i| format!("c{i}")));
    let last = c.propose(leader3, "c", 5).await;
    c.wait_applied(&all, last).await;
    c.assert_same_everywhere(&all, last, &names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_disk_stops_its_server_and_the_others_go_on() {
    let all = [1, 2, 3];
    let c = Cluster::start(&all).await;
    let leader = c.wait_settled(&all, "the first leader").await;
    let last = c.propose(leader, "a", 5).await;
    c.wait_applied(&all, last).await;

    let broken = *all.iter().find(|&&s| s != leader).expect("a follower");
    let peer = |id: Sid| c.nodes[&id].peer.as_ref().expect("running");
    let e = std::io::Error::other("injected");
    peer(broken)
        .disk()
        .fail_for_test(crate::persist::PersistError::io(
            std::path::Path::new("x"),
            e,
        ));
    let mut rx = c.progress.subscribe();
    let stopped = tokio::time::timeout(PATIENCE, async {
        while !peer(broken).stopped() {
            rx.changed().await.expect("progress");
        }
    })
    .await;
    assert!(stopped.is_ok(), "server {broken} did not stop");
    assert!(matches!(
        peer(broken).propose_at(create("x".into())).await,
        Err(ShellError::Stopped)
    ));

    let rest: Vec<Sid> = all.iter().copied().filter(|&s| s != broken).collect();
    let last = c.propose(leader, "b", 5).await;
    c.wait_applied(&rest, last).await;
}
