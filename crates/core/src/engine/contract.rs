//! `glidepath contract`: the third step of an expand / deploy / contract schema change.
//!
//! A plan's `[contract]` is a migration that removes what the previous version still needed
//! (a column it reads, a table it writes). It never runs inside a release. This runs it:
//!
//! Contract. Refuse (exit 2, saying why, nothing changed) unless the plan has `[contract]`,
//! the latest release is finalized and is the live one, and it has been live (since it
//! finalized) for `contract.after`. A contract that already ran for that release is not run
//! again (exit 0, saying when it ran). Otherwise take the release lock (exit 4 when held),
//! then exactly as the migration phase: intent = the contract's `startedBy` (derived from
//! the release id and the attempt, sharing the app's migration prefix) in the release's
//! record → follow the recorded task, else adopt one ECS knows by that `startedBy`, else
//! wait (bounded by `[contract].timeout`) for another release's migration to stop, then one
//! `RunTask` of the release's task definition with the contract's command → the task ARN to
//! the record → tail its logs until STOPPED. Exit code 0: the record gets `done_at` (and the
//! index `contracted_at`, shown by `history`), and from then on `glidepath rollback` of that
//! release is refused: the version before it needs the schema the contract removed. Any
//! other exit: exit 5, recorded; running `contract` again starts a new attempt (one task).
//! The ending goes through [`run::end`] (the release's outcome is never touched).

use super::ctx::{Ctx, Stop};
use super::event::{Command, Envelope, Event, Outcome};
use super::ids;
use super::ledger::{self, ContractRecord, Record};
use super::lock::{self, human, Acquire};
use super::phases::{deploy, migrate};
use super::ports::{Ports, TaskSpec};
use super::run::{self, Closing, Ending, Finished, LedgerFate, LockFate};
use crate::exit::{Cause, Process};
use crate::plan::Plan;
use chrono::Utc;
use tokio::sync::mpsc::UnboundedSender;

/// Why `glidepath rollback` of this (finalized) release is refused, if its contract ran.
pub fn blocks_rollback(r: &Record) -> Option<String> {
    let c = r.contract.as_ref()?;
    let at = c.done_at?;
    Some(format!(
        "the contract migration of release {} ran at {} (by {}): the schema no longer has what {} needs, so traffic cannot go back to it. \
         Release a fixed version instead",
        r.id,
        at.format("%Y-%m-%d %H:%M:%SZ"),
        c.by,
        r.live_version
            .as_deref()
            .map_or("the previous version".to_string(), |v| format!("version {v}"))
    ))
}

/// What `glidepath status` says of the plan's contract (None: the plan has no
/// `[contract]`): ran when and by whom, a failed or unfinished attempt, or not run and
/// whether it would run now or be refused, and why. `latest` is the newest release's
/// record.
pub fn state(
    plan: &Plan,
    index: &ledger::Index,
    latest: Option<&Record>,
    now: chrono::DateTime<Utc>,
) -> Option<String> {
    let cfg = plan.contract.as_ref()?;
    let at = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let Some(r) = latest else {
        return Some("not run; refused now: no release is recorded yet".into());
    };
    if let Some(c) = &r.contract {
        let task = c.task_arn.as_deref().map_or("no task yet", task_id);
        if let Some(done) = c.done_at {
            return Some(format!(
                "ran at {} by {} on release {} (task {task}); rollback to the version before is refused",
                at(done),
                c.by,
                r.id
            ));
        }
        if let Some(code) = c.exit_code {
            return Some(format!(
                "attempt {} on release {} by {} failed (exit code {code}, task {task}); `glidepath contract` starts a new attempt",
                c.attempt + 1,
                r.id,
                c.by
            ));
        }
        if let Some(since) = c.intent_at {
            return Some(format!(
                "started at {} by {} on release {} (task {task}) and not ended: running, or cut short (`glidepath contract` follows the same task)",
                at(since),
                c.by,
                r.id
            ));
        }
    }
    let refused = match r.outcome {
        None => Some(format!("release {} has not finished", r.id)),
        Some(Outcome::Finalized)
            if index.live.as_ref().and_then(|s| s.release.as_deref()) != Some(r.id.as_str()) =>
        {
            Some(format!("release {} is not the live one", r.id))
        }
        Some(Outcome::Finalized) => {
            let since = r.finished_at.unwrap_or(r.started_at);
            let live_for = (now - since).to_std().unwrap_or_default();
            (live_for < cfg.after).then(|| {
                let ready = since + chrono::Duration::from_std(cfg.after).unwrap_or_default();
                format!(
                    "release {} has been live for {} of the {} [contract].after; it may run after {}",
                    r.id,
                    human(live_for),
                    human(cfg.after),
                    at(ready)
                )
            })
        }
        Some(o) => Some(format!("the latest release, {}, ended {o}", r.id)),
    };
    Some(match refused {
        Some(why) => format!("not run; refused now: {why}"),
        None => format!(
            "not run; `glidepath contract` would run it now on release {}",
            r.id
        ),
    })
}

