//! `glidepath release|resume|rollback|status|history|watch|unlock`.

use crate::assets::port::S3Assets;
use crate::aws::AwsError;
use crate::aws::SdkConfig;
use crate::cli::Global;
use crate::commands::{self, CliError, CmdResult, OutputFormat};
use crate::engine::event::{Command, Envelope, Outcome};
use crate::engine::ledger::IndexEntry;
use crate::engine::ports::Ports;
use crate::engine::run::{self, ReleaseRequest, ResumeRequest, Status};
use crate::engine::watch::{self, WatchRequest};
use crate::plan::{GateMode, Plan};
use crate::view::CockpitContext;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    pub plan: PathBuf,
    /// The version to release (substituted into the plan's image as {version}).
    #[arg(long)]
    pub version: String,
    /// Print events (for CI) instead of opening the cockpit; implied without a terminal.
    #[arg(long)]
    pub non_interactive: bool,
    /// Scripted mode printing only warnings, failures, a manual gate waiting and the final
    /// line (implies --non-interactive).
    #[arg(long, short)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Approve manual gates automatically (scripted mode).
    #[arg(long)]
    pub auto_approve: bool,
    /// How long a manual gate waits for an approval before the plan's `gates.on_fail`
    /// applies (overrides `gates.approval_timeout`, default 1h), e.g. `30m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub approval_timeout: Option<std::time::Duration>,
    /// For production plans in scripted mode: the environment name, as typed confirmation.
    #[arg(long, value_name = "ENVIRONMENT")]
    pub confirm: Option<String>,
    /// Who holds the release lock, as shown to others (default `user@host`).
    #[arg(long, env = "GLIDEPATH_HOLDER", value_name = "NAME")]
    pub holder: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    pub plan: PathBuf,
    #[arg(long)]
    pub non_interactive: bool,
    /// Scripted mode printing only warnings, failures, a manual gate waiting and the final
    /// line (implies --non-interactive).
    #[arg(long, short)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[arg(long)]
    pub auto_approve: bool,
    /// How long a manual gate waits for an approval before the plan's `gates.on_fail`
    /// applies (overrides `gates.approval_timeout`, default 1h), e.g. `30m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub approval_timeout: Option<std::time::Duration>,
    #[arg(long, value_name = "ENVIRONMENT")]
    pub confirm: Option<String>,
    /// Who holds the release lock, as shown to others (default `user@host`).
    #[arg(long, env = "GLIDEPATH_HOLDER", value_name = "NAME")]
    pub holder: Option<String>,
    /// Take the lock over now even though its holder may still run (you have checked
    /// that it is gone). Without it, resume waits for the holder's lease to expire.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    pub plan: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Print only warnings, failures and the final line.
    #[arg(long, short)]
    pub quiet: bool,
    #[arg(long, value_name = "ENVIRONMENT")]
    pub confirm: Option<String>,
    /// Who holds the release lock, as shown to others (default `user@host`).
    #[arg(long, env = "GLIDEPATH_HOLDER", value_name = "NAME")]
    pub holder: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    pub plan: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    pub plan: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Every operation (release, resume, rollback, forced unlock, approval) from the
    /// append-only operations log, oldest first, instead of the releases.
    #[arg(long)]
    pub operations: bool,
    /// Only entries since then: an age (`7d`, `12h`, `1d12h`) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = commands::window::parse_since)]
    pub since: Option<commands::window::Since>,
    /// At most N entries, the newest ones.
    #[arg(long, value_name = "N", value_parser = commands::window::parse_limit)]
    pub limit: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    pub plan: PathBuf,
    /// Print events instead of opening the cockpit; implied without a terminal.
    #[arg(long)]
    pub non_interactive: bool,
    /// Scripted mode printing only warnings, failures, a manual gate waiting and the final
    /// line (implies --non-interactive).
    #[arg(long, short)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// When no release is in progress, wait for the next one to start.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    pub plan: PathBuf,
    /// The step to approve (1-based, as the messages count them); default: the gate that
    /// is waiting now. A later step may be approved ahead of time.
    #[arg(long, value_name = "N")]
    pub step: Option<usize>,
    /// Who approves, as recorded (default `user@host`).
    #[arg(long, env = "GLIDEPATH_HOLDER", value_name = "NAME")]
    pub holder: Option<String>,
}

