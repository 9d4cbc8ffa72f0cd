//! The pipelined getData workload, written once for any client: keep `window` requests in
//! flight on one connection until `requests` have completed.

use std::future::Future;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::stats::{cpu_time, RunStats};

/// Which client a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// This workspace's client.
    Zkit,
    /// crates.io `zookeeper-client` (kezhuw).
    ZookeeperClient,
}

impl Which {
    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Which::Zkit => "zkit",
            Which::ZookeeperClient => "zookeeper-client",
        }
    }
}

/// Both clients, each with its own session (one TCP connection each).
pub struct Clients {
    /// zkit.
    pub zkit: zkit::Client,
    /// zookeeper-client.
    pub zkc: zookeeper_client::Client,
}

/// Workload parameters.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Requests in the run.
    pub requests: usize,
    /// Requests in flight at once.
    pub window: usize,
    /// Expected value length (every reply is checked).
    pub value_size: usize,
}

/// One run of `p.requests` getData calls of `path` through `which`.
pub async fn run(
    clients: &Clients,
    which: Which,
    path: &str,
    p: Params,
    server_pid: Option<u32>,
) -> Result<RunStats, String> {
    match which {
        Which::Zkit => {
            let c = &clients.zkit;
            pipelined(p, server_pid, || {
                let f = c.get_data(path);
                async move { f.await.map(|(d, _)| d.len()).map_err(|e| e.to_string()) }
            })
            .await
        }
        Which::ZookeeperClient => {
            let c = &clients.zkc;
            pipelined(p, server_pid, || {
                let f = c.get_data(path);
                async move { f.await.map(|(d, _)| d.len()).map_err(|e| e.to_string()) }
            })
            .await
        }
    }
}

/// The loop itself. `issue` must send its request when called (both clients queue the request
/// in the call, before the future is polled), so the clock for a request starts right before
/// the call and stops when its future resolves.
async fn pipelined<F, Fut>(
    p: Params,
    server_pid: Option<u32>,
    mut issue: F,
) -> Result<RunStats, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, String>>,
{
    let window = p.window.max(1);
    let mut latencies = Vec::with_capacity(p.requests);
    let mut inflight = FuturesUnordered::new();
    let mut issued = 0;
    let cpu0 = cpu_time(None);
    let srv0 = server_pid.and_then(|pid| cpu_time(Some(pid)));
    let start = Instant::now();
    while latencies.len() < p.requests {
        while issued < p.requests && inflight.len() < window {
            let t0 = Instant::now();
            let f = issue();
            inflight.push(async move {
                let r = f.await;
                (r, t0.elapsed())
            });
            issued += 1;
        }
        match inflight.next().await {
            Some((Ok(len), lat)) if len == p.value_size => latencies.push(lat),
            Some((Ok(len), _)) => {
                return Err(format!("got {len} bytes, expected {}", p.value_size))
            }
            Some((Err(e), _)) => return Err(format!("getData failed: {e}")),
            None => return Err("no request in flight".into()),
        }
    }
    let elapsed = start.elapsed();
    let sub = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
    let client_cpu = sub(cpu_time(None), cpu0);
    let server_cpu = sub(server_pid.and_then(|pid| cpu_time(Some(pid))), srv0);
    latencies.sort_unstable();
    Ok(RunStats {
        requests: p.requests,
        elapsed,
        latencies,
        client_cpu,
        server_cpu,
    })
}
