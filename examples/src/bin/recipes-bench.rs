//! Recipe latencies on the embedded testkit and on real Apache ZooKeeper in the same run:
//! Mutex acquire / release uncontended, lock hand-off with 10 waiters, leader failover after the
//! leader's close and after its session's expiry, config-change propagation to 100 watchers.
//! On the real server it then compares zkit's Mutex with kazoo's Lock (`KAZOO_PYTHON`) and
//! Curator's InterProcessMutex (`CURATOR_CLASSPATH`), interleaved after a warm-up (see
//! `zkit_examples::lock_compare`).
//!
//! ```sh
//! cargo run --release -p zkit-examples --bin recipes-bench                 # starts a real server
//! cargo run --release -p zkit-examples --bin recipes-bench -- --connect 127.0.0.1:2181
//! cargo run --release -p zkit-examples --bin recipes-bench -- --testkit-only
//! cargo run --release -p zkit-examples --bin recipes-bench -- --locks-only   # the comparison alone
//! ```
//!
//! Without `--connect` the bench starts a standalone server with `scripts/zookeeper.sh`
//! (`ZK_TICK_TIME=200`, so a 1 s session timeout is allowed) in a temporary directory and stops
//! it at the end. Expiry failover is measured by partitioning the leader from the server (a TCP
//! proxy that drops everything) until the server expires its session: it includes the session
//! timeout (1 s requested on both targets).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use zkit::{Client, CreateOptions};
use zkit_examples::demos::DemoResult;
use zkit_examples::{nonce, step};
use zkit_recipes::config::ConfigWatch;
use zkit_recipes::leader::{LeaderLatch, LeaderOptions};
use zkit_recipes::{Mutex, MutexOptions};

const SESSION_TIMEOUT: Duration = Duration::from_secs(1);

/// One measured quantity: samples in milliseconds.
struct Metric {
    name: String,
    samples: Vec<f64>,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl Metric {
    fn new(name: &str, mut samples: Vec<f64>) -> Metric {
        samples.sort_by(f64::total_cmp);
        Metric {
            name: name.to_owned(),
            samples,
        }
    }
    fn p50(&self) -> f64 {
        pct(&self.samples, 0.5)
    }
    fn p99(&self) -> f64 {
        pct(&self.samples, 0.99)
    }
}

fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

async fn client(connect: &str) -> DemoResult<Client> {
    Ok(Client::builder(connect)
        .session_timeout(SESSION_TIMEOUT)
        .connect()
        .await?)
}

async fn namespace(connect: &str, name: &str) -> DemoResult<String> {
    let ns = format!("/bench-{name}-{:08x}", nonce());
    let root = Client::connect(connect).await?;
    root.create(&ns, b"", &CreateOptions::persistent()).await?;
    root.close().await?;
    Ok(format!("{connect}{ns}"))
}

async fn lock_uncontended(connect: &str, n: usize) -> DemoResult<Vec<Metric>> {
    let zk = client(connect).await?;
    let m = Mutex::new(&zk, "/lock", MutexOptions::default());
    let (mut acq, mut rel) = (Vec::new(), Vec::new());
    for i in 0..n + 20 {
        let t = Instant::now();
        let g = m.acquire().await?;
        let a = since(t);
        let t = Instant::now();
        g.release().await?;
        if i >= 20 {
            acq.push(a);
            rel.push(since(t));
        }
    }
    zk.close().await?;
    Ok(vec![
        Metric::new("lock acquire, uncontended", acq),
        Metric::new("lock release, uncontended", rel),
    ])
}

/// 11 contenders (a holder and 10 waiters) loop acquire / release; a sample is the time from the
/// holder's `release()` call to the next holder's `acquire()` returning.
async fn lock_handoff(connect: &str, rounds: usize) -> DemoResult<Metric> {
    let released_at: Arc<StdMutex<Option<Instant>>> = Default::default();
    let samples: Arc<StdMutex<Vec<f64>>> = Default::default();
    let mut tasks = Vec::new();
    for _ in 0..11 {
        let zk = client(connect).await?;
        let (released_at, samples) = (released_at.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let m = Mutex::new(&zk, "/lock", MutexOptions::default());
            for _ in 0..rounds {
                let g = m.acquire().await?;
                if let Some(t) = released_at.lock().ok().and_then(|mut r| r.take()) {
                    if let Ok(mut s) = samples.lock() {
                        s.push(since(t));
                    }
                }
                if let Ok(mut r) = released_at.lock() {
                    *r = Some(Instant::now());
                }
                g.release().await?;
            }
            zk.close().await?;
            DemoResult::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let s = samples.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(Metric::new("lock hand-off, 10 waiters", s))
}

/// Waits until one of `latches` leads; returns its index.
async fn next_leader(latches: &[LeaderLatch]) -> DemoResult<usize> {
    let futs: Vec<_> = latches.iter().map(|l| Box::pin(l.leadership())).collect();
    let (r, i, _) = futures::future::select_all(futs).await;
    r?;
    Ok(i)
}

async fn failover_close(connect: &str, rounds: usize) -> DemoResult<Metric> {
    let mut samples = Vec::new();
    let mut latches = Vec::new();
    let mut clients = Vec::new();
    for i in 0..3 {
        let zk = client(connect).await?;
        latches
            .push(LeaderLatch::start(&zk, "/election", LeaderOptions::new(format!("c{i}"))).await?);
        clients.push(zk);
    }
    for r in 0..rounds {
        let leader = next_leader(&latches).await?;
        let old = latches.remove(leader);
        let zk = clients.remove(leader);
        // The followers must be queued before the clock starts.
        while old.participants().await?.len() < 3 {}
        let t = Instant::now();
        old.close().await?;
        next_leader(&latches).await?;
        samples.push(since(t));
        zk.close().await?;
        let zk = client(connect).await?;
        latches
            .push(LeaderLatch::start(&zk, "/election", LeaderOptions::new(format!("n{r}"))).await?);
        clients.push(zk);
    }
    for (l, zk) in latches.iter().zip(&clients) {
        l.close().await?;
        zk.close().await?;
    }
    Ok(Metric::new("leader failover after close", samples))
}

/// A loopback TCP proxy that can drop everything (a partition).
struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<u64>,
    partitioned: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|g| *g += 1);
    }
}

