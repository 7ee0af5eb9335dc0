//! The health port against the real stage with the real SDK clients: call budget, what each
//! fault scenario looks like in a sample, and what the gate makes of it.

use crate::common;

use glidepath::aws::health::AwsHealth;
use glidepath::engine::ports::{Health, PortError, Weights};
use glidepath::gate::{judge, HealthSample, SequentialGate, Signal, Verdict};
use glidepath::plan::Plan;
use serde_json::json;
use std::time::{Duration, Instant};

/// A seeded stage with green scaled up and given `green_weight`% of the listener.
struct World {
    seeded: common::Seeded,
    health: AwsHealth,
}

async fn world(scenario: &str, plan: Plan, green_weight: u8) -> World {
    let seeded = common::seeded_stage(scenario, plan).await;
    let (ports, resolved) = glidepath::aws::build(&seeded.config, &seeded.plan)
        .await
        .expect("build ports");
    let health = AwsHealth::new(&seeded.config, &resolved, &seeded.plan.gates);
    ports
        .fleet
        .scale(&seeded.plan.green.service, 2)
        .await
        .expect("scale green");
    let green_tg = resolved.green_target_group_arn.clone();
    common::wait_for("green's targets", Duration::from_secs(20), || async {
        let c = ports.fleet.target_counts(&green_tg).await.ok()?;
        (c.healthy + c.unhealthy >= 2).then_some(())
    })
    .await;
    ports
        .traffic
        .set_weights(Weights::green(green_weight))
        .await
        .expect("set weights");
    World { seeded, health }
}

impl World {
    /// Wait until a full `window` of traffic at the new weights has been written.
    async fn settle(&self, window: Duration) {
        tokio::time::sleep(window + Duration::from_millis(1200)).await;
    }

    async fn sample(&self, window: Duration) -> HealthSample {
        self.health
            .sample(window)
            .await
            .unwrap_or_else(|e| panic!("sample: {e}\n{}", self.seeded.stage.stderr_text()))
    }

    /// `n` consecutive 1 s polls, as the engine makes them.
    async fn polls(&self, n: usize) -> Vec<HealthSample> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.sample(Duration::from_secs(1)).await);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        out
    }

    async fn requests(&self) -> serde_json::Value {
        self.seeded.stage.control_get("state").await.unwrap()["requests"].clone()
    }
}

/// The plan's sequential gate fed each poll as one period of a two-step release (as the
/// bake does): the first failure, else the last verdict.
fn sequential(polls: &[HealthSample], plan: &Plan) -> Verdict {
    let mut gate = SequentialGate::new(&plan.gates, 2);
    let mut last = Verdict::NotEnoughData {
        reason: "no poll".into(),
    };
    for p in polls {
        last = gate.observe(0, p).verdict;
        if matches!(last, Verdict::Fail { .. }) {
            break;
        }
    }
    last
}

fn signal(v: &Verdict) -> Option<Signal> {
    match v {
        Verdict::Fail { signal, .. } => Some(*signal),
        _ => None,
    }
}

#[tokio::test]
async fn happy_call_budget_rates_and_pass() {
    let w = world("happy", common::rehearsal_plan(), 10).await;
    let window = Duration::from_secs(5);
    w.settle(window).await;

    // Call budget: one DescribeTargetHealth per target group, one GetMetricData, one
    // DescribeAlarms; nothing else.
    w.seeded
        .stage
        .control_post("reset-counters", &json!({}))
        .await
        .unwrap();
    let s = w.sample(window).await;
    let calls = w.requests().await;
    assert_eq!(
        calls,
        json!({
            "elbv2:DescribeTargetHealth": 2,
            "cloudwatch:GetMetricData": 1,
            "cloudwatch:DescribeAlarms": 1,
        }),
        "one poll's calls"
    );

    // 200 rps split 90/10 over a 5 s window; the stage's counts are Poisson (about ±3 sd).
    println!("happy sample: {s:?}");
    assert_eq!((s.blue.healthy, s.blue.unhealthy), (2, 0));
    assert_eq!((s.green.healthy, s.green.unhealthy), (2, 0));
    assert!((65.0..=140.0).contains(&s.green.requests), "{s:?}");
    assert!((780.0..=1030.0).contains(&s.blue.requests), "{s:?}");
    assert!(s.green.error_rate().unwrap() < 0.02, "{s:?}");
    let (g, b) = (
        s.green.latency_p95_ms.unwrap(),
        s.blue.latency_p95_ms.unwrap(),
    );
    assert!(
        (80.0..200.0).contains(&g) && (80.0..200.0).contains(&b),
        "{s:?}"
    );
    let avg = s.green.latency_avg_ms.unwrap();
    assert!((60.0..110.0).contains(&avg) && avg < g, "{s:?}");
    assert_eq!(s.alarms.len(), 1);
    assert_eq!(s.alarms[0].name, "shop-green-5xx");
    assert_ne!(s.alarms[0].state, "ALARM");

    // The engine's view: 1 s polls, judged together, pass once green has min_requests (20).
    let polls = w.polls(3).await;
    for p in &polls {
        // 20 expected; a 1 s window holds two or three 0.5 s ticks of Poisson counts.
        assert!((5.0..=45.0).contains(&p.green.requests), "1 s poll: {p:?}");
    }
    // Healthy and noisy: the sequential gate must not fail it (the old threshold gate
    // re-tested on such short windows did, about one poll in ten).
    let v = sequential(&polls, &w.seeded.plan);
    assert!(!matches!(v, Verdict::Fail { .. }), "{v:?}");
    assert!(matches!(
        judge(&polls[..0], &w.seeded.plan.gates),
        Verdict::NotEnoughData { .. }
    ));
}

