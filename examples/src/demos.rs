//! The recipe demos behind the `lock`, `leader`, `config` and `barrier` examples and the tour's
//! recipes section. Each takes a connect string (with a chroot of its own) and narrates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zkit::{Client, CreateOptions};
use zkit_recipes::barrier::{Barrier, BarrierOptions, DoubleBarrier, DoubleBarrierOptions};
use zkit_recipes::config::ConfigWatch;
use zkit_recipes::leader::{LeaderLatch, LeaderOptions};
use zkit_recipes::{Mutex, MutexOptions};

use crate::{ms, step};

/// What the demos return.
pub type DemoResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn client(connect: &str) -> DemoResult<Client> {
    Ok(Client::builder(connect)
        .session_timeout(Duration::from_secs(6))
        .recreate_on_expiry(true)
        .connect()
        .await?)
}

/// `workers` clients each add 1 to `/counter` `rounds` times under one `Mutex`, with a plain
/// read-then-write (no version check): only mutual exclusion keeps the count right.
pub async fn lock(connect: &str, workers: usize, rounds: usize) -> DemoResult {
    let admin = client(connect).await?;
    admin
        .create("/counter", b"0", &CreateOptions::persistent())
        .await?;
    step(&format!(
        "{workers} workers, each adding 1 to /counter {rounds} times under the Mutex at /lock"
    ));
    let t = Instant::now();
    let handoffs = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let zk = client(connect).await?;
        let handoffs = handoffs.clone();
        tasks.push(tokio::spawn(async move {
            let mutex = Mutex::new(
                &zk,
                "/lock",
                MutexOptions::default().data(format!("worker-{w}")),
            );
            for _ in 0..rounds {
                let asked = Instant::now();
                let guard = mutex.acquire().await?;
                if let Ok(mut h) = handoffs.lock() {
                    h.push(ms(asked));
                }
                let (data, _) = zk.get_data("/counter").await?;
                let n: u64 = std::str::from_utf8(&data)?.parse()?;
                zk.set_data("/counter", (n + 1).to_string(), None).await?;
                guard.release().await?;
            }
            zk.close().await?;
            DemoResult::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let (data, _) = admin.get_data("/counter").await?;
    let total: usize = std::str::from_utf8(&data)?.parse()?;
    let mut waits = handoffs.lock().map(|h| h.clone()).unwrap_or_default();
    waits.sort_by(f64::total_cmp);
    let p50 = waits.get(waits.len() / 2).copied().unwrap_or(0.0);
    step(&format!(
        "{} acquisitions in {:.0} ms; median wait for the lock {p50:.2} ms",
        waits.len(),
        ms(t)
    ));
    let expected = workers * rounds;
    if total != expected {
        return Err(format!("counter is {total}, expected {expected}: two holders at once").into());
    }
    step(&format!(
        "final count {total} = {workers} x {rounds}: no update was lost"
    ));
    admin.close().await?;
    Ok(())
}

/// Three candidates; the leader steps down (closes), another takes over; that one gives up its
/// term (re-queues) and the third takes over.
pub async fn leader(connect: &str) -> DemoResult {
    let mut latches = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let zk = client(connect).await?;
        latches.push((
            LeaderLatch::start(&zk, "/election", LeaderOptions::new(name)).await?,
            zk,
        ));
    }
    step("three candidates joined /election: alpha, beta, gamma");
    let (_, first, _) = wait_leader(&latches).await;
    let first_leader = latches[first].0.id().to_owned();
    // Every candidate queues in the background; wait until all three nodes are in.
    let mut ps = latches[0].0.participants().await?;
    for _ in 0..100 {
        if ps.len() == latches.len() {
            break;
        }
        ps = latches[0].0.participants().await?;
    }
    step(&format!(
        "leader: {first_leader}; queue: {}",
        ps.iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(" < ")
    ));
    // The leader steps down for good.
    let (old, old_zk) = latches.remove(first);
    let term = old.leadership().await?;
    let t = Instant::now();
    old.close().await?;
    step(&format!(
        "{first_leader} steps down (close): told {:?}",
        term.lost().await
    ));
    let (_, next, _) = wait_leader(&latches).await;
    step(&format!(
        "{} took over {:.1} ms after the close",
        latches[next].0.id(),
        ms(t)
    ));
    old_zk.close().await?;
    // The new leader gives up its term but stays in the election.
    let t = Instant::now();
    latches[next].0.requeue();
    let others: Vec<_> = latches
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != next)
        .map(|(_, (l, _))| Box::pin(l.leadership()))
        .collect();
    futures::future::select_all(others).await.0?;
    let took = ms(t);
    // The re-queued candidate joins at the back of the queue.
    let mut queue = latches[0].0.participants().await?;
    for _ in 0..100 {
        if queue.len() == latches.len() {
            break;
        }
        queue = latches[0].0.participants().await?;
    }
    step(&format!(
        "{} re-queued; {} leads after {:.1} ms (queue: {})",
        latches[next].0.id(),
        queue.first().map(|p| p.id.as_str()).unwrap_or("-"),
        took,
        queue
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(" < ")
    ));
    for (l, zk) in latches {
        l.close().await?;
        zk.close().await?;
    }
    Ok(())
}

/// Resolves when one of the latches leads: (its term, its index, the rest).
async fn wait_leader(
    latches: &[(LeaderLatch, Client)],
) -> (
    zkit_recipes::Result<zkit_recipes::leader::Leadership>,
    usize,
    (),
) {
    let futs: Vec<_> = latches
        .iter()
        .map(|(l, _)| Box::pin(l.leadership()))
        .collect();
    let (r, i, _) = futures::future::select_all(futs).await;
    (r, i, ())
}

/// The configuration the config demo's service runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Worker threads.
    pub workers: u32,
    /// Log level.
    pub log_level: String,
}

