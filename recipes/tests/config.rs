//! NodeCache and ConfigWatch: changes, deletion and re-creation, the last write seen after a
//! reconnect and after an expiry, decode errors that keep the last good value.

mod common;

use common::{bounded, put};
use zkit_recipes::cache::NodeCache;
use zkit_recipes::config::ConfigWatch;

fn parse(b: Option<&[u8]>) -> Result<u32, String> {
    let b = b.ok_or("missing")?;
    std::str::from_utf8(b)
        .map_err(|e| e.to_string())?
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())
}

/// A `ConfigWatch` of `/cfg` decoded by `parse`, with default options.
async fn watch_cfg(client: &zkit::Client) -> ConfigWatch<u32> {
    ConfigWatch::start(
        client,
        "/cfg",
        zkit_recipes::cache::CacheOptions::default(),
        parse,
    )
    .await
    .expect("watch /cfg")
}

async fn until<T: Clone>(rx: &mut zkit::Watched<T>, ok: impl Fn(&T) -> bool) {
    bounded("value", rx.wait_for(|v| ok(v))).await.unwrap();
}

#[tokio::test]
async fn node_cache_sees_changes_deletion_and_recreation() {
    let t = target!();
    let ns = t.namespace("cache-node").await;
    let zk = ns.client().await;
    let cache = NodeCache::start(&zk, "/n", zkit_recipes::cache::CacheOptions::default())
        .await
        .unwrap();
    assert!(cache.current().is_none());
    let mut rx = cache.watched();
    put(&zk, "/n", b"1").await;
    until(&mut rx, |v| v.as_ref().is_some_and(|d| &d.data[..] == b"1")).await;
    zk.set_data("/n", b"2", None).await.unwrap();
    until(&mut rx, |v| v.as_ref().is_some_and(|d| &d.data[..] == b"2")).await;
    zk.delete("/n", None).await.unwrap();
    until(&mut rx, |v| v.is_none()).await;
    put(&zk, "/n", b"3").await;
    until(&mut rx, |v| v.as_ref().is_some_and(|d| &d.data[..] == b"3")).await;
    assert!(cache.is_live());
}

#[tokio::test]
async fn config_watch_sees_the_last_write_made_while_disconnected() {
    let t = target!();
    let ns = t.namespace("config-reconnect").await;
    let writer = ns.client().await;
    put(&writer, "/cfg", b"1").await;
    let f = ns.faulty_client(false).await;
    let cfg = watch_cfg(&f.client).await;
    let mut rx = cfg.watched();
    assert_eq!(*rx.borrow(), 1);
    for round in 0..5u32 {
        f.drop_connection();
        for v in 0..3 {
            writer
                .set_data("/cfg", format!("{}", 10 * round + v + 2), None)
                .await
                .unwrap();
        }
        let last = 10 * round + 4;
        until(&mut rx, |v| *v == last).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_watch_sees_the_last_write_after_session_expiry() {
    let t = target!();
    let ns = t.namespace("config-expiry").await;
    let writer = ns.client().await;
    put(&writer, "/cfg", b"1").await;
    let f = ns.faulty_client(true).await;
    let cfg = watch_cfg(&f.client).await;
    let mut rx = cfg.watched();
    // Expire by isolation and write while the watcher is cut off: no event reaches it.
    let isolating = f.isolate_until_expired();
    tokio::pin!(isolating);
    let write = async {
        writer.set_data("/cfg", b"7", None).await.unwrap();
        writer.set_data("/cfg", b"8", None).await.unwrap();
    };
    tokio::join!(&mut isolating, write);
    until(&mut rx, |v| *v == 8).await;
    // And after an instant server-side expiry (testkit) or a second isolation (real server).
    f.expire().await;
    writer.set_data("/cfg", b"9", None).await.unwrap();
    until(&mut rx, |v| *v == 9).await;
}

#[tokio::test]
async fn decode_errors_are_reported_and_the_last_good_value_stays() {
    let t = target!();
    let ns = t.namespace("config-decode").await;
    let zk = ns.client().await;
    put(&zk, "/cfg", b"5").await;
    let cfg = watch_cfg(&zk).await;
    let mut errors = cfg.errors();
    zk.set_data("/cfg", b"not a number", None).await.unwrap();
    bounded("error", errors.wait_for(|e| e.is_some()))
        .await
        .unwrap();
    assert_eq!(*cfg.watched().borrow(), 5, "last good value kept");
    assert_eq!(errors.borrow().as_ref().unwrap().version, Some(1));
    zk.set_data("/cfg", b"6", None).await.unwrap();
    let mut rx = cfg.watched();
    until(&mut rx, |v| *v == 6).await;
    bounded("error cleared", errors.wait_for(|e| e.is_none()))
        .await
        .unwrap();
}

/// A client that does not re-create sessions never connects again after an expiry: the cache
/// must end (not wait forever) and say so.
#[tokio::test]
async fn node_cache_ends_after_expiry_without_session_recreation() {
    let t = target!();
    let ns = t.namespace("cache-expiry-ends").await;
    let writer = ns.client().await;
    put(&writer, "/n", b"1").await;
    let f = ns.faulty_client(false).await;
    assert!(!f.client.recreates_on_expiry());
    let cache = NodeCache::start(
        &f.client,
        "/n",
        zkit_recipes::cache::CacheOptions::default(),
    )
    .await
    .unwrap();
    let mut rx = cache.watched();
    assert!(cache.is_live());
    f.expire().await;
    bounded("cache ends", cache.ended()).await;
    assert!(!cache.is_live());
    assert!(rx.changed().await.is_err(), "receivers see the end");
    assert_eq!(&cache.current().unwrap().data[..], b"1", "last value kept");
}

#[tokio::test]
async fn config_watch_ends_after_expiry_without_session_recreation() {
    let t = target!();
    let ns = t.namespace("config-expiry-ends").await;
    let writer = ns.client().await;
    put(&writer, "/cfg", b"3").await;
    let f = ns.faulty_client(false).await;
    let cfg = watch_cfg(&f.client).await;
    let mut rx = cfg.watched();
    assert!(cfg.is_live());
    f.expire().await;
    bounded("config watch ends", cfg.ended()).await;
    assert!(!cfg.is_live());
    assert!(rx.changed().await.is_err());
    assert_eq!(*rx.borrow(), 3, "last good value kept");
}
