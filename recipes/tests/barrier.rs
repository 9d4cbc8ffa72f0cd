//! Barrier and DoubleBarrier: waiters released by removal, members that die, enter together and
//! leave together, timeouts that leave no node behind.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, children, eventually};
use zkit::{CreateMode, WatcherType};
use zkit_recipes::barrier::{Barrier, BarrierOptions, DoubleBarrier, DoubleBarrierOptions};
use zkit_recipes::state::LossReason;
use zkit_recipes::Error;

/// Waits until `client` has a watch on `path` (the waiter is parked on the barrier).
async fn watching(client: &zkit::Client, path: &str) {
    eventually("waiter parked", || async {
        client.check_watches(path, WatcherType::Data).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn barrier_blocks_waiters_until_removed() {
    let t = target!();
    let ns = t.namespace("barrier-basic").await;
    let zk = ns.client().await;
    let gate = Barrier::new(&zk, "/gates/g", BarrierOptions::default());
    gate.set().await.unwrap();
    gate.set().await.unwrap();
    assert!(gate.is_set().await.unwrap());
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let c = ns.client().await;
        let b = Barrier::new(&c, "/gates/g", BarrierOptions::default());
        waiters.push(tokio::spawn(async move { b.wait().await }));
        watching(&c, "/gates/g").await;
    }
    assert!(waiters.iter().all(|w| !w.is_finished()));
    let r = gate.wait_timeout(Duration::from_millis(100)).await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    gate.remove().await.unwrap();
    for w in waiters {
        bounded("released", w).await.unwrap().unwrap();
    }
    gate.remove().await.unwrap();
    // Not set: wait returns at once.
    bounded("unset barrier", gate.wait()).await.unwrap();
}

/// N members wait on a barrier; one of them dies (its session expires). It is told (its wait
/// fails), the others keep waiting, across a dropped connection too, and are released by the
/// removal. An ephemeral barrier falls when the session that set it dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barrier_with_a_member_that_dies() {
    let t = target!();
    let ns = t.namespace("barrier-dies").await;
    let zk = ns.client().await;
    let gate = Barrier::new(&zk, "/g", BarrierOptions::default());
    gate.set().await.unwrap();
    let mut members = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..4 {
        let f = Arc::new(ns.faulty_client(false).await);
        let b = Barrier::new(&f.client, "/g", BarrierOptions::default());
        waits.push(tokio::spawn(async move { b.wait().await }));
        watching(&f.client, "/g").await;
        members.push(f);
    }
    members[0].expire().await;
    let dead = bounded("dead member told", waits.remove(0)).await.unwrap();
    assert!(
        dead.as_ref().is_err_and(|e| e.is_session_gone()),
        "{dead:?}"
    );
    members[1].drop_connection();
    bounded("reconnected", async {
        members[1]
            .client
            .state_watch()
            .wait_for(|s| s.is_connected())
            .await
            .unwrap();
    })
    .await;
    assert!(waits.iter().all(|w| !w.is_finished()), "still waiting");
    gate.remove().await.unwrap();
    for w in waits {
        bounded("released", w).await.unwrap().unwrap();
    }

    // Ephemeral barrier: the setter's death releases the waiters.
    let setter = ns.faulty_client(false).await;
    let eph = Barrier::new(
        &setter.client,
        "/e",
        BarrierOptions::default().mode(CreateMode::Ephemeral),
    );
    eph.set().await.unwrap();
    let w = tokio::spawn({
        let b = Barrier::new(&zk, "/e", BarrierOptions::default());
        async move { b.wait().await }
    });
    watching(&zk, "/e").await;
    setter.expire().await;
    bounded("released by the setter's death", w)
        .await
        .unwrap()
        .unwrap();
}

/// Members arrive one by one (one of them through a dropped connection): nobody gets through
/// `enter` before the last arrived, nobody through `leave` before the last left; the barrier is
/// empty afterwards and can be used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_barrier_enter_and_leave_together() {
    let t = target!();
    let ns = t.namespace("double-barrier").await;
    let admin = ns.client().await;
    const N: usize = 4;
    for round in 0..2 {
        let arrived = Arc::new(AtomicUsize::new(0));
        let leaving = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        let mut faulty = Vec::new();
        for i in 0..N {
            let f = Arc::new(ns.faulty_client(false).await);
            faulty.push(f.clone());
            let (arrived, leaving) = (arrived.clone(), leaving.clone());
            tasks.push(tokio::spawn(async move {
                let b = DoubleBarrier::new(&f.client, "/b", DoubleBarrierOptions::new(N));
                arrived.fetch_add(1, Ordering::SeqCst);
                let m = b.enter().await.unwrap();
                assert_eq!(
                    arrived.load(Ordering::SeqCst),
                    N,
                    "member {i} entered early"
                );
                leaving.fetch_add(1, Ordering::SeqCst);
                m.leave().await.unwrap();
                assert_eq!(leaving.load(Ordering::SeqCst), N, "member {i} left early");
            }));
            let b = DoubleBarrier::new(&admin, "/b", DoubleBarrierOptions::new(N));
            if i + 1 < N {
                eventually("member queued", || async {
                    b.members().await.unwrap().len() == i + 1
                })
                .await;
            }
            if i == 1 {
                faulty[0].drop_connection();
            }
        }
        for t in tasks {
            bounded("member done", t).await.unwrap();
        }
        assert!(
            children(&admin, "/b").await.is_empty(),
            "round {round}: nothing left behind"
        );
    }
}

