//! Queues that order their items other than first-in first-out, built on
//! [`DistributedQueue`] (same take / complete / claim semantics): Curator's
//! [`DistributedPriorityQueue`], [`DistributedDelayQueue`] and [`DistributedIdQueue`].
//!
//! The order lives in the item's node name, after `queue-`: a priority (lower first) or a due
//! time as fixed-width hex, so a sort by name is the queue's order, with the sequence number
//! breaking ties in arrival order; or an id followed by `|`, for a FIFO queue whose items can be
//! removed by id.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use std::time::Duration;
//! use zkit_recipes::queue::QueueOptions;
//! use zkit_recipes::queue_kinds::{DistributedDelayQueue, DistributedPriorityQueue};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let urgent = DistributedPriorityQueue::new(&zk, "/queues/p", QueueOptions::default());
//! urgent.put(b"later", 10).await?;
//! urgent.put(b"first", -5).await?; // lower numbers come out first
//! let later = DistributedDelayQueue::new(&zk, "/queues/d", QueueOptions::default());
//! later.put_after(b"retry job 7", Duration::from_secs(30)).await?;
//! let item = later.take().await?; // waits until an item is due
//! item.complete().await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use zkit::path::join;
use zkit::{Client, Error as ZkError, OpClass};

use crate::queue::{DistributedQueue, QueueItem, QueueOptions, QUEUE_ITEM_NAME};
use crate::znode::{delete_quietly, sorted_members};
use crate::{Error, Result};

/// How a queue orders its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// By sequence number (arrival).
    Fifo,
    /// By the name after `queue-` (a priority or a due time, then the sequence).
    ByName,
    /// By name, holding back items whose due time (ms since the epoch) has not come.
    Due,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The part of an item's name after `queue-`.
fn key(name: &str) -> &str {
    name.find(QUEUE_ITEM_NAME)
        .map(|i| &name[i + QUEUE_ITEM_NAME.len()..])
        .unwrap_or(name)
}

/// A due time from an item's name: 16 hex digits after `queue-`.
fn due_of(name: &str) -> Option<u64> {
    u64::from_str_radix(key(name).get(..16)?, 16).ok()
}

impl Order {
    /// The items of `kids` in take order and, when `now` is given, only those due then, with
    /// the time until the next one is due.
    pub(crate) fn arrange(
        self,
        kids: Vec<String>,
        now: Option<u64>,
    ) -> (Vec<String>, Option<Duration>) {
        let is_item = |n: &str| n.contains(QUEUE_ITEM_NAME);
        match self {
            Order::Fifo => (sorted_members(kids, is_item), None),
            Order::ByName | Order::Due => {
                let mut items: Vec<String> = kids.into_iter().filter(|n| is_item(n)).collect();
                items.sort_by(|a, b| key(a).cmp(key(b)));
                let (Order::Due, Some(now)) = (self, now) else {
                    return (items, None);
                };
                let mut next = None::<u64>;
                items.retain(|n| match due_of(n) {
                    Some(t) if t > now => {
                        next = Some(next.map_or(t - now, |x| x.min(t - now)));
                        false
                    }
                    _ => true,
                });
                (items, next.map(Duration::from_millis))
            }
        }
    }
}

/// A queue handing out the item with the lowest priority number first (Curator's
/// `DistributedPriorityQueue`). See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DistributedPriorityQueue {
    queue: DistributedQueue,
}

impl DistributedPriorityQueue {
    /// A priority queue at `path`.
    pub fn new(client: &Client, path: &str, options: QueueOptions) -> Self {
        DistributedPriorityQueue {
            queue: DistributedQueue::new(client, path, options).with_order(Order::ByName),
        }
    }

    /// Adds an item with `priority` (lower comes out first); returns its node.
    pub async fn put(&self, data: impl AsRef<[u8]>, priority: i32) -> Result<String> {
        // Flipping the sign bit makes the unsigned hex order the signed order.
        let p = (priority as u32) ^ 0x8000_0000;
        self.queue
            .put_named(&format!("{p:08x}"), data.as_ref())
            .await
    }

    /// The underlying queue: `take`, `try_take`, `take_timeout`, `items`, `len`.
    pub fn queue(&self) -> &DistributedQueue {
        &self.queue
    }

    /// Takes the first item (see [`DistributedQueue::take`]).
    pub async fn take(&self) -> Result<QueueItem> {
        self.queue.take().await
    }
}

/// A queue whose items come out only once their delay has passed, earliest first (Curator's
/// `DistributedDelayQueue`). Due times are wall-clock milliseconds: clocks of producers and
/// consumers should agree to within the precision that matters. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DistributedDelayQueue {
    queue: DistributedQueue,
}

