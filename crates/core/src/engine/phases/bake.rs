//! One step's bake as a pure state machine: (state, input) → (events, save?, what next).
//!
//! The shift phase's async loop only drives it — it waits for the next poll or an operator
//! command, reads health, feeds the result in here and carries out what comes back (emit,
//! save, roll back, wait for the operator). Every branch of the bake is therefore a plain
//! unit test, and the gate (threshold or sequential) has one place to live: [`Judge`].
//!
//! Time is counted in metric periods: each complete period (see `engine::periods`) adds its
//! length to the observed bake, whatever the wall clock did; a poll that brought no new
//! period adds nothing. A step's evidence starts `gates.weight_settle` after its first poll
//! (taken right after its weights were set): earlier periods overlap the change. Corrections
//! (late requests/5xx of a period already counted) are judged but add no time, and so are
//! periods that overlap a blind spell (target health went unwatched). Target health
//! and alarms are judged on every poll, period or not. A bake that has seen no new period for
//! longer than publication explains (`metric_period + metric_delay + poll_interval`, plus
//! the settle and one period before the first) says so once ([`Event::Notice`]).
//!
//! Rules kept from the contract (shift.rs): only observed time counts (the [`BakeClock`]);
//! a step passes when its bake is observed *and* the gate says Pass; blind longer than
//! `max_blind` pauses the step; a failed gate rolls back (or waits for the operator with
//! `on_fail = "pause"`); Pause/Resume stop and start the clock; Advance ends the bake now.

use crate::engine::event::{ColourName, Command, Event};
use crate::engine::periods::Timing;
use crate::gate::{verdict, BakeClock, HealthSample, Judgement, SequentialGate, Signal, Verdict};
use crate::plan::{GateConfig, OnGateFail, OnNoData};
use std::time::Duration;
use tokio::time::Instant;

/// The gate a bake consults once per observed poll (the sample is oriented: `green` is the
/// colour being released).
pub trait Judge: Send {
    fn judge(&mut self, sample: &HealthSample) -> Judgement;
    /// The operator chose to carry on after a failed gate: judge afresh from here.
    fn restart(&mut self);
    /// The bake is over and the gate still lacks data after waiting `waited`: what the
    /// plan says to do (None: keep waiting).
    fn on_no_data(&self, _waited: Duration) -> Option<OnNoData> {
        None
    }
    /// The evidence to save in the ledger record (None: nothing outlives the step).
    fn saved(&self) -> Option<String> {
        None
    }
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
    fn judge(&mut self, sample: &HealthSample) -> Judgement {
        self.samples.push(sample.clone());
        Judgement {
            verdict: crate::gate::judge(&self.samples, self.gates),
            evidence: Vec::new(),
        }
    }
    fn restart(&mut self) {
        self.samples.clear();
    }
}

/// The sequential gate: one e-process per signal for the whole release (its false-rollback
/// budget spans every step), so the same gate is lent to each step's bake.
pub struct SequentialJudge<'g> {
    gates: &'g GateConfig,
    steps: usize,
    step: usize,
    gate: &'g mut SequentialGate,
}

impl<'g> SequentialJudge<'g> {
    pub fn new(
        gates: &'g GateConfig,
        steps: usize,
        step: usize,
        gate: &'g mut SequentialGate,
    ) -> Self {
        SequentialJudge {
            gates,
            steps,
            step,
            gate,
        }
    }
}

impl Judge for SequentialJudge<'_> {
    fn judge(&mut self, sample: &HealthSample) -> Judgement {
        self.gate.observe(self.step, sample)
    }
    fn restart(&mut self) {
        // A failure sticks in the gate; carrying on means a fresh one (and a fresh budget).
        *self.gate = SequentialGate::new(self.gates, self.steps);
    }
    fn on_no_data(&self, waited: Duration) -> Option<OnNoData> {
        self.gate.no_data_action(waited)
    }
    fn saved(&self) -> Option<String> {
        serde_json::to_string(self.gate.state()).ok()
    }
}

