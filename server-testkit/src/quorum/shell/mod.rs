//! The tokio shell around a sans-IO [`Peer`]: one driver task per server owns the peer and
//! its sockets' queues, feeds it messages, ticks from tokio time and fsync completions, and
//! routes what it emits. Connection tasks (in `conn`) only frame bytes.
//!
//! Election connections follow `QuorumCnxManager`: a server connects when it has a
//! notification for a server it has no connection to, introduces itself with its protocol
//! version, sid and election address, and only the connection from the larger sid to the
//! smaller survives (a smaller sid's connection makes the larger one connect back). The ZAB
//! channel follows `Learner`: a learner connects to its leader's quorum port and speaks first.
//!
//! The disk ([`ShellDisk`]) outlives the tasks: a [`MemoryDisk`], where [`QuorumPeer::kill`]
//! aborts every task and drops what was not synced, or a [`DiskLog`](super::disklog::DiskLog)
//! over a real data dir, which a restart reopens. The shell syncs the disk after each batch of
//! work it did (group commit; one fsync at a time, on tokio's blocking pool when it blocks,
//! after [`QuorumPeer::slow_disk`]'s delay) and reports the result to the peer, which only
//! then sends the ACKs that promise durability. A disk that failed stops the server: its
//! driver task ends (logged at error), as ZooKeeper exits on a failed write.
//!
//! The server's core talks to its peer through [`QuorumPeer::core_commands`] (an unbounded,
//! ordered queue it can use under its lock; see `commands`). Tests put faults on the
//! quorum's links: partitions ([`QuorumPeer::cut`]), delays and losses
//! ([`QuorumPeer::set_links`]; see `links` and `routing`), a slow disk, a stall
//! ([`QuorumPeer::pause`]).

mod commands;
mod conn;
pub(crate) mod disk;
mod links;
mod routing;
mod snapwire;
mod wire;

#[cfg(test)]
mod disklog_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{error, info_span, warn, Instrument};
use zkit_proto::quorum::put_election_frame;

pub(crate) use commands::{CoreCommand, TxnAt};
pub(crate) use disk::{MemoryDisk, ShellDisk};
pub(crate) use links::LinkFault;
use links::{Link, Rng};

use super::peer::{Event, Peer, PeerConfig, PeerError, Role};
use super::{Message, Sid};

/// Identifies one connection, so news from a superseded one is ignored.
type ConnId = u64;

/// Notifications kept for a server this one cannot reach yet; older ones are dropped
/// (the election resends its current vote anyway, as `QuorumCnxManager`'s bounded queue).
const ELECTION_BACKLOG: usize = 4;

/// Messages the connection tasks may queue for the driver before they wait.
const INBOX: usize = 1024;

/// How a shell-driven peer is wired.
#[derive(Debug, Clone)]
pub(crate) struct ShellConfig {
    /// The peer itself.
    pub peer: PeerConfig,
    /// Every server's election address (this one's included).
    pub election_addrs: BTreeMap<Sid, SocketAddr>,
    /// Every server's quorum (learner) address.
    pub quorum_addrs: BTreeMap<Sid, SocketAddr>,
    /// How often the peer is ticked; a fraction of the smallest timeout it keeps.
    pub tick_interval: Duration,
    /// Limit for a TCP connect or a handshake.
    pub connect_timeout: Duration,
    /// Seeds the loss decisions of [`QuorumPeer::set_links`] (with the server id).
    pub seed: u64,
}

/// The two listening sockets of a server, bound before any server starts so every address
/// is known up front.
#[derive(Debug)]
pub(crate) struct Listeners {
    election: TcpListener,
    quorum: TcpListener,
}

impl Listeners {
    /// Binds both on `127.0.0.1`, on ports the system picks.
    pub async fn bind_loopback() -> std::io::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::bind(any, any).await
    }

    /// Binds both at the given addresses (a restart reuses its old ones).
    pub async fn bind(election: SocketAddr, quorum: SocketAddr) -> std::io::Result<Self> {
        Ok(Listeners {
            election: TcpListener::bind(election).await?,
            quorum: TcpListener::bind(quorum).await?,
        })
    }

    /// The election address.
    pub fn election_addr(&self) -> std::io::Result<SocketAddr> {
        self.election.local_addr()
    }

    /// The quorum address.
    pub fn quorum_addr(&self) -> std::io::Result<SocketAddr> {
        self.quorum.local_addr()
    }
}

