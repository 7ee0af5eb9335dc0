//! Shared harness for integration tests: the rehearsal stage (and, below, LocalStack) on
//! loopback, with SDK configuration that points the real aws-sdk clients at it.
//!
//! ```ignore
//! mod common;
//! let stage = common::start_stage("happy").await;          // killed when dropped
//! let config = common::sdk_config(&stage).await;           // us-east-1, test/test, endpoint
//! let ecs = aws_sdk_ecs::Client::new(&config);
//! let s3 = glidepath::aws::client::s3(&config);             // path-style for emulators
//! stage.control_post("fault", &json!({"kind": "5xx"})).await?;
//! ```

use aws_types::SdkConfig;
use glidepath::rehearse::stage::{Stage, StageOptions};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

/// Stagehand tick for tests: faster than the default 0.5 s so waits stay short.
pub const TEST_TICK: f64 = 0.2;

/// The glidepath checkout (tests run with the package root as the current dir, but be explicit).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `scripts/<name>` once per test process (it is idempotent and fast when up to date),
/// holding a file lock so parallel test processes do not install into one venv at once.
fn run_setup_script(once: &'static Once, name: &str) {
    once.call_once(|| {
        let cache = home().join(".cache/glidepath");
        std::fs::create_dir_all(&cache).expect("create ~/.cache/glidepath");
        let lock = std::fs::File::create(cache.join(format!(".{name}.lock"))).expect("lock file");
        // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
        let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(locked, 0, "flock for scripts/{name}");
        let out = Command::new(repo_root().join("scripts").join(name))
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/{name}: {e}"));
        assert!(
            out.status.success(),
            "scripts/{name} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        drop(lock);
    });
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
}

/// Make sure the stage venv exists and matches localstack/stage/requirements.txt.
pub fn ensure_stage_venv() {
    static ONCE: Once = Once::new();
    run_setup_script(&ONCE, "setup-stage");
}

/// Start the stage with a scenario name or file, on a free port, with the test tick.
pub async fn start_stage(scenario: &str) -> Stage {
    start_stage_with(StageOptions {
        scenario: scenario.into(),
        port: 0,
        tick: Some(TEST_TICK),
        ..StageOptions::default()
    })
    .await
}

pub async fn start_stage_with(opts: StageOptions) -> Stage {
    ensure_stage_venv();
    match Stage::start(opts.clone()).await {
        Ok(stage) => stage,
        Err(e) => panic!("stage {opts:?} did not start: {e}"),
    }
}

/// SDK configuration for the stage: region us-east-1, static credentials test/test, the
/// stage's endpoint. Use `glidepath::aws::client::s3(&config)` for S3 (path-style).
pub async fn sdk_config(stage: &Stage) -> SdkConfig {
    glidepath::rehearse::emulator_sdk_config(&stage.endpoint(), "us-east-1").await
}

/// Poll `check` until it returns `Some`, every 100 ms, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a process with this id still exists (zombies count as gone).
pub fn process_gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    match stat {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
            .unwrap_or(false),
    }
}

