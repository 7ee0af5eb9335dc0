//! The live colour judged against itself: its periods before the migration (the baseline)
//! against its periods after it.
//!
//! Why: a schema change can break the version that is running, and nothing else would see
//! it. There is no second colour yet to compare with, so the live colour is compared with
//! its own past, using the sequential gate's reference machinery (its 100 % step compares
//! with a reference fixed from the live colour's earlier periods; see
//! [`super::sequential`]):
//! - 5xx: the baseline gives an upper confidence bound `u` of the live 5xx rate; each
//!   period after the migration adds `Binomial(n, ρ·u·r)` against `Binomial(n, ρ·u)` for a
//!   grid of `r` (ρ = `error_tolerance`). As in the gate, a rise only counts when the
//!   absolute test against `error_tolerance_abs` rejects too (an intersection–union test),
//!   so 0.01 % → 0.02 % never stops a release. Without a baseline (no requests before)
//!   only the absolute test speaks.
//! - latency: `ln(after) − level − ln(latency_tolerance)` per period, Gaussian with the
//!   sampling variance of the period's statistic plus the baseline's own spread, where
//!   `level` is an upper confidence bound of the baseline's log latency (≥ 3 periods).
//! - guard rails without statistics: targets that became unhealthy (or none healthy),
//!   an alarm that went to ALARM after the baseline, and a 5xx rate at
//!   `catastrophic_error_rate` over `catastrophic_min_requests` requests (unless the
//!   baseline was as bad).
//!
//! The watch is one test with its own false-stop budget `alpha` (split as in the gate,
//! 45 % to 5xx and 45 % to latency, 5 % to each reference bound), so a healthy migration
//! stops a release by mistake at most about `alpha` of the time however long it watches.
//! The same judge, fed the live colour's periods during the shift, tells whether the live
//! colour is still the healthy yardstick and rollback target it was before the release.

use super::eprocess::{binomial_log_lr, normal_upper_quantile, rate_upper_bound, Restarts};
use super::sequential::{self, Evidence, Judgement, ERROR_GRID, LATENCY_GRID};
use super::verdict::latency_of;
use super::{AlarmState, ColourSample, Signal, Verdict};
use crate::plan::{GateConfig, LatencyStat};
use serde::{Deserialize, Serialize};

/// Baseline periods kept for the latency reference.
const BASELINE_PERIODS: usize = 30;
/// Noise floor of one period's log latency (as in the gate).
const LOG_LATENCY_FLOOR: f64 = 0.02;
/// Shape assumed when a period gives none (a wide tail errs on the careful side).
const DEFAULT_SHAPE: f64 = 0.8;
/// Safety factor on the modelled spread of a period's latency statistic.
const SPREAD_INFLATION: f64 = 1.25;

/// What the live colour looked like before the migration; kept in the ledger so a resumed
/// release judges against the same baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LiveBaseline {
    pub periods: u32,
    pub requests: f64,
    pub errors_5xx: f64,
    /// Log latency (the plan's statistic) of the latest periods with requests.
    pub log_latency: Vec<f64>,
    pub healthy: u32,
    pub unhealthy: u32,
    /// Alarms already in ALARM before the migration (not the migration's doing).
    pub alarms_firing: Vec<String>,
}

impl LiveBaseline {
    /// Add one complete period of the live colour (target counts from the same poll).
    pub fn add(&mut self, c: &ColourSample, stat: LatencyStat) {
        self.periods += 1;
        let n = clean(c.requests);
        self.requests += n;
        self.errors_5xx += clean(c.errors_5xx).min(n);
        if let Some(l) = latency_of(c, stat).filter(|l| *l > 0.0 && n > 0.0) {
            self.log_latency.push(l.ln());
            if self.log_latency.len() > BASELINE_PERIODS {
                self.log_latency.remove(0);
            }
        }
    }

    /// Target health and alarms as seen right before the migration.
    pub fn set_instant(&mut self, c: &ColourSample, alarms: &[AlarmState]) {
        self.healthy = c.healthy;
        self.unhealthy = c.unhealthy;
        self.alarms_firing = firing(alarms);
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors_5xx / self.requests)
    }

    /// One line for people: "1 234 requests, 5xx 0.20 %, p95 81 ms over 12 periods".
    pub fn describe(&self) -> String {
        let latency = if self.log_latency.is_empty() {
            "no latency".into()
        } else {
            let mean = self.log_latency.iter().sum::<f64>() / self.log_latency.len() as f64;
            format!("latency {:.0} ms", mean.exp())
        };
        format!(
            "{} requests, 5xx {}, {latency} over {} periods",
            self.requests.round(),
            self.error_rate().map_or("n/a".into(), pct),
            self.periods
        )
    }
}

