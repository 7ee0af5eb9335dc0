//! Metric timing: bake time counts complete metric periods (fake world, paused time), and
//! the preflight refuses a plan whose alarms do not exist before anything changes (fake and
//! stage).

use crate::common;

use glidepath::commands::release::ports_for;
use glidepath::engine::event::{Envelope, Event, Outcome, Phase};
use glidepath::engine::fake::FakeWorld;
use glidepath::engine::ports::Weights;
use glidepath::engine::run::{self, Finished, ReleaseRequest};
use glidepath::exit;
use glidepath::plan::Plan;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// Production-like timing: 60 s periods published up to 2 min late, polled every 30 s,
/// one 5 min step then 100%.
fn alb_plan() -> Plan {
    let mut p = common::engine_plan();
    p.steps.truncate(1);
    p.steps[0].bake = s(300);
    p.steps.push(glidepath::plan::Step {
        weight: 100,
        bake: s(0),
        gate: glidepath::plan::GateMode::Auto,
    });
    let g = &mut p.gates;
    g.poll_interval = s(30);
    g.max_blind = s(180);
    g.metric_period = s(60);
    g.metric_delay = s(120);
    g.weight_settle = s(10);
    // These tests are about which periods count and when, not about the statistics: the
    // threshold judge passes as soon as a period has traffic, so timings stay exact.
    g.sequential.mode = glidepath::plan::JudgeMode::Threshold;
    p
}

/// A release with an operator who never speaks; returns the fake clock (Unix s) at each
/// event, with the events.
async fn release(world: &FakeWorld, plan: &Plan) -> (Finished, Vec<(i64, Event)>) {
    let ports = world.ports(true);
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (_commands, crx) = unbounded_channel();
    let engine = run::release(plan, &ports, common::release_request("1.4.0"), tx, crx);
    let watcher = async {
        let mut seen = vec![];
        while let Some(e) = rx.recv().await {
            seen.push((world.with(|w| w.now_secs()), e.event));
        }
        seen
    };
    tokio::join!(engine, watcher)
}

/// Fake-clock seconds from step 1's start to its pass.
fn step1(events: &[(i64, Event)]) -> i64 {
    let at = |f: &dyn Fn(&Event) -> bool| {
        events
            .iter()
            .find(|(_, e)| f(e))
            .map(|(t, _)| *t)
            .expect("event")
    };
    let start = at(&|e| matches!(e, Event::StepStarted { index: 0, .. }));
    let pass = at(&|e| matches!(e, Event::GatePassed { index: 0, .. }));
    pass - start
}

#[tokio::test(start_paused = true)]
async fn bake_time_counts_complete_periods_not_wall_time() {
    let plan = alb_plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release(&world, &plan).await;
    assert_eq!(f.outcome, Outcome::Finalized, "{}", f.message);
    let took = step1(&events);
    // 5 periods after the settle: the first whole minute after +10 s, then 5 minutes of
    // periods, the last readable 2 minutes after it ended; polls every 30 s.
    assert!((420..=560).contains(&took), "step 1 took {took}s");
    // Every Health event of the step is one period; the baked time grows by 60 s each.
    let baked: Vec<f64> = events
        .iter()
        .take_while(|(_, e)| !matches!(e, Event::GatePassed { index: 0, .. }))
        .filter_map(|(_, e)| match e {
            Event::Health { baked_s, .. } => Some(*baked_s),
            _ => None,
        })
        .collect();
    assert_eq!(baked, vec![60.0, 120.0, 180.0, 240.0, 300.0], "{baked:?}");
}

#[tokio::test(start_paused = true)]
async fn a_late_publication_delays_the_pass() {
    let plan = alb_plan();
    let on_time = FakeWorld::for_plan(&plan);
    let (f, events) = release(&on_time, &plan).await;
    assert_eq!(f.outcome, Outcome::Finalized, "{}", f.message);
    let normal = step1(&events);

    let late = FakeWorld::for_plan(&plan);
    // CloudWatch runs a minute behind the plan's metric_delay (within the grace: the
    // periods are waited for, not counted as empty).
    late.with(|w| w.publish_delay = s(180));
    let (f, events) = release(&late, &plan).await;
    assert_eq!(f.outcome, Outcome::Finalized, "{}", f.message);
    let delayed = step1(&events);
    assert!(
        (30..=90).contains(&(delayed - normal)),
        "on time {normal}s, late {delayed}s"
    );
    let step1_health = events
        .iter()
        .take_while(|(_, e)| !matches!(e, Event::GatePassed { index: 0, .. }))
        .filter(|(_, e)| matches!(e, Event::Health { .. }))
        .count();
    assert_eq!(step1_health, 5, "each period once, however late");
}

