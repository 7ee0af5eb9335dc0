//! In-memory ports for engine tests: one shared [`World`] behind every port, so a test can
//! drop an engine mid-release ("crash") and start a fresh one over the same state.
//!
//! Knobs: migration exit code and duration, snapshot progress ticks, deploy ticks, a
//! scripted health sequence, metric publication delay, missing alarms, smoke/asset results,
//! transient errors per operation, and a crash point (the Nth port call hangs forever,
//! before or after its effect). Every call is logged in order. Not for production use.
//!
//! Health over time: the fake's clock is tokio's (paused in tests) from [`FAKE_EPOCH`]. Each
//! `poll` takes the next scripted sample (or the healthy one): its target counts and alarms
//! are "now", and its metrics become those of every metric period that ended since the last
//! poll. A period's data is visible `publish_delay` after it ends (the plan's
//! `metric_delay` unless a test makes publication later), and [`PeriodBook`] reports it
//! once, exactly as the AWS adapter does.

use super::periods::{period_sample, PeriodBook, PeriodMetrics, Timing};
use super::ports::*;
use crate::gate::{ColourSample, HealthSample};
use crate::plan::Plan;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The fake clock's Unix time at the world's creation (a whole hour).
pub const FAKE_EPOCH: i64 = 1_800_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// The call hangs before it has any effect.
    Before,
    /// The call takes effect, then hangs (the engine never learns it happened).
    After,
}

#[derive(Debug, Clone)]
pub struct FakeService {
    pub task_definition: String,
    pub desired: i32,
    pub running: i32,
    pub rollout: String,
    /// `service` reads left until a rollout completes.
    pub ticks_left: u32,
    /// The rollout in progress ends FAILED (the circuit breaker stopped it).
    pub fails: bool,
}

#[derive(Debug, Clone)]
pub struct FakeTask {
    pub info: TaskInfo,
    pub spec: TaskSpec,
    pub describes_left: u32,
    pub lines: Vec<String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug)]
