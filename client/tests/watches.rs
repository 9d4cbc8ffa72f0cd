//! Watch firing rules (protocol reference §8) against the server: one-shot data, exists and child
//! watches, persistent and persistent-recursive watches, removal, and event/reply ordering.

mod common;

use std::time::Duration;

use common::{wait_state, within, Proxy, Target};
use futures::FutureExt;
use zkit::{
    CreateOptions, Error, EventType, OneshotWatcher, PersistentWatcher, SessionState, WatchItem,
    WatcherType,
};

const LIMIT: Duration = Duration::from_secs(10);

async fn fired(w: OneshotWatcher) -> (EventType, String) {
    let ev = within(LIMIT, "one-shot watch", w).await.unwrap();
    (ev.event_type, ev.path)
}

async fn next(w: &mut PersistentWatcher) -> (EventType, String) {
    let ev = within(LIMIT, "persistent watch event", w.next())
        .await
        .expect("stream ended")
        .unwrap()
        .into_event()
        .expect("an event, not a resync");
    (ev.event_type, ev.path)
}

fn p() -> CreateOptions {
    CreateOptions::persistent()
}

#[tokio::test]
async fn data_watch_fires_once_on_set_data_with_the_change_zxid() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/d", b"0", &p()).await.unwrap();
    let (_, _, w) = zk.get_data_and_watch("/d").await.unwrap();
    zk.check_watches("/d", WatcherType::Data).await.unwrap();
    let stat = zk.set_data("/d", b"1", None).await.unwrap();
    let ev = within(LIMIT, "data watch", w).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/d")
    );
    // 3.8 puts -1 in the notification's zxid; newer servers put the change's zxid there.
    assert!(ev.zxid == -1 || ev.zxid == stat.mzxid, "{}", ev.zxid);
    // One-shot: gone from the server once fired.
    assert_eq!(
        zk.check_watches("/d", WatcherType::Data).await,
        Err(Error::NoWatcher)
    );
    zk.close().await.unwrap();
}

#[tokio::test]
async fn delete_fires_data_and_child_watches_and_the_parents_child_watch() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/p", b"", &p()).await.unwrap();
    zk.create("/p/n", b"", &p()).await.unwrap();
    let (_, _, data) = zk.get_data_and_watch("/p/n").await.unwrap();
    let (_, exists) = zk.exists_and_watch("/p/n").await.unwrap();
    let (_, _, child) = zk.get_children_and_watch("/p/n").await.unwrap();
    let (_, _, parent) = zk.get_children_and_watch("/p").await.unwrap();
    zk.delete("/p/n", None).await.unwrap();
    assert_eq!(fired(data).await, (EventType::NodeDeleted, "/p/n".into()));
    assert_eq!(fired(exists).await, (EventType::NodeDeleted, "/p/n".into()));
    assert_eq!(fired(child).await, (EventType::NodeDeleted, "/p/n".into()));
    assert_eq!(
        fired(parent).await,
        (EventType::NodeChildrenChanged, "/p".into())
    );
    zk.close().await.unwrap();
}

#[tokio::test]
async fn exists_watch_on_a_missing_node_fires_on_create() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    let (stat, w) = zk.exists_and_watch("/later").await.unwrap();
    assert_eq!(stat, None);
    // Registered on the server even though the node does not exist.
    zk.check_watches("/later", WatcherType::Data).await.unwrap();
    // getData on a missing node leaves no watch (the request failed).
    assert_eq!(
        zk.get_data_and_watch("/never").await.map(|_| ()),
        Err(Error::NoNode)
    );
    assert_eq!(
        zk.check_watches("/never", WatcherType::Data).await,
        Err(Error::NoWatcher)
    );
    let (_, s) = zk.create("/later", b"", &p()).await.unwrap();
    let ev = within(LIMIT, "exists watch", w).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/later")
    );
    assert!(ev.zxid == -1 || ev.zxid == s.czxid, "{}", ev.zxid);
    zk.close().await.unwrap();
}

