//! A web pair with two companion services (worker, scheduler) against the rehearsal stage
//! through the real aws-sdk clients: a release finalizes with all three on the release's
//! image; the green-5xx drill rolls all three back; a worker whose rollout fails (the
//! stage's `rollout_fails` fault: the circuit breaker) rolls the release back; an engine
//! dropped in the middle of the worker's rollout (what `kill -9` leaves) and resumed ends
//! with every service on a task definition the ledger names.

use crate::common;

use glidepath::commands::release::ports_for;
use glidepath::engine::event::{CompanionState, Envelope, Event, Outcome};
use glidepath::engine::ledger::{self, Record};
use glidepath::engine::ports::{Ports, Weights};
use glidepath::engine::run::{self, Finished, ReleaseRequest, ResumeRequest};
use glidepath::exit;
use glidepath::plan::{Companion, CompanionsMove, Plan};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const WORKER: &str = "shop-worker";
const SCHEDULER: &str = "shop-scheduler";

/// The rehearsal plan with a worker and a scheduler (after the worker), quick bakes, no
/// assets, no live watch.
fn plan(moves: CompanionsMove) -> Plan {
    let mut p = common::rehearsal_plan();
    for s in &mut p.steps {
        s.bake = Duration::from_secs(2);
    }
    p.assets = None;
    if let Some(m) = p.migration.as_mut() {
        m.watch = Duration::ZERO;
    }
    let c = |name: &str, service: &str, deps: &[&str]| Companion {
        name: name.into(),
        service: service.into(),
        container: name.into(),
        image: p.deploy.image.clone(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
    };
    p.companions = vec![
        c("worker", WORKER, &[]),
        c("scheduler", SCHEDULER, &["worker"]),
    ];
    p.companions_move = moves;
    p
}

fn drain(rx: &mut UnboundedReceiver<Envelope>) -> Vec<Envelope> {
    let mut events = vec![];
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    events
}

fn story(events: &[Envelope]) -> String {
    events
        .iter()
        .map(glidepath::view::lines::format)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn release(plan: &Plan, ports: &Ports) -> (Finished, Vec<Envelope>) {
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        version: "1.4.0".into(),
        auto_approve: true,
        holder: "alice@ops-1".into(),
        endpoint: None,
    };
    let f = run::release(plan, ports, req, tx, crx).await;
    (f, drain(&mut rx))
}

async fn record(ports: &Ports, id: &str) -> Record {
    ledger::load_record(ports.state.as_ref(), id)
        .await
        .expect("ledger")
        .expect("record")
        .value
}

async fn td(ports: &Ports, service: &str) -> String {
    ports
        .fleet
        .service(service)
        .await
        .expect("service")
        .task_definition
}

/// Every companion back on what it ran before the release, and traffic all blue.
async fn assert_all_back(ports: &Ports, r: &Record, text: &str) {
    assert_eq!(r.companions.len(), 2, "{text}");
    for c in &r.companions {
        assert!(c.rolled_back_at.is_some(), "{}: {text}", c.name);
        assert_eq!(
            td(ports, &c.service).await,
            c.previous,
            "{}: {text}",
            c.name
        );
        let s = ports.fleet.service(&c.service).await.unwrap();
        assert_eq!(s.rollout, "COMPLETED", "{}: {text}", c.name);
    }
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::all_blue());
}

/// Every companion and green on the release's version (image tag 1.4.0).
async fn assert_all_new(ports: &Ports, plan: &Plan, r: &Record, text: &str) {
    let web = td(ports, &plan.green.service).await;
    let image = ports.fleet.image_of(&web, "web").await.unwrap();
    assert!(image.is_some_and(|i| i.ends_with(":1.4.0")), "{text}");
    assert_eq!(r.companions.len(), 2, "{text}");
    for (c, spec) in r.companions.iter().zip(&plan.companions) {
        let now = td(ports, &c.service).await;
        assert_eq!(Some(&now), c.task_definition.as_ref(), "{}: {text}", c.name);
        assert_ne!(now, c.previous, "{}: {text}", c.name);
        let image = ports.fleet.image_of(&now, &spec.container).await.unwrap();
        assert!(
            image.as_deref().is_some_and(|i| i.ends_with(":1.4.0")),
            "{}: {image:?}\n{text}",
            c.name
        );
    }
}

