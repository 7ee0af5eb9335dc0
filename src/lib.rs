//! glidepath: a release cockpit for AWS Fargate + RDS web apps.
//!
//! The workspace's crates show the architecture:
//! - `glidepath-core` ([`plan`], [`gate`], [`drill`], [`engine`], [`exit`]): decides; no
//!   AWS SDK, no terminal;
//! - `glidepath-aws` ([`aws`], [`assets`]): every aws-sdk call, behind the core's ports;
//! - `glidepath-view` ([`view`]): the cockpit, readable lines and JSON Lines;
//! - this crate: the command line ([`cli`], [`commands`]), tracing setup ([`logging`]), the
//!   stage process ([`rehearse`]) and the one place that prints errors and picks exit codes
//!   (`cli::main`: commands return a typed [`commands::CliError`]); it calls AWS only
//!   through `glidepath-aws` and has no aws-sdk-* dependency of its own.
//!
//! `main.rs` only hands over to [`cli::main`]. Integration tests use the library directly
//! (and the binary for end-to-end runs); the re-exports keep one path per module.

pub use glidepath_aws as aws;
pub use glidepath_aws::assets;
pub use glidepath_core::notify as notify_core;
pub use glidepath_core::{drill, engine, exit, gate, plan};
pub use glidepath_view as view;

pub mod cli;
pub mod commands;
pub mod logging;
pub mod notify;
pub mod rehearse;