/// A member that dies after entering does not hold up the others' `leave`; a member that never
/// arrives makes `enter_timeout` fail, and the timed-out members leave no node behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_barrier_with_a_member_that_dies() {
    let t = target!();
    let ns = t.namespace("double-barrier-dies").await;
    let admin = ns.client().await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(Arc::new(ns.faulty_client(false).await));
    }
    let mut enters = Vec::new();
    for f in &members {
        let f = f.clone();
        enters.push(tokio::spawn(async move {
            DoubleBarrier::new(&f.client, "/b", DoubleBarrierOptions::new(3))
                .enter()
                .await
        }));
    }
    let mut entered = Vec::new();
    for e in enters {
        entered.push(bounded("entered", e).await.unwrap().unwrap());
    }
    // Member 0 dies inside the barrier; the other two leave without waiting for it.
    let dead = entered.remove(0);
    members[0].expire().await;
    let reason = bounded("dead member told", dead.lost()).await;
    // Its node went with the session; which of the two it hears of first is a race.
    assert!(
        reason.is_session_gone() || reason == LossReason::NodeDeleted,
        "{reason:?}"
    );
    drop(dead);
    let leaves: Vec<_> = entered
        .into_iter()
        .map(|m| tokio::spawn(m.leave()))
        .collect();
    for l in leaves {
        bounded("left", l).await.unwrap().unwrap();
    }
    assert!(children(&admin, "/b").await.is_empty());

    // Only two of three arrive: both time out and leave nothing behind.
    let mut enters = Vec::new();
    for f in &members[1..] {
        let f = f.clone();
        enters.push(tokio::spawn(async move {
            DoubleBarrier::new(&f.client, "/b2", DoubleBarrierOptions::new(3))
                .enter_timeout(Duration::from_millis(500))
                .await
        }));
    }
    for e in enters {
        let r = bounded("timed out", e).await.unwrap();
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    }
    eventually("timed-out members removed", || async {
        children(&admin, "/b2").await.is_empty()
    })
    .await;
}

/// A member that already deleted its node in `leave` and is slow to hear that the lowest left
/// (here: its connection is down meanwhile) must not mistake the next round's first member for
/// someone of its own round and wait for it: that member waits in `enter` for this one, a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_barrier_reused_at_once_does_not_strand_a_slow_leaver() {
    let t = target!();
    let ns = t.namespace("double-barrier-reuse").await;
    let admin = ns.client().await;
    let fa = ns.faulty_client(false).await;
    let fb = ns.faulty_client(false).await;
    let opts = || DoubleBarrierOptions::new(2);
    let (ba, bb) = (
        DoubleBarrier::new(&fa.client, "/b", opts()),
        DoubleBarrier::new(&fb.client, "/b", opts()),
    );
    let (ma, mb) = tokio::join!(ba.enter(), bb.enter());
    let (ma, mb) = (ma.unwrap(), mb.unwrap());
    // The lowest member leaves last; the other one (slow) is cut off once it has left.
    let ((low, low_b), (high, high_f, high_b)) = if ma.node() < mb.node() {
        ((ma, ba), (mb, &fb, bb))
    } else {
        ((mb, bb), (ma, &fa, ba))
    };
    let high_node = high.node().to_owned();
    let leaving = tokio::spawn(high.leave());
    eventually("slow member deleted its node", || async {
        admin.exists(&high_node).await.unwrap().is_none()
    })
    .await;
    high_f.proxy.partition(true);
    bounded("lowest leaves", low.leave()).await.unwrap();
    // Round two starts at once.
    let next = tokio::spawn(async move { low_b.enter().await });
    eventually("round two's first member in", || async {
        member_count(&admin).await == 1
    })
    .await;
    high_f.proxy.partition(false);
    bounded("slow member done leaving", leaving)
        .await
        .unwrap()
        .unwrap();
    let again = bounded("slow member enters round two", high_b.enter())
        .await
        .unwrap();
    let first = bounded("round two complete", next).await.unwrap().unwrap();
    drop((again, first));
}

async fn member_count(admin: &zkit::Client) -> usize {
    children(admin, "/b")
        .await
        .into_iter()
        .filter(|c| c != "ready")
        .count()
}