/// The live colour after the migration (or during the shift) against its baseline.
#[derive(Debug, Clone)]
pub struct LiveJudge {
    gates: GateConfig,
    baseline: LiveBaseline,
    relative: Restarts,
    absolute: Restarts,
    latency: Restarts,
    /// Upper bound of the baseline 5xx rate (None: no baseline requests).
    rate_bound: Option<f64>,
    /// Upper bound of the baseline log latency and the spread of its periods.
    latency_reference: Option<(f64, f64)>,
    periods: u32,
    latency_periods: u32,
    requests: f64,
    errors: f64,
    /// Recent periods' (requests, 5xx), for the catastrophic guard rail.
    recent: Vec<(f64, f64)>,
    last_latency_ratio: Option<f64>,
    failed: Option<Verdict>,
    /// No baseline to compare with: only the catastrophic 5xx rate and targets that are
    /// unhealthy (or none healthy) speak.
    guard_rails_only: bool,
}

impl LiveJudge {
    /// A judge without a baseline (no migration watch): the live colour is judged only by
    /// the guard rails that need none.
    pub fn guard_rails_only(gates: &GateConfig) -> LiveJudge {
        LiveJudge {
            guard_rails_only: true,
            ..LiveJudge::new(gates, LiveBaseline::default())
        }
    }

    pub fn new(gates: &GateConfig, baseline: LiveBaseline) -> LiveJudge {
        let cfg = &gates.sequential;
        let rate_bound = rate_upper_bound(
            baseline.errors_5xx,
            baseline.requests,
            cfg.alpha * sequential::REFERENCE_SHARE,
        );
        let latency_reference = reference(&baseline.log_latency, cfg.alpha);
        let started = |grid: usize| {
            let mut r = Restarts::new(vec![1.0], vec![1.0; grid]);
            r.start_through(0);
            r
        };
        LiveJudge {
            gates: gates.clone(),
            baseline,
            relative: started(ERROR_GRID.len()),
            absolute: started(ERROR_GRID.len()),
            latency: started(LATENCY_GRID.len()),
            rate_bound,
            latency_reference,
            periods: 0,
            latency_periods: 0,
            requests: 0.0,
            errors: 0.0,
            recent: Vec::new(),
            last_latency_ratio: None,
            failed: None,
            guard_rails_only: false,
        }
    }

    pub fn baseline(&self) -> &LiveBaseline {
        &self.baseline
    }

    /// Periods judged so far.
    pub fn periods(&self) -> u32 {
        self.periods
    }

    /// Requests of the live colour judged so far.
    pub fn requests(&self) -> f64 {
        self.requests
    }

    pub fn failed(&self) -> Option<&Verdict> {
        self.failed.as_ref()
    }

    fn error_threshold(&self) -> f64 {
        1.0 / (self.gates.sequential.alpha * sequential::ERROR_SHARE)
    }

    fn latency_threshold(&self) -> f64 {
        1.0 / (self.gates.sequential.alpha * sequential::LATENCY_SHARE)
    }

    /// The 5xx e-value: with a baseline, relative and absolute must both reject.
    fn error_e_value(&self) -> f64 {
        let abs = self.gates.sequential.error_tolerance_abs;
        match (self.rate_bound.is_some(), abs > 0.0) {
            (true, true) => self.relative.e_value().min(self.absolute.e_value()),
            (true, false) => self.relative.e_value(),
            (false, true) => self.absolute.e_value(),
            (false, false) => 1.0,
        }
    }

    /// Target health and alarms of a poll (no metrics): a guard rail on every poll.
    pub fn check_instant(&mut self, c: &ColourSample, alarms: &[AlarmState]) -> Option<Verdict> {
        if self.failed.is_some() {
            return self.failed.clone();
        }
        let v = self.targets(c).or_else(|| self.alarms(alarms));
        if v.is_some() {
            self.failed = v.clone();
        }
        v
    }

