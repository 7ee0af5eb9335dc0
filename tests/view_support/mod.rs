//! Recorded release event sequences for the view tests: each scenario is the prefix of one
//! release, so every snapshot shows a state the engine can really reach.

use glidepath::engine::event::{
    ColourName, CompanionState, Event, Outcome, Phase, PhaseStatus, Unit,
};
use glidepath::gate::{ColourSample, Evidence, Signal, Verdict};
use glidepath::plan::Plan;
use glidepath::view::fixture::{sample, sample_plan, Script};
use glidepath::view::tui::app::Cockpit;
use glidepath::view::tui::CockpitContext;

/// How far the recorded release gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    WaitingForSnapshot,
    MigrationRunning,
    Shifting10,
    GateFailedRollingBack,
    WaitingForApproval,
    Finalized,
    /// After the first gate: the worker on the new version, the scheduler rolling out.
    CompanionsMoving,
}

pub const RELEASE: &str = "shop-staging-20250603-1204";

pub fn context(plan: &Plan, watch_only: bool) -> CockpitContext {
    CockpitContext {
        plan: plan.clone(),
        release_id: RELEASE.into(),
        version: "1.4.0".into(),
        endpoint: plan.endpoint_url.clone(),
        region: plan.region.clone(),
        account: Some("123456789012".into()),
        watch_only,
    }
}

fn healthy_blue() -> ColourSample {
    sample(3, 600.0, 0.002, 110.0)
}

/// Health polls at `weight`% green, all passing, `n` of them, 10 s apart.
fn healthy_polls(s: &mut Script, weight: u8, n: usize, bake_s: f64) {
    for i in 0..n {
        s.wait(10.0);
        let jitter = (i % 3) as f64 * 7.0;
        let green_req = 600.0 * f64::from(weight) / 100.0 + jitter;
        let blue_req = 600.0 * f64::from(100 - weight) / 100.0 + jitter;
        s.health(
            sample(3, blue_req, 0.002, 110.0 + jitter),
            sample(3, green_req, 0.003, 118.0 + jitter),
            Verdict::Pass,
            ((i + 1) as f64 * 10.0).min(bake_s),
            bake_s,
        );
        // A healthy release: the evidence drifts down, far from where it fails the gate
        // (two decimals, so the JSON round trip is exact).
        let drift = 0.75f64.powi(i as i32 + 1);
        let cents = |x: f64| (x * 100.0).round() / 100.0;
        s.push(Event::GateEvidence {
            evidence: evidence(cents(1.5 * drift), cents(0.5 * drift), i as u32 + 1),
        });
    }
}

/// The sequential gate's evidence with alpha 0.01 (thresholds 1/(0.01·0.45)).
pub fn evidence(errors: f64, latency: f64, periods: u32) -> Vec<Evidence> {
    let threshold = 1.0 / (0.01 * 0.45);
    vec![
        Evidence {
            signal: Signal::ErrorRate,
            statistic: errors,
            threshold,
            periods,
            summary: format!(
                "5xx e-value {errors:.2} of 222 (new 0.30 % vs live 0.20 %, {periods} periods)"
            ),
        },
        Evidence {
            signal: Signal::Latency,
            statistic: latency,
            threshold,
            periods,
            summary: format!(
                "latency e-value {latency:.2} of 222 (new/live p95 ×1.07 latest, tolerance ×1.1, {periods} periods)"
            ),
        },
    ]
}

