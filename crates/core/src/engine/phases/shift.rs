//! Shift: move traffic to the target colour step by step, each step baked behind gates.
//!
//! Contract, per step: intent = step index and start time in the ledger → read the
//! listener's weights and set them only if they differ (expressed for the target colour:
//! when green is live the target is blue) → read them back → bake: poll health every
//! `gates.poll_interval`, feed the bake its target health and alarms and each metric period
//! completed since the last poll (`Health::poll`), judge them with the plan's gates, count
//! only observed periods (the BakeClock), save the observed bake to the ledger after each poll →
//! a manual gate waits for Approve (or `--auto-approve`) → the step is recorded passed.
//!
//! Blind polls do not advance the bake; blind longer than `max_blind` pauses the step
//! (weights unchanged) until health is seen again. A failing gate rolls back, or pauses
//! for the operator when `on_fail = "pause"`. Operator commands: Pause/Resume stop and
//! start the bake clock, Advance skips the rest of the bake (and counts as approval),
//! Rollback rolls back now, Abort leaves traffic where it is. Resume continues the
//! recorded step with the bake observed so far.
//!
//! The plan's companion services move here (`phases::companions`) before the first step
//! (`before_shift`) or once the first step's gate passed (`after_first_gate`).

use super::bake::{Bake, Input, Judge, Next, SequentialJudge, Step as BakeStep, ThresholdJudge};
use super::live_watch::LiveGuard;
use super::Done;
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{ColourName, Command, Event, Phase};
use crate::engine::ledger::{GateRecord, GateVerdict, LedgerWeights, Waited, WeightsSet};
use crate::engine::ports::Weights;
use crate::gate::sequential::GateState;
use crate::gate::{detect, HealthSample, SequentialGate};
use crate::plan::{CompanionsMove, GateMode, JudgeMode, OnGateFail};
use chrono::Utc;
use std::time::Duration;
use tokio::time::Instant;

/// Weights that give the target colour `weight` percent.
pub fn weights_for(target: ColourName, weight: u8) -> Weights {
    let weight = weight.min(100);
    match target {
        ColourName::Green => Weights::green(weight),
        ColourName::Blue => Weights {
            blue: weight,
            green: 100 - weight,
        },
    }
}

/// The sample as the gate sees it: `green` is always the colour being released.
pub fn oriented(s: &HealthSample, target: ColourName) -> HealthSample {
    match target {
        ColourName::Green => s.clone(),
        ColourName::Blue => HealthSample {
            blue: s.green.clone(),
            green: s.blue.clone(),
            alarms: s.alarms.clone(),
        },
    }
}

/// Set and read back `want` (only when the listener differs).
pub async fn set_weights(ctx: &Ctx<'_>, want: Weights) -> Result<(), Stop> {
    let ports = ctx.ports;
    let now = ctx.call(|| ports.traffic.weights()).await?;
    if now != want {
        ctx.call(|| ports.traffic.set_weights(want)).await?;
        let back = ctx.call(|| ports.traffic.weights()).await?;
        if back != want {
            return Err(Stop::fail(format!(
                "the listener shows blue {}% / green {}% after setting blue {}% / green {}%; someone else is changing it",
                back.blue, back.green, want.blue, want.green
            )));
        }
    }
    Ok(())
}

