//! `glidepath watch`: follow a release that another glidepath is running, read-only.
//!
//! The watcher polls the release's ledger record (and the lock). What changed between two
//! records it read becomes events through [`durable::since`], the function the releasing
//! run reports with, so watch says what run said, in the same order. Beside those it shows
//! what only a watcher can: the bake observed so far (as last saved), approvals as
//! notices, the migration task's status and log read live (read-only) from ECS and
//! CloudWatch Logs, and a warning when the releasing process seems gone. Health polls live
//! only in the releasing process.
//!
//! It never writes anything and never takes the lock. It ends when the record has an
//! outcome, when the releasing run stopped on Abort (the record says so), or when the
//! command channel closes / says Abort (the viewer quit).

use super::ctx;
use super::durable;
use super::event::{Command, Envelope, Event, Outcome, Phase, Unit};
use super::ledger::{self, EngineError, GateVerdict, Record};
use super::lock::{self, LockBody};
use super::phases::migrate::LOG_SOURCE;
use super::ports::{Ports, TaskInfo};
use crate::plan::Plan;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// Time between two reads of the ledger.
    pub poll: Duration,
    /// When no release is in progress, wait for the next one instead of returning.
    pub wait: bool,
    /// Endpoint override in use (a rehearsal), for the `release_started` event.
    pub endpoint: Option<String>,
}

impl WatchRequest {
    pub fn new(endpoint: Option<String>) -> WatchRequest {
        WatchRequest {
            poll: Duration::from_secs(1),
            wait: false,
            endpoint,
        }
    }
}

/// How watching ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    /// The release watched (None: there was none to watch).
    pub release_id: Option<String>,
    /// How the release ended, when it did while watched.
    pub outcome: Option<Outcome>,
    /// The watched release's exit code when it ended; 0 when there was nothing to watch or
    /// the viewer stopped watching; 1 when the ledger could not be read.
    pub exit_code: i32,
    pub message: String,
}

/// Follow the release in progress until it ends. Events go to `events` (closed when this
/// returns); `commands` closing or sending Abort stops watching (the release goes on).
pub async fn watch(
    plan: &Plan,
    ports: &Ports,
    req: WatchRequest,
    events: UnboundedSender<Envelope>,
    mut commands: UnboundedReceiver<Command>,
) -> Watched {
    let store = ports.state.as_ref();
    let mut warned_read = false;
    // The index's newest release as waiting began: one that started and ended between two
    // polls (a quick `glidepath rollback` of a finalized release) shows only there.
    let mut waited_from: Option<Option<Mark>> = None;
    let id = loop {
        match find_current(store).await {
            Ok(Current::Release(id)) => break id,
            Ok(Current::Nothing(last, _)) if !req.wait => {
                return Watched {
                    release_id: None,
                    outcome: None,
                    exit_code: crate::exit::OK,
                    message: format!("no release is in progress{last}; nothing to watch"),
                };
            }
            Ok(Current::Nothing(_, mark)) => match &waited_from {
                None => {
                    tracing::info!("no release in progress; waiting for the next one");
                    waited_from = Some(mark);
                }
                Some(before) if *before != mark => {
                    if let Some((id, _, _)) = mark {
                        break id;
                    }
                }
                Some(_) => {}
            },
            Err(e) if !req.wait => return unreadable(None, &e),
            Err(e) => note_read_error(&events, "", &e, &mut warned_read),
        }
        if !pause(&mut commands, req.poll).await {
            return stopped(None);
        }
    };

    let mut follow = Follow::new(plan, &req, &id);
    loop {
        match read(store, &id).await {
            Ok((Some(record), lock)) => {
                warned_read = false;
                let mut out = Vec::new();
                follow
                    .update(&record, lock.as_ref(), Utc::now(), ports, &mut out)
                    .await;
                for ev in out {
                    if matches!(ev, Event::ReleaseStarted { .. }) {
                        // Stamped with the recorded start, so clocks show the release's age.
                        let _ = events.send(Envelope {
                            ts: record.started_at,
                            release: id.clone(),
                            event: ev,
                        });
                    } else {
                        ctx::emit(&events, &id, ev);
                    }
                }
                if let Some(done) = follow.done.take() {
                    return done;
                }
            }
            Ok((None, lock)) => {
                if lock.as_ref().is_none_or(|b| b.release != id) {
                    // The lock went before the record was ever written: it never started.
                    let message = format!(
                        "release {id} has no ledger record and no longer holds the lock; it did not start"
                    );
                    ctx::emit(
                        &events,
                        &id,
                        Event::Warning {
                            message: message.clone(),
                        },
                    );
                    return Watched {
                        release_id: Some(id),
                        outcome: None,
                        exit_code: crate::exit::OK,
                        message,
                    };
                }
                // Locked a moment ago; its record is written next.
            }
            Err(e @ EngineError::Corrupt { .. }) => return unreadable(Some(id), &e),
            Err(e) => note_read_error(&events, &id, &e, &mut warned_read),
        }
        if !pause(&mut commands, req.poll).await {
            return stopped(Some(id));
        }
    }
}

