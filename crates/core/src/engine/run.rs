//! Driving one release: the entry points commands call. The state machine itself lives
//! beside this file (one file per phase under `phases/`).
//!
//! Every entry point that runs a release emits `release_started` first and
//! `release_finished` last, always. What a stop means:
//! - gate failure or operator Rollback → rollback phase, exit 3, lock released;
//! - migration failure → exit 5, no traffic change, lock released, snapshot id printed;
//!   a sharded migration's failure keeps the lock (exit 5): `resume` goes on from the shard;
//! - any other failure before traffic moved → exit 1, lock released;
//! - a failure while traffic is split → rollback (exit 1 if it was an error, not a gate);
//! - Abort (or a crash) → traffic stays, lock kept, `glidepath resume PLAN` continues;
//! - the lock held by someone else → exit 4 naming holder, release and age;
//! - a read-only window still open when a run ends is closed there (`read_only::at_end`,
//!   not when the lock was lost); if its `exit` failed, the ending says so with exit 7.
//!
//! Each of these is an [`Ending`] (outcome, cause, message, what happens to the ledger and
//! the lock) recorded by [`end`]; `crate::exit::code` turns outcome and cause into the code.

use super::ctx::{self, Ctx, Stop};
use super::event::{ColourName, Command, Envelope, Event, Outcome, Phase, PhaseStatus};
use super::ids;
use super::ledger::{
    self, Doc, EngineError, Index, IndexEntry, Interruption, Record, Slot, UndoLock,
};
use super::live_image;
use super::lock::{self, Acquire, Lock, LockBody, UnlockReport};
use super::oplog::{self, OpEntry, OpKind};
use super::phases::{self, shift};
use super::ports::{Ports, StateStore};
use super::supersede;
use crate::exit::{Cause, Process};
use crate::plan::Plan;
use chrono::Utc;
use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    pub version: String,
    /// Approve manual gates without waiting (scripted mode).
    pub auto_approve: bool,
    /// `user@host`, shown to anyone who finds the lock held.
    pub holder: String,
    /// Endpoint override in use (a rehearsal), for the `release_started` event.
    pub endpoint: Option<String>,
}

/// `glidepath resume`: continue the release in progress.
#[derive(Debug, Clone)]
pub struct ResumeRequest {
    pub auto_approve: bool,
    pub holder: String,
    pub endpoint: Option<String>,
}

/// Start a new release of `req.version`. Events go to `events` (the channel closes when
/// this returns); `commands` carries the operator's Approve/Pause/Rollback/Abort.
pub async fn release(
    plan: &Plan,
    ports: &Ports,
    req: ReleaseRequest,
    events: UnboundedSender<Envelope>,
    commands: UnboundedReceiver<Command>,
) -> Finished {
    let by = req.holder.clone();
    let f = Box::pin(release_run(plan, ports, req, events, commands)).await;
    log_op(ports, OpKind::Release, &by, f).await
}

async fn release_run(
    plan: &Plan,
    ports: &Ports,
    req: ReleaseRequest,
    events: UnboundedSender<Envelope>,
    commands: UnboundedReceiver<Command>,
) -> Finished {
    let now = Utc::now();
    let id = ids::release_id(&req.version, now);
    let store = ports.state.as_ref();
    let index = match ledger::load_index(store).await {
        Ok(ix) => ix,
        Err(e) => {
            started(
                &events,
                &id,
                plan,
                &req.version,
                ColourName::Blue,
                &req.endpoint,
                false,
            );
            return end_early(
                ports,
                &events,
                &id,
                Cause::Unexpected,
                format!("cannot read the release index: {e}"),
            )
            .await;
        }
    };
    let live = index.live_colour();
    started(&events, &id, plan, &req.version, live, &req.endpoint, false);
    let runs = live_runs(plan, ports, &index, live, |message| {
        ctx::emit(&events, &id, Event::Warning { message })
    })
    .await;
    let mut record = Record::new(
        &id,
        &plan.app,
        &plan.environment,
        &req.version,
        &plan.digest,
        &req.holder,
        live,
        runs.version,
        now,
    );
    record.live_image = runs.image;
    let doc = Doc::fresh(&ledger::record_key(&id), record);
    let mut ctx = Ctx::new(plan, ports, events, commands, doc, req.auto_approve);
    if let Err(f) = lock_phase(&mut ctx, &req.holder, false).await {
        return f;
    }
    run_locked(ctx).await
}

/// The live colour's version as the index names it, or, before the first release (no
/// live slot), as read back from what that colour runs. A failed read is a warning: the
/// version is then recorded as unknown, as before.
async fn live_runs(
    plan: &Plan,
    ports: &Ports,
    index: &Index,
    live: ColourName,
    warn: impl FnOnce(String),
) -> live_image::LiveRuns {
    if let Some(s) = &index.live {
        return live_image::LiveRuns {
            version: Some(s.version.clone()),
            image: s.image.clone(),
        };
    }
    match live_image::read(plan, ports, live).await {
        Ok(runs) => runs,
        Err(e) => {
            warn(format!(
                "cannot read which version {} runs ({e}); the ledger will call it unknown",
                live.name()
            ));
            live_image::LiveRuns::default()
        }
    }
}

/// Continue the release recorded in the ledger from the phase it was in; completed
/// mutations are never repeated. A changed plan is a warning, not a refusal.
pub async fn resume(
    plan: &Plan,
    ports: &Ports,
    req: ResumeRequest,
    events: UnboundedSender<Envelope>,
    commands: UnboundedReceiver<Command>,
) -> Finished {
    let by = req.holder.clone();
    let f = Box::pin(resume_run(plan, ports, req, events, commands)).await;
    log_op(ports, OpKind::Resume, &by, f).await
}

async fn resume_run(
    plan: &Plan,
    ports: &Ports,
    req: ResumeRequest,
    events: UnboundedSender<Envelope>,
    commands: UnboundedReceiver<Command>,
) -> Finished {
    let found = match in_progress(plan, ports, &req.holder).await {
        Ok(f) => f,
        Err(e) => return end_early(ports, &events, "", Cause::Unexpected, e.to_string()).await,
    };
    let mut doc = match found {
        InProgress::Nothing(why) => return end_early(ports, &events, "", Cause::Usage, why).await,
        InProgress::Contract(b) => {
            return end_early(ports, &events, "", Cause::LockHeld, contract_holds(&b)).await
        }
        InProgress::Ended(doc) => {
            return close_ended(plan, ports, doc, &events, Process::Release).await
        }
        InProgress::UndoingFinalized(doc) => {
            return Box::pin(continue_undo(
                plan,
                ports,
                &req.holder,
                doc,
                events,
                commands,
            ))
            .await
        }
        InProgress::Running(doc) => doc,
    };
    // Written with the lock phase's save, so watchers see who took the release over.
    doc.value.resumed_at = Some(Utc::now());
    doc.value.interrupted = None;
    let r = &doc.value;
    started(
        &events,
        &r.id,
        plan,
        &r.version,
        r.live,
        &req.endpoint,
        true,
    );
    if r.plan_digest != plan.digest {
        ctx::emit(
            &events,
            &r.id,
            Event::Warning {
                message: format!(
                    "the plan changed since release {} started (digest {} → {}); continuing with the plan as it is now",
                    r.id,
                    short(&r.plan_digest),
                    short(&plan.digest)
                ),
            },
        );
    }
    let mut ctx = Ctx::new(plan, ports, events, commands, doc, req.auto_approve);
    if let Err(f) = lock_phase(&mut ctx, &req.holder, true).await {
        return f;
    }
    run_locked(ctx).await
}

