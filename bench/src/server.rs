//! A real Apache ZooKeeper standalone server for the benchmark, started and stopped through
//! `scripts/zookeeper.sh` (the same script the conformance suite uses).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// JVM options the benchmark gives the server unless `ZK_JAVA_OPTS` is already set: the script
/// stops the JIT at C1 (`-XX:TieredStopAtLevel=1`) for fast test start-up; a throughput run wants
/// the full tiered JIT so that the server, not the JIT level, sets the ceiling.
pub const DEFAULT_JAVA_OPTS: &str = "-XX:TieredStopAtLevel=4";

/// A standalone server under a temporary directory; stopped (and the directory removed) on drop,
/// so an error or a panic in the benchmark does not leave a JVM behind.
pub struct ZkServer {
    script: PathBuf,
    dir: PathBuf,
    connect: String,
}

impl ZkServer {
    /// Starts a fresh standalone server; returns once it serves.
    pub fn start(script: &Path) -> Result<ZkServer, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("zkit-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut cmd = Command::new("bash");
        cmd.arg(script).arg("start-standalone").arg(&dir);
        if std::env::var_os("ZK_JAVA_OPTS").is_none() {
            cmd.env("ZK_JAVA_OPTS", DEFAULT_JAVA_OPTS);
        }
        if std::env::var_os("ZK_LOG_LEVEL").is_none() {
            cmd.env("ZK_LOG_LEVEL", "WARN");
        }
        let out = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        let server = ZkServer {
            script: script.to_owned(),
            dir,
            connect: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        };
        if !out.status.success() || server.connect.is_empty() {
            return Err(format!(
                "{} start-standalone failed ({})",
                script.display(),
                out.status
            ));
        }
        Ok(server)
    }

    /// `127.0.0.1:PORT`.
    pub fn connect_string(&self) -> &str {
        &self.connect
    }

    /// The server JVM's pid (for its CPU time).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        let status = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
        match status {
            Ok(s) if s.success() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            other => eprintln!(
                "zkit-bench: stopping the server in {} failed ({other:?}); left in place",
                self.dir.display()
            ),
        }
    }
}
