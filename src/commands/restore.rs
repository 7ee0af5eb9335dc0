//! `glidepath restore PLAN --release ID [--name NEW]`: a release's snapshot restored to a
//! new database (see `engine::restore` for what it refuses and why it takes no lock).

use crate::cli::Global;
use crate::commands::release::{confirm_production, connect, holder_name, load_plan};
use crate::commands::{CliError, CmdResult, OutputFormat};
use crate::engine::restore::{self, RestoreRequest, Restored};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    pub plan: PathBuf,
    /// The release whose snapshot is restored (`glidepath history PLAN` lists them).
    #[arg(long, value_name = "ID")]
    pub release: String,
    /// The new database's identifier (default `<db>-restore-<release>`); it must not exist.
    #[arg(long, value_name = "NEW")]
    pub name: Option<String>,
    /// How long to wait for the new database to be available, e.g. `90m`.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub timeout: Duration,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// For production plans in scripted mode: the environment name, as typed confirmation.
    #[arg(long, value_name = "ENVIRONMENT")]
    pub confirm: Option<String>,
    /// Who restores, as recorded in the operations log (default `user@host`).
    #[arg(long, env = "GLIDEPATH_HOLDER", value_name = "NAME")]
    pub holder: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::plan::duration::parse(s).map_err(|e| format!("{} ({})", e.message, e.hint))
}

pub async fn run(g: &Global, a: &RestoreArgs) -> CmdResult {
    let plan = load_plan(&a.plan)?;
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    confirm_production(&plan, &a.confirm, terminal)?;
    let (ports, plan) = connect(g, &plan).await?;
    let req = RestoreRequest {
        release: a.release.clone(),
        name: a.name.clone(),
        holder: holder_name(&a.holder),
        timeout: a.timeout,
        poll: restore::POLL,
    };
    // Progress goes to stderr so that stdout carries only the answer (JSON stays parseable).
    let progress = |line: String| eprintln!("restore: {line}");
    match restore::restore(&plan, &ports, &req, &progress).await {
        Ok(r) => {
            match a.output {
                OutputFormat::Text => print!("{}", text(&r)),
                OutputFormat::Json => {
                    let s = serde_json::to_string_pretty(&r).map_err(|e| {
                        CliError::unexpected(format!("cannot format the answer as JSON: {e}"))
                    })?;
                    println!("{s}");
                }
            }
            Ok(())
        }
        Err(e) => Err(CliError::new(e.code, e.message)),
    }
}

pub fn text(r: &Restored) -> String {
    let at = match (&r.endpoint, r.port) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.clone(),
        _ => "(no endpoint reported)".into(),
    };
    let mut out = format!(
        "restored snapshot {} (release {}) to {} {}: {}\nendpoint: {at}\n{} was not touched.\n",
        r.snapshot,
        r.release,
        match r.kind {
            crate::plan::DatabaseKind::Instance => "DB instance",
            crate::plan::DatabaseKind::Cluster => "Aurora cluster",
        },
        r.name,
        r.status,
        r.source
    );
    if r.kind == crate::plan::DatabaseKind::Cluster {
        out.push_str(&format!(
            "an Aurora cluster restored from a snapshot has no instance yet: add one (aws rds create-db-instance \
             --db-cluster-identifier {} …) before connecting.\n",
            r.name
        ));
    }
    out
}
