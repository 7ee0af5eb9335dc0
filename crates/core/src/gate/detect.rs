//! What the sequential gate can catch at a step, said when the step starts ("no silent
//! waits"): an operator who knows a +1 point 5xx fault needs 12 minutes at this traffic is
//! not left wondering why the bake goes on.

use super::sequential::{
    latency_requests_to_detect, latency_time_to_detect, requests_to_detect, time_to_detect,
    DESIGN_ERROR_INCREASE, DESIGN_LATENCY_FACTOR,
};
use crate::plan::{GateConfig, LatencyStat};
use std::time::Duration;

/// Traffic seen so far in the release (both colours).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Requests a second to both colours together.
    pub rps: f64,
    /// The live colour's 5xx share (0..1).
    pub live_rate: f64,
}

/// Smaller fault the notice also prices: the design fault is the one a step must be able
/// to catch, this one shows how much slower a subtler fault is.
const SMALL_INCREASE: f64 = 0.01;

/// One line for the start of step `index` (0-based) at `weight` % to `colour`: at the
/// traffic the colour will see, how soon +2 and +1 points of 5xx and a ×2 slowdown of the
/// plan's latency statistic would be caught; without a traffic estimate (first step,
/// resumed release), how many requests that takes.
pub fn step_notice(
    gates: &GateConfig,
    steps: usize,
    index: usize,
    weight: u8,
    colour: &str,
    traffic: Option<Traffic>,
) -> String {
    let (cfg, stat) = (&gates.sequential, gates.latency_stat);
    let (period, delay) = (gates.metric_period, gates.metric_delay);
    let head = format!("step {} at {weight}%", index + 1);
    let big = points(DESIGN_ERROR_INCREASE);
    let small = points(SMALL_INCREASE);
    if weight == 0 {
        return format!("{head}: {colour} serves nothing, so the gate cannot see its faults here");
    }
    let live_rate = traffic.map_or(0.0, |t| t.live_rate);
    // Next to a live colour that is itself a sample, a request tells only `1 − q` of what
    // it would against a known rate (as the gate counts it); at 100 % the gate compares
    // with a fixed reference instead.
    let share = f64::from(weight.min(100)) / 100.0;
    let worth = if weight < 100 { 1.0 - share } else { 1.0 };
    match traffic.filter(|t| t.rps.is_finite() && t.rps > 0.0) {
        Some(t) => {
            let rps = t.rps * share;
            let when = |inc: f64| {
                time_to_detect(rps * worth, live_rate, inc, cfg, steps, period)
                    .map(|d| about(d + delay))
            };
            let big_part = match when(DESIGN_ERROR_INCREASE) {
                Some(d) => format!("{big} of 5xx is caught within about {d}"),
                None => format!("{big} of 5xx cannot be caught with these tolerances"),
            };
            let small_part = match when(SMALL_INCREASE) {
                Some(d) => format!("{small} needs about {d}"),
                None => format!("{small} cannot be caught (error_tolerance_abs)"),
            };
            let live = (weight < 100).then_some(t.rps * (1.0 - share));
            let slow_part = match latency_time_to_detect(
                rps,
                live,
                DESIGN_LATENCY_FACTOR,
                stat,
                cfg,
                steps,
                period,
            ) {
                Some(d) => format!(
                    "a ×{DESIGN_LATENCY_FACTOR} slower {} within about {}",
                    stat_name(stat),
                    about(d + delay)
                ),
                None => format!(
                    "a ×{DESIGN_LATENCY_FACTOR} slower {} cannot be caught with this latency_tolerance",
                    stat_name(stat)
                ),
            };
            format!(
                "{head}: at ~{} req/s on {colour}, {big_part}; {small_part}; {slow_part}",
                rate(rps)
            )
        }
        None => {
            let need = |inc: f64| requests_to_detect(live_rate, inc, cfg, steps).map(|n| n / worth);
            let big_part = match need(DESIGN_ERROR_INCREASE) {
                Some(n) => format!(
                    "{big} of 5xx is caught once {colour} has served about {} requests",
                    count(n)
                ),
                None => format!("{big} of 5xx cannot be caught with these tolerances"),
            };
            let small_part = match need(SMALL_INCREASE) {
                Some(n) => format!("{small} after about {}", count(n)),
                None => format!("{small} cannot be caught (error_tolerance_abs)"),
            };
            let slow_part =
                match latency_requests_to_detect(DESIGN_LATENCY_FACTOR, stat, cfg, steps) {
                    Some(n) => format!(
                        "a ×{DESIGN_LATENCY_FACTOR} slower {} after at least {}",
                        stat_name(stat),
                        count(n)
                    ),
                    None => format!(
                        "a ×{DESIGN_LATENCY_FACTOR} slower {} cannot be caught with this latency_tolerance",
                        stat_name(stat)
                    ),
                };
            format!("{head}: no traffic measured yet; {big_part}, {small_part}; {slow_part}")
        }
    }
}

fn stat_name(stat: LatencyStat) -> &'static str {
    match stat {
        LatencyStat::P95 => "p95",
        LatencyStat::Average => "average latency",
    }
}

/// "+2 points" for 0.02.
fn points(share: f64) -> String {
    let p = share * 100.0;
    if (p - 1.0).abs() < 1e-9 {
        "+1 point".into()
    } else {
        format!("+{} points", (p * 10.0).round() / 10.0)
    }
}

fn rate(rps: f64) -> String {
    if rps >= 10.0 {
        format!("{rps:.0}")
    } else if rps >= 1.0 {
        format!("{rps:.1}")
    } else {
        format!("{rps:.2}")
    }
}

