//! The cockpit's model and update: state changes only through [`Cockpit::apply`] (engine
//! events), [`Cockpit::tick`] (the clock) and [`Cockpit::handle_key`] (which returns the
//! commands for the engine). Drawing is a pure function of this state (`draw.rs`).

use super::panes::confirm::{ConfirmState, Pending};
use super::panes::header::HeaderState;
use super::panes::health::HealthState;
use super::panes::log::LogState;
use super::panes::migration::MigrationState;
use super::panes::timeline::{PhaseState, TimelineState};
use super::panes::traffic::{GateState, TrafficState};
use super::panes::{ScrollKey, Theme};
use super::CockpitContext;
use crate::engine::event::{Command, Envelope, Event, Phase};
use crate::lines;
use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Panes that take focus, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Timeline,
    Traffic,
    Health,
    Migration,
    Log,
}

impl Focus {
    const ORDER: [Focus; 5] = [
        Focus::Timeline,
        Focus::Traffic,
        Focus::Health,
        Focus::Migration,
        Focus::Log,
    ];
}

#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    None,
    Help,
    Confirm(ConfirmState),
}

/// What a key asks of the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send this command to the engine.
    Send(Command),
    /// Leave the cockpit (restore the terminal).
    Quit,
}

#[derive(Debug, Clone)]
pub struct Cockpit {
    pub header: HeaderState,
    pub timeline: TimelineState,
    pub traffic: TrafficState,
    pub health: HealthState,
    pub migration: MigrationState,
    pub log: LogState,
    pub focus: Focus,
    pub zoomed: bool,
    pub overlay: Overlay,
    /// A one-off message for the footer, cleared by the next key.
    pub flash: Option<String>,
    pub theme: Theme,
    pub now: DateTime<Utc>,
    plan_path: String,
    /// The operator quit mid-release (Abort sent): tell them how to resume.
    pub left_running: bool,
    /// The final event as a line, printed after the terminal is restored.
    pub finished_line: Option<String>,
}

impl Cockpit {
    pub fn new(ctx: &CockpitContext, colour: bool, now: DateTime<Utc>) -> Self {
        let plan = &ctx.plan;
        Cockpit {
            header: HeaderState {
                app: plan.app.clone(),
                environment: plan.environment.clone(),
                production: plan.production,
                version: ctx.version.clone(),
                release_id: ctx.release_id.clone(),
                endpoint: ctx.endpoint.clone(),
                region: ctx.region.clone(),
                account: ctx.account.clone(),
                watch_only: ctx.watch_only,
                holder: None,
                started: None,
                resumed: false,
                finished: None,
                engine_gone: false,
            },
            timeline: TimelineState::default(),
            traffic: TrafficState::new(&plan.steps),
            health: HealthState::new(
                plan.gates.poll_interval.as_secs_f64(),
                plan.gates.latency_stat,
            ),
            migration: MigrationState::new(plan.migration.is_some()),
            log: LogState::default(),
            focus: Focus::Traffic,
            zoomed: false,
            overlay: Overlay::None,
            flash: None,
            theme: Theme { colour },
            now,
            plan_path: plan.source.display().to_string(),
            left_running: false,
            finished_line: None,
        }
        .watching(ctx.watch_only)
    }

    fn watching(mut self, watch_only: bool) -> Self {
        self.traffic.watch_only = watch_only;
        self.health.watch_only = watch_only;
        self
    }

    /// One engine event.
    pub fn apply(&mut self, env: &Envelope) {
        if env.ts > self.now {
            self.now = env.ts;
        }
        self.header.apply(env);
        self.timeline.apply(env);
        self.traffic.apply(env);
        self.health.apply(env);
        self.migration.apply(env);
        self.log.apply(env);
        if matches!(env.event, Event::ReleaseFinished { .. }) {
            self.finished_line = Some(lines::format(env));
        }
        self.drop_stale_confirm();
    }

    /// The engine's event stream closed.
    pub fn engine_gone(&mut self) {
        self.header.engine_gone = true;
        self.drop_stale_confirm();
    }

    /// The clock moved; true when something on screen shows it.
    pub fn tick(&mut self, now: DateTime<Utc>) -> bool {
        if now > self.now {
            self.now = now;
        }
        self.header.running()
    }

    pub fn running(&self) -> bool {
        self.header.running()
    }

    pub fn finished(&self) -> bool {
        self.header.finished.is_some()
    }