#[tokio::test(start_paused = true)]
async fn silent_metrics_are_told_not_waited_on_silently() {
    let plan = alb_plan();
    let world = FakeWorld::for_plan(&plan);
    // Nothing is published for an hour: the bake must say what it waits for.
    world.with(|w| w.publish_delay = s(3600));
    let ports = world.ports(true);
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (commands, crx) = unbounded_channel();
    let engine = run::release(&plan, &ports, common::release_request("1.4.0"), tx, crx);
    let operator = async {
        let mut notices = vec![];
        while let Some(e) = rx.recv().await {
            if let Event::Notice { message } = &e.event {
                if message.contains("no new metric period") {
                    notices.push(message.clone());
                    // Told; stop the release here.
                    let _ = commands.send(glidepath::engine::event::Command::Abort);
                }
            }
        }
        notices
    };
    let (f, notices) = tokio::join!(engine, operator);
    assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("expected by"), "{}", notices[0]);
    assert!(notices[0].contains("metric_delay"), "{}", notices[0]);
}

#[tokio::test(start_paused = true)]
async fn a_missing_alarm_is_refused_before_anything_changes() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.alarms.clear());
    let (f, events) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::USAGE, "{}", f.message);
    assert!(f.message.contains("`shop-green-5xx`"), "{}", f.message);
    assert!(f.message.contains("Nothing was changed"), "{}", f.message);
    world.with(|w| {
        assert!(w.snapshots.is_empty(), "no snapshot");
        assert!(w.weight_history.is_empty());
        assert_eq!(w.run_task_calls, 0);
    });
    assert!(!events.iter().any(|(_, e)| matches!(
        e,
        Event::PhaseStarted {
            phase: Phase::Migrate
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn unreadable_metrics_are_refused_before_anything_changes() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.fatal
            .insert("health.preflight".into(), "AccessDenied".into())
    });
    let (f, _) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::UNEXPECTED, "{}", f.message);
    assert!(f.message.contains("metrics"), "{}", f.message);
    world.with(|w| assert!(w.snapshots.is_empty()));
}

/// On the stage: a plan naming an alarm that does not exist is refused before the snapshot.
#[tokio::test]
async fn stage_refuses_a_misspelt_alarm_before_the_snapshot() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let mut plan = seeded.plan.clone();
    plan.gates.alarms = vec!["shop-green-5xx".into(), "shop-gren-5xx".into()];
    let (ports, plan) = ports_for(&seeded.config, &plan).await.expect("ports");
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        version: "1.4.0".into(),
        auto_approve: true,
        holder: "alice@ops-1".into(),
        endpoint: None,
    };
    let f = run::release(&plan, &ports, req, tx, crx).await;
    let mut events = vec![];
    while let Ok(e) = rx.try_recv() {
        events.push(e.event);
    }
    assert_eq!(f.exit_code, exit::USAGE, "{}", f.message);
    assert!(f.message.contains("`shop-gren-5xx`"), "{}", f.message);
    assert!(!f.message.contains("`shop-green-5xx`"), "{}", f.message);
    let rds = aws_sdk_rds::Client::new(&seeded.config);
    let snaps = rds
        .describe_db_snapshots()
        .send()
        .await
        .expect("DescribeDBSnapshots");
    // moto takes an automated snapshot when the instance is created; ours would be manual.
    let ours: Vec<_> = snaps
        .db_snapshots()
        .iter()
        .filter(|s| s.snapshot_type() != Some("automated"))
        .collect();
    assert!(ours.is_empty(), "no snapshot: {ours:?}");
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::all_blue());
    assert!(!events.iter().any(|e| matches!(
        e,
        Event::PhaseStarted {
            phase: Phase::Migrate
        }
    )));
}

/// On the stage, through the real adapter: polls report complete 1 s periods, each once,
/// without gaps, and never one that is not complete yet.
#[tokio::test]
async fn stage_polls_report_each_complete_period_once() {
    use glidepath::aws::health::AwsHealth;
    use glidepath::engine::ports::Health;
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let (_ports, resolved) = glidepath::aws::build(&seeded.config, &seeded.plan)
        .await
        .expect("build ports");
    let health = AwsHealth::new(&seeded.config, &resolved, &seeded.plan.gates);
    let mut starts = vec![];
    let mut requests = 0.0;
    for i in 0..4 {
        let p = health
            .poll()
            .await
            .unwrap_or_else(|e| panic!("poll: {e}\n{}", seeded.stage.stderr_text()));
        assert_eq!(
            p.now.blue.requests, 0.0,
            "the instant part carries no metrics"
        );
        for ps in &p.periods {
            assert!(!ps.correction, "{ps:?}");
            assert_eq!(ps.length, s(1));
            assert!(
                ps.start + 2 <= p.at,
                "period {} not complete at {}",
                ps.start,
                p.at
            );
            if i > 0 {
                starts.push(ps.start);
                requests += ps.sample.blue.requests;
            }
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    assert!(starts.len() >= 5, "{starts:?}");
    assert!(
        starts.windows(2).all(|w| w[1] == w[0] + 1),
        "each period once, none skipped: {starts:?}"
    );
    // The stage sends 200 rps, all to blue.
    let rps = requests / starts.len() as f64;
    assert!((150.0..=250.0).contains(&rps), "{rps} rps over {starts:?}");
}
