//! `zkit-server --data-dir` restarted as a new process, after `kill -9` and after SIGTERM alike:
//! a client back within its session timeout resumes its session (it sees Disconnected, then
//! Connected, never Expired) and its ephemerals are still its own, as on a standalone ZooKeeper.
//! The session secret that makes this possible lives in `<dataDir>/zkit-secret`, created once
//! with mode 0600 and reused by every later process.
//!
//! Real processes on ports chosen by the kernel; every process is killed by its pid when its
//! handle drops; every wait is for a condition, bounded only so a broken build fails instead of
//! hanging.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use zkit::{Client, CreateOptions, Error, SessionState, StateStream};

/// Upper bound of every wait: only reached when something is broken.
const BOUND: Duration = Duration::from_secs(60);

/// The clients' session timeout: a loaded machine restarts the server well within it (the server
/// grants up to 20 ticks of 2 s by default).
const SESSION_TIMEOUT: Duration = Duration::from_secs(20);

/// Name of the secret file in the data dir.
const SECRET_FILE: &str = "zkit-secret";

/// A running `zkit-server`; killed (SIGKILL, by pid) when dropped.
struct ServerProcess {
    child: Child,
    addr: String,
}

impl ServerProcess {
    /// Starts `zkit-server --data-dir DIR --port PORT` and waits until it listens.
    async fn start(dir: &Path, port: u16) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zkit-server"))
            .arg("--port")
            .arg(port.to_string())
            .arg("--data-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn zkit-server");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
        let addr = tokio::time::timeout(BOUND, async {
            let mut log = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(a) = l.strip_prefix("zkit-server listening on ") {
                    return a.trim().to_owned();
                }
                log.push(l);
            }
            panic!("zkit-server exited before listening:\n{}", log.join("\n"));
        })
        .await
        .expect("zkit-server listened in time");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ServerProcess { child, addr }
    }

    fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("HOST:PORT")
    }

    /// `kill -9`: no chance to close anything.
    async fn kill_9(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// SIGTERM, then waits for a clean exit.
    async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().expect("still running").to_string();
        let st = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("run kill");
        assert!(st.success(), "kill -TERM {pid}: {st:?}");
        tokio::time::timeout(BOUND, self.child.wait())
            .await
            .expect("exited after SIGTERM")
            .expect("wait")
    }
}

fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("zkit-proc-{tag}-"))
        .tempdir()
        .expect("create temp dir")
}

async fn next_state(states: &mut StateStream) -> SessionState {
    tokio::time::timeout(BOUND, states.next())
        .await
        .expect("a state transition in time")
        .expect("client alive")
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    Kill9,
    Sigterm,
}

/// Ephemeral, restart of the process on the same port and data dir, and the session goes on.
async fn session_survives_a_new_process(how: Stop) {
    let dir = temp_dir(&format!("{how:?}").to_lowercase());
    let first = ServerProcess::start(dir.path(), 0).await;
    let port = first.port();
    let zk = Client::builder(&first.addr)
        .session_timeout(SESSION_TIMEOUT)
        .connect()
        .await
        .expect("connect");
    let id = zk.session_id();
    zk.create("/eph", b"mine", &CreateOptions::ephemeral())
        .await
        .expect("create the ephemeral");
    let mut states = zk.state_changes();

    match how {
        Stop::Kill9 => first.kill_9().await,
        Stop::Sigterm => {
            let st = first.terminate().await;
            assert!(st.success(), "clean exit on SIGTERM: {st:?}");
        }
    }
    assert_eq!(next_state(&mut states).await, SessionState::Disconnected);

    let second = ServerProcess::start(dir.path(), port).await;
    assert_eq!(second.port(), port);
    assert_eq!(next_state(&mut states).await, SessionState::Connected);
    assert_eq!(zk.session_id(), id, "the same session");
    assert_eq!(zk.state(), SessionState::Connected);

    let stat = zk
        .exists("/eph")
        .await
        .expect("exists")
        .expect("the ephemeral survived");
    assert_eq!(stat.ephemeral_owner, id, "still ours");
    assert_eq!(&zk.get_data("/eph").await.expect("read").0[..], b"mine");
    // Re-creating it fails only because it is still there and ours.
    assert_eq!(
        zk.create("/eph", b"mine", &CreateOptions::ephemeral())
            .await
            .map(|(path, _)| path),
        Err(Error::NodeExists)
    );
    assert_eq!(
        zk.get_ephemerals("/").await.expect("getEphemerals"),
        vec!["/eph".to_owned()]
    );

    // The session ends normally on the new process: its ephemeral goes with it.
    zk.close().await.expect("close");
    let other = Client::connect(&second.addr).await.expect("connect");
    assert_eq!(other.exists("/eph").await.expect("exists"), None);
    other.close().await.expect("close");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_ephemeral_survive_kill_9_and_restart_of_zkit_server() {
    session_survives_a_new_process(Stop::Kill9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_ephemeral_survive_sigterm_and_restart_of_zkit_server() {
    session_survives_a_new_process(Stop::Sigterm).await;
}

fn secret_path(dir: &Path) -> PathBuf {
    dir.join(SECRET_FILE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_file_is_created_once_with_mode_0600_and_reused() {
    let dir = temp_dir("secret");
    let path = secret_path(dir.path());
    assert!(!path.exists());

    let first = ServerProcess::start(dir.path(), 0).await;
    let created = std::fs::read(&path).expect("secret created at start");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    let text = String::from_utf8(created.clone()).expect("a text line");
    let key = text
        .strip_prefix("zkit-session-secret v1 ")
        .and_then(|k| k.strip_suffix('\n'))
        .expect("header and newline");
    assert_eq!(key.len(), 64, "32 bytes in hex");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    first.kill_9().await;

    // A new process (and one after a clean stop) keeps the same secret.
    let second = ServerProcess::start(dir.path(), 0).await;
    assert_eq!(std::fs::read(&path).unwrap(), created);
    assert!(second.terminate().await.success());
    let third = ServerProcess::start(dir.path(), 0).await;
    assert_eq!(std::fs::read(&path).unwrap(), created);
    third.kill_9().await;

    // Two data dirs never share a secret.
    let elsewhere = temp_dir("secret-other");
    let other = ServerProcess::start(elsewhere.path(), 0).await;
    assert_ne!(
        std::fs::read(secret_path(elsewhere.path())).unwrap(),
        created
    );
    other.kill_9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_secret_file_refuses_to_start_and_is_left_alone() {
    let dir = temp_dir("badsecret");
    let path = secret_path(dir.path());
    let first = ServerProcess::start(dir.path(), 0).await;
    first.kill_9().await;
    let good = std::fs::read(&path).unwrap();
    let short = &good[..good.len() / 2];
    std::fs::write(&path, short).unwrap();

    let out = tokio::time::timeout(
        BOUND,
        Command::new(env!("CARGO_BIN_EXE_zkit-server"))
            .arg("--port")
            .arg("0")
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("exited in time")
    .expect("run zkit-server");
    assert!(!out.status.success(), "{:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(SECRET_FILE) && stderr.contains("valid session secret"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), short, "never replaced");
}
