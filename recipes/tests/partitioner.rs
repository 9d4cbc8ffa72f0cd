//! SetPartitioner: shares cover the set exactly once, a newcomer triggers a rebalance, and a
//! member whose session expires gives its share to the others.

mod common;

use std::time::Duration;

use zkit_recipes::partitioner::{PartitionState, PartitionerOptions, SetPartitioner};

use common::bounded;

fn items() -> Vec<String> {
    (0..6).map(|i| format!("item-{i}")).collect()
}

/// Waits until `p` holds a share; answers Release states on the way.
async fn acquired(p: &SetPartitioner) -> Vec<String> {
    bounded("share acquired", async {
        loop {
            match p.state() {
                PartitionState::Acquired(mine) => return mine,
                PartitionState::Release => p.release(),
                PartitionState::Failed => panic!("partitioner failed"),
                _ => {}
            }
            let _ = p.wait_for_change().await;
        }
    })
    .await
}

/// Answers Release states of both until each holds `n` items; returns their shares.
async fn both_hold(a: &SetPartitioner, b: &SetPartitioner, n: usize) -> (Vec<String>, Vec<String>) {
    bounded("both hold their share", async {
        loop {
            if let (PartitionState::Acquired(x), PartitionState::Acquired(y)) =
                (a.state(), b.state())
            {
                if x.len() == n && y.len() == n {
                    return (x, y);
                }
            }
            for p in [a, b] {
                if p.state() == PartitionState::Release {
                    p.release();
                }
            }
            // A poll: each state is read from memory, no server round trip to wait on.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn opts(id: &str) -> PartitionerOptions {
    PartitionerOptions::new(id).settle(Duration::from_millis(200))
}

#[tokio::test]
async fn members_split_the_set_and_rebalance_when_one_joins() {
    let t = target!();
    let ns = t.namespace("partitioner").await;
    let (zk1, zk2) = (ns.client().await, ns.client().await);
    let a = SetPartitioner::start(&zk1, "/p", items(), opts("a"))
        .await
        .unwrap();
    assert_eq!(acquired(&a).await, items(), "alone: everything");

    let b = SetPartitioner::start(&zk2, "/p", items(), opts("b"))
        .await
        .unwrap();
    // `a` is asked to release, then both hold half.
    let (mine_a, mine_b) = both_hold(&a, &b, 3).await;
    let mut all = [mine_a.clone(), mine_b.clone()].concat();
    all.sort();
    assert_eq!(all, items(), "a: {mine_a:?} b: {mine_b:?}");
}

#[tokio::test]
async fn an_expired_member_leaves_its_share_to_the_others() {
    let t = target!();
    let ns = t.namespace("partitioner-expiry").await;
    let f = ns.faulty_client(false).await;
    let zk = ns.client().await;
    let a = SetPartitioner::start(&zk, "/p", items(), opts("a"))
        .await
        .unwrap();
    let b = SetPartitioner::start(&f.client, "/p", items(), opts("b"))
        .await
        .unwrap();
    both_hold(&a, &b, 3).await;
    f.expire().await;
    bounded("a takes everything", async {
        loop {
            match a.state() {
                PartitionState::Acquired(x) if x.len() == 6 => return,
                PartitionState::Release => a.release(),
                _ => {}
            }
            let _ = a.wait_for_change().await;
        }
    })
    .await;
    drop(b);
}
