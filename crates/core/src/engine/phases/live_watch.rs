//! The live colour across the migration, and during the shift.
//!
//! Contract. With a `[migration]` whose `watch` is not 0s:
//! - **baseline** (before the migration task is started, never again once recorded): poll
//!   health until the live colour's complete periods cover `migration.watch` with at least
//!   `gates.min_requests` requests, or until `watch + metric_delay + 2 periods + a poll`
//!   has passed (then the baseline is what there is); the baseline goes to the ledger
//!   (`live_baseline`) so a resumed release judges against the same one. A release resumed
//!   after its migration task had started has no baseline: the watch then judges in
//!   absolute terms only, and says so.
//! - **watch** (after the task exited 0, before assets/deploy): poll health and judge the
//!   live colour's periods that overlap the time after the task stopped with
//!   [`crate::gate::live::LiveJudge`] until they cover `migration.watch` (same deadline
//!   rule: then it says it saw less and goes on). Target health and alarms are judged on
//!   every poll. A failure stops the release with `Cause::LiveBroken` (exit 6): nothing was
//!   deployed, no traffic moved, and the message says the schema change broke the running
//!   version, with the snapshot and the command that restores it to a new database.
//!
//! During the shift a [`LiveGuard`] judges the live colour's periods against the same
//! baseline (without one, only by the guard rails that need none: a catastrophic 5xx rate,
//! no healthy target; alarms are left out, since they may be the new colour's): when the live colour is broken in its own terms the gate's comparison with it
//! means little and a rollback would send everyone to it, so it warns (once) in every view
//! and records it; `phases::rollback` repeats the warning when it sends traffic there.
//! Polls here never advance a step's bake (the bake ignores periods from before its
//! weights were set).

use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{Event, LiveStage};
use crate::engine::ports::{Poll, PortError};
use crate::exit::Cause;
use crate::gate::live::{LiveBaseline, LiveJudge};
use crate::gate::{ColourSample, Verdict};
use crate::plan::DatabaseKind;
use std::time::Duration;
use tokio::time::Instant;

/// The live colour's side of a sample.
fn live_of(ctx: &Ctx<'_>, s: &crate::gate::HealthSample) -> ColourSample {
    match ctx.live() {
        crate::engine::event::ColourName::Blue => s.blue.clone(),
        crate::engine::event::ColourName::Green => s.green.clone(),
    }
}

/// How long a baseline or a watch may take before it goes on with what it saw.
fn deadline_for(ctx: &Ctx<'_>, watch: Duration) -> Duration {
    let g = &ctx.plan.gates;
    watch + g.metric_delay + g.metric_period * 2 + g.poll_interval
}

fn watch_of(ctx: &Ctx<'_>) -> Duration {
    ctx.plan
        .migration
        .as_ref()
        .map_or(Duration::ZERO, |m| m.watch)
}

fn poll_every(ctx: &Ctx<'_>) -> Duration {
    ctx.plan.gates.poll_interval.max(Duration::from_millis(100))
}

/// Take the live colour's baseline before the migration (see the module doc).
pub async fn baseline(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let watch = watch_of(ctx);
    if watch.is_zero() || ctx.record.value.live_baseline.is_some() {
        return Ok(());
    }
    let ports = ctx.ports;
    let stat = ctx.plan.gates.latency_stat;
    let min_requests = ctx.plan.gates.min_requests as f64;
    let deadline = Instant::now() + deadline_for(ctx, watch);
    let mut b = LiveBaseline::default();
    let mut observed = Duration::ZERO;
    let mut blind: Option<PortError> = None;
    loop {
        ctx.tick().await?;
        match ports.health.poll().await {
            Ok(p) => {
                b.set_instant(&live_of(ctx, &p.now), &p.now.alarms);
                for ps in &p.periods {
                    let c = live_of(ctx, &ps.sample);
                    if ps.correction {
                        b.requests += c.requests.max(0.0).round();
                        b.errors_5xx += c.errors_5xx.max(0.0).round();
                    } else {
                        b.add(&c, stat);
                        observed += ps.length;
                    }
                }
            }
            Err(e) => blind = Some(e),
        }
        let enough = observed >= watch && b.requests >= min_requests;
        if enough || Instant::now() >= deadline {
            break;
        }
        ctx.sleep(poll_every(ctx)).await?;
    }
    let colour = ctx.live();
    let mut summary = format!(
        "baseline of the live colour ({}) before the migration: {}",
        colour.name(),
        b.describe()
    );
    if b.requests < min_requests {
        summary.push_str(&format!(
            "; fewer than {} requests, so the watch after the migration leans on absolute terms{}",
            min_requests,
            blind
                .map(|e| format!(" (health could not be read: {e})"))
                .unwrap_or_default()
        ));
    }
    ctx.emit(Event::LiveWatch {
        colour,
        stage: LiveStage::Baseline,
        verdict: Verdict::Pass,
        summary,
        evidence: Vec::new(),
        watched_s: observed.as_secs_f64(),
        watch_s: watch.as_secs_f64(),
    });
    ctx.rec().live_baseline = Some(b);
    ctx.save().await
}

