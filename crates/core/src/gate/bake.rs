//! The bake clock: how long a step has been *observed* healthy, not how long it has existed.
//!
//! Time counts only over intervals between two consecutive successful polls: the later
//! poll's window covers the interval, so health was seen throughout. An interval that ends
//! in a failed poll (throttled, outage) does not count, nor does the one after it up to the
//! next success, nor any time while paused. A stage outage mid-bake therefore stretches the
//! step instead of letting it pass unobserved.
//!
//! Pure: the engine passes instants in (tokio's, so paused-time tests drive it).

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct BakeClock {
    /// When the step began (blind time is measured from here before the first success).
    started: Instant,
    baked: Duration,
    /// The instant the next successful poll counts from; None after a failure, a pause, or
    /// before the first success.
    anchor: Option<Instant>,
    last_success: Option<Instant>,
    /// The latest poll failed.
    failing: bool,
    paused: bool,
}

impl BakeClock {
    /// A clock for a step that starts at `started`, with nothing baked yet.
    pub fn new(started: Instant) -> Self {
        Self::resumed(started, Duration::ZERO)
    }

    /// A clock that continues a step already `baked` this long (resume after a restart: the
    /// ledger keeps what was observed, and observing starts again from the next success).
    pub fn resumed(started: Instant, baked: Duration) -> Self {
        BakeClock {
            started,
            baked,
            anchor: None,
            last_success: None,
            failing: false,
            paused: false,
        }
    }

    /// Record a poll at `at`: `ok` when it observed health (whatever the verdict), false when
    /// it could not observe.
    pub fn observed(&mut self, at: Instant, ok: bool) {
        if !ok {
            self.anchor = None;
            self.failing = true;
            return;
        }
        if let (false, Some(from)) = (self.paused, self.anchor) {
            self.baked += at.saturating_duration_since(from);
        }
        self.anchor = (!self.paused).then_some(at);
        self.last_success = Some(at);
        self.failing = false;
    }

    /// A successful poll at `at` when time is counted by metric periods: it ends a blind
    /// spell but adds no time itself; the complete periods it brought do ([`BakeClock::add`]).
    pub fn seen(&mut self, at: Instant) {
        self.anchor = None;
        self.last_success = Some(at);
        self.failing = false;
    }

    /// Count `length` of observed evidence (one complete metric period), unless paused.
    pub fn add(&mut self, length: Duration) {
        if !self.paused {
            self.baked += length;
        }
    }

    /// Stop counting (operator pause or a paused gate); weights stay where they are.
    pub fn pause(&mut self, _at: Instant) {
        self.paused = true;
        self.anchor = None;
    }