/// `30m`, `1h`, `90s`: the plan's duration syntax.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::plan::duration::parse(s).map_err(|e| format!("{} ({})", e.message, e.hint))
}

#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    pub plan: PathBuf,
    /// Required: breaking a lock can let two releases collide.
    #[arg(long)]
    pub force: bool,
    /// Who breaks it, for the operations log (default `user@host`).
    #[arg(long, env = "GLIDEPATH_HOLDER", value_name = "NAME")]
    pub holder: Option<String>,
}

pub async fn release(g: &Global, a: &ReleaseArgs) -> CmdResult {
    let mut plan = load_plan(&a.plan)?;
    if let Some(t) = a.approval_timeout {
        plan.gates.approval_timeout = t;
    }
    let d = Drive {
        tap: None,
        version: a.version.clone(),
        non_interactive: a.non_interactive,
        quiet: a.quiet,
        output: a.output,
        auto_approve: a.auto_approve,
        confirm: a.confirm.clone(),
        holder: a.holder.clone(),
    };
    drive(g, &plan, d).await
}

pub async fn resume(g: &Global, a: &ResumeArgs) -> CmdResult {
    let mut plan = load_plan(&a.plan)?;
    if let Some(t) = a.approval_timeout {
        plan.gates.approval_timeout = t;
    }
    let view = View::pick(a.non_interactive, a.output, a.quiet);
    confirm_production(&plan, &a.confirm, view == View::Cockpit)?;
    let (ports, plan) = connect(g, &plan).await?;
    let say = |m: String| eprintln!("glidepath: {m}");
    crate::engine::lock::await_takeover(ports.state.as_ref(), a.force, &say)
        .await
        .map_err(|e| CliError::unexpected(format!("cannot read the release lock: {e}")))?;
    let req = ResumeRequest {
        auto_approve: a.auto_approve,
        holder: holder_name(&a.holder),
        endpoint: endpoint(g, &plan),
    };
    let (tx, rx) = unbounded_channel();
    let (ctx, crx) = unbounded_channel();
    let engine = run::resume(&plan, &ports, req.clone(), tx, crx);
    let cockpit = CockpitContext {
        plan: plan.clone(),
        release_id: String::new(),
        version: String::new(),
        endpoint: req.endpoint.clone(),
        region: plan.region.clone(),
        watch_only: false,
        account: cockpit_account(view, g, &plan).await,
    };
    let (finished, failed) = with_view(view, cockpit, rx, ctx, engine).await;
    ended(finished.exit_code, &finished.message, failed)
}

pub async fn rollback(g: &Global, a: &RollbackArgs) -> CmdResult {
    // Installed first, so that no Ctrl-C kills the rollback between two of its writes.
    let (stop, crx) = unbounded_channel();
    let ctrl_c = tokio::spawn(stop_on_ctrl_c(stop));
    let done = rollback_until_stopped(g, a, crx).await;
    ctrl_c.abort();
    done
}

/// The first Ctrl-C asks the rollback to stop at its next step (traffic where it last
/// stood, lock kept); a second one exits at once.
async fn stop_on_ctrl_c(stop: UnboundedSender<Command>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!(
        "glidepath: interrupted; the rollback stops after its current step (Ctrl-C again to exit now)"
    );
    let _ = stop.send(Command::Abort);
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("glidepath: exiting now; `glidepath rollback` again finishes the rollback");
        std::process::exit(crate::exit::UNEXPECTED);
    }
}

async fn rollback_until_stopped(
    g: &Global,
    a: &RollbackArgs,
    commands: UnboundedReceiver<Command>,
) -> CmdResult {
    let plan = load_plan(&a.plan)?;
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    confirm_production(&plan, &a.confirm, terminal)?;
    let (ports, plan) = connect(g, &plan).await?;
    // An emergency: a manual rollback takes the lock over from a holder that may still
    // run (it stops at its next renewal), saying so.
    let say = |m: String| eprintln!("glidepath: {m}");
    crate::engine::lock::await_takeover(ports.state.as_ref(), true, &say)
        .await
        .map_err(|e| CliError::unexpected(format!("cannot read the release lock: {e}")))?;
    let (tx, rx) = unbounded_channel();
    let who = holder_name(&a.holder);
    let engine = run::rollback_with(&plan, &ports, &who, tx, commands);
    let (finished, ()) = tokio::join!(
        engine,
        crate::view::print_events_with(rx, a.output.into(), a.quiet)
    );
    commands::from_code(finished.exit_code)
}

