//! The cockpit: a ratatui view of the engine's events and a source of its commands.
//!
//! `app.rs` is the model and update, `draw.rs` the pure view, `panes/` the parts. This
//! file owns the terminal (setup, restore on every exit path including panics and
//! signals) and the one select loop: terminal input, engine events, a slow clock tick.

pub mod app;
pub mod draw;
pub mod panes;

use crate::engine::event::{Command, Envelope};
use crate::plan::Plan;
use app::{Action, Cockpit};
use chrono::Utc;
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// What the cockpit knows before the first event arrives.
#[derive(Debug, Clone)]
pub struct CockpitContext {
    pub plan: Plan,
    pub release_id: String,
    pub version: String,
    pub endpoint: Option<String>,
    pub region: String,
    /// The AWS account in use, when it could be read (STS), for the header.
    pub account: Option<String>,
    /// `glidepath watch`: show only; no key sends a command.
    pub watch_only: bool,
}

/// Run the cockpit until the operator quits: after the release finished (`q`), or during
/// it (after sending [`Command::Abort`], which leaves traffic where it is). The terminal is
/// restored before this returns, and then a closing line is printed (the outcome, or how
/// to `resume`).
pub async fn cockpit(
    mut rx: UnboundedReceiver<Envelope>,
    tx: UnboundedSender<Command>,
    ctx: CockpitContext,
) -> io::Result<()> {
    let mut app = Cockpit::new(&ctx, !crate::no_color_env(), Utc::now());
    let result = {
        let mut guard = TerminalGuard::enter()?;
        run(&mut guard.terminal, &mut app, &mut rx, &tx).await
    };
    // Keep accepting events after we leave, so the engine can finish its abort without
    // failing on a closed channel.
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    result?;
    if let Some(msg) = app.farewell() {
        println!("{msg}");
    }
    Ok(())
}

/// Events applied before a redraw when many arrive at once; keys stay responsive.
const BATCH: usize = 512;

async fn run<B: ratatui::backend::Backend>(
    terminal: &mut Terminal<B>,
    app: &mut Cockpit,
    rx: &mut UnboundedReceiver<Envelope>,
    tx: &UnboundedSender<Command>,
) -> io::Result<()> {
    let mut input = EventStream::new();
    // The clock only needs seconds; nothing else polls.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signals = Signals::new()?;
    let mut events_open = true;
    let mut dirty = true;
    loop {
        if !ACTIVE.load(Ordering::SeqCst) {
            // A panic elsewhere in the process restored the terminal (so its message is
            // readable); the cockpit cannot draw any more, so it stops like Ctrl-C.
            perform(app.interrupt(), app, tx);
            return Err(io::Error::other(
                "the cockpit stopped: a panic elsewhere in glidepath restored the terminal",
            ));
        }
        if dirty {
            terminal.draw(|f| draw::draw(app, f))?;
            dirty = false;
        }
        tokio::select! {
            ev = rx.recv(), if events_open => {
                match ev {
                    Some(env) => {
                        app.apply(&env);
                        for _ in 0..BATCH {
                            match rx.try_recv() {
                                Ok(env) => app.apply(&env),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        events_open = false;
                        app.engine_gone();
                    }
                }
                dirty = true;
            }
            input_ev = input.next() => {
                match input_ev {
                    Some(Ok(TermEvent::Key(key))) if key.kind == KeyEventKind::Press => {
                        if perform(app.handle_key(key), app, tx) {
                            return Ok(());
                        }
                        dirty = true;
                    }
                    Some(Ok(TermEvent::Resize(..))) => {
                        terminal.autoresize()?;
                        dirty = true;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    // The terminal went away: stop like an operator quitting.
                    None => {
                        perform(app.interrupt(), app, tx);
                        return Ok(());
                    }
                }
            }
            _ = tick.tick() => {
                if app.tick(Utc::now()) {
                    dirty = true;
                }
            }
            _ = signals.recv() => {
                perform(app.interrupt(), app, tx);
                return Ok(());
            }
        }
    }
}

/// Send the commands; true when the cockpit should close.
fn perform(actions: Vec<Action>, app: &mut Cockpit, tx: &UnboundedSender<Command>) -> bool {
    let mut quit = false;
    for action in actions {
        match action {
            Action::Send(cmd) => {
                if tx.send(cmd).is_err() {
                    app.flash = Some("the engine has stopped; nothing was sent".into());
                }
            }
            Action::Quit => quit = true,
        }
    }
    quit
}

/// SIGINT/SIGTERM/SIGHUP: leave like Ctrl-C (abort, keep traffic, restore the terminal).
struct Signals {
    #[cfg(unix)]
    all: [tokio::signal::unix::Signal; 3],
}

impl Signals {
    #[cfg(unix)]
    fn new() -> io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            all: [
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ],
        })
    }
    #[cfg(unix)]
    async fn recv(&mut self) {
        let [a, b, c] = &mut self.all;
        tokio::select! {
            _ = a.recv() => {}
            _ = b.recv() => {}
            _ = c.recv() => {}
        }
    }
    #[cfg(not(unix))]
    fn new() -> io::Result<Self> {
        Ok(Signals {})
    }
    #[cfg(not(unix))]
    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Whether the terminal is in cockpit mode (raw, alternate screen).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: std::sync::Once = std::sync::Once::new();

/// Back to a normal terminal; safe to call any number of times, from any path.
pub fn restore_terminal() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = crossterm::terminal::disable_raw_mode();
        let _ = crossterm::execute!(
            io::stdout(),
            crossterm::terminal::LeaveAlternateScreen,
            crossterm::cursor::Show
        );
    }
}

/// Owns the terminal while the cockpit runs; dropping it restores the terminal.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter() -> io::Result<Self> {
        // A panic anywhere restores the terminal before the message is printed.
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        crossterm::terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = crossterm::execute!(
            io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )
        .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match setup {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore_terminal();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}
