//! The test-facing handle: start, stop, restart, and fault controls.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use bytes::Bytes;
use zkit_proto::Acl;

use crate::core::{
    join, Config, Core, DataTree, Database, NodeKind, Secret, StatPersisted, WatchKind,
};
use crate::net::{self, now_ms, Ctx, NetConfig, Shared};
use crate::persist::pipeline::Pipeline;

/// Why the server could not start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding or configuring the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data dir could not be recovered or written.
    #[error(transparent)]
    Persist(#[from] crate::persist::PersistError),
    /// The operating system could not supply the random bytes of the session secret.
    #[error("cannot draw the session secret from the operating system: {0}")]
    Random(String),
    /// A `zoo.cfg` or `myid` file is wrong, or a port it names is in use (the error names
    /// the key and line).
    #[error(transparent)]
    ZooCfg(#[from] crate::ensemble::ConfigError),
    /// A wait for a condition (an ensemble settling) ran out of time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

mod builder;
mod persist;
pub use builder::Builder;
#[cfg(test)]
mod persist_tests;
#[cfg(test)]
mod restart_tests;
pub(crate) mod targeted;

/// A new session secret: [`Secret::LEN`] bytes from the operating system's generator.
pub(crate) fn fresh_secret() -> Result<Secret, Error> {
    let mut bytes = [0u8; Secret::LEN];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(Secret::from_bytes(bytes))
}

/// A live listener and its tasks (also each member of an ensemble's client side).
#[derive(Debug)]
pub(crate) struct Running {
    ctx: Arc<Ctx>,
    shutdown: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
    secure_accept: Option<JoinHandle<()>>,
    /// The secure client port, when there is one.
    pub(crate) secure_addr: Option<SocketAddr>,
    ticker: JoinHandle<()>,
    persist: Option<Arc<Pipeline>>,
}

/// A listening socket on `addr` (address reuse on, like ZooKeeper's).
fn listen(addr: SocketAddr) -> Result<TcpListener, Error> {
    let bind = |e| Error::Bind { addr, source: e };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind)?;
    socket.set_reuseaddr(true).map_err(bind)?;
    socket.bind(addr).map_err(bind)?;
    socket.listen(1024).map_err(bind)
}

impl Running {
    pub(crate) async fn start(b: &Builder, addr: SocketAddr, core: Core) -> Result<Running, Error> {
        let local =
            |l: &TcpListener, addr| l.local_addr().map_err(|e| Error::Bind { addr, source: e });
        let secure = match &b.tls {
            Some(tls) => {
                let acceptor = tls.acceptor().map_err(Error::Config)?;
                let l = listen(b.secure_listen)?;
                Some((local(&l, b.secure_listen)?, l, acceptor))
            }
            None => None,
        };
        let plain = if secure.is_some() && b.secure_only {
            None
        } else {
            let l = listen(addr)?;
            Some((local(&l, addr)?, l))
        };
        let secure_addr = secure.as_ref().map(|s| s.0);
        let local_addr = plain.as_ref().map(|p| p.0).or(secure_addr).unwrap_or(addr);
        let tick_ms = (b.tick_time.as_millis() as u64 / 2).clamp(5, 50);
        let (paused, _) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            shared: Mutex::new(Shared {
                core,
                conns: HashMap::new(),
                next_conn: 1,
                durability: None,
                replica: None,
            }),
            net: NetConfig {
                max_packet: b.max_packet,
                four_letter_words: b.four_letter_words.clone(),
                handshake_timeout: b.handshake_timeout,
                tick_interval: Duration::from_millis(tick_ms),
                max_queued_bytes: b.max_queued_bytes,
                max_client_cnxns: b.max_client_cnxns,
            },
            local_addr,
            paused,
            paused_until: Mutex::new(None),
            per_ip: Mutex::new(HashMap::new()),
        });
        let persist = persist::attach(b, &ctx);
        let (shutdown, rx) = watch::channel(false);
        let span = tracing::info_span!("server", addr = %local_addr);
        let accept = plain.map(|(_, l)| {
            tokio::spawn(tracing::Instrument::instrument(
                net::accept_loop(l, ctx.clone(), rx.clone(), None),
                span.clone(),
            ))
        });
        let secure_accept = secure.map(|(a, l, acceptor)| {
            tracing::info!(addr = %a, "secure client port (TLS) listening");
            tokio::spawn(tracing::Instrument::instrument(
                net::accept_loop(l, ctx.clone(), rx.clone(), Some(acceptor)),
                span.clone(),
            ))
        });
        let ticker = tokio::spawn(tracing::Instrument::instrument(
            net::ticker(ctx.clone(), rx),
            span,
        ));
        tracing::info!(addr = %local_addr, "zkit-testkit server listening");
        Ok(Running {
            ctx,
            shutdown,
            accept,
            secure_accept,
            secure_addr,
            ticker,
            persist,
        })
    }

    pub(crate) async fn stop(mut self) -> Database {
        let _ = self.shutdown.send(true);
        for a in [self.accept.as_mut(), self.secure_accept.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = a.await;
        }
        let _ = (&mut self.ticker).await;
        persist::detach(&self.ctx, self.persist.take()).await;
        let mut g = self.ctx.lock();
        let cfg = g.core.config().clone();
        let core = std::mem::replace(&mut g.core, Core::new(cfg, 0));
        core.into_db()
    }
}