    /// A confirmation that no longer applies (the gate moved on, the release ended) closes.
    fn drop_stale_confirm(&mut self) {
        let Overlay::Confirm(c) = &self.overlay else {
            return;
        };
        let still = match c.action {
            Pending::Approve => self.running() && self.traffic.gate_waiting(),
            Pending::Advance => self.running() && self.traffic.current.is_some(),
            Pending::Rollback | Pending::Quit => self.running(),
        };
        if !still {
            self.overlay = Overlay::None;
            self.flash = Some("the release moved on; nothing was sent".into());
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Action> {
        self.flash = None;
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return self.quit_now();
        }
        match std::mem::replace(&mut self.overlay, Overlay::None) {
            Overlay::Help => {
                if !matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?' | 'q') | KeyCode::Enter
                ) {
                    self.overlay = Overlay::Help;
                }
                return Vec::new();
            }
            Overlay::Confirm(c) => return self.confirm_key(c, key),
            Overlay::None => {}
        }
        if self.log.editing {
            self.filter_key(key);
            return Vec::new();
        }
        match key.code {
            KeyCode::Char('q') => {
                if self.running() && !self.header.watch_only {
                    self.open_confirm(Pending::Quit);
                    Vec::new()
                } else {
                    vec![Action::Quit]
                }
            }
            KeyCode::Char('?') => {
                self.overlay = Overlay::Help;
                Vec::new()
            }
            KeyCode::Tab => {
                self.cycle_focus(1);
                Vec::new()
            }
            KeyCode::BackTab => {
                self.cycle_focus(Focus::ORDER.len() - 1);
                Vec::new()
            }
            KeyCode::Enter | KeyCode::Char('l') => {
                self.zoomed = !self.zoomed;
                Vec::new()
            }
            KeyCode::Esc => {
                self.zoomed = false;
                Vec::new()
            }
            KeyCode::Char('/') => {
                self.focus = Focus::Log;
                self.log.editing = true;
                Vec::new()
            }
            KeyCode::Up | KeyCode::Char('k') => self.scroll(ScrollKey::Up(1)),
            KeyCode::Down | KeyCode::Char('j') => self.scroll(ScrollKey::Down(1)),
            KeyCode::PageUp => self.scroll(ScrollKey::Up(10)),
            KeyCode::PageDown => self.scroll(ScrollKey::Down(10)),
            KeyCode::Home | KeyCode::Char('g') => self.scroll(ScrollKey::Top),
            KeyCode::End | KeyCode::Char('G') => self.scroll(ScrollKey::Bottom),
            KeyCode::Char(c @ ('a' | ' ' | 'r' | 'n')) => self.release_key(c),
            _ => Vec::new(),
        }
    }

