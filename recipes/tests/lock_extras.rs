//! RwLock re-entrancy across sides (downgrade), Semaphore with several leases per acquire,
//! try_acquire and a maximum from a SharedCounter, with session expiry.

mod common;

use std::time::Duration;

use zkit_recipes::counter::SharedCounter;
use zkit_recipes::rwlock::RwLock;
use zkit_recipes::semaphore::{Semaphore, SemaphoreOptions};
use zkit_recipes::MutexOptions;

use common::bounded;

#[tokio::test]
async fn a_writer_takes_the_read_lock_and_downgrades() {
    let t = target!();
    let ns = t.namespace("rw-downgrade").await;
    let (zk1, zk2) = (ns.client().await, ns.client().await);
    let mine = RwLock::new(&zk1, "/rw", MutexOptions::default());
    let other = RwLock::new(&zk2, "/rw", MutexOptions::default());
    let w = mine.write().acquire().await.unwrap();
    let r = mine
        .read()
        .acquire_timeout(Duration::from_secs(30))
        .await
        .expect("the writer's own read side is not blocked by it");
    assert!(other.read().try_acquire().await.unwrap().is_none());
    w.release().await.unwrap();
    // Downgraded: other readers come in, writers still wait.
    let or = other.read().acquire().await.unwrap();
    assert!(other.write().try_acquire().await.unwrap().is_none());
    r.release().await.unwrap();
    or.release().await.unwrap();
    let ow = other.write().acquire().await.unwrap();
    ow.release().await.unwrap();
}

#[tokio::test]
async fn an_expired_downgraded_reader_is_told_and_lets_a_writer_in() {
    let t = target!();
    let ns = t.namespace("rw-downgrade-expiry").await;
    let f = ns.faulty_client(false).await;
    let zk = ns.client().await;
    let mine = RwLock::new(&f.client, "/rw", MutexOptions::default());
    let w = mine.write().acquire().await.unwrap();
    let r = mine.read().acquire().await.unwrap();
    drop(w);
    let writer = RwLock::new(&zk, "/rw", MutexOptions::default());
    let waiting = tokio::spawn(async move { writer.write().acquire().await });
    f.expire().await;
    bounded("reader told", r.lost()).await;
    let g = bounded("writer in", waiting).await.unwrap().unwrap();
    g.release().await.unwrap();
}

#[tokio::test]
async fn semaphore_many_leases_try_acquire_and_a_shared_maximum() {
    let t = target!();
    let ns = t.namespace("sem-extras").await;
    let (zk1, zk2) = (ns.client().await, ns.client().await);
    let max = SharedCounter::new(
        &zk1,
        "/max",
        zkit_recipes::counter::CounterOptions::default(),
    );
    max.set(3).await.unwrap();
    let a = Semaphore::new(&zk1, "/sem", SemaphoreOptions::max_from(max.clone()));
    let b = Semaphore::new(
        &zk2,
        "/sem",
        SemaphoreOptions::max_from(SharedCounter::new(
            &zk2,
            "/max",
            zkit_recipes::counter::CounterOptions::default(),
        )),
    );
    assert_eq!(a.max_leases().await.unwrap(), 3);
    let two = a.acquire_many(2, Duration::from_secs(30)).await.unwrap();
    assert_eq!(two.len(), 2);
    let one = b
        .try_acquire()
        .await
        .unwrap()
        .expect("a third lease is free");
    assert!(b.try_acquire().await.unwrap().is_none(), "full");
    assert_eq!(
        b.leases().await.unwrap().len(),
        3,
        "a refused try leaves no node"
    );
    // Not enough for two more: all or nothing.
    assert!(matches!(
        a.acquire_many(2, Duration::from_millis(300)).await,
        Err(zkit_recipes::Error::Timeout)
    ));
    // The timed-out attempt's node is removed in the background.
    common::eventually("no node left by the timed-out attempt", || async {
        a.leases().await.unwrap().len() == 3
    })
    .await;
    // Raising the maximum lets a waiter in.
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.acquire().await }
    });
    max.set(4).await.unwrap();
    let four = bounded("waiter in after the raise", waiting)
        .await
        .unwrap()
        .unwrap();
    for l in two {
        l.release().await.unwrap();
    }
    one.release().await.unwrap();
    four.release().await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_holder_frees_its_leases() {
    let t = target!();
    let ns = t.namespace("sem-many-expiry").await;
    let f = ns.faulty_client(false).await;
    let zk = ns.client().await;
    let a = Semaphore::new(&f.client, "/sem", SemaphoreOptions::new(2));
    let b = Semaphore::new(&zk, "/sem", SemaphoreOptions::new(2));
    let held = a.acquire_many(2, Duration::from_secs(30)).await.unwrap();
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.acquire_many(2, Duration::from_secs(60)).await }
    });
    f.expire().await;
    for l in &held {
        bounded("lease lost", l.lost()).await;
    }
    let got = bounded("both leases free", waiting).await.unwrap().unwrap();
    assert_eq!(got.len(), 2);
    drop(held);
    for l in got {
        l.release().await.unwrap();
    }
}
