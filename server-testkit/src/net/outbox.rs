//! One connection's outbound queue with byte accounting: the backpressure that keeps a client
//! which never reads its replies from growing the server's memory.
//!
//! The bound works in two ways, because frames reach the queue for two reasons:
//! - **Replies** are caused by the connection's own requests. While `queued >= limit` the
//!   connection's reader stops taking requests (and stops reading the socket) until the writer
//!   has drained the queue below the limit, so a queue never holds more than `limit` bytes plus
//!   the replies to one request.
//! - **Notifications** are caused by other clients' writes, which cannot be held back. A
//!   notification that would take the queue past `2 × limit` closes the connection at once
//!   (its queue is dropped unsent) with a warning in the log; the session lives on, so the client
//!   reconnects and re-registers its watches like after any disconnect. ZooKeeper leaves this
//!   queue unbounded; closing the connection is what keeps the memory bounded.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use super::Msg;
use crate::core::{ConnId, Frame};

/// Default bound of a connection's outbound queue: 4 MiB.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Counters and signals shared by a connection's queue, reader and writer.
#[derive(Debug)]
struct State {
    conn: ConnId,
    limit: usize,
    /// Bytes queued and not yet written to the socket.
    bytes: AtomicUsize,
    /// Frames queued and not yet written (`queued=` of `cons`).
    frames: AtomicUsize,
    /// The most bytes ever queued at once.
    peak: AtomicUsize,
    /// Set when the queue overflowed: nothing more is queued, the connection closes.
    killed: AtomicBool,
    /// Signalled by the writer after every write (the reader waits on it when full).
    drained: Notify,
    /// Signalled once on overflow.
    kill: Notify,
}

/// The sending side of a connection's queue, shared by the core's dispatch and the log writer.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Msg>,
    state: Arc<State>,
}

/// The connection task's side: the receiver plus the accounting.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: mpsc::UnboundedReceiver<Msg>,
    state: Arc<State>,
}

/// A point-in-time view of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub bytes: usize,
    pub frames: usize,
    pub peak: usize,
}

/// A new queue for `conn` bounded by `limit` bytes (at least 1).
pub(crate) fn channel(conn: ConnId, limit: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(State {
        conn,
        limit: limit.max(1),
        bytes: AtomicUsize::new(0),
        frames: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        killed: AtomicBool::new(false),
        drained: Notify::new(),
        kill: Notify::new(),
    });
    (
        Outbox {
            tx,
            state: state.clone(),
        },
        Inbox { rx, state },
    )
}

/// Whether a whole frame (length prefix included) is a watch notification (xid -1). The
/// frame's first part holds its length prefix and header.
fn is_notification(frame: &Frame) -> bool {
    let head = frame.head();
    head.len() >= 8 && head[4..8] == zkit_proto::xid::NOTIFICATION.to_be_bytes()
}

impl Outbox {
    /// Queues `m`. A notification that would overflow the hard bound (2 × limit) closes the
    /// connection instead; everything queued afterwards is dropped.
    pub fn send(&self, m: Msg) {
        let s = &self.state;
        if s.killed.load(Ordering::Acquire) {
            return;
        }
        if let Msg::Frame(f) = &m {
            // Every part counts, shared or not: the bound is on what the socket must still take.
            let len = f.len();
            let now = s.bytes.load(Ordering::Acquire);
            if is_notification(f) && now + len > s.limit.saturating_mul(2) {
                if !s.killed.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        conn = s.conn,
                        queued_bytes = now,
                        limit = s.limit,
                        "client is not reading its watch notifications: outbound queue full, \
                         closing the connection (the session survives; the client must \
                         reconnect and re-register its watches)"
                    );
                    s.kill.notify_one();
                }
                return;
            }
            let total = s.bytes.fetch_add(len, Ordering::AcqRel) + len;
            s.frames.fetch_add(1, Ordering::AcqRel);
            s.peak.fetch_max(total, Ordering::AcqRel);
        }
        let _ = self.tx.send(m);
    }

    /// The queue's counters.
    pub fn stats(&self) -> QueueStats {
        let s = &self.state;
        QueueStats {
            bytes: s.bytes.load(Ordering::Acquire),
            frames: s.frames.load(Ordering::Acquire),
            peak: s.peak.load(Ordering::Acquire),
        }
    }
}

impl Inbox {
    /// The next message, or None when every sender is gone.
    pub async fn recv(&mut self) -> Option<Msg> {
        self.rx.recv().await
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<Msg> {
        self.rx.try_recv().ok()
    }

    /// The writer sent `frames` frames of `bytes` bytes in total.
    pub fn written(&self, frames: usize, bytes: usize) {
        let s = &self.state;
        s.bytes.fetch_sub(bytes, Ordering::AcqRel);
        s.frames.fetch_sub(frames, Ordering::AcqRel);
        s.drained.notify_one();
    }

    /// A handle for the reader to wait for room.
    pub fn room(&self) -> Room {
        Room(self.state.clone())
    }
}

/// The reader's view of the queue: waits until there is room for more replies.
#[derive(Debug, Clone)]
pub(crate) struct Room(Arc<State>);

impl Room {
    /// Returns once fewer than `limit` bytes are queued (at once when that is already so).
    pub async fn wait(&self) {
        let s = &self.0;
        let mut logged = false;
        while s.bytes.load(Ordering::Acquire) >= s.limit && !s.killed.load(Ordering::Acquire) {
            if !logged {
                logged = true;
                tracing::debug!(
                    conn = s.conn,
                    queued_bytes = s.bytes.load(Ordering::Acquire),
                    limit = s.limit,
                    "outbound queue full, no more requests read until the client reads"
                );
            }
            s.drained.notified().await;
        }
    }

    /// Resolves when the queue overflowed and the connection must close.
    pub async fn killed(&self) {
        if self.0.killed.load(Ordering::Acquire) {
            return;
        }
        self.0.kill.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn frame(xid: i32, body: usize) -> Msg {
        let mut b = BytesMut::new();
        b.put_i32((16 + body) as i32);
        b.put_i32(xid);
        b.put_i64(0);
        b.put_i32(0);
        b.put_bytes(0, body);
        Msg::Frame(b.freeze().into())
    }

    #[tokio::test]
    async fn replies_are_counted_and_drained() {
        let (out, mut inbox) = channel(1, 100);
        out.send(frame(1, 80));
        assert_eq!(out.stats().bytes, 100);
        assert_eq!(out.stats().frames, 1);
        // Full: the reader would wait.
        let room = inbox.room();
        let waiting = tokio::spawn(async move { room.wait().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(matches!(inbox.recv().await, Some(Msg::Frame(_))));
        inbox.written(1, 100);
        waiting.await.unwrap();
        assert_eq!(out.stats().bytes, 0);
        assert_eq!(out.stats().peak, 100);
    }

    #[tokio::test]
    async fn replies_past_the_limit_are_queued_but_notifications_overflow() {
        let (out, inbox) = channel(1, 100);
        // A reply may take the queue past the limit (the reader then stops).
        out.send(frame(7, 150));
        assert_eq!(out.stats().bytes, 170);
        // A notification that would pass 2 × limit closes the connection.
        out.send(frame(-1, 40));
        inbox.room().killed().await;
        out.send(frame(8, 1));
        assert_eq!(out.stats().frames, 1, "nothing queued after the overflow");
    }
}