#[tokio::test]
async fn child_watch_fires_on_child_create_but_not_on_data_change() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/c", b"", &p()).await.unwrap();
    let (kids, stat, mut w) = zk.get_children_and_watch("/c").await.unwrap();
    assert!(kids.is_empty());
    assert_eq!(stat.num_children, 0);
    zk.set_data("/c", b"x", None).await.unwrap();
    // Events precede the replies that follow them, so had setData fired the child watch, the
    // event would be here already.
    assert!((&mut w).now_or_never().is_none());
    zk.create("/c/k", b"", &p()).await.unwrap();
    assert_eq!(
        fired(w).await,
        (EventType::NodeChildrenChanged, "/c".into())
    );
    // A data watch on the parent is not fired by a child being created.
    let (_, _, mut dw) = zk.get_data_and_watch("/c").await.unwrap();
    zk.create("/c/k2", b"", &p()).await.unwrap();
    assert!((&mut dw).now_or_never().is_none());
    zk.close().await.unwrap();
}

#[tokio::test]
async fn every_watcher_on_a_path_fires() {
    let t = Target::new().await;
    let (zk, ns) = t.client().await;
    zk.create("/m", b"", &p()).await.unwrap();
    let (_, _, a) = zk.get_data_and_watch("/m").await.unwrap();
    let (_, _, b) = zk.get_data_and_watch("/m").await.unwrap();
    let (_, c) = zk.exists_and_watch("/m").await.unwrap();
    let other = common::connect(&ns).await.unwrap();
    other.set_data("/m", b"1", None).await.unwrap();
    for w in [a, b, c] {
        assert_eq!(fired(w).await, (EventType::NodeDataChanged, "/m".into()));
    }
    other.close().await.unwrap();
    zk.close().await.unwrap();
}

#[tokio::test]
async fn persistent_watch_gets_data_and_child_events_and_stays() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/w", b"", &p()).await.unwrap();
    let mut w = zk
        .add_watch("/w", zkit::AddWatchMode::Persistent)
        .await
        .unwrap();
    // (3.8 answers MarshallingError to checkWatches of types Persistent / PersistentRecursive;
    // a persistent watch shows up under Any.)
    zk.check_watches("/w", WatcherType::Any).await.unwrap();
    zk.set_data("/w", b"1", None).await.unwrap();
    assert_eq!(
        next(&mut w).await,
        (EventType::NodeDataChanged, "/w".into())
    );
    zk.create("/w/k", b"", &p()).await.unwrap();
    assert_eq!(
        next(&mut w).await,
        (EventType::NodeChildrenChanged, "/w".into())
    );
    // Changes below the node itself are not its events.
    zk.set_data("/w/k", b"1", None).await.unwrap();
    zk.delete("/w/k", None).await.unwrap();
    assert_eq!(
        next(&mut w).await,
        (EventType::NodeChildrenChanged, "/w".into())
    );
    zk.set_data("/w", b"2", None).await.unwrap();
    assert_eq!(
        next(&mut w).await,
        (EventType::NodeDataChanged, "/w".into())
    );
    zk.delete("/w", None).await.unwrap();
    assert_eq!(next(&mut w).await, (EventType::NodeDeleted, "/w".into()));
    // Still there after a delete: it fires again when the node comes back.
    zk.create("/w", b"", &p()).await.unwrap();
    assert_eq!(next(&mut w).await, (EventType::NodeCreated, "/w".into()));
    zk.check_watches("/w", WatcherType::Any).await.unwrap();
    assert!(w.next().now_or_never().is_none());
    zk.close().await.unwrap();
}

#[tokio::test]
async fn persistent_recursive_watch_sees_descendants_without_child_events() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/r", b"", &p()).await.unwrap();
    let mut w = zk
        .add_watch("/r", zkit::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    zk.check_watches("/r", WatcherType::Any).await.unwrap();
    zk.create("/r/a", b"", &p()).await.unwrap();
    zk.create("/r/a/b", b"", &p()).await.unwrap();
    zk.set_data("/r/a/b", b"1", None).await.unwrap();
    zk.set_data("/r", b"1", None).await.unwrap();
    zk.delete("/r/a/b", None).await.unwrap();
    // A sibling outside the subtree with a common string prefix is not a descendant.
    zk.create("/rr", b"", &p()).await.unwrap();
    let expected = [
        (EventType::NodeCreated, "/r/a"),
        (EventType::NodeCreated, "/r/a/b"),
        (EventType::NodeDataChanged, "/r/a/b"),
        (EventType::NodeDataChanged, "/r"),
        (EventType::NodeDeleted, "/r/a/b"),
    ];
    for (ty, path) in expected {
        assert_eq!(next(&mut w).await, (ty, path.to_owned()));
    }
    // No NodeChildrenChanged anywhere, and nothing for /rr.
    assert!(w.next().now_or_never().is_none());
    zk.close().await.unwrap();
}

