//! `zkit-server --ensemble 3`: the lines it prints, and every control command carried out on
//! the ensemble as clients see it: a killed leader is replaced and the session moves, an
//! expired session is expired, a restarted server rejoins, a partition leaves the minority
//! without service, and the servers end with one history.

mod procs;

use std::process::{Command, Stdio};
use std::time::Duration;

use procs::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use zkit::{Client, CreateOptions, SessionState};

/// What `--ensemble` printed: server addresses, connect string, control address.
struct Printed {
    servers: Vec<String>,
    connect: String,
    control: String,
}

/// Starts `zkit-server ARGS` and reads its stdout up to the `control` line.
fn start(procs: &mut Procs, args: &[&str]) -> Printed {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn zkit-server --ensemble");
    let stdout = child.stdout.take().expect("stdout");
    procs.add(child);
    let mut p = Printed {
        servers: Vec::new(),
        connect: String::new(),
        control: String::new(),
    };
    // Blocking reads: the lines come once a leader serves (or the process exits: EOF).
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.expect("read stdout");
        if let Some(c) = line.strip_prefix("connect ") {
            p.connect = c.to_owned();
        } else if let Some(c) = line.strip_prefix("control ") {
            p.control = c.to_owned();
            return p;
        } else {
            p.servers.push(line);
        }
    }
    panic!("zkit-server exited before printing its control address");
}

/// A control connection.
struct Control {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Control {
    async fn connect(addr: &str) -> Control {
        let (r, w) = TcpStream::connect(addr)
            .await
            .expect("control connect")
            .into_split();
        Control {
            lines: BufReader::new(r).lines(),
            write: w,
        }
    }

    /// Sends `cmd`, returns the answer line.
    async fn ask(&mut self, cmd: &str) -> String {
        self.write
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .expect("send command");
        let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("an answer in time")
            .expect("read answer")
            .expect("an answer line");
        eprintln!("{cmd} -> {line}");
        line
    }

    /// Sends `cmd`, which must succeed; the answer after `ok `.
    async fn ok(&mut self, cmd: &str) -> String {
        let a = self.ask(cmd).await;
        match a.strip_prefix("ok") {
            Some(rest) => rest.trim().to_owned(),
            None => panic!("{cmd}: {a}"),
        }
    }

