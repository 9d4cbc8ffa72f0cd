//! A seeded, single-threaded, deterministic simulation of whole servers: each one a [`Peer`]
//! (ZAB, sans-IO) under a [`Core`] in replicated mode (sans-IO), wired as the ensemble shell
//! wires them, with simulated clients that send real ZooKeeper request frames. Virtual time,
//! FIFO links between servers that can be cut, in-memory disks with explicit fsync points,
//! torn tails and stalls, kills and restarts (a restarted server applies its whole surviving
//! log, as ZooKeeper does), client connections that are slow, dropped and re-attached
//! elsewhere (session moves), and leader-side expiries. After every step it checks:
//!
//! 1. a zxid names one txn everywhere (logs and deliveries), a txn is delivered in zxid order
//!    and only once committed, a client request becomes at most one txn, and servers at the
//!    same zxid have the same tree digest and the same session table;
//! 2. at most one established leader per epoch;
//! 3. every write acknowledged to a client (err 0) is a delivered txn; at the end, after
//!    healing everything and converging (a fresh write committed, every server at the same
//!    zxid with the same digest), it is in every server's log, as committed;
//! 4. per-client FIFO: replies come in request order, and a client never goes back in time
//!    (reply zxids never decrease, across reconnections);
//! 5. an ephemeral exists exactly while its session lives: every ephemeral node (every fourth
//!    step the whole tree is walked) has an owner in its server's session table, and every
//!    acknowledged ephemeral its owner has not asked to delete is there on every server that
//!    applied it while the session is in that server's table.
//!
//! Read-your-writes: every client owns `/c<i>/d`, which only it writes; a read of it never
//! returns older data or an older version than its last acknowledged setData left, and each
//! acknowledged setData leaves a higher version. Reads after a `sync` that miss a write
//! acknowledged to another client before the sync was sent are counted, not failed:
//! ZooKeeper allows it (a deposed leader that has not noticed yet still answers syncs).
//!
//! `ZKIT_SIM_SEED=<n>` replays one seed; `ZKIT_SIM_SEEDS` and `ZKIT_SIM_STEPS` scale the run;
//! `ZKIT_SIM_TRACE` prints every event and a summary per seed. A failing seed prints itself.
//! By default 30 seeds of 1,000 steps (a few seconds in a debug build); 200 seeds of 5,000
//! steps take about 15 s of CPU in a release build.
//!
//! The checks bite. Each of these bugs, injected by hand into the core, failed the default
//! run:
//! - the leader answering its own client's write when proposing it, before delivery:
//!   "write ... acknowledged but no server delivered its txn" (seed 0, step 234);
//! - the leader preparing without the changes of outstanding proposals: two pipelined
//!   setData of `/c0/d` both "left version 2" (seed 0, step 624); digests alone do not see
//!   it, as every server applies the same wrong txns;
//! - a learner expiring sessions itself (closing them locally on its tick): its close took a
//!   zxid that names another txn elsewhere, "servers 1 and 3 differ at zxid 0x300000041"
//!   (seed 1, after healing);
//! - a closeSession forgetting the ephemerals still being created: "/s1 outlives its
//!   session" (seed 0, step 387), seen by walking the tree (the session's ephemeral index
//!   no longer lists the orphan).
//!
//! What it found in the real code: a learner synced by SNAP whose leader fell before UPTODATE
//! kept a restarted server's lost tail in its state machine (servers at one zxid with
//! different trees); followers that restarted holding the leader's outstanding proposals
//! never acknowledged them, so nothing committed again (no convergence); a re-attaching
//! session's handshake ignored when an earlier connection's write was still queued ahead of
//! it, the session's queue then stuck and a sync answered before that write (FIFO broken); a
//! handshake waiting for the leader never answered when the session's close committed; and a
//! stale connection's handshake detaching the live one.

mod client;
mod run;
mod wires;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;

use super::peer::{Event, Peer, PeerConfig, Role};
use super::sim::{check_leader, ensemble, pair, MemLog, Oracle, Rng};
use super::{Message, Millis, Sid};
use crate::core::{Committed, Config, ConnId, Core, Database, Mode, Output, Secret, Txn, TxnBody};
use crate::persist::logread::proposal_bytes;
use crate::persist::txnlog::decode_payload;
use client::{Client, Ledger};
use wires::Wire;
use zkit_proto::ErrorCode;

/// Core time (ms since the epoch) at virtual time 0.
const T0: i64 = 1_700_000_000_000;

