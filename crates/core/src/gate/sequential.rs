//! The sequential gate: compares the new colour with the live one period by period and
//! rolls back only on evidence, with a false-rollback budget `alpha` for the whole release.
//!
//! Why: re-testing fixed thresholds on every poll rolls back many healthy releases, since
//! each look is another chance for noise to cross a line. Here every signal is an
//! e-process (see [`super::eprocess`]); by Ville's inequality the chance that a healthy
//! release ever crosses `1/a` is at most `a`, no matter how many periods or steps are looked
//! at. The budget is split: 45% to 5xx, 45% to latency, 5% to each reference used when the
//! live colour has no traffic (the 100% step).
//!
//! Both colours are compared *within the same period*, so load, time of day and shared
//! dependencies cancel out:
//! - 5xx, relative: given a period's total 5xx `m`, the new colour's count is
//!   Binomial(m, θ) with θ = its request share `q` when both are equally healthy, and
//!   `ρq / (ρq + 1 − q)` when its rate is `ρ` times the live one's. Nuisance-free, and
//!   periods where neither colour errs cost nothing.
//! - 5xx, absolute: the new colour's count against `error_tolerance_abs`. The new colour
//!   fails only when *both* reject (an intersection–union test: each at the full 5xx
//!   budget), so 0.01% → 0.02% (ratio 2, immaterial) never rolls back.
//! - latency: ALB gives per-period statistics only. `d = ln(new/live) − ln(tolerance)`
//!   per period is treated as Gaussian with a variance from the sampling error of the
//!   statistic (p95: `4.47·s²/n`, from the asymptotic variance of a sample quantile; mean:
//!   `(e^{s²} − 1)/n`), where `s` is the log-normal shape implied by the period's average
//!   and p95 (pooled over the release), inflated by 25% for safety. A p95 of few requests
//!   sits low and jumps with the rank rounding, so the live colour's p95 gets an allowance
//!   of one rank (`s/((n+1)·φ(1.645))`) before the colours are compared.
//! - guard rails without statistics: unhealthy targets, alarms in ALARM, and a new 5xx
//!   rate at `catastrophic_error_rate` over `catastrophic_min_requests` requests (unless
//!   the live colour is as bad: then the release is not to blame).
//!
//! When the live colour serves nothing in a period (the 100% step) there is nothing to
//! compare in that period; the gate compares with a reference fixed from the live colour's
//! earlier periods: an upper confidence bound of its 5xx rate, and of its latency level.
//! This assumes the live colour's rates would have stayed where they were.
//!
//! Across steps, each test is restarted at every step boundary and the copies averaged
//! ([`Restarts`]): one budget for the release, yet a late fault is judged by a fresh copy.
//! The copy that runs for the whole release weighs half (a fault present from the start,
//! the common case, pays `ln 2` for the restarts, not `ln steps`). Each test mixes a grid
//! of effect sizes; the absolute 5xx and latency mixtures put half their weight next to
//! the fault the gate is built to catch (`DESIGN_*`), the relative 5xx mixture three
//! quarters on "+2 points over the live rate", a ratio estimated each period from the
//! live colour's past and the period's total 5xx ([`design_ratio`]). Across signals, the budget is split
//! (a Bonferroni split, so the signals need not be independent).
//!
//! The evidence ([`GateState`]) is saved in the ledger record with the observed bake, so a
//! resumed release carries on with it rather than starting afresh.
//!
//! "Enough data": the last step before 100 % (the last fair comparison) may not pass until
//! the new colour has served enough next to the live one that +2 points of 5xx and a ×2
//! latency would have been caught 99 % of the time; earlier steps need `min_requests`.
//!
//! Background: conditioning on the period's total count to compare two count processes
//! with time-varying rates, as in Lindon & Malek, "Anytime-valid inference for multinomial
//! count data" (NeurIPS 2022); e-processes and Ville's inequality as in the
//! anytime-valid-inference literature (Ramdas, Grünwald, Vovk, Shafer).

use super::eprocess::{
    binomial_log_lr, copy_weights, design_prior, error_share, normal_upper_quantile,
    rate_upper_bound, Restarts,
};
use super::verdict::{alarms, latency_of, target_health};
use super::{HealthSample, Signal, Verdict};
use crate::plan::{GateConfig, LatencyStat, OnNoData, SequentialConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Alternatives of the 5xx tests, as multiples of the null boundary.
pub const ERROR_GRID: [f64; 9] = [1.25, 1.6, 2.0, 3.0, 5.0, 8.0, 15.0, 30.0, 60.0];
/// Alternatives of the latency test: how far `ln(new/live)` is above `ln(tolerance)`.
pub const LATENCY_GRID: [f64; 8] = [0.03, 0.06, 0.1, 0.18, 0.3, 0.5, 0.8, 1.2];
/// Shares of `alpha`.
pub const ERROR_SHARE: f64 = 0.45;
pub const LATENCY_SHARE: f64 = 0.45;
pub const REFERENCE_SHARE: f64 = 0.05;
/// Safety factor on the modelled spread of a period's latency statistic.
const SPREAD_INFLATION: f64 = 1.25;
/// Noise floor of one period's log latency (CloudWatch percentiles are approximate).
const LOG_LATENCY_FLOOR: f64 = 0.02;
/// Log-normal shape assumed until a period gives one: a wide tail, so a guess errs on the
/// careful side.
const DEFAULT_SHAPE: f64 = 0.8;
/// A colour needs this many requests in a period before its average and p95 say anything
/// about the shape (from one request they are equal, which would claim no spread at all).
const SHAPE_MIN_REQUESTS: f64 = 20.0;
/// The last step that compares with the live colour may not pass until a fault this large
/// (absolute 5xx share over the live colour's) would have been caught …
pub const DESIGN_ERROR_INCREASE: f64 = 0.02;
/// … nor one this large in latency …
pub const DESIGN_LATENCY_FACTOR: f64 = 2.0;
/// … with this power (z of 99 %), given what the new colour has served next to it.
const DESIGN_POWER_Z: f64 = 2.326;
/// Live periods kept for the latency reference.
const REFERENCE_PERIODS: usize = 30;
/// z of the normal quantile of a sample p95: `0.95·0.05 / φ(1.645)²`.
const P95_VARIANCE: f64 = 4.47;

/// What the cockpit shows for one signal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evidence {
    pub signal: Signal,
    /// The e-value (or, for a guard rail, the observed value).
    pub statistic: f64,
    /// Where the statistic fails the gate.
    pub threshold: f64,
    /// Periods that carried information for this signal.
    pub periods: u32,
    pub summary: String,
}

/// The gate's answer to one period.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub evidence: Vec<Evidence>,
}

/// Per-period counts of one step, for the catastrophic guard rail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Counts {
    new_requests: f64,
    new_errors: f64,
    live_requests: f64,
    live_errors: f64,
}

/// The evidence of one release so far: what a resumed release must carry on from (saved in
/// the ledger record at every save). E-values are kept as log likelihood ratios per grid
/// point and step copy; the thresholds follow from the plan, so restoring the state spends
/// nothing of the budget again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateState {
    step: usize,
    relative: Restarts,
    absolute: Restarts,
    latency: Restarts,
    error_periods: u32,
    latency_periods: u32,
    /// Release totals (new colour, live colour).
    total: Counts,
    /// Upper bound of the live 5xx rate, fixed the first time the live colour is idle.
    live_rate_bound: Option<Option<f64>>,
    /// Recent live log latencies, and the reference (level, spread) fixed from them.
    live_log_latency: Vec<f64>,
    latency_reference: Option<Option<(f64, f64)>>,
    /// Request-weighted running mean of the log-normal shape seen so far (sum, weight).
    shape: (f64, f64),
    last_ratio: Option<f64>,
    this_step: Vec<Counts>,
    step_latency_periods: u32,
    /// New-colour requests in periods where the live colour served too, each weighted by
    /// the live colour's share of that period (see `observe_errors`).
    paired_new_requests: f64,
    /// Information (Σ 1/variance) of the latency periods with both colours.
    paired_latency_info: f64,
    failed: Option<Verdict>,
    /// Periods observed (for the traffic estimate of [`SequentialGate::traffic`]).
    periods: u32,
}

