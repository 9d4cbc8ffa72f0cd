//! `zkit-recipes`: distributed coordination recipes built only on the public `zkit` API.
//!
//! | module | recipes |
//! |---|---|
//! | [`state`] | the connection-state model (Connected / Suspended / Reconnected / Lost), loss policies and signals |
//! | [`znode`] | protected sequential creation, sequence ordering, parent creation |
//! | [`lock`] | [`Mutex`] (Curator-compatible node names) |
//! | [`fencing`] | [`FencingToken`](fencing::FencingToken) and fenced multis for lock holders |
//! | [`rwlock`] | [`RwLock`](rwlock::RwLock) (readers and writers, writers not starved) |
//! | [`semaphore`] | [`Semaphore`](semaphore::Semaphore) (N leases) |
//! | [`revoke`] | lock revocation: [`attempt_revoke`](revoke::attempt_revoke), [`MutexGuard::revocation_requested`] |
//! | [`child_reaper`] | [`ChildReaper`](child_reaper::ChildReaper), [`Reaper`](child_reaper::Reaper) (delete nodes that stay empty) |
//! | [`multilock`] | [`MultiLock`](multilock::MultiLock) (several locks, all or nothing) |
//! | [`leader`] | [`LeaderLatch`](leader::LeaderLatch), [`LeaderSelector`](leader::LeaderSelector) |
//! | [`cache`] | [`NodeCache`](cache::NodeCache) |
//! | [`treecache`] | [`TreeCache`](treecache::TreeCache) (a subtree in memory, persistent recursive watch) |
//! | [`persistent_node`] | [`PersistentNode`](persistent_node::PersistentNode), [`PersistentTtlNode`](persistent_node::PersistentTtlNode) (kept across deletion and expiry) |
//! | [`partitioner`] | [`SetPartitioner`](partitioner::SetPartitioner) (kazoo's: a set divided among group members, with rebalance) |
//! | [`group`] | [`GroupMember`](group::GroupMember) |
//! | [`discovery`] | [`ServiceDiscovery`](discovery::ServiceDiscovery) (ephemeral instances with raw bytes) |
//! | [`service`] | [`ServiceDiscovery`](service::ServiceDiscovery) in Curator's JSON, [`ServiceCache`](service::ServiceCache), [`ServiceProvider`](service::ServiceProvider) |
//! | [`counter`] | [`SharedCounter`](counter::SharedCounter) (compare-and-set) |
//! | [`atomic_long`] | [`DistributedAtomicLong`](atomic_long::DistributedAtomicLong) (optimistic, then promoted to a lock) |
//! | [`counter_watch`] | [`CounterWatch`](counter_watch::CounterWatch) (a counter's value and a `Stream` of changes) |
//! | [`config`] | [`ConfigWatch`](config::ConfigWatch) |
//! | [`queue`] | [`DistributedQueue`](queue::DistributedQueue) |
//! | [`queue_kinds`] | [`DistributedPriorityQueue`](queue_kinds::DistributedPriorityQueue), [`DistributedDelayQueue`](queue_kinds::DistributedDelayQueue), [`DistributedIdQueue`](queue_kinds::DistributedIdQueue) |
//! | [`barrier`] | [`Barrier`](barrier::Barrier), [`DoubleBarrier`](barrier::DoubleBarrier) |
//!
//! Every recipe has the same shape: `Recipe::new(client, path, options)`, async methods to
//! acquire or wait, a guard whose `Drop` releases best-effort and an `async fn release()` when the
//! caller must know it happened. Loss of the session is never silent.
//!
//! Recipes survive session expiry (caches re-read, latches re-join, group members re-register)
//! on a client that re-creates its session, which is the default; with
//! [`recreate_on_expiry(false)`](zkit::ClientBuilder::recreate_on_expiry) an expiry ends them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod atomic_long;
pub mod backup;
pub mod barrier;
pub mod cache;
pub mod child_reaper;
pub mod config;
pub mod counter;
pub mod counter_watch;
pub mod discovery;
pub mod error;
pub mod fencing;
pub mod group;
pub mod leader;
pub mod lock;
pub mod multilock;
pub mod partitioner;
pub mod persistent_node;
mod pipeline;
pub mod queue;
mod queue_core;
pub mod queue_kinds;
pub mod revoke;
pub mod rwlock;
pub mod semaphore;
pub mod service;
pub mod state;
pub mod treecache;
pub mod znode;

pub use error::{Error, Result};
pub use lock::{Mutex, MutexGuard, MutexOptions};
pub use state::{ConnectionState, LossPolicy, LossReason, LossSignal};
