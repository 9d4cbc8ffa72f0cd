//! [`Mutex`]: a distributed, re-entrant mutual-exclusion lock (Curator's `InterProcessMutex`).
//!
//! Each contender creates an ephemeral-sequential node `<path>/_c_<uuid>-lock-<seq>`; the lowest
//! sequence holds the lock, and every other contender watches only the node just before its own,
//! so a release wakes exactly one waiter (no herd effect). The names are Curator's, so a Java
//! service using `InterProcessMutex` on the same path takes part in the same queue; kazoo `Lock`
//! nodes (`<hex>__lock__<seq>`) are recognised as contenders too.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use std::time::Duration;
//! use zkit_recipes::lock::{Mutex, MutexOptions};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let mutex = Mutex::new(&zk, "/locks/reports", MutexOptions::default());
//! let guard = mutex.acquire_timeout(Duration::from_secs(5)).await?;
//! tokio::select! {
//!     reason = guard.lost() => eprintln!("lock lost ({reason:?}): stop writing"),
//!     _ = write_report() => {}
//! }
//! guard.release().await?;
//! # Ok(()) }
//! # async fn write_report() {}
//! ```
//!
//! * Re-entrant: while a `Mutex` value holds the lock, `acquire` on the same value succeeds at
//!   once and returns another guard; the node is deleted when the last guard is released. Use one
//!   `Mutex` value per independent contender.
//! * Cancellation: dropping an `acquire` future (or hitting its timeout) removes the node it
//!   created, even when the create was still in flight.
//! * Loss: [`MutexGuard::lost`] resolves when the lock is (or may be) gone, per [`LossPolicy`].

use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use zkit::{Client, CreateMode, Error as ZkError, OpClass, RetryPolicy};

use crate::fencing::{fenced_multi, FencingToken};
use crate::pipeline::{create_and_list, Queued};
use crate::queue_core::{wait_for_turn, Interrupted, Line, Waiter};
use crate::state::{
    wait_connected, why_node_gone, LossMonitor, LossPolicy, LossReason, LossSignal,
};
use crate::znode::{
    delete_quietly, sorted_members, Cleanup, CleanupOnDrop, ProtectedCreate, Reaper,
};
use crate::{Error, Result};

/// Curator's lock-node name (`InterProcessMutex`'s `LOCK_NAME`).
pub const LOCK_NAME: &str = "lock-";
/// kazoo's lock-node name.
pub const KAZOO_LOCK_NAME: &str = "__lock__";

/// Options of a [`Mutex`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MutexOptions {
    /// When a holder must consider the lock gone.
    pub loss_policy: LossPolicy,
    /// Bytes stored in the lock node (an identifier other contenders can read).
    pub data: Vec<u8>,
    /// How the lock's reads and clean-up deletes are retried (default
    /// [`default_retry`](crate::znode::default_retry)).
    pub retry: RetryPolicy,
}

impl Default for MutexOptions {
    fn default() -> Self {
        MutexOptions {
            loss_policy: LossPolicy::default(),
            data: Vec::new(),
            retry: crate::znode::default_retry(),
        }
    }
}

impl MutexOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Sets the loss policy.
    pub fn loss_policy(mut self, p: LossPolicy) -> Self {
        self.loss_policy = p;
        self
    }
    /// Sets the node's data.
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }
}

/// A distributed re-entrant lock. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Mutex {
    inner: Arc<Inner>,
}

/// How a lock node decides whether it holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Exclusive among `lock-` (and kazoo `__lock__`) nodes.
    Mutex,
    /// Exclusive among `__READ__` and `__WRIT__` nodes (a write lock).
    Write,
    /// Shared: held unless a `__WRIT__` node comes before it (a read lock).
    Read,
}

/// Curator's `InterProcessReadWriteLock` read-node name.
pub const READ_LOCK_NAME: &str = "__READ__";
/// Curator's `InterProcessReadWriteLock` write-node name.
pub const WRITE_LOCK_NAME: &str = "__WRIT__";

