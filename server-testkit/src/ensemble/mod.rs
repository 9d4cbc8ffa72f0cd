//! A replicated ZooKeeper ensemble in one process: voting servers and observers that elect a
//! leader and replicate every write with ZooKeeper's own protocols (fast leader election and
//! ZAB over loopback sockets), each serving clients on its own port, with the faults a real
//! cluster suffers on demand.
//!
//! Each member is the standalone server's client side (listener, connection tasks, ticker)
//! around its own core, a replicated peer (election and ZAB, with its disk: in memory or a
//! ZooKeeper data dir), and a task that hands what the peer commits to the core. A member
//! refuses clients until it is an established leader or a learner synced with one, like
//! ZooKeeper.
//!
//! Faults act on the quorum's links ([`Ensemble::partition`], [`Ensemble::cut`],
//! [`Ensemble::delay`], [`Ensemble::drop_rate`]), on a member's disk
//! ([`Ensemble::slow_disk`]) or on the whole member ([`Ensemble::kill`],
//! [`Ensemble::pause`]). Clients are never cut off from a server: a member on the minority
//! side of a partition stops serving and closes their connections, as a real one does.

mod builder;
mod disk;
mod faults;
mod handle;
#[cfg(test)]
mod linearizability_tests;
mod member;
mod node;
#[cfg(test)]
mod stalled_leader_tests;
mod targeted;
#[cfg(test)]
mod tests;
mod zoocfg;
#[cfg(test)]
mod zoocfg_tests;
mod zoocfg_tls;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use builder::Builder;
pub use handle::{QuorumRole, ServerHandle, ServerMode};
pub use member::{Member, MemberConfig};
pub use zoocfg::{ConfigError, ConfigWarning, ServerLine, ZooCfg};

use crate::net::{self, now_ms};
use crate::quorum::peer::Role;
use crate::quorum::shell::Listeners;
use crate::server::{znodes_of, Error, Znode};
use faults::{sid_of, Faults};
use node::{Node, Settings};

/// A running ensemble. Dropping it stops every server.
///
/// Servers are named by their index, `0..len()`: voters first (server ids 1..=n), then
/// observers. A method given an index out of range panics, as slice indexing does.
///
/// A server refuses clients until it is an established leader or a learner synced with one
/// (like ZooKeeper). Faults act on the quorum's links ([`Ensemble::partition`],
/// [`Ensemble::cut`], [`Ensemble::delay`], [`Ensemble::drop_rate`]), on a server's disk
/// ([`Ensemble::slow_disk`]) or on the whole server ([`Ensemble::kill`], [`Ensemble::stop`],
/// [`Ensemble::pause`]). Clients are never cut off from a server: one on the minority side
/// of a partition stops serving and closes their connections, as a real one does.
///
/// ```no_run
/// # async fn f() -> Result<(), zkit_testkit::Error> {
/// let mut ensemble = zkit_testkit::Ensemble::builder().servers(3).start().await?;
/// let leader = ensemble.wait_for_leader().await?;
/// let connect_string = ensemble.connect_string(); // "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
/// # let _ = connect_string;
/// // ... connect a client, write ...
/// ensemble.kill(leader).await; // the others elect a new leader, clients fail over
/// let new_leader = ensemble.wait_for_leader().await?;
/// ensemble.restart(leader).await?; // back on its ports, from its disk; it catches up
/// ensemble.partition(&[&[0, 1], &[2]]).await;
/// ensemble.heal().await;
/// ensemble.wait_for_leader().await?;
/// let zxid = ensemble.check_consistent().await.expect("one history");
/// # let _ = (new_leader, zxid);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Ensemble {
    settings: Settings,
    nodes: Vec<Node>,
    /// Bumped whenever a member's state may have changed (waits re-check on it).
    progress: watch::Sender<u64>,
    faults: Faults,
    patience: Duration,
    data_dir: Option<PathBuf>,
}

impl Ensemble {
    /// A builder (3 voters, no observers, in memory).
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// How many servers (voters and observers).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no server (never: an ensemble has at least one voter).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The seed of the link loss decisions (print it when a test fails).
    pub fn seed(&self) -> u64 {
        self.settings.seed
    }

