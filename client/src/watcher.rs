//! Watches as values: one-shot watches are futures, persistent watches are streams, the session
//! state is a current value plus a stream of transitions. Dropping a watcher unregisters it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::driver::{Command, SessionInfo};
use crate::error::Error;
use crate::session::watches::{Notice, RawEvent, StreamResult, WatchKind, WatchResult};
use crate::session::SessionState;
use zkit_proto::EventType;

/// A node event delivered to a watcher (path relative to the client's chroot).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchedEvent {
    /// What happened.
    pub event_type: EventType,
    /// The node's path.
    pub path: String,
    /// The zxid of the change, when the server gave one (-1 otherwise).
    pub zxid: i64,
}

/// What a persistent watch stream ([`PersistentWatcher`]) yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchItem {
    /// A node event.
    Event(WatchedEvent),
    /// The client reconnected (to the same session, or to a new one that replaced an expired
    /// session) and re-registered the watch. ZooKeeper does not replay the persistent-watch
    /// events of changes made while the client was away (ZOOKEEPER-4698), so some may be
    /// missing: re-read whatever you derive from the watched nodes.
    Resync,
}

impl WatchItem {
    /// The event, if this is one.
    pub fn event(&self) -> Option<&WatchedEvent> {
        match self {
            WatchItem::Event(e) => Some(e),
            WatchItem::Resync => None,
        }
    }

    /// The event, if this is one (by value).
    pub fn into_event(self) -> Option<WatchedEvent> {
        match self {
            WatchItem::Event(e) => Some(e),
            WatchItem::Resync => None,
        }
    }
}

/// Unregisters a watcher from the driver when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    pub cmd: mpsc::UnboundedSender<Command>,
    pub path: String,
    pub kind: WatchKind,
    pub id: u64,
    pub chroot: Option<Arc<str>>,
    /// The session facts, to tell whether a reconnect happened since `epoch`.
    pub info: watch::Receiver<SessionInfo>,
    /// The driver's resync count when the watch was asked for.
    pub epoch: u64,
}

impl Registration {
    fn resynced(&self) -> bool {
        self.info.borrow().resyncs != self.epoch
    }

    fn unregister(&self) {
        let _ = self.cmd.send(Command::Unwatch {
            path: self.path.clone(),
            kind: self.kind,
            id: self.id,
        });
    }

    fn convert(&self, ev: RawEvent) -> WatchedEvent {
        WatchedEvent {
            event_type: ev.event_type,
            path: strip_chroot(self.chroot.as_deref(), ev.path),
            zxid: ev.zxid,
        }
    }
}

/// Removes a chroot prefix from a server path.
pub(crate) fn strip_chroot(chroot: Option<&str>, path: String) -> String {
    match chroot {
        None => path,
        Some(c) => match path.strip_prefix(c) {
            Some("") => "/".to_owned(),
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            _ => path,
        },
    }
}

/// A one-shot watch: resolves to the event that fired it, or to the error that ended the session
/// (`SessionExpired`, `Closed`, `AuthFailed`). Dropping it before it fires removes the watch
/// (sending removeWatches when it was the last one on that path).
#[derive(Debug)]
#[must_use = "a watch does nothing unless awaited"]
pub struct OneshotWatcher {
    rx: oneshot::Receiver<WatchResult>,
    reg: Option<Registration>,
}

impl OneshotWatcher {
    pub(crate) fn new(rx: oneshot::Receiver<WatchResult>, reg: Registration) -> Self {
        OneshotWatcher { rx, reg: Some(reg) }
    }

    /// Whether the client reconnected since this watch was asked for (see
    /// [`WatchItem::Resync`]). The watch was then re-registered with the server, which fires it
    /// if its node changed while the client was away; the answer is only a hint that the
    /// connection was interrupted, to re-read state derived from other nodes.
    pub fn resynced(&self) -> bool {
        self.reg.as_ref().is_some_and(Registration::resynced)
    }

