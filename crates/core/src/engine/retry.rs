//! Bounded retry of transient errors (throttling, 5xx, timeouts). Anything else is
//! returned at once: retrying a permission or validation error only delays the message.
//!
//! This is the one retry policy: the engine's port calls use it as is, and the asset
//! publisher (many uploads in flight) uses the same schedule with jitter added.

use super::ports::{PortError, PortResult};
use std::future::Future;
use std::time::Duration;

/// Attempts in all, including the first.
pub const ATTEMPTS: u32 = 5;
/// Backoff before the second attempt; doubled each time (0.5 s, 1 s, 2 s, 4 s).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// No single wait is longer than this, however many attempts a caller allows.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// How often to try and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, including the first.
    pub attempts: u32,
    /// The wait after the first failure; doubled after each further one.
    pub first: Duration,
    /// The longest single wait.
    pub max: Duration,
    /// Wait 0.5× to 1× of each step, so concurrent callers that failed together do not
    /// all come back at the same moment.
    pub jitter: bool,
}

impl Backoff {
    /// The engine's schedule: [`ATTEMPTS`] attempts, [`FIRST_BACKOFF`] doubled.
    pub const STANDARD: Backoff = Backoff {
        attempts: ATTEMPTS,
        first: FIRST_BACKOFF,
        max: MAX_BACKOFF,
        jitter: false,
    };

    /// The wait after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let step = self
            .first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        if !self.jitter {
            return step;
        }
        // No RNG dependency for this: the clock's nanoseconds spread callers well enough.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        step.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
    }
}

/// An error [`with`] can retry: it knows whether it is transient, and how to say that
/// the budget ran out.
pub trait Retryable {
    fn is_transient(&self) -> bool;
    /// The final error after `attempts` transient failures in a row.
    fn gave_up(self, attempts: u32) -> Self;
}

impl Retryable for PortError {
    fn is_transient(&self) -> bool {
        PortError::is_transient(self)
    }

    fn gave_up(self, attempts: u32) -> Self {
        match self {
            PortError::Transient { operation, message } => PortError::Transient {
                operation,
                message: format!("{message}; gave up after {attempts} attempts"),
            },
            other => other,
        }
    }
}

/// Call `f` until it succeeds, fails with a non-transient error, or `policy.attempts`
/// transient failures in a row. `on_retry(attempt, error, backoff)` lets the caller say so.
pub async fn with<T, E, F, Fut>(
    policy: &Backoff,
    mut f: F,
    mut on_retry: impl FnMut(u32, &E, Duration),
) -> Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < policy.attempts => {
                let wait = policy.delay(attempt);
                on_retry(attempt, &e, wait);
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) if e.is_transient() => return Err(e.gave_up(attempt)),
            Err(e) => return Err(e),
        }
    }
}

/// [`with`] the [`Backoff::STANDARD`] schedule, for port calls.
pub async fn retry<T, F, Fut>(
    f: F,
    on_retry: impl FnMut(u32, &PortError, Duration),
) -> PortResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
{
    with(&Backoff::STANDARD, f, on_retry).await
}

/// [`retry`] without a retry callback.
pub async fn quietly<T, F, Fut>(f: F) -> PortResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
{
    retry(f, |_, _, _| {}).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_schedule_doubles_from_half_a_second() {
        let b = Backoff::STANDARD;
        let waits: Vec<_> = (1..ATTEMPTS).map(|a| b.delay(a)).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000].map(Duration::from_millis).to_vec()
        );
        assert_eq!(b.delay(30), MAX_BACKOFF, "capped");
    }

    #[test]
    fn jitter_stays_within_half_to_whole_step() {
        let b = Backoff {
            jitter: true,
            ..Backoff::STANDARD
        };
        for a in 1..8 {
            let step = Backoff::STANDARD.delay(a);
            let d = b.delay(a);
            assert!(d >= step / 2 && d <= step, "attempt {a}: {d:?} vs {step:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_budget_and_says_so_but_never_retries_fatal() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let err = quietly(|| async {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err::<(), _>(PortError::Transient {
                operation: "s3:GetObject".into(),
                message: "SlowDown".into(),
            })
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), ATTEMPTS);
        assert!(
            err.to_string().contains("gave up after 5 attempts"),
            "{err}"
        );
        let calls = std::sync::atomic::AtomicU32::new(0);
        let err = quietly(|| async {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err::<(), _>(PortError::Fatal {
                operation: "s3:GetObject".into(),
                message: "AccessDenied".into(),
            })
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(!err.is_transient());
    }
}