/// What a peer looks like from outside, updated after every batch of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    /// The role.
    pub role: Role,
    /// The last zxid delivered to the state machine.
    pub delivered: i64,
    /// The last zxid in the log.
    pub last_zxid: i64,
    /// The last zxid the disk made durable.
    pub synced: i64,
    /// Leader: learners connected, followers and observers among them that finished their
    /// sync (zero on other roles).
    pub learners: (usize, usize, usize),
}

/// Why a call on a [`QuorumPeer`] failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ShellError {
    /// The peer refused.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The peer's tasks are gone.
    #[error("peer stopped")]
    Stopped,
}

enum Command {
    Propose(Bytes, oneshot::Sender<Result<i64, PeerError>>),
    ProposeAt(TxnAt, oneshot::Sender<Result<i64, PeerError>>),
    Cut(BTreeSet<Sid>, oneshot::Sender<()>),
    SlowDisk(Duration, oneshot::Sender<()>),
    Links(BTreeMap<Sid, LinkFault>, oneshot::Sender<()>),
    Pause(Duration, oneshot::Sender<()>),
}

/// What connection tasks tell the driver.
pub(super) enum Input {
    /// A message from `from` on connection `conn`.
    Message {
        from: Sid,
        conn: ConnId,
        msg: Message,
    },
    /// An accepted election connection introduced itself.
    ElectionInbound {
        sid: Sid,
        stream: TcpStream,
        rest: BytesMut,
    },
    /// An outgoing election connection is kept; frames for `sid` go to `tx`.
    ElectionUp {
        sid: Sid,
        conn: ConnId,
        tx: mpsc::Sender<Bytes>,
    },
    /// An outgoing election connection attempt finished (whatever its fate).
    ElectionAttemptOver { sid: Sid },
    /// An election connection ended.
    ElectionDown { sid: Sid, conn: ConnId },
    /// A ZAB connection with `sid` is up.
    ZabUp {
        sid: Sid,
        conn: ConnId,
        tx: mpsc::Sender<Bytes>,
    },
    /// A ZAB connection (or the attempt to make one) ended.
    ZabDown { sid: Sid, conn: ConnId },
    /// A background fsync finished: the zxid it made durable, if any.
    Synced(Option<i64>),
}

/// A running replicated server: a handle on its driver task.
pub(crate) struct QuorumPeer<D: ShellDisk = MemoryDisk> {
    task: JoinHandle<()>,
    cmds: mpsc::Sender<Command>,
    core: mpsc::UnboundedSender<CoreCommand>,
    status: watch::Receiver<Status>,
    disk: D,
}

impl<D: ShellDisk> QuorumPeer<D> {
    /// Starts a peer over `disk` whose state machine already reflects `applied`; its
    /// [`Event`]s go to `events` (the peer waits when that queue is full).
    pub fn start(
        cfg: ShellConfig,
        listeners: Listeners,
        disk: D,
        applied: i64,
        events: mpsc::Sender<Event>,
    ) -> Self {
        let sid = cfg.peer.id;
        let peer = Peer::new(cfg.peer.clone(), disk.clone(), applied, 0);
        let (status_tx, status) = watch::channel(Status {
            role: peer.role(),
            delivered: peer.delivered(),
            last_zxid: disk.last_zxid(),
            synced: disk.synced_zxid(),
            learners: (0, 0, 0),
        });
        let (cmd_tx, cmds) = mpsc::channel(64);
        let (core_tx, core_cmds) = mpsc::unbounded_channel();
        let (inbox_tx, inbox) = mpsc::channel(INBOX);
        let rng = Rng::new(cfg.seed ^ (sid as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let driver = Driver {
            cfg,
            peer,
            disk: disk.clone(),
            start: Instant::now(),
            inbox_tx,
            tasks: JoinSet::new(),
            next_conn: 0,
            election: BTreeMap::new(),
            election_connecting: BTreeSet::new(),
            election_backlog: BTreeMap::new(),
            zab: BTreeMap::new(),
            zab_connecting: BTreeMap::new(),
            zab_backlog: BTreeMap::new(),
            events,
            status: status_tx,
            cut: BTreeSet::new(),
            fsync_delay: Duration::ZERO,
            syncing: false,
            faults: BTreeMap::new(),
            rng,
        };
        let task = tokio::spawn(
            driver
                .run(listeners, inbox, cmds, core_cmds)
                .instrument(info_span!("quorum_peer", sid)),
        );
        QuorumPeer {
            task,
            cmds: cmd_tx,
            core: core_tx,
            status,
            disk,
        }
    }

    /// Where the server's core sends its requests to the replication layer: in order, never
    /// waiting (see [`CoreCommand`]); a command sent after the peer stopped is dropped.
    pub fn core_commands(&self) -> mpsc::UnboundedSender<CoreCommand> {
        self.core.clone()
    }

    /// Proposes the txn `txn_at` builds from the zxid it will get (leader only), for txn
    /// records that carry their zxid; its zxid once logged locally.
    pub async fn propose_at(
        &self,
        txn_at: impl FnOnce(i64) -> Bytes + Send + 'static,
    ) -> Result<i64, ShellError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::ProposeAt(Box::new(txn_at), tx))
            .await
            .map_err(|_| ShellError::Stopped)?;
        Ok(rx.await.map_err(|_| ShellError::Stopped)??)
    }

