//! [`Client`]: a cheap `Clone` handle with one method per ZooKeeper operation.
//!
//! `mod.rs` holds the handle and its plumbing, `builder.rs` the [`ClientBuilder`], `nodes.rs`
//! the node operations and `admin.rs` transactions, watches, auth and configuration.
//!
//! Every method queues its request when it is *called* (not when the returned future is first
//! polled), so requests reach the server in call order and many can be in flight at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::driver::{Channels, Command, PendingWatch, Request, SessionInfo};
use crate::error::{Error, Result};
use crate::ops::{Op, OpResult, ReadOp, ReadResult};
use crate::options::{ClientOptions, CreateOptions};
use crate::reply::{ReplyFuture, ReplyPool};
use crate::session::watches::{Sink, WatchKind};
use crate::session::{Body, Create, SessionState};
use crate::watcher::{strip_chroot, OneshotWatcher, PersistentWatcher, Registration, StateStream};
use zkit_proto::path::validate_path;
use zkit_proto::*;

mod admin;
mod builder;
mod nodes;
mod tree;

pub use builder::ClientBuilder;
pub use tree::DELETE_ALL_BATCH;

#[derive(Debug)]
struct Inner {
    cmd: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<SessionState>,
    changes: tokio::sync::broadcast::Sender<SessionState>,
    info: watch::Receiver<SessionInfo>,
    opts: Arc<ClientOptions>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Where requests' answers come back (shared with the driver).
    replies: Arc<ReplyPool>,
    /// Where the common requests are encoded, straight from the caller's arguments; each
    /// request's record is split off (no allocation until the buffer's space is used up).
    enc: Mutex<BytesMut>,
}

/// How much the encoding buffer grows by when it runs out of space.
const ENC_CHUNK: usize = 64 * 1024;

/// A ZooKeeper client: one session, one connection at a time, many requests in flight.
///
/// Requests are queued when a method is called: while connected they are written at once;
/// while disconnected they wait for the next connection, and one whose future was dropped (or
/// timed out) meanwhile is not sent.
///
/// Cheap to clone; all clones share the session. When the last clone (and every watcher) is
/// dropped, the session is closed in the background; call [`close`](Client::close) to wait for it.
///
/// ```no_run
/// # async fn f() -> zkit::Result<()> {
/// use zkit::{Client, CreateOptions};
/// let zk = Client::connect("127.0.0.1:2181").await?;
/// let (path, _stat) = zk.create("/greeting", b"hello", &CreateOptions::persistent()).await?;
/// let (data, stat) = zk.get_data(&path).await?;
/// assert_eq!(&data[..], b"hello");
/// zk.set_data(&path, b"bye", Some(stat.version)).await?;
/// zk.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// The prefix of every path this handle sends: the connect string's chroot, extended by
    /// [`chroot`](Client::chroot) on derived handles (all of which share `inner`).
    chroot: Option<Arc<str>>,
}

fn version(v: Option<i32>) -> i32 {
    v.unwrap_or(-1)
}

impl Client {
    /// Connects with default options.
    pub async fn connect(connect_string: &str) -> Result<Client> {
        Self::builder(connect_string).connect().await
    }

    /// A builder for a client with options.
    pub fn builder(connect_string: &str) -> ClientBuilder {
        ClientBuilder {
            connect: connect_string.to_owned(),
            opts: ClientOptions::default(),
            auth: Vec::new(),
            resume: None,
            tls: None,
            sasl: None,
        }
    }

    /// The session id (`0x…` in logs).
    pub fn session_id(&self) -> i64 {
        self.inner.info.borrow().id
    }

    /// The session password (with the id, enough to re-attach the session).
    pub fn session_password(&self) -> Bytes {
        self.inner.info.borrow().passwd.clone()
    }

    /// The timeout the server granted.
    pub fn negotiated_timeout(&self) -> Duration {
        self.inner.info.borrow().timeout
    }

    /// The server currently connected to, if any.
    pub fn connected_server(&self) -> Option<std::net::SocketAddr> {
        self.inner.info.borrow().server
    }

