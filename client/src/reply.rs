//! Reply slots: how a request's answer travels from the driver task to its caller.
//!
//! A per-request channel (tokio's `oneshot`) costs one allocation per request and one wake-up
//! per reply. Here every client has one [`ReplyPool`]: a slab of slots behind one mutex, reused
//! request after request (no allocation once the pool has grown to the number in flight). The
//! driver completes every reply of one read under a single lock and wakes the callers after
//! releasing it ([`ReplyPool::complete_batch`]); a caller that awaits many requests through one
//! task (`FuturesUnordered`, `join_all`) then sees one wake-up per batch, not one per reply.
//!
//! A slot is freed when both ends are done with it: the answer was taken by the receiver, or the
//! receiver was dropped and the sender answered (or was dropped) too.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::watch;

use crate::error::Error;
use crate::session::SessionState;

/// A request's answer: the reply record's bytes, or why it failed.
pub(crate) type Answer = Result<Bytes, Error>;

#[derive(Debug)]
enum Slot {
    /// On the free list.
    Free,
    /// Both ends alive, no answer yet; the receiver's waker once it has been polled.
    Waiting(Option<Waker>),
    /// Answered, not taken yet.
    Done(Answer),
    /// The receiver was dropped; the sender still holds the slot.
    Abandoned,
    /// The sender was dropped without answering (the driver is gone).
    SenderGone,
}

#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Slots {
    fn release(&mut self, idx: u32) {
        self.slots[idx as usize] = Slot::Free;
        self.free.push(idx);
    }

    /// Stores the answer of slot `idx`; returns the waker to wake (after unlocking).
    fn answer(&mut self, idx: u32, answer: Answer) -> Option<Waker> {
        let slot = &mut self.slots[idx as usize];
        match std::mem::replace(slot, Slot::Done(answer)) {
            Slot::Waiting(w) => w,
            Slot::Abandoned => {
                self.release(idx);
                None
            }
            other => {
                // Answered twice cannot happen (a sender answers once); keep the first.
                *slot = other;
                None
            }
        }
    }
}

/// One client's reply slots (shared by its handles and its driver task).
#[derive(Debug)]
pub(crate) struct ReplyPool {
    slots: Mutex<Slots>,
    /// The session state, for the error of a request whose driver went away unanswered.
    state: watch::Receiver<SessionState>,
}

