//! The release plan: what a release of one app/environment does, in order.
//!
//! `Plan` is the *resolved* form every other module reads: durations parsed, defaults
//! applied, semantic checks passed. Parsing and validation (with file:line:col
//! diagnostics) live here: `raw.rs` is the TOML schema, `validate.rs` the semantic checks
//! and defaults, `diag.rs` the rendering; nothing else reads raw TOML.

mod companions;
mod diag;
pub mod duration;
mod endpoint;
mod names;
mod raw;
mod validate;

pub use endpoint::{check_endpoint, emulator_reason};
pub use validate::defaults;

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A resolved, validated release plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    /// Where the plan was read from (for messages only).
    pub source: PathBuf,
    /// SHA-256 of the plan file's bytes, recorded in the ledger so a resume can tell
    /// whether the plan changed under it.
    pub digest: String,
    pub app: String,
    pub environment: String,
    /// Production plans need typed confirmation and refuse emulator endpoints.
    pub production: bool,
    pub region: String,
    /// Endpoint override written in the plan (rehearsal plans point at the stage).
    pub endpoint_url: Option<String>,
    pub state: StateConfig,
    pub cluster: String,
    pub blue: Colour,
    pub green: Colour,
    pub traffic: TrafficConfig,
    pub database: DatabaseConfig,
    pub deploy: DeployConfig,
    pub migration: Option<MigrationConfig>,
    /// The contract migration (`glidepath contract`), never run inside a release.
    pub contract: Option<ContractConfig>,
    /// A read-only window around the migration task (`engine::read_only`).
    pub read_only: Option<ReadOnlyConfig>,
    pub assets: Option<AssetsConfig>,
    pub steps: Vec<Step>,
    pub gates: GateConfig,
    pub smoke: Option<SmokeConfig>,
    pub rollback: RollbackConfig,
    /// Services beside the blue/green pair that take the release's image (no traffic of
    /// their own), in dependency order: each comes after everything it depends on.
    pub companions: Vec<Companion>,
    /// When the companions move (`deploy.companions_move`).
    pub companions_move: CompanionsMove,
    /// `[notify]`: notifications sent in the background (`crate::notify`).
    pub notify: Option<NotifyConfig>,
}

/// A service that runs beside the web pair (a worker, a scheduler): not behind the load
/// balancer, updated in place by an ECS rolling deployment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Companion {
    /// What the plan, the ledger and the views call it.
    pub name: String,
    /// The ECS service in the plan's cluster.
    pub service: String,
    /// The container whose image changes.
    pub container: String,
    /// Image template with `{version}` (the plan's `deploy.image` unless it has its own).
    pub image: String,
    pub depends_on: Vec<String>,
}

/// When the companions take the new version.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CompanionsMove {
    /// Once green is deployed, before any user traffic reaches it.
    BeforeShift,
    /// Once the first shift step's gate passed (green served real traffic), before the
    /// next step.
    AfterFirstGate,
    /// After the last step, before the release is recorded as finalized.
    AtFinalize,
}

/// Where the lock, the ledger and the release index live.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StateConfig {
    pub bucket: String,
    pub prefix: String,
    /// Lock lease; renewed while a release runs, breakable by others once expired.
    #[serde(with = "secs")]
    pub lease: Duration,
}

