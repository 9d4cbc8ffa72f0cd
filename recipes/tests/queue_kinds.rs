//! Priority, delay and id queues: their order, removal by id, and delivery through connection
//! drops and a consumer's session expiry.

mod common;

use std::time::Duration;

use zkit_recipes::queue::QueueOptions;
use zkit_recipes::queue_kinds::{
    DistributedDelayQueue, DistributedIdQueue, DistributedPriorityQueue,
};

use common::bounded;

#[tokio::test]
async fn a_priority_queue_hands_out_lower_numbers_first() {
    let t = target!();
    let ns = t.namespace("prio-queue").await;
    let zk = ns.client().await;
    let q = DistributedPriorityQueue::new(&zk, "/pq", QueueOptions::default());
    for (d, p) in [("c", 5), ("a", -2), ("b", 0), ("d", 5)] {
        q.put(d, p).await.unwrap();
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        let i = q.take().await.unwrap();
        order.push(String::from_utf8(i.data().to_vec()).unwrap());
        i.complete().await.unwrap();
    }
    assert_eq!(order, ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn a_delay_queue_holds_items_until_due_even_across_a_connection_drop() {
    let t = target!();
    let ns = t.namespace("delay-queue").await;
    let f = ns.faulty_client(false).await;
    let q = DistributedDelayQueue::new(&f.client, "/dq", QueueOptions::default());
    q.put_after("later", Duration::from_millis(400))
        .await
        .unwrap();
    q.put_after("now", Duration::ZERO).await.unwrap();
    let first = q.take().await.unwrap();
    assert_eq!(&first.data()[..], b"now");
    first.complete().await.unwrap();
    assert!(q.try_take().await.unwrap().is_none(), "not due yet");
    f.drop_connection();
    let later = bounded("due item", q.take()).await.unwrap();
    assert_eq!(&later.data()[..], b"later");
    later.complete().await.unwrap();
}

#[tokio::test]
async fn an_id_queue_removes_items_by_id_and_redelivers_after_a_claimant_expires() {
    let t = target!();
    let ns = t.namespace("id-queue").await;
    let f = ns.faulty_client(false).await;
    let zk = ns.client().await;
    let opts = QueueOptions::default().lock_path("/iq-locks");
    let q = DistributedIdQueue::new(&zk, "/iq", opts.clone());
    q.put("x1", "job-1").await.unwrap();
    q.put("x2", "job-2").await.unwrap();
    q.put("x3", "job-1").await.unwrap();
    assert_eq!(q.remove("job-1").await.unwrap(), 2);
    assert_eq!(q.queue().len().await.unwrap(), 1);

    // A consumer claims the item and its session expires: the item comes back.
    let dying = DistributedIdQueue::new(&f.client, "/iq", opts);
    let claimed = dying.take().await.unwrap();
    assert!(q.queue().try_take().await.unwrap().is_none(), "claimed");
    f.expire().await;
    bounded("claim lost", claimed.lost()).await;
    let again = bounded("redelivered", q.take()).await.unwrap();
    assert_eq!(&again.data()[..], b"x2");
    again.complete().await.unwrap();
    drop(claimed);
}
