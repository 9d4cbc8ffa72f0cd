//! Watches as values: one-shot watches are futures, persistent watches are streams, the session
//! state is a current value plus a stream of transitions. Dropping a watcher unregisters it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::driver::Command;
use crate::error::Error;
use crate::session::watches::{RawEvent, WatchKind, WatchResult};
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

/// Unregisters a watcher from the driver when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    pub cmd: mpsc::UnboundedSender<Command>,
    pub path: String,
    pub kind: WatchKind,
    pub id: u64,
    pub chroot: Option<Arc<str>>,
}

impl Registration {
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

/// A persistent (or persistent-recursive) watch as a stream of events. The stream yields an
/// `Err` and ends when the session ends. Dropping it removes the watch.
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct PersistentWatcher {
    rx: mpsc::UnboundedReceiver<WatchResult>,
    reg: Registration,
    done: bool,
}

impl PersistentWatcher {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<WatchResult>, reg: Registration) -> Self {
        PersistentWatcher {
            rx,
            reg,
            done: false,
        }
    }

    /// The next event (`None` once the stream has ended).
    pub async fn next(&mut self) -> Option<Result<WatchedEvent, Error>> {
        futures::StreamExt::next(self).await
    }

    /// Removes the watch now (same as dropping it).
    pub fn remove(self) {}
}

impl Stream for PersistentWatcher {
    type Item = Result<WatchedEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(ev))) => {
                let ev = self.reg.convert(ev);
                Poll::Ready(Some(Ok(ev)))
            }
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
