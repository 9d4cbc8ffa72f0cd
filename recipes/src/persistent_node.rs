//! [`PersistentNode`]: a node kept in place while the application runs (Curator's
//! `PersistentNode`), and [`PersistentTtlNode`]: a TTL node kept alive while it runs and removed
//! by the server after its TTL once nobody keeps it (Curator's `PersistentTtlNode`).
//!
//! A background task re-creates the node whenever it is missing: deleted by someone, or (for an
//! ephemeral node) gone with a session that expired, once the client has re-created its session
//! (build it with [`recreate_on_expiry(true)`](zkit::ClientBuilder::recreate_on_expiry)). An
//! ephemeral node of another session at the path (a previous session's, not yet expired) is
//! waited out, then replaced. [`PersistentNode::present`] and [`PersistentNode::changes`] show
//! whether the node is there: the loss signal for whoever relies on it.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit::CreateMode;
//! use zkit_recipes::persistent_node::{PersistentNode, PersistentNodeOptions};
//! let zk = zkit::Client::builder("127.0.0.1:2181").recreate_on_expiry(true).connect().await?;
//! let opts = PersistentNodeOptions::new(CreateMode::Ephemeral).data("10.0.0.7");
//! let node = PersistentNode::start(&zk, "/workers/w1", opts).await?;
//! assert!(node.present());
//! node.set_data(b"10.0.0.8").await?;
//! node.close().await?;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;
use zkit::{Client, CreateMode, CreateOptions, Error as ZkError, OpClass, RetryPolicy};

use crate::state::{usable, TaskGuard};
use crate::znode::{delete_quietly, ensure_path};
use crate::{Error, Result};

/// Options of a [`PersistentNode`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PersistentNodeOptions {
    /// How the node is created (mode, ACL, TTL; not sequential).
    pub create: CreateOptions,
    /// The node's data.
    pub data: Vec<u8>,
    /// How reads and writes are retried (default
    /// [`default_retry`](crate::znode::default_retry)).
    pub retry: RetryPolicy,
}

impl PersistentNodeOptions {
    /// A node of `mode` with empty data.
    pub fn new(mode: CreateMode) -> Self {
        Self::with_create(CreateOptions::new(mode))
    }
    /// A node created with `create` (an ACL, a TTL) and empty data.
    pub fn with_create(create: CreateOptions) -> Self {
        PersistentNodeOptions {
            create,
            data: Vec::new(),
            retry: crate::znode::default_retry(),
        }
    }
    /// Sets the node's data.
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }
    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
}

#[derive(Debug)]
struct Shared {
    client: Client,
    path: String,
    opts: CreateOptions,
    retry: RetryPolicy,
    data: StdMutex<Bytes>,
    present: watch::Sender<bool>,
}

/// A node kept in place. See the [module docs](self).
#[derive(Debug)]
pub struct PersistentNode {
    shared: Arc<Shared>,
    task: StdMutex<Option<TaskGuard>>,
}

impl PersistentNode {
    /// Creates `path` (missing parents as containers) with `options.data` and
    /// `options.create` (not sequential) and keeps it; returns once it exists.
    pub async fn start(
        client: &Client,
        path: &str,
        options: PersistentNodeOptions,
    ) -> Result<PersistentNode> {
        let PersistentNodeOptions {
            create: options,
            data,
            retry,
        } = options;
        if options.mode.is_sequential() {
            return Err(Error::InvalidArgument(
                "a persistent node has a fixed name: not sequential".into(),
            ));
        }
        let shared = Arc::new(Shared {
            client: client.clone(),
            path: path.to_owned(),
            opts: options,
            retry,
            data: StdMutex::new(Bytes::from(data)),
            present: watch::channel(false).0,
        });
        create(&shared).await?;
        shared.present.send_replace(true);
        let task = tokio::spawn(keep(shared.clone()));
        Ok(PersistentNode {
            shared,
            task: StdMutex::new(Some(TaskGuard(task))),
        })
    }

    /// The node's path.
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// Whether the node is there now (as last seen).
    pub fn present(&self) -> bool {
        *self.shared.present.borrow()
    }