pub struct World {
    // state store
    pub objects: BTreeMap<String, (Vec<u8>, u64)>,
    next_etag: u64,
    // database
    pub snapshots: BTreeMap<String, (SnapshotInfo, u32)>,
    pub snapshot_ticks: u32,
    pub snapshot_fails: bool,
    /// When each snapshot was created (fake clock), for retention's "newest".
    pub snapshot_times: BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    pub deleted_snapshots: Vec<String>,
    /// Databases restored from a snapshot: name → snapshot id.
    pub restored: BTreeMap<String, String>,
    // tasks
    pub tasks: Vec<FakeTask>,
    pub run_task_calls: u32,
    /// At each RunTask: how many tasks were not STOPPED yet (exactly-one checks).
    pub active_at_run_task: Vec<usize>,
    pub migration_exit: i32,
    /// Exit code of a sharded migration's task by its `SHARD` (others: `migration_exit`).
    pub shard_exit: BTreeMap<String, i32>,
    pub migration_ticks: u32,
    pub migration_lines: Vec<String>,
    // fleet
    pub services: BTreeMap<String, FakeService>,
    pub blue_service: String,
    pub green_service: String,
    /// target group → service whose tasks register there.
    pub target_groups: BTreeMap<String, String>,
    /// task definition → image of the deploy container.
    pub task_definitions: BTreeMap<String, String>,
    pub deploy_ticks: u32,
    /// Healthy targets stay below desired (a deploy that never gets healthy).
    pub deploy_unhealthy: bool,
    /// Services whose rollouts onto a task definition they did not run at the start end
    /// FAILED (a companion whose new version cannot start).
    pub rollout_fails: Vec<String>,
    /// Task definitions deregistered (INACTIVE): no service can be rolled out to them.
    pub inactive_task_definitions: Vec<String>,
    /// The task definition each service ran when the world was made.
    pub initial_task_definitions: BTreeMap<String, String>,
    // traffic
    pub weights: Weights,
    pub weight_history: Vec<Weights>,
    /// The test listener's weights (None: the plan has no test listener).
    pub test_weights: Option<Weights>,
    /// The test listener's weights each time the smoke test ran.
    pub test_weights_at_smoke: Vec<Option<Weights>>,
    /// Each time the smoke test ran: the image the test listener's traffic reached (the
    /// deploy container image of the one colour it pointed at; None without a test
    /// listener or when it split traffic).
    pub smoke_served: Vec<Option<String>>,
    // health: scripted polls, then `healthy_sample` forever
    pub health_script: VecDeque<PortResult<HealthSample>>,
    pub healthy_sample: HealthSample,
    pub health_polls: u32,
    /// Someone sets the listener to these weights by hand at this health poll (1-based).
    pub hand_weights: Option<(u32, Weights)>,
    /// Once a migration task exited 0, blue answers like this (a schema change that broke
    /// the running version).
    pub blue_after_migration: Option<ColourSample>,
    /// Once green has at least this share, blue answers like this (the live colour breaks
    /// during the shift).
    pub blue_during_shift: Option<(u8, ColourSample)>,
    /// How long after its end a period's data becomes visible.
    pub publish_delay: Duration,
    /// Alarms that exist (the plan's, unless a test removes one).
    pub alarms: Vec<String>,
    plan_alarms: Vec<String>,
    created: Instant,
    book: PeriodBook,
    /// Metrics of every period that ended before `assigned_to`.
    period_data: BTreeMap<i64, PeriodMetrics>,
    assigned_to: Option<i64>,
    // smoke and assets
    pub smoke_result: Result<(), String>,
    pub smoke_runs: Vec<Vec<(String, String)>>,
    /// Local commands (read-only window) that ran, as "program arg …", in order.
    pub local_runs: Vec<String>,
    /// Local command ("program arg …") → how it fails (every time).
    pub local_fails: HashMap<String, String>,
    pub assets_result: Result<String, String>,
    pub assets_published: Vec<String>,
    /// Each prune: (keep, protected versions).
    pub assets_pruned: Vec<(usize, Vec<String>)>,
    pub prune_result: Result<String, String>,
    // failure injection and observation
    /// Operation name → transient errors still to return.
    pub transient: HashMap<String, u32>,
    /// Operation name → fatal error to return (every time).
    pub fatal: HashMap<String, String>,
    pub calls: Vec<String>,
    /// Invariants the engine broke (traffic to a colour with no running tasks, …).
    pub violations: Vec<String>,
    /// Deploys to a service while the production listener sent it traffic (a new version
    /// reaching users before its smoke test and gates): "service td (weight %)".
    pub deploys_under_traffic: Vec<String>,
    pub call_count: u64,
    pub crash_at: Option<(u64, CrashMode)>,
    pub crashed: bool,
    /// Once, when a call to this operation returns: send its command (the operator pressing
    /// Ctrl-C at an exact point, which an event-driven operator cannot hit in paused time).
    pub command_after: Option<(
        String,
        tokio::sync::mpsc::UnboundedSender<super::event::Command>,
        super::event::Command,
    )>,
}

/// A healthy poll: both colours with healthy targets, traffic and fast responses.
pub fn healthy_sample() -> HealthSample {
    let c = ColourSample {
        healthy: 2,
        unhealthy: 0,
        other: 0,
        requests: 100.0,
        errors_5xx: 0.0,
        elb_5xx: 0.0,
        latency_avg_ms: Some(50.0),
        latency_p95_ms: Some(80.0),
    };
    HealthSample {
        blue: c.clone(),
        green: c,
        alarms: vec![],
    }
}

/// The shared world. Clone it to hand to another engine (same state).
#[derive(Clone)]
pub struct FakeWorld {
    world: Arc<Mutex<World>>,
    crash: Arc<Notify>,
}

pub const LIVE_TASK_DEFINITION: &str = "app:1";
pub const LIVE_IMAGE: &str = "registry.example.com/shop:initial";