/// How evidence is weighted across steps and effect sizes. The lab runs the previous
/// weighting next to the current one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Weight of the copy of each test that runs for the whole release (None: every step's
    /// copy weighs the same).
    pub first_copy: Option<f64>,
    /// Favour the effect sizes the gate is built to catch (`DESIGN_*`) in the absolute 5xx
    /// and latency mixtures.
    pub design_prior: bool,
    /// Weight of the relative 5xx test's own design alternative ("the live rate + 2
    /// points", estimated afresh each period; see [`design_ratio`]); the rest stays on the
    /// uniform grid.
    pub relative_design: f64,
}

impl Tuning {
    pub const CURRENT: Tuning = Tuning {
        first_copy: Some(0.5),
        design_prior: true,
        relative_design: 0.75,
    };
    /// The weighting before this one: the relative 5xx mixture uniform over its grid.
    pub const PREVIOUS: Tuning = Tuning {
        first_copy: Some(0.5),
        design_prior: true,
        relative_design: 0.0,
    };
}

/// The sequential gate of one release, fed one complete metric period at a time.
#[derive(Debug, Clone)]
pub struct SequentialGate {
    cfg: SequentialConfig,
    /// The plan's metric period (one observation).
    period: Duration,
    stat: LatencyStat,
    min_requests: f64,
    steps: usize,
    st: GateState,
}

impl SequentialGate {
    /// A gate for a release of `steps` steps with the plan's gate settings.
    pub fn new(cfg: &GateConfig, steps: usize) -> Self {
        Self::tuned(cfg, steps, Tuning::CURRENT)
    }

    /// The same with another weighting of the evidence (for the lab).
    pub fn tuned(cfg: &GateConfig, steps: usize, tuning: Tuning) -> Self {
        let steps = steps.max(1);
        let seq = &cfg.sequential;
        let copies = || copy_weights(steps, tuning.first_copy);
        let design = |d: Option<f64>| if tuning.design_prior { d } else { None };
        // What the gate is built to catch, in each test's own units: the absolute test's
        // ratio of a +2 point rate to `error_tolerance_abs`, the latency test's excess of
        // ×2 over the tolerance. The relative test's design ratio depends on the live rate,
        // unknown before the release: one extra component of its mixture bets on a ratio
        // estimated each period (`design_ratio`), the grid keeps the rest.
        let abs_design = (seq.error_tolerance_abs > 0.0)
            .then(|| (seq.error_tolerance_abs + DESIGN_ERROR_INCREASE) / seq.error_tolerance_abs);
        let lat_design = Some(DESIGN_LATENCY_FACTOR.ln() - seq.latency_tolerance.ln());
        let mut g = SequentialGate {
            cfg: seq.clone(),
            period: cfg.metric_period,
            stat: cfg.latency_stat,
            min_requests: cfg.min_requests as f64,
            steps,
            st: GateState {
                step: 0,
                relative: Restarts::new(copies(), relative_prior(tuning.relative_design)),
                absolute: Restarts::new(copies(), design_prior(&ERROR_GRID, design(abs_design))),
                latency: Restarts::new(copies(), design_prior(&LATENCY_GRID, design(lat_design))),
                error_periods: 0,
                latency_periods: 0,
                total: Counts::default(),
                live_rate_bound: None,
                live_log_latency: Vec::new(),
                latency_reference: None,
                shape: (0.0, 0.0),
                last_ratio: None,
                this_step: Vec::new(),
                step_latency_periods: 0,
                paired_new_requests: 0.0,
                paired_latency_info: 0.0,
                failed: None,
                periods: 0,
            },
        };
        g.start_step(0);
        g
    }

    /// The evidence so far, to save.
    pub fn state(&self) -> &GateState {
        &self.st
    }

    /// A gate that carries on from a saved `state`; None when the state does not fit this
    /// plan's gate (other steps or tolerances).
    pub fn restored(cfg: &GateConfig, steps: usize, state: GateState) -> Option<Self> {
        let mut g = Self::new(cfg, steps);
        let fits = g.st.relative.same_shape(&state.relative)
            && g.st.absolute.same_shape(&state.absolute)
            && g.st.latency.same_shape(&state.latency)
            && state.step < g.steps;
        fits.then(|| {
            g.st = state;
            g
        })
    }

    /// The same gate with one e-process per signal for the whole release instead of one
    /// restarted at every step (for the lab's comparison of the two).
    pub fn without_restarts(mut self) -> Self {
        for r in [
            &mut self.st.relative,
            &mut self.st.absolute,
            &mut self.st.latency,
        ] {
            r.release_long_only();
        }
        self
    }

    /// The e-value at which 5xx evidence fails the gate.
    pub fn error_threshold(&self) -> f64 {
        1.0 / (self.cfg.alpha * ERROR_SHARE)
    }

    /// The e-value at which latency evidence fails the gate.
    pub fn latency_threshold(&self) -> f64 {
        1.0 / (self.cfg.alpha * LATENCY_SHARE)
    }

    /// The 5xx e-value: both the relative and the absolute test must reject, so the
    /// smaller one counts. With `error_tolerance_abs = 0` only the relative test speaks.
    pub fn error_e_value(&self) -> f64 {
        let rel = self.st.relative.e_value();
        if self.cfg.error_tolerance_abs > 0.0 {
            rel.min(self.st.absolute.e_value())
        } else {
            rel
        }
    }

    pub fn latency_e_value(&self) -> f64 {
        self.st.latency.e_value()
    }

    fn start_step(&mut self, step: usize) {
        let step = step.min(self.steps - 1);
        if step != self.st.step || self.st.this_step.is_empty() {
            self.st.this_step.clear();
            self.st.step_latency_periods = 0;
        }
        self.st.step = step;
        self.st.relative.start_through(step);
        self.st.absolute.start_through(step);
        self.st.latency.start_through(step);
    }

    /// Feed one complete metric period of step `step` (0-based); `s` is oriented: `green`
    /// is the colour being released, `blue` the live one.
    pub fn observe(&mut self, step: usize, s: &HealthSample) -> Judgement {
        let step = step.min(self.steps - 1);
        if step != self.st.step {
            self.start_step(step);
        }
        let c = counts(s);
        self.st.periods += 1;
        self.st.this_step.push(c);
        self.observe_errors(&c);
        self.observe_latency(s, &c);
        self.st.total.new_requests += c.new_requests;
        self.st.total.new_errors += c.new_errors;
        self.st.total.live_requests += c.live_requests;
        self.st.total.live_errors += c.live_errors;

        let evidence = self.evidence();
        if let Some(v) = &self.st.failed {
            return Judgement {
                verdict: v.clone(),
                evidence,
            };
        }
        let verdict = target_health(s)
            .or_else(|| alarms(s))
            .or_else(|| self.catastrophic())
            .or_else(|| self.rejection(&evidence))
            .unwrap_or_else(|| self.pass_or_wait());
        if matches!(verdict, Verdict::Fail { .. }) {
            self.st.failed = Some(verdict.clone());
        }
        Judgement { verdict, evidence }
    }

    fn observe_errors(&mut self, c: &Counts) {
        if c.new_requests <= 0.0 {
            return;
        }
        let rho = self.cfg.error_tolerance;
        let (xg, ng) = (c.new_errors, c.new_requests);
        if c.live_requests > 0.0 {
            let q = ng / (ng + c.live_requests);
            // Comparing with a live colour that is itself a sample costs information: next
            // to a colour of equal size a request tells half what it would against a known
            // rate (the conditional test's information scales with 1 − q).
            self.st.paired_new_requests += ng * (1.0 - q);
            let m = c.new_errors + c.live_errors;
            if m > 0.0 {
                let null = error_share(q, rho);
                // A function of the past and of `m` only, so given `m` the design
                // component is a likelihood ratio like any grid point.
                let design = design_ratio(
                    self.st.total.live_errors + m - DESIGN_ERROR_INCREASE * ng,
                    self.st.total.live_requests + c.live_requests + ng,
                    rho,
                );
                self.st.relative.add(|k| {
                    let r = ERROR_GRID.get(k).map_or(design, |g| rho * g);
                    if r <= rho {
                        return 0.0;
                    }
                    binomial_log_lr(xg, m, error_share(q, r), null)
                });
            }
        } else if let Some(bound) = self.live_rate_bound() {
            let p0 = rho * bound;
            if p0 > 0.0 && p0 < 0.5 {
                let design = design_ratio(bound, 1.0, rho);
                self.st.relative.add(|k| {
                    let r = ERROR_GRID.get(k).map_or(design, |g| rho * g);
                    if r <= rho {
                        return 0.0;
                    }
                    binomial_log_lr(xg, ng, (bound * r).min(0.999), p0)
                });
            }
        }
        let f = self.cfg.error_tolerance_abs;
        if f > 0.0 && f < 0.5 {
            self.st
                .absolute
                .add(|k| binomial_log_lr(xg, ng, (f * ERROR_GRID[k]).min(0.999), f));
        }
        self.st.error_periods += 1;
    }