impl Running {
    /// The shared state of the listener's tasks.
    pub(crate) fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for a in [&self.accept, &self.secure_accept].into_iter().flatten() {
            a.abort();
        }
        self.ticker.abort();
    }
}

/// One session as listed by [`Server::sessions`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionSummary {
    /// Session id.
    pub id: i64,
    /// Negotiated timeout.
    pub timeout: Duration,
    /// Whether a connection is attached.
    pub connected: bool,
    /// Ephemeral nodes it owns.
    pub ephemerals: Vec<String>,
}

/// One watch as listed by [`Server::watches`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchSummary {
    /// Session of the watching connection (None before its handshake).
    pub session: Option<i64>,
    /// Watched path.
    pub path: String,
    /// Kind of watch.
    pub kind: WatchKind,
}

/// One client connection as listed by [`Server::connections`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionSummary {
    /// Peer address.
    pub remote: SocketAddr,
    /// Session, once the handshake succeeded.
    pub session: Option<i64>,
    /// Bytes queued for the client and not yet written to its socket.
    pub queued_bytes: usize,
    /// Frames queued and not yet written.
    pub queued_frames: usize,
    /// The most bytes ever queued at once on this connection.
    pub peak_queued_bytes: usize,
}

/// An in-process ZooKeeper server. Dropping it shuts it down.
///
/// ```no_run
/// # async fn f() -> Result<(), zkit_testkit::Error> {
/// let mut server = zkit_testkit::Server::start().await?;
/// let connect = server.connect_string(); // "127.0.0.1:PORT"
/// # let _ = connect;
/// server.stop().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    // Field order is drop order: the running tasks go before the builder, which may own a
    // temporary data dir (a restore without `data_dir`) that is removed when it drops.
    running: Option<Running>,
    builder: Builder,
    addr: Option<SocketAddr>,
    saved: Option<(Database, Config)>,
}

impl Server {
    /// Starts a server with default settings on `127.0.0.1:0`.
    pub async fn start() -> Result<Server, Error> {
        Builder::default().start().await
    }