impl FakeWorld {
    /// A world shaped like `plan`: blue live with 2 tasks, green idle, listener all blue.
    pub fn for_plan(plan: &Plan) -> FakeWorld {
        let mut services = BTreeMap::new();
        services.insert(
            plan.blue.service.clone(),
            FakeService {
                task_definition: LIVE_TASK_DEFINITION.into(),
                desired: 2,
                running: 2,
                rollout: "COMPLETED".into(),
                ticks_left: 0,
                fails: false,
            },
        );
        services.insert(
            plan.green.service.clone(),
            FakeService {
                task_definition: LIVE_TASK_DEFINITION.into(),
                desired: 0,
                running: 0,
                rollout: "COMPLETED".into(),
                ticks_left: 0,
                fails: false,
            },
        );
        // Companions run their own image at one task each.
        let mut task_definitions = BTreeMap::new();
        for c in &plan.companions {
            let td = format!("{}:1", c.name);
            task_definitions.insert(td.clone(), format!("{LIVE_IMAGE}-{}", c.name));
            services.insert(
                c.service.clone(),
                FakeService {
                    task_definition: td,
                    desired: 1,
                    running: 1,
                    rollout: "COMPLETED".into(),
                    ticks_left: 0,
                    fails: false,
                },
            );
        }
        let mut target_groups = BTreeMap::new();
        target_groups.insert(plan.blue.target_group.clone(), plan.blue.service.clone());
        target_groups.insert(plan.green.target_group.clone(), plan.green.service.clone());
        task_definitions.insert(LIVE_TASK_DEFINITION.to_string(), LIVE_IMAGE.to_string());
        let initial_task_definitions = services
            .iter()
            .map(|(name, s)| (name.clone(), s.task_definition.clone()))
            .collect();
        FakeWorld {
            world: Arc::new(Mutex::new(World {
                objects: BTreeMap::new(),
                next_etag: 1,
                snapshots: BTreeMap::new(),
                snapshot_ticks: 3,
                snapshot_fails: false,
                snapshot_times: BTreeMap::new(),
                deleted_snapshots: vec![],
                restored: BTreeMap::new(),
                tasks: vec![],
                run_task_calls: 0,
                active_at_run_task: vec![],
                migration_exit: 0,
                shard_exit: BTreeMap::new(),
                migration_ticks: 3,
                migration_lines: vec![
                    "Running migrations...".into(),
                    "Migrations complete.".into(),
                ],
                services,
                blue_service: plan.blue.service.clone(),
                green_service: plan.green.service.clone(),
                target_groups,
                task_definitions,
                deploy_ticks: 2,
                deploy_unhealthy: false,
                rollout_fails: vec![],
                inactive_task_definitions: vec![],
                initial_task_definitions,
                weights: Weights::all_blue(),
                weight_history: vec![],
                test_weights: plan
                    .traffic
                    .test_listener
                    .as_ref()
                    .map(|_| Weights::green(100)),
                test_weights_at_smoke: vec![],
                smoke_served: vec![],
                health_script: VecDeque::new(),
                healthy_sample: healthy_sample(),
                health_polls: 0,
                hand_weights: None,
                blue_after_migration: None,
                blue_during_shift: None,
                publish_delay: plan.gates.metric_delay,
                alarms: plan.gates.alarms.clone(),
                plan_alarms: plan.gates.alarms.clone(),
                created: Instant::now(),
                book: PeriodBook::new(Timing::new(
                    plan.gates.metric_period,
                    plan.gates.metric_delay,
                )),
                period_data: BTreeMap::new(),
                assigned_to: None,
                smoke_result: Ok(()),
                smoke_runs: vec![],
                local_runs: vec![],
                local_fails: HashMap::new(),
                assets_result: Ok("published".into()),
                assets_published: vec![],
                assets_pruned: vec![],
                prune_result: Ok("nothing to prune".into()),
                transient: HashMap::new(),
                fatal: HashMap::new(),
                calls: vec![],
                violations: vec![],
                deploys_under_traffic: vec![],
                call_count: 0,
                crash_at: None,
                crashed: false,
                command_after: None,
            })),
            crash: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A test that panicked while holding the lock already failed; keep going.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read or change the world.
    pub fn with<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.lock())
    }

    /// Resolves once a crash point was hit.
    pub async fn crashed(&self) {
        self.crash.notified().await
    }

    /// Every port over this world. `with_assets` adds the assets publisher.
    pub fn ports(&self, with_assets: bool) -> Ports {
        Ports {
            state: Box::new(self.clone()),
            database: Box::new(self.clone()),
            tasks: Box::new(self.clone()),
            fleet: Box::new(self.clone()),
            traffic: Box::new(self.clone()),
            health: Box::new(self.clone()),
            smoke: Box::new(self.clone()),
            local: Box::new(self.clone()),
            assets: with_assets.then(|| Box::new(self.clone()) as Box<dyn Assets>),
        }
    }

