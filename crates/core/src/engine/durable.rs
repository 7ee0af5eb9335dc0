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
//! whoever resumed the release), `read_only_opened`, `read_only_closed` and
//! `read_only_exit_failed` (from the record's windows, inside the migrate phase), `shard`
//! (each shard of a sharded migration), `companion` (each companion service's rollout, in
//! the phase the plan moves them in, and its way back inside the rollback), `step_started`,
//! `weights_changed` (from the record's log of weight changes), the lock phase of a
//! `glidepath rollback` of the finalized release (its `undo_lock`, before that rollback's
//! phase), `gate_waiting`, `gate_passed` and `gate_failed` (from the typed gate
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

use super::event::{CompanionState, Event, Outcome, Phase, PhaseStatus, ShardState};
use super::ledger::{GateRecord, GateVerdict, PhaseRecord, Record, WeightsSet};
use crate::plan::{CompanionsMove, GateMode, OnGateFail, Plan};
use chrono::{DateTime, Utc};

/// The event types [`history`] makes, plus `release_finished` ([`finished`]).
pub const KINDS: [&str; 14] = [
    "phase_started",
    "phase_finished",
    "lock_acquired",
    "read_only_opened",
    "read_only_closed",
    "read_only_exit_failed",
    "shard",
    "companion",
    "step_started",
    "weights_changed",
    "gate_waiting",
    "gate_passed",
    "gate_failed",
    "release_finished",
];

/// The durable events `next` implies that `prev` (the record last reported; None: nothing
/// reported yet) did not.
///
/// In the record's history the takeover's `lock_acquired` sits in the lock phase (where a
/// resumed run and a new watcher tell it). A watcher already past the lock phase can read,
/// in one poll, events the killed run made and then the takeover: it tells the takeover
/// after the events the record held when it was taken over (`resumed_after`), as it
/// happened.
pub fn since(plan: &Plan, prev: Option<&Record>, next: &Record) -> Vec<Event> {
    let mut old = prev.map(|r| history(plan, r)).unwrap_or_default();
    let mut new: Vec<(usize, Event)> = Vec::new();
    for (at, e) in history(plan, next).into_iter().enumerate() {
        match old.iter().position(|o| *o == e) {
            Some(i) => {
                old.remove(i);
            }
            None => new.push((at, e)),
        }
    }
    let taken_over = prev.is_some_and(|p| p.resumed_at != next.resumed_at);
    if let (true, Some(after), Some(by)) = (taken_over, next.resumed_after, &next.resumed_by) {
        let takeover = new
            .iter()
            .position(|(_, e)| matches!(e, Event::LockAcquired { holder } if holder == by));
        if let Some(i) = takeover {
            let (at, e) = new.remove(i);
            // Counted without the takeover's own event, as `before_takeover` counts.
            let later = new
                .iter()
                .position(|(pos, _)| pos - usize::from(*pos > at) >= after)
                .unwrap_or(new.len());
            new.insert(later, (at, e));
        }
    }
    new.into_iter().map(|(_, e)| e).collect()
}

