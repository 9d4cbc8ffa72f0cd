//! The path between the cores and the quorum, driven from inside: what a leader's core
//! emits for a write (a proposal with a placeholder zxid) is given its zxid, replicated,
//! and delivered to every core; a restarted member rebuilds its tree from its disk and
//! catches up. Every wait is on a condition, with a generous bound.

use std::time::Duration;

use bytes::Bytes;
use zkit_proto::txn::CreateTxn;
use zkit_proto::Acl;

use super::*;
use crate::core::{Mode, Output, Txn, TxnBody};

/// A create of `path` as a leader's core prepares it (its zxid is a placeholder).
fn create(path: &str) -> Output {
    Output::Propose(
        Box::new(Txn::new(
            0x77,
            1,
            0,
            1_700_000_000_000,
            TxnBody::Create(CreateTxn {
                path: path.into(),
                data: Some(Bytes::from_static(b"v")),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            }),
        )),
        None,
    )
}

/// Hands `out` to member `i`'s replication sink, as its core's dispatch does.
fn emit(e: &Ensemble, i: usize, out: Output, mode: Mode) {
    let ctx = e.nodes[i].ctx().expect("running");
    let g = ctx.lock();
    (g.replica.as_ref().expect("a replica").sink)(out, mode);
}

fn epoch_of(e: &Ensemble, i: usize) -> u32 {
    match e.server(i).role() {
        QuorumRole::Leading { epoch, .. } => epoch,
        r => panic!("server {i} does not lead: {r:?}"),
    }
}

fn has(e: &Ensemble, i: usize, path: &str) -> bool {
    e.server(i)
        .znodes(path)
        .is_some_and(|z| z.contains_key(path))
}

