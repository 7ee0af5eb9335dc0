//! Replay a recorded release (`--output json` events) through a plan's gates: what would
//! these gate settings have decided on that traffic? This is how a team tunes `alpha` and
//! the tolerances on its own past releases (`glidepath gate replay`).
//!
//! Each `health` event is one judged period (plus the odd poll that failed target health
//! or an alarm); they are fed, in order, to a gate built from the plan, the step taken from
//! the last `step_started`. Samples are oriented so that `green` is the colour released
//! (from `release_started`; blue → green when the recording has none). Judging stops at
//! the first failure: the release would have rolled back there, so later periods are
//! traffic it would never have seen.

use crate::engine::event::{ColourName, Envelope, Event, Outcome};
use crate::gate::sequential::{Evidence, SequentialGate};
use crate::gate::{HealthSample, Signal, Verdict};
use crate::plan::{JudgeMode, Plan};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A line that cannot be replayed (or a file with nothing to replay: `line` None).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ReplayError {
    /// 1-based line number.
    pub line: Option<usize>,
    pub message: String,
}

impl ReplayError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        ReplayError {
            line: Some(line),
            message: message.into(),
        }
    }
}

/// Where the gate first failed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    /// 0-based step index (the text report says `step index + 1`).
    pub step: usize,
    pub weight: u8,
    /// 1-based period within the step.
    pub period: u32,
    /// Line of the `health` event that failed.
    pub line: usize,
    pub ts: DateTime<Utc>,
    pub signal: Signal,
    pub reason: String,
}

/// One step of the replay.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepReport {
    /// 0-based, as in `step_started`.
    pub index: usize,
    pub weight: u8,
    /// Periods judged in this step.
    pub periods: u32,
    /// Requests the released colour served in the judged periods.
    pub new_requests: f64,
    /// The verdict after the last judged period (None: no period judged).
    pub verdict: Option<Verdict>,
    /// The sequential gate's evidence after the last judged period (statistic vs
    /// threshold); empty in threshold mode.
    pub evidence: Vec<Evidence>,
    pub failure: Option<Failure>,
    /// Periods after the failure that were not judged (the release would have rolled back).
    pub skipped: u32,
}

/// What the recording itself says happened, for comparison.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recorded {
    /// The first `gate_failed` of the recording: (step index, signal).
    pub gate_failed: Option<(usize, Signal)>,
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayReport {
    pub release: Option<String>,
    pub live: ColourName,
    pub target: ColourName,
    pub mode: JudgeMode,
    pub alpha: f64,
    pub steps: Vec<StepReport>,
    /// The first failure, if the gate would have rolled the release back.
    pub failure: Option<Failure>,
    pub recorded: Recorded,
    /// Things worth knowing about the recording (plan and recording disagree, …).
    pub notes: Vec<String>,
}

impl ReplayReport {
    /// Would these gates have rolled the release back?
    pub fn rolled_back(&self) -> bool {
        self.failure.is_some()
    }
}

/// The judge of the plan's `gates.mode`.
enum Gate {
    Sequential(Box<SequentialGate>),
    /// The threshold gate re-judges every sample of the step so far.
    Threshold(Vec<HealthSample>),
}

/// Event types replay reads; any other type is skipped without parsing its fields, so a
/// recording from a newer glidepath still replays.
const READ: [&str; 6] = [
    "release_started",
    "step_started",
    "weights_changed",
    "health",
    "gate_failed",
    "release_finished",
];

