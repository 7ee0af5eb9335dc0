//! Assets: publish the version's static files before any task serves it.
//!
//! Contract: intent in the ledger → `Assets::publish(version)` (content-addressed keys,
//! `If-None-Match`, manifest last: publishing again is a no-op that says so) → done with
//! the publisher's summary. Skipped, with the reason in the event, when the plan has no
//! `[assets]` or no publisher is wired in. Resume simply publishes again.

use super::Done;
use crate::engine::ctx::{self, Ctx, Stop};
use crate::engine::event::{Event, Phase, Unit};

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    if ctx.plan.assets.is_none() {
        return Ok(Done::skipped("the plan has no [assets]"));
    }
    let Some(assets) = ctx.ports.assets.as_ref() else {
        return Ok(Done::skipped(
            "no asset publisher is available in this run; publish with `glidepath assets publish`",
        ));
    };
    ctx.intent(Phase::Assets).await?;
    let events = ctx.events().clone();
    let release = ctx.release.clone();
    let progress = move |done: u64, total: u64| {
        ctx::emit(
            &events,
            &release,
            Event::Progress {
                phase: Phase::Assets,
                done,
                total,
                unit: Unit::Files,
                message: None,
            },
        )
    };
    let version = ctx.record.value.version.clone();
    match assets.publish(&version, &progress).await {
        Ok(summary) => Ok(Done::ok(summary)),
        Err(e) => Err(Stop::fail(format!(
            "publishing the assets of {version} failed: {e}; no traffic moved. Fix it, then start the release again"
        ))),
    }
}
