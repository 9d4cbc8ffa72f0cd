//! The random steps, the faults, the checks after every step, and convergence at the end.

use std::collections::BTreeMap;

use super::super::peer::{Peer, Role};
use super::super::sim::{env, pair};
use super::super::{Log, Message, Sid};
use super::{rebuild, shuffle, trace, tracing, World};
use crate::core::{join, Core, Mode};

impl World {
    /// Delivers the next message from `from` to `to`.
    fn deliver_from(&mut self, from: Sid, to: Sid) {
        let Some(m) = self.links.get_mut(&(from, to)).and_then(|q| q.pop_front()) else {
            return;
        };
        let now = self.now;
        if let Message::Zab(p) = &m {
            use zkit_proto::quorum::PacketType::*;
            if matches!(p.kind, Snap | Trunc | Diff | NewLeader | UpToDate) {
                trace(
                    now,
                    format_args!("{from} -> {to}: {:?} {:#x}", p.kind, p.zxid),
                );
            }
        }
        // Sometimes the receiver's disk syncs right away, so acknowledgements race ahead of
        // the packets queued behind the one just handled.
        let sync_now = self.rng.chance(20);
        if let Some(s) = self.servers.get_mut(&to).filter(|s| s.peer.is_some()) {
            let stalled = now < s.stalled_until;
            let p = s.peer.as_mut().unwrap();
            p.step(from, m, now);
            if sync_now && !stalled {
                let z = p.log_mut().fsync();
                p.durable(z, now);
            }
        }
    }

    fn sync_disk(&mut self, sid: Sid) {
        let now = self.now;
        let s = self.servers.get_mut(&sid).unwrap();
        if now < s.stalled_until {
            return;
        }
        let p = s.peer.as_mut().unwrap();
        let z = p.log_mut().fsync();
        p.durable(z, now);
    }

    fn kill(&mut self, sid: Sid) {
        trace(self.now, format_args!("server {sid} killed"));
        let s = self.servers.get_mut(&sid).unwrap();
        let mut log = s.peer.take().unwrap().into_log();
        log.crash(&mut self.rng);
        s.disk = Some(log);
        s.core = None;
        s.role = Role::Looking;
        s.delivered = 0;
        self.links.retain(|(a, b), _| *a != sid && *b != sid);
        self.wires.retain(|_, w| w.server != sid);
        for other in self.alive() {
            self.break_connection(other, sid);
        }
        for i in 0..self.clients.len() {
            if let Some(c) = self.clients[i].conn.take_if(|c| c.server == sid) {
                self.conns.remove(&c.id);
                self.clients[i].disconnected(self.now, &mut self.rng);
            }
        }
    }

    /// A restart: a new peer over the surviving disk, and a new core over the state that
    /// disk builds (taken as applied, as ZooKeeper loads its whole log at startup).
    fn restart(&mut self, sid: Sid) {
        // Session ids come from the clock: a new incarnation starts on a later millisecond.
        self.now = self.now.max(self.servers[&sid].started + 1);
        let (now, t) = (self.now, self.t());
        let cfg = self.core_cfg.clone();
        let s = self.servers.get_mut(&sid).unwrap();
        let log = s.disk.take().unwrap();
        trace(
            now,
            format_args!("server {sid} restarts at {:#x}", log.last_zxid()),
        );
        let db = rebuild(log.entries.iter());
        s.applied = log.entries.iter().map(|e| e.0).collect();
        let applied = log.last_zxid();
        s.peer = Some(Peer::new(s.cfg.clone(), log, applied, now));
        s.core = Some(Core::replica(cfg, db, t, sid));
        s.started = now;
        s.role = Role::Looking;
        s.delivered = 0;
    }

    fn cut_link(&mut self, a: Sid, b: Sid) {
        if a != b && self.cut.insert(pair(a, b)) {
            self.links.remove(&(a, b));
            self.links.remove(&(b, a));
            self.break_connection(a, b);
        }
    }

    /// The leader expires a random client's session (a fault only the leader can cause).
    fn expire_one(&mut self) {
        let sessions: Vec<i64> = self
            .clients
            .iter()
            .map(|c| c.session)
            .filter(|s| *s != 0)
            .collect();
        if sessions.is_empty() {
            return;
        }
        let s = sessions[self.rng.below(sessions.len() as u64) as usize];
        let t = self.t();
        for sid in self.alive() {
            let core = self.core(sid);
            if let Mode::Leader { .. } = core.mode() {
                core.expire_session(s, t);
            }
        }
    }

    /// The network moves: every busy link delivers its next message with some chance (in a
    /// random order of links), and every disk may sync.
    fn network_and_disks(&mut self) {
        let mut busy: Vec<(Sid, Sid)> = self
            .links
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        shuffle(&mut self.rng, &mut busy);
        for (from, to) in busy {
            if self.rng.chance(60) {
                self.deliver_from(from, to);
            }
        }
        for sid in self.alive() {
            if self.rng.chance(30) {
                self.sync_disk(sid);
            }
        }
        self.client_network();
    }

