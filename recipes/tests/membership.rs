//! TreeCache, SharedCounter, GroupMember and ServiceDiscovery: initial load, events, changes made
//! while disconnected, expiry; compare-and-set under contention; members and instances watched.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{bounded, put};
use zkit_recipes::counter::SharedCounter;
use zkit_recipes::discovery::{ServiceDiscovery, ServiceInstance};
use zkit_recipes::group::{GroupMember, GroupOptions};
use zkit_recipes::treecache::{TreeCache, TreeCacheOptions, TreeEvent};

/// Receives events until `stop` matches one; returns them all.
async fn until_event(
    rx: &mut zkit::Events<TreeEvent>,
    stop: impl Fn(&TreeEvent) -> bool,
) -> Vec<TreeEvent> {
    bounded("tree event", async {
        let mut seen = Vec::new();
        loop {
            let ev = rx.recv().await.expect("event stream");
            let done = stop(&ev);
            seen.push(ev);
            if done {
                return seen;
            }
        }
    })
    .await
}

fn data_of(ev: &TreeEvent) -> Option<(&str, &[u8])> {
    match ev {
        TreeEvent::Added { path, data } | TreeEvent::Updated { path, data } => {
            Some((path.as_str(), &data.data[..]))
        }
        _ => None,
    }
}

