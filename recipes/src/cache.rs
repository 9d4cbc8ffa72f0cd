//! [`NodeCache`]: one znode's data and Stat kept current in memory, with every change (including
//! deletion and re-creation) as an update of a [`zkit::Watched`] value.
//!
//! The cache re-reads the node after each watch event, after every reconnect that carried its
//! watch over ([`OneshotWatcher::resynced`](zkit::OneshotWatcher::resynced): a change made while
//! the connection was down is seen even if no event for it arrives), including the new session
//! after an expiry when the client re-creates sessions (the default). With a client that
//! does not ([`Client::recreates_on_expiry`] is false), an expiry ends the cache: it keeps the
//! last value, [`NodeCache::is_live`] turns false, [`NodeCache::ended`] resolves and every
//! receiver's `changed()` fails (the sending side is dropped). A closed client ends it the same
//! way.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::cache::{CacheOptions, NodeCache};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let cache = NodeCache::start(&zk, "/config/feature-flags", CacheOptions::default()).await?;
//! let mut changes = cache.watched();
//! while changes.changed().await.is_ok() {
//!     match &*changes.borrow() {
//!         Some(node) => println!("version {}: {} bytes", node.stat.version, node.data.len()),
//!         None => println!("deleted"),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use zkit::{Client, Error as ZkError, OpClass, RetryPolicy, Stat};

use crate::state::{ended_for_good, usable, TaskGuard};
use crate::Result;

/// A node's data and Stat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeData {
    /// The data.
    pub data: Bytes,
    /// The Stat it was read with.
    pub stat: Stat,
}

/// Options of a [`NodeCache`] (and of a [`ConfigWatch`](crate::config::ConfigWatch), which
/// is built on one).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheOptions {
    /// How the first read is retried (default
    /// [`default_retry`](crate::znode::default_retry)); later reads follow the session.
    pub retry: RetryPolicy,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            retry: crate::znode::default_retry(),
        }
    }
}

impl CacheOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
}

/// A cached znode. See the [module docs](self).
#[derive(Debug)]
pub struct NodeCache {
    rx: watch::Receiver<Option<NodeData>>,
    live: Arc<AtomicBool>,
    _task: TaskGuard,
}

impl NodeCache {
    /// Starts caching `path` and waits for the first read.
    pub async fn start(client: &Client, path: &str, options: CacheOptions) -> Result<NodeCache> {
        let (value, first) = match options
            .retry
            .run_on(client, OpClass::Read, || read_or_absent(client, path))
            .await?
        {
            Read::Present(d, w) => (Some(d), w),
            Read::Absent(w) => (None, w),
        };
        let (tx, rx) = watch::channel(value);
        let live = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(run(
            client.clone(),
            path.to_owned(),
            tx,
            live.clone(),
            Some(first),
        ));
        Ok(NodeCache {
            rx,
            live,
            _task: TaskGuard(task),
        })
    }

    /// The current value (`None`: the node does not exist).
    pub fn current(&self) -> Option<NodeData> {
        self.rx.borrow().clone()
    }

    /// The value as a watched value: `changed().await` for the next change (deletion as
    /// `None`), or `changes()` as a `Stream`.
    pub fn watched(&self) -> zkit::Watched<Option<NodeData>> {
        zkit::Watched::new(self.rx.clone())
    }

    /// Whether the cache still follows the server (false once its session is gone for good).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// Resolves when the cache stops following the server (its session expired on a client that
    /// does not re-create sessions, or the client was closed); at once if it already has.
    pub async fn ended(&self) {
        let mut rx = self.rx.clone();
        while rx.changed().await.is_ok() {}
    }
}

enum Read {
    Present(NodeData, zkit::OneshotWatcher),
    Absent(zkit::OneshotWatcher),
}

async fn read_or_absent(client: &Client, path: &str) -> zkit::Result<Read> {
    loop {
        match client.get_data_and_watch(path).await {
            Ok((data, stat, w)) => return Ok(Read::Present(NodeData { data, stat }, w)),
            Err(ZkError::NoNode) => match client.exists_and_watch(path).await? {
                (Some(_), _) => continue,
                (None, w) => return Ok(Read::Absent(w)),
            },
            Err(e) => return Err(e),
        }
    }
}

fn publish(tx: &watch::Sender<Option<NodeData>>, v: Option<NodeData>) {
    tx.send_if_modified(|cur| {
        let same = match (&*cur, &v) {
            (None, None) => true,
            (Some(a), Some(b)) => a.stat.czxid == b.stat.czxid && a.stat.mzxid == b.stat.mzxid,
            _ => false,
        };
        if !same {
            *cur = v;
        }
        !same
    });
}

async fn run(
    client: Client,
    path: String,
    tx: watch::Sender<Option<NodeData>>,
    live: Arc<AtomicBool>,
    first: Option<zkit::OneshotWatcher>,
) {
    let mut states = client.state_changes();
    let mut watch = first;
    loop {
        let w = match watch.take() {
            Some(w) => w,
            None => {
                if !usable(&client).await {
                    live.store(false, Ordering::SeqCst);
                    return;
                }
                match read_or_absent(&client, &path).await {
                    Ok(Read::Present(d, w)) => {
                        publish(&tx, Some(d));
                        w
                    }
                    Ok(Read::Absent(w)) => {
                        publish(&tx, None);
                        w
                    }
                    Err(e) => {
                        tracing::debug!(path = %path, error = %e, "cache read failed; retrying");
                        if e.is_session_gone() && !usable(&client).await {
                            live.store(false, Ordering::SeqCst);
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        // Wait for the watch, or for a reconnect that carried it over (`resynced`: re-read then,
        // a change made while the connection was down must not be missed).
        let mut w = w;
        loop {
            tokio::select! {
                _ = &mut w => break,
                s = states.next() => match s {
                    None => {
                        live.store(false, Ordering::SeqCst);
                        return;
                    }
                    Some(s) if ended_for_good(&client, s) => {
                        // Closed, or expired for good: the cache will never be current again.
                        tracing::debug!(path = %path, state = ?s, "cache ends");
                        live.store(false, Ordering::SeqCst);
                        return;
                    }
                    Some(s) if s.is_connected() && w.resynced() => break,
                    Some(_) => {}
                },
            }
        }
    }
}
