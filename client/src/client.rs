//! [`Client`]: a cheap `Clone` handle with one method per ZooKeeper operation.
//!
//! Every method queues its request when it is *called* (not when the returned future is first
//! polled), so requests reach the server in call order and many can be in flight at once.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::driver::{Command, Driver, SessionInfo};
use crate::error::{Error, Result};
use crate::ops::{Op, OpResult, ReadOp, ReadResult};
use crate::options::{ClientOptions, ConnectString, CreateOptions, HostList};
use crate::proto::path::validate_path;
use crate::proto::*;
use crate::session::watches::{PendingWatch, Sink, WatchKind};
use crate::session::{Reply, Request, Session, SessionConfig, SessionState, StateTx};
use crate::watcher::{strip_chroot, OneshotWatcher, PersistentWatcher, Registration, StateStream};

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
    connect: String,
    opts: ClientOptions,
    auth: Vec<(String, Bytes)>,
    resume: Option<(i64, Bytes)>,
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
    /// Fail a request with `RequestTimeout` if unanswered for this long.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.opts.request_timeout = Some(t);
        self
    }
    /// Accept read-only servers.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.opts.read_only = yes;
        self
    }
    /// Create a new session automatically after expiry.
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

    /// Connects and waits until the session is established (or fails after the connect timeout).
    pub async fn connect(self) -> Result<Client> {
        let cs: ConnectString = self.connect.parse()?;
        let opts = Arc::new(self.opts);
        let state_tx = StateTx::new();
        let state_rx = state_tx.current.subscribe();
        let changes = state_tx.changes.clone();
        let mut session = Session::new(
            SessionConfig {
                timeout: opts.session_timeout,
                read_only: opts.read_only,
            },
            state_tx,
            tokio::time::Instant::now(),
        );
        if let Some((id, pw)) = self.resume {
            session.resume(id, pw);
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let info = Arc::new(Mutex::new(SessionInfo::default()));
        let (first_tx, first_rx) = oneshot::channel();
        let driver = Driver::new(
            session,
            HostList::new(cs.hosts.clone()),
            opts.clone(),
            cmd_rx,
            info.clone(),
            first_tx,
        );
        let mut auth_waiters = Vec::new();
        for (scheme, auth) in self.auth {
            let (tx, rx) = oneshot::channel();
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
                chroot: cs.chroot.map(Arc::from),
                opts: opts.clone(),
                task: Mutex::new(Some(task)),
            }),
        };
        match tokio::time::timeout(opts.connect_timeout, first_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err(Error::Closed),
            Err(_) => {
                let why = client
                    .inner
                    .info
                    .lock()
                    .ok()
                    .and_then(|i| i.last_error.clone())
                    .unwrap_or_else(|| "no server answered".into());
                let _ = client.close_with_timeout(Duration::from_millis(100)).await;
                return Err(Error::ConnectFailed(format!(
                    "no session within {:?}: {why}",
                    opts.connect_timeout
                )));
            }
        }
        for w in auth_waiters {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(Error::Closed),
            }
        }
        Ok(client)
    }
}

#[derive(Debug)]
struct Inner {
    cmd: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<SessionState>,
    changes: tokio::sync::broadcast::Sender<SessionState>,
    info: Arc<Mutex<SessionInfo>>,
    chroot: Option<Arc<str>>,
    opts: Arc<ClientOptions>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A ZooKeeper client: one session, one connection at a time, many requests in flight.
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
}

type Fut<T> = std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

