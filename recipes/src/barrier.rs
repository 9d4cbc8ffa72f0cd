//! Barriers: [`Barrier`] (one party sets it, others wait until it is removed; Curator's
//! `DistributedBarrier`) and [`DoubleBarrier`] (N members enter together and leave together;
//! Curator's `DistributedDoubleBarrier`, same node names).
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::barrier::{Barrier, BarrierOptions};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let gate = Barrier::new(&zk, "/gates/deploy", BarrierOptions::default());
//! gate.set().await?;
//! // ... elsewhere, workers call `gate.wait().await?` and block until:
//! gate.remove().await?;
//! # Ok(()) }
//! ```
//!
//! # Double barrier
//! Each member creates an ephemeral node `<path>/<uuid>`. Entering: a member first watches
//! `<path>/ready`, creates its node, and counts the members; the one that sees N creates `ready`
//! (a persistent node), which wakes everyone. Leaving: each member deletes its node; the lowest
//! (by name) waits for the highest to go, every other member waits for the lowest, so no member
//! leaves before all have arrived at `leave` and there is no herd. The last one out deletes
//! `ready`, so the barrier can be used again.
//!
//! A member whose session dies drops out: its ephemeral node goes with the session, so the
//! others are not held up in `leave`. A member that never arrives holds up `enter`: use
//! [`DoubleBarrier::enter_timeout`], which removes the caller's node when it gives up.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::barrier::{DoubleBarrier, DoubleBarrierOptions};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let round = DoubleBarrier::new(&zk, "/rounds/r1", DoubleBarrierOptions::new(3));
//! let member = round.enter().await?; // returns once 3 members are in
//! compute().await;
//! member.leave().await?; // returns once all 3 have left
//! # Ok(()) }
//! # async fn compute() {}
//! ```

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;
use zkit::path::join;
use zkit::{Client, CreateMode, CreateOptions, Error as ZkError, EventType, OpClass, RetryPolicy};

use crate::state::{usable, LossMonitor, LossPolicy, LossReason, LossSignal};
use crate::znode::{delete_quietly, ensure_path, new_uuid, Cleanup, CleanupOnDrop, Reaper};
use crate::{Error, Result};

/// Curator's ready-node name (`DistributedDoubleBarrier.READY_NODE`).
pub const READY_NODE: &str = "ready";

/// Options of a [`Barrier`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BarrierOptions {
    /// The barrier node's mode: `Persistent` (the default, Curator's), or `Ephemeral` so that the
    /// barrier falls (and the waiters go) when the session that set it ends.
    pub mode: CreateMode,
    /// How the barrier's reads and writes are retried (default
    /// [`default_retry`](crate::znode::default_retry)).
    pub retry: RetryPolicy,
}

impl Default for BarrierOptions {
    fn default() -> Self {
        BarrierOptions {
            mode: CreateMode::Persistent,
            retry: crate::znode::default_retry(),
        }
    }
}

impl BarrierOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Sets the barrier node's mode.
    pub fn mode(mut self, mode: CreateMode) -> Self {
        self.mode = mode;
        self
    }
}

/// A barrier: while its node exists, [`wait`](Self::wait) blocks. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Barrier {
    client: Client,
    path: String,
    opts: BarrierOptions,
}

impl Barrier {
    /// A barrier at `path` (missing parents are created as containers when it is set).
    pub fn new(client: &Client, path: &str, options: BarrierOptions) -> Barrier {
        Barrier {
            client: client.clone(),
            path: path.to_owned(),
            opts: options,
        }
    }

