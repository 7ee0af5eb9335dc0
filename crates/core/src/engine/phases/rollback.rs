//! Rollback: traffic first, capacity second, the record last.
//!
//! Contract: intent (with the reason) in the ledger → listener weights 100% to the colour
//! that was live, read back → the target colour scaled as `[rollback].green` says (to zero,
//! or kept warm) → each companion service the ledger says this release changed back on
//! the task definition it ran before, in reverse order (`phases::companions`) → done; the caller writes the outcome and releases the lock. Safe to
//! repeat: each step compares before it changes anything, so a resumed rollback finishes
//! what an interrupted one started. A manual `glidepath rollback` asked to stop (Ctrl-C)
//! stops between these steps (before the weights, or before the capacity), never inside one.

use super::shift::{record_weights, set_weights, weights_for};
use super::Done;
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{ColourName, Event, Phase};
use crate::plan::GreenAfterRollback;

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    ctx.intent(Phase::Rollback).await?;
    let (live, target) = (ctx.live(), ctx.target());
    if let Some(why) = ctx.record.value.live_unhealthy.clone() {
        // Still the right way back (the old version is the one that worked), but not silently.
        ctx.emit(Event::Warning {
            message: format!(
                "rolling back to {} although it was found unhealthy during the shift: {why}",
                live.name()
            ),
        });
    }
    ctx.aborted()?;
    set_weights(ctx, weights_for(live, 100)).await?;
    record_weights(ctx, weights_for(live, 100), None);
    // Saved before told: a run killed here must not have said what the ledger never held.
    ctx.save().await?;
    ctx.aborted()?;
    let capacity = scale_after(ctx, target).await?;
    let mut detail = format!("traffic 100% {}; {capacity}", live.name());
    if let Some(back) = super::companions::roll_back(ctx, Phase::Rollback).await? {
        detail.push_str(&format!("; {back}"));
    }
    Ok(Done::ok(detail))
}

/// Scale `colour` (which just lost its traffic) as the plan says; returns what was done.
pub async fn scale_after(ctx: &Ctx<'_>, colour: ColourName) -> Result<String, Stop> {
    let ports = ctx.ports;
    let service = &ctx.colour(colour).service;
    match ctx.plan.rollback.green {
        GreenAfterRollback::Keep => Ok(format!("{service} kept running ([rollback].green = keep)")),
        GreenAfterRollback::ScaleToZero => {
            let now = ctx.call(|| ports.fleet.service(service)).await?;
            if now.desired != 0 {
                ctx.call(|| ports.fleet.scale(service, 0)).await?;
            }
            Ok(format!("{service} scaled to 0"))
        }
    }
}