/// Before step `index` moves weights to `want`: the target colour's registered targets
/// are healthy (no more traffic to a colour with a sick target), and the listener still
/// holds what this release last wrote (a hand-made change is not overwritten: stop and say).
async fn before_shift(ctx: &Ctx<'_>, index: usize, want: Weights) -> Result<(), Stop> {
    let ports = ctx.ports;
    let target = ctx.target();
    let tg = &ctx.colour(target).target_group;
    let t = ctx.call(|| ports.fleet.target_counts(tg)).await?;
    // `other` (initial, draining) targets come and go with task replacements; a target
    // that fails its checks, or none healthy, is the colour's fault.
    if t.unhealthy > 0 || t.healthy == 0 {
        return Err(Stop::Rollback {
            reason: format!(
                "before step {}: {} has {} unhealthy target(s) ({} healthy, {} other) in {tg}; not sending it more traffic",
                index + 1,
                target.name(),
                t.unhealthy,
                t.healthy,
                t.other
            ),
            by_gate: true,
        });
    }
    // Nothing written yet (the first step): the listener should hold the live colour's 100%.
    let recorded = ctx.record.value.weights.map_or_else(
        || weights_for(ctx.live(), 100),
        |w| Weights {
            blue: w.blue,
            green: w.green,
        },
    );
    let now = ctx.call(|| ports.traffic.weights()).await?;
    // `want` already there: our own write landed before a crash could record it.
    if now != recorded && now != want {
        return Err(Stop::Hold {
            message: format!(
                "the listener holds blue {}% / green {}% but this release last set (or found) blue {}% / green {}%; \
                 someone changed the weights by hand, so step {} (blue {}% / green {}%) was not applied",
                now.blue,
                now.green,
                recorded.blue,
                recorded.green,
                index + 1,
                want.blue,
                want.green
            ),
        });
    }
    Ok(())
}

/// Note weights that were set and read back (by shift step `step`, or the rollback) in
/// the record; the caller saves (then they are told) or reports them. The same weights
/// again for the same step (a resume) are not a change.
pub fn record_weights(ctx: &mut Ctx<'_>, w: Weights, step: Option<usize>) {
    let set = WeightsSet {
        blue: w.blue,
        green: w.green,
        step,
    };
    let rec = ctx.rec();
    rec.weights = Some(LedgerWeights {
        blue: w.blue,
        green: w.green,
    });
    if rec.weights_log.last() != Some(&set) {
        rec.weights_log.push(set);
    }
}

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    ctx.intent(Phase::Shift).await?;
    let steps = ctx.plan.steps.clone();
    let target = ctx.target();
    let start = ctx.record.value.shift.step;
    let gates = &ctx.plan.gates;
    // One sequential gate for the whole release: its budget is shared by every step. A
    // resumed release carries on with the evidence saved in the record.
    let mut sequential = restore_gate(ctx, steps.len());
    // The live colour in its own terms: a broken yardstick and rollback target is warned about.
    let mut live = LiveGuard::new(ctx);
    for (index, step) in steps.iter().enumerate().skip(start) {
        if companions_due(ctx, index) {
            super::companions::run(ctx, Phase::Shift).await?;
        }
        if ctx.record.value.shift.step_started_at.is_none() {
            let sh = &mut ctx.rec().shift;
            sh.step_started_at = Some(Utc::now());
            sh.baked_s = 0.0;
            sh.approved = false;
            // Reports `step_started`.
            ctx.save().await?;
        }
        if gates.sequential.mode == JudgeMode::Sequential {
            // No silent waits: say up front what this step's traffic lets the gate catch.
            ctx.emit(Event::Notice {
                message: detect::step_notice(
                    gates,
                    steps.len(),
                    index,
                    step.weight,
                    target.name(),
                    sequential.traffic(),
                ),
            });
        }
        before_shift(ctx, index, weights_for(target, step.weight)).await?;
        set_weights(ctx, weights_for(target, step.weight)).await?;
        record_weights(ctx, weights_for(target, step.weight), Some(index));
        // Saved before it is told: a run killed here must not have said what the ledger
        // (and so `watch` and a resume) never held.
        ctx.save().await?;
        let advanced = match gates.sequential.mode {
            JudgeMode::Threshold => {
                let judge = ThresholdJudge::new(gates);
                bake(ctx, index, step.weight, step.bake, judge, &mut live).await?
            }
            JudgeMode::Sequential => {
                let judge = SequentialJudge::new(gates, steps.len(), index, &mut sequential);
                bake(ctx, index, step.weight, step.bake, judge, &mut live).await?
            }
        };

        if step.gate == GateMode::Manual && !ctx.record.value.shift.approved && !advanced {
            approve(ctx, index, step.weight).await?;
        }
        let rec = ctx.rec();
        rec.gates.push(GateRecord {
            index,
            weight: step.weight,
            verdict: if advanced {
                GateVerdict::Advanced
            } else {
                GateVerdict::Passed
            },
            reason: None,
            at: Utc::now(),
            signal: None,
            phase: Phase::Shift,
            waited: None,
        });
        rec.shift.step = index + 1;
        rec.shift.gate = saved_gate(&sequential, gates.sequential.mode);
        rec.shift.step_started_at = None;
        rec.shift.baked_s = 0.0;
        rec.shift.approved = false;
        ctx.early_approve = false;
        // Reports `gate_passed`.
        ctx.save().await?;
        ctx.tick().await?;
    }
    // A plan of one step: its gate is the first, and the companions move after it.
    if companions_due(ctx, steps.len()) {
        super::companions::run(ctx, Phase::Shift).await?;
    }
    let last = steps.last().map_or(0, |s| s.weight);
    Ok(Done::ok(format!(
        "{} steps; {} has {last}%",
        steps.len(),
        target.name()
    )))
}

