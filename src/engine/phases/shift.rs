//! Shift: move traffic to the target colour step by step, each step baked behind gates.
//!
//! Contract, per step: intent = step index and start time in the ledger → read the
//! listener's weights and set them only if they differ (expressed for the target colour:
//! when green is live the target is blue) → read them back → bake: poll health every
//! `gates.poll_interval`, judge this step's samples with the plan's gates, count only
//! observed time (the BakeClock), save the observed bake to the ledger after each poll →
//! a manual gate waits for Approve (or `--auto-approve`) → the step is recorded passed.
//!
//! Blind polls do not advance the bake; blind longer than `max_blind` pauses the step
//! (weights unchanged) until health is seen again. A failing gate rolls back, or pauses
//! for the operator when `on_fail = "pause"`. Operator commands: Pause/Resume stop and
//! start the bake clock, Advance skips the rest of the bake (and counts as approval),
//! Rollback rolls back now, Abort leaves traffic where it is. Resume continues the
//! recorded step with the bake observed so far.

use super::Done;
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{ColourName, Command, Event, Phase};
use crate::engine::ledger::{GateRecord, LedgerWeights};
use crate::engine::ports::Weights;
use crate::gate::{BakeClock, HealthSample, Verdict};
use crate::plan::{GateMode, OnGateFail};
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
    ctx.emit(Event::WeightsChanged {
        blue: want.blue,
        green: want.green,
    });
    Ok(())
}

/// Note weights that were set and read back in the record; the next save writes them (the
/// record is what `glidepath watch` shows).
pub fn record_weights(ctx: &mut Ctx<'_>, w: Weights) {
    ctx.rec().weights = Some(LedgerWeights {
        blue: w.blue,
        green: w.green,
    });
}

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    ctx.intent(Phase::Shift).await?;
    let steps = ctx.plan.steps.clone();
    let target = ctx.target();
    let start = ctx.record.value.shift.step;
    for (index, step) in steps.iter().enumerate().skip(start) {
        if ctx.record.value.shift.step_started_at.is_none() {
            let sh = &mut ctx.rec().shift;
            sh.step_started_at = Some(Utc::now());
            sh.baked_s = 0.0;
            sh.approved = false;
            ctx.save().await?;
        }
        ctx.emit(Event::StepStarted {
            index,
            steps: steps.len(),
            weight: step.weight,
            bake_s: step.bake.as_secs_f64(),
            manual: step.gate == GateMode::Manual,
        });
        set_weights(ctx, weights_for(target, step.weight)).await?;
        record_weights(ctx, weights_for(target, step.weight));
        let advanced = bake(ctx, index, step.weight, step.bake).await?;

        if step.gate == GateMode::Manual && !ctx.record.value.shift.approved && !advanced {
            approve(ctx, index, step.weight).await?;
        }
        ctx.emit(Event::GatePassed {
            index,
            weight: step.weight,
        });
        let rec = ctx.rec();
        rec.gates.push(GateRecord {
            index,
            weight: step.weight,
            verdict: if advanced { "advanced" } else { "passed" }.into(),
            reason: None,
            at: Utc::now(),
            signal: None,
        });
        rec.shift.step = index + 1;
        rec.shift.step_started_at = None;
        rec.shift.baked_s = 0.0;
        rec.shift.approved = false;
        ctx.early_approve = false;
        ctx.save().await?;
        ctx.tick().await?;
    }
    let last = steps.last().map_or(0, |s| s.weight);
    Ok(Done::ok(format!(
        "{} steps; {} has {last}%",
        steps.len(),
        target.name()
    )))
}

