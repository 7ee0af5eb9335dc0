//! Process exit codes: a public contract (README "Exit codes"); scripts branch on them.
//!
//! The engine says what happened (an [`Outcome`] and a [`Cause`]); [`code`] is the one
//! table that turns that into a number. Commands that are not releases use the constants.

use crate::engine::event::Outcome;
use serde::{Deserialize, Serialize};

/// 0: the release finalized (or the command succeeded).
pub const OK: i32 = 0;
/// 1: an unexpected error (AWS refused, a bug, an interrupted release).
pub const UNEXPECTED: i32 = 1;
/// 2: usage or plan error; nothing was changed.
pub const USAGE: i32 = 2;
/// 3: a health gate failed and traffic was rolled back to the live colour.
pub const ROLLED_BACK: i32 = 3;
/// 4: the release lock is held by someone else.
pub const LOCKED: i32 = 4;
/// 5: the migration failed; no traffic moved.
pub const MIGRATION_FAILED: i32 = 5;

/// Why a release (or a rollback) ended the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Every phase did its job.
    Done,
    /// AWS refused, a write failed, a bug.
    Unexpected,
    /// The operator aborted; traffic stays, `resume` continues.
    Interrupted,
    /// Usage or plan error (nothing to resume, nothing to roll back).
    Usage,
    /// A health gate failed.
    GateFailed,
    /// The operator asked for the rollback.
    OperatorRollback,
    /// Someone else holds the lock, or broke ours.
    LockHeld,
    /// The migration task failed.
    MigrationFailed,
}

/// The exit-code table.
pub fn code(outcome: Outcome, cause: Cause) -> i32 {
    match (outcome, cause) {
        (Outcome::Finalized, _) => OK,
        (Outcome::Interrupted, _) => UNEXPECTED,
        (Outcome::RolledBack, Cause::GateFailed | Cause::OperatorRollback) => ROLLED_BACK,
        // Rolled back because of an error, not a decision: scripts must not read it as a gate.
        (Outcome::RolledBack, _) => UNEXPECTED,
        (Outcome::Failed, Cause::Usage) => USAGE,
        (Outcome::Failed, Cause::LockHeld) => LOCKED,
        (Outcome::Failed, Cause::MigrationFailed) => MIGRATION_FAILED,
        // Includes a rollback that did not complete, whatever asked for it.
        (Outcome::Failed, _) => UNEXPECTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_table() {
        use Cause::*;
        use Outcome::*;
        assert_eq!(code(Finalized, Done), OK);
        assert_eq!(code(Outcome::Interrupted, Cause::Interrupted), UNEXPECTED);
        assert_eq!(code(RolledBack, GateFailed), ROLLED_BACK);
        assert_eq!(code(RolledBack, OperatorRollback), ROLLED_BACK);
        assert_eq!(code(RolledBack, Unexpected), UNEXPECTED);
        assert_eq!(code(Failed, GateFailed), UNEXPECTED);
        assert_eq!(code(Failed, Usage), USAGE);
        assert_eq!(code(Failed, LockHeld), LOCKED);
        assert_eq!(code(Failed, MigrationFailed), MIGRATION_FAILED);
        assert_eq!(code(Failed, Unexpected), UNEXPECTED);
    }
}
