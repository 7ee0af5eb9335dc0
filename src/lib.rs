//! glidepath: a release cockpit for AWS Fargate + RDS web apps.
//!
//! The library holds everything; `main.rs` only hands over to [`cli::main`]. Integration
//! tests use the library directly (and the binary for end-to-end runs).

pub mod assets;
pub mod aws;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod exit;
pub mod gate;
pub mod logging;
pub mod plan;
pub mod rehearse;
pub mod view;
