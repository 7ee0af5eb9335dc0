//! The line printer: one readable line per event, for CI logs and `--non-interactive`.
//!
//! [`format`] is pure (no colour, no throttling) and is also what the cockpit's event log
//! shows, so the TUI and CI logs read the same. [`Printer`] adds colour and throttles
//! progress so a snapshot does not print a hundred lines.

use super::text;
use crate::engine::event::{
    CompanionState, Envelope, Event, LiveStage, Outcome, Phase, PhaseStatus, ShardState,
};
use std::collections::HashMap;

/// How an event should catch the eye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Good,
    Attention,
    Bad,
    Quiet,
}

/// `12:04:05 snapshot  creating shop-db-1-4-0 45%` (UTC, like the JSON timestamps).
pub fn format(env: &Envelope) -> String {
    let (tag, msg) = describe(&env.event);
    format!("{} {tag:<8}  {msg}", env.ts.format("%H:%M:%S"))
}

/// The tag column and the message of one event.
pub fn describe(ev: &Event) -> (&'static str, String) {
    match ev {
        Event::ReleaseStarted {
            app,
            environment,
            version,
            production,
            live,
            target,
            endpoint,
            region,
            resumed,
            rollback,
        } => {
            let mut m = String::new();
            if *production {
                m.push_str("PRODUCTION ");
            }
            // A rollback moves traffic the other way: say it in its own direction.
            if *rollback {
                m.push_str(&format!(
                    "rolling back {app}/{environment} {version}: traffic {} → {} in {region}",
                    target.name(),
                    live.name(),
                ));
            } else {
                m.push_str(&format!(
                    "{} {app}/{environment} {version}: {} → {} in {region}",
                    if *resumed { "resuming" } else { "releasing" },
                    live.name(),
                    target.name(),
                ));
            }
            if let Some(ep) = endpoint {
                m.push_str(&format!(" (rehearsal against {ep})"));
            }
            ("release", m)
        }
        Event::LockAcquired { holder } => ("lock", format!("held by {holder}")),
        Event::PhaseStarted { phase } => (phase.name(), "started".into()),
        Event::PhaseFinished {
            phase,
            status,
            detail,
            duration_ms,
        } => {
            let d = text::duration_ms(*duration_ms);
            let mut m = match status {
                PhaseStatus::Done => format!("done in {d}"),
                PhaseStatus::Failed => format!("FAILED after {d}"),
                PhaseStatus::Skipped => "skipped".to_string(),
            };
            if let Some(detail) = detail {
                m.push_str(": ");
                m.push_str(detail);
            }
            (phase.name(), m)
        }
        Event::Progress {
            phase,
            done,
            total,
            unit,
            message,
        } => (
            phase.name(),
            text::progress(*done, *total, *unit, message.as_deref()),
        ),
        Event::Log { source, line } => ("log", format!("{source} | {line}")),
        // The statistic next to where it would fail, per signal: the evidence, not a verdict.
        Event::GateEvidence { evidence } => (
            "evidence",
            evidence
                .iter()
                .map(|e| {
                    // The summary's detail (rates, latest ratio, periods) after the numbers.
                    let detail = e.summary.find(" (").map_or("", |i| &e.summary[i..]);
                    format!("{}{detail}", text::evidence(e, "latency"))
                })
                .collect::<Vec<_>>()
                .join(" · "),
        ),
        Event::Task {
            task_arn,
            status,
            exit_code,
        } => {
            let mut m = format!("{} {status}", text::short_arn(task_arn));
            if let Some(code) = exit_code {
                m.push_str(&format!(" exit {code}"));
            }
            ("task", m)
        }
        Event::Health {
            sample,
            verdict,
            baked_s,
            bake_s,
        } => (
            "health",
            format!(
                "green {} · blue {} · {} · baked {}/{}",
                text::colour_sample(&sample.green),
                text::colour_sample(&sample.blue),
                text::verdict(verdict),
                text::duration_s(*baked_s),
                text::duration_s(*bake_s),
            ),
        ),
        Event::Blind { reason, blind_s } => (
            "health",
            format!(
                "blind for {}: {reason} (bake clock stopped)",
                text::duration_s(*blind_s)
            ),
        ),
        Event::StepStarted {
            index,
            steps,
            weight,
            bake_s,
            manual,
            colour,
        } => (
            "shift",
            format!(
                "step {}/{steps}: {} {weight}% for {}{}",
                index + 1,
                colour.name(),
                text::duration_s(*bake_s),
                if *manual {
                    ", then manual approval"
                } else {
                    ""
                }
            ),
        ),
        Event::WeightsChanged { blue, green } => {
            ("shift", format!("weights blue {blue}% / green {green}%"))
        }
        Event::TestTraffic {
            listener, colour, ..
        } => (
            "deploy",
            format!(
                "test listener {listener} forwards to {} only",
                colour.name()
            ),
        ),
        Event::GateWaiting { weight, reason, .. } => (
            "gate",
            format!("WAITING for approval at {weight}%: {reason}"),
        ),
        Event::GatePassed { weight, .. } => ("gate", format!("passed at {weight}%")),
        Event::GateFailed {
            weight,
            signal,
            reason,
            ..
        } => (
            "gate",
            format!(
                "FAILED at {weight}%: {}",
                text::signal_reason(*signal, reason)
            ),
        ),
        Event::Paused { reason } => ("pause", format!("paused: {reason}")),
        Event::Resumed => ("pause", "resumed".into()),
        Event::Notice { message } => ("note", message.clone()),
        Event::Warning { message } => ("warning", message.clone()),
        Event::ReleaseFinished {
            outcome,
            exit_code,
            message,
            snapshot_id,
        } => {
            let mut m = match outcome {
                Outcome::Finalized => format!("FINALIZED: {message}"),
                Outcome::RolledBack => format!("ROLLED BACK (exit {exit_code}): {message}"),
                Outcome::Failed => format!("FAILED (exit {exit_code}): {message}"),
                Outcome::Interrupted => format!("interrupted (exit {exit_code}): {message}"),
                Outcome::Superseded => format!("SUPERSEDED (exit {exit_code}): {message}"),
            };
            if let (Some(snap), false) = (snapshot_id, *outcome == Outcome::Finalized) {
                m.push_str(&format!("; restore point: snapshot {snap}"));
            }
            ("release", m)
        }
        Event::ReadOnlyOpened { max_s, .. } => (
            "readonly",
            format!(
                "window opened (at most {}): the app goes read-only for the migration",
                text::duration_s(*max_s)
            ),
        ),
        Event::ReadOnlyClosed {
            duration_ms,
            reason,
        } => (
            "readonly",
            format!(
                "window closed after {}, the app takes writes again: {reason}",
                text::duration_ms(*duration_ms)
            ),
        ),
        Event::ReadOnlyExitFailed { message } => (
            "readonly",
            format!("EXIT FAILED, the app may still be read-only: {message}"),
        ),
        Event::LiveWatch {
            colour,
            stage,
            verdict,
            summary,
            watched_s,
            watch_s,
            ..
        } => {
            let c = colour.name();
            let m = match (stage, verdict) {
                (_, crate::gate::Verdict::Fail { signal, reason }) => {
                    format!("live colour {c} FAILED its own check ({signal}): {reason}")
                }
                (LiveStage::Baseline, _) => summary.clone(),
                (LiveStage::Watch, _) => format!(
                    "live colour {c} after the migration: {summary} (watched {watched_s:.0}s of {watch_s:.0}s)"
                ),
                (LiveStage::Shift, _) => format!("live colour {c}: {summary}"),
            };
            ("live", m)
        }
        Event::Shard {
            index,
            shards,
            name,
            state,
            attempt,
            exit_code,
        } => {
            let again = if *attempt > 0 {
                format!(" (attempt {})", attempt + 1)
            } else {
                String::new()
            };
            let n = index + 1;
            let m = match state {
                ShardState::Started => format!("migrating shard {n}/{shards}: {name}{again}"),
                ShardState::Done => format!("shard {n}/{shards} {name} done"),
                ShardState::Failed => format!(
                    "shard {n}/{shards} {name} FAILED ({})",
                    exit_code.map_or("no exit code".to_string(), |c| format!("exit code {c}"))
                ),
            };
            ("migrate", m)
        }
        Event::Companion {
            index,
            companions,
            name,
            service,
            state,
            task_definition,
            reason,
        } => {
            let n = index + 1;
            let td = task_definition.as_deref().unwrap_or("?");
            let m = match state {
                CompanionState::Started => {
                    format!("companion {n}/{companions}: {name} ({service}) rolling out the new version")
                }
                CompanionState::Done => format!("companion {n}/{companions}: {name} runs {td}"),
                CompanionState::Failed => format!(
                    "companion {n}/{companions}: {name} rollout FAILED: {}",
                    reason.as_deref().unwrap_or("no reason recorded")
                ),
                CompanionState::RollingBack => {
                    format!("companion {n}/{companions}: {name} ({service}) going back to {td}")
                }
                CompanionState::RolledBack => {
                    format!("companion {n}/{companions}: {name} back on {td}")
                }
            };
            ("companion", m)
        }
    }
}

