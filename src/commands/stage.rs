//! `glidepath stage up|seed|down|status`: the local rehearsal stage in the background.
//!
//! `up` starts a detached stage and records it as `<port>.pid` (plus `<port>.log`) under
//! `$XDG_STATE_HOME/glidepath/stage/` (else `~/.cache/glidepath/stage/`); `down` and
//! `status` read those files. `seed` creates a plan's world on any loopback endpoint.

use crate::cli::Global;
use crate::commands::OutputFormat;
use crate::commands::{CliError, CmdResult};
use crate::rehearse::seed::{self, SeedReport};
use crate::rehearse::stage::{self as st, Engine, StageOptions};
use crate::rehearse::{emulator_sdk_config, is_loopback_endpoint};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `println!` that ignores a closed stdout (`glidepath stage up | head -1` must not panic
/// after the stage is already running).
macro_rules! say {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The port `up` and `down` use when none is given (the usual emulator port).
pub const DEFAULT_PORT: u16 = 4566;

#[derive(Debug, clap::Subcommand)]
pub enum StageCmd {
    /// Start the stage in the background and wait until it is ready.
    Up {
        /// Scenario name (see localstack/scenarios) or a scenario file.
        #[arg(long, default_value = "happy")]
        scenario: String,
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
        /// Which emulator plays the stage (localstack: LocalStack with the glidepath plugin,
        /// from the venv scripts/setup-localstack makes).
        #[arg(long, value_enum, default_value_t = Engine::Stage)]
        engine: Engine,
    },
    /// Create the plan's world (VPC, cluster, services, load balancer, DB, buckets) on the endpoint.
    Seed {
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Stop the stage started by `stage up` (every one of them without --port).
    Down {
        #[arg(long)]
        port: Option<u16>,
    },
    /// List the stages started by `stage up` and whether they still run.
    Status,
}

pub async fn run(g: &Global, c: &StageCmd) -> CmdResult {
    match c {
        StageCmd::Up {
            scenario,
            port,
            engine,
        } => up(scenario, *port, *engine).await,
        StageCmd::Seed { plan, output } => seed_cmd(g, plan, *output).await,
        StageCmd::Down { port } => down(*port).await,
        StageCmd::Status => status().await,
    }
}

/// Where `stage up` keeps its pid and log files.
pub fn state_dir() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("glidepath/stage"),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".cache/glidepath/stage"),
    }
}

fn pid_file(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("{port}.pid"))
}

fn log_file(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("{port}.log"))
}

/// What a pid file says about its stage.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Recorded {
    /// No pid file.
    None,
    /// The pid file names a live stage process.
    Running(u32),
    /// The pid file is unreadable, or its process is gone or is no longer the stage.
    Stale,
}

fn recorded(path: &Path) -> Recorded {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Recorded::None;
    };
    match text.trim().parse::<u32>() {
        Ok(pid) if st::process_alive(pid) && st::is_stage_process(pid) => Recorded::Running(pid),
        _ => Recorded::Stale,
    }
}

/// Ports with a pid file in `dir`, ascending.
fn recorded_ports(dir: &Path) -> Vec<u16> {
    let mut ports: Vec<u16> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".pid")?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    ports.sort_unstable();
    ports
}

fn endpoint_for(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn fail(msg: impl std::fmt::Display, code: i32) -> CmdResult {
    Err(CliError::new(code, msg))
}

/// The scenario a running stage plays, from its control endpoint.
async fn running_scenario(port: u16) -> Option<String> {
    let state = st::control_at(port, "GET", "state", None).await.ok()?;
    state["scenario"]["name"].as_str().map(str::to_string)
}

/// The scenario name a `--scenario` argument selects (a file's stem for a path).
fn scenario_name(arg: &str) -> String {
    let p = Path::new(arg);
    if arg.ends_with(".toml") || arg.contains('/') {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| arg.to_string())
    } else {
        arg.to_string()
    }
}

