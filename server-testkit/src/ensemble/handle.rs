//! A look at one member of an [`Ensemble`](super::Ensemble): its address, how it serves,
//! its role in the quorum, and its state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::node::Node;
use crate::core::Mode;
use crate::quorum::peer::Role;
use crate::server::{znodes_of, SessionSummary, Znode};

/// How a member serves its clients, as its core says (what `srvr` reports as `Mode:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerMode {
    /// The established leader.
    Leader,
    /// A follower in broadcast.
    Follower,
    /// An observer in broadcast.
    Observer,
    /// Running, not serving: electing or syncing (clients are refused).
    NotServing,
    /// Serving on its own, without replication (only a core that does not replicate yet
    /// reports this).
    Standalone,
    /// Killed or stopped.
    Down,
}

impl ServerMode {
    /// ZooKeeper's name of the mode (`leader`, `follower`, `observer`, `standalone`); `None`
    /// when the server does not serve.
    pub fn zookeeper_name(self) -> Option<&'static str> {
        match self {
            ServerMode::Leader => Some("leader"),
            ServerMode::Follower => Some("follower"),
            ServerMode::Observer => Some("observer"),
            ServerMode::Standalone => Some("standalone"),
            ServerMode::NotServing | ServerMode::Down => None,
        }
    }
}

/// A member's role in the quorum (leader election and ZAB), as its core was last told.
/// Members are named by their index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QuorumRole {
    /// Killed or stopped.
    Down,
    /// Electing.
    Looking,
    /// Leading.
    Leading {
        /// The ZAB epoch (0 until a quorum agreed on it).
        epoch: u32,
        /// Whether a quorum synced with it (broadcast: it serves).
        established: bool,
    },
    /// Following a leader.
    Following {
        /// The leader's index.
        leader: usize,
        /// Whether its sync with the leader finished (it serves).
        synced: bool,
    },
    /// Observing a leader.
    Observing {
        /// The leader's index.
        leader: usize,
        /// Whether its sync with the leader finished (it serves).
        synced: bool,
    },
}

impl QuorumRole {
    /// Whether the role serves clients (an established leader or a synced learner).
    pub fn is_serving(self) -> bool {
        matches!(
            self,
            QuorumRole::Leading {
                established: true,
                ..
            } | QuorumRole::Following { synced: true, .. }
                | QuorumRole::Observing { synced: true, .. }
        )
    }

    pub(super) fn of(role: Option<Role>) -> QuorumRole {
        let index = |sid: i64| (sid - 1).max(0) as usize;
        match role {
            None => QuorumRole::Down,
            Some(Role::Looking) => QuorumRole::Looking,
            Some(Role::Leading { epoch, established }) => {
                QuorumRole::Leading { epoch, established }
            }
            Some(Role::Following { leader, synced }) => QuorumRole::Following {
                leader: index(leader),
                synced,
            },
            Some(Role::Observing { leader, synced }) => QuorumRole::Observing {
                leader: index(leader),
                synced,
            },
        }
    }
}

/// One member of an [`Ensemble`](super::Ensemble), borrowed from it
/// ([`Ensemble::server`](super::Ensemble::server)).
///
/// ```no_run
/// # async fn f() -> Result<(), zkit_testkit::Error> {
/// let ensemble = zkit_testkit::Ensemble::builder().servers(3).start().await?;
/// let leader = ensemble.wait_for_leader().await?;
/// let server = ensemble.server(leader);
/// println!("{} at {} ({:?})", server.id(), server.addr(), server.mode());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ServerHandle<'a> {
    pub(super) node: &'a Node,
}

impl ServerHandle<'_> {
    /// Its index in the ensemble (0-based).
    pub fn index(&self) -> usize {
        self.node.index
    }

    /// Its server id (`myid`): `index + 1`.
    pub fn id(&self) -> i64 {
        self.node.sid
    }

    /// Whether it is an observer.
    pub fn is_observer(&self) -> bool {
        self.node.observer
    }

    /// Its client address (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.node.client_addr
    }

    /// `127.0.0.1:PORT`, for a client that must talk to this server only.
    pub fn connect_string(&self) -> String {
        self.addr().to_string()
    }

    /// Whether it is running (not killed or stopped).
    pub fn is_running(&self) -> bool {
        self.node.live.is_some()
    }

    /// How it serves, as its core says.
    pub fn mode(&self) -> ServerMode {
        let Some(ctx) = self.node.ctx() else {
            return ServerMode::Down;
        };
        let mode = ctx.lock().core.mode();
        match mode {
            Mode::Leader { .. } => ServerMode::Leader,
            Mode::Follower => ServerMode::Follower,
            Mode::Observer => ServerMode::Observer,
            Mode::NotServing => ServerMode::NotServing,
            Mode::Standalone => ServerMode::Standalone,
        }
    }

    /// Its role in the quorum, as its core was last told.
    pub fn role(&self) -> QuorumRole {
        if !self.is_running() {
            return QuorumRole::Down;
        }
        match self.node.view.borrow().role {
            // Started, its first role not applied yet: it starts electing.
            None => QuorumRole::Looking,
            role => QuorumRole::of(role),
        }
    }

    /// The sessions it knows (the replicated session table); `connected` says whether the
    /// session's client is connected to this server. Empty when down.
    pub fn sessions(&self) -> Vec<SessionSummary> {
        let Some(ctx) = self.node.ctx() else {
            return Vec::new();
        };
        ctx.lock()
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

    /// Every znode at or below `root` as this server holds it (None when down).
    pub fn znodes(&self, root: &str) -> Option<BTreeMap<String, Znode>> {
        let ctx = self.node.ctx()?;
        let g = ctx.lock();
        Some(znodes_of(&g.core.db().tree, root))
    }

    /// The zxid of the last txn its tree reflects (None when down).
    pub fn last_zxid(&self) -> Option<i64> {
        Some(self.node.ctx()?.lock().core.db().last_zxid)
    }

    /// The digest of its tree (ZooKeeper's digest; None when down).
    pub fn digest(&self) -> Option<i64> {
        Some(self.node.ctx()?.lock().core.digest())
    }

    /// The zxid its disk logged last, and the last one the disk made durable (None when
    /// down).
    pub fn logged_zxid(&self) -> Option<(i64, i64)> {
        self.node.status().map(|s| (s.last_zxid, s.synced))
    }
}
