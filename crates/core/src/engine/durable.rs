//! Durable events: the events a ledger record implies, computed from the record alone.
//!
//! One pure function, [`since`], turns a change of the release record (the one last
//! reported → the one just saved or read) into the events that change means. The engine
//! calls it after each save of the record (and where it changed the record in memory and
//! must say so at once, before the next save); `glidepath watch` calls it on each record it
//! polls. So watch reports exactly what the releasing run reported, in the same order.
//!
//! **Durable** (made here, never emitted any other way): `phase_started`, `phase_finished`
//! (duration = done − intent as recorded; a phase left open is finished `failed` when the
//! record says the release rolls back, ended or was interrupted), `lock_acquired` (again for
//! whoever resumed the release), `step_started`, `weights_changed` (from the record's log of
//! weight changes), `gate_waiting`, `gate_passed` and `gate_failed` (from the typed gate
//! records). [`finished`] is the `release_finished` a record's ending implies; the engine's
//! `run::end` emits its own (a `glidepath rollback` process exits with its own code) and
//! agrees with it for a release run.
//!
//! **Live only** (emitted by the engine as they happen, never in the ledger): `health`,
//! `gate_evidence`, `blind`, `progress`, `task`, `log`, `test_traffic`, `paused`/`resumed`,
//! `notice`, `warning`, and `release_started`.
//!
//! How: [`history`] lists every durable event a record implies, in release order; a later
//! record of the same release lists the earlier ones' events plus new ones. [`since`]
//! returns the events of the new list not in the old one (counted, so a repeat is new),
//! in the new list's order; events that vanished (an interruption cleared by `resume`) are
//! not taken back.

use super::event::{Event, Outcome, Phase, PhaseStatus};
use super::ledger::{GateRecord, GateVerdict, PhaseRecord, Record, WeightsSet};
use crate::plan::{GateMode, OnGateFail, Plan};
use chrono::{DateTime, Utc};

/// The event types [`history`] makes, plus `release_finished` ([`finished`]).
pub const KINDS: [&str; 9] = [
    "phase_started",
    "phase_finished",
    "lock_acquired",
    "step_started",
    "weights_changed",
    "gate_waiting",
    "gate_passed",
    "gate_failed",
    "release_finished",
];

/// The durable events `next` implies that `prev` (the record last reported; None: nothing
/// reported yet) did not.
pub fn since(plan: &Plan, prev: Option<&Record>, next: &Record) -> Vec<Event> {
    let mut old = prev.map(|r| history(plan, r)).unwrap_or_default();
    let mut new = Vec::new();
    for e in history(plan, next) {
        match old.iter().position(|o| *o == e) {
            Some(i) => {
                old.remove(i);
            }
            None => new.push(e),
        }
    }
    new
}

/// Every durable event `r` implies, in the order the release made them.
pub fn history(plan: &Plan, r: &Record) -> Vec<Event> {
    let mut out = Vec::new();
    let rb = &r.phases.rollback;
    let rolling_back = rb.intent_at.or(rb.done_at);
    // How a forward phase left open ends: the rollback took over, or the release ended.
    let forward_end = match (rolling_back, &r.rollback_reason) {
        (Some(at), reason) => Some(Closed {
            status: PhaseStatus::Failed,
            detail: format!(
                "rolling back: {}",
                reason.as_deref().unwrap_or("(no reason recorded)")
            ),
            at,
        }),
        (None, _) => ended(r),
    };
    for phase in Phase::ORDER {
        let p = r.phases.get(phase);
        let Some(started) = p.intent_at.or(p.done_at) else {
            continue;
        };
        out.push(Event::PhaseStarted { phase });
        match phase {
            Phase::Lock if p.is_done() => out.push(Event::LockAcquired {
                holder: r.holder.clone(),
            }),
            Phase::Deploy => {
                for g in r.gates.iter().filter(|g| g.phase == Phase::Deploy) {
                    gate(plan, g, &mut out);
                }
            }
            Phase::Shift => steps(plan, r, &mut out),
            _ => {}
        }
        finish(phase, p, started, forward_end.as_ref(), &mut out);
        if phase == Phase::Lock && p.is_done() {
            if let Some(by) = &r.resumed_by {
                out.push(Event::LockAcquired { holder: by.clone() });
            }
        }
    }
    if let Some(started) = rolling_back {
        out.push(Event::PhaseStarted {
            phase: Phase::Rollback,
        });
        for w in weights_log(r).iter().filter(|w| w.step.is_none()) {
            out.push(weights(w));
        }
        // A finalized release being rolled back by hand still holds its old ending.
        let end = ended(r).filter(|c| c.at >= started);
        finish(Phase::Rollback, rb, started, end.as_ref(), &mut out);
    }
    out
}

/// The `release_finished` the record's ending implies (None while it goes on). An
/// interruption (Abort) ends a run, not the release: `resume` continues it.
pub fn finished(r: &Record) -> Option<Event> {
    if let Some(outcome) = r.outcome {
        return Some(Event::ReleaseFinished {
            outcome,
            exit_code: r.exit_code.unwrap_or(crate::exit::UNEXPECTED),
            message: r.message.clone().unwrap_or_else(|| outcome.to_string()),
            snapshot_id: r.snapshot_id.clone(),
        });
    }
    r.interrupted.as_ref().map(|stop| Event::ReleaseFinished {
        outcome: Outcome::Interrupted,
        exit_code: crate::exit::code(Outcome::Interrupted, crate::exit::Cause::Interrupted),
        message: stop.message.clone(),
        snapshot_id: r.snapshot_id.clone(),
    })
}

