//! [`Semaphore`]: at most N holders at a time (Curator's `InterProcessSemaphoreV2`, same
//! `locks` / `leases` layout and `lease-` node names).
//!
//! A lease is an ephemeral-sequential node under `<path>/leases`. To take one, a contender first
//! takes the internal [`Mutex`] at `<path>/locks` (so contenders line up in order, without a
//! herd), adds its lease node and, while there are more than N lease nodes, waits for a change of
//! the lease list; then it releases the internal mutex. A lease ends when its holder releases it
//! or its session ends.
//!
//! Several leases at once ([`Semaphore::acquire_many`]), a lease only if one is free now
//! ([`Semaphore::try_acquire`]), and a maximum read from a [`SharedCounter`]
//! ([`SemaphoreOptions::max_from`], Curator's `SharedCountReader` form) are there too.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::semaphore::{Semaphore, SemaphoreOptions};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let pool = Semaphore::new(&zk, "/semaphores/db", SemaphoreOptions::new(5));
//! let lease = pool.acquire().await?;
//! tokio::select! {
//!     reason = lease.lost() => eprintln!("lease lost: {reason:?}"),
//!     _ = query_the_database() => {}
//! }
//! lease.release().await?;
//! # Ok(()) }
//! # async fn query_the_database() {}
//! ```

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use zkit::path::{basename, join};
use zkit::{Client, CreateMode, Error as ZkError, OpClass, RetryPolicy};

use crate::counter::SharedCounter;
use crate::lock::{Mutex, MutexOptions};
use crate::state::{
    wait_connected, why_node_gone, LossMonitor, LossPolicy, LossReason, LossSignal,
};
use crate::znode::{delete_quietly, Cleanup, CleanupOnDrop, ProtectedCreate, Reaper};
use crate::{Error, Result};

/// Curator's lease-node name.
pub const LEASE_NAME: &str = "lease-";

/// Options of a [`Semaphore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SemaphoreOptions {
    /// How many leases may be held at once (unless `max_leases_from` is set).
    pub max_leases: usize,
    /// Read the maximum from this counter instead, at every look (Curator's
    /// `SharedCountReader` form): raising it lets waiters in, lowering it holds new ones back.
    pub max_leases_from: Option<SharedCounter>,
    /// When a lease holder must consider its lease gone.
    pub loss_policy: LossPolicy,
    /// Bytes stored in each lease node.
    pub data: Vec<u8>,
    /// How reads and clean-up deletes are retried (default
    /// [`default_retry`](crate::znode::default_retry)); the internal lock uses it too.
    pub retry: RetryPolicy,
}

impl SemaphoreOptions {
    /// Options for `max_leases` leases.
    pub fn new(max_leases: usize) -> Self {
        SemaphoreOptions {
            max_leases,
            max_leases_from: None,
            loss_policy: LossPolicy::default(),
            data: Vec::new(),
            retry: crate::znode::default_retry(),
        }
    }
    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Options whose maximum is the value of `counter` (a missing counter node means 0).
    pub fn max_from(counter: SharedCounter) -> Self {
        SemaphoreOptions {
            max_leases_from: Some(counter),
            ..Self::new(0)
        }
    }
    /// Sets the loss policy.
    pub fn loss_policy(mut self, p: LossPolicy) -> Self {
        self.loss_policy = p;
        self
    }
    /// Sets the lease nodes' data.
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }
}

/// A distributed counting semaphore. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Semaphore {
    client: Client,
    leases: String,
    /// The internal lock's path. Each acquisition takes it through a `Mutex` value of its own:
    /// a shared value would be re-entrant, letting concurrent acquirers through together.
    locks: String,
    opts: SemaphoreOptions,
    reaper: Arc<OnceLock<Reaper>>,
}

impl Semaphore {
    /// A semaphore at `path` (its nodes are created as containers when missing).
    pub fn new(client: &Client, path: &str, options: SemaphoreOptions) -> Semaphore {
        Semaphore {
            client: client.clone(),
            leases: join(path, "leases"),
            locks: join(path, "locks"),
            opts: options,
            reaper: Default::default(),
        }
    }