/// `glidepath rollback`: traffic back to the old colour, by hand. For a release in
/// progress this is its rollback phase; for the last finalized release (while the old
/// colour still runs) weights go back to the old colour and the index swaps back.
pub async fn rollback(
    plan: &Plan,
    ports: &Ports,
    holder: &str,
    events: UnboundedSender<Envelope>,
) -> Finished {
    // Nobody can ask this one to stop: the channel is closed at once.
    let (_, commands) = tokio::sync::mpsc::unbounded_channel();
    rollback_with(plan, ports, holder, events, commands).await
}

/// [`rollback`] that stops cleanly on [`Command::Abort`] (Ctrl-C): between its port
/// calls, traffic where it last stood, the rollback's intent in the record and the lock
/// kept, so the next `rollback` or `resume` finishes it. Other commands are ignored.
pub async fn rollback_with(
    plan: &Plan,
    ports: &Ports,
    holder: &str,
    events: UnboundedSender<Envelope>,
    commands: UnboundedReceiver<Command>,
) -> Finished {
    let f = Box::pin(rollback_run(plan, ports, holder, events, commands)).await;
    log_op(ports, OpKind::Rollback, holder, f).await
}

/// Append the operation that ended as `f` to the operations log. A failed write is noted
/// in the message (the run's own events are over by now); it never changes the outcome.
async fn log_op(ports: &Ports, kind: OpKind, by: &str, mut f: Finished) -> Finished {
    let entry = OpEntry {
        at: Utc::now(),
        kind,
        by: by.to_string(),
        release: Some(f.release_id.clone()).filter(|r| !r.is_empty()),
        outcome: match f.cause {
            // Refused before it touched anything: the release's outcome is not this run's.
            Cause::LockHeld | Cause::Usage | Cause::AlreadyBack => None,
            _ => Some(f.outcome),
        },
        exit_code: f.exit_code,
        message: f.message.clone(),
    };
    if let Err(e) = oplog::append(ports.state.as_ref(), &entry).await {
        f.message
            .push_str(&format!("; the operations log could not be written: {e}"));
    }
    f
}

async fn rollback_run(
    plan: &Plan,
    ports: &Ports,
    holder: &str,
    events: UnboundedSender<Envelope>,
    commands: UnboundedReceiver<Command>,
) -> Finished {
    let found = match in_progress(plan, ports, holder).await {
        Ok(f) => f,
        Err(e) => return end_early(ports, &events, "", Cause::Unexpected, e.to_string()).await,
    };
    match found {
        InProgress::Running(mut doc) => {
            // Taken over, as by `resume`: the stop an earlier run recorded is over.
            doc.value.interrupted = None;
            let r = &doc.value;
            started_as(&events, &r.id, plan, &r.version, r.live, &None, true, true);
            let mut ctx = Ctx::new(plan, ports, events.clone(), commands, doc, false);
            ctx.process = Process::Rollback;
            if ctx.aborted().is_err() {
                return stopped_before_lock(&ctx).await;
            }
            if let Err(f) = lock_phase(&mut ctx, holder, true).await {
                return f;
            }
            let reason = format!("{holder} asked for a rollback");
            conclude(
                &mut ctx,
                Phase::Shift,
                Stop::Rollback {
                    reason,
                    by_gate: false,
                },
            )
            .await
        }
        // Finalized, but its lock outlived it (a crash before the unlock): the lock names
        // no run any more; clear it and roll the release back like any finalized one.
        InProgress::UndoingFinalized(doc) => {
            Box::pin(continue_undo(plan, ports, holder, doc, events, commands)).await
        }
        InProgress::Ended(doc) if doc.value.outcome == Some(Outcome::Finalized) => {
            let store = ports.state.as_ref();
            // Finalize writes the record before the index: a kill between them leaves the
            // index behind the record. Bring it in line before reading it.
            if let Err(e) = index_ended(store, &doc.value).await {
                return end_early(
                    ports,
                    &events,
                    &doc.value.id,
                    Cause::Unexpected,
                    e.to_string(),
                )
                .await;
            }
            let left =
                matches!(lock::read(store).await, Ok(Some((b, _))) if b.release == doc.value.id);
            if left {
                if let Err(e) = super::retry::quietly(|| store.delete(lock::LOCK_KEY)).await {
                    let m = format!(
                        "the lock release {} left behind could not be released: {e}",
                        doc.value.id
                    );
                    return end_early(ports, &events, &doc.value.id, Cause::Unexpected, m).await;
                }
            }
            Box::pin(rollback_finalized(plan, ports, holder, events, commands)).await
        }
        InProgress::Ended(doc) => close_ended(plan, ports, doc, &events, Process::Rollback).await,
        InProgress::Contract(b) => {
            end_early(ports, &events, "", Cause::LockHeld, contract_holds(&b)).await
        }
        InProgress::Nothing(_) => {
            Box::pin(rollback_finalized(plan, ports, holder, events, commands)).await
        }
    }
}

/// The release lock, the index and the release in progress, as the ledger says.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub app: String,
    pub environment: String,
    pub lock: Option<LockStatus>,
    pub live: Option<Slot>,
    pub standby: Option<Slot>,
    /// The release in progress (or left unfinished), if any.
    pub current: Option<Record>,
    /// The newest release in the index.
    pub last: Option<IndexEntry>,
    /// The plan's contract migration ([`super::contract::state`]); None without `[contract]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LockStatus {
    #[serde(flatten)]
    pub body: LockBody,
    pub age_s: u64,
    pub stale: bool,
    pub summary: String,
}

pub async fn status(plan: &Plan, ports: &Ports) -> Result<Status, EngineError> {
    let store = ports.state.as_ref();
    let index = ledger::load_index(store).await?;
    let now = Utc::now();
    let lock = lock::read(store).await?.map(|(b, _)| LockStatus {
        age_s: b.age(now).as_secs(),
        stale: b.is_stale(now),
        summary: b.describe(now),
        body: b,
    });
    let current_id = lock
        .as_ref()
        .map(|l| l.body.release.clone())
        .or_else(|| index.current.clone());
    let current = match current_id {
        Some(id) => ledger::load_record(store, &id)
            .await?
            .map(|d| d.value)
            .filter(|r| r.outcome.is_none()),
        None => None,
    };
    let contract = match (&plan.contract, index.releases.first()) {
        (None, _) => None,
        (Some(_), None) => super::contract::state(plan, &index, None, now),
        (Some(_), Some(latest)) => {
            let record = ledger::load_record(store, &latest.id)
                .await?
                .map(|d| d.value);
            super::contract::state(plan, &index, record.as_ref(), now)
        }
    };
    Ok(Status {
        app: plan.app.clone(),
        environment: plan.environment.clone(),
        lock,
        live: index.live,
        standby: index.standby,
        current,
        last: index.releases.into_iter().next(),
        contract,
    })
}