    /// The root of the data dirs, when the servers persist.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// Every server's client address, `127.0.0.1:P1,127.0.0.1:P2,...` (observers included),
    /// for a client that fails over between them. Addresses do not change across restarts.
    pub fn connect_string(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.client_addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node(&self, i: usize) -> &Node {
        match self.nodes.get(i) {
            Some(n) => n,
            None => panic!("no server {i} in an ensemble of {}", self.nodes.len()),
        }
    }

    fn node_mut(&mut self, i: usize) -> &mut Node {
        let len = self.nodes.len();
        match self.nodes.get_mut(i) {
            Some(n) => n,
            None => panic!("no server {i} in an ensemble of {len}"),
        }
    }

    /// Server `i`.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub fn server(&self, i: usize) -> ServerHandle<'_> {
        ServerHandle { node: self.node(i) }
    }

    /// Every server, by index.
    pub fn servers(&self) -> impl Iterator<Item = ServerHandle<'_>> {
        self.nodes.iter().map(|node| ServerHandle { node })
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes
            .iter()
            .filter(|n| n.live.as_ref().is_some_and(|l| !l.peer.stopped()))
    }

    /// The established leader (of the newest epoch, should an old one not have noticed yet
    /// that it lost its quorum), as the servers' cores were told.
    pub fn leader(&self) -> Option<usize> {
        self.running()
            .filter_map(|n| match n.view.borrow().role {
                Some(Role::Leading {
                    epoch,
                    established: true,
                }) => Some((epoch, n.index)),
                _ => None,
            })
            .max()
            .map(|(_, i)| i)
    }

    /// The leader once every running server that can reach it (no cut link between them)
    /// serves under it: followers and observers synced with it.
    fn settled(&self) -> Option<usize> {
        let leader = self.leader()?;
        let sid = sid_of(leader);
        let all = self
            .running()
            .filter(|n| n.index != leader && !self.faults.is_cut(n.index, leader))
            .all(|n| {
                matches!(
                    n.view.borrow().role,
                    Some(Role::Following { leader: l, synced: true })
                        | Some(Role::Observing { leader: l, synced: true }) if l == sid
                )
            });
        all.then_some(leader)
    }

    /// Waits until a leader is established and every running server that can reach it serves
    /// under it (followers and observers synced); returns its index. Fails after the
    /// builder's [`patience`](Builder::patience).
    pub async fn wait_for_leader(&self) -> Result<usize, Error> {
        self.wait_until("a leader every reachable server follows", Ensemble::settled)
            .await
    }

    /// Waits until `cond` holds, re-checking whenever a server's state changes (a role, a
    /// txn applied, a fault, a restart); fails after the builder's
    /// [`patience`](Builder::patience) with [`Error::Timeout`] naming `what`.
    ///
    /// ```no_run
    /// # async fn f(ensemble: zkit_testkit::Ensemble) -> Result<(), zkit_testkit::Error> {
    /// use zkit_testkit::QuorumRole;
    /// ensemble
    ///     .wait_for("server 2 electing", |e| e.server(2).role() == QuorumRole::Looking)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_for(
        &self,
        what: &str,
        mut cond: impl FnMut(&Ensemble) -> bool,
    ) -> Result<(), Error> {
        self.wait_until(what, |e| cond(e).then_some(())).await
    }

    /// Waits until `f` holds, re-checking whenever a server's state changes.
    async fn wait_until<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&Ensemble) -> Option<T>,
    ) -> Result<T, Error> {
        let mut rx = self.progress.subscribe();
        let deadline = Instant::now() + self.patience;
        loop {
            rx.borrow_and_update();
            if let Some(t) = f(self) {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(what.to_owned()));
            }
            // A change wakes the wait; the periodic re-check covers state that changes
            // without an event (a client's own request on a server).
            let recheck = (Instant::now() + Duration::from_millis(250)).min(deadline);
            let _ = tokio::time::timeout_at(recheck, rx.changed()).await;
        }
    }

    fn bump(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Kills server `i` (a crash): its sockets close at once, its clients are disconnected,
    /// and an in-memory disk loses what it had not synced yet (a data dir keeps what
    /// reached its files). Does nothing when it is down.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub async fn kill(&mut self, i: usize) {
        self.node_mut(i).shut_down(true).await;
        self.bump();
    }

    /// Stops server `i` cleanly: its disk is synced first. Does nothing when it is down.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub async fn stop(&mut self, i: usize) {
        self.node_mut(i).shut_down(false).await;
        self.bump();
    }

    /// Starts server `i` again (stopping it cleanly first if it runs) on its old client,
    /// election and quorum ports, from its disk: the tree it logged, then whatever the
    /// leader sends it. The faults in place apply to it again (a slow disk does not).
    ///
    /// # Panics
    /// When `i >= len()`.
    pub async fn restart(&mut self, i: usize) -> Result<(), Error> {
        self.stop(i).await;
        let sid = sid_of(i);
        let (e, q) = (
            self.settings.election_addrs[&sid],
            self.settings.quorum_addrs[&sid],
        );
        let listeners = Listeners::bind(e, q)
            .await
            .map_err(|source| Error::Bind { addr: e, source })?;
        let node = &mut self.nodes[i];
        let prepared = node.prepare(&self.settings).await?;
        node.launch(&self.settings, listeners, prepared, &self.progress);
        self.apply_faults(i).await;
        self.bump();
        Ok(())
    }

    /// Tells server `i`'s peer its part of the faults.
    async fn apply_faults(&self, i: usize) {
        if let Some(live) = &self.nodes[i].live {
            // A peer whose disk failed is gone: nothing to tell it.
            let _ = live.peer.cut(self.faults.cut_of(i)).await;
            let _ = live.peer.set_links(self.faults.links_of(i)).await;
        }
    }

    async fn apply_all_faults(&self) {
        for i in 0..self.nodes.len() {
            self.apply_faults(i).await;
        }
        self.bump();
    }

    /// Partitions the quorum's network into `groups` of server indexes: links between
    /// groups are cut, a server in no group is cut off from every other. Replaces earlier
    /// cuts (delays and losses stay). Clients still reach every server.
    ///
    /// # Panics
    /// When an index is out of range.
    pub async fn partition(&mut self, groups: &[&[usize]]) {
        for &i in groups.iter().flat_map(|g| g.iter()) {
            self.node(i);
        }
        self.faults.partition(self.nodes.len(), groups);
        self.apply_all_faults().await;
    }

    /// Cuts server `i` off from every other (on top of earlier cuts).
    ///
    /// # Panics
    /// When `i >= len()`.
    pub async fn isolate(&mut self, i: usize) {
        self.node(i);
        self.faults.isolate(self.nodes.len(), i);
        self.apply_all_faults().await;
    }

    /// Cuts the link between servers `a` and `b` (both directions).
    ///
    /// # Panics
    /// When an index is out of range.
    pub async fn cut(&mut self, a: usize, b: usize) {
        self.node(a);
        self.node(b);
        self.faults.cut(a, b);
        self.apply_all_faults().await;
    }

    /// Delays every quorum and election frame between servers `a` and `b` by `d`, in each
    /// direction (zero lifts it). Frames keep their order.
    ///
    /// # Panics
    /// When an index is out of range.
    pub async fn delay(&mut self, a: usize, b: usize, d: Duration) {
        self.node(a);
        self.node(b);
        self.faults.delay(a, b, d);
        self.apply_all_faults().await;
    }

    /// Loses each frame between servers `a` and `b` with probability `p` (clamped to
    /// `[0, 1]`; zero lifts it), in each direction. TCP does not lose bytes, it fails: a lost
    /// election notification is gone (votes are resent), a lost quorum packet breaks the
    /// connection, which the learner then re-establishes and resyncs.
    ///
    /// # Panics
    /// When an index is out of range.
    pub async fn drop_rate(&mut self, a: usize, b: usize, p: f64) {
        self.node(a);
        self.node(b);
        self.faults.loss(a, b, p);
        self.apply_all_faults().await;
    }

    /// Lifts every cut, delay and loss.
    pub async fn heal(&mut self) {
        self.faults.heal();
        self.apply_all_faults().await;
    }

    /// Makes every fsync of server `i` take `d` from now on (zero: instant), until it
    /// restarts. Does nothing when it is down.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub async fn slow_disk(&self, i: usize, d: Duration) {
        if let Some(live) = &self.node(i).live {
            let _ = live.peer.slow_disk(d).await;
        }
    }

    /// Stalls server `i` for `d`, as a long GC pause: it handles nothing meanwhile, neither
    /// quorum traffic nor clients (whose bytes wait in the socket buffers), then resumes
    /// where it was. Does nothing when it is down.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub async fn pause(&self, i: usize, d: Duration) {
        if let Some(live) = &self.node(i).live {
            net::pause_for(live.client.ctx(), d);
            let _ = live.peer.pause(d).await;
        }
    }

    /// Stalls only server `i`'s quorum peer (election and ZAB) for `d`, its client side still
    /// serving: a leader whose quorum side lags behind its clients. Does nothing when it is
    /// down.
    #[cfg(test)]
    pub(crate) async fn stall_quorum(&self, i: usize, d: Duration) {
        if let Some(live) = &self.node(i).live {
            let _ = live.peer.pause(d).await;
        }
    }

    /// Expires a session now, as the leader's session tracker would: its ephemerals are
    /// deleted everywhere and its client is disconnected. False when there is no leader or
    /// no such session.
    pub fn expire_session(&self, session_id: i64) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        self.nodes[leader]
            .ctx()
            .is_some_and(|c| c.with_core(|core| core.expire_session(session_id, now_ms())))
    }

    /// Checks that every serving server holds the same history: waits (up to the builder's
    /// [`patience`](Builder::patience)) until they have all applied the same last zxid, then
    /// compares their tree digests. Returns that zxid, or what differs. Call it once the
    /// workload is over (writes in flight keep the servers apart).
    pub async fn check_consistent(&self) -> Result<i64, Inconsistency> {
        let serving = |e: &Ensemble| -> Vec<(usize, i64, i64)> {
            e.running()
                .filter(|n| QuorumRole::of(n.view.borrow().role).is_serving())
                .filter_map(|n| {
                    let g = n.ctx()?.lock();
                    Some((n.index, g.core.db().last_zxid, g.core.digest()))
                })
                .collect()
        };
        let agreed = self
            .wait_until("the serving servers to apply the same history", |e| {
                let s = serving(e);
                let first = s.first()?.1;
                s.iter().all(|x| x.1 == first).then_some(())
            })
            .await;
        let servers = serving(self);
        let Some(&(first, zxid, digest)) = servers.first() else {
            return Err(Inconsistency::new(
                servers,
                vec!["no server is serving".into()],
            ));
        };
        if agreed.is_ok() && servers.iter().all(|s| s.1 == zxid && s.2 == digest) {
            return Ok(zxid);
        }
        let mut differences = Vec::new();
        let reference = self.tree(first);
        for &(i, z, d) in &servers[1..] {
            if z == zxid && d == digest {
                continue;
            }
            diff_trees(first, &reference, i, &self.tree(i), &mut differences);
        }
        Err(Inconsistency::new(servers, differences))
    }

    fn tree(&self, i: usize) -> std::collections::BTreeMap<String, Znode> {
        self.nodes[i]
            .ctx()
            .map(|c| znodes_of(&c.lock().core.db().tree, "/"))
            .unwrap_or_default()
    }
}

