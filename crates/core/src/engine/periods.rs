//! Metric periods as CloudWatch publishes them: pure bookkeeping shared by the health
//! adapter (`crate::aws::health`) and the fake, so "which periods are complete, which were
//! counted, what grew since" has one implementation and plain unit tests.
//!
//! Model. Time is cut into periods `[start, start + period)` aligned to multiples of the
//! period (as CloudWatch aligns them). A period is *complete* at `now` when its end is at
//! least `delay` in the past: by then its datapoint should be published. Each complete
//! period is reported once, as [`Reported::New`]:
//! - a period with a datapoint for either colour is reported at once;
//! - a period with no datapoint at all is "no data yet" (publication can be late) until its
//!   end is `delay + grace` in the past; then it is reported as an observed empty period
//!   (zero requests) — an ALB publishes nothing for a minute without requests.
//!
//! Late data. The last few complete periods ([`Timing::lookback`]) are queried again on
//! every poll; when a
//! reported period's request or 5xx counts grew (CloudWatch revised or completed it), only
//! the growth is reported, as [`Reported::Correction`] (never the whole period twice).
//! Counts that shrink are ignored (the larger reading was already judged), and latency is
//! never corrected (the gate keeps the first reading's statistic).

use super::ports::PeriodSample;
use crate::gate::{ColourSample, HealthSample};
use std::collections::BTreeMap;
use std::time::Duration;

/// At least this many of the latest complete periods are re-read for late data.
pub const LOOKBACK: i64 = 3;
/// At most this many periods are fetched at once; after a longer outage older periods are
/// given up (a GetMetricData answer stays small).
pub const MAX_SPAN: i64 = 1_000;

/// Period length, publication delay and the grace before an empty period counts, in whole
/// seconds (CloudWatch's resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub period: i64,
    pub delay: i64,
    pub grace: i64,
}

impl Timing {
    /// From the plan's `gates.metric_period` and `gates.metric_delay`. The grace is one more
    /// `metric_delay` (at least one period): an empty period counts as zero traffic once its
    /// end is twice the publication delay in the past.
    pub fn new(period: Duration, delay: Duration) -> Timing {
        let period = (period.as_secs() as i64).max(1);
        let delay = ceil_secs(delay);
        Timing {
            period,
            delay,
            grace: delay.max(period),
        }
    }

    /// The end of the latest complete period at `now` (aligned; its start is this minus
    /// one period).
    pub fn complete_end(&self, now: i64) -> i64 {
        (now - self.delay).div_euclid(self.period) * self.period
    }

    /// Is the period starting at `start` complete at `now`?
    pub fn is_complete(&self, start: i64, now: i64) -> bool {
        start + self.period + self.delay <= now
    }

    /// May an empty period starting at `start` be reported as zero traffic at `now`?
    pub fn empty_is_final(&self, start: i64, now: i64) -> bool {
        start + self.period + self.delay + self.grace <= now
    }

    /// How many of the latest complete periods are re-read: at least [`LOOKBACK`], and
    /// enough that a period given up as empty is still re-read a period later (its late
    /// data then comes as a correction instead of being lost).
    pub fn lookback(&self) -> i64 {
        LOOKBACK.max((self.grace + self.period - 1) / self.period + 2)
    }
}

fn ceil_secs(d: Duration) -> i64 {
    let s = d.as_secs() as i64;
    if d.subsec_nanos() > 0 {
        s + 1
    } else {
        s
    }
}

/// One period's metrics of both colours as fetched (target counts unset).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodMetrics {
    pub blue: ColourSample,
    pub green: ColourSample,
}

/// What one poll adds for one period.
#[derive(Debug, Clone, PartialEq)]
pub enum Reported {
    /// A complete period seen for the first time (empty: zero traffic).
    New { start: i64, metrics: PeriodMetrics },
    /// Growth of an already reported period's counts: only the added requests and 5xx
    /// (latency None).
    Correction { start: i64, added: PeriodMetrics },
}

impl Reported {
    pub fn start(&self) -> i64 {
        match self {
            Reported::New { start, .. } | Reported::Correction { start, .. } => *start,
        }
    }
}

/// The counts already reported for a period (to tell growth from repetition).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts([f64; 6]);

impl Counts {
    fn of(m: &PeriodMetrics) -> Counts {
        Counts([
            m.blue.requests,
            m.blue.errors_5xx,
            m.blue.elb_5xx,
            m.green.requests,
            m.green.errors_5xx,
            m.green.elb_5xx,
        ])
    }
}

/// Which periods one adapter instance has reported (one per release run).
#[derive(Debug, Clone)]
pub struct PeriodBook {
    timing: Timing,
    /// Every period before this was reported or given up; None before the first poll.
    from: Option<i64>,
    /// Reported periods still inside the look-back, with the counts reported so far.
    reported: BTreeMap<i64, Counts>,
}

