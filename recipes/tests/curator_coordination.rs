//! Curator's coordination recipes and zkit's on the same paths: `DistributedBarrier` ⇄
//! [`Barrier`], `DistributedDoubleBarrier` ⇄ [`DoubleBarrier`], `SharedCount` ⇄
//! [`SharedCounter`] and `GroupMember` ⇄ [`GroupMember`]. Needs `CURATOR_CLASSPATH` (see
//! `curator_driver`).

mod common;
mod curator_driver;

use std::time::Duration;

use zkit_recipes::barrier::{Barrier, BarrierOptions, DoubleBarrier, DoubleBarrierOptions};
use zkit_recipes::counter::SharedCounter;
use zkit_recipes::group::{GroupMember, GroupOptions};

use common::bounded;

#[tokio::test]
async fn barriers_set_on_one_side_hold_the_other() {
    let t = target!();
    let ns = t.namespace("curator-barrier").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;
    let gate = Barrier::new(&zk, "/gate", BarrierOptions::default());
    assert_eq!(java.ask("barrier b /gate").await, "OK");

    // Curator sets, zkit waits until Curator removes it.
    assert_eq!(java.ask("setbarrier b").await, "OK");
    assert!(gate.is_set().await.unwrap());
    let waiting = tokio::spawn({
        let gate = gate.clone();
        async move { gate.wait().await }
    });
    assert!(matches!(
        gate.wait_timeout(Duration::from_millis(200)).await,
        Err(zkit_recipes::Error::Timeout)
    ));
    assert_eq!(java.ask("removebarrier b").await, "OK");
    bounded("zkit passes", waiting).await.unwrap().unwrap();

    // zkit sets, Curator waits until zkit removes it.
    gate.set().await.unwrap();
    assert_eq!(java.ask("waitbarrier b 200").await, "TIMEOUT");
    let java_waits = java.send("waitbarrier b 60000").await;
    gate.remove().await.unwrap();
    assert_eq!(java.answer(java_waits).await, "PASSED");
    java.quit().await;
    zk.close().await.unwrap();
}

#[tokio::test]
async fn a_double_barrier_fills_and_drains_across_both_sides() {
    let t = target!();
    let ns = t.namespace("curator-double-barrier").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;
    let round = DoubleBarrier::new(&zk, "/round", DoubleBarrierOptions::new(3));
    assert_eq!(java.ask("dbarrier d1 /round 3").await, "OK");
    assert_eq!(java.ask("dbarrier d2 /round 3").await, "OK");

    // Two Curator members wait for the third, a zkit member.
    let e1 = java.send("enter d1 60000").await;
    let e2 = java.send("enter d2 60000").await;
    common::eventually("Curator members in", || async {
        round.members().await.unwrap().len() == 2
    })
    .await;
    let me = bounded("zkit enters", round.enter()).await.unwrap();
    assert_eq!(java.answer(e1).await, "ENTERED");
    assert_eq!(java.answer(e2).await, "ENTERED");

    // Leaving: nobody is out before all three have arrived at leave.
    let l1 = java.send("leave d1 60000").await;
    let l2 = java.send("leave d2 60000").await;
    bounded("zkit leaves", me.leave()).await.unwrap();
    assert_eq!(java.answer(l1).await, "LEFT");
    assert_eq!(java.answer(l2).await, "LEFT");
    assert!(round.members().await.unwrap().is_empty());
    java.quit().await;
    zk.close().await.unwrap();
}

#[tokio::test]
async fn shared_count_and_shared_counter_see_each_others_writes() {
    let t = target!();
    let ns = t.namespace("curator-shared-count").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;

    // Curator creates the node (its seed); zkit reads and adds to it.
    assert_eq!(java.ask("sharedcount c /count 5").await, "OK");
    let counter = SharedCounter::new(
        &zk,
        "/count",
        zkit_recipes::counter::CounterOptions::default(),
    );
    assert_eq!(counter.get().await.unwrap().value, 5);
    assert_eq!(counter.add(2).await.unwrap(), 7);
    assert_eq!(java.ask("awaitcount c 7 30000").await, "7");
    assert_eq!(java.ask("setcount c 11").await, "OK");
    assert_eq!(counter.get().await.unwrap().value, 11);

    // zkit creates a node in SharedCount's 4-byte form; Curator reads it.
    let fresh = SharedCounter::new(
        &zk,
        "/fresh",
        zkit_recipes::counter::CounterOptions::default().shared_count(),
    );
    fresh.set(42).await.unwrap();
    assert_eq!(java.ask("sharedcount f /fresh 0").await, "OK");
    assert_eq!(java.ask("count f").await, "42");
    assert_eq!(fresh.add(-2).await.unwrap(), 40);
    assert_eq!(java.ask("awaitcount f 40 30000").await, "40");
    assert_eq!(java.ask("close c").await, "CLOSED");
    assert_eq!(java.ask("close f").await, "CLOSED");
    java.quit().await;
    zk.close().await.unwrap();
}

#[tokio::test]
async fn group_members_on_both_sides_see_each_other() {
    let t = target!();
    let ns = t.namespace("curator-group").await;
    let mut java = curator!(ns);
    let zk = ns.client().await;

    assert_eq!(java.ask("group g /workers java-1 jdata").await, "OK");
    let me = GroupMember::start(&zk, "/workers", GroupOptions::new("zkit-1").data("zdata"))
        .await
        .unwrap();
    common::eventually("zkit sees both", || async {
        me.members().await.unwrap().len() == 2
    })
    .await;
    let members = me.members().await.unwrap();
    assert_eq!(&members["java-1"][..], b"jdata");
    assert_eq!(&members["zkit-1"][..], b"zdata");
    let mut seen = String::new();
    for _ in 0..500 {
        seen = java.ask("members g").await;
        if seen == "java-1=jdata,zkit-1=zdata" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, "java-1=jdata,zkit-1=zdata");

    // Curator leaves: zkit's watch shows it.
    let mut watch = me.watch().await.unwrap();
    assert_eq!(java.ask("close g").await, "CLOSED");
    bounded("zkit sees Curator leave", async {
        while watch.current().contains_key("java-1") {
            watch.changed().await.unwrap();
        }
    })
    .await;
    me.close().await.unwrap();
    java.quit().await;
    zk.close().await.unwrap();
}