    /// Log the call, apply injected failures and the crash point, then run `f`.
    async fn call<T: Send>(
        &self,
        op: &str,
        detail: String,
        f: impl FnOnce(&mut World) -> PortResult<T> + Send,
    ) -> PortResult<T> {
        let crash = {
            let mut w = self.lock();
            w.call_count += 1;
            w.calls.push(if detail.is_empty() {
                op.to_string()
            } else {
                format!("{op} {detail}")
            });
            let crash = match w.crash_at {
                Some((n, mode)) if n == w.call_count && !w.crashed => {
                    w.crashed = true;
                    Some(mode)
                }
                _ => None,
            };
            if crash.is_none() {
                if let Some(left) = w.transient.get_mut(op).filter(|n| **n > 0) {
                    *left -= 1;
                    return Err(PortError::Transient {
                        operation: op.into(),
                        message: "injected throttling".into(),
                    });
                }
                if let Some(msg) = w.fatal.get(op) {
                    return Err(PortError::Fatal {
                        operation: op.into(),
                        message: msg.clone(),
                    });
                }
            }
            crash
        };
        if crash == Some(CrashMode::Before) {
            self.crash.notify_one();
            std::future::pending::<()>().await;
        }
        let result = {
            let mut w = self.lock();
            let result = f(&mut w);
            if w.command_after.as_ref().is_some_and(|(o, _, _)| o == op) {
                if let Some((_, tx, command)) = w.command_after.take() {
                    let _ = tx.send(command);
                }
            }
            result
        };
        if crash == Some(CrashMode::After) {
            self.crash.notify_one();
            std::future::pending::<()>().await;
        }
        result
    }
}

fn etag(w: &mut World) -> u64 {
    w.next_etag += 1;
    w.next_etag
}

#[async_trait]
impl StateStore for FakeWorld {
    async fn get(&self, key: &str) -> PortResult<Option<(Vec<u8>, ETag)>> {
        self.call("state.get", key.into(), |w| {
            Ok(w.objects
                .get(key)
                .map(|(b, e)| (b.clone(), ETag(e.to_string()))))
        })
        .await
    }
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> PortResult<Conditional> {
        self.call("state.put_if_absent", key.into(), |w| {
            if w.objects.contains_key(key) {
                return Ok(Conditional::Conflict);
            }
            let e = etag(w);
            w.objects.insert(key.into(), (body, e));
            Ok(Conditional::Written(ETag(e.to_string())))
        })
        .await
    }
    async fn put_if_match(&self, key: &str, body: Vec<u8>, tag: &ETag) -> PortResult<Conditional> {
        self.call("state.put_if_match", key.into(), |w| {
            match w.objects.get(key) {
                Some((_, e)) if e.to_string() == tag.0 => {}
                _ => return Ok(Conditional::Conflict),
            }
            let e = etag(w);
            w.objects.insert(key.into(), (body, e));
            Ok(Conditional::Written(ETag(e.to_string())))
        })
        .await
    }
    async fn delete(&self, key: &str) -> PortResult<()> {
        self.call("state.delete", key.into(), |w| {
            w.objects.remove(key);
            Ok(())
        })
        .await
    }
    async fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
        self.call("state.list", prefix.into(), |w| {
            Ok(w.objects
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
        })
        .await
    }
}

#[async_trait]
impl Database for FakeWorld {
    async fn describe_snapshot(&self, id: &str) -> PortResult<Option<SnapshotInfo>> {
        self.call("database.describe_snapshot", id.into(), |w| {
            let (ticks, fails) = (w.snapshot_ticks.max(1), w.snapshot_fails);
            let Some((info, left)) = w.snapshots.get_mut(id) else {
                return Ok(None);
            };
            if let SnapshotStatus::Creating { .. } = info.status {
                *left = left.saturating_sub(1);
                info.status = match (*left, fails) {
                    (0, false) => SnapshotStatus::Available,
                    (0, true) => SnapshotStatus::Failed {
                        status: "failed".into(),
                    },
                    (l, _) => SnapshotStatus::Creating {
                        percent: (100 - 100 * l / ticks) as u8,
                    },
                };
            }
            Ok(Some(info.clone()))
        })
        .await
    }
    async fn create_snapshot(&self, id: &str, release: &str) -> PortResult<()> {
        self.call("database.create_snapshot", id.into(), |w| {
            let ticks = w.snapshot_ticks;
            w.snapshots.entry(id.into()).or_insert((
                SnapshotInfo {
                    id: id.into(),
                    status: SnapshotStatus::Creating { percent: 0 },
                    release_tag: Some(release.into()),
                },
                ticks,
            ));
            w.snapshot_times
                .entry(id.into())
                .or_insert_with(|| fake_now(w.created));
            Ok(())
        })
        .await
    }
    async fn tagged_snapshots(&self) -> PortResult<Vec<TaggedSnapshot>> {
        self.call("database.tagged_snapshots", String::new(), |w| {
            Ok(w.snapshots
                .values()
                .filter_map(|(info, _)| {
                    Some(TaggedSnapshot {
                        id: info.id.clone(),
                        release: info.release_tag.clone()?,
                        created_at: w.snapshot_times.get(&info.id).copied(),
                    })
                })
                .collect())
        })
        .await
    }
    async fn delete_snapshot(&self, id: &str) -> PortResult<()> {
        self.call("database.delete_snapshot", id.into(), |w| {
            if w.snapshots.remove(id).is_some() {
                w.deleted_snapshots.push(id.into());
            }
            Ok(())
        })
        .await
    }
    async fn restore_snapshot(&self, id: &str, name: &str, _release: &str) -> PortResult<()> {
        self.call(
            "database.restore_snapshot",
            format!("{id} → {name}"),
            |w| {
                w.restored.insert(name.into(), id.into());
                Ok(())
            },
        )
        .await
    }
    async fn describe_db(&self, name: &str) -> PortResult<Option<DbState>> {
        self.call("database.describe_db", name.into(), |w| {
            Ok(w.restored.contains_key(name).then(|| DbState {
                name: name.into(),
                status: "available".into(),
                endpoint: Some(format!("{name}.fake.rds.local")),
                port: Some(5432),
            }))
        })
        .await
    }
}

