//! `zkit-recipes`: distributed coordination recipes built only on the public `zkit` API.
//!
//! | module | recipes |
//! |---|---|
//! | [`state`] | the connection-state model (Connected / Suspended / Reconnected / Lost), loss policies and signals |
//! | [`znode`] | protected sequential creation, sequence ordering, parent creation |
//! | [`lock`] | [`Mutex`](lock::Mutex) (Curator-compatible node names) |
//! | [`leader`] | [`LeaderLatch`](leader::LeaderLatch), [`LeaderSelector`](leader::LeaderSelector) |
//! | [`cache`] | [`NodeCache`](cache::NodeCache) |
//! | [`config`] | [`ConfigWatch`](config::ConfigWatch) |
//! | [`queue`] | [`DistributedQueue`](queue::DistributedQueue) |
//! | [`barrier`] | [`Barrier`](barrier::Barrier), [`DoubleBarrier`](barrier::DoubleBarrier) |
//!
//! Every recipe has the same shape: `Recipe::new(client, path, options)`, async methods to
//! acquire or wait, a guard whose `Drop` releases best-effort and an `async fn release()` when the
//! caller must know it happened. Loss of the session is never silent.
//!
//! Recipes that must survive session expiry (caches, config watches, leader latches) expect a
//! client built with [`recreate_on_expiry(true)`](zkit::ClientBuilder::recreate_on_expiry).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod barrier;
pub mod cache;
pub mod config;
pub mod error;
pub mod leader;
pub mod lock;
pub mod queue;
pub mod state;
pub mod znode;

pub use error::{Error, Result};
pub use lock::{Mutex, MutexGuard, MutexOptions};
pub use state::{ConnectionState, LossPolicy, LossReason, LossSignal};
