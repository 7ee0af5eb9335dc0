//! E-processes: nonnegative supermartingales under the null, so by Ville's inequality the
//! chance that one *ever* reaches `1/a` is at most `a`, however often it is looked at.
//!
//! Each test here is a mixture of likelihood ratios over a small grid of alternatives
//! (uniform weights): a mixture of supermartingales is one, and a grid avoids betting on a
//! single effect size. Everything is kept in log space so long bakes neither overflow nor
//! underflow.
//!
//! [`Restarts`] averages copies of a test started at each step boundary (a copy is 1
//! before its start). The weighted average is still a supermartingale starting at 1, so the
//! release keeps one budget, yet a fault that appears in a late step is judged mostly by
//! the copy started at that step, not by one that has drifted down over earlier healthy
//! steps.

use serde::{Deserialize, Serialize};

/// Log of the mean of `exp(v)` over `v`, computed without overflow.
pub fn log_mean_exp(v: &[f64]) -> f64 {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() || max == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = v.iter().map(|x| (x - max).exp()).sum();
    max + (sum / v.len() as f64).ln()
}

/// One mixture test restarted at each step: `starts[j][k]` is the log likelihood ratio of
/// grid point `k` accumulated since the start of step `j`.
///
/// Weights. Grid point `k` has prior weight `prior[k]`; step `j`'s copy has weight
/// `copies[j]` (both sum to 1, so the e-value starts at 1 and stays a supermartingale).
/// [`copy_weights`] gives the release-long copy half the weight: a fault present from the
/// start (a bad build, the common case) then pays `ln 2` of evidence for the restarts
/// instead of `ln steps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restarts {
    copies: Vec<f64>,
    prior: Vec<f64>,
    starts: Vec<Vec<f64>>,
}

impl Restarts {
    /// A test over a grid with weights `prior` (normalised here) for a release whose step
    /// copies have weights `copies` (at least one; normalised here).
    pub fn new(copies: Vec<f64>, prior: Vec<f64>) -> Self {
        Restarts {
            copies: normalised(if copies.is_empty() { vec![1.0] } else { copies }),
            prior: normalised(prior),
            starts: Vec::new(),
        }
    }

    /// Start the copies of every step up to and including `step` that have not started.
    pub fn start_through(&mut self, step: usize) {
        while self.starts.len() <= step.min(self.copies.len() - 1) {
            self.starts.push(vec![0.0; self.prior.len()]);
        }
    }

    /// Add one period's log likelihood ratio, `log_factor(k)` for grid point `k`, to every
    /// running copy.
    pub fn add(&mut self, log_factor: impl Fn(usize) -> f64) {
        let factors: Vec<f64> = (0..self.prior.len()).map(log_factor).collect();
        for start in &mut self.starts {
            for (acc, f) in start.iter_mut().zip(&factors) {
                // Kept finite so the state can be saved as JSON; e^-1e6 is 0 all the same.
                *acc = (*acc + f).clamp(-1e6, 1e6);
            }
        }
    }

    /// The e-value now: the weighted average of each step's copy (1 before it starts).
    pub fn e_value(&self) -> f64 {
        let mut e = 0.0;
        for (j, w) in self.copies.iter().enumerate() {
            e += w * match self.starts.get(j) {
                Some(s) => log_weighted_mean_exp(s, &self.prior).exp(),
                None => 1.0,
            };
        }
        e
    }

    /// One copy for the whole release, no restarts (for the lab's comparison).
    pub fn release_long_only(&mut self) {
        self.copies = vec![1.0];
        self.starts.truncate(1);
    }

    /// Whether `other` is this test with the same weights (a saved state fits the plan).
    pub fn same_shape(&self, other: &Restarts) -> bool {
        self.copies == other.copies
            && self.prior == other.prior
            && other.starts.len() <= self.copies.len()
            && other.starts.iter().all(|s| s.len() == self.prior.len())
    }
}

