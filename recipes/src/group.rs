//! [`GroupMember`]: membership in a group (Curator's `GroupMember`): each member keeps an
//! ephemeral node `<path>/<id>` holding its data, and anyone can list or watch the members.
//!
//! The member's node is kept in place like Curator's `PersistentNode`: re-created when it is
//! deleted, and after a session expiry when the client re-creates sessions. The member list is
//! watched through a [`TreeCache`] of depth 1.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::group::{GroupMember, GroupOptions};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let me = GroupMember::start(&zk, "/groups/workers", GroupOptions::new("worker-7").data("10.0.0.7")).await?;
//! let mut members = me.watch().await?;
//! while members.changed().await.is_ok() {
//!     println!("members: {:?}", members.current().keys().collect::<Vec<_>>());
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use zkit::path::join;
use zkit::{Client, CreateMode, CreateOptions, Error as ZkError, OpClass, RetryPolicy};

use crate::state::{usable, TaskGuard};
use crate::treecache::{TreeCache, TreeCacheOptions, TreeEvent};
use crate::znode::{delete_quietly, ensure_path};
use crate::{Error, Result};

/// An ephemeral node kept in place by a background task (Curator's `PersistentNode` in
/// ephemeral mode).
#[derive(Debug)]
pub(crate) struct KeptNode {
    client: Client,
    path: String,
    retry: RetryPolicy,
    data: Arc<StdMutex<Bytes>>,
    task: StdMutex<Option<TaskGuard>>,
}

