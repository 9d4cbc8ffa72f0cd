//! The newer recipes in one run: fencing tokens, RwLock downgrade, a Semaphore whose size is a
//! SharedCounter, counter listeners, DistributedAtomicLong, PersistentNode, priority and delay
//! queues, lock revocation, SetPartitioner, ChildReaper and service discovery in Curator's JSON.
//!
//! ```sh
//! cargo run -p zkit-examples --bin coordination            # embedded testkit ensemble
//! cargo run -p zkit-examples --bin coordination -- --connect 127.0.0.1:2181
//! ```

use std::time::Duration;

use futures::StreamExt;
use zkit::{Client, CreateMode, Op};
use zkit_examples::{demos::DemoResult, init_tracing, section, step, Target};
use zkit_recipes::atomic_long::{AtomicLongOptions, DistributedAtomicLong};
use zkit_recipes::child_reaper::{ChildReaper, ReaperOptions};
use zkit_recipes::counter::SharedCounter;
use zkit_recipes::partitioner::{PartitionState, PartitionerOptions, SetPartitioner};
use zkit_recipes::persistent_node::PersistentNode;
use zkit_recipes::queue::QueueOptions;
use zkit_recipes::queue_kinds::{DistributedDelayQueue, DistributedPriorityQueue};
use zkit_recipes::revoke::attempt_revoke;
use zkit_recipes::rwlock::RwLock;
use zkit_recipes::semaphore::{Semaphore, SemaphoreOptions};
use zkit_recipes::service::{ProviderOptions, ProviderStrategy, ServiceDiscovery, ServiceInstance};
use zkit_recipes::{Mutex, MutexOptions};

#[tokio::main]
async fn main() -> DemoResult {
    init_tracing();
    println!("zkit-recipes: coordination recipes");
    let target = Target::from_args().await;
    let connect = target.namespace("coordination-example").await?;
    let zk = Client::builder(&connect)
        .recreate_on_expiry(true)
        .connect()
        .await?;

    section("fencing: a lock holder's writes carry its token and fail once it lost the lock");
    zk.create("/ledger", b"", &zkit::CreateOptions::persistent())
        .await?;
    let guard = Mutex::new(&zk, "/locks/ledger", MutexOptions::default())
        .acquire()
        .await?;
    let token = guard.token();
    guard
        .fenced_multi(vec![Op::set_data("/ledger", token.0.to_be_bytes(), None)])
        .await?;
    step(&format!("wrote under the lock with token {}", token.0));
    let revoker = zk.clone();
    let node = guard.node().to_owned();
    tokio::spawn(async move { attempt_revoke(&revoker, &node).await });
    guard.revocation_requested().await?;
    step("another party asked for the lock back: releasing");
    guard.release().await?;

    section("RwLock: a writer downgrades to a reader");
    let rw = RwLock::new(&zk, "/locks/catalog", MutexOptions::default());
    let w = rw.write().acquire().await?;
    let r = rw.read().acquire().await?;
    w.release().await?;
    step("write released while the read lock stays held: readers may come in");
    r.release().await?;

    section("Semaphore sized by a SharedCounter, counter listeners");
    let size = SharedCounter::new(
        &zk,
        "/pool/size",
        zkit_recipes::counter::CounterOptions::default(),
    );
    size.set(2).await?;
    let mut size_changes = Box::pin(size.watch().await?.changes());
    let pool = Semaphore::new(&zk, "/pool/sem", SemaphoreOptions::max_from(size.clone()));
    let leases = pool.acquire_many(2, Duration::from_secs(10)).await?;
    step(&format!(
        "took {} leases; a third: {:?}",
        leases.len(),
        pool.try_acquire().await?.map(|_| ())
    ));
    size.set(3).await?;
    if let Some(v) = size_changes.next().await {
        step(&format!("listener: pool size is now {}", v.value));
    }
    let third = pool.acquire().await?;
    step("the raised size let a third lease in");
    third.release().await?;
    for l in leases {
        l.release().await?;
    }

    section("DistributedAtomicLong");
    let ids = DistributedAtomicLong::new(
        &zk,
        "/ids",
        AtomicLongOptions::default().promote_to_lock("/ids-lock"),
    );
    let v = ids.increment().await?;
    step(&format!(
        "increment: succeeded={} {} -> {}",
        v.succeeded, v.pre, v.post
    ));

    section("PersistentNode: kept in place when deleted");
    let kept = PersistentNode::start(
        &zk,
        "/workers/w1",
        zkit_recipes::persistent_node::PersistentNodeOptions::new(CreateMode::Ephemeral)
            .data("10.0.0.7"),
    )
    .await?;
    let mut presence = Box::pin(kept.changes());
    zk.delete("/workers/w1", None).await?;
    while !presence.next().await.unwrap_or(true) {}
    step(&format!("re-created: present={}", kept.present()));
    kept.close().await?;

    section("priority and delay queues");
    let pq = DistributedPriorityQueue::new(&zk, "/queues/p", QueueOptions::default());
    pq.put("routine", 10).await?;
    pq.put("urgent", -1).await?;
    let first = pq.take().await?;
    step(&format!(
        "first out: {}",
        String::from_utf8_lossy(first.data())
    ));
    first.complete().await?;
    let dq = DistributedDelayQueue::new(&zk, "/queues/d", QueueOptions::default());
    dq.put_after("retry", Duration::from_millis(300)).await?;
    let t = std::time::Instant::now();
    dq.take().await?.complete().await?;
    step(&format!(
        "delayed item came out after {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    ));

    section("SetPartitioner: 6 shards between 2 workers");
    let shards: Vec<String> = (0..6).map(|i| format!("shard-{i}")).collect();
    let opts = |id| PartitionerOptions::new(id).settle(Duration::from_millis(200));
    let a = SetPartitioner::start(&zk, "/partition", shards.clone(), opts("a")).await?;
    let b = SetPartitioner::start(&zk, "/partition", shards, opts("b")).await?;
    for (name, p) in [("a", &a), ("b", &b)] {
        loop {
            match p.state() {
                PartitionState::Acquired(mine) if mine.len() == 3 => {
                    step(&format!("worker {name}: {mine:?}"));
                    break;
                }
                PartitionState::Release => p.release(),
                _ => {}
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), p.wait_for_change()).await;
        }
    }

    section("ChildReaper: empty leftovers are removed");
    zk.create("/jobs", b"", &zkit::CreateOptions::persistent())
        .await?;
    zk.create("/jobs/done-1", b"", &zkit::CreateOptions::persistent())
        .await?;
    let reaper = ChildReaper::start(
        &zk,
        "/jobs",
        ReaperOptions::default().interval(Duration::from_millis(100)),
    );
    let mut reaped = Box::pin(reaper.changes());
    step(&format!(
        "reaped {} node(s)",
        reaped.next().await.unwrap_or(0)
    ));

    section("service discovery in Curator's JSON");
    let discovery = ServiceDiscovery::new(
        &zk,
        "/services",
        zkit_recipes::discovery::DiscoveryOptions::default(),
    );
    let _r = discovery
        .register(
            &ServiceInstance::new("search", "s1")
                .address("10.0.0.5")
                .port(8080),
        )
        .await?;
    let provider = discovery
        .provider(
            "search",
            ProviderOptions::default().strategy(ProviderStrategy::RoundRobin),
        )
        .await?;
    if let Some(i) = provider.instance() {
        step(&format!(
            "picked {} at {}:{}",
            i.id,
            i.address.unwrap_or_default(),
            i.port.unwrap_or(0)
        ));
    }
    println!("\ndone.");
    Ok(())
}