impl Proxy {
    async fn start(upstream: String) -> DemoResult<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, _) = watch::channel(0u64);
        let partitioned = Arc::new(AtomicBool::new(false));
        let (c, p) = (cut.clone(), partitioned.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if p.load(Ordering::SeqCst) {
                    continue;
                }
                let mut gen = c.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = gen.changed() => {}
                    }
                });
            }
        });
        Ok(Proxy {
            addr,
            cut,
            partitioned,
            task,
        })
    }

    fn partition(&self, on: bool) {
        self.partitioned.store(on, Ordering::SeqCst);
        if on {
            self.cut.send_modify(|g| *g += 1);
        }
    }
}

/// The leader is partitioned from the server; a sample is the time from the partition to another
/// participant leading (the server must expire the leader's session first). Also reports when
/// the old leader was told (at once: it is suspended).
async fn failover_expiry(connect: &str, rounds: usize) -> DemoResult<Vec<Metric>> {
    let (hosts, chroot) = match connect.find('/') {
        Some(i) => (&connect[..i], &connect[i..]),
        None => (connect, ""),
    };
    let upstream = hosts.split(',').next().unwrap_or(hosts).to_owned();
    let (mut failover, mut told) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let mut latches = Vec::new();
        let mut keep = Vec::new();
        for i in 0..3 {
            let proxy = Proxy::start(upstream.clone()).await?;
            let zk = client(&format!("{}{chroot}", proxy.addr)).await?;
            latches.push(
                LeaderLatch::start(&zk, "/election-x", LeaderOptions::new(format!("r{r}c{i}")))
                    .await?,
            );
            keep.push((zk, proxy));
        }
        let leader = next_leader(&latches).await?;
        while latches[0].participants().await?.len() < 3 {}
        let term = latches[leader].leadership().await?;
        let old = latches.remove(leader);
        let (old_zk, proxy) = keep.remove(leader);
        let t = Instant::now();
        proxy.partition(true);
        let told_at = async {
            term.lost().await;
            since(t)
        };
        let (told_ms, new) = tokio::join!(told_at, next_leader(&latches));
        new?;
        failover.push(since(t));
        told.push(told_ms);
        drop(old);
        drop(old_zk);
        drop(proxy);
        for (l, (zk, _)) in latches.iter().zip(&keep) {
            l.close().await?;
            zk.close().await?;
        }
    }
    Ok(vec![
        Metric::new("leader failover after session expiry", failover),
        Metric::new("  old leader told (suspended)", told),
    ])
}