pub async fn status(g: &Global, a: &StatusArgs) -> CmdResult {
    let (ports, plan) = open(g, &a.plan).await?;
    answer(run::status(&plan, &ports).await, a.output, status_text)
}

pub async fn history(g: &Global, a: &HistoryArgs) -> CmdResult {
    let (ports, plan) = open(g, &a.plan).await?;
    let since = a.since.map(|s| s.cutoff(chrono::Utc::now()));
    if a.operations {
        let ops = run::operations(&plan, &ports)
            .await
            .map(|o| commands::window::oldest_first(o, |e| e.at, since, a.limit));
        return answer(ops, a.output, |o: &Vec<_>| operations_text(o));
    }
    let releases = run::history(&plan, &ports)
        .await
        .map(|h| commands::window::newest_first(h, |e| e.started_at, since, a.limit));
    answer(releases, a.output, |h: &Vec<_>| history_text(h))
}

/// One line per operation, oldest first: when, what, who, on which release, how it left it.
pub fn operations_text(ops: &[crate::engine::oplog::OpEntry]) -> String {
    if ops.is_empty() {
        return "no operations recorded yet\n".into();
    }
    let mut out = String::new();
    for o in ops {
        out.push_str(&format!(
            "{}  {:<14} {:<20} {:<32} {:<11} exit {}  {}\n",
            o.at.format("%Y-%m-%d %H:%M:%SZ"),
            o.kind.word(),
            o.by,
            o.release.as_deref().unwrap_or("-"),
            o.outcome.map_or("-".to_string(), |x| x.to_string()),
            o.exit_code,
            o.message
        ));
    }
    out
}

/// Print a ledger answer as text or JSON; a ledger that cannot be read exits 1.
fn answer<T: serde::Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
    output: OutputFormat,
    text: fn(&T) -> String,
) -> CmdResult {
    match result {
        Ok(v) => {
            match output {
                OutputFormat::Json => print_json(&v)?,
                OutputFormat::Text => print!("{}", text(&v)),
            }
            Ok(())
        }
        Err(e) => Err(CliError::unexpected(format!("cannot read the ledger: {e}"))),
    }
}

/// Follow the release in progress read-only (from the ledger); exits with its exit code
/// once it ends, or 0 when there is none.
pub async fn watch(g: &Global, a: &WatchArgs) -> CmdResult {
    let plan = load_plan(&a.plan)?;
    let view = View::pick(a.non_interactive, a.output, a.quiet);
    let (ports, plan) = connect(g, &plan).await?;
    let say = |message: &str| match view {
        View::Printed(OutputFormat::Json, _) => eprintln!("glidepath: {message}"),
        _ => println!("{message}"),
    };
    if view == View::Cockpit && !a.wait {
        // Not worth opening the cockpit for nothing.
        match watch::current(ports.state.as_ref()).await {
            Ok(Err(nothing)) => {
                say(&nothing);
                return Ok(());
            }
            Ok(Ok(_)) => {}
            Err(e) => return Err(CliError::unexpected(format!("cannot read the ledger: {e}"))),
        }
    }
    let mut req = WatchRequest::new(endpoint(g, &plan));
    req.wait = a.wait;
    let (tx, rx) = unbounded_channel();
    let (ctx, crx) = unbounded_channel();
    let cockpit = CockpitContext {
        plan: plan.clone(),
        release_id: String::new(),
        version: String::new(),
        endpoint: req.endpoint.clone(),
        region: plan.region.clone(),
        watch_only: true,
        account: cockpit_account(view, g, &plan).await,
    };
    let engine = watch::watch(&plan, &ports, req, tx, crx);
    let (watched, failed) = with_view(view, cockpit, rx, ctx, engine).await;
    if failed.is_some() {
        return ended(watched.exit_code, &watched.message, failed);
    }
    if watched.outcome.is_none() {
        say(&watched.message);
    }
    commands::from_code(watched.exit_code)
}

