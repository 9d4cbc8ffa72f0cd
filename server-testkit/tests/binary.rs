//! The `zkit-server` binary: serves on the port it was given, answers `ruok` as soon as it
//! serves, honours the four-letter-word list, and exits cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const BOUND: Duration = Duration::from_secs(30);

async fn four_letter(addr: &str, word: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(word).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn zkit_server_answers_ruok_and_stops_on_sigterm() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zkit-server"))
        .args(["--port", "0", "--tick-time", "100"])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(BOUND, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(a) = l.strip_prefix("zkit-server listening on ") {
                return a.trim().to_owned();
            }
        }
        panic!("zkit-server exited before listening");
    })
    .await
    .expect("zkit-server listened in time");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    assert_eq!(four_letter(&addr, b"ruok").await, "imok");
    assert!(four_letter(&addr, b"srvr")
        .await
        .contains("Mode: standalone"));
    assert!(four_letter(&addr, b"envi")
        .await
        .contains("is not executed because it is not in the whitelist"));

    // A real client works against it.
    let zk = zkit::Client::connect(&addr).await.unwrap();
    zk.create("/x", b"1", &zkit::CreateOptions::persistent())
        .await
        .unwrap();
    zk.close().await.unwrap();

    let pid = child.id().unwrap().to_string();
    let st = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(st.success());
    let status = tokio::time::timeout(BOUND, child.wait())
        .await
        .expect("exited after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn zkit_server_limits_flags_reach_the_server() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zkit-server"))
        .args([
            "--port",
            "0",
            "--four-letter-words",
            "conf",
            "--max-client-cnxns",
            "7",
            "--max-queued-bytes",
            "65536",
        ])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(BOUND, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(a) = l.strip_prefix("zkit-server listening on ") {
                return a.trim().to_owned();
            }
        }
        panic!("zkit-server exited before listening");
    })
    .await
    .expect("zkit-server listened in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let conf = four_letter(&addr, b"conf").await;
    assert!(conf.contains("\nmaxClientCnxns=7\n"), "{conf}");
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_zkit-server"))
        .args(["--max-client-cnxns", "many"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a bad number is a usage error");
    child.kill().await.unwrap();
}

/// Inconsistent TLS / SASL flags are refused before anything listens (exit status 2), naming
/// the flag.
#[tokio::test]
async fn zkit_server_refuses_incomplete_security_flags() {
    let d = tempfile::tempdir().unwrap();
    let users = d.path().join("users");
    std::fs::write(&users, "no equals sign here\n").unwrap();
    let users = users.display().to_string();
    for (args, want) in [
        (vec!["--secure-port", "0"], "--tls-cert and --tls-key"),
        (
            vec!["--tls-cert", "/nonexistent.pem", "--tls-key", "/k"],
            "--tls-cert",
        ),
        (vec!["--require-sasl"], "need --sasl-users"),
        (
            vec!["--sasl-users", users.as_str()],
            "expected user=password",
        ),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_zkit-server"))
            .args(["--port", "0"])
            .args(&args)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
