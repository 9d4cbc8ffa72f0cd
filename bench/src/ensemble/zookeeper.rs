//! A real Apache ZooKeeper ensemble of three JVMs, started, inspected and stopped through
//! `scripts/zookeeper.sh start-ensemble` (the same script CI uses), for the `ensemble` benchmark.
//!
//! Start-up is timed from spawning the script until a zkit client has created a node: the
//! client ports are read from the `zoo.cfg` files the script writes before it launches the JVMs,
//! so the probe does not wait for the script's own readiness polling.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::probe_create;
use crate::server::DEFAULT_JAVA_OPTS;

/// How long start-up, a leader or a first write may take before the bench gives up.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// One server of the ensemble: its directory under the ensemble's and its client port.
#[derive(Debug, Clone)]
struct Member {
    dir: PathBuf,
    port: u16,
}

/// A running 3-server ensemble; stopped (and its directory removed) on drop, so an error in the
/// benchmark does not leave JVMs behind.
pub struct ZkEnsemble {
    script: PathBuf,
    dir: PathBuf,
    members: Vec<Member>,
}

impl ZkEnsemble {
    /// Starts a fresh ensemble in `dir` (which must not hold one) and returns it with the time
    /// from spawning the script until a client could create a node.
    pub async fn start_timed(script: &Path, dir: &Path) -> Result<(ZkEnsemble, Duration), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(script).arg("start-ensemble").arg(&dir);
        if std::env::var_os("ZK_JAVA_OPTS").is_none() {
            cmd.env("ZK_JAVA_OPTS", DEFAULT_JAVA_OPTS);
        }
        if std::env::var_os("ZK_LOG_LEVEL").is_none() {
            cmd.env("ZK_LOG_LEVEL", "WARN");
        }
        cmd.env("ZK_ENSEMBLE_SIZE", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(false);
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        // From here on, drop stops whatever the script started.
        let mut ens = ZkEnsemble {
            script: script.to_owned(),
            dir,
            members: Vec::new(),
        };
        let probe = format!("/zkit-bench-ready-{}", std::process::id());
        loop {
            if t0.elapsed() > PATIENCE {
                return Err(format!("ensemble in {} not ready", ens.dir.display()));
            }
            // The script gave up (it has said why on stderr).
            if let Ok(Some(status)) = child.try_wait() {
                if !status.success() {
                    return Err(format!("start-ensemble failed ({status})"));
                }
            }
            // The script writes every zoo.cfg before it launches the first JVM; if it retries
            // after a port conflict it writes new ones, so they are read again every round.
            match ens.read_members() {
                Some(m) => ens.members = m,
                None => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            }
            if probe_create(&ens.connect_string(), &probe, Duration::from_secs(3))
                .await
                .is_ok()
            {
                break;
            }
        }
        let ready = t0.elapsed();
        // The script returns once every server reports leader or follower.
        let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
            .await
            .map_err(|_| "start-ensemble did not return".to_owned())?
            .map_err(|e| format!("start-ensemble: {e}"))?;
        if !out.status.success() {
            return Err(format!("start-ensemble failed ({})", out.status));
        }
        ens.members = ens
            .read_members()
            .ok_or("start-ensemble left no zoo.cfg files")?;
        Ok((ens, ready))
    }

    /// The three members' `zoo.cfg` client ports, once all three files are complete.
    fn read_members(&self) -> Option<Vec<Member>> {
        (1..=3)
            .map(|i| {
                let dir = self.dir.join(format!("s{i}"));
                let cfg = std::fs::read_to_string(dir.join("zoo.cfg")).ok()?;
                let port = cfg
                    .lines()
                    .find_map(|l| l.strip_prefix("clientPort="))?
                    .trim()
                    .parse()
                    .ok()?;
                // The membership lines come last but for extras; a file being written may lack them.
                cfg.contains("server.3=").then_some(Member { dir, port })
            })
            .collect()
    }

    /// `127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn connect_string(&self) -> String {
        self.hosts().join(",")
    }

    /// One `127.0.0.1:PORT` per server, in server order.
    pub fn hosts(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect()
    }

    /// The index of the server whose `srvr` says `Mode: leader`, if one does.
    pub async fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if let Ok(s) = four_letter(m.port, "srvr").await {
                if s.lines().any(|l| l.trim() == "Mode: leader") {
                    return Some(i);
                }
            }
        }
        None
    }

    /// The server version `srvr` reports (first server that answers).
    pub async fn version(&self) -> Option<String> {
        for m in &self.members {
            if let Ok(s) = four_letter(m.port, "srvr").await {
                if let Some(v) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("Zookeeper version: "))
                {
                    // "3.8.0-<git id>, built on <date>": the release number is enough.
                    let v = v.split([',', '-']).next().unwrap_or(v);
                    return Some(v.trim().to_owned());
                }
            }
        }
        None
    }

    /// `kill -9` server `i`; returns once the process is gone.
    pub async fn kill(&mut self, i: usize) -> Result<(), String> {
        let pid = self
            .pid(i)
            .ok_or_else(|| format!("server {i} has no pid"))?;
        let status = tokio::process::Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status()
            .await
            .map_err(|e| format!("kill: {e}"))?;
        if !status.success() {
            return Err(format!("kill -KILL {pid} failed ({status})"));
        }
        let deadline = Instant::now() + PATIENCE;
        while alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// The JVM pids of the servers still running (for their CPU time).
    pub fn pids(&self) -> Vec<u32> {
        (0..self.members.len())
            .filter_map(|i| self.pid(i))
            .collect()
    }

    fn pid(&self, i: usize) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.members.get(i)?.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        let started = (1..=3).any(|i| self.dir.join(format!("s{i}/pid")).exists());
        if !started {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        let status = std::process::Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            other => eprintln!(
                "zkit-bench: stopping the ensemble in {} failed ({other:?}); left in place",
                self.dir.display()
            ),
        }
    }
}

/// Whether `pid` runs: it exists and is not a zombie (a JVM the script started is adopted by
/// whatever reaps orphans here, which may take its time).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.get(s.rfind(')')? + 2..)?.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// Sends a four-letter word to `127.0.0.1:port` and returns the whole answer.
async fn four_letter(port: u16, word: &str) -> std::io::Result<String> {
    let talk = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(word.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(2), talk)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}
