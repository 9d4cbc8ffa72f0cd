//! [`Builder`]: a [`Server`]'s settings, then `start`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{fresh_secret, persist, Error, Running, Server};
use crate::core::{Config, Secret};
use crate::net::{self, FourLetterWords, ServerTls};

/// Configures a [`Server`].
#[derive(Debug, Clone)]
pub struct Builder {
    pub(crate) listen: SocketAddr,
    pub(crate) tick_time: Duration,
    pub(crate) min_session_timeout: Option<Duration>,
    pub(crate) max_session_timeout: Option<Duration>,
    pub(crate) max_packet: usize,
    pub(crate) super_digest: Option<String>,
    pub(crate) extended_types: bool,
    pub(crate) four_letter_words: FourLetterWords,
    pub(crate) handshake_timeout: Duration,
    pub(crate) reap_interval: Duration,
    pub(crate) max_queued_bytes: usize,
    pub(crate) max_client_cnxns: usize,
    pub(crate) forget_sessions_on_restart: bool,
    /// Read-only mode of an ensemble's members (`readonlymode.enabled`).
    pub(crate) read_only: bool,
    /// Persistence: data dir, options, backup to seed it from (see `persist`).
    pub(super) persist: persist::PersistConfig,
    /// The secure client port's TLS settings (none: no secure port).
    pub(crate) tls: Option<ServerTls>,
    /// Address of the secure client port.
    pub(crate) secure_listen: SocketAddr,
    /// Whether only the secure port listens.
    pub(crate) secure_only: bool,
    /// DIGEST-MD5 users (SASL).
    pub(crate) sasl_users: BTreeMap<String, String>,
    /// The SASL name that is super.
    pub(crate) sasl_super_user: Option<String>,
    /// Whether clients must authenticate with SASL.
    pub(crate) require_sasl: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tick_time: Duration::from_millis(2000),
            min_session_timeout: None,
            max_session_timeout: None,
            max_packet: zkit_proto::frame::DEFAULT_MAX_PACKET,
            super_digest: None,
            extended_types: false,
            four_letter_words: FourLetterWords::default(),
            handshake_timeout: Duration::from_secs(10),
            reap_interval: Duration::from_millis(100),
            max_queued_bytes: net::DEFAULT_MAX_QUEUED_BYTES,
            max_client_cnxns: net::DEFAULT_MAX_CLIENT_CNXNS,
            forget_sessions_on_restart: false,
            read_only: false,
            persist: Default::default(),
            tls: None,
            secure_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            secure_only: false,
            sasl_users: BTreeMap::new(),
            sasl_super_user: None,
            require_sasl: false,
        }
    }
}

impl Builder {
    /// Address to listen on (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// tickTime (default 2 s); session timeout bounds default to 2× and 20× it.
    pub fn tick_time(mut self, d: Duration) -> Self {
        self.tick_time = d;
        self
    }
    /// Lowest negotiable session timeout.
    pub fn min_session_timeout(mut self, d: Duration) -> Self {
        self.min_session_timeout = Some(d);
        self
    }
    /// Highest negotiable session timeout.
    pub fn max_session_timeout(mut self, d: Duration) -> Self {
        self.max_session_timeout = Some(d);
        self
    }
    /// Largest accepted request (default 0xfffff, like `jute.maxbuffer`).
    pub fn max_packet(mut self, bytes: usize) -> Self {
        self.max_packet = bytes;
        self
    }
    /// A `user:BASE64` digest (ZooKeeper's superDigest) whose holder bypasses ACLs.
    pub fn super_digest(mut self, digest: impl Into<String>) -> Self {
        self.super_digest = Some(digest.into());
        self
    }
    /// Enables TTL nodes (`zookeeper.extendedTypesEnabled`).
    pub fn extended_types(mut self, on: bool) -> Self {
        self.extended_types = on;
        self
    }
    /// Enabled four-letter words (default `srvr`, like a real server): a [`FourLetterWords`]
    /// or a list such as `"ruok,srvr,mntr"` (`"*"` for all).
    pub fn four_letter_words(mut self, words: impl Into<FourLetterWords>) -> Self {
        self.four_letter_words = words.into();
        self
    }
    /// How long a new connection may stay silent before its ConnectRequest (default 10 s).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }
    /// How often empty containers and expired TTL nodes are reaped (default 100 ms; a real
    /// server checks every 60 s).
    pub fn reap_interval(mut self, d: Duration) -> Self {
        self.reap_interval = d;
        self
    }