/// Every operation (release, resume, rollback, forced unlock, approval), oldest first,
/// from the append-only operations log.
pub async fn operations(_plan: &Plan, ports: &Ports) -> Result<Vec<OpEntry>, EngineError> {
    oplog::list(ports.state.as_ref()).await
}

/// Past releases, newest first (from the index).
pub async fn history(_plan: &Plan, ports: &Ports) -> Result<Vec<IndexEntry>, EngineError> {
    Ok(ledger::load_index(ports.state.as_ref()).await?.releases)
}

/// Show who holds the lock; with `force`, break it (`by` is logged as having done so). The
/// broken lock's release, if it has a record and did not end, stays findable: it becomes
/// the index's `current` (so `resume` continues it and the next release supersedes it),
/// or, when another release is current already, is listed as abandoned for the next lock
/// holder to close.
pub async fn unlock(
    _plan: &Plan,
    ports: &Ports,
    force: bool,
    by: &str,
) -> Result<UnlockReport, EngineError> {
    let store = ports.state.as_ref();
    let report = lock::unlock(store, force).await?;
    if let (true, Some(b)) = (report.broken, &report.lock) {
        let entry = OpEntry {
            at: Utc::now(),
            kind: OpKind::Unlock,
            by: by.to_string(),
            release: Some(b.release.clone()),
            outcome: None,
            exit_code: crate::exit::OK,
            message: report.message.clone(),
        };
        oplog::append(store, &entry).await?;
        let unfinished = ledger::load_record(store, &b.release)
            .await?
            .is_some_and(|d| d.value.unfinished());
        if unfinished {
            ledger::update_index(store, |ix| match &ix.current {
                None => ix.current = Some(b.release.clone()),
                Some(c) if *c != b.release && !ix.abandoned.contains(&b.release) => {
                    ix.abandoned.push(b.release.clone())
                }
                Some(_) => {}
            })
            .await?;
        }
    }
    Ok(report)
}

// --- internals -------------------------------------------------------------------------

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn started(
    events: &UnboundedSender<Envelope>,
    id: &str,
    plan: &Plan,
    version: &str,
    live: ColourName,
    endpoint: &Option<String>,
    resumed: bool,
) {
    started_as(events, id, plan, version, live, endpoint, resumed, false)
}

/// `release_started`; with `rollback`, of a `glidepath rollback` run (`live` is where
/// traffic goes back to).
#[allow(clippy::too_many_arguments)]
fn started_as(
    events: &UnboundedSender<Envelope>,
    id: &str,
    plan: &Plan,
    version: &str,
    live: ColourName,
    endpoint: &Option<String>,
    resumed: bool,
    rollback: bool,
) {
    ctx::emit(
        events,
        id,
        Event::ReleaseStarted {
            app: plan.app.clone(),
            environment: plan.environment.clone(),
            version: version.into(),
            production: plan.production,
            live,
            target: live.other(),
            endpoint: endpoint.clone(),
            region: plan.region.clone(),
            resumed,
            rollback,
        },
    );
}

// --- endings ---------------------------------------------------------------------------

/// How a release (or a rollback) ends: what happened, why, and what that leaves behind.
/// Every path that ends a run builds one and hands it to [`end`], the only place that
/// records an outcome, lets the lock go and emits `release_finished`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub outcome: Outcome,
    pub cause: Cause,
    pub message: String,
    pub ledger: LedgerFate,
    pub lock: LockFate,
}

/// What an ending writes to the ledger (given a record; without one it writes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerFate {
    /// Nothing: the record must stay as it is so `resume` continues it.
    Untouched,
    /// Note the stop on the record, not as an outcome: the release is not over.
    Interruption,
    /// Write the outcome, then the index (`current` cleared, entry upserted). A failed
    /// write stops there and keeps the lock, so `resume` can finish recording it.
    Close,
    /// The record already holds its outcome (finalize wrote it, or an earlier run did):
    /// bring the index in line. Its recorded exit code stands.
    Recorded,
    /// A finalized release rolled back by hand: swap live/standby back in the index, then
    /// write the outcome (and the index entry). Traffic has already moved, so a failed
    /// record write does not stop the swap.
    CloseAndSwap,
}

/// What an ending does with the release lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockFate {
    /// Kept: `resume` continues from here, or the lock is not this run's to release.
    Keep,
    /// Released: the lock this run holds (kept if recording the outcome failed).
    Release,
    /// Deleted: the lock an earlier run of this release left behind.
    ReleaseLeftBehind,
}

impl Ending {
    /// A run that stops before it holds the lock or may touch the record.
    pub fn refused(cause: Cause, message: impl Into<String>) -> Ending {
        Ending {
            outcome: Outcome::Failed,
            cause,
            message: message.into(),
            ledger: LedgerFate::Untouched,
            lock: LockFate::Keep,
        }
    }
}

/// How a release run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub release_id: String,
    pub outcome: Outcome,
    pub cause: Cause,
    /// The process exit code (crate::exit::code of outcome and cause).
    pub exit_code: i32,
    pub message: String,
}

/// Where an ending is recorded: the run's events and the record and lock it has, if any.
pub struct Closing<'a> {
    pub store: &'a dyn StateStore,
    pub events: &'a UnboundedSender<Envelope>,
    pub release_id: &'a str,
    pub record: Option<&'a mut Doc<Record>>,
    /// The lock this run holds.
    pub lock: Option<Lock>,
    /// Whose process exits with the code (the record always gets the release's).
    pub process: Process,
    /// The run's durable reporting: the plan and the record last reported (None: the
    /// ending reports nothing from the record).
    pub report: Option<(&'a Plan, &'a mut Option<Record>)>,
}

