//! [`DistributedQueue`]: a FIFO work queue of persistent-sequential nodes (Curator's
//! `DistributedQueue`, same `queue-` item names).
//!
//! A producer [`put`](DistributedQueue::put)s an item (a protected persistent-sequential create,
//! so a connection loss during the create neither loses nor duplicates it). A consumer
//! [`take`](DistributedQueue::take)s the lowest item, processes it and calls
//! [`QueueItem::complete`], which deletes it. Items are never deleted before they are processed,
//! so a consumer that dies mid-item loses nothing: delivery is **at least once**.
//!
//! With a lock path ([`QueueOptions::lock_path`], Curator's `lockPath`) a consumer first claims
//! the item with an ephemeral node `<lock_path>/<item>`; other consumers skip claimed items, and
//! completion deletes item and claim in one transaction. Each item is then handed to one consumer
//! at a time: exactly-once consumption while consumers live, and redelivery (to one consumer)
//! when the claimant's session ends before it completed. Without a lock path several consumers
//! may get the same item; use it for a single consumer or idempotent work.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::queue::{DistributedQueue, QueueOptions};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let jobs = DistributedQueue::new(&zk, "/queues/jobs", QueueOptions::default().lock_path("/queues/jobs-locks"));
//! jobs.put(b"resize image 17").await?;
//! let item = jobs.take().await?;
//! tokio::select! {
//!     reason = item.lost() => eprintln!("claim lost ({reason:?}); the item will be redelivered"),
//!     _ = process(item.data()) => item.complete().await?,
//! }
//! # Ok(()) }
//! # async fn process(_: &[u8]) {}
//! ```

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use zkit::path::join;
use zkit::{
    Client, CreateMode, CreateOptions, Error as ZkError, OneshotWatcher, Op, OpClass, RetryPolicy,
};

use crate::queue_kinds::{now_ms, Order};
use crate::state::{in_session, usable, LossMonitor, LossPolicy, LossReason, LossSignal};
use crate::znode::{
    delete_owned, delete_quietly, ensure_path, Cleanup, CleanupOnDrop, ProtectedCreate, Reaper,
};
use crate::{Error, Result};

/// Curator's queue item name (`DistributedQueue.QUEUE_ITEM_NAME`).
pub const QUEUE_ITEM_NAME: &str = "queue-";

/// Options of a [`DistributedQueue`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueOptions {
    /// Where consumers claim items (ephemeral nodes named after the item); `None`: no claims.
    pub lock_path: Option<String>,
    /// When a claimant must consider its claim gone (only with a lock path).
    pub loss_policy: LossPolicy,
    /// How the queue's reads and deletes are retried (default
    /// [`default_retry`](crate::znode::default_retry)).
    pub retry: RetryPolicy,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            lock_path: None,
            loss_policy: LossPolicy::default(),
            retry: crate::znode::default_retry(),
        }
    }
}

impl QueueOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Claims items under `path` before handing them out (exactly-once consumption).
    pub fn lock_path(mut self, path: &str) -> Self {
        self.lock_path = Some(path.to_owned());
        self
    }
    /// Sets the loss policy of claims.
    pub fn loss_policy(mut self, p: LossPolicy) -> Self {
        self.loss_policy = p;
        self
    }
}

/// A distributed FIFO queue. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DistributedQueue {
    client: Client,
    path: String,
    opts: QueueOptions,
    reaper: Arc<OnceLock<Reaper>>,
    /// How items are ordered and when they are due (FIFO, by priority, by time).
    order: Order,
}

impl DistributedQueue {
    /// A queue at `path` (created as a persistent node when missing).
    pub fn new(client: &Client, path: &str, options: QueueOptions) -> DistributedQueue {
        DistributedQueue {
            client: client.clone(),
            path: path.to_owned(),
            opts: options,
            reaper: Default::default(),
            order: Order::Fifo,
        }
    }

    /// The retry policy from the options (for the queue kinds built on this one).
    pub(crate) fn retry(&self) -> &RetryPolicy {
        &self.opts.retry
    }

