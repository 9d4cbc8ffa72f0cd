//! A seeded, single-threaded, deterministic simulation of an ensemble of [`Peer`]s: virtual
//! time, FIFO links that can be cut and healed (ZAB assumes TCP; what a cut link carried is
//! lost, and when an election connection comes back, a link healed or a server restarted,
//! each end sends again the last notification it had for the other, as ZooKeeper's
//! `SendWorker` does), in-memory disks with explicit fsync points and torn tails, kills and
//! restarts. After every step it checks that a zxid
//! names one txn everywhere, that each epoch has at most one established leader, that every
//! committed txn is durable on a majority of voters, and that every server delivered a prefix
//! of the one committed sequence.
//!
//! `ZKIT_SIM_SEED=<n>` replays one seed; `ZKIT_SIM_SEEDS` and `ZKIT_SIM_STEPS` scale the run.
//! A failing seed prints itself.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::peer::{Event, Peer, PeerConfig, Role};
use super::{Log, Message, Millis, Sid};

/// splitmix64: small, seedable and good enough to shuffle a simulation.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What every disk reports to: the first txn seen at each zxid, and broken invariants.
#[derive(Default)]
pub(super) struct Oracle {
    txns: BTreeMap<i64, Bytes>,
    pub(super) violations: Vec<String>,
}

impl Oracle {
    fn saw(&mut self, who: Sid, zxid: i64, txn: &Bytes) {
        let first = self.txns.entry(zxid).or_insert_with(|| txn.clone());
        if first != txn {
            self.violations.push(format!(
                "server {who}: zxid {zxid:#x} holds {txn:?}, elsewhere {first:?}"
            ));
        }
    }
}

/// An in-memory disk: the log (a durable prefix and a volatile tail) and the epoch files.
pub(super) struct MemLog {
    sid: Sid,
    pub(super) entries: Vec<(i64, Bytes)>,
    durable_len: usize,
    pub(super) accepted: u32,
    pub(super) current: u32,
    oracle: Rc<RefCell<Oracle>>,
}

impl MemLog {
    pub(super) fn new(sid: Sid, oracle: Rc<RefCell<Oracle>>) -> Self {
        MemLog {
            sid,
            entries: Vec::new(),
            durable_len: 0,
            accepted: 0,
            current: 0,
            oracle,
        }
    }

    /// fsync: the whole tail becomes durable; returns the zxid to report.
    pub(super) fn fsync(&mut self) -> i64 {
        self.durable_len = self.entries.len();
        self.last_zxid()
    }

    /// A crash: the volatile tail is lost, except a random part of it that reached the disk.
    pub(super) fn crash(&mut self, rng: &mut Rng) {
        let volatile = (self.entries.len() - self.durable_len) as u64;
        let kept = self.durable_len + rng.below(volatile + 1) as usize;
        self.entries.truncate(kept);
        self.durable_len = kept;
    }

    pub(super) fn durable_zxids(&self) -> impl Iterator<Item = i64> + '_ {
        self.entries[..self.durable_len].iter().map(|(z, _)| *z)
    }

    fn encode(entries: &[(i64, Bytes)]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u32(entries.len() as u32);
        for (z, t) in entries {
            b.put_i64(*z);
            b.put_u32(t.len() as u32);
            b.put_slice(t);
        }
        b.freeze()
    }

    pub(super) fn decode(mut b: Bytes) -> Vec<(i64, Bytes)> {
        let n = b.get_u32();
        (0..n)
            .map(|_| {
                let z = b.get_i64();
                let len = b.get_u32() as usize;
                (z, b.split_to(len))
            })
            .collect()
    }
}

impl Log for MemLog {
    fn last_zxid(&self) -> i64 {
        self.entries.last().map_or(0, |e| e.0)
    }
    fn entries_after(&self, zxid: i64) -> Option<Vec<(i64, Bytes)>> {
        let i = self.entries.partition_point(|e| e.0 <= zxid);
        Some(self.entries[i..].to_vec())
    }
    fn contains(&self, zxid: i64) -> bool {
        zxid == 0 || self.entries.binary_search_by_key(&zxid, |e| e.0).is_ok()
    }
    fn floor(&self, zxid: i64) -> i64 {
        let i = self.entries.partition_point(|e| e.0 <= zxid);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].0
        }
    }
    fn truncate(&mut self, zxid: i64) {
        let i = self.entries.partition_point(|e| e.0 <= zxid);
        self.entries.truncate(i);
        self.durable_len = self.durable_len.min(i);
    }
    fn append(&mut self, zxid: i64, txn: Bytes) {
        assert!(zxid > self.last_zxid(), "append out of order");
        self.oracle.borrow_mut().saw(self.sid, zxid, &txn);
        self.entries.push((zxid, txn));
    }
    fn snapshot(&self, zxid: i64) -> Bytes {
        let i = self.entries.partition_point(|e| e.0 <= zxid);
        Self::encode(&self.entries[..i])
    }
    fn load_snapshot(&mut self, _zxid: i64, snapshot: Bytes) {
        self.entries = Self::decode(snapshot);
        for (z, t) in &self.entries {
            self.oracle.borrow_mut().saw(self.sid, *z, t);
        }
        self.durable_len = self.entries.len();
    }
    fn accepted_epoch(&self) -> u32 {
        self.accepted
    }
    fn set_accepted_epoch(&mut self, epoch: u32) {
        self.accepted = epoch;
    }
    fn current_epoch(&self) -> u32 {
        self.current
    }
    fn set_current_epoch(&mut self, epoch: u32) {
        self.current = epoch;
    }
}