    /// Keys that steer the release: a, space, r, n.
    fn release_key(&mut self, c: char) -> Vec<Action> {
        if self.header.watch_only {
            self.flash = Some("watching: this cockpit is read-only".into());
            return Vec::new();
        }
        if !self.running() {
            self.flash = Some("no release is running".into());
            return Vec::new();
        }
        match c {
            'a' => {
                if !self.traffic.gate_waiting() {
                    self.flash = Some("no gate is waiting for approval".into());
                } else if self.header.production {
                    self.open_confirm(Pending::Approve);
                } else {
                    return self.execute(Pending::Approve);
                }
                Vec::new()
            }
            ' ' => {
                if self.traffic.paused.is_some() {
                    vec![Action::Send(Command::Resume)]
                } else {
                    vec![Action::Send(Command::Pause)]
                }
            }
            'r' => {
                self.open_confirm(Pending::Rollback);
                Vec::new()
            }
            'n' => {
                let shifting = self.timeline.state(Phase::Shift) == PhaseState::Running;
                if shifting && self.traffic.current.is_some() {
                    self.open_confirm(Pending::Advance);
                } else {
                    self.flash = Some("no traffic step is baking".into());
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn open_confirm(&mut self, action: Pending) {
        let t = &self.traffic;
        let weights = t.weights_text();
        let (title, body) = match action {
            Pending::Approve => (
                "Approve gate",
                vec![format!(
                    "Approve the gate at {}% and go on to the next step?",
                    t.current
                        .and_then(|i| t.steps.get(i))
                        .map_or(0, |s| s.weight)
                )],
            ),
            Pending::Rollback => (
                "Roll back",
                vec![
                    format!(
                        "Send all traffic back to {} (the live colour) now?",
                        t.live.name()
                    ),
                    format!("Traffic now: {weights}."),
                ],
            ),
            Pending::Advance => (
                "Next step now",
                vec![
                    "Skip the rest of this bake and move to the next step now?".into(),
                    format!("Traffic now: {weights}."),
                ],
            ),
            Pending::Quit => (
                "Quit during the release",
                vec![
                    "The release stops where it is; nothing is rolled back.".into(),
                    format!("Traffic stays at {weights}."),
                    format!("Continue later with: glidepath resume {}", self.plan_path),
                ],
            ),
        };
        // Production actions that move traffic need the environment's name typed.
        let typed = (self.header.production && action != Pending::Quit).then(String::new);
        self.overlay = Overlay::Confirm(ConfirmState {
            action,
            title: title.into(),
            body,
            typed,
            expected: self.header.environment.clone(),
            error: None,
        });
    }

    fn confirm_key(&mut self, mut c: ConfirmState, key: KeyEvent) -> Vec<Action> {
        match (&mut c.typed, key.code) {
            (_, KeyCode::Esc) => {
                self.flash = Some("cancelled; nothing was sent".into());
                Vec::new()
            }
            (Some(typed), KeyCode::Char(ch)) => {
                typed.push(ch);
                c.error = None;
                self.overlay = Overlay::Confirm(c);
                Vec::new()
            }
            (Some(typed), KeyCode::Backspace) => {
                typed.pop();
                self.overlay = Overlay::Confirm(c);
                Vec::new()
            }
            (Some(typed), KeyCode::Enter) => {
                if *typed == c.expected {
                    self.execute(c.action)
                } else {
                    c.error = Some(format!(
                        "That is not `{}`; nothing was sent. Type it exactly, or esc.",
                        c.expected
                    ));
                    typed.clear();
                    self.overlay = Overlay::Confirm(c);
                    Vec::new()
                }
            }
            (None, KeyCode::Char('y' | 'Y')) => self.execute(c.action),
            (None, KeyCode::Char('n' | 'N')) => {
                self.flash = Some("cancelled; nothing was sent".into());
                Vec::new()
            }
            _ => {
                self.overlay = Overlay::Confirm(c);
                Vec::new()
            }
        }
    }

    fn execute(&mut self, action: Pending) -> Vec<Action> {
        match action {
            Pending::Approve => {
                self.traffic.gate = GateState::ApprovalSent;
                vec![Action::Send(Command::Approve)]
            }
            Pending::Rollback => {
                self.flash = Some("rollback requested".into());
                vec![Action::Send(Command::Rollback)]
            }
            Pending::Advance => {
                self.flash = Some("next step requested".into());
                vec![Action::Send(Command::Advance)]
            }
            Pending::Quit => self.quit_now(),
        }
    }

    /// Leave now; a running release is told to stop where it is.
    pub fn interrupt(&mut self) -> Vec<Action> {
        self.quit_now()
    }

    fn quit_now(&mut self) -> Vec<Action> {
        if self.running() && !self.header.watch_only {
            self.left_running = true;
            vec![Action::Send(Command::Abort), Action::Quit]
        } else {
            vec![Action::Quit]
        }
    }

    fn filter_key(&mut self, key: KeyEvent) {
        let mut filter = self.log.filter.clone();
        match key.code {
            KeyCode::Enter => {
                self.log.editing = false;
                return;
            }
            KeyCode::Esc => {
                self.log.editing = false;
                filter.clear();
            }
            KeyCode::Backspace => {
                filter.pop();
            }
            KeyCode::Char(c) => filter.push(c),
            _ => return,
        }
        self.log.set_filter(&filter);
    }

    fn cycle_focus(&mut self, step: usize) {
        let n = Focus::ORDER.len();
        let mut i = Focus::ORDER
            .iter()
            .position(|f| *f == self.focus)
            .unwrap_or(0);
        loop {
            i = (i + step) % n;
            let f = Focus::ORDER[i];
            if f != Focus::Migration || self.migration.visible() {
                self.focus = f;
                return;
            }
        }
    }

    fn scroll(&mut self, key: ScrollKey) -> Vec<Action> {
        match self.focus {
            Focus::Migration => self.migration.scroll(key),
            Focus::Log => self.log.scroll(key),
            _ => {}
        }
        Vec::new()
    }

    /// What to print once the terminal is back to normal.
    pub fn farewell(&self) -> Option<String> {
        if self.left_running {
            Some(format!(
                "glidepath: release {} stopped where it is ({}).\n\
                 Nothing was rolled back. Continue with: glidepath resume {}",
                self.header.release_id,
                self.traffic.weights_text(),
                self.plan_path
            ))
        } else {
            self.finished_line.clone()
        }
    }
}
