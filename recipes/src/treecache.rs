//! [`TreeCache`]: a subtree mirrored in memory (Curator's `CuratorCache`), built on one
//! persistent recursive watch, with an event for every node added, changed or removed and an
//! [`Initialized`](TreeEvent::Initialized) event once the initial load is in.
//!
//! The watch is added before the initial load, so no change made during the load is missed.
//! Every watch event is applied by reading the node again (idempotent: an event that changes
//! nothing publishes nothing). Persistent watches do not replay changes made while the connection
//! was down, so after every reconnect, and after a session expiry on a client that re-creates
//! sessions (the watch stream's [`WatchItem::Resync`]), the cache reloads
//! the subtree and publishes the difference. On a client that does not
//! re-create sessions an expiry ends the cache ([`TreeEvent::Ended`], [`TreeCache::is_live`]).
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::treecache::{TreeCache, TreeCacheOptions, TreeEvent};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let cache = TreeCache::start(&zk, "/services", TreeCacheOptions::default()).await?;
//! let mut events = cache.events();
//! while let Ok(ev) = events.recv().await {
//!     match ev {
//!         TreeEvent::Initialized => println!("{} nodes loaded", cache.snapshot().len()),
//!         TreeEvent::Added { path, .. } => println!("+ {path}"),
//!         TreeEvent::Removed { path } => println!("- {path}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::{broadcast, watch};
use zkit::path::join;
use zkit::{
    Client, Error as ZkError, EventType, OpClass, PersistentWatcher, RetryPolicy, WatchItem,
};

use crate::cache::NodeData;
use crate::state::{ended_for_good, usable, TaskGuard};
use crate::{Error, Result};

/// How many events a subscriber may fall behind before it gets `Lagged` (then read
/// [`TreeCache::snapshot`] to catch up).
pub const EVENT_CAPACITY: usize = 4096;

/// Options of a [`TreeCache`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TreeCacheOptions {
    /// Mirror only this many levels below the root (`Some(1)`: the root and its children);
    /// `None`: the whole subtree.
    pub max_depth: Option<usize>,
    /// How adding the watch is retried (default
    /// [`default_retry`](crate::znode::default_retry)).
    pub retry: RetryPolicy,
}

impl Default for TreeCacheOptions {
    fn default() -> Self {
        TreeCacheOptions {
            max_depth: None,
            retry: crate::znode::default_retry(),
        }
    }
}

impl TreeCacheOptions {
    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Sets the depth limit.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = Some(depth);
        self
    }
}

/// A change in the mirrored subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeEvent {
    /// A node appeared.
    Added {
        /// Its path.
        path: String,
        /// Its data and Stat.
        data: NodeData,
    },
    /// A node's data changed.
    Updated {
        /// Its path.
        path: String,
        /// Its new data and Stat.
        data: NodeData,
    },
    /// A node went away.
    Removed {
        /// Its path.
        path: String,
    },
    /// The initial load is complete (sent once, after the `Added` events of the load).
    Initialized,
    /// The cache stopped following the server (session gone for good).
    Ended,
}

type Tree = BTreeMap<String, NodeData>;

#[derive(Debug)]
struct Shared {
    tree: StdMutex<Tree>,
    events: broadcast::Sender<TreeEvent>,
    live: AtomicBool,
    initialized: watch::Sender<bool>,
}

/// A mirrored subtree. See the [module docs](self).
#[derive(Debug)]
pub struct TreeCache {
    shared: Arc<Shared>,
    first: StdMutex<Option<broadcast::Receiver<TreeEvent>>>,
    _task: TaskGuard,
}