pub async fn unlock(g: &Global, a: &UnlockArgs) -> CmdResult {
    let (ports, plan) = open(g, &a.plan).await?;
    match run::unlock(&plan, &ports, a.force, &holder_name(&a.holder)).await {
        Ok(r) => {
            println!("{}", r.message);
            if r.lock.is_some() && !r.broken {
                // The message (who holds it, how to break it) is the answer.
                Err(CliError::reported(crate::exit::USAGE))
            } else {
                Ok(())
            }
        }
        Err(e) => Err(CliError::unexpected(e)),
    }
}

/// How a release is driven once its plan is loaded: shared by `release` and `rehearse`.
#[derive(Debug, Clone)]
pub struct Drive {
    pub version: String,
    pub non_interactive: bool,
    /// `--quiet`: scripted mode, only warnings, failures and the final line.
    pub quiet: bool,
    pub output: OutputFormat,
    pub auto_approve: bool,
    /// Typed confirmation for production plans (scripted mode).
    pub confirm: Option<String>,
    /// A copy of every event, for callers that report on the release afterwards
    /// (rehearse's drill report). The view still gets every event.
    pub tap: Option<UnboundedSender<Envelope>>,
    /// `--holder` (default `user@host`).
    pub holder: Option<String>,
}

/// Build the ports for `plan` (endpoint from `g` or the plan), pick the view (cockpit on
/// a terminal, lines/JSON otherwise), run the engine; returns the exit code.
pub async fn drive(g: &Global, plan: &crate::plan::Plan, d: Drive) -> CmdResult {
    let view = View::pick(d.non_interactive, d.output, d.quiet);
    confirm_production(plan, &d.confirm, view == View::Cockpit)?;
    let (ports, plan) = connect(g, plan).await?;
    let req = ReleaseRequest {
        version: d.version.clone(),
        auto_approve: d.auto_approve,
        holder: holder_name(&d.holder),
        endpoint: endpoint(g, &plan),
    };
    let (tx, rx) = unbounded_channel();
    let (ctx, crx) = unbounded_channel();
    let cockpit = CockpitContext {
        plan: plan.clone(),
        release_id: crate::engine::ids::release_id(&d.version, chrono::Utc::now()),
        version: d.version.clone(),
        endpoint: req.endpoint.clone(),
        region: plan.region.clone(),
        watch_only: false,
        account: cockpit_account(view, g, &plan).await,
    };
    let rx = match d.tap {
        Some(tap) => tee(rx, tap),
        None => rx,
    };
    let engine = run::release(&plan, &ports, req, tx, crx);
    let (finished, failed) = with_view(view, cockpit, rx, ctx, engine).await;
    ended(finished.exit_code, &finished.message, failed)
}

/// Copy every event to `tap` on its way to the view.
fn tee(
    mut rx: UnboundedReceiver<Envelope>,
    tap: UnboundedSender<Envelope>,
) -> UnboundedReceiver<Envelope> {
    let (out, view_rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            let _ = tap.send(e.clone());
            // A view that is gone must not stop the drain: the engine never waits on it.
            let _ = out.send(e);
        }
    });
    view_rx
}

/// Which face shows the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Cockpit,
    /// Lines or JSON Lines; `true`: only what `--quiet` keeps.
    Printed(OutputFormat, bool),
}

impl View {
    /// The cockpit only on a terminal (both ends) and when not asked for scripted output.
    fn pick(non_interactive: bool, output: OutputFormat, quiet: bool) -> View {
        let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if non_interactive || quiet || output == OutputFormat::Json || !terminal {
            View::Printed(output, quiet)
        } else {
            View::Cockpit
        }
    }
}