/// Weights of the step copies of a release of `steps` steps: the copy started with the
/// release gets `first` (equal weights when `first` is None), the later ones share the rest.
pub fn copy_weights(steps: usize, first: Option<f64>) -> Vec<f64> {
    let steps = steps.max(1);
    match first {
        Some(f) if steps > 1 && f > 0.0 && f < 1.0 => {
            let rest = (1.0 - f) / (steps - 1) as f64;
            std::iter::once(f)
                .chain(std::iter::repeat_n(rest, steps - 1))
                .collect()
        }
        _ => vec![1.0 / steps as f64; steps],
    }
}

/// Prior weights over `grid` (increasing): uniform, or, given the effect size the plan is
/// built to catch (`design`), half the mass spread uniformly and half on the two grid
/// points around `design` (the nearest end when it is outside). A uniform grid of 9 costs
/// up to `ln 9` of evidence at any one effect; this costs at most `ln 4` at the design.
pub fn design_prior(grid: &[f64], design: Option<f64>) -> Vec<f64> {
    let n = grid.len().max(1);
    let mut w = vec![0.5 / n as f64; grid.len()];
    let Some(d) = design.filter(|d| d.is_finite() && *d > 0.0) else {
        return vec![1.0 / n as f64; grid.len()];
    };
    match grid.iter().position(|g| *g >= d) {
        Some(0) => w[0] += 0.5,
        None => w[n - 1] += 0.5,
        Some(i) => {
            w[i - 1] += 0.25;
            w[i] += 0.25;
        }
    }
    w
}

fn normalised(v: Vec<f64>) -> Vec<f64> {
    let total: f64 = v.iter().filter(|x| x.is_finite() && **x > 0.0).sum();
    if total <= 0.0 {
        let n = v.len().max(1) as f64;
        return vec![1.0 / n; v.len()];
    }
    v.iter()
        .map(|x| {
            if x.is_finite() && *x > 0.0 {
                x / total
            } else {
                0.0
            }
        })
        .collect()
}

/// Log of `Σ w_k e^{v_k}` (weights summing to 1), without overflow.
pub fn log_weighted_mean_exp(v: &[f64], w: &[f64]) -> f64 {
    // The largest term among those with weight: a weightless one far above the rest
    // would otherwise push them all to 0.
    let max = v
        .iter()
        .zip(w)
        .filter(|(_, w)| **w > 0.0)
        .map(|(x, _)| *x)
        .fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() || max == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = v.iter().zip(w).map(|(x, w)| w * (x - max).exp()).sum();
    max + sum.ln()
}

/// Log likelihood ratio of `x` successes in `n` Bernoulli trials at `p1` against `p0`.
pub fn binomial_log_lr(x: f64, n: f64, p1: f64, p0: f64) -> f64 {
    if n <= 0.0 {
        return 0.0;
    }
    let hit = if x > 0.0 { x * (p1 / p0).ln() } else { 0.0 };
    let miss = if n - x > 0.0 {
        (n - x) * ((1.0 - p1) / (1.0 - p0)).ln()
    } else {
        0.0
    };
    hit + miss
}

/// The new colour's share of a period's 5xx when its rate is `ratio` times the live
/// colour's and it served share `q` of the requests.
pub fn error_share(q: f64, ratio: f64) -> f64 {
    let w = ratio * q;
    w / (w + 1.0 - q)
}