/// Replay `text` (JSON Lines) through `plan`'s gates.
pub fn replay(plan: &Plan, text: &str) -> Result<ReplayReport, ReplayError> {
    let gates = &plan.gates;
    let plan_steps = plan.steps.len().max(1);
    let mode = gates.sequential.mode;
    let mut gate = match mode {
        JudgeMode::Sequential => Gate::Sequential(Box::new(SequentialGate::new(gates, plan_steps))),
        JudgeMode::Threshold => Gate::Threshold(Vec::new()),
    };
    let mut report = ReplayReport {
        release: None,
        live: ColourName::Blue,
        target: ColourName::Green,
        mode,
        alpha: gates.sequential.alpha,
        steps: Vec::new(),
        failure: None,
        recorded: Recorded {
            gate_failed: None,
            outcome: None,
        },
        notes: Vec::new(),
    };
    let mut events = 0usize;
    let mut healths = 0usize;
    let mut before_steps = 0u32;
    let mut told_steps = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let Some(env) = parse_line(line, raw)? else {
            events += 1;
            continue;
        };
        events += 1;
        match &report.release {
            None => report.release = Some(env.release.clone()),
            Some(r) if *r != env.release => {
                return Err(ReplayError::at(
                    line,
                    format!(
                        "event of release `{}` after events of release `{r}`; replay one release at a time",
                        env.release
                    ),
                ))
            }
            Some(_) => {}
        }
        match env.event {
            Event::ReleaseStarted { live, target, .. } => {
                if live == target {
                    return Err(ReplayError::at(
                        line,
                        format!("release_started has live and target both {}", live.name()),
                    ));
                }
                report.live = live;
                report.target = target;
            }
            Event::StepStarted {
                index,
                steps,
                weight,
                ..
            } => {
                if steps != plan.steps.len() && !told_steps {
                    told_steps = true;
                    report.notes.push(format!(
                        "the recording has {steps} steps, the plan {}; the gate's budget is split over the plan's",
                        plan.steps.len()
                    ));
                }
                // A resumed release restarts its current step: keep one report per step.
                if report.steps.last().map(|s| s.index) != Some(index) {
                    report.steps.push(StepReport {
                        index,
                        weight,
                        periods: 0,
                        new_requests: 0.0,
                        verdict: None,
                        evidence: Vec::new(),
                        failure: None,
                        skipped: 0,
                    });
                    if let Gate::Threshold(samples) = &mut gate {
                        samples.clear();
                    }
                }
            }
            Event::WeightsChanged { .. } => {}
            Event::Health { sample, .. } => {
                healths += 1;
                let failed = report.failure.is_some();
                let Some(step) = report.steps.last_mut() else {
                    before_steps += 1;
                    continue;
                };
                if failed {
                    step.skipped += 1;
                    continue;
                }
                let s = oriented(&sample, report.target);
                step.periods += 1;
                step.new_requests += s.green.requests.max(0.0);
                let (verdict, evidence) = match &mut gate {
                    Gate::Sequential(g) => {
                        let j = g.observe(step.index, &s);
                        (j.verdict, j.evidence)
                    }
                    Gate::Threshold(samples) => {
                        samples.push(s);
                        (crate::gate::judge(samples, gates), Vec::new())
                    }
                };
                if let Verdict::Fail { signal, reason } = &verdict {
                    let f = Failure {
                        step: step.index,
                        weight: step.weight,
                        period: step.periods,
                        line,
                        ts: env.ts,
                        signal: *signal,
                        reason: reason.clone(),
                    };
                    step.failure = Some(f.clone());
                    report.failure = Some(f);
                }
                step.verdict = Some(verdict);
                step.evidence = evidence;
            }
            Event::GateFailed { index, signal, .. } => {
                report.recorded.gate_failed.get_or_insert((index, signal));
            }
            Event::ReleaseFinished { outcome, .. } => report.recorded.outcome = Some(outcome),
            _ => {}
        }
    }
    if events == 0 {
        return Err(ReplayError {
            line: None,
            message: "no events: the file is empty (record one with `--output json`)".into(),
        });
    }
    if healths == 0 {
        return Err(ReplayError {
            line: None,
            message: format!(
                "{events} events but no `health` event: nothing to judge (the recording must reach the shift phase)"
            ),
        });
    }
    if before_steps > 0 {
        report.notes.push(format!(
            "{before_steps} health events before any step_started were not judged"
        ));
    }
    Ok(report)
}

/// One line as an envelope, or None for an event type replay does not read.
fn parse_line(line: usize, raw: &str) -> Result<Option<Envelope>, ReplayError> {
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| ReplayError::at(line, format!("not JSON: {e}")))?;
    let kind = match value.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(_) => return Err(ReplayError::at(line, "`type` is not a string")),
        None if value.is_object() => {
            return Err(ReplayError::at(line, "no `type`: not a glidepath event"))
        }
        None => return Err(ReplayError::at(line, "not a JSON object")),
    };
    if !READ.contains(&kind.as_str()) {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| ReplayError::at(line, format!("bad `{kind}` event: {e}")))
}

/// `green` is the colour being released (the engine orients the same way).
fn oriented(s: &HealthSample, target: ColourName) -> HealthSample {
    match target {
        ColourName::Green => s.clone(),
        ColourName::Blue => HealthSample {
            blue: s.green.clone(),
            green: s.blue.clone(),
            alarms: s.alarms.clone(),
        },
    }
}