impl DistributedDelayQueue {
    /// A delay queue at `path`.
    pub fn new(client: &Client, path: &str, options: QueueOptions) -> Self {
        DistributedDelayQueue {
            queue: DistributedQueue::new(client, path, options).with_order(Order::Due),
        }
    }

    /// Adds an item due at `due_ms` (milliseconds since the Unix epoch).
    pub async fn put_at(&self, data: impl AsRef<[u8]>, due_ms: u64) -> Result<String> {
        self.queue
            .put_named(&format!("{due_ms:016x}"), data.as_ref())
            .await
    }

    /// Adds an item due `delay` from now.
    pub async fn put_after(&self, data: impl AsRef<[u8]>, delay: Duration) -> Result<String> {
        let due = now_ms().saturating_add(delay.as_millis() as u64);
        self.put_at(data, due).await
    }

    /// The underlying queue (`items` lists due and not-yet-due items).
    pub fn queue(&self) -> &DistributedQueue {
        &self.queue
    }

    /// Waits for a due item and takes it.
    pub async fn take(&self) -> Result<QueueItem> {
        self.queue.take().await
    }

    /// A due item, if there is one now.
    pub async fn try_take(&self) -> Result<Option<QueueItem>> {
        self.queue.try_take().await
    }
}

/// A FIFO queue whose items carry an id, so they can be removed before they are taken (Curator's
/// `DistributedIdQueue`). See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DistributedIdQueue {
    queue: DistributedQueue,
}

/// Separates an item's id from its sequence number (Curator's `|`).
const ID_SEPARATOR: char = '|';

impl DistributedIdQueue {
    /// An id queue at `path`.
    pub fn new(client: &Client, path: &str, options: QueueOptions) -> Self {
        DistributedIdQueue {
            queue: DistributedQueue::new(client, path, options).with_order(Order::Fifo),
        }
    }

    /// Adds an item with `id` (no `/` or `|`).
    pub async fn put(&self, data: impl AsRef<[u8]>, id: &str) -> Result<String> {
        if id.is_empty() || id.contains('/') || id.contains(ID_SEPARATOR) {
            return Err(Error::InvalidArgument(format!("bad queue item id {id:?}")));
        }
        self.queue
            .put_named(&format!("{id}{ID_SEPARATOR}"), data.as_ref())
            .await
    }

    /// The id of an item node name.
    pub fn id_of(name: &str) -> Option<&str> {
        let k = key(name);
        k.rfind(ID_SEPARATOR).map(|i| &k[..i])
    }

    /// Removes every item with `id` that is still queued; returns how many were removed.
    pub async fn remove(&self, id: &str) -> Result<usize> {
        let c = self.queue.client();
        let kids = match self
            .queue
            .retry()
            .run_on(c, OpClass::Read, || c.get_children(self.queue.path()))
            .await
        {
            Ok(k) => k,
            Err(ZkError::NoNode) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut n = 0;
        for k in kids.iter().filter(|k| Self::id_of(k) == Some(id)) {
            delete_quietly(c, &join(self.queue.path(), k), self.queue.retry()).await?;
            n += 1;
        }
        Ok(n)
    }

    /// The underlying queue.
    pub fn queue(&self) -> &DistributedQueue {
        &self.queue
    }

    /// Takes the oldest item.
    pub async fn take(&self) -> Result<QueueItem> {
        self.queue.take().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_sort_signed_and_ties_by_arrival() {
        let name =
            |p: i32, seq: u32| format!("_c_x-queue-{:08x}{seq:010}", (p as u32) ^ 0x8000_0000);
        let kids = vec![name(5, 1), name(-3, 2), name(5, 0), name(0, 3)];
        let (items, _) = Order::ByName.arrange(kids, None);
        assert_eq!(items, vec![name(-3, 2), name(0, 3), name(5, 0), name(5, 1)]);
    }

    #[test]
    fn due_items_only_and_the_wait_for_the_next() {
        let name = |t: u64| format!("_c_y-queue-{t:016x}0000000001");
        let (items, next) = Order::Due.arrange(vec![name(2000), name(500), name(900)], Some(1000));
        assert_eq!(items, vec![name(500), name(900)]);
        assert_eq!(next, Some(Duration::from_millis(1000)));
    }

    #[test]
    fn ids_are_read_back_from_names() {
        assert_eq!(
            DistributedIdQueue::id_of("_c_z-queue-job-7|0000000004"),
            Some("job-7")
        );
        assert_eq!(DistributedIdQueue::id_of("queue-0000000004"), None);
    }
}
