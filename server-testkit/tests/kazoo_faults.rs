//! The fault commands of `zkit-server`'s control port, with a foreign client: a kazoo script
//! (`tests/interop/kazoo_faults.py`) drives targeted faults on a standalone server and on an
//! in-process ensemble, and checks what kazoo sees. The zkit client checks the same commands
//! on a standalone server.
//!
//! The kazoo part needs a python with kazoo: `KAZOO_PYTHON=/path/to/python` (CI sets it).
//! Without it that part says so and returns.

mod procs;

use std::process::{Command, Stdio};
use std::time::Duration;

use procs::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use zkit::{Client, CreateOptions, Error};

/// Starts `zkit-server ARGS`; returns (connect string, control address).
fn start(procs: &mut Procs, args: &[&str]) -> (String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn zkit-server");
    let stdout = child.stdout.take().expect("stdout");
    procs.add(child);
    let mut connect = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.expect("read stdout");
        if let Some(c) = line.strip_prefix("connect ") {
            connect = c.to_owned();
        } else if let Some(c) = line.strip_prefix("control ") {
            return (connect, c.to_owned());
        }
    }
    panic!("zkit-server exited before printing its control address");
}

fn kazoo(connect: &str, control: &str) {
    let Ok(python) = std::env::var("KAZOO_PYTHON") else {
        eprintln!("skipped: KAZOO_PYTHON is not set (a python with kazoo)");
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/kazoo_faults.py");
    let out = Command::new(python)
        .args([script, connect, control])
        .stderr(Stdio::inherit())
        .output()
        .expect("run the kazoo script");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(out.status.success() && text.contains("PASS"), "{text}");
}

#[test]
fn kazoo_drives_targeted_faults_on_a_standalone_server() {
    let mut procs = Procs::default();
    let (connect, control) = start(
        &mut procs,
        &["--port", "0", "--control-port", "0", "--tick-time", "200"],
    );
    kazoo(&connect, &control);
}

#[test]
fn kazoo_drives_targeted_faults_on_an_ensemble() {
    let mut procs = Procs::default();
    let (connect, control) = start(&mut procs, &["--ensemble", "3", "--tick-time", "200"]);
    kazoo(&connect, &control);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_control_port_installs_rules_the_zkit_client_meets() {
    let mut procs = Procs::default();
    let (connect, control) = start(&mut procs, &["--port", "0", "--control-port", "0"]);
    let (r, mut w) = TcpStream::connect(&control).await.unwrap().into_split();
    let mut lines = BufReader::new(r).lines();
    let mut ask = async |cmd: &str| {
        w.write_all(format!("{cmd}\n").as_bytes()).await.unwrap();
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        eprintln!("{cmd} -> {line}");
        line
    };
    assert!(ask("help").await.contains("fault"));
    assert!(ask("kill 0").await.starts_with("error"));
    assert!(ask("fault op=frob drop").await.starts_with("error"));
    let zk = Client::builder(&connect)
        .session_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let a = ask(&format!(
        "fault session=0x{:x} op=create path=/c times=1 disconnect",
        zk.session_id()
    ))
    .await;
    let rule = a.strip_prefix("ok rule ").expect(&a).to_owned();
    let r = zk.create("/c", b"", &CreateOptions::persistent()).await;
    assert!(matches!(r, Err(Error::ConnectionLoss)), "{r:?}");
    assert!(zk.exists("/c").await.unwrap().is_some());
    assert_eq!(ask(&format!("fired {rule}")).await, "ok 1");
    assert!(ask(&format!("unfault {rule}")).await.starts_with("ok"));
    assert_eq!(ask(&format!("fired {rule}")).await, "ok 0");
    assert!(ask(&format!("cut 0x{:x}", zk.session_id()))
        .await
        .starts_with("ok"));
    zk.exists("/c").await.unwrap();
    assert_eq!(ask("clear-faults").await, "ok cleared");
}