/// Run `engine` with its view; returns what the engine returned and, when the cockpit
/// failed, why. Printed views turn Ctrl-C into Abort (traffic stays, lock kept, `resume`
/// continues); the cockpit handles keys and signals itself.
async fn with_view<T>(
    view: View,
    cockpit: CockpitContext,
    rx: UnboundedReceiver<Envelope>,
    commands: UnboundedSender<Command>,
    engine: impl std::future::Future<Output = T>,
) -> (T, Option<std::io::Error>) {
    match view {
        View::Cockpit => {
            let abort = commands.clone();
            let shown = async move {
                let shown = crate::view::cockpit(rx, commands, cockpit).await;
                if shown.is_err() {
                    // Nobody sees the release any more: stop it where it is, as `q` does,
                    // rather than let it go on unseen in the foreground.
                    let _ = abort.send(Command::Abort);
                }
                shown
            };
            let (finished, shown) = tokio::join!(engine, shown);
            (finished, shown.err())
        }
        View::Printed(format, quiet) => {
            let abort = tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!(
                        "glidepath: interrupted; stopping where we are (nothing is rolled back)"
                    );
                    let _ = commands.send(Command::Abort);
                }
            });
            let (finished, ()) = tokio::join!(
                engine,
                crate::view::print_events_with(rx, format.into(), quiet)
            );
            abort.abort();
            (finished, None)
        }
    }
}

/// The command's result once its view is done. The view has shown the ending
/// (`release_finished`), so only the code is left, unless the cockpit failed: then nobody
/// saw the ending, and the error says both. A release that still exited 0 gets 1 (the
/// command did not do what it was asked: show it).
fn ended(exit_code: i32, message: &str, failed: Option<std::io::Error>) -> CmdResult {
    match failed {
        None => commands::from_code(exit_code),
        Some(e) => Err(CliError::new(
            if exit_code == crate::exit::OK {
                crate::exit::UNEXPECTED
            } else {
                exit_code
            },
            format!("the cockpit failed ({e}); {message}"),
        )),
    }
}

/// Load the plan at `path` and connect its ports (the read-only commands' first step).
async fn open(g: &Global, path: &std::path::Path) -> Result<(Ports, Plan), CliError> {
    connect(g, &load_plan(path)?).await
}

pub(crate) fn load_plan(path: &std::path::Path) -> Result<Plan, CliError> {
    crate::plan::load(path).map_err(CliError::usage)
}

/// Production plans need the environment name typed (terminal) or `--confirm <env>`.
pub(crate) fn confirm_production(
    plan: &Plan,
    confirm: &Option<String>,
    terminal: bool,
) -> Result<(), CliError> {
    if !plan.production {
        return Ok(());
    }
    if let Some(c) = confirm {
        if c == &plan.environment {
            return Ok(());
        }
        return Err(CliError::usage(format!(
            "--confirm {c:?} does not match the plan's environment {:?}; nothing was changed",
            plan.environment
        )));
    }
    if !terminal {
        return Err(CliError::usage(format!(
            "{} is a production plan; pass --confirm {} to go ahead in scripted mode",
            plan.source.display(),
            plan.environment
        )));
    }
    eprint!(
        "PRODUCTION: {} / {}. Type the environment name to continue: ",
        plan.app, plan.environment
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_ok() && line.trim() == plan.environment {
        return Ok(());
    }
    Err(CliError::usage("not confirmed; nothing was changed"))
}

/// `glidepath approve`: record an approval of a manual gate of the release in progress in
/// its ledger record; the releasing process picks it up within one poll.
pub async fn approve(g: &Global, a: &ApproveArgs) -> CmdResult {
    let (ports, plan) = open(g, &a.plan).await?;
    let st = run::status(&plan, &ports)
        .await
        .map_err(|e| CliError::unexpected(format!("cannot read the ledger: {e}")))?;
    let Some(r) = st.current else {
        return Err(CliError::usage(
            "no release is in progress; nothing to approve",
        ));
    };
    let waiting = r.shift.waiting_since.is_some().then_some(r.shift.step + 1);
    let next_manual = plan
        .steps
        .iter()
        .enumerate()
        .skip(r.shift.step)
        .find(|(_, s)| s.gate == GateMode::Manual)
        .map(|(i, _)| i + 1);
    let step = match (a.step, waiting) {
        (Some(n), _) => n,
        (None, Some(n)) => n,
        (None, None) => {
            return Err(CliError::usage(format!(
                "release {} has no manual gate waiting now{}",
                r.id,
                next_manual.map_or(String::new(), |n| format!(
                    "; `--step {n}` approves step {n} ahead of time"
                ))
            )));
        }
    };
    let Some(s) = plan.steps.get(step.wrapping_sub(1)) else {
        return Err(CliError::usage(format!(
            "the plan has steps 1 to {}; there is no step {step}",
            plan.steps.len()
        )));
    };
    if s.gate != GateMode::Manual {
        return Err(CliError::usage(format!(
            "step {step} ({}%) has no manual gate; nothing to approve",
            s.weight
        )));
    }
    if step <= r.shift.step {
        return Err(CliError::usage(format!(
            "step {step} of release {} has already passed",
            r.id
        )));
    }
    let who = holder_name(&a.holder);
    match crate::engine::ledger::record_approval(ports.state.as_ref(), &r.id, step, &who).await {
        Ok(rec) => {
            let by = rec.approval(step).map_or(who.clone(), |a| a.by.clone());
            println!(
                "step {step} ({} {}%) of release {} approved by {by}; the releasing glidepath continues within one poll",
                r.target.name(),
                s.weight,
                r.id
            );
            Ok(())
        }
        Err(e) => Err(CliError::unexpected(format!(
            "cannot record the approval: {e}"
        ))),
    }
}

pub(crate) fn endpoint(g: &Global, plan: &Plan) -> Option<String> {
    g.endpoint_url.clone().or_else(|| plan.endpoint_url.clone())
}

/// `user@host` for the lock and the ledger.
pub fn holder() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", crate::engine::lock::this_host())
}