/// The events of one release up to `stage`, for `plan`.
pub fn script(plan: &Plan, stage: Stage) -> Script {
    let mut s = Script::new(RELEASE);
    s.started(plan, "1.4.0");
    s.push(Event::LockAcquired {
        holder: "ana@build-7 (pid 4242)".into(),
    });
    s.phase(Phase::Lock, 0.4, None);
    s.push(Event::PhaseStarted {
        phase: Phase::Snapshot,
    });
    for pct in [0, 15, 45] {
        s.wait(20.0);
        s.push(Event::Progress {
            phase: Phase::Snapshot,
            done: pct,
            total: 100,
            unit: Unit::Percent,
            message: Some("creating shop-db-1-4-0-20250603".into()),
        });
    }
    if stage == Stage::WaitingForSnapshot {
        s.wait(12.0);
        return s;
    }
    s.wait(40.0);
    s.finish(
        Phase::Snapshot,
        PhaseStatus::Done,
        100.0,
        Some("shop-db-1-4-0-20250603"),
    );

    s.push(Event::PhaseStarted {
        phase: Phase::Migrate,
    });
    let arn = "arn:aws:ecs:eu-west-1:000000000000:task/shop/7f3a9c1e2b4d";
    s.push(Event::Task {
        task_arn: arn.into(),
        status: "RUNNING".into(),
        exit_code: None,
    });
    for line in [
        "== 20250601120000 AddOrdersIndex: migrating ====",
        "-- add_index(:orders, [:customer_id, :created_at])",
        "   -> 2.4102s",
        "== 20250601120000 AddOrdersIndex: migrated (2.4105s) ====",
        "== 20250602093000 BackfillSkus: migrating ====",
        "backfilled 10000/42000 rows",
        "backfilled 20000/42000 rows",
    ] {
        s.wait(2.0);
        s.push(Event::Log {
            source: "migrate".into(),
            line: line.into(),
        });
    }
    if stage == Stage::MigrationRunning {
        s.wait(3.0);
        return s;
    }
    s.wait(5.0);
    s.push(Event::Log {
        source: "migrate".into(),
        line: "backfilled 42000/42000 rows; done".into(),
    });
    s.push(Event::Task {
        task_arn: arn.into(),
        status: "STOPPED".into(),
        exit_code: Some(0),
    });
    s.finish(
        Phase::Migrate,
        PhaseStatus::Done,
        21.0,
        Some("7f3a9c1e2b4d"),
    );

    s.push(Event::PhaseStarted {
        phase: Phase::Assets,
    });
    s.push(Event::Progress {
        phase: Phase::Assets,
        done: 40,
        total: 40,
        unit: Unit::Files,
        message: None,
    });
    s.wait(3.0);
    s.finish(
        Phase::Assets,
        PhaseStatus::Done,
        3.0,
        Some("40 files, 12 new"),
    );
    s.phase(Phase::Deploy, 95.0, Some("shop:42"));

    s.push(Event::PhaseStarted {
        phase: Phase::Shift,
    });
    s.push(Event::StepStarted {
        index: 0,
        steps: 3,
        weight: 10,
        bake_s: 60.0,
        manual: false,
        colour: ColourName::Green,
    });
    s.push(Event::WeightsChanged {
        blue: 90,
        green: 10,
    });
    healthy_polls(&mut s, 10, 3, 60.0);
    if stage == Stage::Shifting10 {
        s.wait(4.0);
        return s;
    }
    if stage == Stage::GateFailedRollingBack {
        for (i, rate) in [0.12, 0.31].iter().enumerate() {
            s.wait(10.0);
            let verdict = if i == 0 {
                Verdict::Pass
            } else {
                Verdict::Fail {
                    signal: Signal::ErrorRate,
                    reason: "5xx rate 31.0% vs blue 0.2% (margin 1.0%)".into(),
                }
            };
            s.health(
                healthy_blue(),
                sample(3, 64.0, *rate, 140.0),
                verdict,
                40.0,
                60.0,
            );
            let errors = if i == 0 { 31.0 } else { 410.0 };
            s.push(Event::GateEvidence {
                evidence: evidence(errors, 0.375, 4 + i as u32),
            });
        }
        s.push(Event::GateFailed {
            index: 0,
            weight: 10,
            signal: Signal::ErrorRate,
            reason: "5xx rate 31.0% vs blue 0.2% (margin 1.0%)".into(),
        });
        s.finish(
            Phase::Shift,
            PhaseStatus::Failed,
            52.0,
            Some("gate failed at 10%"),
        );
        s.push(Event::PhaseStarted {
            phase: Phase::Rollback,
        });
        s.push(Event::WeightsChanged {
            blue: 100,
            green: 0,
        });
        s.wait(2.0);
        return s;
    }
    healthy_polls(&mut s, 10, 3, 60.0);
    s.push(Event::GatePassed {
        index: 0,
        weight: 10,
    });
    if stage == Stage::CompanionsMoving {
        companions_moving(&mut s);
        return s;
    }
    s.push(Event::StepStarted {
        index: 1,
        steps: 3,
        weight: 50,
        bake_s: 120.0,
        manual: true,
        colour: ColourName::Green,
    });
    s.push(Event::WeightsChanged {
        blue: 50,
        green: 50,
    });
    healthy_polls(&mut s, 50, 12, 120.0);
    s.push(Event::GateWaiting {
        index: 1,
        weight: 50,
        reason: "baked 2m00s, healthy".into(),
    });
    if stage == Stage::WaitingForApproval {
        s.wait(25.0);
        return s;
    }
    s.wait(40.0);
    s.push(Event::GatePassed {
        index: 1,
        weight: 50,
    });
    s.push(Event::StepStarted {
        index: 2,
        steps: 3,
        weight: 100,
        bake_s: 60.0,
        manual: false,
        colour: ColourName::Green,
    });
    s.push(Event::WeightsChanged {
        blue: 0,
        green: 100,
    });
    healthy_polls(&mut s, 100, 6, 60.0);
    s.push(Event::GatePassed {
        index: 2,
        weight: 100,
    });
    s.finish(Phase::Shift, PhaseStatus::Done, 400.0, None);
    s.phase(Phase::Finalize, 1.5, Some("green is live"));
    s.push(Event::ReleaseFinished {
        outcome: Outcome::Finalized,
        exit_code: 0,
        message: "shop 1.4.0 is live on green".into(),
        snapshot_id: Some("shop-db-1-4-0-20250603".into()),
    });
    s.wait(30.0);
    s
}

