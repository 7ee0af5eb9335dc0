//! `glidepath rehearse`: stage up, seed, release, report, stage down.

use crate::cli::Global;
use crate::commands::OutputFormat;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct RehearseArgs {
    /// The plan to rehearse (default: examples/rehearsal.toml).
    pub plan: Option<PathBuf>,
    /// Scenario name (see localstack/scenarios) or a scenario file.
    #[arg(long, default_value = "happy")]
    pub scenario: String,
    /// Version label for the rehearsal release.
    #[arg(long, default_value = "rehearsal")]
    pub version: String,
    /// Print events instead of opening the cockpit.
    #[arg(long)]
    pub non_interactive: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Approve manual gates automatically.
    #[arg(long)]
    pub auto_approve: bool,
    /// Stage port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

pub async fn run(_g: &Global, _a: &RehearseArgs) -> i32 {
    super::not_built("rehearse")
}
