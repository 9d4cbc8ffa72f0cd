//! Configures and starts an [`Ensemble`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::faults::{sid_of, Faults};
use super::node::{Node, Settings};
use super::Ensemble;
use crate::net::FourLetterWords;
use crate::persist::{secret, PersistOptions};
use crate::quorum::peer::PeerConfig;
use crate::quorum::shell::Listeners;
use crate::quorum::Sid;
use crate::server::{self, fresh_secret, Error};

/// Most members an ensemble may have: a session id carries its server id in one byte.
const MAX_MEMBERS: usize = 255;

/// How long the election waits, once a quorum agrees, for a better vote (ZooKeeper: 200 ms).
pub(super) const DEFAULT_FINALIZE_WAIT: Duration = Duration::from_millis(5);

/// Configures an [`Ensemble`]: how many voting servers and observers, where they keep their
/// data, and the timing of the quorum. Start it with [`Builder::start`].
///
/// ```no_run
/// use std::time::Duration;
/// # async fn f() -> Result<(), zkit_testkit::Error> {
/// let ensemble = zkit_testkit::Ensemble::builder()
///     .servers(3)
///     .observers(1)
///     .tick_time(Duration::from_millis(200))
///     .seed(42)
///     .start()
///     .await?;
/// # let _ = ensemble;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    servers: usize,
    observers: usize,
    data_dir: Option<PathBuf>,
    seed: Option<u64>,
    server: server::Builder,
    tick_time: Duration,
    init_limit: u64,
    sync_limit: u64,
    finalize_wait: Duration,
    patience: Duration,
    persist: PersistOptions,
    snap_threshold: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            servers: 3,
            observers: 0,
            data_dir: None,
            seed: None,
            server: server::Builder::default(),
            tick_time: Duration::from_millis(2000),
            init_limit: 10,
            sync_limit: 5,
            finalize_wait: DEFAULT_FINALIZE_WAIT,
            patience: Duration::from_secs(60),
            persist: PersistOptions::default(),
            snap_threshold: 10_000,
        }
    }
}

impl Builder {
    /// Voting servers (default 3), server ids 1..=n, indexes 0..n.
    pub fn servers(mut self, n: usize) -> Self {
        self.servers = n;
        self
    }

    /// Observers (default 0): server ids and indexes after the voters'.
    pub fn observers(mut self, n: usize) -> Self {
        self.observers = n;
        self
    }

    /// Keeps each server's data in a ZooKeeper data dir, `DIR/s{index}` (recovered at start,
    /// kept across [`Ensemble::restart`]), and the session secret every server shares in
    /// `DIR/zkit-secret` (see [`crate::Builder::data_dir`]). In memory by default.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Log, snapshot and recovery settings of the data dirs.
    pub fn persist_options(mut self, opts: PersistOptions) -> Self {
        self.persist = opts;
        self
    }

    /// Seeds the link loss decisions ([`Ensemble::drop_rate`]); drawn from the operating
    /// system by default and reported by [`Ensemble::seed`]. The ensemble runs on real
    /// sockets and timers: the seed does not make a whole run repeatable.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// ZooKeeper's tickTime (default 2 s): the unit of the quorum's limits and of the session
    /// timeout bounds (2× and 20× it by default).
    pub fn tick_time(mut self, d: Duration) -> Self {
        self.tick_time = d;
        self.server = self.server.tick_time(d);
        self
    }

    /// Ticks a learner has to connect and sync with a new leader (`initLimit`, default 10).
    pub fn init_limit(mut self, ticks: u64) -> Self {
        self.init_limit = ticks.max(1);
        self
    }

    /// Ticks a synced member may stay silent before its leader drops it, or it drops its
    /// leader (`syncLimit`, default 5).
    pub fn sync_limit(mut self, ticks: u64) -> Self {
        self.sync_limit = ticks.max(1);
        self
    }

    /// How long the election waits, once a quorum agrees, for a better vote
    /// (`finalizeWait`; default 5 ms, ZooKeeper's is 200 ms).
    pub fn finalize_wait(mut self, d: Duration) -> Self {
        self.finalize_wait = d;
        self
    }

    /// The longest [`Ensemble::wait_for_leader`] and [`Ensemble::check_consistent`] wait
    /// (default 60 s: far more than an idle machine needs).
    pub fn patience(mut self, d: Duration) -> Self {
        self.patience = d;
        self
    }

    /// Lowest negotiable session timeout (default 2 × tickTime).
    pub fn min_session_timeout(mut self, d: Duration) -> Self {
        self.server = self.server.min_session_timeout(d);
        self
    }

    /// Highest negotiable session timeout (default 20 × tickTime).
    pub fn max_session_timeout(mut self, d: Duration) -> Self {
        self.server = self.server.max_session_timeout(d);
        self
    }

    /// Enabled four-letter words on every server (default `srvr`).
    pub fn four_letter_words(mut self, words: impl Into<FourLetterWords>) -> Self {
        self.server = self.server.four_letter_words(words);
        self
    }

    /// Enables TTL nodes (`zookeeper.extendedTypesEnabled`).
    pub fn extended_types(mut self, on: bool) -> Self {
        self.server = self.server.extended_types(on);
        self
    }

    /// Read-only mode, like ZooKeeper's `readonlymode.enabled` (default off): a member cut
    /// off from the quorum accepts the clients that ask for a read-only connection, answers
    /// their reads from the data it has and refuses writes with `NotReadOnly`.
    pub fn read_only(mut self, on: bool) -> Self {
        self.server = self.server.read_only(on);
        self
    }

    /// A learner further behind than this many txns is sent a snapshot (SNAP) instead of
    /// the txns it misses (default 10 000).
    #[cfg(test)]
    pub(crate) fn snap_threshold(mut self, txns: usize) -> Self {
        self.snap_threshold = txns;
        self
    }

