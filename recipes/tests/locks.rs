//! RwLock, Semaphore and MultiLock: shared readers, writers not starved, at most N leases,
//! all-or-nothing acquisition.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, children, eventually};
use zkit_recipes::lock::Mutex;
use zkit_recipes::multilock::MultiLock;
use zkit_recipes::rwlock::RwLock;
use zkit_recipes::semaphore::{Semaphore, SemaphoreOptions};
use zkit_recipes::state::LossReason;
use zkit_recipes::{Error, MutexOptions};

#[tokio::test]
async fn readers_share_and_writers_exclude() {
    let t = target!();
    let ns = t.namespace("rwlock-share").await;
    let (a, b, w) = (ns.client().await, ns.client().await, ns.client().await);
    let ra = RwLock::new(&a, "/rw", MutexOptions::default());
    let rb = RwLock::new(&b, "/rw", MutexOptions::default());
    let rw = RwLock::new(&w, "/rw", MutexOptions::default());
    let g1 = ra.read().acquire().await.unwrap();
    let g2 = bounded("second reader", rb.read().acquire()).await.unwrap();
    assert!(
        rw.write().try_acquire().await.unwrap().is_none(),
        "readers hold it"
    );
    // Curator's names; the failed try's write node is removed in the background.
    eventually("only the readers' nodes", || async {
        let kids = children(&a, "/rw").await;
        kids.len() == 2 && kids.iter().all(|k| k.contains("__READ__"))
    })
    .await;
    g1.release().await.unwrap();
    g2.release().await.unwrap();
    let wg = rw.write().acquire().await.unwrap();
    assert!(wg.node().contains("__WRIT__"));
    assert!(
        ra.read().try_acquire().await.unwrap().is_none(),
        "writer holds it"
    );
    assert!(ra.write().try_acquire().await.unwrap().is_none());
    wg.release().await.unwrap();
    assert!(ra.read().try_acquire().await.unwrap().is_some());
}

