//! Retrying operations that failed with a retryable error (connection loss, timeouts,
//! throttling): exponential backoff with jitter, bounded by a count and by elapsed time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};

/// How to retry: how often, how long, how far apart.
///
/// ```
/// # async fn f(zk: zkit::Client) -> zkit::Result<()> {
/// use std::time::Duration;
/// use zkit::RetryPolicy;
/// let policy = RetryPolicy::exponential(Duration::from_millis(50), 5);
/// // Reads are idempotent: retried on connection loss.
/// let (data, _stat) = policy.run(|| zk.get_data("/config")).await?;
/// // A create is not: it is retried only because the caller says a duplicate is harmless.
/// let r = policy.run_non_idempotent(|| zk.create("/flag", b"", &Default::default())).await;
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

    /// Runs an idempotent operation, retrying on retryable errors
    /// ([`Error::is_retryable`]). Never retries once the session is gone.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.retry(op, |e| e.is_retryable()).await
    }

    /// Runs a non-idempotent operation (create, delete, setData...) with retries. A retry after
    /// a connection loss may see the effect of the first attempt (`NodeExists`, `NoNode`,
    /// `BadVersion`); call this only when that is acceptable.
    pub async fn run_non_idempotent<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.retry(op, |e| e.is_retryable()).await
    }

    /// Runs an operation retrying only when the server throttled it (`Throttled`: it was not
    /// applied), never on `ConnectionLoss` or a timeout (whose outcome is unknown): the safe
    /// default for non-idempotent writes.
    pub async fn run_write<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.retry(op, |e| matches!(e, Error::Throttled)).await
    }

    async fn retry<T, F, Fut>(&self, mut op: F, retryable: impl Fn(&Error) -> bool) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut n = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) && n < self.max_retries => {
                    n += 1;
                    let d = self.delay(n);
                    if let Some(max) = self.max_elapsed {
                        if start.elapsed() + d > max {
                            return Err(e);
                        }
                    }
                    tracing::debug!(attempt = n, error = %e, delay_ms = d.as_millis() as u64, "retrying");
                    tokio::time::sleep(d).await;
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
            .run(|| async {
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
            .run(|| async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(Error::ConnectionLoss)
            })
            .await;
        assert_eq!(r, Err(Error::ConnectionLoss));
        assert_eq!(n.load(Ordering::SeqCst), 3);
        let r: Result<()> = p.run(|| async { Err(Error::SessionExpired) }).await;
        assert_eq!(r, Err(Error::SessionExpired));
        let m = AtomicU32::new(0);
        let r: Result<()> = p
            .run_write(|| async {
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