#[derive(Debug)]
struct Inner {
    client: Client,
    path: String,
    lock_name: String,
    flavor: Flavor,
    opts: MutexOptions,
    /// Serialises acquisitions through this value, so re-entrancy is well defined.
    acquiring: tokio::sync::Mutex<()>,
    held: StdMutex<Option<Held>>,
    reaper: OnceLock<Reaper>,
    /// For a read lock: the write side of the same [`RwLock`](crate::rwlock::RwLock), whose
    /// node does not block this side (a writer may take the read lock, then downgrade).
    writer: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Held {
    node: String,
    czxid: i64,
    session_id: i64,
    count: usize,
    monitor: Arc<LossMonitor>,
    signal: LossSignal,
}

/// Whether a child of a lock directory is a lock contender (Curator, zkit or kazoo naming).
pub fn is_lock_node(name: &str) -> bool {
    name.contains(LOCK_NAME) || name.contains(KAZOO_LOCK_NAME)
}

impl Mutex {
    /// A lock at `path` (created as a container when missing).
    pub fn new(client: &Client, path: &str, options: MutexOptions) -> Mutex {
        Self::with_lock_name(client, path, LOCK_NAME, options)
    }

    /// A lock whose nodes are named `<lock_name><seq>` (for recipes built on the lock).
    pub(crate) fn with_lock_name(
        client: &Client,
        path: &str,
        lock_name: &str,
        options: MutexOptions,
    ) -> Mutex {
        let flavor = match lock_name {
            READ_LOCK_NAME => Flavor::Read,
            WRITE_LOCK_NAME => Flavor::Write,
            _ => Flavor::Mutex,
        };
        Mutex {
            inner: Arc::new(Inner {
                client: client.clone(),
                path: path.to_owned(),
                lock_name: lock_name.to_owned(),
                flavor,
                opts: options,
                acquiring: tokio::sync::Mutex::new(()),
                held: StdMutex::new(None),
                reaper: OnceLock::new(),
                writer: None,
            }),
        }
    }

    /// The read side of a readers-writer lock whose write side is `writer`.
    pub(crate) fn reader_of(writer: &Mutex, options: MutexOptions) -> Mutex {
        let w = &writer.inner;
        let mut read = Self::with_lock_name(&w.client, &w.path, READ_LOCK_NAME, options);
        if let Some(inner) = Arc::get_mut(&mut read.inner) {
            inner.writer = Some(w.clone());
        }
        read
    }

    /// The name of the node this value holds, if it holds one.
    fn held_name(&self) -> Option<String> {
        let held = self.inner.held.lock().ok()?;
        held.as_ref()
            .map(|h| zkit::path::basename(&h.node).to_owned())
    }

    /// The lock's path.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// Waits for the lock for as long as it takes.
    pub async fn acquire(&self) -> Result<MutexGuard> {
        self.acquire_inner(None, true)
            .await
            .map(|g| g.expect("blocking acquire"))
    }

    /// Waits for the lock at most `timeout`; on timeout returns [`Error::Timeout`] and leaves no
    /// node behind.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<MutexGuard> {
        let deadline = Instant::now() + timeout;
        self.acquire_inner(Some(deadline), true)
            .await
            .map(|g| g.expect("blocking acquire"))
    }

    /// Takes the lock if it is free right now (one round trip to queue, one to look).
    pub async fn try_acquire(&self) -> Result<Option<MutexGuard>> {
        self.acquire_inner(None, false).await
    }

    /// Whether this value holds the lock.
    pub fn is_held(&self) -> bool {
        self.inner
            .held
            .lock()
            .map(|h| h.as_ref().is_some_and(|h| !h.signal.is_lost()))
            .unwrap_or(false)
    }

