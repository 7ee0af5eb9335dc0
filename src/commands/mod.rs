//! One module per command family: its clap arguments and its body.

pub mod assets;
pub mod plan;
pub mod rehearse;
pub mod release;
pub mod stage;

/// Say plainly that a command's capability has not landed yet (exit 1, no fake output).
pub fn not_built(what: &str) -> i32 {
    eprintln!("glidepath: `{what}` is not built yet in this version of glidepath.");
    crate::exit::UNEXPECTED
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
