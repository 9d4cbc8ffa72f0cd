//! Test harness: every test runs against a target — the in-process testkit by default, or a real
//! Apache ZooKeeper when `ZK_TEST_CONNECT` is set — inside a fresh chroot of its own so tests can
//! share one real server.
//!
//! Fault hooks (`restart`, `stop`, `start`, `expire_session`, the ensemble's `stop_member` and
//! `start_member`) are methods on [`Target`] and [`Ensemble`] whatever the server behind them
//! is: for real ZooKeeper they drive `scripts/zookeeper.sh` on the directories named by the
//! environment; the in-process testkit (a `Server`, and a 3-server `zkit_testkit::Ensemble`
//! started when a test first asks for it) plugs in behind the same methods. A test that needs a
//! hook the target lacks checks [`Target::supports`] and returns early with `skipped: ...`.
//!
//! Environment (real server):
//! - `ZK_TEST_CONNECT`       standalone connect string (`127.0.0.1:PORT`)
//! - `ZK_TEST_DIR`           that server's directory (`zookeeper.sh start-standalone DIR`)
//! - `ZK_TEST_ENSEMBLE`      ensemble connect string (3 hosts)
//! - `ZK_TEST_ENSEMBLE_DIR`  that ensemble's directory (`zookeeper.sh start-ensemble DIR`)
//! - `ZK_TEST_SCRIPT`        path of `zookeeper.sh` (default: the repo's `scripts/zookeeper.sh`)
//! - `ZK_TEST_TLS_CA`        a CA bundle (PEM): clients of the target connect over TLS
//!   (`ZK_TEST_CONNECT` is then the server's secure port)
//! - `ZK_EXTENDED_TYPES=1`   the servers were started with TTL nodes enabled
#![allow(dead_code)]

pub mod ensemble;

pub use ensemble::Ensemble;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, RwLock, RwLockReadGuard, RwLockWriteGuard};
use zkit::{Client, CreateOptions, Error, SessionState};

/// A fault a test may need from its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Restart the standalone server keeping its data and sessions (`restart`).
    Restart,
    /// Stop the standalone server and start it again later (`stop`, `start`).
    StopStart,
    /// Expire a session on demand (`expire_session`).
    ExpireSession,
    /// A 3-server ensemble whose members can be stopped and started (`ensemble`).
    Ensemble,
    /// Stall the server (it accepts bytes but answers nothing) and resume it (`stall`).
    Stall,
}

/// Where the tests run.
pub struct Target {
    /// Connect string of the server (no chroot).
    pub connect: String,
    /// Whether this is real Apache ZooKeeper.
    pub real: bool,
    backend: Backend,
    /// The ensemble, once a test asked for it.
    ensemble: tokio::sync::OnceCell<Ensemble>,
}

enum Backend {
    /// The in-process testkit: one server per test, so faults touch nobody else.
    Testkit(Box<tokio::sync::Mutex<zkit_testkit::Server>>),
    /// Real Apache ZooKeeper run by `scripts/zookeeper.sh`.
    Real {
        script: PathBuf,
        dir: Option<PathBuf>,
        ensemble: Option<(String, PathBuf)>,
    },
}

/// Tests that take the server down hold [`Target::exclusive`]; every other test in the same test
/// binary that could be hurt by that holds [`Target::shared`]. Test binaries run one at a time, so
/// a per-binary lock is enough.
static SERVER_LOCK: RwLock<()> = RwLock::const_new(());

fn script_path() -> PathBuf {
    match std::env::var_os("ZK_TEST_SCRIPT") {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        _ => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/zookeeper.sh"
        )),
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// TLS for the clients a test makes to the target when `ZK_TEST_TLS_CA` names a CA bundle
/// (PEM): the suite then runs over the target's secure port (`ZK_TEST_CONNECT` is its address).
fn tls_from_env() -> Option<zkit::TlsConfig> {
    let path = env_nonempty("ZK_TEST_TLS_CA")?;
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("ZK_TEST_TLS_CA={path}: {e}"));
    Some(zkit::TlsConfig::new(pem))
}

/// A builder for a client of the target (its connect string, a namespace of it, or a proxy in
/// front of it): over TLS when the suite runs on a secure port (`ZK_TEST_TLS_CA`).
pub fn builder(connect: &str) -> zkit::ClientBuilder {
    let b = Client::builder(connect);
    match tls_from_env() {
        Some(tls) => b.tls(tls),
        None => b,
    }
}

/// Connects a client of the target with the defaults (see [`builder`]).
pub async fn connect(connect: &str) -> zkit::Result<Client> {
    builder(connect).connect().await
}