#[tokio::test]
async fn dropping_watchers_removes_them_on_the_server() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    for n in ["/x", "/y", "/z", "/q"] {
        zk.create(n, b"", &p()).await.unwrap();
    }
    // One-shot watches: the removal goes out with the last local watcher of its kind.
    let (_, _, a) = zk.get_data_and_watch("/x").await.unwrap();
    let (_, _, b) = zk.get_data_and_watch("/x").await.unwrap();
    let (_, _, c) = zk.get_children_and_watch("/x").await.unwrap();
    drop(a);
    zk.check_watches("/x", WatcherType::Data).await.unwrap();
    b.remove();
    assert_eq!(
        zk.check_watches("/x", WatcherType::Data).await,
        Err(Error::NoWatcher)
    );
    zk.check_watches("/x", WatcherType::Children).await.unwrap();
    drop(c);
    assert_eq!(
        zk.check_watches("/x", WatcherType::Any).await,
        Err(Error::NoWatcher)
    );
    // Persistent and recursive watches.
    let pw = zk
        .add_watch("/y", zkit::AddWatchMode::Persistent)
        .await
        .unwrap();
    let rw = zk
        .add_watch("/z", zkit::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    zk.check_watches("/y", WatcherType::Any).await.unwrap();
    zk.check_watches("/z", WatcherType::Any).await.unwrap();
    drop(pw);
    rw.remove();
    for n in ["/y", "/z"] {
        assert_eq!(
            zk.check_watches(n, WatcherType::Any).await,
            Err(Error::NoWatcher),
            "{n}"
        );
    }
    // Dropping a one-shot watcher must not take a persistent watch on the same path with it.
    let mut keep = zk
        .add_watch("/q", zkit::AddWatchMode::Persistent)
        .await
        .unwrap();
    let (_, _, d) = zk.get_data_and_watch("/q").await.unwrap();
    drop(d);
    zk.set_data("/q", b"1", None).await.unwrap();
    assert_eq!(
        next(&mut keep).await,
        (EventType::NodeDataChanged, "/q".into())
    );
    drop(keep);
    assert_eq!(
        zk.check_watches("/q", WatcherType::Any).await,
        Err(Error::NoWatcher)
    );
    // The connection is healthy and a new watch works.
    let (_, _, w) = zk.get_data_and_watch("/x").await.unwrap();
    zk.set_data("/x", b"1", None).await.unwrap();
    assert_eq!(fired(w).await, (EventType::NodeDataChanged, "/x".into()));
    zk.close().await.unwrap();
}

#[tokio::test]
async fn a_watcher_dropped_before_its_reply_leaves_no_watch_on_the_server() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    for n in ["/y", "/z", "/d"] {
        zk.create(n, b"", &p()).await.unwrap();
    }
    // The requests are queued when called; dropping the futures drops the watchers while the
    // replies are still on their way.
    drop(zk.add_watch("/y", zkit::AddWatchMode::Persistent));
    drop(zk.add_watch("/z", zkit::AddWatchMode::PersistentRecursive));
    drop(zk.get_data_and_watch("/d"));
    zk.sync("/").await.unwrap();
    for n in ["/y", "/z", "/d"] {
        assert_eq!(
            zk.check_watches(n, WatcherType::Any).await,
            Err(Error::NoWatcher),
            "{n}"
        );
    }
    zk.close().await.unwrap();
}