/// 100 `ConfigWatch`es (25 clients x 4) on one node; a sample per write is the time until the
/// median / the last watcher has the new value.
async fn config_propagation(connect: &str, writes: usize) -> DemoResult<Vec<Metric>> {
    const CLIENTS: usize = 25;
    const PER_CLIENT: usize = 4;
    let writer = client(connect).await?;
    writer
        .create("/cfg", b"0", &CreateOptions::persistent())
        .await?;
    let seen: Arc<StdMutex<Vec<(u64, Instant)>>> = Default::default();
    let count = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(Notify::new());
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let zk = client(connect).await?;
        for _ in 0..PER_CLIENT {
            let cfg = ConfigWatch::start(
                &zk,
                "/cfg",
                zkit_recipes::cache::CacheOptions::default(),
                |b: Option<&[u8]>| {
                    std::str::from_utf8(b.unwrap_or(b"0"))
                        .map_err(|e| e.to_string())?
                        .parse::<u64>()
                        .map_err(|e| e.to_string())
                },
            )
            .await?;
            let mut rx = cfg.watched();
            let (seen, count, notify) = (seen.clone(), count.clone(), notify.clone());
            tasks.push(tokio::spawn(async move {
                let _cfg = cfg;
                while rx.changed().await.is_ok() {
                    let v = *rx.borrow_and_update();
                    if let Ok(mut s) = seen.lock() {
                        s.push((v, Instant::now()));
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    notify.notify_one();
                }
            }));
        }
        clients.push(zk);
    }
    let watchers = CLIENTS * PER_CLIENT;
    let (mut median, mut last) = (Vec::new(), Vec::new());
    for v in 1..=writes as u64 {
        count.store(0, Ordering::SeqCst);
        if let Ok(mut s) = seen.lock() {
            s.clear();
        }
        let t = Instant::now();
        writer.set_data("/cfg", v.to_string(), None).await?;
        while count.load(Ordering::SeqCst) < watchers {
            tokio::time::timeout(Duration::from_secs(10), notify.notified())
                .await
                .map_err(|_| "config propagation stalled")?;
        }
        let mut lat: Vec<f64> = seen
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(x, _)| *x == v)
                    .map(|(_, at)| at.duration_since(t).as_secs_f64() * 1e3)
                    .collect()
            })
            .unwrap_or_default();
        lat.sort_by(f64::total_cmp);
        median.push(pct(&lat, 0.5));
        last.push(pct(&lat, 1.0));
    }
    for t in tasks {
        t.abort();
    }
    for zk in clients {
        zk.close().await?;
    }
    writer.close().await?;
    Ok(vec![
        Metric::new("config change -> median of 100 watchers", median),
        Metric::new("config change -> all 100 watchers", last),
    ])
}

