//! Companions: the services beside the blue/green pair (`[[companions]]`) take the
//! release's image, one at a time in dependency order, at the moment
//! `deploy.companions_move` names (called from `shift` and `finalize`).
//!
//! Contract, per companion: intent = the task definition it runs now, read and recorded
//! in the ledger before anything changes it → a revision of that task definition with
//! the companion's container on the release's image (registered once, recorded) → read
//! the service: only if it runs something else, an ECS rolling deployment with the circuit
//! breaker on (`Fleet::roll_out`) → wait (`deploy.timeout`) for the rollout to be COMPLETED
//! on that task definition with its tasks running → done in the ledger. A rollout that
//! FAILED (or never completes) is recorded failed and is a failed gate: the release rolls
//! back. Resume walks the same list: done companions are skipped, a recorded intent is
//! continued from what the service runs (never deployed twice), a recorded failure rolls
//! back.
//!
//! The way back ([`roll_back`], from the rollback phase, after traffic): every companion
//! the ledger names, in reverse order: intent to go back → only if the service runs
//! something other than its recorded previous task definition, roll it out there → wait
//! for COMPLETED → rolled back. Safe to repeat. A release superseded after its lock was
//! broken gets the same way back from the release superseding it ([`take_back_superseded`]).

use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{Event, Phase, Unit};
use crate::engine::ledger::{CompanionRecord, Doc, Record};
use crate::engine::ports::{PortResult, Ports};
use crate::plan::Companion;
use chrono::Utc;
use tokio::time::Instant;

use super::deploy::POLL;

/// Move every companion not moved yet. `phase` is where this runs (for progress events).
pub async fn run(ctx: &mut Ctx<'_>, phase: Phase) -> Result<(), Stop> {
    let plan = ctx.plan;
    for companion in &plan.companions {
        let i = match slot(ctx, &companion.name) {
            Some(i) => i,
            None => begin(ctx, companion).await?,
        };
        let rec = &ctx.record.value.companions[i];
        if rec.done_at.is_some() {
            continue;
        }
        if let Some(why) = &rec.failed_at.and(rec.failure.clone()) {
            // A resume of a release whose companion failed: the verdict stands.
            return Err(Stop::Rollback {
                reason: why.clone(),
                by_gate: true,
            });
        }
        move_one(ctx, companion, i, phase).await?;
    }
    Ok(())
}

/// Whether any companion is still to move (nothing to do, no port call, otherwise).
pub fn pending(ctx: &Ctx<'_>) -> bool {
    ctx.plan.companions.iter().any(|c| {
        slot(ctx, &c.name).is_none_or(|i| ctx.record.value.companions[i].done_at.is_none())
    })
}

fn slot(ctx: &Ctx<'_>, name: &str) -> Option<usize> {
    ctx.record
        .value
        .companions
        .iter()
        .position(|c| c.name == name)
}

/// The intent: what the service runs now, saved before anything changes it.
async fn begin(ctx: &mut Ctx<'_>, c: &Companion) -> Result<usize, Stop> {
    let ports = ctx.ports;
    let now = ctx.call(|| ports.fleet.service(&c.service)).await?;
    ctx.rec().companions.push(CompanionRecord {
        name: c.name.clone(),
        service: c.service.clone(),
        previous: now.task_definition,
        intent_at: Some(Utc::now()),
        ..CompanionRecord::default()
    });
    // Reports `companion` started.
    ctx.save().await?;
    Ok(ctx.record.value.companions.len() - 1)
}

async fn move_one(ctx: &mut Ctx<'_>, c: &Companion, i: usize, phase: Phase) -> Result<(), Stop> {
    let ports = ctx.ports;
    let td = match ctx.record.value.companions[i].task_definition.clone() {
        Some(td) => td,
        None => {
            let previous = ctx.record.value.companions[i].previous.clone();
            let image = c.image.replace("{version}", &ctx.record.value.version);
            let td = ctx
                .call(|| {
                    ports
                        .fleet
                        .task_definition_with_image(&previous, &c.container, &image)
                })
                .await?;
            ctx.rec().companions[i].task_definition = Some(td.clone());
            ctx.save().await?;
            td
        }
    };
    let now = ctx.call(|| ports.fleet.service(&c.service)).await?;
    if now.task_definition != td {
        ctx.call(|| ports.fleet.roll_out(&c.service, &td)).await?;
    }
    match wait(ctx, &c.service, &td, phase).await? {
        Ok(()) => {
            ctx.rec().companions[i].done_at = Some(Utc::now());
            // Reports `companion` done.
            ctx.save().await
        }
        Err(why) => {
            let reason = format!("companion {} ({}): {why}", c.name, c.service);
            let r = &mut ctx.rec().companions[i];
            r.failed_at = Some(Utc::now());
            r.failure = Some(reason.clone());
            // Reports `companion` failed; the rollback that follows puts it back.
            ctx.save().await?;
            Err(Stop::Rollback {
                reason,
                by_gate: true,
            })
        }
    }
}