/// The fake clock's wall time: [`FAKE_EPOCH`] plus tokio time since the world was made.
fn fake_now(created: Instant) -> chrono::DateTime<chrono::Utc> {
    let at = FAKE_EPOCH as f64 + created.elapsed().as_secs_f64();
    chrono::DateTime::from_timestamp_millis((at * 1000.0) as i64).unwrap_or_default()
}

#[async_trait]
impl Tasks for FakeWorld {
    async fn find_started_by(&self, started_by: &str) -> PortResult<Vec<TaskInfo>> {
        self.call("tasks.find_started_by", started_by.into(), |w| {
            Ok(w.tasks
                .iter()
                .filter(|t| t.spec.started_by == started_by)
                .map(|t| t.info.clone())
                .collect())
        })
        .await
    }
    async fn active_with_prefix(&self, prefix: &str) -> PortResult<Vec<ActiveTask>> {
        self.call("tasks.active_with_prefix", prefix.into(), |w| {
            Ok(w.tasks
                .iter()
                .filter(|t| t.spec.started_by.starts_with(prefix))
                .filter(|t| t.info.last_status != "STOPPED")
                .map(|t| ActiveTask {
                    arn: t.info.arn.clone(),
                    started_by: t.spec.started_by.clone(),
                    last_status: t.info.last_status.clone(),
                    started_at: Some(t.started_at),
                })
                .collect())
        })
        .await
    }
    async fn run_once(&self, spec: &TaskSpec) -> PortResult<TaskInfo> {
        self.call("tasks.run_once", spec.task_definition.clone(), |w| {
            w.run_task_calls += 1;
            let active = w
                .tasks
                .iter()
                .filter(|t| t.info.last_status != "STOPPED")
                .count();
            w.active_at_run_task.push(active);
            let n = w.tasks.len() + 1;
            let info = TaskInfo {
                arn: format!("arn:aws:ecs:us-east-1:123456789012:task/app/task{n}"),
                last_status: "RUNNING".into(),
                exit_code: None,
                stopped_reason: None,
                log: Some(("/ecs/app".into(), format!("migrate/web/task{n}"))),
            };
            w.tasks.push(FakeTask {
                info: info.clone(),
                spec: spec.clone(),
                describes_left: w.migration_ticks,
                lines: w.migration_lines.clone(),
                started_at: chrono::Utc::now(),
            });
            Ok(info)
        })
        .await
    }
    async fn describe(&self, arn: &str, _container: &str) -> PortResult<TaskInfo> {
        self.call("tasks.describe", arn.into(), |w| {
            let default_exit = w.migration_exit;
            let Some(t) = w.tasks.iter_mut().find(|t| t.info.arn == arn) else {
                return Err(PortError::NotFound {
                    operation: "tasks.describe".into(),
                    resource: arn.into(),
                });
            };
            let exit = t
                .spec
                .environment
                .iter()
                .find(|(k, _)| k == "SHARD")
                .and_then(|(_, v)| w.shard_exit.get(v).copied())
                .unwrap_or(default_exit);
            if t.info.last_status != "STOPPED" {
                t.describes_left = t.describes_left.saturating_sub(1);
                if t.describes_left == 0 {
                    t.info.last_status = "STOPPED".into();
                    t.info.exit_code = Some(exit);
                    t.info.stopped_reason = Some("Essential container in task exited".into());
                }
            }
            Ok(t.info.clone())
        })
        .await
    }
    async fn log_lines(
        &self,
        _group: &str,
        stream: &str,
        cursor: Option<String>,
    ) -> PortResult<(Vec<String>, Option<String>)> {
        self.call("tasks.log_lines", stream.into(), |w| {
            let Some(t) = w
                .tasks
                .iter()
                .find(|t| t.info.log.as_ref().is_some_and(|(_, s)| s == stream))
            else {
                return Ok((vec![], cursor));
            };
            let from: usize = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
            let lines = t.lines.get(from..).unwrap_or_default().to_vec();
            Ok((lines, Some(t.lines.len().to_string())))
        })
        .await
    }
}

