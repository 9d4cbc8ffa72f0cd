//! Leader election: [`LeaderLatch`] (am I the leader? wait for it, be told when it is lost) and
//! [`LeaderSelector`] (run a task while leader; it is cancelled when leadership is lost).
//!
//! Every participant creates a protected ephemeral-sequential node `<path>/_c_<uuid>-latch-<seq>`
//! holding its id (Curator's `LeaderLatch` naming); the lowest sequence leads and every other
//! participant watches only its predecessor. Leadership is tied to a [`LossSignal`]: under the
//! default [`LossPolicy::Suspended`] the leader is told as soon as its connection drops, before
//! the ensemble can expire its session and elect someone else. After any loss the participant
//! deletes its node (if the session still has it) and queues again at the back, like Curator's
//! `reset()`; after an expiry that needs a client that re-creates its session (the default),
//! otherwise the latch ends.
//!
//! A [`LeaderSelector`] queues the same way with `lock-` nodes instead (Curator's
//! `LeaderSelector` queues on an `InterProcessMutex`), so Java and Rust selectors on one path
//! share one election.
//!
//! Each term carries a [fencing token](crate::fencing) (the leader node's czxid: every later
//! term's is greater) and [`Leadership::fenced_multi`], which applies the leader's writes only
//! while its node exists, so a leader that lost its term without noticing (a long pause, a
//! partition) can never write as leader.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::leader::{LeaderLatch, LeaderOptions};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let latch = LeaderLatch::start(&zk, "/election/scheduler", LeaderOptions::new("node-1")).await?;
//! loop {
//!     let term = latch.leadership().await?;
//!     tokio::select! {
//!         reason = term.lost() => eprintln!("no longer leader: {reason:?}"),
//!         _ = schedule_jobs() => {}
//!     }
//! }
//! # }
//! # async fn schedule_jobs() {}
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use zkit::path::join;
use zkit::{
    Client, CreateMode, Error as ZkError, Op, OpClass, OpResult, RetryPolicy, SessionState,
};

use crate::fencing::{fenced_multi, FencingToken};
use crate::lock::LOCK_NAME;
use crate::queue_core::{wait_for_turn, Interrupted, Line, Waiter};
use crate::state::{
    usable, wait_connected, LossMonitor, LossPolicy, LossReason, LossSignal, TaskGuard,
};
use crate::znode::{delete_quietly, sorted_members, ProtectedCreate};
use crate::{Error, Result};

/// Curator's `LeaderLatch` node name.
pub const LATCH_NAME: &str = "latch-";

/// Options of a [`LeaderLatch`] / [`LeaderSelector`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LeaderOptions {
    /// This participant's id (stored in its node; shown by [`LeaderLatch::participants`]).
    pub id: String,
    /// When the leader must consider leadership gone.
    pub loss_policy: LossPolicy,
    /// How the election's reads and deletes are retried (default
    /// [`default_retry`](crate::znode::default_retry)).
    pub retry: RetryPolicy,
    /// [`LeaderSelector`] only: queue again after each term (default `true`; Curator's
    /// `autoRequeue`, whose default is `false`); `false` leaves after the first term.
    pub auto_requeue: bool,
}

impl LeaderOptions {
    /// Options for participant `id`.
    pub fn new(id: impl Into<String>) -> Self {
        LeaderOptions {
            id: id.into(),
            loss_policy: LossPolicy::default(),
            retry: crate::znode::default_retry(),
            auto_requeue: true,
        }
    }
    /// Sets whether a [`LeaderSelector`] queues again after each term.
    pub fn auto_requeue(mut self, yes: bool) -> Self {
        self.auto_requeue = yes;
        self
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
}

/// One participant of an election.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Participant {
    /// Its id.
    pub id: String,
    /// Its node's name.
    pub node: String,
    /// Whether it is the leader (first in the queue).
    pub is_leader: bool,
}

