//! The ensemble a test runs against: real ZooKeeper's 3 servers driven by `scripts/zookeeper.sh`,
//! or an in-process `zkit_testkit::Ensemble`, behind the same methods. Members are numbered from 1,
//! as in `server.N`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::run_script;

/// How long a member may take to answer a four-letter word or to settle into a role.
const PATIENCE: Duration = Duration::from_secs(60);

/// A 3-server ensemble whose members can be stopped and started one at a time.
pub struct Ensemble {
    /// Connect string of every member (no chroot).
    pub connect: String,
    /// Each member's client address, member `n` at `n - 1` (the same across restarts).
    members: Vec<SocketAddr>,
    backend: Backend,
}

enum Backend {
    /// In process; its fault methods take `&mut self`, hence the lock.
    Testkit(Box<Mutex<zkit_testkit::Ensemble>>),
    /// Real ZooKeeper in `dir/s1..`.
    Real { script: PathBuf, dir: PathBuf },
}

impl Ensemble {
    /// Starts an in-process ensemble from `builder` and waits until every member serves.
    pub async fn start_testkit(builder: zkit_testkit::EnsembleBuilder) -> Ensemble {
        let e = builder.start().await.expect("start the testkit ensemble");
        e.wait_for_leader()
            .await
            .expect("the testkit ensemble elects");
        Ensemble {
            connect: e.connect_string(),
            members: e.servers().map(|s| s.addr()).collect(),
            backend: Backend::Testkit(Box::new(Mutex::new(e))),
        }
    }

    /// The real ensemble started by `zookeeper.sh start-ensemble dir`, serving `connect`.
    pub fn real(connect: &str, script: &Path, dir: &Path) -> Ensemble {
        let mut members = Vec::new();
        for n in 1.. {
            let Ok(text) = std::fs::read_to_string(dir.join(format!("s{n}")).join("zoo.cfg"))
            else {
                break;
            };
            let port = text
                .lines()
                .filter_map(|l| l.strip_prefix("clientPort="))
                .next_back()
                .and_then(|p| p.trim().parse::<u16>().ok())
                .expect("clientPort in zoo.cfg");
            members.push(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        assert!(
            !members.is_empty(),
            "no ensemble member in {}",
            dir.display()
        );
        Ensemble {
            connect: connect.to_owned(),
            members,
            backend: Backend::Real {
                script: script.to_owned(),
                dir: dir.to_owned(),
            },
        }
    }

    /// The in-process ensemble, for faults real ZooKeeper cannot be put under (None for real
    /// ZooKeeper). Its server indexes are member numbers minus one.
    pub fn testkit(&self) -> Option<&Mutex<zkit_testkit::Ensemble>> {
        match &self.backend {
            Backend::Testkit(e) => Some(e),
            Backend::Real { .. } => None,
        }
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Member `n`'s client address.
    pub fn member_addr(&self, n: usize) -> SocketAddr {
        self.members[n - 1]
    }

    /// The member that serves clients at `addr`.
    pub fn member_at(&self, addr: SocketAddr) -> usize {
        match self.members.iter().position(|a| *a == addr) {
            Some(i) => i + 1,
            None => panic!("no ensemble member serves {addr}"),
        }
    }

    /// `ns` (this ensemble's connect string plus a chroot) pinned to member `n` alone.
    pub fn on_member(&self, n: usize, ns: &str) -> String {
        let chroot = ns
            .strip_prefix(&self.connect)
            .expect("a namespace of this ensemble");
        format!("{}{chroot}", self.member_addr(n))
    }

    /// The leader and the followers, once every member serves (asked with `srvr`, as a
    /// client sees it, on both targets).
    pub async fn roles(&self) -> (usize, Vec<usize>) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let mut leader = Vec::new();
            let mut followers = Vec::new();
            for n in 1..=self.len() {
                let srvr = four_letter_word(self.member_addr(n), "srvr").await;
                match srvr.lines().find_map(|l| l.strip_prefix("Mode: ")) {
                    Some("leader") => leader.push(n),
                    Some("follower") => followers.push(n),
                    _ => {}
                }
            }
            if leader.len() == 1 && leader.len() + followers.len() == self.len() {
                return (leader[0], followers);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no settled ensemble after {PATIENCE:?}: leader {leader:?}, followers {followers:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops member `n` cleanly.
    pub async fn stop_member(&self, n: usize) {
        match &self.backend {
            Backend::Testkit(e) => e.lock().await.stop(n - 1).await,
            Backend::Real { script, dir } => {
                run_script(script, &["stop-one", dir.to_str().unwrap(), &n.to_string()]).await;
            }
        }
    }

    /// Starts member `n` again and waits until it has rejoined (when a quorum runs).
    pub async fn start_member(&self, n: usize) {
        match &self.backend {
            Backend::Testkit(e) => {
                let mut e = e.lock().await;
                e.restart(n - 1).await.expect("restart the member");
                e.wait_for("the member serving again", |e| {
                    e.server(n - 1).role().is_serving()
                })
                .await
                .expect("the member rejoins");
            }
            Backend::Real { script, dir } => {
                run_script(
                    script,
                    &["start-one", dir.to_str().unwrap(), &n.to_string()],
                )
                .await;
            }
        }
    }
}

/// The last zxid the server at `addr` applied, as its `srvr` reports it (`Zxid: 0x...`).
pub async fn served_zxid(addr: SocketAddr) -> i64 {
    let srvr = four_letter_word(addr, "srvr").await;
    srvr.lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x"))
        .and_then(|z| i64::from_str_radix(z.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no zxid in the srvr answer of {addr}: {srvr:?}"))
}

/// Sends a four-letter word and returns the answer (empty when the member is down).
pub async fn four_letter_word(addr: SocketAddr, word: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return String::new();
    };
    if s.write_all(word.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_string(&mut out)).await;
    out
}