/// Whether the companions move before step `index` (`steps.len()`: after the last one).
fn companions_due(ctx: &Ctx<'_>, index: usize) -> bool {
    let after = match ctx.plan.companions_move {
        CompanionsMove::BeforeShift => 0,
        CompanionsMove::AfterFirstGate => 1,
        CompanionsMove::AtFinalize => return false,
    };
    index >= after && super::companions::pending(ctx)
}

/// Bake one step. Ok(true) when the operator advanced past it. The decisions are
/// [`Bake`]'s (pure); this loop waits, polls, and carries them out.
async fn bake<J: Judge>(
    ctx: &mut Ctx<'_>,
    index: usize,
    weight: u8,
    bake: Duration,
    judge: J,
    live: &mut LiveGuard,
) -> Result<bool, Stop> {
    let (ports, plan) = (ctx.ports, ctx.plan);
    let gates = &plan.gates;
    let target = ctx.target();
    let poll = gates.poll_interval.max(Duration::from_millis(100));
    let baked_before = Duration::from_secs_f64(ctx.record.value.shift.baked_s.max(0.0));
    let mut state = Bake::new(
        index,
        weight,
        bake,
        gates,
        judge,
        Instant::now(),
        baked_before,
    )
    .releasing(target);
    let mut next_poll = Instant::now();
    loop {
        let checked = state.check(Instant::now());
        if let Some(advanced) = carry_out(ctx, &mut state, index, weight, checked).await? {
            return Ok(advanced);
        }
        let inputs = match ctx.wait_until(next_poll).await? {
            Some(c) => vec![Input::Command(c)],
            None => {
                next_poll = Instant::now() + poll;
                ctx.tick().await?;
                match ports.health.poll().await {
                    Ok(p) => {
                        live.on_poll(ctx, &p).await?;
                        // Target health and alarms first (they need no period), then each
                        // new period; the first one that ends the step wins.
                        let mut inputs = vec![Input::Polled {
                            oriented: oriented(&p.now, target),
                            raw: p.now,
                            at: p.at,
                        }];
                        inputs.extend(p.periods.into_iter().map(|ps| Input::Observed {
                            oriented: oriented(&ps.sample, target),
                            raw: ps.sample,
                            start: ps.start,
                            length: ps.length,
                            correction: ps.correction,
                        }));
                        inputs
                    }
                    Err(e) => vec![Input::Blind {
                        reason: e.to_string(),
                    }],
                }
            }
        };
        // One write per poll, however many periods it brought.
        let mut dirty = false;
        for input in inputs {
            let mut step = state.on(Instant::now(), input);
            if step.next == Next::Continue && step.save {
                dirty = true;
                step.save = false;
            }
            let asked = matches!(step.next, Next::AskOperator { .. });
            if let Some(advanced) = carry_out(ctx, &mut state, index, weight, step).await? {
                return Ok(advanced);
            }
            if asked {
                // A fresh judgement from now: the operator chose to carry on.
                next_poll = Instant::now();
                dirty = false;
                break;
            }
        }
        if dirty {
            note_bake(ctx, &state);
            ctx.save().await?;
        }
    }
}