/// Record `ending`: the record, the index, the lock, `release_finished`, in that order.
/// Problems on the way are appended to the message; they never hide the outcome.
pub async fn end(c: Closing<'_>, ending: Ending) -> Finished {
    let Closing {
        store,
        events,
        release_id,
        mut record,
        lock,
        process,
        report,
    } = c;
    let Ending {
        outcome,
        cause,
        mut message,
        ledger,
        lock: lock_fate,
    } = ending;
    let mut exit_code = crate::exit::code_for(process, outcome, cause);
    // False once a write that the lock guards failed: the lock then stays for `resume`.
    let mut recorded = true;
    if let Some(doc) = record.as_deref_mut() {
        match ledger {
            LedgerFate::Untouched => {}
            LedgerFate::Interruption => {
                doc.value.interrupted = Some(Interruption {
                    at: Utc::now(),
                    message: message.clone(),
                    cause: (cause != Cause::Interrupted).then_some(cause),
                });
                if let Err(e) = save(store, doc).await {
                    message.push_str(&format!("; recording the stop failed: {e}"));
                }
            }
            LedgerFate::Close | LedgerFate::CloseAndSwap => {
                let swap = ledger == LedgerFate::CloseAndSwap;
                let r = &mut doc.value;
                r.outcome = Some(outcome);
                r.cause = Some(cause);
                // The release's own code, whoever ended it.
                r.exit_code = Some(crate::exit::code(outcome, cause));
                r.message = Some(message.clone());
                r.finished_at = Some(Utc::now());
                // Traffic is already back: the index says so first, so that a kill before
                // the record leaves `live` naming where traffic is (the record still shows
                // the rollback's intent, and `resume` finishes it).
                if swap {
                    if let Err(e) = index_ended(store, &doc.value).await {
                        message.push_str(&format!("; the index could not be updated: {e}"));
                    }
                }
                if let Err(e) = save(store, doc).await {
                    message.push_str(&format!("; recording it failed: {e}"));
                    recorded = swap;
                }
                if recorded {
                    if let Err(e) = index_ended(store, &doc.value).await {
                        message.push_str(&format!("; the index could not be updated: {e}"));
                        recorded = swap;
                    }
                }
            }
            LedgerFate::Recorded => {
                match doc.value.exit_code {
                    Some(code) if process == Process::Release => exit_code = code,
                    _ => {}
                }
                if let Err(e) = index_ended(store, &doc.value).await {
                    message.push_str(&format!("; the index could not be updated: {e}"));
                }
            }
        }
    }
    if let (Some((plan, shown)), Some(doc)) = (report, record.as_deref()) {
        // What the record now says; an ending that writes nothing still closes the
        // phases this run left open (in its events only: the ledger does not say so).
        let mut now = doc.value.clone();
        if ledger == LedgerFate::Untouched {
            now.outcome = Some(outcome);
            now.message = Some(message.clone());
            now.finished_at = Some(Utc::now());
        }
        ctx::report(events, release_id, plan, shown, &now);
    }
    match lock_fate {
        LockFate::Keep => {}
        LockFate::Release => {
            if let (Some(lock), true) = (lock, recorded) {
                if let Err(e) = lock.release(store).await {
                    let message = format!(
                        "could not release the lock: {e}; `glidepath unlock PLAN --force` clears it"
                    );
                    ctx::emit(events, release_id, Event::Warning { message });
                }
            }
        }
        LockFate::ReleaseLeftBehind => {
            match super::retry::quietly(|| store.delete(lock::LOCK_KEY)).await {
                Ok(_) => message.push_str("; released the lock it left behind"),
                Err(e) => message.push_str(&format!("; its lock could not be released: {e}")),
            }
        }
    }
    let snapshot_id = record.and_then(|d| d.value.snapshot_id.clone());
    ctx::emit(
        events,
        release_id,
        Event::ReleaseFinished {
            outcome,
            exit_code,
            message: message.clone(),
            snapshot_id,
        },
    );
    Finished {
        release_id: release_id.into(),
        outcome,
        cause,
        exit_code,
        message,
    }
}

/// Write the record (compare-and-swap), stamped.
async fn save(store: &dyn StateStore, doc: &mut Doc<Record>) -> Result<(), EngineError> {
    doc.value.updated_at = Utc::now();
    doc.save(store).await
}

/// The index after `r` ended ([`Index::record_end`]: not current any more, its entry
/// upserted, live/standby naming what runs on each colour).
async fn index_ended(store: &dyn StateStore, r: &Record) -> Result<(), EngineError> {
    ledger::update_index(store, |ix| ix.record_end(r)).await?;
    Ok(())
}

/// An ending before there is a record or a lock.
async fn end_early(
    ports: &Ports,
    events: &UnboundedSender<Envelope>,
    id: &str,
    cause: Cause,
    message: String,
) -> Finished {
    let c = Closing {
        store: ports.state.as_ref(),
        events,
        release_id: id,
        record: None,
        lock: None,
        process: Process::Release,
        report: None,
    };
    end(c, Ending::refused(cause, message)).await
}

/// An ending of a run that got as far as a context (its record, maybe its lock).
async fn end_run(ctx: &mut Ctx<'_>, mut ending: Ending) -> Finished {
    // No run ends with the read-only window open, except one whose lock was taken over.
    if ending.cause != Cause::LockHeld {
        let resumable = ending.lock == LockFate::Keep && ending.ledger != LedgerFate::Close;
        super::read_only::at_end(ctx, &mut ending.cause, &mut ending.message, resumable).await;
    }
    let events = ctx.events().clone();
    let id = ctx.release.clone();
    let ports = ctx.ports;
    let c = Closing {
        store: ports.state.as_ref(),
        events: &events,
        release_id: &id,
        lock: ctx.lock.take(),
        record: Some(&mut ctx.record),
        process: ctx.process,
        report: Some((ctx.plan, &mut ctx.shown)),
    };
    end(c, ending).await
}

enum InProgress {
    Running(Doc<Record>),
    /// A finalized release whose `glidepath rollback` was cut short: finish it.
    UndoingFinalized(Doc<Record>),
    /// The release named by the lock had already ended (a crash before the lock went).
    Ended(Doc<Record>),
    Nothing(String),
    /// `glidepath contract` holds the lock: not a release to continue or roll back.
    Contract(LockBody),
}

/// Why `resume` / `rollback` leave a contract's lock alone (exit 4).
fn contract_holds(b: &LockBody) -> String {
    format!(
        "the release lock is {}: the contract migration is changing the schema, so nothing \
         may resume or roll back now. Wait for it to end (`glidepath status` shows the lock); \
         if its process is gone, `glidepath unlock --force` and run `glidepath contract` again",
        b.describe(Utc::now())
    )
}

/// The release to continue: the lock's (it outlives crashes and aborts), else the index's
/// `current`. A lock whose release has no record yet (a crash right after locking) gets
/// a fresh record from the lock body.
async fn in_progress(plan: &Plan, ports: &Ports, holder: &str) -> Result<InProgress, EngineError> {
    let store = ports.state.as_ref();
    let index = ledger::load_index(store).await?;
    let held = lock::read(store).await?.map(|(b, _)| b);
    if let Some(b) = held.as_ref().filter(|b| b.contract) {
        return Ok(InProgress::Contract(b.clone()));
    }
    let Some(id) = held
        .as_ref()
        .map(|b| b.release.clone())
        .or_else(|| index.current.clone())
    else {
        let last = index.releases.first().map_or(String::new(), |e| {
            format!(
                " (the last release, {}, {})",
                e.id,
                e.outcome.map_or("did not finish".into(), |o| o.to_string())
            )
        });
        return Ok(InProgress::Nothing(format!(
            "no release is in progress{last}; nothing to resume"
        )));
    };
    match ledger::load_record(store, &id).await? {
        Some(doc) if doc.value.undoing_finalize() => Ok(InProgress::UndoingFinalized(doc)),
        Some(doc) if doc.value.outcome.is_some() => Ok(InProgress::Ended(doc)),
        Some(doc) => Ok(InProgress::Running(doc)),
        None => match held.filter(|b| b.release == id) {
            Some(b) => {
                let now = Utc::now();
                let runs = live_runs(plan, ports, &index, index.live_colour(), |m| {
                    tracing::warn!("{m}")
                })
                .await;
                let mut r = Record::new(
                    &id,
                    &plan.app,
                    &plan.environment,
                    &b.version,
                    &plan.digest,
                    holder,
                    index.live_colour(),
                    runs.version,
                    now,
                );
                r.live_image = runs.image;
                r.started_at = b.started_at;
                Ok(InProgress::Running(Doc::fresh(&ledger::record_key(&id), r)))
            }
            None => Ok(InProgress::Nothing(format!(
                "the index names release {id} as in progress but its record is missing; nothing to resume"
            ))),
        },
    }
}