    /// Judge one complete period of the live colour (target counts from the same poll).
    pub fn observe(&mut self, c: &ColourSample, alarms: &[AlarmState]) -> Judgement {
        let n = clean(c.requests);
        let x = clean(c.errors_5xx).min(n);
        self.periods += 1;
        self.requests += n;
        self.errors += x;
        self.recent.push((n, x));
        if n > 0.0 {
            self.observe_errors(x, n);
            self.observe_latency(c, n);
        }
        let evidence = self.evidence();
        if let Some(v) = &self.failed {
            return Judgement {
                verdict: v.clone(),
                evidence,
            };
        }
        let verdict = self
            .targets(c)
            .or_else(|| self.alarms(alarms))
            .or_else(|| self.catastrophic())
            .or_else(|| {
                if self.guard_rails_only {
                    return None;
                }
                evidence
                    .iter()
                    .find(|e| e.statistic >= e.threshold)
                    .map(|e| Verdict::Fail {
                        signal: e.signal,
                        reason: format!(
                            "{} (false-stop budget alpha {})",
                            e.summary, self.gates.sequential.alpha
                        ),
                    })
            })
            .unwrap_or(Verdict::Pass);
        if matches!(verdict, Verdict::Fail { .. }) {
            self.failed = Some(verdict.clone());
        }
        Judgement { verdict, evidence }
    }

    fn observe_errors(&mut self, x: f64, n: f64) {
        let cfg = &self.gates.sequential;
        if let Some(u) = self.rate_bound {
            let p0 = cfg.error_tolerance * u;
            if p0 > 0.0 && p0 < 0.5 {
                self.relative
                    .add(|k| binomial_log_lr(x, n, (p0 * ERROR_GRID[k]).min(0.999), p0));
            }
        }
        let f = cfg.error_tolerance_abs;
        if f > 0.0 && f < 0.5 {
            self.absolute
                .add(|k| binomial_log_lr(x, n, (f * ERROR_GRID[k]).min(0.999), f));
        }
    }

    fn observe_latency(&mut self, c: &ColourSample, n: f64) {
        let Some((level, spread)) = self.latency_reference else {
            return;
        };
        let Some(l) = latency_of(c, self.gates.latency_stat).filter(|l| *l > 0.0) else {
            return;
        };
        let s = sequential::shape(c.latency_avg_ms, c.latency_p95_ms).unwrap_or(DEFAULT_SHAPE);
        let v = match self.gates.latency_stat {
            LatencyStat::P95 => 4.47 * s * s / n.max(1.0),
            LatencyStat::Average => (s * s).exp_m1() / n.max(1.0),
        };
        let var = SPREAD_INFLATION.powi(2) * v + spread * spread + LOG_LATENCY_FLOOR.powi(2);
        let d = l.ln() - level - self.gates.sequential.latency_tolerance.ln();
        self.last_latency_ratio = Some(l / level.exp());
        self.latency.add(|k| {
            let mu = LATENCY_GRID[k];
            (mu * d - mu * mu / 2.0) / var
        });
        self.latency_periods += 1;
    }

    fn targets(&self, c: &ColourSample) -> Option<Verdict> {
        let b = &self.baseline;
        let none_healthy = c.healthy == 0 && (b.healthy > 0 || self.guard_rails_only);
        (none_healthy || c.unhealthy > b.unhealthy).then(|| Verdict::Fail {
            signal: Signal::TargetHealth,
            reason: format!(
                "the live colour has {} unhealthy and {} healthy target(s) (before: {} unhealthy, {} healthy)",
                c.unhealthy, c.healthy, b.unhealthy, b.healthy
            ),
        })
    }

    fn alarms(&self, alarms: &[AlarmState]) -> Option<Verdict> {
        let new: Vec<String> = firing(alarms)
            .into_iter()
            .filter(|a| !self.baseline.alarms_firing.contains(a))
            .collect();
        (!new.is_empty()).then(|| Verdict::Fail {
            signal: Signal::Alarm,
            reason: format!("alarm {} went to ALARM", new.join(", ")),
        })
    }

    fn catastrophic(&self) -> Option<Verdict> {
        let cfg = &self.gates.sequential;
        let need = (cfg.catastrophic_min_requests as f64).max(1.0);
        let (mut n, mut x) = (0.0, 0.0);
        for (rn, rx) in self.recent.iter().rev() {
            n += rn;
            x += rx;
            if n >= need {
                break;
            }
        }
        if n < need {
            return None;
        }
        let rate = x / n;
        let bar = cfg.catastrophic_error_rate;
        let before = self.baseline.error_rate();
        (rate >= bar && before.is_none_or(|b| b < bar)).then(|| Verdict::Fail {
            signal: Signal::ErrorRate,
            reason: format!(
                "live colour 5xx {} over its last {} requests (catastrophic at {}; {} before)",
                pct(rate),
                n.round(),
                pct(bar),
                before.map_or("no requests".into(), pct)
            ),
        })
    }

