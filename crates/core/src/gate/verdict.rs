//! Gate verdicts: pure functions from a step's health samples and the plan's thresholds.
//!
//! Order of judgement, first failure wins:
//! 1. target health and alarms, from the latest sample (they need no traffic to mean something);
//! 2. `NotEnoughData` until green has `min_requests` requests over the step — never a pass on
//!    no data;
//! 3. thresholds on the 5xx rate and latency, over the whole step and over its most recent
//!    polls (the shortest tail that holds `min_requests` green requests), so a fault that
//!    starts late in a long bake is caught within a poll or two instead of being diluted;
//! 4. with `statistical = true`, a Mann–Whitney rank test of green against blue over the
//!    step's per-poll values (see [`compare`]).

use super::stats::{mann_whitney_greater, median, RankTest};
use super::{ColourSample, HealthSample, Signal, Verdict};
use crate::plan::{GateConfig, LatencyStat};

/// The rank test needs this many polls with data on each side before it may speak: below
/// that the normal approximation is poor and one odd poll decides too much.
pub const MIN_POLLS_FOR_STATISTICS: usize = 5;

/// One colour's numbers summed over some polls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub requests: f64,
    pub errors_5xx: f64,
    /// Request-weighted mean of the per-poll latency statistic, ms (None: no latency data).
    pub latency_ms: Option<f64>,
}

impl Totals {
    /// Sum `colour`'s numbers over `samples`.
    pub fn over(
        samples: &[HealthSample],
        colour: fn(&HealthSample) -> &ColourSample,
        stat: LatencyStat,
    ) -> Totals {
        let mut t = Totals::default();
        let (mut weighted, mut weight) = (0.0, 0.0);
        for s in samples {
            let c = colour(s);
            t.requests += c.requests.max(0.0);
            t.errors_5xx += c.errors_5xx.max(0.0);
            if let Some(ms) = latency_of(c, stat) {
                // A poll with latency data served requests; weigh by how many it served.
                let w = c.requests.max(1.0);
                weighted += ms * w;
                weight += w;
            }
        }
        t.latency_ms = (weight > 0.0).then(|| weighted / weight);
        t
    }

    /// 5xx share in 0..1; None without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors_5xx / self.requests)
    }
}

fn green(s: &HealthSample) -> &ColourSample {
    &s.green
}

fn blue(s: &HealthSample) -> &ColourSample {
    &s.blue
}

/// The plan's latency statistic of one colour in one poll.
pub fn latency_of(c: &ColourSample, stat: LatencyStat) -> Option<f64> {
    match stat {
        LatencyStat::Average => c.latency_avg_ms,
        LatencyStat::P95 => c.latency_p95_ms,
    }
    .filter(|v| v.is_finite())
}

fn stat_name(stat: LatencyStat) -> &'static str {
    match stat {
        LatencyStat::Average => "average",
        LatencyStat::P95 => "p95",
    }
}

/// Judge the samples of the current step against the plan's gates.
pub fn judge(samples: &[HealthSample], cfg: &GateConfig) -> Verdict {
    let Some(last) = samples.last() else {
        return Verdict::NotEnoughData {
            reason: "no health sample yet".into(),
        };
    };
    if let Some(v) = target_health(last).or_else(|| alarms(last)) {
        return v;
    }

    let need = (cfg.min_requests as f64).max(1.0);
    let step_green = Totals::over(samples, green, cfg.latency_stat);
    if step_green.requests < need {
        return Verdict::NotEnoughData {
            reason: format!(
                "green has {} of the {} requests needed to judge it",
                step_green.requests.round(),
                need
            ),
        };
    }
    let step_blue = Totals::over(samples, blue, cfg.latency_stat);
    let tail = recent(samples, need);
    let scopes: Vec<(Totals, Totals, String)> =
        std::iter::once((step_green, step_blue, String::new()))
            .chain((tail.len() < samples.len()).then(|| {
                (
                    Totals::over(tail, green, cfg.latency_stat),
                    Totals::over(tail, blue, cfg.latency_stat),
                    format!(" in the last {} poll(s)", tail.len()),
                )
            }))
            .collect();

    for (g, b, scope) in &scopes {
        if let Some(v) = error_rate(g, b, cfg, scope) {
            return v;
        }
    }
    for (g, b, scope) in &scopes {
        if let Some(v) = latency(g, b, cfg, scope) {
            return v;
        }
    }
    if cfg.statistical {
        if let Some(v) = compare(samples, cfg).and_then(|c| c.verdict(cfg)) {
            return v;
        }
    }
    Verdict::Pass
}

