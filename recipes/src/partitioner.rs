//! [`SetPartitioner`]: divides a set of items among the members of a group (kazoo's
//! `SetPartitioner`): each member gets a share, every item belongs to exactly one member, and the
//! shares are recomputed when members come or go.
//!
//! Members join a party (ephemeral nodes `<path>/party/<id>`, kept through connection loss and
//! re-created after an expiry). Once membership has been stable for `settle`, each member takes
//! the items at its position in the sorted member list, every `n`-th of the sorted items (kazoo's
//! default partition), and locks each of them (a [`Mutex`] at `<path>/items/<item>`): a member
//! holds its share only when it holds every lock, so two members never hold one item even while
//! their views of the membership differ.
//!
//! The state is observable like every recipe here: [`SetPartitioner::state`] now and
//! [`SetPartitioner::changes`] as a `Stream`. When membership changes, the state becomes
//! [`PartitionState::Release`]: stop working on the share, then call
//! [`SetPartitioner::release`]; the locks are released and a new share allocated. A lost lock
//! (its session expired) moves straight to allocating again.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::partitioner::{PartitionState, PartitionerOptions, SetPartitioner};
//! let zk = zkit::Client::builder("127.0.0.1:2181").recreate_on_expiry(true).connect().await?;
//! let items: Vec<String> = (0..12).map(|i| format!("shard-{i}")).collect();
//! let p = SetPartitioner::start(&zk, "/partitions/shards", items, PartitionerOptions::new("worker-1")).await?;
//! loop {
//!     match p.wait_for_change().await? {
//!         PartitionState::Acquired(mine) => println!("working on {mine:?}"),
//!         PartitionState::Release => p.release(),
//!         _ => {}
//!     }
//! }
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::{watch, Notify};
use zkit::path::join;
use zkit::{Client, CreateMode};

use crate::lock::{Mutex, MutexGuard, MutexOptions};
use crate::persistent_node::{PersistentNode, PersistentNodeOptions};
use crate::state::{usable, TaskGuard};
use crate::{Error, Result};

/// Where a member's share stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartitionState {
    /// Waiting for membership to settle, or taking the locks of a new share.
    Allocating,
    /// This member holds these items (sorted) until the state changes.
    Acquired(Vec<String>),
    /// Membership changed: stop working on the share and call [`SetPartitioner::release`].
    Release,
    /// The partitioner stopped (closed, or the client will never connect again).
    Failed,
}

/// Options of a [`SetPartitioner`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PartitionerOptions {
    /// This member's id (unique in the group; no `/`).
    pub id: String,
    /// How long membership must stay unchanged before a share is allocated (kazoo's
    /// `time_boundary`).
    pub settle: Duration,
}

impl PartitionerOptions {
    /// Options for member `id` (settle time 1 s).
    pub fn new(id: &str) -> Self {
        PartitionerOptions {
            id: id.to_owned(),
            settle: Duration::from_secs(1),
        }
    }
    /// Sets the settle time.
    pub fn settle(mut self, d: Duration) -> Self {
        self.settle = d;
        self
    }
}

/// Divides a set among group members. See the [module docs](self).
#[derive(Debug)]
pub struct SetPartitioner {
    state: watch::Receiver<PartitionState>,
    released: Arc<Notify>,
    _task: TaskGuard,
}

/// Member `idx` of `members`' share of `items` (both sorted): every `members`-th item from
/// `idx`.
pub fn share(items: &[String], members: usize, idx: usize) -> Vec<String> {
    if members == 0 {
        return Vec::new();
    }
    items.iter().skip(idx).step_by(members).cloned().collect()
}

impl SetPartitioner {
    /// Joins the party at `path` and starts allocating `items`.
    pub async fn start(
        client: &Client,
        path: &str,
        items: Vec<String>,
        options: PartitionerOptions,
    ) -> Result<SetPartitioner> {
        if options.id.is_empty() || options.id.contains('/') {
            return Err(Error::InvalidArgument(format!(
                "bad member id {:?}",
                options.id
            )));
        }
        if let Some(bad) = items.iter().find(|i| i.is_empty() || i.contains('/')) {
            return Err(Error::InvalidArgument(format!("bad item {bad:?}")));
        }
        let party = join(path, "party");
        let me = PersistentNode::start(
            client,
            &join(&party, &options.id),
            PersistentNodeOptions::new(CreateMode::Ephemeral).data(options.id.as_bytes()),
        )
        .await?;
        let mut items = items;
        items.sort();
        items.dedup();
        let (tx, state) = watch::channel(PartitionState::Allocating);
        let released = Arc::new(Notify::new());
        let job = Job {
            client: client.clone(),
            party,
            items_dir: join(path, "items"),
            items,
            opts: options,
            released: released.clone(),
            state: tx,
            _me: me,
        };
        let task = tokio::spawn(job.run());
        Ok(SetPartitioner {
            state,
            released,
            _task: TaskGuard(task),
        })
    }