fn ready<T: Send + 'static>(r: Result<T>) -> Fut<T> {
    Box::pin(std::future::ready(r))
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
        }
    }

    /// The session id (`0x…` in logs).
    pub fn session_id(&self) -> i64 {
        self.inner.info.lock().map(|i| i.id).unwrap_or(0)
    }

    /// The session password (with the id, enough to re-attach the session).
    pub fn session_password(&self) -> Bytes {
        self.inner
            .info
            .lock()
            .map(|i| i.passwd.clone())
            .unwrap_or_default()
    }

    /// The timeout the server granted.
    pub fn negotiated_timeout(&self) -> Duration {
        self.inner
            .info
            .lock()
            .map(|i| i.timeout)
            .unwrap_or_default()
    }

    /// The server currently connected to, if any.
    pub fn connected_server(&self) -> Option<std::net::SocketAddr> {
        self.inner.info.lock().ok().and_then(|i| i.server)
    }

    /// The current session state.
    pub fn state(&self) -> SessionState {
        *self.inner.state.borrow()
    }

    /// A watch receiver of the current state (for `changed().await` / `wait_for`).
    pub fn state_watch(&self) -> watch::Receiver<SessionState> {
        self.inner.state.clone()
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

    /// The chroot this client was built with.
    pub fn chroot(&self) -> Option<&str> {
        self.inner.chroot.as_deref()
    }

    fn server_path(&self, path: &str, sequential: bool) -> Result<String> {
        validate_path(path, sequential)?;
        Ok(match &self.inner.chroot {
            None => path.to_owned(),
            Some(c) if path == "/" => c.to_string(),
            Some(c) => format!("{c}{path}"),
        })
    }

    fn strip(&self, path: String) -> String {
        strip_chroot(self.inner.chroot.as_deref(), path)
    }

    fn send(&self, op: OpCode, body: Bytes, watch: Option<PendingWatch>) -> Fut<Reply> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inner.cmd.send(Command::Request(Request {
            op,
            body,
            watch,
            responder: Some(tx),
        }));
        let timeout = self.inner.opts.request_timeout;
        let state = self.inner.state.clone();
        Box::pin(async move {
            let r = match timeout {
                Some(t) => tokio::time::timeout(t, rx)
                    .await
                    .map_err(|_| Error::RequestTimeout)?,
                None => rx.await,
            };
            // The driver is gone once the session is over: say why (expired, auth failed), not
            // just "closed".
            let reply = r.map_err(|_| gone_error(&state))??;
            if reply.err != 0 {
                return Err(Error::from_code(reply.err));
            }
            Ok(reply)
        })
    }

    /// A pending watch plus the handle parts for it.
    fn watch_parts(
        &self,
        server_path: &str,
        kind: WatchKind,
        sink: Sink,
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
                chroot: self.inner.chroot.clone(),
            },
        )
    }

    fn oneshot_watch(&self, server_path: &str, kind: WatchKind) -> (PendingWatch, OneshotWatcher) {
        let (tx, rx) = oneshot::channel();
        let (pw, reg) = self.watch_parts(server_path, kind, Sink::Oneshot(tx));
        (pw, OneshotWatcher::new(rx, reg))
    }

    /// Creates a node; returns its path (with any sequence suffix) and Stat.
    ///
    /// The opcode follows the mode: createContainer for containers, createTTL for TTL modes,
    /// create2 otherwise.
    pub fn create(
        &self,
        path: &str,
        data: impl AsRef<[u8]>,
        options: &CreateOptions,
    ) -> impl Future<Output = Result<(String, Stat)>> + Send + 'static {
        let (op, body) = match self.create_request(path, data.as_ref(), options) {
            Ok(x) => x,
            Err(e) => return ready(Err(e)),
        };
        let fut = self.send(op, body, None);
        let this = self.clone();
        Box::pin(async move {
            let r = Create2Response::from_bytes(fut.await?.body)?;
            Ok((this.strip(r.path), r.stat))
        })
    }

    fn create_request(
        &self,
        path: &str,
        data: &[u8],
        o: &CreateOptions,
    ) -> Result<(OpCode, Bytes)> {
        let p = self.server_path(path, o.mode.is_sequential())?;
        let data = Some(Bytes::copy_from_slice(data));
        if o.mode.is_ttl() {
            let ttl = o.ttl.map(|t| t.as_millis() as i64).unwrap_or(0);
            if ttl <= 0 || ttl > MAX_TTL {
                return Err(Error::BadArguments(format!("TTL {ttl} ms out of range")));
            }
            let r = CreateTtlRequest {
                path: p,
                data,
                acl: o.acl.clone(),
                flags: o.mode.code(),
                ttl,
            };
            return Ok((OpCode::CreateTtl, r.to_bytes()));
        }
        if o.ttl.is_some() {
            return Err(Error::BadArguments("TTL given for a non-TTL mode".into()));
        }
        let r = CreateRequest {
            path: p,
            data,
            acl: o.acl.clone(),
            flags: o.mode.code(),
        };
        let op = if o.mode.is_container() {
            OpCode::CreateContainer
        } else {
            OpCode::Create2
        };
        Ok((op, r.to_bytes()))
    }

    /// Deletes a node (`version` `None` = any version).
    pub fn delete(
        &self,
        path: &str,
        version_: Option<i32>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let fut = self.server_path(path, false).map(|p| {
            self.send(
                OpCode::Delete,
                DeleteRequest {
                    path: p,
                    version: version(version_),
                }
                .to_bytes(),
                None,
            )
        });
        async move {
            fut?.await?;
            Ok(())
        }
    }

    fn path_watch_request(
        &self,
        op: OpCode,
        path: &str,
        watch: Option<WatchKind>,
    ) -> Result<(String, Fut<Reply>, Option<OneshotWatcher>)> {
        let p = self.server_path(path, false)?;
        let (pw, w) = match watch {
            Some(kind) => {
                let (pw, w) = self.oneshot_watch(&p, kind);
                (Some(pw), Some(w))
            }
            None => (None, None),
        };
        let body = PathWatchRequest {
            path: p.clone(),
            watch: watch.is_some(),
        }
        .to_bytes();
        Ok((p, self.send(op, body, pw), w))
    }

    /// The node's Stat, or `None` if it does not exist.
    pub fn exists(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<Stat>>> + Send + 'static {
        let r = self.path_watch_request(OpCode::Exists, path, None);
        async move {
            let (_, fut, _) = r?;
            exists_reply(fut.await)
        }
    }

    /// Like [`exists`](Self::exists), and leaves a watch that fires on create, delete or data
    /// change (also when the node does not exist yet).
    pub fn exists_and_watch(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Option<Stat>, OneshotWatcher)>> + Send + 'static {
        let r = self.path_watch_request(OpCode::Exists, path, Some(WatchKind::Exist));
        async move {
            let (_, fut, w) = r?;
            let stat = exists_reply(fut.await)?;
            Ok((stat, w.expect("watch requested")))
        }
    }

    /// The node's data and Stat.
    pub fn get_data(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Bytes, Stat)>> + Send + 'static {
        let r = self.path_watch_request(OpCode::GetData, path, None);
        async move {
            let (_, fut, _) = r?;
            let d = GetDataResponse::from_bytes(fut.await?.body)?;
            Ok((d.data.unwrap_or_default(), d.stat))
        }
    }

    /// Like [`get_data`](Self::get_data), and leaves a watch for data change or delete.
    pub fn get_data_and_watch(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Bytes, Stat, OneshotWatcher)>> + Send + 'static {
        let r = self.path_watch_request(OpCode::GetData, path, Some(WatchKind::Data));
        async move {
            let (_, fut, w) = r?;
            let d = GetDataResponse::from_bytes(fut.await?.body)?;
            Ok((
                d.data.unwrap_or_default(),
                d.stat,
                w.expect("watch requested"),
            ))
        }
    }

    /// Sets the node's data (`version` `None` = any); returns the new Stat.
    pub fn set_data(
        &self,
        path: &str,
        data: impl AsRef<[u8]>,
        version_: Option<i32>,
    ) -> impl Future<Output = Result<Stat>> + Send + 'static {
        let data = Bytes::copy_from_slice(data.as_ref());
        let fut = self.server_path(path, false).map(|p| {
            self.send(
                OpCode::SetData,
                SetDataRequest {
                    path: p,
                    data: Some(data),
                    version: version(version_),
                }
                .to_bytes(),
                None,
            )
        });
        async move { Ok(StatResponse::from_bytes(fut?.await?.body)?.stat) }
    }

    /// The node's ACL and Stat.
    pub fn get_acl(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<Acl>, Stat)>> + Send + 'static {
        let fut = self
            .server_path(path, false)
            .map(|p| self.send(OpCode::GetAcl, PathRequest { path: p }.to_bytes(), None));
        async move {
            let r = GetAclResponse::from_bytes(fut?.await?.body)?;
            Ok((r.acl, r.stat))
        }
    }

    /// Sets the node's ACL (`version` = expected aversion, `None` = any); returns the new Stat.
    pub fn set_acl(
        &self,
        path: &str,
        acl: Vec<Acl>,
        version_: Option<i32>,
    ) -> impl Future<Output = Result<Stat>> + Send + 'static {
        let fut = self.server_path(path, false).map(|p| {
            self.send(
                OpCode::SetAcl,
                SetAclRequest {
                    path: p,
                    acl,
                    version: version(version_),
                }
                .to_bytes(),
                None,
            )
        });
        async move { Ok(StatResponse::from_bytes(fut?.await?.body)?.stat) }
    }

    /// The node's child names (unordered, as the server gives them).
    pub fn get_children(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        let r = self.path_watch_request(OpCode::GetChildren, path, None);
        async move {
            let (_, fut, _) = r?;
            Ok(GetChildrenResponse::from_bytes(fut.await?.body)?.children)
        }
    }

    /// Child names and the parent's Stat (getChildren2).
    pub fn get_children_with_stat(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<String>, Stat)>> + Send + 'static {
        let r = self.path_watch_request(OpCode::GetChildren2, path, None);
        async move {
            let (_, fut, _) = r?;
            let c = GetChildren2Response::from_bytes(fut.await?.body)?;
            Ok((c.children, c.stat))
        }
    }

    /// Child names, parent Stat, and a watch for child changes or delete.
    pub fn get_children_and_watch(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<String>, Stat, OneshotWatcher)>> + Send + 'static {
        let r = self.path_watch_request(OpCode::GetChildren2, path, Some(WatchKind::Child));
        async move {
            let (_, fut, w) = r?;
            let c = GetChildren2Response::from_bytes(fut.await?.body)?;
            Ok((c.children, c.stat, w.expect("watch requested")))
        }
    }

    /// Number of descendants of a node (getAllChildrenNumber).
    pub fn get_all_children_number(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<i32>> + Send + 'static {
        let fut = self.server_path(path, false).map(|p| {
            self.send(
                OpCode::GetAllChildrenNumber,
                PathRequest { path: p }.to_bytes(),
                None,
            )
        });
        async move { Ok(IntResponse::from_bytes(fut?.await?.body)?.value) }
    }

    /// Paths of this session's ephemerals under `prefix` (`/` for all).
    pub fn get_ephemerals(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        let fut = self.server_path(prefix, false).map(|p| {
            self.send(
                OpCode::GetEphemerals,
                PathRequest { path: p }.to_bytes(),
                None,
            )
        });
        let this = self.clone();
        async move {
            let r = GetChildrenResponse::from_bytes(fut?.await?.body)?;
            Ok(r.children.into_iter().map(|p| this.strip(p)).collect())
        }
    }

    /// Waits until the server this client talks to has caught up with the leader for `path`.
    pub fn sync(&self, path: &str) -> impl Future<Output = Result<()>> + Send + 'static {
        let fut = self
            .server_path(path, false)
            .map(|p| self.send(OpCode::Sync, PathRequest { path: p }.to_bytes(), None));
        async move {
            fut?.await?;
            Ok(())
        }
    }

    /// Checks that a node is at `version` (a one-op multi: Apache ZooKeeper 3.8 mishandles a
    /// bare check request, so zkit never sends one outside a multi).
    pub fn check_version(
        &self,
        path: &str,
        version: i32,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let fut = self.multi(vec![Op::check(path, version)]);
        async move {
            match fut.await {
                Ok(_) => Ok(()),
                Err(Error::MultiAborted { error, .. }) => Err(*error),
                Err(e) => Err(e),
            }
        }
    }

    /// Runs writes atomically. On abort, returns [`Error::MultiAborted`] with the failing op's
    /// index and error and every op's code.
    pub fn multi(
        &self,
        ops: Vec<Op>,
    ) -> impl Future<Output = Result<Vec<OpResult>>> + Send + 'static {
        let req = self.multi_request(ops);
        let fut = req.map(|body| self.send(OpCode::Multi, body, None));
        let this = self.clone();
        async move {
            let r = MultiResponse::from_bytes(fut?.await?.body)?;
            this.multi_results(r)
        }
    }

    fn multi_request(&self, ops: Vec<Op>) -> Result<Bytes> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(match op {
                Op::Create {
                    path,
                    data,
                    options,
                } => {
                    let (code, body) = self.create_request(&path, &data, &options)?;
                    if code == OpCode::CreateTtl {
                        MultiOp::CreateTtl(CreateTtlRequest::from_bytes(body)?)
                    } else {
                        MultiOp::Create {
                            op: code,
                            req: CreateRequest::from_bytes(body)?,
                        }
                    }
                }
                Op::Delete { path, version: v } => MultiOp::Delete(DeleteRequest {
                    path: self.server_path(&path, false)?,
                    version: version(v),
                }),
                Op::SetData {
                    path,
                    data,
                    version: v,
                } => MultiOp::SetData(SetDataRequest {
                    path: self.server_path(&path, false)?,
                    data: Some(data),
                    version: version(v),
                }),
                Op::Check { path, version } => MultiOp::Check(CheckVersionRequest {
                    path: self.server_path(&path, false)?,
                    version,
                }),
            });
        }
        Ok(MultiRequest { ops: out }.to_bytes())
    }

    fn multi_results(&self, r: MultiResponse) -> Result<Vec<OpResult>> {
        let failed = r
            .results
            .iter()
            .position(|x| matches!(x, MultiResult::Error(c) if *c != 0));
        if let Some(index) = failed {
            let codes = r
                .results
                .iter()
                .map(|x| match x {
                    MultiResult::Error(c) => *c,
                    _ => 0,
                })
                .collect();
            let MultiResult::Error(code) = r.results[index] else {
                unreachable!("position matched an error")
            };
            return Err(Error::MultiAborted {
                index,
                error: Box::new(Error::from_code(code)),
                codes,
            });
        }
        r.results
            .into_iter()
            .map(|x| {
                Ok(match x {
                    MultiResult::Create(path) => OpResult::Create {
                        path: self.strip(path),
                        stat: Stat::default(),
                    },
                    MultiResult::Create2(c) => OpResult::Create {
                        path: self.strip(c.path),
                        stat: c.stat,
                    },
                    MultiResult::Delete => OpResult::Delete,
                    MultiResult::SetData(stat) => OpResult::SetData { stat },
                    MultiResult::Check => OpResult::Check,
                    other => {
                        return Err(Error::Protocol(format!(
                            "unexpected multi result {other:?}"
                        )))
                    }
                })
            })
            .collect()
    }

    /// Runs reads together (multiRead, 3.6+); each succeeds or fails on its own.
    pub fn multi_read(
        &self,
        ops: Vec<ReadOp>,
    ) -> impl Future<Output = Result<Vec<Result<ReadResult>>>> + Send + 'static {
        let req: Result<Bytes> = (|| {
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                out.push(match op {
                    ReadOp::GetData(p) => MultiOp::GetData(PathWatchRequest {
                        path: self.server_path(&p, false)?,
                        watch: false,
                    }),
                    ReadOp::GetChildren(p) => MultiOp::GetChildren(PathWatchRequest {
                        path: self.server_path(&p, false)?,
                        watch: false,
                    }),
                });
            }
            Ok(MultiRequest { ops: out }.to_bytes())
        })();
        let fut = req.map(|body| self.send(OpCode::MultiRead, body, None));
        async move {
            let r = MultiResponse::from_bytes(fut?.await?.body)?;
            Ok(r.results
                .into_iter()
                .map(|x| match x {
                    MultiResult::GetData(d) => Ok(ReadResult::Data {
                        data: d.data.unwrap_or_default(),
                        stat: d.stat,
                    }),
                    MultiResult::GetChildren(c) => Ok(ReadResult::Children(c)),
                    MultiResult::Error(c) => Err(Error::from_code(c)),
                    other => Err(Error::Protocol(format!("unexpected read result {other:?}"))),
                })
                .collect())
        }
    }

    /// Adds a persistent watch (`recursive`: on the node and every descendant, data events only;
    /// otherwise data and child events of the node). Events arrive as a stream.
    pub fn add_watch(
        &self,
        path: &str,
        recursive: bool,
    ) -> impl Future<Output = Result<PersistentWatcher>> + Send + 'static {
        let r = self.server_path(path, false).map(|p| {
            let kind = if recursive {
                WatchKind::PersistentRecursive
            } else {
                WatchKind::Persistent
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let (pw, reg) = self.watch_parts(&p, kind, Sink::Persistent(tx));
            let mode = if recursive {
                AddWatchMode::PersistentRecursive
            } else {
                AddWatchMode::Persistent
            };
            let fut = self.send(
                OpCode::AddWatch,
                AddWatchRequest {
                    path: p,
                    mode: mode.code(),
                }
                .to_bytes(),
                Some(pw),
            );
            (fut, PersistentWatcher::new(rx, reg))
        });
        async move {
            let (fut, w) = r?;
            fut.await?;
            Ok(w)
        }
    }

    /// Removes every watch of `watcher_type` this session has on `path` on the server (like the
    /// Java client's `removeAllWatches`). Local watcher handles for them never fire afterwards.
    pub fn remove_all_watches(
        &self,
        path: &str,
        watcher_type: WatcherType,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let fut = self.server_path(path, false).map(|p| {
            self.send(
                OpCode::RemoveWatches,
                WatchesRequest {
                    path: p,
                    watcher_type: watcher_type.code(),
                }
                .to_bytes(),
                None,
            )
        });
        async move {
            fut?.await?;
            Ok(())
        }
    }

    /// Asks the server whether this session has a watch of `watcher_type` on `path`
    /// (`Err(NoWatcher)` if not).
    pub fn check_watches(
        &self,
        path: &str,
        watcher_type: WatcherType,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let fut = self.server_path(path, false).map(|p| {
            self.send(
                OpCode::CheckWatches,
                WatchesRequest {
                    path: p,
                    watcher_type: watcher_type.code(),
                }
                .to_bytes(),
                None,
            )
        });
        async move {
            fut?.await?;
            Ok(())
        }
    }

    /// Authenticates (e.g. `add_auth("digest", "user:password")`); replayed after reconnects.
    pub fn add_auth(
        &self,
        scheme: &str,
        auth: impl Into<Bytes>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let _ = self.inner.cmd.send(Command::Auth {
            scheme: scheme.to_owned(),
            auth: auth.into(),
            waiter: tx,
        });
        let state = self.inner.state.clone();
        async move { rx.await.map_err(|_| gone_error(&state))? }
    }

    /// The identities the server associates with this session (whoAmI, 3.7+).
    pub fn who_am_i(&self) -> impl Future<Output = Result<Vec<ClientInfo>>> + Send + 'static {
        let fut = self.send(OpCode::WhoAmI, Bytes::new(), None);
        async move { Ok(WhoAmIResponse::from_bytes(fut.await?.body)?.client_info) }
    }

    /// The ensemble configuration (getData of `/zookeeper/config`, not chrooted).
    pub fn get_config(&self) -> impl Future<Output = Result<(Bytes, Stat)>> + Send + 'static {
        let fut = self.send(
            OpCode::GetData,
            PathWatchRequest {
                path: "/zookeeper/config".into(),
                watch: false,
            }
            .to_bytes(),
            None,
        );
        async move {
            let d = GetDataResponse::from_bytes(fut.await?.body)?;
            Ok((d.data.unwrap_or_default(), d.stat))
        }
    }

    /// Changes the ensemble membership (needs reconfigEnabled and admin rights on the server).
    pub fn reconfig(
        &self,
        joining: Option<&str>,
        leaving: Option<&str>,
        new_members: Option<&str>,
        from_config: Option<i64>,
    ) -> impl Future<Output = Result<(Bytes, Stat)>> + Send + 'static {
        let fut = self.send(
            OpCode::Reconfig,
            ReconfigRequest {
                joining_servers: joining.map(str::to_owned),
                leaving_servers: leaving.map(str::to_owned),
                new_members: new_members.map(str::to_owned),
                cur_config_id: from_config.unwrap_or(-1),
            }
            .to_bytes(),
            None,
        );
        async move {
            let d = GetDataResponse::from_bytes(fut.await?.body)?;
            Ok((d.data.unwrap_or_default(), d.stat))
        }
    }

    /// Closes the session: sends closeSession and waits for the reply (ephemerals are deleted
    /// by then). Every clone of this client is closed.
    pub async fn close(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
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

/// The error for a request the driver dropped unanswered: the session's terminal error.
fn gone_error(state: &watch::Receiver<SessionState>) -> Error {
    state.borrow().terminal_error().unwrap_or(Error::Closed)
}

fn exists_reply(r: Result<Reply>) -> Result<Option<Stat>> {
    match r {
        Ok(reply) => Ok(Some(StatResponse::from_bytes(reply.body)?.stat)),
        Err(Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

fn next_watch_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
