//! Migrate: exactly one migration task per release.
//!
//! Contract: intent = the new task definition and `startedBy` (derived from the release id)
//! in the ledger → if the ledger already names the task, follow it; otherwise ALWAYS ask
//! ECS for tasks with that `startedBy` first and adopt one (running or stopped) → only
//! when none exists, first wait (bounded by `[migration].timeout`, a warning naming each
//! task and its age) until no migration task of *another* release of this app and
//! environment is still running — found by the `startedBy` prefix every release of the
//! plan shares, so a release started after `unlock --force` never runs its migration beside
//! the previous one's; still running at the deadline: the release stops with exit 4 naming
//! the task — then one `RunTask` (count 1, the plan's command override, `clientToken`
//! from the release id) → the task ARN goes to the ledger → tail its logs as `log` events
//! until it is STOPPED → exit code 0 is done; anything else fails the release with exit
//! code 5 and no traffic change. Resume follows the recorded or found task; it never starts
//! a second one. Around the task, `live_watch` takes the live colour's baseline (right
//! before `RunTask`) and watches it after a successful task, before anything is deployed;
//! `read_only` opens its window right before `RunTask` and closes it once the task stopped.
//! With `migration.shards` the task runs once per shard instead (`shards.rs`), and the
//! watch follows the last shard.

use super::{deploy, live_watch, shards, Done};
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{Event, Phase};
use crate::engine::ids;
use crate::engine::lock::human;
use crate::engine::ports::{ActiveTask, TaskInfo, TaskSpec};
use crate::engine::read_only;
use chrono::Utc;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

pub const POLL: Duration = Duration::from_secs(1);
/// How often another release's migration task is looked at while waiting for it.
pub const OTHERS_POLL: Duration = Duration::from_secs(5);
pub const LOG_SOURCE: &str = "migration";

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    let Some(m) = ctx.plan.migration.as_ref() else {
        return Ok(Done::skipped("the plan has no [migration]"));
    };
    let ports = ctx.ports;
    let task_definition = deploy::task_definition(ctx).await?;
    if !m.shards.is_empty() {
        let done = shards::run(ctx, m, &task_definition).await?;
        let watched = live_watch::watch(ctx).await?;
        return Ok(Done::ok(format!("{done}; {watched}")));
    }
    // A record written before the per-plan prefix keeps the startedBy it ran with.
    let started_by = ctx
        .record
        .value
        .started_by
        .clone()
        .unwrap_or_else(|| ids::started_by(&ctx.plan.app, &ctx.plan.environment, &ctx.release));
    ctx.rec().started_by = Some(started_by.clone());
    ctx.intent(Phase::Migrate).await?;

    // When the read-only window (if any) must close, once this run opened it.
    let mut window = None;
    let task = match ctx.record.value.task_arn.clone() {
        Some(arn) => {
            ctx.call(|| ports.tasks.describe(&arn, &m.container))
                .await?
        }
        None => {
            let found = ctx
                .call(|| ports.tasks.find_started_by(&started_by))
                .await?;
            let task = match pick(found) {
                Some(t) => {
                    ctx.emit(Event::Notice {
                        message: format!(
                            "migration task {} (startedBy {started_by}) exists from an earlier run; following it instead of starting another",
                            t.arn
                        ),
                    });
                    t
                }
                None => {
                    wait_for_other_migrations(ctx, &started_by, m.timeout).await?;
                    live_watch::baseline(ctx).await?;
                    let spec = TaskSpec {
                        task_definition: task_definition.clone(),
                        container: m.container.clone(),
                        command: m.command.clone(),
                        started_by: started_by.clone(),
                        client_token: ids::client_token(&ctx.release),
                        subnets: m.subnets.clone(),
                        security_groups: m.security_groups.clone(),
                        assign_public_ip: m.assign_public_ip,
                        environment: Vec::new(),
                    };
                    window = read_only::open(ctx).await?;
                    ctx.call(|| ports.tasks.run_once(&spec)).await?
                }
            };
            ctx.rec().task_arn = Some(task.arn.clone());
            ctx.save().await?;
            task
        }
    };

    let arn = task.arn.clone();
    let followed = match window {
        // Open no longer than read_only.max.
        Some(at) => match tokio::time::timeout_at(
            at,
            follow(ctx, task, &m.container, m.timeout, "migration"),
        )
        .await
        {
            Ok(followed) => followed,
            Err(_) => return Err(read_only::overrun(ctx, &arn).await),
        },
        None => follow(ctx, task, &m.container, m.timeout, "migration").await,
    };
    let done = followed.and_then(|info| finish(ctx, &info));
    // The read-only window closes however the task ended (`exit` runs).
    let done = read_only::close(ctx, "the migration task stopped", done).await?;
    // The task is done; before anything is deployed, did it break the live colour?
    let watched = live_watch::watch(ctx).await?;
    Ok(Done::ok(format!(
        "{}; {watched}",
        done.detail.unwrap_or_default()
    )))
}