    /// The lease nodes present now.
    pub async fn leases(&self) -> Result<Vec<String>> {
        let c = &self.client;
        match self
            .opts
            .retry
            .run_on(c, OpClass::Read, || c.get_children(&self.leases))
            .await
        {
            Ok(k) => Ok(k.into_iter().filter(|n| n.contains(LEASE_NAME)).collect()),
            Err(ZkError::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for a lease.
    pub async fn acquire(&self) -> Result<Lease> {
        self.acquire_inner(None, true)
            .await
            .map(|l| l.expect("waiting acquire"))
    }

    /// Waits for a lease at most `timeout`; on timeout returns [`Error::Timeout`] and leaves no
    /// node behind.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Lease> {
        self.acquire_inner(Some(Instant::now() + timeout), true)
            .await
            .map(|l| l.expect("waiting acquire"))
    }

    /// Takes a lease if one is free now, without waiting for one to be released.
    pub async fn try_acquire(&self) -> Result<Option<Lease>> {
        self.acquire_inner(None, false).await
    }

    /// Takes `n` leases, all within `timeout` or none: on failure the leases taken so far are
    /// released (Curator's `acquire(qty, time, unit)`).
    pub async fn acquire_many(&self, n: usize, timeout: Duration) -> Result<Vec<Lease>> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(n);
        for _ in 0..n {
            match self.acquire_inner(Some(deadline), true).await {
                Ok(Some(l)) => got.push(l),
                Ok(None) => unreachable!("a waiting acquire returns a lease or an error"),
                Err(e) => {
                    for l in got {
                        let _ = l.release().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(got)
    }

    /// The maximum number of leases now.
    pub async fn max_leases(&self) -> Result<usize> {
        match &self.opts.max_leases_from {
            Some(c) => Ok(usize::try_from(c.get().await?.value).unwrap_or(0)),
            None => Ok(self.opts.max_leases),
        }
    }

    fn reaper(&self) -> &Reaper {
        self.reaper
            .get_or_init(|| Reaper::spawn(&self.client, &self.opts.retry))
    }

    async fn acquire_inner(&self, deadline: Option<Instant>, wait: bool) -> Result<Option<Lease>> {
        if self.opts.max_leases == 0 && self.opts.max_leases_from.is_none() {
            return Err(Error::InvalidArgument("a semaphore needs leases".into()));
        }
        let c = &self.client;
        let pc = ProtectedCreate::new(&self.leases, LEASE_NAME, CreateMode::EphemeralSequential)
            .retry(self.opts.retry.clone());
        let mut cleanup = CleanupOnDrop::new(self.reaper(), Cleanup::Prefix(pc.clone()));
        let work = async {
            let gate = Mutex::new(
                c,
                &self.locks,
                MutexOptions::default().retry(self.opts.retry.clone()),
            )
            .acquire()
            .await?;
            let node = pc.create(c, &self.opts.data).await?;
            cleanup.set(Cleanup::Delete(node.clone()));
            let session_id = c.session_id();
            let ours = basename(&node).to_owned();
            loop {
                let (kids, w) = match c.get_children_and_watch(&self.leases).await {
                    Ok((k, _, w)) => (k, w),
                    Err(e) if e.is_retryable() => {
                        wait_connected(c).await?;
                        continue;
                    }
                    Err(e) => return Err(Error::from(e)),
                };
                let kids: Vec<String> = kids
                    .into_iter()
                    .filter(|n| n.contains(LEASE_NAME))
                    .collect();
                if !kids.contains(&ours) {
                    return Err(Error::Lost(why_node_gone(c, session_id)));
                }
                if kids.len() <= self.max_leases().await? {
                    break;
                }
                if !wait {
                    delete_quietly(c, &node, &self.opts.retry).await?;
                    let _ = gate.release().await;
                    return Ok(None);
                }
                tracing::debug!(node = %node, leases = kids.len(), "waiting for a lease");
                // A change of the maximum counts as a change too.
                let max_changed = async {
                    match &self.opts.max_leases_from {
                        Some(counter) => match c.exists_and_watch(counter.path()).await {
                            Ok((_, mw)) => mw.await.map(|_| ()),
                            Err(e) => Err(e),
                        },
                        None => std::future::pending().await,
                    }
                };
                let r = tokio::select! {
                    r = w => r.map(|_| ()),
                    r = max_changed => r,
                };
                if let Err(e) = r {
                    if e.is_session_gone() {
                        return Err(e.into());
                    }
                }
            }
            // Let the next contender in line look; a failure to release is harmless (the
            // internal lock node is ephemeral).
            let _ = gate.release().await;
            Ok(Some((node, session_id)))
        };
        let got = match deadline {
            Some(d) => tokio::time::timeout_at(d, work)
                .await
                .map_err(|_| Error::Timeout)??,
            None => work.await?,
        };
        let Some((node, session_id)) = got else {
            return Ok(None);
        };
        cleanup.disarm();
        let (monitor, signal) =
            LossMonitor::start(c, session_id, Some(node.clone()), self.opts.loss_policy);
        Ok(Some(Lease {
            semaphore: self.clone(),
            node,
            monitor,
            signal,
            done: false,
        }))
    }
}

/// One lease of a [`Semaphore`]. Release it with [`release`](Self::release); dropping it
/// releases in the background.
#[derive(Debug)]
#[must_use = "dropping the lease releases it"]
pub struct Lease {
    semaphore: Semaphore,
    node: String,
    monitor: LossMonitor,
    signal: LossSignal,
    done: bool,
}

impl Lease {
    /// The lease node's path.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Resolves when the lease is (or may be) lost.
    pub async fn lost(&self) -> LossReason {
        self.signal.lost().await
    }

    /// Whether the lease is still held (no loss reported).
    pub fn is_held(&self) -> bool {
        !self.signal.is_lost()
    }

    /// Releases the lease and waits for the server.
    pub async fn release(mut self) -> Result<()> {
        self.done = true;
        self.monitor.finish(LossReason::Released);
        match delete_quietly(
            &self.semaphore.client,
            &self.node,
            &self.semaphore.opts.retry,
        )
        .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_session_gone() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.done {
            self.monitor.finish(LossReason::Released);
            self.semaphore
                .reaper()
                .submit(Cleanup::Delete(self.node.clone()));
        }
    }
}