    /// Every change of [`present`](Self::present) from now on.
    pub fn changes(&self) -> impl Stream<Item = bool> + Send + 'static {
        let mut rx = self.shared.present.subscribe();
        rx.mark_unchanged();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let now = *rx.borrow_and_update();
            Some((now, rx))
        })
    }

    /// Changes the node's data (also for later re-creations).
    pub async fn set_data(&self, data: &[u8]) -> Result<()> {
        if let Ok(mut d) = self.shared.data.lock() {
            *d = Bytes::copy_from_slice(data);
        }
        let c = &self.shared.client;
        match self
            .shared
            .retry
            .run_on(c, OpClass::VersionedWrite, || {
                c.set_data(&self.shared.path, data, None)
            })
            .await
        {
            // The keeper re-creates it with the new data.
            Ok(_) | Err(ZkError::NoNode) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops keeping the node and deletes it.
    pub async fn close(self) -> Result<()> {
        drop(self.task.lock().ok().and_then(|mut t| t.take()));
        self.shared.present.send_replace(false);
        match delete_quietly(&self.shared.client, &self.shared.path, &self.shared.retry).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_session_gone() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for PersistentNode {
    fn drop(&mut self) {
        let kept = self.task.lock().ok().and_then(|mut t| t.take()).is_some();
        let ephemeral = self.shared.opts.mode.is_ephemeral();
        if let (true, true, Ok(h)) = (kept, ephemeral, tokio::runtime::Handle::try_current()) {
            // An ephemeral is deleted best-effort (it goes with the session anyway); a
            // persistent or TTL node stays, as Curator's does when not closed.
            let s = self.shared.clone();
            h.spawn(async move {
                let _ = delete_quietly(&s.client, &s.path, &s.retry).await;
            });
        }
    }
}

async fn create(s: &Shared) -> Result<()> {
    let c = &s.client;
    for _ in 0..5 {
        let data = s.data.lock().map(|d| d.clone()).unwrap_or_default();
        match s
            .retry
            .run_on(c, OpClass::VersionedWrite, || {
                c.create(&s.path, &data, &s.opts)
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(ZkError::NodeExists) => {
                let st = s
                    .retry
                    .run_on(c, OpClass::Read, || c.exists(&s.path))
                    .await?;
                match st {
                    None => continue,
                    Some(st) if st.ephemeral_owner == 0 && !s.opts.mode.is_ephemeral() => {
                        // Ours to keep: make it hold our data.
                        s.retry
                            .run_on(c, OpClass::VersionedWrite, || {
                                c.set_data(&s.path, &data, None)
                            })
                            .await?;
                        return Ok(());
                    }
                    Some(st) if st.ephemeral_owner == c.session_id() => return Ok(()),
                    Some(_) => {
                        return Err(Error::InvalidArgument(format!(
                            "{} is held by another session",
                            s.path
                        )))
                    }
                }
            }
            Err(ZkError::NoNode) => {
                ensure_path(
                    c,
                    zkit::path::parent(&s.path),
                    CreateMode::Container,
                    &s.retry,
                )
                .await?
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ZkError::NoNode.into())
}

async fn keep(s: Arc<Shared>) {
    let c = &s.client;
    loop {
        if !usable(c).await {
            s.present.send_replace(false);
            return;
        }
        match c.exists_and_watch(&s.path).await {
            Ok((Some(st), w)) => {
                let ours = !s.opts.mode.is_ephemeral() || st.ephemeral_owner == c.session_id();
                s.present.send_replace(ours);
                // Ours: wait for a change; another session's: wait until it goes.
                let _ = w.await;
            }
            Ok((None, _)) => {
                s.present.send_replace(false);
                match create(&s).await {
                    Ok(()) => {
                        tracing::debug!(path = %s.path, "node re-created");
                        s.present.send_replace(true);
                    }
                    Err(e) => {
                        tracing::debug!(path = %s.path, error = %e, "re-creating failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(path = %s.path, error = %e, "watching the node failed");
                if !e.is_retryable() && !e.is_session_gone() {
                    s.present.send_replace(false);
                    return;
                }
                if s.opts.mode.is_ephemeral() {
                    // Until the session is known to be alive again, the node may be gone.
                    s.present.send_replace(false);
                }
            }
        }
    }
}

/// A TTL node kept alive while this value lives. See the [module docs](self).
///
/// The server deletes a TTL node that has had no children and no change for its TTL. This keeps
/// the node (re-creating it when missing) and touches it (rewrites its data) every half TTL, so
/// it never expires while the application runs; once the application stops, the server removes
/// it one TTL later. Needs a server with TTL nodes enabled (ZooKeeper's
/// `zookeeper.extendedTypesEnabled`).
#[derive(Debug)]
pub struct PersistentTtlNode {
    node: PersistentNode,
    _touch: TaskGuard,
}

impl PersistentTtlNode {
    /// Creates the TTL node `path` with `data` and keeps it alive.
    pub async fn start(
        client: &Client,
        path: &str,
        data: &[u8],
        ttl: Duration,
    ) -> Result<PersistentTtlNode> {
        let opts = CreateOptions::new(CreateMode::PersistentWithTtl).ttl(ttl);
        let node = PersistentNode::start(
            client,
            path,
            PersistentNodeOptions::with_create(opts).data(data),
        )
        .await?;
        let s = node.shared.clone();
        let touch = tokio::spawn(async move {
            let every = (ttl / 2).max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(every).await;
                let data = s.data.lock().map(|d| d.clone()).unwrap_or_default();
                if let Err(e) = s.client.set_data(&s.path, &data, None).await {
                    tracing::debug!(path = %s.path, error = %e, "touching the TTL node failed");
                }
            }
        });
        Ok(PersistentTtlNode {
            node,
            _touch: TaskGuard(touch),
        })
    }

    /// The kept node (path, presence, data).
    pub fn node(&self) -> &PersistentNode {
        &self.node
    }

    /// Stops keeping the node and deletes it.
    pub async fn close(self) -> Result<()> {
        self.node.close().await
    }
}
