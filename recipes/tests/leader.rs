//! Leader election: one leader, hand-over on close, on expiry (the old leader told before the
//! new one acts), selector tasks cancelled on loss and re-queued.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use common::{bounded, eventually};
use zkit_recipes::leader::{LeaderLatch, LeaderOptions, LeaderSelector};
use zkit_recipes::state::LossReason;

type Log = Arc<StdMutex<Vec<(String, &'static str)>>>;

/// Records each term of `latch` in `log` until the latch ends.
fn record_terms(latch: Arc<LeaderLatch>, log: Log) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(term) = latch.leadership().await {
            log.lock().unwrap().push((latch.id().to_owned(), "gained"));
            term.lost().await;
            log.lock().unwrap().push((latch.id().to_owned(), "lost"));
        }
    })
}

async fn single_leader(latches: &[Arc<LeaderLatch>]) -> usize {
    let leaders = || -> Vec<usize> {
        (0..latches.len())
            .filter(|i| latches[*i].is_leader())
            .collect()
    };
    eventually("exactly one leader", || async { leaders().len() == 1 }).await;
    leaders()[0]
}

#[tokio::test]
async fn one_leader_and_close_hands_over_after_the_old_leader_is_told() {
    let t = target!();
    let ns = t.namespace("leader-close").await;
    let log: Log = Default::default();
    let mut latches = Vec::new();
    for i in 0..3 {
        let zk = ns.client().await;
        let l = LeaderLatch::start(&zk, "/election", LeaderOptions::new(format!("p{i}")))
            .await
            .unwrap();
        latches.push(Arc::new(l));
    }
    for l in &latches {
        record_terms(l.clone(), log.clone());
    }
    let leader = single_leader(&latches).await;
    // `start` returns before a latch's node exists: one leader may already be chosen while the
    // last latch is still joining.
    eventually("three participants", || async {
        latches[0].participants().await.unwrap().len() == 3
    })
    .await;
    let ps = latches[0].participants().await.unwrap();
    assert_eq!(ps.len(), 3);
    assert!(ps[0].is_leader);
    assert_eq!(ps[0].id, latches[leader].id());
    let term = latches[leader].leadership().await.unwrap();
    latches[leader].close().await.unwrap();
    assert_eq!(term.lost().await, LossReason::Released);
    let rest: Vec<_> = latches
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, l)| l.clone())
        .collect();
    let next = single_leader(&rest).await;
    assert_ne!(rest[next].id(), latches[leader].id());
    eventually("new leader recorded", || async {
        let l = log.lock().unwrap();
        l.iter().filter(|e| e.1 == "gained").count() == 2
    })
    .await;
    let log = log.lock().unwrap().clone();
    let old = latches[leader].id();
    let lost = log.iter().position(|e| e.0 == old && e.1 == "lost");
    let gained = log.iter().position(|e| e.0 != old && e.1 == "gained");
    assert!(lost < gained, "old leader told first: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_session_expiry_leaves_exactly_one_leader_and_the_old_one_is_told_first() {
    let t = target!();
    let ns = t.namespace("leader-expiry").await;
    let log: Log = Default::default();
    let mut fs = Vec::new();
    let mut latches = Vec::new();
    for i in 0..3 {
        let f = ns.faulty_client(true).await;
        let l = LeaderLatch::start(&f.client, "/election", LeaderOptions::new(format!("p{i}")))
            .await
            .unwrap();
        latches.push(Arc::new(l));
        fs.push(f);
    }
    for l in &latches {
        record_terms(l.clone(), log.clone());
    }
    let leader = single_leader(&latches).await;
    let old = latches[leader].id().to_owned();
    let old_session = fs[leader].client.session_id();
    let term = latches[leader].leadership().await.unwrap();
    // A real expiry: the leader is cut off for a session timeout. (An instant server-side expiry
    // of a still-connected session can elect the next leader before any client library could
    // tell the old one; see the next test.)
    fs[leader].isolate_until_expired().await;
    assert!(!term.is_current(), "told by the time its session is gone");
    eventually("another participant leads", || async {
        latches.iter().any(|l| l.is_leader() && l.id() != old)
    })
    .await;
    let now = single_leader(&latches).await;
    assert_ne!(latches[now].id(), old);
    // The old participant re-joined on its new session, at the back of the queue.
    eventually("old participant re-queued", || async {
        let ps = latches[now].participants().await.unwrap();
        ps.len() == 3 && ps[0].id == latches[now].id() && ps[2].id == old
    })
    .await;
    assert_ne!(fs[leader].client.session_id(), old_session);
    let log = log.lock().unwrap().clone();
    let lost = log.iter().position(|e| e.0 == old && e.1 == "lost");
    let gained = log.iter().position(|e| e.0 != old && e.1 == "gained");
    assert!(
        lost.is_some() && lost < gained,
        "old leader told first: {log:?}"
    );
}