#[derive(Debug, Clone)]
enum Role {
    Follower,
    Leader(Leadership),
    Closed(Option<LossReason>),
}

#[derive(Debug)]
struct Inner {
    client: Client,
    path: String,
    /// The node name: `latch-` (a latch) or `lock-` (a selector, like Curator's, which queues on
    /// an `InterProcessMutex`).
    node_name: &'static str,
    opts: LeaderOptions,
    role: watch::Sender<Role>,
    /// Our node while it may exist (until its delete is done), so `close` can remove it.
    node: StdMutex<Option<String>>,
    /// The create in flight, so `close` can remove the node it may have made.
    creating: StdMutex<Option<ProtectedCreate>>,
    requeue: Notify,
}

/// A participant in a leader election. See the [module docs](self).
#[derive(Debug)]
pub struct LeaderLatch {
    inner: Arc<Inner>,
    task: StdMutex<Option<TaskGuard>>,
}

/// One term of leadership: resolve [`lost`](Self::lost) to learn when it ends; write under it
/// with [`fenced_multi`](Self::fenced_multi).
#[derive(Debug, Clone)]
pub struct Leadership {
    signal: LossSignal,
    client: Client,
    node: Arc<str>,
    session_id: i64,
    token: FencingToken,
}

impl Leadership {
    /// This term's [fencing token](crate::fencing): the leader node's czxid, greater than
    /// every earlier term's on this election path.
    pub fn token(&self) -> FencingToken {
        self.token
    }
    /// The leader node's full path.
    pub fn node(&self) -> &str {
        &self.node
    }
    /// Runs `ops` in one multi that applies only while this term lasts (a check on the leader
    /// node goes first); fails with [`Error::Lost`] once the node is gone. See
    /// [`fencing`](crate::fencing).
    ///
    /// ```no_run
    /// # async fn f(latch: zkit_recipes::leader::LeaderLatch) -> zkit_recipes::Result<()> {
    /// use zkit::Op;
    /// let term = latch.leadership().await?;
    /// let epoch = term.token().0.to_be_bytes();
    /// term.fenced_multi(vec![Op::set_data("/scheduler/epoch", epoch, None)]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn fenced_multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        fenced_multi(&self.client, &self.node, self.session_id, ops).await
    }
    /// Resolves when this term ends (at once if it already has).
    pub async fn lost(&self) -> LossReason {
        self.signal.lost().await
    }
    /// Whether this term is still on.
    pub fn is_current(&self) -> bool {
        !self.signal.is_lost()
    }
    /// The loss signal, to hand to other tasks.
    pub fn loss_signal(&self) -> LossSignal {
        self.signal.clone()
    }
}

impl LeaderLatch {
    /// Joins the election at `path` (created as a container when missing).
    pub async fn start(client: &Client, path: &str, options: LeaderOptions) -> Result<LeaderLatch> {
        Self::start_named(client, path, options, LATCH_NAME).await
    }

    async fn start_named(
        client: &Client,
        path: &str,
        options: LeaderOptions,
        node_name: &'static str,
    ) -> Result<LeaderLatch> {
        wait_connected(client).await?;
        let (role, _) = watch::channel(Role::Follower);
        let inner = Arc::new(Inner {
            client: client.clone(),
            path: path.to_owned(),
            node_name,
            opts: options,
            role,
            node: StdMutex::new(None),
            creating: StdMutex::new(None),
            requeue: Notify::new(),
        });
        let task = tokio::spawn(run(inner.clone()));
        Ok(LeaderLatch {
            inner,
            task: StdMutex::new(Some(TaskGuard(task))),
        })
    }

    /// This participant's id.
    pub fn id(&self) -> &str {
        &self.inner.opts.id
    }

    /// Whether this participant leads right now.
    pub fn is_leader(&self) -> bool {
        matches!(&*self.inner.role.borrow(), Role::Leader(t) if t.is_current())
    }