#[async_trait]
impl Fleet for FakeWorld {
    async fn service(&self, service: &str) -> PortResult<ServiceState> {
        self.call("fleet.service", service.into(), |w| {
            let Some(s) = w.services.get_mut(service) else {
                return Err(PortError::NotFound {
                    operation: "fleet.service".into(),
                    resource: service.into(),
                });
            };
            if s.ticks_left > 0 {
                s.ticks_left -= 1;
                if s.ticks_left == 0 && s.fails {
                    s.rollout = "FAILED".into();
                    s.running = 0;
                } else if s.ticks_left == 0 {
                    s.rollout = "COMPLETED".into();
                    s.running = s.desired;
                }
            }
            Ok(ServiceState {
                task_definition: s.task_definition.clone(),
                desired: s.desired,
                running: s.running,
                rollout: s.rollout.clone(),
            })
        })
        .await
    }
    async fn task_definition_with_image(
        &self,
        from: &str,
        container: &str,
        image: &str,
    ) -> PortResult<String> {
        self.call(
            "fleet.task_definition_with_image",
            format!("{from} {container}={image}"),
            |w| {
                if let Some((td, _)) = w.task_definitions.iter().find(|(_, i)| *i == image) {
                    return Ok(td.clone());
                }
                let td = format!("app:{}", w.task_definitions.len() + 1);
                w.task_definitions.insert(td.clone(), image.into());
                Ok(td)
            },
        )
        .await
    }
    async fn image_of(&self, td: &str, _container: &str) -> PortResult<Option<String>> {
        // One container per fake task definition: the deploy container.
        self.call("fleet.image_of", td.into(), |w| {
            w.task_definitions
                .get(td)
                .cloned()
                .map(Some)
                .ok_or_else(|| PortError::NotFound {
                    operation: "fleet.image_of".into(),
                    resource: td.into(),
                })
        })
        .await
    }
    async fn task_definition_active(&self, td: &str) -> PortResult<bool> {
        self.call("fleet.task_definition_active", td.into(), |w| {
            Ok(!w.inactive_task_definitions.iter().any(|i| i == td))
        })
        .await
    }
    async fn deploy(&self, service: &str, td: &str, desired: i32) -> PortResult<()> {
        self.call("fleet.deploy", format!("{service} {td} x{desired}"), |w| {
            let ticks = w.deploy_ticks.max(1);
            let share = if service == w.blue_service {
                w.weights.blue
            } else if service == w.green_service {
                w.weights.green
            } else {
                0
            };
            if share > 0 {
                w.deploys_under_traffic
                    .push(format!("{service} {td} ({share}%)"));
            }
            let s = w.services.get_mut(service).ok_or(PortError::NotFound {
                operation: "fleet.deploy".into(),
                resource: service.into(),
            })?;
            s.task_definition = td.into();
            s.desired = desired;
            s.rollout = "IN_PROGRESS".into();
            s.ticks_left = ticks;
            s.fails = false;
            Ok(())
        })
        .await
    }
    async fn roll_out(&self, service: &str, td: &str) -> PortResult<()> {
        self.call("fleet.roll_out", format!("{service} {td}"), |w| {
            let ticks = w.deploy_ticks.max(1);
            let fails = w.rollout_fails.iter().any(|s| s == service)
                && w.initial_task_definitions.get(service).map(String::as_str) != Some(td);
            let s = w.services.get_mut(service).ok_or(PortError::NotFound {
                operation: "fleet.roll_out".into(),
                resource: service.into(),
            })?;
            s.task_definition = td.into();
            s.rollout = "IN_PROGRESS".into();
            s.ticks_left = ticks;
            s.fails = fails;
            Ok(())
        })
        .await
    }
    async fn scale(&self, service: &str, desired: i32) -> PortResult<()> {
        self.call("fleet.scale", format!("{service} x{desired}"), |w| {
            let s = w.services.get_mut(service).ok_or(PortError::NotFound {
                operation: "fleet.scale".into(),
                resource: service.into(),
            })?;
            s.desired = desired;
            s.running = desired;
            Ok(())
        })
        .await
    }
    async fn target_counts(&self, tg: &str) -> PortResult<TargetCounts> {
        self.call("fleet.target_counts", tg.into(), |w| {
            let running = w
                .target_groups
                .get(tg)
                .and_then(|s| w.services.get(s))
                .map_or(0, |s| s.running.max(0) as u32);
            Ok(if w.deploy_unhealthy {
                TargetCounts {
                    healthy: 0,
                    unhealthy: running,
                    other: 0,
                }
            } else {
                TargetCounts {
                    healthy: running,
                    unhealthy: 0,
                    other: 0,
                }
            })
        })
        .await
    }
}