#[tokio::test]
async fn web_worker_and_scheduler_finalize_on_the_new_task_definitions() {
    let seeded = common::seeded_stage("happy", plan(CompanionsMove::AfterFirstGate)).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (f, events) = release(&plan, &ports).await;
    let text = story(&events);
    assert_eq!(f.exit_code, exit::OK, "{}\n{text}", f.message);
    let r = record(&ports, &f.release_id).await;
    assert_all_new(&ports, &plan, &r, &text).await;
    assert_eq!(r.companions[0].name, "worker", "dependency order");
    assert!(text.contains("companion 2/2: scheduler runs"), "{text}");
}

#[tokio::test]
async fn the_green_5xx_drill_rolls_back_all_three() {
    // Companions move before the shift, so the gate that fails at 10 % finds them moved.
    let seeded = common::seeded_stage("green-5xx", plan(CompanionsMove::BeforeShift)).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (f, events) = release(&plan, &ports).await;
    let text = story(&events);
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}\n{text}", f.message);
    assert_eq!(f.outcome, Outcome::RolledBack);
    let r = record(&ports, &f.release_id).await;
    assert!(r.companions.iter().all(|c| c.done_at.is_some()), "{text}");
    assert_all_back(&ports, &r, &text).await;
    assert!(text.contains("companion 1/2: worker back on"), "{text}");
}

#[tokio::test]
async fn a_worker_whose_rollout_fails_rolls_the_release_back() {
    let seeded = common::seeded_stage("happy", plan(CompanionsMove::AfterFirstGate)).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    seeded
        .stage
        .control_post(
            "fault",
            &serde_json::json!({"kind": "rollout_fails", "service": WORKER}),
        )
        .await
        .expect("POST /_stage/fault");
    let scheduler_before = td(&ports, SCHEDULER).await;
    let (f, events) = release(&plan, &ports).await;
    let text = story(&events);
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}\n{text}", f.message);
    assert!(f.message.contains("worker"), "{}", f.message);
    let r = record(&ports, &f.release_id).await;
    assert_eq!(r.companions.len(), 1, "the scheduler never moved: {text}");
    assert!(r.companions[0].failed_at.is_some(), "{text}");
    assert!(r.companions[0].rolled_back_at.is_some(), "{text}");
    assert_eq!(td(&ports, WORKER).await, r.companions[0].previous, "{text}");
    assert_eq!(td(&ports, SCHEDULER).await, scheduler_before, "{text}");
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::all_blue());
    assert!(text.contains("rollout FAILED"), "{text}");
}

#[tokio::test]
async fn an_engine_dropped_during_the_worker_rollout_resumes_consistently() {
    let seeded = common::seeded_stage("happy", plan(CompanionsMove::AfterFirstGate)).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        version: "1.4.0".into(),
        auto_approve: true,
        holder: "alice@ops-1".into(),
        endpoint: None,
    };
    let engine = run::release(&plan, &ports, req, tx, crx);
    // The worker's rollout is under way: drop everything there, as `kill -9` would.
    let mid_rollout = async {
        let mut started = false;
        while let Some(e) = rx.recv().await {
            match e.event {
                Event::Companion {
                    index: 0,
                    state: CompanionState::Started,
                    ..
                } => started = true,
                Event::Progress { ref message, .. }
                    if started
                        && message.as_deref().is_some_and(|m| {
                            m.starts_with(WORKER) && m.contains("IN_PROGRESS")
                        }) =>
                {
                    return
                }
                _ => {}
            }
        }
        panic!("the release ended before the worker's rollout");
    };
    tokio::select! {
        f = engine => panic!("finished before the kill: {}", f.message),
        () = mid_rollout => {}
    }
    drop(ports);
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ResumeRequest {
        auto_approve: true,
        holder: "bob@ops-2".into(),
        endpoint: None,
    };
    let f = run::resume(&plan, &ports, req, tx, crx).await;
    let text = story(&drain(&mut rx));
    assert_eq!(f.exit_code, exit::OK, "{}\n{text}", f.message);
    let r = record(&ports, &f.release_id).await;
    assert_all_new(&ports, &plan, &r, &text).await;
}
