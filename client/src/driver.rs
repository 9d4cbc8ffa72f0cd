//! The one tokio task per client: owns the socket, the timers, host selection and the channels
//! to the client handles. It moves bytes and time into the sans-IO [`Session`] and delivers
//! what the session emits; nothing here decides protocol behaviour.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};
use tracing::Instrument;

use crate::error::Error;
use crate::options::{ClientOptions, HostList};
use crate::session::watches::{Notice, Sink, StreamResult, WatchKind, WatchResult};
use crate::session::{self, Event, Handle, Handles, Session, SessionState};

/// Completes one request (or auth, or close) of a client handle.
pub(crate) type ReplyTx = crate::reply::ReplyTx;

/// The tokio channel ends the session holds for the client handles.
#[derive(Debug)]
pub(crate) struct Channels;

impl Handles for Channels {
    type Reply = ReplyTx;
    type Oneshot = oneshot::Sender<WatchResult>;
    type Stream = mpsc::UnboundedSender<StreamResult>;
}

impl<T: std::fmt::Debug> Handle for oneshot::Sender<T> {
    fn is_dropped(&self) -> bool {
        self.is_closed()
    }
}

impl Handle for ReplyTx {
    fn is_dropped(&self) -> bool {
        self.is_closed()
    }
}

impl<T: std::fmt::Debug> Handle for mpsc::UnboundedSender<T> {
    fn is_dropped(&self) -> bool {
        self.is_closed()
    }
}

/// A request as client handles build it.
pub(crate) type Request = session::Request<Channels>;
/// A watch as client handles build it.
pub(crate) type PendingWatch = session::watches::PendingWatch<Channels>;

/// What client handles ask of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a request.
    Request(Request),
    /// Add an auth credential.
    Auth {
        scheme: String,
        auth: Bytes,
        waiter: ReplyTx,
    },
    /// A watcher handle was dropped or removed.
    Unwatch {
        path: String,
        kind: WatchKind,
        id: u64,
    },
    /// Close the session.
    Close(ReplyTx),
    /// Use these hosts from the next connection attempt on.
    SetHosts(HostList),
}

/// Session facts client handles read without asking the driver: published by the driver (the
/// only writer) whenever the session's state changes or a connection attempt fails.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionInfo {
    pub id: i64,
    pub passwd: Bytes,
    pub timeout: Duration,
    pub last_error: Option<String>,
    pub server: Option<SocketAddr>,
    /// Reconnects that carried the watches over so far (`OneshotWatcher::resynced`).
    pub resyncs: u64,
}

/// Where the driver publishes the session for client handles.
#[derive(Debug)]
pub(crate) struct Publish {
    /// Session facts.
    pub info: watch::Sender<SessionInfo>,
    /// The current state (the public `Client::state_watch`).
    pub state: watch::Sender<SessionState>,
    /// Every transition (bounded; a lagging reader skips to the newest).
    pub changes: broadcast::Sender<SessionState>,
}

impl Publish {
    /// Publishers before the first connection: `Connecting`, no session.
    pub fn new() -> Self {
        Publish {
            info: watch::channel(SessionInfo::default()).0,
            state: watch::channel(SessionState::Connecting).0,
            changes: broadcast::channel(256).0,
        }
    }
}

pub(crate) struct Driver {
    session: Session<Channels>,
    hosts: HostList,
    opts: Arc<ClientOptions>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    publish: Publish,
    first_connect: Option<oneshot::Sender<Result<(), Error>>>,
    cmds_closed: bool,
    /// The server of the connection being served.
    server: Option<SocketAddr>,
    /// Whether a handshake completed on the connection being served.
    handshaken: bool,
    /// TLS handshakes failed in a row before the first session (see `tls_failed`).
    tls_failures: usize,
    /// Replies collected by [`deliver`](Self::deliver), completed together (kept between
    /// batches so completing them allocates nothing).
    replies: Vec<(ReplyTx, crate::reply::Answer)>,
    /// Scratch space for the wakers of one batch.
    wakers: Vec<std::task::Waker>,
}

/// Why a connection ended.
enum Ended {
    /// Dropped (EOF, I/O error, read timeout, protocol error): try the next host.
    Lost(String),
    /// The session is over (expired, closed, auth failed).
    Terminal,
}