/// Watch the live colour after the migration; Ok(detail) when it stayed healthy (or was
/// not watched), `Stop::Fail` with `Cause::LiveBroken` when the schema change broke it.
pub async fn watch(ctx: &mut Ctx<'_>) -> Result<String, Stop> {
    let watch = watch_of(ctx);
    if watch.is_zero() {
        return Ok("live colour not watched (migration.watch = 0s)".into());
    }
    let colour = ctx.live();
    let baseline = match ctx.record.value.live_baseline.clone() {
        Some(b) => b,
        None => {
            ctx.emit(Event::Warning {
                message: format!(
                    "no baseline of the live colour ({}) from before the migration (the release was resumed after the task started); \
                     the watch judges it in absolute terms only",
                    colour.name()
                ),
            });
            LiveBaseline::default()
        }
    };
    let ports = ctx.ports;
    let mut judge = LiveJudge::new(&ctx.plan.gates, baseline);
    let deadline = Instant::now() + deadline_for(ctx, watch);
    let mut from: Option<i64> = None;
    let mut observed = Duration::ZERO;
    let mut blind_told = false;
    loop {
        ctx.tick().await?;
        match ports.health.poll().await {
            Ok(p) => {
                let f = *from.get_or_insert_with(|| first_period(&p, ctx));
                if let Some(v) = judge_poll(ctx, &mut judge, &p, f, &mut observed) {
                    return Err(broken(ctx, &judge, v));
                }
                ctx.emit(Event::LiveWatch {
                    colour,
                    stage: LiveStage::Watch,
                    verdict: Verdict::Pass,
                    summary: judge.summary(),
                    evidence: judge.evidence(),
                    watched_s: observed.as_secs_f64(),
                    watch_s: watch.as_secs_f64(),
                });
            }
            Err(e) if !blind_told => {
                blind_told = true;
                ctx.emit(Event::Warning {
                    message: format!("cannot read the live colour's health after the migration ({e}); still watching"),
                });
            }
            Err(_) => {}
        }
        if observed >= watch {
            return Ok(format!(
                "live colour {} healthy after the migration ({})",
                colour.name(),
                judge.summary()
            ));
        }
        if Instant::now() >= deadline {
            let message = format!(
                "the live colour ({}) was watched for only {:.0}s of the {:.0}s migration.watch after the migration ({}); going on",
                colour.name(),
                observed.as_secs_f64(),
                watch.as_secs_f64(),
                judge.summary()
            );
            ctx.emit(Event::Warning {
                message: message.clone(),
            });
            return Ok(message);
        }
        ctx.sleep(poll_every(ctx)).await?;
    }
}

/// The start of the metric period in progress at the first poll after the task stopped:
/// periods from there on are after the migration.
fn first_period(p: &Poll, ctx: &Ctx<'_>) -> i64 {
    let period = (ctx.plan.gates.metric_period.as_secs() as i64).max(1);
    p.at.div_euclid(period) * period - period
}

/// Feed one poll to the judge: target health and alarms, then every period from `from`.
fn judge_poll(
    ctx: &Ctx<'_>,
    judge: &mut LiveJudge,
    p: &Poll,
    from: i64,
    observed: &mut Duration,
) -> Option<Verdict> {
    let now = live_of(ctx, &p.now);
    if let Some(v) = judge.check_instant(&now, &p.now.alarms) {
        return Some(v);
    }
    for ps in p.periods.iter().filter(|ps| ps.start >= from) {
        let mut c = live_of(ctx, &ps.sample);
        if ps.correction {
            // Late counts add evidence, not time, and carry no latency.
            c.latency_avg_ms = None;
            c.latency_p95_ms = None;
        } else {
            *observed += ps.length;
        }
        // Target counts and alarms were judged above, from the poll itself.
        c.healthy = now.healthy;
        c.unhealthy = now.unhealthy;
        let j = judge.observe(&c, &p.now.alarms);
        if let Verdict::Fail { .. } = j.verdict {
            return Some(j.verdict);
        }
    }
    None
}