    /// Waits until this participant leads; fails if the latch is closed or its session is gone
    /// for good.
    pub async fn leadership(&self) -> Result<Leadership> {
        let mut rx = self.inner.role.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                Role::Leader(t) if t.is_current() => return Ok(t.clone()),
                Role::Closed(Some(r)) => return Err(Error::Lost(*r)),
                Role::Closed(None) => return Err(Error::Closed),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }

    /// Like [`leadership`](Self::leadership), failing with [`Error::Timeout`] after `timeout`.
    pub async fn leadership_timeout(&self, timeout: Duration) -> Result<Leadership> {
        tokio::time::timeout(timeout, self.leadership())
            .await
            .map_err(|_| Error::Timeout)?
    }

    /// Gives up leadership (if held) and queues again at the back.
    pub fn requeue(&self) {
        self.inner.requeue.notify_one();
    }

    /// The participants in queue order (the leader first).
    pub async fn participants(&self) -> Result<Vec<Participant>> {
        participants_named(
            &self.inner.client,
            &self.inner.path,
            self.inner.node_name,
            &self.inner.opts.retry,
        )
        .await
    }

    /// The current leader, if any.
    pub async fn leader(&self) -> Result<Option<Participant>> {
        Ok(self.participants().await?.into_iter().next())
    }

