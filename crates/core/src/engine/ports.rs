//! Ports: the small capabilities the engine needs, named for what it needs rather than
//! for the AWS API. `crate::aws` implements them over aws-sdk-*; `engine::fake`
//! implements them in memory for deterministic engine tests.

use crate::gate::HealthSample;
use async_trait::async_trait;
use std::time::Duration;

/// An error from a port, classified by what the engine should do about it.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PortError {
    /// Throttling, 5xx, timeouts, connection refused: retry with backoff.
    #[error("{operation}: {message} (transient; will retry)")]
    Transient { operation: String, message: String },
    /// The named resource does not exist.
    #[error("{operation}: {resource} not found")]
    NotFound { operation: String, resource: String },
    /// Anything else: permissions, validation, bad configuration.
    #[error("{operation}: {message}")]
    Fatal { operation: String, message: String },
}

impl PortError {
    pub fn is_transient(&self) -> bool {
        matches!(self, PortError::Transient { .. })
    }
}

pub type PortResult<T> = Result<T, PortError>;

/// Opaque version tag of a stored object (the S3 ETag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag(pub String);

/// Outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    Written(ETag),
    /// The precondition failed: someone else wrote first.
    Conflict,
}

/// Small JSON documents with compare-and-swap: the lock, the ledger, the index.
#[async_trait]
pub trait StateStore: Send + Sync {
    async fn get(&self, key: &str) -> PortResult<Option<(Vec<u8>, ETag)>>;
    /// Create only if absent (`If-None-Match: *`).
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> PortResult<Conditional>;
    /// Replace only if unchanged since `etag` was read (`If-Match`).
    async fn put_if_match(&self, key: &str, body: Vec<u8>, etag: &ETag) -> PortResult<Conditional>;
    async fn delete(&self, key: &str) -> PortResult<()>;
    /// Keys under a prefix (for history).
    async fn list(&self, prefix: &str) -> PortResult<Vec<String>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// Being created; percent 0..=100.
    Creating {
        percent: u8,
    },
    Available,
    /// failed, deleted, incompatible-… : anything that will never become available.
    Failed {
        status: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: String,
    pub status: SnapshotStatus,
    /// The `glidepath:release` tag, to tell our snapshot from someone else's.
    pub release_tag: Option<String>,
}

/// A snapshot of the plan's database that a release took (tagged `glidepath:release`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedSnapshot {
    pub id: String,
    /// The release it is the restore point of (its tag).
    pub release: String,
    /// None while it is still being created (it is then the newest).
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A database (instance or cluster, as the plan's) as RDS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbState {
    pub name: String,
    /// `available`, `creating`, `backing-up` …
    pub status: String,
    pub endpoint: Option<String>,
    pub port: Option<i32>,
}

#[async_trait]
pub trait Database: Send + Sync {
    async fn describe_snapshot(&self, snapshot_id: &str) -> PortResult<Option<SnapshotInfo>>;
    /// Start a snapshot tagged `glidepath:release=<release>`.
    async fn create_snapshot(&self, snapshot_id: &str, release: &str) -> PortResult<()>;
    /// Every manual snapshot of the plan's database tagged `glidepath:release` (others,
    /// untagged or of other databases, are never listed, so never deleted).
    async fn tagged_snapshots(&self) -> PortResult<Vec<TaggedSnapshot>>;
    /// Delete a snapshot; one already gone is not an error.
    async fn delete_snapshot(&self, snapshot_id: &str) -> PortResult<()>;
    /// Start restoring `snapshot_id` into a new database `name` (placed like the plan's
    /// database: same subnet group and security groups), tagged with the release. Never
    /// modifies the plan's database.
    async fn restore_snapshot(
        &self,
        snapshot_id: &str,
        name: &str,
        release: &str,
    ) -> PortResult<()>;
    /// The database `name` (of the plan's kind), None when it does not exist.
    async fn describe_db(&self, name: &str) -> PortResult<Option<DbState>>;
}

/// A one-off task to run (the migration).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub task_definition: String,
    pub container: String,
    pub command: Vec<String>,
    /// Deterministic per release: found again on resume.
    pub started_by: String,
    pub client_token: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    /// Extra environment for the container (a sharded migration's `SHARD`).
    pub environment: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub arn: String,
    /// PROVISIONING, PENDING, RUNNING, STOPPED …
    pub last_status: String,
    /// Exit code of the migration container once stopped.
    pub exit_code: Option<i32>,
    pub stopped_reason: Option<String>,
    /// Where its logs are (group, stream), when the task definition says awslogs.
    pub log: Option<(String, String)>,
}

