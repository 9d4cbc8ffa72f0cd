//! [`SharedCounter`]: a 64-bit integer in one znode, changed by compare-and-set on the node's
//! version (Curator's `SharedCount` / `DistributedAtomicLong`).
//!
//! The value is stored big-endian: 8 bytes (`DistributedAtomicLong`'s format), or 4 bytes when
//! the node already holds a 4-byte `SharedCount` value that the new value fits (so Java readers
//! keep working). A missing node reads as 0 and is created on the first write.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::counter::{CounterOptions, SharedCounter};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let hits = SharedCounter::new(&zk, "/counters/hits", CounterOptions::default());
//! let n = hits.add(1).await?; // a CAS loop: retried when another writer got in first
//! let current = hits.get().await?;
//! if !hits.try_set(current.value * 2, current.version).await? {
//!     println!("someone else changed it since {n}");
//! }
//! # Ok(()) }
//! ```

use zkit::{Client, CreateMode, CreateOptions, Error as ZkError, OpClass, RetryPolicy};

use crate::znode::ensure_path;
use crate::{Error, Result};

/// A counter value and the node version it was read at (`-1`: the node does not exist).
/// Listen to a counter with [`SharedCounter::watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Versioned {
    /// The value.
    pub value: i64,
    /// The node's data version (`-1`: no node yet).
    pub version: i32,
    /// The stored width in bytes (4 or 8; for a missing node, the width a create would use).
    width: usize,
}

/// A shared counter. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct SharedCounter {
    client: Client,
    path: String,
    /// Bytes of a node this counter creates: 8, or 4 for Curator's `SharedCount`.
    new_width: usize,
    retry: RetryPolicy,
}

/// Options of a [`SharedCounter`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CounterOptions {
    /// Create the node in Curator's `SharedCount` form: a 4-byte value (widened to 8 only when
    /// a value does not fit), so Java `SharedCount`s on the same path read it. Default: 8 bytes.
    pub shared_count: bool,
    /// How reads are retried (default [`default_retry`](crate::znode::default_retry)).
    pub retry: RetryPolicy,
}

impl Default for CounterOptions {
    fn default() -> Self {
        CounterOptions {
            shared_count: false,
            retry: crate::znode::default_retry(),
        }
    }
}

impl CounterOptions {
    /// Curator's `SharedCount` form (see [`shared_count`](Self::shared_count)).
    pub fn shared_count(mut self) -> Self {
        self.shared_count = true;
        self
    }
    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
}

impl SharedCounter {
    /// The counter at `path`.
    pub fn new(client: &Client, path: &str, options: CounterOptions) -> SharedCounter {
        SharedCounter {
            client: client.clone(),
            path: path.to_owned(),
            new_width: if options.shared_count { 4 } else { 8 },
            retry: options.retry,
        }
    }

    /// The counter's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The current value and version.
    pub async fn get(&self) -> Result<Versioned> {
        let c = &self.client;
        match self
            .retry
            .run_on(c, OpClass::Read, || c.get_data(&self.path))
            .await
        {
            Ok((data, stat)) => {
                let (value, width) = decode(&self.path, &data)?;
                Ok(Versioned {
                    value,
                    version: stat.version,
                    width,
                })
            }
            Err(ZkError::NoNode) => Ok(Versioned {
                value: 0,
                version: -1,
                width: self.new_width,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets the value if the node is still at `version` (`-1`: if it does not exist yet);
    /// returns whether it was set.
    pub async fn try_set(&self, value: i64, version: i32) -> Result<bool> {
        let width = if version >= 0 {
            self.get().await?.width
        } else {
            self.new_width
        };
        self.cas(value, version, width).await
    }

    /// One compare-and-set. A connection loss mid-write is resolved only when the outcome is
    /// certain (the node did not move: try again); otherwise it is [`Error::Indeterminate`],
    /// because another writer can leave exactly the state our write would have left.
    async fn cas(&self, value: i64, version: i32, width: usize) -> Result<bool> {
        let c = &self.client;
        let bytes = encode(value, width);
        loop {
            let r = if version < 0 {
                let parent = zkit::path::parent(&self.path);
                ensure_path(c, parent, CreateMode::Persistent, &self.retry).await?;
                c.create(&self.path, &bytes, &CreateOptions::persistent())
                    .await
                    .map(|_| ())
            } else {
                c.set_data(&self.path, &bytes, Some(version))
                    .await
                    .map(|_| ())
            };
            match r {
                Ok(()) => return Ok(true),
                Err(ZkError::BadVersion | ZkError::NoNode | ZkError::NodeExists) => {
                    return Ok(false)
                }
                Err(e) if e.is_retryable() => {
                    let unknown = || {
                        Error::Indeterminate(format!(
                            "counter {} changed while a write to it was cut off",
                            self.path
                        ))
                    };
                    match self.version_after_reconnect().await {
                        Ok(v) if v == version => continue, // untouched: not applied
                        _ => return Err(unknown()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The node's version once connected again and synced, retrying through further
    /// connection losses.
    async fn version_after_reconnect(&self) -> Result<i32> {
        let c = &self.client;
        loop {
            crate::state::wait_connected(c).await?;
            match c.sync("/").await {
                Ok(()) => return Ok(self.get().await?.version),
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sets the value unconditionally.
    pub async fn set(&self, value: i64) -> Result<()> {
        loop {
            let cur = self.get().await?;
            if self.cas(value, cur.version, cur.width).await? {
                return Ok(());
            }
        }
    }

    /// Adds `delta` (compare-and-set, retried on conflict); returns the new value. Fails with
    /// [`Error::Indeterminate`] when a connection loss leaves it unknown whether this add was
    /// applied: retrying blindly could count it twice.
    pub async fn add(&self, delta: i64) -> Result<i64> {
        loop {
            let cur = self.get().await?;
            let next = cur.value.wrapping_add(delta);
            let width = if cur.width == 4 && i32::try_from(next).is_err() {
                8
            } else {
                cur.width
            };
            if self.cas(next, cur.version, width).await? {
                return Ok(next);
            }
        }
    }
}

fn decode(path: &str, data: &[u8]) -> Result<(i64, usize)> {
    match data.len() {
        0 => Ok((0, 8)),
        4 => Ok((
            i32::from_be_bytes([data[0], data[1], data[2], data[3]]) as i64,
            4,
        )),
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(data);
            Ok((i64::from_be_bytes(b), 8))
        }
        n => Err(Error::BadData {
            path: path.to_owned(),
            reason: format!("a counter is 4 or 8 bytes, found {n}"),
        }),
    }
}

fn encode(value: i64, width: usize) -> Vec<u8> {
    match (width, i32::try_from(value)) {
        (4, Ok(v)) => v.to_be_bytes().to_vec(),
        _ => value.to_be_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_both_widths() {
        assert_eq!(decode("/c", &encode(-5, 8)).unwrap(), (-5, 8));
        assert_eq!(decode("/c", &encode(7, 4)).unwrap(), (7, 4));
        assert_eq!(encode(i64::MAX, 4).len(), 8, "widened when it does not fit");
        assert!(decode("/c", b"abc").is_err());
    }
}