struct Node {
    cfg: PeerConfig,
    peer: Option<Peer<MemLog>>,
    /// The disk while the server is down.
    disk: Option<MemLog>,
    delivered: Vec<(i64, Bytes)>,
    /// The role as told by the event stream so far.
    role: Role,
}

struct World {
    rng: Rng,
    now: Millis,
    nodes: BTreeMap<Sid, Node>,
    voters: BTreeSet<Sid>,
    links: BTreeMap<(Sid, Sid), VecDeque<Message>>,
    cut: BTreeSet<(Sid, Sid)>,
    oracle: Rc<RefCell<Oracle>>,
    committed: Vec<(i64, Bytes)>,
    leaders: BTreeMap<u32, Sid>,
    next_txn: u64,
    /// Snapshots installed on learners (SNAP syncs), for the trace summary.
    restores: usize,
}

/// A random ensemble (three or five voters, or three and an observer) with fast timers: the
/// config of each member.
pub(super) fn ensemble(rng: &mut Rng) -> Vec<PeerConfig> {
    let (voters, observers): (Vec<Sid>, Vec<Sid>) = match rng.below(100) {
        0..=59 => (vec![1, 2, 3], vec![]),
        60..=84 => (vec![1, 2, 3, 4, 5], vec![]),
        _ => (vec![1, 2, 3], vec![4]),
    };
    voters
        .iter()
        .chain(&observers)
        .map(|&id| PeerConfig {
            id,
            voters: voters.iter().copied().collect(),
            observers: observers.iter().copied().collect(),
            tick_time: 10,
            init_limit: 10,
            sync_limit: 5,
            finalize_wait: 5,
            max_notification_interval: 80,
            snap_threshold: 1 + rng.below(40) as usize,
            config: Bytes::from_static(b"version=0"),
        })
        .collect()
}

/// Records that `sid` established leadership of `epoch`; a second leader of one epoch is a
/// violation.
pub(super) fn check_leader(
    leaders: &mut BTreeMap<u32, Sid>,
    epoch: u32,
    sid: Sid,
) -> Result<(), String> {
    let first = *leaders.entry(epoch).or_insert(sid);
    if first != sid {
        return Err(format!("epoch {epoch}: leaders {first} and {sid}"));
    }
    Ok(())
}

