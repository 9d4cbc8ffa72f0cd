//! Sessions across restarts of a server with a data dir: every recovered session gets a full
//! timeout from the moment it is loaded, so a client back within it resumes the session with
//! its ephemerals, and one that never comes back is expired one timeout after the restart. The
//! session secret comes from the data dir, so a new server (a new process) accepts the
//! passwords the old one handed out. Real time throughout (the data dir is written on blocking
//! threads); every wait is for a condition, bounded only to fail instead of hanging.

use std::future::Future;
use std::time::Duration;

use zkit::{Client, CreateOptions, Error, SessionState, StateStream};

use super::Server;
use crate::persist::secret::secret_path;

/// Upper bound of every wait: only reached when something is broken.
const BOUND: Duration = Duration::from_secs(60);

/// A client's session timeout long enough for a loaded machine to restart the server within it.
const LONG: Duration = Duration::from_secs(30);

fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("zkit-restart-{tag}-"))
        .tempdir()
        .expect("create temp dir")
}

async fn start(dir: &std::path::Path) -> Server {
    Server::builder()
        .data_dir(dir)
        .tick_time(Duration::from_millis(100))
        .max_session_timeout(LONG)
        .start()
        .await
        .expect("server starts")
}

async fn client(server: &Server, timeout: Duration) -> Client {
    Client::builder(&server.connect_string())
        .session_timeout(timeout)
        .connect()
        .await
        .expect("client connects")
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what} within {BOUND:?}"))
}

/// The next session state transition.
async fn next_state(states: &mut StateStream) -> SessionState {
    bounded("a state transition", states.next())
        .await
        .expect("client alive")
}

/// Waits until `cond` holds, checking every few milliseconds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    bounded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_within_the_timeout_keeps_the_session_and_one_never_resumed_expires() {
    let dir = temp_dir("keep");
    let mut server = start(dir.path()).await;
    let kept = client(&server, LONG).await;
    let kept_id = kept.session_id();
    kept.create("/kept", b"k", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let gone = client(&server, Duration::from_secs(2)).await;
    let gone_id = gone.session_id();
    gone.create("/gone", b"g", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let mut kept_states = kept.state_changes();
    let mut gone_states = gone.state_changes();

    server.kill().await;
    assert_eq!(
        next_state(&mut kept_states).await,
        SessionState::Disconnected
    );
    assert_eq!(
        next_state(&mut gone_states).await,
        SessionState::Disconnected
    );
    // Closed while disconnected: the server is not told, the session is left to expire. (Its
    // result is not the point: on a slow machine the client may have expired it locally.)
    let _ = gone.close().await;

    // A new server on the same data dir: a new core and a new secret drawn, the stored one used.
    let port = server.addr();
    drop(server);
    let mut server = Server::builder()
        .data_dir(dir.path())
        .listen(port)
        .tick_time(Duration::from_millis(100))
        .max_session_timeout(LONG)
        .start()
        .await
        .expect("restarted");
    let restored = server.session_table();
    assert!(restored.contains_key(&kept_id), "{restored:?}");

    // The client comes back within its timeout: same session, ephemeral still its own.
    assert_eq!(next_state(&mut kept_states).await, SessionState::Connected);
    assert_eq!(kept.session_id(), kept_id);
    let stat = kept.exists("/kept").await.unwrap().expect("ephemeral kept");
    assert_eq!(stat.ephemeral_owner, kept_id);
    assert_eq!(&kept.get_data("/kept").await.unwrap().0[..], b"k");
    assert_eq!(
        kept.create("/kept", b"k", &CreateOptions::ephemeral())
            .await
            .map(|(path, _)| path),
        Err(Error::NodeExists)
    );

    // The one that never came back is expired by the server, its ephemeral deleted.
    until("the abandoned session expired", || {
        !server.session_table().contains_key(&gone_id)
    })
    .await;
    assert_eq!(kept.exists("/gone").await.unwrap(), None);
    assert_eq!(kept.state(), SessionState::Connected);
    assert!(server.session_table().contains_key(&kept_id));

    // And the in-process restart of the same handle keeps it too.
    server.restart().await.unwrap();
    assert_eq!(
        next_state(&mut kept_states).await,
        SessionState::Disconnected
    );
    assert_eq!(next_state(&mut kept_states).await, SessionState::Connected);
    assert_eq!(kept.session_id(), kept_id);
    assert!(kept.exists("/kept").await.unwrap().is_some());
    kept.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_session_expires_one_timeout_after_the_restart_if_never_resumed() {
    let dir = temp_dir("expire");
    let mut server = start(dir.path()).await;
    // Short enough to keep the test quick, long enough that the session is surely still there
    // when the server is asked right after the restart.
    let zk = client(&server, Duration::from_secs(5)).await;
    let id = zk.session_id();
    zk.create("/e", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let mut states = zk.state_changes();
    server.kill().await;
    assert_eq!(next_state(&mut states).await, SessionState::Disconnected);
    let _ = zk.close().await;
    server.restart().await.unwrap();
    // Loaded with a full timeout from now, not expired at load.
    let sessions = server.sessions();
    let s = sessions.iter().find(|s| s.id == id).expect("restored");
    assert_eq!(s.ephemerals, vec!["/e".to_owned()]);
    assert!(!s.connected);
    // Nobody resumes it: the server expires it and deletes its ephemeral.
    until("the restored session expired", || {
        server.sessions().iter().all(|s| s.id != id)
    })
    .await;
    let tree = server.znodes("/").unwrap();
    assert!(
        !tree.contains_key("/e"),
        "ephemeral deleted with its session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_stored_secret_a_restored_session_cannot_be_resumed() {
    let dir = temp_dir("nosecret");
    let mut server = start(dir.path()).await;
    assert!(secret_path(dir.path()).is_file());
    let first = std::fs::read(secret_path(dir.path())).unwrap();
    let zk = client(&server, LONG).await;
    zk.create("/e", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let mut states = zk.state_changes();
    server.kill().await;
    assert_eq!(next_state(&mut states).await, SessionState::Disconnected);
    // An operator deletes the secret: a new server (as a new process would) draws a new one,
    // and the old passwords no longer match (the client learns its session is gone at once).
    std::fs::remove_file(secret_path(dir.path())).unwrap();
    let port = server.addr();
    drop(server);
    let _server = Server::builder()
        .data_dir(dir.path())
        .listen(port)
        .tick_time(Duration::from_millis(100))
        .max_session_timeout(LONG)
        .start()
        .await
        .expect("restarted");
    assert_eq!(next_state(&mut states).await, SessionState::Expired);
    let second = std::fs::read(secret_path(dir.path())).expect("a new secret stored");
    assert_ne!(first, second);
}
