//! One test per kind of ending: what each leaves in the record, the index and the lock,
//! and that `release_finished` and the returned `Finished` agree with the exit table.

use crate::common;
use crate::common::drain;
use crate::common::release_with_operator;

use glidepath::engine::event::{Command, Event, Outcome};
use glidepath::engine::fake::{healthy_sample, FakeWorld};
use glidepath::engine::ledger::{self, Index, Record};
use glidepath::engine::lock;
use glidepath::engine::run::{self, Finished, ResumeRequest};
use glidepath::exit::{self, Cause};
use glidepath::plan::Plan;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

async fn release(world: &FakeWorld, plan: &Plan) -> (Finished, Vec<Event>) {
    release_with_operator(world, plan, "1.4.0", |_| None).await
}

async fn resume(world: &FakeWorld, plan: &Plan) -> (Finished, Vec<Event>) {
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let req = ResumeRequest {
        auto_approve: false,
        holder: "bob@ops-2".into(),
        endpoint: None,
    };
    let f = run::resume(plan, &ports, req, tx, crx).await;
    (f, drain(rx))
}

fn index(world: &FakeWorld) -> Index {
    world.with(|w| {
        w.objects
            .get(ledger::INDEX_KEY)
            .map(|(b, _)| serde_json::from_slice(b).unwrap())
            .unwrap_or_default()
    })
}

fn raw_record(world: &FakeWorld, id: &str) -> Option<Vec<u8>> {
    world.with(|w| {
        w.objects
            .get(&ledger::record_key(id))
            .map(|(b, _)| b.clone())
    })
}

fn record(world: &FakeWorld, id: &str) -> Record {
    serde_json::from_slice(&raw_record(world, id).expect("record")).unwrap()
}

fn lock_held(world: &FakeWorld) -> bool {
    world.with(|w| w.objects.contains_key(lock::LOCK_KEY))
}

/// `release_finished` is last and says what `Finished` says; the code is the table's.
fn agrees(f: &Finished, events: &[Event]) {
    agrees_for(exit::Process::Release, f, events)
}

fn agrees_for(process: exit::Process, f: &Finished, events: &[Event]) {
    let Some(Event::ReleaseFinished {
        outcome,
        exit_code,
        message,
        ..
    }) = events.last()
    else {
        panic!("last event: {:?}", events.last());
    };
    assert_eq!(
        (*outcome, *exit_code, message),
        (f.outcome, f.exit_code, &f.message)
    );
    assert_eq!(
        f.exit_code,
        exit::code_for(process, f.outcome, f.cause),
        "{}",
        f.message
    );
}

/// The record holds the ending and the index no longer names it current.
fn closed(world: &FakeWorld, f: &Finished) {
    let r = record(world, &f.release_id);
    assert_eq!(r.outcome, Some(f.outcome), "{}", f.message);
    assert_eq!(r.cause, Some(f.cause));
    assert_eq!(r.exit_code, Some(f.exit_code));
    assert!(r.finished_at.is_some());
    let ix = index(world);
    assert_eq!(ix.current, None);
    let entry = ix.releases.iter().find(|e| e.id == f.release_id).unwrap();
    assert_eq!(entry.outcome, Some(f.outcome));
    assert!(!lock_held(world), "lock released");
}

#[tokio::test(start_paused = true)]
async fn ending_finalized() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release(&world, &plan).await;
    assert_eq!((f.outcome, f.cause), (Outcome::Finalized, Cause::Done));
    assert_eq!(f.exit_code, exit::OK);
    agrees(&f, &events);
    closed(&world, &f);
    assert_eq!(
        index(&world).live.unwrap().release.as_deref(),
        Some(f.release_id.as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn ending_gate_rollback() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        for _ in 0..9 {
            w.health_script.push_back(Ok(healthy_sample()));
        }
        let mut bad = healthy_sample();
        bad.green.unhealthy = 1;
        w.health_script.push_back(Ok(bad));
    });
    let (f, events) = release(&world, &plan).await;
    assert_eq!(
        (f.outcome, f.cause),
        (Outcome::RolledBack, Cause::GateFailed)
    );
    assert_eq!(f.exit_code, exit::ROLLED_BACK);
    agrees(&f, &events);
    closed(&world, &f);
    assert!(record(&world, &f.release_id).rollback_by_gate);
}

