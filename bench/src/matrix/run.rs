//! One measured run of one cell: a client, an operation, a window, on one connection.

use std::future::Future;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::stats::cpu_time;

/// The operations of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// getData of one node.
    Get,
    /// setData of one node (any version).
    Set,
    /// create of a fresh node, then its delete (each counts as one request).
    CreateDel,
}

impl Op {
    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::CreateDel => "createdel",
        }
    }
}

/// Which client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// zkit.
    Zkit,
    /// The `zookeeper-client` crate.
    Crate,
}

impl Client {
    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Client::Zkit => "zkit",
            Client::Crate => "zookeeper-client",
        }
    }
}

/// Both clients connected to one server.
pub struct Clients {
    /// zkit.
    pub zkit: zkit::Client,
    /// zookeeper-client.
    pub zkc: zookeeper_client::Client,
    /// The node get and set use.
    pub node: String,
    /// The parent of createdel's nodes.
    pub dir: String,
}

impl Clients {
    /// Connects both clients to `connect` and creates the nodes the runs use.
    pub async fn connect(connect: &str, value: &[u8]) -> Result<Clients, String> {
        let zkit = zkit::Client::builder(connect)
            .session_timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| format!("zkit connect {connect}: {e}"))?;
        let zkc = zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(30))
            .connect(connect)
            .await
            .map_err(|e| format!("zookeeper-client connect {connect}: {e}"))?;
        let node = format!("/zkit-bench-node-{}", std::process::id());
        let dir = format!("/zkit-bench-dir-{}", std::process::id());
        for (p, v) in [(&node, value), (&dir, &b""[..])] {
            match zkit.create(p, v, &zkit::CreateOptions::persistent()).await {
                Ok(_) | Err(zkit::Error::NodeExists) => {}
                Err(e) => return Err(format!("create {p}: {e}")),
            }
        }
        Ok(Clients {
            zkit,
            zkc,
            node,
            dir,
        })
    }

    /// Removes the nodes and closes both sessions.
    pub async fn close(self) {
        let _ = self.zkit.delete(&self.node, None).await;
        let _ = self.zkit.delete(&self.dir, None).await;
        drop(self.zkc);
        let _ = self.zkit.close().await;
    }
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Requests completed per second.
    pub ops_per_sec: f64,
    /// This process's CPU per request, in µs (client, runtime and reactor threads).
    pub cpu_us: Option<f64>,
}

/// Runs `requests` requests of `op` through `client`, `window` in flight.
pub async fn run(
    c: &Clients,
    client: Client,
    op: Op,
    window: usize,
    requests: usize,
    value: &[u8],
) -> Result<Run, String> {
    // createdel's paths are made before the clock starts (the same for both clients).
    let paths: Vec<String> = match op {
        Op::CreateDel => (0..requests.div_ceil(2))
            .map(|i| format!("{}/n{i}", c.dir))
            .collect(),
        _ => Vec::new(),
    };
    let zkit_opts = zkit::CreateOptions::persistent();
    let zkc_opts =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    let node = c.node.as_str();
    match client {
        Client::Zkit => {
            let z = &c.zkit;
            pipelined(requests, window, |i| {
                let f: std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> = match op
                {
                    Op::Get => {
                        let f = z.get_data(node);
                        Box::pin(async move { check_len(f.await.map(|(d, _)| d.len()), value) })
                    }
                    Op::Set => {
                        let f = z.set_data(node, value, None);
                        Box::pin(async move { f.await.map(drop).map_err(|e| e.to_string()) })
                    }
                    Op::CreateDel if i % 2 == 0 => {
                        let f = z.create(&paths[i / 2], value, &zkit_opts);
                        Box::pin(async move { f.await.map(drop).map_err(|e| e.to_string()) })
                    }
                    Op::CreateDel => {
                        let f = z.delete(&paths[i / 2], None);
                        Box::pin(async move { f.await.map_err(|e| e.to_string()) })
                    }
                };
                f
            })
            .await
        }
        Client::Crate => {
            let z = &c.zkc;
            pipelined(requests, window, |i| {
                let f: std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> =
                    match op {
                        Op::Get => {
                            let f = z.get_data(node);
                            Box::pin(async move { check_len(f.await.map(|(d, _)| d.len()), value) })
                        }
                        Op::Set => {
                            let f = z.set_data(node, value, None);
                            Box::pin(async move { f.await.map(drop).map_err(|e| e.to_string()) })
                        }
                        Op::CreateDel if i % 2 == 0 => {
                            let f = z.create(&paths[i / 2], value, &zkc_opts);
                            Box::pin(async move { f.await.map(drop).map_err(|e| e.to_string()) })
                        }
                        Op::CreateDel => {
                            let f = z.delete(&paths[i / 2], None);
                            Box::pin(async move { f.await.map_err(|e| e.to_string()) })
                        }
                    };
                f
            })
            .await
        }
    }
}

fn check_len<E: std::fmt::Display>(r: Result<usize, E>, value: &[u8]) -> Result<(), String> {
    match r {
        Ok(n) if n == value.len() => Ok(()),
        Ok(n) => Err(format!("got {n} bytes, expected {}", value.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// Keeps `window` requests in flight until `requests` have completed. `issue(i)` must queue
/// request `i` when called (both clients do), so requests reach the server in call order.
async fn pipelined<'a, F>(requests: usize, window: usize, mut issue: F) -> Result<Run, String>
where
    F: FnMut(usize) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>,
{
    let mut inflight = FuturesUnordered::new();
    let mut issued = 0;
    let mut done = 0;
    let cpu0 = cpu_time(None);
    let start = Instant::now();
    while done < requests {
        while issued < requests && inflight.len() < window.max(1) {
            inflight.push(issue(issued));
            issued += 1;
        }
        match inflight.next().await {
            Some(Ok(())) => done += 1,
            Some(Err(e)) => return Err(e),
            None => return Err("no request in flight".into()),
        }
    }
    let elapsed = start.elapsed();
    let cpu = match (cpu_time(None), cpu0) {
        (Some(a), Some(b)) => Some(a.saturating_sub(b).as_secs_f64() * 1e6 / requests as f64),
        _ => None,
    };
    Ok(Run {
        ops_per_sec: requests as f64 / elapsed.as_secs_f64(),
        cpu_us: cpu,
    })
}
