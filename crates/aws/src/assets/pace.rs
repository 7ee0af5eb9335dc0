//! How many objects to keep in flight: an AIMD controller, pure (no clock, no I/O), fed by
//! the upload loop with each request's round trip and each throttling answer.
//!
//! - Grow while round trips are long but not queued: a request that took no more than
//!   [`QUEUED`] × the shortest round trip seen waited on the network, not on the server, so
//!   one more request in flight is nearly free. Growth starts fast (+1 per success, doubling
//!   the limit per round trip) and turns additive (+1 per limit's worth of successes) once
//!   the server has pushed back.
//! - Halve on throttling (S3 SlowDown, 503, 429), at most once per round of requests: the
//!   answers to requests sent before the last cut tell nothing new.
//! - Stay within `min..=max`; a pinned limit never moves.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A round trip longer than this multiple of the shortest one waited in a queue.
pub const QUEUED: u32 = 2;

/// Where the limit starts and the bounds it moves within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub start: usize,
    pub min: usize,
    pub max: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            start: 32,
            min: 8,
            max: 256,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    min: f64,
    max: f64,
    pinned: bool,
    /// Doubling per round trip until the first pushback.
    fast: bool,
    shortest: Option<Duration>,
    /// Bumped at every cut; requests carry the round they were sent in.
    round: u64,
}

impl Aimd {
    pub fn adaptive(b: Bounds) -> Self {
        let min = b.min.max(1);
        let max = b.max.max(min);
        Aimd {
            limit: b.start.clamp(min, max) as f64,
            min: min as f64,
            max: max as f64,
            pinned: false,
            fast: true,
            shortest: None,
            round: 0,
        }
    }

    /// `--concurrency N`: exactly N, whatever happens.
    pub fn pinned(n: usize) -> Self {
        let n = n.max(1);
        Aimd {
            pinned: true,
            ..Aimd::adaptive(Bounds {
                start: n,
                min: n,
                max: n,
            })
        }
    }

    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// Stamp a request with this when it is sent; give it back to [`Aimd::on_throttle`].
    pub fn round(&self) -> u64 {
        self.round
    }

    /// A request succeeded after `latency`; returns the new limit.
    pub fn on_success(&mut self, latency: Duration) -> usize {
        let shortest = *self.shortest.get_or_insert(latency);
        let shortest = shortest.min(latency);
        self.shortest = Some(shortest);
        if !self.pinned && latency <= shortest * QUEUED {
            let step = if self.fast { 1.0 } else { 1.0 / self.limit };
            self.limit = (self.limit + step).min(self.max);
        }
        self.limit()
    }

    /// The server pushed back on a request sent in `sent_in`; returns the new limit.
    pub fn on_throttle(&mut self, sent_in: u64) -> usize {
        if !self.pinned && sent_in >= self.round {
            self.limit = (self.limit / 2.0).floor().max(self.min);
            self.fast = false;
            self.round += 1;
        }
        self.limit()
    }
}

/// What the limit did during one publish, for the report (and the tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaceReport {
    pub pinned: bool,
    pub start: usize,
    pub lowest: usize,
    pub highest: usize,
    /// Requests the server pushed back on (each was retried).
    pub throttled: u64,
    /// Most requests in flight at once.
    pub peak_in_flight: usize,
    /// Most in flight at once after the first cut (None: never cut).
    pub peak_in_flight_after_cut: Option<usize>,
}

/// One publish's controller, shared by its requests.
pub(crate) struct Pace {
    inner: Mutex<(Aimd, PaceReport)>,
}

/// When a request was sent, and in which round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    at: Instant,
    round: u64,
}

impl Pace {
    pub(crate) fn new(c: Aimd) -> Self {
        let n = c.limit();
        let report = PaceReport {
            pinned: c.pinned,
            start: n,
            lowest: n,
            highest: n,
            ..PaceReport::default()
        };
        Pace {
            inner: Mutex::new((c, report)),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Aimd, &mut PaceReport) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (c, r) = &mut *g;
        f(c, r)
    }