    /// The state now.
    pub fn state(&self) -> PartitionState {
        self.state.borrow().clone()
    }

    /// Waits for a state other than the current one and returns it.
    pub async fn wait_for_change(&self) -> Result<PartitionState> {
        let mut rx = self.state.clone();
        let now = rx.borrow_and_update().clone();
        loop {
            rx.changed().await.map_err(|_| Error::Closed)?;
            let s = rx.borrow_and_update().clone();
            if s != now {
                return Ok(s);
            }
        }
    }

    /// Every state from now on; ends when the partitioner does.
    pub fn changes(&self) -> impl Stream<Item = PartitionState> + Send + 'static {
        let mut rx = self.state.clone();
        rx.mark_unchanged();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let s = rx.borrow_and_update().clone();
            Some((s, rx))
        })
    }

    /// After [`PartitionState::Release`]: the application stopped using its share; release
    /// the locks and allocate again.
    pub fn release(&self) {
        self.released.notify_one();
    }
}

struct Job {
    client: Client,
    party: String,
    items_dir: String,
    items: Vec<String>,
    opts: PartitionerOptions,
    released: Arc<Notify>,
    state: watch::Sender<PartitionState>,
    _me: PersistentNode,
}

impl Job {
    async fn run(self) {
        loop {
            if !usable(&self.client).await {
                self.state.send_replace(PartitionState::Failed);
                return;
            }
            self.state.send_replace(PartitionState::Allocating);
            let Ok((members, changed)) = self.settled_members().await else {
                continue;
            };
            let Some(idx) = members.iter().position(|m| m == &self.opts.id) else {
                // Our own node is not (yet) back after an expiry: look again.
                tokio::time::sleep(self.opts.settle).await;
                continue;
            };
            let mine = share(&self.items, members.len(), idx);
            let guards = tokio::select! {
                g = self.lock_all(&mine) => g,
                _ = changed => continue, // membership moved while locking: start over
            };
            let Ok(guards) = guards else {
                continue;
            };
            self.state.send_replace(PartitionState::Acquired(mine));
            self.hold(guards, &members).await;
        }
    }

    /// Waits until the member list has stayed the same for `settle`; returns it and a future
    /// that resolves on the next change.
    async fn settled_members(
        &self,
    ) -> Result<(Vec<String>, impl std::future::Future<Output = ()> + use<>)> {
        let c = &self.client;
        loop {
            let (mut members, _, w) = match c.get_children_and_watch(&self.party).await {
                Ok(x) => x,
                Err(e) => {
                    if e.is_retryable() {
                        crate::state::wait_connected(c).await?;
                    }
                    return Err(e.into());
                }
            };
            members.sort();
            let mut w = Box::pin(w);
            tokio::select! {
                _ = &mut w => continue,
                _ = tokio::time::sleep(self.opts.settle) => {}
            }
            return Ok((members, async move {
                let _ = w.await;
            }));
        }
    }

    async fn lock_all(&self, mine: &[String]) -> Result<Vec<MutexGuard>> {
        let mut guards = Vec::with_capacity(mine.len());
        for item in mine {
            let m = Mutex::new(
                &self.client,
                &join(&self.items_dir, item),
                MutexOptions::default().data(self.opts.id.clone()),
            );
            guards.push(m.acquire().await?);
        }
        Ok(guards)
    }

    /// Holds the share until membership changes (then waits for the application's release)
    /// or a lock is lost.
    async fn hold(&self, guards: Vec<MutexGuard>, members: &[String]) {
        let c = &self.client;
        let membership = async {
            loop {
                match c.get_children_and_watch(&self.party).await {
                    Ok((mut now, _, w)) => {
                        now.sort();
                        if now != members {
                            return; // changed since the share was computed
                        }
                        let _ = w.await;
                    }
                    Err(e) if e.is_retryable() => {
                        let _ = crate::state::wait_connected(c).await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            }
        };
        let moved = if guards.is_empty() {
            membership.await;
            true
        } else {
            // (select_all needs at least one future: guards is not empty here.)
            let lost = futures::future::select_all(guards.iter().map(|g| Box::pin(g.lost())));
            tokio::select! {
                _ = membership => true,
                _ = lost => false,
            }
        };
        if moved {
            self.state.send_replace(PartitionState::Release);
            self.released.notified().await;
        }
        for g in guards {
            let _ = g.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_item_once() {
        let items: Vec<String> = (0..7).map(|i| format!("i{i}")).collect();
        let mut all: Vec<String> = (0..3).flat_map(|m| share(&items, 3, m)).collect();
        all.sort();
        assert_eq!(all, items);
        assert_eq!(share(&items, 3, 0), ["i0", "i3", "i6"]);
        assert!(share(&items, 0, 0).is_empty());
    }
}