    /// Starts every server: each recovers its disk, listens for clients on `127.0.0.1:0`
    /// (refusing them until it serves) and joins the election. Returns at once; see
    /// [`Ensemble::wait_for_leader`].
    pub async fn start(self) -> Result<Ensemble, Error> {
        let total = self.servers + self.observers;
        if self.servers == 0 || total > MAX_MEMBERS {
            return Err(Error::Config(format!(
                "an ensemble needs 1 to {MAX_MEMBERS} members with at least one voter \
                 ({} voters, {} observers)",
                self.servers, self.observers
            )));
        }
        let seed = match self.seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| Error::Random(e.to_string()))?;
                u64::from_le_bytes(b)
            }
        };
        let mut secret = fresh_secret()?;
        if let Some(dir) = self.data_dir.clone() {
            let fresh = secret.clone();
            secret = tokio::task::spawn_blocking(move || secret::load_or_create(&dir, &fresh))
                .await
                .map_err(|e| Error::Config(format!("secret task failed: {e}")))??;
        }
        let core = self.server.core_config(secret)?;
        let mut peer_cfg = quorum_config(
            (0..self.servers).map(sid_of).collect(),
            (self.servers..total).map(sid_of).collect(),
            self.tick_time,
            self.init_limit,
            self.sync_limit,
            self.finalize_wait,
        );
        peer_cfg.0.snap_threshold = self.snap_threshold;
        let (peer, tick_interval) = peer_cfg;
        let mut settings = Settings {
            server: self.server.clone(),
            core,
            peer,
            election_addrs: BTreeMap::new(),
            quorum_addrs: BTreeMap::new(),
            tick_interval,
            seed,
            persist: self.persist.clone(),
        };

        let mut nodes: Vec<Node> = (0..total)
            .map(|i| {
                let dir = self.data_dir.as_ref().map(|d| d.join(format!("s{i}")));
                Node::new(i, sid_of(i), i >= self.servers, dir)
            })
            .collect();
        let mut listeners = Vec::with_capacity(total);
        for n in &nodes {
            let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let l = Listeners::bind_loopback()
                .await
                .map_err(|source| Error::Bind { addr: any, source })?;
            let bind = |source| Error::Bind { addr: any, source };
            settings
                .election_addrs
                .insert(n.sid, l.election_addr().map_err(bind)?);
            settings
                .quorum_addrs
                .insert(n.sid, l.quorum_addr().map_err(bind)?);
            listeners.push(l);
        }
        // Members recover their data dirs and bind their client ports side by side.
        let prepared =
            futures::future::try_join_all(nodes.iter_mut().map(|n| n.prepare(&settings))).await?;
        let entries: Vec<ConfigEntry> = nodes
            .iter()
            .map(|n| {
                let (q, e) = (
                    settings.quorum_addrs[&n.sid],
                    settings.election_addrs[&n.sid],
                );
                ConfigEntry {
                    sid: n.sid,
                    host: q.ip().to_string(),
                    quorum_port: q.port(),
                    election_port: e.port(),
                    observer: n.observer,
                    client: Some(n.client_addr.to_string()),
                }
            })
            .collect();
        settings.peer.config = config_text(&entries);
        let progress = watch::channel(0u64).0;
        for ((n, l), p) in nodes.iter_mut().zip(listeners).zip(prepared) {
            n.launch(&settings, l, p, &progress);
        }
        tracing::info!(
            voters = self.servers,
            observers = self.observers,
            seed,
            "ensemble started"
        );
        Ok(Ensemble {
            settings,
            nodes,
            progress,
            faults: Faults::default(),
            patience: self.patience,
            data_dir: self.data_dir,
        })
    }
}

/// The quorum settings every member shares (its own id is set per member), and how often a
/// peer is ticked: a fraction of the smallest timeout it keeps.
pub(super) fn quorum_config(
    voters: BTreeSet<Sid>,
    observers: BTreeSet<Sid>,
    tick_time: Duration,
    init_limit: u64,
    sync_limit: u64,
    finalize_wait: Duration,
) -> (PeerConfig, Duration) {
    let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
    let tick_ms = ms(tick_time).max(1);
    let finalize_ms = ms(finalize_wait);
    let peer = PeerConfig {
        id: 0,
        voters,
        observers,
        tick_time: tick_ms,
        init_limit: init_limit.max(1),
        sync_limit: sync_limit.max(1),
        finalize_wait: finalize_ms,
        max_notification_interval: 500,
        snap_threshold: 10_000,
        config: Bytes::new(),
    };
    let tick_interval = Duration::from_millis((tick_ms / 10).min(finalize_ms.max(1)).clamp(2, 50));
    (peer, tick_interval)
}

/// One member as the ensemble's configuration lists it.
#[derive(Debug, Clone)]
pub(super) struct ConfigEntry {
    pub sid: Sid,
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub observer: bool,
    /// Its client address, when known.
    pub client: Option<String>,
}

/// The ensemble's configuration as ZooKeeper's `QuorumVerifier` writes it (what
/// notifications and NEWLEADER carry, and `/zookeeper/config` shows).
pub(super) fn config_text(entries: &[ConfigEntry]) -> Bytes {
    let mut t = String::new();
    for n in entries {
        let kind = if n.observer {
            "observer"
        } else {
            "participant"
        };
        let _ = write!(
            t,
            "server.{}={}:{}:{}:{kind}",
            n.sid, n.host, n.quorum_port, n.election_port
        );
        if let Some(c) = &n.client {
            let _ = write!(t, ";{c}");
        }
        t.push('\n');
    }
    t.push_str("version=0");
    Bytes::from(t)
}