async fn wait_everywhere(e: &Ensemble, path: &str) {
    let p = path.to_owned();
    e.wait_for(&format!("{path} on every running server"), move |e| {
        e.servers()
            .all(|s| !s.is_running() || has(e, s.index(), &p))
    })
    .await
    .expect("replicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaders_proposals_reach_every_core_in_its_epoch_and_stale_ones_are_dropped() {
    let e = Ensemble::builder().servers(3).start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let epoch = epoch_of(&e, leader);
    for i in 0..10 {
        emit(
            &e,
            leader,
            create(&format!("/p{i}")),
            Mode::Leader { epoch },
        );
    }
    // Commands keep their order: once /after is everywhere, /stale was seen and dropped.
    emit(
        &e,
        leader,
        create("/stale"),
        Mode::Leader { epoch: epoch + 1 },
    );
    emit(&e, leader, create("/not-leading"), Mode::Follower);
    emit(&e, leader, create("/after"), Mode::Leader { epoch });
    wait_everywhere(&e, "/after").await;
    let zxid = e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
    assert_eq!(zxid >> 32, i64::from(epoch), "zxids of the leader's epoch");
    assert_eq!(zxid & 0xffff_ffff, 11, "eleven proposals committed");
    for s in e.servers() {
        assert!(has(&e, s.index(), "/p9"));
        assert!(!has(&e, s.index(), "/stale") && !has(&e, s.index(), "/not-leading"));
        assert_eq!(s.last_zxid(), Some(zxid));
        assert_eq!(s.logged_zxid(), Some((zxid, zxid)));
    }
    // A follower's core cannot propose through its peer.
    let f = (0..3).find(|&i| i != leader).expect("a follower");
    emit(&e, f, create("/from-follower"), Mode::Leader { epoch });
    emit(&e, leader, create("/last"), Mode::Leader { epoch });
    wait_everywhere(&e, "/last").await;
    assert!(!has(&e, leader, "/from-follower"));
}

async fn restarted_members_rebuild_from_their_disk_and_catch_up(e: &mut Ensemble) {
    let leader = e.wait_for_leader().await.expect("a leader");
    let epoch = epoch_of(e, leader);
    for i in 0..5 {
        emit(e, leader, create(&format!("/a{i}")), Mode::Leader { epoch });
    }
    wait_everywhere(e, "/a4").await;
    let f = (0..3).find(|&i| i != leader).expect("a follower");
    e.kill(f).await;
    for i in 0..5 {
        emit(e, leader, create(&format!("/b{i}")), Mode::Leader { epoch });
    }
    wait_everywhere(e, "/b4").await;
    e.restart(f).await.expect("restart");
    assert!(has(e, f, "/a4"), "rebuilt from its own disk at once");
    e.wait_for_leader().await.expect("settled");
    wait_everywhere(e, "/b4").await;
    let zxid = e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
    assert_eq!(replicated(e, f), replicated(e, leader));

    // The leader goes: the new one's proposals are of a later epoch.
    e.kill(leader).await;
    let leader2 = e.wait_for_leader().await.expect("a new leader");
    let epoch2 = epoch_of(e, leader2);
    assert!(epoch2 > epoch);
    emit(e, leader2, create("/c"), Mode::Leader { epoch: epoch2 });
    wait_everywhere(e, "/c").await;
    e.restart(leader).await.expect("restart");
    e.wait_for_leader().await.expect("settled");
    wait_everywhere(e, "/c").await;
    let zxid2 = e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
    assert!(zxid2 > zxid && zxid2 >> 32 == i64::from(epoch2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_members_rebuild_from_their_disk_and_catch_up() {
    let mut e = Ensemble::builder().servers(3).start().await.expect("start");
    restarted_members_rebuild_from_their_disk_and_catch_up(&mut e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_data_dirs_rebuild_from_their_disk_and_catch_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = crate::PersistOptions::default().prealloc(4096);
    let mut e = Ensemble::builder()
        .servers(3)
        .data_dir(dir.path())
        .persist_options(opts)
        .start()
        .await
        .expect("start");
    restarted_members_rebuild_from_their_disk_and_catch_up(&mut e).await;
    // Everything restarts from the data dirs and agrees.
    for i in 0..3 {
        e.stop(i).await;
    }
    for i in 0..3 {
        e.restart(i).await.expect("restart");
    }
    e.wait_for_leader().await.expect("a leader");
    e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
    assert!(has(&e, 0, "/c"));
}

/// The old leader logged proposals no one else saw (its links were slow, then it died); the
/// new leader's history differs. Back, it truncates them (TRUNC) and its core is reset to
/// the tree rebuilt from its disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_leader_truncates_what_it_alone_logged() {
    let mut e = Ensemble::builder().servers(3).start().await.expect("start");
    let old = e.wait_for_leader().await.expect("a leader");
    let epoch = epoch_of(&e, old);
    emit(&e, old, create("/shared"), Mode::Leader { epoch });
    wait_everywhere(&e, "/shared").await;
    for f in (0..3).filter(|&i| i != old) {
        e.delay(old, f, Duration::from_secs(3600)).await;
    }
    let shared = e.server(old).last_zxid().expect("running");
    emit(&e, old, create("/lost"), Mode::Leader { epoch });
    e.wait_for("the lone proposal logged and synced", |e| {
        e.server(old)
            .logged_zxid()
            .is_some_and(|(last, synced)| last > shared && synced == last)
    })
    .await
    .expect("logged");
    e.kill(old).await;
    e.heal().await;
    let new = e.wait_for_leader().await.expect("a new leader");
    emit(
        &e,
        new,
        create("/new"),
        Mode::Leader {
            epoch: epoch_of(&e, new),
        },
    );
    wait_everywhere(&e, "/new").await;
    e.restart(old).await.expect("restart");
    e.wait_for_leader().await.expect("settled");
    wait_everywhere(&e, "/new").await;
    e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
    assert!(!has(&e, old, "/lost"));
}

/// A follower that missed more than the snapshot threshold gets SNAP: its disk takes the
/// leader's snapshot and its core is reset to the tree rebuilt from it.
async fn a_far_behind_follower_is_restored_from_a_snapshot(data_dir: Option<&std::path::Path>) {
    let mut b = Ensemble::builder().servers(3).snap_threshold(3);
    if let Some(d) = data_dir {
        b = b
            .data_dir(d)
            .persist_options(crate::PersistOptions::default().prealloc(4096));
    }
    let mut e = b.start().await.expect("start");
    let leader = e.wait_for_leader().await.expect("a leader");
    let epoch = epoch_of(&e, leader);
    emit(&e, leader, create("/a"), Mode::Leader { epoch });
    wait_everywhere(&e, "/a").await;
    let f = (0..3).find(|&i| i != leader).expect("a follower");
    e.kill(f).await;
    for i in 0..10 {
        emit(
            &e,
            leader,
            create(&format!("/b{i}")),
            Mode::Leader { epoch },
        );
    }
    wait_everywhere(&e, "/b9").await;
    e.restart(f).await.expect("restart");
    e.wait_for_leader().await.expect("settled");
    emit(&e, leader, create("/c"), Mode::Leader { epoch });
    wait_everywhere(&e, "/c").await;
    e.check_consistent().await.unwrap_or_else(|i| panic!("{i}"));
    assert_eq!(replicated(&e, f), replicated(&e, leader));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_behind_in_memory_follower_is_restored_from_a_snapshot() {
    a_far_behind_follower_is_restored_from_a_snapshot(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_behind_follower_on_a_data_dir_is_restored_from_a_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    a_far_behind_follower_is_restored_from_a_snapshot(Some(dir.path())).await;
}

/// A server's znodes, without `/zookeeper/config` (each server sets it when it starts, with its
/// own mtime, as ZooKeeper does).
fn replicated(e: &Ensemble, i: usize) -> Option<std::collections::BTreeMap<String, crate::Znode>> {
    let mut z = e.server(i).znodes("/")?;
    z.remove("/zookeeper/config");
    Some(z)
}
