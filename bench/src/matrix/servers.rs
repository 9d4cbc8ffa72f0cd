//! The two servers the matrix measures against, started by the bench and stopped on drop:
//! `zkit-server` (this workspace's, in memory) and real Apache ZooKeeper (through
//! `scripts/zookeeper.sh`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::server::ZkServer;

/// A running server of either kind.
pub enum Server {
    /// `zkit-server --port 0`.
    Zkit {
        /// The process (killed by pid on drop).
        child: Child,
        /// `127.0.0.1:PORT`.
        connect: String,
    },
    /// Real ZooKeeper.
    Real(ZkServer),
}

impl Server {
    /// Starts `zkit-server` (the binary at `bin`) on a free port.
    pub fn zkit(bin: &Path) -> Result<Server, String> {
        let mut child = Command::new(bin)
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        // It says where it listens on stderr, after its log lines.
        let Some(out) = child.stderr.take() else {
            let _ = child.kill();
            return Err("zkit-server: no stderr".into());
        };
        let mut line = String::new();
        let mut rd = BufReader::new(out);
        loop {
            line.clear();
            match rd.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("zkit-server exited before listening".into());
                }
                Ok(_) => {}
            }
            if let Some(addr) = line.trim().strip_prefix("zkit-server listening on ") {
                let connect = addr.to_owned();
                // Keep draining its stderr so it never blocks on a full pipe.
                std::thread::spawn(move || {
                    let mut sink = String::new();
                    while rd.read_line(&mut sink).is_ok_and(|n| n > 0) {
                        sink.clear();
                    }
                });
                return Ok(Server::Zkit { child, connect });
            }
        }
    }

    /// Starts a standalone real ZooKeeper with `script`.
    pub fn real(script: &Path) -> Result<Server, String> {
        ZkServer::start(script).map(Server::Real)
    }

    /// The connect string.
    pub fn connect(&self) -> &str {
        match self {
            Server::Zkit { connect, .. } => connect,
            Server::Real(s) => s.connect_string(),
        }
    }

    /// The server process's pid.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Server::Zkit { child, .. } => Some(child.id()),
            Server::Real(s) => s.pid(),
        }
    }

    /// The server process's resident set size in MiB (`VmRSS`).
    pub fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Zkit { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `zkit-server` binary next to this one (`target/release/zkit-server` for a release bench).
pub fn default_zkit_server() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("zkit-server")))
        .unwrap_or_else(|| PathBuf::from("zkit-server"))
}

/// Server RSS with `nodes` znodes of `size` bytes under one parent: (empty, full) in MiB.
pub async fn rss_with_nodes(
    server: &Server,
    nodes: usize,
    size: usize,
) -> Result<(f64, f64), String> {
    let empty = server.rss_mib().ok_or("cannot read the server's RSS")?;
    let zk = zkit::Client::builder(server.connect())
        .session_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let parent = "/zkit-bench-rss";
    let opts = zkit::CreateOptions::persistent();
    zk.create(parent, b"", &opts)
        .await
        .map_err(|e| format!("create {parent}: {e}"))?;
    let value = vec![b'v'; size];
    let mut inflight = FuturesUnordered::new();
    let mut issued = 0;
    let mut done = 0;
    while done < nodes {
        while issued < nodes && inflight.len() < 256 {
            inflight.push(zk.create(&format!("{parent}/node-{issued:07}"), &value, &opts));
            issued += 1;
        }
        match inflight.next().await {
            Some(Ok(_)) => done += 1,
            Some(Err(e)) => return Err(format!("create: {e}")),
            None => break,
        }
    }
    let full = server.rss_mib().ok_or("cannot read the server's RSS")?;
    let _ = zk.close().await;
    Ok((empty, full))
}
