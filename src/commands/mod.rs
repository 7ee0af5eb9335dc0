//! One module per command family: its clap arguments and its body.

pub mod assets;
pub mod contract;
pub mod diff;
pub mod gate;
pub mod iam_policy;
pub mod init;
pub mod manual;
pub mod plan;
pub mod rehearse;
pub mod release;
pub mod restore;
pub mod stage;
pub mod window;

/// What a command returns: `Ok` when it did what it was asked, else a [`CliError`] that
/// `cli::main` prints (once) and turns into the exit code.
pub type CmdResult = Result<(), CliError>;

/// A command that did not succeed: the exit code and what stderr should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: i32,
    /// None when the view already told the story (a release's `release_finished`).
    pub message: Option<String>,
}

impl CliError {
    /// Exit 2: usage or plan error, nothing was changed.
    pub fn usage(message: impl std::fmt::Display) -> CliError {
        CliError::new(crate::exit::USAGE, message)
    }

    /// Exit 1: AWS refused, a write failed, a bug.
    pub fn unexpected(message: impl std::fmt::Display) -> CliError {
        CliError::new(crate::exit::UNEXPECTED, message)
    }

    /// `glidepath: {message}` with `code`.
    pub fn new(code: i32, message: impl std::fmt::Display) -> CliError {
        CliError {
            code,
            message: Some(format!("glidepath: {message}")),
        }
    }

    /// Text printed as it is (plan diagnostics carry their own `file:line:col` prefix).
    pub fn verbatim(code: i32, text: impl Into<String>) -> CliError {
        CliError {
            code,
            message: Some(text.into()),
        }
    }

    /// A failure the command's output has already reported; only the code remains.
    pub fn reported(code: i32) -> CliError {
        CliError {
            code,
            message: None,
        }
    }

    /// Print the message (if any) to stderr and give the exit code.
    pub fn report(&self) -> i32 {
        if let Some(m) = &self.message {
            eprintln!("{m}");
        }
        self.code
    }
}

/// An exit code someone else already explained (a release's ending, a watched release).
pub fn from_code(code: i32) -> CmdResult {
    if code == crate::exit::OK {
        Ok(())
    } else {
        Err(CliError::reported(code))
    }
}

/// The process exit code of a command's result.
pub fn exit_code(result: &CmdResult) -> i32 {
    match result {
        Ok(()) => crate::exit::OK,
        Err(e) => e.code,
    }
}

/// Say plainly that a command's capability has not landed yet (exit 1, no fake output).
pub fn not_built(what: &str) -> CliError {
    CliError::unexpected(format!(
        "`{what}` is not built yet in this version of glidepath."
    ))
}

/// `--output text|json` for commands that print results or events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Readable lines.
    Text,
    /// JSON (JSON Lines for event streams).
    Json,
}

impl From<OutputFormat> for crate::view::OutputFormat {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Text => crate::view::OutputFormat::Text,
            OutputFormat::Json => crate::view::OutputFormat::Json,
        }
    }
}
