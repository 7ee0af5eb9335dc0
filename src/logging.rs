//! Tracing setup: logs go to `--log-file` only, so the terminal stays the views' own.

use crate::cli::Global;

/// Keeps the log file open for the life of the process.
pub struct LogGuard;

pub fn init(global: &Global) -> Option<LogGuard> {
    let path = global.log_file.as_ref()?;
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("glidepath: cannot open log file {}: {e}", path.display());
            return None;
        }
    };
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
    tracing::subscriber::set_global_default(subscriber).ok()?;
    Some(LogGuard)
}
