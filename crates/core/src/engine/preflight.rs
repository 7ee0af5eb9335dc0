//! Preflight: what the gates depend on, checked before the release changes anything (run
//! right before the snapshot, the first phase that mutates).
//!
//! - Every alarm in `gates.alarms` exists. A misspelt alarm would read as missing on every
//!   poll and never fire, so the gate would be blind to it: refused with exit 2.
//! - The ALB metrics of both target groups can be read (one `GetMetricData`): refused with
//!   exit 1 (AWS said no: permissions, wrong load balancer) when they cannot.
//!
//! Read-only; skipped on resume once the snapshot is done (the release already started).

use super::ctx::{Ctx, Stop};
use super::event::Event;

pub async fn run(ctx: &Ctx<'_>) -> Result<(), Stop> {
    let ports = ctx.ports;
    let plan_path = ctx.plan.source.display().to_string();
    let found = ctx
        .try_call(|| ports.health.preflight())
        .await
        .map_err(|e| Stop::Fail {
            cause: crate::exit::Cause::Unexpected,
            message: format!(
                "preflight: the load balancer metrics of the blue and green target groups cannot be read ({e}); \
                 the gates would be blind. Check cloudwatch:GetMetricData permission and the plan's target groups and listener. \
                 Nothing was changed"
            ),
        })?;
    if !found.missing_alarms.is_empty() {
        let names = found
            .missing_alarms
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let one = found.missing_alarms.len() == 1;
        return Err(Stop::Fail {
            cause: crate::exit::Cause::Usage,
            message: format!(
                "preflight: {} {names} named in `gates.alarms` of {plan_path} {} not exist in CloudWatch, so {} never fire. \
                 Fix the name (`aws cloudwatch describe-alarms --alarm-name-prefix ...` lists them), create the alarm, \
                 or remove it from the plan. Nothing was changed",
                if one { "alarm" } else { "alarms" },
                if one { "does" } else { "do" },
                if one { "it would" } else { "they would" },
            ),
        });
    }
    let alarms = ctx.plan.gates.alarms.len();
    ctx.emit(Event::Notice {
        message: format!(
            "preflight: metrics of both target groups readable; {alarms} alarm(s) found"
        ),
    });
    Ok(())
}
