//! Driving one release: the entry points commands call. The state machine itself lives
//! beside this file (one file per phase under `phases/`).
//!
//! Every entry point that runs a release emits `release_started` first and
//! `release_finished` last, always. What a stop means:
//! - gate failure or operator Rollback → rollback phase, exit 3, lock released;
//! - migration failure → exit 5, no traffic change, lock released, snapshot id printed;
//! - any other failure before traffic moved → exit 1, lock released;
//! - a failure while traffic is split → rollback (exit 1 if it was an error, not a gate);
//! - Abort (or a crash) → traffic stays, lock kept, `glidepath resume PLAN` continues;
//! - the lock held by someone else → exit 4 naming holder, release and age.

use super::ctx::{self, Ctx, Stop};
use super::event::{ColourName, Command, Envelope, Event, Outcome, Phase, PhaseStatus};
use super::ids;
use super::ledger::{self, Doc, EngineError, Index, IndexEntry, Interruption, Record, Slot};
use super::lock::{self, Acquire, LockBody, UnlockReport};
use super::phases::{self, shift};
use super::ports::Ports;
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

/// How a release run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub release_id: String,
    pub outcome: Outcome,
    /// The process exit code (crate::exit).
    pub exit_code: i32,
    pub message: String,
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
            return finish_early(
                &events,
                &id,
                crate::exit::UNEXPECTED,
                format!("cannot read the release index: {e}"),
            );
        }
    };
    let live = index.live_colour();
    started(&events, &id, plan, &req.version, live, &req.endpoint, false);
    let record = Record::new(
        &id,
        &plan.app,
        &plan.environment,
        &req.version,
        &plan.digest,
        &req.holder,
        live,
        index.live.as_ref().map(|s| s.version.clone()),
        now,
    );
    let doc = Doc::fresh(&ledger::record_key(&id), record);
    let superseded = index.current.clone();
    let mut ctx = Ctx::new(plan, ports, events, commands, doc, req.auto_approve);
    if let Err(f) = lock_phase(&mut ctx, &req.holder, false).await {
        return f;
    }
    if let Some(other) = superseded {
        ctx.emit(Event::Warning {
            message: format!(
                "release {other} was left unfinished and its lock is gone (broken by hand?); this release supersedes it"
            ),
        });
    }
    run_locked(ctx).await
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
    let found = match in_progress(plan, ports, &req.holder).await {
        Ok(f) => f,
        Err(e) => return finish_early(&events, "", crate::exit::UNEXPECTED, e.to_string()),
    };
    let mut doc = match found {
        InProgress::Nothing(why) => return finish_early(&events, "", crate::exit::USAGE, why),
        InProgress::Ended(doc) => return close_ended(plan, ports, doc, &events).await,
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
    // No operator commands during a manual rollback: the channel is closed at once.
    let (_, commands) = tokio::sync::mpsc::unbounded_channel();
    let found = match in_progress(plan, ports, holder).await {
        Ok(f) => f,
        Err(e) => return finish_early(&events, "", crate::exit::UNEXPECTED, e.to_string()),
    };
    match found {
        InProgress::Running(doc) => {
            let r = &doc.value;
            started(&events, &r.id, plan, &r.version, r.live, &None, true);
            let mut ctx = Ctx::new(plan, ports, events.clone(), commands, doc, false);
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
        InProgress::Ended(doc) => close_ended(plan, ports, doc, &events).await,
        InProgress::Nothing(_) => rollback_finalized(plan, ports, holder, events, commands).await,
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
    Ok(Status {
        app: plan.app.clone(),
        environment: plan.environment.clone(),
        lock,
        live: index.live,
        standby: index.standby,
        current,
        last: index.releases.into_iter().next(),
    })
}

/// Past releases, newest first (from the index).
pub async fn history(_plan: &Plan, ports: &Ports) -> Result<Vec<IndexEntry>, EngineError> {
    Ok(ledger::load_index(ports.state.as_ref()).await?.releases)
}

/// Show who holds the lock; with `force`, break it.
pub async fn unlock(_plan: &Plan, ports: &Ports, force: bool) -> Result<UnlockReport, EngineError> {
    lock::unlock(ports.state.as_ref(), force).await
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
        },
    );
}

