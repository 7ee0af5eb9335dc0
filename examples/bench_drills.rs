//! Rollback latency benchmark (not a test): run the `green-5xx` drill N times (default 20)
//! with a 1 s poll interval and measure, per drill,
//!
//! - fault → blue: from the moment the stage switched the fault on (its own clock) to the
//!   engine's read-back of the listener at 100% blue;
//! - symptom → blue: from the first health poll that showed the fault to that read-back
//!   (goal: ≤ poll interval + 1 s).
//!
//! Run with `scripts/bench-drills [N]`. Prints each drill, then median and max.

use glidepath::engine::event::{Command, Envelope, Event};
use glidepath::engine::run::{release, ReleaseRequest};
use glidepath::plan::{GateMode, Step};
use glidepath::rehearse::stage::{Stage, StageOptions};
use std::time::Duration;
use tokio::sync::mpsc;

const POLL: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let plan_path = std::path::Path::new("examples/rehearsal.toml");
    let mut plan = match glidepath::plan::load(plan_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench-drills: {e}");
            std::process::exit(2);
        }
    };
    plan.steps = vec![
        Step {
            weight: 10,
            bake: Duration::from_secs(20),
            gate: GateMode::Auto,
        },
        Step {
            weight: 100,
            bake: Duration::from_secs(1),
            gate: GateMode::Auto,
        },
    ];
    plan.gates.poll_interval = POLL;
    plan.assets = None;

    let mut fault_to_blue = Vec::new();
    let mut symptom_to_blue = Vec::new();
    println!("drill  fault→blue  symptom→blue  signal");
    for i in 1..=n {
        match one(&plan).await {
            Ok((f, s, signal)) => {
                println!("{i:>5}  {f:>9.2}s  {s:>11.2}s  {signal}");
                fault_to_blue.push(f);
                symptom_to_blue.push(s);
            }
            Err(e) => println!("{i:>5}  failed: {e}"),
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        let median = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
        let max = v.last().copied().unwrap_or(f64::NAN);
        (median, max)
    };
    let (fm, fx) = stats(&mut fault_to_blue);
    let (sm, sx) = stats(&mut symptom_to_blue);
    println!();
    println!(
        "{} drills, poll interval {:.0}s",
        fault_to_blue.len(),
        POLL.as_secs_f64()
    );
    println!("fault start → listener back at 100% blue:  median {fm:.2}s  max {fx:.2}s");
    println!(
        "first symptom poll → back at blue:         median {sm:.2}s  max {sx:.2}s  (goal ≤ {:.1}s)",
        POLL.as_secs_f64() + 1.0
    );
}

/// One drill on a fresh stage: (fault→blue s, first symptom→blue s, failing signal).
async fn one(plan: &glidepath::plan::Plan) -> Result<(f64, f64, String), String> {
    let stage = Stage::start(StageOptions {
        scenario: "green-5xx".into(),
        port: 0,
        tick: Some(0.2),
        ..StageOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let config = glidepath::rehearse::emulator_sdk_config(&stage.endpoint(), &plan.region).await;
    glidepath::rehearse::seed::seed(&config, plan)
        .await
        .map_err(|e| e.to_string())?;
    let (ports, plan) = glidepath::commands::release::ports_for(&config, plan)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
    let (_ctx, crx) = mpsc::unbounded_channel::<Command>();
    let collect = tokio::spawn(async move {
        let mut v = Vec::new();
        while let Some(e) = rx.recv().await {
            v.push(e);
        }
        v
    });
    let req = ReleaseRequest {
        version: "bench".into(),
        auto_approve: true,
        holder: "bench@drills".into(),
        endpoint: Some(stage.endpoint()),
    };
    let finished = release(&plan, &ports, req, tx, crx).await;
    let events = collect.await.map_err(|e| e.to_string())?;
    // The stage's clock now, against the wall clock now, dates the fault's start.
    let state = stage
        .control_get("state")
        .await
        .map_err(|e| e.to_string())?;
    let now = chrono::Utc::now();
    drop(stage);
    if finished.exit_code != glidepath::exit::ROLLED_BACK {
        return Err(format!("expected a rollback, got {finished:?}"));
    }
    let clock = state["clock_s"]
        .as_f64()
        .ok_or("stage state has no clock")?;
    let since = state["faults"]
        .as_array()
        .and_then(|f| f.iter().find_map(|f| f["active_since_s"].as_f64()))
        .ok_or("the fault never started")?;
    let fault_at = now - chrono::Duration::milliseconds(((clock - since) * 1000.0) as i64);

    let blue_at = events
        .iter()
        .rev()
        .find(|e| matches!(e.event, Event::WeightsChanged { blue: 100, .. }))
        .map(|e| e.ts)
        .ok_or("weights never went back to blue")?;
    let (symptom_at, signal) = events
        .iter()
        .find_map(|e| match &e.event {
            Event::Health { sample, .. }
                if sample.green.requests > 0.0
                    && sample.green.error_rate().unwrap_or(0.0)
                        > sample.blue.error_rate().unwrap_or(0.0) + 0.05 =>
            {
                Some(e.ts)
            }
            _ => None,
        })
        .zip(events.iter().find_map(|e| match &e.event {
            Event::GateFailed { signal, .. } => Some(signal.to_string()),
            _ => None,
        }))
        .ok_or("no poll showed the fault")?;
    let secs = |d: chrono::Duration| d.num_milliseconds() as f64 / 1000.0;
    Ok((secs(blue_at - fault_at), secs(blue_at - symptom_at), signal))
}
