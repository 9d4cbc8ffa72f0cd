//! The one tokio task per client: owns the socket, the timers and host selection, and moves bytes
//! and time into the sans-IO [`Session`]. Nothing here decides protocol behaviour.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tracing::Instrument;

use crate::error::Error;
use crate::options::{ClientOptions, HostList};
use crate::session::watches::WatchKind;
use crate::session::{Request, Responder, Session, SessionState};
use zkit_proto::frame::take_frame;

/// What client handles ask of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a request.
    Request(Request),
    /// Add an auth credential.
    Auth {
        scheme: String,
        auth: Bytes,
        waiter: oneshot::Sender<Result<(), Error>>,
    },
    /// A watcher handle was dropped or removed.
    Unwatch {
        path: String,
        kind: WatchKind,
        id: u64,
    },
    /// Close the session.
    Close(Responder),
}

/// Session facts that client handles read without asking the driver.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionInfo {
    pub id: i64,
    pub passwd: Bytes,
    pub timeout: Duration,
    pub last_error: Option<String>,
    pub server: Option<SocketAddr>,
}

pub(crate) struct Driver {
    pub session: Session,
    pub hosts: HostList,
    pub opts: Arc<ClientOptions>,
    pub cmd_rx: mpsc::UnboundedReceiver<Command>,
    pub info: Arc<Mutex<SessionInfo>>,
    pub first_connect: Option<oneshot::Sender<Result<(), Error>>>,
    cmds_closed: bool,
}

/// Why a connection ended.
enum Ended {
    /// Dropped (EOF, I/O error, read timeout, protocol error): try the next host.
    Lost(String),
    /// The session is over (expired, closed, auth failed).
    Terminal,
}

impl Driver {
    pub fn new(
        session: Session,
        hosts: HostList,
        opts: Arc<ClientOptions>,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
        info: Arc<Mutex<SessionInfo>>,
        first_connect: oneshot::Sender<Result<(), Error>>,
    ) -> Self {
        Driver {
            session,
            hosts,
            opts,
            cmd_rx,
            info,
            first_connect: Some(first_connect),
            cmds_closed: false,
        }
    }

    fn note_error(&self, e: &str) {
        if let Ok(mut i) = self.info.lock() {
            i.last_error = Some(e.to_owned());
        }
    }

    fn publish_session(&self, server: Option<SocketAddr>) {
        if let Ok(mut i) = self.info.lock() {
            i.id = self.session.session_id();
            i.passwd = self.session.password().clone();
            i.timeout = self.session.negotiated_timeout();
            i.server = server;
        }
    }

    fn report_first(&mut self, r: Result<(), Error>) {
        if let Some(tx) = self.first_connect.take() {
            let _ = tx.send(r);
        }
    }

