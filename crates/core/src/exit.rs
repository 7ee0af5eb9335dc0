//! Process exit codes: a public contract (README "Exit codes"); scripts branch on them.

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
