//! Bounded retry of transient port errors (throttling, 5xx, timeouts). Anything else is
//! returned at once: retrying a permission or validation error only delays the message.

use super::ports::{PortError, PortResult};
use std::future::Future;
use std::time::Duration;

/// Attempts in all, including the first.
pub const ATTEMPTS: u32 = 5;
/// Backoff before the second attempt; doubled each time (0.5 s, 1 s, 2 s, 4 s).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Call `f` until it succeeds, fails with a non-transient error, or [`ATTEMPTS`] transient
/// failures in a row. `on_retry(attempt, error, backoff)` lets the caller say so.
pub async fn retry<T, F, Fut>(
    mut f: F,
    mut on_retry: impl FnMut(u32, &PortError, Duration),
) -> PortResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                on_retry(attempt, &e, backoff);
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(PortError::Transient { operation, message }) => {
                return Err(PortError::Transient {
                    operation,
                    message: format!("{message}; gave up after {ATTEMPTS} attempts"),
                })
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`retry`] without a retry callback.
pub async fn quietly<T, F, Fut>(f: F) -> PortResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
{
    retry(f, |_, _, _| {}).await
}
