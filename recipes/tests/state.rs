//! The connection-state model and protected sequential creation, against a server with faults.

mod common;

use common::{bounded, children};
use zkit::CreateMode;
use zkit_recipes::state::{connection_states, ConnectionState};
use zkit_recipes::znode::{ProtectedCreate, PROTECTED_PREFIX};

#[tokio::test]
async fn dropped_connection_is_suspended_then_reconnected() {
    let t = target!();
    let ns = t.namespace("states-drop").await;
    let f = ns.faulty_client(false).await;
    let mut states = connection_states(&f.client);
    assert_eq!(states.next().await, Some(ConnectionState::Connected));
    f.drop_connection();
    assert_eq!(
        bounded("suspended", states.next()).await,
        Some(ConnectionState::Suspended)
    );
    assert_eq!(
        bounded("reconnected", states.next()).await,
        Some(ConnectionState::Reconnected)
    );
}

#[tokio::test]
async fn expiry_is_lost_then_a_new_session_is_reconnected() {
    let t = target!();
    let ns = t.namespace("states-expire").await;
    let f = ns.faulty_client(true).await;
    let old = f.client.session_id();
    let mut states = connection_states(&f.client);
    assert_eq!(states.next().await, Some(ConnectionState::Connected));
    f.expire().await;
    let mut seen = Vec::new();
    bounded("lost then reconnected", async {
        while let Some(s) = states.next().await {
            seen.push(s);
            if s == ConnectionState::Reconnected && seen.contains(&ConnectionState::Lost) {
                break;
            }
        }
    })
    .await;
    assert_eq!(seen[0], ConnectionState::Suspended, "{seen:?}");
    assert!(seen.contains(&ConnectionState::Lost), "{seen:?}");
    assert_ne!(f.client.session_id(), old, "a new session");
}

#[tokio::test]
async fn protected_create_uses_curator_names_and_creates_parents() {
    let t = target!();
    let ns = t.namespace("protected-names").await;
    let zk = ns.client().await;
    let p = ProtectedCreate::new("/a/b", "lock-", CreateMode::EphemeralSequential);
    let path = p.create(&zk, b"x").await.unwrap();
    let name = path.rsplit('/').next().unwrap();
    assert!(name.starts_with(PROTECTED_PREFIX));
    // _c_ + 36-char uuid + '-' + lock- + 10 digits
    assert_eq!(name.len(), 3 + 36 + 1 + 5 + 10, "{name}");
    assert_eq!(&name[40..45], "lock-");
    assert_eq!(p.find(&zk).await.unwrap().as_deref(), Some(path.as_str()));
}

/// Cuts the connection while creates are in flight: every create either fails cleanly or
/// returns its node, and no orphan (a node nobody knows about) or duplicate is left.
#[tokio::test]
async fn protected_create_leaves_no_orphan_when_connection_drops_mid_create() {
    let t = target!();
    let ns = t.namespace("protected-orphans").await;
    let f = ns.faulty_client(false).await;
    let zk = ns.client().await;
    zk.create("/q", b"", &zkit::CreateOptions::persistent())
        .await
        .unwrap();
    let mut made = Vec::new();
    for round in 0..20u64 {
        let p = ProtectedCreate::new("/q", "item-", CreateMode::PersistentSequential);
        let client = f.client.clone();
        let pc = p.clone();
        let task = tokio::spawn(async move { pc.create(&client, b"").await });
        // Cut after a varying number of scheduler turns so the cut lands before, during and
        // after the create reaches the server.
        for _ in 0..(round % 5) {
            tokio::task::yield_now().await;
        }
        f.drop_connection();
        let r = bounded("create", task).await.unwrap();
        let path = r.expect("a protected create survives a connection loss");
        made.push(path.rsplit('/').next().unwrap().to_owned());
    }
    let mut kids = children(&zk, "/q").await;
    kids.sort();
    made.sort();
    assert_eq!(kids, made, "exactly the nodes the creates returned");
}