    /// Fixed once, from the live colour's periods before it went idle (one bound, so one
    /// share of the budget).
    fn live_rate_bound(&mut self) -> Option<f64> {
        if self.st.live_rate_bound.is_none() {
            let (x, n) = (self.st.total.live_errors, self.st.total.live_requests);
            let bound = rate_upper_bound(x, n, self.cfg.alpha * REFERENCE_SHARE)?;
            self.st.live_rate_bound = Some(Some(bound));
        }
        self.st.live_rate_bound.flatten()
    }

    fn observe_latency(&mut self, s: &HealthSample, c: &Counts) {
        let positive = |v: Option<f64>| v.filter(|x| x.is_finite() && *x > 0.0);
        let Some(new) = positive(latency_of(&s.green, self.stat)) else {
            return;
        };
        if c.new_requests <= 0.0 {
            return;
        }
        let live = positive(latency_of(&s.blue, self.stat)).filter(|_| c.live_requests > 0.0);
        // One period's shape from a few dozen requests is noisy; pooling keeps a low
        // outlier from claiming a small spread.
        for (colour, n) in [(&s.green, c.new_requests), (&s.blue, c.live_requests)] {
            if let (true, Some(sh)) = (
                n >= SHAPE_MIN_REQUESTS,
                shape(colour.latency_avg_ms, colour.latency_p95_ms),
            ) {
                self.st.shape.0 += sh * n;
                self.st.shape.1 += n;
            }
        }
        let s2 = if self.st.shape.1 > 0.0 {
            self.st.shape.0 / self.st.shape.1
        } else {
            DEFAULT_SHAPE
        };
        let tol = self.cfg.latency_tolerance.ln();
        let (d, var) = match live {
            Some(live) => {
                let allowance = self.rank_allowance(s2, c.live_requests);
                self.st.live_log_latency.push(live.ln() + allowance);
                if self.st.live_log_latency.len() > REFERENCE_PERIODS {
                    self.st.live_log_latency.remove(0);
                }
                self.st.last_ratio = Some(new / live);
                let var = self.model_variance(s2, c.new_requests)
                    + self.model_variance(s2, c.live_requests)
                    + 2.0 * LOG_LATENCY_FLOOR.powi(2);
                self.st.paired_latency_info += 1.0 / var;
                (new.ln() - live.ln() - allowance - tol, var)
            }
            None => {
                let Some((level, spread)) = self.latency_reference() else {
                    return;
                };
                self.st.last_ratio = Some(new / level.exp());
                let var = self.model_variance(s2, c.new_requests)
                    + spread * spread
                    + LOG_LATENCY_FLOOR.powi(2);
                (new.ln() - level - tol, var)
            }
        };
        self.st.latency.add(|k| {
            let mu = LATENCY_GRID[k];
            (mu * d - mu * mu / 2.0) / var
        });
        self.st.latency_periods += 1;
        self.st.step_latency_periods += 1;
    }

    /// How far below the true p95 a p95 of `n` requests may sit just because ranks are
    /// whole (one rank is 1/(n+1) of probability, i.e. `s/((n+1)·φ(1.645))` in log
    /// latency). Without it, a live colour whose p95 happened to round down — 20 requests
    /// against 19 moves the p95 rank a lot — looks faster than a healthy new one.
    fn rank_allowance(&self, s: f64, n: f64) -> f64 {
        match self.stat {
            LatencyStat::P95 => s / ((n.max(0.0) + 1.0) * 0.103_136),
            LatencyStat::Average => 0.0,
        }
    }

    /// Variance of one period's log latency statistic from `n` requests of shape `s`.
    fn model_variance(&self, s: f64, n: f64) -> f64 {
        stat_variance(self.stat, s, n)
    }

    /// An upper confidence bound of the live colour's log latency level, and the spread of
    /// its periods, fixed from its last periods with traffic (at least 3).
    fn latency_reference(&mut self) -> Option<(f64, f64)> {
        if self.st.latency_reference.is_none() {
            let v = &self.st.live_log_latency;
            if v.len() < 3 {
                return None;
            }
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let sd = var.sqrt().max(LOG_LATENCY_FLOOR);
            let z = normal_upper_quantile(self.cfg.alpha * REFERENCE_SHARE);
            self.st.latency_reference = Some(Some((mean + z * sd / n.sqrt(), sd)));
        }
        self.st.latency_reference.flatten()
    }

    fn catastrophic(&self) -> Option<Verdict> {
        let need = self.cfg.catastrophic_min_requests as f64;
        let mut w = Counts::default();
        for c in self.st.this_step.iter().rev() {
            w.new_requests += c.new_requests;
            w.new_errors += c.new_errors;
            w.live_requests += c.live_requests;
            w.live_errors += c.live_errors;
            if w.new_requests >= need {
                break;
            }
        }
        if w.new_requests < need.max(1.0) {
            return None;
        }
        let rate = w.new_errors / w.new_requests;
        let live = (w.live_requests > 0.0).then(|| w.live_errors / w.live_requests);
        let bar = self.cfg.catastrophic_error_rate;
        let live_as_bad = live.is_some_and(|l| l >= bar);
        (rate >= bar && !live_as_bad).then(|| Verdict::Fail {
            signal: Signal::ErrorRate,
            reason: format!(
                "new colour 5xx {} over its last {} requests (catastrophic at {}; live {})",
                pct(rate),
                w.new_requests.round(),
                pct(bar),
                live.map_or("idle".into(), pct)
            ),
        })
    }

    fn rejection(&self, evidence: &[Evidence]) -> Option<Verdict> {
        evidence
            .iter()
            .find(|e| e.statistic >= e.threshold)
            .map(|e| Verdict::Fail {
                signal: e.signal,
                reason: format!(
                    "{} (false-rollback budget alpha {})",
                    e.summary, self.cfg.alpha
                ),
            })
    }

    /// Requests the new colour still needs, next to the live one, before a fault of
    /// `DESIGN_ERROR_INCREASE` would be caught (0 when enough), at the live rate so far.
    pub fn requests_short(&self) -> f64 {
        let live = rate(self.st.total.live_errors, self.st.total.live_requests).unwrap_or(0.0);
        match requests_to_detect(live, DESIGN_ERROR_INCREASE, &self.cfg, self.steps) {
            Some(n) => (n - self.st.paired_new_requests).max(0.0),
            None => f64::INFINITY,
        }
    }

    /// Share of the latency information still missing before a `DESIGN_LATENCY_FACTOR`
    /// slowdown would be caught (0 when enough).
    pub fn latency_short(&self) -> f64 {
        match latency_info_to_detect(DESIGN_LATENCY_FACTOR, &self.cfg, self.steps) {
            Some(v) => ((v - self.st.paired_latency_info) / v).max(0.0),
            None => f64::INFINITY,
        }
    }

    /// The last step where the live colour still serves: the plan's last step is 100 %,
    /// where the gate can only compare with the past.
    fn decisive_step(&self) -> usize {
        self.steps.saturating_sub(2)
    }

