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
#![allow(dead_code)] // each test binary uses a different part of the harness

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
        }),
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
            min_requests: 20,
            error_rate_floor: 0.02,
            error_rate_margin: 0.01,
            latency_factor: 1.5,
            latency_stat: LatencyStat::P95,
            alarms: vec!["shop-green-5xx".into()],
            on_fail: OnGateFail::Rollback,
            statistical: false,
            confidence: 0.95,
        },
        smoke: None,
        rollback: RollbackConfig {
            green: glidepath::plan::GreenAfterRollback::ScaleToZero,
        },
    }
}
