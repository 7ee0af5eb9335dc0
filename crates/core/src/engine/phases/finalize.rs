//! Finalize: the record says the target colour is live.
//!
//! Contract: intent in the ledger → the index's `live` becomes the target colour with this
//! version and `standby` the colour that was live (skipped when the index already names
//! this release live, so a resumed finalize never swaps twice) → the record says
//! finalized (written by the caller, with *done*) → the lock is released (by the caller).
//! Retention pruning of old asset versions is `glidepath assets prune`'s job, which reads
//! `live`/`standby` from this index.

use super::Done;
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{Outcome, Phase};
use crate::engine::ledger::{self, Slot};
use crate::exit::Cause;
use chrono::Utc;

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    ctx.intent(Phase::Finalize).await?;
    // The index gets the finalized record first; the caller writes the record itself.
    let mut rec = ctx.record.value.clone();
    rec.outcome = Some(Outcome::Finalized);
    rec.cause = Some(Cause::Done);
    rec.exit_code = Some(crate::exit::code(Outcome::Finalized, Cause::Done));
    rec.finished_at = Some(Utc::now());
    rec.message = Some(format!("{} is live on {}", rec.version, rec.target.name()));
    ledger::update_index(ctx.ports.state.as_ref(), |ix| {
        let already = ix
            .live
            .as_ref()
            .is_some_and(|s| s.release.as_deref() == Some(rec.id.as_str()));
        if !already {
            let old = ix.live.take().unwrap_or_else(|| Slot {
                version: rec.live_version.clone().unwrap_or_else(|| "unknown".into()),
                colour: rec.live,
                release: None,
            });
            ix.standby = Some(old);
            ix.live = Some(Slot {
                version: rec.version.clone(),
                colour: rec.target,
                release: Some(rec.id.clone()),
            });
        }
        if ix.current.as_deref() == Some(rec.id.as_str()) {
            ix.current = None;
        }
        ix.upsert(&rec);
    })
    .await?;
    let detail = format!(
        "{} live on {}; {} on standby",
        rec.version,
        rec.target.name(),
        rec.live.name()
    );
    *ctx.rec() = rec;
    Ok(Done::ok(detail))
}