/// `--holder NAME` (or `GLIDEPATH_HOLDER`) when given and not blank, else `user@host`.
pub fn holder_name(given: &Option<String>) -> String {
    given
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map_or_else(holder, str::to_string)
}

/// SDK configuration and every port for `plan`.
pub(crate) async fn connect(g: &Global, plan: &Plan) -> Result<(Ports, Plan), CliError> {
    // Production plans refuse emulator endpoints (and vice versa), before any call.
    crate::plan::check_endpoint(plan, endpoint(g, plan).as_deref()).map_err(CliError::usage)?;
    let config = sdk_config_for(g, plan).await;
    ports_for(&config, plan).await.map_err(|e| {
        if !e.is_transient() {
            return CliError::usage(e);
        }
        match endpoint(g, plan) {
            // The usual cause on this machine: no stage was started, or it was stopped.
            Some(url) if crate::rehearse::is_loopback_endpoint(&url) => {
                CliError::unexpected(format_args!(
                    "{e}; nothing answers at {url}: start the stage with `glidepath stage up`"
                ))
            }
            _ => CliError::unexpected(e),
        }
    })
}

pub(crate) async fn sdk_config_for(g: &Global, plan: &Plan) -> SdkConfig {
    let region = g.region.clone().unwrap_or_else(|| plan.region.clone());
    match endpoint(g, plan) {
        // An emulator on this machine takes dummy credentials; real AWS uses the chain.
        Some(url) if crate::rehearse::is_loopback_endpoint(&url) => {
            crate::rehearse::emulator_sdk_config(&url, &region).await
        }
        url => {
            crate::aws::client::sdk_config(&crate::aws::client::Target {
                region,
                endpoint_url: url,
                profile: g.profile.clone(),
            })
            .await
        }
    }
}

/// The AWS account the cockpit's header shows, only when the cockpit is the view (it
/// costs one STS call; a failure just leaves the header without it).
async fn cockpit_account(view: View, g: &Global, plan: &Plan) -> Option<String> {
    if view != View::Cockpit {
        return None;
    }
    crate::aws::client::account_id(&sdk_config_for(g, plan).await).await
}