    /// The statistics and their thresholds, for the views.
    pub fn evidence(&self) -> Vec<Evidence> {
        let after = (self.requests > 0.0).then(|| self.errors / self.requests);
        let errors = Evidence {
            signal: Signal::ErrorRate,
            statistic: self.error_e_value(),
            threshold: self.error_threshold(),
            periods: self.periods,
            summary: format!(
                "live 5xx e-value {:.2} of {:.0} (after {} vs before {})",
                self.error_e_value(),
                self.error_threshold(),
                after.map_or("n/a".into(), pct),
                self.baseline.error_rate().map_or("n/a".into(), pct),
            ),
        };
        let latency = Evidence {
            signal: Signal::Latency,
            statistic: self.latency.e_value(),
            threshold: self.latency_threshold(),
            periods: self.latency_periods,
            summary: format!(
                "live latency e-value {:.2} of {:.0} (after/before {}, tolerance ×{})",
                self.latency.e_value(),
                self.latency_threshold(),
                self.last_latency_ratio
                    .map_or("n/a".into(), |r| format!("×{r:.2}")),
                self.gates.sequential.latency_tolerance
            ),
        };
        vec![errors, latency]
    }

    /// One line for people: what was judged and how it stands.
    pub fn summary(&self) -> String {
        let after = (self.requests > 0.0).then(|| self.errors / self.requests);
        format!(
            "{} periods, {} requests, 5xx {} (before {})",
            self.periods,
            self.requests.round(),
            after.map_or("n/a".into(), pct),
            self.baseline.error_rate().map_or("n/a".into(), pct)
        )
    }
}

/// An upper confidence bound of the baseline's log latency level and the spread of its
/// periods; None below 3 periods.
fn reference(v: &[f64], alpha: f64) -> Option<(f64, f64)> {
    if v.len() < 3 {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let sd = var.sqrt().max(LOG_LATENCY_FLOOR);
    let z = normal_upper_quantile(alpha * sequential::REFERENCE_SHARE);
    Some((mean + z * sd / n.sqrt(), sd))
}

fn firing(alarms: &[AlarmState]) -> Vec<String> {
    alarms
        .iter()
        .filter(|a| a.state == "ALARM")
        .map(|a| a.name.clone())
        .collect()
}

fn clean(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v.round()
    } else {
        0.0
    }
}