/// A task that has not stopped yet, found by its `startedBy` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveTask {
    pub arn: String,
    pub started_by: String,
    /// PROVISIONING, PENDING, RUNNING, DEPROVISIONING … (never STOPPED).
    pub last_status: String,
    /// When it started (or was created, before it started), if known.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[async_trait]
pub trait Tasks: Send + Sync {
    /// Every task (running or stopped) with this `startedBy`.
    async fn find_started_by(&self, started_by: &str) -> PortResult<Vec<TaskInfo>>;
    /// Every task of the cluster whose `startedBy` starts with `prefix` and that is not
    /// STOPPED (ECS filters `startedBy` only exactly, so this lists and describes).
    async fn active_with_prefix(&self, prefix: &str) -> PortResult<Vec<ActiveTask>>;
    async fn run_once(&self, spec: &TaskSpec) -> PortResult<TaskInfo>;
    async fn describe(&self, task_arn: &str, container: &str) -> PortResult<TaskInfo>;
    /// Log lines after `cursor` (None: from the start); returns lines and the next cursor.
    async fn log_lines(
        &self,
        group: &str,
        stream: &str,
        cursor: Option<String>,
    ) -> PortResult<(Vec<String>, Option<String>)>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub task_definition: String,
    pub desired: i32,
    pub running: i32,
    /// The primary deployment's rolloutState: IN_PROGRESS, COMPLETED, FAILED.
    pub rollout: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetCounts {
    pub healthy: u32,
    pub unhealthy: u32,
    pub other: u32,
}

#[async_trait]
pub trait Fleet: Send + Sync {
    async fn service(&self, service: &str) -> PortResult<ServiceState>;
    /// Register a new revision of `from` with `container`'s image replaced; returns its ARN.
    /// Idempotent: an existing revision with that image is reused.
    async fn task_definition_with_image(
        &self,
        from: &str,
        container: &str,
        image: &str,
    ) -> PortResult<String>;
    /// The image of `container` in `task_definition` (None: no such container). Read only.
    async fn image_of(&self, task_definition: &str, container: &str) -> PortResult<Option<String>>;
    /// Whether `task_definition` exists and is ACTIVE: ECS will not move a service onto a
    /// deregistered (INACTIVE) one. Read only.
    async fn task_definition_active(&self, task_definition: &str) -> PortResult<bool>;
    async fn deploy(&self, service: &str, task_definition: &str, desired: i32) -> PortResult<()>;
    async fn scale(&self, service: &str, desired: i32) -> PortResult<()>;
    /// Move `service` onto `task_definition` in place, at its desired count: an ECS rolling
    /// deployment with the deployment circuit breaker on (a rollout that cannot start its
    /// tasks ends FAILED instead of retrying forever). The breaker does not roll back by
    /// itself: the engine puts the service back, in order, from what the ledger recorded.
    async fn roll_out(&self, service: &str, task_definition: &str) -> PortResult<()>;
    async fn target_counts(&self, target_group: &str) -> PortResult<TargetCounts>;
}

/// Listener forward weights (percent; they always sum to 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub blue: u8,
    pub green: u8,
}

impl Weights {
    pub fn all_blue() -> Self {
        Weights {
            blue: 100,
            green: 0,
        }
    }
    pub fn green(green: u8) -> Self {
        Weights {
            blue: 100 - green,
            green,
        }
    }
}