/// ZooKeeper 3.6–3.8 keep one mode per (connection, path): a one-shot watch set on a path that
/// has a persistent watch replaces it, and the persistent watch is gone once the one-shot fires.
/// The client must not let that happen to a `PersistentWatcher` silently.
#[tokio::test]
async fn a_persistent_watch_survives_a_one_shot_watch_firing_on_the_same_path() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/q", b"", &p()).await.unwrap();
    zk.create("/r", b"", &p()).await.unwrap();
    let mut pw = zk
        .add_watch("/q", zkit::AddWatchMode::Persistent)
        .await
        .unwrap();
    let mut rw = zk
        .add_watch("/r", zkit::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let (_, _, d) = zk.get_data_and_watch("/q").await.unwrap();
    let (_, c) = zk.exists_and_watch("/r").await.unwrap();
    let (_, _, ch) = zk.get_children_and_watch("/q").await.unwrap();
    zk.set_data("/q", b"1", None).await.unwrap();
    zk.set_data("/r", b"1", None).await.unwrap();
    zk.create("/q/k", b"", &p()).await.unwrap();
    assert_eq!(fired(d).await, (EventType::NodeDataChanged, "/q".into()));
    assert_eq!(fired(c).await, (EventType::NodeDataChanged, "/r".into()));
    assert_eq!(
        fired(ch).await,
        (EventType::NodeChildrenChanged, "/q".into())
    );
    assert_eq!(
        next(&mut pw).await,
        (EventType::NodeDataChanged, "/q".into())
    );
    assert_eq!(
        next(&mut rw).await,
        (EventType::NodeDataChanged, "/r".into())
    );
    assert_eq!(
        next(&mut pw).await,
        (EventType::NodeChildrenChanged, "/q".into())
    );
    // The persistent watches still work after the one-shots fired.
    zk.set_data("/q", b"2", None).await.unwrap();
    zk.set_data("/r", b"2", None).await.unwrap();
    assert_eq!(
        next(&mut pw).await,
        (EventType::NodeDataChanged, "/q".into())
    );
    assert_eq!(
        next(&mut rw).await,
        (EventType::NodeDataChanged, "/r".into())
    );
    // A one-shot still fires when the persistent watch beside it is dropped first, even while
    // the one-shot's request is still in flight.
    let pending = zk.get_data_and_watch("/q");
    drop(pw);
    let (_, _, d) = pending.await.unwrap();
    zk.set_data("/q", b"3", None).await.unwrap();
    assert_eq!(fired(d).await, (EventType::NodeDataChanged, "/q".into()));
    zk.close().await.unwrap();
}

/// The same when the one-shot is asked for while the persistent watch's addWatch is still in
/// flight: the one-shot must not be set on the server then either, or it takes the data side of
/// the persistent watch with it when it fires.
#[tokio::test]
async fn a_persistent_watch_survives_a_one_shot_asked_while_its_add_watch_is_in_flight() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/q", b"", &p()).await.unwrap();
    for mode in [
        zkit::AddWatchMode::Persistent,
        zkit::AddWatchMode::PersistentRecursive,
    ] {
        // Both requests go out in one write: the addWatch reply is not back when the getData
        // is encoded.
        let add = zk.add_watch("/q", mode);
        let get = zk.get_data_and_watch("/q");
        let (pw, got) = futures::join!(add, get);
        let mut pw = pw.unwrap();
        let (_, _, d) = got.unwrap();
        zk.set_data("/q", b"1", None).await.unwrap();
        assert_eq!(fired(d).await, (EventType::NodeDataChanged, "/q".into()));
        assert_eq!(
            next(&mut pw).await,
            (EventType::NodeDataChanged, "/q".into())
        );
        zk.set_data("/q", b"2", None).await.unwrap();
        assert_eq!(
            next(&mut pw).await,
            (EventType::NodeDataChanged, "/q".into()),
            "mode: {mode:?}"
        );
        drop(pw);
    }
    zk.close().await.unwrap();
}

#[tokio::test]
async fn remove_all_watches_clears_the_server_side() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/y", b"", &p()).await.unwrap();
    let (_, _, mut d) = zk.get_data_and_watch("/y").await.unwrap();
    let (_, _, mut c) = zk.get_children_and_watch("/y").await.unwrap();
    zk.check_watches("/y", WatcherType::Any).await.unwrap();
    zk.remove_all_watches("/y", WatcherType::Data)
        .await
        .unwrap();
    assert_eq!(
        zk.check_watches("/y", WatcherType::Data).await,
        Err(Error::NoWatcher)
    );
    zk.check_watches("/y", WatcherType::Children).await.unwrap();
    zk.remove_all_watches("/y", WatcherType::Any).await.unwrap();
    assert_eq!(
        zk.check_watches("/y", WatcherType::Any).await,
        Err(Error::NoWatcher)
    );
    // Nothing left to remove.
    assert_eq!(
        zk.remove_all_watches("/y", WatcherType::Any).await,
        Err(Error::NoWatcher)
    );
    // The removed watches do not fire.
    zk.set_data("/y", b"1", None).await.unwrap();
    zk.create("/y/k", b"", &p()).await.unwrap();
    assert!(!matches!((&mut d).now_or_never(), Some(Ok(_))));
    assert!(!matches!((&mut c).now_or_never(), Some(Ok(_))));
    zk.close().await.unwrap();
}

