//! Apache Curator, driven line by line: `tests/interop/CuratorDriver.java` is compiled once per
//! test binary (javac) against the jars named by `CURATOR_CLASSPATH` (CI builds it from Debian's
//! `libcurator-*-java` and `zookeeper` packages, see `scripts/ci/curator.sh`) and started per
//! test on the test's namespace, so Curator and zkit recipes share paths.
//!
//! Without `CURATOR_CLASSPATH` (or without `javac`) the tests say why and return.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::common::{Ns, BOUND};

/// Returns a started driver or skips the test (returns from it) when Curator is not available.
#[macro_export]
macro_rules! curator {
    ($ns:expr) => {
        match curator_driver::Curator::start(&$ns).await {
            Ok(c) => c,
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
    };
}

/// The compiled driver's directory and the class path to run it with, or why there is none.
fn compiled() -> &'static Result<(PathBuf, String), String> {
    static DRIVER: OnceLock<Result<(PathBuf, String), String>> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let cp = std::env::var("CURATOR_CLASSPATH").map_err(|_| {
            "set CURATOR_CLASSPATH to Curator's and ZooKeeper's jars \
             (scripts/ci/curator.sh: curator_classpath)"
                .to_owned()
        })?;
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("curator-driver-{}", std::process::id()));
        std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
        let src = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/CuratorDriver.java"
        );
        let status = std::process::Command::new("javac")
            .args(["-nowarn", "-d"])
            .arg(&out)
            .args(["-cp", &cp, src])
            .status()
            .map_err(|e| format!("javac not runnable: {e}"))?;
        if !status.success() {
            panic!("javac failed on {src} with CURATOR_CLASSPATH={cp}");
        }
        Ok((out, cp))
    })
}

/// A running `CuratorDriver` process.
pub struct Curator {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    answers: HashMap<u64, String>,
    next_tag: u64,
}

/// A command sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending(u64);

impl Curator {
    /// Starts a driver connected to the namespace of `ns`.
    pub async fn start(ns: &Ns) -> Result<Curator, String> {
        let (dir, cp) = compiled().clone()?;
        let connect = format!("{}{}", ns.target.connect_string_hosts(), ns.root);
        let mut child = tokio::process::Command::new("java")
            .arg("-cp")
            .arg(format!("{cp}:{}", dir.display()))
            .arg("CuratorDriver")
            .arg(&connect)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("java not runnable: {e}"))?;
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut c = Curator {
            child,
            stdin,
            lines,
            answers: HashMap::new(),
            next_tag: 1,
        };
        assert_eq!(c.line().await, "READY");
        Ok(c)
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(BOUND, self.lines.next_line())
            .await
            .expect("Curator answered in time")
            .expect("read Curator's output")
            .expect("Curator exited early")
    }

    /// Sends a command without waiting for its answer.
    pub async fn send(&mut self, cmd: &str) -> Pending {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.stdin
            .write_all(format!("{tag} {cmd}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        Pending(tag)
    }

    /// Waits for the answer to `p`.
    pub async fn answer(&mut self, p: Pending) -> String {
        loop {
            if let Some(a) = self.answers.remove(&p.0) {
                assert!(!a.starts_with("ERROR"), "Curator failed: {a}");
                return a;
            }
            let line = self.line().await;
            let (tag, rest) = line.split_once(' ').unwrap_or((&line, ""));
            let tag: u64 = tag
                .parse()
                .unwrap_or_else(|_| panic!("bad driver line {line:?}"));
            self.answers.insert(tag, rest.to_owned());
        }
    }

    /// Sends a command and waits for its answer.
    pub async fn ask(&mut self, cmd: &str) -> String {
        let p = self.send(cmd).await;
        self.answer(p).await
    }

    /// Ends the driver and waits for its process.
    pub async fn quit(mut self) {
        assert_eq!(self.ask("quit").await, "BYE");
        let _ = tokio::time::timeout(BOUND, self.child.wait()).await;
    }
}