struct Server {
    cfg: PeerConfig,
    peer: Option<Peer<MemLog>>,
    core: Option<Core>,
    /// The disk while the server is down.
    disk: Option<MemLog>,
    /// The role as told by the event stream so far.
    role: Role,
    /// The last zxid delivered by the peer in this incarnation (committed).
    delivered: i64,
    started: Millis,
    /// The disk does not sync before this time.
    stalled_until: Millis,
    /// The zxids the core applied, in order (to explain a divergence).
    applied: Vec<i64>,
}

struct World {
    rng: Rng,
    now: Millis,
    servers: BTreeMap<Sid, Server>,
    links: BTreeMap<(Sid, Sid), VecDeque<Message>>,
    cut: BTreeSet<(Sid, Sid)>,
    oracle: Rc<RefCell<Oracle>>,
    leaders: BTreeMap<u32, Sid>,
    core_cfg: Config,
    clients: Vec<Client>,
    /// Which client each open connection belongs to.
    conns: HashMap<ConnId, usize>,
    /// Client-to-server traffic by connection (server-to-client frames arrive at once).
    wires: BTreeMap<ConnId, Wire>,
    next_conn: ConnId,
    ledger: Ledger,
    /// Proposals the core made while its peer could no longer propose.
    dropped: u64,
    /// Steps taken.
    steps: u64,
}

/// The state a disk's txns build.
fn rebuild<'a>(entries: impl Iterator<Item = &'a (i64, Bytes)>) -> Database {
    let mut db = Database::new(false);
    let mut changes = Vec::new();
    for (_, b) in entries {
        let (txn, _) = decode_payload(b.clone()).expect("a txn this simulation proposed");
        db.apply(&txn, &mut changes);
        changes.clear();
    }
    db
}

/// Fisher-Yates: the order of concurrent deliveries varies with the seed.
fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// Whether `ZKIT_SIM_TRACE` is set.
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("ZKIT_SIM_TRACE").is_some())
}

/// Prints a line of the trace when `ZKIT_SIM_TRACE` is set.
fn trace(now: Millis, what: std::fmt::Arguments) {
    if tracing() {
        eprintln!("t={now} {what}");
    }
}