    /// One random step, then every check.
    pub(super) fn step(&mut self) -> Result<(), String> {
        self.now += self.rng.below(3);
        self.network_and_disks();
        let alive = self.alive();
        let all: Vec<Sid> = self.servers.keys().copied().collect();
        let dead: Vec<Sid> = all.iter().filter(|s| !alive.contains(s)).copied().collect();
        // Per mille: half the steps the clients act, the rest is faults (kills, restarts,
        // cut links, isolation, healing, disk stalls, client disconnects, expiries) or quiet.
        match self.rng.below(1000) {
            0..=499 => {
                for i in 0..self.clients.len() {
                    if !self.rng.chance(40) {
                        continue;
                    }
                    if self.clients[i].wants_connection(self.now) {
                        self.client_connect(i);
                    } else {
                        let max_acked = self.ledger.max_acked;
                        let frames =
                            self.clients[i].random_requests(&mut self.rng, self.now, max_acked);
                        self.client_send(i, frames);
                    }
                }
            }
            500..=503 => {
                if let Some(s) = self.pick(&alive) {
                    self.kill(s);
                }
            }
            504..=518 => {
                if let Some(s) = self.pick(&dead) {
                    self.restart(s);
                }
            }
            519..=523 => {
                if let (Some(a), Some(b)) = (self.pick(&all), self.pick(&all)) {
                    self.cut_link(a, b);
                }
            }
            524..=525 => {
                if let Some(a) = self.pick(&all) {
                    for b in all {
                        self.cut_link(a, b);
                    }
                }
            }
            526..=535 => self.cut.clear(),
            536..=540 => {
                if let Some(s) = self.pick(&alive) {
                    let d = self.rng.below(100);
                    self.servers.get_mut(&s).unwrap().stalled_until = self.now + d;
                }
            }
            541..=550 => {
                let i = self.rng.below(self.clients.len() as u64) as usize;
                self.client_drop(i);
            }
            551..=553 => self.expire_one(),
            _ => {}
        }
        self.tick_all();
        self.client_housekeeping();
        self.drain();
        self.steps += 1;
        self.check(self.steps.is_multiple_of(4))
    }

    /// The invariants that hold at every step; `walk` also visits every node of every tree
    /// (the costliest check, so not after every step).
    fn check(&mut self, walk: bool) -> Result<(), String> {
        // The first server seen at each zxid.
        let mut at: BTreeMap<i64, Sid> = BTreeMap::new();
        for sid in self.alive() {
            let core = self.servers[&sid].core.as_ref().unwrap();
            let db = core.db();
            match at.get(&db.last_zxid) {
                None => {
                    at.insert(db.last_zxid, sid);
                }
                Some(&other) => {
                    let o = self.servers[&other].core.as_ref().unwrap();
                    if o.digest() != core.digest() || o.db().sessions != db.sessions {
                        let (a, b) = (&self.servers[&other].applied, &self.servers[&sid].applied);
                        let only = |x: &Vec<i64>, y: &Vec<i64>| -> Vec<String> {
                            x.iter()
                                .filter(|z| !y.contains(z))
                                .map(|z| format!("{z:#x}"))
                                .collect()
                        };
                        self.ledger.violations.push(format!(
                            "servers {other} and {sid} differ at zxid {:#x}: only {other} \
                             applied {:?}, only {sid} applied {:?}",
                            db.last_zxid,
                            only(a, b),
                            only(b, a)
                        ));
                    }
                }
            }
            // Every node, walked from the root: an ephemeral's owner lives (this simulation
            // makes no containers or TTL nodes, so any owner is a session).
            let mut stack = if walk {
                vec!["/".to_owned()]
            } else {
                Vec::new()
            };
            while let Some(p) = stack.pop() {
                let Some(n) = db.tree.get(&p) else {
                    self.ledger.violations.push(format!(
                        "server {sid}: {p} is listed as a child, not in the tree"
                    ));
                    continue;
                };
                let owner = n.stat.ephemeral_owner;
                if owner != 0 && !db.sessions.contains_key(&owner) {
                    self.ledger
                        .violations
                        .push(format!("server {sid}: {p} outlives its session {owner:#x}"));
                }
                stack.extend(n.children.iter_order().iter().map(|c| join(&p, c)));
            }
            for (owner, paths) in db.tree.all_ephemerals() {
                for p in paths {
                    if db.tree.get(&p).map(|n| n.stat.ephemeral_owner) != Some(owner) {
                        self.ledger.violations.push(format!(
                            "server {sid}: ephemeral index lists {p}, not in the tree"
                        ));
                    }
                }
            }
            for c in &self.clients {
                for (path, (session, zxid)) in &c.ephemerals {
                    let lives = db.last_zxid >= *zxid && db.sessions.contains_key(session);
                    let owner = db.tree.get(path).map(|n| n.stat.ephemeral_owner);
                    if lives && owner != Some(*session) {
                        self.ledger.violations.push(format!(
                            "server {sid}: {path} of live session {session:#x} is gone"
                        ));
                    }
                }
            }
        }
        let mut v = std::mem::take(&mut self.oracle.borrow_mut().violations);
        v.append(&mut self.ledger.violations);
        if v.is_empty() {
            Ok(())
        } else {
            Err(v.join("; "))
        }
    }

