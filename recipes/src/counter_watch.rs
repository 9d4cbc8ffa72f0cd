//! Listening to a [`SharedCounter`] (Curator's `SharedCount` listeners): the current value and
//! a `Stream` of the values that follow, with a flag for when the value may be stale.
//!
//! A background task sets an exists-watch on the counter's node, then reads the value, and
//! goes round again when the watch fires: the watch is in place before the read, so no change
//! is missed (several quick changes may show as one, with the latest value, as with Curator).
//! Through a connection loss the last value is kept and marked stale; after reconnecting (or
//! re-creating the session) the task reads again.
//!
//! ```no_run
//! # async fn f() -> zkit_recipes::Result<()> {
//! use futures::StreamExt;
//! use zkit_recipes::counter::{CounterOptions, SharedCounter};
//! let zk = zkit::Client::connect("127.0.0.1:2181").await?;
//! let watch = SharedCounter::new(&zk, "/counters/epoch", CounterOptions::default()).watch().await?;
//! println!("now {}", watch.current().value);
//! let mut changes = Box::pin(watch.changes());
//! while let Some(v) = changes.next().await {
//!     println!("epoch {}", v.value);
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;

use crate::counter::{SharedCounter, Versioned};
use crate::state::{usable, TaskGuard};
use crate::{Error, Result};

/// What the task publishes: the value and whether it is known to be current.
#[derive(Debug, Clone, Copy)]
struct Seen {
    value: Versioned,
    fresh: bool,
}

/// A watched [`SharedCounter`]. See the [module docs](self).
#[derive(Debug)]
pub struct CounterWatch {
    rx: watch::Receiver<Seen>,
    /// Shared with the streams from [`changes`](CounterWatch::changes): the task runs while
    /// any of them is alive.
    task: Arc<TaskGuard>,
}

impl SharedCounter {
    /// Watches the counter: returns once its value has been read.
    pub async fn watch(&self) -> Result<CounterWatch> {
        let first = self.get().await?;
        let (tx, rx) = watch::channel(Seen {
            value: first,
            fresh: true,
        });
        let task = tokio::spawn(follow(self.clone(), tx));
        Ok(CounterWatch {
            rx,
            task: Arc::new(TaskGuard(task)),
        })
    }
}

impl CounterWatch {
    /// The last value read.
    pub fn current(&self) -> Versioned {
        self.rx.borrow().value
    }

    /// Whether the last value is known to be current: false from a connection loss until the
    /// value has been read again, and once the watch has ended.
    pub fn is_fresh(&self) -> bool {
        self.rx.borrow().fresh && self.rx.has_changed().is_ok()
    }

    /// Waits for the next value (a change of value or version); fails with
    /// [`Error::Closed`] once the watch has ended (the client closed, the session gone for good).
    pub async fn changed(&mut self) -> Result<Versioned> {
        loop {
            let before = self.rx.borrow_and_update().value;
            self.rx.changed().await.map_err(|_| Error::Closed)?;
            let now = self.rx.borrow_and_update().value;
            if now != before {
                return Ok(now);
            }
        }
    }

    /// Every new value from now on; keeps the watch running while it is alive, and ends when
    /// the watch ends.
    pub fn changes(&self) -> impl Stream<Item = Versioned> + Send + 'static {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        let last = rx.borrow().value;
        let task = self.task.clone();
        futures::stream::unfold((rx, last, task), |(mut rx, last, task)| async move {
            loop {
                rx.changed().await.ok()?;
                let now = rx.borrow_and_update().value;
                if now != last {
                    return Some((now, (rx, now, task)));
                }
            }
        })
    }
}

async fn follow(counter: SharedCounter, tx: watch::Sender<Seen>) {
    let client = counter.client().clone();
    let path = counter.path().to_owned();
    loop {
        if !usable(&client).await {
            return; // the client will never connect again: the receivers see the end
        }
        let watched = client.exists_and_watch(&path).await;
        let read = match watched {
            Ok((_, w)) => counter.get().await.map(|v| (v, w)),
            Err(e) => Err(e.into()),
        };
        match read {
            Ok((value, w)) => {
                tx.send_if_modified(|s| {
                    let changed = s.value != value || !s.fresh;
                    *s = Seen { value, fresh: true };
                    changed
                });
                if w.await.is_err() {
                    // The connection dropped (the watch is re-armed on reconnect, but a
                    // change in between would be missed): mark stale and read again.
                    tx.send_modify(|s| s.fresh = false);
                }
            }
            Err(e) => {
                tracing::debug!(path = %path, error = %e, "counter watch: read failed");
                tx.send_modify(|s| s.fresh = false);
                if matches!(e, Error::BadData { .. }) {
                    // Not a counter (yet): wait for the node to change.
                    if let Ok((_, w)) = client.exists_and_watch(&path).await {
                        let _ = w.await;
                    }
                }
            }
        }
    }
}
