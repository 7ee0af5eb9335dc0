//! `glidepath gate replay`: what would the plan's gates have decided on a recorded release?

use crate::cli::Global;
use crate::commands::{CliError, CmdResult, OutputFormat};
use crate::drill::replay;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum GateCmd {
    /// Feed a recorded release (`--output json` events) through a plan's gates and print,
    /// per step, the verdicts and the first failure. Exit 3 if it would have rolled back,
    /// 0 if it would have passed, 2 on bad input.
    Replay {
        /// The release plan (TOML) whose `[gates]` judge the recording.
        #[arg(long)]
        plan: PathBuf,
        /// JSON Lines recorded with `--output json` (`-`: standard input).
        events: PathBuf,
        /// `text`: one line per step; `json`: the full report.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

pub async fn run(_g: &Global, c: &GateCmd) -> CmdResult {
    let GateCmd::Replay {
        plan,
        events,
        output,
    } = c;
    let plan = crate::plan::load(plan)
        .map_err(|e| CliError::verbatim(crate::exit::USAGE, e.to_string()))?;
    let shown = events.display();
    let text = if events.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(events)
    }
    .map_err(|e| CliError::usage(format!("cannot read {shown}: {e}")))?;
    let report =
        replay::replay(&plan, &text).map_err(|e| CliError::usage(format!("{shown}: {e}")))?;
    match output {
        OutputFormat::Text => print!(
            "{}",
            replay::render_text(&report, &plan.source.display().to_string())
        ),
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                return Err(CliError::unexpected(format!(
                    "cannot serialize the report: {e}"
                )))
            }
        },
    }
    if report.rolled_back() {
        // The report said why; only the code remains.
        Err(CliError::reported(crate::exit::ROLLED_BACK))
    } else {
        Ok(())
    }
}
