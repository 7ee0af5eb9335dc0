//! `glidepath rehearse`: stage up, seed, release, report, stage down; or, with
//! `--endpoint URL --no-stage`, only the release, against a world someone else runs
//! (their own LocalStack), after checking it has what the plan needs.
//!
//! The stage is an owned child: dropping it (on any error, panic or early return) kills it,
//! so a rehearsal never leaves an emulator running; with `--no-stage` nothing is started,
//! seeded or stopped. Narration goes to stderr so that stdout
//! stays the event stream (`--output json`); the closing report goes to stdout in text mode.

use crate::cli::Global;
use crate::commands::release::{self, Drive};
use crate::commands::{self, CliError, CmdResult, OutputFormat};
use crate::plan::Plan;
use crate::rehearse::emulator_sdk_config;
use crate::rehearse::seed;
use crate::rehearse::stage::{Engine, Stage, StageOptions};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The plan `glidepath rehearse` uses when none is given.
pub const DEFAULT_PLAN: &str = "examples/rehearsal.toml";

#[derive(Debug, Clone, clap::Args)]
pub struct RehearseArgs {
    /// The plan to rehearse (default: examples/rehearsal.toml).
    pub plan: Option<PathBuf>,
    /// Scenario name (see localstack/scenarios) or a scenario file.
    #[arg(long, default_value = "happy")]
    pub scenario: String,
    /// Version label for the rehearsal release.
    #[arg(long, default_value = "rehearsal")]
    pub version: String,
    /// Print events instead of opening the cockpit.
    #[arg(long)]
    pub non_interactive: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Approve manual gates automatically.
    #[arg(long)]
    pub auto_approve: bool,
    /// Stage port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Which emulator plays the stage (localstack: LocalStack with the glidepath plugin,
    /// from the venv scripts/setup-localstack makes).
    #[arg(long, value_enum, default_value_t = Engine::Stage)]
    pub engine: Engine,
    /// With --no-stage: the emulator to rehearse against (your own LocalStack, a stage
    /// `glidepath stage up` started), e.g. http://127.0.0.1:4566.
    #[arg(long, value_name = "URL", requires = "no_stage")]
    pub endpoint: Option<String>,
    /// Start, seed and stop nothing: release into what --endpoint already has (checked
    /// first; exit 2 naming what is missing).
    #[arg(long, requires = "endpoint", conflicts_with_all = ["engine", "port", "scenario"])]
    pub no_stage: bool,
}

impl Default for RehearseArgs {
    fn default() -> Self {
        RehearseArgs {
            plan: None,
            scenario: "happy".into(),
            version: "rehearsal".into(),
            non_interactive: true,
            output: OutputFormat::Text,
            auto_approve: true,
            port: 0,
            engine: Engine::Stage,
            endpoint: None,
            no_stage: false,
        }
    }
}

/// How a rehearsal went (for tests and the closing report).
#[derive(Debug, Clone)]
pub struct Rehearsal {
    /// The release's exit code (or the stage's / seeding's when they failed first).
    pub exit_code: i32,
    /// The stage's process id (gone once the rehearsal returns).
    pub stage_pid: Option<u32>,
    /// The stage's own view (`GET /_stage/state`) right after the release.
    pub stage_state: Option<Value>,
    /// The closing report as printed.
    pub report: String,
    /// What went wrong, for the edge to print once (None when the report and the
    /// release's own events told the story).
    pub error: Option<CliError>,
}

pub async fn run(g: &Global, a: &RehearseArgs) -> CmdResult {
    let path = a
        .plan
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PLAN));
    let plan = crate::plan::load(&path).map_err(CliError::usage)?;
    let done = rehearse(g, plan, a).await;
    if !done.report.is_empty() {
        if a.output == OutputFormat::Json {
            eprint!("{}", done.report);
        } else {
            // A closed stdout (a pipe to `head`) must not turn the release's code into a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), done.report.as_bytes());
        }
    }
    match done.error {
        Some(e) => Err(e),
        None => commands::from_code(done.exit_code),
    }
}