pub(super) fn pair(a: Sid, b: Sid) -> (Sid, Sid) {
    (a.min(b), a.max(b))
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let oracle = Rc::new(RefCell::new(Oracle::default()));
        let cfgs = ensemble(&mut rng);
        let voters = cfgs[0].voters.clone();
        let mut nodes = BTreeMap::new();
        for cfg in cfgs {
            let id = cfg.id;
            let log = MemLog::new(id, oracle.clone());
            nodes.insert(
                id,
                Node {
                    peer: Some(Peer::new(cfg.clone(), log, 0, 0)),
                    cfg,
                    disk: None,
                    delivered: Vec::new(),
                    role: Role::Looking,
                },
            );
        }
        let mut w = World {
            rng,
            now: 0,
            nodes,
            voters,
            links: BTreeMap::new(),
            cut: BTreeSet::new(),
            oracle,
            committed: Vec::new(),
            leaders: BTreeMap::new(),
            next_txn: 0,
            restores: 0,
        };
        w.drain();
        w
    }

    fn alive(&self) -> Vec<Sid> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.peer.is_some())
            .map(|(s, _)| *s)
            .collect()
    }

    fn pick(&mut self, from: &[Sid]) -> Option<Sid> {
        (!from.is_empty()).then(|| from[self.rng.below(from.len() as u64) as usize])
    }

    fn violation(&mut self, v: String) {
        self.oracle.borrow_mut().violations.push(v);
    }

    /// The ZAB connection between `a` and `b` breaks: queued ZAB data is lost both ways and
    /// both ends are told.
    fn break_connection(&mut self, a: Sid, b: Sid) {
        for key in [(a, b), (b, a)] {
            if let Some(q) = self.links.get_mut(&key) {
                q.retain(|m| matches!(m, Message::Election(_)));
            }
        }
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            if let Some(p) = self.nodes.get_mut(&x).and_then(|n| n.peer.as_mut()) {
                p.disconnected(y, now);
            }
        }
    }

    /// Moves every node's output onto the links and handles its events, until quiet.
    fn drain(&mut self) {
        loop {
            let mut quiet = true;
            for sid in self.alive() {
                let (out, closes, events) = {
                    let p = self.nodes.get_mut(&sid).unwrap().peer.as_mut().unwrap();
                    let (out, closes) = p.poll();
                    (out, closes, p.events())
                };
                if !out.is_empty() || !closes.is_empty() || !events.is_empty() {
                    quiet = false;
                }
                for (to, m) in out {
                    if to != sid && !self.cut.contains(&pair(sid, to)) {
                        self.links.entry((sid, to)).or_default().push_back(m);
                    }
                }
                for other in closes {
                    self.break_connection(sid, other);
                }
                for e in events {
                    self.on_event(sid, e);
                }
            }
            if quiet {
                return;
            }
        }
    }

    fn on_event(&mut self, sid: Sid, e: Event) {
        let role = self.nodes[&sid].role;
        if std::env::var_os("ZKIT_SIM_TRACE").is_some() {
            eprintln!("t={} server {sid} ({role:?}): {e:?}", self.now);
        }
        let node = self.nodes.get_mut(&sid).unwrap();
        match e {
            Event::Deliver { zxid, txn, .. } => {
                let i = node.delivered.len();
                if node.delivered.last().is_some_and(|l| l.0 >= zxid) {
                    let v = format!("server {sid}: delivered {zxid:#x} out of order");
                    self.violation(v);
                    return;
                }
                node.delivered.push((zxid, txn.clone()));
                if let Some(c) = self.committed.get(i) {
                    if *c != (zxid, txn) {
                        let v = format!(
                            "server {sid}: delivered #{i} {zxid:#x}, committed {:#x}",
                            c.0
                        );
                        self.violation(v);
                    }
                } else if matches!(
                    role,
                    Role::Leading {
                        established: true,
                        ..
                    }
                ) {
                    self.committed.push((zxid, txn));
                } else {
                    self.violation(format!("server {sid}: delivered uncommitted {zxid:#x}"));
                }
            }
            Event::Restore { zxid, snapshot } => {
                self.restores += 1;
                let node = self.nodes.get_mut(&sid).unwrap();
                node.delivered = MemLog::decode(snapshot);
                // A snapshot is a leader's history, maybe not committed yet, but it holds
                // every txn committed up to its zxid (a new leader has them all).
                let k = self.committed.partition_point(|c| c.0 <= zxid);
                if node.delivered.get(..k) != Some(&self.committed[..k]) {
                    self.violation(format!(
                        "server {sid}: restored a snapshot off the committed prefix"
                    ));
                }
            }
            Event::Reset { zxid } => {
                // Only txns that never committed may be taken back.
                let keep = node.delivered.partition_point(|d| d.0 <= zxid);
                let dropped: Vec<i64> = node.delivered.drain(keep..).map(|d| d.0).collect();
                for z in dropped {
                    if self.committed.binary_search_by_key(&z, |c| c.0).is_ok() {
                        self.violation(format!("server {sid}: reset took back committed {z:#x}"));
                    }
                }
            }
            Event::RoleChanged(
                r @ Role::Leading {
                    epoch,
                    established: true,
                },
            ) => {
                node.role = r;
                // The new leader's history, which its state machine may already hold, is the
                // committed start of its epoch.
                let n = self.committed.len();
                let m = node.delivered.len().min(n);
                if node.delivered[..m] != self.committed[..m] {
                    self.violation(format!(
                        "server {sid}: leads from off the committed sequence"
                    ));
                } else if node.delivered.len() > n {
                    let tail = node.delivered[n..].to_vec();
                    self.committed.extend(tail);
                }
                if let Err(v) = check_leader(&mut self.leaders, epoch, sid) {
                    self.violation(v);
                }
            }
            Event::RoleChanged(r) => node.role = r,
            // Session traffic is not simulated here.
            Event::Request { .. }
            | Event::Revalidate { .. }
            | Event::Revalidated { .. }
            | Event::Touches { .. }
            | Event::Synced => {}
        }
    }

    /// Every committed txn is durable on a majority of voters.
    fn check_durable_majority(&mut self) {
        let mut counts = vec![0usize; self.committed.len()];
        for sid in &self.voters {
            let node = &self.nodes[sid];
            let log = node
                .peer
                .as_ref()
                .map(|p| p.log())
                .or(node.disk.as_ref())
                .unwrap();
            let mut it = log.durable_zxids().peekable();
            for (i, (z, _)) in self.committed.iter().enumerate() {
                while it.peek().is_some_and(|d| d < z) {
                    it.next();
                }
                if it.peek() == Some(z) {
                    counts[i] += 1;
                }
            }
        }
        if let Some(i) = counts.iter().position(|c| *c <= self.voters.len() / 2) {
            let z = self.committed[i].0;
            self.violation(format!(
                "committed {z:#x} is durable on only {} voters",
                counts[i]
            ));
        }
    }

    fn deliver_one(&mut self) {
        let busy: Vec<(Sid, Sid)> = self
            .links
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        if busy.is_empty() {
            return;
        }
        let (from, to) = busy[self.rng.below(busy.len() as u64) as usize];
        let m = self
            .links
            .get_mut(&(from, to))
            .unwrap()
            .pop_front()
            .unwrap();
        let now = self.now;
        // Sometimes the receiver's disk syncs right away, so acknowledgements race ahead of
        // the packets queued behind the one just handled.
        let sync_now = self.rng.chance(20);
        if let Some(p) = self.nodes.get_mut(&to).and_then(|n| n.peer.as_mut()) {
            p.step(from, m, now);
            if sync_now {
                let z = p.log_mut().fsync();
                p.durable(z, now);
            }
        }
    }

    fn fsync(&mut self, sid: Sid) {
        let now = self.now;
        let p = self.nodes.get_mut(&sid).unwrap().peer.as_mut().unwrap();
        let z = p.log_mut().fsync();
        p.durable(z, now);
    }

    fn kill(&mut self, sid: Sid) {
        let node = self.nodes.get_mut(&sid).unwrap();
        let mut log = node.peer.take().unwrap().into_log();
        log.crash(&mut self.rng);
        node.disk = Some(log);
        node.delivered.clear();
        node.role = Role::Looking;
        self.links.retain(|(a, b), _| *a != sid && *b != sid);
        for other in self.alive() {
            self.break_connection(other, sid);
        }
    }

    fn restart(&mut self, sid: Sid) {
        let now = self.now;
        let node = self.nodes.get_mut(&sid).unwrap();
        let log = node.disk.take().unwrap();
        node.peer = Some(Peer::new(node.cfg.clone(), log, 0, now));
        // Its first notifications open connections to every server it can reach, and each of
        // those sends it the last notification it had for it.
        for other in self.alive() {
            if other != sid && !self.cut.contains(&pair(sid, other)) {
                self.connected(other, sid);
            }
        }
    }

    /// `a`'s election connection to `b` came up (`Peer::connected`).
    fn connected(&mut self, a: Sid, b: Sid) {
        let now = self.now;
        if self.nodes[&b].peer.is_some() {
            if let Some(p) = self.nodes.get_mut(&a).and_then(|n| n.peer.as_mut()) {
                p.connected(b, now);
            }
        }
    }

    /// Heals every cut link: election connections come back up across them.
    fn heal(&mut self) {
        for (a, b) in std::mem::take(&mut self.cut) {
            self.connected(a, b);
            self.connected(b, a);
        }
    }

    fn cut_link(&mut self, a: Sid, b: Sid) {
        if a != b && self.cut.insert(pair(a, b)) {
            self.links.remove(&(a, b));
            self.links.remove(&(b, a));
            self.break_connection(a, b);
        }
    }

    fn propose(&mut self) {
        let leaders: Vec<Sid> = self
            .alive()
            .into_iter()
            .filter(|s| {
                let p = self.nodes[s].peer.as_ref().unwrap();
                matches!(
                    p.role(),
                    Role::Leading {
                        established: true,
                        ..
                    }
                )
            })
            .collect();
        if let Some(sid) = self.pick(&leaders) {
            self.next_txn += 1;
            let txn = Bytes::from(format!("txn-{}", self.next_txn));
            let p = self.nodes.get_mut(&sid).unwrap().peer.as_mut().unwrap();
            let _ = p.propose(txn);
        }
    }

    /// One random step, then every check.
    fn step(&mut self) -> Result<(), String> {
        self.now += self.rng.below(4);
        let alive = self.alive();
        let dead: Vec<Sid> = self
            .nodes
            .keys()
            .filter(|s| !alive.contains(s))
            .copied()
            .collect();
        match self.rng.below(100) {
            0..=54 => {
                for _ in 0..1 + self.rng.below(3) {
                    self.deliver_one();
                }
            }
            55..=66 => {
                if let Some(s) = self.pick(&alive) {
                    self.fsync(s);
                }
            }
            67..=81 => self.propose(),
            82..=83 => {
                if let Some(s) = self.pick(&alive) {
                    self.kill(s);
                }
            }
            84..=88 => {
                if let Some(s) = self.pick(&dead) {
                    self.restart(s);
                }
            }
            89..=90 => {
                let all: Vec<Sid> = self.nodes.keys().copied().collect();
                if let (Some(a), Some(b)) = (self.pick(&all), self.pick(&all)) {
                    self.cut_link(a, b);
                }
            }
            91 => {
                let all: Vec<Sid> = self.nodes.keys().copied().collect();
                if let Some(a) = self.pick(&all) {
                    for b in all {
                        self.cut_link(a, b);
                    }
                }
            }
            92..=95 => self.heal(),
            _ => {}
        }
        let now = self.now;
        for sid in self.alive() {
            self.nodes
                .get_mut(&sid)
                .unwrap()
                .peer
                .as_mut()
                .unwrap()
                .tick(now);
        }
        self.drain();
        self.check_durable_majority();
        let v = &self.oracle.borrow().violations;
        if v.is_empty() {
            Ok(())
        } else {
            Err(v.join("; "))
        }
    }

    /// Heals everything and runs until the ensemble commits a fresh txn everywhere.
    fn converge(&mut self) -> Result<(), String> {
        self.heal();
        let dead: Vec<Sid> = self
            .nodes
            .keys()
            .filter(|s| self.nodes[s].peer.is_none())
            .copied()
            .collect();
        for s in dead {
            self.restart(s);
        }
        let mut proposed = None;
        for round in 0..20_000 {
            // A proposal whose leader fell before committing it is retried with a fresh one.
            if round % 2_000 == 0 {
                proposed = None;
            }
            self.now += 1;
            for _ in 0..8 {
                self.deliver_one();
            }
            for sid in self.alive() {
                self.fsync(sid);
                self.nodes
                    .get_mut(&sid)
                    .unwrap()
                    .peer
                    .as_mut()
                    .unwrap()
                    .tick(self.now);
            }
            self.drain();
            if proposed.is_none() {
                let before = self.next_txn;
                self.propose();
                self.drain();
                if self.next_txn > before {
                    proposed = Some(Bytes::from(format!("txn-{}", self.next_txn)));
                }
            }
            if let Some(t) = &proposed {
                if self
                    .nodes
                    .values()
                    .all(|n| n.delivered.iter().any(|(_, x)| x == t))
                {
                    return Ok(());
                }
            }
            let v = &self.oracle.borrow().violations;
            if !v.is_empty() {
                return Err(v.join("; "));
            }
        }
        let roles: Vec<String> = self
            .nodes
            .iter()
            .map(|(s, n)| format!("{s}: {:?}", n.peer.as_ref().map(|p| p.role())))
            .collect();
        Err(format!(
            "no convergence after healing: {}",
            roles.join(", ")
        ))
    }
}

