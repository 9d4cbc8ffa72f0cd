//! Every operation, its results and its error codes; same expectations on the testkit and on
//! real Apache ZooKeeper.

mod common;

use bytes::Bytes;
use common::Target;
use std::time::Duration;

use futures::FutureExt;
use zkit::{
    perms, Acl, CreateMode, CreateOptions, Error, ErrorCode, EventType, Op, OpResult, ReadOp,
    ReadResult,
};

#[tokio::test]
async fn create_get_set_delete_round_trip() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    let (path, stat) = zk
        .create("/a", b"hello", &CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(path, "/a");
    assert_eq!(stat.version, 0);
    assert_eq!(stat.data_length, 5);
    assert_eq!(stat.czxid, stat.mzxid);
    assert_eq!(stat.czxid, stat.pzxid);
    let (data, s2) = zk.get_data("/a").await.unwrap();
    assert_eq!(data, Bytes::from_static(b"hello"));
    assert_eq!(s2, stat);
    let s3 = zk.set_data("/a", b"bye", Some(0)).await.unwrap();
    assert_eq!(s3.version, 1);
    assert!(s3.mzxid > stat.mzxid);
    assert_eq!(
        zk.set_data("/a", b"x", Some(0)).await,
        Err(Error::BadVersion)
    );
    assert_eq!(zk.exists("/a").await.unwrap(), Some(s3));
    zk.delete("/a", Some(1)).await.unwrap();
    assert_eq!(zk.exists("/a").await.unwrap(), None);
    assert_eq!(zk.get_data("/a").await, Err(Error::NoNode));
    zk.close().await.unwrap();
}

#[tokio::test]
async fn watches_fire() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/w", b"1", &CreateOptions::persistent())
        .await
        .unwrap();
    let (_, _, w) = zk.get_data_and_watch("/w").await.unwrap();
    let (_, _, cw) = zk.get_children_and_watch("/w").await.unwrap();
    let (none, ew) = zk.exists_and_watch("/w/c").await.unwrap();
    assert!(none.is_none());
    zk.set_data("/w", b"2", None).await.unwrap();
    let ev = w.await.unwrap();
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    assert_eq!(ev.path, "/w");
    zk.create("/w/c", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(ew.await.unwrap().event_type, EventType::NodeCreated);
    let ev = cw.await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/w")
    );
    let mut pw = zk
        .add_watch("/w", zkit::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    zk.set_data("/w/c", b"x", None).await.unwrap();
    let ev = pw.next().await.unwrap().unwrap().into_event().unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/w/c")
    );
    zk.close().await.unwrap();
}

