//! curator-x-discovery and zkit's [`service`](zkit_recipes::service) discovery on the same base
//! path (a Java consumer reads a Rust registration and the reverse), and Curator's
//! `CuratorCache` ⇄ zkit's [`TreeCache`] each observing the other side's writes. Needs
//! `CURATOR_CLASSPATH` (see `curator_driver`).

mod common;
mod curator_driver;

use serde_json::json;
use zkit_recipes::service::{ProviderOptions, ProviderStrategy, ServiceDiscovery, ServiceInstance};
use zkit_recipes::treecache::{TreeCache, TreeCacheOptions, TreeEvent};

use common::bounded;

#[tokio::test]
async fn java_finds_rust_instances_and_rust_finds_java_instances() {
    let t = target!();
    let ns = t.namespace("curator-discovery").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;
    let discovery = ServiceDiscovery::new(
        &zk,
        "/services",
        zkit_recipes::discovery::DiscoveryOptions::default(),
    );
    assert_eq!(java.ask("discovery d /services").await, "OK");

    // Rust registers; Java's query reads it, payload included.
    let r1 = discovery
        .register(
            &ServiceInstance::new("search", "r1")
                .address("10.0.0.1")
                .port(8080)
                .payload(json!({"zone": "eu"})),
        )
        .await
        .unwrap();
    assert_eq!(
        java.ask("query d search").await,
        "r1@10.0.0.1:8080{zone=eu}"
    );

    // Java registers; Rust's cache and query see it.
    let cache = discovery.cache("search").await.unwrap();
    let mut changes = Box::pin(cache.changes());
    assert_eq!(
        java.ask("register d search j1 10.0.0.2 9090 zone=us").await,
        "OK"
    );
    let seen = bounded("the cache sees the Java instance", async {
        loop {
            let now = futures::StreamExt::next(&mut changes).await.unwrap();
            if now.len() == 2 {
                return now;
            }
        }
    })
    .await;
    let j1 = seen.iter().find(|i| i.id == "j1").unwrap();
    assert_eq!(j1.address.as_deref(), Some("10.0.0.2"));
    assert_eq!(j1.port, Some(9090));
    assert_eq!(j1.payload.as_ref().unwrap()["zone"], "us");
    let q = discovery.query("search").await.unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(
        java.ask("query d search").await,
        "j1@10.0.0.2:9090{zone=us},r1@10.0.0.1:8080{zone=eu}"
    );

    // A round-robin provider hands out both, in turn.
    let provider = discovery
        .provider(
            "search",
            ProviderOptions::default().strategy(ProviderStrategy::RoundRobin),
        )
        .await
        .unwrap();
    let mut picked: Vec<String> = (0..2).map(|_| provider.instance().unwrap().id).collect();
    picked.sort();
    assert_eq!(picked, ["j1", "r1"]);

    // Both unregister; each side sees the other's go.
    assert_eq!(java.ask("unregister d search j1").await, "OK");
    bounded("the Java instance is gone", async {
        while futures::StreamExt::next(&mut changes).await.unwrap().len() != 1 {}
    })
    .await;
    r1.unregister().await.unwrap();
    assert_eq!(java.ask("query d search").await, "");
    assert_eq!(java.ask("close d").await, "CLOSED");
    java.quit().await;
    zk.close().await.unwrap();
}

#[tokio::test]
async fn curator_cache_and_tree_cache_observe_each_others_writes() {
    let t = target!();
    let ns = t.namespace("curator-cache").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;
    common::put(&zk, "/tree", b"").await;
    let cache = TreeCache::start(&zk, "/tree", TreeCacheOptions::default())
        .await
        .unwrap();
    let mut events = cache.events();
    cache.initialized().await.unwrap();
    assert_eq!(java.ask("cache c /tree").await, "OK");

    // zkit writes, Curator's cache follows.
    common::put(&zk, "/tree/a", b"1").await;
    assert_eq!(java.ask("awaitcache c /tree/a 1 30000").await, "OK");
    zk.set_data("/tree/a", b"2", None).await.unwrap();
    assert_eq!(java.ask("awaitcache c /tree/a 2 30000").await, "OK");

    // Curator writes, zkit's cache follows.
    assert_eq!(java.ask("create /tree/b/c x").await, "OK");
    assert_eq!(java.ask("set /tree/b/c y").await, "OK");
    bounded("TreeCache sees Curator's write", async {
        loop {
            if let Ok(TreeEvent::Updated { path, data }) = events.recv().await {
                if path == "/tree/b/c" && &data.data[..] == b"y" {
                    return;
                }
            }
        }
    })
    .await;
    assert!(cache.get("/tree/b").is_some());
    // Curator's cache applies its own write when the watch fires, not when `set` returns.
    assert_eq!(java.ask("awaitcache c /tree/b/c y 30000").await, "OK");
    assert_eq!(java.ask("close c").await, "CLOSED");
    java.quit().await;
    zk.close().await.unwrap();
}