/// The report as text, one step a line (with its evidence below), then the conclusion.
pub fn render_text(r: &ReplayReport, plan_name: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mode = match r.mode {
        JudgeMode::Sequential => format!("sequential, alpha {}", r.alpha),
        JudgeMode::Threshold => "threshold".into(),
    };
    let _ = writeln!(
        out,
        "replay of release {} ({} → {}) through the gates of {plan_name} ({mode})",
        r.release.as_deref().unwrap_or("?"),
        r.live.name(),
        r.target.name()
    );
    for s in &r.steps {
        let verdict = match (&s.failure, &s.verdict) {
            (Some(f), _) => format!(
                "FAIL at period {} (line {}): {}: {}",
                f.period, f.line, f.signal, f.reason
            ),
            (None, Some(v)) => v.to_string(),
            (None, None) => "no period judged".into(),
        };
        let _ = writeln!(
            out,
            "step {} at {}%: {} periods, {} {} requests: {verdict}",
            s.index + 1,
            s.weight,
            s.periods,
            s.new_requests.round(),
            r.target.name()
        );
        for e in &s.evidence {
            let _ = writeln!(out, "  {}", e.summary);
        }
        if s.skipped > 0 {
            let _ = writeln!(
                out,
                "  {} later periods not judged (the release would have rolled back)",
                s.skipped
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let recorded = match (&r.recorded.gate_failed, r.recorded.outcome) {
        (Some((step, signal)), _) => format!(
            "the recorded release failed its gate at step {} ({signal})",
            step + 1
        ),
        (None, Some(o)) => format!("the recorded release {o}"),
        (None, None) => "the recording has no ending".into(),
    };
    match &r.failure {
        Some(f) => {
            let _ = writeln!(
                out,
                "would have rolled back: step {} at {}%, period {} (line {}, {}): {}; {recorded}",
                f.step + 1,
                f.weight,
                f.period,
                f.line,
                f.ts.format("%H:%M:%SZ"),
                f.signal
            );
        }
        None => {
            // A recording cut short (or settings that want more data) ends mid-step.
            let open = r
                .steps
                .last()
                .is_some_and(|s| !matches!(s.verdict, Some(Verdict::Pass)));
            let word = if open {
                "would not have rolled back (the last step had not passed yet)"
            } else {
                "would have passed"
            };
            let _ = writeln!(out, "{word}; {recorded}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::ColourSample;
    use chrono::TimeZone;

    fn plan() -> Plan {
        let text = include_str!("../../../../examples/rehearsal.toml");
        match crate::plan::parse(text, std::path::Path::new("examples/rehearsal.toml")) {
            Ok(p) => p,
            Err(e) => panic!("example plan: {e}"),
        }
    }

    fn colour(requests: f64, errors: f64, ms: f64) -> ColourSample {
        ColourSample {
            healthy: 2,
            requests,
            errors_5xx: errors,
            latency_avg_ms: Some(ms),
            latency_p95_ms: Some(ms * 2.5),
            ..ColourSample::default()
        }
    }

    fn line(n: i64, event: Event) -> String {
        let env = Envelope {
            ts: Utc
                .timestamp_opt(1_700_000_000 + n, 0)
                .single()
                .expect("ts"),
            release: "r1".into(),
            event,
        };
        serde_json::to_string(&env).expect("serialize")
    }

    /// A release of the example plan's steps (10, 50, 100 %) at 200 req/period; `green_err`
    /// gives the released colour's 5xx share at each step. `target` is the released colour.
    fn recording(target: ColourName, green_err: [f64; 3]) -> String {
        let mut out = vec![
            r#"{"ts":"2023-11-14T22:13:20Z","release":"r1","type":"lock_acquired","holder":"me"}"#
                .to_string(),
            r#"{"ts":"2023-11-14T22:13:20Z","release":"r1","type":"something_new","x":1}"#
                .to_string(),
            line(
                0,
                Event::ReleaseStarted {
                    app: "shop".into(),
                    environment: "rehearsal".into(),
                    version: "v2".into(),
                    production: false,
                    live: target.other(),
                    target,
                    endpoint: None,
                    region: "us-east-1".into(),
                    resumed: false,
                    rollback: false,
                },
            ),
        ];
        let mut t = 1;
        for (index, (weight, err)) in [10u8, 50, 100].into_iter().zip(green_err).enumerate() {
            out.push(line(
                t,
                Event::StepStarted {
                    index,
                    steps: 3,
                    weight,
                    bake_s: 3.0,
                    manual: false,
                    colour: target,
                },
            ));
            for p in 0..20 {
                t += 1;
                let new_n = 2.0 * f64::from(weight);
                let live_n = 200.0 - new_n;
                // A live 0.5 % and a new colour at `err`, spread evenly.
                let live_e = if p % 2 == 0 {
                    (live_n * 0.01).round()
                } else {
                    0.0
                };
                let new_e = (new_n * err).round();
                let (new, live) = (colour(new_n, new_e, 40.0), colour(live_n, live_e, 40.0));
                let (blue, green) = match target {
                    ColourName::Green => (live, new),
                    ColourName::Blue => (new, live),
                };
                out.push(line(
                    t,
                    Event::Health {
                        sample: HealthSample {
                            blue,
                            green,
                            alarms: Vec::new(),
                        },
                        verdict: Verdict::Pass,
                        baked_s: 1.0,
                        bake_s: 3.0,
                    },
                ));
            }
        }
        out.join("\n")
    }

    #[test]
    fn a_healthy_recording_passes() {
        let r = replay(&plan(), &recording(ColourName::Green, [0.0; 3])).expect("replays");
        assert!(!r.rolled_back(), "{}", render_text(&r, "p"));
        assert_eq!(r.steps.len(), 3);
        assert!(r.steps.iter().all(|s| s.periods == 20));
        assert_eq!(
            r.steps[0].evidence.len(),
            2,
            "statistic vs threshold per signal"
        );
        let text = render_text(&r, "examples/rehearsal.toml");
        assert!(text.contains("step 2 at 50%: 20 periods"), "{text}");
        assert!(text.contains("would have passed"), "{text}");
    }

    #[test]
    fn a_5xx_fault_fails_on_its_step_with_error_rate() {
        let r = replay(&plan(), &recording(ColourName::Green, [0.0, 0.05, 0.05])).expect("replays");
        let f = r.failure.clone().expect("rolled back");
        assert_eq!(f.signal, Signal::ErrorRate);
        assert_eq!(f.step, 1, "{}", render_text(&r, "p"));
        assert!(r.steps[0].failure.is_none());
        assert!(r.steps[2].periods == 0 && r.steps[2].skipped == 20);
        let text = render_text(&r, "p");
        assert!(
            text.contains("would have rolled back: step 2 at 50%"),
            "{text}"
        );
    }

    #[test]
    fn orientation_follows_release_started() {
        // Blue released: its 5xx is the fault, green's history is the live colour's.
        let r = replay(&plan(), &recording(ColourName::Blue, [0.0, 0.05, 0.05])).expect("replays");
        assert_eq!(r.target, ColourName::Blue);
        assert_eq!(r.failure.map(|f| f.step), Some(1));
        let r = replay(&plan(), &recording(ColourName::Blue, [0.0; 3])).expect("replays");
        assert!(!r.rolled_back());
    }

    #[test]
    fn threshold_mode_judges_each_steps_samples() {
        let mut p = plan();
        p.gates.sequential.mode = JudgeMode::Threshold;
        let r = replay(&p, &recording(ColourName::Green, [0.0, 0.05, 0.05])).expect("replays");
        assert_eq!(
            r.failure.map(|f| (f.step, f.signal)),
            Some((1, Signal::ErrorRate))
        );
        assert!(r.steps[0].evidence.is_empty());
    }

    #[test]
    fn a_malformed_line_names_its_number() {
        let mut lines: Vec<String> = recording(ColourName::Green, [0.0; 3])
            .lines()
            .map(String::from)
            .collect();
        lines[6] = "{\"ts\":\"2023-11-14T22:13:20Z\",\"release\":\"r1\",\"type\":\"health\"".into();
        let e = replay(&plan(), &lines.join("\n")).expect_err("malformed");
        assert_eq!(e.line, Some(7));
        assert!(e.to_string().starts_with("line 7: not JSON"), "{e}");
        lines[6] =
            r#"{"ts":"2023-11-14T22:13:20Z","release":"r1","type":"health","verdict":"pass"}"#
                .into();
        let e = replay(&plan(), &lines.join("\n")).expect_err("missing sample");
        assert_eq!(e.line, Some(7));
        assert!(e.message.contains("bad `health` event"), "{e}");
        lines[6] = "[1, 2]".into();
        let e = replay(&plan(), &lines.join("\n")).expect_err("array");
        assert_eq!(e.to_string(), "line 7: not a JSON object");
    }

    #[test]
    fn an_empty_file_or_one_without_health_is_a_clear_error() {
        let e = replay(&plan(), "").expect_err("empty");
        assert_eq!(e.line, None);
        assert!(e.message.contains("empty"), "{e}");
        let e = replay(&plan(), "\n  \n").expect_err("blank");
        assert!(e.message.contains("empty"), "{e}");
        let only_start = recording(ColourName::Green, [0.0; 3])
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n");
        let e = replay(&plan(), &only_start).expect_err("no health");
        assert!(e.message.contains("no `health` event"), "{e}");
    }

    #[test]
    fn two_releases_in_one_file_are_refused() {
        let a = recording(ColourName::Green, [0.0; 3]);
        let b = a.replace("\"r1\"", "\"r2\"");
        let e = replay(&plan(), &format!("{a}\n{b}")).expect_err("two releases");
        // The second recording's first event replay reads is its release_started (line 3).
        assert_eq!(e.line, Some(a.lines().count() + 3));
        assert!(e.message.contains("one release at a time"), "{e}");
    }
}