    /// The current session state.
    pub fn state(&self) -> SessionState {
        *self.inner.state.borrow()
    }

    /// The session state as a [`Watched`](crate::Watched) value: the current state,
    /// `changed().await`, `wait_for(..)`. Intermediate states may be skipped; for every
    /// transition use [`state_changes`](Self::state_changes).
    pub fn state_watch(&self) -> crate::Watched<SessionState> {
        crate::Watched::new(self.inner.state.clone())
    }

    /// Replaces the host list (`host:port[,host:port...]`, like a connect string without a
    /// chroot; kazoo's `set_hosts`). The current connection is kept; the next connection
    /// attempt (after a loss, or now if the client is between attempts) picks from the new
    /// list, shuffled. Every handle of the session is affected. A chroot in `hosts` is
    /// refused (`BadArguments`): it belongs to the handle, see [`chroot`](Self::chroot).
    pub fn set_hosts(&self, hosts: &str) -> Result<()> {
        let cs: crate::options::ConnectString = hosts.parse()?;
        if cs.chroot.is_some() {
            return Err(Error::BadArguments(
                "set_hosts takes hosts only, no chroot".into(),
            ));
        }
        self.inner
            .cmd
            .send(Command::SetHosts(crate::options::HostList::new(cs.hosts)))
            .map_err(|_| Error::Closed)
    }

