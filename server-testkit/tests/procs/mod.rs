//! Helpers for the tests that run `zkit-server` processes: a guard that kills every child by
//! pid when dropped (a failing test leaves no server behind), `zoo.cfg` files of the shape
//! `scripts/zookeeper.sh` writes, four-letter words, and waits on conditions.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The longest any wait here takes before the test fails (never reached on a healthy run).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_zkit-server");

/// Child processes killed (SIGKILL) and reaped when this is dropped, even on panic.
#[derive(Default)]
pub struct Procs {
    children: Vec<Option<Child>>,
}

impl Procs {
    /// Keeps `child`; returns its slot.
    pub fn add(&mut self, child: Child) -> usize {
        self.children.push(Some(child));
        self.children.len() - 1
    }

    /// Replaces slot `i` (after a kill) with a new child.
    pub fn replace(&mut self, i: usize, child: Child) {
        if let Some(mut old) = self.children[i].replace(child) {
            let _ = old.kill();
            let _ = old.wait();
        }
    }

    /// The pid in slot `i`.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(|c| c.id())
    }

    /// SIGKILLs slot `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether slot `i` exited; its status if so.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.children[i].as_mut()?.try_wait().ok().flatten()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// `n` distinct free loopback ports: all bound at once, then released (as the script does).
pub fn free_ports(n: usize) -> Vec<u16> {
    let socks: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().expect("local addr").port())
        .collect()
}

/// One member's files: `dir/zoo.cfg`, `dir/data/myid`, its log and its client port.
#[derive(Debug, Clone)]
pub struct MemberFiles {
    pub dir: PathBuf,
    pub client_port: u16,
}

impl MemberFiles {
    pub fn cfg(&self) -> PathBuf {
        self.dir.join("zoo.cfg")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("zk.log")
    }
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// The common lines of `scripts/zookeeper.sh`'s `write_config`.
pub fn base_cfg(data_dir: &Path, client_port: u16) -> String {
    format!(
        "# written like scripts/zookeeper.sh\ntickTime=2000\ninitLimit=10\nsyncLimit=5\n\
         dataDir={}\nclientPort={client_port}\nclientPortAddress=127.0.0.1\n\
         4lw.commands.whitelist=*\nadmin.enableServer=false\n",
        data_dir.display()
    )
}

/// Writes an ensemble of `n` in `root/s1..sn` like `zookeeper.sh start-ensemble` (3 ports per
/// server from the kernel: client, quorum, election), plus `extra` lines in every file.
pub fn write_ensemble(root: &Path, n: usize, extra: &str) -> Vec<MemberFiles> {
    let ports = free_ports(3 * n);
    let mut members = String::new();
    for i in 1..=n {
        members.push_str(&format!(
            "server.{i}=127.0.0.1:{}:{}\n",
            ports[3 * i - 2],
            ports[3 * i - 1]
        ));
    }
    (1..=n)
        .map(|i| {
            let dir = root.join(format!("s{i}"));
            let data = dir.join("data");
            std::fs::create_dir_all(&data).expect("mkdir");
            let port = ports[3 * i - 3];
            let text = format!("{}{members}{extra}", base_cfg(&data, port));
            std::fs::write(dir.join("zoo.cfg"), text).expect("write zoo.cfg");
            std::fs::write(data.join("myid"), format!("{i}\n")).expect("write myid");
            MemberFiles {
                dir,
                client_port: port,
            }
        })
        .collect()
}

/// Starts `zkit-server --config` for `m`, its output appended to `m.log()`.
pub fn spawn_member(m: &MemberFiles) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(m.log())
        .expect("open log");
    Command::new(BIN)
        .arg("--config")
        .arg(m.cfg())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("spawn zkit-server")
}

/// A four-letter word's answer (empty when the server cannot be reached).
pub async fn four_letter(addr: &str, word: &str) -> String {
    let talk = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(word.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(10), talk).await {
        Ok(Ok(s)) => s,
        _ => String::new(),
    }
}

/// The `Mode:` and `Zxid:` lines of `srvr` (None when not serving or unreachable).
pub async fn srvr(addr: &str) -> (Option<String>, Option<i64>) {
    let out = four_letter(addr, "srvr").await;
    let mode = out
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(|m| m.trim().to_owned());
    let zxid = out
        .lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x"))
        .and_then(|z| i64::from_str_radix(z.trim(), 16).ok());
    (mode, zxid)
}

/// Polls `f` (every 20 ms) until it gives a value; panics naming `what` after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The text of a log file (empty if missing).
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A fresh temp dir named after `tag`, removed on drop.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("zkit-it-{tag}-"))
        .tempdir()
        .expect("create temp dir")
}
