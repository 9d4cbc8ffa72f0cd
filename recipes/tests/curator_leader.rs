//! Curator's elections and zkit's on the same paths: `LeaderLatch` ⇄ [`LeaderLatch`] and
//! `LeaderSelector` ⇄ [`LeaderSelector`]: one leader across both, handed over when either side
//! closes or gives up its term. Needs `CURATOR_CLASSPATH` (see `curator_driver`).

mod common;
mod curator_driver;

use zkit_recipes::leader::{LeaderLatch, LeaderOptions, LeaderSelector};

use common::bounded;

#[tokio::test]
async fn curator_and_zkit_latches_elect_one_leader_and_hand_over() {
    let t = target!();
    let ns = t.namespace("curator-latch").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;

    assert_eq!(java.ask("latch a /election java-a").await, "OK");
    assert_eq!(java.ask("await a 30000").await, "LEADER");
    let zkit = LeaderLatch::start(&zk, "/election", LeaderOptions::new("zkit-b"))
        .await
        .unwrap();
    common::eventually("both queued", || async {
        zkit.participants().await.unwrap().len() == 2
    })
    .await;
    let ps = zkit.participants().await.unwrap();
    assert_eq!(ps[0].id, "java-a", "Curator's node leads: {ps:?}");
    assert!(!zkit.is_leader());

    // Curator closes: zkit leads; a new Curator latch follows.
    assert_eq!(java.ask("close a").await, "CLOSED");
    let term = zkit
        .leadership_timeout(common::BOUND)
        .await
        .expect("zkit leads after Curator closed");
    assert_eq!(java.ask("latch c /election java-c").await, "OK");
    common::eventually("Curator queued", || async {
        zkit.participants().await.unwrap().len() == 2
    })
    .await;
    assert_eq!(java.ask("leader c").await, "false");

    // zkit closes: Curator leads.
    zkit.close().await.unwrap();
    assert!(!term.is_current());
    assert_eq!(java.ask("await c 30000").await, "LEADER");
    assert_eq!(java.ask("close c").await, "CLOSED");
    java.quit().await;
    zk.close().await.unwrap();
}

#[tokio::test]
async fn curator_and_zkit_selectors_share_one_election() {
    let t = target!();
    let ns = t.namespace("curator-selector").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;

    assert_eq!(java.ask("selector s /select java-s").await, "OK");
    assert_eq!(java.ask("await s 30000").await, "LEADER");
    let (terms_tx, mut terms) = tokio::sync::mpsc::unbounded_channel();
    let zkit = LeaderSelector::start(&zk, "/select", LeaderOptions::new("zkit-s"), move |_term| {
        let tx = terms_tx.clone();
        async move {
            let _ = tx.send(());
            // Lead until cancelled (leadership lost or the selector closed).
            std::future::pending::<()>().await
        }
    })
    .await
    .unwrap();
    common::eventually("both queued", || async {
        zkit.participants().await.unwrap().len() == 2
    })
    .await;
    let ps = zkit.participants().await.unwrap();
    assert_eq!(ps[0].id, "java-s", "Curator's selector leads: {ps:?}");
    assert!(!zkit.is_leader());

    // Curator's term ends (it re-queues): zkit leads, Curator does not.
    assert_eq!(java.ask("relinquish s").await, "OK");
    bounded("zkit's term starts", terms.recv()).await.unwrap();
    assert!(zkit.is_leader());
    assert_eq!(java.ask("leader s").await, "false");

    // zkit closes: Curator leads again.
    zkit.close().await.unwrap();
    assert_eq!(java.ask("await s 30000").await, "LEADER");
    assert_eq!(java.ask("close s").await, "CLOSED");
    java.quit().await;
    zk.close().await.unwrap();
}
