//! DistributedQueue: FIFO order, claims that hand each item to one consumer, release and
//! redelivery, and consumers killed mid-item losing nothing.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use common::{bounded, children, eventually};
use tokio::sync::mpsc;
use zkit_recipes::queue::{DistributedQueue, QueueOptions};
use zkit_recipes::Error;

fn locked() -> QueueOptions {
    QueueOptions::default().lock_path("/q-locks")
}

#[tokio::test]
async fn queue_delivers_in_order_and_complete_removes() {
    let t = target!();
    let ns = t.namespace("queue-order").await;
    let zk = ns.client().await;
    let q = DistributedQueue::new(&zk, "/q", QueueOptions::default());
    let r = q.take_timeout(Duration::from_millis(200)).await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    for i in 0..5 {
        q.put(format!("item-{i}")).await.unwrap();
    }
    assert_eq!(q.len().await.unwrap(), 5);
    for i in 0..5 {
        let item = q.take().await.unwrap();
        assert_eq!(&item.data()[..], format!("item-{i}").as_bytes());
        item.complete().await.unwrap();
    }
    assert!(q.is_empty().await.unwrap());
    // A waiting consumer gets an item put later.
    let waiting = tokio::spawn({
        let q = DistributedQueue::new(&ns.client().await, "/q", QueueOptions::default());
        async move { q.take().await.map(|i| i.data().clone()) }
    });
    q.put("late").await.unwrap();
    assert_eq!(
        &bounded("take", waiting).await.unwrap().unwrap()[..],
        b"late"
    );
}

#[tokio::test]
async fn claimed_items_go_to_one_consumer_and_released_items_come_back() {
    let t = target!();
    let ns = t.namespace("queue-claims").await;
    let (zk1, zk2) = (ns.client().await, ns.client().await);
    let q1 = DistributedQueue::new(&zk1, "/q", locked());
    let q2 = DistributedQueue::new(&zk2, "/q", locked());
    q1.put("a").await.unwrap();
    q1.put("b").await.unwrap();
    let a = q1.take().await.unwrap();
    assert_eq!(&a.data()[..], b"a");
    let b = q2.take().await.unwrap();
    assert_eq!(&b.data()[..], b"b", "the claimed item is skipped");
    assert!(q2.try_take().await.unwrap().is_none(), "both claimed");
    // A consumer waiting on claimed items wakes when one is given back.
    let waiting = tokio::spawn({
        let q2 = q2.clone();
        async move { q2.take().await.map(|i| i.data().clone()) }
    });
    a.release().await.unwrap();
    assert_eq!(
        &bounded("redelivered", waiting).await.unwrap().unwrap()[..],
        b"a"
    );
    b.complete().await.unwrap();
    // Without claims an item is delivered again until completed (at least once).
    let plain = DistributedQueue::new(&zk1, "/p", QueueOptions::default());
    plain.put("x").await.unwrap();
    let first = plain.take().await.unwrap();
    drop(first);
    let again = plain.take().await.unwrap();
    assert_eq!(&again.data()[..], b"x");
    again.complete().await.unwrap();
    assert!(plain.is_empty().await.unwrap());
}