/// The shortest tail of `samples` in which green has at least `need` requests (all of them
/// when the whole step has fewer).
pub fn recent(samples: &[HealthSample], need: f64) -> &[HealthSample] {
    let mut sum = 0.0;
    for (i, s) in samples.iter().enumerate().rev() {
        sum += s.green.requests.max(0.0);
        if sum >= need {
            return &samples[i..];
        }
    }
    samples
}

/// Fail when green has any unhealthy target.
pub fn target_health(last: &HealthSample) -> Option<Verdict> {
    let g = &last.green;
    (g.unhealthy > 0).then(|| Verdict::Fail {
        signal: Signal::TargetHealth,
        reason: format!(
            "green has {} unhealthy target(s) ({} healthy, {} other)",
            g.unhealthy, g.healthy, g.other
        ),
    })
}

/// Fail when a named alarm is in ALARM.
pub fn alarms(last: &HealthSample) -> Option<Verdict> {
    let firing: Vec<&str> = last
        .alarms
        .iter()
        .filter(|a| a.state == "ALARM")
        .map(|a| a.name.as_str())
        .collect();
    (!firing.is_empty()).then(|| Verdict::Fail {
        signal: Signal::Alarm,
        reason: format!("alarm {} in ALARM", firing.join(", ")),
    })
}

/// Fail when green's 5xx rate exceeds both the floor and blue's rate plus the margin. Blue
/// without requests (green has all the traffic) counts as 0%.
pub fn error_rate(g: &Totals, b: &Totals, cfg: &GateConfig, scope: &str) -> Option<Verdict> {
    let g_rate = g.error_rate()?;
    let b_rate = b.error_rate();
    let bar = b_rate.unwrap_or(0.0) + cfg.error_rate_margin;
    if g_rate > cfg.error_rate_floor && g_rate > bar {
        let blue = match b_rate {
            Some(r) => pct(r),
            None => "n/a (no requests)".into(),
        };
        return Some(Verdict::Fail {
            signal: Signal::ErrorRate,
            reason: format!(
                "green 5xx {} > blue {} + margin {} (floor {}) over {} requests{}",
                pct(g_rate),
                blue,
                pct(cfg.error_rate_margin),
                pct(cfg.error_rate_floor),
                g.requests.round(),
                scope
            ),
        });
    }
    None
}

/// Fail when green's latency exceeds blue's times the plan's factor. Without latency data
/// for both colours there is nothing to compare, so no latency verdict.
pub fn latency(g: &Totals, b: &Totals, cfg: &GateConfig, scope: &str) -> Option<Verdict> {
    let (g_ms, b_ms) = (g.latency_ms?, b.latency_ms?);
    if g_ms > b_ms * cfg.latency_factor {
        return Some(Verdict::Fail {
            signal: Signal::Latency,
            reason: format!(
                "green {} latency {} > blue {} × {} over {} requests{}",
                stat_name(cfg.latency_stat),
                ms(g_ms),
                ms(b_ms),
                cfg.latency_factor,
                g.requests.round(),
                scope
            ),
        });
    }
    None
}

/// The statistical comparison of green against blue over a step's per-poll values.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Per-poll latency (the plan's statistic): is green's higher? None: too few polls.
    pub latency: Option<RankTest>,
    /// Median per-poll latency, green / blue.
    pub latency_ratio: Option<f64>,
    /// Per-poll 5xx rates: is green's higher? None: too few polls with requests.
    pub error_rate: Option<RankTest>,
    /// Pooled 5xx rates over the step (green, blue).
    pub error_rates: (Option<f64>, Option<f64>),
    stat: LatencyStat,
}

