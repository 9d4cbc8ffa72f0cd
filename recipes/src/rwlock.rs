//! [`RwLock`]: a distributed readers-writer lock (Curator's `InterProcessReadWriteLock`, same
//! `__READ__` / `__WRIT__` node names, so Java services can share it).
//!
//! Readers and writers queue as ephemeral-sequential nodes under one path, in arrival order. A
//! writer holds the lock when its node is first in the queue; a reader holds it when no writer's
//! node comes before its own. A writer that queued therefore holds back every reader that comes
//! after it: writers are not starved by a stream of readers. Each waiter watches one node: a
//! writer its predecessor, a reader the nearest writer before it.
//!
//! Both sides are [`Mutex`] values (re-entrant per value, with the same guards, timeouts,
//! cancellation and loss signals).
//!
//! Re-entrant across sides, like Curator's: while this `RwLock` value holds the write lock, its
//! read side is not blocked by its own writer, so a writer can take the read lock and then
//! release the write lock: a downgrade, with no moment where neither is held. The reverse (a
//! reader taking the write lock) would wait for its own read node: not supported.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! # use zkit_recipes::{rwlock::RwLock, MutexOptions};
//! # let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let lock = RwLock::new(&zk, "/locks/catalog", MutexOptions::default());
//! let w = lock.write().acquire().await?;
//! // ... write ...
//! let r = lock.read().acquire().await?; // allowed while writing
//! w.release().await?; // downgraded: other readers may come in, writers still wait
//! r.release().await?;
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use zkit_recipes::rwlock::RwLock;
//! use zkit_recipes::MutexOptions;
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let lock = RwLock::new(&zk, "/locks/catalog", MutexOptions::default());
//! let reading = lock.read().acquire().await?; // shared with other readers
//! reading.release().await?;
//! let writing = lock.write().acquire().await?; // exclusive
//! writing.release().await?;
//! # Ok(()) }
//! ```

use zkit::Client;

use crate::lock::{Mutex, MutexOptions, WRITE_LOCK_NAME};

/// A readers-writer lock. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct RwLock {
    read: Mutex,
    write: Mutex,
}

impl RwLock {
    /// A readers-writer lock at `path` (created as a container when missing).
    pub fn new(client: &Client, path: &str, options: MutexOptions) -> RwLock {
        let write = Mutex::with_lock_name(client, path, WRITE_LOCK_NAME, options.clone());
        RwLock {
            read: Mutex::reader_of(&write, options),
            write,
        }
    }

    /// The read (shared) side.
    pub fn read(&self) -> &Mutex {
        &self.read
    }

    /// The write (exclusive) side.
    pub fn write(&self) -> &Mutex {
        &self.write
    }
}
