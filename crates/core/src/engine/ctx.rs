//! What every phase works with: the plan, the ports, the ledger record, the lock, the
//! event stream and the operator's commands. Phases return `Err(Stop)` to leave the
//! forward path; `run.rs` decides what each kind of stop means.

use super::durable;
use super::event::{ColourName, Command, Envelope, Event, Phase};
use super::ledger::{Doc, EngineError, Record};
use super::lock::Lock;
use super::ports::{PortError, PortResult, Ports};
use super::retry;
use crate::exit::Cause;
use crate::plan::{Colour, Plan};
use chrono::Utc;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

/// Why the forward path stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// The operator aborted: leave everything where it is; `resume` continues.
    Abort,
    /// Traffic back to the live colour.
    Rollback { reason: String, by_gate: bool },
    /// The release cannot continue.
    Fail { cause: Cause, message: String },
    /// Someone broke our lock: touch nothing more.
    LockLost { message: String },
    /// Something outside glidepath changed what the release relies on (the listener's
    /// weights): stop without touching it, keep the lock; the operator decides.
    Hold { message: String },
}

impl Stop {
    pub fn fail(message: impl Into<String>) -> Stop {
        Stop::Fail {
            cause: Cause::Unexpected,
            message: message.into(),
        }
    }
}

impl From<EngineError> for Stop {
    fn from(e: EngineError) -> Stop {
        Stop::fail(e.to_string())
    }
}