/// How loudly to show an event.
pub fn severity(ev: &Event) -> Severity {
    use crate::gate::Verdict;
    match ev {
        Event::PhaseFinished { status, .. } => match status {
            PhaseStatus::Done => Severity::Good,
            PhaseStatus::Failed => Severity::Bad,
            PhaseStatus::Skipped => Severity::Quiet,
        },
        Event::ReleaseFinished { outcome, .. } => match outcome {
            Outcome::Finalized => Severity::Good,
            Outcome::Interrupted | Outcome::Superseded => Severity::Attention,
            Outcome::RolledBack | Outcome::Failed => Severity::Bad,
        },
        Event::Health { verdict, .. } => match verdict {
            Verdict::Fail { .. } => Severity::Bad,
            _ => Severity::Quiet,
        },
        Event::GateFailed { .. } | Event::ReadOnlyExitFailed { .. } => Severity::Bad,
        Event::ReadOnlyOpened { .. } => Severity::Attention,
        Event::ReadOnlyClosed { .. } => Severity::Good,
        Event::Shard { state, .. } => match state {
            ShardState::Failed => Severity::Bad,
            ShardState::Done => Severity::Good,
            ShardState::Started => Severity::Info,
        },
        Event::Companion { state, .. } => match state {
            CompanionState::Failed => Severity::Bad,
            CompanionState::Done => Severity::Good,
            CompanionState::RolledBack => Severity::Attention,
            CompanionState::Started | CompanionState::RollingBack => Severity::Info,
        },
        Event::LiveWatch { verdict, .. } => match verdict {
            Verdict::Fail { .. } => Severity::Bad,
            _ => Severity::Quiet,
        },
        Event::GatePassed { .. } => Severity::Good,
        Event::GateWaiting { .. }
        | Event::Paused { .. }
        | Event::Blind { .. }
        | Event::Warning { .. } => Severity::Attention,
        Event::Log { .. } | Event::Progress { .. } => Severity::Quiet,
        _ => Severity::Info,
    }
}