#[tokio::test]
async fn no_alarms_no_describe_alarms() {
    let mut plan = common::rehearsal_plan();
    plan.gates.alarms.clear();
    let w = world("happy", plan, 50).await;
    w.seeded
        .stage
        .control_post("reset-counters", &json!({}))
        .await
        .unwrap();
    let s = w.sample(Duration::from_secs(1)).await;
    assert!(s.alarms.is_empty());
    assert_eq!(
        w.requests().await,
        json!({"elbv2:DescribeTargetHealth": 2, "cloudwatch:GetMetricData": 1})
    );
}

#[tokio::test]
async fn green_5xx_shows_in_the_error_rate_and_fails_the_gate() {
    let w = world("green-5xx", common::rehearsal_plan(), 10).await;
    let window = Duration::from_secs(5);
    w.settle(window).await;
    let s = w.sample(window).await;
    println!("green-5xx sample: {s:?}");
    let (g, b) = (s.green.error_rate().unwrap(), s.blue.error_rate().unwrap());
    // About 100 requests at 30% with the stage's binomial noise: ±3 standard deviations.
    assert!((0.15..=0.45).contains(&g), "green 5xx rate {g}: {s:?}");
    assert!(b < 0.02, "blue 5xx rate {b}: {s:?}");

    let polls = w.polls(2).await;
    match judge(&polls, &w.seeded.plan.gates) {
        Verdict::Fail { signal, reason } => {
            assert_eq!(signal, Signal::ErrorRate);
            assert!(reason.starts_with("green 5xx "), "{reason}");
            println!("green-5xx verdict: {reason}");
        }
        v => panic!("{v:?}"),
    }
}

#[tokio::test]
async fn green_slow_fails_on_latency() {
    let w = world("green-slow", common::rehearsal_plan(), 10).await;
    w.settle(Duration::from_secs(1)).await;
    let polls = w.polls(6).await;
    let last = polls.last().unwrap();
    let (g, b) = (
        last.green.latency_p95_ms.unwrap(),
        last.blue.latency_p95_ms.unwrap(),
    );
    assert!(g > 500.0 && b < 200.0, "p95 green {g} ms, blue {b} ms");
    let v = sequential(&polls, &w.seeded.plan);
    println!("green-slow verdict: {v:?}");
    assert_eq!(signal(&v), Some(Signal::Latency));
}

#[tokio::test]
async fn green_unhealthy_fails_on_target_health() {
    let w = world("green-unhealthy", common::rehearsal_plan(), 10).await;
    let s = w.sample(Duration::from_secs(1)).await;
    assert_eq!((s.green.healthy, s.green.unhealthy), (0, 2), "{s:?}");
    assert_eq!((s.blue.healthy, s.blue.unhealthy), (2, 0), "{s:?}");
    let v = judge(&[s], &w.seeded.plan.gates);
    println!("green-unhealthy verdict: {v:?}");
    assert_eq!(signal(&v), Some(Signal::TargetHealth));
}

#[tokio::test]
async fn alarm_fires_fails_on_the_alarm() {
    let w = world("alarm-fires", common::rehearsal_plan(), 10).await;
    let s = common::wait_for("the alarm", Duration::from_secs(10), || async {
        let s = w.health.sample(Duration::from_secs(1)).await.ok()?;
        s.alarms.iter().any(|a| a.state == "ALARM").then_some(s)
    })
    .await;
    match judge(&[s], &w.seeded.plan.gates) {
        Verdict::Fail { signal, reason } => {
            assert_eq!(signal, Signal::Alarm);
            assert_eq!(reason, "alarm shop-green-5xx in ALARM");
        }
        v => panic!("{v:?}"),
    }
}

#[tokio::test]
async fn an_outage_is_a_transient_error_then_polls_recover() {
    let w = world("happy", common::rehearsal_plan(), 10).await;
    w.seeded
        .stage
        .control_post("outage", &json!({"seconds": 30}))
        .await
        .unwrap();
    let started = Instant::now();
    let err = w.health.sample(Duration::from_secs(1)).await.unwrap_err();
    let took = started.elapsed();
    println!("outage poll failed after {took:?}: {err}");
    assert!(matches!(err, PortError::Transient { .. }), "{err:?}");
    assert!(
        took < Duration::from_secs(5),
        "bounded retries, took {took:?}"
    );
    // Each call was retried (3 attempts), but not forever.
    let calls = w.requests().await;
    let gmd = calls["cloudwatch:GetMetricData"].as_u64().unwrap_or(0);
    assert!((2..=4).contains(&gmd), "{calls}");

    w.seeded
        .stage
        .control_post("outage", &json!({"seconds": 0}))
        .await
        .unwrap();
    let s = w.sample(Duration::from_secs(1)).await;
    assert_eq!(s.green.healthy, 2);
}
