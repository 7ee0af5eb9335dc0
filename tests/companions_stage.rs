//! A web pair with two companion services (worker, scheduler) against the rehearsal stage
//! through the real aws-sdk clients: a release finalizes with all three on the release's
//! image; the green-5xx drill rolls all three back; a worker whose rollout fails (the
//! stage's `rollout_fails` fault: the circuit breaker) rolls the release back; an engine
//! dropped in the middle of the worker's rollout (what `kill -9` leaves) and resumed ends
//! with every service on a task definition the ledger names.

use crate::common;
use crate::common::pending;
use crate::common::story;

use glidepath::commands::release::ports_for;
use glidepath::engine::event::{Command, CompanionState, Envelope, Event, Outcome};
use glidepath::engine::ledger::{self, Record};
use glidepath::engine::ports::{Ports, Weights};
use glidepath::engine::run::{self, Finished, ReleaseRequest, ResumeRequest};
use glidepath::exit;
use glidepath::plan::{Companion, CompanionsMove, Plan};
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

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

async fn release(plan: &Plan, ports: &Ports) -> (Finished, Vec<Envelope>) {
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        auto_approve: true,
        ..common::release_request("1.4.0")
    };
    let f = run::release(plan, ports, req, tx, crx).await;
    (f, pending(&mut rx))
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
        auto_approve: true,
        ..common::release_request("1.4.0")
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
    let text = story(&pending(&mut rx));
    assert_eq!(f.exit_code, exit::OK, "{}\n{text}", f.message);
    let r = record(&ports, &f.release_id).await;
    assert_all_new(&ports, &plan, &r, &text).await;
}

/// Move `service` by hand (outside glidepath) onto `task_definition`.
async fn update_by_hand(config: &aws_types::SdkConfig, cluster: &str, service: &str, td: &str) {
    aws_sdk_ecs::Client::new(config)
        .update_service()
        .cluster(cluster)
        .service(service)
        .task_definition(td)
        .send()
        .await
        .expect("UpdateService by hand");
}

/// `glidepath rollback` of a finalized release with companions: traffic back on blue and
/// both companions back on the task definitions they ran before, read back from the stage.
#[tokio::test]
async fn a_rollback_of_the_finalized_release_takes_every_companion_back() {
    let seeded = common::seeded_stage("happy", plan(CompanionsMove::AfterFirstGate)).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let before = [td(&ports, WORKER).await, td(&ports, SCHEDULER).await];
    let (f, events) = release(&plan, &ports).await;
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));
    let (tx, mut rx) = unbounded_channel();
    let back = run::rollback(&plan, &ports, "carol@ops-3", tx).await;
    let text = story(&pending(&mut rx));
    assert_eq!(back.exit_code, exit::OK, "{}\n{text}", back.message);
    let r = record(&ports, &f.release_id).await;
    assert_all_back(&ports, &r, &text).await;
    assert_eq!(
        [td(&ports, WORKER).await, td(&ports, SCHEDULER).await],
        before,
        "{text}"
    );
}