#[tokio::test]
async fn tree_cache_loads_then_follows_adds_updates_and_removes() {
    let t = target!();
    let ns = t.namespace("tree-basic").await;
    let zk = ns.client().await;
    put(&zk, "/t", b"root").await;
    put(&zk, "/t/a", b"1").await;
    put(&zk, "/t/a/deep", b"2").await;
    let cache = TreeCache::start(&zk, "/t", TreeCacheOptions::default())
        .await
        .unwrap();
    let mut events = cache.events();
    let load = until_event(&mut events, |e| *e == TreeEvent::Initialized).await;
    let added: Vec<_> = load.iter().filter_map(data_of).collect();
    assert_eq!(
        added,
        vec![("/t", &b"root"[..]), ("/t/a", b"1"), ("/t/a/deep", b"2")]
    );
    cache.initialized().await.unwrap();
    put(&zk, "/t/b", b"3").await;
    until_event(&mut events, |e| data_of(e) == Some(("/t/b", b"3"))).await;
    zk.set_data("/t/a/deep", b"4", None).await.unwrap();
    until_event(
        &mut events,
        |e| matches!(e, TreeEvent::Updated { path, .. } if path == "/t/a/deep"),
    )
    .await;
    zk.delete("/t/a/deep", None).await.unwrap();
    until_event(
        &mut events,
        |e| matches!(e, TreeEvent::Removed { path } if path == "/t/a/deep"),
    )
    .await;
    assert_eq!(
        cache.children("/t").keys().collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(&cache.get("/t/b").unwrap().data[..], b"3");
    assert!(cache.get("/t/a/deep").is_none());
    // Depth 1: the root and its children only.
    let shallow = TreeCache::start(&zk, "/t", TreeCacheOptions::default().max_depth(1))
        .await
        .unwrap();
    shallow.initialized().await.unwrap();
    put(&zk, "/t/a/x", b"5").await;
    put(&zk, "/t/c", b"6").await;
    let mut ev = shallow.events();
    until_event(&mut ev, |e| data_of(e) == Some(("/t/c", b"6"))).await;
    assert!(shallow.get("/t/a/x").is_none());
    assert_eq!(shallow.snapshot().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_cache_sees_changes_made_while_disconnected_and_after_expiry() {
    let t = target!();
    let ns = t.namespace("tree-faults").await;
    let writer = ns.client().await;
    put(&writer, "/t", b"").await;
    let f = ns.faulty_client(true).await;
    let cache = TreeCache::start(&f.client, "/t", TreeCacheOptions::default())
        .await
        .unwrap();
    cache.initialized().await.unwrap();
    let mut events = cache.events();
    for round in 0..3 {
        f.drop_connection();
        put(&writer, &format!("/t/r{round}"), b"x").await;
        writer.delete(&format!("/t/r{round}"), None).await.ok();
        put(&writer, &format!("/t/k{round}"), b"y").await;
        let want = format!("/t/k{round}");
        until_event(&mut events, |e| data_of(e) == Some((&want, b"y"))).await;
    }
    let isolating = f.isolate_until_expired();
    let write = async {
        put(&writer, "/t/during-expiry", b"z").await;
        writer.delete("/t/k0", None).await.unwrap();
    };
    tokio::join!(isolating, write);
    until_event(
        &mut events,
        |e| matches!(e, TreeEvent::Removed { path } if path == "/t/k0"),
    )
    .await;
    bounded("caught up", async {
        while cache.get("/t/during-expiry").is_none() {
            let _ = events.recv().await;
        }
    })
    .await;
    assert!(cache.get("/t/r0").is_none());
    assert!(cache.is_live());
    // A client that does not re-create sessions: the cache ends.
    let g = ns.faulty_client(false).await;
    let dead = TreeCache::start(&g.client, "/t", TreeCacheOptions::default())
        .await
        .unwrap();
    dead.initialized().await.unwrap();
    let mut ev = dead.events();
    g.expire().await;
    until_event(&mut ev, |e| *e == TreeEvent::Ended).await;
    assert!(!dead.is_live());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_counter_adds_are_never_lost_under_contention() {
    let t = target!();
    let ns = t.namespace("counter").await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let zk = ns.client().await;
        tasks.push(tokio::spawn(async move {
            let c = SharedCounter::new(
                &zk,
                "/counters/c",
                zkit_recipes::counter::CounterOptions::default(),
            );
            for _ in 0..20 {
                c.add(1).await.unwrap();
            }
        }));
    }
    for t in tasks {
        bounded("adder", t).await.unwrap();
    }
    let zk = ns.client().await;
    let c = SharedCounter::new(
        &zk,
        "/counters/c",
        zkit_recipes::counter::CounterOptions::default(),
    );
    let v = c.get().await.unwrap();
    assert_eq!(v.value, 100);
    assert!(c.try_set(7, v.version).await.unwrap());
    assert!(!c.try_set(8, v.version).await.unwrap(), "stale version");
    assert_eq!(c.get().await.unwrap().value, 7);
    // A Curator SharedCount (4 bytes) keeps its width.
    put(&zk, "/counters/java", &5i32.to_be_bytes()).await;
    let j = SharedCounter::new(
        &zk,
        "/counters/java",
        zkit_recipes::counter::CounterOptions::default(),
    );
    assert_eq!(j.add(2).await.unwrap(), 7);
    assert_eq!(
        &zk.get_data("/counters/java").await.unwrap().0[..],
        &7i32.to_be_bytes()
    );
}

async fn wait_members(rx: &mut zkit::Watched<BTreeMap<String, bytes::Bytes>>, ids: &[&str]) {
    bounded(
        "members",
        rx.wait_for(|m| m.keys().map(String::as_str).eq(ids.iter().copied())),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_join_leave_and_come_back_after_expiry() {
    let t = target!();
    let ns = t.namespace("group").await;
    let zk = ns.client().await;
    let a = GroupMember::start(&zk, "/g", GroupOptions::new("a").data("A"))
        .await
        .unwrap();
    let watch = a.watch().await.unwrap();
    let mut rx = watch.watched();
    wait_members(&mut rx, &["a"]).await;
    let f = ns.faulty_client(true).await;
    let b = GroupMember::start(&f.client, "/g", GroupOptions::new("b").data("B"))
        .await
        .unwrap();
    wait_members(&mut rx, &["a", "b"]).await;
    assert!(
        GroupMember::start(&zk, "/g", GroupOptions::new("b").data("dup"))
            .await
            .is_err(),
        "id taken"
    );
    // Deleted by someone else: put back. Expired: re-created on the new session.
    zk.delete(b.node(), None).await.unwrap();
    bounded("re-created", async {
        while zk.exists("/g/b").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    f.expire().await;
    bounded("back after expiry", async {
        loop {
            if let Some(st) = zk.exists("/g/b").await.unwrap() {
                if st.ephemeral_owner == f.client.session_id() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    wait_members(&mut rx, &["a", "b"]).await;
    b.set_data(b"B2").await.unwrap();
    bounded(
        "data",
        rx.wait_for(|m| m.get("b").is_some_and(|d| &d[..] == b"B2")),
    )
    .await
    .unwrap();
    b.close().await.unwrap();
    wait_members(&mut rx, &["a"]).await;
    assert_eq!(a.members().await.unwrap().len(), 1);
}

#[tokio::test]
async fn service_discovery_registers_queries_and_watches_instances() {
    let t = target!();
    let ns = t.namespace("discovery").await;
    let (zk1, zk2) = (ns.client().await, ns.client().await);
    let d1 = ServiceDiscovery::new(
        &zk1,
        "/services",
        zkit_recipes::discovery::DiscoveryOptions::default(),
    );
    let d2 = ServiceDiscovery::new(
        &zk2,
        "/services",
        zkit_recipes::discovery::DiscoveryOptions::default(),
    );
    let mut r1 = d1
        .register(&ServiceInstance::new("search", "s1", "10.0.0.1:80"))
        .await
        .unwrap();
    let mut watch = d1.watch("search").await.unwrap();
    assert_eq!(watch.instances().len(), 1);
    let r2 = d2
        .register(&ServiceInstance::new("search", "s2", "10.0.0.2:80"))
        .await
        .unwrap();
    bounded("second instance", async {
        while watch.instances().len() < 2 {
            watch.changed().await.unwrap();
        }
    })
    .await;
    let q = d1.query("search").await.unwrap();
    assert_eq!(
        q.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["s1", "s2"]
    );
    assert_eq!(&q[1].payload[..], b"10.0.0.2:80");
    assert_eq!(d1.names().await.unwrap(), ["search"]);
    r1.update("10.0.0.1:81").await.unwrap();
    bounded("payload update", async {
        while !watch
            .instances()
            .iter()
            .any(|i| &i.payload[..] == b"10.0.0.1:81")
        {
            watch.changed().await.unwrap();
        }
    })
    .await;
    // An instance whose client goes away disappears.
    zk2.close().await.unwrap();
    drop(r2);
    bounded("instance gone", async {
        while watch.instances().len() != 1 {
            watch.changed().await.unwrap();
        }
    })
    .await;
    r1.unregister().await.unwrap();
    assert!(d1.query("search").await.unwrap().is_empty());
}

/// Adds while connections drop at random: an add reported `Ok` is always counted, never lost to
/// another writer that happened to write the same value; an add cut off mid-write is either
/// retried (nothing happened) or reported `Indeterminate`, never silently counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_counter_never_reports_a_lost_add_as_done_when_connections_drop() {
    let t = target!();
    let ns = t.namespace("counter-faults").await;
    let seed = std::env::var("ZK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (ZK_TEST_SEED={seed} replays the fault schedule)");
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(std::sync::Arc::new(ns.faulty_client(false).await));
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Connections drop while adds are in flight, so some are cut off mid-write.
    let chaos = tokio::spawn({
        let (clients, done) = (clients.clone(), done.clone());
        async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_micros(rng.u64(200..3000))).await;
                clients[rng.usize(..clients.len())].drop_connection();
            }
        }
    });
    let mut tasks = Vec::new();
    for f in &clients {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let c = SharedCounter::new(
                &f.client,
                "/counters/faulty",
                zkit_recipes::counter::CounterOptions::default(),
            );
            let (mut ok, mut unknown) = (0u64, 0u64);
            for _ in 0..40 {
                match c.add(1).await {
                    Ok(_) => ok += 1,
                    Err(zkit_recipes::Error::Indeterminate(_)) => unknown += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            (ok, unknown)
        }));
    }
    let (mut ok, mut unknown) = (0, 0);
    for t in tasks {
        let (o, u) = bounded("adder", t).await.unwrap();
        ok += o;
        unknown += u;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    chaos.await.unwrap();
    eprintln!("{ok} adds done, {unknown} unknown");
    let zk = ns.client().await;
    let v = SharedCounter::new(
        &zk,
        "/counters/faulty",
        zkit_recipes::counter::CounterOptions::default(),
    )
    .get()
    .await
    .unwrap();
    assert!(
        (ok..=ok + unknown).contains(&(v.value as u64)),
        "value {} with {ok} adds done and {unknown} unknown (seed {seed})",
        v.value
    );
}