    /// Leaves the election: a leader is told first (reason `Released`), then its node is deleted.
    pub async fn close(&self) -> Result<()> {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(mut task) = task {
            // Stop the election task and wait until it is gone: its leadership monitor is dropped
            // with it, which tells a leader (reason `Released`) before the node is deleted below.
            task.0.abort();
            let _ = (&mut task.0).await;
        }
        self.inner.role.send_replace(Role::Closed(None));
        match leave(&self.inner).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_session_gone() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Deletes the node the election task left (or may have made, when a create was in flight).
async fn leave(inner: &Inner) -> Result<()> {
    let node = inner.node.lock().ok().and_then(|mut n| n.take());
    let creating = inner.creating.lock().ok().and_then(|mut c| c.take());
    if let Some(node) = node {
        delete_quietly(&inner.client, &node, &inner.opts.retry).await?;
    }
    if let Some(pc) = creating {
        if let Some(node) = pc.find(&inner.client).await? {
            delete_quietly(&inner.client, &node, &inner.opts.retry).await?;
        }
    }
    Ok(())
}

impl Drop for LeaderLatch {
    fn drop(&mut self) {
        self.inner.role.send_replace(Role::Closed(None));
        // Stop the election task first: it must not create a node after the clean-up looked.
        drop(self.task.lock().ok().and_then(|mut t| t.take()));
        let pending = self.inner.node.lock().is_ok_and(|n| n.is_some())
            || self.inner.creating.lock().is_ok_and(|c| c.is_some());
        if let (true, Ok(h)) = (pending, tokio::runtime::Handle::try_current()) {
            // Best effort: the ephemeral goes with the session anyway.
            let inner = self.inner.clone();
            h.spawn(async move {
                let _ = leave(&inner).await;
            });
        }
    }
}

/// The participants of the election at `path`, in queue order.
pub async fn participants(client: &Client, path: &str) -> Result<Vec<Participant>> {
    participants_named(client, path, LATCH_NAME, &crate::znode::default_retry()).await
}

async fn participants_named(
    client: &Client,
    path: &str,
    node_name: &'static str,
    retry: &RetryPolicy,
) -> Result<Vec<Participant>> {
    let kids = match retry
        .run_on(client, OpClass::Read, || client.get_children(path))
        .await
    {
        Ok(k) => k,
        Err(ZkError::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for node in sorted_members(kids, |n| Election(node_name).is_member(n)) {
        match retry
            .run_on(client, OpClass::Read, || {
                client.get_data(&join(path, &node))
            })
            .await
        {
            Ok((data, _)) => out.push(Participant {
                id: String::from_utf8_lossy(&data).into_owned(),
                is_leader: out.is_empty(),
                node,
            }),
            Err(ZkError::NoNode) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

enum Turn {
    /// Queue again (our node is gone, or we gave up / lost leadership).
    Requeue,
    /// The session is gone for good and will not come back.
    End(LossReason),
}

async fn run(inner: Arc<Inner>) {
    let client = &inner.client;
    loop {
        // Through an expiry the latch carries on, on the client's next session; it ends only
        // when the client will never connect again. (A client that re-creates sessions shows
        // `Expired` for a moment before `Connecting`: waiting with `wait_connected`, which fails
        // on any expiry, would end the latch whenever it looked in that moment.)
        if !usable(client).await {
            let r = if client.state() == SessionState::Expired {
                LossReason::SessionExpired
            } else {
                LossReason::SessionClosed
            };
            inner.role.send_replace(Role::Closed(Some(r)));
            return;
        }
        let pc = ProtectedCreate::new(
            &inner.path,
            inner.node_name,
            CreateMode::EphemeralSequential,
        )
        .retry(inner.opts.retry.clone());
        *inner.creating.lock().expect("creating") = Some(pc.clone());
        let node = match pc.create(client, inner.opts.id.as_bytes()).await {
            Ok(n) => n,
            Err(e) => {
                // `creating` stays set until the next attempt replaces it: harmless, a `close`
                // meanwhile just finds nothing under the prefix.
                tracing::debug!(error = %e, "election: create failed; retrying");
                if !e.is_session_gone() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        *inner.node.lock().expect("node") = Some(node.clone());
        *inner.creating.lock().expect("creating") = None;
        let turn = take_part(&inner, &node).await;
        inner.role.send_if_modified(|r| {
            if matches!(r, Role::Leader(_)) {
                *r = Role::Follower;
                true
            } else {
                false
            }
        });
        // Leave the queue before joining it again (a no-op when the session took the node).
        // Waits for the connection when suspended; fails (harmlessly) once the session is gone.
        // The node stays recorded until then, so a `close` in the meantime still deletes it.
        let _ = delete_quietly(client, &node, &inner.opts.retry).await;
        *inner.node.lock().expect("node") = None;
        if let Turn::End(r) = turn {
            inner.role.send_replace(Role::Closed(Some(r)));
            return;
        }
    }
}

/// The election's line: every node of the election's name (`latch-` or `lock-`), each behind
/// the one before it.
struct Election(&'static str);

impl Line for Election {
    fn is_member(&self, name: &str) -> bool {
        name.contains(self.0)
    }

    fn blocker(&self, _queue: &[String], idx: usize) -> Option<usize> {
        idx.checked_sub(1)
    }
}

/// A follower's waits: a watch on the predecessor gives way to a re-queue request; a wait for
/// the connection does not.
struct Follower<'a> {
    inner: &'a Inner,
}

/// A re-queue was requested while following.
struct RequeueRequested;

impl Waiter for Follower<'_> {
    type Stop = RequeueRequested;

    async fn connection<T>(
        &mut self,
        wait: impl Future<Output = T>,
    ) -> Result<T, RequeueRequested> {
        Ok(wait.await)
    }

    async fn blocker<T>(&mut self, wait: impl Future<Output = T>) -> Result<T, RequeueRequested> {
        tokio::select! {
            r = wait => Ok(r),
            _ = self.inner.requeue.notified() => Err(RequeueRequested),
        }
    }

    fn behind(&mut self, _blocker: &str) -> Result<(), RequeueRequested> {
        self.inner.role.send_replace(Role::Follower);
        Ok(())
    }
}

async fn take_part(inner: &Inner, node: &str) -> Turn {
    let client = &inner.client;
    let session_id = client.session_id();
    let mut follower = Follower { inner };
    match wait_for_turn(
        client,
        &inner.path,
        &Election(inner.node_name),
        node,
        session_id,
        &mut follower,
    )
    .await
    {
        Ok(()) => {}
        Err(Interrupted::WatchFailed(_)) => return Turn::End(LossReason::SessionClosed),
        Err(Interrupted::Stopped(_) | Interrupted::Gone(_) | Interrupted::Failed(_)) => {
            return Turn::Requeue
        }
    }
    // The term's fencing token: our node's czxid (gone already: queue again).
    let token = match inner
        .opts
        .retry
        .run_on(client, OpClass::Read, || client.exists(node))
        .await
    {
        Ok(Some(st)) => FencingToken(st.czxid),
        Ok(None) | Err(_) => return Turn::Requeue,
    };
    let (monitor, signal) = LossMonitor::start(
        client,
        session_id,
        Some(node.to_owned()),
        inner.opts.loss_policy,
    );
    inner.role.send_replace(Role::Leader(Leadership {
        signal: signal.clone(),
        client: client.clone(),
        node: node.into(),
        session_id,
        token,
    }));
    tracing::info!(id = %inner.opts.id, node = %node, "became leader");
    tokio::select! {
        r = signal.lost() => {
            tracing::info!(id = %inner.opts.id, reason = ?r, "leadership lost");
        }
        _ = inner.requeue.notified() => {
            monitor.finish(LossReason::Released);
        }
    }
    Turn::Requeue
}

/// Runs a task whenever this participant leads; the task is cancelled (dropped) as soon as
/// leadership is lost. With [`LeaderOptions::auto_requeue`] (the default) the participant queues
/// again after each term (whether the task finished or was cancelled); without, it leaves after
/// the first term.
///
/// ```no_run
/// # async fn f() -> zkit_recipes::Result<()> {
/// use zkit_recipes::leader::{LeaderOptions, LeaderSelector};
/// let zk = zkit::Client::connect("127.0.0.1:2181").await?;
/// let selector = LeaderSelector::start(&zk, "/election/compactor", LeaderOptions::new("n1"),
///     |_term| async { compact().await }).await?;
/// # let _ = selector;
/// # Ok(()) }
/// # async fn compact() {}
/// ```
#[derive(Debug)]
pub struct LeaderSelector {
    latch: Arc<LeaderLatch>,
    _task: TaskGuard,
}

impl LeaderSelector {
    /// Joins the election and runs `task` in each term of leadership.
    pub async fn start<F, Fut>(
        client: &Client,
        path: &str,
        options: LeaderOptions,
        mut task: F,
    ) -> Result<LeaderSelector>
    where
        F: FnMut(Leadership) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // `lock-` nodes, as Curator's selector (an `InterProcessMutex`) makes: one election
        // across both.
        let auto_requeue = options.auto_requeue;
        let latch = Arc::new(LeaderLatch::start_named(client, path, options, LOCK_NAME).await?);
        let l = latch.clone();
        let t = tokio::spawn(async move {
            loop {
                let Ok(term) = l.leadership().await else {
                    return;
                };
                tokio::select! {
                    _ = task(term.clone()) => {}
                    _ = term.lost() => {}
                }
                if !auto_requeue {
                    let _ = l.close().await;
                    return;
                }
                if term.is_current() {
                    // The task finished: give the term up (a lost term re-queues by itself).
                    l.requeue();
                }
                // Wait until this term is over before looking for the next one.
                term.lost().await;
            }
        });
        Ok(LeaderSelector {
            latch,
            _task: TaskGuard(t),
        })
    }

    /// Whether this participant leads right now.
    pub fn is_leader(&self) -> bool {
        self.latch.is_leader()
    }

    /// The participants in queue order (the leader first).
    pub async fn participants(&self) -> Result<Vec<Participant>> {
        self.latch.participants().await
    }

    /// Leaves the election (a running task is cancelled first).
    pub async fn close(self) -> Result<()> {
        drop(self._task);
        self.latch.close().await
    }
}
