//! A sharded migration (`migration.shards`): the migration task once per shard, one at a
//! time, in the plan's order, with `SHARD=<name>` in its environment.
//!
//! Each shard keeps the one-task contract of `migrate` on its own: intent (the shard, its
//! attempt and a `startedBy` derived from release, shard and attempt) in the ledger → if
//! the ledger names its task, follow it; otherwise ask ECS for that `startedBy` and adopt
//! what exists → only when nothing does, wait for other releases' migrations, then one
//! `RunTask` → the task ARN in the ledger → follow it until STOPPED → done (exit 0) or
//! failed, saved before the next shard starts. So a resume after a kill at any point
//! follows the shard's task or starts the first shard not done, and never runs a done
//! shard again. A failed shard stops the release with the lock kept (run.rs makes it an
//! interruption): `resume` tries that shard again as a new attempt, then the rest.

use super::{live_watch, migrate};
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::Event;
use crate::engine::ids;
use crate::engine::ledger::ShardRecord;
use crate::engine::ports::{TaskInfo, TaskSpec};
use crate::exit::Cause;
use crate::plan::MigrationConfig;
use chrono::Utc;

/// The environment variable that names the shard in the task.
pub const SHARD_ENV: &str = "SHARD";

/// Run every shard not done yet; returns the phase's detail.
pub async fn run(
    ctx: &mut Ctx<'_>,
    m: &MigrationConfig,
    task_definition: &str,
) -> Result<String, Stop> {
    let ports = ctx.ports;
    for name in &m.shards {
        let i = slot(ctx, name);
        if ctx.record.value.shards[i].is_done() {
            continue;
        }
        let task = match ctx.record.value.shards[i].task_arn.clone() {
            Some(arn) if ctx.record.value.shards[i].failed_at.is_none() => {
                ctx.call(|| ports.tasks.describe(&arn, &m.container))
                    .await?
            }
            _ => start(ctx, m, task_definition, i).await?,
        };
        let info = migrate::follow(ctx, task, &m.container, m.timeout, "migration").await?;
        let s = &mut ctx.rec().shards[i];
        s.exit_code = info.exit_code;
        if info.exit_code == Some(0) {
            s.done_at = Some(Utc::now());
            ctx.save().await?;
        } else {
            s.failed_at = Some(Utc::now());
            ctx.save().await?;
            return Err(failed(ctx, m, name, &info));
        }
    }
    Ok(format!(
        "{} shards migrated ({})",
        m.shards.len(),
        m.shards.join(", ")
    ))
}

/// The record's entry for shard `name`: found, or appended (in memory; `start` writes it
/// with its intent before anything is started).
fn slot(ctx: &mut Ctx<'_>, name: &str) -> usize {
    match ctx.record.value.shards.iter().position(|s| s.name == name) {
        Some(i) => i,
        None => {
            ctx.rec().shards.push(ShardRecord {
                name: name.to_string(),
                ..ShardRecord::default()
            });
            ctx.record.value.shards.len() - 1
        }
    }
}

/// Intent, then the shard's task: found by its `startedBy` or started once.
async fn start(
    ctx: &mut Ctx<'_>,
    m: &MigrationConfig,
    task_definition: &str,
    i: usize,
) -> Result<TaskInfo, Stop> {
    let ports = ctx.ports;
    let (app, env, release) = (
        ctx.plan.app.clone(),
        ctx.plan.environment.clone(),
        ctx.release.clone(),
    );
    let retry = ctx.record.value.shards[i].failed_at.is_some();
    let s = &mut ctx.rec().shards[i];
    if retry {
        s.attempt += 1;
        s.task_arn = None;
        s.exit_code = None;
        s.failed_at = None;
    }
    if s.intent_at.is_none() || retry {
        s.intent_at = Some(Utc::now());
    }
    s.started_by = ids::shard_started_by(&app, &env, &release, &s.name, s.attempt);
    let (name, attempt, started_by) = (s.name.clone(), s.attempt, s.started_by.clone());
    ctx.save().await?;

    let found = ctx
        .call(|| ports.tasks.find_started_by(&started_by))
        .await?;
    let task = match migrate::pick(found) {
        Some(t) => {
            ctx.emit(Event::Notice {
                message: format!(
                    "migration task {} of shard {name} (startedBy {started_by}) exists from an earlier run; following it instead of starting another",
                    t.arn
                ),
            });
            t
        }
        None => {
            migrate::wait_for_other_migrations(ctx, &started_by, m.timeout).await?;
            // The live colour's yardstick, before the first shard changes anything.
            live_watch::baseline(ctx).await?;
            let spec = TaskSpec {
                task_definition: task_definition.to_string(),
                container: m.container.clone(),
                command: m.command.clone(),
                started_by: started_by.clone(),
                client_token: ids::shard_client_token(&release, &name, attempt),
                subnets: m.subnets.clone(),
                security_groups: m.security_groups.clone(),
                assign_public_ip: m.assign_public_ip,
                environment: vec![(SHARD_ENV.to_string(), name.clone())],
            };
            ctx.call(|| ports.tasks.run_once(&spec)).await?
        }
    };
    ctx.rec().shards[i].task_arn = Some(task.arn.clone());
    ctx.save().await?;
    Ok(task)
}

/// The stop for a failed shard: which shards are done, which failed, which did not run.
fn failed(ctx: &Ctx<'_>, m: &MigrationConfig, name: &str, info: &TaskInfo) -> Stop {
    let done: Vec<&str> = m
        .shards
        .iter()
        .filter(|n| {
            ctx.record
                .value
                .shards
                .iter()
                .any(|s| s.name == **n && s.is_done())
        })
        .map(String::as_str)
        .collect();
    let at = m.shards.iter().position(|n| n == name).unwrap_or(0);
    let not_run: Vec<&str> = m.shards[at + 1..].iter().map(String::as_str).collect();
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let id = info.arn.rsplit('/').next().unwrap_or(&info.arn);
    Stop::Fail {
        cause: Cause::MigrationFailed,
        message: format!(
            "migration of shard {name} ({}/{}) failed: task {id} {} ({}); shards done: {}; not run: {}; no traffic moved. \
             The lock is kept: fix the cause, then `glidepath resume {}` runs shard {name} again (a new task) and continues with the rest",
            at + 1,
            m.shards.len(),
            info.exit_code.map_or("stopped without an exit code".to_string(), |c| format!(
                "exited with code {c}"
            )),
            info.stopped_reason.as_deref().unwrap_or("no reason given"),
            list(&done),
            list(&not_run),
            ctx.plan.source.display(),
        ),
    }
}