    /// Bound of each connection's outbound queue in bytes (default 4 MiB). While more is queued
    /// the connection reads no more requests; a connection whose unread watch notifications
    /// would take it past twice the bound is closed (its session survives).
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes.max(1);
        self
    }
    /// Connections one client IP address may hold at once, like ZooKeeper's `maxClientCnxns`
    /// (default 60; 0 = unlimited). Connections past it are closed as soon as accepted.
    pub fn max_client_cnxns(mut self, n: usize) -> Self {
        self.max_client_cnxns = n;
        self
    }

    /// Fault: [`Server::restart`] forgets every session (their ephemerals go), and a client
    /// re-attaching one is answered with a brand-new session instead of "expired" — what
    /// ClickHouse Keeper does after a restart. Off by default.
    pub fn forget_sessions_on_restart(mut self, on: bool) -> Self {
        self.forget_sessions_on_restart = on;
        self
    }

    /// Read-only mode for the members of an ensemble (see `Ensemble`'s builder).
    pub(crate) fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// Opens a secure client port (TLS) beside the plain one, like ZooKeeper's
    /// `secureClientPort`; see [`Server::secure_addr`].
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }
    /// Address of the secure client port (default `127.0.0.1:0`).
    pub fn secure_listen(mut self, addr: SocketAddr) -> Self {
        self.secure_listen = addr;
        self
    }
    /// With [`tls`](Self::tls): no plain client port at all, only the secure one
    /// ([`Server::addr`] is then the secure port).
    pub fn secure_only(mut self, yes: bool) -> Self {
        self.secure_only = yes;
        self
    }

    /// Accepts SASL DIGEST-MD5 logins of these users, like a real server whose JAAS `Server`
    /// section lists `user_<name>="<password>"`; an authenticated connection holds the id
    /// `sasl:<name>`.
    ///
    /// ```
    /// let b = zkit_testkit::Server::builder().sasl_digest_users([("bob", "secret")]);
    /// # let _ = b;
    /// ```
    pub fn sasl_digest_users<U, P>(mut self, users: impl IntoIterator<Item = (U, P)>) -> Self
    where
        U: Into<String>,
        P: Into<String>,
    {
        self.sasl_users
            .extend(users.into_iter().map(|(u, p)| (u.into(), p.into())));
        self
    }
    /// The SASL name that bypasses ACLs, like `zookeeper.superUser`.
    pub fn sasl_super_user(mut self, name: impl Into<String>) -> Self {
        self.sasl_super_user = Some(name.into());
        self
    }
    /// Refuses every request of a connection that has not authenticated with SASL
    /// (`SessionClosedRequireSaslAuth`, then the connection is closed), like
    /// `zookeeper.sessionRequireClientSASLAuth=true`.
    pub fn require_sasl(mut self, yes: bool) -> Self {
        self.require_sasl = yes;
        self
    }

    pub(crate) fn core_config(&self, secret: Secret) -> Result<Config, Error> {
        let tick = self.tick_time.as_millis().clamp(1, i32::MAX as u128) as i32;
        let min = self
            .min_session_timeout
            .map_or(tick.saturating_mul(2), |d| {
                d.as_millis().min(i32::MAX as u128) as i32
            });
        let max = self
            .max_session_timeout
            .map_or(tick.saturating_mul(20), |d| {
                d.as_millis().min(i32::MAX as u128) as i32
            });
        if min > max {
            return Err(Error::Config(format!(
                "min session timeout {min} ms exceeds max {max} ms"
            )));
        }
        Ok(Config {
            tick_time: tick,
            min_session_timeout: min,
            max_session_timeout: max,
            super_digest: self.super_digest.clone(),
            extended_types: self.extended_types,
            secret,
            session_passwords: crate::core::PasswordScheme::Keyed,
            proposal_digests: false,
            reap_interval: self.reap_interval.as_millis() as i64,
            renew_unknown_sessions: self.forget_sessions_on_restart,
            read_only: self.read_only,
            sasl_users: self.sasl_users.clone(),
            sasl_super_user: self.sasl_super_user.clone(),
            require_sasl: self.require_sasl,
        })
    }

    /// Starts the server.
    pub async fn start(mut self) -> Result<Server, Error> {
        // Session passwords are keyed by a secret the core does not draw itself. With a data dir
        // `prepare` keeps the one stored there (this one is stored when there is none yet).
        let cfg = self.core_config(fresh_secret()?)?;
        let core = persist::prepare(&mut self, cfg).await?;
        let running = Running::start(&self, self.listen, core).await?;
        // A restart keeps the secure port too.
        if let Some(a) = running.secure_addr {
            self.secure_listen = a;
        }
        Ok(Server {
            builder: self,
            running: Some(running),
            addr: None,
            saved: None,
        })
        .map(|mut s| {
            s.addr = s.running.as_ref().map(|r| r.ctx.local_addr);
            s
        })
    }
}
