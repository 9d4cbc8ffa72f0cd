//! Three shell-driven peers on loopback: election, replication, failover and catch-up over
//! real sockets. Every wait is on a condition, with a generous bound.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zkit_proto::quorum::{
    split_election_frame, ElectionHandshake, Notification, PacketType, QuorumPacket, ServerState,
};

use super::*;
use crate::quorum::Log;

/// Upper bound for any single wait: far above what an idle machine needs (milliseconds).
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct View {
    role: Option<Role>,
    delivered: Vec<(i64, Bytes)>,
    restores: usize,
    resets: usize,
}

struct Node {
    peer: Option<QuorumPeer>,
    view: Arc<Mutex<View>>,
    collector: JoinHandle<()>,
}

struct Cluster {
    cfgs: BTreeMap<Sid, ShellConfig>,
    nodes: BTreeMap<Sid, Node>,
    progress: watch::Sender<u64>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values() {
            n.collector.abort();
        }
    }
}

fn peer_config(id: Sid, voters: &[Sid]) -> PeerConfig {
    PeerConfig {
        id,
        voters: voters.iter().copied().collect(),
        observers: Default::default(),
        tick_time: 50,
        // Generous limits: a loaded machine must not trip them; failover here comes from
        // sockets closing, not from timeouts.
        init_limit: 100,
        sync_limit: 100,
        finalize_wait: 5,
        max_notification_interval: 400,
        snap_threshold: 10_000,
        config: Bytes::from_static(b"version=0"),
    }
}

impl Cluster {
    async fn start(voters: &[Sid], snap_threshold: usize) -> Cluster {
        Self::start_with_observers(voters, &[], snap_threshold).await
    }

    async fn start_with_observers(
        voters: &[Sid],
        observers: &[Sid],
        snap_threshold: usize,
    ) -> Cluster {
        let mut listeners = BTreeMap::new();
        let (mut election_addrs, mut quorum_addrs) = (BTreeMap::new(), BTreeMap::new());
        for &id in voters.iter().chain(observers) {
            let l = Listeners::bind_loopback().await.expect("bind loopback");
            election_addrs.insert(id, l.election_addr().expect("addr"));
            quorum_addrs.insert(id, l.quorum_addr().expect("addr"));
            listeners.insert(id, l);
        }
        let (progress, _) = watch::channel(0);
        let mut c = Cluster {
            cfgs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            progress,
        };
        for (id, l) in listeners {
            let cfg = ShellConfig {
                peer: PeerConfig {
                    snap_threshold,
                    observers: observers.iter().copied().collect(),
                    ..peer_config(id, voters)
                },
                election_addrs: election_addrs.clone(),
                quorum_addrs: quorum_addrs.clone(),
                tick_interval: Duration::from_millis(2),
                connect_timeout: Duration::from_secs(5),
                seed: 0,
            };
            c.cfgs.insert(id, cfg);
            c.launch(id, l, MemoryDisk::new());
        }
        c
    }