    /// Count again from `at`, if the latest poll saw health; otherwise from the next success.
    pub fn resume(&mut self, at: Instant) {
        if !self.paused {
            return;
        }
        self.paused = false;
        self.anchor = (self.last_success.is_some() && !self.failing).then_some(at);
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Observed bake time so far.
    pub fn baked(&self) -> Duration {
        self.baked
    }

    /// Has the step baked at least `bake`?
    pub fn done(&self, bake: Duration) -> bool {
        self.baked >= bake
    }

    /// How long health has gone unobserved at `now`: zero while the latest poll succeeded,
    /// otherwise the time since the last success (or the step's start, if none yet).
    pub fn blind_for(&self, now: Instant) -> Duration {
        if !self.failing {
            return Duration::ZERO;
        }
        now.saturating_duration_since(self.last_success.unwrap_or(self.started))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn counts_between_consecutive_successes() {
        let t0 = Instant::now();
        let mut c = BakeClock::new(t0);
        c.observed(t0 + secs(1), true);
        assert_eq!(
            c.baked(),
            Duration::ZERO,
            "one success is a point, not an interval"
        );
        c.observed(t0 + secs(2), true);
        c.observed(t0 + secs(3), true);
        assert_eq!(c.baked(), secs(2));
        assert!(c.done(secs(2)) && !c.done(secs(3)));
    }

    #[test]
    fn a_blind_spell_does_not_count() {
        let t0 = Instant::now();
        let mut c = BakeClock::new(t0);
        c.observed(t0 + secs(1), true);
        c.observed(t0 + secs(2), true);
        c.observed(t0 + secs(3), false);
        assert_eq!(c.blind_for(t0 + secs(3)), secs(1));
        c.observed(t0 + secs(4), false);
        assert_eq!(c.blind_for(t0 + secs(5)), secs(3));
        c.observed(t0 + secs(6), true);
        assert_eq!(c.baked(), secs(1), "2s→6s crossed failed polls");
        assert_eq!(c.blind_for(t0 + secs(6)), Duration::ZERO);
        c.observed(t0 + secs(7), true);
        assert_eq!(c.baked(), secs(2));
    }

    #[test]
    fn blind_from_the_start_until_a_first_success() {
        let t0 = Instant::now();
        let mut c = BakeClock::new(t0);
        assert_eq!(
            c.blind_for(t0 + secs(5)),
            Duration::ZERO,
            "no poll has failed yet"
        );
        c.observed(t0 + secs(1), false);
        assert_eq!(c.blind_for(t0 + secs(4)), secs(4));
    }

    #[test]
    fn paused_time_does_not_count() {
        let t0 = Instant::now();
        let mut c = BakeClock::new(t0);
        c.observed(t0, true);
        c.observed(t0 + secs(1), true);
        c.pause(t0 + secs(1));
        c.observed(t0 + secs(2), true);
        c.observed(t0 + secs(3), true);
        assert_eq!(c.baked(), secs(1));
        assert!(c.is_paused());
        c.resume(t0 + secs(10));
        c.observed(t0 + secs(11), true);
        assert_eq!(
            c.baked(),
            secs(2),
            "counts from the resume, not from before the pause"
        );
    }

    #[test]
    fn resume_after_a_failure_waits_for_a_success() {
        let t0 = Instant::now();
        let mut c = BakeClock::new(t0);
        c.observed(t0, true);
        c.pause(t0 + secs(1));
        c.observed(t0 + secs(2), false);
        c.resume(t0 + secs(3));
        c.observed(t0 + secs(4), true);
        assert_eq!(c.baked(), Duration::ZERO);
        c.observed(t0 + secs(5), true);
        assert_eq!(c.baked(), secs(1));
    }

    #[test]
    fn periods_count_their_length_not_wall_time() {
        let t0 = Instant::now();
        let mut c = BakeClock::new(t0);
        c.seen(t0 + secs(1));
        c.seen(t0 + secs(100));
        assert_eq!(
            c.baked(),
            Duration::ZERO,
            "polls without periods add nothing"
        );
        c.add(secs(60));
        c.observed(t0 + secs(101), false);
        assert_eq!(c.blind_for(t0 + secs(110)), secs(10));
        c.seen(t0 + secs(111));
        assert_eq!(c.blind_for(t0 + secs(111)), Duration::ZERO);
        c.pause(t0 + secs(112));
        c.add(secs(60));
        assert_eq!(c.baked(), secs(60), "paused periods do not count");
    }

    #[test]
    fn resumed_clock_keeps_what_was_baked() {
        let t0 = Instant::now();
        let mut c = BakeClock::resumed(t0, secs(30));
        c.observed(t0 + secs(1), true);
        c.observed(t0 + secs(2), true);
        assert_eq!(c.baked(), secs(31));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Poll { after_ms: u64, ok: bool },
        Pause { after_ms: u64 },
        Resume { after_ms: u64 },
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            6 => (0u64..3000, prop::bool::weighted(0.75)).prop_map(|(after_ms, ok)| Step::Poll { after_ms, ok }),
            1 => (0u64..3000).prop_map(|after_ms| Step::Pause { after_ms }),
            1 => (0u64..3000).prop_map(|after_ms| Step::Resume { after_ms }),
        ];
        prop::collection::vec(step, 0..60)
    }

    proptest! {
        #[test]
        fn baked_never_exceeds_wall_time_nor_crosses_blind_spells(steps in steps()) {
            let t0 = Instant::now();
            let mut c = BakeClock::new(t0);
            let mut now = t0;
            // Reference: sum of gaps between consecutive ok polls with nothing else between
            // them, plus gaps from a resume to the next ok poll when the resume was "clean".
            let mut expected = Duration::ZERO;
            let mut anchor: Option<Instant> = None;
            let (mut paused, mut failing, mut any_ok) = (false, false, false);
            for s in steps {
                let before = c.baked();
                match s {
                    Step::Poll { after_ms, ok } => {
                        now += Duration::from_millis(after_ms);
                        c.observed(now, ok);
                        if ok {
                            if let (false, Some(a)) = (paused, anchor) { expected += now - a; }
                            anchor = (!paused).then_some(now);
                            failing = false;
                            any_ok = true;
                        } else {
                            prop_assert_eq!(c.baked(), before, "a failed poll never adds");
                            prop_assert!(c.blind_for(now + Duration::from_millis(1)) > Duration::ZERO);
                            anchor = None;
                            failing = true;
                        }
                    }
                    Step::Pause { after_ms } => {
                        now += Duration::from_millis(after_ms);
                        c.pause(now);
                        paused = true;
                        anchor = None;
                    }
                    Step::Resume { after_ms } => {
                        now += Duration::from_millis(after_ms);
                        c.resume(now);
                        if paused {
                            paused = false;
                            anchor = (any_ok && !failing).then_some(now);
                        }
                    }
                }
                prop_assert!(c.baked() >= before, "never goes backwards");
                prop_assert!(c.baked() <= now - t0, "baked {:?} > wall {:?}", c.baked(), now - t0);
                prop_assert_eq!(c.baked(), expected);
                prop_assert_eq!(c.is_paused(), paused);
                if !failing { prop_assert_eq!(c.blind_for(now), Duration::ZERO); }
            }
        }

        #[test]
        fn nothing_counts_between_a_failure_and_the_next_success(
            good_before in 1usize..5, gap_ms in 1u64..10_000, good_after in 1usize..5,
        ) {
            let t0 = Instant::now();
            let mut c = BakeClock::new(t0);
            let mut now = t0;
            for _ in 0..good_before { now += secs(1); c.observed(now, true); }
            let before = c.baked();
            now += Duration::from_millis(gap_ms);
            c.observed(now, false);
            now += Duration::from_millis(gap_ms);
            c.observed(now, true);
            prop_assert_eq!(c.baked(), before);
            for _ in 1..good_after { now += secs(1); c.observed(now, true); }
            prop_assert_eq!(c.baked(), before + secs(good_after as u64 - 1));
        }
    }
}
