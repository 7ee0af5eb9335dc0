//! Fault drills: whole releases through the engine against the real stage and the real
//! SDK clients. Every fault scenario must end rolled back (exit 3) with the listener at
//! 100% blue and the reason naming the right signal; `happy` passes every gate; a stage
//! outage mid-bake neither passes the step early nor moves the weights.

use crate::common;

use glidepath::drill::drill_report;
use glidepath::engine::event::{Command, Envelope, Event, Outcome};
use glidepath::engine::ports::Weights;
use glidepath::engine::run::{release, Finished, ReleaseRequest};
use glidepath::gate::Signal;
use glidepath::plan::{GateMode, Plan, Step};
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;

/// The rehearsal plan with short bakes and fast polls, all gates automatic.
fn drill_plan(bakes: &[(u8, u64)]) -> Plan {
    let mut plan = common::rehearsal_plan();
    plan.steps = bakes
        .iter()
        .map(|&(weight, secs)| Step {
            weight,
            bake: Duration::from_secs(secs),
            gate: GateMode::Auto,
        })
        .collect();
    // No assets in drills: they are not what is being drilled, and the dir is relative.
    plan.assets = None;
    // A green that never turns healthy should fail the deploy wait quickly.
    plan.deploy.timeout = Duration::from_secs(15);
    plan
}

struct Drill {
    seeded: common::Seeded,
    finished: Finished,
    events: Vec<Envelope>,
    weights: Weights,
}

/// Run one release of `plan` on a stage playing `scenario`. `during` runs alongside the
/// release with the stage (to inject an outage, say).
async fn drill<F, Fut>(scenario: &str, plan: Plan, during: F) -> Drill
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let seeded = common::seeded_stage(scenario, plan).await;
    let (ports, plan) = glidepath::commands::release::ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("build ports");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_ctx, crx) = mpsc::unbounded_channel::<Command>();
    let collect = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let req = ReleaseRequest {
        version: "drill".into(),
        auto_approve: true,
        holder: "drills@test".into(),
        endpoint: Some(seeded.stage.endpoint()),
    };
    let run = release(&plan, &ports, req, tx, crx);
    let (finished, ()) = tokio::join!(run, during(seeded.stage.endpoint()));
    let events = collect.await.expect("collector");
    let weights = ports.traffic.weights().await.expect("read weights back");
    println!("{}", drill_report(&events));
    Drill {
        seeded,
        finished,
        events,
        weights,
    }
}

fn gate_failures(events: &[Envelope]) -> Vec<(Signal, String)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::GateFailed { signal, reason, .. } => Some((*signal, reason.clone())),
            _ => None,
        })
        .collect()
}

async fn fault_drill(scenario: &str, want: Signal) {
    let d = drill(
        scenario,
        drill_plan(&[(10, 4), (50, 4), (100, 2)]),
        |_| async {},
    )
    .await;
    assert_eq!(
        d.finished.exit_code,
        glidepath::exit::ROLLED_BACK,
        "{scenario}: {:?}\nstage stderr:\n{}",
        d.finished,
        d.seeded.stage.stderr_text()
    );
    assert_eq!(d.finished.outcome, Outcome::RolledBack);
    assert_eq!(
        d.weights,
        Weights::all_blue(),
        "{scenario}: listener read back"
    );
    let failures = gate_failures(&d.events);
    assert!(
        failures.iter().any(|(s, _)| *s == want),
        "{scenario}: expected a {want} gate failure, got {failures:?}"
    );
    // The last weights the engine set are all blue, and green never reached 100%.
    let changes: Vec<(u8, u8)> = d
        .events
        .iter()
        .filter_map(|e| match e.event {
            Event::WeightsChanged { blue, green } => Some((blue, green)),
            _ => None,
        })
        .collect();
    assert_eq!(changes.last(), Some(&(100, 0)), "{scenario}: {changes:?}");
    assert!(changes.iter().all(|&(b, g)| b as u16 + g as u16 == 100));
    assert!(!changes.contains(&(0, 100)), "{scenario}: {changes:?}");
}

