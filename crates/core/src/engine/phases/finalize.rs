//! Finalize: the record says the target colour is live.
//!
//! Contract: intent in the ledger → the record says finalized (saved) → the index's
//! `live` becomes the target colour with this version and `standby` the colour that was
//! live ([`ledger::Index::finalize`], skipped when the index already names this release live, so a
//! resumed finalize never swaps twice) → the lock is released (by the caller). The record
//! goes first so that every kill point has one answer: before it, the release is still in
//! progress and the index untouched (resume redoes finalize, rollback rolls it back); after
//! it, the release is finalized and whoever finds it (resume, rollback) brings the index
//! in line from the record.
//! Then, best effort, old asset versions are pruned to `[assets].retention` exactly as
//! `glidepath assets prune` does, never the live or standby version (read from the index
//! just written); a failure is a warning, the release is finalized either way.

use super::Done;
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{Event, Outcome, Phase};
use crate::engine::ledger;
use crate::exit::Cause;
use chrono::Utc;

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    ctx.intent(Phase::Finalize).await?;
    let mut rec = ctx.record.value.clone();
    rec.outcome = Some(Outcome::Finalized);
    rec.cause = Some(Cause::Done);
    rec.exit_code = Some(crate::exit::code(Outcome::Finalized, Cause::Done));
    rec.finished_at = Some(Utc::now());
    rec.message = Some(format!("{} is live on {}", rec.version, rec.target.name()));
    *ctx.rec() = rec.clone();
    ctx.save().await?;
    let index = ledger::update_index(ctx.ports.state.as_ref(), |ix| ix.record_end(&rec)).await?;
    let mut detail = format!(
        "{} live on {}; {} on standby",
        rec.version,
        rec.target.name(),
        rec.live.name()
    );
    let protected: Vec<String> = [&index.live, &index.standby]
        .into_iter()
        .flatten()
        .map(|s| s.version.clone())
        .collect();
    if let Some(pruned) = prune_assets(ctx, &protected).await {
        detail.push_str(&format!("; assets: {pruned}"));
    }
    Ok(Done::ok(detail))
}

/// Retention: prune old asset versions, keeping `protected` (live and standby). Best
/// effort: a failure is a warning. Returns the summary when something was pruned or
/// checked.
async fn prune_assets(ctx: &Ctx<'_>, protected: &[String]) -> Option<String> {
    let cfg = ctx.plan.assets.as_ref()?;
    let assets = ctx.ports.assets.as_ref()?;
    let keep = cfg.retention as usize;
    match assets.prune(keep, protected).await {
        Ok(summary) => summary,
        Err(e) => {
            ctx.emit(Event::Warning {
                message: format!(
                    "pruning old asset versions to {keep} (assets.retention) failed: {e}; the release is finalized anyway. \
                     `glidepath assets prune {}` retries it",
                    ctx.plan.source.display()
                ),
            });
            None
        }
    }
}