#[tokio::test]
async fn selector_task_is_cancelled_when_leadership_is_lost_and_requeued() {
    let t = target!();
    let ns = t.namespace("selector-cancel").await;
    let f = ns.faulty_client(false).await;
    let started = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    struct OnDrop(Arc<AtomicUsize>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (s, c) = (started.clone(), cancelled.clone());
    let sel = LeaderSelector::start(&f.client, "/election", LeaderOptions::new("a"), move |_| {
        s.fetch_add(1, Ordering::SeqCst);
        let guard = OnDrop(c.clone());
        async move {
            let _g = guard;
            std::future::pending::<()>().await
        }
    })
    .await
    .unwrap();
    eventually("task started", || async {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    f.drop_connection();
    eventually("task cancelled", || async {
        cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually("leader again after requeue", || async {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(sel.is_leader());
    sel.close().await.unwrap();
    assert_eq!(cancelled.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn selectors_take_turns_when_tasks_finish() {
    let t = target!();
    let ns = t.namespace("selector-turns").await;
    let runs: Arc<StdMutex<Vec<String>>> = Default::default();
    let mut sels = Vec::new();
    for id in ["a", "b"] {
        let zk = ns.client().await;
        let r = runs.clone();
        sels.push(
            LeaderSelector::start(&zk, "/election", LeaderOptions::new(id), move |term| {
                let r = r.clone();
                async move {
                    assert!(term.is_current());
                    r.lock().unwrap().push(id.to_owned());
                }
            })
            .await
            .unwrap(),
        );
    }
    eventually("both led twice", || async {
        let r = runs.lock().unwrap();
        r.iter().filter(|x| *x == "a").count() >= 2 && r.iter().filter(|x| *x == "b").count() >= 2
    })
    .await;
    for s in sels {
        bounded("close", s.close()).await.unwrap();
    }
}

/// The testkit can expire a session server-side while its client is still connected (an
/// administrator's kill, not a timeout). No client can be told before the others see the node
/// go, but the old leader is told promptly and exactly one leader remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_expiry_of_the_leader_still_leaves_exactly_one_leader() {
    let t = target!();
    let ns = t.namespace("leader-kill").await;
    let mut fs = Vec::new();
    let mut latches = Vec::new();
    for i in 0..3 {
        let f = ns.faulty_client(true).await;
        let l = LeaderLatch::start(&f.client, "/election", LeaderOptions::new(format!("p{i}")))
            .await
            .unwrap();
        latches.push(Arc::new(l));
        fs.push(f);
    }
    let leader = single_leader(&latches).await;
    // Every participant queued before the leader goes: one that had not yet created its node
    // (a slow task on a busy machine) would queue behind the old leader's new one.
    eventually("all three queued", || async {
        latches[0].participants().await.is_ok_and(|p| p.len() == 3)
    })
    .await;
    let term = latches[leader].leadership().await.unwrap();
    fs[leader].expire().await;
    bounded("old leader told", term.lost()).await;
    let now = single_leader(&latches).await;
    assert_ne!(now, leader);
}

/// A leader that loses its connection queues to delete its node once reconnected; closing the
/// latch in that window must still delete the node, or it stays behind as a phantom leader (its
/// session is alive) and nobody else is ever elected.
#[tokio::test]
async fn closing_a_suspended_leader_deletes_its_node_after_reconnect() {
    let t = target!();
    let ns = t.namespace("leader-close-suspended").await;
    let f = ns.faulty_client(false).await;
    let a = LeaderLatch::start(&f.client, "/election", LeaderOptions::new("a"))
        .await
        .unwrap();
    let term = bounded("a leads", a.leadership()).await.unwrap();
    let zk = ns.client().await;
    let b = LeaderLatch::start(&zk, "/election", LeaderOptions::new("b"))
        .await
        .unwrap();
    eventually("b queued", || async {
        b.participants().await.unwrap().len() == 2
    })
    .await;
    f.proxy.partition(true);
    assert_eq!(bounded("a told", term.lost()).await, LossReason::Suspended);
    // Let the election task move on to deleting its node (it waits for the connection).
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let closing = tokio::spawn(async move { a.close().await });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    f.proxy.partition(false);
    bounded("close", closing).await.unwrap().unwrap();
    let mut states = f.client.state_watch();
    bounded("a reconnected", states.wait_for(|s| s.is_connected()))
        .await
        .unwrap();
    let ps = b.participants().await.unwrap();
    assert_eq!(
        ps.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec!["b"],
        "the closed latch left its node behind"
    );
    bounded("b leads", b.leadership()).await.unwrap();
}

/// A latch on a client that re-creates sessions carries on through every expiry. Such a client
/// shows `Expired` for a moment before it moves on to its next session; a latch that looked in
/// that moment used to end for good. The window is narrow, so the test gives the race many
/// chances (an expiry is instant on the testkit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latch_on_a_recreating_client_carries_on_through_many_expiries() {
    let t = target!();
    let ns = t.namespace("leader-many-expiries").await;
    let f = ns.faulty_client(true).await;
    let latch = LeaderLatch::start(&f.client, "/election", LeaderOptions::new("a"))
        .await
        .unwrap();
    let rounds = if t.is_real() { 2 } else { 300 };
    for round in 0..rounds {
        let term = bounded("leads again", latch.leadership())
            .await
            .unwrap_or_else(|e| panic!("round {round}: the latch ended: {e}"));
        f.expire().await;
        bounded("told", term.lost()).await;
    }
}

/// Without `auto_requeue` a selector leads once: when its task finishes it leaves the election
/// (its node goes) instead of queueing again.
#[tokio::test]
async fn selector_without_auto_requeue_leaves_after_one_term() {
    let t = target!();
    let ns = t.namespace("selector-once").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let zk = ns.client().await;
    let r = runs.clone();
    let once = LeaderSelector::start(
        &zk,
        "/election",
        LeaderOptions::new("once").auto_requeue(false),
        move |_| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
            }
        },
    )
    .await
    .unwrap();
    eventually("led once and left", || async {
        runs.load(Ordering::SeqCst) == 1 && once.participants().await.is_ok_and(|p| p.is_empty())
    })
    .await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    bounded("close", once.close()).await.unwrap();
}
