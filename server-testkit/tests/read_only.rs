//! Read-only mode (`readonlymode.enabled`) with the zkit client, against the testkit ensemble
//! and a real ZooKeeper ensemble: a server cut off from its quorum accepts clients that asked
//! for read-only (`ConnectedReadOnly`), serves their reads, refuses writes with `NotReadOnly`
//! and refuses clients that did not ask, and sessions of the quorum (their clients wait
//! for a read-write server); once the quorum is back the clients are read-write again (a
//! session that only ever saw a read-only server gets a new one).
//!
//! Real ZooKeeper: `ZKIT_READONLY_ZK_DIR=DIR`, where `ZK_READONLY=1
//! ZK_CFG_EXTRA=$'localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true'
//! scripts/zookeeper.sh start-ensemble DIR` started 3
//! servers (ZooKeeper 3.8's read-only server answers a new session's handshake with
//! `NotReadOnly` unless local sessions are enabled); the test stops servers 2 and 3 and
//! starts them again. Skipped without it.

use std::time::Duration;

use zkit::{Client, CreateOptions, Error, SessionState};
use zkit_testkit::{Ensemble, ServerMode};

const PATIENCE: Duration = Duration::from_secs(90);

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn client(addr: &str, read_only: bool) -> Result<Client, Error> {
    Client::builder(addr)
        .session_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(3))
        .read_only(read_only)
        .connect()
        .await
}

/// What the scenario needs from a cluster: cut server `m` off from its quorum and back.
trait Cluster {
    async fn cut_off(&mut self);
    async fn rejoin(&mut self);
}

/// The scenario: `all` is every server, `one` the server that gets cut off.
async fn scenario(c: &mut impl Cluster, all: &str, one: &str) {
    let root = format!("/ro-{}", std::process::id());
    let rw = client(all, false).await.unwrap();
    rw.create(&root, b"v", &CreateOptions::persistent())
        .await
        .unwrap();
    let before = client(one, true).await.unwrap();
    assert_eq!(before.state(), SessionState::Connected);
    let before_id = before.session_id();
    // An ephemeral makes it a session of the quorum on a server with local sessions.
    before
        .create(&format!("{root}/eph"), b"", &CreateOptions::ephemeral())
        .await
        .unwrap();

    c.cut_off().await;
    // The server takes a while to notice it lost its quorum and to serve read-only.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let ro = loop {
        match client(one, true).await {
            Ok(c) => break c,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "{e}"),
        }
    };
    eventually("a new read-only client is connected", || {
        ro.state() == SessionState::ConnectedReadOnly
    })
    .await;
    let (data, _) = ro.get_data(&root).await.unwrap();
    assert_eq!(&data[..], b"v");
    assert!(ro
        .get_children("/")
        .await
        .unwrap()
        .contains(&root[1..].to_owned()));
    let w = ro
        .create(&format!("{root}/x"), b"", &CreateOptions::persistent())
        .await;
    assert!(matches!(w, Err(Error::NotReadOnly)), "{w:?}");
    let w = ro.set_data(&root, b"w", None).await;
    assert!(matches!(w, Err(Error::NotReadOnly)), "{w:?}");
    // The session made read-write is refused by the read-only server.
    assert!(!before.state().is_connected(), "{:?}", before.state());
    assert!(
        client(one, false).await.is_err(),
        "a client that did not ask for read-only is refused"
    );

    c.rejoin().await;
    let mut last = (SessionState::Closed, SessionState::Closed);
    eventually("the read-only clients are read-write again", || {
        if last != (ro.state(), before.state()) {
            last = (ro.state(), before.state());
            eprintln!(
                "read-only client {:?}, read-write client {:?}",
                last.0, last.1
            );
        }
        ro.state() == SessionState::Connected && before.state() == SessionState::Connected
    })
    .await;
    assert_eq!(
        before.session_id(),
        before_id,
        "a read-write session survives"
    );
    // (`rw` may have lost its session: a real server with local sessions forgets them when
    // it changes role.)
    assert!(ro.exists(&format!("{root}/eph")).await.unwrap().is_some());
    before.delete(&format!("{root}/eph"), None).await.unwrap();
    ro.create(&format!("{root}/x"), b"", &CreateOptions::persistent())
        .await
        .unwrap();
    before.set_data(&root, b"w", None).await.unwrap();
    ro.delete(&format!("{root}/x"), None).await.unwrap();
    ro.delete(&root, None).await.unwrap();
}

struct Testkit {
    e: Ensemble,
    m: usize,
}

impl Cluster for Testkit {
    async fn cut_off(&mut self) {
        self.e.isolate(self.m).await;
        let m = self.m;
        self.e
            .wait_for("the server cut off stops serving", |e| {
                e.server(m).mode() == ServerMode::NotServing
            })
            .await
            .unwrap();
    }

    async fn rejoin(&mut self) {
        self.e.heal().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_on_the_testkit_ensemble() {
    let e = Ensemble::builder()
        .servers(3)
        .tick_time(Duration::from_millis(100))
        .max_session_timeout(Duration::from_secs(60))
        .read_only(true)
        .start()
        .await
        .unwrap();
    let leader = e.wait_for_leader().await.unwrap();
    let m = (leader + 1) % 3;
    let (all, one) = (e.connect_string(), e.server(m).connect_string());
    scenario(&mut Testkit { e, m }, &all, &one).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_read_only_mode_a_cut_off_server_refuses_read_only_clients() {
    let mut e = Ensemble::builder()
        .servers(3)
        .tick_time(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let leader = e.wait_for_leader().await.unwrap();
    let m = (leader + 1) % 3;
    e.isolate(m).await;
    e.wait_for("the server cut off stops serving", |e| {
        e.server(m).mode() == ServerMode::NotServing
    })
    .await
    .unwrap();
    assert!(client(&e.server(m).connect_string(), true).await.is_err());
}

struct RealZk {
    dir: String,
}

impl RealZk {
    fn script(&self, args: &[&str]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/zookeeper.sh");
        let st = std::process::Command::new("bash")
            .arg(script)
            .args(args)
            .env("ZK_READONLY", "1")
            .status()
            .expect("run scripts/zookeeper.sh");
        assert!(st.success(), "zookeeper.sh {args:?}");
    }
}

impl Cluster for RealZk {
    async fn cut_off(&mut self) {
        let dir = self.dir.clone();
        for n in ["2", "3"] {
            self.script(&["stop-one", &dir, n]);
        }
    }

    async fn rejoin(&mut self) {
        let dir = self.dir.clone();
        for n in ["2", "3"] {
            self.script(&["start-one", &dir, n]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_on_a_real_zookeeper_ensemble() {
    let Ok(dir) = std::env::var("ZKIT_READONLY_ZK_DIR") else {
        eprintln!(
            "skipped: ZKIT_READONLY_ZK_DIR is not set (ZK_READONLY=1 scripts/zookeeper.sh \
             start-ensemble DIR)"
        );
        return;
    };
    let all = std::fs::read_to_string(format!("{dir}/connect"))
        .expect("DIR/connect")
        .trim()
        .to_owned();
    let one = all.split(',').next().unwrap().to_owned();
    scenario(&mut RealZk { dir }, &all, &one).await;
}