    /// Removes the watch now (same as dropping it).
    pub fn remove(self) {}
}

impl Future for OneshotWatcher {
    type Output = Result<WatchedEvent, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let r = match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        let reg = self.reg.take();
        Poll::Ready(match r {
            Ok(Ok(ev)) => Ok(match &reg {
                Some(reg) => reg.convert(ev),
                None => WatchedEvent {
                    event_type: ev.event_type,
                    path: ev.path,
                    zxid: ev.zxid,
                },
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        })
    }
}

impl Drop for OneshotWatcher {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            reg.unregister();
        }
    }
}

/// A persistent (or persistent-recursive) watch as a stream of [`WatchItem`]s: node events, and
/// a [`WatchItem::Resync`] after every reconnect that may have missed some.
///
/// The watch lives as long as the client's sessions: with
/// [`recreate_on_expiry`](crate::ClientBuilder::recreate_on_expiry) (the default) it is carried
/// into the session that replaces an expired one (after a `Resync`); otherwise the stream yields
/// `Err(SessionExpired)` and ends. It yields `Err(Closed)` (or `AuthFailed`) and ends when the
/// client is closed. Dropping it removes the watch.
///
/// ```no_run
/// # async fn f(zk: zkit::Client) -> zkit::Result<()> {
/// use zkit::WatchItem;
/// let mut w = zk.add_watch("/config", zkit::AddWatchMode::PersistentRecursive).await?;
/// while let Some(item) = w.next().await {
///     match item? {
///         WatchItem::Event(e) => println!("{:?} {}", e.event_type, e.path),
///         WatchItem::Resync => println!("reconnected: re-read /config"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct PersistentWatcher {
    rx: mpsc::UnboundedReceiver<StreamResult>,
    reg: Registration,
    done: bool,
}

impl PersistentWatcher {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<StreamResult>, reg: Registration) -> Self {
        PersistentWatcher {
            rx,
            reg,
            done: false,
        }
    }

    /// The next item (`None` once the stream has ended).
    pub async fn next(&mut self) -> Option<Result<WatchItem, Error>> {
        futures::StreamExt::next(self).await
    }

    /// Removes the watch now (same as dropping it).
    pub fn remove(self) {}
}

impl Stream for PersistentWatcher {
    type Item = Result<WatchItem, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                // The driver is gone without a word (the client was dropped or closed while
                // re-creating its session): the stream still ends with a reason.
                self.done = true;
                Poll::Ready(Some(Err(Error::Closed)))
            }
            Poll::Ready(Some(Ok(Notice::Event(ev)))) => {
                let ev = self.reg.convert(ev);
                Poll::Ready(Some(Ok(WatchItem::Event(ev))))
            }
            Poll::Ready(Some(Ok(Notice::Resync))) => Poll::Ready(Some(Ok(WatchItem::Resync))),
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl Drop for PersistentWatcher {
    fn drop(&mut self) {
        if !self.done {
            self.reg.unregister();
        }
    }
}

/// Session state transitions as a stream. A reader that falls more than 256 transitions behind
/// skips to the newest state.
pub struct StateStream {
    inner: Pin<Box<dyn Stream<Item = SessionState> + Send>>,
}

impl std::fmt::Debug for StateStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStream").finish_non_exhaustive()
    }
}

impl StateStream {
    pub(crate) fn new(rx: broadcast::Receiver<SessionState>) -> Self {
        let inner = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(s) => return Some((s, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        StateStream {
            inner: Box::pin(inner),
        }
    }

    /// The next transition; `None` once the client is gone.
    pub async fn next(&mut self) -> Option<SessionState> {
        futures::StreamExt::next(&mut self.inner).await
    }
}

impl Stream for StateStream {
    type Item = SessionState;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SessionState>> {
        self.inner.as_mut().poll_next(cx)
    }
}