/// Chernoff upper confidence bound for a rate from `x` events in `n` trials: the largest
/// `p` with `n · KL(x/n ‖ p) ≤ ln(1/a)`. The true rate is above it with chance at most `a`.
pub fn rate_upper_bound(x: f64, n: f64, a: f64) -> Option<f64> {
    if n <= 0.0 || !(a > 0.0 && a < 1.0) {
        return None;
    }
    let hat = (x / n).clamp(0.0, 1.0);
    let budget = (1.0 / a).ln();
    let kl = |p: f64| {
        let t1 = if hat > 0.0 { hat * (hat / p).ln() } else { 0.0 };
        let t2 = if hat < 1.0 {
            (1.0 - hat) * ((1.0 - hat) / (1.0 - p)).ln()
        } else {
            0.0
        };
        n * (t1 + t2)
    };
    let (mut lo, mut hi) = (hat, 1.0 - 1e-12);
    if kl(hi) <= budget {
        return Some(hi);
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if kl(mid) <= budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

/// Upper `a` quantile of the standard normal (a in 0..0.5), Acklam's rational
/// approximation of the inverse CDF (relative error about 1e-9).
pub fn normal_upper_quantile(a: f64) -> f64 {
    -normal_inverse_cdf(a.clamp(1e-300, 0.5))
}

/// Inverse of the standard normal CDF.
pub fn normal_inverse_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_mean_exp_is_stable() {
        assert!((log_mean_exp(&[0.0, 0.0]) - 0.0).abs() < 1e-12);
        assert!((log_mean_exp(&[1000.0, 1000.0]) - 1000.0).abs() < 1e-9);
        assert_eq!(log_mean_exp(&[]), f64::NEG_INFINITY);
        assert!((log_mean_exp(&[0.0, f64::NEG_INFINITY]) - 0.5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn restarts_are_one_before_they_start() {
        let mut r = Restarts::new(copy_weights(4, None), vec![1.0, 1.0]);
        assert_eq!(r.e_value(), 1.0);
        r.start_through(0);
        r.add(|_| 2f64.ln());
        // step 0's copy is 2, the three others are 1.
        assert!((r.e_value() - 5.0 / 4.0).abs() < 1e-12);
        r.start_through(1);
        r.add(|_| 2f64.ln());
        assert!((r.e_value() - (4.0 + 2.0 + 2.0) / 4.0).abs() < 1e-12);
        r.start_through(99);
        assert_eq!(r.starts.len(), 4, "never more copies than steps");
    }

    #[test]
    fn the_release_long_copy_can_carry_half() {
        assert_eq!(copy_weights(1, Some(0.5)), vec![1.0]);
        assert_eq!(copy_weights(3, Some(0.5)), vec![0.5, 0.25, 0.25]);
        let mut r = Restarts::new(copy_weights(3, Some(0.5)), vec![1.0]);
        r.start_through(0);
        r.add(|_| 4f64.ln());
        // 0.5·4 + 0.25 + 0.25
        assert!((r.e_value() - 2.5).abs() < 1e-12);
    }

    #[test]
    fn design_priors_sum_to_one_and_favour_the_design() {
        let grid = [1.0, 2.0, 4.0, 8.0];
        for d in [None, Some(0.5), Some(3.0), Some(100.0)] {
            let w = design_prior(&grid, d);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{d:?}: {w:?}");
        }
        assert_eq!(
            design_prior(&grid, Some(3.0)),
            vec![0.125, 0.375, 0.375, 0.125]
        );
        assert_eq!(design_prior(&grid, Some(100.0))[3], 0.625);
        assert_eq!(design_prior(&grid, None), vec![0.25; 4]);
    }

    #[test]
    fn binomial_lr_edges() {
        assert_eq!(binomial_log_lr(0.0, 0.0, 0.5, 0.1), 0.0);
        let all = binomial_log_lr(3.0, 3.0, 0.5, 0.25);
        assert!((all - 3.0 * 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn error_share_is_q_at_ratio_one() {
        assert!((error_share(0.1, 1.0) - 0.1).abs() < 1e-12);
        assert!((error_share(0.5, 3.0) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn upper_bounds_cover() {
        let u = rate_upper_bound(10.0, 1000.0, 0.01).unwrap();
        assert!(u > 0.01 && u < 0.03, "{u}");
        let z = rate_upper_bound(0.0, 1000.0, 0.01).unwrap();
        // 0 of 1000: ln(100)/1000 ≈ 0.0046.
        assert!((z - 0.0046).abs() < 0.0002, "{z}");
        assert!(rate_upper_bound(0.0, 0.0, 0.01).is_none());
    }

    #[test]
    fn normal_quantiles() {
        assert!((normal_upper_quantile(0.05) - 1.644_853_6).abs() < 1e-6);
        assert!((normal_upper_quantile(0.005) - 2.575_829_3).abs() < 1e-6);
        assert!((normal_inverse_cdf(0.5)).abs() < 1e-9);
        assert!((normal_inverse_cdf(0.975) - 1.959_964).abs() < 1e-6);
    }
}