/// The companions' events after the first gate (`deploy.companions_move` =
/// `after_first_gate`): the worker rolled out and done, the scheduler half-way.
fn companions_moving(s: &mut Script) {
    let companion = |index, name: &str, state, td: Option<&str>| Event::Companion {
        index,
        companions: 2,
        name: name.into(),
        service: format!("shop-{name}"),
        state,
        task_definition: td.map(str::to_string),
        reason: None,
    };
    let rollout = |s: &mut Script, service: &str, running: u64| {
        s.push(Event::Progress {
            phase: Phase::Shift,
            done: running,
            total: 2,
            unit: Unit::Tasks,
            message: Some(format!(
                "{service}: rollout IN_PROGRESS, {running} of 2 running"
            )),
        });
    };
    s.push(companion(0, "worker", CompanionState::Started, None));
    rollout(s, "shop-worker", 0);
    s.wait(15.0);
    rollout(s, "shop-worker", 1);
    s.wait(15.0);
    s.push(companion(
        0,
        "worker",
        CompanionState::Done,
        Some("shop-worker:8"),
    ));
    s.push(companion(1, "scheduler", CompanionState::Started, None));
    rollout(s, "shop-scheduler", 0);
    s.wait(15.0);
    rollout(s, "shop-scheduler", 1);
    s.wait(5.0);
}

/// A cockpit that has seen the release up to `stage`, its clock at the script's end.
pub fn cockpit_at(plan: &Plan, stage: Stage, watch_only: bool) -> Cockpit {
    let s = script(plan, stage);
    let mut c = Cockpit::new(&context(plan, watch_only), false, s.events()[0].ts);
    for env in s.events() {
        c.apply(env);
    }
    c.tick(s.now());
    c
}

pub fn staging() -> Plan {
    sample_plan(false)
}

pub fn production() -> Plan {
    sample_plan(true)
}
