//! Test harness for the recipes: a [`Target`] server, a fresh namespace (chroot) per test, and
//! per-client fault injection through a TCP [`Proxy`].
//!
//! By default every test starts its own in-process `zkit-testkit` server (fast ticks) and faults
//! use its controls (`expire_session`, `close_session_connection`). With `ZK_TEST_CONNECT` set the
//! target is real Apache ZooKeeper (e.g. `ZK_TICK_TIME=200 scripts/zookeeper.sh start-standalone
//! DIR`; a short tickTime keeps expiry tests to seconds) and faults go through a per-client TCP
//! [`Proxy`]: a cut connection, or a partition held until the client has seen its session expire.
//! When `ZK_TEST_DIR` names the real server's directory, whole-server restarts are available too.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use zkit::{Client, CreateMode, CreateOptions, SessionState};

/// Session timeout every test client asks for (the server clamps it to its own range).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound for anything a test awaits: a failure bound, never a pacing sleep.
pub const BOUND: Duration = Duration::from_secs(60);

/// Where the tests run.
#[derive(Debug, Clone)]
pub struct Target {
    connect: String,
    dir: Option<String>,
    testkit: Option<Arc<zkit_testkit::Server>>,
}

/// Returns the target or skips the test (returns from it) when there is none.
#[macro_export]
macro_rules! target {
    () => {
        match common::Target::get().await {
            Some(t) => t,
            None => {
                eprintln!("skipped: set ZK_TEST_CONNECT (see recipes/tests/common/mod.rs)");
                return;
            }
        }
    };
}

impl Target {
    /// Real ZooKeeper at `ZK_TEST_CONNECT`, else a fresh in-process testkit server.
    pub async fn get() -> Option<Target> {
        let _ = tracing_init();
        if let Ok(connect) = std::env::var("ZK_TEST_CONNECT") {
            return Some(Target {
                connect,
                dir: std::env::var("ZK_TEST_DIR").ok(),
                testkit: None,
            });
        }
        let server = zkit_testkit::Server::builder()
            .tick_time(Duration::from_millis(100))
            .min_session_timeout(Duration::from_millis(200))
            .start()
            .await
            .expect("start the testkit server");
        Some(Target {
            connect: server.connect_string(),
            dir: None,
            testkit: Some(Arc::new(server)),
        })
    }

    /// Whether this is real Apache ZooKeeper.
    pub fn is_real(&self) -> bool {
        self.testkit.is_none()
    }

    /// The server's host list, without a chroot (for foreign clients).
    pub fn connect_string_hosts(&self) -> &str {
        self.connect.split('/').next().unwrap_or(&self.connect)
    }

    /// The first host (what proxies forward to).
    fn upstream(&self) -> String {
        let hosts = self.connect.split('/').next().unwrap_or(&self.connect);
        hosts.split(',').next().unwrap_or(hosts).to_owned()
    }

    /// A fresh, empty namespace for one test.
    pub async fn namespace(&self, test: &str) -> Ns {
        let root = format!(
            "/zkit-recipe-tests/{test}-{}",
            zkit_recipes::znode::new_uuid()
        );
        let admin = Client::builder(&self.connect)
            .session_timeout(SESSION_TIMEOUT)
            .connect()
            .await
            .expect("connect to the test server");
        zkit_recipes::znode::ensure_path(
            &admin,
            &root,
            CreateMode::Persistent,
            &zkit_recipes::znode::default_retry(),
        )
        .await
        .expect("create the test namespace");
        admin.close().await.ok();
        Ns {
            target: self.clone(),
            root,
        }
    }

    /// Restarts the whole server (real ZooKeeper only, and only when `ZK_TEST_DIR` is set).
    pub async fn restart(&self) -> bool {
        let Some(dir) = &self.dir else { return false };
        let out = tokio::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/zookeeper.sh"
        ))
        .arg("restart")
        .arg(dir)
        .output()
        .await
        .expect("run zookeeper.sh restart");
        assert!(out.status.success(), "restart failed: {out:?}");
        true
    }
}

fn tracing_init() -> Option<()> {
    // Tests never install a subscriber unless asked: RUST_LOG is not read here on purpose.
    None
}

/// One test's namespace: clients made here are chrooted into it.
#[derive(Debug, Clone)]
pub struct Ns {
    pub target: Target,
    pub root: String,
}

impl Ns {
    fn connect_string(&self, hosts: &str) -> String {
        format!("{hosts}{}", self.root)
    }

