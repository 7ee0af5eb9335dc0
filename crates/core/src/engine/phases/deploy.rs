//! Deploy: the idle colour runs the new version, healthy, before it gets any traffic.
//!
//! Contract: intent = the new task definition (a revision of the live colour's, with the
//! deploy container's image set to the version) and the live colour's desired count in the
//! ledger → read the target service: only if its task definition or desired count differ,
//! `UpdateService` → wait (plan `deploy.timeout`) until the rollout is COMPLETED, running ==
//! desired and the target group has that many healthy targets → the plan's smoke command,
//! if any, against the test listener (`GREEN_URL`, `GLIDEPATH_VERSION`,
//! `GLIDEPATH_RELEASE`) → done. Before the smoke test, a plan's `traffic.test_listener` is
//! pointed at the colour being released only and read back (a `test_traffic` event says
//! where it forwards): the seeded test listener starts on green, so without this a
//! green → blue release would smoke-test the version it replaces. A failing smoke test is a failed gate: rollback (no user
//! traffic has moved). Resume compares before updating, so it never redeploys.

use super::{shift, Done};
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{Event, Phase, Unit};
use crate::engine::ledger::{GateRecord, GateVerdict};
use crate::gate::Signal;
use chrono::Utc;
use std::time::Duration;
use tokio::time::Instant;

pub const POLL: Duration = Duration::from_secs(1);

/// A gate that failed before any user traffic (index 0, weight 0): saved, then told (a
/// run killed in between must not have said what the ledger never held), then the
/// rollback it asks for.
async fn gate_failed(ctx: &mut Ctx<'_>, signal: Signal, reason: String) -> Stop {
    ctx.rec().gates.push(GateRecord {
        index: 0,
        weight: 0,
        verdict: GateVerdict::Failed,
        reason: Some(reason.clone()),
        at: Utc::now(),
        signal: Some(signal),
        phase: Phase::Deploy,
        waited: None,
    });
    if let Err(stop) = ctx.save().await {
        return stop;
    }
    Stop::Rollback {
        reason,
        by_gate: true,
    }
}

/// The new task definition, registered once and remembered in the ledger.
pub async fn task_definition(ctx: &mut Ctx<'_>) -> Result<String, Stop> {
    if let Some(td) = ctx.record.value.task_definition.clone() {
        return Ok(td);
    }
    let (ports, plan) = (ctx.ports, ctx.plan);
    let live = ctx.colour(ctx.live());
    let live_service = ctx.call(|| ports.fleet.service(&live.service)).await?;
    let image = plan
        .deploy
        .image
        .replace("{version}", &ctx.record.value.version);
    let container = &plan.deploy.container;
    let td = ctx
        .call(|| {
            ports
                .fleet
                .task_definition_with_image(&live_service.task_definition, container, &image)
        })
        .await?;
    ctx.rec().task_definition = Some(td.clone());
    ctx.save().await?;
    Ok(td)
}