/// Rehearse `plan` on a fresh stage: start it with the scenario, seed the plan's world,
/// drive the release against it, report, stop it. Errors are returned, not printed.
pub async fn rehearse(g: &Global, mut plan: Plan, a: &RehearseArgs) -> Rehearsal {
    let failed = |code: i32, msg: &dyn std::fmt::Display| Rehearsal {
        exit_code: code,
        stage_pid: None,
        stage_state: None,
        report: String::new(),
        error: Some(CliError::new(code, msg)),
    };
    if plan.production {
        return failed(
            crate::exit::USAGE,
            &format_args!(
                "refusing to rehearse {}: it is a production plan (environment {}); rehearse a copy with `production = false` and the same shape",
                plan.source.display(),
                plan.environment
            ),
        );
    }

    if a.no_stage {
        return match &a.endpoint {
            Some(endpoint) => on_endpoint(g, plan, a, endpoint).await,
            None => failed(
                crate::exit::USAGE,
                &"--no-stage needs --endpoint URL: the emulator to rehearse against",
            ),
        };
    }

    let stage = match Stage::start(StageOptions {
        scenario: a.scenario.clone(),
        port: a.port,
        tick: None,
        engine: a.engine,
    })
    .await
    {
        Ok(s) => s,
        Err(e) => return failed(e.exit_code(), &e),
    };
    let endpoint = stage.endpoint();
    eprintln!(
        "rehearsal: stage ready on {endpoint} in {:.1} s (scenario {}, engine {})",
        stage.startup_time().as_secs_f64(),
        a.scenario,
        a.engine.name()
    );

    let region = g.region.clone().unwrap_or_else(|| plan.region.clone());
    let config = emulator_sdk_config(&endpoint, &region).await;
    let seeding = Instant::now();
    let seeded = match seed::seed(&config, &plan).await {
        Ok(r) => r,
        Err(e) => {
            let code = match e {
                seed::SeedError::Plan { .. } => crate::exit::USAGE,
                _ => crate::exit::UNEXPECTED,
            };
            let mut done = failed(code, &e);
            done.stage_pid = Some(stage.pid());
            return done; // dropping `stage` kills it
        }
    };
    let seed_time = seeding.elapsed();
    eprintln!(
        "rehearsal: seeded {} in {:.1} s ({} resources)",
        plan.app,
        seed_time.as_secs_f64(),
        seeded.created.len() + seeded.existing.len()
    );

    // The stage's endpoint wins over the plan's and the caller's: a rehearsal must never
    // reach anything but the stage it just started.
    let released = release_on(g, &mut plan, a, &endpoint).await;

    let state = stage.control_get("state").await.ok();
    let pid = stage.pid();
    let startup = stage.startup_time();
    if let Err(e) = stage.stop().await {
        eprintln!("glidepath: warning: {e}");
    }
    let report = released.report(&Summary {
        app: &plan.app,
        scenario: &a.scenario,
        exit_code: released.code,
        release_time: released.took,
        setup: Setup::Stage { startup, seed_time },
        state: state.as_ref(),
    });
    Rehearsal {
        exit_code: released.code,
        stage_pid: Some(pid),
        stage_state: state,
        report,
        error: released.error,
    }
}

/// `--endpoint URL --no-stage`: check the world at `endpoint` has what the plan needs, then
/// release into it. Nothing is started, seeded or stopped.
async fn on_endpoint(g: &Global, mut plan: Plan, a: &RehearseArgs, endpoint: &str) -> Rehearsal {
    let failed = |code: i32, msg: &dyn std::fmt::Display| Rehearsal {
        exit_code: code,
        stage_pid: None,
        stage_state: None,
        report: String::new(),
        error: Some(CliError::new(code, msg)),
    };
    // A rehearsal changes what it releases into: never let a typo point it at AWS itself.
    if crate::plan::emulator_reason(endpoint).is_none() {
        return failed(
            crate::exit::USAGE,
            &format_args!(
                "--endpoint {endpoint} does not look like an emulator (this machine, a `localstack` \
                 host, *.localstack.cloud or port 4566); a rehearsal only releases into an emulator"
            ),
        );
    }
    plan.endpoint_url = Some(endpoint.to_string());
    let on = Global {
        endpoint_url: Some(endpoint.to_string()),
        ..g.clone()
    };
    let config = release::sdk_config_for(&on, &plan).await;
    let checking = Instant::now();
    match crate::aws::expect::missing(&config, &plan).await {
        Ok(missing) if missing.is_empty() => {}
        Ok(missing) => {
            return failed(
                crate::exit::USAGE,
                &missing_message(&plan, endpoint, &missing),
            )
        }
        Err(e) => {
            let hint = if e.is_transient() {
                "; is the emulator running there?"
            } else {
                ""
            };
            return failed(
                crate::exit::UNEXPECTED,
                &format_args!(
                    "cannot check what {endpoint} has for {}: {e}{hint}",
                    plan.app
                ),
            );
        }
    }
    eprintln!(
        "rehearsal: {endpoint} has what {} needs (checked in {:.1} s); nothing started or seeded",
        plan.source.display(),
        checking.elapsed().as_secs_f64()
    );

    let released = release_on(g, &mut plan, a, endpoint).await;
    // One of our engines answers for the report; any other emulator has no such view.
    let state = match crate::rehearse::stage::port_of(endpoint) {
        Some(port) if crate::rehearse::is_loopback_endpoint(endpoint) => {
            crate::rehearse::stage::control_at(port, "GET", "state", None)
                .await
                .ok()
        }
        _ => None,
    };
    let scenario = state
        .as_ref()
        .and_then(|s| s["scenario"]["name"].as_str())
        .unwrap_or("of the endpoint")
        .to_string();
    let report = released.report(&Summary {
        app: &plan.app,
        scenario: &scenario,
        exit_code: released.code,
        release_time: released.took,
        setup: Setup::Endpoint(endpoint),
        state: state.as_ref(),
    });
    Rehearsal {
        exit_code: released.code,
        stage_pid: None,
        stage_state: state,
        report,
        error: released.error,
    }
}

