//! Curator's locks and zkit's on the same paths: `InterProcessMutex` ⇄ [`Mutex`] (both
//! directions, a contended queue, a holder's session expired mid-hold),
//! `InterProcessReadWriteLock` ⇄ [`RwLock`] and `InterProcessSemaphoreV2` ⇄ [`Semaphore`]
//! (leases counted together). Runs on the testkit, or on real ZooKeeper with `ZK_TEST_CONNECT`;
//! needs `CURATOR_CLASSPATH` (see `curator_driver`).

mod common;
mod curator_driver;

use std::time::Duration;

use zkit_recipes::lock::{Mutex, MutexOptions};
use zkit_recipes::rwlock::RwLock;
use zkit_recipes::semaphore::{Semaphore, SemaphoreOptions};

use common::bounded;

#[tokio::test]
async fn curator_mutex_and_zkit_mutex_exclude_each_other_both_ways() {
    let t = target!();
    let ns = t.namespace("curator-mutex").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;
    let m = Mutex::new(&zk, "/shared", MutexOptions::default());
    assert_eq!(java.ask("mutex m /shared").await, "OK");

    // Curator first: zkit waits until Curator releases.
    assert_eq!(java.ask("acquire m 30000").await, "HELD");
    assert!(m.try_acquire().await.unwrap().is_none(), "Curator holds it");
    let waiter = tokio::spawn({
        let m = m.clone();
        async move { m.acquire().await }
    });
    assert_eq!(java.ask("release m").await, "RELEASED");
    let guard = bounded("zkit acquires after Curator", waiter)
        .await
        .unwrap()
        .unwrap();

    // zkit holds: Curator's bounded attempt times out, then succeeds once zkit releases.
    assert_eq!(java.ask("acquire m 300").await, "TIMEOUT");
    let pending = java.send("acquire m 60000").await;
    guard.release().await.unwrap();
    assert_eq!(java.answer(pending).await, "HELD");
    assert!(m.try_acquire().await.unwrap().is_none());
    assert_eq!(java.ask("release m").await, "RELEASED");
    java.quit().await;
    zk.close().await.unwrap();
}

#[tokio::test]
async fn mixed_contenders_take_the_lock_in_queue_order() {
    let t = target!();
    let ns = t.namespace("curator-mutex-queue").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;
    let first = Mutex::new(&zk, "/q", MutexOptions::default());
    let last = Mutex::new(&zk, "/q", MutexOptions::default());
    assert_eq!(java.ask("mutex m /q").await, "OK");

    let held = first.acquire().await.unwrap();
    let java_waits = java.send("acquire m 60000").await;
    // Curator is queued (its node exists) before the second zkit contender joins.
    common::eventually("Curator queued", || async {
        first.contenders().await.unwrap().len() == 2
    })
    .await;
    let zkit_waits = tokio::spawn({
        let last = last.clone();
        async move { last.acquire().await }
    });
    common::eventually("zkit queued", || async {
        first.contenders().await.unwrap().len() == 3
    })
    .await;
    held.release().await.unwrap();
    assert_eq!(java.answer(java_waits).await, "HELD");
    assert!(
        !last.is_held(),
        "the second zkit contender is behind Curator"
    );
    assert_eq!(java.ask("release m").await, "RELEASED");
    let g = bounded("last contender", zkit_waits)
        .await
        .unwrap()
        .unwrap();
    g.release().await.unwrap();
    java.quit().await;
    zk.close().await.unwrap();
}

#[tokio::test]
async fn an_expired_curator_holder_lets_zkit_in() {
    let t = target!();
    let ns = t.namespace("curator-mutex-expire").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;
    let m = Mutex::new(&zk, "/x", MutexOptions::default());
    assert_eq!(java.ask("mutex m /x").await, "OK");
    assert_eq!(java.ask("acquire m 30000").await, "HELD");
    let waiter = tokio::spawn({
        let m = m.clone();
        async move { m.acquire().await }
    });
    assert_eq!(java.ask("expire").await, "EXPIRED");
    let g = bounded("zkit takes over", waiter).await.unwrap().unwrap();
    assert!(g.is_held());
    g.release().await.unwrap();
    java.quit().await;
    zk.close().await.unwrap();
}