/// At most this many differing paths are listed per pair of servers.
const MAX_LISTED: usize = 20;

fn diff_trees(
    a: usize,
    ta: &std::collections::BTreeMap<String, Znode>,
    b: usize,
    tb: &std::collections::BTreeMap<String, Znode>,
    out: &mut Vec<String>,
) {
    let mut n = 0;
    let paths: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
    for p in paths {
        let line = match (ta.get(p), tb.get(p)) {
            (Some(_), None) => format!("{p}: on server {a}, not on server {b}"),
            (None, Some(_)) => format!("{p}: on server {b}, not on server {a}"),
            (Some(x), Some(y)) if x != y => format!(
                "{p}: differs (server {a}: mzxid 0x{:x}, version {}, {} children; \
                 server {b}: mzxid 0x{:x}, version {}, {} children)",
                x.stat.mzxid,
                x.stat.version,
                x.children.len(),
                y.stat.mzxid,
                y.stat.version,
                y.children.len()
            ),
            _ => continue,
        };
        n += 1;
        if n > MAX_LISTED {
            out.push(format!("... and more between servers {a} and {b}"));
            return;
        }
        out.push(line);
    }
}

/// What [`Ensemble::check_consistent`] found: the serving servers do not hold the same
/// history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct Inconsistency {
    /// Each serving server: (index, last applied zxid, tree digest).
    pub servers: Vec<(usize, i64, i64)>,
    /// What differs, one line per znode (against the first server listed).
    pub differences: Vec<String>,
}

impl Inconsistency {
    fn new(servers: Vec<(usize, i64, i64)>, differences: Vec<String>) -> Self {
        Inconsistency {
            servers,
            differences,
        }
    }
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the servers do not hold the same history:")?;
        for (i, zxid, digest) in &self.servers {
            writeln!(f, "  server {i}: last zxid 0x{zxid:x}, digest {digest}")?;
        }
        for d in &self.differences {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}