    pub(crate) fn limit(&self) -> usize {
        self.with(|c, _| c.limit())
    }

    /// The driver started a request; `in_flight` counts it.
    pub(crate) fn launched(&self, in_flight: usize) {
        self.with(|_, r| {
            r.peak_in_flight = r.peak_in_flight.max(in_flight);
            if let Some(p) = r.peak_in_flight_after_cut.as_mut() {
                *p = (*p).max(in_flight);
            }
        })
    }

    pub(crate) fn send(&self) -> Sent {
        Sent {
            at: Instant::now(),
            round: self.with(|c, _| c.round()),
        }
    }

    /// Feed one answer: a success's round trip, or a pushback (other errors say nothing
    /// about load).
    pub(crate) fn answered<T, E>(&self, sent: Sent, res: &Result<T, SdkError<E, HttpResponse>>)
    where
        E: ProvideErrorMetadata,
    {
        let throttled = match res {
            Ok(_) => false,
            Err(e) if crate::errors::throttled(e) => true,
            Err(_) => return,
        };
        self.with(|c, r| {
            let n = if throttled {
                r.throttled += 1;
                let before = c.limit();
                let n = c.on_throttle(sent.round);
                if n < before && r.peak_in_flight_after_cut.is_none() {
                    r.peak_in_flight_after_cut = Some(0);
                }
                n
            } else {
                c.on_success(sent.at.elapsed())
            };
            r.lowest = r.lowest.min(n);
            r.highest = r.highest.max(n);
        })
    }

    pub(crate) fn report(&self) -> PaceReport {
        self.with(|_, r| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn bounds(start: usize) -> Bounds {
        Bounds {
            start,
            min: 8,
            max: 256,
        }
    }

    #[test]
    fn grows_fast_while_round_trips_are_unqueued_up_to_the_max() {
        let mut c = Aimd::adaptive(bounds(32));
        for _ in 0..32 {
            c.on_success(20 * MS);
        }
        assert_eq!(
            c.limit(),
            64,
            "one round trip of successes doubles the limit"
        );
        for _ in 0..1000 {
            c.on_success(25 * MS);
        }
        assert_eq!(c.limit(), 256);
    }

    #[test]
    fn queued_round_trips_hold_the_limit() {
        let mut c = Aimd::adaptive(bounds(32));
        c.on_success(10 * MS);
        assert_eq!(c.limit(), 33);
        for _ in 0..100 {
            assert_eq!(c.on_success(21 * MS), 33);
        }
    }

    #[test]
    fn throttling_halves_once_per_round_and_not_below_the_min() {
        let mut c = Aimd::adaptive(bounds(64));
        let sent = c.round();
        assert_eq!(c.on_throttle(sent), 32);
        // The rest of that burst was sent before the cut: no further halving.
        for _ in 0..20 {
            assert_eq!(c.on_throttle(sent), 32);
        }
        assert_eq!(c.on_throttle(c.round()), 16);
        assert_eq!(c.on_throttle(c.round()), 8);
        assert_eq!(c.on_throttle(c.round()), 8, "never below the min");
    }

    #[test]
    fn after_pushback_growth_is_additive() {
        let mut c = Aimd::adaptive(bounds(64));
        let r = c.round();
        c.on_throttle(r);
        assert_eq!(c.limit(), 32);
        for _ in 0..40 {
            c.on_success(20 * MS);
        }
        assert_eq!(c.limit(), 33, "+1 per limit's worth of successes");
    }

    #[test]
    fn pinned_never_moves() {
        let mut c = Aimd::pinned(5);
        for _ in 0..100 {
            c.on_success(20 * MS);
        }
        assert_eq!(c.on_throttle(c.round()), 5);
        assert_eq!(c.limit(), 5);
    }

    #[test]
    fn start_is_clamped_into_the_bounds() {
        assert_eq!(Aimd::adaptive(bounds(1000)).limit(), 256);
        assert_eq!(Aimd::adaptive(bounds(1)).limit(), 8);
        assert_eq!(Aimd::pinned(0).limit(), 1);
    }
}