    /// Whether this step has what it needs to pass (the bake time is the engine's part):
    /// `min_requests` new requests in the step and a period with latency (compared with the
    /// live colour or its reference). The last step before 100 % also needs the new colour
    /// to have served enough next to the live one that a +2-point 5xx fault and a ×2
    /// latency would have been caught (99 % of the time). `Err` says what is missing.
    pub fn enough_data(&self) -> Result<(), String> {
        let step_requests: f64 = self.st.this_step.iter().map(|c| c.new_requests).sum();
        if step_requests < self.min_requests {
            return Err(format!(
                "the new colour has {} of the {} requests this step needs",
                step_requests.round(),
                self.min_requests
            ));
        }
        if self.st.step_latency_periods == 0 {
            return Err("no period of this step has latency to compare yet".into());
        }
        if self.st.step != self.decisive_step() {
            return Ok(());
        }
        let short = self.requests_short();
        if short > 0.0 {
            return Err(if short.is_finite() {
                format!(
                    "the new colour needs about {} more requests before a +{} point 5xx fault would be caught",
                    short.ceil(),
                    DESIGN_ERROR_INCREASE * 100.0
                )
            } else {
                "a +2 point 5xx fault cannot be caught with these tolerances".into()
            });
        }
        let short = self.latency_short();
        if short > 0.0 {
            return Err(if short.is_finite() {
                format!(
                    "about {:.0} % more latency data is needed before a ×{} slowdown would be caught",
                    (short * 100.0).ceil(),
                    DESIGN_LATENCY_FACTOR
                )
            } else {
                "a ×2 slowdown cannot be caught with this latency tolerance".into()
            });
        }
        Ok(())
    }

    fn pass_or_wait(&self) -> Verdict {
        match self.enough_data() {
            Ok(()) => Verdict::Pass,
            Err(reason) => Verdict::NotEnoughData { reason },
        }
    }

    /// After the bake, what to do once the step has waited `waited` past it without enough
    /// data: None while it may keep waiting (or has enough), else the plan's `on_no_data`.
    pub fn no_data_action(&self, waited: Duration) -> Option<OnNoData> {
        (self.st.failed.is_none() && self.enough_data().is_err() && waited >= self.cfg.max_wait)
            .then_some(self.cfg.on_no_data)
    }

    /// Both colours' requests a second and the live 5xx share over the periods observed so
    /// far; None before any traffic. Late corrections count as periods, so the rate errs low.
    pub fn traffic(&self) -> Option<super::detect::Traffic> {
        let t = &self.st.total;
        let secs = f64::from(self.st.periods) * self.period.as_secs_f64();
        let requests = t.new_requests + t.live_requests;
        (secs > 0.0 && requests > 0.0).then(|| super::detect::Traffic {
            rps: requests / secs,
            live_rate: rate(t.live_errors, t.live_requests).unwrap_or(0.0),
        })
    }

    /// The failure, once the gate has failed (it stays failed).
    pub fn failed(&self) -> Option<&Verdict> {
        self.st.failed.as_ref()
    }

    /// What the cockpit shows for each signal now.
    pub fn evidence(&self) -> Vec<Evidence> {
        let t = &self.st.total;
        let new = rate(t.new_errors, t.new_requests).map_or("n/a".into(), pct);
        let live = rate(t.live_errors, t.live_requests).map_or("n/a".into(), pct);
        let errors = Evidence {
            signal: Signal::ErrorRate,
            statistic: self.error_e_value(),
            threshold: self.error_threshold(),
            periods: self.st.error_periods,
            summary: format!(
                "5xx e-value {} of {} (new {new} vs live {live}, {} periods)",
                short_num(self.error_e_value()),
                short_num(self.error_threshold()),
                self.st.error_periods
            ),
        };
        let ratio = self
            .st
            .last_ratio
            .map_or("n/a".into(), |r| format!("×{r:.2}"));
        let latency = Evidence {
            signal: Signal::Latency,
            statistic: self.latency_e_value(),
            threshold: self.latency_threshold(),
            periods: self.st.latency_periods,
            summary: format!(
                "latency e-value {} of {} (new/live {} {ratio} latest, tolerance ×{}, {} periods)",
                short_num(self.latency_e_value()),
                short_num(self.latency_threshold()),
                match self.stat {
                    LatencyStat::P95 => "p95",
                    LatencyStat::Average => "average",
                },
                self.cfg.latency_tolerance,
                self.st.latency_periods
            ),
        };
        vec![errors, latency]
    }
}