#[tokio::test]
async fn an_expired_zkit_holder_is_told_and_lets_curator_in() {
    let t = target!();
    let ns = t.namespace("zkit-mutex-expire").await;
    let mut java = curator!(ns);
    let f = ns.faulty_client(false).await;
    let m = Mutex::new(&f.client, "/x", MutexOptions::default());
    assert_eq!(java.ask("mutex m /x").await, "OK");
    let g = m.acquire().await.unwrap();
    let java_waits = java.send("acquire m 60000").await;
    f.expire().await;
    bounded("zkit learns of the loss", g.lost()).await;
    assert_eq!(java.answer(java_waits).await, "HELD");
    drop(g);
    assert_eq!(java.ask("release m").await, "RELEASED");
    java.quit().await;
}

#[tokio::test]
async fn curator_rwlock_and_zkit_rwlock_share_readers_and_exclude_writers() {
    let t = target!();
    let ns = t.namespace("curator-rwlock").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;
    let rw = RwLock::new(&zk, "/rw", MutexOptions::default());
    assert_eq!(java.ask("rwlock l /rw").await, "OK");

    // A Curator writer keeps zkit readers and writers out.
    assert_eq!(java.ask("acquire l.write 30000").await, "HELD");
    assert!(rw.read().try_acquire().await.unwrap().is_none());
    assert!(rw.write().try_acquire().await.unwrap().is_none());
    assert_eq!(java.ask("release l.write").await, "RELEASED");

    // Readers on both sides share it; a Curator writer waits for the zkit reader.
    let r = rw.read().acquire().await.unwrap();
    assert_eq!(java.ask("acquire l.read 30000").await, "HELD");
    assert_eq!(java.ask("release l.read").await, "RELEASED");
    assert_eq!(java.ask("acquire l.write 300").await, "TIMEOUT");
    let java_writes = java.send("acquire l.write 60000").await;
    r.release().await.unwrap();
    assert_eq!(java.answer(java_writes).await, "HELD");
    assert!(rw.read().try_acquire().await.unwrap().is_none());
    assert_eq!(java.ask("release l.write").await, "RELEASED");
    let w = rw
        .write()
        .acquire_timeout(Duration::from_secs(30))
        .await
        .unwrap();
    w.release().await.unwrap();
    java.quit().await;
    zk.close().await.unwrap();
}

#[tokio::test]
async fn curator_and_zkit_semaphores_count_leases_together() {
    let t = target!();
    let ns = t.namespace("curator-semaphore").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;
    let sem = Semaphore::new(&zk, "/sem", SemaphoreOptions::new(3));
    assert_eq!(java.ask("semaphore s /sem 3").await, "OK");

    assert_eq!(java.ask("acquire s 30000").await, "HELD");
    assert_eq!(java.ask("acquire s 30000").await, "HELD");
    let mine = sem.acquire().await.unwrap();
    assert_eq!(sem.leases().await.unwrap().len(), 3);
    // Full: both sides wait.
    assert!(matches!(
        sem.acquire_timeout(Duration::from_millis(300)).await,
        Err(zkit_recipes::Error::Timeout)
    ));
    assert_eq!(java.ask("acquire s 300").await, "TIMEOUT");
    let java_waits = java.send("acquire s 60000").await;
    mine.release().await.unwrap();
    assert_eq!(java.answer(java_waits).await, "HELD");
    let zkit_waits = tokio::spawn({
        let sem = sem.clone();
        async move { sem.acquire().await }
    });
    assert_eq!(java.ask("release s").await, "RELEASED");
    let lease = bounded("zkit lease", zkit_waits).await.unwrap().unwrap();
    assert_eq!(sem.leases().await.unwrap().len(), 3);
    lease.release().await.unwrap();
    for _ in 0..2 {
        assert_eq!(java.ask("release s").await, "RELEASED");
    }
    java.quit().await;
    zk.close().await.unwrap();
}
