//! Finalize: the record says the target colour is live.
//!
//! Contract: intent in the ledger → the companion services still to move (`at_finalize`)
//! move (`phases::companions`; a failed rollout rolls the release back) → best effort, old asset versions are pruned to
//! `[assets].retention` exactly as `glidepath assets prune` does, never this version nor
//! the one live before it (the new standby); a failure is a warning → best effort, with
//! `database.keep_snapshots`, glidepath's old snapshots of the database beyond the newest
//! N are deleted, never the restore point of this release or the new standby's
//! ([`retention`]); a failure is a warning → the record says
//! finalized, with the phase done, in one save → the index's `live` becomes the target
//! colour with this version and `standby` the colour that was live
//! ([`ledger::Index::finalize`], skipped when the index already names this release live,
//! so a resumed finalize never swaps twice) → the lock is released (by the caller). The
//! record goes before the index so that every kill point has one answer: before it, the
//! release is still in progress and the index untouched (resume redoes finalize, rollback
//! rolls it back); after it, the release is finalized and whoever finds it (resume,
//! rollback) brings the index in line from the record.

use super::Done;
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{Event, Outcome, Phase, PhaseStatus};
use crate::engine::ledger::{self, Index};
use crate::engine::retention;
use crate::exit::Cause;
use chrono::Utc;

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    ctx.intent(Phase::Finalize).await?;
    // `at_finalize` companions move now; with any other setting they moved during the
    // shift, and this only makes sure no release is finalized with one left behind.
    if super::companions::pending(ctx) {
        super::companions::run(ctx, Phase::Finalize).await?;
    }
    // What retention keeps is the index as this release leaves it (this version live, the
    // one live now on standby), known before the index changes. Pruning first lets the phase's done, with its
    // detail, go into the same save as the outcome: that one write decides "finalized",
    // and the phase is reported finished once, with what it did.
    let mut after = ledger::load_index(ctx.ports.state.as_ref()).await?;
    let mut finalized = ctx.record.value.clone();
    finalized.outcome = Some(Outcome::Finalized);
    after.record_end(&finalized);
    let protected: Vec<String> = [&after.live, &after.standby]
        .into_iter()
        .flatten()
        .map(|s| s.version.clone())
        .collect();
    let rec = &ctx.record.value;
    let mut detail = format!(
        "{} live on {}; {} on standby",
        rec.version,
        rec.target.name(),
        rec.live.name()
    );
    if let Some(pruned) = prune_assets(ctx, &protected).await {
        detail.push_str(&format!("; assets: {pruned}"));
    }
    if let Some(pruned) = prune_snapshots(ctx, &after).await {
        detail.push_str(&format!("; snapshots: {pruned}"));
    }
    let now = Utc::now();
    let rec = ctx.rec();
    rec.outcome = Some(Outcome::Finalized);
    rec.cause = Some(Cause::Done);
    rec.exit_code = Some(crate::exit::code(Outcome::Finalized, Cause::Done));
    rec.finished_at = Some(now);
    rec.message = Some(format!("{} is live on {}", rec.version, rec.target.name()));
    let p = &mut rec.phases.finalize;
    p.done_at = Some(now);
    p.status = Some(PhaseStatus::Done);
    p.detail = Some(detail.clone());
    let rec = rec.clone();
    ctx.save().await?;
    ledger::update_index(ctx.ports.state.as_ref(), |ix| ix.record_end(&rec)).await?;
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

/// Retention of the database's snapshots (`database.keep_snapshots`), protecting the
/// restore points of the index as this release leaves it. Best effort: a failure is a
/// warning.
async fn prune_snapshots(ctx: &Ctx<'_>, after: &Index) -> Option<String> {
    let keep = ctx.plan.database.keep_snapshots? as usize;
    let protected = retention::protected_releases(after);
    let db = &ctx.plan.database.id;
    match retention::prune(ctx.ports.database.as_ref(), keep, db, &protected).await {
        Ok(summary) => Some(summary),
        Err(e) => {
            ctx.emit(Event::Warning {
                message: format!(
                    "deleting old snapshots of {db} beyond {keep} (database.keep_snapshots) failed: {e}; \
                     the release is finalized anyway and the next one tries again"
                ),
            });
            None
        }
    }
}