/// Do what one bake step says: emit, record a failed gate, save, and stop or ask the
/// operator. Some(advanced) when the step is over.
async fn carry_out<J: Judge>(
    ctx: &mut Ctx<'_>,
    state: &mut Bake<J>,
    index: usize,
    weight: u8,
    step: BakeStep,
) -> Result<Option<bool>, Stop> {
    // A failed gate is reported from its record (`durable`), not as the bake says it.
    for e in step.events {
        if !matches!(e, Event::GateFailed { .. }) {
            ctx.emit(e);
        }
    }
    if step.early_approve {
        ctx.early_approve = true;
    }
    let failed = step.failed.is_some();
    if let Some((signal, reason)) = step.failed {
        ctx.rec().gates.push(GateRecord {
            index,
            weight,
            verdict: GateVerdict::Failed,
            reason: Some(reason),
            at: Utc::now(),
            signal: Some(signal),
            phase: Phase::Shift,
            waited: None,
        });
    }
    // A failure is saved before it is told (by that save) and before what it leads to: a
    // run killed in between must not have said what the ledger never held.
    if step.save || failed {
        note_bake(ctx, state);
        ctx.save().await?;
    }
    match step.next {
        Next::Continue => Ok(None),
        Next::Passed { advanced } => Ok(Some(advanced)),
        Next::RollBack { reason } => Err(Stop::Rollback {
            reason,
            by_gate: true,
        }),
        Next::AskOperator { reason } => {
            wait_after_failed_gate(ctx, &reason).await?;
            state.carry_on(Instant::now());
            Ok(None)
        }
    }
}

/// The observed bake and the gate's evidence, for the next save.
fn note_bake<J: Judge>(ctx: &mut Ctx<'_>, state: &Bake<J>) {
    let gate = state.saved_gate();
    let shift = &mut ctx.rec().shift;
    shift.baked_s = state.baked().as_secs_f64();
    if gate.is_some() {
        shift.gate = gate;
    }
}

fn saved_gate(gate: &SequentialGate, mode: JudgeMode) -> Option<String> {
    (mode == JudgeMode::Sequential)
        .then(|| serde_json::to_string(gate.state()).ok())
        .flatten()
}

