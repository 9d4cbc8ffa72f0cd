//! `zkit-server --config zoo.cfg`: three processes started from the files
//! `scripts/zookeeper.sh start-ensemble` writes form an ensemble; SIGKILL of the leader process
//! and its restart leave it serving with every acknowledged write on every member; bad files
//! are refused with an error naming the key and the line, never a panic.
//!
//! The test prints two timings (`measure:` lines, see server-testkit/README.md): spawn to the
//! first successful create, and SIGKILL of the leader to a survivor reporting `leader`.

mod procs;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use procs::*;
use tokio::time::Instant;
use zkit::{Client, CreateOptions, Error};

/// Starts the three members and waits until a client creates a node through them, retrying
/// with new ports when one was taken meanwhile (as the script does). Returns the files, the
/// processes, the spawn time and that client.
async fn start_three(root: &std::path::Path) -> (Vec<MemberFiles>, Procs, Instant, Client) {
    let secret = format!("zkit.secretFile={}\n", root.join("zkit-secret").display());
    for attempt in 0..3 {
        let files = write_ensemble(&root.join(format!("try{attempt}")), 3, &secret);
        let t0 = Instant::now();
        let mut procs = Procs::default();
        for m in &files {
            procs.add(spawn_member(m));
        }
        let connect: String = files.iter().map(|m| m.addr()).collect::<Vec<_>>().join(",");
        let deadline = Instant::now() + PATIENCE;
        let lost_port = loop {
            if let Some(i) = (0..3).find(|&i| procs.exited(i).is_some()) {
                let log = read_log(&files[i].log());
                assert!(log.contains("in use"), "server.{} exited: {log}", i + 1);
                break true;
            }
            if let Some(c) = try_create(&connect).await {
                return (files, procs, t0, c);
            }
            assert!(Instant::now() < deadline, "no ensemble after {PATIENCE:?}");
        };
        if lost_port {
            eprintln!("a port was taken meanwhile; new ports (attempt {attempt})");
        }
    }
    panic!("no free ports after 3 attempts");
}

/// A client that created `/acked` (or found it), if the ensemble serves.
async fn try_create(connect: &str) -> Option<Client> {
    let c = Client::builder(connect)
        .session_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    match c.create("/acked", b"", &CreateOptions::persistent()).await {
        Ok(_) | Err(Error::NodeExists) => Some(c),
        Err(_) => {
            let _ = c.close().await;
            None
        }
    }
}