/// A request count rounded to two significant digits ("about 2400", not "2391.7").
fn count(n: f64) -> String {
    let n = n.ceil().max(1.0);
    if n < 100.0 {
        return format!("{n:.0}");
    }
    let scale = 10f64.powi(n.log10().floor() as i32 - 1);
    format!("{:.0}", (n / scale).ceil() * scale)
}

/// A duration as people say it: seconds under 90 s, minutes under 90 min, else hours.
fn about(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 90.0 {
        format!("{} s", s.ceil().max(1.0))
    } else if s < 90.0 * 60.0 {
        format!("{} min", (s / 60.0).ceil())
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::plan::{OnGateFail, SequentialConfig};

    fn cfg() -> GateConfig {
        with(SequentialConfig::default())
    }

    fn with(sequential: SequentialConfig) -> GateConfig {
        GateConfig {
            poll_interval: Duration::from_secs(30),
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
            metric_delay: Duration::ZERO,
            weight_settle: Duration::from_secs(10),
            sequential,
            approval_timeout: Duration::from_secs(3600),
        }
    }

    #[test]
    fn with_traffic_it_says_how_soon_faults_are_caught() {
        let t = Traffic {
            rps: 40.0,
            live_rate: 0.001,
        };
        let m = step_notice(&cfg(), 3, 1, 50, "green", Some(t));
        assert!(
            m.starts_with(
                "step 2 at 50%: at ~20 req/s on green, +2 points of 5xx is caught within about "
            ),
            "{m}"
        );
        assert!(m.contains("; +1 point needs about "), "{m}");
        assert!(!m.contains('\n'));
        // Less traffic: slower, never faster.
        let slow = step_notice(&cfg(), 3, 1, 50, "green", Some(Traffic { rps: 0.4, ..t }));
        assert!(slow.contains("at ~0.20 req/s"), "{slow}");
        let secs = |s: &str| -> f64 {
            let i = s.find("within about ").expect("within") + "within about ".len();
            let mut words = s[i..].split([' ', ';']);
            let v: f64 = words.next().and_then(|x| x.parse().ok()).expect("number");
            v * match words.next() {
                Some("s") => 1.0,
                Some("min") => 60.0,
                _ => 3600.0,
            }
        };
        assert!(secs(&slow) > secs(&m), "{m} / {slow}");
    }

    #[test]
    fn the_metric_delay_comes_on_top() {
        let t = Some(Traffic {
            rps: 1000.0,
            live_rate: 0.0,
        });
        let quick = step_notice(&cfg(), 3, 0, 100, "blue", t);
        let late = GateConfig {
            metric_delay: Duration::from_secs(120),
            ..cfg()
        };
        let m = step_notice(&late, 3, 0, 100, "blue", t);
        assert!(quick.contains("within about 60 s"), "{quick}");
        assert!(m.contains("within about 3 min"), "{m}");
    }

    #[test]
    fn without_traffic_it_says_the_requests_needed() {
        let m = step_notice(&cfg(), 3, 0, 10, "green", None);
        assert!(m.starts_with("step 1 at 10%: no traffic measured yet; +2 points of 5xx is caught once green has served about "), "{m}");
        assert!(m.contains(" requests, +1 point after about "), "{m}");
        // Next to an equal live colour a request is worth half: more of them are needed.
        let n = |m: &str| -> f64 {
            let i = m.find("served about ").expect("served") + "served about ".len();
            m[i..]
                .split(' ')
                .next()
                .and_then(|x| x.parse().ok())
                .expect("count")
        };
        let half = step_notice(&cfg(), 3, 1, 50, "green", None);
        assert!(n(&half) > 1.5 * n(&m), "{m} / {half}");
    }

    #[test]
    fn undetectable_faults_and_idle_steps_are_said_plainly() {
        let wide = with(SequentialConfig {
            error_tolerance_abs: 0.05,
            ..SequentialConfig::default()
        });
        let m = step_notice(&wide, 3, 0, 10, "green", None);
        assert!(m.contains("+2 points of 5xx cannot be caught"), "{m}");
        let m = step_notice(&cfg(), 3, 0, 0, "green", None);
        assert_eq!(
            m,
            "step 1 at 0%: green serves nothing, so the gate cannot see its faults here"
        );
    }

    #[test]
    fn latency_is_priced_too() {
        let t = Traffic {
            rps: 40.0,
            live_rate: 0.001,
        };
        let m = step_notice(&cfg(), 3, 1, 50, "green", Some(t));
        assert!(m.contains("; a ×2 slower p95 within about "), "{m}");
        let avg = GateConfig {
            latency_stat: LatencyStat::Average,
            ..cfg()
        };
        let m = step_notice(&avg, 3, 0, 10, "green", None);
        assert!(
            m.contains("; a ×2 slower average latency after at least "),
            "{m}"
        );
        let tight = with(SequentialConfig {
            latency_tolerance: 2.5,
            ..SequentialConfig::default()
        });
        let m = step_notice(&tight, 3, 1, 50, "green", Some(t));
        assert!(m.contains("×2 slower p95 cannot be caught"), "{m}");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(2391.7), "2400");
        assert_eq!(count(57.2), "58");
        assert_eq!(about(Duration::from_secs(45)), "45 s");
        assert_eq!(about(Duration::from_secs(150)), "3 min");
        assert_eq!(about(Duration::from_secs(3 * 3600)), "3.0 h");
        assert_eq!(points(0.02), "+2 points");
    }
}
