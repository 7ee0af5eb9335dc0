//! Simulated traffic for the gate lab (`examples/bench_gates.rs`) and the gate's property
//! tests: both colours behind one load balancer, one metric period at a time.
//!
//! Per period and colour: requests ~ Poisson(rps · weight · period); 5xx ~ Binomial(requests,
//! rate); latencies log-normal (median `median_ms`, shape `sigma`). The p95 is drawn exactly
//! as the ⌈0.95·n⌉-th order statistic of n requests (a Beta-distributed uniform order
//! statistic pushed through the log-normal quantile), so a period of 3 requests has the
//! noisy, low p95 it would have for real. The average is exact up to 30 requests and
//! normal beyond (the central limit). Average and p95 are drawn independently. Periods
//! are independent: no drift, no shared load spikes.

use super::{ColourSample, HealthSample, Verdict};
use crate::gate::eprocess::normal_inverse_cdf;

/// xoshiro256** seeded through splitmix64: small, fast, and reproducible everywhere.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in (0, 1), never 0.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma(shape, 1), Marsaglia–Tsang.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            return self.gamma(shape + 1.0) * self.uniform().powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }

    /// Poisson: exact (multiplication) below a mean of 30, normal above.
    pub fn poisson(&mut self, mean: f64) -> f64 {
        if mean <= 0.0 {
            return 0.0;
        }
        if mean < 30.0 {
            let limit = (-mean).exp();
            let (mut k, mut p) = (0.0, self.uniform());
            while p > limit {
                k += 1.0;
                p *= self.uniform();
            }
            return k;
        }
        (mean + mean.sqrt() * self.normal()).round().max(0.0)
    }

    /// Binomial: exact (inversion) below a mean of 30, normal above.
    pub fn binomial(&mut self, n: f64, p: f64) -> f64 {
        if n <= 0.0 || p <= 0.0 {
            return 0.0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        let mean = n * p;
        if mean < 30.0 {
            let u = self.uniform();
            let mut prob = (n * (1.0 - p).ln()).exp();
            let mut cdf = prob;
            let mut k = 0.0;
            let odds = p / (1.0 - p);
            while u > cdf && k < n {
                prob *= (n - k) / (k + 1.0) * odds;
                k += 1.0;
                cdf += prob;
                if prob < 1e-300 && cdf < u {
                    break;
                }
            }
            return k;
        }
        (mean + (mean * (1.0 - p)).sqrt() * self.normal())
            .round()
            .clamp(0.0, n)
    }
}

/// The traffic both colours see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct World {
    /// Requests a second to the app (both colours).
    pub rps: f64,
    /// 5xx share of a healthy colour.
    pub base_rate: f64,
    /// Log-normal shape of request latency.
    pub sigma: f64,
    pub median_ms: f64,
    /// Seconds per metric period.
    pub period_s: f64,
}

/// What is wrong with the new colour, and from when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    /// Added to the 5xx share.
    pub error_increase: f64,
    /// Latency multiplier (1 = none).
    pub latency_factor: f64,
    pub unhealthy: bool,
    /// The fault starts at this step …
    pub from_step: usize,
    /// … after this many of its periods.
    pub after_periods: u32,
}

impl Default for Fault {
    /// No fault at all, from the start.
    fn default() -> Self {
        Fault {
            error_increase: 0.0,
            latency_factor: 1.0,
            unhealthy: false,
            from_step: 0,
            after_periods: 0,
        }
    }
}

impl Fault {
    pub fn active(&self, step: usize, period_in_step: u32) -> bool {
        step > self.from_step || (step == self.from_step && period_in_step >= self.after_periods)
    }
}

/// One colour's period: `share` of the traffic, 5xx share `rate`, latencies ×`slow`.
pub fn colour(rng: &mut Rng, w: &World, share: f64, rate: f64, slow: f64) -> ColourSample {
    let n = rng.poisson(w.rps * share * w.period_s);
    let errors = rng.binomial(n, rate.clamp(0.0, 1.0));
    let mu = (w.median_ms * slow).ln();
    let s = w.sigma;
    let (avg, p95) = if n >= 1.0 {
        let k = (0.95 * n).ceil().max(1.0);
        let u = rng.beta(k, n + 1.0 - k);
        let p95 = (mu + s * normal_inverse_cdf(u)).exp();
        let avg = if n <= 30.0 {
            let sum: f64 = (0..n as usize).map(|_| (mu + s * rng.normal()).exp()).sum();
            sum / n
        } else {
            let mean = (mu + s * s / 2.0).exp();
            let sd = ((s * s).exp_m1()).sqrt() * mean;
            (mean + sd / n.sqrt() * rng.normal()).max(mean * 0.01)
        };
        (Some(avg), Some(p95))
    } else {
        (None, None)
    };
    ColourSample {
        healthy: 2,
        requests: n,
        errors_5xx: errors,
        latency_avg_ms: avg,
        latency_p95_ms: p95,
        ..ColourSample::default()
    }
}