/// The exit-2 message of `--no-stage`: each missing thing with how to create it.
pub fn missing_message(
    plan: &Plan,
    endpoint: &str,
    missing: &[crate::aws::expect::Missing],
) -> String {
    let mut out = format!(
        "{endpoint} lacks what {} needs; nothing was released:",
        plan.source.display()
    );
    for m in missing {
        let _ = write!(out, "\n  - {}: create it with `{}`", m.what, m.create);
    }
    let _ = write!(
        out,
        "\n  = hint: an emulator on this machine can get the whole world at once: \
         `glidepath stage seed {} --endpoint-url {endpoint}`",
        plan.source.display()
    );
    out
}

/// How the release part of a rehearsal went.
struct Released {
    code: i32,
    error: Option<CliError>,
    took: Duration,
    events: Vec<crate::engine::event::Envelope>,
}

impl Released {
    fn report(&self, s: &Summary<'_>) -> String {
        let mut text = report(s);
        // A drill is about the gates: say which one caught what, and how fast.
        if self.code == crate::exit::ROLLED_BACK && !self.events.is_empty() {
            text.push_str(&crate::drill::drill_report(&self.events));
        }
        text
    }
}

/// Drive the release against `endpoint` only: it wins over the plan's and the caller's.
async fn release_on(g: &Global, plan: &mut Plan, a: &RehearseArgs, endpoint: &str) -> Released {
    plan.endpoint_url = Some(endpoint.to_string());
    let on = Global {
        endpoint_url: Some(endpoint.to_string()),
        ..g.clone()
    };
    let (tap, mut tapped) = tokio::sync::mpsc::unbounded_channel();
    let drive = Drive {
        version: a.version.clone(),
        non_interactive: a.non_interactive,
        quiet: false,
        output: a.output,
        auto_approve: a.auto_approve,
        confirm: None,
        tap: Some(tap),
        holder: None,
    };
    let releasing = Instant::now();
    let error = release::drive(&on, plan, drive).await.err();
    let code = error.as_ref().map_or(crate::exit::OK, |e| e.code);
    let took = releasing.elapsed();
    let mut events = Vec::new();
    while let Ok(e) = tapped.try_recv() {
        events.push(e);
    }
    Released {
        code,
        error,
        took,
        events,
    }
}

/// What the closing report is made of.
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a> {
    pub app: &'a str,
    pub scenario: &'a str,
    pub exit_code: i32,
    pub release_time: Duration,
    pub setup: Setup<'a>,
    pub state: Option<&'a Value>,
}

/// What the rehearsal set up before releasing.
#[derive(Debug, Clone, Copy)]
pub enum Setup<'a> {
    /// It started and seeded a stage.
    Stage {
        startup: Duration,
        seed_time: Duration,
    },
    /// `--no-stage`: it released into this endpoint's world as it was.
    Endpoint(&'a str),
}

/// The outcome an exit code stands for (crate::exit).
pub fn outcome(code: i32) -> &'static str {
    match code {
        crate::exit::OK => "finalized",
        crate::exit::ROLLED_BACK => "rolled back by a gate",
        crate::exit::LOCKED => "lock held by someone else",
        crate::exit::MIGRATION_FAILED => "migration failed, no traffic moved",
        crate::exit::LIVE_BROKEN => "the migration broke the live version, nothing deployed",
        crate::exit::USAGE => "refused (usage or plan error)",
        _ => "failed",
    }
}

