//! `glidepath contract PLAN`: the plan's `[contract]` migration, once (see
//! `engine::contract` for when it runs and when it refuses).

use crate::cli::Global;
use crate::commands::release::{confirm_production, connect, holder_name, load_plan};
use crate::commands::{self, CmdResult, OutputFormat};
use crate::engine::contract;
use std::io::IsTerminal;
use std::path::PathBuf;
use tokio::sync::mpsc::unbounded_channel;

#[derive(Debug, clap::Args)]
pub struct ContractArgs {
    pub plan: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// For production plans in scripted mode: the environment name, as typed confirmation.
    #[arg(long, value_name = "ENVIRONMENT")]
    pub confirm: Option<String>,
    /// Who holds the release lock while the contract runs (default `user@host`).
    #[arg(long, env = "GLIDEPATH_HOLDER", value_name = "NAME")]
    pub holder: Option<String>,
}

pub async fn run(g: &Global, a: &ContractArgs) -> CmdResult {
    let plan = load_plan(&a.plan)?;
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    confirm_production(&plan, &a.confirm, terminal)?;
    let (ports, plan) = connect(g, &plan).await?;
    let (tx, rx) = unbounded_channel();
    let who = holder_name(&a.holder);
    let engine = contract::contract(&plan, &ports, &who, tx);
    let (finished, ()) = tokio::join!(engine, crate::view::print_events(rx, a.output.into()));
    commands::from_code(finished.exit_code)
}