#[tokio::test(start_paused = true)]
async fn ending_operator_rollback() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release_with_operator(&world, &plan, "1.4.0", |e| {
        matches!(e, Event::StepStarted { index: 1, .. }).then_some(Command::Rollback)
    })
    .await;
    assert_eq!(
        (f.outcome, f.cause),
        (Outcome::RolledBack, Cause::OperatorRollback)
    );
    assert_eq!(f.exit_code, exit::ROLLED_BACK);
    agrees(&f, &events);
    closed(&world, &f);
}

#[tokio::test(start_paused = true)]
async fn ending_migration_failure() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.migration_exit = 1);
    let (f, events) = release(&world, &plan).await;
    assert_eq!(
        (f.outcome, f.cause),
        (Outcome::Failed, Cause::MigrationFailed)
    );
    assert_eq!(f.exit_code, exit::MIGRATION_FAILED);
    assert!(f.message.contains("restore point"), "{}", f.message);
    agrees(&f, &events);
    closed(&world, &f);
}

#[tokio::test(start_paused = true)]
async fn ending_abort_keeps_the_lock_and_notes_the_interruption() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release_with_operator(&world, &plan, "1.4.0", |e| {
        matches!(e, Event::StepStarted { index: 1, .. }).then_some(Command::Abort)
    })
    .await;
    assert_eq!(
        (f.outcome, f.cause),
        (Outcome::Interrupted, Cause::Interrupted)
    );
    assert_eq!(f.exit_code, exit::UNEXPECTED);
    agrees(&f, &events);
    let r = record(&world, &f.release_id);
    assert_eq!(r.outcome, None, "not over: resume continues");
    assert_eq!(r.exit_code, None);
    assert_eq!(r.interrupted.map(|i| i.message), Some(f.message.clone()));
    assert!(lock_held(&world), "lock kept");
    assert_eq!(
        index(&world).current.as_deref(),
        Some(f.release_id.as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn ending_lock_held_leaves_the_holders_record_alone() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    let (first, _) = release_with_operator(&world, &plan, "1.4.0", |e| {
        matches!(e, Event::StepStarted { index: 0, .. }).then_some(Command::Abort)
    })
    .await;
    let before = raw_record(&world, &first.release_id);
    let index_before = index(&world);
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let req = common::release_request("1.5.0");
    let f = run::release(&plan, &ports, req, tx, crx).await;
    let events = drain(rx);
    assert_eq!((f.outcome, f.cause), (Outcome::Failed, Cause::LockHeld));
    assert_eq!(f.exit_code, exit::LOCKED);
    agrees(&f, &events);
    assert_ne!(f.release_id, first.release_id);
    assert_eq!(raw_record(&world, &first.release_id), before);
    assert_eq!(
        raw_record(&world, &f.release_id),
        None,
        "no record of its own"
    );
    assert_eq!(index(&world), index_before);
    assert!(lock_held(&world), "the holder keeps it");
}

#[tokio::test(start_paused = true)]
async fn ending_resume_of_an_ended_release_that_left_its_lock() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    let (done, _) = release(&world, &plan).await;
    assert_eq!(done.exit_code, exit::OK, "{}", done.message);
    // A crash between the record and the unlock: the lock (and `current`) outlive it.
    let ports = world.ports(true);
    let got = lock::acquire(
        ports.state.as_ref(),
        "alice@ops-1",
        &done.release_id,
        "1.4.0",
        Duration::from_secs(300),
        false,
    )
    .await
    .unwrap();
    assert!(matches!(got, lock::Acquire::Acquired(_)));
    let record_before = raw_record(&world, &done.release_id);

    let (f, events) = resume(&world, &plan).await;
    assert_eq!(f.release_id, done.release_id);
    assert_eq!((f.outcome, f.cause), (Outcome::Finalized, Cause::Done));
    assert_eq!(f.exit_code, exit::OK);
    assert!(f.message.contains("had already ended"), "{}", f.message);
    assert!(f.message.contains("released the lock"), "{}", f.message);
    agrees(&f, &events);
    assert!(!lock_held(&world));
    assert_eq!(raw_record(&world, &done.release_id), record_before);
    assert_eq!(index(&world).current, None);
}

