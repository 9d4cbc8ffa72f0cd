//! Every operation, its results and its error codes; same expectations on the testkit and on
//! real Apache ZooKeeper.

mod common;

use bytes::Bytes;
use common::Target;
use zkit::{CreateMode, CreateOptions, Error, EventType, Op, OpResult, ReadOp, ReadResult};

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
    let mut pw = zk.add_watch("/w", true).await.unwrap();
    zk.set_data("/w/c", b"x", None).await.unwrap();
    let ev = pw.next().await.unwrap().unwrap();
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
            Op::create("/m", b"", CreateOptions::persistent()),
            Op::create(
                "/m/s-",
                b"",
                CreateOptions::new(CreateMode::PersistentSequential),
            ),
            Op::set_data("/m", b"d", Some(0)),
            Op::check("/m", 1),
        ])
        .await
        .unwrap();
    assert!(matches!(&r[1], OpResult::Create { path, .. } if path == "/m/s-0000000000"));
    let e = zk
        .multi(vec![
            Op::create("/m2", b"", CreateOptions::persistent()),
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