/// Prior of the relative 5xx test: the grid uniform, with share `design` (0..1) on one
/// more component, the design alternative of [`design_ratio`] (last).
fn relative_prior(design: f64) -> Vec<f64> {
    let design = if design.is_finite() {
        design.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let n = ERROR_GRID.len() as f64;
    let mut w = vec![(1.0 - design) / n; ERROR_GRID.len()];
    w.push(design);
    w
}

/// The ratio of the new colour's 5xx rate to the live one's that the gate is built to
/// catch, `(p + DESIGN_ERROR_INCREASE) / p`, for a live rate estimated as `errors /
/// requests` (kept within the grid: at least `rho · ERROR_GRID[0]`, at most `rho` times
/// its last point). Why: a uniform grid spreads its bet over ratios from 1.56 to 75, so
/// at a live 1 % the ratio of +2 points (3) falls between two points holding a ninth of
/// the prior each; this component holds three quarters of it wherever the live rate is. For the paired test the estimate counts
/// the period's 5xx of both colours *as if* the new colour had the design fault (total
/// minus `DESIGN_ERROR_INCREASE` × its requests), which is a function of the period's
/// total, so the test's conditional likelihood ratio stays exact.
pub fn design_ratio(errors: f64, requests: f64, rho: f64) -> f64 {
    let (lo, hi) = (rho * ERROR_GRID[0], rho * ERROR_GRID[ERROR_GRID.len() - 1]);
    // NaN-safe: anything but a positive rate bets on the top ratio.
    let p = errors / requests;
    if requests.is_nan() || requests <= 0.0 || !errors.is_finite() || p.is_nan() || p <= 0.0 {
        return hi;
    }
    ((p + DESIGN_ERROR_INCREASE) / p).clamp(lo, hi)
}

/// Requests the new colour needs before a 5xx rate of `live_rate + increase` crosses the
/// gate's threshold 99 % of the time, for a release of `steps` steps (the worst case: only
/// the current step's copy of the test counts). None when the tolerances make it
/// undetectable.
///
/// Per request, the best grid point's log-likelihood ratio has mean `g` and variance `v`
/// (Poisson approximation, as if the live colour's rate were known — it nearly is at low
/// weights); `n` solves `n·g − z·√(n·v) = threshold`. The relative and absolute tests must
/// both cross, so the slower one decides.
pub fn requests_to_detect(
    live_rate: f64,
    increase: f64,
    cfg: &SequentialConfig,
    steps: usize,
) -> Option<f64> {
    let p1 = live_rate.max(0.0) + increase.max(0.0);
    let base = (1.0 / (cfg.alpha * ERROR_SHARE)).ln() + worst_copy_cost(steps);
    // Over (alternative as a multiple of the null rate, prior weight) pairs.
    let per_request = |p0: f64, alternatives: &[(f64, f64)]| -> Option<f64> {
        alternatives
            .iter()
            .filter_map(|&(r, w)| {
                let g = p1 * r.ln() - (r - 1.0) * p0;
                let v = p1 * r.ln().powi(2);
                (g > 0.0 && w > 0.0).then(|| samples_for(g, v, base - w.ln()))
            })
            .reduce(f64::min)
    };
    let rho = cfg.error_tolerance;
    let live = live_rate.max(0.0);
    let prior = relative_prior(Tuning::CURRENT.relative_design);
    let mut alternatives: Vec<(f64, f64)> = ERROR_GRID.iter().copied().zip(prior.clone()).collect();
    // The design component (the prior's last weight) at the ratio it bets on at this rate.
    alternatives.push((design_ratio(live, 1.0, rho) / rho, prior[ERROR_GRID.len()]));
    let relative = per_request(rho * live, &alternatives)?;
    let absolute = if cfg.error_tolerance_abs > 0.0 {
        let f = cfg.error_tolerance_abs;
        let prior = design_prior(&ERROR_GRID, Some((f + DESIGN_ERROR_INCREASE) / f));
        let alternatives: Vec<(f64, f64)> = ERROR_GRID.iter().copied().zip(prior).collect();
        per_request(f, &alternatives)?
    } else {
        0.0
    };
    Some(relative.max(absolute))
}

/// Evidence (nats) a test loses to the restarts in the worst case: only the lightest
/// step copy counts (a fault that appears in a late step).
fn worst_copy_cost(steps: usize) -> f64 {
    let w = copy_weights(steps, Tuning::CURRENT.first_copy)
        .into_iter()
        .fold(1.0, f64::min);
    -w.ln()
}

/// Smallest `n` with `n·g − z·√(n·v) ≥ need`: a sum of `n` gains of mean `g` and
/// variance `v` clears `need` with the design power.
fn samples_for(g: f64, v: f64, need: f64) -> f64 {
    let z = DESIGN_POWER_Z;
    let x = (z * v.sqrt() + (z * z * v + 4.0 * g * need).sqrt()) / (2.0 * g);
    x * x
}

/// Latency information (Σ 1/variance of the paired periods) needed before a slowdown of
/// `factor` crosses the latency threshold 99 % of the time. None when `factor` is within
/// the tolerance.
pub fn latency_info_to_detect(factor: f64, cfg: &SequentialConfig, steps: usize) -> Option<f64> {
    let d = factor.ln() - cfg.latency_tolerance.ln();
    if d.is_nan() || d <= 0.0 {
        return None;
    }
    let base = (1.0 / (cfg.alpha * LATENCY_SHARE)).ln() + worst_copy_cost(steps);
    let design = DESIGN_LATENCY_FACTOR.ln() - cfg.latency_tolerance.ln();
    let prior = design_prior(&LATENCY_GRID, Some(design));
    // Per unit of information, grid point μ gains μd − μ²/2 with variance μ².
    LATENCY_GRID
        .iter()
        .zip(&prior)
        .filter_map(|(mu, w)| {
            let g = mu * d - mu * mu / 2.0;
            (g > 0.0 && *w > 0.0).then(|| samples_for(g, mu * mu, base - w.ln()))
        })
        .reduce(f64::min)
}

/// Variance of one period's log latency statistic from `n` requests of log-normal shape
/// `s`, with the safety factor.
fn stat_variance(stat: LatencyStat, s: f64, n: f64) -> f64 {
    let n = n.max(1.0);
    let v = match stat {
        LatencyStat::P95 => P95_VARIANCE * s * s / n,
        LatencyStat::Average => (s * s).exp_m1() / n,
    };
    SPREAD_INFLATION * SPREAD_INFLATION * v
}

/// How long until a slowdown of `factor` is expected to be caught when the new colour
/// serves `rps_new` requests a second next to a live colour serving `rps_live` (None: the
/// live colour is idle and the gate compares with its past), in whole metric periods of
/// `period` (the metric delay comes on top). Assumes a wide latency spread (the gate's default
/// shape) since the notice comes before any period of the step.
pub fn latency_time_to_detect(
    rps_new: f64,
    rps_live: Option<f64>,
    factor: f64,
    stat: LatencyStat,
    cfg: &SequentialConfig,
    steps: usize,
    period: Duration,
) -> Option<Duration> {
    if rps_new.is_nan() || rps_new <= 0.0 {
        return None;
    }
    let need = latency_info_to_detect(factor, cfg, steps)?;
    let period = period.as_secs_f64().max(1e-3);
    let var = |rps: f64| stat_variance(stat, DEFAULT_SHAPE, rps * period);
    let per_period = 1.0
        / (var(rps_new)
            + rps_live.filter(|r| *r > 0.0).map_or(0.0, var)
            + 2.0 * LOG_LATENCY_FLOOR.powi(2));
    let periods = (need / per_period).ceil().max(1.0);
    Some(Duration::from_secs_f64(periods * period))
}

/// Requests the new colour needs before a slowdown of `factor` is expected to be caught
/// (ignoring the live colour's own noise: a lower bound), at the gate's default shape.
pub fn latency_requests_to_detect(
    factor: f64,
    stat: LatencyStat,
    cfg: &SequentialConfig,
    steps: usize,
) -> Option<f64> {
    let need = latency_info_to_detect(factor, cfg, steps)?;
    // One request's information is 1/(variance of one request's statistic).
    Some(need * stat_variance(stat, DEFAULT_SHAPE, 1.0))
}

/// How long until a 5xx increase of `increase` (absolute share) over `live_rate` is
/// expected to be detected when the new colour serves `rps_new` requests a second, in
/// whole metric periods of `period` (the metric delay comes on top). For notices such as "at 0.5 req/s
/// a +1 point 5xx fault needs about 12 min".
pub fn time_to_detect(
    rps_new: f64,
    live_rate: f64,
    increase: f64,
    cfg: &SequentialConfig,
    steps: usize,
    period: Duration,
) -> Option<Duration> {
    if rps_new.is_nan() || rps_new <= 0.0 {
        return None;
    }
    let n = requests_to_detect(live_rate, increase, cfg, steps)?;
    let period = period.as_secs_f64().max(1e-3);
    let periods = (n / (rps_new * period)).ceil().max(1.0);
    Some(Duration::from_secs_f64(periods * period))
}

/// Log-normal shape `s` whose average and p95 are `avg` and `p95`: `ln(p95/avg) =
/// 1.645·s − s²/2`, the smaller root. None without both.
pub fn shape(avg: Option<f64>, p95: Option<f64>) -> Option<f64> {
    let (a, p) = (avg?, p95?);
    if !(a > 0.0 && p > 0.0 && a.is_finite() && p.is_finite()) {
        return None;
    }
    let z = 1.644_853_6_f64;
    let l = (p / a).ln();
    let s = if l <= 0.0 {
        0.0
    } else if l >= z * z / 2.0 {
        z
    } else {
        z - (z * z - 2.0 * l).sqrt()
    };
    Some(s.max(0.05))
}

fn counts(s: &HealthSample) -> Counts {
    let clean = |v: f64| {
        if v.is_finite() && v > 0.0 {
            v.round()
        } else {
            0.0
        }
    };
    let (ng, nb) = (clean(s.green.requests), clean(s.blue.requests));
    Counts {
        new_requests: ng,
        new_errors: clean(s.green.errors_5xx).min(ng),
        live_requests: nb,
        live_errors: clean(s.blue.errors_5xx).min(nb),
    }
}

fn rate(x: f64, n: f64) -> Option<f64> {
    (n > 0.0).then(|| x / n)
}

fn pct(r: f64) -> String {
    if r < 0.001 && r > 0.0 {
        format!("{:.3} %", r * 100.0)
    } else {
        format!("{:.2} %", r * 100.0)
    }
}

fn short_num(x: f64) -> String {
    if x >= 1e5 {
        format!("{x:.1e}")
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 0.01 {
        format!("{x:.2}")
    } else {
        format!("{x:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sim::{self, Fault, Rng, SimStep, World};
    use crate::gate::{AlarmState, ColourSample};
    use crate::plan::{OnGateFail, SequentialConfig};
    use proptest::prelude::*;

    fn cfg() -> GateConfig {
        GateConfig {
            poll_interval: Duration::from_secs(60),
            max_blind: Duration::from_secs(300),
            min_requests: 50,
            error_rate_floor: 0.01,
            error_rate_margin: 0.005,
            latency_factor: 1.5,
            latency_stat: LatencyStat::P95,
            alarms: vec![],
            on_fail: OnGateFail::Rollback,
            statistical: false,
            confidence: 0.95,
            metric_period: Duration::from_secs(60),
            metric_delay: Duration::from_secs(120),
            weight_settle: Duration::from_secs(10),
            sequential: SequentialConfig::default(),
            approval_timeout: Duration::from_secs(3600),
        }
    }

    fn colour(requests: f64, errors: f64, avg: f64, p95: f64) -> ColourSample {
        ColourSample {
            healthy: 2,
            requests,
            errors_5xx: errors,
            latency_avg_ms: Some(avg),
            latency_p95_ms: Some(p95),
            ..ColourSample::default()
        }
    }

    fn sample(new: ColourSample, live: ColourSample) -> HealthSample {
        HealthSample {
            green: new,
            blue: live,
            alarms: vec![],
        }
    }

    fn healthy(new_requests: f64, live_requests: f64) -> HealthSample {
        sample(
            colour(new_requests, 0.0, 80.0, 160.0),
            colour(live_requests, 0.0, 80.0, 160.0),
        )
    }

    fn is_fail(v: &Verdict, want: Signal) -> bool {
        matches!(v, Verdict::Fail { signal, .. } if *signal == want)
    }

    #[test]
    fn unhealthy_targets_and_alarms_fail_at_once() {
        let mut g = SequentialGate::new(&cfg(), 3);
        let mut s = healthy(100.0, 900.0);
        s.green.unhealthy = 1;
        assert!(is_fail(&g.observe(0, &s).verdict, Signal::TargetHealth));

        let mut g = SequentialGate::new(&cfg(), 3);
        let mut s = healthy(100.0, 900.0);
        s.alarms.push(AlarmState {
            name: "shop-5xx".into(),
            state: "ALARM".into(),
        });
        assert!(is_fail(&g.observe(0, &s).verdict, Signal::Alarm));
    }

    #[test]
    fn a_failure_sticks() {
        let mut g = SequentialGate::new(&cfg(), 3);
        let mut s = healthy(100.0, 900.0);
        s.green.unhealthy = 1;
        g.observe(0, &s);
        let v = g.observe(0, &healthy(100.0, 900.0)).verdict;
        assert!(is_fail(&v, Signal::TargetHealth), "{v:?}");
        assert!(g.failed().is_some());
    }

    #[test]
    fn catastrophic_errors_need_enough_requests_and_a_healthy_live_colour() {
        let mut g = SequentialGate::new(&cfg(), 3);
        // 10 of 40: 25 %, but under the 50 requests the rail needs. (Live at 16 % keeps the
        // statistics quiet, so only the rail is tested.)
        let live = colour(900.0, 150.0, 80.0, 160.0);
        let s = sample(colour(40.0, 10.0, 80.0, 160.0), live.clone());
        let v = g.observe(0, &s).verdict;
        assert!(!matches!(v, Verdict::Fail { .. }), "{v:?}");
        // 20 more of 40: 30 of 80 over the step.
        let s = sample(colour(40.0, 20.0, 80.0, 160.0), live);
        let v = g.observe(0, &s).verdict;
        assert!(is_fail(&v, Signal::ErrorRate), "{v:?}");
        if let Verdict::Fail { reason, .. } = v {
            assert!(reason.contains("catastrophic"), "{reason}");
        }

        // Live as bad as new: the release is not to blame (no catastrophic rail).
        let mut g = SequentialGate::new(&cfg(), 3);
        let s = sample(
            colour(100.0, 30.0, 80.0, 160.0),
            colour(100.0, 30.0, 80.0, 160.0),
        );
        let v = g.observe(0, &s).verdict;
        assert!(!matches!(v, Verdict::Fail { .. }), "{v:?}");
    }

    #[test]
    fn zero_error_periods_cost_the_relative_test_nothing() {
        let mut g = SequentialGate::new(&cfg(), 2);
        for _ in 0..50 {
            g.observe(0, &healthy(100.0, 900.0));
        }
        // No 5xx on either side: the conditional test has not moved.
        assert!((g.st.relative.e_value() - 1.0).abs() < 1e-12);
        // The absolute test learned the new colour is below 0.2 %.
        assert!(g.st.absolute.e_value() < 1.0);
        assert!(g.error_e_value() < 1.0);
    }

    #[test]
    fn zero_traffic_to_the_new_colour_is_not_enough_data() {
        let mut g = SequentialGate::new(&cfg(), 2);
        let s = sample(ColourSample::default(), colour(1000.0, 2.0, 80.0, 160.0));
        for _ in 0..10 {
            let j = g.observe(0, &s);
            assert!(matches!(j.verdict, Verdict::NotEnoughData { .. }), "{j:?}");
            assert_eq!(j.evidence[0].periods, 0);
        }
        assert!((g.error_e_value() - 1.0).abs() < 1e-12);
        assert!((g.latency_e_value() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn nan_and_missing_latency_are_skipped() {
        let mut g = SequentialGate::new(&cfg(), 2);
        let mut s = healthy(100.0, 900.0);
        s.green.latency_p95_ms = Some(f64::NAN);
        s.blue.latency_p95_ms = None;
        s.green.requests = f64::NAN;
        s.blue.errors_5xx = -3.0;
        let j = g.observe(0, &s);
        assert_eq!(j.evidence[1].periods, 0);
        assert!(j.evidence.iter().all(|e| e.statistic.is_finite()));
        assert!(matches!(j.verdict, Verdict::NotEnoughData { .. }));
        let mut s = healthy(100.0, 900.0);
        s.blue.latency_p95_ms = Some(0.0);
        g.observe(0, &s);
        assert_eq!(g.st.latency_periods, 0, "a zero latency is no data");
    }

    #[test]
    fn enough_data_passes_a_healthy_step() {
        let mut g = SequentialGate::new(&cfg(), 3);
        let j = g.observe(0, &healthy(30.0, 900.0));
        assert!(matches!(j.verdict, Verdict::NotEnoughData { .. }), "{j:?}");
        let j = g.observe(0, &healthy(30.0, 900.0));
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
    }

    #[test]
    fn the_last_step_before_100_needs_a_detectable_amount_of_traffic() {
        let mut g = SequentialGate::new(&cfg(), 3);
        let j = g.observe(0, &healthy(60.0, 600.0));
        assert_eq!(
            j.verdict,
            Verdict::Pass,
            "the first step needs only min_requests"
        );
        let j = g.observe(1, &healthy(60.0, 600.0));
        match &j.verdict {
            Verdict::NotEnoughData { reason } => {
                assert!(reason.contains("more requests"), "{reason}")
            }
            v => panic!("{v:?}"),
        }
        assert!(g.requests_short() > 0.0);
        assert_eq!(g.no_data_action(Duration::from_secs(1)), None);
        assert_eq!(
            g.no_data_action(Duration::from_secs(3600)),
            Some(OnNoData::Pause)
        );
    }

    #[test]
    fn a_large_error_increase_is_rejected_with_evidence() {
        let mut g = SequentialGate::new(&cfg(), 3);
        let mut last = None;
        for i in 0..20 {
            // new 3 % vs live 0.1 %
            let s = sample(
                colour(300.0, 9.0, 80.0, 160.0),
                colour(2700.0, 3.0, 80.0, 160.0),
            );
            let j = g.observe(0, &s);
            if matches!(j.verdict, Verdict::Fail { .. }) {
                last = Some((i, j));
                break;
            }
        }
        let (i, j) = last.expect("rejected");
        assert!(i <= 2, "took {} periods", i + 1);
        assert!(is_fail(&j.verdict, Signal::ErrorRate));
        let e = &j.evidence[0];
        assert!(e.statistic >= e.threshold);
        assert!(e.summary.starts_with("5xx e-value"), "{}", e.summary);
        let json = serde_json::to_string(&j).unwrap();
        assert!(json.contains("\"signal\":\"error_rate\""), "{json}");
    }

    #[test]
    fn twice_the_latency_is_rejected_quickly() {
        let mut g = SequentialGate::new(&cfg(), 3);
        let mut at = None;
        for i in 0..20 {
            let s = sample(
                colour(300.0, 0.0, 160.0, 320.0),
                colour(2700.0, 0.0, 80.0, 160.0),
            );
            if is_fail(&g.observe(0, &s).verdict, Signal::Latency) {
                at = Some(i);
                break;
            }
        }
        assert_eq!(at, Some(0), "one period of 300 requests at ×2 is plenty");
    }

    #[test]
    fn small_differences_within_tolerance_never_fail() {
        let mut g = SequentialGate::new(&cfg(), 3);
        for _ in 0..500 {
            // 5 % slower and 1.2× the 5xx: inside the default tolerances (×1.1, ×1.25).
            let s = sample(
                colour(1000.0, 12.0, 84.0, 168.0),
                colour(1000.0, 10.0, 80.0, 160.0),
            );
            let v = g.observe(0, &s).verdict;
            assert!(!matches!(v, Verdict::Fail { .. }), "{v:?}");
        }
    }

    #[test]
    fn the_idle_live_colour_becomes_a_reference() {
        let mut g = SequentialGate::new(&cfg(), 2);
        for _ in 0..10 {
            g.observe(
                0,
                &sample(
                    colour(500.0, 1.0, 80.0, 160.0),
                    colour(500.0, 1.0, 80.0, 160.0),
                ),
            );
        }
        // At 100 %: live is idle; a new colour at 5 % 5xx is judged against live's past rate.
        let mut failed = false;
        for _ in 0..10 {
            let s = sample(colour(1000.0, 50.0, 80.0, 160.0), ColourSample::default());
            failed |= is_fail(&g.observe(1, &s).verdict, Signal::ErrorRate);
        }
        assert!(failed);
        let mut g2 = SequentialGate::new(&cfg(), 2);
        for _ in 0..10 {
            g2.observe(
                0,
                &sample(
                    colour(500.0, 0.0, 80.0, 160.0),
                    colour(500.0, 0.0, 80.0, 160.0),
                ),
            );
        }
        for _ in 0..10 {
            let s = sample(colour(1000.0, 0.0, 240.0, 480.0), ColourSample::default());
            failed = is_fail(&g2.observe(1, &s).verdict, Signal::Latency);
            if failed {
                break;
            }
        }
        assert!(failed, "×3 latency against live's past level");
    }

    #[test]
    fn shapes_from_average_and_p95() {
        // A log-normal with s = 0.5: p95/avg = exp(1.645·0.5 − 0.125).
        let s = shape(Some(100.0), Some(100.0 * (0.822_4f64 - 0.125).exp())).unwrap();
        assert!((s - 0.5).abs() < 1e-3, "{s}");
        assert_eq!(shape(Some(100.0), Some(90.0)), Some(0.05));
        assert_eq!(shape(None, Some(90.0)), None);
        assert_eq!(shape(Some(f64::NAN), Some(90.0)), None);
    }

    #[test]
    fn detection_time_scales_with_traffic() {
        let c = SequentialConfig::default();
        let minute = Duration::from_secs(60);
        let slow = time_to_detect(0.5, 0.001, 0.01, &c, 4, minute).unwrap();
        let fast = time_to_detect(50.0, 0.001, 0.01, &c, 4, minute).unwrap();
        assert!(slow > fast * 10, "{slow:?} vs {fast:?}");
        assert_eq!(time_to_detect(0.0, 0.001, 0.01, &c, 4, minute), None);
        // Inside the tolerance: never detectable.
        assert_eq!(requests_to_detect(0.01, 0.001, &c, 4), None);
    }

    /// The budget holds under repeated looks: identical colours, every period judged, over
    /// a long release. The gate must roll back at most alpha of them (plus 3 standard
    /// errors of the simulation).
    #[test]
    fn false_rollbacks_stay_within_alpha() {
        let mut c = cfg();
        c.sequential.alpha = 0.05;
        let steps = [
            SimStep {
                weight: 1,
                bake_periods: 30,
            },
            SimStep {
                weight: 10,
                bake_periods: 30,
            },
            SimStep {
                weight: 50,
                bake_periods: 30,
            },
            SimStep {
                weight: 100,
                bake_periods: 30,
            },
        ];
        let runs = 2000;
        let mut rolled = 0;
        for (i, (rps, base, sigma)) in [(50.0, 0.01, 0.6), (500.0, 0.001, 0.2), (20.0, 0.0001, 0.6)]
            .into_iter()
            .cycle()
            .take(runs)
            .enumerate()
        {
            let w = World {
                rps,
                base_rate: base,
                sigma,
                median_ms: 80.0,
                period_s: 60.0,
            };
            let mut g = SequentialGate::new(&c, steps.len());
            let o = sim::release(&mut Rng::new(i as u64), &w, &steps, None, 0, &mut |s, h| {
                g.observe(s, h).verdict
            });
            rolled += u32::from(matches!(o, sim::Outcome::RolledBack { .. }));
        }
        let a = c.sequential.alpha;
        let bound = a + 3.0 * (a * (1.0 - a) / runs as f64).sqrt();
        let rate = f64::from(rolled) / runs as f64;
        assert!(rate <= bound, "false rollbacks {rate} > {bound}");
    }

    #[test]
    fn faults_that_start_mid_release_are_caught() {
        let steps = [
            SimStep {
                weight: 10,
                bake_periods: 20,
            },
            SimStep {
                weight: 50,
                bake_periods: 20,
            },
            SimStep {
                weight: 100,
                bake_periods: 20,
            },
        ];
        let fault = Fault {
            error_increase: 0.02,
            latency_factor: 1.0,
            from_step: 1,
            after_periods: 10,
            ..Fault::default()
        };
        let w = World {
            rps: 200.0,
            base_rate: 0.001,
            sigma: 0.4,
            median_ms: 80.0,
            period_s: 60.0,
        };
        for seed in 0..50 {
            let mut g = SequentialGate::new(&cfg(), steps.len());
            let o = sim::release(
                &mut Rng::new(seed),
                &w,
                &steps,
                Some(&fault),
                0,
                &mut |s, h| g.observe(s, h).verdict,
            );
            match o {
                sim::Outcome::RolledBack { faulty_periods, .. } => {
                    assert!(
                        (1..=3).contains(&faulty_periods),
                        "seed {seed}: {faulty_periods}"
                    )
                }
                o => panic!("seed {seed}: {o:?}"),
            }
        }
    }

    /// The relative test's design component bets on a ratio computed from the period's
    /// total 5xx, so given that total its factor must still average exactly 1 when the new
    /// colour's share is the null's, and less when it is healthier.
    #[test]
    fn the_design_component_is_a_fair_bet_given_the_period_total() {
        let rho = 1.25;
        for (ng, nl, m, past_errors, past_requests) in [
            (300.0, 2700.0, 36.0, 0.0, 0.0),
            (300.0, 2700.0, 5.0, 54.0, 5400.0),
            (3.0, 27.0, 2.0, 0.0, 0.0),
            (1500.0, 1500.0, 80.0, 10.0, 20000.0),
        ] {
            let q = ng / (ng + nl);
            let design = design_ratio(
                past_errors + m - DESIGN_ERROR_INCREASE * ng,
                past_requests + nl + ng,
                rho,
            );
            assert!(design > rho, "{design}");
            let (t1, t0) = (error_share(q, design), error_share(q, rho));
            let mean_factor = |theta: f64| -> f64 {
                (0..=m as u64)
                    .map(|x| {
                        let x = x as f64;
                        let ln_pmf =
                            ln_choose(m, x) + x * theta.ln() + (m - x) * (1.0 - theta).ln();
                        (ln_pmf + binomial_log_lr(x, m, t1, t0)).exp()
                    })
                    .sum()
            };
            let at_null = mean_factor(t0);
            assert!((at_null - 1.0).abs() < 1e-9, "{ng} {nl} {m}: {at_null}");
            assert!(mean_factor(error_share(q, 1.0)) < 1.0);
        }
    }

    fn ln_choose(n: f64, k: f64) -> f64 {
        (1..=k as u64)
            .map(|i| ((n - k + i as f64) / i as f64).ln())
            .sum()
    }

    #[test]
    fn design_ratios_stay_on_the_grid() {
        // live 1 %: +2 points is three times the rate.
        assert!((design_ratio(1.0, 100.0, 1.25) - 3.0).abs() < 1e-12);
        // No errors yet, or fewer than the design fault alone would make: the top ratio.
        assert_eq!(design_ratio(0.0, 100.0, 1.25), 75.0);
        assert_eq!(design_ratio(-3.0, 100.0, 1.25), 75.0);
        assert_eq!(design_ratio(1.0, 0.0, 1.25), 75.0);
        // A high live rate: +2 points is a ratio within tolerance, the grid's bottom.
        assert_eq!(design_ratio(50.0, 100.0, 1.25), 1.25 * ERROR_GRID[0]);
        assert_eq!(relative_prior(0.5).iter().sum::<f64>(), 1.0);
        assert_eq!(relative_prior(0.5)[ERROR_GRID.len()], 0.5);
    }

    /// ALB timing at 50 req/s over a live 1 % (the lab's slowest cell): +2 points of 5xx
    /// from the start. The relative test decides (the absolute one is far ahead), and with
    /// its mixture uniform over the grid only 38 % of releases rolled back within 3
    /// published periods; betting on "+2 points over the live rate" makes it about half
    /// (no same-period comparison reaches a median of 2 here: docs/gate-lab.md).
    #[test]
    fn two_points_over_a_live_one_percent_are_caught_within_three_periods() {
        let steps = [
            SimStep {
                weight: 10,
                bake_periods: 5,
            },
            SimStep {
                weight: 25,
                bake_periods: 10,
            },
            SimStep {
                weight: 50,
                bake_periods: 15,
            },
            SimStep {
                weight: 100,
                bake_periods: 30,
            },
        ];
        let w = World {
            rps: 50.0,
            base_rate: 0.01,
            sigma: 0.6,
            median_ms: 80.0,
            period_s: 60.0,
        };
        let fault = Fault {
            error_increase: 0.02,
            ..Fault::default()
        };
        let runs = 1000;
        let within_three = (0..runs)
            .filter(|seed| {
                let mut g = SequentialGate::new(&cfg(), steps.len());
                let o = sim::release(
                    &mut Rng::new(*seed),
                    &w,
                    &steps,
                    Some(&fault),
                    15,
                    &mut |s, h| g.observe(s, h).verdict,
                );
                matches!(o, sim::Outcome::RolledBack { faulty_periods, .. } if faulty_periods <= 3)
            })
            .count();
        let share = within_three as f64 / runs as f64;
        assert!(share >= 0.47, "{share}");
    }

    fn arb_colour() -> impl Strategy<Value = ColourSample> {
        let num = prop_oneof![
            6 => 0.0f64..5000.0,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => -100.0f64..0.0,
        ];
        let lat = prop_oneof![
            4 => (0.1f64..2000.0).prop_map(Some),
            1 => Just(None),
            1 => Just(Some(f64::NAN)),
            1 => Just(Some(0.0)),
        ];
        (num.clone(), num, lat.clone(), lat, 0u32..2).prop_map(
            |(requests, errors_5xx, latency_avg_ms, latency_p95_ms, unhealthy)| ColourSample {
                healthy: 2,
                unhealthy,
                requests,
                errors_5xx,
                latency_avg_ms,
                latency_p95_ms,
                ..ColourSample::default()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Garbage in never panics, never gives NaN evidence, and a failure sticks.
        #[test]
        fn any_input_gives_sane_evidence(
            periods in prop::collection::vec((0usize..5, arb_colour(), arb_colour()), 1..40),
            steps in 1usize..5,
        ) {
            let mut g = SequentialGate::new(&cfg(), steps);
            let mut failed = false;
            for (step, new, live) in periods {
                let j = g.observe(step, &sample(new, live));
                for e in &j.evidence {
                    prop_assert!(!e.statistic.is_nan() && e.statistic >= 0.0, "{:?}", e);
                    prop_assert!(e.threshold > 1.0);
                }
                let now = matches!(j.verdict, Verdict::Fail { .. });
                prop_assert!(!failed || now, "a failure must stick");
                failed = now;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// The budget under repeated looks, across random worlds and schedules: identical
        /// colours, every period judged; false rollbacks ≤ alpha + 3 standard errors.
        #[test]
        fn the_budget_holds_in_random_worlds(
            rps in 2.0f64..3000.0,
            base in 0.0f64..0.02,
            sigma in 0.1f64..0.9,
            first in 1u8..30,
            minute in any::<bool>(),
            average in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut c = cfg();
            c.sequential.alpha = 0.05;
            if average {
                c.latency_stat = LatencyStat::Average;
            }
            let steps = [
                SimStep { weight: first, bake_periods: 20 },
                SimStep { weight: 50, bake_periods: 20 },
                SimStep { weight: 100, bake_periods: 20 },
            ];
            let w = World {
                rps,
                base_rate: base,
                sigma,
                median_ms: 80.0,
                period_s: if minute { 60.0 } else { 1.0 },
            };
            let runs = 300u32;
            let mut rolled = 0u32;
            for i in 0..runs {
                let mut g = SequentialGate::new(&c, steps.len());
                let mut rng = Rng::new(seed ^ u64::from(i).wrapping_mul(0x9e37_79b9));
                let o = sim::release(&mut rng, &w, &steps, None, 20, &mut |s, h| {
                    g.observe(s, h).verdict
                });
                rolled += u32::from(matches!(o, sim::Outcome::RolledBack { .. }));
            }
            let a = c.sequential.alpha;
            let bound = a + 3.0 * (a * (1.0 - a) / f64::from(runs)).sqrt();
            let rate = f64::from(rolled) / f64::from(runs);
            prop_assert!(rate <= bound, "false rollbacks {} > {}", rate, bound);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]

        /// The relative 5xx test alone (no absolute test to hide behind) with all its
        /// prior on the design component: identical colours, every period judged; false
        /// rollbacks ≤ alpha + 3 standard errors.
        #[test]
        fn the_design_component_alone_keeps_the_budget(
            rps in 20.0f64..2000.0,
            base in 0.001f64..0.03,
            first in 1u8..30,
            seed in any::<u64>(),
        ) {
            let mut c = cfg();
            c.sequential.alpha = 0.05;
            c.sequential.error_tolerance_abs = 0.0;
            let steps = [
                SimStep { weight: first, bake_periods: 20 },
                SimStep { weight: 50, bake_periods: 20 },
                SimStep { weight: 100, bake_periods: 20 },
            ];
            let w = World { rps, base_rate: base, sigma: 0.4, median_ms: 80.0, period_s: 60.0 };
            let tuning = Tuning { relative_design: 1.0, ..Tuning::CURRENT };
            let runs = 300u32;
            let mut rolled = 0u32;
            for i in 0..runs {
                let mut g = SequentialGate::tuned(&c, steps.len(), tuning);
                let mut rng = Rng::new(seed ^ u64::from(i).wrapping_mul(0x9e37_79b9));
                let mut five_xx = false;
                sim::release(&mut rng, &w, &steps, None, 20, &mut |s, h| {
                    let v = g.observe(s, h).verdict;
                    five_xx |= g.error_e_value() >= g.error_threshold();
                    v
                });
                rolled += u32::from(five_xx);
            }
            let a = c.sequential.alpha;
            let bound = a + 3.0 * (a * (1.0 - a) / f64::from(runs)).sqrt();
            let rate = f64::from(rolled) / f64::from(runs);
            prop_assert!(rate <= bound, "5xx false rollbacks {} > {}", rate, bound);
        }
    }

    /// A gate restored from its saved JSON judges the following periods exactly as the
    /// one that never stopped; a state of another plan shape is refused.
    #[test]
    fn a_saved_state_carries_on_exactly() {
        let s = sample(
            colour(300.0, 6.0, 90.0, 200.0),
            colour(2700.0, 20.0, 80.0, 160.0),
        );
        let mut g = SequentialGate::new(&cfg(), 3);
        for _ in 0..4 {
            g.observe(0, &s);
        }
        let json = serde_json::to_string(g.state()).unwrap();
        let state: GateState = serde_json::from_str(&json).unwrap();
        let mut r = SequentialGate::restored(&cfg(), 3, state.clone()).expect("fits");
        for step in [0, 0, 1, 1] {
            assert_eq!(g.observe(step, &s), r.observe(step, &s));
        }
        assert!(SequentialGate::restored(&cfg(), 5, state).is_none());
    }

    #[test]
    fn traffic_is_both_colours_per_second_over_the_periods_seen() {
        let mut g = SequentialGate::new(&cfg(), 3);
        assert_eq!(g.traffic(), None);
        let period = g.period.as_secs_f64();
        let mut s = healthy(100.0, 500.0);
        s.blue.errors_5xx = 3.0;
        g.observe(0, &s);
        g.observe(0, &s);
        let t = g.traffic().expect("traffic");
        assert!((t.rps - 600.0 / period).abs() < 1e-9, "{t:?}");
        assert!((t.live_rate - 0.006).abs() < 1e-9, "{t:?}");
    }
}