/// One colour: an ECS service and the target group its tasks register in.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Colour {
    pub service: String,
    /// Target group name or ARN (names are resolved to ARNs at run time).
    pub target_group: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrafficConfig {
    /// The listener whose forward weights are stepped: an ARN, or `<load-balancer-name>:<port>`.
    pub listener: String,
    /// Optional listener rule ARN; when set, the rule's forward weights are stepped instead.
    pub rule_arn: Option<String>,
    /// Optional test listener (ARN or `<lb>:<port>`) that forwards only to the idle colour.
    pub test_listener: Option<String>,
    /// Base URL of the test listener handed to the smoke command as GREEN_URL.
    pub test_url: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseKind {
    /// An RDS DB instance (`CreateDBSnapshot`).
    Instance,
    /// An Aurora DB cluster (`CreateDBClusterSnapshot`).
    Cluster,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatabaseConfig {
    pub kind: DatabaseKind,
    pub id: String,
    #[serde(with = "secs")]
    pub snapshot_timeout: Duration,
    /// `keep_snapshots`: after a release finalizes, glidepath-tagged snapshots of this
    /// database beyond the newest N are deleted (never the live or standby release's
    /// restore point). None: snapshots are kept until someone deletes them.
    pub keep_snapshots: Option<u32>,
}

/// How the new version reaches ECS: a new revision of the live task definition with the
/// app container's image replaced.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeployConfig {
    /// The container whose image changes.
    pub container: String,
    /// Image reference with `{version}` replaced by the release version.
    pub image: String,
    /// How long green may take to become COMPLETED and healthy.
    #[serde(with = "secs")]
    pub timeout: Duration,
}

impl DeployConfig {
    /// The version `image` was made from by this plan's `image` template, if it was (the
    /// inverse of replacing `{version}`; every placeholder must stand for the same text).
    pub fn version_of(&self, image: &str) -> Option<String> {
        let prefix = self.image.split("{version}").next()?;
        let rest = image.strip_prefix(prefix)?;
        (1..=rest.len())
            .filter(|&end| rest.is_char_boundary(end))
            .map(|end| &rest[..end])
            .find(|v| self.image.replace("{version}", v) == image)
            .map(str::to_string)
    }
}

/// The one-off migration task (runs the *new* task definition with a command override).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MigrationConfig {
    pub container: String,
    pub command: Vec<String>,
    #[serde(with = "secs")]
    pub timeout: Duration,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    /// How long the live colour is watched after the migration (0: not watched).
    #[serde(with = "secs")]
    pub watch: Duration,
    /// `migration.shards`: the task runs once per shard, one at a time, in this order,
    /// with `SHARD=<name>` in its environment (empty: one task, no `SHARD`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<String>,
}

/// `[contract]`: a migration that drops what the previous version needed. It runs only by
/// `glidepath contract`, once the latest release is finalized and has been live `after`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContractConfig {
    /// The task, as for the migration (`watch` is not used).
    pub task: MigrationConfig,
    #[serde(with = "secs")]
    pub after: Duration,
}

/// What a notification is about (`notify.events`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    ReleaseStarted,
    WaitingForApproval,
    GateFailed,
    RolledBack,
    Finalized,
    Failed,
}

impl NotifyEvent {
    /// Every kind, in the order a release meets them; also the default of `notify.events`.
    pub const ALL: [NotifyEvent; 6] = [
        NotifyEvent::ReleaseStarted,
        NotifyEvent::WaitingForApproval,
        NotifyEvent::GateFailed,
        NotifyEvent::RolledBack,
        NotifyEvent::Finalized,
        NotifyEvent::Failed,
    ];

    /// As written in the plan and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::ReleaseStarted => "release_started",
            NotifyEvent::WaitingForApproval => "waiting_for_approval",
            NotifyEvent::GateFailed => "gate_failed",
            NotifyEvent::RolledBack => "rolled_back",
            NotifyEvent::Finalized => "finalized",
            NotifyEvent::Failed => "failed",
        }
    }
}

/// `[notify]`: an SNS topic and/or a Slack-compatible webhook, told about `events`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NotifyConfig {
    pub sns_topic_arn: Option<String>,
    /// The *name* of the environment variable that holds the webhook URL.
    pub webhook_env: Option<String>,
    pub events: Vec<NotifyEvent>,
    /// How long one delivery attempt may take.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Tries per notification and destination (1: no retry).
    pub attempts: u32,
}