enum Current {
    Release(String),
    /// Nothing in progress; text about the last release (may be empty), and its mark.
    Nothing(String, Option<Mark>),
}

/// The newest release in the index as far as `--wait` cares: which, how it ended and
/// whether it was rolled back by hand.
type Mark = (String, Option<Outcome>, Option<DateTime<Utc>>);

/// The id of the release in progress, or Err(why there is nothing to watch).
pub async fn current(
    store: &dyn super::ports::StateStore,
) -> Result<Result<String, String>, EngineError> {
    Ok(match find_current(store).await? {
        Current::Release(id) => Ok(id),
        Current::Nothing(last, _) => {
            Err(format!("no release is in progress{last}; nothing to watch"))
        }
    })
}

/// The release in progress: the lock's (it outlives crashes), else the index's `current`.
async fn find_current(store: &dyn super::ports::StateStore) -> Result<Current, EngineError> {
    if let Some((b, _)) = lock::read(store).await? {
        return Ok(Current::Release(b.release));
    }
    let index = ledger::load_index(store).await?;
    if let Some(id) = index.current {
        return Ok(Current::Release(id));
    }
    let last = index.releases.first().map_or(String::new(), |e| {
        format!(
            " (the last release, {}, {})",
            e.id,
            e.outcome.map_or("did not finish", Outcome::word)
        )
    });
    let mark = index
        .releases
        .first()
        .map(|e| (e.id.clone(), e.outcome, e.rolled_back_at));
    Ok(Current::Nothing(last, mark))
}

async fn read(
    store: &dyn super::ports::StateStore,
    id: &str,
) -> Result<(Option<Record>, Option<LockBody>), EngineError> {
    let record = ledger::load_record(store, id).await?.map(|d| d.value);
    let lock = lock::read(store).await?.map(|(b, _)| b);
    Ok((record, lock))
}

/// Wait one poll; false when the viewer stopped watching.
async fn pause(commands: &mut UnboundedReceiver<Command>, poll: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(poll) => true,
        cmd = commands.recv() => !matches!(cmd, None | Some(Command::Abort)),
    }
}

fn note_read_error(
    events: &UnboundedSender<Envelope>,
    id: &str,
    e: &EngineError,
    warned: &mut bool,
) {
    if !*warned {
        *warned = true;
        ctx::emit(
            events,
            id,
            Event::Warning {
                message: format!("cannot read the ledger ({e}); still trying"),
            },
        );
    }
}

fn unreadable(id: Option<String>, e: &EngineError) -> Watched {
    Watched {
        release_id: id,
        outcome: None,
        exit_code: crate::exit::UNEXPECTED,
        message: format!("cannot read the ledger: {e}"),
    }
}

fn stopped(id: Option<String>) -> Watched {
    let message = match &id {
        Some(id) => format!("stopped watching; release {id} goes on"),
        None => "stopped waiting for a release".into(),
    };
    Watched {
        release_id: id,
        outcome: None,
        exit_code: crate::exit::OK,
        message,
    }
}

/// What the watcher has already reported, so each poll emits only what changed.
struct Follow<'p> {
    plan: &'p Plan,
    endpoint: Option<String>,
    id: String,
    /// The record last reported (durable events are what changed since).
    shown: Option<Record>,
    /// Gate records already told as a notice (approvals, advances).
    noted: usize,
    /// The bake last shown: (step, whole seconds).
    baked: Option<(usize, u64)>,
    lock_note: LockNote,
    task: TaskFollow,
    done: Option<Watched>,
}

#[derive(Debug, Clone, PartialEq)]
enum LockNote {
    Fine,
    /// Warned that the lease expired at this renewal.
    Stale(DateTime<Utc>),
    Gone,
}

#[derive(Default)]
struct TaskFollow {
    arn: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    stopped: bool,
    warned: bool,
}

