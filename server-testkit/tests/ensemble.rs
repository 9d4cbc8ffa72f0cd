//! The replicated ensemble: election, failover, restarts, partitions and observers at the
//! quorum level, and what clients see of them (tests marked "needs replicated core" wait for
//! the server core's replicated mode). Every wait is on a condition, with a generous bound.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit::{Client, CreateMode, CreateOptions, RetryPolicy};
use zkit_testkit::{Ensemble, QuorumRole, ServerMode};

/// Upper bound of a client operation that may have to wait for a failover.
const PATIENCE: Duration = Duration::from_secs(60);

fn followers(e: &Ensemble, leader: usize) -> Vec<usize> {
    (0..e.len())
        .filter(|&i| i != leader && !e.server(i).is_observer())
        .collect()
}

fn follows(e: &Ensemble, i: usize, leader: usize) -> bool {
    e.server(i).role()
        == QuorumRole::Following {
            leader,
            synced: true,
        }
}

async fn four_letter_word(addr: std::net::SocketAddr, word: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(word.as_bytes()).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(PATIENCE, s.read_to_string(&mut out))
        .await
        .expect("the server answers")
        .expect("read");
    out
}

fn retry() -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(20), 1000).max_delay(Duration::from_millis(200))
}

async fn client(connect: &str) -> Client {
    Client::builder(connect)
        .session_timeout(Duration::from_secs(30))
        // The test waits for Expired: the session must stay expired.
        .recreate_on_expiry(false)
        .connect()
        .await
        .expect("a client connects")
}