/// The stop when the migration broke the live colour: said plainly, with the way back.
fn broken(ctx: &Ctx<'_>, judge: &LiveJudge, v: Verdict) -> Stop {
    let colour = ctx.live();
    let reason = match &v {
        Verdict::Fail { signal, reason } => format!("{signal}: {reason}"),
        other => format!("{other:?}"),
    };
    ctx.emit(Event::LiveWatch {
        colour,
        stage: LiveStage::Watch,
        verdict: v,
        summary: judge.summary(),
        evidence: judge.evidence(),
        watched_s: 0.0,
        watch_s: watch_of(ctx).as_secs_f64(),
    });
    let db = &ctx.plan.database;
    let restore = match &ctx.record.value.snapshot_id {
        Some(snap) => {
            let cmd = match db.kind {
                DatabaseKind::Instance => format!(
                    "aws rds restore-db-instance-from-db-snapshot --db-instance-identifier {}-restored --db-snapshot-identifier {snap}",
                    db.id
                ),
                DatabaseKind::Cluster => format!(
                    "aws rds restore-db-cluster-from-snapshot --db-cluster-identifier {}-restored --snapshot-identifier {snap} --engine <engine of {}>",
                    db.id, db.id
                ),
            };
            format!(
                "The database keeps the new schema. To get the data as it was before the migration, restore snapshot {snap} to a new database (the live one is not touched): `{cmd}`; or roll the schema forward with a fix"
            )
        }
        None => "The database keeps the new schema; no snapshot was recorded".into(),
    };
    Stop::Fail {
        cause: Cause::LiveBroken,
        message: format!(
            "the schema change broke the running version: after the migration the live colour ({}, {}) failed its own health check ({reason}; before the migration: {}). \
             Nothing was deployed and no traffic moved. {restore}",
            colour.name(),
            ctx.colour(colour).service,
            judge.baseline().describe()
        ),
    }
}

/// The live colour judged in its own terms during the shift (see the module doc).
pub struct LiveGuard {
    judge: Option<LiveJudge>,
    told: bool,
}

impl LiveGuard {
    /// A guard against the recorded baseline; without one (no migration watch) only the
    /// guard rails that need no baseline (catastrophic 5xx, no healthy target) judge.
    pub fn new(ctx: &Ctx<'_>) -> LiveGuard {
        let gates = &ctx.plan.gates;
        LiveGuard {
            judge: Some(match ctx.record.value.live_baseline.clone() {
                Some(b) => LiveJudge::new(gates, b),
                None => LiveJudge::guard_rails_only(gates),
            }),
            told: ctx.record.value.live_unhealthy.is_some(),
        }
    }

    /// Judge one poll of the shift; the first failure is warned about and recorded.
    pub async fn on_poll(&mut self, ctx: &mut Ctx<'_>, p: &Poll) -> Result<(), Stop> {
        let Some(judge) = self.judge.as_mut() else {
            return Ok(());
        };
        if self.told {
            return Ok(());
        }
        let now = live_of(ctx, &p.now);
        // Alarms name no colour: during the shift one may be the new colour's doing.
        let mut failed = judge.check_instant(&now, &[]);
        for ps in &p.periods {
            if failed.is_some() {
                break;
            }
            let mut c = live_of(ctx, &ps.sample);
            c.healthy = now.healthy;
            c.unhealthy = now.unhealthy;
            if ps.correction {
                c.latency_avg_ms = None;
                c.latency_p95_ms = None;
            }
            let j = judge.observe(&c, &[]);
            if matches!(j.verdict, Verdict::Fail { .. }) {
                failed = Some(j.verdict);
            }
        }
        let Some(Verdict::Fail { signal, reason }) = failed else {
            return Ok(());
        };
        self.told = true;
        let colour = ctx.live();
        let message = format!(
            "the live colour ({}) is unhealthy in its own terms ({signal}: {reason}); the gate compares the new colour with a broken yardstick, \
             and a rollback would send all traffic to it",
            colour.name()
        );
        ctx.emit(Event::LiveWatch {
            colour,
            stage: LiveStage::Shift,
            verdict: Verdict::Fail {
                signal,
                reason: reason.clone(),
            },
            summary: judge.summary(),
            evidence: judge.evidence(),
            watched_s: 0.0,
            watch_s: 0.0,
        });
        ctx.emit(Event::Warning {
            message: message.clone(),
        });
        ctx.rec().live_unhealthy = Some(message);
        ctx.save().await
    }
}