#[tokio::test]
async fn multi_success_and_abort() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    let r = zk
        .multi(vec![
            Op::create("/m", b"", &CreateOptions::persistent()),
            Op::create(
                "/m/s-",
                b"",
                &CreateOptions::new(CreateMode::PersistentSequential),
            ),
            Op::set_data("/m", b"d", Some(0)),
            Op::check("/m", 1),
        ])
        .await
        .unwrap();
    assert!(matches!(&r[1], OpResult::Create { path, .. } if path == "/m/s-0000000000"));
    let e = zk
        .multi(vec![
            Op::create("/m2", b"", &CreateOptions::persistent()),
            Op::check("/m", 0),
            Op::delete("/m", None),
        ])
        .await
        .unwrap_err();
    match e {
        Error::MultiAborted {
            index,
            error,
            codes,
        } => {
            assert_eq!(index, 1);
            assert_eq!(*error, Error::BadVersion);
            assert_eq!(codes, vec![0, -103, -2]);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(zk.exists("/m2").await.unwrap(), None);
    let rr = zk
        .multi_read(vec![
            ReadOp::GetData("/m".into()),
            ReadOp::GetChildren("/m".into()),
            ReadOp::GetData("/nope".into()),
        ])
        .await
        .unwrap();
    assert!(matches!(&rr[0], Ok(ReadResult::Data { data, .. }) if &data[..] == b"d"));
    assert!(matches!(&rr[1], Ok(ReadResult::Children(c)) if c.len() == 1));
    assert_eq!(rr[2], Err(Error::NoNode));
    zk.close().await.unwrap();
}

#[tokio::test]
async fn create_modes_ephemeral_and_sequential() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    let sid = zk.session_id();
    let (p, s) = zk
        .create("/e", b"x", &CreateOptions::ephemeral())
        .await
        .unwrap();
    assert_eq!(p, "/e");
    assert_eq!(s.ephemeral_owner, sid);
    zk.create("/p", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(zk.exists("/p").await.unwrap().unwrap().ephemeral_owner, 0);

    // Sequential suffix: the parent's cversion, 10 digits zero-padded; it counts every child
    // change of the parent, not only sequential creates.
    let (a, s) = zk
        .create(
            "/p/n-",
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .await
        .unwrap();
    assert_eq!(a, "/p/n-0000000000");
    assert_eq!(s.ephemeral_owner, 0);
    zk.create("/p/plain", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let (b, s) = zk
        .create(
            "/p/n-",
            b"",
            &CreateOptions::new(CreateMode::EphemeralSequential),
        )
        .await
        .unwrap();
    assert_eq!(b, "/p/n-0000000002");
    assert_eq!(s.ephemeral_owner, sid);
    // A sequential path may end in '/': the name is then only the suffix.
    let (c, _) = zk
        .create(
            "/p/",
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .await
        .unwrap();
    assert_eq!(c, "/p/0000000003");
    let mut kids = zk.get_children("/p").await.unwrap();
    kids.sort();
    assert_eq!(
        kids,
        vec!["0000000003", "n-0000000000", "n-0000000002", "plain"]
    );

    zk.close().await.unwrap();
}

#[tokio::test]
async fn container_uses_create_container_and_is_marked() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    let (p, s) = zk
        .create("/box", b"c", &CreateOptions::new(CreateMode::Container))
        .await
        .unwrap();
    assert_eq!(p, "/box");
    assert_eq!(s.data_length, 1);
    // The server marks containers with owner 0x8000000000000000 internally, but real ZooKeeper
    // reports 0 to clients (DataNode hides non-NORMAL ephemeral types), so the Stat cannot tell.
    assert_eq!(s.ephemeral_owner, 0);
    zk.create("/box/kid", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(zk.get_children("/box").await.unwrap(), vec!["kid"]);
    // What proves the opcode: the server reaps a container once its last child is gone. Its
    // check interval is a JVM property (default 60 s), so this runs only when the server was
    // started with a short one (.ci/run does: ZK_JAVA_OPTS=-Dznode.container.checkIntervalMs=N).
    let interval = if t.real {
        container_check_interval()
    } else {
        Some(Duration::from_millis(100)) // the harness starts the testkit with this reap interval
    };
    let Some(interval) = interval else {
        eprintln!("skipped: container reaping (server's znode.container.checkIntervalMs unknown)");
        zk.close().await.unwrap();
        return;
    };
    zk.create("/plain", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    zk.create("/plain/kid", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let (_, gone) = zk.exists_and_watch("/box").await.unwrap();
    zk.delete("/box/kid", None).await.unwrap();
    zk.delete("/plain/kid", None).await.unwrap();
    let ev = common::within(
        interval * 5 + Duration::from_secs(5),
        "container reaped",
        gone,
    )
    .await
    .unwrap();
    assert_eq!(ev.event_type, EventType::NodeDeleted);
    assert_eq!(ev.path, "/box");
    // The persistent node in the same situation stays.
    assert!(zk.exists("/plain").await.unwrap().is_some());
    zk.close().await.unwrap();
}

/// The server's container check interval, when the test environment says what it is.
fn container_check_interval() -> Option<Duration> {
    let opts = std::env::var("ZK_JAVA_OPTS").ok()?;
    let ms = opts
        .split_whitespace()
        .find_map(|o| o.strip_prefix("-Dznode.container.checkIntervalMs="))?;
    Some(Duration::from_millis(ms.parse().ok()?))
}

#[tokio::test]
async fn ttl_nodes_need_extended_types() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    let extended = std::env::var("ZK_EXTENDED_TYPES").as_deref() == Ok("1");
    let opts = CreateOptions::new(CreateMode::PersistentWithTtl).ttl(Duration::from_secs(60));
    let seq =
        CreateOptions::new(CreateMode::PersistentSequentialWithTtl).ttl(Duration::from_secs(60));
    let r = zk.create("/ttl", b"", &opts).await;
    let rs = zk.create("/ttl-", b"", &seq).await;
    if !extended {
        // Without -Dzookeeper.extendedTypesEnabled=true (the testkit's `extended_types`) the
        // server rejects createTTL.
        assert_eq!(r, Err(Error::Unimplemented));
        assert_eq!(rs, Err(Error::Unimplemented));
        assert_eq!(zk.exists("/ttl").await.unwrap(), None);
    } else if let (Ok((p, s)), Ok((ps, _))) = (&r, &rs) {
        assert_eq!(p, "/ttl");
        assert!(
            ps.starts_with("/ttl-") && ps.len() == "/ttl-".len() + 10,
            "{ps}"
        );
        // Like containers, TTL nodes report ephemeralOwner 0 to clients.
        assert_eq!(s.ephemeral_owner, 0, "{:#x}", s.ephemeral_owner);
    } else {
        assert_eq!(r, Err(Error::Unimplemented));
        assert_eq!(rs, Err(Error::Unimplemented));
    }
    // Client-side checks, before anything is sent: a TTL mode needs a TTL in range, and a
    // non-TTL mode takes none.
    let no_ttl = CreateOptions::new(CreateMode::PersistentWithTtl);
    assert!(matches!(
        zk.create("/t2", b"", &no_ttl).now_or_never(),
        Some(Err(Error::BadArguments(_)))
    ));
    let stray = CreateOptions::persistent().ttl(Duration::from_secs(1));
    assert!(matches!(
        zk.create("/t3", b"", &stray).now_or_never(),
        Some(Err(Error::BadArguments(_)))
    ));
    zk.close().await.unwrap();
}

#[tokio::test]
async fn acl_get_set_and_versions() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/acl", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let (acl, stat) = zk.get_acl("/acl").await.unwrap();
    assert_eq!(acl, Acl::open_unsafe());
    assert_eq!(stat.aversion, 0);
    let admin = vec![Acl::new(perms::ALL, "world", "anyone")];
    assert_eq!(
        zk.set_acl("/acl", admin, Some(3)).await,
        Err(Error::BadVersion)
    );
    let s = zk
        .set_acl("/acl", Acl::read_unsafe(), Some(0))
        .await
        .unwrap();
    assert_eq!(s.aversion, 1);
    // The ACL check comes before the version check: without ADMIN, a stale version still gets
    // NoAuth, not BadVersion. Through a follower or observer of a real ZooKeeper leader this
    // holds only once the leader has applied the setACL above: until then its pending change
    // record carries the new aversion but the old ACL (ZooKeeper 3.8's PrepRequestProcessor),
    // so the ACL check passes and the version check fails. Asked with the stale version, that
    // window can only answer BadVersion (nothing is written); zkit's leaders check the new ACL.
    let mut tries = 0;
    loop {
        match zk.set_acl("/acl", Acl::open_unsafe(), Some(0)).await {
            Err(Error::BadVersion) if tries < 200 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            r => {
                assert_eq!(r, Err(Error::NoAuth));
                break;
            }
        }
    }
    assert_eq!(
        zk.set_acl("/acl", Acl::open_unsafe(), Some(1)).await,
        Err(Error::NoAuth)
    );
    let (acl, stat) = zk.get_acl("/acl").await.unwrap();
    assert_eq!(acl, Acl::read_unsafe());
    assert_eq!(stat.aversion, 1);
    // Read-only for everyone now: writes are refused, reads are fine.
    assert_eq!(zk.set_data("/acl", b"x", None).await, Err(Error::NoAuth));
    assert_eq!(
        zk.create("/acl/kid", b"", &CreateOptions::persistent())
            .await,
        Err(Error::NoAuth)
    );
    zk.get_data("/acl").await.unwrap();
    // Deleting is governed by the PARENT's ACL, so this node can still go.
    zk.delete("/acl", None).await.unwrap();
    assert_eq!(zk.get_acl("/acl").await, Err(Error::NoNode));
    assert_eq!(
        zk.set_acl("/acl", Acl::open_unsafe(), None).await,
        Err(Error::NoNode)
    );
    zk.close().await.unwrap();
}

#[tokio::test]
async fn children_with_stat_counts_and_ephemerals() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/c", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    for n in ["a", "b"] {
        zk.create(&format!("/c/{n}"), b"", &CreateOptions::persistent())
            .await
            .unwrap();
    }
    zk.create("/c/a/x", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    zk.create("/c/b/e1", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    zk.create("/c/e2", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let (mut kids, stat) = zk.get_children_with_stat("/c").await.unwrap();
    kids.sort();
    assert_eq!(kids, vec!["a", "b", "e2"]);
    assert_eq!(stat.num_children, 3);
    assert_eq!(stat.cversion, 3);
    assert_eq!(
        zk.get_children("/c/a/x").await.unwrap(),
        Vec::<String>::new()
    );
    // Every descendant, not counting the node itself.
    assert_eq!(zk.get_all_children_number("/c").await.unwrap(), 5);
    assert_eq!(zk.get_all_children_number("/c/a/x").await.unwrap(), 0);
    assert_eq!(
        zk.get_all_children_number("/nope").await,
        Err(Error::NoNode)
    );
    // This session's ephemerals under a prefix (a string prefix, not a subtree).
    let mut e = zk.get_ephemerals("/c").await.unwrap();
    e.sort();
    assert_eq!(e, vec!["/c/b/e1", "/c/e2"]);
    assert_eq!(zk.get_ephemerals("/c/b").await.unwrap(), vec!["/c/b/e1"]);
    let mut all = zk.get_ephemerals("/").await.unwrap();
    all.sort();
    assert_eq!(all, vec!["/c/b/e1", "/c/e2"]);
    // Another session sees none of them as its own.
    let (other, _) = t.client().await;
    assert_eq!(
        other.get_ephemerals("/").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(zk.get_children("/nope").await, Err(Error::NoNode));
    assert_eq!(zk.get_children_with_stat("/nope").await, Err(Error::NoNode));
    other.close().await.unwrap();
    zk.close().await.unwrap();
}

#[tokio::test]
async fn sync_check_version_who_am_i_and_config() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/s", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    zk.sync("/s").await.unwrap();
    zk.sync("/").await.unwrap();
    zk.set_data("/s", b"1", None).await.unwrap();
    zk.check_version("/s", 1).await.unwrap();
    assert_eq!(zk.check_version("/s", 0).await, Err(Error::BadVersion));
    assert_eq!(zk.check_version("/nope", 0).await, Err(Error::NoNode));

    // Without auth the server knows this session by its address only.
    let who = zk.who_am_i().await.unwrap();
    assert_eq!(who.len(), 1, "{who:?}");
    assert_eq!(who[0].auth_scheme, "ip");
    assert_eq!(who[0].user, "127.0.0.1");

    // /zookeeper/config exists on every 3.5+ server, chroot or not.
    let (_cfg, stat) = zk.get_config().await.unwrap();
    assert_eq!(stat.ephemeral_owner, 0);
    zk.close().await.unwrap();
}

#[tokio::test]
async fn reconfig_is_refused_on_a_default_server() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    // reconfigEnabled is false by default: the server refuses before looking at anything else.
    let r = zk.reconfig(None, Some("3"), None, None).await.map(|_| ());
    assert_eq!(r, Err(Error::ReconfigDisabled));
    zk.close().await.unwrap();
}

#[tokio::test]
async fn server_error_codes() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    let p = CreateOptions::persistent();
    zk.create("/x", b"", &p).await.unwrap();
    assert_eq!(zk.create("/x", b"", &p).await, Err(Error::NodeExists));
    assert_eq!(zk.create("/missing/x", b"", &p).await, Err(Error::NoNode));
    assert_eq!(zk.delete("/missing", None).await, Err(Error::NoNode));
    assert_eq!(zk.set_data("/missing", b"", None).await, Err(Error::NoNode));
    assert_eq!(
        zk.set_data("/x", b"", Some(7)).await,
        Err(Error::BadVersion)
    );
    assert_eq!(zk.delete("/x", Some(7)).await, Err(Error::BadVersion));
    zk.create("/x/y", b"", &p).await.unwrap();
    assert_eq!(zk.delete("/x", None).await, Err(Error::NotEmpty));
    zk.create("/eph", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    assert_eq!(
        zk.create("/eph/kid", b"", &p).await,
        Err(Error::NoChildrenForEphemerals)
    );
    assert_eq!(
        zk.create(
            "/eph/kid-",
            b"",
            &CreateOptions::new(CreateMode::EphemeralSequential)
        )
        .await,
        Err(Error::NoChildrenForEphemerals)
    );
    // An empty ACL is invalid, and so is `auth` without any authenticated identity.
    assert_eq!(
        zk.create("/a1", b"", &CreateOptions::persistent().acl(vec![]))
            .await,
        Err(Error::InvalidAcl)
    );
    assert_eq!(
        zk.create(
            "/a2",
            b"",
            &CreateOptions::persistent().acl(Acl::creator_all())
        )
        .await,
        Err(Error::InvalidAcl)
    );
    assert_eq!(zk.set_acl("/x", vec![], None).await, Err(Error::InvalidAcl));
    // NoAuth: a node nobody may read.
    zk.create(
        "/secret",
        b"",
        &CreateOptions::persistent().acl(vec![Acl::new(perms::WRITE, "world", "anyone")]),
    )
    .await
    .unwrap();
    assert_eq!(zk.get_data("/secret").await, Err(Error::NoAuth));
    assert_eq!(zk.get_children("/secret").await, Err(Error::NoAuth));
    // exists needs no permission.
    assert!(zk.exists("/secret").await.unwrap().is_some());
    // The error codes survive as numbers.
    assert_eq!(
        Error::NoChildrenForEphemerals.code().map(ErrorCode::code),
        Some(-108)
    );
    zk.close().await.unwrap();
}

#[tokio::test]
async fn bad_paths_fail_before_anything_is_sent() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    let bad = [
        "",
        "a",
        "/a/",
        "//",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/.",
        "/..",
        "/a\0b",
        "/a\u{1}",
        "/a\u{7f}",
        "/\u{fff0}",
        // Java checks UTF-16 units: a character outside the BMP is a surrogate pair, and
        // surrogates are in the forbidden U+D800..U+F8FF range (the server rejects it too).
        "/a\u{1F600}",
    ];
    let p = CreateOptions::persistent();
    for path in bad {
        // Rejected synchronously: the futures are ready on their first poll.
        let is_bad = |r: Option<zkit::Result<_>>| matches!(r, Some(Err(Error::BadArguments(_))));
        assert!(
            is_bad(
                zk.create(path, b"", &p)
                    .now_or_never()
                    .map(|r| r.map(|_| ()))
            ),
            "create {path:?}"
        );
        assert!(
            is_bad(zk.get_data(path).now_or_never().map(|r| r.map(|_| ()))),
            "get_data {path:?}"
        );
        assert!(
            is_bad(zk.exists(path).now_or_never().map(|r| r.map(|_| ()))),
            "exists {path:?}"
        );
        assert!(
            is_bad(zk.delete(path, None).now_or_never()),
            "delete {path:?}"
        );
        assert!(
            is_bad(
                zk.set_data(path, b"", None)
                    .now_or_never()
                    .map(|r| r.map(|_| ()))
            ),
            "set_data {path:?}"
        );
        assert!(
            is_bad(zk.get_children(path).now_or_never().map(|r| r.map(|_| ()))),
            "get_children {path:?}"
        );
        assert!(
            is_bad(
                zk.add_watch(path, zkit::AddWatchMode::Persistent)
                    .now_or_never()
                    .map(|r| r.map(|_| ()))
            ),
            "add_watch {path:?}"
        );
        assert!(
            is_bad(
                zk.multi(vec![Op::check("/", 0), Op::delete(path, None)])
                    .now_or_never()
                    .map(|r| r.map(|_| ()))
            ),
            "multi {path:?}"
        );
    }
    // A sequential create may end in '/', nothing else may.
    assert!(matches!(
        zk.create("/a/", b"", &p).now_or_never(),
        Some(Err(Error::BadArguments(_)))
    ));
    // The connection was never disturbed by any of this.
    assert_eq!(
        zk.exists("/").await.unwrap().map(|s| s.num_children),
        Some(0)
    );
    assert_eq!(zk.state(), zkit::SessionState::Connected);
    zk.close().await.unwrap();
}

#[tokio::test]
async fn multi_every_op_kind_with_per_op_results() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    zk.create("/old", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let r = zk
        .multi(vec![
            Op::create("/m", b"1", &CreateOptions::persistent()),
            Op::create("/m/e", b"", &CreateOptions::ephemeral()),
            Op::create("/m/c", b"", &CreateOptions::new(CreateMode::Container)),
            Op::set_data("/m", b"2", Some(0)),
            Op::check("/m", 1),
            Op::delete("/old", Some(0)),
        ])
        .await
        .unwrap();
    assert_eq!(r.len(), 6);
    // Inside a multi, real ZooKeeper turns a create2 into a plain create (its Op.create picks
    // the opcode from the mode), so plain creates come back with a path and no Stat; container
    // (and TTL) creates come back as create2 results, with a Stat.
    let (OpResult::Create { path: p0, stat: s0 }, OpResult::Create { path: p1, stat: s1 }) =
        (&r[0], &r[1])
    else {
        panic!("{r:?}")
    };
    assert_eq!((p0.as_str(), p1.as_str()), ("/m", "/m/e"));
    assert_eq!((s0, s1), (&zkit::Stat::default(), &zkit::Stat::default()));
    let OpResult::Create { path: p2, stat: s2 } = &r[2] else {
        panic!("{r:?}")
    };
    assert_eq!(p2, "/m/c");
    assert!(s2.czxid > 0);
    let OpResult::SetData { stat: s3 } = &r[3] else {
        panic!("{r:?}")
    };
    assert_eq!(s3.version, 1);
    assert_eq!(r[4], OpResult::Check);
    assert_eq!(r[5], OpResult::Delete);
    // All txns of one multi share one zxid.
    assert_eq!(s2.czxid, s3.mzxid);
    let e = zk.exists("/m/e").await.unwrap().unwrap();
    assert_eq!(e.ephemeral_owner, zk.session_id());
    assert_eq!(e.czxid, s3.mzxid);

    // Abort in the middle: earlier ops report 0 (rolled back), later ones -2.
    let e = zk
        .multi(vec![
            Op::set_data("/m", b"3", None),
            Op::create("/m/e", b"", &CreateOptions::persistent()),
            Op::delete("/m/c", None),
        ])
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::MultiAborted {
            index: 1,
            error: Box::new(Error::NodeExists),
            codes: vec![0, -110, -2],
        }
    );
    assert_eq!(e.code(), Some(ErrorCode::NodeExists));
    assert_eq!(zk.get_data("/m").await.unwrap().1.version, 1);
    // Failing first op; and NotEmpty / NoNode / NoChildrenForEphemerals inside a multi.
    for (ops, code) in [
        (vec![Op::delete("/m", None)], -111),
        (vec![Op::set_data("/nope", b"", None)], -101),
        (
            vec![
                Op::check("/m", 1),
                Op::create("/m/e/x", b"", &CreateOptions::persistent()),
            ],
            -108,
        ),
    ] {
        match zk.multi(ops).await {
            Err(Error::MultiAborted { codes, error, .. }) => {
                assert_eq!(codes.last(), Some(&code));
                assert_eq!(error.code().map(ErrorCode::code), Some(code));
            }
            r => panic!("{r:?}"),
        }
    }
    // An empty multi is a no-op that succeeds.
    assert_eq!(zk.multi(vec![]).await.unwrap(), vec![]);
    zk.close().await.unwrap();
}

#[tokio::test]
async fn close_deletes_ephemerals() {
    let t = Target::new().await;
    let (zk, ns) = t.client().await;
    zk.create("/eph", b"", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let observer = common::connect(&ns).await.unwrap();
    let (st, gone) = observer.exists_and_watch("/eph").await.unwrap();
    assert_eq!(st.unwrap().ephemeral_owner, zk.session_id());
    zk.close().await.unwrap();
    assert_eq!(zk.state(), zkit::SessionState::Closed);
    // By the time close() returns the server has deleted the ephemeral.
    assert_eq!(observer.exists("/eph").await.unwrap(), None);
    let ev = common::within(Duration::from_secs(10), "NodeDeleted", gone)
        .await
        .unwrap();
    assert_eq!(ev.event_type, EventType::NodeDeleted);
    // A closed client refuses further work.
    assert_eq!(zk.exists("/").await, Err(Error::Closed));
    observer.close().await.unwrap();
}