#[async_trait]
pub trait Traffic: Send + Sync {
    async fn weights(&self) -> PortResult<Weights>;
    async fn set_weights(&self, weights: Weights) -> PortResult<()>;
    /// The test listener's forward weights (plan `traffic.test_listener`); None when the
    /// plan has no test listener.
    async fn test_weights(&self) -> PortResult<Option<Weights>> {
        Ok(None)
    }
    /// Point the test listener's forward action at `weights` (a no-op without one).
    async fn set_test_weights(&self, _weights: Weights) -> PortResult<()> {
        Ok(())
    }
}

/// One complete metric period (or a correction to one) as the gate sees it: the period's
/// metrics for both colours with the poll's target counts and alarms.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodSample {
    /// Period start, Unix seconds (aligned to the period).
    pub start: i64,
    pub length: Duration,
    /// Only the requests/5xx that arrived late for a period reported before (no latency);
    /// it adds evidence but no bake time.
    pub correction: bool,
    pub sample: HealthSample,
}

/// One health poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    /// The adapter's clock at the poll, Unix seconds (the clock periods are aligned to).
    pub at: i64,
    /// Target health and alarms now; its metric fields are empty.
    pub now: HealthSample,
    /// Complete periods not reported before, and corrections, oldest first.
    pub periods: Vec<PeriodSample>,
}

/// What the preflight found (see [`Health::preflight`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preflight {
    /// Alarms the plan names that the account does not have.
    pub missing_alarms: Vec<String>,
}

#[async_trait]
pub trait Health: Send + Sync {
    /// Target health, metrics summed over the `window` ending now, alarms. An ad-hoc reading
    /// (diagnostics, tests); the bake uses [`Health::poll`], which counts periods once.
    async fn sample(&self, window: Duration) -> PortResult<HealthSample>;
    /// Target health and alarms now, and every metric period that became complete since the
    /// previous poll of this instance (see `engine::periods`).
    async fn poll(&self) -> PortResult<Poll>;
    /// Before any change: which of the plan's alarms do not exist; Err when the metrics of
    /// either target group cannot be read.
    async fn preflight(&self) -> PortResult<Preflight>;
}

/// The smoke test port lives with the gate that runs it (`gate::smoke`).
pub use crate::gate::smoke::Smoke;

/// The plan's other local commands (the read-only window's `enter` and `exit`): run on
/// this machine like the smoke test; a port so engine tests can script them.
#[async_trait]
pub trait LocalCommand: Send + Sync {
    /// Ok on exit 0 within `timeout`; Err(why, with the output's last lines) otherwise.
    /// `what` names the command in messages (e.g. "read_only.exit command").
    async fn run(
        &self,
        what: &str,
        command: &[String],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), String>;
}

#[async_trait]
impl LocalCommand for crate::gate::smoke::CommandSmoke {
    async fn run(
        &self,
        what: &str,
        command: &[String],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), String> {
        crate::gate::smoke::run_command(what, command, env, timeout).await
    }
}

/// Publishing the release's static assets (the assets module implements it).
#[async_trait]
pub trait Assets: Send + Sync {
    /// Publish version `version`; progress is reported through `progress(done, total)`.
    async fn publish(
        &self,
        version: &str,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<String, String>;
    /// Remove old published versions, keeping the newest `keep` and every `protected` one;
    /// returns a summary. None: this publisher does not prune.
    async fn prune(&self, _keep: usize, _protected: &[String]) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// Every port the engine uses, bundled.
pub struct Ports {
    pub state: Box<dyn StateStore>,
    pub database: Box<dyn Database>,
    pub tasks: Box<dyn Tasks>,
    pub fleet: Box<dyn Fleet>,
    pub traffic: Box<dyn Traffic>,
    pub health: Box<dyn Health>,
    pub smoke: Box<dyn Smoke>,
    pub local: Box<dyn LocalCommand>,
    pub assets: Option<Box<dyn Assets>>,
}