impl KeptNode {
    /// Creates the node (parents as containers) and keeps it.
    pub(crate) async fn start(
        client: &Client,
        path: &str,
        data: &[u8],
        retry: &RetryPolicy,
    ) -> Result<KeptNode> {
        let data = Arc::new(StdMutex::new(Bytes::copy_from_slice(data)));
        create_owned(client, path, &data, retry).await?;
        let task = tokio::spawn(keep(
            client.clone(),
            path.to_owned(),
            data.clone(),
            retry.clone(),
        ));
        Ok(KeptNode {
            client: client.clone(),
            path: path.to_owned(),
            retry: retry.clone(),
            data,
            task: StdMutex::new(Some(TaskGuard(task))),
        })
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Changes the node's data (also for future re-creations).
    pub(crate) async fn set_data(&self, data: &[u8]) -> Result<()> {
        if let Ok(mut d) = self.data.lock() {
            *d = Bytes::copy_from_slice(data);
        }
        let c = &self.client;
        match self
            .retry
            .run_on(c, OpClass::VersionedWrite, || {
                c.set_data(&self.path, data, None)
            })
            .await
        {
            // The keeper re-creates it with the new data.
            Ok(_) | Err(ZkError::NoNode) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops keeping the node and deletes it.
    pub(crate) async fn close(&self) -> Result<()> {
        drop(self.task.lock().ok().and_then(|mut t| t.take()));
        match delete_quietly(&self.client, &self.path, &self.retry).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_session_gone() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for KeptNode {
    fn drop(&mut self) {
        let kept = self.task.lock().ok().and_then(|mut t| t.take()).is_some();
        if let (true, Ok(h)) = (kept, tokio::runtime::Handle::try_current()) {
            // Best effort: the ephemeral goes with the session anyway.
            let (client, path, retry) =
                (self.client.clone(), self.path.clone(), self.retry.clone());
            h.spawn(async move {
                let _ = delete_quietly(&client, &path, &retry).await;
            });
        }
    }
}

async fn create_owned(
    client: &Client,
    path: &str,
    data: &StdMutex<Bytes>,
    retry: &RetryPolicy,
) -> Result<()> {
    let parent = zkit::path::parent(path);
    for _ in 0..5 {
        let bytes = data.lock().map(|d| d.clone()).unwrap_or_default();
        match retry
            .run_on(client, OpClass::VersionedWrite, || {
                client.create(path, &bytes, &CreateOptions::ephemeral())
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(ZkError::NodeExists) => {
                let owner = retry
                    .run_on(client, OpClass::Read, || client.exists(path))
                    .await?;
                match owner {
                    Some(st) if st.ephemeral_owner == client.session_id() => return Ok(()),
                    Some(_) => {
                        return Err(Error::InvalidArgument(format!(
                            "{path} is held by another session"
                        )))
                    }
                    None => continue,
                }
            }
            Err(ZkError::NoNode) => {
                ensure_path(client, parent, CreateMode::Container, retry).await?
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ZkError::NoNode.into())
}

async fn keep(client: Client, path: String, data: Arc<StdMutex<Bytes>>, retry: RetryPolicy) {
    loop {
        if !usable(&client).await {
            return;
        }
        match client.exists_and_watch(&path).await {
            Ok((Some(st), w)) if st.ephemeral_owner == client.session_id() => {
                let _ = w.await;
            }
            Ok((Some(_), w)) => {
                // Another session's node (an old session's, until it expires): wait it out.
                let _ = w.await;
            }
            Ok((None, _)) => {
                if let Err(e) = create_owned(&client, &path, &data, &retry).await {
                    tracing::debug!(path = %path, error = %e, "re-creating the node failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => {
                tracing::debug!(path = %path, error = %e, "watching the node failed");
                if !e.is_retryable() && !e.is_session_gone() {
                    return;
                }
            }
        }
    }
}

/// Watches the children of `path` (name to data) through a depth-1 [`TreeCache`].
pub(crate) async fn watch_children(
    client: &Client,
    path: &str,
) -> Result<(TaskGuard, watch::Receiver<BTreeMap<String, Bytes>>)> {
    let cache = TreeCache::start(client, path, TreeCacheOptions::default().max_depth(1)).await?;
    let mut events = cache.events();
    cache.initialized().await?;
    let view = |c: &TreeCache| -> BTreeMap<String, Bytes> {
        c.children(path)
            .into_iter()
            .map(|(k, v)| (k, v.data))
            .collect()
    };
    let (tx, rx) = watch::channel(view(&cache));
    let path = path.to_owned();
    let task = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(TreeEvent::Ended) | Err(zkit::RecvError::Closed) => return,
                Ok(_) | Err(_) => {
                    let now: BTreeMap<String, Bytes> = cache
                        .children(&path)
                        .into_iter()
                        .map(|(k, v)| (k, v.data))
                        .collect();
                    tx.send_if_modified(|cur| {
                        let changed = *cur != now;
                        if changed {
                            *cur = now;
                        }
                        changed
                    });
                }
            }
        }
    });
    Ok((TaskGuard(task), rx))
}

/// A watched member list: the receiver and the task that feeds it.
#[derive(Debug)]
pub struct MembersWatch {
    rx: watch::Receiver<BTreeMap<String, Bytes>>,
    _task: TaskGuard,
}

impl MembersWatch {
    pub(crate) fn from_parts(
        rx: watch::Receiver<BTreeMap<String, Bytes>>,
        task: TaskGuard,
    ) -> MembersWatch {
        MembersWatch { rx, _task: task }
    }

    /// The current members (id to data).
    pub fn current(&self) -> BTreeMap<String, Bytes> {
        self.rx.borrow().clone()
    }

    /// Waits for the next change; fails once the watch has ended (session gone for good).
    pub async fn changed(&mut self) -> Result<()> {
        self.rx.changed().await.map_err(|_| Error::Closed)
    }

    /// The member map as a watched value (`wait_for`, or `changes()` as a `Stream`).
    pub fn watched(&self) -> zkit::Watched<BTreeMap<String, Bytes>> {
        zkit::Watched::new(self.rx.clone())
    }
}

/// Options of a [`GroupMember`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GroupOptions {
    /// This member's id (its node's name; unique in the group).
    pub id: String,
    /// Bytes stored in the member's node.
    pub data: Vec<u8>,
    /// How reads and writes are retried (default
    /// [`default_retry`](crate::znode::default_retry)).
    pub retry: RetryPolicy,
}

impl GroupOptions {
    /// Options for member `id` with empty data.
    pub fn new(id: impl Into<String>) -> Self {
        GroupOptions {
            id: id.into(),
            data: Vec::new(),
            retry: crate::znode::default_retry(),
        }
    }
    /// Sets the member node's data.
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

/// A member of a group. See the [module docs](self).
#[derive(Debug)]
pub struct GroupMember {
    client: Client,
    path: String,
    node: KeptNode,
    retry: RetryPolicy,
}

impl GroupMember {
    /// Joins the group at `path` as `options.id` with `options.data`; fails if another live
    /// session holds that id.
    pub async fn start(client: &Client, path: &str, options: GroupOptions) -> Result<GroupMember> {
        let node = KeptNode::start(
            client,
            &join(path, &options.id),
            &options.data,
            &options.retry,
        )
        .await?;
        Ok(GroupMember {
            client: client.clone(),
            path: path.to_owned(),
            node,
            retry: options.retry,
        })
    }

    /// This member's node.
    pub fn node(&self) -> &str {
        self.node.path()
    }

    /// Changes this member's data.
    pub async fn set_data(&self, data: &[u8]) -> Result<()> {
        self.node.set_data(data).await
    }

    /// The members now (id to data), read from the server.
    pub async fn members(&self) -> Result<BTreeMap<String, Bytes>> {
        read_children(&self.client, &self.path, &self.retry).await
    }

    /// The members as a watched value.
    pub async fn watch(&self) -> Result<MembersWatch> {
        let (task, rx) = watch_children(&self.client, &self.path).await?;
        Ok(MembersWatch { rx, _task: task })
    }

    /// Leaves the group (deletes this member's node).
    pub async fn close(self) -> Result<()> {
        self.node.close().await
    }
}

/// The children of `path` and their data, read now.
pub(crate) async fn read_children(
    client: &Client,
    path: &str,
    retry: &RetryPolicy,
) -> Result<BTreeMap<String, Bytes>> {
    let kids = match retry
        .run_on(client, OpClass::Read, || client.get_children(path))
        .await
    {
        Ok(k) => k,
        Err(ZkError::NoNode) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = BTreeMap::new();
    for k in kids {
        match retry
            .run_on(client, OpClass::Read, || client.get_data(&join(path, &k)))
            .await
        {
            Ok((d, _)) => {
                out.insert(k, d);
            }
            Err(ZkError::NoNode) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}
