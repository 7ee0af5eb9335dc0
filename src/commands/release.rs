//! `glidepath release|resume|rollback|status|history|watch|unlock`.

use crate::cli::Global;
use crate::commands::OutputFormat;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    pub plan: PathBuf,
    /// The version to release (substituted into the plan's image as {version}).
    #[arg(long)]
    pub version: String,
    /// Print events (for CI) instead of opening the cockpit; implied without a terminal.
    #[arg(long)]
    pub non_interactive: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Approve manual gates automatically (scripted mode).
    #[arg(long)]
    pub auto_approve: bool,
    /// For production plans in scripted mode: the environment name, as typed confirmation.
    #[arg(long, value_name = "ENVIRONMENT")]
    pub confirm: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    pub plan: PathBuf,
    #[arg(long)]
    pub non_interactive: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[arg(long)]
    pub auto_approve: bool,
    #[arg(long, value_name = "ENVIRONMENT")]
    pub confirm: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    pub plan: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[arg(long, value_name = "ENVIRONMENT")]
    pub confirm: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    pub plan: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    pub plan: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    pub plan: PathBuf,
    /// Required: breaking a lock can let two releases collide.
    #[arg(long)]
    pub force: bool,
}

pub async fn release(_g: &Global, _a: &ReleaseArgs) -> i32 {
    super::not_built("release")
}
pub async fn resume(_g: &Global, _a: &ResumeArgs) -> i32 {
    super::not_built("resume")
}
pub async fn rollback(_g: &Global, _a: &RollbackArgs) -> i32 {
    super::not_built("rollback")
}
pub async fn status(_g: &Global, _a: &StatusArgs) -> i32 {
    super::not_built("status")
}
pub async fn history(_g: &Global, _a: &StatusArgs) -> i32 {
    super::not_built("history")
}
pub async fn watch(_g: &Global, _a: &WatchArgs) -> i32 {
    super::not_built("watch")
}
pub async fn unlock(_g: &Global, _a: &UnlockArgs) -> i32 {
    super::not_built("unlock")
}

/// How a release is driven once its plan is loaded: shared by `release` and `rehearse`.
#[derive(Debug, Clone)]
pub struct Drive {
    pub version: String,
    pub non_interactive: bool,
    pub output: OutputFormat,
    pub auto_approve: bool,
    /// Typed confirmation for production plans (scripted mode).
    pub confirm: Option<String>,
}

/// Build the ports for `plan` (endpoint from `g` or the plan), pick the view (cockpit on
/// a terminal, lines/JSON otherwise), run the engine; returns the exit code.
pub async fn drive(_g: &Global, _plan: &crate::plan::Plan, _d: Drive) -> i32 {
    super::not_built("release")
}