impl ReplyPool {
    /// An empty pool; `state` says why requests fail once the driver is gone.
    pub fn new(state: watch::Receiver<SessionState>) -> Arc<Self> {
        Arc::new(ReplyPool {
            slots: Mutex::new(Slots::default()),
            state,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // A panic while holding the lock leaves the slab consistent (every change is one
        // assignment), so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh slot: the sender goes with the request, the receiver to the caller.
    pub fn channel(self: &Arc<Self>) -> (ReplyTx, ReplyRx) {
        let idx = {
            let mut s = self.lock();
            match s.free.pop() {
                Some(i) => {
                    s.slots[i as usize] = Slot::Waiting(None);
                    i
                }
                None => {
                    s.slots.push(Slot::Waiting(None));
                    (s.slots.len() - 1) as u32
                }
            }
        };
        (
            ReplyTx {
                pool: Some(self.clone()),
                idx,
            },
            ReplyRx {
                pool: Some(self.clone()),
                idx,
            },
        )
    }

    /// Completes every `(sender, answer)` of `batch` (drained; all senders of one pool) under
    /// one lock, then wakes their receivers. `wakers` is scratch space kept by the caller
    /// between batches.
    pub fn complete_batch(batch: &mut Vec<(ReplyTx, Answer)>, wakers: &mut Vec<Waker>) {
        let Some(pool) = batch.iter().find_map(|(tx, _)| tx.pool.clone()) else {
            batch.clear();
            return;
        };
        {
            let mut s = pool.lock();
            for (mut tx, answer) in batch.drain(..) {
                if tx.pool.take().is_some() {
                    wakers.extend(s.answer(tx.idx, answer));
                }
            }
        }
        for w in wakers.drain(..) {
            w.wake();
        }
    }
}

/// The sending end of one reply slot (held by the session with the request).
#[derive(Debug)]
pub(crate) struct ReplyTx {
    /// `None` once answered.
    pool: Option<Arc<ReplyPool>>,
    idx: u32,
}

impl ReplyTx {
    /// Answers now (outside a batch).
    pub fn send(mut self, answer: Answer) {
        if let Some(pool) = self.pool.take() {
            let w = pool.lock().answer(self.idx, answer);
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    /// Whether the receiver is gone (its caller dropped the future).
    pub fn is_closed(&self) -> bool {
        self.pool
            .as_ref()
            .is_some_and(|p| matches!(p.lock().slots[self.idx as usize], Slot::Abandoned))
    }
}

impl Drop for ReplyTx {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        let waker = {
            let mut s = pool.lock();
            match std::mem::replace(&mut s.slots[self.idx as usize], Slot::SenderGone) {
                Slot::Waiting(w) => w,
                Slot::Abandoned => {
                    s.release(self.idx);
                    None
                }
                other => {
                    s.slots[self.idx as usize] = other;
                    None
                }
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The receiving end of one reply slot: a future of the answer, or (the outer `Err`) of the
/// session's terminal error when the sender was dropped unanswered (the driver is gone).
#[derive(Debug)]
pub(crate) struct ReplyRx {
    /// `None` once the answer was taken.
    pool: Option<Arc<ReplyPool>>,
    idx: u32,
}

impl Future for ReplyRx {
    type Output = Result<Answer, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let idx = self.idx;
        let Some(pool) = self.pool.as_ref() else {
            return Poll::Ready(Err(Error::Closed));
        };
        let mut s = pool.lock();
        let answer = match &mut s.slots[idx as usize] {
            Slot::Waiting(w) => {
                match w {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            Slot::Done(_) => match std::mem::replace(&mut s.slots[idx as usize], Slot::Free) {
                Slot::Done(a) => Ok(a),
                _ => unreachable!("matched Done just above"),
            },
            Slot::SenderGone => Err(pool
                .state
                .borrow()
                .terminal_error()
                .unwrap_or(Error::Closed)),
            Slot::Free | Slot::Abandoned => Err(Error::Closed),
        };
        s.release(idx);
        drop(s);
        self.pool = None;
        Poll::Ready(answer)
    }
}

impl Drop for ReplyRx {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        let mut s = pool.lock();
        let idx = self.idx;
        match &s.slots[idx as usize] {
            Slot::Waiting(_) => s.slots[idx as usize] = Slot::Abandoned,
            Slot::Done(_) | Slot::SenderGone => s.release(idx),
            Slot::Free | Slot::Abandoned => {}
        }
    }
}

/// What a client method awaits: its request's answer, within the request timeout if one is set.
#[derive(Debug)]
pub(crate) struct ReplyFuture(Wait);

#[derive(Debug)]
enum Wait {
    Plain(ReplyRx),
    /// Boxed because tokio's timer is not `Unpin`; only clients with a request timeout pay it.
    Timed(Pin<Box<tokio::time::Timeout<ReplyRx>>>),
}

impl ReplyFuture {
    /// Waits for `rx`, failing with `RequestTimeout` after `timeout` (if any).
    pub fn new(rx: ReplyRx, timeout: Option<std::time::Duration>) -> Self {
        ReplyFuture(match timeout {
            None => Wait::Plain(rx),
            Some(t) => Wait::Timed(Box::pin(tokio::time::timeout(t, rx))),
        })
    }
}

impl Future for ReplyFuture {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        match &mut self.0 {
            Wait::Plain(rx) => Pin::new(rx).poll(cx).map(|r| r.and_then(|a| a)),
            Wait::Timed(t) => t
                .as_mut()
                .poll(cx)
                .map(|r| r.unwrap_or(Ok(Err(Error::RequestTimeout))).and_then(|a| a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Arc<ReplyPool> {
        ReplyPool::new(watch::channel(SessionState::Connected).1)
    }

    #[tokio::test]
    async fn answers_reach_their_receivers_and_slots_are_reused() {
        let p = pool();
        let (t1, r1) = p.channel();
        let (t2, r2) = p.channel();
        let mut batch = vec![(t2, Ok(Bytes::from_static(b"2"))), (t1, Err(Error::NoNode))];
        ReplyPool::complete_batch(&mut batch, &mut Vec::new());
        assert_eq!(r2.await.unwrap().unwrap(), Bytes::from_static(b"2"));
        assert!(matches!(r1.await, Ok(Err(Error::NoNode))));
        let (_t, _r) = p.channel();
        let (_t2, _r2) = p.channel();
        assert_eq!(p.lock().slots.len(), 2, "freed slots are reused");
    }

    #[tokio::test]
    async fn a_dropped_receiver_is_seen_and_its_slot_freed_on_answer() {
        let p = pool();
        let (t, r) = p.channel();
        assert!(!t.is_closed());
        drop(r);
        assert!(t.is_closed());
        t.send(Ok(Bytes::new()));
        assert_eq!(p.lock().free.len(), 1);
    }

    #[tokio::test]
    async fn a_dropped_sender_fails_the_receiver_with_the_session_error() {
        let (tx, rx) = watch::channel(SessionState::Connected);
        let p = ReplyPool::new(rx);
        let (t, r) = p.channel();
        tx.send_replace(SessionState::Expired);
        drop(t);
        assert!(matches!(r.await, Err(Error::SessionExpired)));
        assert_eq!(p.lock().free.len(), 1);
    }
}
