//! One step's bake as a pure state machine: (state, input) → (events, save?, what next).
//!
//! The shift phase's async loop only drives it — it waits for the next poll or an operator
//! command, reads health, feeds the result in here and carries out what comes back (emit,
//! save, roll back, wait for the operator). Every branch of the bake is therefore a plain
//! unit test, and the gate (threshold or sequential) has one place to live: [`Judge`].
//!
//! Rules kept from the contract (shift.rs): only observed time counts (the [`BakeClock`]);
//! a step passes when its bake is observed *and* the gate says Pass; blind longer than
//! `max_blind` pauses the step; a failed gate rolls back (or waits for the operator with
//! `on_fail = "pause"`); Pause/Resume stop and start the clock; Advance ends the bake now.

use crate::engine::event::{Command, Event};
use crate::gate::{BakeClock, HealthSample, Signal, Verdict};
use crate::plan::{GateConfig, OnGateFail};
use std::time::Duration;
use tokio::time::Instant;

/// The gate a bake consults once per observed poll (the sample is oriented: `green` is the
/// colour being released).
pub trait Judge: Send {
    fn judge(&mut self, sample: &HealthSample) -> Verdict;
    /// The operator chose to carry on after a failed gate: judge afresh from here.
    fn restart(&mut self);
}

/// Today's threshold gate: every poll judges all of the step's samples so far.
pub struct ThresholdJudge<'g> {
    gates: &'g GateConfig,
    samples: Vec<HealthSample>,
}

impl<'g> ThresholdJudge<'g> {
    pub fn new(gates: &'g GateConfig) -> Self {
        ThresholdJudge {
            gates,
            samples: Vec::new(),
        }
    }
}

impl Judge for ThresholdJudge<'_> {
    fn judge(&mut self, sample: &HealthSample) -> Verdict {
        self.samples.push(sample.clone());
        crate::gate::judge(&self.samples, self.gates)
    }
    fn restart(&mut self) {
        self.samples.clear();
    }
}

/// What the bake was told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// An operator command (Abort and Rollback never get here: the driver stops on them).
    Command(Command),
    /// A poll that observed health: the raw sample (blue/green as on the listener) and the
    /// same sample oriented for the gate.
    Observed {
        raw: Box<HealthSample>,
        oriented: Box<HealthSample>,
    },
    /// A poll that could not observe.
    Blind { reason: String },
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Keep going: wait for the next poll (or `poll_now`).
    Continue,
    /// The step is done: baked and passing, or `advanced` by the operator.
    Passed { advanced: bool },
    /// A gate failed and the plan says roll back.
    RollBack { reason: String },
    /// A gate failed and the plan says ask the operator (`on_fail = "pause"`); the driver
    /// waits for Resume (then calls [`Bake::carry_on`]) or Rollback.
    AskOperator { reason: String },
}

/// The result of one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub events: Vec<Event>,
    /// A failed gate to record in the ledger.
    pub failed: Option<(Signal, String)>,
    /// An Approve arrived before the manual gate waits (counts for this step).
    pub early_approve: bool,
    /// Write the record (observed bake changed).
    pub save: bool,
    pub next: Next,
}

impl Step {
    fn new() -> Step {
        Step {
            events: Vec::new(),
            failed: None,
            early_approve: false,
            save: false,
            next: Next::Continue,
        }
    }
}

/// One step's bake.
pub struct Bake<J> {
    index: usize,
    weight: u8,
    bake: Duration,
    max_blind: Duration,
    on_fail: OnGateFail,
    judge: J,
    clock: BakeClock,
    last: Option<Verdict>,
    operator_paused: bool,
    blind_paused: bool,
    told_no_data: bool,
}

impl<J: Judge> Bake<J> {
    /// A bake of step `index` (at `weight` %) that already observed `baked_before`.
    pub fn new(
        index: usize,
        weight: u8,
        bake: Duration,
        gates: &GateConfig,
        judge: J,
        now: Instant,
        baked_before: Duration,
    ) -> Self {
        Bake {
            index,
            weight,
            bake,
            max_blind: gates.max_blind,
            on_fail: gates.on_fail,
            judge,
            clock: BakeClock::resumed(now, baked_before),
            last: None,
            operator_paused: false,
            blind_paused: false,
            told_no_data: false,
        }
    }

    /// Observed bake so far.
    pub fn baked(&self) -> Duration {
        self.clock.baked()
    }

    /// Before waiting for the next poll: has the step passed, or should the operator hear
    /// that the bake is up without a verdict?
    pub fn check(&mut self) -> Step {
        let mut out = Step::new();
        let passing = matches!(self.last, Some(Verdict::Pass));
        if !self.clock.is_paused() && self.clock.done(self.bake) && passing {
            out.next = Next::Passed { advanced: false };
            return out;
        }
        if self.clock.done(self.bake) && !passing && self.last.is_some() && !self.told_no_data {
            self.told_no_data = true;
            out.events.push(Event::Notice {
                message: "the bake time is up but the gate has not passed yet (not enough data); still watching — Advance skips".into(),
            });
        }
        out
    }