    /// Whether the server stopped (its disk failed).
    pub fn stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// The disk.
    pub fn disk(&self) -> &D {
        &self.disk
    }

    /// Proposes a txn (leader only); its zxid once logged locally.
    pub async fn propose(&self, txn: Bytes) -> Result<i64, ShellError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::Propose(txn, tx))
            .await
            .map_err(|_| ShellError::Stopped)?;
        Ok(rx.await.map_err(|_| ShellError::Stopped)??)
    }

    /// Cuts this server off from `sids` (and reconnects it to every other): connections
    /// with them close, nothing is sent to or accepted from them. Cut both ends for a
    /// partition; an empty set heals.
    pub async fn cut(&self, sids: impl IntoIterator<Item = Sid>) -> Result<(), ShellError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::Cut(sids.into_iter().collect(), tx))
            .await
            .map_err(|_| ShellError::Stopped)?;
        rx.await.map_err(|_| ShellError::Stopped)
    }

    /// Makes every fsync of this server that starts from now on take `delay` (zero:
    /// instant).
    pub async fn slow_disk(&self, delay: Duration) -> Result<(), ShellError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::SlowDisk(delay, tx))
            .await
            .map_err(|_| ShellError::Stopped)?;
        rx.await.map_err(|_| ShellError::Stopped)
    }

    /// Sets the faults of the links from this server to others (what is sent to a server
    /// missing from `faults` goes out unaffected). See `links` for what a loss means.
    pub async fn set_links(&self, faults: BTreeMap<Sid, LinkFault>) -> Result<(), ShellError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::Links(faults, tx))
            .await
            .map_err(|_| ShellError::Stopped)?;
        rx.await.map_err(|_| ShellError::Stopped)
    }

    /// Stalls the server for `d` (a GC pause): its driver handles nothing meanwhile, while
    /// its connections keep reading into bounded queues, as a kernel buffers for a stalled
    /// process. Returns once the stall has begun.
    pub async fn pause(&self, d: Duration) -> Result<(), ShellError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::Pause(d, tx))
            .await
            .map_err(|_| ShellError::Stopped)?;
        rx.await.map_err(|_| ShellError::Stopped)
    }

    /// The latest status; `changed()` on it wakes on every update.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Kills the server: every task ends, its sockets close, and the disk loses whatever
    /// was not synced ([`ShellDisk::crash`]). Returns the disk for a restart.
    pub async fn kill(self) -> D {
        let disk = self.stop().await;
        disk.crash();
        disk
    }

    /// Stops the server: every task ends and its sockets close, the disk keeps everything
    /// (sync it before reuse for a clean shutdown). Returns the disk for a restart.
    pub async fn stop(mut self) -> D {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.disk.clone()
    }
}