/// Decodes `workers=N log_level=L` (missing node: defaults).
pub fn decode_config(bytes: Option<&[u8]>) -> Result<ServiceConfig, String> {
    let mut cfg = ServiceConfig {
        workers: 4,
        log_level: "info".into(),
    };
    let Some(bytes) = bytes else { return Ok(cfg) };
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    for kv in text.split_whitespace() {
        match kv.split_once('=') {
            Some(("workers", v)) => cfg.workers = v.parse().map_err(|e| format!("workers: {e}"))?,
            Some(("log_level", v)) => cfg.log_level = v.to_owned(),
            _ => return Err(format!("cannot read {kv:?}")),
        }
    }
    Ok(cfg)
}

/// A config-reloading service watches `/service/config`; an operator (a second client, its own
/// session) changes it a few times, once with a typo. The service prints every new config.
pub async fn config(connect: &str) -> DemoResult {
    let service = client(connect).await?;
    let operator = client(connect).await?;
    let cfg = ConfigWatch::start(
        &service,
        "/service/config",
        zkit_recipes::cache::CacheOptions::default(),
        decode_config,
    )
    .await?;
    let mut rx = cfg.watched();
    let mut errors = cfg.errors();
    step(&format!(
        "service starts with {:?} (no config node yet)",
        *rx.borrow()
    ));
    operator
        .create("/service", b"", &CreateOptions::persistent())
        .await?;
    let versions: [&[u8]; 4] = [
        b"workers=8 log_level=info",
        b"workers=16 log_level=debug",
        b"workers=sixteen",
        b"workers=12 log_level=warn",
    ];
    for (i, v) in versions.iter().enumerate() {
        let t = Instant::now();
        if i == 0 {
            operator
                .create("/service/config", v, &CreateOptions::persistent())
                .await?;
        } else {
            operator.set_data("/service/config", v, None).await?;
        }
        step(&format!("operator writes {:?}", String::from_utf8_lossy(v)));
        loop {
            tokio::select! {
                r = rx.changed() => {
                    r?;
                    let now = rx.borrow_and_update().clone();
                    step(&format!("  service reloads {now:?} ({:.2} ms after the write)", ms(t)));
                    break;
                }
                r = errors.changed() => {
                    r?;
                    // A good version clears the error first; only a failure is news here.
                    let Some(e) = errors.borrow_and_update().clone() else { continue };
                    step(&format!("  service rejects it ({}) and keeps {:?}", e.message, *rx.borrow()));
                    break;
                }
            }
        }
    }
    drop(cfg);
    service.close().await?;
    operator.close().await?;
    Ok(())
}

/// A start gate (`Barrier`) and a round of work between a `DoubleBarrier`'s enter and leave.
pub async fn barrier(connect: &str, members: usize) -> DemoResult {
    let coordinator = client(connect).await?;
    let gate = Barrier::new(&coordinator, "/gate", BarrierOptions::default());
    gate.set().await?;
    step(&format!(
        "coordinator sets the start gate; {members} workers wait on it"
    ));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let (parked_tx, mut parked_rx) = tokio::sync::mpsc::channel(members);
    for w in 0..members {
        let zk = client(connect).await?;
        let parked = parked_tx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = parked.send(()).await;
            Barrier::new(&zk, "/gate", BarrierOptions::default())
                .wait()
                .await?;
            let started = ms(t0);
            let round = DoubleBarrier::new(&zk, "/round", DoubleBarrierOptions::new(members));
            // Workers arrive at different times: worker w does w small requests first.
            for _ in 0..w * 3 {
                zk.exists("/gate").await?;
            }
            let arrived = ms(t0);
            let member = round.enter().await?;
            let entered = ms(t0);
            for _ in 0..(members - w) * 3 {
                zk.exists("/round").await?;
            }
            let leaving = ms(t0);
            member.leave().await?;
            let left = ms(t0);
            zk.close().await?;
            DemoResult::Ok((w, started, arrived, entered, leaving, left))
        }));
    }
    // Open the gate once every worker is about to wait on it.
    for _ in 0..members {
        parked_rx.recv().await;
    }
    let opened = ms(t0);
    gate.remove().await?;
    step(&format!("gate removed at {opened:.1} ms"));
    let mut rows = Vec::new();
    for t in tasks {
        rows.push(t.await??);
    }
    for (w, started, arrived, entered, leaving, left) in &rows {
        step(&format!(
            "worker {w}: released {started:.1} ms, arrived {arrived:.1}, entered {entered:.1}, done {leaving:.1}, left {left:.1}"
        ));
    }
    let last_arrival = rows.iter().map(|r| r.2).fold(0.0, f64::max);
    let first_entry = rows.iter().map(|r| r.3).fold(f64::MAX, f64::min);
    let last_done = rows.iter().map(|r| r.4).fold(0.0, f64::max);
    let first_left = rows.iter().map(|r| r.5).fold(f64::MAX, f64::min);
    if first_entry < last_arrival || first_left < last_done {
        return Err("a worker passed the double barrier early".into());
    }
    step(&format!(
        "nobody entered before the last arrival ({last_arrival:.1} ms) and nobody left before the last finished ({last_done:.1} ms)"
    ));
    coordinator.close().await?;
    Ok(())
}