    /// A builder for custom settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr.unwrap_or(self.builder.listen)
    }

    /// `127.0.0.1:PORT`, for a client's connect string.
    pub fn connect_string(&self) -> String {
        self.addr().to_string()
    }

    /// The secure client port (TLS), when [`Builder::tls`] configured one. It stays the same
    /// across [`Server::restart`].
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.builder
            .tls
            .as_ref()
            .map(|_| self.builder.secure_listen)
    }

    /// Stops listening and closes every connection. Data and sessions are kept for
    /// [`Server::restart`].
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let cfg = r.ctx.lock().core.config().clone();
            let db = r.stop().await;
            self.saved = Some((db, cfg));
            tracing::info!(addr = %self.addr(), "server stopped");
        }
    }

    /// Stops (if running) and starts again on the same port with the same data and sessions.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.stop().await;
        let Some((db, cfg)) = self.saved.take() else {
            return Err(Error::Config("nothing to restart".into()));
        };
        let core = match persist::prepare(&mut self.builder, cfg.clone()).await? {
            // With a data dir the restarted server recovers from disk, like a real one.
            core if self.builder.persist.data_dir.is_some() => core,
            _ => Core::with_db(cfg, db, now_ms()),
        };
        let mut core = core;
        if self.builder.forget_sessions_on_restart {
            let ids: Vec<i64> = core.db().sessions.keys().copied().collect();
            for id in ids {
                core.expire_session(id, now_ms());
            }
        }
        let running = Running::start(&self.builder, self.addr(), core).await?;
        self.running = Some(running);
        Ok(())
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    fn ctx(&self) -> Option<&Arc<Ctx>> {
        self.running.as_ref().map(|r| &r.ctx)
    }

    /// Expires a session now, like the server's session tracker would: ephemerals deleted,
    /// watchers notified, its connection closed. False if there is no such session.
    pub fn expire_session(&self, session_id: i64) -> bool {
        self.ctx()
            .is_some_and(|c| c.with_core(|core| core.expire_session(session_id, now_ms())))
    }

    /// Closes the connection of a session (the session survives; the client can reconnect).
    pub fn close_session_connection(&self, session_id: i64) -> bool {
        self.ctx()
            .is_some_and(|c| c.with_core(|core| core.close_session_connection(session_id)))
    }

    /// Closes every client connection.
    pub fn close_all_connections(&self) {
        if let Some(c) = self.ctx() {
            c.with_core(|core| core.close_all_connections());
        }
    }

    /// Stops answering (a stalled server) until [`Server::resume`].
    pub fn pause_responses(&self) {
        if let Some(c) = self.ctx() {
            let _ = c.paused.send(true);
            tracing::info!("server paused");
        }
    }

    /// Stops answering for `d`, then resumes by itself.
    pub fn pause(&self, d: Duration) {
        if let Some(c) = self.ctx() {
            net::pause_for(c, d);
        }
    }

    /// Resumes after a pause; sessions get a full timeout from now.
    pub fn resume(&self) {
        if let Some(c) = self.ctx() {
            net::resume(c);
        }
    }

    /// Live sessions.
    pub fn sessions(&self) -> Vec<SessionSummary> {
        let Some(c) = self.ctx() else {
            return Vec::new();
        };
        c.lock()
            .core
            .sessions()
            .into_iter()
            .map(|s| SessionSummary {
                id: s.id,
                timeout: Duration::from_millis(s.timeout.max(0) as u64),
                connected: s.conn.is_some(),
                ephemerals: s.ephemerals,
            })
            .collect()
    }

    /// Registered watches.
    pub fn watches(&self) -> Vec<WatchSummary> {
        let Some(c) = self.ctx() else {
            return Vec::new();
        };
        let g = c.lock();
        g.core
            .watch_manager()
            .list()
            .into_iter()
            .map(|(conn, path, kind)| WatchSummary {
                session: g.core.session_of(conn),
                path,
                kind,
            })
            .collect()
    }

    /// Open client connections (four-letter-word connections excluded) with their outbound
    /// queues: what a client that does not read costs the server.
    pub fn connections(&self) -> Vec<ConnectionSummary> {
        let Some(c) = self.ctx() else {
            return Vec::new();
        };
        let g = c.lock();
        g.core
            .connections()
            .map(|(id, info)| {
                let q = g.conns.get(id).map(|o| o.stats()).unwrap_or_default();
                ConnectionSummary {
                    remote: info.remote,
                    session: info.session,
                    queued_bytes: q.bytes,
                    queued_frames: q.frames,
                    peak_queued_bytes: q.peak,
                }
            })
            .collect()
    }

    /// The bound of each connection's outbound queue (see [`Builder::max_queued_bytes`]).
    pub fn max_queued_bytes(&self) -> usize {
        self.builder.max_queued_bytes
    }

    /// Every znode at or below `root`, by full path, exactly as the server holds it (None when
    /// the server is not running; empty when `root` does not exist). For comparing trees across
    /// restarts, crashes and restores.
    pub fn znodes(&self, root: &str) -> Option<BTreeMap<String, Znode>> {
        let c = self.ctx()?;
        let g = c.lock();
        Some(znodes_of(&g.core.db().tree, root))
    }

    /// The replicated session table: every live session and the timeout it was created with
    /// (what a snapshot stores). Empty when the server is not running.
    pub fn session_table(&self) -> BTreeMap<i64, Duration> {
        let Some(c) = self.ctx() else {
            return BTreeMap::new();
        };
        c.lock()
            .core
            .db()
            .sessions
            .iter()
            .map(|(id, to)| (*id, Duration::from_millis((*to).max(0) as u64)))
            .collect()
    }
}

/// Every node of `tree` at or below `root`, by full path.
pub(crate) fn znodes_of(tree: &DataTree, root: &str) -> BTreeMap<String, Znode> {
    let extended = tree.extended_types();
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let Some(n) = tree.get(&p) else { continue };
        let children = n.children.iter_order();
        stack.extend(children.iter().map(|c| join(&p, c)));
        let z = Znode {
            data: n.data.clone(),
            acl: n.acl.to_vec(),
            stat: n.stat,
            kind: NodeKind::of(n.stat.ephemeral_owner, extended),
            children,
        };
        out.insert(p, z);
    }
    out
}

/// One znode as listed by [`Server::znodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Znode {
    /// Data (`None` when created with a null buffer).
    pub data: Option<Bytes>,
    /// ACL.
    pub acl: Vec<Acl>,
    /// The Stat as ZooKeeper persists it.
    pub stat: StatPersisted,
    /// Persistent, ephemeral, container or TTL.
    pub kind: NodeKind,
    /// Child names, in the order getChildren returns them.
    pub children: Vec<String>,
}