#[async_trait]
impl Traffic for FakeWorld {
    async fn weights(&self) -> PortResult<Weights> {
        self.call("traffic.weights", String::new(), |w| Ok(w.weights))
            .await
    }
    async fn set_weights(&self, weights: Weights) -> PortResult<()> {
        self.call(
            "traffic.set_weights",
            format!("{}/{}", weights.blue, weights.green),
            |w| {
                if u16::from(weights.blue) + u16::from(weights.green) != 100 {
                    return Err(PortError::Fatal {
                        operation: "traffic.set_weights".into(),
                        message: format!("{weights:?} do not sum to 100"),
                    });
                }
                let colours = [
                    ("blue", weights.blue, w.blue_service.clone()),
                    ("green", weights.green, w.green_service.clone()),
                ];
                for (colour, share, service) in colours {
                    let running = w.services.get(&service).map_or(0, |s| s.running);
                    if share > 0 && running == 0 {
                        w.violations.push(format!(
                            "{share}% of traffic sent to {colour} ({service}), which runs no tasks"
                        ));
                    }
                }
                w.weights = weights;
                w.weight_history.push(weights);
                Ok(())
            },
        )
        .await
    }
    async fn test_weights(&self) -> PortResult<Option<Weights>> {
        self.call(
            "traffic.test_weights",
            String::new(),
            |w| Ok(w.test_weights),
        )
        .await
    }
    async fn set_test_weights(&self, weights: Weights) -> PortResult<()> {
        self.call(
            "traffic.set_test_weights",
            format!("{}/{}", weights.blue, weights.green),
            |w| {
                if w.test_weights.is_some() {
                    w.test_weights = Some(weights);
                }
                Ok(())
            },
        )
        .await
    }
}

#[async_trait]
impl Health for FakeWorld {
    async fn sample(&self, _window: Duration) -> PortResult<HealthSample> {
        self.call("health.sample", String::new(), |w| {
            w.health_polls += 1;
            w.health_script
                .pop_front()
                .unwrap_or_else(|| Ok(w.healthy_sample.clone()))
        })
        .await
    }
    async fn poll(&self) -> PortResult<Poll> {
        self.call("health.poll", String::new(), |w| {
            w.health_polls += 1;
            if let Some((at, weights)) = w.hand_weights {
                if at == w.health_polls {
                    w.weights = weights;
                }
            }
            let mut sample = w
                .health_script
                .pop_front()
                .unwrap_or_else(|| Ok(w.healthy_sample.clone()))?;
            let migrated = w
                .tasks
                .iter()
                .any(|t| t.info.last_status == "STOPPED" && t.info.exit_code == Some(0));
            if let (true, Some(blue)) = (migrated, &w.blue_after_migration) {
                sample.blue = blue.clone();
            }
            if let Some((at, blue)) = &w.blue_during_shift {
                if w.weights.green >= *at {
                    sample.blue = blue.clone();
                }
            }
            Ok(w.poll_with(sample))
        })
        .await
    }
    async fn preflight(&self) -> PortResult<Preflight> {
        self.call("health.preflight", String::new(), |w| {
            Ok(Preflight {
                missing_alarms: w
                    .plan_alarms
                    .iter()
                    .filter(|a| !w.alarms.contains(a))
                    .cloned()
                    .collect(),
            })
        })
        .await
    }
}

