//! Migrate: exactly one migration task per release.
//!
//! Contract: intent = the new task definition and `startedBy` (derived from the release id)
//! in the ledger → if the ledger already names the task, follow it; otherwise ALWAYS ask
//! ECS for tasks with that `startedBy` first and adopt one (running or stopped) → only
//! when none exists, one `RunTask` (count 1, the plan's command override, `clientToken`
//! from the release id) → the task ARN goes to the ledger → tail its logs as `log` events
//! until it is STOPPED → exit code 0 is done; anything else fails the release with exit
//! code 5 and no traffic change. Resume follows the recorded or found task; it never starts
//! a second one.

use super::{deploy, Done};
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{Event, Phase};
use crate::engine::ids;
use crate::engine::ports::{TaskInfo, TaskSpec};
use std::time::Duration;
use tokio::time::Instant;

pub const POLL: Duration = Duration::from_secs(1);
pub const LOG_SOURCE: &str = "migration";

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    let Some(m) = ctx.plan.migration.as_ref() else {
        return Ok(Done::skipped("the plan has no [migration]"));
    };
    let ports = ctx.ports;
    let task_definition = deploy::task_definition(ctx).await?;
    let started_by = ids::started_by(&ctx.release);
    ctx.rec().started_by = Some(started_by.clone());
    ctx.intent(Phase::Migrate).await?;

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
                    let spec = TaskSpec {
                        task_definition: task_definition.clone(),
                        container: m.container.clone(),
                        command: m.command.clone(),
                        started_by: started_by.clone(),
                        client_token: ids::client_token(&ctx.release),
                        subnets: m.subnets.clone(),
                        security_groups: m.security_groups.clone(),
                        assign_public_ip: m.assign_public_ip,
                    };
                    ctx.call(|| ports.tasks.run_once(&spec)).await?
                }
            };
            ctx.rec().task_arn = Some(task.arn.clone());
            ctx.save().await?;
            task
        }
    };

    let arn = task.arn.clone();
    let deadline = Instant::now() + m.timeout;
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
                            source: LOG_SOURCE.into(),
                            line,
                        });
                    }
                    cursor = next;
                }
                Err(e) if !log_warned => {
                    log_warned = true;
                    ctx.emit(Event::Warning {
                        message: format!(
                            "cannot read the migration's logs ({e}); still waiting for the task"
                        ),
                    });
                }
                Err(_) => {}
            }
        }
        if info.last_status == "STOPPED" {
            return finish(ctx, &info);
        }
        if Instant::now() >= deadline {
            return Err(Stop::Fail {
                cause: crate::exit::Cause::MigrationFailed,
                message: format!(
                    "migration task {arn} is still {} after {}s ([migration].timeout); glidepath did not stop it and moved no traffic. \
                     Check the task, stop it if it hangs, then start the release again",
                    info.last_status,
                    m.timeout.as_secs()
                ),
            });
        }
        ctx.tick().await?;
        ctx.sleep(POLL).await?;
        info = ctx
            .call(|| ports.tasks.describe(&arn, &m.container))
            .await?;
    }
}

/// Of the tasks found by `startedBy`, follow a running one, else the latest stopped one.
fn pick(mut found: Vec<TaskInfo>) -> Option<TaskInfo> {
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