/// Follow `task` until it is STOPPED, tailing its logs as `log` events; a task still
/// running after `timeout` fails with `Cause::MigrationFailed` (glidepath never stops it).
/// `table` names the plan table the task comes from (`migration`, `contract`).
pub(crate) async fn follow(
    ctx: &mut Ctx<'_>,
    task: TaskInfo,
    container: &str,
    timeout: Duration,
    table: &str,
) -> Result<TaskInfo, Stop> {
    let ports = ctx.ports;
    let arn = task.arn.clone();
    let deadline = Instant::now() + timeout;
    let mut last_status = String::new();
    let mut cursor: Option<String> = None;
    let mut log_warned = false;
    let mut info = task;
    loop {
        if info.last_status != last_status {
            last_status = info.last_status.clone();
            ctx.emit(Event::Task {
                task_arn: arn.clone(),
                status: info.last_status.clone(),
                exit_code: info.exit_code,
            });
        }
        if let Some((group, stream)) = &info.log {
            match ctx
                .try_call(|| ports.tasks.log_lines(group, stream, cursor.clone()))
                .await
            {
                Ok((lines, next)) => {
                    for line in lines {
                        ctx.emit(Event::Log {
                            source: table.into(),
                            line,
                        });
                    }
                    cursor = next;
                }
                Err(e) if !log_warned => {
                    log_warned = true;
                    ctx.emit(Event::Warning {
                        message: format!(
                            "cannot read the {table} task's logs ({e}); still waiting for the task"
                        ),
                    });
                }
                Err(_) => {}
            }
        }
        if info.last_status == "STOPPED" {
            return Ok(info);
        }
        if Instant::now() >= deadline {
            return Err(Stop::Fail {
                cause: crate::exit::Cause::MigrationFailed,
                message: format!(
                    "{table} task {arn} is still {} after {}s ([{table}].timeout); glidepath did not stop it and moved no traffic. \
                     Check the task, stop it if it hangs, then start again",
                    info.last_status,
                    timeout.as_secs()
                ),
            });
        }
        ctx.tick().await?;
        ctx.sleep(POLL).await?;
        info = ctx.call(|| ports.tasks.describe(&arn, container)).await?;
    }
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn age(t: &ActiveTask) -> String {
    t.started_at
        .map(|at| {
            format!(
                "started {} ago",
                human((Utc::now() - at).to_std().unwrap_or_default())
            )
        })
        .unwrap_or_else(|| "start time unknown".into())
}

/// At most one migration task per app and environment: wait (up to `timeout`) until no
/// task of another release of this plan is still running; refuse (exit 4) after that.
pub(crate) async fn wait_for_other_migrations(
    ctx: &mut Ctx<'_>,
    ours: &str,
    timeout: Duration,
) -> Result<(), Stop> {
    let ports = ctx.ports;
    let prefix = ids::started_by_prefix(&ctx.plan.app, &ctx.plan.environment);
    let deadline = Instant::now() + timeout;
    let mut told = BTreeSet::new();
    loop {
        let others: Vec<ActiveTask> = ctx
            .call(|| ports.tasks.active_with_prefix(&prefix))
            .await?
            .into_iter()
            .filter(|t| t.started_by != ours)
            .collect();
        let Some(first) = others.first() else {
            if !told.is_empty() {
                ctx.emit(Event::Notice {
                    message: "the other release's migration task has stopped; starting this release's migration".into(),
                });
            }
            return Ok(());
        };
        for t in &others {
            if told.insert(t.arn.clone()) {
                ctx.emit(Event::Warning {
                    message: format!(
                        "migration task {} of another release (startedBy {}) is still {} ({}); \
                         at most one migration runs per app and environment, so this release waits up to {}s ([migration].timeout) for it to stop",
                        task_id(&t.arn),
                        t.started_by,
                        t.last_status,
                        age(t),
                        timeout.as_secs()
                    ),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(Stop::Fail {
                cause: crate::exit::Cause::LockHeld,
                message: format!(
                    "migration task {} of another release (startedBy {}) is still {} ({}) after waiting {}s; \
                     glidepath will not run a second migration beside it. No traffic moved. \
                     Wait for it or stop it (aws ecs stop-task --cluster {} --task {}), then start the release again",
                    task_id(&first.arn),
                    first.started_by,
                    first.last_status,
                    age(first),
                    timeout.as_secs(),
                    ctx.plan.cluster,
                    task_id(&first.arn)
                ),
            });
        }
        ctx.tick().await?;
        let left = deadline.saturating_duration_since(Instant::now());
        ctx.sleep(OTHERS_POLL.min(left).max(Duration::from_millis(100)))
            .await?;
    }
}

/// Of the tasks found by `startedBy`, follow a running one, else the latest stopped one.
pub(crate) fn pick(mut found: Vec<TaskInfo>) -> Option<TaskInfo> {
    if let Some(i) = found.iter().position(|t| t.last_status != "STOPPED") {
        return Some(found.swap_remove(i));
    }
    found.pop()
}

fn finish(ctx: &mut Ctx<'_>, info: &TaskInfo) -> Result<Done, Stop> {
    ctx.rec().task_exit_code = info.exit_code;
    let id = info.arn.rsplit('/').next().unwrap_or(&info.arn).to_string();
    match info.exit_code {
        Some(0) => Ok(Done::ok(format!("task {id} exited 0"))),
        code => Err(Stop::Fail {
            cause: crate::exit::Cause::MigrationFailed,
            message: format!(
                "migration task {id} {} ({}); no traffic moved",
                code.map_or("stopped without an exit code".to_string(), |c| format!(
                    "exited with code {c}"
                )),
                info.stopped_reason.as_deref().unwrap_or("no reason given"),
            ),
        }),
    }
}