/// The members' indexes whose `srvr` says `leader`.
async fn leaders(files: &[MemberFiles], skip: Option<usize>) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, m) in files.iter().enumerate() {
        if Some(i) != skip && srvr(&m.addr()).await.0.as_deref() == Some("leader") {
            out.push(i);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_config_processes_survive_sigkill_of_the_leader_with_every_acknowledged_write() {
    let root = temp_dir("cfg-ensemble");
    let (files, mut procs, t0, client) = start_three(root.path()).await;
    eprintln!(
        "measure: 3-process --config ensemble: spawn to first create {:?}",
        t0.elapsed()
    );

    // Writes through one session, recorded once acknowledged.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    for i in 0..20 {
        let p = format!("/acked/before-{i}");
        client
            .create(&p, b"x", &CreateOptions::persistent())
            .await
            .unwrap();
        acked.lock().unwrap().insert(p);
    }
    let leader = eventually("one leader", || async {
        let l = leaders(&files, None).await;
        (l.len() == 1).then(|| l[0])
    })
    .await;

    // A writer keeps going through the kill; only what it was told succeeded counts.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (c, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let p = format!("/acked/during-{k}");
                k += 1;
                let r = tokio::time::timeout(
                    Duration::from_secs(5),
                    c.create(&p, b"y", &CreateOptions::persistent()),
                )
                .await;
                match r {
                    Ok(Ok(_)) => {
                        acked.lock().unwrap().insert(p);
                    }
                    // Lost in the failover: it may or may not have been applied.
                    _ => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        })
    };
    let before_kill = acked.lock().unwrap().len();
    eventually("the writer makes progress", || async {
        (acked.lock().unwrap().len() > before_kill + 5).then_some(())
    })
    .await;

    // A session on the leader, with an ephemeral: it must move to a survivor (the members
    // share the session secret file).
    let pinned = Client::builder(&files[leader].addr())
        .session_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    pinned
        .create("/acked/pinned-eph", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let (sid, pwd) = (pinned.session_id(), pinned.session_password());

    procs.kill(leader);
    let t_kill = Instant::now();
    let new_leader = eventually("a survivor leads", || async {
        let l = leaders(&files, Some(leader)).await;
        l.first().copied()
    })
    .await;
    eprintln!(
        "measure: SIGKILL of the leader process to a new leader: {:?} (server.{} -> server.{})",
        t_kill.elapsed(),
        leader + 1,
        new_leader + 1
    );
    drop(pinned);
    let survivor = files[new_leader].addr();
    let moved = Client::builder(&survivor)
        .resume_session(sid, pwd)
        .session_timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("the leader's session resumes on a survivor");
    assert_eq!(moved.session_id(), sid);
    assert!(moved.exists("/acked/pinned-eph").await.unwrap().is_some());
    moved.close().await.unwrap();
    let after_kill = acked.lock().unwrap().len();
    eventually("writes succeed after the failover", || async {
        (acked.lock().unwrap().len() > after_kill + 5).then_some(())
    })
    .await;

    // The killed member comes back from its data dir and catches up.
    procs.replace(leader, spawn_member(&files[leader]));
    eventually("the restarted member serves", || async {
        let (mode, _) = srvr(&files[leader].addr()).await;
        matches!(mode.as_deref(), Some("follower" | "leader")).then_some(())
    })
    .await;
    let after_restart = acked.lock().unwrap().len();
    eventually("writes continue with all three", || async {
        (acked.lock().unwrap().len() > after_restart + 5).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();

    // Every member agrees on the last zxid and holds every acknowledged node.
    eventually("the members reach the same zxid", || async {
        let mut zxids = BTreeSet::new();
        for m in &files {
            zxids.insert(srvr(&m.addr()).await.1?);
        }
        (zxids.len() == 1).then_some(())
    })
    .await;
    for m in &files {
        let c = Client::connect(&m.addr()).await.unwrap();
        c.sync("/acked").await.unwrap();
        let kids: BTreeSet<String> = c
            .get_children("/acked")
            .await
            .unwrap()
            .into_iter()
            .map(|k| format!("/acked/{k}"))
            .collect();
        let missing: Vec<&String> = acked.difference(&kids).collect();
        assert!(missing.is_empty(), "{} lacks {missing:?}", m.addr());
        c.close().await.unwrap();
    }
    eprintln!("{} acknowledged writes on all three members", acked.len());
    client.close().await.unwrap();
}

/// Runs `zkit-server --config` on a file that must be refused; returns its stderr.
fn refused(cfg: &std::path::Path) -> String {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .output()
        .expect("run zkit-server");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn bad_configs_are_refused_naming_the_key_and_line() {
    let root = temp_dir("cfg-bad");
    let files = write_ensemble(root.path(), 3, "");
    let cfg = files[0].cfg();
    let good = std::fs::read_to_string(&cfg).unwrap();
    let line_of = |text: &str, key: &str| {
        1 + text
            .lines()
            .position(|l| l.starts_with(key))
            .expect("key in file")
    };

    // Missing myid: names the file and the ids to pick from.
    let myid = files[0].dir.join("data/myid");
    std::fs::remove_file(&myid).unwrap();
    let err = refused(&cfg);
    assert!(
        err.contains(&format!("{}: myid: missing", myid.display())),
        "{err}"
    );
    assert!(err.contains("one of 1, 2, 3"), "{err}");
    std::fs::write(&myid, "7\n").unwrap();
    assert!(refused(&cfg).contains("no server.7 line"));
    std::fs::write(&myid, "1\n").unwrap();

    // Duplicate server ids.
    let dup = format!("{good}server.2=127.0.0.1:1:2\n");
    std::fs::write(&cfg, &dup).unwrap();
    let err = refused(&cfg);
    let want = format!(
        "{}:{}: server.2: duplicate server id 2",
        cfg.display(),
        dup.lines().count()
    );
    assert!(err.contains(&want), "{err}");

    // A malformed server line.
    let bad = good.replace("server.3=127.0.0.1:", "server.3=127.0.0.1:x");
    std::fs::write(&cfg, &bad).unwrap();
    let err = refused(&cfg);
    assert!(
        err.contains(&format!(":{}: server.3: ", line_of(&bad, "server.3"))),
        "{err}"
    );

    // A client port in use.
    std::fs::write(&cfg, &good).unwrap();
    let taken = std::net::TcpListener::bind(("127.0.0.1", files[0].client_port)).unwrap();
    let err = refused(&cfg);
    let want = format!(
        "{}:{}: clientPort: cannot listen",
        cfg.display(),
        line_of(&good, "clientPort")
    );
    assert!(err.contains(&want), "{err}");
    drop(taken);

    // An election port in use.
    let election: u16 = good
        .lines()
        .find_map(|l| l.strip_prefix("server.1=127.0.0.1:"))
        .and_then(|r| r.split(':').nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap();
    let taken = std::net::TcpListener::bind(("127.0.0.1", election)).unwrap();
    let err = refused(&cfg);
    assert!(
        err.contains(&format!(
            ":{}: server.1: cannot listen on the election port",
            line_of(&good, "server.1")
        )),
        "{err}"
    );
    drop(taken);

    // Missing required keys.
    std::fs::write(&cfg, good.replace("initLimit=10\n", "")).unwrap();
    assert!(refused(&cfg).contains("initLimit: is not set"));
    std::fs::write(&cfg, good.replace("dataDir=", "#dataDir=")).unwrap();
    assert!(refused(&cfg).contains("dataDir: is not set"));
    // No file at all.
    assert!(refused(&root.path().join("nope.cfg")).contains("cannot read the file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_and_an_even_number_of_voters_are_warnings_not_errors() {
    let root = temp_dir("cfg-warn");
    let files = write_ensemble(root.path(), 2, "someFutureKey=1\n");
    let mut procs = Procs::default();
    procs.add(spawn_member(&files[0]));
    let log = files[0].log();
    let text = eventually("the warnings and the listening line", || async {
        let t = read_log(&log);
        t.contains("listening on").then_some(t)
    })
    .await;
    assert!(
        text.contains("warning:") && text.contains("someFutureKey: unknown key"),
        "{text}"
    );
    assert!(text.contains("server.N: 2 voters"), "{text}");
    assert!(procs.exited(0).is_none(), "still running: {text}");
    // Alone it cannot serve, but it answers.
    assert_eq!(four_letter(&files[0].addr(), "ruok").await, "imok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_servers_runs_a_standalone_server() {
    let root = temp_dir("cfg-standalone");
    let port = free_ports(1)[0];
    let data = root.path().join("data");
    let m = MemberFiles {
        dir: root.path().to_owned(),
        client_port: port,
    };
    std::fs::write(m.cfg(), base_cfg(&data, port)).unwrap();
    let mut procs = Procs::default();
    procs.add(spawn_member(&m));
    let mode = eventually("the standalone server answers srvr", || async {
        srvr(&m.addr()).await.0
    })
    .await;
    assert_eq!(mode, "standalone");
    let c = Client::connect(&m.addr()).await.unwrap();
    c.create("/x", b"1", &CreateOptions::persistent())
        .await
        .unwrap();
    c.close().await.unwrap();
    assert!(
        data.join("version-2").is_dir(),
        "it keeps its data in dataDir"
    );
}
