//! Small text helpers shared by the line printer and the cockpit, so both say the same
//! thing the same way.

use crate::engine::event::Unit;
use crate::gate::{ColourSample, Evidence, Signal, Verdict};

/// `0.4s`, `12s`, `3m05s`, `1h02m`.
pub fn duration_ms(ms: u64) -> String {
    let secs = ms / 1000;
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// Whole seconds as a short duration (`45s`, `2m00s`).
pub fn duration_s(secs: f64) -> String {
    duration_ms((secs.max(0.0) * 1000.0).round() as u64)
}

/// `HH:MM:SS` of an elapsed time.
pub fn clock(secs: i64) -> String {
    let s = secs.max(0);
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// Percent of done/total (0 without a total).
pub fn percent(done: u64, total: u64) -> u64 {
    (done.min(total) * 100).checked_div(total).unwrap_or(0)
}

/// `creating snap-1 45%`, `12/40 files (30%)`, `3 tasks`.
pub fn progress(done: u64, total: u64, unit: Unit, message: Option<&str>) -> String {
    let amount = match unit {
        Unit::Percent => format!("{done}%"),
        _ if total > 0 => format!("{done}/{total} {unit} ({}%)", percent(done, total)),
        _ => format!("{done} {unit}"),
    };
    match message {
        Some(m) if !m.is_empty() => format!("{m} {amount}"),
        _ => amount,
    }
}

/// Percent complete of a progress report, whatever its unit.
pub fn progress_percent(done: u64, total: u64, unit: Unit) -> Option<u64> {
    match unit {
        Unit::Percent => Some(done.min(100)),
        _ if total > 0 => Some(percent(done, total)),
        _ => None,
    }
}

/// The signal's name in front of the reason, unless the reason already starts with it
/// (gate reasons usually read `5xx rate 31.0% vs blue 0.2% …`).
pub fn signal_reason(signal: Signal, reason: &str) -> String {
    let name = signal.to_string();
    if reason.to_lowercase().starts_with(&name) {
        reason.to_string()
    } else {
        format!("{name}: {reason}")
    }
}

pub fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Pass => "pass".into(),
        Verdict::NotEnoughData { reason } => format!("not enough data ({reason})"),
        Verdict::Fail { signal, reason } => format!("FAIL {}", signal_reason(*signal, reason)),
    }
}

/// One signal's evidence against where it fails the gate: `5xx 14 / 222 needed`
/// (`latency` names the plan's latency statistic, e.g. `p95`).
pub fn evidence(e: &Evidence, latency: &str) -> String {
    let name = match e.signal {
        Signal::ErrorRate => "5xx",
        Signal::Latency => latency,
        other => return format!("{other} {}", number(e.statistic)),
    };
    format!(
        "{name} {} / {} needed",
        number(e.statistic),
        number(e.threshold)
    )
}

/// A statistic in a few digits: `0.31`, `14`, `2.4e5`.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x >= 1e5 {
        format!("{x:.1e}")
    } else if x >= 10.0 {
        format!("{x:.0}")
    } else if x >= 0.01 {
        format!("{x:.2}")
    } else {
        "<0.01".into()
    }
}

/// A 0..1 rate as `0.2%`.
pub fn rate(r: f64) -> String {
    format!("{:.1}%", r * 100.0)
}

/// Milliseconds as `120ms` / `1.3s`.
pub fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

/// One colour's poll in a few words: `3/3 healthy, 5xx 0.3% of 812, p95 120ms`.
pub fn colour_sample(s: &ColourSample) -> String {
    let total = s.healthy + s.unhealthy + s.other;
    let mut out = format!("{}/{} healthy", s.healthy, total);
    if s.unhealthy > 0 {
        out.push_str(&format!(" {} UNHEALTHY", s.unhealthy));
    }
    match s.error_rate() {
        Some(r) => out.push_str(&format!(", 5xx {} of {:.0}", rate(r), s.requests)),
        None => out.push_str(", no requests"),
    }
    if let Some(p) = s.latency_p95_ms {
        out.push_str(&format!(", p95 {}", millis(p)));
    } else if let Some(a) = s.latency_avg_ms {
        out.push_str(&format!(", avg {}", millis(a)));
    }
    out
}

/// The readable tail of an ARN (`…/task/cluster/7f3a` → `7f3a`).
pub fn short_arn(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(400), "0.4s");
        assert_eq!(duration_ms(12_300), "12s");
        assert_eq!(duration_ms(185_000), "3m05s");
        assert_eq!(duration_ms(3_720_000), "1h02m");
        assert_eq!(clock(3725), "01:02:05");
    }

    #[test]
    fn progress_by_unit() {
        assert_eq!(
            progress(45, 100, Unit::Percent, Some("creating snap")),
            "creating snap 45%"
        );
        assert_eq!(progress(12, 40, Unit::Files, None), "12/40 files (30%)");
        assert_eq!(progress(3, 0, Unit::Tasks, None), "3 tasks");
        assert_eq!(progress_percent(3, 0, Unit::Tasks), None);
        assert_eq!(progress(12, 30, Unit::Seconds, None), "12/30 s (40%)");
    }

    #[test]
    fn signal_is_not_repeated() {
        assert_eq!(
            signal_reason(Signal::ErrorRate, "5xx rate 31.0% vs blue 0.2%"),
            "5xx rate 31.0% vs blue 0.2%"
        );
        assert_eq!(
            signal_reason(Signal::Alarm, "api-5xx is in ALARM"),
            "alarm: api-5xx is in ALARM"
        );
    }

    #[test]
    fn arn_tail() {
        assert_eq!(short_arn("arn:aws:ecs:eu-west-1:1:task/c/7f3a"), "7f3a");
        assert_eq!(short_arn("plain"), "plain");
    }
}