/// Consumers on their own sessions take items under claims; some are killed mid-item (task
/// aborted, then the session expired, as when a process dies) and replaced, and connections are
/// dropped at random. Every item is completed exactly once (a killed consumer never completes),
/// no item is ever held by two live consumers, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_consumers_killed_mid_item_lose_nothing() {
    let t = target!();
    let ns = t.namespace("queue-kill").await;
    let seed = std::env::var("ZK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (ZK_TEST_SEED={seed} replays the kill schedule)");
    let mut rng = fastrand::Rng::with_seed(seed);
    const ITEMS: usize = 60;
    const CONSUMERS: usize = 4;
    const KILLS: usize = 6;
    let admin = ns.client().await;
    let producer = DistributedQueue::new(&admin, "/q", locked());
    for i in 0..ITEMS {
        producer.put(format!("job-{i}")).await.unwrap();
    }
    let completed: Arc<StdMutex<HashMap<String, usize>>> = Default::default();
    let in_progress: Arc<StdMutex<HashMap<String, usize>>> = Default::default();
    let (kill_tx, mut kill_rx) = mpsc::unbounded_channel::<usize>();
    let mut consumers: HashMap<usize, (Arc<common::Faulty>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    // The consumer that first takes one of these items dies holding it.
    let mut doomed = std::collections::HashSet::new();
    while doomed.len() < KILLS {
        doomed.insert(format!("job-{}", rng.usize(..ITEMS)));
    }
    let doomed = Arc::new(StdMutex::new(doomed));
    let mut next_id = 0;
    let spawn = |id: usize, f: Arc<common::Faulty>| {
        let (completed, in_progress, kill_tx, doomed) = (
            completed.clone(),
            in_progress.clone(),
            kill_tx.clone(),
            doomed.clone(),
        );
        tokio::spawn(async move {
            let q = DistributedQueue::new(&f.client, "/q", locked());
            loop {
                let item = match q.take().await {
                    Ok(i) => i,
                    Err(e) => panic!("consumer {id}: take: {e}"),
                };
                let job = String::from_utf8(item.data().to_vec()).unwrap();
                if let Some(other) = in_progress.lock().unwrap().insert(job.clone(), id) {
                    panic!("{job} held by consumers {other} and {id} at once");
                }
                if doomed.lock().unwrap().remove(&job) {
                    // Die mid-item: tell the test, which kills this task and its session.
                    kill_tx.send(id).unwrap();
                    std::future::pending::<()>().await;
                }
                tokio::task::yield_now().await;
                in_progress.lock().unwrap().remove(&job);
                match item.complete().await {
                    Ok(()) => *completed.lock().unwrap().entry(job).or_default() += 1,
                    // A dropped connection does not end the session: completion must succeed.
                    Err(e) => panic!("consumer {id}: complete {job}: {e}"),
                }
            }
        })
    };
    for _ in 0..CONSUMERS {
        let f = Arc::new(ns.faulty_client(false).await);
        consumers.insert(next_id, (f.clone(), spawn(next_id, f)));
        next_id += 1;
    }
    let all_done = || completed.lock().unwrap().len() == ITEMS;
    bounded("every item completed", async {
        while !all_done() {
            tokio::select! {
                Some(victim) = kill_rx.recv() => {
                    let (f, task) = consumers.remove(&victim).unwrap();
                    // The victim is parked for good: its item is not "in progress" any more,
                    // though its claim keeps others off the item until the session is gone.
                    in_progress.lock().unwrap().retain(|_, c| *c != victim);
                    // Kill the session first, as a dying process does (aborting the task first
                    // would run the item's Drop, which gives the claim back at once).
                    f.expire().await;
                    task.abort();
                    let _ = task.await;
                    let f = Arc::new(ns.faulty_client(false).await);
                    consumers.insert(next_id, (f.clone(), spawn(next_id, f)));
                    next_id += 1;
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    // Poll for completion; now and then drop a live consumer's connection.
                    if rng.u8(..) < 16 {
                        let ids: Vec<_> = consumers.keys().copied().collect();
                        let id = ids[rng.usize(..ids.len())];
                        consumers[&id].0.drop_connection();
                    }
                }
            }
        }
    })
    .await;
    for (_, (f, task)) in consumers {
        task.abort();
        let _ = task.await;
        // An aborted take may have left a claim for a completed item; closing ends the session.
        f.client.close().await.ok();
    }
    let kills = next_id - CONSUMERS;
    eprintln!("{kills} consumers killed mid-item");
    assert_eq!(kills, KILLS, "the kill schedule ran");
    let completed = completed.lock().unwrap().clone();
    assert_eq!(completed.len(), ITEMS, "nothing lost");
    assert!(
        completed.values().all(|n| *n == 1),
        "each completed once: {completed:?}"
    );
    eventually("queue empty", || async {
        producer.is_empty().await.unwrap() && children(&admin, "/q-locks").await.is_empty()
    })
    .await;
}

/// A consumer whose session expired while it held an item (the item went to another consumer)
/// must not be able to complete it: that would delete the other consumer's claim and the item
/// under it, and report success to both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_claim_expired_cannot_complete_the_item() {
    let t = target!();
    let ns = t.namespace("queue-stale-claim").await;
    let admin = ns.client().await;
    DistributedQueue::new(&admin, "/q", locked())
        .put(b"job")
        .await
        .unwrap();
    let fa = ns.faulty_client(true).await;
    let qa = DistributedQueue::new(&fa.client, "/q", locked());
    let stale = bounded("a takes", qa.take()).await.unwrap();
    fa.isolate_until_expired().await;
    let qb = DistributedQueue::new(&ns.client().await, "/q", locked());
    let fresh = bounded("b takes the redelivered item", qb.take())
        .await
        .unwrap();
    assert_eq!(&fresh.data()[..], b"job");
    let mut states = fa.client.state_watch();
    bounded("a has a new session", states.wait_for(|s| s.is_connected()))
        .await
        .unwrap();
    let r = stale.complete().await;
    assert!(matches!(r, Err(Error::Lost(_))), "{r:?}");
    fresh.complete().await.unwrap();
    assert!(children(&admin, "/q").await.is_empty());
    assert!(children(&admin, "/q-locks").await.is_empty());
}