async fn up(scenario: &str, port: u16, engine: Engine) -> CmdResult {
    let dir = state_dir();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return fail(
            format_args!(
                "cannot create the stage state folder {}: {e}",
                dir.display()
            ),
            crate::exit::UNEXPECTED,
        );
    }
    if port != 0 {
        let pid_path = pid_file(&dir, port);
        match recorded(&pid_path) {
            Recorded::Running(pid) => return already_running(port, pid, scenario, engine).await,
            Recorded::Stale => {
                let _ = std::fs::remove_file(&pid_path);
            }
            Recorded::None => {}
        }
    }

    // The port (hence the log's final name) is known only once the stage is ready.
    let starting_log = dir.join(format!("starting-{}.log", std::process::id()));
    let opts = StageOptions {
        scenario: scenario.to_string(),
        port,
        tick: None,
        engine,
    };
    let stage = match st::start_detached(opts, &starting_log).await {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&starting_log);
            let code = e.exit_code();
            return fail(e, code);
        }
    };
    let log = log_file(&dir, stage.port);
    // Renaming an open file is fine: the stage keeps writing to it under the new name.
    let log = match std::fs::rename(&starting_log, &log) {
        Ok(()) => log,
        Err(_) => starting_log,
    };
    let pid_path = pid_file(&dir, stage.port);
    if let Err(e) = write_atomically(&pid_path, &format!("{}\n", stage.pid)) {
        // Without a pid file `stage down` could not find it: do not leave it running.
        let _ = st::stop_detached(stage.pid).await;
        return fail(
            format_args!(
                "cannot write {}: {e}; stopped the stage again",
                pid_path.display()
            ),
            crate::exit::UNEXPECTED,
        );
    }
    let p = stage.port;
    say!(
        "stage ready on {} in {:.1} s (scenario {}, engine {}, pid {})",
        stage.endpoint,
        stage.startup.as_secs_f64(),
        scenario_name(scenario),
        engine.name(),
        stage.pid
    );
    say!("log: {}", log.display());
    say!();
    say!(
        "Use it (any credentials work; the stage is account {}, us-east-1):",
        engine.account()
    );
    say!("  export AWS_ENDPOINT_URL={}", stage.endpoint);
    say!("  glidepath stage seed examples/rehearsal.toml");
    say!("  glidepath release examples/rehearsal.toml --version v2");
    say!("Stop it: glidepath stage down --port {p}");
    Ok(())
}

