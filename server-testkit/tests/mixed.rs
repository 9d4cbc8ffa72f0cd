//! Mixed ensembles: real Apache ZooKeeper 3.8 servers and `zkit-server` members in one
//! ensemble, started by `scripts/zookeeper.sh start-mixed` from one shared `zoo.cfg`.
//!
//! Every txn a zkit learner applies carries the real leader's tree digest and is checked
//! against zkit's own (`zk_digest_mismatches_count` in `mntr`, with `zkit_digest_checks_count`
//! saying how many were compared), except, as in ZooKeeper, those re-applied onto a SNAP sync's
//! fuzzy snapshot before its NEWLEADER; real learners check a zkit leader's digests the same
//! way.
//! After a workload with kills and restarts of every member, every member must report the
//! same last zxid and the same tree (digested through a client, with ZooKeeper's node digest
//! formula), and no member may count a digest mismatch.
//!
//! Needs Java and Debian's `zookeeper` package: runs only with `ZKIT_MIXED=1` (CI's mixed
//! phase sets it), and says why it skips otherwise. `ZKIT_MIXED_TXNS` sets the workload's
//! size (default 2000 writes per phase; 40000 gives at least 100 000 txns per ensemble).

mod procs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use procs::{eventually, four_letter, srvr, temp_dir, BIN, PATIENCE};
use zkit::{Client, CreateOptions, Error};