/// Point the plan's test listener at the colour being released only, and read it back.
/// Returns the listener (None when the plan has none).
async fn point_test_listener(ctx: &mut Ctx<'_>) -> Result<Option<String>, Stop> {
    let Some(listener) = ctx.plan.traffic.test_listener.clone() else {
        return Ok(None);
    };
    let ports = ctx.ports;
    let colour = ctx.target();
    let want = shift::weights_for(colour, 100);
    let now = ctx.call(|| ports.traffic.test_weights()).await?;
    if now != Some(want) {
        ctx.call(|| ports.traffic.set_test_weights(want)).await?;
    }
    let back = ctx.call(|| ports.traffic.test_weights()).await?;
    if back != Some(want) {
        let shows = back.map_or("no forward weights".to_string(), |w| {
            format!("blue {}% / green {}%", w.blue, w.green)
        });
        return Err(Stop::fail(format!(
            "the test listener {listener} shows {shows} after pointing it at {} only; the smoke test would not check the new version. \
             No user traffic moved; look at the listener, then start the release again",
            colour.name()
        )));
    }
    ctx.emit(Event::TestTraffic {
        listener: listener.clone(),
        colour,
        target_group: ctx.colour(colour).target_group.clone(),
    });
    Ok(Some(listener))
}

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    let ports = ctx.ports;
    let td = task_definition(ctx).await?;
    let target = ctx.colour(ctx.target());
    let desired = match ctx.record.value.desired {
        Some(d) => d,
        None => {
            let live = ctx.colour(ctx.live());
            let d = ctx
                .call(|| ports.fleet.service(&live.service))
                .await?
                .desired;
            ctx.rec().desired = Some(d);
            d
        }
    };
    ctx.intent(Phase::Deploy).await?;

    let now = ctx.call(|| ports.fleet.service(&target.service)).await?;
    if now.task_definition != td || now.desired != desired {
        ctx.call(|| ports.fleet.deploy(&target.service, &td, desired))
            .await?;
    } else {
        ctx.emit(Event::Notice {
            message: format!(
                "{} already runs {td} at {desired} task(s); waiting for it instead of redeploying",
                target.service
            ),
        });
    }

    let deadline = Instant::now() + ctx.plan.deploy.timeout;
    let mut last = String::new();
    loop {
        let svc = ctx.call(|| ports.fleet.service(&target.service)).await?;
        let counts = ctx
            .call(|| ports.fleet.target_counts(&target.target_group))
            .await?;
        let line = format!(
            "{}: rollout {}, {} of {desired} running, {} healthy, {} unhealthy",
            target.service, svc.rollout, svc.running, counts.healthy, counts.unhealthy
        );
        if line != last {
            ctx.emit(Event::Progress {
                phase: Phase::Deploy,
                done: u64::from(counts.healthy).min(desired.max(0) as u64),
                total: desired.max(0) as u64,
                unit: Unit::Tasks,
                message: Some(line.clone()),
            });
            last = line;
        }
        if svc.rollout == "FAILED" {
            return Err(Stop::fail(format!(
                "the rollout of {td} on {} FAILED (ECS gave up); no traffic moved. Look at the service's events, then start the release again",
                target.service
            )));
        }
        if svc.task_definition == td
            && svc.rollout == "COMPLETED"
            && svc.running == desired
            && i64::from(counts.healthy) >= i64::from(desired)
        {
            break;
        }
        if Instant::now() >= deadline {
            // Tasks that run but fail the load balancer's health checks are a verdict on
            // the new version, not a stuck deployment: judge it like any target-health gate
            // (green is scaled back as the plan says, exit 3).
            if svc.rollout == "COMPLETED" && counts.unhealthy > 0 {
                let reason = format!(
                    "target health: {} of {}'s targets are unhealthy after {}s ([deploy].timeout); no traffic moved",
                    counts.unhealthy,
                    target.service,
                    ctx.plan.deploy.timeout.as_secs()
                );
                return Err(gate_failed(ctx, Signal::TargetHealth, reason).await);
            }
            return Err(Stop::fail(format!(
                "{} is not ready after {}s ([deploy].timeout): {last}; no traffic moved. \
                 Fix the service, then `glidepath resume PLAN` or start again",
                target.service,
                ctx.plan.deploy.timeout.as_secs()
            )));
        }
        ctx.tick().await?;
        ctx.sleep(POLL).await?;
    }

    let mut detail = format!(
        "{} runs {td} with {desired} healthy task(s)",
        target.service
    );
    if let Some(listener) = point_test_listener(ctx).await? {
        detail.push_str(&format!(
            "; test listener {listener} → {}",
            ctx.target().name()
        ));
    }
    if let Some(smoke) = ctx.plan.smoke.as_ref() {
        let mut env = vec![
            (
                "GLIDEPATH_VERSION".to_string(),
                ctx.record.value.version.clone(),
            ),
            ("GLIDEPATH_RELEASE".to_string(), ctx.release.clone()),
        ];
        if let Some(url) = &ctx.plan.traffic.test_url {
            env.push(("GREEN_URL".to_string(), url.clone()));
        }
        ctx.emit(Event::Notice {
            message: format!("smoke test: {}", smoke.command.join(" ")),
        });
        if let Err(reason) = ports.smoke.run(&smoke.command, &env, smoke.timeout).await {
            let reason = format!("smoke test failed: {reason}");
            return Err(gate_failed(ctx, Signal::Smoke, reason).await);
        }
        detail.push_str("; smoke test passed");
    }
    Ok(Done::ok(detail))
}
