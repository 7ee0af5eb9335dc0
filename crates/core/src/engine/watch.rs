//! `glidepath watch`: follow a release that another glidepath is running, read-only.
//!
//! The watcher polls the release's ledger record (and the lock) and turns what changed
//! into the same [`Event`]s the releasing process emits, so every view works unchanged.
//! It shows only what the ledger records — phases (intent/done), steps, listener weights,
//! gate verdicts, a manual gate waiting, the bake observed so far and the outcome — plus
//! the migration task's status and log read live (read-only) from ECS and CloudWatch Logs.
//! It does not repeat every health poll: those live only in the releasing process.
//!
//! It never writes anything and never takes the lock. It ends when the record has an
//! outcome, when the releasing run stopped on Abort (the record says so), or when the
//! command channel closes / says Abort (the viewer quit).

use super::ctx;
use super::event::{ColourName, Command, Envelope, Event, Outcome, Phase, PhaseStatus};
use super::ledger::{self, EngineError, LedgerWeights, Record};
use super::lock::{self, LockBody};
use super::phases::migrate::LOG_SOURCE;
use super::phases::shift::weights_for;
use super::ports::{Ports, TaskInfo, Weights};
use crate::plan::{GateMode, Plan};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
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
    let id = loop {
        match find_current(store).await {
            Ok(Current::Release(id)) => break id,
            Ok(Current::Nothing(last)) if !req.wait => {
                return Watched {
                    release_id: None,
                    outcome: None,
                    exit_code: crate::exit::OK,
                    message: format!("no release is in progress{last}; nothing to watch"),
                };
            }
            Ok(Current::Nothing(_)) => {}
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
                follow.ending(&record, &mut out);
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

/// Every phase a record can hold: the forward ones in order, then rollback.
fn all_phases() -> Vec<Phase> {
    Phase::ORDER.into_iter().chain([Phase::Rollback]).collect()
}

enum Current {
    Release(String),
    /// Nothing in progress; text about the last release (may be empty).
    Nothing(String),
}

/// The id of the release in progress, or Err(why there is nothing to watch).
pub async fn current(
    store: &dyn super::ports::StateStore,
) -> Result<Result<String, String>, EngineError> {
    Ok(match find_current(store).await? {
        Current::Release(id) => Ok(id),
        Current::Nothing(last) => Err(format!("no release is in progress{last}; nothing to watch")),
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
    Ok(Current::Nothing(last))
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
    started: bool,
    holder: Option<String>,
    resumed_at: Option<DateTime<Utc>>,
    phases_started: HashSet<Phase>,
    phases_finished: HashSet<Phase>,
    /// Steps announced with `step_started` (the next one to announce).
    next_step: usize,
    /// Steps whose weights were reported.
    step_weights: HashSet<usize>,
    weights: Option<LedgerWeights>,
    gates_seen: usize,
    waiting: Option<(usize, DateTime<Utc>)>,
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
            started: false,
            holder: None,
            resumed_at: None,
            phases_started: HashSet::new(),
            phases_finished: HashSet::new(),
            next_step: 0,
            step_weights: HashSet::new(),
            weights: None,
            gates_seen: 0,
            waiting: None,
            baked: None,
            lock_note: LockNote::Fine,
            task: TaskFollow::default(),
            done: None,
        }
    }

    /// Everything the record and the lock say that was not reported yet, in release order.
    async fn update(
        &mut self,
        r: &Record,
        lock: Option<&LockBody>,
        now: DateTime<Utc>,
        ports: &Ports,
        out: &mut Vec<Event>,
    ) {
        let ours = lock.filter(|b| b.release == r.id);
        self.header(r, ours, out);
        for phase in Phase::ORDER {
            let p = r.phases.get(phase);
            if p.intent_at.is_none() && p.done_at.is_none() {
                continue;
            }
            self.start(phase, out);
            match phase {
                Phase::Lock => self.holder(r, ours, out),
                Phase::Migrate => self.migration(r, ports, out).await,
                Phase::Shift => self.shift(r, out),
                _ => {}
            }
            if p.is_done() {
                let duration = match (p.intent_at, p.done_at) {
                    (Some(a), Some(b)) => (b - a).num_milliseconds().max(0) as u64,
                    _ => 0,
                };
                self.finish(
                    phase,
                    p.status.unwrap_or(PhaseStatus::Done),
                    p.detail.clone(),
                    duration,
                    out,
                );
            }
        }
        if r.phases.shift.intent_at.is_none() {
            // Gates judged before any user traffic (deploy health, smoke test).
            self.gates(r, out);
        }
        let rb = &r.phases.rollback;
        if rb.intent_at.is_some() || rb.done_at.is_some() {
            let why = format!(
                "rolling back: {}",
                r.rollback_reason
                    .as_deref()
                    .unwrap_or("(no reason recorded)")
            );
            self.close_open(Phase::ORDER.as_slice(), PhaseStatus::Failed, &why, out);
            self.start(Phase::Rollback, out);
            self.weights(r, out);
            if rb.is_done() {
                let duration = match (rb.intent_at, rb.done_at) {
                    (Some(a), Some(b)) => (b - a).num_milliseconds().max(0) as u64,
                    _ => 0,
                };
                self.finish(
                    Phase::Rollback,
                    rb.status.unwrap_or(PhaseStatus::Done),
                    rb.detail.clone(),
                    duration,
                    out,
                );
            }
        }
        if r.outcome.is_none() && r.interrupted.is_none() {
            self.lock_state(r, ours, lock, now, out);
        }
    }

    fn header(&mut self, r: &Record, lock: Option<&LockBody>, out: &mut Vec<Event>) {
        let holder = lock.map_or(&r.holder, |b| &b.holder).clone();
        if !self.started {
            self.started = true;
            out.push(Event::ReleaseStarted {
                app: r.app.clone(),
                environment: r.environment.clone(),
                version: r.version.clone(),
                production: self.plan.production,
                live: r.live,
                target: r.target,
                endpoint: self.endpoint.clone(),
                region: self.plan.region.clone(),
                resumed: r.resumed_at.is_some(),
                rollback: false,
            });
            out.push(Event::Notice {
                message: format!(
                    "watching release {} of {} by {holder} from the ledger (read-only; started {})",
                    r.id,
                    r.version,
                    r.started_at.format("%H:%M:%SZ")
                ),
            });
            self.resumed_at = r.resumed_at;
        }
    }

    /// Who holds the release (again, after a resume by someone else).
    fn holder(&mut self, r: &Record, lock: Option<&LockBody>, out: &mut Vec<Event>) {
        let holder = lock.map_or(&r.holder, |b| &b.holder).clone();
        if self.holder.as_deref() != Some(holder.as_str()) {
            self.holder = Some(holder.clone());
            out.push(Event::LockAcquired { holder });
        }
        if r.resumed_at != self.resumed_at {
            self.resumed_at = r.resumed_at;
            out.push(Event::Notice {
                message: format!(
                    "release {} was resumed by {}",
                    r.id,
                    self.holder.as_deref().unwrap_or("someone")
                ),
            });
        }
    }

    fn start(&mut self, phase: Phase, out: &mut Vec<Event>) {
        if self.phases_started.insert(phase) {
            out.push(Event::PhaseStarted { phase });
        }
    }

    fn finish(
        &mut self,
        phase: Phase,
        status: PhaseStatus,
        detail: Option<String>,
        duration_ms: u64,
        out: &mut Vec<Event>,
    ) {
        if self.phases_finished.insert(phase) {
            out.push(Event::PhaseFinished {
                phase,
                status,
                detail,
                duration_ms,
            });
        }
    }

    /// Finish a phase that started and never recorded done (it failed, or was left).
    fn close_open(
        &mut self,
        among: &[Phase],
        status: PhaseStatus,
        detail: &str,
        out: &mut Vec<Event>,
    ) {
        for &phase in among {
            if self.phases_started.contains(&phase) && !self.phases_finished.contains(&phase) {
                self.finish(phase, status, Some(detail.into()), 0, out);
            }
        }
    }

    /// Steps, weights, gate verdicts, a waiting manual gate and the bake so far.
    fn shift(&mut self, r: &Record, out: &mut Vec<Event>) {
        self.gates(r, out);
        let current = r.shift.step;
        if r.shift.step_started_at.is_some() || current > 0 {
            let through = if r.shift.step_started_at.is_some() {
                current
            } else {
                current - 1
            };
            self.announce_through(through, r.target, out);
        }
        // Once rolling back, the record's weights are the rollback's.
        if r.shift.step_started_at.is_some() && r.phases.rollback.intent_at.is_none() {
            self.weights(r, out);
            let bake = self
                .plan
                .steps
                .get(current)
                .map_or(0.0, |s| s.bake.as_secs_f64());
            let baked = r.shift.baked_s.max(0.0).floor() as u64;
            if baked > 0 && self.baked != Some((current, baked)) {
                self.baked = Some((current, baked));
                out.push(Event::Progress {
                    phase: Phase::Shift,
                    done: baked,
                    total: bake.ceil() as u64,
                    unit: "s".into(),
                    message: Some(format!("step {} bake", current + 1)),
                });
            }
            if let Some(since) = r.shift.waiting_since {
                if self.waiting != Some((current, since)) {
                    self.waiting = Some((current, since));
                    let weight = self.plan.steps.get(current).map_or(0, |s| s.weight);
                    out.push(Event::GateWaiting {
                        index: current,
                        weight,
                        // Approvals go through the ledger: any terminal (or CI) can give one.
                        reason: format!(
                            "manual gate at {weight}%: approve from any terminal with `glidepath approve {} --step {}`",
                            self.plan.source.display(),
                            current + 1
                        ),
                    });
                }
            }
        }
    }

    /// `step_started` for every step up to `through` not announced yet.
    fn announce_through(&mut self, through: usize, colour: ColourName, out: &mut Vec<Event>) {
        while self.next_step <= through {
            let index = self.next_step;
            let Some(step) = self.plan.steps.get(index) else {
                return;
            };
            out.push(Event::StepStarted {
                index,
                steps: self.plan.steps.len(),
                weight: step.weight,
                bake_s: step.bake.as_secs_f64(),
                manual: step.gate == GateMode::Manual,
                colour,
            });
            self.next_step += 1;
        }
    }

    /// The weights of step `index`, once the ledger shows they were set.
    fn step_weights(&mut self, r: &Record, index: usize, out: &mut Vec<Event>) {
        let Some(step) = self.plan.steps.get(index) else {
            return;
        };
        if self.step_weights.insert(index) {
            let w = weights_for(r.target, step.weight);
            self.weights = Some(LedgerWeights {
                blue: w.blue,
                green: w.green,
            });
            out.push(Event::WeightsChanged {
                blue: w.blue,
                green: w.green,
            });
        }
    }

    /// The listener weights the record holds, when they changed.
    fn weights(&mut self, r: &Record, out: &mut Vec<Event>) {
        let Some(w) = r.weights else { return };
        if self.weights == Some(w) {
            return;
        }
        if r.phases.rollback.intent_at.is_none() {
            // During the shift, weights belong to the current step.
            let current = r.shift.step;
            let matches = self.plan.steps.get(current).is_some_and(|s| {
                weights_for(r.target, s.weight)
                    == (Weights {
                        blue: w.blue,
                        green: w.green,
                    })
            });
            if !matches {
                return; // the previous step's, saved before this step's were set
            }
            self.step_weights.insert(current);
        }
        self.weights = Some(w);
        out.push(Event::WeightsChanged {
            blue: w.blue,
            green: w.green,
        });
    }

    /// Gate records not reported yet, in the order they were written.
    fn gates(&mut self, r: &Record, out: &mut Vec<Event>) {
        let shifting = r.phases.shift.intent_at.is_some();
        while let Some(g) = r.gates.get(self.gates_seen) {
            self.gates_seen += 1;
            if shifting {
                self.announce_through(g.index, r.target, out);
            }
            match g.verdict.as_str() {
                "approved" => out.push(Event::Notice {
                    message: format!("manual gate at {}% approved", g.weight),
                }),
                "passed" | "advanced" => {
                    self.step_weights(r, g.index, out);
                    let bake = self
                        .plan
                        .steps
                        .get(g.index)
                        .map(|s| s.bake.as_secs_f64().ceil() as u64);
                    if let Some(bake) = bake.filter(|b| *b > 0 && g.verdict == "passed") {
                        // Passed (not advanced) means the whole bake was observed.
                        self.baked = Some((g.index, bake));
                        out.push(Event::Progress {
                            phase: Phase::Shift,
                            done: bake,
                            total: bake,
                            unit: "s".into(),
                            message: Some(format!("step {} bake", g.index + 1)),
                        });
                    }
                    if g.verdict == "advanced" {
                        out.push(Event::Notice {
                            message: format!(
                                "step {} advanced by the operator before its bake ended",
                                g.index + 1
                            ),
                        });
                    }
                    out.push(Event::GatePassed {
                        index: g.index,
                        weight: g.weight,
                    });
                }
                "failed" => {
                    if shifting {
                        self.step_weights(r, g.index, out);
                    }
                    let reason = g.reason.clone().unwrap_or_default();
                    match g.signal {
                        Some(signal) => {
                            // Stored as "<signal>: <reason>"; the event carries them apart.
                            let prefix = format!("{signal}: ");
                            let reason =
                                reason.strip_prefix(&prefix).unwrap_or(&reason).to_string();
                            out.push(Event::GateFailed {
                                index: g.index,
                                weight: g.weight,
                                signal,
                                reason,
                            });
                        }
                        // Written before records named the signal.
                        None => out.push(Event::Warning {
                            message: format!("gate failed at {}%: {reason}", g.weight),
                        }),
                    }
                }
                other => out.push(Event::Notice {
                    message: format!("gate at {}%: {other}", g.weight),
                }),
            }
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
        let Some(arn) = r.task_arn.clone() else {
            return;
        };
        if self.task.stopped {
            return;
        }
        if self.task.arn.as_deref() != Some(arn.as_str()) {
            self.task = TaskFollow {
                arn: Some(arn.clone()),
                ..TaskFollow::default()
            };
        }
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
                let stopped = r.task_exit_code.is_some() || r.phases.migrate.is_done();
                TaskInfo {
                    arn: arn.clone(),
                    last_status: if stopped { "STOPPED" } else { "STARTED" }.into(),
                    exit_code: r.task_exit_code,
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

    /// The outcome (or an Abort of the releasing run): close what is open, then finish.
    fn ending(&mut self, r: &Record, out: &mut Vec<Event>) {
        if let Some(outcome) = r.outcome {
            let message = r.message.clone().unwrap_or_else(|| outcome.to_string());
            let status = if outcome == Outcome::Finalized {
                PhaseStatus::Done
            } else {
                PhaseStatus::Failed
            };
            self.close_open(&all_phases(), status, &message, out);
            let exit_code = r.exit_code.unwrap_or(crate::exit::UNEXPECTED);
            out.push(Event::ReleaseFinished {
                outcome,
                exit_code,
                message: message.clone(),
                snapshot_id: r.snapshot_id.clone(),
            });
            self.done = Some(Watched {
                release_id: Some(self.id.clone()),
                outcome: Some(outcome),
                exit_code,
                message,
            });
        } else if let Some(stop) = &r.interrupted {
            self.close_open(
                &all_phases(),
                PhaseStatus::Failed,
                "stopped by the operator",
                out,
            );
            let exit_code =
                crate::exit::code(Outcome::Interrupted, crate::exit::Cause::Interrupted);
            out.push(Event::ReleaseFinished {
                outcome: Outcome::Interrupted,
                exit_code,
                message: stop.message.clone(),
                snapshot_id: r.snapshot_id.clone(),
            });
            self.done = Some(Watched {
                release_id: Some(self.id.clone()),
                outcome: Some(Outcome::Interrupted),
                exit_code,
                message: stop.message.clone(),
            });
        }
    }
}