/// Wait until `service` runs `td` with a COMPLETED rollout and its tasks running. The inner
/// Err says why it will not (FAILED, or not within `deploy.timeout`).
async fn wait(
    ctx: &mut Ctx<'_>,
    service: &str,
    td: &str,
    phase: Phase,
) -> Result<Result<(), String>, Stop> {
    let ports = ctx.ports;
    let timeout = ctx.plan.deploy.timeout;
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let s = ctx.call(|| ports.fleet.service(service)).await?;
        let line = format!(
            "{service}: rollout {}, {} of {} running",
            s.rollout, s.running, s.desired
        );
        if line != last {
            ctx.emit(Event::Progress {
                phase,
                done: s.running.clamp(0, s.desired.max(0)) as u64,
                total: s.desired.max(0) as u64,
                unit: Unit::Tasks,
                message: Some(line.clone()),
            });
            last = line;
        }
        if s.task_definition == td && s.rollout == "FAILED" {
            return Ok(Err(format!(
                "the rollout of {td} FAILED (the deployment circuit breaker stopped it)"
            )));
        }
        if s.task_definition == td && s.rollout == "COMPLETED" && s.running >= s.desired {
            return Ok(Ok(()));
        }
        if s.task_definition != td {
            return Ok(Err(format!(
                "it runs {} instead of {td}; someone else changed the service",
                s.task_definition
            )));
        }
        if Instant::now() >= deadline {
            return Ok(Err(format!(
                "not COMPLETED after {}s ([deploy].timeout): {last}",
                timeout.as_secs()
            )));
        }
        ctx.tick().await?;
        ctx.sleep(POLL).await?;
    }
}

/// Put every companion the ledger names back on its previous task definition, in reverse
/// order (traffic has already gone back). Returns what was done, for the phase's detail.
pub async fn roll_back(ctx: &mut Ctx<'_>, phase: Phase) -> Result<Option<String>, Stop> {
    let count = ctx.record.value.companions.len();
    if count == 0 {
        return Ok(None);
    }
    for i in (0..count).rev() {
        let r = ctx.record.value.companions[i].clone();
        if r.rolled_back_at.is_some() {
            continue;
        }
        if r.rollback_at.is_none() {
            ctx.rec().companions[i].rollback_at = Some(Utc::now());
            // Reports `companion` rolling_back.
            ctx.save().await?;
        }
        back_one(ctx, &r, phase).await?;
        ctx.rec().companions[i].rolled_back_at = Some(Utc::now());
        // Reports `companion` rolled_back.
        ctx.save().await?;
    }
    Ok(Some(format!(
        "{count} companion(s) back on their previous task definitions"
    )))
}

/// The companions of `other`, an unfinished release this run supersedes (its lock was
/// broken; nobody drives it any more): each one it recorded goes back to what it ran
/// before that release, in reverse order, with the same contract as [`roll_back`] but in
/// `other`'s record (intent saved there → roll out only if it runs something else → read
/// back COMPLETED → saved). Called before `other` is closed, so a run killed half-way
/// finds it still unfinished and carries on.
pub async fn take_back_superseded(ctx: &mut Ctx<'_>, other: &mut Doc<Record>) -> Result<(), Stop> {
    let ports = ctx.ports;
    let store = ports.state.as_ref();
    for i in (0..other.value.companions.len()).rev() {
        let r = other.value.companions[i].clone();
        if r.rolled_back_at.is_some() {
            continue;
        }
        let now = ctx.call(|| ports.fleet.service(&r.service)).await?;
        if now.task_definition != r.previous {
            ctx.emit(Event::Warning {
                message: format!(
                    "companion {} ({}) runs {}, left by superseded release {}; putting it back on {}, what it ran before that release",
                    r.name, r.service, now.task_definition, other.value.id, r.previous
                ),
            });
        }
        if r.rollback_at.is_none() {
            other.value.companions[i].rollback_at = Some(Utc::now());
            other.value.updated_at = Utc::now();
            other.save(store).await?;
        }
        back_one(ctx, &r, Phase::Lock).await?;
        other.value.companions[i].rolled_back_at = Some(Utc::now());
        other.value.updated_at = Utc::now();
        other.save(store).await?;
    }
    Ok(())
}

