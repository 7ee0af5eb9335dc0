//! Command line: parse arguments, then hand over to one command module. Each command's
//! arguments and body live in `commands/<name>.rs`, so commands grow independently.

use crate::commands::{self, CliError, CmdResult};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "glidepath",
    version,
    about = "A release cockpit for AWS Fargate + RDS web apps",
    long_about = "glidepath releases an ECS Fargate web app safely at any hour: it takes the \
release lock, snapshots the RDS database, runs exactly one migration task, publishes \
versioned static assets, deploys the idle colour, shifts ALB traffic step by step behind \
health gates, and rolls back to the live colour on a bad signal.\n\nExit codes: 0 success, \
1 unexpected error, 2 usage or plan error, 3 rolled back by a gate, 4 lock held by someone \
else, 5 migration failed (no traffic moved), 6 the migration broke the live version (nothing \
deployed, no traffic moved)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Options every command understands.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Send every AWS call to this endpoint (an emulator such as the rehearsal stage).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS profile from the shared config/credentials files.
    #[arg(long, global = true, env = "AWS_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// AWS region (overrides the plan's region).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// More detail in the log (-v, -vv). Credentials are never logged.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Write tracing logs to this file (the terminal stays clean for the cockpit).
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Check or show a release plan.
    #[command(subcommand)]
    Plan(commands::plan::PlanCmd),
    /// Rehearse a release on the local stage: stage up, seed, release, report, stage down.
    Rehearse(commands::rehearse::RehearseArgs),
    /// Release a new version: lock, snapshot, migrate, assets, deploy, shift, finalize.
    Release(commands::release::ReleaseArgs),
    /// Continue the release recorded in the ledger from the phase it was in.
    Resume(commands::release::ResumeArgs),
    /// Send all traffic back to the live colour (release in progress or the last finalized one).
    Rollback(commands::release::RollbackArgs),
    /// Run the plan's [contract] migration once the latest release is finalized and has
    /// been live for `contract.after` (after it, rollback to the version before is refused).
    Contract(commands::contract::ContractArgs),
    /// Restore a release's snapshot (taken before its migration) to a new database and
    /// print its endpoint; the live database is never touched.
    Restore(commands::restore::RestoreArgs),
    /// Dry run: what a release of --version would change in the account, and where the plan
    /// does not match it (exit 2). Changes nothing.
    Diff(commands::diff::DiffArgs),
    /// Show the current release and lock from the ledger.
    Status(commands::release::StatusArgs),
    /// List past releases from the ledger (`--operations`: every operation, in order).
    History(commands::release::HistoryArgs),
    /// Attach read-only to a release in progress (from another terminal).
    Watch(commands::release::WatchArgs),
    /// Approve a manual gate of the release in progress, from any terminal.
    Approve(commands::release::ApproveArgs),
    /// Break a stale release lock (shows who holds it first).
    Unlock(commands::release::UnlockArgs),
    /// Publish or prune versioned static assets.
    #[command(subcommand)]
    Assets(commands::assets::AssetsCmd),
    /// Tune the health gates: replay recorded releases through a plan's gates.
    #[command(subcommand)]
    Gate(commands::gate::GateCmd),
    /// Write a commented plan for an existing ECS service behind an ALB; `--create-green`
    /// creates its blue/green twin (service and target group).
    Init(commands::init::InitArgs),
    /// Print the least-privilege IAM policy (JSON) for this plan's release, rollback, watch
    /// and assets publish; the explanation goes to stderr.
    IamPolicy(commands::iam_policy::IamPolicyArgs),
    /// The local rehearsal stage (an AWS emulator plus a stagehand).
    #[command(subcommand)]
    Stage(commands::stage::StageCmd),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(commands::manual::CompletionsArgs),
    /// Print the man page (roff), or write one page per command with `--dir`.
    Man(commands::manual::ManArgs),
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                crate::exit::USAGE
            } else {
                crate::exit::OK
            };
        }
    };
    let _guard = match crate::logging::init(&cli.global) {
        Ok(guard) => guard,
        Err(e) => return e.report(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return CliError::unexpected(format!("cannot start the async runtime: {e}")).report()
        }
    };
    // The one place a command's error is printed and its exit code picked.
    match runtime.block_on(run(cli)) {
        Ok(()) => crate::exit::OK,
        Err(e) => e.report(),
    }
}

async fn run(cli: Cli) -> CmdResult {
    let g = &cli.global;
    match &cli.command {
        Cmd::Plan(c) => commands::plan::run(g, c).await,
        Cmd::Rehearse(a) => commands::rehearse::run(g, a).await,
        Cmd::Release(a) => commands::release::release(g, a).await,
        Cmd::Resume(a) => commands::release::resume(g, a).await,
        Cmd::Rollback(a) => commands::release::rollback(g, a).await,
        Cmd::Contract(a) => commands::contract::run(g, a).await,
        Cmd::Restore(a) => commands::restore::run(g, a).await,
        Cmd::Status(a) => commands::release::status(g, a).await,
        Cmd::Diff(a) => commands::diff::run(g, a).await,
        Cmd::History(a) => commands::release::history(g, a).await,
        Cmd::Watch(a) => commands::release::watch(g, a).await,
        Cmd::Approve(a) => commands::release::approve(g, a).await,
        Cmd::Unlock(a) => commands::release::unlock(g, a).await,
        Cmd::Assets(c) => commands::assets::run(g, c).await,
        Cmd::Stage(c) => commands::stage::run(g, c).await,
        Cmd::Gate(c) => commands::gate::run(g, c).await,
        Cmd::Init(a) => commands::init::run(g, a).await,
        Cmd::IamPolicy(a) => commands::iam_policy::run(g, a).await,
        Cmd::Completions(a) => commands::manual::completions(a),
        Cmd::Man(a) => commands::manual::man(a),
    }
}