impl<D: ShellDisk> Drop for QuorumPeer<D> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Driver<D: ShellDisk> {
    cfg: ShellConfig,
    peer: Peer<D>,
    disk: D,
    start: Instant,
    inbox_tx: mpsc::Sender<Input>,
    /// Every connection task; dropping the driver aborts them all.
    tasks: JoinSet<()>,
    next_conn: ConnId,
    election: BTreeMap<Sid, Link>,
    election_connecting: BTreeSet<Sid>,
    election_backlog: BTreeMap<Sid, VecDeque<Bytes>>,
    zab: BTreeMap<Sid, Link>,
    /// A learner's connection attempt to its leader, by attempt id.
    zab_connecting: BTreeMap<Sid, ConnId>,
    zab_backlog: BTreeMap<Sid, Vec<Bytes>>,
    events: mpsc::Sender<Event>,
    status: watch::Sender<Status>,
    /// Servers this one is cut off from (a partition).
    cut: BTreeSet<Sid>,
    /// How long an fsync takes.
    fsync_delay: Duration,
    /// Whether a slow fsync is under way (one at a time; the next covers what came since).
    syncing: bool,
    /// Delays and losses on the links to other servers.
    faults: BTreeMap<Sid, LinkFault>,
    /// Draws the losses.
    rng: Rng,
}

