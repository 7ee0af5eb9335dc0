//! `glidepath plan validate|show`.

use crate::cli::Global;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum PlanCmd {
    /// Check a plan file; exit 0 when valid, 2 with diagnostics when not.
    Validate {
        /// The release plan (TOML).
        plan: PathBuf,
    },
    /// Show the resolved plan: what a release would do, in order.
    Show {
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = crate::commands::OutputFormat::Text)]
        output: crate::commands::OutputFormat,
    },
}

pub async fn run(_g: &Global, _c: &PlanCmd) -> i32 {
    super::not_built("plan")
}
