//! Counter listeners ([`SharedCounter::watch`]) and [`DistributedAtomicLong`], with connection
//! drops and session expiry.

mod common;

use std::sync::Arc;

use futures::StreamExt;
use zkit_recipes::atomic_long::{AtomicLongOptions, DistributedAtomicLong};
use zkit_recipes::counter::SharedCounter;

use common::{bounded, eventually};

#[tokio::test]
async fn a_counter_watch_shows_the_current_value_and_every_change() {
    let t = target!();
    let ns = t.namespace("counter-watch").await;
    let (zk, writer) = (ns.client().await, ns.client().await);
    let w = SharedCounter::new(&zk, "/c", zkit_recipes::counter::CounterOptions::default())
        .watch()
        .await
        .unwrap();
    assert_eq!(w.current().value, 0);
    assert_eq!(w.current().version, -1, "no node yet");
    let mut changes = Box::pin(w.changes());
    let c = SharedCounter::new(
        &writer,
        "/c",
        zkit_recipes::counter::CounterOptions::default(),
    );
    c.set(5).await.unwrap();
    assert_eq!(
        bounded("first change", changes.next()).await.unwrap().value,
        5
    );
    c.add(2).await.unwrap();
    let v = bounded("second change", async {
        loop {
            let v = changes.next().await.unwrap();
            if v.value == 7 {
                return v;
            }
        }
    })
    .await;
    assert_eq!(w.current(), v);
    assert!(w.is_fresh());
}

#[tokio::test]
async fn a_counter_watch_catches_up_after_a_connection_drop_and_an_expiry() {
    let t = target!();
    let ns = t.namespace("counter-watch-faults").await;
    let f = ns.faulty_client(true).await;
    let writer = ns.client().await;
    let c = SharedCounter::new(
        &writer,
        "/c",
        zkit_recipes::counter::CounterOptions::default(),
    );
    c.set(1).await.unwrap();
    let mut w = SharedCounter::new(
        &f.client,
        "/c",
        zkit_recipes::counter::CounterOptions::default(),
    )
    .watch()
    .await
    .unwrap();
    assert_eq!(w.current().value, 1);

    // A write while the watcher's connection is down is seen once it is back.
    f.drop_connection();
    c.set(2).await.unwrap();
    bounded("value after reconnect", async {
        while w.current().value != 2 {
            w.changed().await.unwrap();
        }
    })
    .await;

    // Through an expiry (the client re-creates its session) the watch carries on.
    f.isolate_until_expired().await;
    c.set(3).await.unwrap();
    bounded("value after expiry", async {
        while w.current().value != 3 {
            w.changed().await.unwrap();
        }
    })
    .await;
    eventually("fresh again", || async { w.is_fresh() }).await;
}

#[tokio::test]
async fn atomic_long_increments_are_never_lost_between_contending_clients() {
    let t = target!();
    let ns = t.namespace("atomic-long").await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let zk = ns.client().await;
        tasks.push(tokio::spawn(async move {
            let a = DistributedAtomicLong::new(
                &zk,
                "/n",
                AtomicLongOptions::default()
                    .optimistic_tries(2)
                    .promote_to_lock("/n-lock"),
            );
            let mut ok = 0i64;
            for _ in 0..15 {
                let v = a.increment().await.unwrap();
                if v.succeeded {
                    assert_eq!(v.post, v.pre + 1);
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += bounded("incrementer", t).await.unwrap();
    }
    let zk = ns.client().await;
    let a = DistributedAtomicLong::new(&zk, "/n", AtomicLongOptions::default());
    assert_eq!(
        a.get().await.unwrap().post,
        ok,
        "every successful increment counted once"
    );
    assert!(ok > 0);
    let cas = a.compare_and_set(ok + 100, 0).await.unwrap();
    assert!(
        !cas.succeeded,
        "a compare against a wrong value changes nothing"
    );
    assert_eq!(cas.pre, ok);
    assert!(a.compare_and_set(ok, -1).await.unwrap().succeeded);
    assert_eq!(a.get().await.unwrap().post, -1);
}

#[tokio::test]
async fn atomic_long_reports_unknown_outcomes_when_connections_drop() {
    let t = target!();
    let ns = t.namespace("atomic-long-faults").await;
    let f = Arc::new(ns.faulty_client(false).await);
    let a = DistributedAtomicLong::new(&f.client, "/n", AtomicLongOptions::default());
    let (mut ok, mut unknown) = (0i64, 0i64);
    for i in 0..30 {
        if i % 5 == 2 {
            f.drop_connection();
        }
        match a.increment().await {
            Ok(v) if v.succeeded => ok += 1,
            Ok(_) => {}
            Err(zkit_recipes::Error::Indeterminate(_)) => unknown += 1,
            Err(e) if e.is_session_gone() => panic!("{e}"),
            Err(_) => {}
        }
    }
    let zk = ns.client().await;
    let v = DistributedAtomicLong::new(&zk, "/n", AtomicLongOptions::default())
        .get()
        .await
        .unwrap()
        .post;
    assert!(
        (ok..=ok + unknown).contains(&v),
        "value {v} with {ok} done and {unknown} unknown"
    );
}
