//! [`DistributedAtomicLong`]: a 64-bit value changed atomically (Curator's
//! `DistributedAtomicLong`): each change is first tried optimistically (read, then
//! compare-and-set on the node's version) a few times; when other writers keep winning, it can be
//! promoted to a lock: the change is tried again while holding a [`Mutex`], so writers that all
//! use the lock take turns instead of colliding.
//!
//! Every result says whether the change was made, with the value before and after
//! ([`AtomicValue`]); a change that could not be made in the allowed attempts is not an error.
//! The value is stored as 8 big-endian bytes (Curator's format), in the same node a
//! [`SharedCounter`] reads.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::atomic_long::{AtomicLongOptions, DistributedAtomicLong};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let ids = DistributedAtomicLong::new(&zk, "/ids/next",
//!     AtomicLongOptions::default().promote_to_lock("/ids/next-lock"));
//! let v = ids.increment().await?;
//! if v.succeeded {
//!     println!("my id: {}", v.post);
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use zkit::Client;

use crate::counter::SharedCounter;
use crate::lock::{Mutex, MutexOptions};
use crate::{Error, Result};

/// The outcome of a change (Curator's `AtomicValue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AtomicValue {
    /// Whether the change was made.
    pub succeeded: bool,
    /// The value before (the last value read when the change was not made).
    pub pre: i64,
    /// The value after (equal to `pre` when the change was not made).
    pub post: i64,
}

/// Options of a [`DistributedAtomicLong`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AtomicLongOptions {
    /// Optimistic attempts before giving up or taking the lock (at least 1).
    pub optimistic_tries: usize,
    /// The lock to take when the optimistic attempts failed (`None`: do not promote).
    pub lock_path: Option<String>,
    /// How long to wait for the lock.
    pub lock_timeout: Duration,
    /// Attempts while holding the lock.
    pub locked_tries: usize,
}

impl Default for AtomicLongOptions {
    fn default() -> Self {
        AtomicLongOptions {
            optimistic_tries: 10,
            lock_path: None,
            lock_timeout: Duration::from_secs(10),
            locked_tries: 10,
        }
    }
}

impl AtomicLongOptions {
    /// Promotes failed optimistic changes to the lock at `path`.
    pub fn promote_to_lock(mut self, path: &str) -> Self {
        self.lock_path = Some(path.to_owned());
        self
    }
    /// Sets the optimistic attempts.
    pub fn optimistic_tries(mut self, n: usize) -> Self {
        self.optimistic_tries = n;
        self
    }
}

/// A distributed atomic long. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DistributedAtomicLong {
    counter: SharedCounter,
    lock: Option<Mutex>,
    opts: AtomicLongOptions,
}

/// What a change does to the current value: `None` means "do not change" (a failed compare).
type Change<'a> = &'a (dyn Fn(i64) -> Option<i64> + Sync);

impl DistributedAtomicLong {
    /// The value at `path` (a missing node reads as 0 and is created by the first change).
    pub fn new(client: &Client, path: &str, options: AtomicLongOptions) -> DistributedAtomicLong {
        DistributedAtomicLong {
            counter: SharedCounter::new(client, path, crate::counter::CounterOptions::default()),
            lock: options
                .lock_path
                .as_deref()
                .map(|p| Mutex::new(client, p, MutexOptions::default())),
            opts: options,
        }
    }

    /// The current value.
    pub async fn get(&self) -> Result<AtomicValue> {
        let v = self.counter.get().await?.value;
        Ok(AtomicValue {
            succeeded: true,
            pre: v,
            post: v,
        })
    }

    /// Adds 1.
    pub async fn increment(&self) -> Result<AtomicValue> {
        self.add(1).await
    }

    /// Subtracts 1.
    pub async fn decrement(&self) -> Result<AtomicValue> {
        self.add(-1).await
    }

    /// Adds `delta` (wrapping).
    pub async fn add(&self, delta: i64) -> Result<AtomicValue> {
        self.change(&|v| Some(v.wrapping_add(delta))).await
    }

    /// Sets `new` if the value is `expected`; `succeeded` is false when it was not.
    pub async fn compare_and_set(&self, expected: i64, new: i64) -> Result<AtomicValue> {
        self.change(&|v| (v == expected).then_some(new)).await
    }

    /// Sets `new` whatever the value is, within the allowed attempts.
    pub async fn try_set(&self, new: i64) -> Result<AtomicValue> {
        self.change(&|_| Some(new)).await
    }

    /// Sets `new` unconditionally (no attempt limit).
    pub async fn force_set(&self, new: i64) -> Result<()> {
        self.counter.set(new).await
    }

    async fn change(&self, f: Change<'_>) -> Result<AtomicValue> {
        let v = self.attempts(f, self.opts.optimistic_tries.max(1)).await?;
        if v.succeeded || f(v.pre).is_none() {
            return Ok(v);
        }
        let Some(lock) = &self.lock else {
            return Ok(v);
        };
        let guard = match lock.acquire_timeout(self.opts.lock_timeout).await {
            Ok(g) => g,
            Err(Error::Timeout) => return Ok(v),
            Err(e) => return Err(e),
        };
        tracing::debug!(path = %self.counter.path(), "atomic long: promoted to the lock");
        let r = self.attempts(f, self.opts.locked_tries.max(1)).await;
        let _ = guard.release().await;
        r
    }

    /// Up to `tries` read-then-compare-and-set attempts.
    async fn attempts(&self, f: Change<'_>, tries: usize) -> Result<AtomicValue> {
        let mut last = 0;
        for _ in 0..tries {
            let cur = self.counter.get().await?;
            last = cur.value;
            let Some(next) = f(cur.value) else {
                return Ok(unchanged(cur.value));
            };
            if self.counter.try_set(next, cur.version).await? {
                return Ok(AtomicValue {
                    succeeded: true,
                    pre: cur.value,
                    post: next,
                });
            }
        }
        Ok(unchanged(last))
    }
}

fn unchanged(v: i64) -> AtomicValue {
    AtomicValue {
        succeeded: false,
        pre: v,
        post: v,
    }
}