impl<'p> Follow<'p> {
    fn new(plan: &'p Plan, req: &WatchRequest, id: &str) -> Follow<'p> {
        Follow {
            plan,
            endpoint: req.endpoint.clone(),
            id: id.into(),
            shown: None,
            noted: 0,
            baked: None,
            lock_note: LockNote::Fine,
            task: TaskFollow::default(),
            done: None,
        }
    }

    /// What the record and the lock say that was not reported yet: the durable events
    /// (the same function the releasing run reports with), then what only watch shows.
    async fn update(
        &mut self,
        r: &Record,
        lock: Option<&LockBody>,
        now: DateTime<Utc>,
        ports: &Ports,
        out: &mut Vec<Event>,
    ) {
        let ours = lock.filter(|b| b.release == r.id);
        // Finalized, and locked since: a `glidepath rollback` is taking it, and its first
        // save (lock and intent) is moments away. Not the end to report.
        let being_taken = r.outcome == Some(Outcome::Finalized)
            && r.undo_lock.is_none()
            && ours.is_some_and(|b| r.finished_at.is_some_and(|f| b.started_at > f));
        if being_taken {
            return;
        }
        if self.shown.is_none() {
            self.header(r, ours, out);
        }
        let mut told = durable::since(self.plan, self.shown.as_ref(), r);
        if r.phases.migrate.intent_at.is_some() {
            // Inside the migrate phase when this poll finishes it, as the run shows it.
            let mut task = Vec::new();
            self.migration(r, ports, &mut task).await;
            let at = told
                .iter()
                .position(|e| {
                    matches!(
                        e,
                        Event::PhaseFinished {
                            phase: Phase::Migrate,
                            ..
                        }
                    )
                })
                .unwrap_or(told.len());
            told.splice(at..at, task);
        }
        out.extend(told);
        self.notes(r, out);
        self.bake(r, out);
        if r.unfinished() && r.interrupted.is_none() {
            self.lock_state(r, ours, lock, now, out);
        }
        if let Some(end) = durable::finished(r) {
            if let Event::ReleaseFinished {
                outcome,
                exit_code,
                message,
                ..
            } = &end
            {
                self.done = Some(Watched {
                    release_id: Some(self.id.clone()),
                    outcome: Some(*outcome),
                    exit_code: *exit_code,
                    message: message.clone(),
                });
            }
            out.push(end);
        }
        self.shown = Some(r.clone());
    }

    fn header(&mut self, r: &Record, lock: Option<&LockBody>, out: &mut Vec<Event>) {
        let holder = lock.map_or(&r.holder, |b| &b.holder);
        out.push(Event::ReleaseStarted {
            app: r.app.clone(),
            environment: r.environment.clone(),
            version: r.version.clone(),
            production: self.plan.production,
            live: r.live,
            target: r.target,
            endpoint: self.endpoint.clone(),
            region: self.plan.region.clone(),
            // A finalized release rolled back by hand is watched as that rollback.
            resumed: r.resumed_at.is_some() || r.undo_lock.is_some(),
            rollback: r.undo_lock.is_some(),
        });
        out.push(Event::Notice {
            message: format!(
                "watching release {} of {} by {holder} from the ledger (read-only; started {})",
                r.id,
                r.version,
                r.started_at.format("%H:%M:%SZ")
            ),
        });
    }

    /// Approvals and advances, as notices (what the releasing terminal says about them is
    /// its own).
    fn notes(&mut self, r: &Record, out: &mut Vec<Event>) {
        for g in r.gates.iter().skip(self.noted) {
            match g.verdict {
                GateVerdict::Approved => out.push(Event::Notice {
                    message: match &g.reason {
                        Some(by) => format!("manual gate at {}% {by}", g.weight),
                        None => format!("manual gate at {}% approved", g.weight),
                    },
                }),
                GateVerdict::Advanced => out.push(Event::Notice {
                    message: format!(
                        "step {} advanced by the operator before its bake ended",
                        g.index + 1
                    ),
                }),
                GateVerdict::Passed | GateVerdict::Failed => {}
            }
        }
        self.noted = r.gates.len();
    }

    /// The bake observed so far in the current step, as last saved (health polls live
    /// only in the releasing process).
    fn bake(&mut self, r: &Record, out: &mut Vec<Event>) {
        let current = r.shift.step;
        let rb = &r.phases.rollback;
        if r.shift.step_started_at.is_none() || rb.intent_at.or(rb.done_at).is_some() {
            return;
        }
        let Some(step) = self.plan.steps.get(current) else {
            return;
        };
        let baked = r.shift.baked_s.max(0.0).floor() as u64;
        if baked > 0 && self.baked != Some((current, baked)) {
            self.baked = Some((current, baked));
            out.push(Event::Progress {
                phase: Phase::Shift,
                done: baked,
                total: step.bake.as_secs_f64().ceil() as u64,
                unit: Unit::Seconds,
                message: Some(format!("step {} bake", current + 1)),
            });
        }
    }

    /// Say when the releasing process seems gone (lease expired) or the lock vanished.
    fn lock_state(
        &mut self,
        r: &Record,
        ours: Option<&LockBody>,
        any: Option<&LockBody>,
        now: DateTime<Utc>,
        out: &mut Vec<Event>,
    ) {
        let plan = self.plan.source.display();
        match ours {
            Some(b) if b.is_stale(now) => {
                if self.lock_note != LockNote::Stale(b.renewed_at) {
                    self.lock_note = LockNote::Stale(b.renewed_at);
                    out.push(Event::Warning {
                        message: format!(
                            "release {}'s lock is {}: its glidepath may have stopped. `glidepath resume {plan}` continues it; still watching",
                            r.id,
                            b.describe(now)
                        ),
                    });
                }
            }
            Some(_) => {
                if self.lock_note != LockNote::Fine {
                    self.lock_note = LockNote::Fine;
                    out.push(Event::Notice {
                        message: format!("release {} holds its lock again", r.id),
                    });
                }
            }
            None => {
                if self.lock_note != LockNote::Gone && r.phases.lock.is_done() {
                    self.lock_note = LockNote::Gone;
                    let who = any.map_or("nobody holds it now".to_string(), |b| {
                        format!("it is {}", b.describe(now))
                    });
                    out.push(Event::Warning {
                        message: format!(
                            "release {} no longer holds the release lock ({who}) but its record has no outcome yet; still watching",
                            r.id
                        ),
                    });
                }
            }
        }
    }

    /// The migration task, read live from ECS and CloudWatch Logs (read-only), or as the
    /// ledger records it when those reads fail.
    async fn migration(&mut self, r: &Record, ports: &Ports, out: &mut Vec<Event>) {
        // A sharded migration: the latest shard's task (each shard's in turn).
        let shard = r.shards.iter().rev().find(|s| s.task_arn.is_some());
        let Some(arn) = r
            .task_arn
            .clone()
            .or_else(|| shard.and_then(|s| s.task_arn.clone()))
        else {
            return;
        };
        if self.task.arn.as_deref() != Some(arn.as_str()) {
            // The next shard started before this watcher saw the last one stop: say how
            // that one ended, as the ledger records it.
            let previous = r
                .shards
                .iter()
                .find(|s| s.task_arn.is_some() && s.task_arn == self.task.arn);
            if let (Some(s), false) = (previous, self.task.stopped) {
                if let (Some(prev), Some(code)) = (&s.task_arn, s.exit_code) {
                    out.push(Event::Task {
                        task_arn: prev.clone(),
                        status: "STOPPED".into(),
                        exit_code: Some(code),
                    });
                }
            }
            self.task = TaskFollow {
                arn: Some(arn.clone()),
                ..TaskFollow::default()
            };
        }
        if self.task.stopped {
            return;
        }
        let recorded_exit = r.task_exit_code.or(shard.and_then(|s| s.exit_code));
        let container = self
            .plan
            .migration
            .as_ref()
            .map_or(self.plan.deploy.container.clone(), |m| m.container.clone());
        let live = super::retry::quietly(|| ports.tasks.describe(&arn, &container)).await;
        let info = match live {
            Ok(info) => info,
            Err(e) => {
                if !self.task.warned {
                    self.task.warned = true;
                    out.push(Event::Warning {
                        message: format!(
                            "cannot read migration task {arn} live ({e}); showing what the ledger records"
                        ),
                    });
                }
                let stopped = recorded_exit.is_some() || r.phases.migrate.is_done();
                TaskInfo {
                    arn: arn.clone(),
                    last_status: if stopped { "STOPPED" } else { "STARTED" }.into(),
                    exit_code: recorded_exit,
                    stopped_reason: None,
                    log: None,
                }
            }
        };
        if self.task.status.as_deref() != Some(info.last_status.as_str()) {
            self.task.status = Some(info.last_status.clone());
            out.push(Event::Task {
                task_arn: arn.clone(),
                status: info.last_status.clone(),
                exit_code: info.exit_code,
            });
        }
        if let Some((group, stream)) = &info.log {
            // A few pages per poll: a long log catches up over several polls.
            for _ in 0..5 {
                let cursor = self.task.cursor.clone();
                match super::retry::quietly(|| ports.tasks.log_lines(group, stream, cursor.clone()))
                    .await
                {
                    Ok((lines, next)) => {
                        let more = !lines.is_empty() && next != self.task.cursor;
                        out.extend(lines.into_iter().map(|line| Event::Log {
                            source: LOG_SOURCE.into(),
                            line,
                        }));
                        self.task.cursor = next;
                        if !more {
                            break;
                        }
                    }
                    Err(e) => {
                        if !self.task.warned {
                            self.task.warned = true;
                            out.push(Event::Warning {
                                message: format!("cannot read the migration's logs ({e})"),
                            });
                        }
                        break;
                    }
                }
            }
        }
        self.task.stopped = info.last_status == "STOPPED";
    }
}
