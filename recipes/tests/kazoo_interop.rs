//! Interoperability with a lock nobody here wrote: a zkit `Mutex` and a kazoo `Lock` (Python,
//! from PyPI) on the same path exclude each other, in both directions.
//!
//! Needs a python with kazoo: `KAZOO_PYTHON=/path/to/python` (CI sets it to its venv). Without it
//! the test says so and returns.

mod common;

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use zkit_recipes::lock::{Mutex, MutexOptions};

struct Kazoo {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Kazoo {
    async fn start(python: &str, hosts: &str, path: &str) -> Kazoo {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/kazoo_lock.py");
        let mut child = tokio::process::Command::new(python)
            .args([script, hosts, path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the kazoo script");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut k = Kazoo {
            child,
            stdin,
            lines,
        };
        assert_eq!(k.line().await, "READY");
        k
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(common::BOUND, self.lines.next_line())
            .await
            .expect("kazoo answered in time")
            .expect("read kazoo output")
            .expect("kazoo exited early")
    }

    async fn ask(&mut self, cmd: &str) -> String {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        self.line().await
    }

    async fn quit(mut self) {
        assert_eq!(self.ask("quit").await, "BYE");
        let _ = tokio::time::timeout(common::BOUND, self.child.wait()).await;
    }
}

#[tokio::test]
async fn zkit_mutex_and_kazoo_lock_exclude_each_other() {
    let Ok(python) = std::env::var("KAZOO_PYTHON") else {
        eprintln!("skipped: set KAZOO_PYTHON to a python with kazoo installed");
        return;
    };
    let t = target!();
    let ns = t.namespace("kazoo-interop").await;
    let hosts = format!("{}{}", t.connect_string_hosts(), ns.root);
    let zk = ns.client().await;
    let m = Mutex::new(&zk, "/shared", MutexOptions::default());
    let mut kazoo = Kazoo::start(&python, &hosts, "/shared").await;

    // kazoo first: zkit cannot get in until kazoo releases.
    assert_eq!(kazoo.ask("acquire").await, "HELD");
    assert!(
        m.try_acquire().await.unwrap().is_none(),
        "kazoo holds the lock"
    );
    let waiter = tokio::spawn({
        let m = m.clone();
        async move { m.acquire().await }
    });
    assert_eq!(kazoo.ask("release").await, "RELEASED");
    let guard = tokio::time::timeout(common::BOUND, waiter)
        .await
        .expect("zkit got the lock after kazoo released")
        .unwrap()
        .unwrap();

    // zkit holds: kazoo's bounded attempt fails, then succeeds once zkit releases.
    assert_eq!(kazoo.ask("try 0.3").await, "NOT-HELD");
    guard.release().await.unwrap();
    assert_eq!(kazoo.ask("try 30").await, "HELD");
    assert!(m.try_acquire().await.unwrap().is_none());
    assert_eq!(kazoo.ask("release").await, "RELEASED");
    kazoo.quit().await;
    zk.close().await.unwrap();
}
