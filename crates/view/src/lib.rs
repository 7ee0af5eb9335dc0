//! Views: the three faces of one event stream.
//!
//! - [`lines`]: one readable line per event (CI logs, `--non-interactive`).
//! - [`json`]: JSON Lines, one `Envelope` per line (`--output json`).
//! - [`tui`]: the cockpit (ratatui), which also sends the operator's commands.
//! - [`text`]: wording shared by the lines and the cockpit; [`fixture`]: recorded event
//!   sequences for the views' tests and benchmarks.
//!
//! Views only consume [`Envelope`]s and send [`Command`](crate::engine::event::Command)s;
//! they never decide anything about the release and never call AWS.

pub mod fixture;
pub mod json;
pub mod lines;
pub mod quiet;
pub mod text;
pub mod tui;

pub use tui::{cockpit, CockpitContext};

// The core this crate renders; `crate::engine` etc. keep the paths the modules were written with.
pub(crate) use glidepath_core::{engine, gate, plan};

use crate::engine::event::Envelope;
use std::io::{IsTerminal, Write};
use tokio::sync::mpsc::UnboundedReceiver;

/// Print every event until the channel closes: readable lines or JSON Lines on stdout,
/// flushed per line so CI logs stream.
pub async fn print_events(rx: UnboundedReceiver<Envelope>, format: OutputFormat) {
    write_events(rx, format, colour_for_stdout(), std::io::stdout()).await;
}

/// [`print_events`], or with `quiet` only what [`quiet::keeps`] (warnings, failures, a gate
/// waiting for someone, and the final line).
pub async fn print_events_with(rx: UnboundedReceiver<Envelope>, format: OutputFormat, quiet: bool) {
    let keep = if quiet {
        quiet::keeps
    } else {
        |_: &Envelope| true
    };
    write_events_filtered(rx, format, colour_for_stdout(), std::io::stdout(), keep).await;
}

/// [`print_events`] into any writer. If the writer fails (a closed pipe) the stream is
/// still drained, so the engine never blocks or fails on a view nobody can see.
pub async fn write_events<W: Write>(
    rx: UnboundedReceiver<Envelope>,
    format: OutputFormat,
    colour: bool,
    out: W,
) {
    write_events_filtered(rx, format, colour, out, |_| true).await;
}

/// [`write_events`] of the events `keep` accepts. Every event still reaches the printer,
/// so its state (progress throttling) is the same as when everything is printed.
pub async fn write_events_filtered<W: Write>(
    mut rx: UnboundedReceiver<Envelope>,
    format: OutputFormat,
    colour: bool,
    mut out: W,
    keep: fn(&Envelope) -> bool,
) {
    let mut printer = lines::Printer::new(colour);
    let mut writable = true;
    while let Some(env) = rx.recv().await {
        if !writable {
            continue;
        }
        let line = match format {
            OutputFormat::Text => printer.line(&env),
            OutputFormat::Json => Some(json::format(&env)),
        };
        let line = line.filter(|_| keep(&env));
        if let Some(line) = line {
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                writable = false;
            }
        }
    }
}

/// How an event stream is printed: readable lines or JSON Lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

/// `NO_COLOR` set to anything non-empty turns colour off (https://no-color.org).
pub fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Colour only on a terminal and only without `NO_COLOR`.
pub fn colour_for_stdout() -> bool {
    std::io::stdout().is_terminal() && !no_color_env()
}