/// One period with the new colour (`green`) at `weight` percent.
pub fn period(rng: &mut Rng, w: &World, weight: u8, fault: Option<&Fault>) -> HealthSample {
    let share = f64::from(weight.min(100)) / 100.0;
    let (inc, slow, unhealthy) = match fault {
        Some(f) => (f.error_increase, f.latency_factor.max(0.0), f.unhealthy),
        None => (0.0, 1.0, false),
    };
    let mut green = colour(rng, w, share, w.base_rate + inc, slow);
    if unhealthy {
        green.unhealthy = 1;
    }
    HealthSample {
        blue: colour(rng, w, 1.0 - share, w.base_rate, 1.0),
        green,
        alarms: vec![],
    }
}

/// One step of a schedule: weight and bake in periods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimStep {
    pub weight: u8,
    pub bake_periods: u32,
}

/// How a simulated release ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every step passed (`waited_out`: steps that went on after `max_wait` without data).
    Finished { periods: u32, waited_out: u32 },
    /// Rolled back; `faulty_periods` counts the faulty periods seen up to and including the
    /// one that rolled back (0: before any fault).
    RolledBack {
        periods: u32,
        faulty_periods: u32,
        verdict: Verdict,
    },
}

/// Run one release through `judge(step, sample)`. A step ends once it has baked its
/// periods and the verdict is a pass, or after `max_wait_periods` more (then it proceeds,
/// as `on_no_data = "proceed"` would).
pub fn release(
    rng: &mut Rng,
    w: &World,
    steps: &[SimStep],
    fault: Option<&Fault>,
    max_wait_periods: u32,
    judge: &mut dyn FnMut(usize, &HealthSample) -> Verdict,
) -> Outcome {
    let (mut periods, mut faulty, mut waited_out) = (0u32, 0u32, 0u32);
    for (index, step) in steps.iter().enumerate() {
        let mut p = 0u32;
        loop {
            let active = fault.filter(|f| f.active(index, p));
            let s = period(rng, w, step.weight, active);
            periods += 1;
            faulty += u32::from(active.is_some());
            let v = judge(index, &s);
            p += 1;
            match v {
                Verdict::Fail { .. } => {
                    return Outcome::RolledBack {
                        periods,
                        faulty_periods: faulty,
                        verdict: v,
                    }
                }
                Verdict::Pass if p >= step.bake_periods => break,
                _ if p >= step.bake_periods + max_wait_periods => {
                    waited_out += 1;
                    break;
                }
                _ => {}
            }
        }
    }
    Outcome::Finished {
        periods,
        waited_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_have_the_right_means() {
        let mut r = Rng::new(7);
        let n = 20_000;
        let mean = |f: &mut dyn FnMut() -> f64| (0..n).map(|_| f()).sum::<f64>() / n as f64;
        assert!((mean(&mut || r.poisson(3.0)) - 3.0).abs() < 0.05);
        assert!((mean(&mut || r.poisson(300.0)) - 300.0).abs() < 0.5);
        assert!((mean(&mut || r.binomial(100.0, 0.02)) - 2.0).abs() < 0.05);
        assert!((mean(&mut || r.gamma(0.5)) - 0.5).abs() < 0.02);
        assert!((mean(&mut || r.beta(2.0, 6.0)) - 0.25).abs() < 0.01);
        assert!(mean(&mut || r.normal()).abs() < 0.03);
    }

    #[test]
    fn p95_of_many_requests_is_near_the_true_one() {
        let mut r = Rng::new(1);
        let w = World {
            rps: 1000.0,
            base_rate: 0.001,
            sigma: 0.5,
            median_ms: 100.0,
            period_s: 60.0,
        };
        let c = colour(&mut r, &w, 1.0, 0.001, 1.0);
        let truth = 100.0 * (0.5f64 * 1.644_853_6).exp();
        let p95 = c.latency_p95_ms.unwrap();
        assert!((p95 / truth - 1.0).abs() < 0.02, "{p95} vs {truth}");
        assert!(colour(&mut r, &w, 0.0, 0.001, 1.0).latency_p95_ms.is_none());
    }
}