/// How many durable events `r` implies without a takeover's `lock_acquired`: recorded when
/// a run takes the release over (`resumed_after`).
pub fn before_takeover(plan: &Plan, r: &Record) -> usize {
    let mut plain = r.clone();
    plain.resumed_by = None;
    history(plan, &plain).len()
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
            Phase::Lock if p.is_done() => {
                out.push(Event::LockAcquired {
                    holder: r.holder.clone(),
                });
                if let Some(by) = &r.resumed_by {
                    out.push(Event::LockAcquired { holder: by.clone() });
                }
            }
            Phase::Migrate => {
                windows(r, &mut out);
                shards(plan, r, &mut out);
            }
            Phase::Deploy => {
                for g in r.gates.iter().filter(|g| g.phase == Phase::Deploy) {
                    gate(plan, g, &mut out);
                }
            }
            Phase::Shift => {
                if plan.companions_move == CompanionsMove::BeforeShift {
                    companions(plan, r, &mut out);
                }
                steps(plan, r, &mut out);
            }
            Phase::Finalize if plan.companions_move == CompanionsMove::AtFinalize => {
                companions(plan, r, &mut out)
            }
            _ => {}
        }
        finish(phase, p, started, forward_end.as_ref(), &mut out);
    }
    // A `glidepath rollback` of the finalized release: its own lock phase, then its rollback.
    if let Some(l) = &r.undo_lock {
        out.push(Event::PhaseStarted { phase: Phase::Lock });
        out.push(Event::LockAcquired {
            holder: l.holder.clone(),
        });
        out.push(Event::PhaseFinished {
            phase: Phase::Lock,
            status: PhaseStatus::Done,
            detail: Some(format!("held by {}", l.holder)),
            duration_ms: (l.done_at - l.intent_at).num_milliseconds().max(0) as u64,
        });
    }
    if let Some(started) = rolling_back {
        out.push(Event::PhaseStarted {
            phase: Phase::Rollback,
        });
        for w in weights_log(r).iter().filter(|w| w.step.is_none()) {
            out.push(weights(w));
        }
        companions_back(plan, r, &mut out);
        // A finalized release being rolled back by hand still holds its old ending.
        let end = ended(r).filter(|c| c.at >= started);
        finish(Phase::Rollback, rb, started, end.as_ref(), &mut out);
    }
    out
}

/// The `release_finished` the record's ending implies (None while it goes on, including a
/// finalized release while a `glidepath rollback` of it is under way). An interruption
/// (Abort) ends a run, not the release: `resume` continues it.
pub fn finished(r: &Record) -> Option<Event> {
    // Finalized, and now being rolled back by hand: it ends when that rollback does.
    if r.undoing_finalize() {
        return None;
    }
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
        exit_code: crate::exit::code(
            Outcome::Interrupted,
            stop.cause.unwrap_or(crate::exit::Cause::Interrupted),
        ),
        message: stop.message.clone(),
        snapshot_id: r.snapshot_id.clone(),
    })
}