/// The release's sequential gate: the evidence saved in the record when there is some that
/// fits this plan, else a fresh gate (an older record, or a plan whose gates changed: said).
fn restore_gate(ctx: &mut Ctx<'_>, steps: usize) -> SequentialGate {
    let gates = &ctx.plan.gates;
    let Some(saved) = ctx.record.value.shift.gate.clone() else {
        return SequentialGate::new(gates, steps);
    };
    let restored = serde_json::from_str::<GateState>(&saved)
        .ok()
        .and_then(|state| SequentialGate::restored(gates, steps, state));
    match restored {
        Some(gate) => {
            let e = gate.evidence();
            ctx.emit(Event::Notice {
                message: format!(
                    "the gate carries on with this release's evidence so far: {}",
                    e.iter()
                        .map(|e| e.summary.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
            gate
        }
        None => {
            ctx.emit(Event::Notice {
                message: "the gate evidence saved by the interrupted run does not fit this plan's gates; the gate starts afresh".into(),
            });
            SequentialGate::new(gates, steps)
        }
    }
}

/// `on_fail = "pause"`: wait for Resume (carry on) or Rollback (handled as a stop).
async fn wait_after_failed_gate(ctx: &mut Ctx<'_>, reason: &str) -> Result<(), Stop> {
    ctx.emit(Event::Paused {
        reason: format!("{reason}; roll back, or resume to keep baking"),
    });
    loop {
        match ctx.next_command().await? {
            Some(Command::Resume) | Some(Command::Advance) => {
                ctx.emit(Event::Resumed);
                return Ok(());
            }
            Some(_) => {}
            None => {
                return Err(Stop::Rollback {
                    reason: format!("{reason}; no operator to ask, so rolling back"),
                    by_gate: true,
                })
            }
        }
    }
}

/// Who approved step `step` in the ledger (`glidepath approve`), as a reason.
fn ledger_approval(ctx: &Ctx<'_>, step: usize) -> Option<String> {
    ctx.record.value.approval(step).map(|a| {
        format!(
            "approved by {} at {} (glidepath approve)",
            a.by,
            a.at.format("%H:%M:%SZ")
        )
    })
}

/// A manual gate: wait for Approve from the operator here, or an approval recorded in the
/// ledger by `glidepath approve` from anywhere (polled every `gates.poll_interval`), or
/// approve at once with `--auto-approve`. Unapproved after `gates.approval_timeout`: the
/// plan's `gates.on_fail` (pause: stop here keeping the lock; rollback: roll back).
async fn approve(ctx: &mut Ctx<'_>, index: usize, weight: u8) -> Result<(), Stop> {
    let step = index + 1;
    let mut reason = None;
    if ctx.auto_approve || ctx.early_approve {
        ctx.emit(Event::Notice {
            message: format!(
                "manual gate at {weight}% approved ({})",
                if ctx.auto_approve {
                    "--auto-approve"
                } else {
                    "approved while baking"
                }
            ),
        });
    } else if let Some(by) = ledger_approval(ctx, step) {
        ctx.emit(Event::Notice {
            message: format!("manual gate at {weight}% {by}"),
        });
        reason = Some(by);
    } else {
        let gates = &ctx.plan.gates;
        let (timeout, on_fail) = (gates.approval_timeout, gates.on_fail);
        let poll = gates.poll_interval.max(Duration::from_millis(100));
        let deadline = Instant::now() + timeout;
        let since = Utc::now();
        let until = chrono::Duration::from_std(timeout)
            .ok()
            .and_then(|t| since.checked_add_signed(t));
        // In the ledger, so `glidepath watch` shows the gate waiting; the save reports
        // `gate_waiting` (how to approve, and until when).
        let sh = &mut ctx.rec().shift;
        sh.waiting_since = Some(since);
        sh.waiting_until = until;
        ctx.save().await?;
        loop {
            if let Some(by) = ledger_approval(ctx, step) {
                ctx.emit(Event::Notice {
                    message: format!("manual gate at {weight}% {by}"),
                });
                reason = Some(by);
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let why = format!(
                    "the manual gate at {weight}% was not approved within {}s (gates.approval_timeout)",
                    timeout.as_secs()
                );
                return Err(match on_fail {
                    OnGateFail::Rollback => Stop::Rollback {
                        reason: why,
                        by_gate: true,
                    },
                    OnGateFail::Pause => {
                        ctx.emit(Event::Warning {
                            message: format!(
                                "{why}; stopping with traffic at {weight}% and the lock kept. \
                                 `glidepath resume {}` waits for approval again",
                                ctx.plan.source.display()
                            ),
                        });
                        Stop::Abort
                    }
                });
            }
            match ctx.wait_until((now + poll).min(deadline)).await? {
                Some(Command::Approve) | Some(Command::Advance) => break,
                Some(_) => {}
                None => {}
            }
            ctx.tick().await?;
            let store = ctx.ports.state.as_ref();
            ctx.record.pull_approvals(store).await?;
        }
    }
    let rec = ctx.rec();
    rec.shift.approved = true;
    let waited = rec.shift.waiting_since.map(|since| Waited {
        since,
        until: rec.shift.waiting_until,
    });
    rec.gates.push(GateRecord {
        index,
        weight,
        verdict: GateVerdict::Approved,
        reason,
        at: Utc::now(),
        signal: None,
        phase: Phase::Shift,
        waited,
    });
    rec.shift.waiting_since = None;
    rec.shift.waiting_until = None;
    ctx.save().await
}