/// Lines for a terminal or a CI log: colour (when enabled) and progress throttling.
pub struct Printer {
    colour: bool,
    /// Last printed progress decile per phase (None: printed once without a total).
    last_progress: HashMap<Phase, Option<u64>>,
}

impl Printer {
    pub fn new(colour: bool) -> Self {
        Printer {
            colour,
            last_progress: HashMap::new(),
        }
    }

    /// The line to print for this event, or None when it is throttled.
    pub fn line(&mut self, env: &Envelope) -> Option<String> {
        match &env.event {
            Event::Progress {
                phase,
                done,
                total,
                unit,
                ..
            } => {
                // Print a phase's progress at each 10% step and at completion only.
                let decile = text::progress_percent(*done, *total, *unit).map(|p| p / 10);
                let complete = *total > 0 && done >= total;
                let seen = self.last_progress.get(phase);
                let fresh = match (seen, decile) {
                    (None, _) => true,
                    (Some(Some(prev)), Some(d)) => d > *prev,
                    (Some(_), _) => false,
                };
                if !fresh && !complete {
                    return None;
                }
                if complete && seen == Some(&Some(10)) {
                    return None;
                }
                self.last_progress.insert(*phase, decile);
            }
            Event::PhaseStarted { phase } | Event::PhaseFinished { phase, .. } => {
                self.last_progress.remove(phase);
            }
            _ => {}
        }
        let plain = format(env);
        if !self.colour {
            return Some(plain);
        }
        let code = match severity(&env.event) {
            Severity::Good => "32",
            Severity::Bad => "1;31",
            Severity::Attention => "33",
            Severity::Quiet => "2",
            Severity::Info => return Some(plain),
        };
        Some(format!("\x1b[{code}m{plain}\x1b[0m"))
    }
}