/// The closing report: the outcome, then what the stage itself saw (listener weights,
/// migration tasks, faults, AWS requests), independent of the release's own account.
pub fn report(s: &Summary<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rehearsal of {} (scenario {}): {} (exit {}); release took {:.1} s",
        s.app,
        s.scenario,
        outcome(s.exit_code),
        s.exit_code,
        s.release_time.as_secs_f64()
    );
    let _ = match s.setup {
        Setup::Stage { startup, seed_time } => writeln!(
            out,
            "  stage: ready in {:.1} s, seeded in {:.1} s",
            startup.as_secs_f64(),
            seed_time.as_secs_f64()
        ),
        Setup::Endpoint(url) => writeln!(
            out,
            "  endpoint: {url} (nothing started, seeded or stopped by this rehearsal)"
        ),
    };
    let Some(state) = s.state else {
        let _ = writeln!(out, "  (the stage did not answer; its view is unknown)");
        return out;
    };
    for line in stage_view(state) {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// The stage's view as report lines, from `GET /_stage/state`.
pub fn stage_view(state: &Value) -> Vec<String> {
    let mut lines = Vec::new();

    // Listener weights per load balancer, blue before green.
    if let Some(groups) = state["target_groups"].as_object() {
        let mut by_lb: std::collections::BTreeMap<&str, Vec<(&str, &str, i64)>> =
            Default::default();
        for (name, tg) in groups {
            let lb = tg["load_balancer"].as_str().unwrap_or("?");
            let colour = tg["colour"].as_str().unwrap_or("");
            let weight = tg["weight"].as_i64().unwrap_or(0);
            by_lb.entry(lb).or_default().push((colour, name, weight));
        }
        for (lb, mut tgs) in by_lb {
            tgs.sort_by_key(|(colour, name, _)| (colour_rank(colour), *name));
            let weights: Vec<String> = tgs.iter().map(|(_, n, w)| format!("{n} {w}")).collect();
            lines.push(format!("listener {lb} now: {}", weights.join(", ")));
        }
    }

    let tasks = state["migration_tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let exits: Vec<String> = tasks
        .iter()
        .map(|t| match (&t["exit_code"], t["last_status"].as_str()) {
            (Value::Number(n), _) => format!("exit {n}"),
            (_, Some(status)) => status.to_lowercase(),
            _ => "unknown".into(),
        })
        .collect();
    lines.push(match tasks.len() {
        0 => "migration tasks: none".into(),
        n => format!("migration tasks: {n} ({})", exits.join(", ")),
    });

    let faults = state["faults"].as_array().cloned().unwrap_or_default();
    for f in &faults {
        let what = format!(
            "{} on {}",
            f["kind"].as_str().unwrap_or("fault"),
            f["colour"].as_str().unwrap_or("the stage")
        );
        let line = match f["active_since_s"].as_f64() {
            Some(t) => format!("fault {what}: active from +{t:.1} s (stage clock)"),
            None => format!("fault {what}: never triggered"),
        };
        lines.push(line);
    }

    if let Some(requests) = state["requests"].as_object() {
        let total: u64 = requests.values().filter_map(Value::as_u64).sum();
        lines.push(format!("AWS requests served by the stage: {total}"));
    }
    lines
}

fn colour_rank(colour: &str) -> u8 {
    match colour {
        "blue" => 0,
        "green" => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> Value {
        json!({
            "scenario": {"name": "green-5xx"},
            "target_groups": {
                "shop-green": {"colour": "green", "load_balancer": "shop", "weight": 0},
                "shop-blue": {"colour": "blue", "load_balancer": "shop", "weight": 100}
            },
            "migration_tasks": [{"task_arn": "t", "last_status": "STOPPED", "exit_code": 0}],
            "faults": [
                {"kind": "5xx", "colour": "green", "active": false, "active_since_s": 8.04},
                {"kind": "alarm", "active": false, "active_since_s": null}
            ],
            "requests": {"ecs:DescribeServices": 3, "s3:PutObject": 5}
        })
    }

    #[test]
    fn stage_view_lists_weights_tasks_faults_and_requests() {
        assert_eq!(
            stage_view(&state()),
            [
                "listener shop now: shop-blue 100, shop-green 0",
                "migration tasks: 1 (exit 0)",
                "fault 5xx on green: active from +8.0 s (stage clock)",
                "fault alarm on the stage: never triggered",
                "AWS requests served by the stage: 8",
            ]
        );
    }

    #[test]
    fn report_names_the_outcome_and_survives_a_silent_stage() {
        let st = state();
        let mut s = Summary {
            app: "shop",
            scenario: "green-5xx",
            exit_code: crate::exit::ROLLED_BACK,
            release_time: Duration::from_millis(41_230),
            setup: Setup::Stage {
                startup: Duration::from_millis(1_900),
                seed_time: Duration::from_millis(520),
            },
            state: Some(&st),
        };
        let text = report(&s);
        assert!(
            text.starts_with("rehearsal of shop (scenario green-5xx): rolled back by a gate (exit 3); release took 41.2 s\n  stage: ready in 1.9 s, seeded in 0.5 s\n  listener shop now:"),
            "{text}"
        );
        s.state = None;
        s.exit_code = 0;
        let text = report(&s);
        assert!(text.contains("finalized (exit 0)"), "{text}");
        assert!(text.contains("did not answer"), "{text}");
    }

    #[test]
    fn outcomes_follow_the_exit_codes() {
        assert_eq!(outcome(0), "finalized");
        assert_eq!(outcome(5), "migration failed, no traffic moved");
        assert_eq!(outcome(4), "lock held by someone else");
        assert_eq!(outcome(42), "failed");
    }
}
