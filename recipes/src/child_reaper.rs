//! [`ChildReaper`] and [`Reaper`]: delete nodes that have stayed empty (Curator's `ChildReaper`
//! and `Reaper`), for parents left behind by recipes on servers without container nodes, or for
//! per-item directories nobody cleans up.
//!
//! A pass every `interval` looks at each candidate: a [`Reaper`]'s explicit paths, or a
//! [`ChildReaper`]'s parent's children. A persistent node with no children that was already
//! empty and unchanged (same data and child versions) at the previous pass is deleted, with its
//! data version, so a node written to in between is kept; a node that gained a child meanwhile
//! is refused by the server (`NotEmpty`). Ephemeral nodes are never touched. The number of nodes
//! deleted so far is the observable value ([`ChildReaper::reaped`],
//! [`ChildReaper::changes`]).
//!
//! Connection loss only delays a pass; a pass after a session expiry simply starts over (a
//! node must be seen empty twice by the same reaper).
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use std::time::Duration;
//! use zkit_recipes::child_reaper::{ChildReaper, ReaperOptions};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let reaper = ChildReaper::start(&zk, "/locks", ReaperOptions::default().interval(Duration::from_secs(60)));
//! # let _ = reaper;
//! # Ok(()) }
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use zkit::path::join;
use zkit::{Client, Error as ZkError};

use crate::state::{usable, TaskGuard};

/// Options of a [`Reaper`] / [`ChildReaper`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReaperOptions {
    /// Time between passes (a node is deleted at the second pass that sees it empty).
    pub interval: Duration,
}

impl Default for ReaperOptions {
    fn default() -> Self {
        ReaperOptions {
            interval: Duration::from_secs(60),
        }
    }
}

impl ReaperOptions {
    /// Sets the time between passes.
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }
}

/// Where the candidates of a pass come from.
#[derive(Debug, Clone)]
enum Source {
    Paths(Arc<StdMutex<BTreeSet<String>>>),
    ChildrenOf(String),
}

/// Empty-node state seen at the previous pass: (data version, child version).
type Seen = HashMap<String, (i32, i32)>;

/// Deletes explicit paths once they have stayed empty. See the [module docs](self).
#[derive(Debug)]
pub struct Reaper {
    paths: Arc<StdMutex<BTreeSet<String>>>,
    reaped: watch::Receiver<u64>,
    _task: TaskGuard,
}

impl Reaper {
    /// Starts a reaper with no paths yet.
    pub fn start(client: &Client, options: ReaperOptions) -> Reaper {
        let paths = Arc::new(StdMutex::new(BTreeSet::new()));
        let (tx, reaped) = watch::channel(0);
        let task = tokio::spawn(run(
            client.clone(),
            Source::Paths(paths.clone()),
            options,
            tx,
        ));
        Reaper {
            paths,
            reaped,
            _task: TaskGuard(task),
        }
    }

    /// Watches `path`: it is deleted once it stays empty.
    pub fn add_path(&self, path: &str) {
        if let Ok(mut p) = self.paths.lock() {
            p.insert(path.to_owned());
        }
    }

    /// Stops watching `path`.
    pub fn remove_path(&self, path: &str) {
        if let Ok(mut p) = self.paths.lock() {
            p.remove(path);
        }
    }

    /// Nodes deleted so far.
    pub fn reaped(&self) -> u64 {
        *self.reaped.borrow()
    }
}

/// Deletes the children of a parent once they have stayed empty. See the [module docs](self).
#[derive(Debug)]
pub struct ChildReaper {
    reaped: watch::Receiver<u64>,
    _task: TaskGuard,
}

impl ChildReaper {
    /// Starts reaping the empty children of `parent`.
    pub fn start(client: &Client, parent: &str, options: ReaperOptions) -> ChildReaper {
        let (tx, reaped) = watch::channel(0);
        let source = Source::ChildrenOf(parent.to_owned());
        let task = tokio::spawn(run(client.clone(), source, options, tx));
        ChildReaper {
            reaped,
            _task: TaskGuard(task),
        }
    }

    /// Nodes deleted so far.
    pub fn reaped(&self) -> u64 {
        *self.reaped.borrow()
    }

    /// The count of deleted nodes after each pass that deleted some; ends with the reaper.
    pub fn changes(&self) -> impl Stream<Item = u64> + Send + 'static {
        let mut rx = self.reaped.clone();
        rx.mark_unchanged();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let n = *rx.borrow_and_update();
            Some((n, rx))
        })
    }
}

async fn run(client: Client, source: Source, opts: ReaperOptions, reaped: watch::Sender<u64>) {
    let mut seen = Seen::new();
    let mut ticks = tokio::time::interval(opts.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !usable(&client).await {
            return;
        }
        let candidates = match &source {
            Source::Paths(p) => p
                .lock()
                .map(|p| p.iter().cloned().collect())
                .unwrap_or_default(),
            Source::ChildrenOf(parent) => match client.get_children(parent).await {
                Ok(kids) => kids.iter().map(|k| join(parent, k)).collect(),
                Err(e) => {
                    tracing::debug!(parent = %parent, error = %e, "reaper: listing failed");
                    Vec::new()
                }
            },
        };
        let n = pass(&client, candidates, &mut seen).await;
        if n > 0 {
            reaped.send_modify(|r| *r += n);
        }
    }
}

/// One pass over `candidates`; returns how many were deleted.
async fn pass(client: &Client, candidates: Vec<String>, seen: &mut Seen) -> u64 {
    let mut now = Seen::new();
    let mut deleted = 0;
    for path in candidates {
        let st = match client.exists(&path).await {
            Ok(Some(st)) => st,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(path = %path, error = %e, "reaper: exists failed");
                // Keep what we knew: the next pass can still delete it.
                if let Some(v) = seen.get(&path) {
                    now.insert(path, *v);
                }
                continue;
            }
        };
        if st.num_children != 0 || st.ephemeral_owner != 0 {
            continue;
        }
        let versions = (st.version, st.cversion);
        if seen.get(&path) == Some(&versions) {
            match client.delete(&path, Some(st.version)).await {
                Ok(()) => {
                    tracing::debug!(path = %path, "reaped an empty node");
                    deleted += 1;
                    continue;
                }
                Err(ZkError::NotEmpty | ZkError::BadVersion | ZkError::NoNode) => {}
                Err(e) => tracing::debug!(path = %path, error = %e, "reaper: delete failed"),
            }
        }
        now.insert(path, versions);
    }
    *seen = now;
    deleted
}