/// What the bake was told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// An operator command (Abort and Rollback never get here: the driver stops on them).
    Command(Command),
    /// A poll that observed health: target health and alarms now (metrics empty), raw
    /// (blue/green as on the listener) and oriented for the gate; `at` is the health
    /// adapter's clock (Unix seconds). Adds no bake time.
    Polled {
        raw: HealthSample,
        oriented: HealthSample,
        at: i64,
    },
    /// One metric period `[start, start + length)` from the same poll, judged; a new period
    /// adds `length` to the bake, a `correction` (late counts only) adds nothing.
    Observed {
        raw: HealthSample,
        oriented: HealthSample,
        start: i64,
        length: Duration,
        correction: bool,
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
    /// When the bake was first over without a passing gate.
    no_data_since: Option<Instant>,
    timing: Timing,
    settle: Duration,
    poll: Duration,
    /// Periods starting before this (Unix s) are not this step's evidence; set at the
    /// first poll.
    evidence_from: Option<i64>,
    /// End of the latest period counted (Unix s).
    counted_to: Option<i64>,
    /// When the bake last counted a period (or started, or carried on).
    progress_at: Instant,
    told_waiting: bool,
    /// Adapter time of the latest successful poll.
    seen_at: Option<i64>,
    /// The latest poll failed.
    blind_now: bool,
    /// Spans (Unix s) between a last successful poll and the next after failed ones:
    /// nobody watched target health then, so periods touching them add no time.
    unwatched: Vec<(i64, i64)>,
    /// The colour being released: the gate's words (`green` = released) are renamed to it.
    target: ColourName,
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
            no_data_since: None,
            timing: Timing::new(gates.metric_period, gates.metric_delay),
            settle: gates.weight_settle,
            poll: gates.poll_interval,
            evidence_from: None,
            counted_to: None,
            progress_at: now,
            told_waiting: false,
            seen_at: None,
            blind_now: false,
            unwatched: Vec::new(),
            target: ColourName::Green,
        }
    }

    /// The bake of a release to `target` (green unless said).
    pub fn releasing(mut self, target: ColourName) -> Self {
        self.target = target;
        self
    }

    /// Observed bake so far.
    pub fn baked(&self) -> Duration {
        self.clock.baked()
    }

    /// The gate's evidence to save with the observed bake.
    pub fn saved_gate(&self) -> Option<String> {
        self.judge.saved()
    }

    /// Before waiting for the next poll: has the step passed, or should the operator hear
    /// that the bake is up without a verdict?
    pub fn check(&mut self, now: Instant) -> Step {
        let mut out = Step::new();
        let passing = matches!(self.last, Some(Verdict::Pass));
        if !self.clock.is_paused() && self.clock.done(self.bake) && passing {
            out.next = Next::Passed { advanced: false };
            return out;
        }
        if !(self.clock.done(self.bake) && !passing && self.last.is_some()) {
            return out;
        }
        let since = *self.no_data_since.get_or_insert(now);
        if !self.told_no_data {
            self.told_no_data = true;
            out.events.push(Event::Notice {
                message: "the bake time is up but the gate has not passed yet (not enough data); still watching — Advance skips".into(),
            });
        }
        let waited = now.saturating_duration_since(since);
        let why = |what: &str| {
            format!(
                "step {} at {}% baked but the gate still lacks data after waiting {:.0}s more (gates.max_wait); gates.on_no_data says {what}",
                self.index + 1,
                self.weight,
                waited.as_secs_f64()
            )
        };
        match self.judge.on_no_data(waited) {
            None => {}
            Some(OnNoData::Proceed) => {
                out.events.push(Event::Notice {
                    message: why("proceed"),
                });
                out.next = Next::Passed { advanced: false };
            }
            Some(OnNoData::Rollback) => {
                out.next = Next::RollBack {
                    reason: why("roll back"),
                }
            }
            Some(OnNoData::Pause) => {
                self.no_data_since = None;
                self.clock.pause(now);
                out.next = Next::AskOperator {
                    reason: why("pause"),
                };
            }
        }
        out
    }

    /// Feed one input at `now`.
    pub fn on(&mut self, now: Instant, input: Input) -> Step {
        match input {
            Input::Command(c) => self.command(now, c),
            Input::Polled { raw, oriented, at } => self.polled(now, raw, oriented, at),
            Input::Observed {
                raw,
                oriented,
                start,
                length,
                correction,
            } => self.observed(now, raw, oriented, start, length, correction),
            Input::Blind { reason } => self.blind(now, reason),
        }
    }

    /// After a failed gate with `on_fail = "pause"`, the operator chose to keep baking.
    pub fn carry_on(&mut self, now: Instant) {
        self.judge.restart();
        self.last = None;
        self.clock.resume(now);
        self.progress_at = now;
        self.told_waiting = false;
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

    fn polled(&mut self, now: Instant, raw: HealthSample, oriented: HealthSample, at: i64) -> Step {
        let mut out = Step::new();
        self.sighted(now, &mut out);
        if std::mem::take(&mut self.blind_now) {
            self.unwatched.push((self.seen_at.unwrap_or(i64::MIN), at));
        }
        self.seen_at = Some(at);
        let settle = self.settle.as_secs() as i64 + i64::from(self.settle.subsec_nanos() > 0);
        self.evidence_from.get_or_insert(at + settle);
        // Target health and alarms need no metrics: judged now, without waiting a period.
        let failing = verdict::target_health(&oriented)
            .or_else(|| verdict::alarms(&oriented))
            .map(|v| crate::gate::verdict_in_real_colours(v, self.target));
        if let Some(Verdict::Fail { signal, reason }) = failing {
            out.events.push(Event::Health {
                sample: raw,
                verdict: Verdict::Fail {
                    signal,
                    reason: reason.clone(),
                },
                baked_s: self.clock.baked().as_secs_f64(),
                bake_s: self.bake.as_secs_f64(),
            });
            self.fail(now, signal, reason, &mut out);
            return out;
        }
        self.maybe_tell_waiting(now, at, &mut out);
        out
    }

    /// A poll succeeded: end a blind spell (and its pause).
    fn sighted(&mut self, now: Instant, out: &mut Step) {
        self.clock.seen(now);
        if self.blind_paused {
            self.blind_paused = false;
            if !self.operator_paused {
                out.events.push(Event::Resumed);
            }
        }
    }

    /// No new period for longer than publication explains: say once what the bake waits
    /// for and until when (again after the next period arrives).
    fn maybe_tell_waiting(&mut self, now: Instant, at: i64, out: &mut Step) {
        if self.told_waiting || self.clock.is_paused() || self.clock.done(self.bake) {
            return;
        }
        let t = self.timing;
        // A period is due `delay` after it ends and seen by the next poll; past that it is
        // late (the grace, before an empty period counts, is exactly when to say so).
        let mut patience = Duration::from_secs((t.period + t.delay) as u64) + self.poll;
        if self.counted_to.is_none() {
            patience += self.settle + Duration::from_secs(t.period as u64);
        }
        let waited = now.saturating_duration_since(self.progress_at);
        if waited <= patience {
            return;
        }
        self.told_waiting = true;
        let from = self.evidence_from.unwrap_or(at);
        // The first period wholly after `from`, or the one after the last counted.
        let first = (from + t.period - 1).div_euclid(t.period) * t.period;
        let next = self.counted_to.unwrap_or(first).max(first);
        let due = next + t.period + t.delay;
        out.events.push(Event::Notice {
            message: format!(
                "no new metric period for {:.0}s: waiting for CloudWatch to publish the period {}–{} UTC \
                 (gates.metric_period {}s, up to gates.metric_delay {}s late); expected by {}, \
                 counted as empty (no traffic) after {}; the bake stays at {:.0}s of {:.0}s",
                waited.as_secs_f64(),
                clock(next),
                clock(next + t.period),
                t.period,
                t.delay,
                clock(due),
                clock(due + t.grace),
                self.clock.baked().as_secs_f64(),
                self.bake.as_secs_f64(),
            ),
        });
    }

    fn observed(
        &mut self,
        now: Instant,
        raw: HealthSample,
        oriented: HealthSample,
        start: i64,
        length: Duration,
        correction: bool,
    ) -> Step {
        let mut out = Step::new();
        self.sighted(now, &mut out);
        if self.evidence_from.is_some_and(|from| start < from) {
            // Overlaps the weight change (or precedes it): not this step's evidence.
            return out;
        }
        let end = start + length.as_secs() as i64;
        let watched = !self.unwatched.iter().any(|(a, b)| start < *b && end > *a);
        let Judgement { verdict, evidence } = self.judge.judge(&oriented);
        let verdict = crate::gate::verdict_in_real_colours(verdict, self.target);
        let evidence: Vec<_> = evidence
            .into_iter()
            .map(|mut e| {
                e.summary = crate::gate::real_colours(&e.summary, self.target);
                e
            })
            .collect();
        if !correction && watched && !matches!(verdict, Verdict::Fail { .. }) {
            self.clock.add(length);
            self.counted_to = Some(self.counted_to.map_or(end, |c| c.max(end)));
            self.progress_at = now;
            self.told_waiting = false;
        }
        out.events.push(Event::Health {
            sample: raw,
            verdict: verdict.clone(),
            baked_s: self.clock.baked().as_secs_f64(),
            bake_s: self.bake.as_secs_f64(),
        });
        if !evidence.is_empty() {
            out.events.push(Event::GateEvidence { evidence });
        }
        if let Verdict::Fail { signal, reason } = verdict {
            self.fail(now, signal, reason, &mut out);
            return out;
        }
        self.last = Some(verdict);
        out.save = true;
        out
    }

    /// A failed gate: record it, then roll back or ask the operator.
    fn fail(&mut self, now: Instant, signal: Signal, reason: String, out: &mut Step) {
        out.events.push(Event::GateFailed {
            index: self.index,
            weight: self.weight,
            signal,
            reason: reason.clone(),
        });
        out.failed = Some((signal, reason.clone()));
        let why = format!("gate failed at {}%: {signal}: {reason}", self.weight);
        out.next = match self.on_fail {
            OnGateFail::Rollback => Next::RollBack { reason: why },
            _ => {
                self.clock.pause(now);
                out.save = true;
                Next::AskOperator { reason: why }
            }
        };
    }

    fn blind(&mut self, now: Instant, reason: String) -> Step {
        let mut out = Step::new();
        self.blind_now = true;
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

/// A Unix time as the operator reads it.
fn clock(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::ColourSample;

    /// A judge that answers from a script (then Pass).
    struct Scripted(Vec<Verdict>, usize);

    impl Judge for Scripted {
        fn judge(&mut self, _: &HealthSample) -> Judgement {
            let verdict = self.0.get(self.1).cloned().unwrap_or(Verdict::Pass);
            self.1 += 1;
            Judgement {
                verdict,
                evidence: Vec::new(),
            }
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
            metric_period: Duration::from_secs(1),
            metric_delay: Duration::from_secs(1),
            weight_settle: Duration::ZERO,
            sequential: crate::plan::SequentialConfig::default(),
            approval_timeout: Duration::from_secs(3600),
        }
    }

    fn sample() -> HealthSample {
        let c = ColourSample {
            healthy: 2,
            requests: 100.0,
            ..ColourSample::default()
        };
        HealthSample {
            blue: c.clone(),
            green: c,
            alarms: vec![],
        }
    }

    /// A complete 1 s period starting at `start`.
    fn period(start: i64) -> Input {
        Input::Observed {
            raw: sample(),
            oriented: sample(),
            start,
            length: Duration::from_secs(1),
            correction: false,
        }
    }

    /// A poll's instantaneous part at Unix second `at`.
    fn polled(at: i64, s: HealthSample) -> Input {
        Input::Polled {
            raw: s.clone(),
            oriented: s,
            at,
        }
    }

    fn bake(script: Vec<Verdict>, on_fail: OnGateFail, t0: Instant) -> Bake<Scripted> {
        bake_with(script, gates(on_fail), t0)
    }

    fn bake_with(script: Vec<Verdict>, g: GateConfig, t0: Instant) -> Bake<Scripted> {
        Bake::new(
            0,
            10,
            Duration::from_secs(3),
            &g,
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

    fn notices(step: &Step) -> Vec<&str> {
        step.events
            .iter()
            .filter_map(|e| match e {
                Event::Notice { message } => Some(message.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn passes_once_enough_periods_are_observed_and_passing() {
        let t0 = Instant::now();
        let mut b = bake(vec![], OnGateFail::Rollback, t0);
        for s in 0..2 {
            assert_eq!(b.on(at(t0, s), period(s as i64)).next, Next::Continue);
            assert_eq!(
                b.check(Instant::now()).next,
                Next::Continue,
                "only {s} periods observed"
            );
        }
        let step = b.on(at(t0, 2), period(2));
        assert!(step.save, "observed bake is saved after each period");
        assert_eq!(b.baked(), Duration::from_secs(3));
        assert_eq!(
            b.check(Instant::now()).next,
            Next::Passed { advanced: false }
        );
    }

    #[test]
    fn bake_time_is_periods_not_wall_time() {
        let t0 = Instant::now();
        let mut b = bake(vec![], OnGateFail::Rollback, t0);
        // A minute of polls that bring no period adds nothing.
        for s in 0..60 {
            b.on(at(t0, s), polled(1000 + s as i64, sample()));
        }
        assert_eq!(b.baked(), Duration::ZERO);
        assert_eq!(b.check(Instant::now()).next, Next::Continue);
        // Three periods published together, late, count three seconds.
        for p in 1000..1003 {
            b.on(at(t0, 61), period(p));
        }
        assert_eq!(b.baked(), Duration::from_secs(3));
        assert_eq!(
            b.check(Instant::now()).next,
            Next::Passed { advanced: false }
        );
    }

    #[test]
    fn periods_before_the_weights_settle_are_not_evidence() {
        let t0 = Instant::now();
        let mut g = gates(OnGateFail::Rollback);
        g.weight_settle = Duration::from_secs(10);
        let mut b = bake_with(vec![fail()], g, t0);
        b.on(t0, polled(1000, sample()));
        // The failing verdict is scripted first: periods that overlap the change never
        // reach the judge.
        for p in 995..1010 {
            let step = b.on(at(t0, 20), period(p));
            assert!(step.events.is_empty(), "period {p} is before the settle");
        }
        assert_eq!(b.baked(), Duration::ZERO);
        let step = b.on(at(t0, 21), period(1010));
        assert!(matches!(step.next, Next::RollBack { .. }));
    }

    #[test]
    fn corrections_are_judged_but_add_no_time() {
        let t0 = Instant::now();
        let mut b = bake(vec![Verdict::Pass, fail()], OnGateFail::Rollback, t0);
        b.on(t0, period(0));
        let late = Input::Observed {
            raw: sample(),
            oriented: sample(),
            start: 0,
            length: Duration::from_secs(1),
            correction: true,
        };
        let step = b.on(at(t0, 1), late);
        assert_eq!(b.baked(), Duration::from_secs(1));
        assert!(
            matches!(step.next, Next::RollBack { .. }),
            "late 5xx still fail the gate"
        );
    }

    #[test]
    fn unhealthy_targets_and_alarms_fail_without_waiting_for_a_period() {
        let t0 = Instant::now();
        let mut b = bake(vec![], OnGateFail::Rollback, t0);
        let mut s = sample();
        s.green.unhealthy = 1;
        let step = b.on(t0, polled(1000, s));
        assert!(matches!(step.next, Next::RollBack { ref reason } if reason.contains("unhealthy")));
        let mut b = bake(vec![], OnGateFail::Rollback, t0);
        let mut s = sample();
        s.alarms = vec![crate::gate::AlarmState {
            name: "shop-5xx".into(),
            state: "ALARM".into(),
        }];
        let step = b.on(t0, polled(1000, s));
        assert_eq!(step.failed.map(|f| f.0), Some(Signal::Alarm));
    }

    #[test]
    fn a_wait_longer_than_publication_explains_is_told_once_with_its_deadline() {
        let t0 = Instant::now();
        let mut g = gates(OnGateFail::Rollback);
        g.metric_period = Duration::from_secs(60);
        g.metric_delay = Duration::from_secs(120);
        g.weight_settle = Duration::from_secs(10);
        let ten_minutes = Duration::from_secs(600);
        let mut b = Bake::new(
            0,
            10,
            ten_minutes,
            &g,
            Scripted(vec![], 0),
            t0,
            Duration::ZERO,
        );
        // Weights set at 10:00:00 (36000 s); the first period that counts is 10:01:00.
        let mut told = vec![];
        for s in (0..900).step_by(30) {
            let step = b.on(at(t0, s), polled(36_000 + s as i64, sample()));
            told.extend(notices(&step).into_iter().map(|n| (s, n.to_string())));
        }
        assert_eq!(told.len(), 1, "{told:?}");
        let (when, text) = &told[0];
        // Patience for the first period: 60 + 120 + 1 s poll + 10 settle + 60 alignment.
        assert!(*when > 251 && *when <= 280, "{when}");
        assert!(text.contains("10:01:00–10:02:00"), "{text}");
        assert!(text.contains("expected by 10:04:00"), "{text}");
        assert!(text.contains("after 10:06:00"), "{text}");
        // A period arrives: the next long wait is told again.
        let mut period = period(36_060);
        if let Input::Observed { length, .. } = &mut period {
            *length = Duration::from_secs(60);
        }
        b.on(at(t0, 900), period);
        assert_eq!(b.baked(), Duration::from_secs(60));
        let mut again = 0;
        for s in (930..1500).step_by(30) {
            again += notices(&b.on(at(t0, s), polled(36_000 + s as i64, sample()))).len();
        }
        assert_eq!(again, 1);
    }

    #[test]
    fn not_enough_data_never_passes_and_says_so_once() {
        let t0 = Instant::now();
        let nd = Verdict::NotEnoughData { reason: "x".into() };
        let mut b = bake(vec![nd; 10], OnGateFail::Rollback, t0);
        let mut notices = 0;
        for s in 0..8 {
            b.on(at(t0, s), period(s as i64));
            let c = b.check(Instant::now());
            assert_eq!(c.next, Next::Continue);
            notices += c.events.len();
        }
        assert_eq!(notices, 1);
    }

    #[test]
    fn failed_gate_rolls_back_without_saving() {
        let t0 = Instant::now();
        let mut b = bake(vec![Verdict::Pass, fail()], OnGateFail::Rollback, t0);
        b.on(at(t0, 0), period(0));
        let step = b.on(at(t0, 1), period(1));
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
        let step = b.on(at(t0, 0), period(0));
        assert!(matches!(step.next, Next::AskOperator { .. }));
        assert!(step.save, "the failed gate is recorded before waiting");
        assert_eq!(
            b.baked(),
            Duration::ZERO,
            "a failing period is not baked time"
        );
        b.carry_on(at(t0, 10));
        for s in 11..=13 {
            b.on(at(t0, s), period(s as i64));
        }
        assert_eq!(b.baked(), Duration::from_secs(3));
        assert_eq!(
            b.check(Instant::now()).next,
            Next::Passed { advanced: false }
        );
    }

    #[test]
    fn pause_stops_the_clock_and_resume_restarts_it() {
        let t0 = Instant::now();
        let mut b = bake(vec![], OnGateFail::Rollback, t0);
        b.on(at(t0, 0), period(0));
        let p = b.on(at(t0, 1), Input::Command(Command::Pause));
        assert!(matches!(p.events[..], [Event::Paused { .. }]));
        assert!(b
            .on(at(t0, 1), Input::Command(Command::Pause))
            .events
            .is_empty());
        for s in 2..10 {
            b.on(at(t0, s), period(s as i64));
        }
        assert_eq!(b.baked(), Duration::from_secs(1));
        assert_eq!(
            b.check(Instant::now()).next,
            Next::Continue,
            "paused never passes"
        );
        let r = b.on(at(t0, 10), Input::Command(Command::Resume));
        assert_eq!(r.events, vec![Event::Resumed]);
        b.on(at(t0, 11), period(10));
        b.on(at(t0, 12), period(11));
        assert_eq!(b.baked(), Duration::from_secs(3));
        assert_eq!(
            b.check(Instant::now()).next,
            Next::Passed { advanced: false }
        );
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
        b.on(at(t0, 0), polled(1000, sample()));
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
        let back = b.on(at(t0, 9), polled(1009, sample()));
        assert!(back.events.contains(&Event::Resumed));
        // The spell's periods arrive late: judged, but nobody watched target health then.
        for p in 1000..1009 {
            b.on(at(t0, 9), period(p));
        }
        assert_eq!(b.baked(), Duration::ZERO, "blind time never counts");
        b.on(at(t0, 11), period(1009));
        assert_eq!(b.baked(), Duration::from_secs(1));
    }
}