/// `[read_only]`: `enter` runs right before the migration task starts, `exit` once the
/// window closes, whatever ended it; the window may stay open at most `max`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadOnlyConfig {
    pub enter: Vec<String>,
    pub exit: Vec<String>,
    #[serde(with = "secs")]
    pub max: Duration,
    /// How long each of the two commands may run.
    #[serde(with = "secs")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AssetLayout {
    /// Every file at `<prefix>/<version>/<path>`.
    Versioned,
    /// `<prefix>/<dir>/<name>.<hash8>.<ext>`, shared across versions.
    Hashed,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AssetsConfig {
    pub dir: PathBuf,
    pub bucket: String,
    pub prefix: String,
    pub layout: AssetLayout,
    /// Versions kept by prune (the live and standby ones are always kept).
    pub retention: u32,
    /// For content-addressed files.
    pub cache_control: String,
    /// For the manifest and HTML entry points (must stay short-lived).
    pub entry_cache_control: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GateMode {
    /// Pass when the bake time elapsed with every health gate passing.
    Auto,
    /// Additionally wait for an operator's Approve (or `--auto-approve`).
    Manual,
}

/// One traffic step: green gets `weight`% for at least `bake`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    pub weight: u8,
    #[serde(with = "secs")]
    pub bake: Duration,
    pub gate: GateMode,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnGateFail {
    Rollback,
    /// Pause and ask the operator (rollback or resume).
    Pause,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LatencyStat {
    Average,
    P95,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GateConfig {
    #[serde(with = "secs")]
    pub poll_interval: Duration,
    /// A step pauses (and says so) after this long without a successful poll.
    #[serde(with = "secs")]
    pub max_blind: Duration,
    /// How long a manual gate waits for an approval before `on_fail` applies
    /// (`--approval-timeout` overrides it).
    #[serde(with = "secs")]
    pub approval_timeout: Duration,
    /// Green needs this many requests in the window before its rates mean anything.
    pub min_requests: u64,
    /// Absolute 5xx rate (0..1) green must exceed before it can fail.
    pub error_rate_floor: f64,
    /// How far (absolute, 0..1) green's 5xx rate may exceed blue's.
    pub error_rate_margin: f64,
    /// Green fails when its latency exceeds blue's times this factor.
    pub latency_factor: f64,
    pub latency_stat: LatencyStat,
    /// CloudWatch alarm names; any in ALARM fails the gate.
    pub alarms: Vec<String>,
    pub on_fail: OnGateFail,
    /// Statistical comparison of green vs blue (rank test) in addition to thresholds.
    pub statistical: bool,
    /// Confidence for the statistical comparison, e.g. 0.95.
    pub confidence: f64,
    /// CloudWatch period of the ALB metrics (an ALB publishes one datapoint a minute).
    #[serde(with = "secs")]
    pub metric_period: Duration,
    /// How late a period's datapoint may be published; a period counts once it ended this
    /// long ago.
    #[serde(with = "secs")]
    pub metric_delay: Duration,
    /// After a weight change, periods starting before this much has passed are not the new
    /// step's evidence (the listener takes a moment to apply weights).
    #[serde(with = "secs")]
    pub weight_settle: Duration,
    /// The sequential (anytime-valid) gate's settings; see `gate::sequential`.
    pub sequential: SequentialConfig,
}

/// Which judge the bake loop uses.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JudgeMode {
    /// Anytime-valid comparison of the colours with a false-rollback budget (`alpha`).
    Sequential,
    /// The fixed thresholds of `gate::verdict` (re-tested every poll).
    Threshold,
}

/// What a step does when its bake is over but the gate still lacks the data to pass.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnNoData {
    Pause,
    Rollback,
    Proceed,
}

/// Settings of the sequential gate (`[gates]` keys `mode`, `alpha`, `error_tolerance`, …).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SequentialConfig {
    pub mode: JudgeMode,
    /// False-rollback budget of one healthy release, shared by every step and signal.
    pub alpha: f64,
    /// The new colour may have up to this many times the live colour's 5xx rate.
    pub error_tolerance: f64,
    /// … and 5xx rates up to this share (0..1) are never blamed on it.
    pub error_tolerance_abs: f64,
    /// The new colour may be this many times slower (the plan's latency statistic).
    pub latency_tolerance: f64,
    /// Roll back without statistics when the new colour's 5xx rate reaches this …
    pub catastrophic_error_rate: f64,
    /// … over at least this many of its requests.
    pub catastrophic_min_requests: u64,
    /// How long a step may wait past its bake for enough data.
    #[serde(with = "secs")]
    pub max_wait: Duration,
    pub on_no_data: OnNoData,
}