#[tokio::test(start_paused = true)]
async fn ending_manual_rollback_of_a_finalized_release_swaps_the_index_once() {
    let mut plan = common::engine_plan();
    plan.rollback.green = glidepath::plan::GreenAfterRollback::Keep;
    let world = FakeWorld::for_plan(&plan);
    let (done, _) = release(&world, &plan).await;
    assert_eq!(done.exit_code, exit::OK, "{}", done.message);
    let finalized = index(&world);
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let f = run::rollback(&plan, &ports, "alice@ops-1", tx).await;
    let events = drain(rx);
    assert_eq!(
        (f.outcome, f.cause),
        (Outcome::RolledBack, Cause::OperatorRollback)
    );
    // `glidepath rollback` got what it asked for; the record keeps the release's 3.
    assert_eq!(f.exit_code, exit::OK);
    agrees_for(exit::Process::Rollback, &f, &events);
    let r = record(&world, &f.release_id);
    assert_eq!(
        (r.outcome, r.cause, r.exit_code),
        (Some(f.outcome), Some(f.cause), Some(exit::ROLLED_BACK))
    );
    assert_eq!(index(&world).current, None);
    assert!(!lock_held(&world));
    let ix = index(&world);
    assert_eq!(ix.live, finalized.standby, "live and standby swapped");
    assert_eq!(ix.standby, finalized.live);

    // Nothing left to roll back: exit 0, nothing written, the index stays swapped once.
    let (tx, rx) = unbounded_channel();
    let again = run::rollback(&plan, &ports, "alice@ops-1", tx).await;
    assert_eq!(again.cause, Cause::AlreadyBack);
    assert_eq!(again.exit_code, exit::OK, "{}", again.message);
    agrees_for(exit::Process::Rollback, &again, &drain(rx));
    let after = index(&world);
    assert_eq!((after.live, after.standby), (ix.live, ix.standby));
}

#[tokio::test(start_paused = true)]
async fn ending_manual_rollback_of_a_finalized_release_that_left_its_lock() {
    let mut plan = common::engine_plan();
    plan.rollback.green = glidepath::plan::GreenAfterRollback::Keep;
    let world = FakeWorld::for_plan(&plan);
    let (done, _) = release(&world, &plan).await;
    assert_eq!(done.exit_code, exit::OK, "{}", done.message);
    // A crash between the record and the unlock: the lock outlives the release.
    let ports = world.ports(true);
    let got = lock::acquire(
        ports.state.as_ref(),
        "alice@ops-1",
        &done.release_id,
        "1.4.0",
        Duration::from_secs(300),
        false,
    )
    .await
    .unwrap();
    assert!(matches!(got, lock::Acquire::Acquired(_)));
    let (tx, rx) = unbounded_channel();
    let f = run::rollback(&plan, &ports, "carol@ops-3", tx).await;
    assert_eq!(
        (f.outcome, f.exit_code),
        (Outcome::RolledBack, exit::OK),
        "{}",
        f.message
    );
    agrees_for(exit::Process::Rollback, &f, &drain(rx));
    assert_eq!(f.release_id, done.release_id);
    assert_eq!(
        world.with(|w| w.weights),
        glidepath::engine::ports::Weights::all_blue()
    );
    assert!(!lock_held(&world));
    assert_eq!(
        index(&world).live.map(|s| s.colour),
        Some(glidepath::engine::event::ColourName::Blue)
    );
}