    /// Feed one input at `now`.
    pub fn on(&mut self, now: Instant, input: Input) -> Step {
        match input {
            Input::Command(c) => self.command(now, c),
            Input::Observed { raw, oriented } => self.observed(now, *raw, &oriented),
            Input::Blind { reason } => self.blind(now, reason),
        }
    }

    /// After a failed gate with `on_fail = "pause"`, the operator chose to keep baking.
    pub fn carry_on(&mut self, now: Instant) {
        self.judge.restart();
        self.last = None;
        self.clock.resume(now);
    }

    fn command(&mut self, now: Instant, c: Command) -> Step {
        let mut out = Step::new();
        match c {
            Command::Pause if !self.operator_paused => {
                self.operator_paused = true;
                self.clock.pause(now);
                out.events.push(Event::Paused {
                    reason: "paused by the operator; weights stay where they are".into(),
                });
            }
            Command::Resume if self.operator_paused => {
                self.operator_paused = false;
                self.clock.resume(now);
                out.events.push(Event::Resumed);
            }
            Command::Advance => {
                out.events.push(Event::Notice {
                    message: format!(
                        "step {} advanced by the operator after {:.0}s of {:.0}s bake",
                        self.index + 1,
                        self.clock.baked().as_secs_f64(),
                        self.bake.as_secs_f64()
                    ),
                });
                out.next = Next::Passed { advanced: true };
            }
            Command::Approve => out.early_approve = true,
            _ => {}
        }
        out
    }

    fn observed(&mut self, now: Instant, raw: HealthSample, oriented: &HealthSample) -> Step {
        let mut out = Step::new();
        self.clock.observed(now, true);
        if self.blind_paused {
            self.blind_paused = false;
            if !self.operator_paused {
                out.events.push(Event::Resumed);
            }
        }
        let verdict = self.judge.judge(oriented);
        out.events.push(Event::Health {
            sample: raw,
            verdict: verdict.clone(),
            baked_s: self.clock.baked().as_secs_f64(),
            bake_s: self.bake.as_secs_f64(),
        });
        if let Verdict::Fail { signal, reason } = &verdict {
            out.events.push(Event::GateFailed {
                index: self.index,
                weight: self.weight,
                signal: *signal,
                reason: reason.clone(),
            });
            out.failed = Some((*signal, reason.clone()));
            let why = format!("gate failed at {}%: {signal}: {reason}", self.weight);
            out.next = match self.on_fail {
                OnGateFail::Rollback => Next::RollBack { reason: why },
                _ => {
                    self.clock.pause(now);
                    out.save = true;
                    Next::AskOperator { reason: why }
                }
            };
            return out;
        }
        self.last = Some(verdict);
        out.save = true;
        out
    }