/// Runs `zookeeper.sh ARGS...`, panicking with its stderr if it fails.
pub(crate) async fn run_script(script: &PathBuf, args: &[&str]) -> String {
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run zookeeper.sh");
    assert!(
        out.status.success(),
        "zookeeper.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Target {
    /// The target chosen by the environment.
    pub async fn new() -> Target {
        match env_nonempty("ZK_TEST_CONNECT") {
            Some(c) => {
                let ensemble = match (
                    env_nonempty("ZK_TEST_ENSEMBLE"),
                    env_nonempty("ZK_TEST_ENSEMBLE_DIR"),
                ) {
                    (Some(c), Some(d)) => Some((c, PathBuf::from(d))),
                    _ => None,
                };
                Target {
                    connect: c,
                    real: true,
                    backend: Backend::Real {
                        script: script_path(),
                        dir: env_nonempty("ZK_TEST_DIR").map(PathBuf::from),
                        ensemble,
                    },
                    ensemble: tokio::sync::OnceCell::new(),
                }
            }
            None => {
                let mut b =
                    zkit_testkit::Server::builder().reap_interval(Duration::from_millis(100));
                if std::env::var("ZK_EXTENDED_TYPES").is_ok_and(|v| v == "1") {
                    b = b.extended_types(true);
                }
                let server = b.start().await.expect("start testkit server");
                Target {
                    connect: server.connect_string(),
                    real: false,
                    backend: Backend::Testkit(Box::new(tokio::sync::Mutex::new(server))),
                    ensemble: tokio::sync::OnceCell::new(),
                }
            }
        }
    }

    /// Whether this target can inject `cap`.
    pub fn supports(&self, cap: Capability) -> bool {
        match &self.backend {
            Backend::Testkit(_) => true,
            Backend::Real { dir, ensemble, .. } => match cap {
                Capability::Restart | Capability::StopStart | Capability::Stall => dir.is_some(),
                Capability::Ensemble => ensemble.is_some(),
                // Real ZooKeeper has no "expire this session now" command.
                Capability::ExpireSession => false,
            },
        }
    }

    /// For a test that may be disturbed by another test's faults (in the same binary).
    pub async fn shared(&self) -> RwLockReadGuard<'static, ()> {
        SERVER_LOCK.read().await
    }

    /// For a test that restarts or stops servers: no `shared` test runs meanwhile. Returns a
    /// guard that starts the standalone server again if the test left it stopped (e.g. it
    /// panicked between `stop` and `start`), so later tests still find a server.
    pub async fn exclusive(&self) -> FaultGuard {
        let lock = SERVER_LOCK.write().await;
        FaultGuard {
            _lock: lock,
            recover: match &self.backend {
                Backend::Testkit(_) => None,
                Backend::Real { script, dir, .. } => Some((script.clone(), dir.clone())),
            },
        }
    }

    /// Restarts the standalone server (same address, same data, sessions kept) and returns once
    /// it serves again.
    pub async fn restart(&self) {
        match &self.backend {
            Backend::Testkit(s) => s.lock().await.restart().await.expect("restart testkit"),
            Backend::Real { script, dir, .. } => {
                let dir = dir.as_ref().expect("Capability::Restart needs ZK_TEST_DIR");
                run_script(script, &["restart", dir.to_str().unwrap()]).await;
            }
        }
    }

    /// Stops the standalone server (its address refuses connections until [`start`](Self::start)).
    pub async fn stop(&self) {
        match &self.backend {
            Backend::Testkit(s) => s.lock().await.stop().await,
            Backend::Real { script, dir, .. } => {
                let dir = dir
                    .as_ref()
                    .expect("Capability::StopStart needs ZK_TEST_DIR");
                run_script(script, &["stop", dir.to_str().unwrap()]).await;
            }
        }
    }

    /// Starts the stopped standalone server again (same address, same data).
    pub async fn start(&self) {
        // `restart` stops nothing when nothing runs, then launches with the recorded config.
        self.restart().await
    }

    /// Expires a session now, as the server would after its timeout. Returns false when the
    /// target cannot (real ZooKeeper); check [`Capability::ExpireSession`] first.
    pub async fn expire_session(&self, session_id: i64) -> bool {
        match &self.backend {
            Backend::Testkit(s) => s.lock().await.expire_session(session_id),
            Backend::Real { .. } => false,
        }
    }

    /// Stalls the standalone server (no answers, connections stay open) until
    /// [`unstall`](Self::unstall): the testkit pauses its responses, a real server gets SIGSTOP.
    pub async fn stall(&self) {
        self.signal_or_pause(true).await
    }

    /// Ends a [`stall`](Self::stall).
    pub async fn unstall(&self) {
        self.signal_or_pause(false).await
    }

    async fn signal_or_pause(&self, stop: bool) {
        match &self.backend {
            Backend::Testkit(s) => {
                let s = s.lock().await;
                if stop {
                    s.pause_responses()
                } else {
                    s.resume()
                }
            }
            Backend::Real { dir, .. } => {
                let dir = dir.as_ref().expect("Capability::Stall needs ZK_TEST_DIR");
                let pid = std::fs::read_to_string(dir.join("pid")).expect("server pid file");
                let sig = if stop { "-STOP" } else { "-CONT" };
                let st = tokio::process::Command::new("kill")
                    .args([sig, pid.trim()])
                    .status()
                    .await
                    .expect("kill");
                assert!(st.success(), "kill {sig} {pid}");
            }
        }
    }

    /// The ensemble, when the target has one: the real one named by the environment, or an
    /// in-process testkit ensemble of 3 (started by the first call; later calls share it).
    pub async fn ensemble(&self) -> Option<&Ensemble> {
        let ens = match &self.backend {
            Backend::Testkit(_) => {
                self.ensemble
                    .get_or_init(|| Ensemble::start_testkit(zkit_testkit::Ensemble::builder()))
                    .await
            }
            Backend::Real {
                script, ensemble, ..
            } => {
                let (connect, dir) = ensemble.as_ref()?;
                self.ensemble
                    .get_or_init(|| async { Ensemble::real(connect, script, dir) })
                    .await
            }
        };
        Some(ens)
    }

    /// A fresh, empty namespace for one test on `connect`: creates `/zkit-test-<random>` and
    /// returns `connect` chrooted there.
    pub async fn namespace_on(connect: &str) -> String {
        let root = self::connect(connect).await.expect("connect");
        let name = format!("/zkit-test-{:016x}", fastrand::u64(..));
        match root.create(&name, b"", &CreateOptions::persistent()).await {
            Ok(_) | Err(Error::NodeExists) => {}
            Err(e) => panic!("create namespace: {e}"),
        }
        root.close().await.unwrap();
        format!("{connect}{name}")
    }

    /// A fresh, empty namespace for one test: creates `/zkit-test-<random>` and returns a
    /// connect string chrooted there.
    pub async fn namespace(&self) -> String {
        Self::namespace_on(&self.connect).await
    }

    /// A client in a fresh namespace.
    pub async fn client(&self) -> (Client, String) {
        let ns = self.namespace().await;
        let c = builder(&ns)
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("connect");
        (c, ns)
    }
}