    /// A queue whose items are ordered by `order` (the priority, delay and id queues).
    pub(crate) fn with_order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Adds an item named `queue-<suffix><seq>`.
    pub(crate) async fn put_named(&self, suffix: &str, data: &[u8]) -> Result<String> {
        ProtectedCreate::new(
            &self.path,
            &format!("{QUEUE_ITEM_NAME}{suffix}"),
            CreateMode::PersistentSequential,
        )
        .parent_mode(CreateMode::Persistent)
        .retry(self.opts.retry.clone())
        .create(&self.client, data)
        .await
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The queue's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Adds an item; returns its node's path.
    pub async fn put(&self, data: impl AsRef<[u8]>) -> Result<String> {
        ProtectedCreate::new(
            &self.path,
            QUEUE_ITEM_NAME,
            CreateMode::PersistentSequential,
        )
        .parent_mode(CreateMode::Persistent)
        .retry(self.opts.retry.clone())
        .create(&self.client, data.as_ref())
        .await
    }

    /// The items' node names in queue order (claimed ones included).
    pub async fn items(&self) -> Result<Vec<String>> {
        let c = &self.client;
        match self
            .opts
            .retry
            .run_on(c, OpClass::Read, || c.get_children(&self.path))
            .await
        {
            Ok(kids) => Ok(self.order.arrange(kids, None).0),
            Err(ZkError::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The number of items (claimed ones included).
    pub async fn len(&self) -> Result<usize> {
        Ok(self.items().await?.len())
    }

    /// Whether the queue has no items.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Waits for an item and hands out the lowest (unclaimed) one.
    pub async fn take(&self) -> Result<QueueItem> {
        self.take_inner(true)
            .await
            .map(|i| i.expect("blocking take"))
    }

    /// Like [`take`](Self::take), failing with [`Error::Timeout`] after `timeout`.
    pub async fn take_timeout(&self, timeout: Duration) -> Result<QueueItem> {
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.take_inner(true)).await {
            Ok(r) => r.map(|i| i.expect("blocking take")),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// The lowest (unclaimed) item if there is one now.
    pub async fn try_take(&self) -> Result<Option<QueueItem>> {
        self.take_inner(false).await
    }

    fn reaper(&self) -> &Reaper {
        self.reaper
            .get_or_init(|| Reaper::spawn(&self.client, &self.opts.retry))
    }

    async fn take_inner(&self, wait: bool) -> Result<Option<QueueItem>> {
        let c = &self.client;
        loop {
            // Subscribed before the reads: a reconnect after them makes us look again (an event
            // for a change made while the connection was down may never arrive).
            let states = c.state_changes();
            let (items, due, queue_watch) = match c.get_children_and_watch(&self.path).await {
                Ok((kids, _, w)) => {
                    let (items, due) = self.order.arrange(kids, Some(now_ms()));
                    (items, due, w)
                }
                Err(ZkError::NoNode) => {
                    ensure_path(c, &self.path, CreateMode::Persistent, &self.opts.retry).await?;
                    continue;
                }
                Err(e) => {
                    self.recover(e).await?;
                    continue;
                }
            };
            let mut lock_watch = None;
            if !items.is_empty() {
                match &self.opts.lock_path {
                    None => {
                        for name in &items {
                            let path = join(&self.path, name);
                            match self
                                .opts
                                .retry
                                .run_on(c, OpClass::Read, || c.get_data(&path))
                                .await
                            {
                                Ok((data, _)) => return Ok(Some(self.item(path, data, None))),
                                Err(ZkError::NoNode) => continue,
                                Err(e) => return Err(e.into()),
                            }
                        }
                        continue;
                    }
                    Some(lock_path) => {
                        // Watch the claims first: a release after this look must wake us.
                        let (claimed, w) = match c.get_children_and_watch(lock_path).await {
                            Ok((k, _, w)) => (k, w),
                            Err(ZkError::NoNode) => {
                                ensure_path(c, lock_path, CreateMode::Persistent, &self.opts.retry)
                                    .await?;
                                continue;
                            }
                            Err(e) => {
                                self.recover(e).await?;
                                continue;
                            }
                        };
                        lock_watch = Some(w);
                        for name in items.iter().filter(|n| !claimed.contains(n)) {
                            if let Some(item) = self.claim(lock_path, name).await? {
                                return Ok(Some(item));
                            }
                        }
                    }
                }
            }
            if !wait {
                return Ok(None);
            }
            // An item not due yet wakes us when it is.
            let due = async {
                match due {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wait_either(queue_watch, lock_watch, states) => {}
                _ = due => {}
            }
        }
    }

    async fn recover(&self, e: ZkError) -> Result<()> {
        if (e.is_retryable() || e.is_session_gone()) && usable(&self.client).await {
            Ok(())
        } else {
            Err(e.into())
        }
    }

    fn item(&self, path: String, data: Bytes, claim: Option<Claim>) -> QueueItem {
        QueueItem {
            queue: self.clone(),
            path,
            data,
            claim,
            done: false,
        }
    }

    /// Claims item `name`; `None` when another consumer has it or it is already done.
    async fn claim(&self, lock_path: &str, name: &str) -> Result<Option<QueueItem>> {
        let c = &self.client;
        let lock = join(lock_path, name);
        let session_id = c.session_id();
        // Only our own claim is removed: the create fails when another consumer holds the item.
        let mut cleanup = CleanupOnDrop::new(
            self.reaper(),
            Cleanup::DeleteOwned(lock.clone(), session_id),
        );
        // The ephemeral node is the claim; it goes with our session if we die mid-item.
        match c.create(&lock, b"", &CreateOptions::ephemeral()).await {
            Ok(_) => {}
            Err(ZkError::NodeExists) => {
                cleanup.disarm();
                return Ok(None);
            }
            Err(e) if e.is_retryable() => {
                // The create may have been applied: the claim is ours if our session owns it.
                crate::state::wait_connected(c).await?;
                match c.exists(&lock).await? {
                    Some(st) if st.ephemeral_owner == session_id => {}
                    Some(_) => {
                        cleanup.disarm();
                        return Ok(None);
                    }
                    None => {
                        cleanup.disarm();
                        return Ok(None);
                    }
                }
            }
            Err(e) => {
                cleanup.disarm();
                return Err(e.into());
            }
        }
        let path = join(&self.path, name);
        match self
            .opts
            .retry
            .run_on(c, OpClass::Read, || c.get_data(&path))
            .await
        {
            Ok((data, _)) => {
                cleanup.disarm();
                let (monitor, signal) =
                    LossMonitor::start(c, session_id, Some(lock.clone()), self.opts.loss_policy);
                tracing::debug!(item = %path, "claimed queue item");
                Ok(Some(self.item(
                    path,
                    data,
                    Some(Claim {
                        lock,
                        session_id,
                        monitor,
                        signal,
                    }),
                )))
            }
            // Completed by another consumer between our look and our claim.
            Err(ZkError::NoNode) => {
                drop(cleanup);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Waits for either watch, or for the connection to come back after a disconnect.
async fn wait_either(a: OneshotWatcher, b: Option<OneshotWatcher>, mut states: zkit::StateStream) {
    let b = async {
        match b {
            Some(b) => {
                let _ = b.await;
            }
            None => std::future::pending().await,
        }
    };
    let reconnected = async {
        let mut was_down = false;
        while let Some(s) = states.next().await {
            if !s.is_connected() {
                was_down = true;
            } else if was_down {
                return;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = a => {}
        _ = b => {}
        _ = reconnected => {}
    }
}

#[derive(Debug)]
struct Claim {
    lock: String,
    /// The session that owns the claim node. Once the client runs another session, a node at
    /// `lock` may be another consumer's claim: it must not be deleted (nor the item completed).
    session_id: i64,
    monitor: LossMonitor,
    signal: LossSignal,
}

/// An item handed out by [`DistributedQueue::take`]. Call [`complete`](Self::complete) once it is
/// processed; dropping it (or [`release`](Self::release)) gives it back for redelivery.
#[derive(Debug)]
#[must_use = "an item that is not completed is delivered again"]
pub struct QueueItem {
    queue: DistributedQueue,
    path: String,
    data: Bytes,
    claim: Option<Claim>,
    done: bool,
}

impl QueueItem {
    /// The item's data.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The item's node path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Resolves when the claim on the item is (or may be) lost, so it may be redelivered to
    /// another consumer; never resolves without a lock path.
    pub async fn lost(&self) -> LossReason {
        match &self.claim {
            Some(c) => c.signal.lost().await,
            None => std::future::pending().await,
        }
    }

    /// Deletes the item (and its claim, in the same transaction). Fails with [`Error::Lost`] when
    /// the claim is gone (the item stays for redelivery).
    pub async fn complete(mut self) -> Result<()> {
        self.done = true;
        let c = &self.queue.client;
        let Some(claim) = &self.claim else {
            return Ok(delete_quietly(c, &self.path, &self.queue.opts.retry).await?);
        };
        let ops = || vec![Op::delete(&claim.lock, None), Op::delete(&self.path, None)];
        let lost = || {
            claim.monitor.finish(LossReason::SessionChanged);
            Err(Error::Lost(
                claim.signal.reason().unwrap_or(LossReason::SessionChanged),
            ))
        };
        // Checked right before each request is queued: a request never runs on a newer session.
        if !in_session(c, claim.session_id) {
            return lost();
        }
        let r = match c.multi(ops()).await {
            Err(e) if e.is_retryable() => {
                crate::state::wait_connected(c).await?;
                if !in_session(c, claim.session_id) {
                    return lost();
                }
                match c.multi(ops()).await {
                    // The first attempt was applied.
                    Err(ZkError::MultiAborted {
                        index: 0, error, ..
                    }) if *error == ZkError::NoNode && c.exists(&self.path).await?.is_none() => {
                        Ok(Vec::new())
                    }
                    r => r,
                }
            }
            r => r,
        };
        claim.monitor.finish(LossReason::Released);
        match r {
            Ok(_) => Ok(()),
            Err(ZkError::MultiAborted { index: 0, .. }) => Err(Error::Lost(
                claim.signal.reason().unwrap_or(LossReason::NodeDeleted),
            )),
            Err(e) if e.is_session_gone() => Err(Error::Lost(LossReason::SessionExpired)),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the item back without processing it (deletes the claim); it is delivered again.
    pub async fn release(mut self) -> Result<()> {
        self.done = true;
        if let Some(claim) = &self.claim {
            claim.monitor.finish(LossReason::Released);
            match delete_owned(&self.queue.client, &claim.lock, claim.session_id).await {
                Ok(()) => {}
                Err(e) if e.is_session_gone() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl Drop for QueueItem {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(claim) = &self.claim {
            claim.monitor.finish(LossReason::Released);
            self.queue
                .reaper()
                .submit(Cleanup::DeleteOwned(claim.lock.clone(), claim.session_id));
        }
    }
}