async fn run_all(connect: &str, label: &str) -> DemoResult<Vec<Metric>> {
    let mut out = Vec::new();
    let t = Instant::now();
    out.extend(lock_uncontended(&namespace(connect, "lock").await?, 500).await?);
    out.push(lock_handoff(&namespace(connect, "handoff").await?, 30).await?);
    out.push(failover_close(&namespace(connect, "close").await?, 15).await?);
    out.extend(failover_expiry(&namespace(connect, "expiry").await?, 3).await?);
    out.extend(config_propagation(&namespace(connect, "config").await?, 30).await?);
    step(&format!(
        "{label}: measured in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(out)
}

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/zookeeper.sh").to_owned()
}

#[tokio::main]
async fn main() -> DemoResult {
    zkit_examples::init_tracing();
    let mut args = std::env::args().skip(1);
    let (mut connect, mut testkit_only, mut locks_only) = (None, false, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--connect" => connect = args.next(),
            "--testkit-only" => testkit_only = true,
            "--locks-only" => locks_only = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    println!("zkit-recipes bench (session timeout {SESSION_TIMEOUT:?})");
    let server = zkit_testkit::Server::builder()
        .tick_time(Duration::from_millis(100))
        .min_session_timeout(Duration::from_millis(200))
        .start()
        .await?;
    let testkit = if locks_only {
        Vec::new()
    } else {
        run_all(&server.connect_string(), "testkit").await?
    };
    drop(server);

    let mut started = None;
    let mut compared = None;
    let real = if testkit_only {
        None
    } else {
        let c = match connect {
            Some(c) => c,
            None => {
                let dir = std::env::temp_dir().join(format!("zkit-recipes-bench-{}", nonce()));
                let out = std::process::Command::new(script())
                    .arg("start-standalone")
                    .arg(&dir)
                    .env("ZK_TICK_TIME", "200")
                    .env("ZK_LOG_LEVEL", "WARN")
                    .output()?;
                if !out.status.success() {
                    return Err(format!(
                        "starting ZooKeeper failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                    .into());
                }
                started = Some(dir);
                String::from_utf8(out.stdout)?.trim().to_owned()
            }
        };
        step(&format!("real ZooKeeper at {c}"));
        let r = if locks_only {
            Ok(Vec::new())
        } else {
            run_all(&c, "real ZooKeeper").await
        };
        compared = zkit_examples::lock_compare::compare(&c, 300, 10, 100)
            .await
            .map_err(|e| eprintln!("lock comparison failed: {e}"))
            .ok();
        if let Some(dir) = &started {
            let _ = std::process::Command::new(script())
                .arg("stop")
                .arg(dir)
                .output();
            let _ = std::fs::remove_dir_all(dir);
        }
        Some(r?)
    };

    if !locks_only {
        println!();
        println!("| metric (ms) | n | testkit p50 | testkit p99 | ZooKeeper p50 | ZooKeeper p99 |");
        println!("|---|---:|---:|---:|---:|---:|");
    }
    for (i, m) in testkit.iter().enumerate() {
        let (rp50, rp99) = match real.as_ref().and_then(|r| r.get(i)) {
            Some(r) => (format!("{:.2}", r.p50()), format!("{:.2}", r.p99())),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {:.2} | {:.2} | {rp50} | {rp99} |",
            m.name,
            m.samples.len(),
            m.p50(),
            m.p99()
        );
    }
    if let Some(rows) = compared {
        print_comparison(&rows);
    }
    Ok(())
}

/// The interleaved lock comparison: p50 / p99 of each client, then zkit's ratios.
fn print_comparison(rows: &[zkit_examples::lock_compare::Samples]) {
    println!(
        "\nUncontended lock acquire / release on the same real server, interleaved rounds after warm-up:\n"
    );
    println!("| client | n | acquire p50 | acquire p99 | release p50 | release p99 |");
    println!("|---|---:|---:|---:|---:|---:|");
    let stats: Vec<(Metric, Metric)> = rows
        .iter()
        .map(|r| {
            (
                Metric::new(&r.name, r.acquire.clone()),
                Metric::new(&r.name, r.release.clone()),
            )
        })
        .collect();
    for (a, r) in &stats {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            a.name,
            a.samples.len(),
            a.p50(),
            a.p99(),
            r.p50(),
            r.p99()
        );
    }
    if let Some((za, _)) = stats.first() {
        for (a, _) in &stats[1..] {
            println!(
                "zkit acquire vs {}: p50 {:.2}x, p99 {:.2}x (zkit time / theirs)",
                a.name,
                za.p50() / a.p50(),
                za.p99() / a.p99()
            );
        }
    }
}