/// A release that had ended but whose lock survived (crash between record and unlock):
/// bring the index in line, release the lock it left and report how it ended.
async fn close_ended(
    plan: &Plan,
    ports: &Ports,
    mut doc: Doc<Record>,
    events: &UnboundedSender<Envelope>,
    process: Process,
) -> Finished {
    let r = &doc.value;
    started(events, &r.id, plan, &r.version, r.live, &None, true);
    // Only a lock naming this release is its own to release.
    let left =
        matches!(lock::read(ports.state.as_ref()).await, Ok(Some((b, _))) if b.release == r.id);
    let ending = Ending {
        outcome: r.outcome.unwrap_or(Outcome::Failed),
        // Records from before `cause` existed: their recorded exit code still stands.
        cause: r.cause.unwrap_or(Cause::Unexpected),
        message: format!(
            "release {} had already ended ({})",
            r.id,
            r.message.clone().unwrap_or_default()
        ),
        ledger: LedgerFate::Recorded,
        lock: if left {
            LockFate::ReleaseLeftBehind
        } else {
            LockFate::Keep
        },
    };
    let id = r.id.clone();
    let c = Closing {
        store: ports.state.as_ref(),
        events,
        release_id: &id,
        record: Some(&mut doc),
        lock: None,
        process,
        report: None,
    };
    end(c, ending).await
}

/// The forward phases from where the record says, then the ending.
async fn run_locked(mut ctx: Ctx<'_>) -> Finished {
    // A window left open by a run that stopped (a crash) closes before anything goes on.
    let went = match super::read_only::close_left_open(&mut ctx).await {
        Ok(()) => forward(&mut ctx).await,
        Err(stop) => Err((Phase::Migrate, stop)),
    };
    match went {
        Ok(()) => {
            // Finalize wrote the outcome into the record and the index.
            let message = ctx
                .record
                .value
                .message
                .clone()
                .unwrap_or_else(|| Outcome::Finalized.to_string());
            let ending = Ending {
                outcome: Outcome::Finalized,
                cause: Cause::Done,
                message,
                ledger: LedgerFate::Recorded,
                lock: LockFate::Release,
            };
            end_run(&mut ctx, ending).await
        }
        Err((phase, stop)) => conclude(&mut ctx, phase, stop).await,
    }
}

async fn lock_phase(ctx: &mut Ctx<'_>, holder: &str, resuming: bool) -> Result<(), Finished> {
    let t0 = Instant::now();
    let asked = Utc::now();
    let store = ctx.ports.state.as_ref();
    let version = ctx.record.value.version.clone();
    // The lock phase fails before the record is written: no record to touch, so its
    // events are this run's alone (on success the record's save reports them).
    let failed = |ctx: &Ctx<'_>, message: &str| {
        ctx.emit(Event::PhaseStarted { phase: Phase::Lock });
        ctx.emit(Event::PhaseFinished {
            phase: Phase::Lock,
            status: PhaseStatus::Failed,
            detail: Some(message.to_string()),
            duration_ms: ms(t0),
        });
    };
    let got = lock::acquire(
        store,
        holder,
        &ctx.release,
        &version,
        ctx.plan.state.lease,
        resuming,
    )
    .await;
    let lock = match got {
        Ok(Acquire::Acquired(l)) => l,
        Ok(Acquire::Held(b)) => {
            let now = Utc::now();
            let mut m = format!("the release lock is {}", b.describe(now));
            if b.is_stale(now) {
                m.push_str(&format!(
                    ". It is not taken over silently: if {} is really gone, `glidepath unlock {} --force` breaks it",
                    b.holder,
                    ctx.plan.source.display()
                ));
            } else {
                m.push_str(&format!(
                    ". Wait for it, or follow it with `glidepath watch {}`",
                    ctx.plan.source.display()
                ));
            }
            failed(ctx, &m);
            return Err(end_early(ctx.ports, ctx.events(), &ctx.release, Cause::LockHeld, m).await);
        }
        Err(e) => {
            let m = format!("cannot take the release lock: {e}");
            failed(ctx, &m);
            return Err(
                end_early(ctx.ports, ctx.events(), &ctx.release, Cause::Unexpected, m).await,
            );
        }
    };
    ctx.lock = Some(lock);
    let now = Utc::now();
    // A release taken over keeps its first lock phase as recorded (watchers already
    // reported it); who took it over is noted beside it.
    let taken_over = ctx.record.value.phases.lock.is_done();
    if taken_over {
        if resuming {
            let after = super::durable::before_takeover(ctx.plan, &ctx.record.value);
            ctx.rec().resumed_after = Some(after);
            ctx.rec().resumed_by = Some(holder.into());
        } else {
            // Only `glidepath rollback` locks a finalized release: its lock phase and the
            // rollback's intent are one save, so the record never names a lock taken for a
            // rollback it does not show, and the lock phase is told from the record.
            let r = ctx.rec();
            r.undo_lock = Some(UndoLock {
                holder: holder.into(),
                intent_at: asked,
                done_at: now,
            });
            r.phases.rollback.intent_at.get_or_insert(now);
        }
    } else {
        let lp = &mut ctx.rec().phases.lock;
        lp.intent_at.get_or_insert(now);
        lp.done_at = Some(now);
        lp.status = Some(PhaseStatus::Done);
        lp.detail = Some(format!("held by {holder}"));
    }
    if let Err(e) = ctx.record.save(store).await {
        let m = format!("cannot write the release record: {e}");
        failed(ctx, &m);
        let lock = ctx.lock.take();
        let c = Closing {
            store,
            events: ctx.events(),
            release_id: &ctx.release,
            record: None,
            lock,
            process: ctx.process,
            report: None,
        };
        let ending = Ending {
            lock: LockFate::Release,
            ..Ending::refused(Cause::Unexpected, m)
        };
        return Err(end(c, ending).await);
    }
    ctx.report();
    // Whoever holds the lock first closes a release whose lock was broken.
    if let Err(stop) = supersede::close_superseded(ctx).await {
        let cause = match &stop {
            Stop::Fail {
                cause: c @ (Cause::ReadOnlyExit | Cause::Usage),
                ..
            } => *c,
            _ => Cause::Unexpected,
        };
        let ending = Ending {
            outcome: Outcome::Failed,
            cause,
            message: format!(
                "could not close the release this one supersedes: {}; nothing of this release ran",
                describe_stop(&stop)
            ),
            ledger: LedgerFate::Close,
            lock: LockFate::Release,
        };
        return Err(end_run(ctx, ending).await);
    }
    Ok(())
}