/// Rank-test green against blue, Kayenta-style: each poll is one observation per colour.
/// None when neither signal has [`MIN_POLLS_FOR_STATISTICS`] polls on both sides.
pub fn compare(samples: &[HealthSample], cfg: &GateConfig) -> Option<Comparison> {
    let series = |colour: fn(&HealthSample) -> &ColourSample| -> (Vec<f64>, Vec<f64>) {
        let lat = samples
            .iter()
            .filter_map(|s| latency_of(colour(s), cfg.latency_stat))
            .collect();
        let err = samples
            .iter()
            .filter_map(|s| colour(s).error_rate())
            .collect();
        (lat, err)
    };
    let (g_lat, g_err) = series(green);
    let (b_lat, b_err) = series(blue);
    let enough = |a: &[f64], b: &[f64]| {
        a.len() >= MIN_POLLS_FOR_STATISTICS && b.len() >= MIN_POLLS_FOR_STATISTICS
    };
    let latency = enough(&g_lat, &b_lat)
        .then(|| mann_whitney_greater(&g_lat, &b_lat))
        .flatten();
    let error_rate = enough(&g_err, &b_err)
        .then(|| mann_whitney_greater(&g_err, &b_err))
        .flatten();
    if latency.is_none() && error_rate.is_none() {
        return None;
    }
    let latency_ratio = match (median(&g_lat), median(&b_lat)) {
        (Some(g), Some(b)) if b > 0.0 => Some(g / b),
        _ => None,
    };
    let lat_stat = cfg.latency_stat;
    Some(Comparison {
        latency,
        latency_ratio,
        error_rate,
        error_rates: (
            Totals::over(samples, green, lat_stat).error_rate(),
            Totals::over(samples, blue, lat_stat).error_rate(),
        ),
        stat: lat_stat,
    })
}

impl Comparison {
    /// Fail when green is worse with at least `cfg.confidence` *and* the difference is
    /// material, so a tiny but consistent difference (2 ms on 80 ms) never rolls back:
    /// - latency: median per-poll ratio ≥ √latency_factor (halfway to the threshold, on a
    ///   ratio scale);
    /// - 5xx: pooled green rate ≥ blue's + margin/2 and ≥ floor/2.
    ///
    /// Thresholds fail on size alone; this fails earlier on a *consistent* shift about half
    /// the size, which is what the rank test adds.
    pub fn verdict(&self, cfg: &GateConfig) -> Option<Verdict> {
        let sure = |t: &RankTest| t.confidence() >= cfg.confidence;
        if let (Some(t), Some(ratio)) = (&self.latency, self.latency_ratio) {
            let material = cfg.latency_factor.max(1.0).sqrt();
            if sure(t) && ratio >= material {
                return Some(Verdict::Fail {
                    signal: Signal::Statistical,
                    reason: format!(
                        "green {} latency is higher than blue's with {} confidence \
                         (Mann-Whitney U={:.1}, p={:.4}, {} vs {} polls; median ×{:.2} ≥ ×{:.2})",
                        stat_name(self.stat),
                        confidence(t.confidence()),
                        t.u,
                        t.p_value,
                        t.n_green,
                        t.n_blue,
                        ratio,
                        material
                    ),
                });
            }
        }
        if let (Some(t), (Some(g), b)) = (&self.error_rate, self.error_rates) {
            let b = b.unwrap_or(0.0);
            let material = g >= b + cfg.error_rate_margin / 2.0 && g >= cfg.error_rate_floor / 2.0;
            if sure(t) && material {
                return Some(Verdict::Fail {
                    signal: Signal::Statistical,
                    reason: format!(
                        "green 5xx rate is higher than blue's with {} confidence \
                         (Mann-Whitney U={:.1}, p={:.4}, {} vs {} polls; {} vs {})",
                        confidence(t.confidence()),
                        t.u,
                        t.p_value,
                        t.n_green,
                        t.n_blue,
                        pct(g),
                        pct(b)
                    ),
                });
            }
        }
        None
    }
}