/// The session's clock: tokio's (so a paused test clock applies), as a std `Instant`.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    pub fn new(
        session: Session<Channels>,
        hosts: HostList,
        opts: Arc<ClientOptions>,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
        publish: Publish,
        first_connect: oneshot::Sender<Result<(), Error>>,
    ) -> Self {
        Driver {
            session,
            hosts,
            opts,
            cmd_rx,
            publish,
            first_connect: Some(first_connect),
            cmds_closed: false,
            server: None,
            handshaken: false,
            tls_failures: 0,
            replies: Vec::new(),
            wakers: Vec::new(),
        }
    }

    fn note_error(&self, e: &str) {
        self.publish
            .info
            .send_modify(|i| i.last_error = Some(e.to_owned()));
    }

    fn report_first(&mut self, r: Result<(), Error>) {
        if let Some(tx) = self.first_connect.take() {
            let _ = tx.send(r);
        }
    }

    /// Delivers everything the session emitted, in order. Consecutive replies are completed as
    /// one batch (one lock, their callers woken after it), before anything that follows them.
    fn deliver(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            if !matches!(ev, Event::Reply { .. }) {
                self.flush_replies();
            }
            match ev {
                Event::Reply { to, result } => self.replies.push((to, result)),
                Event::Watch {
                    to: Sink::Oneshot(to),
                    result,
                } => {
                    let _ = to.send(result);
                }
                Event::Watch {
                    to: Sink::Persistent(to),
                    result,
                } => {
                    let _ = to.send(result.map(Notice::Event));
                }
                Event::Resync { to } => {
                    let _ = to.send(Ok(Notice::Resync));
                }
                Event::State(s) => self.publish_state(s),
            }
        }
        self.flush_replies();
    }

    fn flush_replies(&mut self) {
        crate::reply::ReplyPool::complete_batch(&mut self.replies, &mut self.wakers);
    }

    /// Publishes a state change: the session facts first, so a handle that sees the new state
    /// also sees the session it belongs to (never an expired id once a new session is being
    /// negotiated).
    fn publish_state(&mut self, s: SessionState) {
        let server = if s.is_connected() { self.server } else { None };
        let id = self.session.session_id();
        let passwd = if id == 0 {
            Bytes::new()
        } else {
            self.session.password().clone()
        };
        let timeout = self.session.negotiated_timeout();
        let resyncs = self.session.resyncs();
        self.publish.info.send_modify(|i| {
            i.resyncs = resyncs;
            i.id = id;
            i.passwd = passwd;
            i.timeout = timeout;
            i.server = server;
        });
        self.publish.state.send_replace(s);
        let _ = self.publish.changes.send(s);
        if s.is_connected() {
            self.handshaken = true;
            tracing::Span::current().record("session_id", format_args!("{id:#x}"));
            self.report_first(Ok(()));
        }
    }

    /// Runs until the session is over and every handle is gone (or it is closed).
    pub async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            // Local expiry while disconnected.
            let _ = self.session.on_timer(now());
            self.deliver();
            let state = self.session.state();
            if state.is_terminal() {
                // A session given to `resume_session` that turns out expired fails `connect`.
                if state == SessionState::Expired
                    && self.opts.recreate_on_expiry
                    && !self.cmds_closed
                    && self.first_connect.is_none()
                {
                    tracing::info!("session expired: creating a new session");
                    self.session.renew();
                    self.deliver();
                    failures = 0;
                    continue;
                }
                self.report_first(Err(state.terminal_error().unwrap_or(Error::Closed)));
                break;
            }
            if failures > 0 {
                let delay = self.opts.backoff_delay(failures);
                if !self.wait(Instant::now() + delay).await {
                    continue;
                }
            }
            let (host, port) = self.hosts.next();
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await
            {
                Ok(a) => a.collect(),
                Err(e) => {
                    let msg = format!("resolving {host}:{port}: {e}");
                    tracing::warn!(%host, port, error = %e, "cannot resolve");
                    self.note_error(&msg);
                    failures += 1;
                    continue;
                }
            };
            let mut connected_once = false;
            for addr in addrs {
                match self.connect_and_serve(&host, addr).await {
                    (_, Ended::Terminal) => {
                        connected_once = true;
                        break;
                    }
                    (was_connected, Ended::Lost(why)) => {
                        self.note_error(&format!("{addr}: {why}"));
                        self.session.on_connection_lost();
                        self.deliver();
                        if was_connected {
                            connected_once = true;
                            tracing::warn!(server = %addr, reason = %why, "connection lost");
                            break;
                        }
                        tracing::debug!(server = %addr, reason = %why, "connect attempt failed");
                    }
                }
                if self.session.state().is_terminal() {
                    break;
                }
            }
            failures = if connected_once { 0 } else { failures + 1 };
        }
        self.deliver();
        // Everything still queued learns the session is over.
        let err = self
            .session
            .state()
            .terminal_error()
            .unwrap_or(Error::Closed);
        self.cmd_rx.close();
        while let Ok(c) = self.cmd_rx.try_recv() {
            fail_command(c, &err);
        }
    }

    /// The tokio instant of the session's next deadline.
    fn next_deadline(&self) -> Option<Instant> {
        self.session.next_deadline().map(Instant::from_std)
    }

    /// Sleeps until `until` while still taking commands. Returns false if the state became
    /// terminal (or expired locally) meanwhile.
    async fn wait(&mut self, until: Instant) -> bool {
        loop {
            let wake = self.next_deadline().map_or(until, |e| e.min(until));
            tokio::select! {
                _ = sleep_until(wake) => {
                    let _ = self.session.on_timer(now());
                    if !self.session.state().is_terminal() && Instant::now() >= until {
                        return true;
                    }
                }
                c = self.cmd_rx.recv(), if !self.cmds_closed => self.apply(c),
            }
            self.deliver();
            if self.session.state().is_terminal() {
                return false;
            }
        }
    }

    fn apply(&mut self, c: Option<Command>) {
        match c {
            Some(Command::Request(r)) => self.session.submit(r),
            Some(Command::Auth {
                scheme,
                auth,
                waiter,
            }) => self.session.add_auth(scheme, auth, waiter),
            Some(Command::Unwatch { path, kind, id }) => self.session.unwatch(&path, kind, id),
            Some(Command::Close(r)) => self.session.close(Some(r)),
            Some(Command::SetHosts(h)) => {
                tracing::info!(hosts = h.len(), "host list replaced");
                self.hosts = h;
            }
            None => {
                // Every handle is gone: close the session so its ephemerals go at once.
                self.cmds_closed = true;
                self.session.close(None);
            }
        }
    }

    /// Connects to one address, handshakes and serves until the connection ends.
    /// Returns whether the handshake completed, and why it ended.
    async fn connect_and_serve(&mut self, host: &str, addr: SocketAddr) -> (bool, Ended) {
        self.server = Some(addr);
        self.handshaken = false;
        // SASL GSSAPI names the service by the host of the connect string.
        self.session.set_server_host(host);
        let connect_timeout = self
            .opts
            .connect_timeout_per_host(self.session.negotiated_timeout(), self.hosts.len());
        let start = Instant::now();
        let span =
            tracing::info_span!("zk_session", server = %addr, session_id = tracing::field::Empty);
        let connect = tokio::time::timeout(connect_timeout, TcpStream::connect(addr));
        let stream = tokio::select! {
            r = connect => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return (false, Ended::Lost(format!("connect: {e}"))),
                Err(_) => return (false, Ended::Lost("connect timed out".into())),
            },
            _ = self.expiry_or_close() => return (false, Ended::Terminal),
        };
        let _ = stream.set_nodelay(true);
        let r = match self.opts.tls.clone() {
            None => {
                self.session
                    .begin_handshake(now(), (start + connect_timeout).into_std());
                self.serve(stream).instrument(span).await
            }
            Some(tls) => {
                let handshake =
                    tokio::time::timeout_at(start + connect_timeout, tls.connect(host, stream));
                let stream = tokio::select! {
                    r = handshake => match r {
                        Ok(Ok(s)) => s,
                        Ok(Err(why)) => return (false, self.tls_failed(why)),
                        Err(_) => return (false, Ended::Lost("TLS handshake timed out".into())),
                    },
                    _ = self.expiry_or_close() => return (false, Ended::Terminal),
                };
                self.session
                    .begin_handshake(now(), (start + connect_timeout).into_std());
                self.serve(stream).instrument(span).await
            }
        };
        self.server = None;
        r
    }

    /// A TLS handshake failed. Before the first session, once every host has failed this way
    /// in a row, `connect` fails with [`Error::Tls`] rather than retrying until its timeout: a
    /// certificate problem does not go away by itself.
    fn tls_failed(&mut self, why: String) -> Ended {
        self.tls_failures += 1;
        if self.tls_failures >= self.hosts.len() {
            self.report_first(Err(Error::Tls(why.clone())));
        }
        Ended::Lost(format!("TLS: {why}"))
    }

    /// Resolves when the session becomes terminal while connecting (commands keep flowing).
    async fn expiry_or_close(&mut self) {
        loop {
            let wake = self.next_deadline();
            tokio::select! {
                _ = async { match wake { Some(w) => sleep_until(w).await, None => std::future::pending().await } } => {
                    let _ = self.session.on_timer(now());
                }
                c = self.cmd_rx.recv(), if !self.cmds_closed => self.apply(c),
            }
            self.deliver();
            if self.session.state().is_terminal() {
                return;
            }
        }
    }

    async fn serve<S: AsyncRead + AsyncWrite>(&mut self, stream: S) -> (bool, Ended) {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut inbuf = BytesMut::with_capacity(64 * 1024);
        let mut out = Bytes::new();
        // One timer for the connection, moved when the session's next deadline moves.
        let far = || Instant::now() + Duration::from_secs(3600);
        let mut armed = self.next_deadline().unwrap_or_else(far);
        let sleep = sleep_until(armed);
        tokio::pin!(sleep);
        loop {
            self.deliver();
            if out.is_empty() {
                if let Some(b) = self.session.take_output() {
                    out = b;
                }
            }
            if self.session.state().is_terminal() && out.is_empty() {
                if !self.session.is_closing() {
                    let _ = wr.shutdown().await;
                }
                return (self.handshaken, Ended::Terminal);
            }
            let deadline = self.next_deadline().unwrap_or_else(far);
            if deadline != armed {
                armed = deadline;
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                r = rd.read_buf(&mut inbuf) => {
                    match r {
                        Ok(0) => return (self.handshaken, Ended::Lost("server closed the connection".into())),
                        Err(e) if !self.handshaken && crate::tls::tls_failure(&e).is_some() => {
                            // TLS 1.3: a refused client certificate shows on the first read.
                            return (false, self.tls_failed(format!("the server refused the connection: {e}")));
                        }
                        Err(e) => return (self.handshaken, Ended::Lost(format!("read: {e}"))),
                        Ok(_) => {}
                    }
                    let r = self.session.on_read(&mut inbuf, now());
                    self.deliver();
                    if let Err(e) = r {
                        if self.session.state().is_terminal() {
                            self.report_first(Err(e));
                            return (self.handshaken, Ended::Terminal);
                        }
                        return (self.handshaken, Ended::Lost(e.to_string()));
                    }
                    if self.session.state().is_terminal() && !self.session.has_output() && out.is_empty() {
                        return (self.handshaken, Ended::Terminal);
                    }
                }
                r = wr.write(&out), if !out.is_empty() => {
                    match r {
                        Ok(n) => { out.advance(n); self.session.on_sent(now()); }
                        Err(e) => return (self.handshaken, Ended::Lost(format!("write: {e}"))),
                    }
                }
                c = self.cmd_rx.recv(), if !self.cmds_closed => {
                    self.apply(c);
                    // Batch whatever else is queued into the same write.
                    for _ in 0..4096 {
                        match self.cmd_rx.try_recv() {
                            Ok(c) => self.apply(Some(c)),
                            Err(_) => break,
                        }
                    }
                }
                _ = &mut sleep => {
                    if let Err(e) = self.session.on_timer(now()) {
                        self.deliver();
                        if self.session.state().is_terminal() {
                            return (self.handshaken, Ended::Terminal);
                        }
                        return (self.handshaken, Ended::Lost(e.to_string()));
                    }
                }
            }
        }
    }
}

fn fail_command(c: Command, err: &Error) {
    match c {
        Command::Request(r) => {
            if let Some(tx) = r.reply {
                tx.send(Err(err.clone()));
            }
        }
        Command::Auth { waiter, .. } => {
            waiter.send(Err(err.clone()));
        }
        Command::Close(r) => {
            r.send(Err(Error::Closed));
        }
        Command::Unwatch { .. } | Command::SetHosts(_) => {}
    }
}