    /// The barrier's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sets the barrier (creates its node); succeeds if it is already set.
    pub async fn set(&self) -> Result<()> {
        let c = &self.client;
        let parent = zkit::path::parent(&self.path);
        let opts = CreateOptions::new(self.opts.mode);
        for _ in 0..5 {
            match self
                .opts
                .retry
                .run_on(c, OpClass::VersionedWrite, || {
                    c.create(&self.path, b"", &opts)
                })
                .await
            {
                Ok(_) | Err(ZkError::NodeExists) => return Ok(()),
                Err(ZkError::NoNode) => {
                    ensure_path(c, parent, CreateMode::Container, &self.opts.retry).await?
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ZkError::NoNode.into())
    }

    /// Removes the barrier (deletes its node), releasing every waiter; succeeds if it is not set.
    pub async fn remove(&self) -> Result<()> {
        Ok(delete_quietly(&self.client, &self.path, &self.opts.retry).await?)
    }

    /// Whether the barrier is set right now.
    pub async fn is_set(&self) -> Result<bool> {
        let c = &self.client;
        Ok(self
            .opts
            .retry
            .run_on(c, OpClass::Read, || c.exists(&self.path))
            .await?
            .is_some())
    }

    /// Waits until the barrier is not set. Survives reconnects (and, on a client that re-creates
    /// sessions, expiry); fails when the client's session is gone for good.
    pub async fn wait(&self) -> Result<()> {
        let c = &self.client;
        loop {
            match c.exists_and_watch(&self.path).await {
                Ok((None, _)) => return Ok(()),
                Ok((Some(_), w)) => match w.await {
                    Ok(_) => {}
                    Err(e) if e.is_session_gone() && !usable(c).await => return Err(e.into()),
                    Err(_) => {}
                },
                Err(e) if e.is_retryable() || e.is_session_gone() => {
                    if !usable(c).await {
                        return Err(e.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Like [`wait`](Self::wait), failing with [`Error::Timeout`] after `timeout`.
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        tokio::time::timeout(timeout, self.wait())
            .await
            .map_err(|_| Error::Timeout)?
    }
}

/// Options of a [`DoubleBarrier`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DoubleBarrierOptions {
    /// How many members must enter before any may proceed.
    pub members: usize,
    /// When an entered member must consider its membership gone (default [`LossPolicy::Lost`]:
    /// a connection blip does not take a member out of the barrier).
    pub loss_policy: LossPolicy,
    /// Bytes stored in the member's node.
    pub data: Vec<u8>,
    /// How reads and writes are retried (default
    /// [`default_retry`](crate::znode::default_retry)).
    pub retry: RetryPolicy,
}

impl DoubleBarrierOptions {
    /// Options for a barrier of `members` members.
    pub fn new(members: usize) -> Self {
        DoubleBarrierOptions {
            members,
            loss_policy: LossPolicy::Lost,
            data: Vec::new(),
            retry: crate::znode::default_retry(),
        }
    }
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
    /// Sets the member node's data.
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }
}

/// A double barrier for a fixed number of members. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DoubleBarrier {
    client: Client,
    path: String,
    opts: DoubleBarrierOptions,
    reaper: std::sync::Arc<OnceLock<Reaper>>,
}

impl DoubleBarrier {
    /// A double barrier at `path` (created as a container when missing).
    pub fn new(client: &Client, path: &str, options: DoubleBarrierOptions) -> DoubleBarrier {
        DoubleBarrier {
            client: client.clone(),
            path: path.to_owned(),
            opts: options,
            reaper: Default::default(),
        }
    }

    /// The barrier's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The member nodes present now, sorted by name (the ready node excluded).
    pub async fn members(&self) -> Result<Vec<String>> {
        member_nodes(&self.client, &self.path, &self.opts.retry).await
    }

    /// Enters the barrier and waits until all members have entered.
    pub async fn enter(&self) -> Result<Member> {
        self.enter_inner(None).await
    }

    /// Like [`enter`](Self::enter), failing with [`Error::Timeout`] after `timeout`; the member
    /// node is removed then (as when the future is dropped).
    pub async fn enter_timeout(&self, timeout: Duration) -> Result<Member> {
        self.enter_inner(Some(Instant::now() + timeout)).await
    }

    fn reaper(&self) -> &Reaper {
        self.reaper
            .get_or_init(|| Reaper::spawn(&self.client, &self.opts.retry))
    }

    async fn enter_inner(&self, deadline: Option<Instant>) -> Result<Member> {
        if self.opts.members == 0 {
            return Err(Error::InvalidArgument(
                "a double barrier needs members".into(),
            ));
        }
        let c = &self.client;
        let ready = join(&self.path, READY_NODE);
        let node = join(&self.path, &new_uuid());
        let mut cleanup = CleanupOnDrop::new(self.reaper(), Cleanup::Delete(node.clone()));
        let work = async {
            // Watch `ready` before joining: its creation must not fall between the two steps.
            let (mut ready_now, mut watch) = self
                .opts
                .retry
                .run_on(c, OpClass::Read, || c.exists_and_watch(&ready))
                .await?;
            self.create_member(&node).await?;
            let session_id = c.session_id();
            while ready_now.is_none() {
                let n = member_nodes(c, &self.path, &self.opts.retry).await?.len();
                if n >= self.opts.members {
                    match self
                        .opts
                        .retry
                        .run_on(c, OpClass::VersionedWrite, || {
                            c.create(&ready, b"", &CreateOptions::persistent())
                        })
                        .await
                    {
                        Ok(_) | Err(ZkError::NodeExists) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                tracing::debug!(path = %self.path, members = n, "waiting for the barrier to fill");
                match watch.await {
                    // `ready` was created: everyone is in (even if it is gone again by now).
                    Ok(ev) if ev.event_type == EventType::NodeCreated => break,
                    Ok(_) => {}
                    Err(e) if e.is_session_gone() => return Err(e.into()),
                    Err(_) => {}
                }
                (ready_now, watch) = self
                    .opts
                    .retry
                    .run_on(c, OpClass::Read, || c.exists_and_watch(&ready))
                    .await?;
            }
            if c.session_id() != session_id {
                return Err(Error::Lost(LossReason::SessionChanged));
            }
            Ok(session_id)
        };
        let session_id = match deadline {
            Some(d) => tokio::time::timeout_at(d, work)
                .await
                .map_err(|_| Error::Timeout)??,
            None => work.await?,
        };
        cleanup.disarm();
        let (monitor, signal) =
            LossMonitor::start(c, session_id, Some(node.clone()), self.opts.loss_policy);
        tracing::debug!(node = %node, "entered double barrier");
        Ok(Member {
            barrier: self.clone(),
            node,
            monitor,
            signal,
            left: false,
        })
    }

    async fn create_member(&self, node: &str) -> Result<()> {
        let c = &self.client;
        let opts = CreateOptions::new(CreateMode::Ephemeral);
        for _ in 0..5 {
            match c.create(node, &self.opts.data, &opts).await {
                // The name is a fresh UUID: an existing node is ours (a retried create).
                Ok(_) | Err(ZkError::NodeExists) => return Ok(()),
                Err(ZkError::NoNode) => {
                    ensure_path(c, &self.path, CreateMode::Container, &self.opts.retry).await?
                }
                Err(e) if e.is_retryable() => crate::state::wait_connected(c).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ZkError::NoNode.into())
    }
}

async fn member_nodes(client: &Client, path: &str, retry: &RetryPolicy) -> Result<Vec<String>> {
    match retry
        .run_on(client, OpClass::Read, || client.get_children(path))
        .await
    {
        Ok(mut kids) => {
            kids.retain(|k| k != READY_NODE);
            kids.sort();
            Ok(kids)
        }
        Err(ZkError::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// A member inside a [`DoubleBarrier`]. [`leave`](Self::leave) waits for every member to leave;
/// dropping it leaves without waiting (its node is deleted in the background).
#[derive(Debug)]
#[must_use = "dropping the member leaves the barrier without waiting"]
pub struct Member {
    barrier: DoubleBarrier,
    node: String,
    monitor: LossMonitor,
    signal: LossSignal,
    left: bool,
}

impl Member {
    /// The member's node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Resolves when the membership is (or may be) lost, per the options' [`LossPolicy`].
    pub async fn lost(&self) -> LossReason {
        self.signal.lost().await
    }

    /// Leaves and waits until every member has left.
    pub async fn leave(mut self) -> Result<()> {
        self.left = true;
        self.monitor.finish(LossReason::Released);
        self.leave_inner().await
    }

    /// Like [`leave`](Self::leave), failing with [`Error::Timeout`] after `timeout` (the node is
    /// gone by then or deleted in the background).
    pub async fn leave_timeout(mut self, timeout: Duration) -> Result<()> {
        self.left = true;
        self.monitor.finish(LossReason::Released);
        let node = self.node.clone();
        let r = tokio::time::timeout(timeout, self.leave_inner()).await;
        match r {
            Ok(r) => r,
            Err(_) => {
                self.barrier.reaper().submit(Cleanup::Delete(node));
                Err(Error::Timeout)
            }
        }
    }

    async fn leave_inner(&self) -> Result<()> {
        let c = &self.barrier.client;
        let path = &self.barrier.path;
        let ours = zkit::path::basename(&self.node).to_owned();
        let mut ours_exists = true;
        // The members of our round: those present at our first look. A node that appears later
        // belongs to the next round (the barrier is reused as soon as one member is out) and
        // waits in `enter` for us: waiting for it would deadlock.
        let mut round: Option<Vec<String>> = None;
        loop {
            let mut members = member_nodes(c, path, &self.barrier.opts.retry).await?;
            match &round {
                None => round = Some(members.clone()),
                Some(r) => members.retain(|m| r.contains(m)),
            }
            let idx = members.iter().position(|m| *m == ours);
            if idx.is_none() {
                // Deleted by us below, or gone with an expired session: either way we are out.
                ours_exists = false;
            }
            let others: Vec<&String> = members.iter().filter(|m| **m != ours).collect();
            if others.is_empty() {
                if ours_exists {
                    delete_quietly(c, &self.node, &self.barrier.opts.retry).await?;
                }
                break;
            }
            // The lowest waits for the highest; everyone else leaves and waits for the lowest.
            let watch_on = if idx == Some(0) {
                members[members.len() - 1].clone()
            } else {
                if ours_exists {
                    delete_quietly(c, &self.node, &self.barrier.opts.retry).await?;
                    ours_exists = false;
                }
                others[0].clone()
            };
            match self
                .barrier
                .opts
                .retry
                .run_on(c, OpClass::Read, || {
                    c.exists_and_watch(&join(path, &watch_on))
                })
                .await
            {
                Ok((None, _)) => {}
                Ok((Some(_), w)) => match w.await {
                    Err(e) if e.is_session_gone() => return Err(e.into()),
                    _ => {}
                },
                Err(e) => return Err(e.into()),
            }
        }
        match delete_quietly(c, &join(path, READY_NODE), &self.barrier.opts.retry).await {
            Ok(()) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if !self.left {
            self.barrier
                .reaper()
                .submit(Cleanup::Delete(self.node.clone()));
        }
    }
}