impl World {
    /// The deploy image of the colour `weights` send all traffic to (None when split).
    pub fn serving(&self, weights: Weights) -> Option<String> {
        let service = match (weights.blue, weights.green) {
            (100, 0) => &self.blue_service,
            (0, 100) => &self.green_service,
            _ => return None,
        };
        let td = &self.services.get(service)?.task_definition;
        self.task_definitions.get(td).cloned()
    }

    /// The fake clock, Unix seconds.
    pub fn now_secs(&self) -> i64 {
        FAKE_EPOCH + self.created.elapsed().as_secs() as i64
    }

    /// One poll at the fake clock's now with `sample` as the world's state (see the module
    /// doc).
    fn poll_with(&mut self, sample: HealthSample) -> Poll {
        let now = self.now_secs();
        let timing = self.book.timing();
        let p = timing.period;
        let ended = now.div_euclid(p) * p;
        let from = self
            .assigned_to
            .or_else(|| self.book.window(now).map(|w| w.0))
            .unwrap_or(ended);
        let metrics = PeriodMetrics {
            blue: metrics_of(&sample.blue),
            green: metrics_of(&sample.green),
        };
        let mut s = from;
        while s < ended {
            self.period_data.insert(s, metrics.clone());
            s += p;
        }
        self.assigned_to = Some(ended.max(from));
        let delay = self.publish_delay.as_secs() as i64;
        let visible: BTreeMap<i64, PeriodMetrics> = self
            .period_data
            .iter()
            .filter(|(s, _)| **s + p + delay <= now)
            .map(|(s, m)| (*s, m.clone()))
            .collect();
        let instant = HealthSample {
            blue: targets_of(&sample.blue),
            green: targets_of(&sample.green),
            alarms: sample.alarms.clone(),
        };
        let periods = self
            .book
            .take(now, &visible)
            .into_iter()
            .map(|r| period_sample(&instant, r, p))
            .collect();
        Poll {
            at: now,
            now: instant,
            periods,
        }
    }
}

/// A colour's target counts only.
fn targets_of(c: &ColourSample) -> ColourSample {
    ColourSample {
        healthy: c.healthy,
        unhealthy: c.unhealthy,
        other: c.other,
        ..ColourSample::default()
    }
}

/// A colour's metrics only.
fn metrics_of(c: &ColourSample) -> ColourSample {
    ColourSample {
        healthy: 0,
        unhealthy: 0,
        other: 0,
        ..c.clone()
    }
}

#[async_trait]
impl Smoke for FakeWorld {
    async fn run(
        &self,
        _command: &[String],
        env: &[(String, String)],
        _timeout: Duration,
    ) -> Result<(), String> {
        self.call("smoke.run", String::new(), |w| {
            w.smoke_runs.push(env.to_vec());
            let at_smoke = w.test_weights;
            w.test_weights_at_smoke.push(at_smoke);
            let served = at_smoke.and_then(|t| w.serving(t));
            w.smoke_served.push(served);
            Ok(w.smoke_result.clone())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[async_trait]
impl LocalCommand for FakeWorld {
    async fn run(
        &self,
        _what: &str,
        command: &[String],
        _env: &[(String, String)],
        _timeout: Duration,
    ) -> Result<(), String> {
        let line = command.join(" ");
        self.call("local.run", line.clone(), |w| {
            w.local_runs.push(line.clone());
            Ok(w.local_fails.get(&line).map_or(Ok(()), |e| Err(e.clone())))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[async_trait]
impl Assets for FakeWorld {
    async fn publish(
        &self,
        version: &str,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<String, String> {
        progress(0, 2);
        let r = self
            .call("assets.publish", version.into(), |w| {
                w.assets_published.push(version.into());
                Ok(w.assets_result.clone())
            })
            .await
            .map_err(|e| e.to_string())?;
        progress(2, 2);
        r
    }
    async fn prune(&self, keep: usize, protected: &[String]) -> Result<Option<String>, String> {
        self.call("assets.prune", format!("keep {keep}"), |w| {
            w.assets_pruned.push((keep, protected.to_vec()));
            Ok(w.prune_result.clone())
        })
        .await
        .map_err(|e| e.to_string())?
        .map(Some)
    }
}