fn ms(t0: Instant) -> u64 {
    t0.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

/// Phases after the lock, skipping (and reporting) the ones done before a resume.
async fn forward(ctx: &mut Ctx<'_>) -> Result<(), (Phase, Stop)> {
    let rec = &ctx.record.value;
    if rec.phases.rollback.intent_at.is_some() {
        // An interrupted rollback continues as a rollback.
        let stop = Stop::Rollback {
            reason: rec
                .rollback_reason
                .clone()
                .unwrap_or_else(|| "an earlier run started rolling back".into()),
            by_gate: rec.rollback_by_gate,
        };
        return Err((Phase::Shift, stop));
    }
    let id = ctx.release.clone();
    let snapshot = ctx.record.value.clone();
    ledger::update_index(ctx.ports.state.as_ref(), |ix| {
        ix.current = Some(id.clone());
        ix.upsert(&snapshot);
    })
    .await
    .map_err(|e| (Phase::Lock, Stop::from(e)))?;

    // Phase events come from the record's saves (`durable`): its intent starts a phase, its
    // done finishes it, and the ending closes a phase left open.
    for phase in Phase::ORDER.into_iter().skip(1) {
        if ctx.record.value.phases.get(phase).is_done() {
            continue;
        }
        let result = match ctx.tick().await {
            // Started before anything it does is reported (preflight, progress, logs).
            Ok(()) => match ctx.intent(phase).await {
                Ok(()) => phases::run(phase, ctx).await,
                Err(stop) => Err(stop),
            },
            Err(stop) => Err(stop),
        };
        match result {
            // Finalize records its own done with the outcome, in one save.
            Ok(_) if ctx.record.value.phases.get(phase).is_done() => {}
            Ok(done) => {
                let p = ctx.rec().phases.get_mut(phase);
                let now = Utc::now();
                p.intent_at.get_or_insert(now);
                p.done_at = Some(now);
                p.status = Some(done.status);
                p.detail = done.detail.clone();
                ctx.save().await.map_err(|s| (phase, s))?;
            }
            Err(stop) => return Err((phase, stop)),
        }
    }
    Ok(())
}

/// What stopped the rollback phase, for the message (the ending closes the phase).
fn rollback_failed(stop: &Stop) -> String {
    describe_stop(stop)
}

fn describe_stop(stop: &Stop) -> String {
    match stop {
        Stop::Abort => "stopped by the operator; `glidepath resume` continues here".into(),
        Stop::Rollback { reason, .. } => format!("rolling back: {reason}"),
        Stop::Fail { message, .. } => message.clone(),
        Stop::LockLost { message } => message.clone(),
        Stop::Hold { message } => message.clone(),
    }
}

/// What a stop means for the release (see the module doc).
async fn conclude(ctx: &mut Ctx<'_>, phase: Phase, stop: Stop) -> Finished {
    let plan_path = ctx.plan.source.display().to_string();
    let ending = match stop {
        Stop::Abort => {
            let weights = match ctx.ports.traffic.weights().await {
                Ok(w) => format!("blue {}% / green {}%", w.blue, w.green),
                Err(_) => "weights unknown".into(),
            };
            Ending {
                outcome: Outcome::Interrupted,
                cause: Cause::Interrupted,
                message: format!(
                    "release {} stopped during {phase} ({weights}); nothing was rolled back and the lock is kept. \
                     Continue with `glidepath resume {plan_path}` or roll back with `glidepath rollback {plan_path}`",
                    ctx.release
                ),
                ledger: LedgerFate::Interruption,
                lock: LockFate::Keep,
            }
        }
        // Someone else owns the release now: touch nothing more.
        Stop::LockLost { message } => Ending::refused(Cause::LockHeld, message),
        // Not ours to undo: a rollback would overwrite the change too.
        Stop::Hold { message } => Ending {
            outcome: Outcome::Interrupted,
            cause: Cause::Interrupted,
            message: format!(
                "release {} stopped during {phase}: {message}. Nothing was changed and the lock is kept: \
                 `glidepath resume {plan_path}` continues once the listener is back as recorded, \
                 `glidepath rollback {plan_path}` sends all traffic to the live colour",
                ctx.release
            ),
            ledger: LedgerFate::Interruption,
            lock: LockFate::Keep,
        },
        // Finalize may have written the record but not the index: `resume` finishes it.
        Stop::Fail { cause, message } if phase == Phase::Finalize => Ending::refused(
            cause,
            format!(
                "{message}. Traffic is on {}; the lock is kept: `glidepath resume {plan_path}` finishes the release",
                ctx.target().name()
            ),
        ),
        // Traffic is split: an error there sends it back.
        Stop::Fail { message, .. } if phase == Phase::Shift => {
            let reason = format!("an error during the shift: {message}");
            roll_back(ctx, reason, false, Cause::Unexpected).await
        }
        // A sharded migration stopped part way: the lock stays so that `resume` goes on
        // from the shard that stopped, never running a done shard again.
        Stop::Fail { cause, message }
            if phase == Phase::Migrate && !ctx.record.value.shards.is_empty() =>
        {
            Ending {
                outcome: Outcome::Interrupted,
                cause,
                message,
                ledger: LedgerFate::Interruption,
                lock: LockFate::Keep,
            }
        }
        Stop::Fail { cause, message } => {
            let mut message = message;
            if let Some(s) = &ctx.record.value.snapshot_id {
                message.push_str(&format!("; database snapshot {s} is the restore point"));
            }
            Ending {
                outcome: Outcome::Failed,
                cause,
                message,
                ledger: LedgerFate::Close,
                lock: LockFate::Release,
            }
        }
        Stop::Rollback { reason, by_gate } => {
            let cause = if by_gate {
                Cause::GateFailed
            } else {
                Cause::OperatorRollback
            };
            roll_back(ctx, reason, by_gate, cause).await
        }
    };
    end_run(ctx, ending).await
}

/// The rollback phase; the ending says whether it completed.
async fn roll_back(ctx: &mut Ctx<'_>, reason: String, by_gate: bool, cause: Cause) -> Ending {
    let r = ctx.rec();
    r.rollback_reason = Some(reason.clone());
    r.rollback_by_gate = by_gate;
    let result = match ctx.tick().await {
        Ok(()) => phases::rollback::run(ctx).await,
        Err(s) => Err(s),
    };
    let plan_path = ctx.plan.source.display().to_string();
    match result {
        Ok(done) => {
            let by = ctx.lock.as_ref().map_or_else(
                || ctx.record.value.holder.clone(),
                |l| l.body.holder.clone(),
            );
            let r = ctx.rec();
            r.rolled_back_at = Some(Utc::now());
            r.rolled_back_by = Some(if by_gate { "a failed gate".into() } else { by });
            let p = &mut ctx.rec().phases.rollback;
            p.done_at = Some(Utc::now());
            p.status = Some(PhaseStatus::Done);
            p.detail = done.detail.clone();
            Ending {
                outcome: Outcome::RolledBack,
                cause,
                message: format!("rolled back to {}: {reason}", ctx.live().name()),
                ledger: LedgerFate::Close,
                lock: LockFate::Release,
            }
        }
        Err(Stop::Abort) => rollback_stopped(ctx, LedgerFate::Interruption).await,
        Err(stop) => {
            let detail = rollback_failed(&stop);
            Ending {
                outcome: Outcome::Failed,
                cause,
                message: format!(
                    "the rollback did not complete ({detail}); traffic may still be split. The lock is kept: \
                     run `glidepath rollback {plan_path}` again"
                ),
                ledger: LedgerFate::Untouched,
                lock: LockFate::Keep,
            }
        }
    }
}

/// A manual rollback the operator stopped (Ctrl-C) before it took the lock: nothing was
/// changed and nothing is written, not even its intent, so a later `resume` does not take
/// the release for one being rolled back.
async fn stopped_before_lock(ctx: &Ctx<'_>) -> Finished {
    let c = Closing {
        store: ctx.ports.state.as_ref(),
        events: ctx.events(),
        release_id: &ctx.release,
        record: None,
        lock: None,
        process: Process::Rollback,
        report: None,
    };
    let ending = Ending {
        outcome: Outcome::Interrupted,
        cause: Cause::Interrupted,
        message: format!(
            "the rollback of release {} was stopped on request before it began: nothing was changed",
            ctx.release
        ),
        ledger: LedgerFate::Untouched,
        lock: LockFate::Keep,
    };
    end(c, ending).await
}

/// A manual rollback the operator stopped (Ctrl-C) between two steps: traffic stays
/// where it stood (read back for the message), the lock is kept for the run that finishes it.
async fn rollback_stopped(ctx: &Ctx<'_>, ledger: LedgerFate) -> Ending {
    let weights = match ctx.ports.traffic.weights().await {
        Ok(w) => format!("blue {}% / green {}%", w.blue, w.green),
        Err(_) => "weights unknown".into(),
    };
    let plan_path = ctx.plan.source.display().to_string();
    Ending {
        outcome: Outcome::Interrupted,
        cause: Cause::Interrupted,
        message: format!(
            "the rollback of release {} was stopped on request ({weights}); the lock is kept: \
             `glidepath rollback {plan_path}` (or `glidepath resume {plan_path}`) finishes it",
            ctx.release
        ),
        ledger,
        lock: LockFate::Keep,
    }
}

/// Roll back the latest release when it finalized and the old colour still runs its
/// version. Only the latest release: once it is rolled back (or if it never moved
/// traffic) traffic is already where a rollback sends it, and this says so.
async fn rollback_finalized(
    plan: &Plan,
    ports: &Ports,
    holder: &str,
    events: UnboundedSender<Envelope>,
    commands: UnboundedReceiver<Command>,
) -> Finished {
    let store = ports.state.as_ref();
    let refuse = |id: &str, cause, message: String| {
        let id = id.to_string();
        let events = events.clone();
        async move { end_early(ports, &events, &id, cause, message).await }
    };
    let index: Index = match ledger::load_index(store).await {
        Ok(ix) => ix,
        Err(e) => return refuse("", Cause::Unexpected, e.to_string()).await,
    };
    let Some(latest) = index.releases.first().cloned() else {
        return refuse(
            "",
            Cause::Usage,
            "nothing to roll back: no release is recorded yet".into(),
        )
        .await;
    };
    match latest.outcome {
        Some(Outcome::Finalized) => {}
        Some(_) => return already_back(ports, &events, &index, &latest).await,
        // Not in progress (no lock, not current) yet not ended: traffic could be anywhere.
        None => {
            return refuse(
                &latest.id,
                Cause::Unexpected,
                format!(
                    "release {} did not finish and is not in progress; check `glidepath status` and the listener before rolling anything back",
                    latest.id
                ),
            )
            .await
        }
    }
    let (Some(live), Some(standby)) = (index.live.clone(), index.standby.clone()) else {
        return refuse(
            &latest.id,
            Cause::Usage,
            "nothing to roll back: no old colour is on standby".into(),
        )
        .await;
    };
    if live.release.as_deref() != Some(latest.id.as_str()) {
        return refuse(
            &latest.id,
            Cause::Unexpected,
            format!(
                "the index names {} live but the latest release is {}; not rolling back anything until `glidepath status` makes sense",
                live.release.as_deref().unwrap_or("no glidepath release"),
                latest.id
            ),
        )
        .await;
    }
    if let Some(why) = &standby.unusable {
        return refuse(
            &latest.id,
            Cause::Usage,
            format!(
                "nothing safe to roll back to: {why}. Release version {} again instead",
                index
                    .releases
                    .iter()
                    .find(|e| e.outcome == Some(Outcome::Finalized) && e.id != latest.id)
                    .map_or("you want live".to_string(), |e| e.version.clone())
            ),
        )
        .await;
    }
    let id = latest.id.clone();
    let doc = match ledger::load_record(store, &id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return refuse(
                &id,
                Cause::Unexpected,
                format!("the record of release {id} is missing; cannot roll it back safely"),
            )
            .await
        }
        Err(e) => return refuse(&id, Cause::Unexpected, e.to_string()).await,
    };
    // After a contract the version before this release cannot run on the schema.
    if let Some(why) = super::contract::blocks_rollback(&doc.value) {
        return refuse(&id, Cause::Usage, why).await;
    }
    let old = match standby.colour {
        ColourName::Blue => &plan.blue,
        ColourName::Green => &plan.green,
    };
    // The task definition the old version ran, when glidepath released it.
    let recorded_td = match &standby.release {
        Some(prev) => match ledger::load_record(store, prev).await {
            Ok(r) => r.and_then(|d| d.value.task_definition),
            Err(e) => return refuse(&id, Cause::Unexpected, e.to_string()).await,
        },
        None => None,
    };
    match ports.fleet.service(&old.service).await {
        Ok(s) if recorded_td.as_ref().is_some_and(|td| *td != s.task_definition) => {
            return refuse(
                &id,
                Cause::Usage,
                format!(
                    "the old colour ({}, {}) runs {}, not {} that version {} was released with; sending traffic there would not bring {} back. Release version {} again instead",
                    standby.colour.name(),
                    old.service,
                    s.task_definition,
                    recorded_td.as_deref().unwrap_or_default(),
                    standby.version,
                    standby.version,
                    standby.version
                ),
            )
            .await
        }
        Ok(s) if s.running > 0 && s.desired > 0 => {}
        Ok(s) => {
            return refuse(
                &id,
                Cause::Usage,
                format!(
                    "the old colour ({}, {}) runs {} of {} task(s); sending traffic there would fail. Release version {} again instead",
                    standby.colour.name(),
                    old.service,
                    s.running,
                    s.desired,
                    standby.version
                ),
            )
            .await
        }
        Err(e) => return refuse(&id, Cause::Unexpected, e.to_string()).await,
    }
    // No task definition on record (the version glidepath found live before its first
    // release): the old colour must still run that version, told by its image.
    if recorded_td.is_none() {
        // Unreadable: no worse than before this check; the service answered above.
        let runs = live_image::read(plan, ports, standby.colour)
            .await
            .unwrap_or_default();
        let redeployed = match (&standby.image, &runs.version, &runs.image) {
            // Recorded as "unknown" (a foreign image): now another image, or one of ours.
            (Some(was), _, Some(now)) => now != was,
            (Some(_), Some(_), None) => true,
            // A version of this plan's template, another one.
            (None, Some(now), _) => *now != standby.version,
            // Not from the template (which may have changed since): cannot tell.
            _ => false,
        };
        if redeployed {
            let now = runs.version.map_or_else(
                || live_image::unknown_because(runs.image.as_deref().unwrap_or_default()),
                |v| format!("version {v}"),
            );
            return refuse(
                &id,
                Cause::Usage,
                format!(
                    "the old colour ({}, {}) runs {now}, not version {} that was live before release {id}; \
                     sending traffic there would not bring {} back. Release version {} again instead",
                    standby.colour.name(),
                    old.service,
                    standby.version,
                    standby.version,
                    standby.version
                ),
            )
            .await;
        }
    }
    // The companions it changed must still run what it gave them, and what they ran
    // before must still be there to go back to.
    match phases::companions::why_not_back(ports, &doc.value).await {
        Ok(None) => {}
        Ok(Some(why)) => return refuse(&id, Cause::Usage, why).await,
        Err(e) => return refuse(&id, Cause::Unexpected, e.to_string()).await,
    }
    started_as(
        &events,
        &id,
        plan,
        &live.version,
        standby.colour,
        &None,
        true,
        true,
    );
    let mut ctx = Ctx::new(plan, ports, events.clone(), commands, doc, false);
    ctx.process = Process::Rollback;
    // The finalized release was reported when it ran: this run tells only what it adds.
    ctx.shown = Some(ctx.record.value.clone());
    if ctx.aborted().is_err() {
        return stopped_before_lock(&ctx).await;
    }
    // The intent goes first, saved with the lock (`lock_phase`): a run killed after moving
    // traffic is then finished by `resume` or `rollback` (see `continue_undo`) instead of
    // being taken for finalized.
    ctx.rec().rollback_reason = Some(format!("{holder} rolled back the finalized release"));
    ctx.rec().rolled_back_by = Some(holder.to_string());
    if let Err(f) = lock_phase(&mut ctx, holder, false).await {
        return f;
    }
    undo_finalized(&mut ctx).await
}

