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
/// 3: the release ended rolled back (a health gate, or the operator); its own process and
/// its record carry it. `glidepath rollback` itself exits 0 when traffic is back.
pub const ROLLED_BACK: i32 = 3;
/// 4: the release lock is held by someone else.
pub const LOCKED: i32 = 4;
/// 5: the migration failed; no traffic moved.
pub const MIGRATION_FAILED: i32 = 5;
/// 6: the migration broke the live colour (the running version); nothing was deployed and
/// no traffic moved.
pub const LIVE_BROKEN: i32 = 6;
/// 7: the read-only window's `exit` command failed: the app may still be read-only.
pub const READ_ONLY_STUCK: i32 = 7;

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
    /// The migration succeeded but the live colour degraded after it.
    LiveBroken,
    /// `glidepath rollback` found traffic already where it would send it (never recorded).
    AlreadyBack,
    /// The read-only window's `exit` command failed (whatever else happened): the app may
    /// still be read-only.
    ReadOnlyExit,
}

/// Whose process is exiting: the same ending means different things to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Process {
    /// The release's own process (`release`, `resume`); its code is also the record's.
    #[default]
    Release,
    /// `glidepath rollback`: it asked for traffic on the old colour.
    Rollback,
}

/// The exit-code table of a release's own process (and of its record).
pub fn code(outcome: Outcome, cause: Cause) -> i32 {
    code_for(Process::Release, outcome, cause)
}

/// The exit-code table.
pub fn code_for(process: Process, outcome: Outcome, cause: Cause) -> i32 {
    match (process, outcome, cause) {
        // Louder than anything else: the app may still refuse writes.
        (_, _, Cause::ReadOnlyExit) => READ_ONLY_STUCK,
        // `glidepath rollback` got what it asked for: traffic is on the old colour.
        (Process::Rollback, Outcome::RolledBack, _)
        | (Process::Rollback, _, Cause::AlreadyBack) => OK,
        // A finalized release reported to `glidepath rollback` (an ended release whose lock
        // outlived it) was not rolled back: not a success for it.
        (Process::Rollback, Outcome::Finalized, _) => UNEXPECTED,
        (_, outcome, cause) => release_code(outcome, cause),
    }
}

fn release_code(outcome: Outcome, cause: Cause) -> i32 {
    match (outcome, cause) {
        (Outcome::Finalized, _) => OK,
        // A failed shard keeps the release open for `resume`, but the migration failed.
        (Outcome::Interrupted, Cause::MigrationFailed) => MIGRATION_FAILED,
        (Outcome::Interrupted, _) => UNEXPECTED,
        (Outcome::Superseded, _) => UNEXPECTED,
        (Outcome::RolledBack, Cause::GateFailed | Cause::OperatorRollback) => ROLLED_BACK,
        // Rolled back because of an error, not a decision: scripts must not read it as a gate.
        (Outcome::RolledBack, _) => UNEXPECTED,
        (Outcome::Failed, Cause::Usage) => USAGE,
        (Outcome::Failed, Cause::LockHeld) => LOCKED,
        (Outcome::Failed, Cause::MigrationFailed) => MIGRATION_FAILED,
        (Outcome::Failed, Cause::LiveBroken) => LIVE_BROKEN,
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
        // A sharded migration's failed shard keeps the release open, still exit 5.
        assert_eq!(
            code(Outcome::Interrupted, Cause::MigrationFailed),
            MIGRATION_FAILED
        );
        assert_eq!(code(RolledBack, GateFailed), ROLLED_BACK);
        assert_eq!(code(RolledBack, OperatorRollback), ROLLED_BACK);
        assert_eq!(code(RolledBack, Unexpected), UNEXPECTED);
        assert_eq!(code(Failed, GateFailed), UNEXPECTED);
        assert_eq!(code(Failed, Usage), USAGE);
        assert_eq!(code(Failed, LockHeld), LOCKED);
        assert_eq!(code(Failed, MigrationFailed), MIGRATION_FAILED);
        assert_eq!(code(Failed, LiveBroken), LIVE_BROKEN);
        assert_eq!(code(Failed, Unexpected), UNEXPECTED);
        // `glidepath rollback` succeeded when traffic is back, whatever ended the release.
        let rb = |o, c| code_for(Process::Rollback, o, c);
        assert_eq!(rb(RolledBack, OperatorRollback), OK);
        assert_eq!(rb(RolledBack, GateFailed), OK);
        assert_eq!(rb(Failed, OperatorRollback), UNEXPECTED);
        assert_eq!(rb(Failed, Usage), USAGE);
        assert_eq!(rb(Failed, LockHeld), LOCKED);
        assert_eq!(rb(Finalized, Done), UNEXPECTED);
        assert_eq!(rb(Failed, AlreadyBack), OK);
        // A stuck read-only window is told whoever exits, however the release ended.
        assert_eq!(code(Failed, ReadOnlyExit), READ_ONLY_STUCK);
        assert_eq!(code(Outcome::Interrupted, ReadOnlyExit), READ_ONLY_STUCK);
        assert_eq!(rb(RolledBack, ReadOnlyExit), READ_ONLY_STUCK);
    }
}