impl PeriodBook {
    pub fn new(timing: Timing) -> PeriodBook {
        PeriodBook {
            timing,
            from: None,
            reported: BTreeMap::new(),
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The aligned window `[start, end)` to fetch at `now`: unreported periods plus the
    /// look-back; None when no period is complete yet. The first poll starts at the
    /// look-back (the bake ignores periods from before its weights anyway).
    pub fn window(&self, now: i64) -> Option<(i64, i64)> {
        let p = self.timing.period;
        let end = self.timing.complete_end(now);
        let lookback = end - self.timing.lookback() * p;
        let start = self.from.map_or(lookback, |f| f.min(lookback));
        let start = start.max(end - MAX_SPAN * p);
        (start < end).then_some((start, end))
    }

    /// Fold in what was fetched for `window(now)` (datapoints by period start; a period
    /// absent from `data` had no datapoint for either colour) and return what is new.
    pub fn take(&mut self, now: i64, data: &BTreeMap<i64, PeriodMetrics>) -> Vec<Reported> {
        let Some((start, end)) = self.window(now) else {
            return Vec::new();
        };
        let p = self.timing.period;
        let first_poll = self.from.is_none();
        let from = self.from.unwrap_or(start).max(start);
        let mut out = Vec::new();
        let mut held: Option<i64> = None;
        let mut s = start;
        while s < end {
            let seen = data.get(&s);
            if let Some(before) = self.reported.get(&s).copied() {
                if let Some(m) = seen {
                    if let Some(added) = growth(before, m) {
                        self.reported.insert(s, Counts::of(m).max(before));
                        out.push(Reported::Correction { start: s, added });
                    }
                }
            } else if s >= from {
                match seen {
                    Some(m) => {
                        self.reported.insert(s, Counts::of(m));
                        out.push(Reported::New {
                            start: s,
                            metrics: m.clone(),
                        });
                    }
                    // Before the first poll's window nothing is owed; an old empty period
                    // in it is final at once.
                    None if first_poll || self.timing.empty_is_final(s, now) => {
                        self.reported.insert(s, Counts::default());
                        out.push(Reported::New {
                            start: s,
                            metrics: PeriodMetrics::default(),
                        });
                    }
                    None => {
                        held.get_or_insert(s);
                    }
                }
            }
            s += p;
        }
        self.from = Some(held.unwrap_or(end));
        let keep = (end - self.timing.lookback() * p).min(held.unwrap_or(end));
        self.reported.retain(|k, _| *k >= keep);
        out
    }
}

impl Counts {
    fn max(self, other: Counts) -> Counts {
        let mut c = self;
        for (a, b) in c.0.iter_mut().zip(other.0) {
            *a = a.max(b);
        }
        c
    }
}

/// The counts of `now` above `before`, if any grew.
fn growth(before: Counts, now: &PeriodMetrics) -> Option<PeriodMetrics> {
    let after = Counts::of(now);
    let d: Vec<f64> = after
        .0
        .iter()
        .zip(before.0)
        .map(|(a, b)| (a - b).max(0.0))
        .collect();
    if d.iter().all(|x| *x <= 0.0) {
        return None;
    }
    let colour = |r: f64, e: f64, l: f64| ColourSample {
        requests: r,
        errors_5xx: e,
        elb_5xx: l,
        ..ColourSample::default()
    };
    Some(PeriodMetrics {
        blue: colour(d[0], d[1], d[2]),
        green: colour(d[3], d[4], d[5]),
    })
}

/// A reported period with the poll's target counts and alarms (as the AWS adapter builds it).
pub fn period_sample(instant: &HealthSample, r: Reported, period_s: i64) -> PeriodSample {
    let (start, m, correction) = match r {
        Reported::New { start, metrics } => (start, metrics, false),
        Reported::Correction { start, added } => (start, added, true),
    };
    let with_targets = |m: ColourSample, t: &ColourSample| ColourSample {
        healthy: t.healthy,
        unhealthy: t.unhealthy,
        other: t.other,
        ..m
    };
    PeriodSample {
        start,
        length: Duration::from_secs(period_s.max(1) as u64),
        correction,
        sample: HealthSample {
            blue: with_targets(m.blue, &instant.blue),
            green: with_targets(m.green, &instant.green),
            alarms: instant.alarms.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing::new(Duration::from_secs(60), Duration::from_secs(120))
    }

    fn traffic(requests: f64, errors: f64) -> PeriodMetrics {
        let c = ColourSample {
            requests,
            errors_5xx: errors,
            latency_avg_ms: Some(50.0),
            ..ColourSample::default()
        };
        PeriodMetrics {
            blue: c.clone(),
            green: c,
        }
    }

    fn data(points: &[(i64, PeriodMetrics)]) -> BTreeMap<i64, PeriodMetrics> {
        points.iter().cloned().collect()
    }

    fn starts(r: &[Reported]) -> Vec<(i64, bool)> {
        r.iter()
            .map(|r| (r.start(), matches!(r, Reported::Correction { .. })))
            .collect()
    }

    #[test]
    fn complete_means_ended_at_least_delay_ago() {
        let t = timing();
        // Period [600, 660) is complete from 780 on.
        assert!(!t.is_complete(600, 779));
        assert!(t.is_complete(600, 780));
        assert_eq!(t.complete_end(779), 600);
        assert_eq!(t.complete_end(780), 660);
        assert_eq!(t.complete_end(839), 660);
        assert!(!t.empty_is_final(600, 899));
        assert!(t.empty_is_final(600, 900));
        let fast = Timing::new(Duration::from_secs(1), Duration::from_millis(500));
        assert_eq!((fast.period, fast.delay, fast.grace), (1, 1, 1));
        assert_eq!(fast.complete_end(10), 9);
    }

    #[test]
    fn each_complete_period_is_reported_once() {
        let t = timing();
        let mut b = PeriodBook::new(t);
        // First poll at 1000: complete end 840; window = look-back of 4 periods.
        assert_eq!(t.lookback(), 4);
        assert_eq!(b.window(1000), Some((600, 840)));
        let d = data(&[(660, traffic(10.0, 0.0)), (720, traffic(10.0, 0.0))]);
        let r = b.take(1000, &d);
        // 600 and 780 are empty but nothing before the first poll is owed: final at once.
        assert_eq!(
            starts(&r),
            vec![(600, false), (660, false), (720, false), (780, false)]
        );
        // Same data again, a poll later in the same period: nothing new.
        assert_eq!(b.take(1010, &d), vec![]);
        // 840 completes at 960 + ... = 1020 (end 900 + delay 120).
        assert_eq!(b.window(1020), Some((660, 900)));
        let d = data(&[(720, traffic(10.0, 0.0)), (840, traffic(5.0, 1.0))]);
        let r = b.take(1020, &d);
        assert_eq!(
            r,
            vec![Reported::New {
                start: 840,
                metrics: traffic(5.0, 1.0)
            }]
        );
    }

    #[test]
    fn late_growth_is_a_correction_of_the_difference_only() {
        let mut b = PeriodBook::new(timing());
        b.take(1000, &data(&[(780, traffic(10.0, 1.0))]));
        let r = b.take(1010, &data(&[(780, traffic(25.0, 2.0))]));
        let Reported::Correction { start, added } = &r[0] else {
            panic!("{r:?}")
        };
        assert_eq!(*start, 780);
        assert_eq!((added.green.requests, added.green.errors_5xx), (15.0, 1.0));
        assert_eq!(
            added.green.latency_avg_ms, None,
            "latency is never corrected"
        );
        // A revision downwards or a repeat reports nothing.
        assert_eq!(b.take(1015, &data(&[(780, traffic(20.0, 2.0))])), vec![]);
        assert_eq!(b.take(1016, &data(&[(780, traffic(25.0, 2.0))])), vec![]);
        // Later polls still fetch from the first unreported period.
        assert_eq!(b.window(1500), Some((840, 1380)));
    }

    #[test]
    fn an_empty_period_waits_for_its_grace_then_counts_as_zero_traffic() {
        let mut b = PeriodBook::new(timing());
        b.take(1000, &BTreeMap::new());
        // 840 complete at 1020 but empty: held.
        assert_eq!(b.take(1020, &BTreeMap::new()), vec![]);
        // 900 arrives while 840 is still held: 900 reported, 840 still owed.
        let r = b.take(1080, &data(&[(900, traffic(3.0, 0.0))]));
        assert_eq!(starts(&r), vec![(900, false)]);
        assert_eq!(b.window(1080), Some((720, 960)), "840 is still owed");
        // 840's data turns up late: reported as new, once.
        let r = b.take(
            1090,
            &data(&[(840, traffic(4.0, 0.0)), (900, traffic(3.0, 0.0))]),
        );
        assert_eq!(starts(&r), vec![(840, false)]);
        // 960 stays empty: final at end 1020 + delay 120 + grace 120 = 1260.
        assert_eq!(b.take(1259, &BTreeMap::new()), vec![]);
        let r = b.take(1260, &BTreeMap::new());
        assert_eq!(
            r,
            vec![Reported::New {
                start: 960,
                metrics: PeriodMetrics::default()
            }]
        );
        // Its data after all, a little later: a correction of the whole counts.
        let r = b.take(1270, &data(&[(960, traffic(7.0, 1.0))]));
        assert_eq!(starts(&r), vec![(960, true)]);
    }

    #[test]
    fn a_long_outage_is_caught_up_in_order_within_the_span() {
        let t = Timing::new(Duration::from_secs(1), Duration::from_secs(1));
        let mut b = PeriodBook::new(t);
        b.take(100, &BTreeMap::new());
        let d: BTreeMap<i64, PeriodMetrics> = (99..200).map(|s| (s, traffic(1.0, 0.0))).collect();
        let r = b.take(200, &d);
        let s: Vec<i64> = r.iter().map(Reported::start).collect();
        assert_eq!(s, (99..199).collect::<Vec<_>>());
        assert!(b.window(5000).is_some_and(|(a, z)| z - a <= MAX_SPAN));
    }
}
