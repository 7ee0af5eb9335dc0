//! The drill report: after a rehearsal, how the gates did, from the event stream alone.
//!
//! Which gate failed, when green first took traffic, when a poll first showed the symptom,
//! when the gate caught it, and when the weights were back at 100% blue. "First showed the
//! symptom" is judged per poll against fixed, generous marks (below), independent of the
//! plan: it says when the fault became visible, not when the plan's thresholds tripped.

use crate::engine::event::{Envelope, Event};
use crate::gate::{HealthSample, Signal};
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// A poll shows a 5xx symptom when green's rate is above blue's by this much (absolute)…
const SYMPTOM_ERROR_MARGIN: f64 = 0.05;
/// …and a latency symptom when green's p95 (else average) is this many times blue's.
const SYMPTOM_LATENCY_FACTOR: f64 = 1.5;

/// Render the report for one release's events (in order). Times are seconds after the
/// release started.
pub fn drill_report(events: &[Envelope]) -> String {
    let Some(first) = events.first() else {
        return "drill report: no events\n".into();
    };
    let t0 = events
        .iter()
        .find(|e| matches!(e.event, Event::ReleaseStarted { .. }))
        .map_or(first.ts, |e| e.ts);
    let at = |ts: DateTime<Utc>| (ts - t0).num_milliseconds() as f64 / 1000.0;
    let mut out = String::new();
    let _ = writeln!(out, "drill report for release {}", first.release);

    let polls = events
        .iter()
        .filter(|e| matches!(e.event, Event::Health { .. }))
        .count();
    let blind = events
        .iter()
        .filter(|e| matches!(e.event, Event::Blind { .. }))
        .count();
    if let Some((ts, outcome, code, message)) = events.iter().find_map(|e| match &e.event {
        Event::ReleaseFinished {
            outcome,
            exit_code,
            message,
            ..
        } => Some((e.ts, outcome, exit_code, message)),
        _ => None,
    }) {
        let _ = writeln!(
            out,
            "  outcome: {outcome} (exit {code}) at +{:.1}s: {message}",
            at(ts)
        );
    }
    let _ = writeln!(out, "  health polls: {polls} ({blind} blind)");

    let exposed = events.iter().find_map(|e| match e.event {
        Event::WeightsChanged { green, .. } if green > 0 => Some((e.ts, green)),
        _ => None,
    });
    if let Some((ts, w)) = exposed {
        let _ = writeln!(out, "  green first took traffic ({w}%): +{:.1}s", at(ts));
    }

    let failed = events.iter().enumerate().find_map(|(i, e)| match &e.event {
        Event::GateFailed {
            index,
            weight,
            signal,
            reason,
        } => Some((i, e.ts, *index, *weight, *signal, reason.clone())),
        _ => None,
    });
    let Some((fail_at, caught, index, weight, signal, reason)) = failed else {
        let _ = writeln!(out, "  no gate failed");
        return out;
    };
    let _ = writeln!(
        out,
        "  gate failed: {signal} at step {} (green {weight}%): {reason}",
        index + 1
    );

    let sign = events[..=fail_at].iter().find_map(|e| match &e.event {
        Event::Health { sample, .. } => symptom(sample, signal).map(|s| (e.ts, s)),
        _ => None,
    });
    match &sign {
        Some((ts, what)) => {
            let _ = writeln!(out, "  first poll showing it: +{:.1}s ({what})", at(*ts));
        }
        None => {
            let _ = writeln!(out, "  first poll showing it: none before the gate failed");
        }
    }
    let since_sign = |ts: DateTime<Utc>| {
        sign.as_ref()
            .map(|(s, _)| {
                format!(
                    ", {:.1}s after the first sign",
                    (ts - *s).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "  gate caught it: +{:.1}s{}",
        at(caught),
        since_sign(caught)
    );

    let back = events[fail_at..].iter().find_map(|e| match e.event {
        Event::WeightsChanged { green: 0, .. } => Some(e.ts),
        _ => None,
    });
    match back {
        Some(ts) => {
            let _ = writeln!(
                out,
                "  weights back at 100% blue: +{:.1}s ({:.1}s after the gate{})",
                at(ts),
                (ts - caught).num_milliseconds() as f64 / 1000.0,
                since_sign(ts)
            );
        }
        None => {
            let _ = writeln!(out, "  weights back at 100% blue: NOT SEEN in the events");
        }
    }
    out
}

/// What a single poll shows of the failed signal, if anything.
fn symptom(s: &HealthSample, signal: Signal) -> Option<String> {
    let health = || {
        (s.green.unhealthy > 0).then(|| format!("green {} unhealthy target(s)", s.green.unhealthy))
    };
    let alarm = || {
        s.alarms
            .iter()
            .find(|a| a.state == "ALARM")
            .map(|a| format!("alarm {} in ALARM", a.name))
    };
    let errors = || {
        let g = s.green.error_rate()?;
        let b = s.blue.error_rate().unwrap_or(0.0);
        (g > b + SYMPTOM_ERROR_MARGIN).then(|| {
            format!(
                "green 5xx {:.1}% vs blue {:.1}% over {} requests",
                g * 100.0,
                b * 100.0,
                s.green.requests.round()
            )
        })
    };
    let latency = || {
        let pick = |c: &crate::gate::ColourSample| c.latency_p95_ms.or(c.latency_avg_ms);
        let (g, b) = (pick(&s.green)?, pick(&s.blue)?);
        (g > b * SYMPTOM_LATENCY_FACTOR)
            .then(|| format!("green latency {g:.0} ms vs blue {b:.0} ms"))
    };
    match signal {
        Signal::TargetHealth => health(),
        Signal::Alarm => alarm(),
        Signal::ErrorRate => errors(),
        Signal::Latency => latency(),
        Signal::Statistical => errors().or_else(latency),
        Signal::Smoke => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::{ColourName, Outcome};
    use crate::gate::{ColourSample, Verdict};
    use chrono::TimeZone;

    fn env(ms: i64, event: Event) -> Envelope {
        Envelope {
            ts: Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap(),
            release: "r7".into(),
            event,
        }
    }

    fn health(g_req: f64, g_err: f64) -> Event {
        let c = |req: f64, err: f64| ColourSample {
            healthy: 2,
            requests: req,
            errors_5xx: err,
            latency_p95_ms: Some(90.0),
            ..Default::default()
        };
        Event::Health {
            sample: HealthSample {
                blue: c(180.0, 0.0),
                green: c(g_req, g_err),
                alarms: vec![],
            },
            verdict: Verdict::NotEnoughData { reason: "x".into() },
            baked_s: 0.0,
            bake_s: 10.0,
        }
    }

    #[test]
    fn a_rolled_back_drill() {
        let events = vec![
            env(
                0,
                Event::ReleaseStarted {
                    app: "shop".into(),
                    environment: "rehearsal".into(),
                    version: "v2".into(),
                    production: false,
                    live: ColourName::Blue,
                    target: ColourName::Green,
                    endpoint: None,
                    region: "us-east-1".into(),
                    resumed: false,
                    rollback: false,
                },
            ),
            env(
                10_000,
                Event::WeightsChanged {
                    blue: 90,
                    green: 10,
                },
            ),
            env(11_000, health(20.0, 0.0)),
            env(12_000, health(20.0, 6.0)),
            env(
                12_500,
                Event::Blind {
                    reason: "outage".into(),
                    blind_s: 1.0,
                },
            ),
            env(13_000, health(20.0, 7.0)),
            env(
                13_100,
                Event::GateFailed {
                    index: 0,
                    weight: 10,
                    signal: Signal::ErrorRate,
                    reason:
                        "green 5xx 32.5% > blue 0.0% + margin 1.0% (floor 2.0%) over 40 requests"
                            .into(),
                },
            ),
            env(
                13_400,
                Event::WeightsChanged {
                    blue: 100,
                    green: 0,
                },
            ),
            env(
                14_000,
                Event::ReleaseFinished {
                    outcome: Outcome::RolledBack,
                    exit_code: 3,
                    message: "rolled back".into(),
                    snapshot_id: None,
                },
            ),
        ];
        let r = drill_report(&events);
        let want = "\
drill report for release r7
  outcome: rolled back (exit 3) at +14.0s: rolled back
  health polls: 3 (1 blind)
  green first took traffic (10%): +10.0s
  gate failed: 5xx rate at step 1 (green 10%): green 5xx 32.5% > blue 0.0% + margin 1.0% (floor 2.0%) over 40 requests
  first poll showing it: +12.0s (green 5xx 30.0% vs blue 0.0% over 20 requests)
  gate caught it: +13.1s, 1.1s after the first sign
  weights back at 100% blue: +13.4s (0.3s after the gate, 1.4s after the first sign)
";
        assert_eq!(r, want);
    }

    #[test]
    fn a_happy_drill_says_no_gate_failed() {
        let r = drill_report(&[env(0, health(20.0, 0.0))]);
        assert!(r.ends_with("  no gate failed\n"), "{r}");
        assert_eq!(drill_report(&[]), "drill report: no events\n");
    }

    #[test]
    fn missing_rollback_is_called_out() {
        let r = drill_report(&[
            env(0, health(20.0, 0.0)),
            env(
                1,
                Event::GateFailed {
                    index: 1,
                    weight: 25,
                    signal: Signal::TargetHealth,
                    reason: "green has 1 unhealthy target(s)".into(),
                },
            ),
        ]);
        assert!(
            r.contains("first poll showing it: none before the gate failed"),
            "{r}"
        );
        assert!(r.contains("weights back at 100% blue: NOT SEEN"), "{r}");
    }
}
