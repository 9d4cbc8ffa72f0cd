//! Retrying operations that failed with a retryable error (connection loss, timeouts,
//! throttling): exponential backoff with jitter, bounded by a count and by elapsed time, with
//! one rule per [`OpClass`] for which errors are retried.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::Client;

/// What an operation risks when it is sent again after an error that leaves its outcome
/// unknown (a lost connection, a timeout). [`RetryPolicy`] retries each class differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpClass {
    /// Reads (`get_data`, `exists`, `get_children`, `sync`, ...): repeating one changes nothing.
    /// Retried on every retryable error ([`Error::is_retryable`]).
    Read,
    /// Writes whose repetition is harmless or shows up as a definite answer: `set_data` or
    /// `delete` with a version (a repeat that finds its own change gets `BadVersion` or
    /// `NoNode`), a create of a fixed, non-sequential path (`NodeExists`), a write of a value
    /// that is the same every time. Retried like reads: the caller treats those answers as
    /// "maybe it was me", as Curator and kazoo retry loops do.
    VersionedWrite,
    /// Writes that may take effect twice: sequential creates (a second node), unversioned
    /// deletes and updates computed from an earlier read, multis without checks. After a
    /// `ConnectionLoss` or a timeout the first attempt may have been applied, so they are
    /// retried only on errors that prove the server did not apply them (`Throttled`); guard
    /// them otherwise (a version, a protected create that finds its own node).
    UnsafeWrite,
}

/// How to retry: how often, how long, how far apart, and which errors per [`OpClass`].
///
/// ```
/// # async fn f(zk: zkit::Client) -> zkit::Result<()> {
/// use std::time::Duration;
/// use zkit::{OpClass, RetryPolicy};
/// let policy = RetryPolicy::exponential(Duration::from_millis(50), 5);
/// // Reads are idempotent: retried on connection loss.
/// let (data, stat) = policy.run(OpClass::Read, || zk.get_data("/config")).await?;
/// // A versioned write finds its own earlier attempt as BadVersion.
/// policy
///     .run(OpClass::VersionedWrite, || zk.set_data("/config", b"v2", Some(stat.version)))
///     .await?;
/// // A sequential create is not retried after a connection loss: it could make two nodes.
/// let seq = zkit::CreateOptions::new(zkit::CreateMode::PersistentSequential);
/// let r = policy.run(OpClass::UnsafeWrite, || zk.create("/job-", b"", &seq)).await;
/// # let _ = (data, r); Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Most retries after the first attempt.
    pub max_retries: u32,
    /// First delay.
    pub base_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub max_elapsed: Option<Duration>,
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            max_elapsed: None,
        }
    }

    /// Exponential backoff from `base`, doubling, capped at 10 s, at most `max_retries` retries.
    pub fn exponential(base: Duration, max_retries: u32) -> Self {
        RetryPolicy {
            max_retries,
            base_delay: base,
            max_delay: Duration::from_secs(10),
            max_elapsed: None,
        }
    }

    /// Retries without a count limit, from `base` doubling up to 1 s: with
    /// [`run_on`](Self::run_on) this keeps going until the operation succeeds, fails for good
    /// or the session ends (the recipes' default).
    pub fn until_session_ends(base: Duration) -> Self {
        RetryPolicy {
            max_retries: u32::MAX,
            base_delay: base,
            max_delay: Duration::from_secs(1),
            max_elapsed: None,
        }
    }

    /// Caps each delay.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Stops retrying after this much time in total.
    pub fn max_elapsed(mut self, d: Duration) -> Self {
        self.max_elapsed = Some(d);
        self
    }

    /// The delay before retry number `n` (1-based): `base * 2^(n-1)`, capped, with jitter in
    /// its upper half.
    pub fn delay(&self, n: u32) -> Duration {
        let d = self
            .base_delay
            .saturating_mul(1u32 << n.saturating_sub(1).min(20))
            .min(self.max_delay);
        d / 2 + d.mul_f64(fastrand::f64() / 2.0)
    }

    /// Whether an operation of `class` that failed with `error` is tried again (limits aside).
    /// Never once the session is gone.
    ///
    /// ```
    /// use zkit::{Error, OpClass, RetryPolicy};
    /// let p = RetryPolicy::default();
    /// assert!(p.retries(OpClass::Read, &Error::ConnectionLoss));
    /// assert!(p.retries(OpClass::VersionedWrite, &Error::OperationTimeout));
    /// assert!(!p.retries(OpClass::UnsafeWrite, &Error::ConnectionLoss));
    /// assert!(p.retries(OpClass::UnsafeWrite, &Error::Throttled));
    /// assert!(!p.retries(OpClass::Read, &Error::SessionExpired));
    /// ```
    pub fn retries(&self, class: OpClass, error: &Error) -> bool {
        match class {
            OpClass::Read | OpClass::VersionedWrite => error.is_retryable(),
            // Throttled is answered before the request is applied.
            OpClass::UnsafeWrite => matches!(error, Error::Throttled),
        }
    }

    /// Runs `op`, retrying the errors [`retries`](Self::retries) accepts for `class` after
    /// the backoff delay, within the count and time limits.
    pub async fn run<T, F, Fut>(&self, class: OpClass, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.retry(class, op, None).await
    }

    /// Like [`run`](Self::run), and between attempts also waits until `client` is connected
    /// again: a long disconnection costs no attempts. Fails with the session's error
    /// (`SessionExpired`, `Closed`, ...) if the session ends while waiting: what was built on
    /// it is gone, even if the client re-creates sessions.
    pub async fn run_on<T, F, Fut>(&self, client: &Client, class: OpClass, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.retry(class, op, Some(client)).await
    }

    async fn retry<T, F, Fut>(
        &self,
        class: OpClass,
        mut op: F,
        client: Option<&Client>,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut n = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if self.retries(class, &e) && n < self.max_retries => {
                    n += 1;
                    let d = self.delay(n);
                    if let Some(max) = self.max_elapsed {
                        if start.elapsed() + d > max {
                            return Err(e);
                        }
                    }
                    tracing::debug!(attempt = n, error = %e, delay_ms = d.as_millis() as u64, "retrying");
                    tokio::time::sleep(d).await;
                    if let Some(c) = client {
                        c.wait_connected().await?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100), 5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retries_connection_loss_then_succeeds() {
        let n = AtomicU32::new(0);
        let p = RetryPolicy::exponential(Duration::from_millis(10), 3);
        let r = p
            .run(OpClass::Read, || async {
                if n.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::ConnectionLoss)
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r, Ok(7));
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_retries_and_on_fatal_errors() {
        let n = AtomicU32::new(0);
        let p = RetryPolicy::exponential(Duration::from_millis(10), 2);
        let r: Result<()> = p
            .run(OpClass::VersionedWrite, || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(Error::ConnectionLoss)
            })
            .await;
        assert_eq!(r, Err(Error::ConnectionLoss));
        assert_eq!(n.load(Ordering::SeqCst), 3);
        let r: Result<()> = p
            .run(OpClass::Read, || async { Err(Error::SessionExpired) })
            .await;
        assert_eq!(r, Err(Error::SessionExpired));
        let m = AtomicU32::new(0);
        let r: Result<()> = p
            .run(OpClass::UnsafeWrite, || async {
                m.fetch_add(1, Ordering::SeqCst);
                Err(Error::ConnectionLoss)
            })
            .await;
        assert_eq!(r, Err(Error::ConnectionLoss));
        assert_eq!(m.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn no_retry_policy() {
        assert_eq!(RetryPolicy::none().max_retries, 0);
    }
}