fn finished(
    events: &UnboundedSender<Envelope>,
    id: &str,
    outcome: Outcome,
    exit_code: i32,
    message: String,
    snapshot_id: Option<String>,
) -> Finished {
    ctx::emit(
        events,
        id,
        Event::ReleaseFinished {
            outcome,
            exit_code,
            message: message.clone(),
            snapshot_id,
        },
    );
    Finished {
        release_id: id.into(),
        outcome,
        exit_code,
        message,
    }
}

fn finish_early(
    events: &UnboundedSender<Envelope>,
    id: &str,
    exit_code: i32,
    message: String,
) -> Finished {
    finished(events, id, Outcome::Failed, exit_code, message, None)
}

enum InProgress {
    Running(Doc<Record>),
    /// The release named by the lock had already ended (a crash before the lock went).
    Ended(Doc<Record>),
    Nothing(String),
}

/// The release to continue: the lock's (it outlives crashes and aborts), else the index's
/// `current`. A lock whose release has no record yet (a crash right after locking) gets
/// a fresh record from the lock body.
async fn in_progress(plan: &Plan, ports: &Ports, holder: &str) -> Result<InProgress, EngineError> {
    let store = ports.state.as_ref();
    let index = ledger::load_index(store).await?;
    let held = lock::read(store).await?.map(|(b, _)| b);
    let Some(id) = held
        .as_ref()
        .map(|b| b.release.clone())
        .or_else(|| index.current.clone())
    else {
        let last = index.releases.first().map_or(String::new(), |e| {
            format!(
                " (the last release, {}, {})",
                e.id,
                e.outcome
                    .map_or("did not finish".into(), |o| format!("{o:?}").to_lowercase())
            )
        });
        return Ok(InProgress::Nothing(format!(
            "no release is in progress{last}; nothing to resume"
        )));
    };
    match ledger::load_record(store, &id).await? {
        Some(doc) if doc.value.outcome.is_some() => Ok(InProgress::Ended(doc)),
        Some(doc) => Ok(InProgress::Running(doc)),
        None => match held.filter(|b| b.release == id) {
            Some(b) => {
                let now = Utc::now();
                let mut r = Record::new(
                    &id,
                    &plan.app,
                    &plan.environment,
                    &b.version,
                    &plan.digest,
                    holder,
                    index.live_colour(),
                    index.live.as_ref().map(|s| s.version.clone()),
                    now,
                );
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
/// release the lock and report how it ended.
async fn close_ended(
    plan: &Plan,
    ports: &Ports,
    doc: Doc<Record>,
    events: &UnboundedSender<Envelope>,
) -> Finished {
    let r = doc.value;
    started(events, &r.id, plan, &r.version, r.live, &None, true);
    let store = ports.state.as_ref();
    let mut message = format!(
        "release {} had already ended ({})",
        r.id,
        r.message.clone().unwrap_or_default()
    );
    if let Ok(Some((b, _))) = lock::read(store).await {
        if b.release == r.id {
            match ledger::update_index(store, |ix| {
                if ix.current.as_deref() == Some(r.id.as_str()) {
                    ix.current = None;
                }
                ix.upsert(&r);
            })
            .await
            .and(Ok(()))
            {
                Ok(()) => {}
                Err(e) => message.push_str(&format!("; the index could not be updated: {e}")),
            }
            match retry_delete_lock(store).await {
                Ok(()) => message.push_str("; released the lock it left behind"),
                Err(e) => message.push_str(&format!("; its lock could not be released: {e}")),
            }
        }
    }
    finished(
        events,
        &r.id,
        r.outcome.unwrap_or(Outcome::Failed),
        r.exit_code.unwrap_or(crate::exit::UNEXPECTED),
        message,
        r.snapshot_id.clone(),
    )
}

async fn retry_delete_lock(store: &dyn super::ports::StateStore) -> Result<(), EngineError> {
    super::retry::quietly(|| store.delete(lock::LOCK_KEY)).await?;
    Ok(())
}

/// The forward phases from where the record says, then the ending.
async fn run_locked(mut ctx: Ctx<'_>) -> Finished {
    let result = forward(&mut ctx).await;
    match result {
        Ok(()) => {
            release_lock(&mut ctx).await;
            let r = &ctx.record.value;
            let message = r.message.clone().unwrap_or_else(|| "finalized".into());
            finished(
                ctx.events(),
                &ctx.release,
                Outcome::Finalized,
                crate::exit::OK,
                message,
                r.snapshot_id.clone(),
            )
        }
        Err((phase, stop)) => conclude(&mut ctx, phase, stop).await,
    }
}

/// Take the lock (re-taking our own when resuming) and make sure the record exists.
async fn lock_phase(ctx: &mut Ctx<'_>, holder: &str, resuming: bool) -> Result<(), Finished> {
    let t0 = Instant::now();
    ctx.emit(Event::PhaseStarted { phase: Phase::Lock });
    let store = ctx.ports.state.as_ref();
    let version = ctx.record.value.version.clone();
    let fail = |ctx: &Ctx<'_>, code: i32, message: String| {
        ctx.emit(Event::PhaseFinished {
            phase: Phase::Lock,
            status: PhaseStatus::Failed,
            detail: Some(message.clone()),
            duration_ms: ms(t0),
        });
        finished(
            ctx.events(),
            &ctx.release,
            Outcome::Failed,
            code,
            message,
            None,
        )
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
            return Err(fail(ctx, crate::exit::LOCKED, m));
        }
        Err(e) => {
            return Err(fail(
                ctx,
                crate::exit::UNEXPECTED,
                format!("cannot take the release lock: {e}"),
            ))
        }
    };
    ctx.lock = Some(lock);
    let now = Utc::now();
    let lp = &mut ctx.rec().phases.lock;
    lp.intent_at.get_or_insert(now);
    lp.done_at = Some(now);
    lp.status = Some(PhaseStatus::Done);
    lp.detail = Some(format!("held by {holder}"));
    if let Err(e) = ctx.record.save(store).await {
        release_lock(ctx).await;
        return Err(fail(
            ctx,
            crate::exit::UNEXPECTED,
            format!("cannot write the release record: {e}"),
        ));
    }
    ctx.emit(Event::LockAcquired {
        holder: holder.into(),
    });
    ctx.emit(Event::PhaseFinished {
        phase: Phase::Lock,
        status: PhaseStatus::Done,
        detail: Some(format!("held by {holder}")),
        duration_ms: ms(t0),
    });
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

    for phase in Phase::ORDER.into_iter().skip(1) {
        let pr = ctx.record.value.phases.get(phase).clone();
        ctx.emit(Event::PhaseStarted { phase });
        if pr.is_done() {
            ctx.emit(Event::PhaseFinished {
                phase,
                status: pr.status.unwrap_or(PhaseStatus::Done),
                detail: Some(format!(
                    "done before this run{}",
                    pr.detail.map(|d| format!(": {d}")).unwrap_or_default()
                )),
                duration_ms: 0,
            });
            continue;
        }
        let t0 = Instant::now();
        let result = match ctx.tick().await {
            Ok(()) => phases::run(phase, ctx).await,
            Err(stop) => Err(stop),
        };
        match result {
            Ok(done) => {
                let p = ctx.rec().phases.get_mut(phase);
                let now = Utc::now();
                p.intent_at.get_or_insert(now);
                p.done_at = Some(now);
                p.status = Some(done.status);
                p.detail = done.detail.clone();
                ctx.save().await.map_err(|s| (phase, s))?;
                ctx.emit(Event::PhaseFinished {
                    phase,
                    status: done.status,
                    detail: done.detail,
                    duration_ms: ms(t0),
                });
            }
            Err(stop) => {
                ctx.emit(Event::PhaseFinished {
                    phase,
                    status: PhaseStatus::Failed,
                    detail: Some(describe_stop(&stop)),
                    duration_ms: ms(t0),
                });
                return Err((phase, stop));
            }
        }
    }
    Ok(())
}

/// Tell the views the rollback phase failed; returns what stopped it, for the message.
fn rollback_failed(ctx: &Ctx, stop: &Stop, t0: Instant) -> String {
    let detail = describe_stop(stop);
    ctx.emit(Event::PhaseFinished {
        phase: Phase::Rollback,
        status: PhaseStatus::Failed,
        detail: Some(detail.clone()),
        duration_ms: ms(t0),
    });
    detail
}

fn describe_stop(stop: &Stop) -> String {
    match stop {
        Stop::Abort => "stopped by the operator; `glidepath resume` continues here".into(),
        Stop::Rollback { reason, .. } => format!("rolling back: {reason}"),
        Stop::Fail { message, .. } => message.clone(),
        Stop::LockLost { message } => message.clone(),
    }
}

async fn release_lock(ctx: &mut Ctx<'_>) {
    if let Some(lock) = ctx.lock.take() {
        if let Err(e) = lock.release(ctx.ports.state.as_ref()).await {
            ctx.emit(Event::Warning {
                message: format!(
                    "could not release the lock: {e}; `glidepath unlock PLAN --force` clears it"
                ),
            });
        }
    }
}

/// Record how the release ended, update the index and release the lock.
async fn close(
    ctx: &mut Ctx<'_>,
    outcome: Outcome,
    exit_code: i32,
    message: &str,
) -> Result<(), Stop> {
    let r = ctx.rec();
    r.outcome = Some(outcome);
    r.exit_code = Some(exit_code);
    r.message = Some(message.into());
    r.finished_at = Some(Utc::now());
    ctx.save().await?;
    let rec = ctx.record.value.clone();
    ledger::update_index(ctx.ports.state.as_ref(), |ix| {
        if ix.current.as_deref() == Some(rec.id.as_str()) {
            ix.current = None;
        }
        ix.upsert(&rec);
    })
    .await?;
    release_lock(ctx).await;
    Ok(())
}

/// What a stop means for the release (see the module doc).
async fn conclude(ctx: &mut Ctx<'_>, phase: Phase, stop: Stop) -> Finished {
    let snapshot = ctx.record.value.snapshot_id.clone();
    let plan_path = ctx.plan.source.display().to_string();
    let (outcome, code, message) = match stop {
        Stop::Abort => {
            let weights = match ctx.ports.traffic.weights().await {
                Ok(w) => format!("blue {}% / green {}%", w.blue, w.green),
                Err(_) => "weights unknown".into(),
            };
            let message = format!(
                "release {} stopped during {phase} ({weights}); nothing was rolled back and the lock is kept. \
                 Continue with `glidepath resume {plan_path}` or roll back with `glidepath rollback {plan_path}`",
                ctx.release
            );
            // Recorded (not as an outcome: the release is not over) so watchers can tell.
            ctx.rec().interrupted = Some(Interruption {
                at: Utc::now(),
                message: message.clone(),
            });
            let mut message = message;
            if let Err(e) = ctx.save().await {
                message.push_str(&format!(
                    "; recording the stop failed: {}",
                    describe_stop(&e)
                ));
            }
            (Outcome::Interrupted, crate::exit::UNEXPECTED, message)
        }
        Stop::LockLost { message } => (Outcome::Failed, crate::exit::LOCKED, message),
        Stop::Fail { exit_code, message } if phase == Phase::Finalize => {
            ctx.rec().outcome = None;
            (
                Outcome::Failed,
                exit_code,
                format!(
                    "{message}. Traffic is on {}; the lock is kept: `glidepath resume {plan_path}` finishes the release",
                    ctx.target().name()
                ),
            )
        }
        Stop::Fail { message, .. } if phase == Phase::Shift => {
            let reason = format!("an error during the shift: {message}");
            let mut f = roll_back(ctx, reason, false).await;
            if f.outcome == Outcome::RolledBack {
                f.exit_code = crate::exit::UNEXPECTED;
            }
            (f.outcome, f.exit_code, f.message)
        }
        Stop::Fail { exit_code, message } => {
            let mut message = message;
            if let Some(s) = &snapshot {
                message.push_str(&format!("; database snapshot {s} is the restore point"));
            }
            if let Err(e) = close(ctx, Outcome::Failed, exit_code, &message).await {
                message.push_str(&format!(
                    "; recording the failure also failed: {}",
                    describe_stop(&e)
                ));
            }
            (Outcome::Failed, exit_code, message)
        }
        Stop::Rollback { reason, by_gate } => {
            let f = roll_back(ctx, reason, by_gate).await;
            (f.outcome, f.exit_code, f.message)
        }
    };
    finished(ctx.events(), &ctx.release, outcome, code, message, snapshot)
}

/// The rollback phase and its record. Exit 3 whether a gate or the operator caused it.
async fn roll_back(ctx: &mut Ctx<'_>, reason: String, by_gate: bool) -> Finished {
    let t0 = Instant::now();
    let r = ctx.rec();
    r.rollback_reason = Some(reason.clone());
    r.rollback_by_gate = by_gate;
    ctx.emit(Event::PhaseStarted {
        phase: Phase::Rollback,
    });
    let result = match ctx.tick().await {
        Ok(()) => phases::rollback::run(ctx).await,
        Err(s) => Err(s),
    };
    let plan_path = ctx.plan.source.display().to_string();
    match result {
        Ok(done) => {
            let now = Utc::now();
            let p = &mut ctx.rec().phases.rollback;
            p.done_at = Some(now);
            p.status = Some(PhaseStatus::Done);
            p.detail = done.detail.clone();
            ctx.emit(Event::PhaseFinished {
                phase: Phase::Rollback,
                status: PhaseStatus::Done,
                detail: done.detail,
                duration_ms: ms(t0),
            });
            let mut message = format!("rolled back to {}: {reason}", ctx.live().name());
            if let Err(e) =
                close(ctx, Outcome::RolledBack, crate::exit::ROLLED_BACK, &message).await
            {
                message.push_str(&format!("; recording it failed: {}", describe_stop(&e)));
            }
            Finished {
                release_id: ctx.release.clone(),
                outcome: Outcome::RolledBack,
                exit_code: crate::exit::ROLLED_BACK,
                message,
            }
        }
        Err(stop) => {
            let detail = rollback_failed(ctx, &stop, t0);
            Finished {
                release_id: ctx.release.clone(),
                outcome: Outcome::Failed,
                exit_code: crate::exit::UNEXPECTED,
                message: format!(
                    "the rollback did not complete ({detail}); traffic may still be split. The lock is kept: \
                     run `glidepath rollback {plan_path}` again"
                ),
            }
        }
    }
}

/// Roll back the last finalized release while its old colour still runs.
async fn rollback_finalized(
    plan: &Plan,
    ports: &Ports,
    holder: &str,
    events: UnboundedSender<Envelope>,
    commands: UnboundedReceiver<Command>,
) -> Finished {
    let store = ports.state.as_ref();
    let index: Index = match ledger::load_index(store).await {
        Ok(ix) => ix,
        Err(e) => return finish_early(&events, "", crate::exit::UNEXPECTED, e.to_string()),
    };
    let (Some(live), Some(standby)) = (index.live.clone(), index.standby.clone()) else {
        return finish_early(
            &events,
            "",
            crate::exit::USAGE,
            "nothing to roll back: no release is in progress and no finalized release has an old colour on standby".into(),
        );
    };
    let Some(id) = live.release.clone() else {
        return finish_early(
            &events,
            "",
            crate::exit::USAGE,
            "nothing to roll back: the live colour was not released by glidepath".into(),
        );
    };
    let doc = match ledger::load_record(store, &id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return finish_early(
                &events,
                &id,
                crate::exit::UNEXPECTED,
                format!("the record of release {id} is missing; cannot roll it back safely"),
            )
        }
        Err(e) => return finish_early(&events, &id, crate::exit::UNEXPECTED, e.to_string()),
    };
    let old = match standby.colour {
        ColourName::Blue => &plan.blue,
        ColourName::Green => &plan.green,
    };
    match ports.fleet.service(&old.service).await {
        Ok(s) if s.running > 0 && s.desired > 0 => {}
        Ok(s) => {
            return finish_early(
                &events,
                &id,
                crate::exit::USAGE,
                format!(
                    "the old colour ({}, {}) runs {} of {} task(s); sending traffic there would fail. Release version {} again instead",
                    standby.colour.name(),
                    old.service,
                    s.running,
                    s.desired,
                    standby.version
                ),
            )
        }
        Err(e) => return finish_early(&events, &id, crate::exit::UNEXPECTED, e.to_string()),
    }
    started(
        &events,
        &id,
        plan,
        &live.version,
        standby.colour,
        &None,
        true,
    );
    let mut ctx = Ctx::new(plan, ports, events.clone(), commands, doc, false);
    if let Err(f) = lock_phase(&mut ctx, holder, false).await {
        return f;
    }
    let t0 = Instant::now();
    ctx.emit(Event::PhaseStarted {
        phase: Phase::Rollback,
    });
    let moved = async {
        shift::set_weights(&ctx, shift::weights_for(standby.colour, 100)).await?;
        phases::rollback::scale_after(&ctx, live.colour).await
    }
    .await;
    let detail = match moved {
        Ok(d) => d,
        Err(stop) => {
            let detail = rollback_failed(&ctx, &stop, t0);
            release_lock(&mut ctx).await;
            return finished(
                &events,
                &id,
                Outcome::Failed,
                crate::exit::UNEXPECTED,
                format!("the rollback did not complete: {detail}"),
                None,
            );
        }
    };
    let message = format!(
        "rolled back to {} ({} on {}); {holder} asked for it",
        standby.version,
        standby.colour.name(),
        old.service
    );
    let r = ctx.rec();
    r.outcome = Some(Outcome::RolledBack);
    r.exit_code = Some(crate::exit::ROLLED_BACK);
    r.message = Some(message.clone());
    r.rollback_reason = Some(format!("{holder} rolled back the finalized release"));
    r.phases.rollback.done_at = Some(Utc::now());
    r.phases.rollback.status = Some(PhaseStatus::Done);
    r.phases.rollback.detail = Some(detail.clone());
    let mut message = message;
    if let Err(e) = ctx.save().await {
        message.push_str(&format!("; recording it failed: {}", describe_stop(&e)));
    }
    let rec = ctx.record.value.clone();
    let swapped = ledger::update_index(store, |ix| {
        if ix.live.as_ref().and_then(|s| s.release.as_deref()) == Some(id.as_str()) {
            std::mem::swap(&mut ix.live, &mut ix.standby);
        }
        ix.upsert(&rec);
    })
    .await;
    if let Err(e) = swapped {
        message.push_str(&format!("; the index could not be updated: {e}"));
    }
    ctx.emit(Event::PhaseFinished {
        phase: Phase::Rollback,
        status: PhaseStatus::Done,
        detail: Some(detail),
        duration_ms: ms(t0),
    });
    release_lock(&mut ctx).await;
    finished(
        &events,
        &id,
        Outcome::RolledBack,
        crate::exit::ROLLED_BACK,
        message,
        None,
    )
}