/// Held by a fault-injecting test; see [`Target::exclusive`].
pub struct FaultGuard {
    _lock: RwLockWriteGuard<'static, ()>,
    recover: Option<(PathBuf, Option<PathBuf>)>,
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        // Only when the test panicked: a passing test restores what it broke itself.
        if !std::thread::panicking() {
            return;
        }
        if let Some((script, Some(dir))) = &self.recover {
            let _ = std::process::Command::new("bash")
                .arg(script)
                .arg("restart")
                .arg(dir)
                .stdout(std::process::Stdio::null())
                .status();
        }
    }
}

/// Waits (at most `limit`) until the client's state satisfies `f`; panics with the state seen.
pub async fn wait_state(
    client: &Client,
    limit: Duration,
    f: impl Fn(SessionState) -> bool,
) -> SessionState {
    let mut rx = client.state_watch();
    let r = tokio::time::timeout(limit, rx.wait_for(|s| f(*s)))
        .await
        .map(|r| r.map(|s| *s));
    match r {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => panic!(
            "state channel closed while waiting; last {:?}",
            client.state()
        ),
        Err(_) => panic!("state still {:?} after {limit:?}", client.state()),
    }
}

/// Awaits `fut` at most `limit`, panicking with `what` on timeout.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}: {what}"))
}

/// A TCP proxy in front of a server, for cutting one client off while others carry on.
///
/// `block()` closes every proxied connection and refuses new ones (accepted, then closed at
/// once) until `unblock()`.
pub struct Proxy {
    /// Address to connect to instead of the server.
    pub addr: SocketAddr,
    blocked: watch::Sender<bool>,
    forwarded: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (blocked, rx) = watch::channel(false);
        let upstream: Arc<str> = upstream.into();
        let forwarded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = forwarded.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                if *rx.borrow() {
                    drop(down);
                    continue;
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let upstream = upstream.clone();
                let mut rx = rx.clone();
                conns.spawn(async move {
                    let Ok(mut up) = TcpStream::connect(&*upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = rx.wait_for(|b| *b) => {}
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Proxy {
            addr,
            blocked,
            forwarded,
            task,
        }
    }

    /// Cuts every connection and refuses new ones.
    pub fn block(&self) {
        self.blocked.send_replace(true);
    }

    /// How many connections were let through so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets connections through again.
    pub fn unblock(&self) {
        self.blocked.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