    fn blind(&mut self, now: Instant, reason: String) -> Step {
        let mut out = Step::new();
        self.clock.observed(now, false);
        let blind = self.clock.blind_for(now);
        out.events.push(Event::Blind {
            reason,
            blind_s: blind.as_secs_f64(),
        });
        if blind > self.max_blind && !self.blind_paused {
            self.blind_paused = true;
            out.events.push(Event::Paused {
                reason: format!(
                    "health not observed for {:.0}s (gates.max_blind {:.0}s); the step waits with weights unchanged until health is seen again",
                    blind.as_secs_f64(),
                    self.max_blind.as_secs_f64()
                ),
            });
        }
        out.save = true;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::ColourSample;

    /// A judge that answers from a script (then Pass).
    struct Scripted(Vec<Verdict>, usize);

    impl Judge for Scripted {
        fn judge(&mut self, _: &HealthSample) -> Verdict {
            let v = self.0.get(self.1).cloned().unwrap_or(Verdict::Pass);
            self.1 += 1;
            v
        }
        fn restart(&mut self) {
            self.1 = 0;
            self.0.clear();
        }
    }

    fn gates(on_fail: OnGateFail) -> GateConfig {
        GateConfig {
            poll_interval: Duration::from_secs(1),
            max_blind: Duration::from_secs(5),
            min_requests: 20,
            error_rate_floor: 0.01,
            error_rate_margin: 0.01,
            latency_factor: 1.5,
            latency_stat: crate::plan::LatencyStat::P95,
            alarms: vec![],
            on_fail,
            statistical: false,
            confidence: 0.95,
        }
    }

    fn seen() -> Input {
        let c = ColourSample {
            healthy: 2,
            requests: 100.0,
            ..ColourSample::default()
        };
        let s = HealthSample {
            blue: c.clone(),
            green: c,
            alarms: vec![],
        };
        Input::Observed {
            raw: Box::new(s.clone()),
            oriented: Box::new(s),
        }
    }

    fn bake(script: Vec<Verdict>, on_fail: OnGateFail, t0: Instant) -> Bake<Scripted> {
        Bake::new(
            0,
            10,
            Duration::from_secs(3),
            &gates(on_fail),
            Scripted(script, 0),
            t0,
            Duration::ZERO,
        )
    }

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    fn fail() -> Verdict {
        Verdict::Fail {
            signal: Signal::ErrorRate,
            reason: "too many".into(),
        }
    }

    #[test]
    fn passes_once_observed_long_enough_and_passing() {
        let t0 = Instant::now();
        let mut b = bake(vec![], OnGateFail::Rollback, t0);
        for s in 0..=2 {
            assert_eq!(b.on(at(t0, s), seen()).next, Next::Continue);
            assert_eq!(b.check().next, Next::Continue, "only {s}s observed");
        }
        let step = b.on(at(t0, 3), seen());
        assert!(step.save, "observed bake is saved after each poll");
        assert_eq!(b.check().next, Next::Passed { advanced: false });
    }

    #[test]
    fn not_enough_data_never_passes_and_says_so_once() {
        let t0 = Instant::now();
        let nd = Verdict::NotEnoughData { reason: "x".into() };
        let mut b = bake(vec![nd; 10], OnGateFail::Rollback, t0);
        let mut notices = 0;
        for s in 0..8 {
            b.on(at(t0, s), seen());
            let c = b.check();
            assert_eq!(c.next, Next::Continue);
            notices += c.events.len();
        }
        assert_eq!(notices, 1);
    }

    #[test]
    fn failed_gate_rolls_back_without_saving() {
        let t0 = Instant::now();
        let mut b = bake(vec![Verdict::Pass, fail()], OnGateFail::Rollback, t0);
        b.on(at(t0, 0), seen());
        let step = b.on(at(t0, 1), seen());
        assert!(
            matches!(step.next, Next::RollBack { ref reason } if reason.contains("gate failed at 10%"))
        );
        assert_eq!(step.failed, Some((Signal::ErrorRate, "too many".into())));
        assert!(!step.save);
        assert!(step
            .events
            .iter()
            .any(|e| matches!(e, Event::GateFailed { .. })));
    }

    #[test]
    fn failed_gate_with_pause_asks_and_judges_afresh() {
        let t0 = Instant::now();
        let mut b = bake(vec![fail()], OnGateFail::Pause, t0);
        let step = b.on(at(t0, 0), seen());
        assert!(matches!(step.next, Next::AskOperator { .. }));
        assert!(step.save, "the failed gate is recorded before waiting");
        b.carry_on(at(t0, 10));
        for s in 11..=13 {
            b.on(at(t0, s), seen());
        }
        assert_eq!(
            b.baked(),
            Duration::from_secs(3),
            "time waiting does not count"
        );
        assert_eq!(b.check().next, Next::Passed { advanced: false });
    }

    #[test]
    fn pause_stops_the_clock_and_resume_restarts_it() {
        let t0 = Instant::now();
        let mut b = bake(vec![], OnGateFail::Rollback, t0);
        b.on(at(t0, 0), seen());
        b.on(at(t0, 1), seen());
        let p = b.on(at(t0, 1), Input::Command(Command::Pause));
        assert!(matches!(p.events[..], [Event::Paused { .. }]));
        assert!(b
            .on(at(t0, 1), Input::Command(Command::Pause))
            .events
            .is_empty());
        for s in 2..10 {
            b.on(at(t0, s), seen());
        }
        assert_eq!(b.baked(), Duration::from_secs(1));
        assert_eq!(b.check().next, Next::Continue, "paused never passes");
        let r = b.on(at(t0, 10), Input::Command(Command::Resume));
        assert_eq!(r.events, vec![Event::Resumed]);
        b.on(at(t0, 12), seen());
        assert_eq!(b.baked(), Duration::from_secs(3));
        assert_eq!(b.check().next, Next::Passed { advanced: false });
    }

    #[test]
    fn advance_ends_the_bake_and_approve_is_kept() {
        let t0 = Instant::now();
        let mut b = bake(vec![], OnGateFail::Rollback, t0);
        assert!(b.on(t0, Input::Command(Command::Approve)).early_approve);
        assert_eq!(
            b.on(t0, Input::Command(Command::Advance)).next,
            Next::Passed { advanced: true }
        );
    }

    #[test]
    fn blind_longer_than_max_blind_pauses_once_and_sight_resumes() {
        let t0 = Instant::now();
        let mut b = bake(vec![], OnGateFail::Rollback, t0);
        b.on(at(t0, 0), seen());
        let blind = || Input::Blind {
            reason: "throttled".into(),
        };
        let mut paused = 0;
        for s in 1..=8 {
            let st = b.on(at(t0, s), blind());
            paused += st
                .events
                .iter()
                .filter(|e| matches!(e, Event::Paused { .. }))
                .count();
        }
        assert_eq!(paused, 1);
        let back = b.on(at(t0, 9), seen());
        assert!(back.events.contains(&Event::Resumed));
        assert_eq!(b.baked(), Duration::ZERO, "blind time never counts");
    }
}