#[tokio::test]
async fn a_watch_event_arrives_before_the_reply_of_a_later_request() {
    let t = Target::new().await;
    let (zk, ns) = t.client().await;
    zk.create("/o", b"0", &p()).await.unwrap();
    // Our own write: the server sends the notification before the setData reply.
    let (_, _, mut w) = zk.get_data_and_watch("/o").await.unwrap();
    zk.set_data("/o", b"1", None).await.unwrap();
    let ev = (&mut w)
        .now_or_never()
        .expect("event before the reply")
        .unwrap();
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    // Another client's write: once a read of ours sees the new data, the event is already here
    // (ZooKeeper's guarantee: a client sees the event before it sees the new state).
    let other = common::connect(&ns).await.unwrap();
    for i in 2..22 {
        let (_, before, mut w) = zk.get_data_and_watch("/o").await.unwrap();
        let write = other.set_data("/o", i.to_string(), None);
        // Read until the new data shows up, however long the write takes to commit (a loaded
        // server's log fsync can take seconds): a bound on time, not on a number of reads.
        within(LIMIT, "the other client's write becomes visible", async {
            while zk.get_data("/o").await.unwrap().1.version <= before.version {}
        })
        .await;
        let ev = (&mut w)
            .now_or_never()
            .expect("event before the new data")
            .unwrap();
        assert_eq!(ev.event_type, EventType::NodeDataChanged);
        write.await.unwrap();
    }
    other.close().await.unwrap();
    zk.close().await.unwrap();
}

/// ZOOKEEPER-4698: the server does not replay persistent-watch events for changes made while the
/// client was away. A client cut off (through a proxy) while another one changes the watched node
/// must learn, after it reconnects, that its stream may have a gap: a `Resync` item comes before
/// any event of the new connection. One-shot watches are re-armed by the server and report
/// `resynced()`.
#[tokio::test]
async fn a_change_made_while_disconnected_yields_resync_on_the_persistent_stream() {
    let t = Target::new().await;
    let (b, ns) = t.client().await;
    let chroot = ns.strip_prefix(&t.connect).unwrap();
    b.create("/w", b"", &p()).await.unwrap();
    let proxy = Proxy::start(&t.connect).await;
    let a = common::builder(&format!("{}{chroot}", proxy.addr))
        .session_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut pw = a
        .add_watch("/w", zkit::AddWatchMode::Persistent)
        .await
        .unwrap();
    let mut rw = a
        .add_watch("/", zkit::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let (_, _, one) = a.get_data_and_watch("/w").await.unwrap();
    assert!(!one.resynced());
    let sid = a.session_id();

    proxy.block();
    wait_state(&a, LIMIT, |s| s == SessionState::Disconnected).await;
    b.create("/w/k", b"", &p()).await.unwrap();
    b.set_data("/w", b"while away", None).await.unwrap();
    proxy.unblock();
    wait_state(&a, LIMIT, SessionState::is_connected).await;
    assert_eq!(a.session_id(), sid, "same session");
    assert!(one.resynced());

    for (name, w) in [("persistent", &mut pw), ("recursive", &mut rw)] {
        assert_eq!(
            within(LIMIT, name, w.next()).await,
            Some(Ok(WatchItem::Resync)),
            "{name}"
        );
    }
    // The streams go on after the resync.
    b.set_data("/w", b"after", None).await.unwrap();
    for w in [&mut pw, &mut rw] {
        loop {
            let item = within(LIMIT, "event after resync", w.next()).await;
            let ev = item.unwrap().unwrap().into_event().unwrap();
            // A server may or may not replay the missed changes; skip them.
            if ev.event_type == EventType::NodeDataChanged {
                assert_eq!(ev.path, "/w");
                let (data, _) = a.get_data("/w").await.unwrap();
                if &data[..] == b"after" {
                    break;
                }
            }
        }
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}