/// `resume` or `rollback` found a finalized release whose manual rollback was cut short:
/// take its lock over and finish that rollback (every step compares first).
async fn continue_undo(
    plan: &Plan,
    ports: &Ports,
    holder: &str,
    doc: Doc<Record>,
    events: UnboundedSender<Envelope>,
    commands: UnboundedReceiver<Command>,
) -> Finished {
    let r = &doc.value;
    started_as(&events, &r.id, plan, &r.version, r.live, &None, true, true);
    let mut ctx = Ctx::new(plan, ports, events.clone(), commands, doc, false);
    ctx.process = Process::Rollback;
    if ctx.aborted().is_err() {
        return stopped_before_lock(&ctx).await;
    }
    if let Err(f) = lock_phase(&mut ctx, holder, true).await {
        return f;
    }
    // A superseding run (holding the lock before this one) may have undone it meanwhile.
    if !ctx.record.value.undoing_finalize() {
        return close_ended(plan, ports, ctx.record.clone(), &events, Process::Rollback).await;
    }
    undo_finalized(&mut ctx).await
}

/// Traffic of the finalized release in `ctx` back to the colour that was live before it,
/// then capacity, then the record and the index (live/standby swapped back).
async fn undo_finalized(ctx: &mut Ctx<'_>) -> Finished {
    let (back_to, from) = (ctx.live(), ctx.target());
    let back = shift::weights_for(back_to, 100);
    let moved = async {
        ctx.aborted()?;
        shift::set_weights(ctx, back).await?;
        ctx.aborted()?;
        let mut detail = phases::rollback::scale_after(ctx, from).await?;
        // Traffic first, then the companions, in reverse order.
        if let Some(c) = phases::companions::roll_back(ctx, Phase::Rollback).await? {
            detail.push_str(&format!("; {c}"));
        }
        Ok::<_, Stop>(detail)
    }
    .await;
    let by = ctx
        .record
        .value
        .rolled_back_by
        .clone()
        .unwrap_or_else(|| "the operator".into());
    let ending = match moved {
        Ok(detail) => {
            shift::record_weights(ctx, back, None);
            // Saved before told (a kill in between must not have said what the ledger never
            // held); should this write fail, the ending's writes try again and tell it.
            let _ = ctx.save().await;
            let r = ctx.rec();
            r.rolled_back_at = Some(Utc::now());
            r.phases.rollback.done_at = Some(Utc::now());
            r.phases.rollback.status = Some(PhaseStatus::Done);
            r.phases.rollback.detail = Some(detail.clone());
            let version = match (&r.live_version, &r.live_image) {
                (Some(v), _) => v.clone(),
                (None, Some(i)) => live_image::unknown_because(i),
                (None, None) => "the previous version".into(),
            };
            Ending {
                outcome: Outcome::RolledBack,
                cause: Cause::OperatorRollback,
                message: format!(
                    "rolled back to {version} ({} on {}); {by} asked for it",
                    back_to.name(),
                    ctx.colour(back_to).service
                ),
                ledger: LedgerFate::CloseAndSwap,
                lock: LockFate::Release,
            }
        }
        // The record keeps the rollback's intent (so it stays `undoing_finalize`): no
        // interruption is written into a finalized record.
        Err(Stop::Abort) => rollback_stopped(ctx, LedgerFate::Untouched).await,
        Err(stop) => {
            let detail = rollback_failed(&stop);
            let plan_path = ctx.plan.source.display().to_string();
            Ending {
                outcome: Outcome::Failed,
                cause: Cause::OperatorRollback,
                message: format!(
                    "the rollback did not complete: {detail}. The lock is kept: `glidepath rollback {plan_path}` finishes it"
                ),
                // The release stays finalized with the rollback's intent recorded: the
                // next `rollback` or `resume` finishes it.
                ledger: LedgerFate::Untouched,
                lock: LockFate::Keep,
            }
        }
    };
    end_run(ctx, ending).await
}

