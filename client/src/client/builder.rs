//! [`ClientBuilder`]: options, then `connect`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};

use super::{Client, Inner};
use crate::driver::{Command, Driver, Publish};
use crate::error::{Error, Result};
use crate::options::{ClientOptions, ConnectString, HostList};
use crate::reply::ReplyPool;
use crate::sasl::SaslConfig;
use crate::session::{Session, SessionConfig};
use crate::tls::TlsConfig;

/// Builds a [`Client`].
///
/// ```no_run
/// # async fn f() -> zkit::Result<()> {
/// use std::time::Duration;
/// let client = zkit::Client::builder("127.0.0.1:2181/app")
///     .session_timeout(Duration::from_secs(10))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    pub(super) connect: String,
    pub(super) opts: ClientOptions,
    pub(super) auth: Vec<(String, Bytes)>,
    pub(super) resume: Option<(i64, Bytes)>,
    pub(super) tls: Option<TlsConfig>,
    pub(super) sasl: Option<SaslConfig>,
}

impl ClientBuilder {
    /// Requested session timeout (default 30 s; the server clamps it).
    pub fn session_timeout(mut self, t: Duration) -> Self {
        self.opts.session_timeout = t;
        self
    }
    /// How long [`connect`](Self::connect) waits for a session (default 30 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.opts.connect_timeout = t;
        self
    }
    /// Fail a request with `RequestTimeout` if unanswered for this long. A request that times
    /// out while the client is disconnected is not sent after the reconnect.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.opts.request_timeout = Some(t);
        self
    }
    /// Accept read-only servers.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.opts.read_only = yes;
        self
    }
    /// Create a new session automatically after expiry (default: on). `Expired` is still
    /// reported, then `Connected` with the new session id. Turn it off (`false`) for a client
    /// whose expiry must be final: every request and watcher then fails with `SessionExpired`.
    pub fn recreate_on_expiry(mut self, yes: bool) -> Self {
        self.opts.recreate_on_expiry = yes;
        self
    }
    /// Largest frame accepted from the server (default 0xfffff like `jute.maxbuffer`).
    pub fn max_packet(mut self, bytes: usize) -> Self {
        self.opts.max_packet = bytes;
        self
    }
    /// Reconnect backoff: first step and cap.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.opts.backoff_base = base;
        self.opts.backoff_max = max;
        self
    }
    /// Re-attaches an existing session (id and password from [`Client::session_id`] and
    /// [`Client::session_password`]) instead of creating a new one. If it has expired,
    /// `connect` fails with `SessionExpired`.
    pub fn resume_session(mut self, session_id: i64, password: impl Into<Bytes>) -> Self {
        self.resume = Some((session_id, password.into()));
        self
    }
    /// An auth credential sent right after the session is established (and after reconnects).
    pub fn auth(mut self, scheme: &str, auth: impl Into<Bytes>) -> Self {
        self.auth.push((scheme.to_owned(), auth.into()));
        self
    }

    /// Speaks TLS to every server (all hosts, every reconnect): the connect string's ports
    /// must be the servers' secure client ports. A certificate problem fails
    /// [`connect`](Self::connect) with [`Error::Tls`].
    ///
    /// ```no_run
    /// # async fn f() -> zkit::Result<()> {
    /// let ca = std::fs::read("ca.pem").unwrap();
    /// let zk = zkit::Client::builder("zk1.example.com:2281")
    ///     .tls(zkit::TlsConfig::new(ca))
    ///     .connect()
    ///     .await?;
    /// # let _ = zk; Ok(()) }
    /// ```
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Authenticates every connection with SASL before anything else is sent (see
    /// [`SaslConfig`]). A refusal fails [`connect`](Self::connect) with
    /// [`Error::AuthFailed`]; after a reconnect it moves the session to `AuthFailed`.
    pub fn sasl(mut self, config: SaslConfig) -> Self {
        self.sasl = Some(config);
        self
    }

    /// Connects and waits until the session is established (or fails after the connect timeout).
    pub async fn connect(self) -> Result<Client> {
        let cs: ConnectString = self.connect.parse()?;
        let mut opts = self.opts;
        if let Some(tls) = &self.tls {
            opts.tls = Some(tls.connector()?);
        }
        let opts = Arc::new(opts);
        let publish = Publish::new();
        let state_rx = publish.state.subscribe();
        let changes = publish.changes.clone();
        let info = publish.info.subscribe();
        let mut session = Session::new(
            SessionConfig {
                timeout: opts.session_timeout,
                read_only: opts.read_only,
                max_packet: opts.max_packet,
                recreate_on_expiry: opts.recreate_on_expiry,
            },
            tokio::time::Instant::now().into_std(),
        );
        if let Some(sasl) = self.sasl {
            session.set_sasl(sasl);
        }
        if let Some((id, pw)) = self.resume {
            session.resume(id, pw);
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (first_tx, first_rx) = oneshot::channel();
        let driver = Driver::new(
            session,
            HostList::new(cs.hosts.clone()),
            opts.clone(),
            cmd_rx,
            publish,
            first_tx,
        );
        let replies = ReplyPool::new(state_rx.clone());
        let mut auth_waiters = Vec::new();
        for (scheme, auth) in self.auth {
            let (tx, rx) = replies.channel();
            let _ = cmd_tx.send(Command::Auth {
                scheme,
                auth,
                waiter: tx,
            });
            auth_waiters.push(rx);
        }
        let task = tokio::spawn(driver.run());
        let client = Client {
            inner: Arc::new(Inner {
                cmd: cmd_tx,
                state: state_rx,
                changes,
                info,
                opts: opts.clone(),
                task: Mutex::new(Some(task)),
                replies,
                enc: Mutex::new(BytesMut::new()),
            }),
            chroot: cs.chroot.map(Arc::from),
        };
        match tokio::time::timeout(opts.connect_timeout, first_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err(Error::Closed),
            Err(_) => {
                let why = client
                    .inner
                    .info
                    .borrow()
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no server answered".into());
                let _ = client.close_with_timeout(Duration::from_millis(100)).await;
                return Err(Error::ConnectFailed(format!(
                    "no session within {:?}: {why}",
                    opts.connect_timeout
                )));
            }
        }
        for w in auth_waiters {
            w.await??;
        }
        Ok(client)
    }
}