    /// The leader's index.
    async fn leader(&mut self) -> usize {
        let a = self.ok("leader").await;
        a.split_whitespace()
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("leader answered {a:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_port_drives_faults_clients_can_see() {
    let mut procs = Procs::default();
    let p = start(&mut procs, &["--ensemble", "3", "--four-letter-words", "*"]);
    assert_eq!(p.servers.len(), 3, "one line per server");
    assert_eq!(p.connect, p.servers.join(","));
    for s in &p.servers {
        assert!(s.starts_with("127.0.0.1:"), "{s}");
    }
    let mut ctl = Control::connect(&p.control).await;
    assert!(ctl.ok("help").await.contains("partition"));

    let leader = ctl.leader().await;
    assert!(ctl.ok("leader").await.ends_with(&p.servers[leader]));
    let status = ctl.ok("status").await;
    assert!(status.contains(&format!("{leader}=leader")), "{status}");

    // A session on the leader, with an ephemeral; the client knows every server.
    let order: Vec<&str> = std::iter::once(p.servers[leader].as_str())
        .chain(
            p.servers
                .iter()
                .map(|s| s.as_str())
                .filter(|s| *s != p.servers[leader]),
        )
        .collect();
    let zk = Client::builder(&order.join(","))
        .session_timeout(Duration::from_secs(30))
        // The test waits for Expired: the session must stay expired.
        .recreate_on_expiry(false)
        .connect()
        .await
        .unwrap();
    zk.create("/e", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    for i in 0..10 {
        zk.create(&format!("/p{i}"), b"x", &CreateOptions::persistent())
            .await
            .unwrap();
    }
    let sid = zk.session_id();

    assert_eq!(
        ctl.ok(&format!("kill {leader}")).await,
        format!("killed {leader}")
    );
    let new_leader = ctl.leader().await;
    assert_ne!(new_leader, leader);
    assert!(ctl.ok("status").await.contains(&format!("{leader}=down")));
    // The session moved to a survivor with its ephemeral, and writes go on.
    eventually("a write after the failover", || async {
        zk.create("/after-kill", b"", &CreateOptions::persistent())
            .await
            .ok()
    })
    .await;
    assert_eq!(zk.session_id(), sid);
    assert!(zk.exists("/e").await.unwrap().is_some());

    assert_eq!(
        ctl.ok(&format!("restart {leader}")).await,
        format!("restarted {leader}")
    );
    ctl.leader().await;
    eventually("every server serves again", || async {
        let s = ctl_status(&p.control).await;
        (!s.contains("down") && !s.contains("not-serving")).then_some(())
    })
    .await;
    let zxid = ctl.ok("check").await;
    assert!(zxid.starts_with("zxid 0x"), "{zxid}");

    // Expire the session: the client is told, its ephemeral is gone.
    let mut states = zk.state_watch();
    assert_eq!(
        ctl.ok(&format!("expire 0x{sid:x}")).await,
        format!("expired 0x{sid:x}")
    );
    tokio::time::timeout(PATIENCE, states.wait_for(|s| *s == SessionState::Expired))
        .await
        .expect("the client learns its session expired")
        .unwrap();
    let other = Client::connect(&p.connect).await.unwrap();
    eventually("the ephemeral is deleted", || async {
        other
            .exists("/e")
            .await
            .ok()
            .filter(|s| s.is_none())
            .map(|_| ())
    })
    .await;
    assert!(ctl
        .ask(&format!("expire {sid}"))
        .await
        .starts_with("error no session"));

    // A partition: the side without a quorum stops serving; heal brings it back.
    let l = ctl.leader().await;
    let minority: Vec<usize> = (0..3).filter(|&i| i != l).take(1).collect();
    let majority: Vec<String> = (0..3)
        .filter(|i| !minority.contains(i))
        .map(|i| i.to_string())
        .collect();
    let spec = format!("{}|{}", majority.join(","), minority[0]);
    assert_eq!(
        ctl.ok(&format!("partition {spec}")).await,
        format!("partitioned {spec}")
    );
    let cut = &p.servers[minority[0]];
    eventually("the cut-off server stops serving", || async {
        srvr(cut).await.0.is_none().then_some(())
    })
    .await;
    assert_eq!(ctl.ok("heal").await, "healed");
    eventually("it serves again", || async { srvr(cut).await.0 }).await;
    assert_eq!(
        ctl.ok(&format!("isolate {}", minority[0])).await,
        format!("isolated {}", minority[0])
    );
    ctl.ok("heal").await;
    eventually("every server serves after the heal", || async {
        let s = ctl_status(&p.control).await;
        (!s.contains("not-serving")).then_some(())
    })
    .await;
    assert!(ctl.ok("check").await.starts_with("zxid 0x"));

    // Bad commands get an error line; the connection stays usable.
    for bad in [
        "kill 9",
        "frobnicate",
        "partition 0|0",
        "expire 0xzz",
        "heal now",
    ] {
        assert!(ctl.ask(bad).await.starts_with("error "), "{bad}");
    }
    assert_eq!(
        ctl.ok(&format!("stop {}", minority[0])).await,
        format!("stopped {}", minority[0])
    );
    assert!(ctl.ok("help").await.starts_with("commands:"));
    other.close().await.unwrap();
}

/// `status` on a connection of its own (the main one may be mid-command).
async fn ctl_status(addr: &str) -> String {
    Control::connect(addr).await.ok("status").await
}

#[test]
fn ensemble_mode_rejects_what_it_cannot_do() {
    for (args, what) in [
        (&["--ensemble", "0"][..], "1 or more"),
        (&["--ensemble", "x"][..], "expects a number"),
        (
            &["--ensemble", "3", "--port", "2181"][..],
            "not available with --ensemble",
        ),
        (
            &["--ensemble", "3", "--config", "x"][..],
            "exclude each other",
        ),
        (
            &["--config", "x", "--tick-time", "5"][..],
            "not available with --config",
        ),
    ] {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run zkit-server");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
}