/// The latest release did not leave traffic on its colour (rolled back, or it stopped
/// before traffic moved): nothing to do; say what is live and since when.
async fn already_back(
    ports: &Ports,
    events: &UnboundedSender<Envelope>,
    index: &Index,
    latest: &IndexEntry,
) -> Finished {
    let fmt = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let live = index.live.as_ref().map_or_else(
        || {
            format!(
                "{} (never released by glidepath)",
                index.live_colour().name()
            )
        },
        |s| format!("{} on {}", s.version, s.colour.name()),
    );
    let (what, since) = match latest.rolled_back_at {
        Some(at) => (
            format!(
                "release {} ({}) was already rolled back at {} by {}",
                latest.id,
                latest.version,
                fmt(at),
                latest.rolled_back_by.as_deref().unwrap_or("someone")
            ),
            Some(at),
        ),
        None => {
            // Live since the release that made it live finished (if glidepath did that).
            let made_live = index
                .live
                .as_ref()
                .and_then(|s| s.release.as_deref())
                .and_then(|id| index.releases.iter().find(|e| e.id == id))
                .and_then(|e| e.finished_at);
            let ended = latest
                .outcome
                .map_or("did not finish".into(), |o| o.to_string());
            let since = match latest.outcome {
                Some(Outcome::RolledBack) => latest.finished_at,
                _ => made_live,
            };
            (
                format!(
                    "the latest release, {} ({}), {ended} without leaving traffic on its colour",
                    latest.id, latest.version
                ),
                since,
            )
        }
    };
    let since = since
        .map(|t| format!(" since {}", fmt(t)))
        .unwrap_or_default();
    // Say why the other colour is no way back either, so nobody moves traffic there by hand.
    let standby = index
        .standby
        .as_ref()
        .and_then(|s| s.unusable.as_deref())
        .map(|why| format!(". The standby cannot take traffic: {why}"))
        .unwrap_or_default();
    let c = Closing {
        store: ports.state.as_ref(),
        events,
        release_id: &latest.id,
        record: None,
        lock: None,
        process: Process::Rollback,
        report: None,
    };
    let ending = Ending {
        outcome: latest.outcome.unwrap_or(Outcome::Failed),
        ..Ending::refused(
            Cause::AlreadyBack,
            format!("nothing to roll back: {what}; {live} is live{since}{standby}"),
        )
    };
    end(c, ending).await
}