fn run_seed(seed: u64, steps: usize) -> Result<(), String> {
    let mut w = World::new(seed);
    for i in 0..steps {
        w.step().map_err(|e| format!("step {i}: {e}"))?;
    }
    w.converge()?;
    if std::env::var_os("ZKIT_SIM_TRACE").is_some() {
        eprintln!(
            "seed {seed}: {} committed, {} epochs with leaders, {} proposed, {} snapshots installed",
            w.committed.len(),
            w.leaders.len(),
            w.next_txn,
            w.restores
        );
    }
    Ok(())
}

pub(super) fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn simulation_keeps_zab_invariants() {
    let steps = env("ZKIT_SIM_STEPS").unwrap_or(2_000) as usize;
    let seeds: Vec<u64> = match env("ZKIT_SIM_SEED") {
        Some(s) => vec![s],
        None => (0..env("ZKIT_SIM_SEEDS").unwrap_or(60)).collect(),
    };
    for seed in seeds {
        let r = std::panic::catch_unwind(|| run_seed(seed, steps));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                panic!("simulation seed {seed} failed (replay: ZKIT_SIM_SEED={seed}): {e}")
            }
            Err(_) => panic!("simulation seed {seed} panicked (replay: ZKIT_SIM_SEED={seed})"),
        }
    }
}