    /// Runs until the session is over and every handle is gone (or it is closed).
    pub async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            let now = Instant::now();
            self.session.check_local_expiry(now);
            let state = self.session.state();
            if state.is_terminal() {
                if state == SessionState::Expired
                    && self.opts.recreate_on_expiry
                    && !self.cmds_closed
                {
                    tracing::info!("session expired: creating a new session");
                    // Handles must not report the expired id once the new session is being
                    // negotiated: clear it before the state says Connecting.
                    if let Ok(mut i) = self.info.lock() {
                        i.id = 0;
                        i.passwd = Bytes::new();
                        i.timeout = Duration::ZERO;
                        i.server = None;
                    }
                    self.session.renew();
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
                match self.connect_and_serve(addr).await {
                    (true, Ended::Terminal) | (false, Ended::Terminal) => {
                        connected_once = true;
                        break;
                    }
                    (was_connected, Ended::Lost(why)) => {
                        self.note_error(&format!("{addr}: {why}"));
                        self.session.on_connection_lost();
                        self.publish_session(None);
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

    /// Sleeps until `until` while still taking commands. Returns false if the state became
    /// terminal (or expired locally) meanwhile.
    async fn wait(&mut self, until: Instant) -> bool {
        loop {
            let expiry = self.session.local_expiry_deadline();
            let wake = expiry.map_or(until, |e| e.min(until));
            tokio::select! {
                _ = sleep_until(wake) => {
                    if self.session.check_local_expiry(Instant::now()) {
                        return false;
                    }
                    if Instant::now() >= until {
                        return true;
                    }
                }
                c = self.cmd_rx.recv(), if !self.cmds_closed => self.apply(c),
            }
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
            Some(Command::Close(r)) => self.session.close(r),
            None => {
                // Every handle is gone: close the session so its ephemerals go at once.
                self.cmds_closed = true;
                let (tx, _rx) = oneshot::channel();
                self.session.close(tx);
            }
        }
    }

    /// Connects to one address, handshakes and serves until the connection ends.
    /// Returns whether the handshake completed, and why it ended.
    async fn connect_and_serve(&mut self, addr: SocketAddr) -> (bool, Ended) {
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
        self.session
            .begin_handshake(Instant::now(), start + connect_timeout);
        self.serve(stream, addr).instrument(span).await
    }

    /// Resolves when the session becomes terminal while connecting (commands keep flowing).
    async fn expiry_or_close(&mut self) {
        loop {
            let wake = self.session.local_expiry_deadline();
            tokio::select! {
                _ = async { match wake { Some(w) => sleep_until(w).await, None => std::future::pending().await } } => {
                    self.session.check_local_expiry(Instant::now());
                }
                c = self.cmd_rx.recv(), if !self.cmds_closed => self.apply(c),
            }
            if self.session.state().is_terminal() {
                return;
            }
        }
    }

    async fn serve(&mut self, mut stream: TcpStream, addr: SocketAddr) -> (bool, Ended) {
        let max = self.opts.max_packet;
        let (mut rd, mut wr) = stream.split();
        let mut inbuf = BytesMut::with_capacity(64 * 1024);
        let mut out = Bytes::new();
        let mut handshaken = false;
        // One timer for the connection, moved when the session's next deadline moves.
        let far = || Instant::now() + Duration::from_secs(3600);
        let mut armed = self.session.next_deadline().unwrap_or_else(far);
        let sleep = sleep_until(armed);
        tokio::pin!(sleep);
        loop {
            if out.is_empty() {
                if let Some(b) = self.session.take_output() {
                    out = b;
                }
            }
            if self.session.state().is_terminal() && out.is_empty() {
                if !self.session.is_closing() {
                    let _ = wr.shutdown().await;
                }
                return (handshaken, Ended::Terminal);
            }
            let deadline = self.session.next_deadline().unwrap_or_else(far);
            if deadline != armed {
                armed = deadline;
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                r = rd.read_buf(&mut inbuf) => {
                    match r {
                        Ok(0) => return (handshaken, Ended::Lost("server closed the connection".into())),
                        Err(e) => return (handshaken, Ended::Lost(format!("read: {e}"))),
                        Ok(_) => {}
                    }
                    let now = Instant::now();
                    loop {
                        match take_frame(&mut inbuf, max) {
                            Ok(Some(frame)) => {
                                if let Err(e) = self.session.on_frame(frame, now) {
                                    if self.session.state().is_terminal() {
                                        self.report_first(Err(e));
                                        return (handshaken, Ended::Terminal);
                                    }
                                    return (handshaken, Ended::Lost(e.to_string()));
                                }
                                if !handshaken && self.session.state().is_connected() {
                                    handshaken = true;
                                    self.publish_session(Some(addr));
                                    tracing::Span::current().record("session_id", format_args!("{:#x}", self.session.session_id()));
                                    self.report_first(Ok(()));
                                }
                            }
                            Ok(None) => break,
                            Err(e) => return (handshaken, Ended::Lost(e.to_string())),
                        }
                    }
                    if self.session.state().is_terminal() && !self.session.has_output() && out.is_empty() {
                        return (handshaken, Ended::Terminal);
                    }
                }
                r = wr.write(&out), if !out.is_empty() => {
                    match r {
                        Ok(n) => { out.advance(n); self.session.on_sent(Instant::now()); }
                        Err(e) => return (handshaken, Ended::Lost(format!("write: {e}"))),
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
                    if let Err(e) = self.session.on_timer(Instant::now()) {
                        if self.session.state().is_terminal() {
                            return (handshaken, Ended::Terminal);
                        }
                        return (handshaken, Ended::Lost(e.to_string()));
                    }
                }
            }
        }
    }
}

fn fail_command(c: Command, err: &Error) {
    match c {
        Command::Request(r) => {
            if let Some(tx) = r.responder {
                let _ = tx.send(Err(err.clone()));
            }
        }
        Command::Auth { waiter, .. } => {
            let _ = waiter.send(Err(err.clone()));
        }
        Command::Close(r) => {
            let _ = r.send(Err(Error::Closed));
        }
        Command::Unwatch { .. } => {}
    }
}
