//! The tokio shell around the [`core`](crate::core): listener, one task per connection, a ticker,
//! four-letter words.
//!
//! The core sits behind a `std::sync::Mutex` that is never held across an `.await`: a connection
//! task locks it, feeds a frame, routes the resulting [`Output`]s to the per-connection queues and
//! unlocks. Routing all outputs of one step under the lock keeps notifications ahead of the reply
//! that follows them on every connection.

mod conn;
mod fourlw;
mod outbox;
mod tls;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::core::{Committed, ConnId, Core, Frame, Mode, Output};

pub use fourlw::{FourLetterWords, ALL_WORDS};
pub(crate) use outbox::Outbox;
pub use outbox::DEFAULT_MAX_QUEUED_BYTES;
pub use tls::ServerTls;

/// ZooKeeper's default `maxClientCnxns`: connections one IP address may hold at once.
pub const DEFAULT_MAX_CLIENT_CNXNS: usize = 60;

/// The only clock the core sees: ms since the epoch, read once from the wall clock and then
/// advanced by tokio's monotonic clock, so a wall-clock jump can neither expire every session
/// nor make times run backwards — and a test that pauses tokio's clock
/// (`tokio::time::pause()` / `advance()`) also controls session expiry and TTLs.
pub fn now_ms() -> i64 {
    static ANCHOR: OnceLock<(tokio::time::Instant, i64)> = OnceLock::new();
    let (at, wall) = ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        (tokio::time::Instant::now(), wall)
    });
    wall + at.elapsed().as_millis() as i64
}

/// What a connection's writer is asked to do.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Send a frame (its parts may share a znode's data).
    Frame(Frame),
    /// Flush, then close.
    Close(&'static str),
}

/// Shell settings that the core does not need.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Largest accepted request payload.
    pub max_packet: usize,
    /// Enabled four-letter words.
    pub four_letter_words: FourLetterWords,
    /// How long a new connection may stay silent before its ConnectRequest.
    pub handshake_timeout: Duration,
    /// How often the core's `tick` runs.
    pub tick_interval: Duration,
    /// Bound of each connection's outbound queue in bytes (see [`DEFAULT_MAX_QUEUED_BYTES`]):
    /// past it the connection reads no more requests until its client has read the replies.
    pub max_queued_bytes: usize,
    /// Connections one IP address may hold at once (`maxClientCnxns`; 0 = unlimited).
    pub max_client_cnxns: usize,
}

/// Runs once the txns it waited for are durable: sends their outputs.
pub(crate) type Release = Box<dyn FnOnce() + Send>;

/// Where committed txns go before the outputs behind them may be released (the txn log).
pub(crate) trait Durability: Send + Sync + std::fmt::Debug {
    /// Whether earlier batches still wait for the disk (later outputs must queue behind them).
    fn busy(&self) -> bool;
    /// Makes `txns` durable (in order), then runs `release`.
    fn submit(&self, txns: Vec<Committed>, release: Release);
}

/// Learner counts a leader reports in `mntr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LearnerStats {
    /// Learners connected.
    pub learners: usize,
    /// Followers among them that finished their sync.
    pub synced_followers: usize,
    /// Observers among them that finished their sync.
    pub synced_observers: usize,
}

/// The replication side of a server that is a member of an ensemble.
pub(crate) struct Replica {
    /// Takes the core's outputs for the replication layer, in order, with the mode the core
    /// was in when it emitted them. Called under the lock: it must not block.
    pub sink: Box<dyn Fn(Output, Mode) + Send + Sync>,
    /// The leader's learner counts, for `mntr`.
    pub learners: Box<dyn Fn() -> LearnerStats + Send + Sync>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Replica(..)")
    }
}

/// The core plus the queues of the connections it talks to.
///
/// Each queue is bounded in bytes by [`NetConfig::max_queued_bytes`] (see `outbox.rs`): replies
/// by stopping the connection's reader, notifications by closing a connection that lets them
/// pile up.
#[derive(Debug)]
pub(crate) struct Shared {
    pub core: Core,
    pub conns: HashMap<ConnId, Outbox>,
    pub next_conn: ConnId,
    /// With a data dir: the txn log that releases outputs once their txns are durable.
    pub durability: Option<Arc<dyn Durability>>,
    /// In an ensemble: where the outputs for the replication layer go (dropped otherwise).
    pub replica: Option<Replica>,
}