pub struct Ctx<'a> {
    pub plan: &'a Plan,
    pub ports: &'a Ports,
    events: UnboundedSender<Envelope>,
    commands: UnboundedReceiver<Command>,
    commands_open: bool,
    pub release: String,
    pub record: Doc<Record>,
    pub lock: Option<Lock>,
    pub auto_approve: bool,
    /// An Approve that arrived before its gate was waiting (applies to the current step).
    pub early_approve: bool,
    /// Whose process this run is (its exit code depends on it, see `crate::exit`).
    pub process: crate::exit::Process,
    /// The record as last reported to the views (None: nothing yet; a resumed run then
    /// first reports what the record says happened), see [`Ctx::report`].
    pub shown: Option<Record>,
    /// `read_only.exit` failed in this run: the ending reports it and does not run it again.
    pub read_only_exit_failed: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(
        plan: &'a Plan,
        ports: &'a Ports,
        events: UnboundedSender<Envelope>,
        commands: UnboundedReceiver<Command>,
        record: Doc<Record>,
        auto_approve: bool,
    ) -> Ctx<'a> {
        Ctx {
            plan,
            ports,
            events,
            commands,
            commands_open: true,
            release: record.value.id.clone(),
            record,
            lock: None,
            auto_approve,
            early_approve: false,
            process: crate::exit::Process::Release,
            shown: None,
            read_only_exit_failed: false,
        }
    }

    pub fn emit(&self, event: Event) {
        emit(&self.events, &self.release, event);
    }

    pub fn events(&self) -> &UnboundedSender<Envelope> {
        &self.events
    }

    pub fn rec(&mut self) -> &mut Record {
        &mut self.record.value
    }

    pub fn colour(&self, c: ColourName) -> &'a Colour {
        match c {
            ColourName::Blue => &self.plan.blue,
            ColourName::Green => &self.plan.green,
        }
    }

    pub fn live(&self) -> ColourName {
        self.record.value.live
    }

    pub fn target(&self) -> ColourName {
        self.record.value.target
    }

    /// Write the record (compare-and-swap on its ETag), then report what it now says.
    pub async fn save(&mut self) -> Result<(), Stop> {
        self.record.value.updated_at = Utc::now();
        self.record.save_merging(self.ports.state.as_ref()).await?;
        self.report();
        Ok(())
    }

    /// Emit the durable events the record (as it is in memory) implies and the views have
    /// not seen yet. [`Ctx::save`] does this; call it directly where a change must be told
    /// at once and is written by the next save.
    pub fn report(&mut self) {
        report(
            &self.events,
            &self.release,
            self.plan,
            &mut self.shown,
            &self.record.value,
        );
    }

    /// Mark `phase`'s intent (before its first mutation) and save.
    pub async fn intent(&mut self, phase: Phase) -> Result<(), Stop> {
        if self.record.value.phases.get(phase).intent_at.is_none() {
            self.record.value.phases.get_mut(phase).intent_at = Some(Utc::now());
        }
        self.save().await
    }

    /// Renew the lock when a third of its lease has passed.
    pub async fn tick(&mut self) -> Result<(), Stop> {
        if let Some(lock) = self.lock.as_mut() {
            lock.renew_if_due(self.ports.state.as_ref())
                .await
                .map_err(|e| Stop::LockLost {
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Call a port, retrying transient errors with a bounded backoff (saying so).
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, Stop>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = PortResult<T>>,
    {
        self.try_call(f)
            .await
            .map_err(|e| Stop::fail(e.to_string()))
    }

    /// [`Ctx::call`] that hands the final error back to the phase.
    pub async fn try_call<T, F, Fut>(&self, f: F) -> PortResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = PortResult<T>>,
    {
        retry::retry(f, |attempt, e: &PortError, backoff| {
            self.emit(Event::Warning {
                message: format!(
                    "{e} (attempt {attempt} of {}; retrying in {:.1}s)",
                    retry::ATTEMPTS,
                    backoff.as_secs_f64()
                ),
            })
        })
        .await
    }

    /// Wait until `deadline`, or until the operator says something. Abort and Rollback
    /// stop the forward path at once; other commands are returned to the caller.
    pub async fn wait_until(&mut self, deadline: Instant) -> Result<Option<Command>, Stop> {
        if !self.commands_open {
            tokio::time::sleep_until(deadline).await;
            return Ok(None);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => Ok(None),
            cmd = self.commands.recv() => match cmd {
                None => {
                    self.commands_open = false;
                    tokio::time::sleep_until(deadline).await;
                    Ok(None)
                }
                Some(Command::Abort) => Err(Stop::Abort),
                Some(Command::Rollback) => Err(Stop::Rollback {
                    reason: "the operator asked for a rollback".into(),
                    by_gate: false,
                }),
                Some(c) => Ok(Some(c)),
            }
        }
    }

    /// Between the steps of a manual `glidepath rollback`: Err(Abort) once the operator
    /// asked to stop (Ctrl-C), so it stops between port calls, never inside one. Other
    /// commands mean nothing to a rollback. A rollback a release started itself (a failed
    /// gate) is the safe path back and is never stopped half-way.
    pub fn aborted(&mut self) -> Result<(), Stop> {
        use tokio::sync::mpsc::error::TryRecvError;
        if self.process != crate::exit::Process::Rollback {
            return Ok(());
        }
        while self.commands_open {
            match self.commands.try_recv() {
                Ok(Command::Abort) => return Err(Stop::Abort),
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.commands_open = false,
            }
        }
        Ok(())
    }

    /// Sleep `d` (outside the shift): Pause/Advance mean nothing here and say so; an early
    /// Approve is kept for the first manual gate.
    pub async fn sleep(&mut self, d: Duration) -> Result<(), Stop> {
        let deadline = Instant::now() + d;
        while let Some(c) = self.wait_until(deadline).await? {
            match c {
                Command::Approve => self.early_approve = true,
                other => self.emit(Event::Notice {
                    message: format!(
                        "{} applies while traffic is shifting; ignored here",
                        command_name(other)
                    ),
                }),
            }
        }
        Ok(())
    }

    /// Wait for the operator's next command (renewing the lock meanwhile). None when no
    /// operator can answer (the command channel is closed).
    pub async fn next_command(&mut self) -> Result<Option<Command>, Stop> {
        loop {
            if !self.commands_open {
                return Ok(None);
            }
            let every = (self.plan.state.lease / 4).max(Duration::from_secs(1));
            if let Some(c) = self.wait_until(Instant::now() + every).await? {
                return Ok(Some(c));
            }
            self.tick().await?;
        }
    }
}

pub fn emit(events: &UnboundedSender<Envelope>, release: &str, event: Event) {
    // A view that went away must not stop the release.
    let _ = events.send(Envelope {
        ts: Utc::now(),
        release: release.to_string(),
        event,
    });
}

/// Emit [`durable::since`] from `shown` to `now`, and remember `now` as shown.
pub fn report(
    events: &UnboundedSender<Envelope>,
    release: &str,
    plan: &Plan,
    shown: &mut Option<Record>,
    now: &Record,
) {
    for e in durable::since(plan, shown.as_ref(), now) {
        emit(events, release, e);
    }
    *shown = Some(now.clone());
}

pub fn command_name(c: Command) -> &'static str {
    match c {
        Command::Approve => "approve",
        Command::Pause => "pause",
        Command::Resume => "resume",
        Command::Advance => "advance",
        Command::Rollback => "rollback",
        Command::Abort => "abort",
    }
}
