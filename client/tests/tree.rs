//! `create_all` (create with parents) and `delete_all` (recursive delete in bounded multis),
//! on the testkit and on real ZooKeeper.

mod common;

use common::Target;
use zkit::{perms, Acl, CreateMode, CreateOptions, Error, DELETE_ALL_BATCH};

#[tokio::test]
async fn create_all_makes_missing_parents_persistent_with_the_same_acl() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    let acl = vec![Acl::new(perms::ALL, "world", "anyone")];
    let opts = CreateOptions::new(CreateMode::EphemeralSequential).acl(acl.clone());
    let (p, stat) = zk.create_all("/a/b/c/n-", b"x", &opts).await.unwrap();
    assert!(p.starts_with("/a/b/c/n-"), "{p}");
    assert_eq!(stat.ephemeral_owner, zk.session_id());
    for parent in ["/a", "/a/b", "/a/b/c"] {
        let st = zk.exists(parent).await.unwrap().expect(parent);
        assert_eq!(st.ephemeral_owner, 0, "{parent} is persistent");
        assert_eq!(zk.get_acl(parent).await.unwrap().0, acl);
    }
    // Parents that exist are fine; the node itself must not.
    zk.create_all("/a/b/d", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    assert_eq!(
        zk.create_all("/a/b/d", b"", &CreateOptions::persistent())
            .await,
        Err(Error::NodeExists)
    );
    // Without missing parents it is one plain create.
    zk.create_all("/top", b"", &CreateOptions::persistent())
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_all_removes_a_subtree_larger_than_one_batch() {
    let t = Target::new().await;
    let (zk, _) = t.client().await;
    let p = CreateOptions::persistent();
    zk.create_all("/t/x/y/z", b"", &p).await.unwrap();
    // More children than one multi takes.
    let kids: Vec<_> = (0..DELETE_ALL_BATCH + 20)
        .map(|i| zk.create(&format!("/t/x/k{i}"), b"", &p))
        .collect();
    for k in kids {
        k.await.unwrap();
    }
    zk.create("/keep", b"", &p).await.unwrap();
    zk.delete_all("/t").await.unwrap();
    assert_eq!(zk.exists("/t").await.unwrap(), None);
    assert!(zk.exists("/keep").await.unwrap().is_some());
    // Gone already: nothing to do.
    zk.delete_all("/t").await.unwrap();
    zk.delete_all("/keep").await.unwrap();
    assert!(matches!(
        zk.delete_all("/").await,
        Err(Error::BadArguments(_))
    ));
}

#[tokio::test]
async fn delete_all_tolerates_a_concurrent_delete() {
    let t = Target::new().await;
    let (zk, ns) = t.client().await;
    let other = zkit::Client::connect(&ns).await.unwrap();
    let p = CreateOptions::persistent();
    for i in 0..30 {
        zk.create_all(&format!("/d/s{}/n{i}", i % 3), b"", &p)
            .await
            .unwrap();
    }
    // Both delete the same tree at once: each sees some of its deletes fail with NoNode.
    let (a, b) = tokio::join!(zk.delete_all("/d"), other.delete_all("/d"));
    a.unwrap();
    b.unwrap();
    assert_eq!(zk.exists("/d").await.unwrap(), None);
}