impl Shared {
    /// Routes the core's outputs to the connection queues. With a txn log, committed txns go to
    /// it first, and their outputs (and any output queued behind them) are sent once the txns
    /// are durable. In an ensemble the outputs for the replication layer go to its sink.
    pub fn dispatch(&mut self) {
        let mut txns = Vec::new();
        let mut sends = Vec::new();
        let mode = self.core.mode();
        for o in self.core.take_output() {
            let (c, m) = match o {
                Output::Committed(c) => {
                    txns.push(*c);
                    continue;
                }
                Output::Send(c, f) => (c, Msg::Frame(f)),
                Output::Close(c, r) => (c, Msg::Close(r)),
                other => {
                    if let Some(r) = &self.replica {
                        (r.sink)(other, mode);
                    }
                    continue;
                }
            };
            if let Some(tx) = self.conns.get(&c) {
                sends.push((tx.clone(), m));
            }
        }
        let send = move || {
            for (tx, m) in sends {
                tx.send(m);
            }
        };
        match &self.durability {
            Some(d) if !txns.is_empty() || d.busy() => d.submit(txns, Box::new(send)),
            _ => send(),
        }
    }
}

/// State shared by the shell's tasks.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub shared: Mutex<Shared>,
    pub net: NetConfig,
    pub local_addr: SocketAddr,
    pub paused: watch::Sender<bool>,
    pub paused_until: Mutex<Option<tokio::time::Instant>>,
    /// Open connections per client IP address (for `maxClientCnxns`).
    pub per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Ctx {
    /// Locks the shared state (a poisoned lock is recovered: the core never panics on input).
    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new connection from `ip`; None when the IP already holds `max_client_cnxns`.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        let max = self.net.max_client_cnxns;
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ctx: self.clone(),
            ip,
        })
    }

    /// Runs `f` on the core, then routes its outputs.
    pub fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        let mut g = self.lock();
        let r = f(&mut g.core);
        g.dispatch();
        r
    }
}

/// One connection's place in the per-IP count; released on drop.
#[derive(Debug)]
pub(crate) struct IpSlot {
    ctx: Arc<Ctx>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.ctx.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections until `shutdown` flips; owns every connection task. With `tls` this is
/// the secure client port: each connection does its TLS handshake (within the handshake
/// timeout) before it is served like a plain one.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            r = listener.accept() => match r {
                Ok((stream, remote)) => {
                    // Like ZooKeeper's NIOServerCnxnFactory: a connection past the per-IP
                    // limit is closed as soon as it is accepted.
                    let Some(slot) = ctx.admit(remote.ip()) else {
                        tracing::warn!(
                            ip = %remote.ip(),
                            max = ctx.net.max_client_cnxns,
                            "too many connections from this IP (maxClientCnxns), closing"
                        );
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let ctx = ctx.clone();
                    let sd = shutdown.clone();
                    let span = tracing::debug_span!("zk_conn", %remote, tls = tls.is_some());
                    match tls.clone() {
                        None => tasks.spawn(tracing::Instrument::instrument(
                            conn::serve(stream.into_split(), remote, ctx, sd, slot),
                            span,
                        )),
                        Some(acceptor) => tasks.spawn(tracing::Instrument::instrument(
                            async move {
                                let limit = ctx.net.handshake_timeout;
                                match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                                    Ok(Ok(s)) => conn::serve(tokio::io::split(s), remote, ctx, sd, slot).await,
                                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake failed, closing"),
                                    Err(_) => tracing::info!(%remote, "no TLS handshake before the handshake timeout, closing"),
                                }
                            },
                            span,
                        )),
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    // Dropping the JoinSet aborts the connection tasks; wait for them to finish.
    tasks.shutdown().await;
}

/// Drives `Core::tick` and ends timed pauses.
pub(crate) async fn ticker(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let mut iv = tokio::time::interval(ctx.net.tick_interval);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = iv.tick() => {}
        }
        let until = *ctx.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = until {
            if tokio::time::Instant::now() >= t {
                resume(&ctx);
            }
        }
        if *ctx.paused.borrow() {
            continue;
        }
        let now = now_ms();
        ctx.with_core(|c| c.tick(now));
    }
}

/// Stops answering for `d` (a stalled server); the ticker resumes by itself.
pub(crate) fn pause_for(ctx: &Ctx, d: Duration) {
    *ctx.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(tokio::time::Instant::now() + d);
    let _ = ctx.paused.send(true);
    tracing::info!(?d, "server paused");
}

/// Ends a pause: sessions get a full timeout from now, connections read again.
pub(crate) fn resume(ctx: &Ctx) {
    *ctx.paused_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    if *ctx.paused.borrow() {
        let now = now_ms();
        ctx.with_core(|c| c.touch_all(now));
        let _ = ctx.paused.send(false);
        tracing::info!("server resumed");
    }
}

/// Words accepted as a four-letter command (`docs/protocol.md` §11).
pub(crate) fn is_known_word(w: &[u8]) -> bool {
    let set: HashSet<&[u8]> = ALL_WORDS.iter().map(|w| w.as_bytes()).collect();
    set.contains(w)
}