    /// Heals everything and runs until a fresh write is committed and every server is at
    /// the same zxid with the same digest; then every acknowledged write must be in every
    /// server's history.
    fn converge(&mut self) -> Result<(), String> {
        self.cut.clear();
        let dead: Vec<Sid> = self
            .servers
            .keys()
            .filter(|s| self.servers[s].peer.is_none())
            .copied()
            .collect();
        for s in dead {
            self.restart(s);
        }
        for s in self.servers.values_mut() {
            s.stalled_until = 0;
        }
        let mut marker: Option<((i64, i32), u64)> = None;
        for round in 0..20_000u64 {
            self.now += 1;
            self.network_and_disks();
            self.tick_all();
            self.client_housekeeping();
            self.drain();
            // A marker whose fate stays unknown is retried with a fresh one.
            if marker.is_none_or(|(_, at)| round - at > 2_000) {
                let now = self.now;
                let sent = (0..self.clients.len())
                    .find_map(|i| Some((i, self.clients[i].send_marker(now, round)?)));
                if let Some((i, (f, key))) = sent {
                    self.client_send(i, vec![f]);
                    marker = Some((key, round));
                    self.drain();
                }
            }
            self.check(false)?;
            let Some(((session, cxid), _)) = marker else {
                continue;
            };
            let Some(&z) = self.ledger.by_cxid.get(&(session, cxid)) else {
                continue;
            };
            let cores: Vec<&Core> = self
                .servers
                .values()
                .map(|s| s.core.as_ref().unwrap())
                .collect();
            let same = cores.iter().all(|c| {
                c.db().last_zxid == cores[0].db().last_zxid && c.digest() == cores[0].digest()
            });
            if same && cores[0].db().last_zxid >= z {
                self.check(true)?;
                return self.check_acked();
            }
        }
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|(s, n)| {
                let db = n.core.as_ref().unwrap().db();
                let role = n.peer.as_ref().map(|p| p.role());
                format!("{s}: {role:?} at {:#x}", db.last_zxid)
            })
            .collect();
        let clients = self.clients.iter().filter(|c| c.connected()).count();
        Err(format!(
            "no convergence after healing: {}; marker {marker:?}; {clients} clients connected",
            servers.join(", ")
        ))
    }

    /// Every acknowledged write is in every server's history, as committed.
    fn check_acked(&mut self) -> Result<(), String> {
        for (sid, s) in &self.servers {
            let log: BTreeMap<i64, &bytes::Bytes> = s
                .peer
                .as_ref()
                .unwrap()
                .log()
                .entries
                .iter()
                .map(|(z, b)| (*z, b))
                .collect();
            for a in &self.ledger.acked {
                if log.get(&a.zxid).copied() != self.ledger.committed.get(&a.zxid) {
                    return Err(format!(
                        "server {sid}: acknowledged write {:#x}/{} at {:#x} is lost",
                        a.session, a.cxid, a.zxid
                    ));
                }
            }
        }
        Ok(())
    }
}

fn run_seed(seed: u64, steps: usize) -> Result<(), String> {
    let mut w = World::new(seed);
    for i in 0..steps {
        w.step().map_err(|e| format!("step {i}: {e}"))?;
    }
    w.converge()?;
    if tracing() {
        eprintln!(
            "seed {seed}: {} committed, {} acknowledged writes, {} epochs with leaders, {} \
             proposals dropped, {} stale reads after sync, {:?}",
            w.ledger.committed.len(),
            w.ledger.acked.len(),
            w.leaders.len(),
            w.dropped,
            w.ledger.stale_after_sync,
            w.ledger.stats
        );
    }
    Ok(())
}

#[test]
fn servers_keep_zookeepers_guarantees_through_crashes_and_partitions() {
    let steps = env("ZKIT_SIM_STEPS").unwrap_or(1_000) as usize;
    let seeds: Vec<u64> = match env("ZKIT_SIM_SEED") {
        Some(s) => vec![s],
        None => (0..env("ZKIT_SIM_SEEDS").unwrap_or(30)).collect(),
    };
    for seed in seeds {
        match std::panic::catch_unwind(|| run_seed(seed, steps)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                panic!("server simulation seed {seed} failed (replay: ZKIT_SIM_SEED={seed}): {e}")
            }
            Err(_) => {
                panic!("server simulation seed {seed} panicked (replay: ZKIT_SIM_SEED={seed})")
            }
        }
    }
}