#[tokio::test]
async fn green_5xx_rolls_back_on_error_rate() {
    fault_drill("green-5xx", Signal::ErrorRate).await;
}

#[tokio::test]
async fn green_unhealthy_rolls_back_on_target_health() {
    // Unhealthy from the start: the deploy phase's health wait catches it before any user
    // traffic, and that is a target-health gate failure like any other.
    fault_drill("green-unhealthy", Signal::TargetHealth).await;
}

#[tokio::test]
async fn green_slow_rolls_back_on_latency() {
    fault_drill("green-slow", Signal::Latency).await;
}

#[tokio::test]
async fn alarm_fires_rolls_back_on_alarm() {
    fault_drill("alarm-fires", Signal::Alarm).await;
}

#[tokio::test]
async fn happy_passes_every_gate() {
    let plan = drill_plan(&[(10, 3), (50, 3), (100, 2)]);
    let steps = plan.steps.len();
    let d = drill("happy", plan, |_| async {}).await;
    assert_eq!(
        d.finished.exit_code,
        glidepath::exit::OK,
        "{:?}\n{}",
        d.finished,
        d.seeded.stage.stderr_text()
    );
    assert_eq!(d.finished.outcome, Outcome::Finalized);
    assert_eq!(d.weights, Weights::green(100));
    assert!(gate_failures(&d.events).is_empty());
    let passed = d
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::GatePassed { .. }))
        .count();
    assert_eq!(passed, steps);
}

#[tokio::test]
async fn an_outage_mid_bake_neither_passes_the_step_early_nor_moves_weights() {
    const BAKE: u64 = 6;
    const OUTAGE: u64 = 4;
    let plan = drill_plan(&[(10, BAKE), (100, 1)]);
    let d = drill("happy", plan, |endpoint| async move {
        // Wait until the first step is baking, then take the stage down for a while.
        let stage = reqwest_like::Control::new(&endpoint);
        stage.wait_until_green_weight(10).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stage.post("outage", json!({ "seconds": OUTAGE })).await;
    })
    .await;
    assert_eq!(
        d.finished.exit_code,
        glidepath::exit::OK,
        "{:?}",
        d.finished
    );
    let step0 = d
        .events
        .iter()
        .find(|e| matches!(e.event, Event::StepStarted { index: 0, .. }))
        .expect("step 0 started")
        .ts;
    let passed0 = d
        .events
        .iter()
        .find(|e| matches!(e.event, Event::GatePassed { index: 0, .. }))
        .expect("step 0 passed")
        .ts;
    let took = (passed0 - step0).to_std().unwrap_or_default();
    let blind: Vec<&Envelope> = d
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::Blind { .. }))
        .collect();
    assert!(!blind.is_empty(), "the outage was never noticed");
    // Bake time only counts while observed: the outage lengthens the step.
    assert!(
        took >= Duration::from_secs(BAKE + OUTAGE - 2),
        "step 0 passed after {took:?}, bake {BAKE}s + outage {OUTAGE}s"
    );
    // No weight change while blind.
    let (first_blind, last_blind) = (blind[0].ts, blind[blind.len() - 1].ts);
    for e in &d.events {
        if matches!(e.event, Event::WeightsChanged { .. }) {
            assert!(
                e.ts < first_blind || e.ts > last_blind,
                "weights changed during the outage at {}",
                e.ts
            );
        }
    }
}

/// A tiny client for the stage's control endpoint, used while the release owns the stage
/// handle (the `Stage` value is borrowed by the drill).
mod reqwest_like {
    use serde_json::Value;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub struct Control {
        addr: String,
    }

    impl Control {
        pub fn new(endpoint: &str) -> Self {
            let addr = endpoint
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            Control { addr }
        }

