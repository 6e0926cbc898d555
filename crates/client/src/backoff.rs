//! Capped exponential backoff with jitter, and the retry loop built on it.

use std::{future::Future, time::Duration};

use crate::error::ClientError;

/// How retries and reconnects are spaced: the `n`th wait is `initial * 2^(n-1)`
/// capped at `max`, then jittered down by up to half so that clients cut off
/// together do not come back together. Made with [`Backoff::new`]; more
/// knobs may come, so it cannot be written as a struct literal outside
/// this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first wait, before jitter.
    pub initial: Duration,
    /// No wait is longer than this.
    pub max: Duration,
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
}

impl Backoff {
    /// Waits starting at `initial`, doubling up to `max`, for
    /// `max_attempts` attempts in all (at least 1: 0 is taken as 1).
    pub fn new(initial: Duration, max: Duration, max_attempts: u32) -> Self {
        Self {
            initial,
            max,
            max_attempts: max_attempts.max(1),
        }
    }

    /// The wait before attempt `attempt + 1`, after `attempt` failures
    /// (`attempt` counts from 1), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        jitter(self.ceiling(attempt))
    }

    /// The wait before jitter: the upper bound of [`Backoff::delay`].
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// A duration in `[d/2, d]`, uniformly.
fn jitter(d: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    // Without entropy the wait is simply not jittered.
    let random = match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => u64::MAX,
    };
    let half = d / 2;
    let fraction = random as f64 / u64::MAX as f64;
    half + half.mul_f64(fraction)
}

/// Runs `attempt` until it succeeds, fails in a way retrying cannot fix, or
/// `policy.max_attempts` are spent. Between attempts it waits the backoff, or
/// the server's `Retry-After` when that is longer; a `Retry-After` beyond
/// `max_retry_after` is not waited for: the error is returned at once.
pub async fn retry<T, F, Fut>(
    policy: &Backoff,
    max_retry_after: Duration,
    attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    retry_if(policy, max_retry_after, ClientError::is_retryable, attempt).await
}

/// [`retry`] with the caller deciding which errors are worth another
/// attempt (for example [`ClientError::is_retryable_unsent`] for a request
/// that must not be applied twice).
pub async fn retry_if<T, F, Fut>(
    policy: &Backoff,
    max_retry_after: Duration,
    should_retry: impl Fn(&ClientError) -> bool,
    mut attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut failures = 0;
    loop {
        let error = match attempt(failures + 1).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        failures += 1;
        if !should_retry(&error) || failures >= policy.max_attempts.max(1) {
            return Err(error);
        }
        let wait = match error.retry_after() {
            Some(asked) if asked > max_retry_after => return Err(error),
            Some(asked) => asked.max(policy.delay(failures)),
            None => policy.delay(failures),
        };
        tracing::debug!(%error, attempt = failures, ?wait, "retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use reqwest::StatusCode;
    use tokio::time::Instant;

    use super::*;

    fn policy(max_attempts: u32) -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_stays_in_bounds() {
        let backoff = policy(10);
        let ceilings: Vec<_> = (1..=6).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
        for attempt in 1..=20 {
            let delay = backoff.delay(attempt);
            let ceiling = backoff.ceiling(attempt);
            assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?}");
        }
    }

    fn unavailable(retry_after: Option<Duration>) -> ClientError {
        ClientError::Refused {
            status: 503,
            detail: "down".into(),
            retry_after,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_5xx_with_growing_waits_then_succeeds() {
        let started = Instant::now();
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();

        let result = retry(&policy(5), Duration::from_secs(30), |_| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { if n < 3 { Err(unavailable(None)) } else { Ok(n) } }
        })
        .await;

        assert_eq!(result.unwrap(), 3);
        let waited = started.elapsed();
        // Three waits: at least half of 100 + 200 + 400 ms, at most all of it.
        assert!(waited >= Duration::from_millis(350), "{waited:?}");
        assert!(waited <= Duration::from_millis(700), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_and_gives_up_after_max_attempts() {
        let started = Instant::now();
        let calls = AtomicU32::new(0);

        let result: Result<(), _> = retry(&policy(3), Duration::from_secs(30), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(unavailable(Some(Duration::from_secs(2)))) }
        })
        .await;

        assert_eq!(result.unwrap_err().status(), Some(503));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(started.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_other_4xx_nor_an_excessive_retry_after() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(&policy(5), Duration::from_secs(30), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(ClientError::refused(StatusCode::CONFLICT, "taken")) }
        })
        .await;
        assert_eq!(result.unwrap_err().detail(), Some("taken"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let started = Instant::now();
        let result: Result<(), _> = retry(&policy(5), Duration::from_secs(30), |_| async {
            Err(unavailable(Some(Duration::from_secs(3600))))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
