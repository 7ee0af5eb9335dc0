//! Schema changes against the rehearsal stage through the real aws-sdk clients: a migration
//! that breaks the running version (scenario `migration-breaks-live`) stops the release
//! before any deploy or traffic move; with the live watch off the same change finalizes.

use crate::common;
use crate::common::story;

use glidepath::commands::release::ports_for;
use glidepath::engine::event::{Envelope, Event, LiveStage, Outcome};
use glidepath::engine::ports::{Ports, Weights};
use glidepath::engine::run::{self, Finished, ReleaseRequest};
use glidepath::exit;
use glidepath::gate::Verdict;
use glidepath::plan::Plan;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

/// The rehearsal plan with quick bakes, no assets.
fn plan() -> Plan {
    let mut p = common::rehearsal_plan();
    for s in &mut p.steps {
        s.bake = Duration::from_secs(2);
    }
    p.assets = None;
    p
}

async fn release(plan: &Plan, ports: &Ports, version: &str) -> (Finished, Vec<Envelope>) {
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        version: version.into(),
        auto_approve: true,
        holder: "alice@ops-1".into(),
        endpoint: None,
    };
    let f = run::release(plan, ports, req, tx, crx).await;
    let mut events = vec![];
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (f, events)
}

#[tokio::test]
async fn a_migration_that_breaks_the_live_colour_stops_before_any_deploy_with_exit_6() {
    let seeded = common::seeded_stage("migration-breaks-live", plan()).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let green_before = ports.fleet.service(&plan.green.service).await.unwrap();
    // Someone watching the listener the whole time: it never leaves blue.
    let done = AtomicBool::new(false);
    let watcher = async {
        let mut seen = vec![];
        while !done.load(Ordering::SeqCst) {
            seen.push(ports.traffic.weights().await.expect("weights"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        seen
    };
    let engine = async {
        let r = release(&plan, &ports, "1.4.0").await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let ((f, events), seen) = tokio::join!(engine, watcher);
    let text = story(&events);
    assert_eq!(f.exit_code, exit::LIVE_BROKEN, "{}\n{text}", f.message);
    assert_eq!(f.outcome, Outcome::Failed);
    assert!(
        f.message
            .contains("the schema change broke the running version"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("live colour (blue, shop-blue)"),
        "{}",
        f.message
    );
    assert!(seen.iter().all(|w| *w == Weights::all_blue()), "{seen:?}");
    // Nothing deployed: green runs what it ran before.
    let green_after = ports.fleet.service(&plan.green.service).await.unwrap();
    assert_eq!(green_after.task_definition, green_before.task_definition);
    assert_eq!(green_after.desired, green_before.desired);
    assert!(
        !text.contains("deploy    started"),
        "the deploy phase started:\n{text}"
    );
    // The restore point and how to use it.
    let Some(Event::ReleaseFinished { snapshot_id, .. }) = events.last().map(|e| &e.event) else {
        panic!("no release_finished:\n{text}")
    };
    let snap = snapshot_id.clone().expect("snapshot id");
    assert!(
        f.message
            .contains(&format!("--db-snapshot-identifier {snap}")),
        "{}",
        f.message
    );
    assert!(
        events.iter().any(|e| matches!(
            &e.event,
            Event::LiveWatch {
                stage: LiveStage::Watch,
                verdict: Verdict::Fail { .. },
                ..
            }
        )),
        "{text}"
    );
    let st = run::status(&plan, &ports).await.unwrap();
    assert!(st.lock.is_none(), "lock released");
    let h = run::history(&plan, &ports).await.unwrap();
    assert_eq!(h[0].outcome, Some(Outcome::Failed));
}

#[tokio::test]
async fn the_same_break_with_the_watch_off_passes_the_gates_and_finalizes() {
    // What happened before the watch existed: the gate compares green with a blue that the
    // migration broke, green looks fine next to it, and the release finalizes.
    let mut p = plan();
    p.migration.as_mut().unwrap().watch = Duration::ZERO;
    // Next to a blue at 30 % 5xx the last fair step never has "enough data" to catch +2
    // points; the rehearsal plan proceeds after max_wait, so keep that short.
    p.gates.sequential.max_wait = Duration::from_secs(5);
    let seeded = common::seeded_stage("migration-breaks-live", p).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (f, events) = release(&plan, &ports, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));
    assert_eq!(f.outcome, Outcome::Finalized);
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::green(100));
}

async fn contract(plan: &Plan, ports: &Ports) -> (Finished, Vec<Envelope>) {
    let (tx, mut rx) = unbounded_channel();
    let f = glidepath::engine::contract::contract(plan, ports, "dave@ops-4", tx).await;
    let mut events = vec![];
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (f, events)
}

#[tokio::test]
async fn contract_refuses_until_finalized_and_after_then_runs_one_task_and_rollback_is_refused() {
    let mut p = plan();
    // The old colour stays warm, so only the contract stands in the way of a rollback.
    p.rollback.green = glidepath::plan::GreenAfterRollback::Keep;
    let mut task = p.migration.clone().unwrap();
    task.command = vec!["bin/migrate".into(), "contract".into()];
    task.watch = Duration::ZERO;
    let after = Duration::from_secs(4);
    p.contract = Some(glidepath::plan::ContractConfig { task, after });
    let seeded = common::seeded_stage("happy", p).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let usage = |f: &Finished, why: &str| {
        assert_eq!(f.exit_code, exit::USAGE, "{}", f.message);
        assert!(f.message.contains(why), "{}", f.message);
    };

    let (f, _) = contract(&plan, &ports).await;
    usage(&f, "no release is recorded yet");

    // While the release runs, the contract refuses: it is not finalized.
    let during = async {
        common::wait_for(
            "the release in progress",
            Duration::from_secs(60),
            || async {
                let st = run::status(&plan, &ports).await.ok()?;
                st.current.filter(|r| r.phases.migrate.is_done())
            },
        )
        .await;
        contract(&plan, &ports).await.0
    };
    let ((r, events), during) = tokio::join!(release(&plan, &ports, "1.4.0"), during);
    assert_eq!(r.exit_code, exit::OK, "{}\n{}", r.message, story(&events));
    usage(&during, "has not finished");

    // Finalized, but not live for contract.after yet.
    let (f, _) = contract(&plan, &ports).await;
    usage(&f, "has been live for");
    tokio::time::sleep(after).await;
    let (f, events) = contract(&plan, &ports).await;
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));

    // Exactly one contract task, by its startedBy; two tasks in all (with the migration).
    let st = run::history(&plan, &ports).await.unwrap();
    assert!(st[0].contracted_at.is_some());
    let rec = ports
        .state
        .get(&glidepath::engine::ledger::record_key(&r.release_id))
        .await
        .unwrap()
        .unwrap()
        .0;
    let rec: glidepath::engine::ledger::Record = serde_json::from_slice(&rec).unwrap();
    let c = rec.contract.expect("contract recorded");
    let ours = ports.tasks.find_started_by(&c.started_by).await.unwrap();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0].exit_code, Some(0));
    let migration = ports
        .tasks
        .find_started_by(rec.started_by.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(migration.len(), 1);
    assert_ne!(migration[0].arn, ours[0].arn);

    // Rollback to 1.4.0's predecessor would meet a schema it cannot run on: refused.
    let (tx, _rx) = unbounded_channel();
    let back = run::rollback(&plan, &ports, "carol@ops-3", tx).await;
    usage(&back, "the contract migration of release");
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::green(100));
}