    /// A client straight to the server, chrooted to the namespace.
    pub async fn client(&self) -> Client {
        let hosts = self.target.connect.split('/').next().unwrap().to_owned();
        builder(&self.connect_string(&hosts))
            .connect()
            .await
            .expect("connect")
    }

    /// A client (re-creating its session on expiry: the default) straight to the server.
    pub async fn recreating_client(&self) -> Client {
        let hosts = self.target.connect.split('/').next().unwrap().to_owned();
        let client = builder(&self.connect_string(&hosts))
            .connect()
            .await
            .expect("connect");
        assert!(client.recreates_on_expiry(), "the default");
        client
    }

    /// A client whose connection and session the test can break. Its connections go through
    /// a [`Proxy`] in any case (for [`Faulty::isolate_until_expired`]). `recreate: true` is the
    /// default client (re-creating its session on expiry); `false` opts out.
    pub async fn faulty_client(&self, recreate: bool) -> Faulty {
        let proxy = Proxy::start(&self.target.upstream()).await;
        let mut b = builder(&self.connect_string(&proxy.addr.to_string()));
        if !recreate {
            b = b.recreate_on_expiry(false);
        }
        let client = b.connect().await.expect("connect through proxy");
        assert_eq!(client.recreates_on_expiry(), recreate);
        Faulty {
            client,
            proxy,
            server: self.target.testkit.clone(),
        }
    }
}

fn builder(connect: &str) -> zkit::ClientBuilder {
    Client::builder(connect)
        .session_timeout(SESSION_TIMEOUT)
        .connect_timeout(Duration::from_secs(20))
        .backoff(Duration::from_millis(10), Duration::from_millis(200))
}

/// A client and the fault controls for it: the testkit's, or a proxy in front of a real server.
pub struct Faulty {
    pub client: Client,
    pub proxy: Proxy,
    server: Option<Arc<zkit_testkit::Server>>,
}

impl Faulty {
    /// Drops the client's connection; the session survives (the client reconnects).
    pub fn drop_connection(&self) {
        match &self.server {
            Some(s) => {
                s.close_session_connection(self.client.session_id());
            }
            None => self.proxy.cut(),
        }
    }

    /// Expires the session the way it happens in production: the client is cut off from the
    /// server (so it sees a disconnect at once) until the server has expired the session and the
    /// client has seen `Expired`.
    pub async fn isolate_until_expired(&self) {
        self.expire_with(true).await
    }

    /// Expires the session: on the testkit at once, server-side, while the client is still
    /// connected (it learns when the server closes its connection); on a real server by
    /// isolation.
    pub async fn expire(&self) {
        self.expire_with(self.server.is_none()).await
    }

    async fn expire_with(&self, isolate: bool) {
        let mut states = self.client.state_changes();
        let old = self.client.session_id();
        if isolate {
            self.proxy.partition(true);
        } else if let Some(s) = &self.server {
            s.expire_session(old);
        }
        let seen = async {
            if self.client.session_id() != old {
                return;
            }
            while let Some(s) = states.next().await {
                if s == SessionState::Expired {
                    return;
                }
            }
        };
        bounded("session expiry", seen).await;
        self.proxy.partition(false);
    }
}

/// A loopback TCP proxy with fault controls: cut every connection, or refuse all traffic.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    generation: watch::Sender<u64>,
    partitioned: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (generation, _) = watch::channel(0u64);
        let partitioned = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let gen_tx = generation.clone();
        let part = partitioned.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                if part.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let mut gen_rx = gen_tx.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = gen_rx.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            generation,
            partitioned,
            task,
        }
    }

    /// Closes every connection through the proxy now.
    pub fn cut(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// While partitioned, every connection is cut and new ones are closed at once.
    pub fn partition(&self, on: bool) {
        self.partitioned.store(on, Ordering::SeqCst);
        if on {
            self.cut();
        }
    }
}

/// Awaits `fut`, failing the test if it takes longer than [`BOUND`].
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {BOUND:?}"),
    }
}

/// Polls `check` (each poll is a server round trip, not a sleep) until it returns true.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    bounded(what, async {
        loop {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Children of `path` (empty when it does not exist).
pub async fn children(client: &Client, path: &str) -> Vec<String> {
    match client.get_children(path).await {
        Ok(c) => c,
        Err(zkit::Error::NoNode) => Vec::new(),
        Err(e) => panic!("get_children({path}): {e}"),
    }
}

/// Creates a persistent node with data (parents must exist).
pub async fn put(client: &Client, path: &str, data: &[u8]) {
    client
        .create(path, data, &CreateOptions::persistent())
        .await
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
}