/// Run the plan's contract migration on the latest release (see the module doc).
pub async fn contract(
    plan: &Plan,
    ports: &Ports,
    holder: &str,
    events: UnboundedSender<Envelope>,
) -> Finished {
    let store = ports.state.as_ref();
    let refuse = |id: &str, cause: Cause, message: String| {
        let id = id.to_string();
        let events = events.clone();
        async move {
            let c = Closing {
                store,
                events: &events,
                release_id: &id,
                record: None,
                lock: None,
                process: Process::Release,
                report: None,
            };
            run::end(c, Ending::refused(cause, message)).await
        }
    };
    let path = plan.source.display().to_string();
    let Some(cfg) = plan.contract.as_ref() else {
        return refuse(
            "",
            Cause::Usage,
            format!(
                "{path} has no [contract] table; nothing to run (docs/plan.md, \"[contract]\")"
            ),
        )
        .await;
    };
    let index = match ledger::load_index(store).await {
        Ok(ix) => ix,
        Err(e) => return refuse("", Cause::Unexpected, e.to_string()).await,
    };
    let Some(latest) = index.releases.first().cloned() else {
        return refuse(
            "",
            Cause::Usage,
            "no release is recorded yet; a contract runs after a release is finalized".into(),
        )
        .await;
    };
    let id = latest.id.clone();
    match latest.outcome {
        Some(Outcome::Finalized) => {}
        None => {
            return refuse(
                &id,
                Cause::Usage,
                format!(
                    "release {id} ({}) has not finished; a contract runs only once it is finalized",
                    latest.version
                ),
            )
            .await
        }
        Some(o) => {
            return refuse(
                &id,
                Cause::Usage,
                format!(
                    "the latest release, {id} ({}), ended {o}; a contract runs only after a finalized release, \
                     since the version that is live may still need what it removes",
                    latest.version
                ),
            )
            .await
        }
    }
    if index.live.as_ref().and_then(|s| s.release.as_deref()) != Some(id.as_str()) {
        return refuse(
            &id,
            Cause::Usage,
            format!("release {id} is not the live one (it was rolled back); nothing to contract"),
        )
        .await;
    }
    let doc = match ledger::load_record(store, &id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return refuse(
                &id,
                Cause::Unexpected,
                format!("the record of release {id} is missing"),
            )
            .await
        }
        Err(e) => return refuse(&id, Cause::Unexpected, e.to_string()).await,
    };
    if let Some(c) = doc.value.contract.as_ref().filter(|c| c.done_at.is_some()) {
        let ending = Ending {
            outcome: Outcome::Finalized,
            ..Ending::refused(
                Cause::Done,
                format!(
                    "the contract migration of release {id} already ran at {} (task {}); it runs once",
                    c.done_at.map_or(String::new(), |t| t
                        .format("%Y-%m-%d %H:%M:%SZ")
                        .to_string()),
                    c.task_arn.as_deref().map_or("unknown", task_id)
                ),
            )
        };
        let c = Closing {
            store,
            events: &events,
            release_id: &id,
            record: None,
            lock: None,
            process: Process::Release,
            report: None,
        };
        return run::end(c, ending).await;
    }
    let since = latest.finished_at.unwrap_or(latest.started_at);
    let live_for = (Utc::now() - since).to_std().unwrap_or_default();
    if live_for < cfg.after {
        let ready = since + chrono::Duration::from_std(cfg.after).unwrap_or_default();
        return refuse(
            &id,
            Cause::Usage,
            format!(
                "release {id} ({}) has been live for {} of the {} [contract].after; run the contract after {}",
                latest.version,
                human(live_for),
                human(cfg.after),
                ready.format("%Y-%m-%d %H:%M:%SZ")
            ),
        )
        .await;
    }

    // No operator commands: the channel is closed at once.
    let (_, commands) = tokio::sync::mpsc::unbounded_channel::<Command>();
    let version = doc.value.version.clone();
    let mut ctx = Ctx::new(plan, ports, events.clone(), commands, doc, false);
    match lock::acquire_for_contract(store, holder, &id, &version, plan.state.lease).await {
        Ok(Acquire::Acquired(l)) => ctx.lock = Some(l),
        Ok(Acquire::Held(b)) => {
            let m = format!("the release lock is {}", b.describe(Utc::now()));
            return refuse(&id, Cause::LockHeld, m).await;
        }
        Err(e) => {
            let m = format!("cannot take the release lock: {e}");
            return refuse(&id, Cause::Unexpected, m).await;
        }
    }
    ctx.emit(Event::Notice {
        message: format!(
            "running the contract migration of release {id} (version {version}, live for {})",
            human(live_for)
        ),
    });
    let ending = match run_task(&mut ctx, holder).await {
        Ok(message) => Ending {
            outcome: Outcome::Finalized,
            cause: Cause::Done,
            message,
            ledger: LedgerFate::Untouched,
            lock: LockFate::Release,
        },
        Err(Stop::LockLost { message }) => Ending::refused(Cause::LockHeld, message),
        Err(Stop::Fail { cause, message }) => Ending {
            outcome: Outcome::Failed,
            cause,
            message,
            ledger: LedgerFate::Untouched,
            lock: LockFate::Release,
        },
        Err(other) => Ending {
            outcome: Outcome::Failed,
            cause: Cause::Unexpected,
            message: format!("the contract stopped: {other:?}"),
            ledger: LedgerFate::Untouched,
            lock: LockFate::Release,
        },
    };
    let c = Closing {
        store,
        events: &events,
        release_id: &id,
        // The release's record is not this run's to close; its snapshot is no restore
        // point for a contract either.
        record: None,
        lock: ctx.lock.take(),
        process: Process::Release,
        report: None,
    };
    run::end(c, ending).await
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Intent, one task, its end: the migration phase's guarantees for the contract's task.
async fn run_task(ctx: &mut Ctx<'_>, holder: &str) -> Result<String, Stop> {
    let Some(cfg) = ctx.plan.contract.as_ref() else {
        return Err(Stop::fail("the plan has no [contract]"));
    };
    let task = &cfg.task;
    let ports = ctx.ports;
    // A failed attempt stays recorded; the next run is a new attempt with its own task.
    let mut c = ctx.record.value.contract.clone().unwrap_or_default();
    if c.exit_code.is_some_and(|code| code != 0) {
        c = ContractRecord {
            attempt: c.attempt + 1,
            ..ContractRecord::default()
        };
    }
    c.started_by = ids::started_by(
        &ctx.plan.app,
        &ctx.plan.environment,
        &format!("{}#contract-{}", ctx.release, c.attempt),
    );
    c.by = holder.to_string();
    c.intent_at.get_or_insert(Utc::now());
    let started_by = c.started_by.clone();
    let recorded = c.task_arn.clone();
    ctx.rec().contract = Some(c);
    ctx.save().await?;

    let info = match recorded {
        Some(arn) => {
            ctx.call(|| ports.tasks.describe(&arn, &task.container))
                .await?
        }
        None => {
            let found = ctx
                .call(|| ports.tasks.find_started_by(&started_by))
                .await?;
            let info = match migrate::pick(found) {
                Some(t) => {
                    ctx.emit(Event::Notice {
                        message: format!(
                            "contract task {} (startedBy {started_by}) exists from an earlier run; following it instead of starting another",
                            task_id(&t.arn)
                        ),
                    });
                    t
                }
                None => {
                    migrate::wait_for_other_migrations(ctx, &started_by, task.timeout).await?;
                    // The live version's task definition: the contract ships with it.
                    let task_definition = deploy::task_definition(ctx).await?;
                    let spec = TaskSpec {
                        task_definition,
                        container: task.container.clone(),
                        command: task.command.clone(),
                        started_by: started_by.clone(),
                        client_token: ids::client_token(&started_by),
                        subnets: task.subnets.clone(),
                        security_groups: task.security_groups.clone(),
                        assign_public_ip: task.assign_public_ip,
                        environment: Vec::new(),
                    };
                    ctx.call(|| ports.tasks.run_once(&spec)).await?
                }
            };
            if let Some(c) = ctx.rec().contract.as_mut() {
                c.task_arn = Some(info.arn.clone());
            }
            ctx.save().await?;
            info
        }
    };
    let info = migrate::follow(ctx, info, &task.container, task.timeout, "contract").await?;
    let id = task_id(&info.arn).to_string();
    let ok = info.exit_code == Some(0);
    let message = if ok {
        format!(
            "contract task {id} exited 0; release {} is contracted: `glidepath rollback` to the version before it is refused from now on",
            ctx.release
        )
    } else {
        format!(
            "contract task {id} {} ({}); the old schema may be partly gone, check the task's logs. \
             Run `glidepath contract {}` again for a new attempt once fixed",
            info.exit_code
                .map_or("stopped without an exit code".into(), |c| format!(
                    "exited with code {c}"
                )),
            info.stopped_reason.as_deref().unwrap_or("no reason given"),
            ctx.plan.source.display()
        )
    };
    if let Some(c) = ctx.rec().contract.as_mut() {
        c.exit_code = info.exit_code;
        c.message = Some(message.clone());
        if ok {
            c.done_at = Some(Utc::now());
        }
    }
    ctx.save().await?;
    let record = ctx.record.value.clone();
    ledger::update_index(ctx.ports.state.as_ref(), |ix| ix.upsert(&record)).await?;
    if ok {
        Ok(message)
    } else {
        Err(Stop::Fail {
            cause: Cause::MigrationFailed,
            message,
        })
    }
}