/// Bake one step. Ok(true) when the operator advanced past it.
async fn bake(ctx: &mut Ctx<'_>, index: usize, weight: u8, bake: Duration) -> Result<bool, Stop> {
    let (ports, plan) = (ctx.ports, ctx.plan);
    let gates = &plan.gates;
    let target = ctx.target();
    let poll = gates.poll_interval.max(Duration::from_millis(100));
    let baked_before = Duration::from_secs_f64(ctx.record.value.shift.baked_s.max(0.0));
    let mut clock = BakeClock::resumed(Instant::now(), baked_before);
    let mut samples: Vec<HealthSample> = Vec::new();
    let mut last_verdict: Option<Verdict> = None;
    let (mut operator_paused, mut blind_paused, mut told_no_data) = (false, false, false);
    let mut next_poll = Instant::now();
    loop {
        let passing = matches!(last_verdict, Some(Verdict::Pass));
        if !clock.is_paused() && clock.done(bake) && passing {
            return Ok(false);
        }
        if clock.done(bake) && !passing && last_verdict.is_some() && !told_no_data {
            told_no_data = true;
            ctx.emit(Event::Notice {
                message: "the bake time is up but the gate has not passed yet (not enough data); still watching — Advance skips".into(),
            });
        }
        match ctx.wait_until(next_poll).await? {
            Some(Command::Pause) if !operator_paused => {
                operator_paused = true;
                clock.pause(Instant::now());
                ctx.emit(Event::Paused {
                    reason: "paused by the operator; weights stay where they are".into(),
                });
                continue;
            }
            Some(Command::Resume) if operator_paused => {
                operator_paused = false;
                clock.resume(Instant::now());
                ctx.emit(Event::Resumed);
                continue;
            }
            Some(Command::Advance) => {
                ctx.emit(Event::Notice {
                    message: format!(
                        "step {} advanced by the operator after {:.0}s of {:.0}s bake",
                        index + 1,
                        clock.baked().as_secs_f64(),
                        bake.as_secs_f64()
                    ),
                });
                return Ok(true);
            }
            Some(Command::Approve) => {
                ctx.early_approve = true;
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        next_poll = Instant::now() + poll;
        ctx.tick().await?;
        let now = Instant::now();
        match ports.health.sample(poll).await {
            Ok(sample) => {
                clock.observed(now, true);
                if blind_paused {
                    blind_paused = false;
                    if !operator_paused {
                        ctx.emit(Event::Resumed);
                    }
                }
                samples.push(oriented(&sample, target));
                let verdict = crate::gate::judge(&samples, gates);
                ctx.emit(Event::Health {
                    sample,
                    verdict: verdict.clone(),
                    baked_s: clock.baked().as_secs_f64(),
                    bake_s: bake.as_secs_f64(),
                });
                if let Verdict::Fail { signal, reason } = &verdict {
                    ctx.emit(Event::GateFailed {
                        index,
                        weight,
                        signal: *signal,
                        reason: reason.clone(),
                    });
                    ctx.rec().gates.push(GateRecord {
                        index,
                        weight,
                        verdict: "failed".into(),
                        reason: Some(format!("{signal}: {reason}")),
                        at: Utc::now(),
                        signal: Some(*signal),
                    });
                    let reason = format!("gate failed at {weight}%: {signal}: {reason}");
                    if gates.on_fail == OnGateFail::Rollback {
                        return Err(Stop::Rollback {
                            reason,
                            by_gate: true,
                        });
                    }
                    ctx.save().await?;
                    clock.pause(Instant::now());
                    wait_after_failed_gate(ctx, &reason).await?;
                    // A fresh judgement from here: the operator chose to carry on.
                    samples.clear();
                    clock.resume(Instant::now());
                    next_poll = Instant::now();
                    continue;
                }
                last_verdict = Some(verdict);
            }
            Err(e) => {
                clock.observed(now, false);
                let blind = clock.blind_for(Instant::now());
                ctx.emit(Event::Blind {
                    reason: e.to_string(),
                    blind_s: blind.as_secs_f64(),
                });
                if blind > gates.max_blind && !blind_paused {
                    blind_paused = true;
                    ctx.emit(Event::Paused {
                        reason: format!(
                            "health not observed for {:.0}s (gates.max_blind {:.0}s); the step waits with weights unchanged until health is seen again",
                            blind.as_secs_f64(),
                            gates.max_blind.as_secs_f64()
                        ),
                    });
                }
            }
        }
        ctx.rec().shift.baked_s = clock.baked().as_secs_f64();
        ctx.save().await?;
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
        let deadline_utc =
            Utc::now() + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        let then = match on_fail {
            OnGateFail::Rollback => "rolls back",
            OnGateFail::Pause => "stops here (traffic stays, lock kept)",
        };
        // In the ledger too, so `glidepath watch` can show the gate waiting.
        ctx.rec().shift.waiting_since = Some(Utc::now());
        ctx.save().await?;
        ctx.emit(Event::GateWaiting {
            index,
            weight,
            reason: format!(
                "manual gate at {weight}%: approve to continue, from any terminal with `glidepath approve {} --step {step}`; \
                 unapproved by {} the release {then} (gates.on_fail)",
                ctx.plan.source.display(),
                deadline_utc.format("%Y-%m-%d %H:%M:%SZ")
            ),
        });
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
    rec.gates.push(GateRecord {
        index,
        weight,
        verdict: "approved".into(),
        reason,
        at: Utc::now(),
        signal: None,
    });
    rec.shift.waiting_since = None;
    ctx.save().await
}
