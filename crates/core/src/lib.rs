//! glidepath's core: everything that decides, nothing that talks to AWS or draws.
//!
//! - [`plan`]: the plan file — parse, validate (with file:line:col diagnostics), resolve.
//! - [`gate`]: health samples and verdicts, pure functions over what a poll observed.
//! - [`drill`]: looking back at a release's events: replay them through a plan's gates, or
//!   report how the gates did in a rehearsal.
//! - [`engine`]: the release state machine over the ledger — one file per phase, the lock,
//!   the events every view consumes, and the ports (traits) the AWS adapters implement.
//!
//! This crate depends on neither aws-sdk-* nor ratatui (`cargo tree -p glidepath-core`
//! shows it), so its tests build and run without the SDK. In-memory fakes of the ports
//! sit behind the `fake` feature, which only tests and benchmarks turn on.

pub mod drill;
pub mod engine;
pub mod exit;
pub mod gate;
pub mod plan;
