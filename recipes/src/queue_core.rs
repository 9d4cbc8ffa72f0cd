//! The sequential-node waiting line that [`Mutex`](crate::lock::Mutex) (and so
//! [`RwLock`](crate::rwlock::RwLock)) and [`LeaderLatch`](crate::leader::LeaderLatch) (and so
//! [`LeaderSelector`](crate::leader::LeaderSelector)) are built on: list the directory, sort the
//! members by sequence number, find our node, and either hold the head of the line or watch the
//! one node that blocks us (ZooKeeper's lock recipe, without the herd effect).
//!
//! The recipes differ only in what blocks a node (the one before it; for a read lock the nearest
//! writer before it) and in how a wait may be cut short (a deadline; a re-queue request), so both
//! come in as parameters: a [`Line`] says who is a member and who blocks whom, a [`Waiter`] bounds
//! every wait.

use std::future::Future;

use zkit::path::{basename, join};
use zkit::Client;

use crate::state::{wait_connected, why_node_gone, LossReason};
use crate::znode::sorted_members;

/// Who stands in a line and who blocks whom.
pub(crate) trait Line {
    /// Whether a child of the directory is a member of the line.
    fn is_member(&self, name: &str) -> bool;

    /// `None` when the member at `idx` of `queue` (sorted) is at the head, else the index of the
    /// member it waits for.
    fn blocker(&self, queue: &[String], idx: usize) -> Option<usize>;
}

/// How the waits of [`wait_for_turn`] may be cut short.
pub(crate) trait Waiter {
    /// Why a wait was cut short.
    type Stop;

    /// Runs a wait for the connection to come back, unless stopped first.
    async fn connection<T>(&mut self, wait: impl Future<Output = T>) -> Result<T, Self::Stop>;

    /// Runs a wait for the watch on the blocking node, unless stopped first.
    async fn blocker<T>(&mut self, wait: impl Future<Output = T>) -> Result<T, Self::Stop>;

    /// Called when our node is behind `blocker` (a path), before its watch is set; `Err` ends
    /// the wait there (a try-lock that will not queue).
    fn behind(&mut self, blocker: &str) -> Result<(), Self::Stop>;
}

/// How [`wait_for_turn`] ended without reaching the head of the line.
#[derive(Debug)]
pub(crate) enum Interrupted<S> {
    /// The [`Waiter`] stopped a wait.
    Stopped(S),
    /// Our node is no longer in the line: the session changed, or someone deleted it.
    Gone(LossReason),
    /// Listing the line, waiting for the connection or a watch failed; a watch that fails this
    /// way always has a session-gone error.
    Failed(zkit::Error),
    /// Setting the watch on the blocking node failed with an error that is neither retryable
    /// nor the session's.
    WatchFailed(zkit::Error),
}

/// Waits until `node` (a member of `line` in directory `dir`, made by session `session_id`) is at
/// the head of the line.
pub(crate) async fn wait_for_turn<W: Waiter>(
    client: &Client,
    dir: &str,
    line: &impl Line,
    node: &str,
    session_id: i64,
    waiter: &mut W,
) -> Result<(), Interrupted<W::Stop>> {
    let ours = basename(node);
    loop {
        let kids = match client.get_children(dir).await {
            Ok(k) => k,
            Err(e) if e.is_retryable() => {
                reconnect(client, waiter).await?;
                continue;
            }
            Err(e) => return Err(Interrupted::Failed(e)),
        };
        if client.session_id() != session_id {
            return Err(Interrupted::Gone(LossReason::SessionChanged));
        }
        let queue = sorted_members(kids, |n| line.is_member(n));
        let Some(idx) = queue.iter().position(|n| n == ours) else {
            // Our ephemeral is gone: the session expired (or someone deleted it).
            return Err(Interrupted::Gone(why_node_gone(client, session_id)));
        };
        let Some(blocker) = line.blocker(&queue, idx) else {
            return Ok(());
        };
        let pred = join(dir, &queue[blocker]);
        waiter.behind(&pred).map_err(Interrupted::Stopped)?;
        match client.exists_and_watch(&pred).await {
            Ok((None, _)) => continue,
            Ok((Some(_), w)) => {
                tracing::debug!(node = %ours, predecessor = %pred, "waiting for predecessor");
                match waiter.blocker(w).await.map_err(Interrupted::Stopped)? {
                    Err(e) if e.is_session_gone() => return Err(Interrupted::Failed(e)),
                    Ok(_) | Err(_) => continue,
                }
            }
            Err(e) if e.is_retryable() => reconnect(client, waiter).await?,
            Err(e) if e.is_session_gone() => return Err(Interrupted::Failed(e)),
            Err(e) => return Err(Interrupted::WatchFailed(e)),
        }
    }
}

async fn reconnect<W: Waiter>(client: &Client, waiter: &mut W) -> Result<(), Interrupted<W::Stop>> {
    waiter
        .connection(wait_connected(client))
        .await
        .map_err(Interrupted::Stopped)?
        .map_err(Interrupted::Failed)
}