impl Default for SequentialConfig {
    fn default() -> Self {
        use defaults as d;
        SequentialConfig {
            mode: JudgeMode::Sequential,
            alpha: d::ALPHA,
            error_tolerance: d::ERROR_TOLERANCE,
            error_tolerance_abs: d::ERROR_TOLERANCE_ABS,
            latency_tolerance: d::LATENCY_TOLERANCE,
            catastrophic_error_rate: d::CATASTROPHIC_ERROR_RATE,
            catastrophic_min_requests: d::CATASTROPHIC_MIN_REQUESTS,
            max_wait: d::MAX_WAIT,
            on_no_data: OnNoData::Pause,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SmokeConfig {
    pub command: Vec<String>,
    #[serde(with = "secs")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GreenAfterRollback {
    /// Leave green running (fast retry, costs capacity).
    Keep,
    /// Scale green to zero tasks.
    ScaleToZero,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RollbackConfig {
    pub green: GreenAfterRollback,
}

/// Serialize durations as whole seconds (plan show / JSON output).
mod secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Why a plan cannot be used. Rendered for a tired operator: `file:line:col`, the
/// offending text and a suggestion where one helps. Every plan error exits 2.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanError {
    /// The full, human-readable diagnostics (one or more), ready to print.
    pub message: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PlanError {}

/// Read, parse, validate and resolve the plan at `path`.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let bytes = std::fs::read(path).map_err(|e| PlanError {
        message: format!(
            "{}: error: cannot read the plan file: {e}\n  = hint: check the path; examples/rehearsal.toml is a plan to start from",
            path.display()
        ),
    })?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse(text, path),
        Err(e) => {
            let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
            let (line, col) = diag::line_col(&valid, valid.len());
            Err(PlanError {
                message: format!(
                    "{}:{line}:{col}: error: the plan file is not UTF-8 text (byte {})\n  = hint: save it as UTF-8",
                    path.display(),
                    e.valid_up_to()
                ),
            })
        }
    }
}

/// Parse, validate and resolve plan `text`; `path` names it in messages and is the base
/// for relative paths in it (`assets.dir`).
pub fn parse(text: &str, path: &Path) -> Result<Plan, PlanError> {
    use sha2::Digest as _;
    let fail = |diags: &[diag::Diag]| PlanError {
        message: diag::render(path, text, diags),
    };
    if text.trim().is_empty() {
        return Err(fail(&[diag::Diag::nowhere("the plan file is empty").hint(
            "start from examples/rehearsal.toml; docs/plan.md describes every key",
        )]));
    }
    let raw: raw::RawPlan = toml::from_str(text)
        .map_err(|e| fail(&[diag::from_toml(text, &e, raw::TOP_LEVEL_KEYS)]))?;
    let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    validate::resolve(raw, path, digest).map_err(|d| fail(&d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(image: &str) -> DeployConfig {
        DeployConfig {
            container: "web".into(),
            image: image.into(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn version_of_inverts_the_image_template() {
        let d = deploy("registry.example.com/shop:{version}");
        assert_eq!(
            d.version_of("registry.example.com/shop:1.4.0").as_deref(),
            Some("1.4.0")
        );
        assert_eq!(d.version_of("registry.example.com/other:1.4.0"), None);
        assert_eq!(d.version_of("registry.example.com/shop:"), None);
        let d = deploy("r/{version}/app:{version}-slim");
        assert_eq!(d.version_of("r/2/app:2-slim").as_deref(), Some("2"));
        assert_eq!(d.version_of("r/2/app:3-slim"), None);
    }
}
