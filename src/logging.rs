//! Tracing setup: logs go to `--log-file` only, so the terminal stays the views' own.

use crate::cli::Global;
use crate::commands::CliError;

/// Keeps the log file open for the life of the process.
pub struct LogGuard;

/// Send tracing to `--log-file` (none without it). A file that cannot be opened is a usage
/// error: the operator asked for a log and would otherwise find none after the release.
pub fn init(global: &Global) -> Result<Option<LogGuard>, CliError> {
    let Some(path) = global.log_file.as_ref() else {
        return Ok(None);
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            CliError::usage(format!(
                "cannot open the log file {} ({e}); give --log-file a path in a directory you can write to",
                path.display()
            ))
        })?;
    let level = match global.verbose {
        0 => "glidepath=info",
        1 => "glidepath=debug",
        _ => "glidepath=trace,aws_smithy_runtime=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GLIDEPATH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .finish();
    // Only fails when a subscriber is already set (never in the binary): keep that one.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(Some(LogGuard))
}
