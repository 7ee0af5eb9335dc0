//! Superseding a release whose lock was broken (`glidepath unlock --force`).
//!
//! One rule: the run that holds the lock owns the release in progress. When it finds the
//! index naming *another* release current, nobody drives that one any more, so right after
//! taking the lock (before any phase, in `release`, `resume` and `rollback` alike) it
//! 1. puts traffic back on the index's live colour (compared first, read back), so no
//!    abandoned split stays behind and nothing deploys over a colour taking traffic;
//! 2. puts every companion service the other release recorded back on the task definition
//!    it ran before that release, in reverse order (intent, change and read-back in the
//!    other release's record, `phases::companions::take_back_superseded`), so nothing runs
//!    a version only an abandoned release knows (a finalized release whose manual rollback
//!    was cut short and which stays live gets them moved forward again instead);
//! 3. closes the other release's record: outcome superseded, by which release, when (a
//!    finalized release whose manual rollback was cut short keeps its outcome; that
//!    rollback is recorded as undone);
//! 4. brings the index in line ([`Index::record_end`]): not current, its history entry
//!    closed, and the standby slot marked unusable if it had deployed there.
//!
//! Each step compares before it writes, so a run killed half-way and continued by
//! `resume` or `rollback` finishes the same job; the superseded release never becomes
//! current again.

use super::ctx::{Ctx, Stop};
use super::event::{ColourName, Event, Outcome, Phase, PhaseStatus};
use super::ledger::{self, Index};
use super::phases::{companions, shift};
use crate::exit::Cause;
use chrono::Utc;

/// Never move traffic onto a colour that runs no tasks: a manual rollback of a finalized
/// release cut short after it moved traffic off that colour and scaled it down is finished
/// by `glidepath rollback`, not undone into an outage. Traffic already all there: no move.
async fn refuse_an_empty_live_colour(
    ctx: &Ctx<'_>,
    live: ColourName,
    unfinished: &[&str],
) -> Result<(), Stop> {
    let ports = ctx.ports;
    let weights = ctx.call(|| ports.traffic.weights()).await?;
    if weights == shift::weights_for(live, 100) {
        return Ok(());
    }
    let service = &ctx.colour(live).service;
    let now = ctx.call(|| ports.fleet.service(service)).await?;
    if now.running > 0 {
        return Ok(());
    }
    Err(Stop::Fail {
        cause: Cause::Usage,
        message: format!(
            "release {} left traffic at blue {}% / green {}% and {} ({service}) runs no tasks, so              traffic cannot go back there; nothing was changed. If a `glidepath rollback` was cut              short, finish it with `glidepath rollback {}`, then release again",
            unfinished.join(", "),
            weights.blue,
            weights.green,
            live.name(),
            ctx.plan.source.display()
        ),
    })
}