/// The read-only windows (inside the migrate phase): opened, then closed or its `exit`
/// failing while it is still open.
fn windows(r: &Record, out: &mut Vec<Event>) {
    for w in &r.read_only {
        out.push(Event::ReadOnlyOpened {
            opened_at: w.opened_at,
            max_s: w.max_s,
        });
        match (w.closed_at, &w.exit_failed) {
            (Some(closed), _) => out.push(Event::ReadOnlyClosed {
                duration_ms: (closed - w.opened_at).num_milliseconds().max(0) as u64,
                reason: w.reason.clone().unwrap_or_default(),
            }),
            (None, Some(message)) => out.push(Event::ReadOnlyExitFailed {
                message: message.clone(),
            }),
            (None, None) => {}
        }
    }
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

/// Each shard the record names, in the order they ran: started, then done or failed (a
/// shard tried again after a failure starts again with its next attempt).
fn shards(plan: &Plan, r: &Record, out: &mut Vec<Event>) {
    let planned = plan.migration.as_ref().map_or(&[][..], |m| &m.shards[..]);
    let total = planned.len().max(r.shards.len());
    for (i, s) in r.shards.iter().enumerate() {
        let index = planned.iter().position(|n| *n == s.name).unwrap_or(i);
        let event = |state, exit_code| Event::Shard {
            index,
            shards: total,
            name: s.name.clone(),
            state,
            attempt: s.attempt,
            exit_code,
        };
        out.push(event(ShardState::Started, None));
        if s.is_done() {
            out.push(event(ShardState::Done, s.exit_code));
        } else if s.failed_at.is_some() {
            out.push(event(ShardState::Failed, s.exit_code));
        }
    }
}

/// A companion's event in `state`.
fn companion(
    plan: &Plan,
    r: &Record,
    i: usize,
    state: CompanionState,
    td: Option<String>,
    reason: Option<String>,
) -> Event {
    let c = &r.companions[i];
    Event::Companion {
        index: plan
            .companions
            .iter()
            .position(|p| p.name == c.name)
            .unwrap_or(i),
        companions: plan.companions.len().max(r.companions.len()),
        name: c.name.clone(),
        service: c.service.clone(),
        state,
        task_definition: td,
        reason,
    }
}

/// Each companion the record names, in the order they moved: started, then done or failed.
fn companions(plan: &Plan, r: &Record, out: &mut Vec<Event>) {
    for (i, c) in r.companions.iter().enumerate() {
        let td = || c.task_definition.clone();
        // Told at the intent, before the new revision is registered: no task definition
        // yet (else it would be told again once there is).
        out.push(companion(plan, r, i, CompanionState::Started, None, None));
        if c.done_at.is_some() {
            out.push(companion(plan, r, i, CompanionState::Done, td(), None));
        } else if c.failed_at.is_some() {
            let reason = c.failure.clone();
            out.push(companion(plan, r, i, CompanionState::Failed, td(), reason));
        }
    }
}

/// Inside the rollback, in reverse order: each companion going back, then back.
fn companions_back(plan: &Plan, r: &Record, out: &mut Vec<Event>) {
    for (i, c) in r.companions.iter().enumerate().rev() {
        if c.rollback_at.is_none() {
            continue;
        }
        let prev = || Some(c.previous.clone());
        out.push(companion(
            plan,
            r,
            i,
            CompanionState::RollingBack,
            prev(),
            None,
        ));
        if c.rolled_back_at.is_some() {
            out.push(companion(
                plan,
                r,
                i,
                CompanionState::RolledBack,
                prev(),
                None,
            ));
        }
    }
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
        // After the first step's gate: where `after_first_gate` moves the companions.
        if index == 0 && plan.companions_move == CompanionsMove::AfterFirstGate {
            companions(plan, r, out);
        }
        let approved = gates.iter().any(|g| g.verdict == GateVerdict::Approved);
        if index == current && !approved && r.shift.waiting_since.is_some() {
            out.push(waiting(plan, index, step.weight, r.shift.waiting_until));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::ColourName;
    use crate::engine::ledger::{Interruption, LedgerWeights, UndoLock, Waited};
    use crate::gate::Signal;
    use chrono::TimeZone;

    /// The example plan: steps 10 % (auto), 50 % (manual), 100 % (auto).
    fn plan() -> Plan {
        let text = include_str!("../../../../examples/rehearsal.toml");
        match crate::plan::parse(text, std::path::Path::new("examples/rehearsal.toml")) {
            Ok(p) => p,
            Err(e) => panic!("example plan: {e}"),
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("time")
    }

    /// A release record being written as the engine writes it: each call is one save.
    struct Saves {
        records: Vec<Record>,
        clock: i64,
    }

    impl Saves {
        fn new() -> Saves {
            let r = Record::new(
                "1.4.0-x",
                "shop",
                "rehearsal",
                "1.4.0",
                "digest",
                "alice@ops-1",
                ColourName::Blue,
                None,
                t(0),
            );
            Saves {
                records: vec![r],
                clock: 0,
            }
        }
        fn save(&mut self, change: impl FnOnce(&mut Record, DateTime<Utc>)) -> &mut Saves {
            self.clock += 2;
            let mut r = self.records.last().expect("a record").clone();
            change(&mut r, t(self.clock));
            self.records.push(r);
            self
        }
        fn last(&self) -> &Record {
            self.records.last().expect("a record")
        }
        fn intent(&mut self, p: Phase) -> &mut Saves {
            self.save(|r, now| r.phases.get_mut(p).intent_at = Some(now))
        }
        fn done(&mut self, p: Phase, detail: &str) -> &mut Saves {
            let detail = detail.to_string();
            self.save(|r, now| {
                let pr = r.phases.get_mut(p);
                pr.intent_at.get_or_insert(now);
                pr.done_at = Some(now);
                pr.status = Some(PhaseStatus::Done);
                pr.detail = Some(detail);
            })
        }
        /// Lock, snapshot, migrate, assets and deploy, each intent then done.
        fn up_to_shift(&mut self) -> &mut Saves {
            self.done(Phase::Lock, "held by alice@ops-1");
            for p in [
                Phase::Snapshot,
                Phase::Migrate,
                Phase::Assets,
                Phase::Deploy,
            ] {
                self.intent(p).done(p, &format!("{p} ok"));
            }
            self.intent(Phase::Shift)
        }
        fn step(&mut self, index: usize, weight: u8) -> &mut Saves {
            self.save(move |r, now| {
                r.shift.step = index;
                r.shift.step_started_at = Some(now);
            })
            .save(move |r, _| {
                r.weights = Some(LedgerWeights {
                    blue: 100 - weight,
                    green: weight,
                });
                r.weights_log.push(WeightsSet {
                    blue: 100 - weight,
                    green: weight,
                    step: Some(index),
                });
                r.shift.baked_s = 1.5;
            })
        }
        fn gate(&mut self, index: usize, weight: u8, verdict: GateVerdict) -> &mut Saves {
            self.save(move |r, now| {
                let waited = r.shift.waiting_since.map(|since| Waited {
                    since,
                    until: r.shift.waiting_until,
                });
                r.gates.push(GateRecord {
                    index,
                    weight,
                    verdict,
                    reason: None,
                    at: now,
                    signal: None,
                    phase: Phase::Shift,
                    waited: if verdict == GateVerdict::Approved {
                        waited
                    } else {
                        None
                    },
                });
                r.shift.waiting_since = None;
                r.shift.waiting_until = None;
                if matches!(verdict, GateVerdict::Passed | GateVerdict::Advanced) {
                    r.shift.step = index + 1;
                    r.shift.step_started_at = None;
                }
            })
        }
        fn failed(&mut self, index: usize, weight: u8, phase: Phase) -> &mut Saves {
            self.save(move |r, now| {
                r.gates.push(GateRecord {
                    index,
                    weight,
                    verdict: GateVerdict::Failed,
                    reason: Some("green 30.0% 5xx".into()),
                    at: now,
                    signal: Some(Signal::ErrorRate),
                    phase,
                    waited: None,
                });
            })
        }
        fn rollback(&mut self) -> &mut Saves {
            self.save(|r, now| {
                r.rollback_reason = Some("5xx rate: green 30.0% 5xx".into());
                r.phases.rollback.intent_at = Some(now);
            })
            .save(|r, _| {
                r.weights = Some(LedgerWeights {
                    blue: 100,
                    green: 0,
                });
                r.weights_log.push(WeightsSet {
                    blue: 100,
                    green: 0,
                    step: None,
                });
            })
            .save(|r, now| {
                let p = &mut r.phases.rollback;
                p.done_at = Some(now);
                p.status = Some(PhaseStatus::Done);
                p.detail = Some("traffic 100% blue".into());
            })
        }
        fn outcome(&mut self, outcome: Outcome, code: i32, message: &str) -> &mut Saves {
            let message = message.to_string();
            self.save(move |r, now| {
                r.outcome = Some(outcome);
                r.exit_code = Some(code);
                r.message = Some(message);
                r.finished_at = Some(now);
            })
        }
    }

    /// Reported save by save (the engine) and read at once (a watcher attaching late), or
    /// every other save (a watcher polling slower than the saves): always the same events,
    /// in the same order, and nothing said twice.
    fn told_every_way(saves: &Saves) -> Vec<Event> {
        let plan = plan();
        let all = history(&plan, saves.last());
        let mut engine = Vec::new();
        let mut prev: Option<&Record> = None;
        for r in &saves.records {
            engine.extend(since(&plan, prev, r));
            prev = Some(r);
        }
        assert_eq!(engine, all, "save by save");
        assert_eq!(since(&plan, None, saves.last()), all, "at once");
        let mut slow = Vec::new();
        let mut prev: Option<&Record> = None;
        for r in saves.records.iter().step_by(2).chain([saves.last()]) {
            slow.extend(since(&plan, prev, r));
            prev = Some(r);
        }
        assert_eq!(slow, all, "every other save");
        all
    }

    fn kinds(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::PhaseStarted { phase } => format!("start {phase}"),
                Event::PhaseFinished { phase, status, .. } => format!("finish {phase} {status:?}"),
                Event::LockAcquired { holder } => format!("lock {holder}"),
                Event::StepStarted { index, weight, .. } => format!("step {index} {weight}"),
                Event::WeightsChanged { blue, green } => format!("weights {blue}/{green}"),
                Event::GateWaiting { index, .. } => format!("waiting {index}"),
                Event::GatePassed { index, .. } => format!("passed {index}"),
                Event::GateFailed { index, signal, .. } => format!("failed {index} {signal:?}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_finalized_release_step_by_step() {
        let mut s = Saves::new();
        s.up_to_shift()
            .step(0, 10)
            .gate(0, 10, GateVerdict::Passed)
            .step(1, 50)
            .save(|r, now| {
                r.shift.waiting_since = Some(now);
                r.shift.waiting_until = Some(now + chrono::Duration::hours(1));
            })
            .gate(1, 50, GateVerdict::Approved)
            .gate(1, 50, GateVerdict::Passed)
            .step(2, 100)
            .gate(2, 100, GateVerdict::Advanced)
            .done(Phase::Shift, "3 steps; green has 100%")
            .intent(Phase::Finalize)
            .save(|r, now| {
                r.outcome = Some(Outcome::Finalized);
                r.exit_code = Some(0);
                r.message = Some("1.4.0 is live on green".into());
                r.finished_at = Some(now);
                let p = &mut r.phases.finalize;
                p.done_at = Some(now);
                p.status = Some(PhaseStatus::Done);
                p.detail = Some("1.4.0 live on green".into());
            });
        let events = told_every_way(&s);
        let mut want: Vec<String> = ["start lock", "lock alice@ops-1", "finish lock Done"]
            .map(String::from)
            .to_vec();
        for p in ["snapshot", "migrate", "assets", "deploy"] {
            want.push(format!("start {p}"));
            want.push(format!("finish {p} Done"));
        }
        want.extend(
            [
                "start shift",
                "step 0 10",
                "weights 90/10",
                "passed 0",
                "step 1 50",
                "weights 50/50",
                "waiting 1",
                "passed 1",
                "step 2 100",
                "weights 0/100",
                "passed 2",
                "finish shift Done",
                "start finalize",
                "finish finalize Done",
            ]
            .map(String::from),
        );
        assert_eq!(kinds(&events), want);
        // Durations are the recorded done − intent.
        assert!(events.contains(&Event::PhaseFinished {
            phase: Phase::Snapshot,
            status: PhaseStatus::Done,
            detail: Some("snapshot ok".into()),
            duration_ms: 2000,
        }));
        // The wait names how to approve and until when, from the record alone.
        let waiting = events
            .iter()
            .find_map(|e| match e {
                Event::GateWaiting { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .expect("a wait");
        assert!(
            waiting.contains("glidepath approve examples/rehearsal.toml --step 2")
                && waiting.contains("unapproved by ")
                && waiting.contains("rolls back"),
            "{waiting}"
        );
        assert_eq!(
            finished(s.last()),
            Some(Event::ReleaseFinished {
                outcome: Outcome::Finalized,
                exit_code: 0,
                message: "1.4.0 is live on green".into(),
                snapshot_id: None,
            })
        );
    }

    #[test]
    fn a_failed_gate_rolls_back() {
        let mut s = Saves::new();
        s.up_to_shift()
            .step(0, 10)
            .gate(0, 10, GateVerdict::Passed)
            .step(1, 50)
            .failed(1, 50, Phase::Shift)
            .rollback()
            .outcome(Outcome::RolledBack, 3, "rolled back to blue: 5xx");
        let events = told_every_way(&s);
        let k = kinds(&events);
        assert_eq!(
            k[k.len() - 7..],
            [
                "step 1 50",
                "weights 50/50",
                "failed 1 ErrorRate",
                "finish shift Failed",
                "start rollback",
                "weights 100/0",
                "finish rollback Done",
            ]
        );
        assert!(events.contains(&Event::GateFailed {
            index: 1,
            weight: 50,
            signal: Signal::ErrorRate,
            reason: "green 30.0% 5xx".into(),
        }));
        assert!(events.iter().any(|e| matches!(
            e,
            Event::PhaseFinished { phase: Phase::Shift, detail: Some(d), .. }
                if d == "rolling back: 5xx rate: green 30.0% 5xx"
        )));
    }

    #[test]
    fn a_failed_smoke_test_fails_the_deploy_before_any_traffic() {
        let mut s = Saves::new();
        s.done(Phase::Lock, "held by alice@ops-1");
        for p in [Phase::Snapshot, Phase::Migrate, Phase::Assets] {
            s.intent(p).done(p, "ok");
        }
        s.intent(Phase::Deploy)
            .failed(0, 0, Phase::Deploy)
            .rollback()
            .outcome(Outcome::RolledBack, 3, "rolled back to blue");
        let k = kinds(&told_every_way(&s));
        assert_eq!(
            k[k.len() - 6..],
            [
                "start deploy",
                "failed 0 ErrorRate",
                "finish deploy Failed",
                "start rollback",
                "weights 100/0",
                "finish rollback Done",
            ]
        );
    }

    #[test]
    fn a_failed_migration_closes_its_phase_with_the_ending() {
        let mut s = Saves::new();
        s.done(Phase::Lock, "held by alice@ops-1")
            .intent(Phase::Snapshot)
            .done(Phase::Snapshot, "snap-1")
            .intent(Phase::Migrate)
            .outcome(Outcome::Failed, 5, "the migration exited 1");
        let events = told_every_way(&s);
        assert_eq!(
            events.last(),
            Some(&Event::PhaseFinished {
                phase: Phase::Migrate,
                status: PhaseStatus::Failed,
                detail: Some("the migration exited 1".into()),
                duration_ms: 2000,
            })
        );
        assert!(matches!(
            finished(s.last()),
            Some(Event::ReleaseFinished {
                outcome: Outcome::Failed,
                exit_code: 5,
                ..
            })
        ));
    }

    #[test]
    fn an_interruption_ends_the_run_and_a_resume_takes_nothing_back() {
        let mut s = Saves::new();
        s.up_to_shift().step(0, 10).save(|r, now| {
            r.interrupted = Some(Interruption {
                at: now,
                message: "stopped by the operator".into(),
                cause: None,
            })
        });
        let events = told_every_way(&s);
        assert_eq!(kinds(&events[events.len() - 1..]), ["finish shift Failed"]);
        assert!(matches!(
            finished(s.last()),
            Some(Event::ReleaseFinished {
                outcome: Outcome::Interrupted,
                exit_code: 1,
                ..
            })
        ));
        // `resume` clears the interruption and notes who took over: only that is new.
        let plan = plan();
        let before = s.last().clone();
        s.save(|r, _| {
            r.interrupted = None;
            r.resumed_at = Some(t(100));
            r.resumed_by = Some("bob@ops-2".into());
        });
        assert_eq!(
            since(&plan, Some(&before), s.last()),
            [Event::LockAcquired {
                holder: "bob@ops-2".into()
            }]
        );
        assert_eq!(finished(s.last()), None);
        // Then the release goes on as if never stopped.
        s.gate(0, 10, GateVerdict::Passed).step(1, 50);
        let after = kinds(&since(&plan, Some(&before), s.last()));
        assert_eq!(
            after,
            ["lock bob@ops-2", "passed 0", "step 1 50", "weights 50/50"]
        );
    }

    /// A watcher that last read the record before the killed run's last weight change
    /// reads, in one poll, that change and the takeover: it tells them in that order, as
    /// the killed run and then the resume did.
    #[test]
    fn a_takeover_is_told_after_what_the_killed_run_did() {
        let plan = plan();
        let mut s = Saves::new();
        s.up_to_shift().save(|r, now| {
            r.shift.step = 0;
            r.shift.step_started_at = Some(now);
        });
        let watched = s.last().clone();
        s.save(|r, _| {
            r.weights_log.push(WeightsSet {
                blue: 90,
                green: 10,
                step: Some(0),
            })
        });
        // The run was killed here; `resume` takes it over (as `run::lock_phase` does).
        s.save(|r, _| {
            r.resumed_at = Some(t(100));
            r.resumed_after = Some(before_takeover(&plan, r));
            r.resumed_by = Some("bob@ops-2".into());
        });
        let killed_then_taken = s.last().clone();
        s.gate(0, 10, GateVerdict::Passed);
        assert_eq!(
            kinds(&since(&plan, Some(&watched), &killed_then_taken)),
            ["weights 90/10", "lock bob@ops-2"]
        );
        assert_eq!(
            kinds(&since(&plan, Some(&watched), s.last())),
            ["weights 90/10", "lock bob@ops-2", "passed 0"]
        );
        // From nothing (a resumed run, a new watcher) it stays in the lock phase.
        let all = kinds(&since(&plan, None, s.last()));
        assert_eq!(
            all[1..4],
            ["lock alice@ops-1", "lock bob@ops-2", "finish lock Done"]
        );
    }

    /// `glidepath rollback` of the finalized release: its lock (saved with the rollback's
    /// intent) and the rollback follow the release's events, and the record's ending waits
    /// for the rollback's.
    #[test]
    fn a_finalized_release_rolled_back_by_hand() {
        let plan = plan();
        let mut s = Saves::new();
        s.up_to_shift()
            .step(0, 10)
            .gate(0, 10, GateVerdict::Passed)
            .done(Phase::Shift, "green has 100%")
            .intent(Phase::Finalize)
            .done(Phase::Finalize, "1.4.0 live on green")
            .outcome(Outcome::Finalized, 0, "1.4.0 is live on green");
        let finalized = s.last().clone();
        s.save(|r, now| {
            r.undo_lock = Some(UndoLock {
                holder: "carol@ops-3".into(),
                intent_at: now - chrono::Duration::milliseconds(300),
                done_at: now,
            });
            r.rollback_reason = Some("carol@ops-3 rolled back the finalized release".into());
            r.phases.rollback.intent_at = Some(now);
        });
        // Being rolled back: not ended yet, whatever the finalized outcome says.
        assert_eq!(finished(s.last()), None);
        s.save(|r, _| {
            r.weights_log.push(WeightsSet {
                blue: 100,
                green: 0,
                step: None,
            })
        })
        .save(|r, now| {
            let p = &mut r.phases.rollback;
            p.done_at = Some(now);
            p.status = Some(PhaseStatus::Done);
        })
        .outcome(Outcome::RolledBack, 3, "rolled back to 1.3.0");
        told_every_way(&s);
        assert_eq!(
            kinds(&since(&plan, Some(&finalized), s.last())),
            [
                "start lock",
                "lock carol@ops-3",
                "finish lock Done",
                "start rollback",
                "weights 100/0",
                "finish rollback Done",
            ]
        );
        assert!(
            since(&plan, Some(&finalized), s.last()).contains(&Event::PhaseFinished {
                phase: Phase::Lock,
                status: PhaseStatus::Done,
                detail: Some("held by carol@ops-3".into()),
                duration_ms: 300,
            })
        );
        assert!(matches!(
            finished(s.last()),
            Some(Event::ReleaseFinished {
                outcome: Outcome::RolledBack,
                exit_code: 3,
                ..
            })
        ));
    }

    #[test]
    fn nothing_new_is_nothing_said() {
        let mut s = Saves::new();
        s.up_to_shift().step(0, 10);
        let plan = plan();
        let r = s.last().clone();
        s.save(|r, _| r.shift.baked_s = 2.5);
        assert!(since(&plan, Some(&r), s.last()).is_empty());
        assert!(since(&plan, Some(&r), &r).is_empty());
    }

    /// A record as the binary before typed gate records wrote it: verdicts as strings, a
    /// failure's signal joined into its reason, no phase, no weight log.
    const OLD_RECORD: &str = r#"{
      "id": "1.4.0-x", "app": "shop", "environment": "rehearsal", "version": "1.4.0",
      "plan_digest": "d", "holder": "alice@ops-1", "live": "blue", "target": "green",
      "live_version": null, "started_at": "2027-01-15T08:00:00Z",
      "updated_at": "2027-01-15T08:01:00Z",
      "phases": {
        "lock": {"intent_at": "2027-01-15T08:00:00Z", "done_at": "2027-01-15T08:00:01Z", "status": "done", "detail": "held by alice@ops-1"},
        "snapshot": {"intent_at": "2027-01-15T08:00:01Z", "done_at": "2027-01-15T08:00:03Z", "status": "done", "detail": "snap"},
        "migrate": {"intent_at": null, "done_at": "2027-01-15T08:00:03Z", "status": "skipped", "detail": "no migration"},
        "assets": {"intent_at": null, "done_at": "2027-01-15T08:00:03Z", "status": "skipped", "detail": null},
        "deploy": {"intent_at": "2027-01-15T08:00:03Z", "done_at": "2027-01-15T08:00:10Z", "status": "done", "detail": "ok"},
        "shift": {"intent_at": "2027-01-15T08:00:10Z", "done_at": null, "status": null, "detail": null},
        "finalize": {"intent_at": null, "done_at": null, "status": null, "detail": null},
        "rollback": {"intent_at": null, "done_at": null, "status": null, "detail": null}
      },
      "snapshot_id": "snap", "task_definition": "app:2", "started_by": null,
      "task_arn": null, "task_exit_code": null, "desired": 2,
      "shift": {"step": 1, "step_started_at": "2027-01-15T08:00:40Z", "baked_s": 3.0, "approved": false},
      "gates": [
        {"index": 0, "weight": 10, "verdict": "passed", "reason": null, "at": "2027-01-15T08:00:40Z"},
        {"index": 1, "weight": 50, "verdict": "failed", "reason": "5xx rate: green 30.0% 5xx", "at": "2027-01-15T08:00:50Z", "signal": "error_rate"}
      ],
      "rollback_reason": null, "rollback_by_gate": false, "outcome": null,
      "exit_code": null, "message": null, "finished_at": null,
      "weights": {"blue": 50, "green": 50}
    }"#;

    #[test]
    fn a_record_in_the_old_shape_reads_typed() {
        let r: Record = serde_json::from_str(OLD_RECORD).expect("old record reads");
        let failed = &r.gates[1];
        assert_eq!(failed.verdict, GateVerdict::Failed);
        assert_eq!(failed.signal, Some(Signal::ErrorRate));
        assert_eq!(failed.reason.as_deref(), Some("green 30.0% 5xx"));
        assert_eq!(failed.phase, Phase::Shift);
        assert_eq!(r.gates[0].verdict, GateVerdict::Passed);
        let k = kinds(&history(&plan(), &r));
        // Its last weights stand for the step it is in; the shift is not finished.
        assert_eq!(
            k[k.len() - 5..],
            [
                "step 0 10",
                "passed 0",
                "step 1 50",
                "weights 50/50",
                "failed 1 ErrorRate",
            ]
        );
        // A new record keeps its reason as written, whatever it starts with.
        let mut g = r.gates[1].clone();
        g.reason = Some("5xx rate: looks joined but is not".into());
        let again: GateRecord = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(again, g);
    }
}
