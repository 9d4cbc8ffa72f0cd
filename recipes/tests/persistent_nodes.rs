//! [`PersistentNode`] and [`PersistentTtlNode`]: kept in place across deletion, connection drops
//! and session expiry; a TTL node outlives its keeper by one TTL only.

mod common;

use std::time::Duration;

use futures::StreamExt;
use zkit::CreateMode;
use zkit_recipes::persistent_node::{PersistentNode, PersistentTtlNode};

use common::{bounded, eventually};

#[tokio::test]
async fn a_persistent_node_comes_back_after_it_is_deleted() {
    let t = target!();
    let ns = t.namespace("pnode-deleted").await;
    let (zk, admin) = (ns.client().await, ns.client().await);
    let node = PersistentNode::start(
        &zk,
        "/a/b",
        zkit_recipes::persistent_node::PersistentNodeOptions::new(CreateMode::Persistent).data("x"),
    )
    .await
    .unwrap();
    assert!(node.present());
    let mut changes = Box::pin(node.changes());
    admin.delete("/a/b", None).await.unwrap();
    eventually("re-created", || async {
        admin.exists("/a/b").await.unwrap().is_some()
    })
    .await;
    assert_eq!(&admin.get_data("/a/b").await.unwrap().0[..], b"x");
    // The deletion showed on the stream (absent, then present again: quick changes may
    // show as one, the latest).
    bounded("change seen", changes.next()).await.unwrap();
    eventually("present again", || async { node.present() }).await;
    node.set_data(b"y").await.unwrap();
    assert_eq!(&admin.get_data("/a/b").await.unwrap().0[..], b"y");
    node.close().await.unwrap();
    assert!(admin.exists("/a/b").await.unwrap().is_none());
}

#[tokio::test]
async fn an_ephemeral_persistent_node_survives_connection_drops_and_expiry() {
    let t = target!();
    let ns = t.namespace("pnode-expiry").await;
    let f = ns.faulty_client(true).await;
    let admin = ns.client().await;
    let node = PersistentNode::start(
        &f.client,
        "/e",
        zkit_recipes::persistent_node::PersistentNodeOptions::new(CreateMode::Ephemeral).data("me"),
    )
    .await
    .unwrap();
    f.drop_connection();
    let st = admin.exists("/e").await.unwrap().unwrap();
    assert_ne!(st.ephemeral_owner, 0);
    let first_owner = st.ephemeral_owner;
    f.isolate_until_expired().await;
    eventually("re-created in the new session", || async {
        matches!(admin.exists("/e").await.unwrap(), Some(st) if st.ephemeral_owner != first_owner)
    })
    .await;
    eventually("present again", || async { node.present() }).await;
    assert_eq!(
        admin.exists("/e").await.unwrap().unwrap().ephemeral_owner,
        f.client.session_id()
    );
    node.close().await.unwrap();
    assert!(admin.exists("/e").await.unwrap().is_none());
}

#[tokio::test]
async fn a_ttl_node_lives_while_kept_and_expires_after_its_keeper_stops() {
    // TTL nodes need extended types: an own testkit server with them on.
    let server = zkit_testkit::Server::builder()
        .tick_time(Duration::from_millis(50))
        .extended_types(true)
        .start()
        .await
        .unwrap();
    let zk = zkit::Client::connect(&server.connect_string())
        .await
        .unwrap();
    let ttl = Duration::from_millis(400);
    let node = PersistentTtlNode::start(&zk, "/ttl", b"alive", ttl)
        .await
        .unwrap();
    let st = zk.exists("/ttl").await.unwrap().unwrap();
    // Kept past several TTLs: the touches keep it (compare modification counts, not time).
    eventually("touched a few times", || async {
        zk.exists("/ttl").await.unwrap().unwrap().version >= st.version + 3
    })
    .await;
    assert!(node.node().present());
    drop(node); // stops keeping it; a TTL node is not deleted on drop
    eventually("removed by the server after its TTL", || async {
        zk.exists("/ttl").await.unwrap().is_none()
    })
    .await;
}