/// A reader holds the lock; a writer queues; a reader arriving later must wait behind the writer
/// (it is not let in with the first reader), so a stream of readers cannot starve writers.
#[tokio::test]
async fn a_queued_writer_is_not_starved_by_later_readers() {
    let t = target!();
    let ns = t.namespace("rwlock-starve").await;
    let (a, b, w) = (ns.client().await, ns.client().await, ns.client().await);
    let first = RwLock::new(&a, "/rw", MutexOptions::default());
    let late = RwLock::new(&b, "/rw", MutexOptions::default());
    let writer = RwLock::new(&w, "/rw", MutexOptions::default());
    let r1 = first.read().acquire().await.unwrap();
    let wtask = tokio::spawn({
        let writer = writer.clone();
        async move { writer.write().acquire().await }
    });
    eventually("writer queued", || async {
        children(&a, "/rw").await.len() == 2
    })
    .await;
    assert!(
        late.read().try_acquire().await.unwrap().is_none(),
        "reader behind a writer waits"
    );
    let rtask = tokio::spawn({
        let late = late.clone();
        async move { late.read().acquire().await }
    });
    eventually("late reader queued", || async {
        children(&a, "/rw").await.len() == 3
    })
    .await;
    r1.release().await.unwrap();
    let wg = bounded("writer gets it", wtask).await.unwrap().unwrap();
    assert!(
        !rtask.is_finished(),
        "the late reader still waits for the writer"
    );
    wg.release().await.unwrap();
    let rg = bounded("late reader gets it", rtask)
        .await
        .unwrap()
        .unwrap();
    rg.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_never_hands_out_more_than_n_leases() {
    let t = target!();
    let ns = t.namespace("semaphore-n").await;
    const N: usize = 3;
    let holders = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let zk = ns.client().await;
        let (holders, peak) = (holders.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let s = Semaphore::new(&zk, "/sem", SemaphoreOptions::new(N));
            for _ in 0..4 {
                let lease = s.acquire().await.unwrap();
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(now <= N, "{now} leases at once");
                peak.fetch_max(now, Ordering::SeqCst);
                // Hold it across a server round trip so others overlap.
                zk.exists("/sem").await.unwrap();
                holders.fetch_sub(1, Ordering::SeqCst);
                lease.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        bounded("semaphore user", t).await.unwrap();
    }
    eprintln!("peak concurrent leases: {}", peak.load(Ordering::SeqCst));
    let zk = ns.client().await;
    assert!(children(&zk, "/sem/leases").await.is_empty());
    // N holders at once; the next one waits until one of them releases.
    let mut leases = Vec::new();
    for _ in 0..N {
        let c = ns.client().await;
        let s = Semaphore::new(&c, "/sem", SemaphoreOptions::new(N));
        leases.push(bounded("lease", s.acquire()).await.unwrap());
    }
    let next = Semaphore::new(&zk, "/sem", SemaphoreOptions::new(N));
    let waiting = tokio::spawn({
        let next = next.clone();
        async move { next.acquire().await }
    });
    eventually("waiter's lease node queued", || async {
        next.leases().await.unwrap().len() == N + 1
    })
    .await;
    assert!(!waiting.is_finished());
    leases.pop().unwrap().release().await.unwrap();
    let lease = bounded("lease after a release", waiting)
        .await
        .unwrap()
        .unwrap();
    lease.release().await.unwrap();
}

#[tokio::test]
async fn semaphore_timeout_leaves_nothing_and_expiry_is_reported() {
    let t = target!();
    let ns = t.namespace("semaphore-faults").await;
    let f = ns.faulty_client(false).await;
    let s = Semaphore::new(&f.client, "/sem", SemaphoreOptions::new(1));
    let lease = s.acquire().await.unwrap();
    let other = Semaphore::new(&ns.client().await, "/sem", SemaphoreOptions::new(1));
    let r = other.acquire_timeout(Duration::from_millis(300)).await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    eventually("timed-out lease removed", || async {
        other.leases().await.unwrap().len() == 1
    })
    .await;
    f.expire().await;
    let reason = bounded("lease lost", lease.lost()).await;
    assert!(
        reason.is_session_gone()
            || reason == LossReason::Suspended
            || reason == LossReason::NodeDeleted,
        "{reason:?}"
    );
    let l2 = bounded("lease after expiry", other.acquire())
        .await
        .unwrap();
    l2.release().await.unwrap();
}

#[tokio::test]
async fn multilock_is_all_or_nothing() {
    let t = target!();
    let ns = t.namespace("multilock").await;
    let (a, b) = (ns.client().await, ns.client().await);
    let holder = Mutex::new(&b, "/l2", MutexOptions::default());
    let g = holder.acquire().await.unwrap();
    let both = MultiLock::new(&a, &["/l2", "/l1"], MutexOptions::default());
    let r = both.acquire_timeout(Duration::from_millis(300)).await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    // /l1 was taken first (path order) and given back.
    eventually("l1 free", || async {
        Mutex::new(&b, "/l1", MutexOptions::default())
            .try_acquire()
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let waiting = tokio::spawn({
        let both = both.clone();
        async move { both.acquire().await }
    });
    g.release().await.unwrap();
    let mg = bounded("both", waiting).await.unwrap().unwrap();
    assert!(mg.is_held());
    assert_eq!(mg.guards().len(), 2);
    assert!(holder.try_acquire().await.unwrap().is_none());
    mg.release().await.unwrap();
    assert!(holder.try_acquire().await.unwrap().is_some());
}

/// Tasks sharing one `Semaphore` value still line up behind its internal lock: if the second
/// re-entered the first's hold of it, both would add a lease node while the semaphore is full and
/// then wait for each other's node to go, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_sharing_a_semaphore_value_do_not_deadlock() {
    let t = target!();
    let ns = t.namespace("semaphore-shared-value").await;
    let zk = ns.client().await;
    let s = Semaphore::new(&zk, "/sem", SemaphoreOptions::new(1));
    let first = s.acquire().await.unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let lease = s.acquire().await.unwrap();
                lease.release().await.unwrap();
            })
        })
        .collect();
    // Both queued: one waits on the leases, the other behind it on the internal lock (with the
    // bug: both lease nodes are in).
    eventually("both waiters queued", || async {
        s.leases().await.unwrap().len() == 3 || children(&zk, "/sem/locks").await.len() == 2
    })
    .await;
    first.release().await.unwrap();
    for w in waiters {
        bounded("waiter got its lease", w).await.unwrap();
    }
}