/// The same rollback refused, before anything moves, while the scheduler runs what
/// someone put there by hand; then while the worker's previous task definition is
/// deregistered. Each refusal names the companion, what it runs and what was expected.
#[tokio::test]
async fn a_rollback_of_the_finalized_release_refuses_a_companion_changed_by_hand() {
    let seeded = common::seeded_stage("happy", plan(CompanionsMove::AfterFirstGate)).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (f, events) = release(&plan, &ports).await;
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));
    let r = record(&ports, &f.release_id).await;
    let (worker, scheduler) = (&r.companions[0], &r.companions[1]);
    let scheduler_td = scheduler.task_definition.clone().expect("moved");
    let rollback = || async {
        let (tx, _rx) = unbounded_channel();
        run::rollback(&plan, &ports, "carol@ops-3", tx).await
    };

    // Someone put the scheduler back on its old revision by hand.
    update_by_hand(
        &seeded.config,
        &plan.cluster,
        SCHEDULER,
        &scheduler.previous,
    )
    .await;
    let refused = rollback().await;
    assert_eq!(refused.exit_code, exit::USAGE, "{}", refused.message);
    for part in [
        "companion scheduler",
        SCHEDULER,
        scheduler.previous.as_str(),
        scheduler_td.as_str(),
    ] {
        assert!(
            refused.message.contains(part),
            "{part}: {}",
            refused.message
        );
    }
    let green = Weights::green(100);
    assert_eq!(
        ports.traffic.weights().await.unwrap(),
        green,
        "traffic stays"
    );
    assert_eq!(
        Some(td(&ports, WORKER).await),
        worker.task_definition,
        "the worker stays"
    );

    // Back where the release left it; now the worker's old revision is deregistered.
    update_by_hand(&seeded.config, &plan.cluster, SCHEDULER, &scheduler_td).await;
    aws_sdk_ecs::Client::new(&seeded.config)
        .deregister_task_definition()
        .task_definition(&worker.previous)
        .send()
        .await
        .expect("DeregisterTaskDefinition");
    let refused = rollback().await;
    assert_eq!(refused.exit_code, exit::USAGE, "{}", refused.message);
    for part in ["companion worker", worker.previous.as_str(), "ACTIVE"] {
        assert!(
            refused.message.contains(part),
            "{part}: {}",
            refused.message
        );
    }
    assert_eq!(
        ports.traffic.weights().await.unwrap(),
        green,
        "traffic stays"
    );
    let after = record(&ports, &f.release_id).await;
    assert_eq!(after.outcome, Some(Outcome::Finalized));
    assert!(after.companions.iter().all(|c| c.rollback_at.is_none()));
}

/// Release A moves both companions and is aborted; `unlock --force`; release B finalizes.
/// B put A's companions back first (recorded in A's record), so B records what they really
/// ran before (not A's revisions), and rolling B back puts them on the original ones, read
/// back from the stage.
#[tokio::test]
async fn a_release_superseded_after_a_forced_unlock_has_its_companions_taken_back() {
    let seeded = common::seeded_stage("happy", plan(CompanionsMove::AfterFirstGate)).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let before = [td(&ports, WORKER).await, td(&ports, SCHEDULER).await];
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        auto_approve: true,
        ..common::release_request("1.4.0")
    };
    let engine = run::release(&plan, &ports, req, tx, crx);
    let operator = async move {
        let mut events = vec![];
        while let Some(e) = rx.recv().await {
            if matches!(
                e.event,
                Event::Companion {
                    index: 1,
                    state: CompanionState::Done,
                    ..
                }
            ) {
                let _ = commands.send(Command::Abort);
            }
            events.push(e);
        }
        events
    };
    let (a, events) = tokio::join!(engine, operator);
    assert_eq!(
        a.outcome,
        Outcome::Interrupted,
        "{}\n{}",
        a.message,
        story(&events)
    );
    assert_ne!(td(&ports, WORKER).await, before[0], "A moved the worker");
    let report = run::unlock(&plan, &ports, true, "ops@test")
        .await
        .expect("unlock");
    assert!(report.broken, "{}", report.message);

    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        version: "1.5.0".into(),
        auto_approve: true,
        holder: "bob@ops-2".into(),
        endpoint: None,
    };
    let b = run::release(&plan, &ports, req, tx, crx).await;
    let text = story(&pending(&mut rx));
    assert_eq!(b.exit_code, exit::OK, "{}\n{text}", b.message);
    assert!(text.contains("companion worker"), "B says so\n{text}");
    let ra = record(&ports, &a.release_id).await;
    assert_eq!(ra.outcome, Some(Outcome::Superseded), "{text}");
    assert!(
        ra.companions.iter().all(|c| c.rolled_back_at.is_some()),
        "{text}"
    );
    let rb = record(&ports, &b.release_id).await;
    let previous: Vec<&str> = rb.companions.iter().map(|c| c.previous.as_str()).collect();
    assert_eq!(previous, before, "B recorded what ran before A\n{text}");

    let (tx, mut rx) = unbounded_channel();
    let back = run::rollback(&plan, &ports, "carol@ops-3", tx).await;
    let text = story(&pending(&mut rx));
    assert_eq!(back.exit_code, exit::OK, "{}\n{text}", back.message);
    assert_eq!(
        [td(&ports, WORKER).await, td(&ports, SCHEDULER).await],
        before,
        "{text}"
    );
}