/// Put one companion back on `previous`: compare first, roll out, wait for COMPLETED.
async fn back_one(ctx: &mut Ctx<'_>, r: &CompanionRecord, phase: Phase) -> Result<(), Stop> {
    put_on(ctx, r, &r.previous, "go back to", phase).await
}

/// Put `r`'s service on `td` (compare first, roll out, wait for COMPLETED); `what` says
/// which way in the error.
async fn put_on(
    ctx: &mut Ctx<'_>,
    r: &CompanionRecord,
    td: &str,
    what: &str,
    phase: Phase,
) -> Result<(), Stop> {
    let ports = ctx.ports;
    let now = ctx.call(|| ports.fleet.service(&r.service)).await?;
    if now.task_definition != td {
        ctx.call(|| ports.fleet.roll_out(&r.service, td)).await?;
    }
    match wait(ctx, &r.service, td, phase).await? {
        Ok(()) => Ok(()),
        Err(why) => Err(Stop::fail(format!(
            "companion {} ({}) did not {what} {td}: {why}",
            r.name, r.service
        ))),
    }
}

/// `other` finalized and a `glidepath rollback` of it was cut short, then its lock broken;
/// the run superseding it left traffic on `other`'s colour (still live in the index). The
/// companions that rollback had started to put back go forward again to the task
/// definitions `other` gave them, so they run what the live release says. Compare first
/// (safe to repeat); each one's rollback marks are cleared only once it is read back on
/// `other`'s revision, and `other`'s rollback is recorded undone after this returns.
pub async fn forward_again(ctx: &mut Ctx<'_>, other: &mut Doc<Record>) -> Result<(), Stop> {
    let store = ctx.ports.state.as_ref();
    for i in 0..other.value.companions.len() {
        let r = other.value.companions[i].clone();
        let Some(td) = r.task_definition.clone() else {
            continue;
        };
        if r.rollback_at.is_none() || r.done_at.is_none() {
            continue;
        }
        ctx.emit(Event::Warning {
            message: format!(
                "companion {} ({}) was being put back by the interrupted rollback of release {}, which stays live; moving it forward to {td} again",
                r.name, r.service, other.value.id
            ),
        });
        put_on(ctx, &r, &td, "go forward to", Phase::Lock).await?;
        let c = &mut other.value.companions[i];
        c.rollback_at = None;
        c.rolled_back_at = None;
        other.value.updated_at = Utc::now();
        other.save(store).await?;
    }
    Ok(())
}

/// Why the companions of `r`, a finalized release, cannot be taken back by `glidepath
/// rollback` (None: they can). Read only, before anything moves: a companion changed by
/// hand since the release would have that change silently undone, and a previous task
/// definition that is no longer ACTIVE cannot be rolled out to (the rollback would stop
/// half-way with traffic already moved).
pub async fn why_not_back(ports: &Ports, r: &Record) -> PortResult<Option<String>> {
    for c in &r.companions {
        let Some(td) = c.task_definition.as_deref() else {
            continue;
        };
        if c.done_at.is_none() || c.rolled_back_at.is_some() {
            continue;
        }
        let now = ports.fleet.service(&c.service).await?;
        if now.task_definition != td {
            return Ok(Some(format!(
                "companion {} ({}) runs {}, not {td} that release {} gave it: it was changed since, \
                 and rolling back would undo that. Put it back on {td} (or release the version you want) first",
                c.name, c.service, now.task_definition, r.id
            )));
        }
        if !ports.fleet.task_definition_active(&c.previous).await? {
            return Ok(Some(format!(
                "companion {} ({}) ran {} before release {}, and that task definition is no longer ACTIVE \
                 (deregistered): ECS cannot move the service back onto it. Release the version you want instead",
                c.name, c.service, c.previous, r.id
            )));
        }
    }
    Ok(None)
}
