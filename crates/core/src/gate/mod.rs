//! Health samples and gate verdicts: pure functions over what a poll observed.
//!
//! The engine feeds samples in and acts on verdicts; nothing here calls AWS, and nothing
//! here imports `engine` (the colours and the smoke port are defined here, the engine
//! re-exports them), so the gates can be read and tested on their own.

use serde::{Deserialize, Serialize};

pub mod bake;
pub mod detect;
pub mod eprocess;
pub mod live;
pub mod sequential;
pub mod sim;
pub mod smoke;
pub mod stats;
pub mod verdict;

pub use bake::BakeClock;
pub use sequential::{Evidence, Judgement, SequentialGate};
pub use smoke::CommandSmoke;

/// What one poll saw of one colour's target group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ColourSample {
    pub healthy: u32,
    pub unhealthy: u32,
    /// Draining, initial, unused … anything that is neither healthy nor unhealthy.
    pub other: u32,
    /// Requests in the poll window.
    pub requests: f64,
    /// Target 5xx responses in the poll window.
    pub errors_5xx: f64,
    /// Load-balancer 5xx responses in the window (not blamed on a colour by default).
    pub elb_5xx: f64,
    /// Average target response time in the window, milliseconds (None: no data).
    pub latency_avg_ms: Option<f64>,
    /// p95 target response time in the window, milliseconds (None: no data).
    pub latency_p95_ms: Option<f64>,
}

impl ColourSample {
    /// 5xx rate in 0..1, None without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors_5xx / self.requests)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AlarmState {
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
}

/// One poll: both colours plus the plan's alarms.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HealthSample {
    pub blue: ColourSample,
    pub green: ColourSample,
    pub alarms: Vec<AlarmState>,
}

/// Blue or green: a colour of the listener's two target groups.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ColourName {
    Blue,
    Green,
}

impl ColourName {
    /// For serde defaults.
    pub fn green() -> ColourName {
        ColourName::Green
    }
    pub fn other(self) -> ColourName {
        match self {
            ColourName::Blue => ColourName::Green,
            ColourName::Green => ColourName::Blue,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ColourName::Blue => "blue",
            ColourName::Green => "green",
        }
    }
}

impl std::fmt::Display for ColourName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The gate's judgement of the samples so far.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// Not enough requests yet to judge: never counts as a pass.
    NotEnoughData {
        reason: String,
    },
    Fail {
        signal: Signal,
        reason: String,
    },
}

/// How people read a verdict: `pass`, `not enough data (…)`, `fail: 5xx rate: …`.
impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Pass => f.write_str("pass"),
            Verdict::NotEnoughData { reason } => write!(f, "not enough data ({reason})"),
            Verdict::Fail { signal, reason } => write!(f, "fail: {signal}: {reason}"),
        }
    }
}

/// Which signal failed a gate.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    TargetHealth,
    ErrorRate,
    Latency,
    Alarm,
    Statistical,
    Smoke,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::TargetHealth => "target health",
            Signal::ErrorRate => "5xx rate",
            Signal::Latency => "latency",
            Signal::Alarm => "alarm",
            Signal::Statistical => "statistical comparison",
            Signal::Smoke => "smoke test",
        })
    }
}

/// `text` built from an oriented sample (`green` = the colour being released, `blue` = the
/// live one) with the colours named as on the listener, for a release whose `target` is
/// `blue`: the words swap. Only free-standing words: `shop-green-5xx`, `app/green` stay.
pub fn real_colours(text: &str, target: ColourName) -> String {
    if target == ColourName::Green {
        return text.to_string();
    }
    // Inside a name (alarm, service, ARN) a colour word is part of the name.
    let joins = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || "-_./:".contains(c));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let before = out.chars().last();
        let swapped = [
            ("green", "blue"),
            ("Green", "Blue"),
            ("blue", "green"),
            ("Blue", "Green"),
        ]
        .into_iter()
        .find(|(from, _)| {
            rest.starts_with(from) && !joins(before) && !joins(rest[from.len()..].chars().next())
        });
        match swapped {
            Some((from, to)) => {
                out.push_str(to);
                rest = &rest[from.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// [`real_colours`] over a verdict's reason.
pub fn verdict_in_real_colours(v: Verdict, target: ColourName) -> Verdict {
    match v {
        Verdict::Pass => Verdict::Pass,
        Verdict::NotEnoughData { reason } => Verdict::NotEnoughData {
            reason: real_colours(&reason, target),
        },
        // Alarm names are the operator's words, colours included.
        Verdict::Fail {
            signal: Signal::Alarm,
            reason,
        } => Verdict::Fail {
            signal: Signal::Alarm,
            reason,
        },
        Verdict::Fail { signal, reason } => Verdict::Fail {
            signal,
            reason: real_colours(&reason, target),
        },
    }
}

/// Judge the samples of the current step against the plan's gates: target health and
/// alarms, then (once green has `min_requests`) 5xx rate and latency thresholds, then the
/// optional rank test. See [`verdict`] for the rules.
pub fn judge(samples: &[HealthSample], cfg: &crate::plan::GateConfig) -> Verdict {
    verdict::judge(samples, cfg)
}

#[cfg(test)]
mod tests {
    use super::ColourName::{Blue, Green};
    use super::*;

    /// One spelling for people everywhere: never the Debug names (`RolledBack`, `Fail {`).
    #[test]
    fn outcomes_verdicts_and_colours_display_as_words() {
        assert_eq!(Blue.to_string(), "blue");
        assert_eq!(Green.to_string(), "green");
        assert_eq!(Verdict::Pass.to_string(), "pass");
        let wait = Verdict::NotEnoughData {
            reason: "12 requests".into(),
        };
        assert_eq!(wait.to_string(), "not enough data (12 requests)");
        let fail = Verdict::Fail {
            signal: Signal::ErrorRate,
            reason: "green 31.0% > blue 0.2%".into(),
        };
        assert_eq!(fail.to_string(), "fail: 5xx rate: green 31.0% > blue 0.2%");
    }

    #[test]
    fn real_colours_swap_words_not_names() {
        let t = "green 5xx 31.0% > blue 0.2% over 412 requests; Green's, blue's";
        assert_eq!(real_colours(t, Green), t);
        assert_eq!(
            real_colours(t, Blue),
            "blue 5xx 31.0% > green 0.2% over 412 requests; Blue's, green's"
        );
        let named = "alarm shop-green-5xx in ALARM (service shop_blue, app/green/1, greenish)";
        assert_eq!(real_colours(named, Blue), named);
        let alarm = Verdict::Fail {
            signal: Signal::Alarm,
            reason: "alarm green 5xx in ALARM".into(),
        };
        assert_eq!(verdict_in_real_colours(alarm.clone(), Blue), alarm);
    }
}