fn enabled(test: &str) -> bool {
    if std::env::var("ZKIT_MIXED").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipping {test}: set ZKIT_MIXED=1 (needs Java and Debian's zookeeper package)");
    false
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/zookeeper.sh")
}

fn txns() -> u64 {
    std::env::var("ZKIT_MIXED_TXNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// One mixed ensemble under a temp dir; stopped (by the script, by pid) when dropped.
struct Mixed {
    dir: tempfile::TempDir,
    addrs: Vec<String>,
    env: Vec<(String, String)>,
}

impl Mixed {
    /// `zookeeper.sh start-mixed DIR ARGS...` with `env` for every later call too.
    fn start(tag: &str, args: &[&str], env: &[(&str, &str)]) -> Mixed {
        let mut m = Mixed {
            dir: temp_dir(tag),
            addrs: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let dir = m.dir.path().to_str().expect("utf-8 temp dir").to_owned();
        let mut all = vec!["start-mixed", dir.as_str()];
        all.extend_from_slice(args);
        let out = m.run(&all);
        m.addrs = out.trim().split(',').map(str::to_owned).collect();
        m
    }

    /// Runs the script; its stdout. Panics (with the members' log tails) when it fails.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .env("ZKIT_SERVER", BIN)
            .env("ZK_TICK_TIME", "500")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run scripts/zookeeper.sh");
        if !out.status.success() {
            panic!(
                "zookeeper.sh {args:?} failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for i in 1..=self.addrs.len().max(4) {
            let p = self.dir.path().join(format!("s{i}/zk.log"));
            if let Ok(t) = std::fs::read_to_string(&p) {
                let tail: Vec<&str> = t.lines().rev().take(15).collect();
                s += &format!(
                    "--- s{i}\n{}\n",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        s
    }

    /// Every member's log lines about elections, roles and syncs, to tell after a failure who
    /// led when and how each learner was synced.
    fn election_lines(&self) -> String {
        const KEYS: [&str; 8] = [
            "LEADING",
            "FOLLOWING",
            "LOOKING",
            "Synchronizing",
            "Sending",
            "sync=",
            "epoch",
            "role",
        ];
        let mut s = String::new();
        for i in 1..=self.addrs.len() {
            s += &format!("--- s{i}\n");
            for l in self
                .log_of(i)
                .lines()
                .filter(|l| KEYS.iter().any(|k| l.contains(k)))
            {
                s += l;
                s.push('\n');
            }
        }
        s
    }

    fn dir(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp dir")
    }

    /// SIGKILLs member `n` (1-based).
    fn kill(&self, n: usize) {
        self.run(&["kill-one", self.dir(), &n.to_string()]);
    }

    /// Starts member `n` again and waits until it serves.
    fn restart(&self, n: usize) {
        self.run(&["start-one", self.dir(), &n.to_string()]);
    }

    fn log_of(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("s{n}/zk.log"))).unwrap_or_default()
    }

    /// `mntr` of member `n` as key → value.
    async fn mntr(&self, n: usize) -> BTreeMap<String, String> {
        four_letter(&self.addrs[n - 1], "mntr")
            .await
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Every member serves and reports the same last zxid; that zxid.
    async fn converged(&self) -> i64 {
        eventually("every member at the same zxid", || async {
            let mut zs = Vec::new();
            for a in &self.addrs {
                let (mode, z) = srvr(a).await;
                mode.filter(|m| m != "looking")?;
                zs.push(z?);
            }
            zs.windows(2).all(|w| w[0] == w[1]).then(|| zs[0])
        })
        .await
    }

    /// No member counted a digest mismatch; the zkit learners checked `min_checks` or more.
    async fn assert_no_digest_mismatch(&self, zkit_members: &[usize], min_checks: u64) {
        for n in 1..=self.addrs.len() {
            let m = self.mntr(n).await;
            assert_eq!(
                m.get("zk_digest_mismatches_count").map(String::as_str),
                Some("0"),
                "server.{n} counted digest mismatches: {m:?}\n{}",
                self.logs()
            );
            if zkit_members.contains(&n) {
                let checks: u64 = m
                    .get("zkit_digest_checks_count")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                eprintln!("server.{n} (zkit): {checks} digest checks");
                assert!(
                    checks >= min_checks,
                    "server.{n}: {checks} checks < {min_checks}"
                );
            }
        }
    }

    /// The tree digest of every member (read through a client of that member alone) agrees.
    async fn assert_same_trees(&self) -> i64 {
        let mut digests = Vec::new();
        for a in &self.addrs {
            let c = connect(a).await;
            c.sync("/").await.expect("sync");
            let (d, nodes) = tree_digest(&c).await;
            digests.push((a.clone(), d, nodes));
            let _ = c.close().await;
        }
        eprintln!("tree digests: {digests:?}");
        assert!(
            digests
                .windows(2)
                .all(|w| w[0].1 == w[1].1 && w[0].2 == w[1].2),
            "members differ: {digests:?}"
        );
        digests[0].1
    }
}

impl Drop for Mixed {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", self.dir()])
            .output();
    }
}

async fn connect(addr: &str) -> Client {
    eventually("a client session", || async {
        Client::builder(addr)
            .session_timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .ok()
    })
    .await
}

/// ZooKeeper's tree digest as a client sees the tree: CRC-32 of each node's path (none for
/// the root), data and stat fields, summed, `/zookeeper/...` left out. Also the node count.
async fn tree_digest(c: &Client) -> (i64, usize) {
    let mut sum = 0u64;
    let mut nodes = 0;
    let mut stack = vec!["/".to_owned()];
    while let Some(p) = stack.pop() {
        let (data, s) = c.get_data(&p).await.expect("get_data");
        let kids = c.get_children(&p).await.expect("get_children");
        nodes += 1;
        if !p.starts_with("/zookeeper/") {
            let mut h = crc32fast::Hasher::new();
            if p != "/" {
                h.update(p.as_bytes());
            }
            h.update(&data);
            for v in [s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime] {
                h.update(&v.to_be_bytes());
            }
            for v in [s.version, s.cversion, s.aversion] {
                h.update(&v.to_be_bytes());
            }
            h.update(&s.ephemeral_owner.to_be_bytes());
            sum = sum.wrapping_add(h.finalize() as u64);
        }
        for k in kids {
            stack.push(if p == "/" {
                format!("/{k}")
            } else {
                format!("{p}/{k}")
            });
        }
    }
    (sum as i64, nodes)
}

/// Writers on every member (each client on one member only): creates, sets, deletes and
/// ephemerals over a small key space, errors tolerated (members come and go).
struct Workload {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    fn start(addrs: &[String], seed: u64) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let tasks = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (a, stop, done) = (a.clone(), stop.clone(), done.clone());
                tokio::spawn(async move { writer(a, seed + i as u64, stop, done).await })
            })
            .collect();
        Workload { stop, done, tasks }
    }

    /// Waits until `n` more writes succeeded (across all writers); fails only when no write
    /// succeeds for [`PATIENCE`] (a large workload takes longer than that in all).
    async fn progress(&self, n: u64) {
        let target = self.done.load(Ordering::Relaxed) + n;
        let (mut seen, mut since) = (0, tokio::time::Instant::now());
        loop {
            let now = self.done.load(Ordering::Relaxed);
            if now >= target {
                return;
            }
            if now != seen {
                (seen, since) = (now, tokio::time::Instant::now());
            }
            assert!(
                since.elapsed() < PATIENCE,
                "no write succeeded for {PATIENCE:?} ({now} of {target})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("writer task");
        }
        self.done.load(Ordering::Relaxed)
    }
}

/// Writes each writer keeps in flight.
const IN_FLIGHT: usize = 16;

async fn writer(addr: String, seed: u64, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let c = match &client {
            Some(c) => c.clone(),
            None => {
                match Client::builder(&addr)
                    .session_timeout(Duration::from_secs(4))
                    .connect_timeout(Duration::from_secs(2))
                    .connect()
                    .await
                {
                    Ok(c) => {
                        let _ = c.create("/w", b"", &CreateOptions::persistent()).await;
                        client = Some(c.clone());
                        c
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
        };
        // A window of writes in flight at once (the client pipelines them; the servers group
        // their commits), so a workload of 100 000 txns takes seconds, not minutes.
        let window = (0..IN_FLIGHT).map(|_| {
            let (c, k, data, kind) = (
                c.clone(),
                format!("/w/k{}", rng.u32(0..64)),
                vec![rng.u8(..); rng.usize(0..64)],
                rng.u32(0..10),
            );
            async move {
                match kind {
                    0..=2 => c
                        .create(&k, &data, &CreateOptions::persistent())
                        .await
                        .map(|_| ()),
                    3..=5 => c.set_data(&k, &data, None).await.map(|_| ()),
                    6..=7 => c.delete(&k, None).await,
                    _ => c
                        .create(&format!("{k}e"), &data, &CreateOptions::ephemeral())
                        .await
                        .map(|_| ()),
                }
            }
        });
        let mut pause = false;
        for r in futures::future::join_all(window).await {
            match r {
                // A refused write is a txn too (ZooKeeper logs an error txn for it).
                Ok(()) | Err(Error::NodeExists) | Err(Error::NoNode) | Err(Error::NotEmpty) => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err(Error::SessionExpired) | Err(Error::Closed) => client = None,
                Err(_) => pause = true,
            }
        }
        if pause {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if let Some(c) = client {
        let _ = c.close().await;
    }
}

/// Runs the workload while every member in turn is SIGKILLed and restarted; then checks
/// convergence, identical trees and zero digest mismatches.
async fn workload_with_kills(m: &Mixed, zkit: &[usize], min_checks: u64) {
    let per_phase = txns();
    let w = Workload::start(&m.addrs, 17);
    w.progress(per_phase).await;
    for n in 1..=m.addrs.len() {
        m.kill(n);
        w.progress(per_phase / 4).await;
        m.restart(n);
        w.progress(per_phase / 4).await;
    }
    let writes = w.finish().await;
    let zxid = m.converged().await;
    eprintln!("{writes} writes; every member at zxid 0x{zxid:x}");
    m.assert_same_trees().await;
    m.assert_no_digest_mismatch(zkit, min_checks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zkit_observer_in_a_real_ensemble_survives_kills_with_identical_trees() {
    if !enabled("zkit_observer_in_a_real_ensemble_survives_kills_with_identical_trees") {
        return;
    }
    let m = Mixed::start("mixed-obs", &["--real", "3", "--zkit-observer", "1"], &[]);
    workload_with_kills(&m, &[4], 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zkit_follower_with_two_real_servers_survives_kills_with_identical_trees() {
    if !enabled("zkit_follower_with_two_real_servers_survives_kills_with_identical_trees") {
        return;
    }
    let m = Mixed::start("mixed-fol", &["--real", "2", "--zkit-follower", "1"], &[]);
    workload_with_kills(&m, &[3], 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_real_and_two_zkit_servers_survive_kills_with_identical_trees() {
    if !enabled("one_real_and_two_zkit_servers_survive_kills_with_identical_trees") {
        return;
    }
    let m = Mixed::start("mixed-1r2z", &["--real", "1", "--zkit-follower", "2"], &[]);
    workload_with_kills(&m, &[2, 3], 1).await;
}

/// Writes `n` nodes through `addr` as fast as a pipeline allows.
async fn write_nodes(addr: &str, prefix: &str, n: usize) {
    let c = connect(addr).await;
    let _ = c.create(prefix, b"", &CreateOptions::persistent()).await;
    let mut futs = Vec::new();
    for i in 0..n {
        futs.push(c.create(
            &format!("{prefix}/n{i}"),
            b"v",
            &CreateOptions::persistent(),
        ));
        if futs.len() == 500 {
            for f in futs.drain(..) {
                f.await.expect("create");
            }
        }
    }
    for f in futs {
        f.await.expect("create");
    }
    let _ = c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zkit_observer_behind_catches_up_by_diff_and_by_snap() {
    if !enabled("a_zkit_observer_behind_catches_up_by_diff_and_by_snap") {
        return;
    }
    // A short committed log and no syncing from the txn log files: a learner more than 200
    // txns behind gets SNAP, a closer one DIFF.
    let m = Mixed::start(
        "mixed-sync",
        &["--real", "3", "--zkit-observer", "1"],
        &[(
            "ZK_JAVA_OPTS",
            "-Dzookeeper.commitLogCount=200 -Dzookeeper.snapshotSizeFactor=-1",
        )],
    );
    // DIFF: 50 txns behind.
    m.kill(4);
    write_nodes(&m.addrs[0], "/diff", 50).await;
    m.restart(4);
    m.converged().await;
    m.assert_same_trees().await;
    let leader_logs: String = (1..=3).map(|n| m.log_of(n)).collect();
    assert!(leader_logs.contains("Sending DIFF"), "no DIFF sync seen");
    // SNAP: 1000 txns behind.
    m.kill(4);
    write_nodes(&m.addrs[0], "/snap", 1000).await;
    m.restart(4);
    m.converged().await;
    m.assert_same_trees().await;
    let leader_logs: String = (1..=3).map(|n| m.log_of(n)).collect();
    assert!(
        leader_logs.contains("Sending snapshot last zxid of peer"),
        "no SNAP sync seen"
    );
    m.assert_no_digest_mismatch(&[4], 1).await;
}

/// Sends `sig` (`STOP`, `CONT`, ...) to member `n`'s process.
fn signal(m: &Mixed, n: usize, sig: &str) {
    let pid = std::fs::read_to_string(m.dir.path().join(format!("s{n}/pid"))).expect("pid file");
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), pid.trim()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} server.{n}");
}

/// Whether any txn log file of member `n` holds `needle`.
fn logged(m: &Mixed, n: usize, needle: &[u8]) -> bool {
    let dir = m.dir.path().join(format!("s{n}/data/version-2"));
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name().to_string_lossy().starts_with("log.")
                && std::fs::read(e.path())
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zkit_member_holding_a_txn_never_committed_is_truncated_by_a_real_leader() {
    if !enabled("a_zkit_member_holding_a_txn_never_committed_is_truncated_by_a_real_leader") {
        return;
    }
    // Two real servers and a zkit one with the highest id, which leads a fresh ensemble.
    // A 2 s tick: the leader gives up on silent followers only after syncLimit (5) ticks.
    let m = Mixed::start(
        "mixed-trunc",
        &["--real", "2", "--zkit-follower", "1"],
        &[("ZK_TICK_TIME", "2000")],
    );
    let (mode, _) = srvr(&m.addrs[2]).await;
    assert_eq!(
        mode.as_deref(),
        Some("leader"),
        "the zkit server leads a fresh ensemble"
    );
    write_nodes(&m.addrs[2], "/before", 20).await;
    // The real followers freeze (SIGSTOP: their connections stay up), so the zkit leader
    // logs a proposal nobody acknowledges; then they die without having read it from their
    // sockets. The session is created before: creating one takes a quorum too.
    let c = connect(&m.addrs[2]).await;
    signal(&m, 1, "STOP");
    signal(&m, 2, "STOP");
    let orphan = c.create("/never-committed", b"lost", &CreateOptions::persistent());
    let orphan = tokio::spawn(orphan);
    eventually("the zkit leader logged the proposal", || async {
        logged(&m, 3, b"/never-committed").then_some(())
    })
    .await;
    m.kill(1);
    m.kill(2);
    m.kill(3);
    drop(orphan);
    m.restart(1);
    m.restart(2);
    // The real servers elect one of them in a new epoch; the zkit member rejoins before any
    // write of that epoch, so the leader is behind it and truncates it (with a write of the
    // new epoch already committed, ZooKeeper 3.8 sends SNAP instead: it cannot pick a TRUNC
    // point in its log for a peer zxid it never had).
    eventually("a real leader", || async {
        let (a, _) = srvr(&m.addrs[0]).await;
        let (b, _) = srvr(&m.addrs[1]).await;
        (a.as_deref() == Some("leader") || b.as_deref() == Some("leader")).then_some(())
    })
    .await;
    m.restart(3);
    write_nodes(&m.addrs[0], "/after", 20).await;
    m.converged().await;
    m.assert_same_trees().await;
    let c = connect(&m.addrs[2]).await;
    c.sync("/").await.expect("sync");
    assert!(
        c.exists("/never-committed")
            .await
            .expect("exists")
            .is_none(),
        "the uncommitted txn was dropped; what the members logged of elections and syncs:\n{}",
        m.election_lines()
    );
    let logs: String = (1..=2).map(|n| m.log_of(n)).collect();
    let syncs: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("Sending") || l.contains("Synchronizing with Learner"))
        .collect();
    // ZooKeeper logs the TRUNC it sends at debug level only; the zkit learner logs it.
    assert!(
        m.log_of(3).contains("sync=Trunc"),
        "no TRUNC sync seen: {syncs:#?}"
    );
    m.assert_no_digest_mismatch(&[3], 0).await;
}