pub async fn close_superseded(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let store = ctx.ports.state.as_ref();
    let index = ledger::load_index(store).await?;
    let others: Vec<String> = index
        .current
        .iter()
        .chain(&index.abandoned)
        .filter(|c| **c != ctx.release)
        .cloned()
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    let live = index.live_colour();
    let mut found = Vec::new();
    for other in &others {
        found.push((other.clone(), ledger::load_record(store, other).await?));
    }
    // One that ended but whose index update was lost (a crash between the two writes) is
    // answered by its record, and its traffic is where it left it; only the index needs it.
    let unfinished: Vec<&str> = found
        .iter()
        .filter(|(_, d)| d.as_ref().is_none_or(|d| d.value.unfinished()))
        .map(|(id, _)| id.as_str())
        .collect();
    if !unfinished.is_empty() {
        ctx.emit(Event::Warning {
            message: format!(
                "release {} was left unfinished and its lock is gone (broken with `unlock --force`?); \
                 this run supersedes it: traffic goes back to {} first and it is closed as superseded",
                unfinished.join(", "),
                live.name()
            ),
        });
        refuse_an_empty_live_colour(ctx, live, &unfinished).await?;
        shift::set_weights(ctx, shift::weights_for(live, 100)).await?;
    }
    let me = ctx.release.clone();
    let by = ctx.lock.as_ref().map_or_else(
        || ctx.record.value.holder.clone(),
        |l| l.body.holder.clone(),
    );
    let mut closed = Vec::new();
    for (other, doc) in found {
        let Some(mut doc) = doc else {
            closed.push((other, None));
            continue;
        };
        if doc.value.outcome.is_none() {
            // Traffic is back; its companions next, before its record is closed (a run
            // killed in between finds it unfinished and carries on).
            companions::take_back_superseded(ctx, &mut doc).await?;
            // Its read-only window must not outlive it.
            super::read_only::close_superseded(ctx, &mut doc.value).await?;
            let r = &mut doc.value;
            let now = Utc::now();
            r.outcome = Some(Outcome::Superseded);
            r.cause = Some(Cause::LockHeld);
            r.exit_code = Some(crate::exit::code(Outcome::Superseded, Cause::LockHeld));
            let names: Vec<&str> = r.companions.iter().map(|c| c.name.as_str()).collect();
            let companions = if names.is_empty() {
                String::new()
            } else {
                format!(
                    "; companion(s) {} back on what they ran before it",
                    names.join(", ")
                )
            };
            r.message = Some(format!(
                "superseded by release {me} ({by}) after its lock was broken; traffic went back to {}{companions}",
                live.name()
            ));
            r.finished_at = Some(now);
            r.updated_at = now;
            r.superseded_by = Some(me.clone());
            doc.save(store).await?;
        } else if doc.value.undoing_finalize() {
            // A manual rollback of it was cut short. Traffic is now on the colour the index
            // names live: if that is still this release's, the rollback is undone; if the
            // index had already swapped back, the rollback is complete.
            let still_live = index
                .live
                .as_ref()
                .is_some_and(|s| s.release.as_deref() == Some(other.as_str()));
            if still_live {
                // Its companions follow the traffic: forward again, before it is recorded.
                companions::forward_again(ctx, &mut doc).await?;
            }
            let now = Utc::now();
            let r = &mut doc.value;
            let p = &mut r.phases.rollback;
            p.done_at = Some(now);
            if still_live {
                p.status = Some(PhaseStatus::Failed);
                p.detail = Some(format!(
                    "interrupted; undone by release {me} ({by}), which put traffic back on {}",
                    live.name()
                ));
            } else {
                p.status = Some(PhaseStatus::Done);
                p.detail = Some(format!(
                    "traffic on {}; completed by release {me}",
                    live.name()
                ));
                r.outcome = Some(Outcome::RolledBack);
                r.cause = Some(Cause::OperatorRollback);
                r.exit_code = Some(crate::exit::code(
                    Outcome::RolledBack,
                    Cause::OperatorRollback,
                ));
                r.rolled_back_at.get_or_insert(now);
                r.finished_at = Some(now);
                r.message = Some(format!(
                    "rolled back by hand; the run was cut short after moving traffic to {} and release {me} recorded it",
                    live.name()
                ));
            }
            r.updated_at = now;
            doc.save(store).await?;
        }
        closed.push((other, Some(doc.value)));
    }
    let index = ledger::update_index(store, |ix: &mut Index| {
        for (other, r) in &closed {
            match r {
                Some(r) => ix.record_end(r),
                None => {
                    // No record: it never got past its lock; nothing to show in history.
                    if ix.current.as_deref() == Some(other.as_str()) {
                        ix.current = None;
                    }
                    ix.abandoned.retain(|a| a != other);
                }
            }
        }
    })
    .await?;
    // This run's record took its colours from the index before the lock; the index may
    // have changed since (the other release had finalized). Nothing has run yet: follow it.
    let r = ctx.rec();
    let untouched = Phase::ORDER
        .into_iter()
        .skip(1)
        .all(|p| r.phases.get(p).intent_at.is_none() && !r.phases.get(p).is_done());
    if untouched && r.live != index.live_colour() {
        r.live = index.live_colour();
        r.target = r.live.other();
        r.live_version = index.live.as_ref().map(|s| s.version.clone());
        r.live_image = index.live.as_ref().and_then(|s| s.image.clone());
        ctx.save().await?;
    }
    Ok(())
}
