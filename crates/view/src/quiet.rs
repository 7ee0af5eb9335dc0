//! `--quiet`: which events scripted mode still prints. Warnings, failures and the final
//! line; also a manual gate waiting for approval, because a quiet job that waits an hour
//! without saying why (or how to approve) looks hung.

use crate::engine::event::{Envelope, Event, PhaseStatus, ShardState};
use crate::gate::Verdict;

/// Whether `--quiet` prints `env`.
pub fn keeps(env: &Envelope) -> bool {
    match &env.event {
        Event::Warning { .. }
        | Event::GateFailed { .. }
        | Event::GateWaiting { .. }
        | Event::ReadOnlyExitFailed { .. }
        | Event::ReleaseFinished { .. } => true,
        Event::PhaseFinished { status, .. } => *status == PhaseStatus::Failed,
        Event::Shard { state, .. } => *state == ShardState::Failed,
        Event::LiveWatch { verdict, .. } => matches!(verdict, Verdict::Fail { .. }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::{Outcome, Phase};
    use chrono::Utc;

    fn env(event: Event) -> Envelope {
        Envelope {
            ts: Utc::now(),
            release: "r1".into(),
            event,
        }
    }

    #[test]
    fn keeps_warnings_failures_and_the_end_only() {
        let kept = [
            Event::Warning {
                message: "w".into(),
            },
            Event::PhaseFinished {
                phase: Phase::Migrate,
                status: PhaseStatus::Failed,
                detail: None,
                duration_ms: 1,
            },
            Event::ReleaseFinished {
                outcome: Outcome::Finalized,
                exit_code: 0,
                message: "done".into(),
                snapshot_id: None,
            },
        ];
        let dropped = [
            Event::PhaseFinished {
                phase: Phase::Migrate,
                status: PhaseStatus::Done,
                detail: None,
                duration_ms: 1,
            },
            Event::Notice {
                message: "n".into(),
            },
            Event::WeightsChanged {
                blue: 90,
                green: 10,
            },
            Event::PhaseStarted {
                phase: Phase::Shift,
            },
        ];
        for e in kept {
            assert!(keeps(&env(e.clone())), "{e:?}");
        }
        for e in dropped {
            assert!(!keeps(&env(e.clone())), "{e:?}");
        }
    }
}