/// Every port over AWS for `plan`, including the asset publisher when the plan has
/// `[assets]`. The returned plan names target groups by ARN (as resolved), which is what
/// the fleet's target health reads need.
pub async fn ports_for(config: &SdkConfig, plan: &Plan) -> Result<(Ports, Plan), AwsError> {
    let (mut ports, resolved) = crate::aws::build(config, plan).await?;
    let mut plan = plan.clone();
    plan.blue.target_group = resolved.blue_target_group_arn.clone();
    plan.green.target_group = resolved.green_target_group_arn.clone();
    if let Some(cfg) = &plan.assets {
        let s3 = crate::aws::client::s3(config);
        ports.assets = Some(Box::new(
            S3Assets::new(s3, cfg.clone()).with_name(plan.app.clone()),
        ));
    }
    Ok((ports, plan))
}

fn print_json<T: serde::Serialize>(v: &T) -> CmdResult {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::unexpected(format!("cannot format the answer as JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

fn slot_text(s: &Option<crate::engine::ledger::Slot>) -> String {
    s.as_ref().map_or("(none recorded)".into(), |s| {
        format!(
            "{}{} on {}{}{}",
            s.version,
            s.image
                .as_deref()
                .map(|i| format!(" ({})", crate::engine::live_image::unknown_because(i)))
                .unwrap_or_default(),
            s.colour.name(),
            s.release
                .as_ref()
                .map(|r| format!(" (release {r})"))
                .unwrap_or_default(),
            s.unusable
                .as_ref()
                .map(|why| format!(" — UNUSABLE for a rollback: {why}"))
                .unwrap_or_default()
        )
    })
}

fn outcome_text(o: Option<Outcome>) -> &'static str {
    o.map_or("in progress", Outcome::word)
}

pub fn status_text(st: &Status) -> String {
    let mut out = format!("{} / {}\n", st.app, st.environment);
    out.push_str(&format!("live:     {}\n", slot_text(&st.live)));
    out.push_str(&format!("standby:  {}\n", slot_text(&st.standby)));
    match &st.lock {
        Some(l) => out.push_str(&format!("lock:     {}\n", l.summary)),
        None => out.push_str("lock:     free\n"),
    }
    match &st.current {
        Some(r) => {
            let phase = r
                .next_phase()
                .map_or("finishing".to_string(), |p| p.to_string());
            out.push_str(&format!(
                "release:  {} ({} → {}), in {phase}; {} step(s) passed; started {} by {}\n",
                r.id,
                r.live.name(),
                r.target.name(),
                r.shift.step,
                r.started_at.format("%Y-%m-%d %H:%M:%SZ"),
                r.holder
            ));
        }
        None => out.push_str("release:  none in progress\n"),
    }
    if let Some(last) = &st.last {
        out.push_str(&format!(
            "last:     {} {}{} ({})\n",
            last.id,
            outcome_text(last.outcome),
            rolled_back_text(last),
            last.message.as_deref().unwrap_or("")
        ));
    }
    if let Some(c) = &st.contract {
        out.push_str(&format!("contract: {c}\n"));
    }
    out
}

/// " at 2026-11-03 02:20:00Z by alice@ops-1" for a rolled-back release that recorded it.
fn rolled_back_text(e: &IndexEntry) -> String {
    let at = e
        .rolled_back_at
        .map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M:%SZ")))
        .unwrap_or_default();
    let by = e
        .rolled_back_by
        .as_deref()
        .map(|b| format!(" by {b}"))
        .unwrap_or_default();
    format!("{at}{by}")
}

pub fn history_text(h: &[IndexEntry]) -> String {
    if h.is_empty() {
        return "no releases recorded yet\n".into();
    }
    let mut out = String::new();
    for e in h {
        out.push_str(&format!(
            "{:<32} {:<12} {:>5} → {:<5}  {:<11} {}  {}{}{}\n",
            e.id,
            e.version,
            e.live.name(),
            e.target.name(),
            outcome_text(e.outcome),
            e.started_at.format("%Y-%m-%d %H:%M:%SZ"),
            e.holder,
            // Spelled out only when recorded: older records did not have it.
            match rolled_back_text(e) {
                t if t.is_empty() => String::new(),
                t => format!("  rolled back{t}"),
            },
            e.contracted_at
                .map(|t| format!("  contracted at {}", t.format("%Y-%m-%d %H:%M:%SZ")))
                .unwrap_or_default()
        ));
    }
    out
}
