//! The driver's connections to other servers as it sends on them, and the faults a test can
//! put on a link: a delay on every frame, and a loss rate.
//!
//! A delayed frame waits in a FIFO line of its own connection, so frames never overtake each
//! other: once one frame of a connection went through the line, every later frame of that
//! connection does too (with no delay once the fault is lifted), until the connection ends.
//! TCP does not lose bytes, it fails: on the quorum channel a lost frame breaks the
//! connection (as a TCP connection whose retransmissions gave up), on the election channel
//! the notification is simply gone (the election resends its vote).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ConnId;

/// A fault on the link from one server to another (one direction).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct LinkFault {
    /// Added to every frame sent on the link.
    pub delay: Duration,
    /// Probability in `[0, 1]` that a frame is lost.
    pub loss: f64,
}

impl LinkFault {
    /// Whether the link is unaffected.
    pub fn is_none(&self) -> bool {
        self.delay.is_zero() && self.loss <= 0.0
    }
}

/// A connection the driver sends frames on.
pub(super) struct Link {
    pub conn: ConnId,
    tx: mpsc::Sender<Bytes>,
    /// The delay line, once a frame of this connection was delayed. It holds what the driver
    /// sent during one delay period at most (the line's task forwards it as it falls due).
    line: Option<mpsc::UnboundedSender<(Instant, Bytes)>>,
    /// When the last frame in the line falls due (later frames never fall due earlier).
    last_due: Option<Instant>,
}

impl Link {
    pub fn new(conn: ConnId, tx: mpsc::Sender<Bytes>) -> Link {
        Link {
            conn,
            tx,
            line: None,
            last_due: None,
        }
    }

    /// Queues `frame` for the connection's writer, after `delay`. A full writer queue is
    /// `Full` only for frames sent at once (a delay line waits for room instead), and never
    /// when `wait` is set: then the frame (and every later one) waits in the line for room.
    pub fn send(
        &mut self,
        frame: Bytes,
        delay: Duration,
        wait: bool,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), mpsc::error::TrySendError<Bytes>> {
        if delay.is_zero() && self.line.is_none() {
            match self.tx.try_send(frame) {
                Err(mpsc::error::TrySendError::Full(frame)) if wait => {
                    return self.send_in_line(frame, delay, tasks);
                }
                r => return r,
            }
        }
        self.send_in_line(frame, delay, tasks)
    }

    fn send_in_line(
        &mut self,
        frame: Bytes,
        delay: Duration,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), mpsc::error::TrySendError<Bytes>> {
        let line = self.line.get_or_insert_with(|| {
            let (line, rx) = mpsc::unbounded_channel();
            tasks.spawn(delay_line(rx, self.tx.clone()));
            line
        });
        let due = Instant::now() + delay;
        let due = self.last_due.map_or(due, |last| due.max(last));
        self.last_due = Some(due);
        line.send((due, frame))
            .map_err(|e| mpsc::error::TrySendError::Closed(e.0 .1))
    }
}

/// Forwards each frame to the writer once it falls due, in order.
async fn delay_line(mut rx: mpsc::UnboundedReceiver<(Instant, Bytes)>, tx: mpsc::Sender<Bytes>) {
    while let Some((due, frame)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if tx.send(frame).await.is_err() {
            return;
        }
    }
}

/// SplitMix64: the loss decisions of one server, reproducible from its seed.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits as a float in [0, 1).
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_follows_the_probability_and_the_seed() {
        let mut a = Rng::new(7);
        let hits = (0..10_000).filter(|_| a.chance(0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
        let (mut b, mut c) = (Rng::new(42), Rng::new(42));
        let xs: Vec<bool> = (0..64).map(|_| b.chance(0.5)).collect();
        let ys: Vec<bool> = (0..64).map(|_| c.chance(0.5)).collect();
        assert_eq!(xs, ys);
        assert!(!a.chance(0.0));
        assert!(a.chance(1.0));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_frames_keep_their_order_after_the_delay_is_lifted() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut tasks = JoinSet::new();
        let mut link = Link::new(1, tx);
        link.send(
            Bytes::from_static(b"a"),
            Duration::from_millis(100),
            false,
            &mut tasks,
        )
        .expect("queued");
        link.send(Bytes::from_static(b"b"), Duration::ZERO, false, &mut tasks)
            .expect("queued");
        let t = Instant::now();
        assert_eq!(rx.recv().await.expect("a"), Bytes::from_static(b"a"));
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert_eq!(rx.recv().await.expect("b"), Bytes::from_static(b"b"));
    }

    #[tokio::test]
    async fn a_full_queue_fails_a_send_unless_it_may_wait_and_waiting_keeps_the_order() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut tasks = JoinSet::new();
        let mut link = Link::new(1, tx);
        for b in [b"1", b"2"] {
            link.send(Bytes::from_static(b), Duration::ZERO, false, &mut tasks)
                .expect("room");
        }
        assert!(matches!(
            link.send(Bytes::from_static(b"x"), Duration::ZERO, false, &mut tasks),
            Err(mpsc::error::TrySendError::Full(_))
        ));
        for b in [b"3", b"4", b"5"] {
            link.send(Bytes::from_static(b), Duration::ZERO, true, &mut tasks)
                .expect("waits for room");
        }
        // Once one frame waits, later ones queue behind it even when there is room.
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(rx.recv().await.expect("frame"));
        }
        assert_eq!(got, [&b"1"[..], b"2", b"3", b"4", b"5"]);
    }
}