/// A 0..1 share as a percentage with one decimal: 0.31 → "31.0%".
fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// Confidence as a percentage; never rounds up to a claim of certainty.
fn confidence(c: f64) -> String {
    if c > 0.999 {
        "over 99.9%".into()
    } else {
        pct(c)
    }
}

fn ms(v: f64) -> String {
    format!("{v:.0} ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::AlarmState;
    use crate::plan::OnGateFail;
    use proptest::prelude::*;
    use std::time::Duration;

    fn cfg() -> GateConfig {
        GateConfig {
            poll_interval: Duration::from_secs(1),
            max_blind: Duration::from_secs(30),
            approval_timeout: Duration::from_secs(3600),
            min_requests: 100,
            error_rate_floor: 0.02,
            error_rate_margin: 0.01,
            latency_factor: 1.5,
            latency_stat: LatencyStat::P95,
            alarms: vec![],
            on_fail: OnGateFail::Rollback,
            statistical: false,
            confidence: 0.95,
            sequential: crate::plan::SequentialConfig::default(),
            metric_period: Duration::from_secs(1),
            metric_delay: Duration::from_secs(1),
            weight_settle: Duration::ZERO,
        }
    }

    fn colour(requests: f64, errors: f64, p95: f64) -> ColourSample {
        ColourSample {
            healthy: 2,
            requests,
            errors_5xx: errors,
            latency_avg_ms: Some(p95 / 1.45),
            latency_p95_ms: Some(p95),
            ..Default::default()
        }
    }

    fn sample(green: ColourSample, blue: ColourSample) -> HealthSample {
        HealthSample {
            blue,
            green,
            alarms: vec![],
        }
    }

    fn fail_signal(v: &Verdict) -> Option<Signal> {
        match v {
            Verdict::Fail { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    #[test]
    fn no_samples_is_not_enough_data() {
        assert!(matches!(judge(&[], &cfg()), Verdict::NotEnoughData { .. }));
    }

    #[test]
    fn too_few_green_requests_never_pass() {
        let s = vec![sample(colour(40.0, 0.0, 90.0), colour(400.0, 0.0, 90.0)); 2];
        match judge(&s, &cfg()) {
            Verdict::NotEnoughData { reason } => {
                assert_eq!(
                    reason,
                    "green has 80 of the 100 requests needed to judge it"
                )
            }
            v => panic!("{v:?}"),
        }
        // The third poll brings green to 120: now it can pass.
        let s = vec![sample(colour(40.0, 0.0, 90.0), colour(400.0, 0.0, 90.0)); 3];
        assert_eq!(judge(&s, &cfg()), Verdict::Pass);
    }

    #[test]
    fn zero_min_requests_still_needs_one_request() {
        let mut c = cfg();
        c.min_requests = 0;
        let s = vec![sample(colour(0.0, 0.0, 90.0), colour(400.0, 0.0, 90.0))];
        assert!(matches!(judge(&s, &c), Verdict::NotEnoughData { .. }));
    }

    #[test]
    fn unhealthy_green_fails_without_traffic() {
        let mut g = colour(0.0, 0.0, 90.0);
        g.unhealthy = 1;
        g.healthy = 1;
        match judge(&[sample(g, colour(0.0, 0.0, 90.0))], &cfg()) {
            Verdict::Fail { signal, reason } => {
                assert_eq!(signal, Signal::TargetHealth);
                assert_eq!(
                    reason,
                    "green has 1 unhealthy target(s) (1 healthy, 0 other)"
                );
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn unhealthy_blue_is_not_greens_fault() {
        let mut b = colour(400.0, 0.0, 90.0);
        b.unhealthy = 2;
        assert_eq!(
            judge(&[sample(colour(200.0, 0.0, 90.0), b)], &cfg()),
            Verdict::Pass
        );
    }

    #[test]
    fn alarm_in_alarm_fails() {
        let mut s = sample(colour(0.0, 0.0, 90.0), colour(0.0, 0.0, 90.0));
        s.alarms = vec![
            AlarmState {
                name: "shop-ok".into(),
                state: "OK".into(),
            },
            AlarmState {
                name: "shop-green-5xx".into(),
                state: "ALARM".into(),
            },
        ];
        match judge(&[s.clone()], &cfg()) {
            Verdict::Fail { signal, reason } => {
                assert_eq!(signal, Signal::Alarm);
                assert_eq!(reason, "alarm shop-green-5xx in ALARM");
            }
            v => panic!("{v:?}"),
        }
        s.alarms[1].state = "INSUFFICIENT_DATA".into();
        assert!(matches!(judge(&[s], &cfg()), Verdict::NotEnoughData { .. }));
    }

    #[test]
    fn error_rate_reason_names_the_numbers() {
        let s = vec![sample(
            colour(412.0, 127.72, 90.0),
            colour(4000.0, 8.0, 90.0),
        )];
        match judge(&s, &cfg()) {
            Verdict::Fail { signal, reason } => {
                assert_eq!(signal, Signal::ErrorRate);
                assert_eq!(
                    reason,
                    "green 5xx 31.0% > blue 0.2% + margin 1.0% (floor 2.0%) over 412 requests"
                );
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn error_rate_needs_both_floor_and_margin() {
        // 1.5% vs blue 0.2%: above margin, below floor.
        let s = [sample(
            colour(1000.0, 15.0, 90.0),
            colour(1000.0, 2.0, 90.0),
        )];
        assert_eq!(judge(&s, &cfg()), Verdict::Pass);
        // 5% vs blue 4.5%: above floor, within margin (blue is just as bad: not green's fault).
        let s = [sample(
            colour(1000.0, 50.0, 90.0),
            colour(1000.0, 45.0, 90.0),
        )];
        assert_eq!(judge(&s, &cfg()), Verdict::Pass);
        // 5% vs 3.9%: both.
        let s = [sample(
            colour(1000.0, 50.0, 90.0),
            colour(1000.0, 39.0, 90.0),
        )];
        assert_eq!(fail_signal(&judge(&s, &cfg())), Some(Signal::ErrorRate));
    }

    #[test]
    fn blue_without_traffic_counts_as_zero() {
        let s = [sample(colour(1000.0, 50.0, 90.0), colour(0.0, 0.0, 0.0))];
        match judge(&s, &cfg()) {
            Verdict::Fail { reason, .. } => {
                assert!(reason.contains("blue n/a (no requests)"), "{reason}")
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_late_fault_is_caught_by_the_recent_polls() {
        // 20 good polls, then one bad one: the step average is 1.4%, under the floor, but
        // the last poll alone has 30% over 100 requests.
        let mut s = vec![sample(colour(100.0, 0.0, 90.0), colour(900.0, 2.0, 90.0)); 20];
        s.push(sample(colour(100.0, 30.0, 90.0), colour(900.0, 2.0, 90.0)));
        match judge(&s, &cfg()) {
            Verdict::Fail { signal, reason } => {
                assert_eq!(signal, Signal::ErrorRate);
                assert!(
                    reason.ends_with("over 100 requests in the last 1 poll(s)"),
                    "{reason}"
                );
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn latency_fails_on_the_plan_statistic() {
        let s = [sample(
            colour(200.0, 0.0, 900.0),
            colour(1800.0, 0.0, 120.0),
        )];
        match judge(&s, &cfg()) {
            Verdict::Fail { signal, reason } => {
                assert_eq!(signal, Signal::Latency);
                assert_eq!(
                    reason,
                    "green p95 latency 900 ms > blue 120 ms × 1.5 over 200 requests"
                );
            }
            v => panic!("{v:?}"),
        }
        // Average only 1.2x: passes when the plan looks at the average.
        let mut g = colour(200.0, 0.0, 900.0);
        g.latency_avg_ms = Some(100.0);
        let mut b = colour(1800.0, 0.0, 120.0);
        b.latency_avg_ms = Some(84.0);
        let mut c = cfg();
        c.latency_stat = LatencyStat::Average;
        assert_eq!(judge(&[sample(g, b)], &c), Verdict::Pass);
    }

    #[test]
    fn latency_without_blue_data_is_not_judged() {
        let mut b = colour(0.0, 0.0, 0.0);
        b.latency_p95_ms = None;
        assert_eq!(
            judge(&[sample(colour(200.0, 0.0, 900.0), b)], &cfg()),
            Verdict::Pass
        );
    }

    fn noisy(n: usize, base: f64, step: f64) -> Vec<f64> {
        // Deterministic spread: base, base+step, … in a shuffled order.
        (0..n).map(|i| base + step * ((i * 7) % n) as f64).collect()
    }

    #[test]
    fn statistical_catches_a_consistent_shift_under_the_threshold() {
        // Green's p95 is ~1.3x blue's every poll: under the 1.5x threshold, over √1.5 = 1.22.
        let mut c = cfg();
        c.statistical = true;
        let g = noisy(10, 130.0, 1.0);
        let b = noisy(10, 100.0, 1.0);
        let s: Vec<_> = g
            .iter()
            .zip(&b)
            .map(|(g, b)| sample(colour(50.0, 0.0, *g), colour(450.0, 0.0, *b)))
            .collect();
        match judge(&s, &c) {
            Verdict::Fail { signal, reason } => {
                assert_eq!(signal, Signal::Statistical);
                assert!(
                    reason.starts_with(
                        "green p95 latency is higher than blue's with over 99.9% confidence"
                    ),
                    "{reason}"
                );
                assert!(reason.contains("10 vs 10 polls"), "{reason}");
            }
            v => panic!("{v:?}"),
        }
        // Without the statistical gate the same samples pass.
        c.statistical = false;
        assert_eq!(judge(&s, &c), Verdict::Pass);
    }

    #[test]
    fn statistical_ignores_a_tiny_but_consistent_difference() {
        let mut c = cfg();
        c.statistical = true;
        let s: Vec<_> = (0..20)
            .map(|i| {
                sample(
                    colour(50.0, 0.0, 102.0 + i as f64 * 0.01),
                    colour(450.0, 0.0, 100.0 + i as f64 * 0.01),
                )
            })
            .collect();
        let cmp = compare(&s, &c).unwrap();
        assert!(cmp.latency.unwrap().confidence() > 0.999);
        assert_eq!(judge(&s, &c), Verdict::Pass);
    }

    #[test]
    fn statistical_on_error_rates() {
        let mut c = cfg();
        c.statistical = true;
        c.min_requests = 10;
        // Green 1.2% per poll vs blue ~0.2%: under the floor (2%) and the margin (1%) + blue,
        // but over half of each, consistently.
        let s: Vec<_> = (0..8)
            .map(|i| {
                sample(
                    colour(500.0, 6.0, 90.0),
                    colour(500.0, if i % 2 == 0 { 1.0 } else { 0.0 }, 90.0),
                )
            })
            .collect();
        match judge(&s, &c) {
            Verdict::Fail { signal, reason } => {
                assert_eq!(signal, Signal::Statistical);
                assert!(
                    reason.starts_with("green 5xx rate is higher than blue's with"),
                    "{reason}"
                );
                assert!(reason.ends_with("8 vs 8 polls; 1.2% vs 0.1%)"), "{reason}");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn statistical_waits_for_enough_polls() {
        let mut c = cfg();
        c.statistical = true;
        let s: Vec<_> = (0..4)
            .map(|_| sample(colour(50.0, 0.0, 140.0), colour(450.0, 0.0, 100.0)))
            .collect();
        assert!(compare(&s, &c).is_none());
        assert_eq!(judge(&s, &c), Verdict::Pass);
    }

    fn arb_colour() -> impl Strategy<Value = ColourSample> {
        (
            0u32..4,
            0u32..3,
            0u32..200,
            0.0f64..1.0,
            prop::option::of(1.0f64..2000.0),
        )
            .prop_map(
                |(healthy, unhealthy, requests, err_share, lat)| ColourSample {
                    healthy,
                    unhealthy,
                    other: 0,
                    requests: f64::from(requests),
                    errors_5xx: (f64::from(requests) * err_share).floor(),
                    elb_5xx: 0.0,
                    latency_avg_ms: lat,
                    latency_p95_ms: lat.map(|l| l * 1.4),
                },
            )
    }

    fn arb_cfg() -> impl Strategy<Value = GateConfig> {
        (
            0u64..500,
            0.0f64..0.2,
            0.0f64..0.2,
            1.01f64..4.0,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(min, floor, margin, factor, p95, statistical)| GateConfig {
                    min_requests: min,
                    error_rate_floor: floor,
                    error_rate_margin: margin,
                    latency_factor: factor,
                    latency_stat: if p95 {
                        LatencyStat::P95
                    } else {
                        LatencyStat::Average
                    },
                    statistical,
                    ..cfg()
                },
            )
    }

    proptest! {
        #[test]
        fn never_passes_without_enough_green_requests(
            green in prop::collection::vec(arb_colour(), 0..12),
            blue in arb_colour(),
            c in arb_cfg(),
        ) {
            let s: Vec<_> = green.into_iter().map(|g| sample(g, blue.clone())).collect();
            let total: f64 = s.iter().map(|x| x.green.requests).sum();
            let v = judge(&s, &c);
            if v == Verdict::Pass {
                prop_assert!(total >= (c.min_requests as f64).max(1.0));
                prop_assert_eq!(s.last().map(|x| x.green.unhealthy), Some(0));
            }
        }

        #[test]
        fn green_just_like_blue_never_fails(
            colours in prop::collection::vec(arb_colour(), 1..15),
            c in arb_cfg(),
        ) {
            // Same numbers on both sides, healthy targets: whatever blue does, green is no worse.
            let s: Vec<_> = colours
                .into_iter()
                .map(|mut x| { x.unhealthy = 0; sample(x.clone(), x) })
                .collect();
            let v = judge(&s, &c);
            prop_assert!(!matches!(v, Verdict::Fail { .. }), "{:?}", v);
        }

        #[test]
        fn an_unhealthy_green_always_fails_on_target_health(
            green in prop::collection::vec(arb_colour(), 1..8),
            blue in arb_colour(),
            c in arb_cfg(),
        ) {
            let mut s: Vec<_> = green.into_iter().map(|g| sample(g, blue.clone())).collect();
            if let Some(last) = s.last_mut() { last.green.unhealthy = last.green.unhealthy.max(1); }
            prop_assert_eq!(fail_signal(&judge(&s, &c)), Some(Signal::TargetHealth));
        }

        #[test]
        fn an_all_failing_green_fails(
            polls in 1usize..10,
            requests in 50u32..500,
            c in arb_cfg(),
        ) {
            let g = colour(f64::from(requests), f64::from(requests), 90.0);
            let b = colour(f64::from(requests), 0.0, 90.0);
            let s = vec![sample(g, b); polls];
            let total = f64::from(requests) * polls as f64;
            let v = judge(&s, &c);
            if total >= c.min_requests as f64 {
                prop_assert_eq!(fail_signal(&v), Some(Signal::ErrorRate));
            } else {
                let not_enough = matches!(v, Verdict::NotEnoughData { .. });
                prop_assert!(not_enough);
            }
        }

        #[test]
        fn reasons_are_never_empty(
            green in prop::collection::vec(arb_colour(), 0..8),
            blue in arb_colour(),
            c in arb_cfg(),
        ) {
            let s: Vec<_> = green.into_iter().map(|g| sample(g, blue.clone())).collect();
            match judge(&s, &c) {
                Verdict::Pass => {}
                Verdict::NotEnoughData { reason } | Verdict::Fail { reason, .. } => prop_assert!(!reason.is_empty()),
            }
        }
    }
}