    fn launch(&mut self, id: Sid, listeners: Listeners, disk: MemoryDisk) {
        let (tx, mut rx) = mpsc::channel(256);
        let view = Arc::new(Mutex::new(View::default()));
        let progress = self.progress.clone();
        let v = view.clone();
        let collector = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                {
                    let mut v = v.lock().expect("view");
                    match e {
                        Event::Deliver { zxid, txn, .. } => v.delivered.push((zxid, txn)),
                        Event::RoleChanged(r) => v.role = Some(r),
                        Event::Restore { .. } => v.restores += 1,
                        Event::Reset { .. } => v.resets += 1,
                        _ => {}
                    }
                }
                progress.send_modify(|n| *n += 1);
            }
        });
        let peer = QuorumPeer::start(self.cfgs[&id].clone(), listeners, disk, 0, tx);
        if let Some(old) = self.nodes.insert(
            id,
            Node {
                peer: Some(peer),
                view,
                collector,
            },
        ) {
            old.collector.abort();
        }
    }

    fn role(&self, id: Sid) -> Option<Role> {
        self.nodes[&id].view.lock().expect("view").role
    }

    fn delivered(&self, id: Sid) -> Vec<(i64, Bytes)> {
        self.nodes[&id].view.lock().expect("view").delivered.clone()
    }

    /// Waits until `cond` holds, re-checking after every event any peer emits.
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

    /// The established leader and its epoch once `among` agree on it: it leads and every
    /// other server of `among` follows it, synced.
    fn settled(&self, among: &[Sid]) -> Option<(Sid, u32)> {
        let (leader, epoch) = among.iter().find_map(|&id| match self.role(id) {
            Some(Role::Leading {
                epoch,
                established: true,
            }) => Some((id, epoch)),
            _ => None,
        })?;
        among
            .iter()
            .filter(|&&id| id != leader)
            .all(|&id| {
                self.role(id)
                    == Some(Role::Following {
                        leader,
                        synced: true,
                    })
            })
            .then_some((leader, epoch))
    }

    async fn wait_settled(&self, among: &[Sid], what: &str) -> (Sid, u32) {
        self.wait(what, |c| c.settled(among).is_some()).await;
        self.settled(among).expect("settled")
    }

    async fn propose(&self, leader: Sid, range: std::ops::Range<usize>) {
        let peer = self.nodes[&leader].peer.as_ref().expect("running");
        for i in range {
            peer.propose(Bytes::from(format!("entry-{i}")))
                .await
                .expect("the leader accepts proposals");
        }
    }

    async fn wait_delivered(&self, among: &[Sid], n: usize) {
        self.wait(&format!("{n} entries on {among:?}"), |c| {
            among.iter().all(|&id| c.delivered(id).len() >= n)
        })
        .await;
        let first = self.delivered(among[0]);
        assert_eq!(first.len(), n, "no more than proposed");
        for &id in &among[1..] {
            assert_eq!(
                self.delivered(id),
                first,
                "server {id} delivered another order"
            );
        }
        for (i, (_, txn)) in first.iter().enumerate() {
            assert_eq!(txn, &Bytes::from(format!("entry-{i}")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_elect_replicate_fail_over_and_catch_up() {
    let all = [1, 2, 3];
    let t = Instant::now();
    let mut c = Cluster::start(&all, 10_000).await;
    let (leader, epoch) = c.wait_settled(&all, "the first leader").await;
    let elect = t.elapsed();

    let t = Instant::now();
    c.propose(leader, 0..100).await;
    c.wait_delivered(&all, 100).await;
    let replicate = t.elapsed();

    // Kill the leader: its sockets close, the others elect again.
    let t = Instant::now();
    let old = c
        .nodes
        .get_mut(&leader)
        .expect("node")
        .peer
        .take()
        .expect("running");
    let disk = old.kill().await;
    assert_eq!(
        disk.last_zxid(),
        c.delivered(leader)[99].0,
        "the leader synced what it committed"
    );
    let rest: Vec<Sid> = all.iter().copied().filter(|&s| s != leader).collect();
    let (leader2, epoch2) = c.wait_settled(&rest, "a new leader").await;
    let failover = t.elapsed();
    assert_ne!(leader2, leader);
    assert!(epoch2 > epoch, "new epoch {epoch2} after {epoch}");

    c.propose(leader2, 100..150).await;
    c.wait_delivered(&rest, 150).await;

    // The old leader comes back on its old ports with its disk and catches up by DIFF.
    let t = Instant::now();
    let cfg = &c.cfgs[&leader];
    let listeners = Listeners::bind(cfg.election_addrs[&leader], cfg.quorum_addrs[&leader])
        .await
        .expect("rebind the old ports");
    c.launch(leader, listeners, disk);
    let settled = c.wait_settled(&all, "the old leader following").await;
    assert_eq!(settled, (leader2, epoch2));
    c.wait_delivered(&all, 150).await;
    let catch_up = t.elapsed();
    {
        let v = c.nodes[&leader].view.lock().expect("view");
        assert_eq!(
            (v.restores, v.resets),
            (0, 0),
            "a DIFF, not a snapshot or a reset"
        );
    }

    c.propose(leader2, 150..160).await;
    c.wait_delivered(&all, 160).await;
    eprintln!(
        "loopback ensemble: elected in {elect:?}, 100 entries replicated in {replicate:?}, \
         new leader in {failover:?}, restarted server caught up in {catch_up:?}"
    );
}

async fn read_some(s: &mut TcpStream, buf: &mut BytesMut) -> usize {
    use tokio::io::AsyncReadExt;
    buf.reserve(1024);
    tokio::time::timeout(PATIENCE, s.read_buf(buf))
        .await
        .expect("the peer writes or closes")
        .unwrap_or(0)
}

async fn accept(l: &TcpListener) -> TcpStream {
    tokio::time::timeout(PATIENCE, l.accept())
        .await
        .expect("server 2 connects")
        .expect("accept")
        .0
}

async fn read_handshake(s: &mut TcpStream, buf: &mut BytesMut) -> ElectionHandshake {
    loop {
        if let Some(h) = wire::split_handshake(buf).expect("a valid handshake") {
            return h;
        }
        assert!(read_some(s, buf).await > 0, "closed before its handshake");
    }
}

async fn read_notification(s: &mut TcpStream, buf: &mut BytesMut) -> Notification {
    loop {
        if let Some(m) = split_election_frame(buf).expect("a valid frame") {
            return Notification::decode(m).expect("a notification");
        }
        assert!(read_some(s, buf).await > 0, "closed before a notification");
    }
}

async fn assert_closed(s: &mut TcpStream) {
    let mut buf = BytesMut::new();
    while read_some(s, &mut buf).await > 0 {}
}

/// `QuorumCnxManager`'s rule, seen from outside with raw sockets standing in for servers 1
/// and 3 around a real server 2: only connections from the larger sid to the smaller live.
#[tokio::test]
async fn election_connections_follow_quorum_cnx_manager_rules() {
    let fake1 = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let fake3 = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let l2 = Listeners::bind_loopback().await.expect("bind");
    let addr2 = l2.election_addr().expect("addr");
    let quorum2 = l2.quorum_addr().expect("addr");
    let fake_quorum = SocketAddr::from(([127, 0, 0, 1], 9));
    let cfg = ShellConfig {
        peer: peer_config(2, &[1, 2, 3]),
        election_addrs: [
            (1, fake1.local_addr().expect("addr")),
            (2, addr2),
            (3, fake3.local_addr().expect("addr")),
        ]
        .into(),
        quorum_addrs: [(1, fake_quorum), (2, quorum2), (3, fake_quorum)].into(),
        tick_interval: Duration::from_millis(2),
        connect_timeout: Duration::from_secs(5),
        seed: 0,
    };
    let (tx, _events) = mpsc::channel(256);
    let _peer = QuorumPeer::start(cfg, l2, MemoryDisk::new(), 0, tx);

    // To the larger sid 3: a handshake, then the connection is dropped.
    let mut s = accept(&fake3).await;
    let mut buf = BytesMut::new();
    let h = read_handshake(&mut s, &mut buf).await;
    assert_eq!(
        h,
        ElectionHandshake::Versioned {
            protocol: zkit_proto::quorum::ELECTION_PROTOCOL_V1,
            sid: 2,
            addresses: vec![addr2.to_string()],
        }
    );
    assert_closed(&mut s).await;

    // To the smaller sid 1: kept, and its vote arrives on it.
    let mut s1 = accept(&fake1).await;
    let mut buf1 = BytesMut::new();
    assert_eq!(read_handshake(&mut s1, &mut buf1).await.sid(), 2);
    let n = read_notification(&mut s1, &mut buf1).await;
    assert_eq!((n.leader, n.state, n.version), (2, ServerState::Looking, 2));

    // Sid 1 connecting to 2 is refused, and 2 connects back to 1.
    let mut c = TcpStream::connect(addr2).await.expect("connect");
    c.write_all(&conn::our_handshake(1, fake1.local_addr().expect("addr")))
        .await
        .expect("write");
    assert_closed(&mut c).await;
    let mut back = accept(&fake1).await;
    let mut bbuf = BytesMut::new();
    assert_eq!(read_handshake(&mut back, &mut bbuf).await.sid(), 2);

    // Sid 3 connecting to 2 is kept: notifications flow on it.
    let mut c3 = TcpStream::connect(addr2).await.expect("connect");
    c3.write_all(&conn::our_handshake(3, fake3.local_addr().expect("addr")))
        .await
        .expect("write");
    let mut buf3 = BytesMut::new();
    let n = read_notification(&mut c3, &mut buf3).await;
    assert_eq!(n.leader, 2);

    // The quorum port wants a learner's introduction first.
    let mut q = TcpStream::connect(quorum2).await.expect("connect");
    let mut ping = BytesMut::new();
    wire::put_packet(&mut ping, &QuorumPacket::new(PacketType::Ping, 0, None));
    q.write_all(&ping).await.expect("write");
    assert_closed(&mut q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_server_is_resynced_with_a_snapshot_over_the_socket() {
    let all = [1, 2, 3];
    let mut c = Cluster::start(&all, 5).await;
    let (leader, _) = c.wait_settled(&all, "a leader").await;
    c.propose(leader, 0..20).await;
    c.wait_delivered(&all, 20).await;
    let follower = *all.iter().find(|&&s| s != leader).expect("a follower");
    let peer = c
        .nodes
        .get_mut(&follower)
        .expect("node")
        .peer
        .take()
        .expect("running");
    let _ = peer.kill().await;
    // Restarted with an empty disk: 20 txns behind is past the threshold.
    let cfg = &c.cfgs[&follower];
    let listeners = Listeners::bind(cfg.election_addrs[&follower], cfg.quorum_addrs[&follower])
        .await
        .expect("rebind");
    c.launch(follower, listeners, MemoryDisk::new());
    c.wait(&format!("server {follower} restored"), |c| {
        let v = c.nodes[&follower].view.lock().expect("view");
        v.restores == 1
            && v.role
                == Some(Role::Following {
                    leader,
                    synced: true,
                })
    })
    .await;
    // The snapshot carried all 20; what follows is delivered on top of it.
    c.propose(leader, 20..25).await;
    c.wait(&format!("server {follower} caught up"), |c| {
        c.delivered(follower).len() == 5
    })
    .await;
    let tail: Vec<Bytes> = c.delivered(follower).into_iter().map(|e| e.1).collect();
    let expected: Vec<Bytes> = (20..25)
        .map(|i| Bytes::from(format!("entry-{i}")))
        .collect();
    assert_eq!(tail, expected);
    assert_eq!(
        c.nodes[&follower]
            .peer
            .as_ref()
            .expect("running")
            .disk
            .entries(),
        c.nodes[&leader]
            .peer
            .as_ref()
            .expect("running")
            .disk
            .entries()
    );
}

impl Cluster {
    fn peer(&self, id: Sid) -> &QuorumPeer {
        self.nodes[&id].peer.as_ref().expect("running")
    }

    /// Cuts every link between `a` and `b` (both ends).
    async fn partition(&self, a: &[Sid], b: &[Sid]) {
        for &x in a {
            self.peer(x).cut(b.iter().copied()).await.expect("cut");
        }
        for &y in b {
            self.peer(y).cut(a.iter().copied()).await.expect("cut");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_steps_down_and_rejoins_after_heal() {
    let all = [1, 2, 3];
    let c = Cluster::start(&all, 10_000).await;
    let (leader, epoch) = c.wait_settled(&all, "a leader").await;
    c.propose(leader, 0..10).await;
    c.wait_delivered(&all, 10).await;

    let rest: Vec<Sid> = all.iter().copied().filter(|&s| s != leader).collect();
    c.partition(&[leader], &rest).await;
    let (leader2, epoch2) = c.wait_settled(&rest, "a leader on the majority side").await;
    assert!(epoch2 > epoch);
    c.wait(&format!("server {leader} stepping down"), |c| {
        !matches!(c.role(leader), Some(Role::Leading { .. }))
    })
    .await;
    assert!(c
        .peer(leader)
        .propose(Bytes::from_static(b"x"))
        .await
        .is_err());
    c.propose(leader2, 10..20).await;
    c.wait_delivered(&rest, 20).await;

    for &id in &all {
        c.peer(id).cut([]).await.expect("heal");
    }
    assert_eq!(
        c.wait_settled(&all, "one ensemble again").await,
        (leader2, epoch2)
    );
    c.wait_delivered(&all, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_wait_for_a_quorum_of_fsyncs_and_a_kill_loses_the_unsynced_tail() {
    let all = [1, 2, 3];
    let mut c = Cluster::start(&all, 10_000).await;
    let (leader, _) = c.wait_settled(&all, "a leader").await;
    c.propose(leader, 0..5).await;
    c.wait_delivered(&all, 5).await;
    let followers: Vec<Sid> = all.iter().copied().filter(|&s| s != leader).collect();
    let (slow, fast) = (followers[0], followers[1]);

    // Both followers slow: nothing commits before one of them finished an fsync.
    let delay = Duration::from_millis(150);
    for &f in &followers {
        c.peer(f).slow_disk(delay).await.expect("slow disk");
    }
    let t = Instant::now();
    c.propose(leader, 5..6).await;
    c.wait_delivered(&all, 6).await;
    assert!(t.elapsed() >= delay, "committed in {:?}", t.elapsed());

    // One follower stuck on its disk (once its slow fsync is over): the other one makes
    // the quorum.
    let synced = c.delivered(slow)[5].0;
    let mut status = c.peer(slow).status();
    tokio::time::timeout(PATIENCE, status.wait_for(|s| s.synced >= synced))
        .await
        .expect("the slow fsync ends")
        .expect("running");
    c.peer(fast)
        .slow_disk(Duration::ZERO)
        .await
        .expect("fast disk");
    c.peer(slow)
        .slow_disk(Duration::from_secs(3600))
        .await
        .expect("stuck disk");
    c.propose(leader, 6..10).await;
    c.wait_delivered(&all, 10).await;

    // Killed before its fsync, the stuck follower loses what it had only appended...
    let synced = c.delivered(slow)[5].0;
    let peer = c
        .nodes
        .get_mut(&slow)
        .expect("node")
        .peer
        .take()
        .expect("running");
    let disk = peer.kill().await;
    assert!(disk.last_zxid() < c.delivered(leader)[9].0);
    assert!(disk.last_zxid() >= synced);
    // ... and gets it back from the leader when it restarts.
    let cfg = &c.cfgs[&slow];
    let listeners = Listeners::bind(cfg.election_addrs[&slow], cfg.quorum_addrs[&slow])
        .await
        .expect("rebind");
    c.launch(slow, listeners, disk);
    c.wait_settled(&all, "the follower back").await;
    c.wait_delivered(&all, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_write_leaves_one_history_everywhere() {
    let all = [1, 2, 3];
    let mut c = Cluster::start(&all, 10_000).await;
    let (leader, _) = c.wait_settled(&all, "a leader").await;
    // Proposals still in flight when the leader dies: some commit, some may not.
    c.propose(leader, 0..50).await;
    let peer = c
        .nodes
        .get_mut(&leader)
        .expect("node")
        .peer
        .take()
        .expect("running");
    let disk = peer.kill().await;
    let rest: Vec<Sid> = all.iter().copied().filter(|&s| s != leader).collect();
    let (leader2, _) = c.wait_settled(&rest, "a new leader").await;
    for i in 0..10 {
        c.peer(leader2)
            .propose(Bytes::from(format!("after-{i}")))
            .await
            .expect("the new leader accepts proposals");
    }
    let last = Bytes::from_static(b"after-9");
    c.wait("the new entries on the survivors", |c| {
        rest.iter()
            .all(|&id| c.delivered(id).last().map(|e| &e.1) == Some(&last))
    })
    .await;
    // The survivors agree on a prefix of what the old leader proposed, then the new entries.
    let history = c.delivered(leader2);
    let k = history.len() - 10;
    for (i, (_, txn)) in history.iter().enumerate() {
        let expected = if i < k {
            format!("entry-{i}")
        } else {
            format!("after-{}", i - k)
        };
        assert_eq!(txn, &Bytes::from(expected));
    }
    // The old leader returns; whatever it logged beyond the survivors' history goes (TRUNC).
    let cfg = &c.cfgs[&leader];
    let listeners = Listeners::bind(cfg.election_addrs[&leader], cfg.quorum_addrs[&leader])
        .await
        .expect("rebind");
    let logged_before = disk.last_zxid();
    c.launch(leader, listeners, disk);
    c.wait_settled(&all, "the old leader back").await;
    c.wait("the old leader caught up", |c| {
        c.delivered(leader).len() >= history.len()
    })
    .await;
    for &id in &all {
        assert_eq!(c.delivered(id), history, "server {id}");
    }
    eprintln!(
        "mid-write kill: {k} of 50 survived; the old leader had logged up to {logged_before:#x}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_the_leader_without_voting() {
    let voters = [1, 2, 3];
    let c = Cluster::start_with_observers(&voters, &[4], 10_000).await;
    let (leader, _) = c.wait_settled(&voters, "a leader").await;
    c.wait("the observer synced", |c| {
        c.role(4)
            == Some(Role::Observing {
                leader,
                synced: true,
            })
    })
    .await;
    c.propose(leader, 0..20).await;
    c.wait_delivered(&[leader, 4], 20).await;
    c.wait_delivered(&voters, 20).await;
}