impl TreeCache {
    /// Starts mirroring `path`: adds the persistent recursive watch, then loads the subtree in the
    /// background (await [`initialized`](Self::initialized), or read [`events`](Self::events)).
    pub async fn start(
        client: &Client,
        path: &str,
        options: TreeCacheOptions,
    ) -> Result<TreeCache> {
        let watcher = options
            .retry
            .run_on(client, OpClass::Read, || {
                client.add_watch(path, zkit::AddWatchMode::PersistentRecursive)
            })
            .await?;
        let (events, first) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            tree: StdMutex::new(Tree::new()),
            events,
            live: AtomicBool::new(true),
            initialized: watch::channel(false).0,
        });
        let task = tokio::spawn(run(
            client.clone(),
            path.to_owned(),
            options,
            shared.clone(),
            watcher,
        ));
        Ok(TreeCache {
            shared,
            first: StdMutex::new(Some(first)),
            _task: TaskGuard(task),
        })
    }

    /// The events: the first call gets every event since [`start`](Self::start) (the initial
    /// `Added`s and `Initialized` included), later calls the events from then on.
    /// At most [`EVENT_CAPACITY`] events wait for a reader; a slower one gets
    /// [`RecvError::Lagged`](zkit::RecvError::Lagged) (then read [`snapshot`](Self::snapshot)).
    pub fn events(&self) -> zkit::Events<TreeEvent> {
        let first = self.first.lock().ok().and_then(|mut f| f.take());
        zkit::Events::new(first.unwrap_or_else(|| self.shared.events.subscribe()))
    }

    /// Waits for the initial load; fails with [`Error::Closed`] if the cache ended first.
    pub async fn initialized(&self) -> Result<()> {
        let mut rx = self.shared.initialized.subscribe();
        let live = &self.shared.live;
        loop {
            if *rx.borrow_and_update() {
                return Ok(());
            }
            if !live.load(Ordering::SeqCst) || rx.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }

    /// A node's cached data.
    pub fn get(&self, path: &str) -> Option<NodeData> {
        self.shared.tree.lock().ok()?.get(path).cloned()
    }

    /// The cached children of `path` (name to data).
    pub fn children(&self, path: &str) -> BTreeMap<String, NodeData> {
        let Ok(tree) = self.shared.tree.lock() else {
            return BTreeMap::new();
        };
        let prefix = join(path, "");
        tree.range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| !p[prefix.len()..].contains('/'))
            .map(|(p, d)| (p[prefix.len()..].to_owned(), d.clone()))
            .collect()
    }

    /// Every cached node (path to data).
    pub fn snapshot(&self) -> BTreeMap<String, NodeData> {
        self.shared
            .tree
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Whether the cache still follows the server.
    pub fn is_live(&self) -> bool {
        self.shared.live.load(Ordering::SeqCst)
    }
}

fn depth(root: &str, path: &str) -> Option<usize> {
    if path == root {
        return Some(0);
    }
    let rest = path.strip_prefix(&join(root, ""))?;
    Some(rest.split('/').count())
}

/// Whether `path` is mirrored: under `root`, at most `max_depth` levels down.
fn in_scope(root: &str, path: &str, max_depth: Option<usize>) -> bool {
    match (depth(root, path), max_depth) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(d), Some(m)) => d <= m,
    }
}