fn pct(r: f64) -> String {
    if r < 0.001 && r > 0.0 {
        format!("{:.3} %", r * 100.0)
    } else {
        format!("{:.2} %", r * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sim::Rng;

    fn gates() -> GateConfig {
        crate::plan::parse(
            include_str!("../../../../examples/rehearsal.toml"),
            std::path::Path::new("examples/rehearsal.toml"),
        )
        .expect("the rehearsal plan")
        .gates
    }

    fn period(rng: &mut Rng, requests: f64, rate: f64, latency: f64) -> ColourSample {
        let errors = (0..requests as u64)
            .filter(|_| rng.uniform() < rate)
            .count() as f64;
        let jitter = 1.0 + 0.05 * (rng.uniform() - 0.5);
        ColourSample {
            healthy: 2,
            requests,
            errors_5xx: errors,
            latency_avg_ms: Some(latency * jitter),
            latency_p95_ms: Some(latency * 1.45 * jitter),
            ..ColourSample::default()
        }
    }

    fn baseline(rng: &mut Rng, g: &GateConfig, periods: usize, rate: f64) -> LiveBaseline {
        let mut b = LiveBaseline::default();
        for _ in 0..periods {
            b.add(&period(rng, 200.0, rate, 80.0), g.latency_stat);
        }
        b.set_instant(&period(rng, 0.0, 0.0, 80.0), &[]);
        b
    }

    /// Periods until the judge fails (None: it never did in `max`).
    fn run(seed: u64, before: f64, after: f64, latency_after: f64, max: usize) -> Option<usize> {
        let g = gates();
        let mut rng = Rng::new(seed);
        let b = baseline(&mut rng, &g, 10, before);
        let mut j = LiveJudge::new(&g, b);
        for i in 0..max {
            let v = j.observe(&period(&mut rng, 200.0, after, latency_after), &[]);
            if matches!(v.verdict, Verdict::Fail { .. }) {
                return Some(i + 1);
            }
        }
        None
    }

    #[test]
    fn a_healthy_live_colour_is_not_stopped() {
        let stopped = (0..200)
            .filter(|s| run(*s, 0.002, 0.002, 80.0, 30).is_some())
            .count();
        // alpha = 0.01: a handful at most (3 sd of Binomial(200, 0.01) is about 4).
        eprintln!("healthy watches stopped by mistake: {stopped} of 200");
        assert!(stopped <= 6, "{stopped} of 200 healthy watches stopped");
    }

    #[test]
    fn a_5xx_rise_after_the_migration_is_caught_fast() {
        for seed in 0..20 {
            let at = run(seed, 0.002, 0.3, 80.0, 10).expect("caught");
            assert!(at <= 2, "seed {seed}: {at} periods");
        }
        // A small rise (0.2 % → 3 %) needs statistics, not the guard rail.
        let caught = (0..20)
            .filter(|s| run(*s, 0.002, 0.03, 80.0, 30).is_some())
            .count();
        eprintln!("0.2 % -> 3 % caught within 30 periods: {caught} of 20");
        assert!(caught >= 18, "{caught} of 20");
    }

    #[test]
    fn a_slowdown_is_caught_and_a_tiny_rise_is_not() {
        let caught = (0..20)
            .filter(|s| run(*s, 0.002, 0.002, 240.0, 20).is_some())
            .count();
        eprintln!("latency x3 caught within 20 periods: {caught} of 20");
        assert!(caught >= 18, "{caught} of 20");
        // 0.01 % → 0.02 % is immaterial: the absolute test never rejects.
        let stopped = (0..50)
            .filter(|s| run(*s, 0.0001, 0.0002, 80.0, 30).is_some())
            .count();
        assert!(stopped <= 2, "{stopped} of 50");
    }

    #[test]
    fn guard_rails_need_no_statistics() {
        let g = gates();
        let mut rng = Rng::new(7);
        let b = baseline(&mut rng, &g, 5, 0.002);
        let mut j = LiveJudge::new(&g, b.clone());
        let down = ColourSample {
            healthy: 0,
            unhealthy: 2,
            ..ColourSample::default()
        };
        assert!(matches!(
            j.check_instant(&down, &[]),
            Some(Verdict::Fail {
                signal: Signal::TargetHealth,
                ..
            })
        ));
        let mut j = LiveJudge::new(&g, b);
        let alarm = |s: &str| AlarmState {
            name: "shop-blue-5xx".into(),
            state: s.into(),
        };
        let up = period(&mut rng, 0.0, 0.0, 80.0);
        assert_eq!(j.check_instant(&up, &[alarm("OK")]), None);
        let v = j.check_instant(&up, &[alarm("ALARM")]);
        assert!(
            matches!(
                v,
                Some(Verdict::Fail {
                    signal: Signal::Alarm,
                    ..
                })
            ),
            "{v:?}"
        );
        // An alarm already firing before the migration is not the migration's doing.
        let mut b = LiveBaseline::default();
        b.set_instant(&up, &[alarm("ALARM")]);
        let mut j = LiveJudge::new(&g, b);
        assert_eq!(j.check_instant(&up, &[alarm("ALARM")]), None);
    }

    #[test]
    fn guard_rails_alone_judge_only_what_needs_no_baseline() {
        let g = gates();
        let mut rng = Rng::new(5);
        let mut j = LiveJudge::guard_rails_only(&g);
        // 5 % is no catastrophe (20 %): nothing to say without a baseline.
        for _ in 0..30 {
            assert_eq!(
                j.observe(&period(&mut rng, 200.0, 0.05, 80.0), &[]).verdict,
                Verdict::Pass
            );
        }
        let v = j.observe(&period(&mut rng, 200.0, 0.5, 80.0), &[]).verdict;
        assert!(
            matches!(
                v,
                Verdict::Fail {
                    signal: Signal::ErrorRate,
                    ..
                }
            ),
            "{v:?}"
        );
        let mut j = LiveJudge::guard_rails_only(&g);
        let none = ColourSample {
            healthy: 0,
            unhealthy: 0,
            ..ColourSample::default()
        };
        assert!(j.check_instant(&none, &[]).is_some());
    }

    #[test]
    fn without_a_baseline_only_absolute_terms_speak() {
        let g = gates();
        let mut rng = Rng::new(3);
        let mut j = LiveJudge::new(&g, LiveBaseline::default());
        let mut failed = None;
        for i in 0..20 {
            let v = j.observe(&period(&mut rng, 200.0, 0.05, 80.0), &[]).verdict;
            if let Verdict::Fail { reason, .. } = v {
                failed = Some((i, reason));
                break;
            }
        }
        let (_, reason) = failed.expect("5 % is far above error_tolerance_abs");
        assert!(reason.contains("before n/a"), "{reason}");
    }
}
