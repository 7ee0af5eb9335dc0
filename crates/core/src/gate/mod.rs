//! Health samples and gate verdicts: pure functions over what a poll observed.
//!
//! The engine feeds samples in and acts on verdicts; nothing here calls AWS.

use serde::{Deserialize, Serialize};

pub mod bake;
pub mod detect;
pub mod eprocess;
pub mod replay;
pub mod report;
pub mod sequential;
pub mod sim;
pub mod smoke;
pub mod stats;
pub mod verdict;

pub use bake::BakeClock;
pub use report::drill_report;
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

/// Judge the samples of the current step against the plan's gates: target health and
/// alarms, then (once green has `min_requests`) 5xx rate and latency thresholds, then the
/// optional rank test. See [`verdict`] for the rules.
pub fn judge(samples: &[HealthSample], cfg: &crate::plan::GateConfig) -> Verdict {
    verdict::judge(samples, cfg)
}