fn mode_of(role: Role) -> Mode {
    match role {
        Role::Leading {
            epoch,
            established: true,
        } => Mode::Leader { epoch },
        Role::Following { synced: true, .. } => Mode::Follower,
        Role::Observing { synced: true, .. } => Mode::Observer,
        _ => Mode::NotServing,
    }
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let oracle = Rc::new(RefCell::new(Oracle::default()));
        // One config (one secret) for every core, so a password verifies on any server.
        let core_cfg = Config {
            tick_time: 10,
            min_session_timeout: 100,
            max_session_timeout: 2_000,
            reap_interval: 100,
            secret: Secret::from_bytes([0x42; Secret::LEN]),
            ..Config::default()
        };
        let mut servers = BTreeMap::new();
        for cfg in ensemble(&mut rng) {
            let id = cfg.id;
            let log = MemLog::new(id, oracle.clone());
            servers.insert(
                id,
                Server {
                    peer: Some(Peer::new(cfg.clone(), log, 0, 0)),
                    core: Some(Core::replica(
                        core_cfg.clone(),
                        Database::new(false),
                        T0,
                        id,
                    )),
                    cfg,
                    disk: None,
                    role: Role::Looking,
                    delivered: 0,
                    started: 0,
                    stalled_until: 0,
                    applied: Vec::new(),
                },
            );
        }
        let clients = (0..3 + rng.below(3) as usize)
            .map(|i| Client::new(i, &mut rng))
            .collect();
        let mut w = World {
            rng,
            now: 0,
            servers,
            links: BTreeMap::new(),
            cut: BTreeSet::new(),
            oracle,
            leaders: BTreeMap::new(),
            core_cfg,
            clients,
            conns: HashMap::new(),
            wires: BTreeMap::new(),
            next_conn: 1,
            ledger: Ledger::default(),
            dropped: 0,
            steps: 0,
        };
        w.drain();
        w
    }

    fn t(&self) -> i64 {
        T0 + self.now as i64
    }

    fn alive(&self) -> Vec<Sid> {
        self.servers
            .iter()
            .filter(|(_, s)| s.peer.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn pick(&mut self, from: &[Sid]) -> Option<Sid> {
        (!from.is_empty()).then(|| from[self.rng.below(from.len() as u64) as usize])
    }

    fn violation(&mut self, v: String) {
        self.ledger.violations.push(v);
    }

    fn peer(&mut self, sid: Sid) -> &mut Peer<MemLog> {
        self.servers.get_mut(&sid).unwrap().peer.as_mut().unwrap()
    }

    fn core(&mut self, sid: Sid) -> &mut Core {
        self.servers.get_mut(&sid).unwrap().core.as_mut().unwrap()
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
            if let Some(p) = self.servers.get_mut(&x).and_then(|s| s.peer.as_mut()) {
                p.disconnected(y, now);
            }
        }
    }

    /// Moves every peer's messages onto the links, its events into its core, and the core's
    /// outputs to the peer and the clients, until nothing moves. A core's outputs are carried
    /// out before the next event reaches it, so each goes out under the mode it was made in.
    fn drain(&mut self) {
        loop {
            let mut quiet = true;
            for sid in self.alive() {
                quiet &= !self.route_outputs(sid);
                let (out, closes, events) = {
                    let p = self.peer(sid);
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
                    self.route_outputs(sid);
                }
            }
            if quiet {
                return;
            }
        }
    }

    /// Carries out what server `sid`'s core emitted; whether there was anything.
    fn route_outputs(&mut self, sid: Sid) -> bool {
        let outs = self.core(sid).take_output();
        let any = !outs.is_empty();
        for o in outs {
            self.route(sid, o);
        }
        any
    }

    /// A peer event, handed to the core as the ensemble shell would.
    fn on_event(&mut self, sid: Sid, e: Event) {
        let t = self.t();
        trace(self.now, format_args!("server {sid}: {e:?}"));
        match e {
            Event::Deliver { zxid, txn, .. } => self.deliver(sid, zxid, txn),
            Event::Restore { zxid, snapshot } => {
                let entries = MemLog::decode(snapshot);
                // A leader's history, maybe not committed yet, holding every committed txn up
                // to its zxid.
                let held: BTreeMap<i64, &Bytes> = entries.iter().map(|(z, b)| (*z, b)).collect();
                for (z, b) in self.ledger.committed.range(..=zxid) {
                    if held.get(z) != Some(&b) {
                        let v =
                            format!("server {sid}: snapshot at {zxid:#x} lacks committed {z:#x}");
                        self.ledger.violations.push(v);
                    }
                }
                let last_committed = self.ledger.committed.range(..=zxid).next_back();
                let last_committed = last_committed.map_or(0, |(z, _)| *z);
                let s = self.servers.get_mut(&sid).unwrap();
                if zxid < s.delivered {
                    let v = format!("server {sid}: restored {zxid:#x} below {:#x}", s.delivered);
                    self.ledger.violations.push(v);
                }
                s.delivered = s.delivered.max(last_committed);
                s.applied = entries.iter().map(|e| e.0).collect();
                self.core(sid).reset(rebuild(entries.iter()), t);
            }
            Event::Reset { zxid } => {
                let s = self.servers.get_mut(&sid).unwrap();
                if zxid < s.delivered {
                    let v = format!(
                        "server {sid}: reset to {zxid:#x}, delivered {:#x}",
                        s.delivered
                    );
                    self.ledger.violations.push(v);
                }
                let entries = &s.peer.as_ref().unwrap().log().entries;
                s.applied = entries
                    .iter()
                    .map(|e| e.0)
                    .take_while(|z| *z <= zxid)
                    .collect();
                let db = rebuild(entries.iter().take_while(|(z, _)| *z <= zxid));
                self.core(sid).reset(db, t);
            }
            Event::RoleChanged(role) => {
                self.servers.get_mut(&sid).unwrap().role = role;
                if let Role::Leading {
                    epoch,
                    established: true,
                } = role
                {
                    if let Err(v) = check_leader(&mut self.leaders, epoch, sid) {
                        self.violation(v);
                    }
                    // A new leader's whole history is the committed start of its epoch.
                    let entries = self.peer(sid).log().entries.clone();
                    for (z, b) in entries {
                        self.committed(sid, z, &b);
                    }
                }
                self.core(sid).set_mode(mode_of(role), t);
            }
            Event::Request {
                from,
                request,
                authinfo,
            } => self.core(sid).learner_request(from, request, authinfo, t),
            Event::Revalidate {
                from,
                session_id,
                timeout,
            } => self.core(sid).revalidate(from, session_id, timeout, t),
            Event::Revalidated { session_id, valid } => {
                self.core(sid).revalidated(session_id, valid, t)
            }
            Event::Touches { from, touches } => self.core(sid).touches(from, &touches, t),
            Event::Synced => self.core(sid).synced(t),
        }
    }

    /// Records `txn` at `zxid` as committed (a leader's), or checks it against the record.
    fn committed(&mut self, sid: Sid, zxid: i64, txn: &Bytes) {
        match self.ledger.committed.get(&zxid) {
            Some(b) if b != txn => {
                let v = format!("server {sid}: {zxid:#x} is {txn:?}, committed as {b:?}");
                self.violation(v)
            }
            Some(_) => {}
            None => {
                let (t, _) = decode_payload(txn.clone()).expect("a txn this simulation proposed");
                self.ledger.count(match &t.body {
                    TxnBody::Error(e) if e.err == ErrorCode::SessionMoved.code() => {
                        "SessionMoved txns"
                    }
                    TxnBody::Error(e) if e.err == ErrorCode::SessionExpired.code() => {
                        "SessionExpired txns"
                    }
                    TxnBody::Error(_) => "other error txns",
                    TxnBody::CloseSession(_) if t.hdr.cxid == 0 => "expiries",
                    _ => "txns",
                });
                if t.hdr.cxid > 0 {
                    let key = (t.hdr.client_id, t.hdr.cxid);
                    if let Some(z) = self.ledger.by_cxid.insert(key, zxid) {
                        let v = format!("request {key:?} became two txns: {z:#x} and {zxid:#x}");
                        self.violation(v);
                    }
                }
                self.ledger.committed.insert(zxid, txn.clone());
            }
        }
    }

    fn deliver(&mut self, sid: Sid, zxid: i64, txn: Bytes) {
        let s = &self.servers[&sid];
        let applied = s.core.as_ref().unwrap().db().last_zxid;
        let leading = matches!(
            s.role,
            Role::Leading {
                established: true,
                ..
            }
        );
        if zxid <= applied {
            self.violation(format!(
                "server {sid}: delivered {zxid:#x} after {applied:#x}"
            ));
        }
        if !leading && !self.ledger.committed.contains_key(&zxid) {
            self.violation(format!("server {sid}: delivered uncommitted {zxid:#x}"));
        }
        self.committed(sid, zxid, &txn);
        let s = self.servers.get_mut(&sid).unwrap();
        s.delivered = zxid;
        s.applied.push(zxid);
        let (t, _) = decode_payload(txn).expect("a txn this simulation proposed");
        if t.hdr.zxid != zxid {
            self.violation(format!(
                "server {sid}: txn at {zxid:#x} says {:#x}",
                t.hdr.zxid
            ));
        }
        let now = self.t();
        self.core(sid).deliver(&t, now);
    }

    /// A core output, carried out as the ensemble shell would.
    fn route(&mut self, sid: Sid, o: Output) {
        match o {
            Output::Committed(_) => self.violation(format!("server {sid}: a replica logged a txn")),
            Output::Send(conn, f) => {
                let Some(&i) = self.conns.get(&conn) else {
                    return;
                };
                let now = self.now;
                let c = &mut self.clients[i];
                if !c.on_frame(f.to_bytes().slice(4..), now, &mut self.ledger) {
                    self.client_drop(i);
                }
            }
            Output::Close(conn, why) => {
                self.ledger.count(why);
                trace(
                    self.now,
                    format_args!("server {sid} closes conn {conn}: {why}"),
                );
                self.core(sid).conn_closed(conn);
                self.wires.remove(&conn);
                if let Some(i) = self.conns.remove(&conn) {
                    self.clients[i].disconnected(self.now, &mut self.rng);
                }
            }
            Output::Propose(mut txn, _) => {
                // Only into the epoch the core leads (the ensemble shell's rule).
                let Mode::Leader { epoch } = self.core(sid).mode() else {
                    return self.violation(format!("server {sid}: a non-leader core proposed"));
                };
                let peer = self.peer(sid);
                let leading = Role::Leading {
                    epoch,
                    established: true,
                };
                let Some(z) = peer.next_zxid().filter(|_| peer.role() == leading) else {
                    self.dropped += 1;
                    return;
                };
                txn.hdr.zxid = z;
                let b = proposal_bytes(&Committed {
                    txn: Txn::clone(&txn),
                    digest: None,
                });
                match peer.propose(b) {
                    Ok(got) if got == z => {}
                    Ok(got) => {
                        self.violation(format!("server {sid}: proposed {got:#x}, not {z:#x}"))
                    }
                    Err(_) => self.dropped += 1,
                }
            }
            Output::Forward { request, authinfo } => {
                let _ = self.peer(sid).forward(request, authinfo);
            }
            Output::Revalidate { session, timeout } => {
                let _ = self.peer(sid).revalidate(session, timeout);
            }
            Output::RevalidateReply { to, session, valid } => {
                let _ = self.peer(sid).revalidate_reply(to, session, valid);
            }
            Output::Touch { session, timeout } => {
                let _ = self.peer(sid).touch(session, timeout);
            }
            Output::SyncFor(to) => {
                let _ = self.peer(sid).sync_for(to);
            }
        }
    }

    fn tick_all(&mut self) {
        let (now, t) = (self.now, self.t());
        for sid in self.alive() {
            self.peer(sid).tick(now);
            self.core(sid).tick(t);
        }
    }
}
