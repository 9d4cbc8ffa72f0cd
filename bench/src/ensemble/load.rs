//! Timed, pipelined load over many connections: every connection keeps `window` requests in
//! flight on its own znode until the deadline; requests that complete after it are not counted.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::{cpu_time, RunStats};

/// The operation a run repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `setData` of the connection's znode (any version): a quorum write, fsync'd.
    SetData,
    /// `getData` of the connection's znode: served by the server the connection is on.
    GetData,
}

impl Op {
    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Op::SetData => "setData",
            Op::GetData => "getData",
        }
    }
}

/// One connection of the load: a client (its own session and TCP connection) and its znode.
#[derive(Clone)]
pub struct Conn {
    /// The client.
    pub client: zkit::Client,
    /// The znode it reads or writes.
    pub path: String,
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The operation.
    pub op: Op,
    /// Requests in flight per connection.
    pub window: usize,
    /// Value written (setData) or expected length (getData).
    pub value: Bytes,
    /// How long the run lasts.
    pub duration: Duration,
}

/// Runs `spec` on every connection at once; `server_pids` are summed for server CPU.
pub async fn run(conns: &[Conn], spec: &Spec, server_pids: &[u32]) -> Result<RunStats, String> {
    let cpu0 = cpu_time(None);
    let srv0 = server_cpu(server_pids);
    let start = Instant::now();
    let deadline = start + spec.duration;
    let mut tasks = JoinSet::new();
    for c in conns {
        tasks.spawn(conn_loop(c.clone(), spec.clone(), deadline));
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let lat = joined.map_err(|e| format!("load task: {e}"))??;
        latencies.extend(lat);
    }
    let sub = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
    let client_cpu = sub(cpu_time(None), cpu0);
    let server_cpu = sub(server_cpu(server_pids), srv0);
    latencies.sort_unstable();
    Ok(RunStats {
        requests: latencies.len(),
        elapsed: spec.duration,
        latencies,
        client_cpu,
        server_cpu,
    })
}

fn server_cpu(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| cpu_time(Some(p))).sum()
}

/// One connection: issue until the deadline, then drain. Returns the latencies of the requests
/// that completed before the deadline.
async fn conn_loop(c: Conn, spec: Spec, deadline: Instant) -> Result<Vec<Duration>, String> {
    let mut inflight = FuturesUnordered::new();
    let mut latencies = Vec::new();
    loop {
        while inflight.len() < spec.window.max(1) && Instant::now() < deadline {
            let t0 = Instant::now();
            let f = issue(&c, &spec);
            inflight.push(async move {
                let r = f.await;
                (r, t0, Instant::now())
            });
        }
        match inflight.next().await {
            None => return Ok(latencies),
            Some((Err(e), _, _)) => return Err(format!("{} {}: {e}", spec.op.name(), c.path)),
            Some((Ok(()), t0, done)) if done <= deadline => latencies.push(done - t0),
            Some((Ok(()), _, _)) => {}
        }
    }
}

/// Sends one request now (zkit queues it in the call) and returns its checked outcome.
fn issue(
    c: &Conn,
    spec: &Spec,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> {
    match spec.op {
        Op::SetData => {
            let f = c.client.set_data(&c.path, &spec.value, None);
            Box::pin(async move { f.await.map(|_| ()).map_err(|e| e.to_string()) })
        }
        Op::GetData => {
            let f = c.client.get_data(&c.path);
            let want = spec.value.len();
            Box::pin(async move {
                match f.await {
                    Ok((d, _)) if d.len() == want => Ok(()),
                    Ok((d, _)) => Err(format!("got {} bytes, expected {want}", d.len())),
                    Err(e) => Err(e.to_string()),
                }
            })
        }
    }
}
