//! Real Apache ZooKeeper for the security tests, started by `scripts/zookeeper.sh` in a temp
//! dir with the options a test needs (TLS files, JAAS file). Only when `ZK_SECURITY_TESTS=1`
//! (CI sets it); otherwise the real-server half of a test is skipped with a message.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment for `scripts/zookeeper.sh`.
pub type Env = Vec<(&'static str, String)>;

pub struct RealZk {
    pub dir: tempfile::TempDir,
    /// Plain client port connect string.
    pub connect: String,
    /// Secure client port, when started with TLS.
    pub secure: Option<String>,
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/zookeeper.sh")
}

/// Whether the real-server tests run; prints why not when they do not.
pub fn enabled(test: &str) -> bool {
    if std::env::var("ZK_SECURITY_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("{test}: real ZooKeeper part skipped (set ZK_SECURITY_TESTS=1)");
    false
}

impl RealZk {
    /// Starts a standalone server with `env` set for the script.
    pub fn start(env: &[(&str, String)]) -> RealZk {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg("start-standalone").arg(dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "zookeeper.sh start-standalone failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let connect = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let secure = std::fs::read_to_string(dir.path().join("secure_connect"))
            .ok()
            .map(|s| s.trim().to_owned());
        RealZk {
            dir,
            connect,
            secure,
        }
    }

    /// The secure port as `localhost:PORT` (the name the test server certificate carries).
    pub fn secure_localhost(&self) -> String {
        let s = self.secure.as_deref().expect("started without TLS");
        s.replace("127.0.0.1", "localhost")
    }

    /// Restarts the server on the same ports with the same data (and sessions).
    pub fn restart(&self, env: &[(&str, String)]) {
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg("restart").arg(self.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "zookeeper.sh restart failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for RealZk {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
