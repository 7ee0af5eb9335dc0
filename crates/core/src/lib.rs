//! glidepath's core: everything that decides, nothing that talks to AWS or draws.
//!
//! - [`plan`]: the plan file — parse, validate (with file:line:col diagnostics), resolve.
//! - [`gate`]: health samples and verdicts, pure functions over what a poll observed: the
//!   sequential gate, the smoke test, and [`gate::live`] (the live colour judged against
//!   its own baseline around a migration). It imports nothing from `engine`.
//! - [`drill`]: looking back at a release's events: replay them through a plan's gates, or
//!   report how the gates did in a rehearsal.
//! - [`engine`]: the release state machine over the ledger. [`engine::run`] starts, resumes
//!   and rolls back releases, and every ending goes through `run::end`; one file per phase
//!   ([`engine::phases`], with the bake as a pure step and [`engine::phases::live_watch`]);
//!   the lock, the ledger and the events; [`engine::durable`], the one function from a
//!   ledger record to the durable events it implies (the run reports with it, and
//!   [`engine::watch`] too); [`engine::oplog`], the append-only operations log;
//!   [`engine::supersede`], closing a release whose lock was broken; [`engine::contract`];
//!   the one retry policy ([`engine::retry`]) and the ports (traits) the AWS adapters
//!   implement.
//! - [`exit`]: the one table from an ending to a process exit code.
//!
//! This crate depends on neither aws-sdk-* nor ratatui (`cargo tree -p glidepath-core
//! -e normal` shows it; `scripts/test` checks it), so its tests build and run without the
//! SDK. In-memory fakes of the ports sit behind the `fake` feature, which only tests and
//! benchmarks turn on.

pub mod drill;
pub mod engine;
pub mod exit;
pub mod gate;
pub mod notify;
pub mod plan;
