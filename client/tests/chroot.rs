//! Chroot: every request path is prefixed with the chroot and every returned path (create,
//! sequential create, multi results, getEphemerals, watch events) has it stripped.

mod common;

use std::time::Duration;

use common::{within, Target};
use zkit::{Client, CreateMode, CreateOptions, Error, EventType, Op, OpResult};

const LIMIT: Duration = Duration::from_secs(10);

/// A client chrooted at `<namespace>/app`, and a client on the namespace itself (to look at the
/// real paths).
async fn pair(t: &Target) -> (Client, Client) {
    let ns = t.namespace().await;
    let outer = common::connect(&ns).await.unwrap();
    outer
        .create("/app", b"root", &CreateOptions::persistent())
        .await
        .unwrap();
    let inner = common::connect(&format!("{ns}/app")).await.unwrap();
    (inner, outer)
}

#[tokio::test]
async fn requests_are_prefixed_and_created_paths_stripped() {
    let t = Target::new().await;
    let (zk, outer) = pair(&t).await;
    assert!(zk.chroot_path().unwrap().ends_with("/app"));
    let (p, _) = zk
        .create("/a", b"1", &CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(p, "/a");
    assert_eq!(&outer.get_data("/app/a").await.unwrap().0[..], b"1");
    let (s, _) = zk
        .create(
            "/a/s-",
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .await
        .unwrap();
    assert_eq!(s, "/a/s-0000000000");
    let (e, _) = zk
        .create(
            "/a/e-",
            b"",
            &CreateOptions::new(CreateMode::EphemeralSequential),
        )
        .await
        .unwrap();
    assert_eq!(e, "/a/e-0000000001");
    let (c, _) = zk
        .create("/box", b"", &CreateOptions::new(CreateMode::Container))
        .await
        .unwrap();
    assert_eq!(c, "/box");
    // "/" is the chroot node itself.
    assert_eq!(&zk.get_data("/").await.unwrap().0[..], b"root");
    let mut kids = zk.get_children("/").await.unwrap();
    kids.sort();
    assert_eq!(kids, vec!["a", "box"]);
    // Every other operation goes to the prefixed path too.
    zk.set_data("/a", b"2", Some(0)).await.unwrap();
    assert_eq!(&outer.get_data("/app/a").await.unwrap().0[..], b"2");
    assert_eq!(zk.get_all_children_number("/").await.unwrap(), 4);
    zk.sync("/a").await.unwrap();
    zk.check_version("/a", 1).await.unwrap();
    zk.delete("/a/s-0000000000", None).await.unwrap();
    assert_eq!(outer.exists("/app/a/s-0000000000").await.unwrap(), None);
    assert_eq!(zk.exists("/app").await.unwrap(), None);
    // Ephemerals are listed relative to the chroot, and only those under it.
    assert_eq!(
        zk.get_ephemerals("/").await.unwrap(),
        vec!["/a/e-0000000001"]
    );
    assert_eq!(
        zk.get_ephemerals("/a").await.unwrap(),
        vec!["/a/e-0000000001"]
    );
    zk.close().await.unwrap();
    outer.close().await.unwrap();
}

#[tokio::test]
async fn multi_results_are_stripped() {
    let t = Target::new().await;
    let (zk, outer) = pair(&t).await;
    let r = zk
        .multi(vec![
            Op::create("/m", b"", &CreateOptions::persistent()),
            Op::create(
                "/m/q-",
                b"",
                &CreateOptions::new(CreateMode::PersistentSequential),
            ),
            Op::create("/m/c", b"", &CreateOptions::new(CreateMode::Container)),
            Op::set_data("/m", b"x", None),
            Op::check("/m", 1),
        ])
        .await
        .unwrap();
    let paths: Vec<_> = r
        .iter()
        .filter_map(|r| match r {
            OpResult::Create { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(paths, vec!["/m", "/m/q-0000000000", "/m/c"]);
    assert!(outer.exists("/app/m/q-0000000000").await.unwrap().is_some());
    let e = zk
        .multi(vec![Op::delete("/m/c", None), Op::delete("/nope", None)])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MultiAborted { index: 1, .. }), "{e:?}");
    let rr = zk
        .multi_read(vec![
            zkit::ReadOp::GetData("/m".into()),
            zkit::ReadOp::GetChildren("/m".into()),
        ])
        .await
        .unwrap();
    assert!(matches!(&rr[0], Ok(zkit::ReadResult::Data { data, .. }) if &data[..] == b"x"));
    zk.close().await.unwrap();
    outer.close().await.unwrap();
}

#[tokio::test]
async fn watch_event_paths_are_stripped() {
    let t = Target::new().await;
    let (zk, outer) = pair(&t).await;
    zk.create("/w", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let (_, _, data) = zk.get_data_and_watch("/w").await.unwrap();
    let (_, _, kids) = zk.get_children_and_watch("/w").await.unwrap();
    let (_, created) = zk.exists_and_watch("/w/k").await.unwrap();
    let (_, _, root_kids) = zk.get_children_and_watch("/").await.unwrap();
    // Persistent watches from a second session: 3.8 keeps one watch mode per (session, path),
    // so a persistent watch would swallow this session's one-shot watches on the same path
    // (ZOOKEEPER-4466, fixed in 3.9).
    let zk2 = common::connect(&format!("{}{}", t.connect, zk.chroot_path().unwrap()))
        .await
        .unwrap();
    let mut rec = zk2
        .add_watch("/", zkit::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let mut pers = zk2
        .add_watch("/w", zkit::AddWatchMode::Persistent)
        .await
        .unwrap();
    // Changes made through the unchrooted client.
    outer.set_data("/app/w", b"1", None).await.unwrap();
    outer
        .create("/app/w/k", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    outer
        .create("/app/top", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let ev = |w: zkit::OneshotWatcher, what: &'static str| async move {
        let e: zkit::WatchedEvent = within(LIMIT, what, w).await.unwrap();
        (e.event_type, e.path)
    };
    assert_eq!(
        ev(data, "data").await,
        (EventType::NodeDataChanged, "/w".into())
    );
    assert_eq!(
        ev(kids, "kids").await,
        (EventType::NodeChildrenChanged, "/w".into())
    );
    assert_eq!(
        ev(created, "created").await,
        (EventType::NodeCreated, "/w/k".into())
    );
    assert_eq!(
        ev(root_kids, "root_kids").await,
        (EventType::NodeChildrenChanged, "/".into())
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = within(LIMIT, "recursive", rec.next())
            .await
            .unwrap()
            .unwrap()
            .into_event()
            .unwrap();
        got.push((e.event_type, e.path));
    }
    assert_eq!(
        got,
        vec![
            (EventType::NodeDataChanged, "/w".into()),
            (EventType::NodeCreated, "/w/k".into()),
            (EventType::NodeCreated, "/top".into()),
        ]
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        let e = within(LIMIT, "persistent", pers.next())
            .await
            .unwrap()
            .unwrap()
            .into_event()
            .unwrap();
        got.push((e.event_type, e.path));
    }
    assert_eq!(
        got,
        vec![
            (EventType::NodeDataChanged, "/w".into()),
            (EventType::NodeChildrenChanged, "/w".into()),
        ]
    );
    // Deleting the chroot node itself: the event path is "/".
    let (_, _, gone) = zk.get_data_and_watch("/").await.unwrap();
    outer.delete("/app/w/k", None).await.unwrap();
    outer.delete("/app/w", None).await.unwrap();
    outer.delete("/app/top", None).await.unwrap();
    outer.delete("/app", None).await.unwrap();
    assert_eq!(ev(gone, "gone").await, (EventType::NodeDeleted, "/".into()));
    zk2.close().await.unwrap();
    zk.close().await.unwrap();
    outer.close().await.unwrap();
}

#[tokio::test]
async fn a_missing_chroot_gives_no_node() {
    let t = Target::new().await;
    let ns = t.namespace().await;
    let zk = common::connect(&format!("{ns}/absent")).await.unwrap();
    assert_eq!(zk.exists("/").await.unwrap(), None);
    assert_eq!(
        zk.create("/a", b"", &CreateOptions::persistent()).await,
        Err(Error::NoNode)
    );
    // Creating "/" makes the chroot node.
    let (p, _) = zk
        .create("/", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(p, "/");
    zk.create("/a", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    zk.close().await.unwrap();
}

/// `Client::chroot` derives a handle on the same session with a further prefix: requests,
/// created paths and watch events are relative to it (Curator's `usingNamespace`).
#[tokio::test]
async fn a_derived_chroot_shares_the_session_and_strips_its_prefix() {
    let t = Target::new().await;
    let (zk, outer) = pair(&t).await;
    let sub = zk.chroot("/tenant").unwrap();
    assert_eq!(sub.session_id(), zk.session_id());
    assert_eq!(
        sub.chroot_path().unwrap(),
        format!("{}/tenant", zk.chroot_path().unwrap())
    );
    assert_eq!(zk.chroot("/").unwrap().chroot_path(), zk.chroot_path());
    assert!(zk.chroot("bad").is_err());
    sub.create_all(
        "/jobs/j-",
        b"1",
        &CreateOptions::new(CreateMode::EphemeralSequential),
    )
    .await
    .map(|(p, _)| assert!(p.starts_with("/jobs/j-"), "{p}"))
    .unwrap();
    assert!(outer.exists("/app/tenant/jobs").await.unwrap().is_some());
    // An ephemeral made through the derived handle belongs to the shared session.
    let kids = outer.get_children("/app/tenant/jobs").await.unwrap();
    let st = outer
        .exists(&format!("/app/tenant/jobs/{}", kids[0]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.ephemeral_owner, zk.session_id());
    // Watches through the derived handle report paths relative to it.
    let (_, _, watch) = sub.get_data_and_watch("/jobs").await.unwrap();
    let mut stream = sub
        .add_watch("/jobs", zkit::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    outer
        .set_data("/app/tenant/jobs", b"2", None)
        .await
        .unwrap();
    let ev = within(LIMIT, "one-shot event", watch).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/jobs")
    );
    match within(LIMIT, "persistent event", stream.next()).await {
        Some(Ok(zkit::WatchItem::Event(ev))) => assert_eq!(ev.path, "/jobs"),
        other => panic!("unexpected {other:?}"),
    }
    // The parent handle still sees its own paths.
    assert_eq!(&zk.get_data("/tenant/jobs").await.unwrap().0[..], b"2");
}
