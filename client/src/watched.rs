//! The two shapes every observable thing in zkit and zkit-recipes takes, so no tokio channel
//! type appears in a public signature: [`Watched`] (a current value and its changes: session
//! state, cached data, a config, group members) and [`Events`] (a bounded stream of events
//! that tells a slow reader how much it missed).

use std::fmt;

use futures::Stream;
use tokio::sync::{broadcast, watch};

use crate::error::{Error, Result};

/// A value that changes over time: read it now ([`borrow`](Self::borrow), [`get`](Self::get)),
/// wait for the next change ([`changed`](Self::changed), [`wait_for`](Self::wait_for)), or take
/// every new value as a `Stream` ([`changes`](Self::changes)). Cheap to clone; each clone keeps
/// its own "seen" mark. Intermediate values may be skipped: a reader sees the latest.
pub struct Watched<T> {
    rx: watch::Receiver<T>,
}

impl<T> Clone for Watched<T> {
    fn clone(&self) -> Self {
        Watched {
            rx: self.rx.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Watched").field(&*self.rx.borrow()).finish()
    }
}

/// A borrowed current value of a [`Watched`]; hold it briefly (it blocks the writer).
pub struct Ref<'a, T>(watch::Ref<'a, T>);

impl<T> std::ops::Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T> Watched<T> {
    /// Wraps a watch receiver (for crates built on zkit that publish values the same way).
    pub fn new(rx: watch::Receiver<T>) -> Self {
        Watched { rx }
    }

    /// The current value.
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref(self.rx.borrow())
    }

    /// The current value, marked as seen (the next [`changed`](Self::changed) waits for a
    /// newer one).
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        Ref(self.rx.borrow_and_update())
    }

    /// A copy of the current value.
    pub fn get(&self) -> T
    where
        T: Clone,
    {
        self.rx.borrow().clone()
    }

    /// Waits until the value changes after the last one seen; `Err(Closed)` once it never
    /// will (its owner is gone).
    pub async fn changed(&mut self) -> Result<()> {
        self.rx.changed().await.map_err(|_| Error::Closed)
    }

    /// Waits until the value satisfies `f` (at once if it does now).
    pub async fn wait_for(&mut self, f: impl FnMut(&T) -> bool) -> Result<Ref<'_, T>> {
        self.rx
            .wait_for(f)
            .await
            .map(Ref)
            .map_err(|_| Error::Closed)
    }

    /// Every new value from now on, as a `Stream` (ends when the owner is gone).
    pub fn changes(&self) -> impl Stream<Item = T> + Send + 'static
    where
        T: Clone + Send + Sync + 'static,
    {
        let mut rx = self.rx.clone();
        rx.borrow_and_update();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let v = rx.borrow_and_update().clone();
            Some((v, rx))
        })
    }
}

/// Why [`Events::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The reader fell this many events behind and they were dropped; the next `recv` goes on
    /// with the oldest kept. Re-read the source's current state to catch up.
    #[error("lagged behind by {0} events")]
    Lagged(u64),
    /// No more events will come.
    #[error("closed")]
    Closed,
}

/// A bounded stream of events (the capacity is the source's documented limit): a reader that
/// falls behind learns how many it missed ([`RecvError::Lagged`]) instead of stalling the
/// source. Also a `Stream` through [`into_stream`](Self::into_stream).
pub struct Events<T> {
    rx: broadcast::Receiver<T>,
}

impl<T> fmt::Debug for Events<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("queued", &self.rx.len())
            .finish()
    }
}

impl<T: Clone> Events<T> {
    /// Wraps a broadcast receiver (for crates built on zkit that publish events the same way).
    pub fn new(rx: broadcast::Receiver<T>) -> Self {
        Events { rx }
    }

    /// The next event.
    pub async fn recv(&mut self) -> std::result::Result<T, RecvError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }

    /// The next event if one is queued, without waiting (`Ok(None)`: nothing yet).
    pub fn try_recv(&mut self) -> std::result::Result<Option<T>, RecvError> {
        match self.rx.try_recv() {
            Ok(v) => Ok(Some(v)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(broadcast::error::TryRecvError::Closed) => Err(RecvError::Closed),
        }
    }

    /// The events as a `Stream` of `Result`s (a lag is an `Err` item; the stream goes on).
    pub fn into_stream(
        self,
    ) -> impl Stream<Item = std::result::Result<T, RecvError>> + Send + 'static
    where
        T: Send + 'static,
    {
        futures::stream::unfold(self, |mut ev| async move {
            match ev.recv().await {
                Err(RecvError::Closed) => None,
                r => Some((r, ev)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn watched_reads_waits_and_streams() {
        let (tx, rx) = watch::channel(1);
        let mut w = Watched::new(rx);
        assert_eq!(*w.borrow(), 1);
        let mut changes = Box::pin(w.changes());
        tx.send_replace(2);
        w.changed().await.unwrap();
        assert_eq!(w.get(), 2);
        assert_eq!(changes.next().await, Some(2));
        tx.send_replace(3);
        assert_eq!(*w.wait_for(|v| *v == 3).await.unwrap(), 3);
        drop(tx);
        assert_eq!(changes.next().await, Some(3));
        assert_eq!(changes.next().await, None);
        assert_eq!(w.changed().await, Err(Error::Closed));
    }

    #[tokio::test]
    async fn events_report_lag_and_close() {
        let (tx, rx) = broadcast::channel(2);
        let mut ev = Events::new(rx);
        for i in 0..4 {
            tx.send(i).unwrap();
        }
        assert_eq!(ev.recv().await, Err(RecvError::Lagged(2)));
        assert_eq!(ev.recv().await, Ok(2));
        assert_eq!(ev.try_recv(), Ok(Some(3)));
        assert_eq!(ev.try_recv(), Ok(None));
        drop(tx);
        assert_eq!(ev.recv().await, Err(RecvError::Closed));
    }
}