impl<D: ShellDisk> Driver<D> {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    async fn run(
        mut self,
        listeners: Listeners,
        mut inbox: mpsc::Receiver<Input>,
        mut cmds: mpsc::Receiver<Command>,
        mut core_cmds: mpsc::UnboundedReceiver<CoreCommand>,
    ) {
        let mut ticker =
            tokio::time::interval(self.cfg.tick_interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        if self.flush().await.is_err() {
            return;
        }
        loop {
            let mut stall = None;
            tokio::select! {
                Some(input) = inbox.recv() => self.on_input(input),
                Some(cmd) = core_cmds.recv() => self.on_core(cmd),
                cmd = cmds.recv() => match cmd {
                    Some(Command::Propose(txn, reply)) => {
                        let _ = reply.send(self.peer.propose(txn));
                    }
                    Some(Command::ProposeAt(txn_at, reply)) => {
                        let r = match self.peer.next_zxid() {
                            Some(zxid) => self.peer.propose(txn_at(zxid)),
                            None => Err(PeerError::NotLeader),
                        };
                        let _ = reply.send(r);
                    }
                    Some(Command::Cut(sids, reply)) => {
                        self.set_cut(sids);
                        let _ = reply.send(());
                    }
                    Some(Command::SlowDisk(d, reply)) => {
                        self.fsync_delay = d;
                        let _ = reply.send(());
                    }
                    Some(Command::Links(faults, reply)) => {
                        self.faults = faults.into_iter().filter(|(_, f)| !f.is_none()).collect();
                        let _ = reply.send(());
                    }
                    Some(Command::Pause(d, reply)) => {
                        let _ = reply.send(());
                        stall = Some(d);
                    }
                    // The handle is gone: so is the server.
                    None => return,
                },
                r = listeners.election.accept() => match r {
                    Ok((s, _)) => {
                        let inbox = self.inbox_tx.clone();
                        self.tasks.spawn(conn::election_accept(s, self.cfg.connect_timeout, inbox));
                    }
                    Err(e) => accept_failed(e).await,
                },
                r = listeners.quorum.accept() => match r {
                    Ok((s, _)) => {
                        let conn = self.conn_id();
                        let inbox = self.inbox_tx.clone();
                        self.tasks.spawn(conn::zab_accept(s, conn, self.cfg.connect_timeout, inbox));
                    }
                    Err(e) => accept_failed(e).await,
                },
                _ = ticker.tick() => {
                    let now = self.now();
                    self.peer.tick(now);
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
            if let Some(d) = stall {
                tracing::info!(?d, "stalled");
                tokio::time::sleep(d).await;
            }
            if self.flush().await.is_err() {
                return;
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = self.now();
        let from = match &input {
            Input::Message { from, .. } => Some(*from),
            Input::ElectionInbound { sid, .. }
            | Input::ElectionUp { sid, .. }
            | Input::ZabUp { sid, .. } => Some(*sid),
            _ => None,
        };
        if from.is_some_and(|s| self.cut.contains(&s)) {
            // Partitioned: the bytes never arrived, the connection never came up (dropping
            // a stream or a writer closes that connection).
            return;
        }
        match input {
            Input::Message { from, conn, msg } => {
                let current = match msg {
                    Message::Election(_) => true,
                    Message::Zab(_) | Message::Snapshot(_) => {
                        self.zab.get(&from).is_some_and(|l| l.conn == conn)
                    }
                };
                if current {
                    self.peer.step(from, msg, now);
                }
            }
            Input::ElectionInbound { sid, stream, rest } => {
                self.election_inbound(sid, stream, rest)
            }
            Input::ElectionUp { sid, conn, tx } => {
                self.election.insert(sid, Link::new(conn, tx));
                self.election_connected(sid, now);
            }
            Input::ElectionAttemptOver { sid } => {
                self.election_connecting.remove(&sid);
            }
            Input::ElectionDown { sid, conn } => {
                if self.election.get(&sid).is_some_and(|l| l.conn == conn) {
                    self.election.remove(&sid);
                }
            }
            Input::ZabUp { sid, conn, tx } => self.zab_up(sid, conn, tx, now),
            Input::Synced(zxid) => {
                self.syncing = false;
                // A truncation since the fsync ended lowered what is synced: claim no more.
                if let Some(zxid) = zxid {
                    self.peer.durable(zxid.min(self.disk.synced_zxid()), now);
                }
            }
            Input::ZabDown { sid, conn } => {
                let live = self.zab.get(&sid).is_some_and(|l| l.conn == conn)
                    || self.zab_connecting.get(&sid) == Some(&conn);
                if live {
                    self.drop_zab(sid);
                    self.peer.disconnected(sid, now);
                }
            }
        }
    }

    /// Syncs the disk: at once, or in the background when the disk is slow or an fsync
    /// blocks (on tokio's blocking pool; an abort leaves it to finish harmlessly).
    fn sync(&mut self, now: u64) {
        let ticket = self.disk.begin_sync();
        let blocking = self.disk.blocking_sync();
        if self.fsync_delay.is_zero() && !blocking {
            if let Some(zxid) = self.disk.complete_sync(ticket) {
                self.peer.durable(zxid, now);
            }
            return;
        }
        self.syncing = true;
        let (delay, inbox, disk) = (self.fsync_delay, self.inbox_tx.clone(), self.disk.clone());
        self.tasks.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let zxid = if blocking {
                tokio::task::spawn_blocking(move || disk.complete_sync(ticket))
                    .await
                    .unwrap_or_else(|e| {
                        warn!(error = %e, "fsync task failed");
                        None
                    })
            } else {
                disk.complete_sync(ticket)
            };
            let _ = inbox.send(Input::Synced(zxid)).await;
        });
    }

    /// Drains the peer until it has nothing more to say: routes its messages, closes what
    /// it closes, syncs the disk and reports it, hands events on, publishes the status.
    /// `Err` when the disk failed: the server must stop.
    async fn flush(&mut self) -> Result<(), ()> {
        loop {
            if let Some(e) = self.disk.failure() {
                error!(error = %e, "disk failed: stopping the server");
                return Err(());
            }
            let now = self.now();
            let (out, closes) = self.peer.poll();
            let events = self.peer.events();
            let unsynced = self.disk.unsynced() && !self.syncing;
            if out.is_empty() && closes.is_empty() && events.is_empty() && !unsynced {
                break;
            }
            for (to, msg) in out {
                if to == self.cfg.peer.id {
                    continue;
                }
                let mut frame = BytesMut::new();
                match &msg {
                    Message::Election(n) => {
                        put_election_frame(&mut frame, &n.encode());
                        self.send_election_frame(to, frame.freeze());
                    }
                    Message::Zab(p) => {
                        wire::put_packet(&mut frame, p);
                        self.send_zab_frame(to, frame.freeze(), now);
                    }
                    Message::Snapshot(s) => {
                        match self
                            .disk
                            .zookeeper_snapshots()
                            .then(|| snapwire::file_to_stream(s))
                            .flatten()
                        {
                            Some(stream) => frame = stream,
                            None => wire::put_snapshot(&mut frame, s),
                        }
                        self.send_zab_frame(to, frame.freeze(), now);
                    }
                }
            }
            for sid in closes {
                self.drop_zab(sid);
                self.peer.disconnected(sid, now);
            }
            if unsynced {
                self.sync(now);
            }
            for e in events {
                // A receiver that went away no longer wants them.
                let _ = self.events.send(e).await;
            }
        }
        let status = Status {
            role: self.peer.role(),
            delivered: self.peer.delivered(),
            last_zxid: self.disk.last_zxid(),
            synced: self.disk.synced_zxid(),
            learners: self.peer.learner_counts(),
        };
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
        Ok(())
    }
}

async fn accept_failed(e: std::io::Error) {
    // Out of file descriptors and the like: back off instead of spinning.
    warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
