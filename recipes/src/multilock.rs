//! [`MultiLock`]: several [`Mutex`]es taken all-or-nothing (Curator's `InterProcessMultiLock`).
//!
//! The locks are taken one by one in path order (so two `MultiLock`s over overlapping sets cannot
//! deadlock each other); if one cannot be had (timeout, error, cancellation) the ones already
//! taken are released. The guard reports the loss of any of them.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::multilock::MultiLock;
//! use zkit_recipes::MutexOptions;
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let both = MultiLock::new(&zk, &["/locks/account-1", "/locks/account-2"], MutexOptions::default());
//! let guard = both.acquire().await?;
//! // transfer between the two accounts
//! guard.release().await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokio::time::Instant;
use zkit::Client;

use crate::lock::{Mutex, MutexGuard, MutexOptions};
use crate::state::LossReason;
use crate::{Error, Result};

/// A set of locks taken together. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct MultiLock {
    locks: Vec<Mutex>,
}

impl MultiLock {
    /// The locks at `paths` (duplicates are taken once).
    pub fn new(client: &Client, paths: &[&str], options: MutexOptions) -> MultiLock {
        let mut paths: Vec<&str> = paths.to_vec();
        paths.sort_unstable();
        paths.dedup();
        MultiLock {
            locks: paths
                .into_iter()
                .map(|p| Mutex::new(client, p, options.clone()))
                .collect(),
        }
    }

    /// Takes every lock, waiting as long as it takes.
    pub async fn acquire(&self) -> Result<MultiLockGuard> {
        self.acquire_inner(None).await
    }

    /// Takes every lock within `timeout`, or none ([`Error::Timeout`]).
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<MultiLockGuard> {
        self.acquire_inner(Some(Instant::now() + timeout)).await
    }

    async fn acquire_inner(&self, deadline: Option<Instant>) -> Result<MultiLockGuard> {
        // Guards taken so far are dropped (released) if this future is dropped or fails.
        let mut guards = Vec::with_capacity(self.locks.len());
        for lock in &self.locks {
            let r = match deadline {
                Some(d) => {
                    lock.acquire_timeout(d.saturating_duration_since(Instant::now()))
                        .await
                }
                None => lock.acquire().await,
            };
            match r {
                Ok(g) => guards.push(g),
                Err(e) => {
                    for g in guards.into_iter().rev() {
                        let _ = g.release().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(MultiLockGuard { guards })
    }
}

/// Proof of holding every lock of a [`MultiLock`]; dropping it releases them in the background.
#[derive(Debug)]
#[must_use = "dropping the guard releases the locks"]
pub struct MultiLockGuard {
    guards: Vec<MutexGuard>,
}

impl MultiLockGuard {
    /// Resolves when any of the locks is (or may be) lost.
    pub async fn lost(&self) -> LossReason {
        let losses: Vec<_> = self.guards.iter().map(|g| Box::pin(g.lost())).collect();
        if losses.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(losses).await.0
    }

    /// Whether every lock is still held.
    pub fn is_held(&self) -> bool {
        self.guards.iter().all(MutexGuard::is_held)
    }

    /// The guards, in path order.
    pub fn guards(&self) -> &[MutexGuard] {
        &self.guards
    }

    /// Releases every lock (in reverse order); returns the first failure.
    pub async fn release(self) -> Result<()> {
        let mut first: Option<Error> = None;
        for g in self.guards.into_iter().rev() {
            if let Err(e) = g.release().await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