/// A scratch file path inside a fresh temp dir (kept alive by the returned guard).
pub fn temp_file(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write temp file");
    (dir, path)
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// --- seeded stage ------------------------------------------------------------------------

use glidepath::plan::{
    AssetLayout, AssetsConfig, Colour, DatabaseConfig, DatabaseKind, DeployConfig, GateConfig,
    GateMode, LatencyStat, MigrationConfig, OnGateFail, Plan, RollbackConfig, StateConfig, Step,
    TrafficConfig,
};
use glidepath::rehearse::seed::SeedReport;

/// A stage seeded with a plan's world, plus the SDK configuration pointing at it.
pub struct Seeded {
    pub stage: Stage,
    pub config: SdkConfig,
    pub plan: Plan,
    pub report: SeedReport,
}

/// Start the stage with `scenario` and seed `plan`'s world into it.
pub async fn seeded_stage(scenario: &str, plan: Plan) -> Seeded {
    let stage = start_stage(scenario).await;
    let config = sdk_config(&stage).await;
    let report = match glidepath::rehearse::seed::seed(&config, &plan).await {
        Ok(r) => r,
        Err(e) => panic!(
            "seeding {}: {e}\nstage stderr:\n{}",
            plan.app,
            stage.stderr_text()
        ),
    };
    Seeded {
        stage,
        config,
        plan,
        report,
    }
}

/// The rehearsal plan for the `shop` app, built in code (the same world as
/// examples/rehearsal.toml): cluster `shop`, services/target groups `shop-blue`/`shop-green`,
/// listener `shop:80`, DB instance `shop-db`, alarm `shop-green-5xx`.
pub fn rehearsal_plan() -> Plan {
    let s = Duration::from_secs;
    Plan {
        source: PathBuf::from("examples/rehearsal.toml"),
        digest: "0".repeat(64),
        app: "shop".into(),
        environment: "rehearsal".into(),
        production: false,
        region: "us-east-1".into(),
        endpoint_url: None,
        state: StateConfig {
            bucket: "shop-glidepath-state".into(),
            prefix: "glidepath/shop/rehearsal".into(),
            lease: s(300),
        },
        cluster: "shop".into(),
        blue: Colour {
            service: "shop-blue".into(),
            target_group: "shop-blue".into(),
        },
        green: Colour {
            service: "shop-green".into(),
            target_group: "shop-green".into(),
        },
        traffic: TrafficConfig {
            listener: "shop:80".into(),
            rule_arn: None,
            test_listener: None,
            test_url: None,
        },
        database: DatabaseConfig {
            kind: DatabaseKind::Instance,
            id: "shop-db".into(),
            snapshot_timeout: s(120),
            keep_snapshots: None,
        },
        deploy: DeployConfig {
            container: "web".into(),
            image: "registry.example.com/shop:{version}".into(),
            timeout: s(120),
        },
        migration: Some(MigrationConfig {
            container: "web".into(),
            command: vec!["bin/migrate".into()],
            timeout: s(120),
            subnets: vec![],
            security_groups: vec![],
            assign_public_ip: false,
            // The default: three metric periods.
            watch: s(3),
            shards: vec![],
        }),
        contract: None,
        read_only: None,
        assets: Some(AssetsConfig {
            dir: PathBuf::from("assets"),
            bucket: "shop-assets".into(),
            prefix: "static".into(),
            layout: AssetLayout::Versioned,
            retention: 3,
            cache_control: "public, max-age=31536000, immutable".into(),
            entry_cache_control: "no-cache".into(),
            include: vec![],
            exclude: vec![],
        }),
        steps: [10u8, 50, 100]
            .into_iter()
            .map(|weight| Step {
                weight,
                bake: s(2),
                gate: GateMode::Auto,
            })
            .collect(),
        gates: GateConfig {
            poll_interval: s(1),
            max_blind: s(10),
            approval_timeout: Duration::from_secs(3600),
            min_requests: 20,
            error_rate_floor: 0.02,
            error_rate_margin: 0.01,
            latency_factor: 1.5,
            latency_stat: LatencyStat::P95,
            alarms: vec!["shop-green-5xx".into()],
            on_fail: OnGateFail::Rollback,
            statistical: false,
            confidence: 0.95,
            // As examples/rehearsal.toml: per-second periods, and a rehearsal goes on.
            sequential: glidepath::plan::SequentialConfig {
                max_wait: s(240),
                on_no_data: glidepath::plan::OnNoData::Proceed,
                ..glidepath::plan::SequentialConfig::default()
            },
            metric_period: s(1),
            metric_delay: s(1),
            weight_settle: s(1),
        },
        smoke: None,
        rollback: RollbackConfig {
            green: glidepath::plan::GreenAfterRollback::ScaleToZero,
        },
        companions: Vec::new(),
        companions_move: glidepath::plan::CompanionsMove::AfterFirstGate,
        notify: None,
    }
}

// --- LocalStack runtime on the host --------------------------------------------------------

/// The real LocalStack runtime (community, from PyPI via scripts/setup-localstack) on a free
/// loopback port, serving S3, STS and Logs. Killed (its whole process group) when dropped.
pub struct LocalStack {
    child: std::process::Child,
    port: u16,
    startup: Duration,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LocalStack {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Spawn-to-"Ready." time.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Everything LocalStack printed so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        // It takes ~7 s to shut down on SIGTERM; its state lives in the temp dir, so kill.
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group we created for it.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The LocalStack venv: `$GLIDEPATH_LOCALSTACK_VENV`, else `~/.cache/glidepath/localstack-venv`.
pub fn localstack_venv() -> PathBuf {
    match std::env::var_os("GLIDEPATH_LOCALSTACK_VENV").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => home().join(".cache/glidepath/localstack-venv"),
    }
}

/// Make sure the LocalStack venv exists and matches localstack/requirements-localstack.txt.
pub fn ensure_localstack_venv() {
    static ONCE: Once = Once::new();
    run_setup_script(&ONCE, "setup-localstack");
}

/// How long LocalStack may take to print "Ready." (about 2 s here; generous for CI).
const LOCALSTACK_READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Start LocalStack (`python -m localstack.runtime.main`) on a free port with its files in a
/// temp dir, and wait until it is ready. Retries on a port race with another process.
pub async fn start_localstack() -> LocalStack {
    ensure_localstack_venv();
    let mut last_log = String::new();
    for _ in 0..3 {
        match try_start_localstack().await {
            Ok(ls) => return ls,
            Err(log) if log.contains("Address already in use") => last_log = log,
            Err(log) => panic!("LocalStack did not start:\n{log}"),
        }
    }
    panic!("LocalStack found its port taken three times:\n{last_log}");
}

async fn try_start_localstack() -> Result<LocalStack, String> {
    use std::os::unix::process::CommandExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("localstack.log");
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let python = localstack_venv().join("bin/python");
    let started = Instant::now();
    let child = Command::new(&python)
        .args(["-m", "localstack.runtime.main"])
        .current_dir(dir.path())
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("SERVICES", "s3,sts,logs")
        // Host mode with its files under the temp dir (it would think it is in a container
        // wherever /.dockerenv exists, and write to /var/lib/localstack).
        .env("OVERRIDE_IN_DOCKER", "0")
        .env("FILESYSTEM_ROOT", dir.path().join("fs"))
        .env("TMPDIR", dir.path())
        // Stay off the network: no certificate download, no analytics events.
        .env("SKIP_SSL_CERT_DOWNLOAD", "1")
        .env("DISABLE_EVENTS", "1")
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let mut ls = LocalStack {
        child,
        port,
        startup: Duration::ZERO,
        log,
        _dir: dir,
    };
    loop {
        let text = ls.log_text();
        if text.lines().any(|l| l.trim() == "Ready.") {
            ls.startup = started.elapsed();
            return Ok(ls);
        }
        if let Ok(Some(status)) = ls.child.try_wait() {
            return Err(format!("exited with {status}:\n{text}"));
        }
        if started.elapsed() > LOCALSTACK_READY_TIMEOUT {
            return Err(format!(
                "not ready after {}s:\n{text}",
                LOCALSTACK_READY_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SDK configuration for LocalStack (us-east-1, dummy credentials, its endpoint).
pub async fn localstack_sdk_config(ls: &LocalStack) -> SdkConfig {
    glidepath::rehearse::emulator_sdk_config(&ls.endpoint(), "us-east-1").await
}

// --- engine tests on fakes ---------------------------------------------------------------

/// The rehearsal plan with engine-test timings (paused clock): 30 s bakes, 5 s polls,
/// 20 s of blindness before a step pauses.
pub fn engine_plan() -> Plan {
    let mut p = rehearsal_plan();
    for s in &mut p.steps {
        s.bake = Duration::from_secs(30);
    }
    p.gates.poll_interval = Duration::from_secs(5);
    p.gates.max_blind = Duration::from_secs(20);
    // Scripted health polls are written for the shift; the live watch around the migration
    // would consume them. Its own engine tests (engine_live) turn it on.
    if let Some(m) = p.migration.as_mut() {
        m.watch = Duration::ZERO;
    }
    p
}

/// A release request by a fixed operator, with manual gates left to the test.
pub fn release_request(version: &str) -> glidepath::engine::run::ReleaseRequest {
    glidepath::engine::run::ReleaseRequest {
        version: version.into(),
        auto_approve: false,
        holder: "alice@ops-1".into(),
        endpoint: None,
    }
}

/// Everything an in-memory engine run told, in order (the channel is closed or drained).
pub fn drain(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<glidepath::engine::event::Envelope>,
) -> Vec<glidepath::engine::event::Event> {
    let mut out = vec![];
    while let Ok(e) = rx.try_recv() {
        out.push(e.event);
    }
    out
}

/// Release version 1.4.0 on the in-memory world, with an operator who never speaks.
pub async fn fake_release(
    world: &glidepath::engine::fake::FakeWorld,
    plan: &Plan,
) -> (
    glidepath::engine::run::Finished,
    Vec<glidepath::engine::event::Event>,
) {
    let ports = world.ports(true);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (_ctx, crx) = tokio::sync::mpsc::unbounded_channel();
    let f = glidepath::engine::run::release(plan, &ports, release_request("1.4.0"), tx, crx).await;
    (f, drain(rx))
}

/// Resume on the in-memory world as another operator (bob@ops-2).
pub async fn fake_resume(
    world: &glidepath::engine::fake::FakeWorld,
    plan: &Plan,
) -> (
    glidepath::engine::run::Finished,
    Vec<glidepath::engine::event::Event>,
) {
    let ports = world.ports(true);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (_ctx, crx) = tokio::sync::mpsc::unbounded_channel();
    let req = glidepath::engine::run::ResumeRequest {
        auto_approve: false,
        holder: "bob@ops-2".into(),
        endpoint: None,
    };
    let f = glidepath::engine::run::resume(plan, &ports, req, tx, crx).await;
    (f, drain(rx))
}

/// The ledger record of release `id` in the in-memory world.
pub fn fake_record(
    world: &glidepath::engine::fake::FakeWorld,
    id: &str,
) -> glidepath::engine::ledger::Record {
    world.with(|w| {
        let (b, _) = w
            .objects
            .get(&glidepath::engine::ledger::record_key(id))
            .expect("record");
        serde_json::from_slice(b).unwrap()
    })
}

/// Every event a release told, as the scripted lines view prints them.
pub fn story(events: &[glidepath::engine::event::Envelope]) -> String {
    events
        .iter()
        .map(glidepath::view::lines::format)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What is waiting in the channel now, without waiting for more.
pub fn pending(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<glidepath::engine::event::Envelope>,
) -> Vec<glidepath::engine::event::Envelope> {
    let mut events = vec![];
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    events
}

/// Release `version` on the in-memory world with an operator: `react` sees each event and
/// may answer with a command. Returns how it ended and every event, in order.
pub async fn release_with_operator(
    world: &glidepath::engine::fake::FakeWorld,
    plan: &Plan,
    version: &str,
    mut react: impl FnMut(&glidepath::engine::event::Event) -> Option<glidepath::engine::event::Command>,
) -> (
    glidepath::engine::run::Finished,
    Vec<glidepath::engine::event::Event>,
) {
    let ports = world.ports(true);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (ctx, crx) = tokio::sync::mpsc::unbounded_channel();
    let engine = glidepath::engine::run::release(plan, &ports, release_request(version), tx, crx);
    let operator = async move {
        let mut seen = vec![];
        while let Some(env) = rx.recv().await {
            let env: glidepath::engine::event::Envelope = env;
            if let Some(c) = react(&env.event) {
                let _ = ctx.send(c);
            }
            seen.push(env.event);
        }
        seen
    };
    tokio::join!(engine, operator)
}