/// How an open phase was closed, and when.
struct Closed {
    status: PhaseStatus,
    detail: String,
    at: DateTime<Utc>,
}

/// The release's ending (outcome, else an interruption) as a close of open phases.
fn ended(r: &Record) -> Option<Closed> {
    if let Some(outcome) = r.outcome {
        return Some(Closed {
            status: if outcome == Outcome::Finalized {
                PhaseStatus::Done
            } else {
                PhaseStatus::Failed
            },
            detail: r.message.clone().unwrap_or_else(|| outcome.to_string()),
            at: r.finished_at.unwrap_or(r.updated_at),
        });
    }
    r.interrupted.as_ref().map(|stop| Closed {
        status: PhaseStatus::Failed,
        detail: stop.message.clone(),
        at: stop.at,
    })
}

fn finish(
    phase: Phase,
    p: &PhaseRecord,
    started: DateTime<Utc>,
    open_end: Option<&Closed>,
    out: &mut Vec<Event>,
) {
    let (status, detail, until) = match (p.done_at, open_end) {
        (Some(done), _) => (
            p.status.unwrap_or(PhaseStatus::Done),
            p.detail.clone(),
            done,
        ),
        (None, Some(c)) => (c.status, Some(c.detail.clone()), c.at),
        (None, None) => return,
    };
    out.push(Event::PhaseFinished {
        phase,
        status,
        detail,
        duration_ms: (until - started).num_milliseconds().max(0) as u64,
    });
}

/// Each step that started: `step_started`, its weights, then its gates in record order,
/// a manual gate's wait just before its approval (or last, while it waits).
fn steps(plan: &Plan, r: &Record, out: &mut Vec<Event>) {
    let current = r.shift.step;
    let log = weights_log(r);
    for (index, step) in plan.steps.iter().enumerate() {
        let gates: Vec<&GateRecord> = r
            .gates
            .iter()
            .filter(|g| g.phase == Phase::Shift && g.index == index)
            .collect();
        let started = index < current
            || (index == current && r.shift.step_started_at.is_some())
            || !gates.is_empty();
        if !started {
            break;
        }
        out.push(Event::StepStarted {
            index,
            steps: plan.steps.len(),
            weight: step.weight,
            bake_s: step.bake.as_secs_f64(),
            manual: step.gate == GateMode::Manual,
            colour: r.target,
        });
        for w in log.iter().filter(|w| w.step == Some(index)) {
            out.push(weights(w));
        }
        for g in &gates {
            gate(plan, g, out);
        }
        let approved = gates.iter().any(|g| g.verdict == GateVerdict::Approved);
        if index == current && !approved {
            if r.shift.waiting_since.is_some() {
                out.push(waiting(plan, index, step.weight, r.shift.waiting_until));
            }
        }
    }
}

fn gate(plan: &Plan, g: &GateRecord, out: &mut Vec<Event>) {
    match g.verdict {
        GateVerdict::Passed | GateVerdict::Advanced => out.push(Event::GatePassed {
            index: g.index,
            weight: g.weight,
        }),
        GateVerdict::Failed => {
            // Records from before failures named their signal have nothing to report.
            if let Some(signal) = g.signal {
                out.push(Event::GateFailed {
                    index: g.index,
                    weight: g.weight,
                    signal,
                    reason: g.reason.clone().unwrap_or_default(),
                });
            }
        }
        GateVerdict::Approved => {
            if let Some(w) = g.waited {
                out.push(waiting(plan, g.index, g.weight, w.until));
            }
        }
    }
}

/// A manual gate waiting: how to approve it and until when.
pub fn waiting(plan: &Plan, index: usize, weight: u8, until: Option<DateTime<Utc>>) -> Event {
    let then = match plan.gates.on_fail {
        OnGateFail::Rollback => "rolls back",
        OnGateFail::Pause => "stops here (traffic stays, lock kept)",
    };
    let deadline = until.map_or(String::new(), |t| {
        format!(
            "; unapproved by {} the release {then} (gates.on_fail)",
            t.format("%Y-%m-%d %H:%M:%SZ")
        )
    });
    Event::GateWaiting {
        index,
        weight,
        reason: format!(
            "manual gate at {weight}%: approve to continue, from any terminal with `glidepath approve {} --step {}`{deadline}",
            plan.source.display(),
            index + 1
        ),
    }
}

/// The record's weight changes; a record from before the log has only its last weights,
/// taken as set by the step (or the rollback) it was in.
fn weights_log(r: &Record) -> Vec<WeightsSet> {
    if !r.weights_log.is_empty() {
        return r.weights_log.clone();
    }
    let Some(w) = r.weights else {
        return Vec::new();
    };
    let rb = &r.phases.rollback;
    let step = if rb.intent_at.or(rb.done_at).is_some() {
        None
    } else if r.shift.step_started_at.is_some() || r.shift.step == 0 {
        Some(r.shift.step)
    } else {
        Some(r.shift.step - 1)
    };
    vec![WeightsSet {
        blue: w.blue,
        green: w.green,
        step,
    }]
}

fn weights(w: &WeightsSet) -> Event {
    Event::WeightsChanged {
        blue: w.blue,
        green: w.green,
    }
}
