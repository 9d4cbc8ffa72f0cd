//! Protected creation after a connection loss (CURATOR-498): a node carrying the create's prefix
//! is adopted only if the current session owns it.

mod common;

use std::time::Duration;

use common::bounded;
use zkit::{CreateMode, CreateOptions, SessionState};
use zkit_recipes::znode::ProtectedCreate;

/// The create fails with ConnectionLoss (the client is cut off while it is queued), and when the
/// client is back a node with the same prefix exists that another session owns — what an expired
/// session's node looks like while the server deletes it. The create must not adopt it.
#[tokio::test]
async fn a_protected_create_never_adopts_another_sessions_node() {
    let t = target!();
    let ns = t.namespace("protected-owner").await;
    let other = ns.client().await;
    let f = ns.faulty_client(true).await;
    let zk = &f.client;
    other
        .create("/p", b"", &CreateOptions::persistent())
        .await
        .unwrap();
    let pc = ProtectedCreate::new("/p", "n-", CreateMode::EphemeralSequential);
    // The stranger's node carrying our prefix.
    let (foreign, _) = other
        .create(
            &format!("/p/{}n-", pc.prefix()),
            b"",
            &CreateOptions::new(CreateMode::EphemeralSequential),
        )
        .await
        .unwrap();
    assert_eq!(pc.find(zk).await.unwrap().as_deref(), Some(&foreign[..]));
    assert_eq!(pc.find_owned(zk).await.unwrap(), None);

    // Cut off: the create is queued and fails with ConnectionLoss at the next failed attempt,
    // then looks for its node once the client is back.
    f.proxy.partition(true);
    let mut rx = zk.state_watch();
    bounded(
        "disconnect",
        rx.wait_for(|s| *s == SessionState::Disconnected),
    )
    .await
    .unwrap();
    let create = pc.create(zk, b"mine");
    tokio::pin!(create);
    // Let a few reconnect attempts fail meanwhile (the client's backoff is at most 200 ms).
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut create)
            .await
            .is_err()
    );
    f.proxy.partition(false);
    let path = bounded("protected create", create).await.unwrap();
    assert_ne!(path, foreign);
    let st = zk.exists(&path).await.unwrap().unwrap();
    assert_eq!(st.ephemeral_owner, zk.session_id());
    assert_eq!(&zk.get_data(&path).await.unwrap().0[..], b"mine");
    assert_eq!(pc.find_owned(zk).await.unwrap(), Some(path));
}