    /// Waits until the client is connected (at once if it is). Fails with the session's error
    /// if the session ends first (`SessionExpired`, `AuthFailed`, `Closed`), even on a client
    /// that re-creates sessions: whatever the caller built on the old session is gone.
    pub async fn wait_connected(&self) -> Result<()> {
        let mut rx = self.inner.state.clone();
        let seen = rx
            .wait_for(|s| s.is_connected() || s.is_terminal())
            .await
            .map(|s| *s);
        match seen {
            Ok(s) if s.is_connected() => Ok(()),
            Ok(s) => Err(s.terminal_error().unwrap_or(Error::Closed)),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Every state transition from now on, as a stream.
    pub fn state_changes(&self) -> StateStream {
        StateStream::new(self.inner.changes.subscribe())
    }

    /// Whether this client creates a new session by itself after expiry
    /// ([`ClientBuilder::recreate_on_expiry`]).
    pub fn recreates_on_expiry(&self) -> bool {
        self.inner.opts.recreate_on_expiry
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// The chroot of this handle: the connect string's, extended by any
    /// [`chroot`](Self::chroot) that derived it; `None` when paths go to the server as they are.
    pub fn chroot_path(&self) -> Option<&str> {
        self.chroot.as_deref()
    }

    /// A handle on the same session whose paths are relative to `path` (itself relative to
    /// this handle's chroot), like Curator's `usingNamespace`. Everything is shared (session,
    /// connection, watches, auth, state); only the prefix differs: requests are sent under
    /// it, and paths in replies, watch events and created names come back relative to it.
    /// The node at `path` is not created (see [`create_all`](Self::create_all)).
    ///
    /// ```no_run
    /// # async fn f(zk: zkit::Client) -> zkit::Result<()> {
    /// let app = zk.chroot("/apps/billing")?;
    /// app.create_all("/jobs", b"", &zkit::CreateOptions::persistent()).await?;
    /// assert!(zk.exists("/apps/billing/jobs").await?.is_some());
    /// assert_eq!(app.chroot_path(), Some("/apps/billing"));
    /// # Ok(()) }
    /// ```
    pub fn chroot(&self, path: &str) -> Result<Client> {
        validate_path(path, false)?;
        let chroot = match (&self.chroot, path) {
            (c, "/") => c.clone(),
            (None, p) => Some(Arc::from(p)),
            (Some(c), p) => Some(Arc::from(format!("{c}{p}").as_str())),
        };
        Ok(Client {
            inner: self.inner.clone(),
            chroot,
        })
    }

    fn server_path(&self, path: &str, sequential: bool) -> Result<String> {
        validate_path(path, sequential)?;
        Ok(match &self.chroot {
            None => path.to_owned(),
            Some(c) if path == "/" => c.to_string(),
            Some(c) => format!("{c}{path}"),
        })
    }

    fn strip(&self, path: String) -> String {
        strip_chroot(self.chroot.as_deref(), path)
    }

    /// Queues a request; the future resolves to the reply's record bytes.
    fn send(&self, body: Body, watch: Option<PendingWatch>) -> ReplyFuture {
        let (tx, rx) = self.inner.replies.channel();
        // If the driver is gone the request (and its reply slot) is dropped here, and the
        // future fails with the session's terminal error.
        let _ = self
            .inner
            .cmd
            .send(Command::Request(Request::new(body, watch, tx)));
        ReplyFuture::new(rx, self.inner.opts.request_timeout)
    }

    /// Encodes a request record that starts with `path` (chrooted; validated first), then
    /// whatever `rest` appends, and queues it: the common requests' path to the server, with
    /// no allocation per request.
    fn send_encoded(
        &self,
        op: OpCode,
        path: &str,
        sequential: bool,
        rest: impl FnOnce(&mut BytesMut),
    ) -> Result<ReplyFuture> {
        validate_path(path, sequential)?;
        let record = {
            let mut b = self.inner.enc.lock().unwrap_or_else(|p| p.into_inner());
            if b.capacity() - b.len() < 1024 {
                b.reserve(ENC_CHUNK);
            }
            match &self.chroot {
                None => b.put_string(path),
                Some(c) => {
                    let tail = if path == "/" { "" } else { path };
                    b.put_i32((c.len() + tail.len()) as i32);
                    b.put_slice(c.as_bytes());
                    b.put_slice(tail.as_bytes());
                }
            }
            rest(&mut b);
            b.split().freeze()
        };
        Ok(self.send(Body::Encoded { op, record }, None))
    }

    /// A pending watch plus the handle parts for it.
    fn watch_parts(
        &self,
        server_path: &str,
        kind: WatchKind,
        sink: Sink<Channels>,
    ) -> (PendingWatch, Registration) {
        let id = next_watch_id();
        (
            PendingWatch {
                path: server_path.to_owned(),
                kind,
                id,
                sink,
            },
            Registration {
                cmd: self.inner.cmd.clone(),
                path: server_path.to_owned(),
                kind,
                id,
                chroot: self.chroot.clone(),
                epoch: self.inner.info.borrow().resyncs,
                info: self.inner.info.clone(),
            },
        )
    }

    fn oneshot_watch(&self, server_path: &str, kind: WatchKind) -> (PendingWatch, OneshotWatcher) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (pw, reg) = self.watch_parts(server_path, kind, Sink::Oneshot(tx));
        (pw, OneshotWatcher::new(rx, reg))
    }

    /// Closes the session: sends closeSession and waits for the reply (ephemerals are deleted
    /// by then). Every clone of this client is closed. While disconnected it closes at once
    /// without telling the server (like the Java client): the session and its ephemerals then
    /// live on until the server expires them.
    pub async fn close(&self) -> Result<()> {
        let (tx, rx) = self.inner.replies.channel();
        let _ = self.inner.cmd.send(Command::Close(tx));
        let r = match rx.await {
            Ok(Ok(_)) | Err(_) => Ok(()),
            Ok(Err(Error::ConnectionLoss)) | Ok(Err(Error::Closed)) => Ok(()),
            Ok(Err(e)) => Err(e),
        };
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = t.await;
        }
        r
    }

    async fn close_with_timeout(&self, t: Duration) -> Result<()> {
        match tokio::time::timeout(t, self.close()).await {
            Ok(r) => r,
            Err(_) => {
                if let Some(task) = self.inner.task.lock().ok().and_then(|mut t| t.take()) {
                    task.abort();
                }
                Ok(())
            }
        }
    }
}

fn exists_reply(r: Result<Bytes>) -> Result<Option<Stat>> {
    match r {
        Ok(body) => Ok(Some(StatResponse::from_bytes(body)?.stat)),
        Err(Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

fn next_watch_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