    /// The contenders' node names in queue order (the holder first).
    pub async fn contenders(&self) -> Result<Vec<String>> {
        let c = &self.inner.client;
        match self
            .inner
            .opts
            .retry
            .run_on(c, OpClass::Read, || c.get_children(&self.inner.path))
            .await
        {
            Ok(kids) => Ok(sorted_members(kids, |n| self.is_member(n))),
            Err(ZkError::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn reaper(&self) -> &Reaper {
        self.inner
            .reaper
            .get_or_init(|| Reaper::spawn(&self.inner.client, &self.inner.opts.retry))
    }

    fn reenter(&self) -> Result<Option<MutexGuard>> {
        let mut held = self.inner.held.lock().expect("lock state poisoned");
        if let Some(h) = held.as_mut() {
            if let Some(r) = h.signal.reason() {
                return Err(Error::Lost(r));
            }
            h.count += 1;
            return Ok(Some(MutexGuard {
                inner: self.inner.clone(),
                node: h.node.clone(),
                token: FencingToken(h.czxid),
                session_id: h.session_id,
                signal: h.signal.clone(),
                done: false,
            }));
        }
        Ok(None)
    }

    async fn acquire_inner(
        &self,
        deadline: Option<Instant>,
        wait: bool,
    ) -> Result<Option<MutexGuard>> {
        let _serial = match deadline {
            Some(d) => tokio::time::timeout_at(d, self.inner.acquiring.lock())
                .await
                .map_err(|_| Error::Timeout)?,
            None => self.inner.acquiring.lock().await,
        };
        if let Some(g) = self.reenter()? {
            return Ok(Some(g));
        }
        let client = &self.inner.client;
        let pc = ProtectedCreate::new(
            &self.inner.path,
            &self.inner.lock_name,
            CreateMode::EphemeralSequential,
        )
        .retry(self.inner.opts.retry.clone());
        let mut cleanup = CleanupOnDrop::new(self.reaper(), Cleanup::Prefix(pc.clone()));
        let mut waiter = Deadline { deadline, wait };
        let (node, czxid, at_head) = waiter
            .bounded(self.queue(&pc))
            .await
            .map_err(|_| Error::Timeout)??;
        cleanup.set(Cleanup::Delete(node.clone()));
        // Read after the create: a client that re-created its session meanwhile made the node
        // in the new one.
        let session_id = client.session_id();
        let turn = if at_head {
            Ok(())
        } else {
            wait_for_turn(
                client,
                &self.inner.path,
                self,
                &node,
                session_id,
                &mut waiter,
            )
            .await
        };
        match turn {
            Ok(()) => {}
            Err(Interrupted::Stopped(Stop::Timeout)) => return Err(Error::Timeout),
            Err(Interrupted::Stopped(Stop::Busy)) => {
                drop(cleanup);
                return Ok(None);
            }
            Err(Interrupted::Gone(reason)) => {
                cleanup.disarm();
                return Err(Error::Lost(reason));
            }
            Err(Interrupted::Failed(e) | Interrupted::WatchFailed(e)) => return Err(e.into()),
        }
        cleanup.disarm();
        let czxid = match czxid {
            Some(z) => z,
            None => match self
                .inner
                .opts
                .retry
                .run_on(client, OpClass::Read, || client.exists(&node))
                .await?
            {
                Some(st) => st.czxid,
                None => return Err(Error::Lost(why_node_gone(client, session_id))),
            },
        };
        let (monitor, signal) = LossMonitor::start(
            client,
            session_id,
            Some(node.clone()),
            self.inner.opts.loss_policy,
        );
        *self.inner.held.lock().expect("lock state poisoned") = Some(Held {
            node: node.clone(),
            czxid,
            session_id,
            count: 1,
            monitor: Arc::new(monitor),
            signal: signal.clone(),
        });
        tracing::debug!(node = %node, "lock acquired");
        Ok(Some(MutexGuard {
            inner: self.inner.clone(),
            node,
            token: FencingToken(czxid),
            session_id,
            signal,
            done: false,
        }))
    }

    /// Queues our node and says whether it is at the head of the line: the create and the
    /// listing pipelined in one round trip when the lock's node exists (see
    /// [`pipeline`](crate::pipeline)); step by step, through a protected create that finds its
    /// node again after a connection loss, otherwise. Returns the node, its czxid when known,
    /// and whether it holds the lock.
    async fn queue(&self, pc: &ProtectedCreate) -> Result<(String, Option<i64>, bool)> {
        let client = &self.inner.client;
        let name = format!("{}{}", pc.prefix(), self.inner.lock_name);
        let data = &self.inner.opts.data;
        let mode = CreateMode::EphemeralSequential;
        let node = match create_and_list(client, pc.parent(), &name, mode, data).await? {
            Queued::Listed {
                node,
                czxid,
                children: Some(kids),
            } => {
                let queue = sorted_members(kids, |n| self.is_member(n));
                let ours = zkit::path::basename(&node);
                // Our create is applied before the listing is served: we are in it.
                let head = queue
                    .iter()
                    .position(|n| n == ours)
                    .is_some_and(|i| self.blocker(&queue, i).is_none());
                return Ok((node, Some(czxid), head));
            }
            Queued::Listed { node, czxid, .. } => return Ok((node, Some(czxid), false)),
            Queued::NoParent => None,
            Queued::Unknown => {
                wait_connected(client).await?;
                pc.find(client).await?
            }
        };
        let node = match node {
            Some(n) => n,
            None => pc.create(client, data).await?,
        };
        Ok((node, None, false))
    }
}

impl Line for Mutex {
    fn is_member(&self, name: &str) -> bool {
        match self.inner.flavor {
            Flavor::Read | Flavor::Write => {
                name.contains(READ_LOCK_NAME) || name.contains(WRITE_LOCK_NAME)
            }
            Flavor::Mutex if self.inner.lock_name == LOCK_NAME => is_lock_node(name),
            Flavor::Mutex => name.contains(&self.inner.lock_name),
        }
    }

    fn blocker(&self, queue: &[String], idx: usize) -> Option<usize> {
        match self.inner.flavor {
            Flavor::Mutex | Flavor::Write => idx.checked_sub(1),
            // A reader waits only for the nearest writer queued before it, other than its own
            // write side's node (re-entrancy across sides, as Curator's).
            Flavor::Read => {
                let own = self
                    .inner
                    .writer
                    .as_ref()
                    .and_then(|w| Mutex { inner: w.clone() }.held_name());
                queue[..idx]
                    .iter()
                    .rposition(|n| n.contains(WRITE_LOCK_NAME) && Some(n) != own.as_ref())
            }
        }
    }
}

/// Why a wait for the lock stopped short.
enum Stop {
    /// The deadline passed.
    Timeout,
    /// The lock is taken and the caller will not wait (`try_acquire`).
    Busy,
}

/// Bounds the waits of an acquisition by its deadline; refuses to queue for `try_acquire`.
struct Deadline {
    deadline: Option<Instant>,
    wait: bool,
}

impl Waiter for Deadline {
    type Stop = Stop;

    async fn connection<T>(&mut self, wait: impl Future<Output = T>) -> Result<T, Stop> {
        self.bounded(wait).await
    }

    async fn blocker<T>(&mut self, wait: impl Future<Output = T>) -> Result<T, Stop> {
        self.bounded(wait).await
    }

    fn behind(&mut self, _blocker: &str) -> Result<(), Stop> {
        if self.wait {
            Ok(())
        } else {
            Err(Stop::Busy)
        }
    }
}

impl Deadline {
    async fn bounded<T>(&self, wait: impl Future<Output = T>) -> Result<T, Stop> {
        match self.deadline {
            Some(d) => tokio::time::timeout_at(d, wait)
                .await
                .map_err(|_| Stop::Timeout),
            None => Ok(wait.await),
        }
    }
}

/// Proof of holding a [`Mutex`]. Release it with [`release`](Self::release) to know the node is
/// gone; dropping it releases in the background.
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock"]
pub struct MutexGuard {
    inner: Arc<Inner>,
    node: String,
    token: FencingToken,
    session_id: i64,
    signal: LossSignal,
    done: bool,
}

impl MutexGuard {
    /// The lock node's path.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn client(&self) -> &Client {
        &self.inner.client
    }

    /// This hold's [fencing token](crate::fencing): the lock node's czxid, greater than every
    /// earlier holder's.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// Runs `ops` in one multi that applies only while this lock is held (a check on the lock
    /// node goes first); fails with [`Error::Lost`] when the lock is gone. See
    /// [`fencing`](crate::fencing).
    pub async fn fenced_multi(&self, ops: Vec<zkit::Op>) -> Result<Vec<zkit::OpResult>> {
        fenced_multi(&self.inner.client, &self.node, self.session_id, ops).await
    }

    /// Resolves when the lock is (or may be) lost; select on it next to the protected work.
    pub async fn lost(&self) -> LossReason {
        self.signal.lost().await
    }

    /// The loss signal, to hand to other tasks.
    pub fn loss_signal(&self) -> LossSignal {
        self.signal.clone()
    }

    /// Whether the lock is still held (no loss reported).
    pub fn is_held(&self) -> bool {
        !self.signal.is_lost()
    }

    /// Releases this hold; when it is the last one, deletes the node and waits for the server.
    pub async fn release(mut self) -> Result<()> {
        self.done = true;
        if let Some(node) = self.unhold() {
            match delete_quietly(&self.inner.client, &node, &self.inner.opts.retry).await {
                Ok(()) => {}
                // The session is gone, and its ephemeral with it.
                Err(e) if e.is_session_gone() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Decrements the hold count; returns the node to delete when this was the last hold.
    fn unhold(&self) -> Option<String> {
        let mut held = self.inner.held.lock().ok()?;
        let h = held.as_mut()?;
        if h.node != self.node {
            return None;
        }
        h.count -= 1;
        if h.count > 0 {
            return None;
        }
        h.monitor.finish(LossReason::Released);
        held.take().map(|h| h.node)
    }
}

impl Drop for MutexGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(node) = self.unhold() {
            if let Some(r) = self.inner.reaper.get() {
                r.submit(Cleanup::Delete(node));
            }
        }
    }
}