// ---- The quorum level: passes with any core. ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_elect_one_leader_the_others_follow() {
    let e = Ensemble::builder().servers(3).start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    assert_eq!(e.leader(), Some(leader));
    assert!(matches!(
        e.server(leader).role(),
        QuorumRole::Leading {
            established: true,
            ..
        }
    ));
    for f in followers(&e, leader) {
        assert!(
            follows(&e, f, leader),
            "server {f}: {:?}",
            e.server(f).role()
        );
    }
    let addrs: Vec<String> = e.servers().map(|s| s.connect_string()).collect();
    assert_eq!(e.connect_string(), addrs.join(","));
    assert_eq!(
        addrs
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );
    for (i, s) in e.servers().enumerate() {
        assert_eq!((s.index(), s.id()), (i, i as i64 + 1));
        assert!(s.is_running() && !s.is_observer());
        // Every server answers on its client port.
        let srvr = four_letter_word(s.addr(), "srvr").await;
        assert!(
            srvr.contains("Mode: ") || srvr.contains("not currently serving"),
            "{srvr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_rejoins_as_a_follower_on_its_old_ports() {
    let mut e = Ensemble::builder().servers(3).start().await.expect("start");
    let old = e.wait_for_leader().await.expect("a leader");
    let addr = e.server(old).addr();

    e.kill(old).await;
    assert_eq!(e.server(old).role(), QuorumRole::Down);
    assert_eq!(e.server(old).mode(), ServerMode::Down);
    assert!(e.server(old).last_zxid().is_none());
    let new = e.wait_for_leader().await.expect("a new leader");
    assert_ne!(new, old);
    let epoch = |e: &Ensemble, i: usize| match e.server(i).role() {
        QuorumRole::Leading { epoch, .. } => epoch,
        r => panic!("server {i} does not lead: {r:?}"),
    };
    let new_epoch = epoch(&e, new);

    e.restart(old).await.expect("restart");
    assert_eq!(e.server(old).addr(), addr, "same client port");
    let leader = e.wait_for_leader().await.expect("settled again");
    assert_eq!(leader, new, "the restarted server does not take over");
    assert!(follows(&e, old, new));
    assert_eq!(epoch(&e, new), new_epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_restarts_and_follows_again() {
    let mut e = Ensemble::builder().servers(3).start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let f = followers(&e, leader)[0];
    e.stop(f).await;
    assert!(!e.server(f).is_running());
    // Two of three still form a quorum.
    assert_eq!(e.wait_for_leader().await.expect("still a leader"), leader);
    e.restart(f).await.expect("restart");
    e.wait_for("the follower back", |e| follows(e, f, leader))
        .await
        .expect("it follows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_follower_stops_following_and_rejoins_after_heal() {
    let mut e = Ensemble::builder().servers(3).start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let fs = followers(&e, leader);
    let (minority, other) = (fs[0], fs[1]);

    e.partition(&[&[leader, other], &[minority]]).await;
    e.wait_for("the minority follower electing", |e| {
        e.server(minority).role() == QuorumRole::Looking
    })
    .await
    .expect("it leaves its leader");
    // The majority side keeps its leader.
    assert_eq!(e.wait_for_leader().await.expect("majority"), leader);
    assert!(follows(&e, other, leader));

    e.heal().await;
    assert_eq!(e.wait_for_leader().await.expect("healed"), leader);
    assert!(follows(&e, minority, leader));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_steps_down_and_the_majority_elects_another() {
    let mut e = Ensemble::builder().servers(3).start().await.expect("start");
    let old = e.wait_for_leader().await.expect("a leader");
    e.isolate(old).await;
    e.wait_for("the old leader stepping down", |e| {
        !matches!(e.server(old).role(), QuorumRole::Leading { .. })
    })
    .await
    .expect("it steps down");
    let new = e.wait_for_leader().await.expect("a new leader");
    assert_ne!(new, old);
    e.heal().await;
    assert_eq!(e.wait_for_leader().await.expect("healed"), new);
    assert!(follows(&e, old, new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_loses_everything_acts_as_a_cut_until_lifted() {
    let mut e = Ensemble::builder().servers(3).start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let f = followers(&e, leader)[0];
    e.drop_rate(leader, f, 1.0).await;
    e.wait_for("the follower losing its leader", |e| !follows(e, f, leader))
        .await
        .expect("it leaves");
    e.drop_rate(leader, f, 0.0).await;
    e.wait_for("the follower back", |e| follows(e, f, leader))
        .await
        .expect("it rejoins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_links_still_elect_and_fail_over() {
    let mut e = Ensemble::builder().servers(3).start().await.expect("start");
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        e.delay(a, b, Duration::from_millis(20)).await;
    }
    let old = e.wait_for_leader().await.expect("a leader");
    e.kill(old).await;
    let new = e
        .wait_for_leader()
        .await
        .expect("a new leader over slow links");
    assert_ne!(new, old);
    e.heal().await;
    e.restart(old).await.expect("restart");
    assert_eq!(e.wait_for_leader().await.expect("settled"), new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_follows_when_it_resumes() {
    let e = Ensemble::builder()
        .servers(3)
        .tick_time(Duration::from_millis(100))
        .max_session_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("start");
    let old = e.wait_for_leader().await.expect("a leader");
    // Far past syncLimit (5 ticks): the followers give up on it and elect another.
    e.pause(old, Duration::from_secs(4)).await;
    e.wait_for("a new leader while the old one is stalled", |e| {
        e.servers().any(|s| {
            s.index() != old
                && matches!(
                    s.role(),
                    QuorumRole::Leading {
                        established: true,
                        ..
                    }
                )
        })
    })
    .await
    .expect("a new leader");
    let new = e.wait_for_leader().await.expect("the old leader follows");
    assert_ne!(new, old);
    assert!(follows(&e, old, new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_the_leader_without_voting() {
    let mut e = Ensemble::builder()
        .servers(3)
        .observers(1)
        .start()
        .await
        .expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    assert!(e.server(3).is_observer());
    assert_eq!(
        e.server(3).role(),
        QuorumRole::Observing {
            leader,
            synced: true
        }
    );
    // The observer does not count: with one voter down two remain, with two down none leads.
    let fs = followers(&e, leader);
    e.kill(fs[0]).await;
    assert_eq!(e.wait_for_leader().await.expect("quorum of 2"), leader);
    e.kill(fs[1]).await;
    e.wait_for("the leader losing its quorum", |e| e.leader().is_none())
        .await
        .expect("no quorum without voters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_on_data_dirs_restart_from_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut e = Ensemble::builder()
        .servers(3)
        .data_dir(dir.path())
        .start()
        .await
        .expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    for i in 0..3 {
        assert!(dir.path().join(format!("s{i}/version-2")).is_dir());
    }
    assert!(dir.path().join("zkit-secret").is_file());
    e.kill(leader).await;
    let new = e.wait_for_leader().await.expect("a new leader");
    e.restart(leader).await.expect("restart from the data dir");
    assert_eq!(e.wait_for_leader().await.expect("settled"), new);
    for i in 0..3 {
        e.kill(i).await;
    }
    for i in 0..3 {
        e.restart(i).await.expect("restart");
    }
    e.wait_for_leader()
        .await
        .expect("a leader after a full restart");
}

#[tokio::test]
async fn a_bad_configuration_is_refused() {
    assert!(Ensemble::builder().servers(0).start().await.is_err());
    assert!(Ensemble::builder()
        .servers(200)
        .observers(100)
        .start()
        .await
        .is_err());
}

// ---- What clients see: needs the core's replicated mode. ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srvr_reports_each_servers_mode() {
    let e = Ensemble::builder()
        .servers(3)
        .observers(1)
        .four_letter_words("*")
        .start()
        .await
        .expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    for s in e.servers() {
        let expected = match s.index() {
            i if i == leader => ServerMode::Leader,
            3 => ServerMode::Observer,
            _ => ServerMode::Follower,
        };
        assert_eq!(s.mode(), expected, "server {}", s.index());
        let srvr = four_letter_word(s.addr(), "srvr").await;
        let name = expected.zookeeper_name().expect("serving");
        assert!(srvr.contains(&format!("Mode: {name}\n")), "{srvr}");
        let mntr = four_letter_word(s.addr(), "mntr").await;
        assert!(
            mntr.contains(&format!("zk_server_state\t{name}\n")),
            "{mntr}"
        );
        if s.index() == leader {
            assert!(mntr.contains("zk_synced_followers\t2\n"), "{mntr}");
            assert!(mntr.contains("zk_synced_observers\t1\n"), "{mntr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_server_is_read_on_another_after_sync() {
    let e = Ensemble::builder().servers(3).start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let fs = followers(&e, leader);
    let writer = client(&e.server(fs[0]).connect_string()).await;
    let reader = client(&e.server(fs[1]).connect_string()).await;
    let (path, _) = writer
        .create(
            "/replicated",
            b"hello",
            &CreateOptions::new(CreateMode::Persistent),
        )
        .await
        .expect("create through a follower");
    reader.sync("/replicated").await.expect("sync");
    let (data, _) = reader
        .get_data(&path)
        .await
        .expect("read on another follower");
    assert_eq!(&data[..], b"hello");
    let on_leader = e.server(leader).znodes("/replicated").expect("running");
    assert_eq!(
        on_leader["/replicated"].data.as_deref(),
        Some(&b"hello"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fails_over_when_the_leader_dies_and_keeps_its_session() {
    let mut e = Ensemble::builder().servers(3).start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    // The leader first in the connect string, so that its death is the client's failover.
    let others: Vec<String> = followers(&e, leader)
        .into_iter()
        .map(|i| e.server(i).connect_string())
        .collect();
    let connect = format!("{},{}", e.server(leader).connect_string(), others.join(","));
    let zk = client(&connect).await;
    let (eph, _) = zk
        .create("/failover", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .expect("create");
    let session = zk.session_id();
    let on = zk.connected_server().expect("connected");
    let serving = e
        .servers()
        .find(|s| s.addr() == on)
        .expect("one of ours")
        .index();
    e.kill(serving).await;
    e.wait_for_leader().await.expect("a leader");
    let stat = retry()
        .run(zkit::OpClass::Read, || zk.exists(&eph))
        .await
        .expect("the client reconnects");
    assert!(stat.is_some(), "the ephemeral survived the failover");
    assert_eq!(zk.session_id(), session, "same session");
    assert_ne!(zk.connected_server(), Some(on));
    e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ephemerals_of_a_closed_session_are_gone_everywhere() {
    let e = Ensemble::builder().servers(3).start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let f = followers(&e, leader)[0];
    let owner = client(&e.server(f).connect_string()).await;
    owner
        .create("/eph", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .expect("create");
    let session = owner.session_id();
    e.wait_for("the ephemeral on every server", |e| {
        e.servers()
            .all(|s| s.znodes("/eph").is_some_and(|z| z.contains_key("/eph")))
    })
    .await
    .expect("replicated");
    owner.close().await.expect("close");
    e.wait_for("the ephemeral gone everywhere", |e| {
        e.servers().all(|s| {
            s.znodes("/eph").is_some_and(|z| z.is_empty())
                && s.sessions().iter().all(|x| x.id != session)
        })
    })
    .await
    .expect("the closeSession replicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_leaves_every_server_with_the_same_history() {
    let e = Ensemble::builder().servers(3).start().await.expect("start");
    e.wait_for_leader().await.expect("a leader");
    let clients: Vec<Client> = {
        let mut v = Vec::new();
        for s in e.servers() {
            v.push(client(&s.connect_string()).await);
        }
        v
    };
    let mut tasks = Vec::new();
    for (c, zk) in clients.iter().enumerate() {
        let zk = zk.clone();
        tasks.push(tokio::spawn(async move {
            let base = format!("/w{c}");
            zk.create(&base, b"", &CreateOptions::new(CreateMode::Persistent))
                .await
                .expect("create");
            for i in 0..50 {
                let p = format!("{base}/n{i}");
                zk.create(&p, b"x", &CreateOptions::new(CreateMode::Persistent))
                    .await
                    .expect("create");
                zk.set_data(&p, format!("{i}").as_bytes(), None)
                    .await
                    .expect("set");
                if i % 3 == 0 {
                    zk.delete(&p, None).await.expect("delete");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("workload");
    }
    let zxid = e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
    for s in e.servers() {
        assert_eq!(s.last_zxid(), Some(zxid));
        assert_eq!(s.znodes("/w0").expect("running").len(), 1 + 33);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_catches_up_with_what_it_missed() {
    let mut e = Ensemble::builder().servers(3).start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let f = followers(&e, leader)[0];
    let zk = client(&e.server(leader).connect_string()).await;
    zk.create("/before", b"", &CreateOptions::new(CreateMode::Persistent))
        .await
        .expect("create");
    e.kill(f).await;
    for i in 0..20 {
        zk.create(
            &format!("/missed{i}"),
            b"",
            &CreateOptions::new(CreateMode::Persistent),
        )
        .await
        .expect("create while it is down");
    }
    e.restart(f).await.expect("restart");
    e.wait_for_leader().await.expect("settled");
    let zxid = e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
    assert_eq!(e.server(f).last_zxid(), Some(zxid));
    assert_eq!(replicated(&e, f), replicated(&e, leader));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_follower_disconnects_its_clients_and_serves_again_after_heal() {
    let mut e = Ensemble::builder()
        .servers(3)
        .four_letter_words("srvr")
        .start()
        .await
        .expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let fs = followers(&e, leader);
    let minority = fs[0];
    let zk = client(&e.server(minority).connect_string()).await;
    let mut state = zk.state_watch();

    e.partition(&[&[leader, fs[1]], &[minority]]).await;
    tokio::time::timeout(
        PATIENCE,
        state.wait_for(|s| *s != zkit::SessionState::Connected),
    )
    .await
    .expect("the client is disconnected")
    .expect("state");
    assert_eq!(e.server(minority).mode(), ServerMode::NotServing);
    let srvr = four_letter_word(e.server(minority).addr(), "srvr").await;
    assert_eq!(
        srvr,
        "This ZooKeeper instance is not currently serving requests\n"
    );

    e.heal().await;
    e.wait_for_leader().await.expect("healed");
    assert_eq!(e.server(minority).mode(), ServerMode::Follower);
    tokio::time::timeout(
        PATIENCE,
        state.wait_for(|s| *s == zkit::SessionState::Connected),
    )
    .await
    .expect("the client is back")
    .expect("state");
    retry()
        .run(zkit::OpClass::Read, || zk.exists("/"))
        .await
        .expect("it serves again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_serve_what_the_voters_commit() {
    let e = Ensemble::builder()
        .servers(3)
        .observers(1)
        .start()
        .await
        .expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let observer = client(&e.server(3).connect_string()).await;
    let voter = client(&e.server(leader).connect_string()).await;
    voter
        .create("/seen", b"v", &CreateOptions::new(CreateMode::Persistent))
        .await
        .expect("create");
    observer.sync("/seen").await.expect("sync");
    let (data, _) = observer
        .get_data("/seen")
        .await
        .expect("read on the observer");
    assert_eq!(&data[..], b"v");
    observer
        .create(
            "/through-observer",
            b"",
            &CreateOptions::new(CreateMode::Persistent),
        )
        .await
        .expect("a write through the observer");
    e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_loses_its_ephemerals_on_every_server() {
    let e = Ensemble::builder().servers(3).start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let f = followers(&e, leader)[0];
    let zk = client(&e.server(f).connect_string()).await;
    zk.create("/mine", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .expect("create");
    let session = zk.session_id();
    e.wait_for("the session known to the leader", |e| {
        e.server(leader).sessions().iter().any(|s| s.id == session)
    })
    .await
    .expect("global session");
    assert!(e.expire_session(session));
    e.wait_for("the ephemeral gone everywhere", |e| {
        e.servers()
            .all(|s| s.znodes("/mine").is_some_and(|z| z.is_empty()))
    })
    .await
    .expect("expired everywhere");
    let mut state = zk.state_watch();
    tokio::time::timeout(
        PATIENCE,
        state.wait_for(|s| *s == zkit::SessionState::Expired),
    )
    .await
    .expect("the client learns")
    .expect("state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_leads_alone_and_an_observer_follows_it() {
    let e = Ensemble::builder()
        .servers(1)
        .observers(1)
        .start()
        .await
        .expect("start");
    assert_eq!(e.wait_for_leader().await.expect("a leader"), 0);
    assert_eq!(
        e.server(1).role(),
        QuorumRole::Observing {
            leader: 0,
            synced: true
        }
    );
}

/// A server's znodes, without `/zookeeper/config` (each server sets it when it starts, with its
/// own mtime, as ZooKeeper does).
fn replicated(
    e: &Ensemble,
    i: usize,
) -> Option<std::collections::BTreeMap<String, zkit_testkit::Znode>> {
    let mut z = e.server(i).znodes("/")?;
    z.remove("/zookeeper/config");
    Some(z)
}