async fn already_running(port: u16, pid: u32, wanted: &str, engine: Engine) -> CmdResult {
    let endpoint = endpoint_for(port);
    if let Some(other) = st::engine_of(pid).filter(|e| *e != engine) {
        return fail(
            format_args!(
                "a stage is already running on port {port} (pid {pid}) on engine {}, not {}; stop it first: glidepath stage down --port {port}",
                other.name(),
                engine.name()
            ),
            crate::exit::USAGE,
        );
    }
    let running = running_scenario(port).await;
    let wanted = scenario_name(wanted);
    match running {
        Some(name) if name != wanted => fail(
            format_args!(
                "a stage is already running on port {port} (pid {pid}) with scenario {name}, not {wanted}; stop it first: glidepath stage down --port {port}"
            ),
            crate::exit::USAGE,
        ),
        _ => {
            say!("a stage is already running on {endpoint} (pid {pid}); nothing to do");
            say!("  export AWS_ENDPOINT_URL={endpoint}");
            say!("Stop it: glidepath stage down --port {port}");
            Ok(())
        }
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

async fn down(port: Option<u16>) -> CmdResult {
    let dir = state_dir();
    let ports = match port {
        Some(p) => vec![p],
        None => recorded_ports(&dir),
    };
    if ports.is_empty() {
        say!("no stage is running (none was started with `glidepath stage up`)");
        return Ok(());
    }
    // Every recorded stage is tried; earlier failures are told as they happen.
    let mut result: CmdResult = Ok(());
    for p in ports {
        let pid_path = pid_file(&dir, p);
        match recorded(&pid_path) {
            Recorded::None => say!("no stage is running on port {p}"),
            Recorded::Stale => {
                let _ = std::fs::remove_file(&pid_path);
                say!("no stage is running on port {p} (removed a stale pid file)");
            }
            Recorded::Running(pid) => {
                let started = Instant::now();
                match st::stop_detached(pid).await {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&pid_path);
                        say!(
                            "stopped the stage on port {p} (pid {pid}) in {:.1} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    Err(e) => {
                        if let Err(earlier) = result {
                            earlier.report();
                        }
                        result = fail(e, crate::exit::UNEXPECTED);
                    }
                }
            }
        }
    }
    result
}

async fn status() -> CmdResult {
    let dir = state_dir();
    let ports = recorded_ports(&dir);
    if ports.is_empty() {
        say!("no stage is running (none was started with `glidepath stage up`)");
        return Ok(());
    }
    for p in ports {
        match recorded(&pid_file(&dir, p)) {
            Recorded::Running(pid) => {
                let scenario = running_scenario(p)
                    .await
                    .unwrap_or_else(|| "not answering".into());
                let engine = st::engine_of(pid).unwrap_or_default();
                say!(
                    "{}  pid {pid}  engine {}  scenario {scenario}  log {}",
                    endpoint_for(p),
                    engine.name(),
                    log_file(&dir, p).display()
                );
            }
            Recorded::Stale | Recorded::None => {
                say!("{}  not running (stale pid file)", endpoint_for(p))
            }
        }
    }
    Ok(())
}

/// Where to seed: `--endpoint-url` / `AWS_ENDPOINT_URL`, else the plan's `endpoint_url`;
/// only ever loopback (the stage or LocalStack on this machine).
pub fn seed_endpoint(cli: Option<&str>, plan: Option<&str>) -> Result<String, String> {
    let endpoint = cli.filter(|e| !e.is_empty()).or(plan).ok_or_else(|| {
        "no endpoint to seed: pass --endpoint-url, export AWS_ENDPOINT_URL (`glidepath stage up` prints it) or set endpoint_url in the plan".to_string()
    })?;
    if !is_loopback_endpoint(endpoint) {
        return Err(format!(
            "refusing to seed {endpoint}: seeding only talks to an emulator on this machine (http://127.0.0.1:PORT)"
        ));
    }
    Ok(endpoint.to_string())
}

async fn seed_cmd(g: &Global, path: &Path, output: OutputFormat) -> CmdResult {
    let plan = match crate::plan::load(path) {
        Ok(p) => p,
        Err(e) => return fail(e, crate::exit::USAGE),
    };
    let endpoint = match seed_endpoint(g.endpoint_url.as_deref(), plan.endpoint_url.as_deref()) {
        Ok(e) => e,
        Err(msg) => return fail(msg, crate::exit::USAGE),
    };
    let region = g.region.clone().unwrap_or_else(|| plan.region.clone());
    let config = emulator_sdk_config(&endpoint, &region).await;
    let started = Instant::now();
    match seed::seed(&config, &plan).await {
        Ok(report) => {
            match output {
                OutputFormat::Json => match serde_json::to_string(&report) {
                    Ok(json) => say!("{json}"),
                    Err(e) => return fail(e, crate::exit::UNEXPECTED),
                },
                OutputFormat::Text => say!(
                    "{}",
                    seed_summary(&plan.app, &endpoint, &report, started.elapsed()).trim_end()
                ),
            }
            Ok(())
        }
        Err(e @ (seed::SeedError::Production { .. } | seed::SeedError::NotLoopback { .. })) => {
            fail(e, crate::exit::USAGE)
        }
        Err(e @ seed::SeedError::Plan { .. }) => fail(e, crate::exit::USAGE),
        Err(e) => fail(e, crate::exit::UNEXPECTED),
    }
}

/// What seeding did, for people: a headline, then what was created and what was found.
pub fn seed_summary(app: &str, endpoint: &str, r: &SeedReport, took: Duration) -> String {
    let mut out = format!(
        "seeded {app} on {endpoint} in {:.1} s: {} created, {} already there\n",
        took.as_secs_f64(),
        r.created.len(),
        r.existing.len()
    );
    for c in &r.created {
        out.push_str(&format!("  created  {c}\n"));
    }
    for e in &r.existing {
        out.push_str(&format!("  found    {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_endpoint_prefers_the_flag_and_refuses_remote_ones() {
        assert_eq!(
            seed_endpoint(Some("http://127.0.0.1:1"), Some("http://127.0.0.1:2")).unwrap(),
            "http://127.0.0.1:1"
        );
        assert_eq!(
            seed_endpoint(None, Some("http://localhost:2")).unwrap(),
            "http://localhost:2"
        );
        assert_eq!(
            seed_endpoint(Some(""), Some("http://localhost:2")).unwrap(),
            "http://localhost:2"
        );
        let none = seed_endpoint(None, None).unwrap_err();
        assert!(none.contains("AWS_ENDPOINT_URL"), "{none}");
        let remote = seed_endpoint(Some("https://ecs.us-east-1.amazonaws.com"), None).unwrap_err();
        assert!(remote.starts_with("refusing to seed"), "{remote}");
    }

    #[test]
    fn scenario_names_come_from_files_stems() {
        assert_eq!(scenario_name("happy"), "happy");
        assert_eq!(scenario_name("drills/slow-db.toml"), "slow-db");
        assert_eq!(scenario_name("my.toml"), "my");
    }

    #[test]
    fn pid_files_are_found_by_port_and_stale_ones_recognised() {
        let dir = tempfile::tempdir().unwrap();
        assert!(recorded_ports(dir.path()).is_empty());
        std::fs::write(pid_file(dir.path(), 4566), "not a pid\n").unwrap();
        std::fs::write(pid_file(dir.path(), 4567), "999999999\n").unwrap();
        std::fs::write(dir.path().join("4566.log"), "").unwrap();
        std::fs::write(dir.path().join("notes.pid.tmp"), "").unwrap();
        assert_eq!(recorded_ports(dir.path()), [4566, 4567]);
        assert_eq!(recorded(&pid_file(dir.path(), 4566)), Recorded::Stale);
        assert_eq!(recorded(&pid_file(dir.path(), 4567)), Recorded::Stale);
        assert_eq!(recorded(&pid_file(dir.path(), 4568)), Recorded::None);
        // Our own pid is alive but is not a stage: never treated as one.
        std::fs::write(pid_file(dir.path(), 4569), std::process::id().to_string()).unwrap();
        assert_eq!(recorded(&pid_file(dir.path(), 4569)), Recorded::Stale);
    }

    #[test]
    fn seed_summary_lists_created_and_found() {
        let r = SeedReport {
            created: vec!["vpc shop-vpc".into()],
            existing: vec!["cluster shop".into()],
            ..SeedReport::default()
        };
        let text = seed_summary(
            "shop",
            "http://127.0.0.1:4566",
            &r,
            Duration::from_millis(420),
        );
        assert_eq!(
            text,
            "seeded shop on http://127.0.0.1:4566 in 0.4 s: 1 created, 1 already there\n  created  vpc shop-vpc\n  found    cluster shop\n"
        );
    }
}