/// Reads the subtree at `root` (at most `max_depth` levels).
async fn load(client: &Client, root: &str, max_depth: Option<usize>) -> zkit::Result<Tree> {
    let mut tree = Tree::new();
    let mut level = vec![root.to_owned()];
    let mut d = 0;
    while !level.is_empty() {
        let mut next = Vec::new();
        for path in level {
            match client.get_data(&path).await {
                Ok((data, stat)) => {
                    tree.insert(path.clone(), NodeData { data, stat });
                }
                Err(ZkError::NoNode) => continue,
                Err(e) => return Err(e),
            }
            if max_depth.is_some_and(|m| d >= m) {
                continue;
            }
            match client.get_children(&path).await {
                Ok(kids) => next.extend(kids.iter().map(|k| join(&path, k))),
                Err(ZkError::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        level = next;
        d += 1;
    }
    Ok(tree)
}

impl Shared {
    fn send(&self, ev: TreeEvent) {
        // No receiver is fine: events are also in the tree.
        let _ = self.events.send(ev);
    }

    fn upsert(&self, path: &str, data: NodeData) {
        let ev = {
            let Ok(mut tree) = self.tree.lock() else {
                return;
            };
            match tree.insert(path.to_owned(), data.clone()) {
                None => TreeEvent::Added {
                    path: path.to_owned(),
                    data,
                },
                Some(old)
                    if old.stat.mzxid != data.stat.mzxid || old.stat.czxid != data.stat.czxid =>
                {
                    TreeEvent::Updated {
                        path: path.to_owned(),
                        data,
                    }
                }
                Some(_) => return,
            }
        };
        self.send(ev);
    }

    fn remove_subtree(&self, path: &str) {
        let removed: Vec<String> = {
            let Ok(mut tree) = self.tree.lock() else {
                return;
            };
            let prefix = join(path, "");
            let mut gone: Vec<String> = tree
                .range(prefix.clone()..)
                .take_while(|(p, _)| p.starts_with(&prefix))
                .map(|(p, _)| p.clone())
                .collect();
            if tree.contains_key(path) {
                gone.insert(0, path.to_owned());
            }
            for p in &gone {
                tree.remove(p);
            }
            gone
        };
        // Deepest first, as a recursive delete would go.
        for p in removed.into_iter().rev() {
            self.send(TreeEvent::Removed { path: p });
        }
    }

    /// Publishes the difference between the cached tree and `fresh`.
    fn apply(&self, fresh: Tree) {
        let gone: Vec<String> = match self.tree.lock() {
            Ok(t) => t
                .keys()
                .filter(|p| !fresh.contains_key(*p))
                .cloned()
                .collect(),
            Err(_) => return,
        };
        for p in gone.iter().rev() {
            if let Ok(mut t) = self.tree.lock() {
                t.remove(p);
            }
            self.send(TreeEvent::Removed { path: p.clone() });
        }
        for (p, d) in fresh {
            self.upsert(&p, d);
        }
    }

    fn end(&self) {
        self.live.store(false, Ordering::SeqCst);
        self.send(TreeEvent::Ended);
    }
}

async fn run(
    client: Client,
    root: String,
    opts: TreeCacheOptions,
    shared: Arc<Shared>,
    mut watcher: PersistentWatcher,
) {
    let mut states = client.state_changes();
    // Every pass loads the subtree: at the start, and after every `Resync` (a reconnect or a new
    // session, which may have hidden changes from the watch).
    loop {
        {
            match load(&client, &root, opts.max_depth).await {
                Ok(tree) => {
                    shared.apply(tree);
                    if !*shared.initialized.borrow() {
                        shared.initialized.send_replace(true);
                        shared.send(TreeEvent::Initialized);
                    }
                }
                Err(e) => {
                    tracing::debug!(path = %root, error = %e, "tree load failed; retrying");
                    if !usable(&client).await {
                        return shared.end();
                    }
                    if e.is_session_gone() {
                        // A new session: the old watch is void.
                        match opts
                            .retry
                            .run_on(&client, OpClass::Read, || {
                                client.add_watch(&root, zkit::AddWatchMode::PersistentRecursive)
                            })
                            .await
                        {
                            Ok(w) => watcher = w,
                            Err(_) => continue,
                        }
                    }
                    continue;
                }
            }
        }
        loop {
            tokio::select! {
                ev = watcher.next() => match ev {
                    // A reconnect (or a new session) may have hidden changes: reload.
                    Some(Ok(WatchItem::Resync)) => break,
                    Some(Ok(WatchItem::Event(ev))) => {
                        if !in_scope(&root, &ev.path, opts.max_depth) {
                            continue;
                        }
                        match ev.event_type {
                            EventType::NodeDeleted => shared.remove_subtree(&ev.path),
                            EventType::NodeCreated | EventType::NodeDataChanged => {
                                match client.get_data(&ev.path).await {
                                    Ok((data, stat)) => shared.upsert(&ev.path, NodeData { data, stat }),
                                    Err(ZkError::NoNode) => shared.remove_subtree(&ev.path),
                                    // Connection trouble: the reload after reconnect catches up.
                                    Err(_) => {}
                                }
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    // The session ended: on a re-created session add the watch again and reload.
                    Some(Err(_)) | None => {
                        if !usable(&client).await {
                            return shared.end();
                        }
                        if let Ok(w) = opts.retry.run_on(&client, OpClass::Read, || client.add_watch(&root, zkit::AddWatchMode::PersistentRecursive)).await {
                            watcher = w;
                        }
                        break;
                    }
                },
                s = states.next() => match s {
                    None => return shared.end(),
                    Some(s) if ended_for_good(&client, s) => {
                        return shared.end();
                    }
                    Some(_) => {}
                },
            }
        }
    }
}
