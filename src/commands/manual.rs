//! `glidepath completions SHELL` and `glidepath man`: generated from the clap definitions
//! at run time, so they can never drift from the commands they describe.

use crate::cli::Cli;
use crate::commands::{CliError, CmdResult};
use clap::CommandFactory;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for; redirect the output to where that shell looks, e.g.
    /// `glidepath completions bash > ~/.local/share/bash-completion/completions/glidepath`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `glidepath.1` and one `glidepath-<command>.1` per command into this directory
    /// instead of printing `glidepath.1` to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The completion script for `shell`, as `completions` prints it.
pub fn completions_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "glidepath", &mut out);
    out
}

/// The top-level man page (roff), as `man` prints it.
pub fn man_page() -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(out)
}

pub fn completions(a: &CompletionsArgs) -> CmdResult {
    emit(&completions_script(a.shell))
}

pub fn man(a: &ManArgs) -> CmdResult {
    match &a.dir {
        None => emit(&man_page().map_err(CliError::unexpected)?),
        Some(dir) => {
            if !dir.is_dir() {
                return Err(CliError::usage(format!(
                    "--dir {}: no such directory; create it first",
                    dir.display()
                )));
            }
            clap_mangen::generate_to(Cli::command(), dir).map_err(|e| {
                CliError::unexpected(format!("cannot write man pages to {}: {e}", dir.display()))
            })?;
            Ok(())
        }
    }
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit(bytes: &[u8]) -> CmdResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::unexpected(format!("cannot write to stdout: {e}"))),
    }
}