        async fn request(&self, method: &str, path: &str, body: Option<Value>) -> Value {
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let mut s = tokio::net::TcpStream::connect(&self.addr)
                .await
                .expect("connect to the stage");
            let req = format!(
                "{method} /_stage/{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.addr,
                body.len()
            );
            s.write_all(req.as_bytes()).await.expect("send");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            let json = out.split("\r\n\r\n").nth(1).unwrap_or("null");
            serde_json::from_str(json).unwrap_or(Value::Null)
        }

        pub async fn post(&self, path: &str, body: Value) -> Value {
            self.request("POST", path, Some(body)).await
        }

        /// Poll the stage's own view of the listener until green has `weight`%.
        pub async fn wait_until_green_weight(&self, weight: u64) {
            for _ in 0..600 {
                let state = self.request("GET", "state", None).await;
                if green_weight(&state) >= weight {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("green never reached {weight}%");
        }
    }

    /// Green's share of the listener in the stage's own state (`target_groups.<name>`).
    fn green_weight(state: &Value) -> u64 {
        state["target_groups"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|tg| tg["colour"] == "green")
            .filter_map(|tg| tg["percent"].as_f64())
            .fold(0.0, f64::max) as u64
    }
}

/// ALB-like timing, sped up: 5 s periods published 3–8 s late, weights reaching traffic 2 s
/// after the change (scenarios `happy-alb` and `green-5xx-alb`). The plan says so, as a
/// production plan would with 60 s and 2 min.
fn alb_plan(bakes: &[(u8, u64)]) -> Plan {
    let mut plan = drill_plan(bakes);
    let g = &mut plan.gates;
    g.poll_interval = Duration::from_secs(2);
    g.max_blind = Duration::from_secs(20);
    g.metric_period = Duration::from_secs(5);
    g.metric_delay = Duration::from_secs(9);
    g.weight_settle = Duration::from_secs(3);
    plan
}

#[tokio::test]
async fn alb_timing_happy_passes_counting_late_periods_once() {
    let d = drill(
        "happy-alb",
        alb_plan(&[(10, 10), (50, 10), (100, 5)]),
        |_| async {},
    )
    .await;
    assert_eq!(
        d.finished.exit_code,
        glidepath::exit::OK,
        "{:?}\n{}",
        d.finished,
        d.seeded.stage.stderr_text()
    );
    assert_eq!(d.weights, Weights::green(100));
    assert!(gate_failures(&d.events).is_empty());
    // Every judged period is a whole 5 s period: the bake grows in steps of 5 s.
    let baked: Vec<f64> = d
        .events
        .iter()
        .filter_map(|e| match e.event {
            Event::Health { baked_s, .. } => Some(baked_s),
            _ => None,
        })
        .collect();
    assert!(!baked.is_empty());
    assert!(
        baked.iter().all(|b| (b / 5.0).fract() == 0.0),
        "bake counts whole periods: {baked:?}"
    );
    // The sequential gate showed its evidence, not only pass/fail.
    assert!(d
        .events
        .iter()
        .any(|e| matches!(&e.event, Event::GateEvidence { evidence } if !evidence.is_empty())));
}

#[tokio::test]
async fn alb_timing_green_5xx_plus_2_points_rolls_back() {
    let d = drill(
        "green-5xx-alb",
        alb_plan(&[(10, 30), (50, 30), (100, 5)]),
        |_| async {},
    )
    .await;
    assert_eq!(
        d.finished.exit_code,
        glidepath::exit::ROLLED_BACK,
        "{:?}\n{}",
        d.finished,
        d.seeded.stage.stderr_text()
    );
    assert_eq!(d.weights, Weights::all_blue());
    let failures = gate_failures(&d.events);
    assert!(
        failures.iter().any(|(s, _)| *s == Signal::ErrorRate),
        "{failures:?}"
    );
}
