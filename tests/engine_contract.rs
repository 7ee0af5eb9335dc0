//! `glidepath contract` over in-memory ports: when it refuses, that it runs exactly one
//! task, that a failed attempt can be retried with a new one, and that rollback to the
//! version before a contracted release is refused.

use crate::common;
use crate::common::drain;

use glidepath::engine::contract;
use glidepath::engine::event::{Command, Envelope, Event, Outcome};
use glidepath::engine::fake::FakeWorld;
use glidepath::engine::ledger::{self, Index, Record};
use glidepath::engine::lock;
use glidepath::engine::run::{self, Finished};
use glidepath::exit;
use glidepath::plan::{ContractConfig, Plan};
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

/// The engine plan with a contract that may run at once, and the old colour kept warm so
/// that a rollback would otherwise be possible.
fn plan(after: Duration) -> Plan {
    let mut p = common::engine_plan();
    let mut task = p.migration.clone().expect("migration");
    task.command = vec!["bin/migrate".into(), "contract".into()];
    task.watch = Duration::ZERO;
    p.contract = Some(ContractConfig { task, after });
    p.rollback.green = glidepath::plan::GreenAfterRollback::Keep;
    p
}

async fn release(world: &FakeWorld, plan: &Plan, version: &str) -> Finished {
    let ports = world.ports(true);
    let (tx, _rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    run::release(plan, &ports, common::release_request(version), tx, crx).await
}

async fn run_contract(world: &FakeWorld, plan: &Plan) -> (Finished, Vec<Event>) {
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let f = contract::contract(plan, &ports, "dave@ops-4", tx).await;
    (f, drain(rx))
}

async fn rollback(world: &FakeWorld, plan: &Plan) -> Finished {
    let ports = world.ports(true);
    let (tx, _rx) = unbounded_channel();
    run::rollback(plan, &ports, "carol@ops-3", tx).await
}

fn record(world: &FakeWorld, id: &str) -> Record {
    world.with(|w| {
        let (b, _) = w.objects.get(&ledger::record_key(id)).expect("record");
        serde_json::from_slice(b).unwrap()
    })
}

fn index(world: &FakeWorld) -> Index {
    world.with(|w| {
        w.objects
            .get(ledger::INDEX_KEY)
            .map(|(b, _)| serde_json::from_slice(b).unwrap())
            .unwrap_or_default()
    })
}

fn contract_tasks(world: &FakeWorld) -> usize {
    world.with(|w| {
        w.tasks
            .iter()
            .filter(|t| t.spec.command.last().map(String::as_str) == Some("contract"))
            .count()
    })
}

/// What `glidepath status` prints on its `contract:` line.
async fn status_contract(world: &FakeWorld, plan: &Plan) -> String {
    let ports = world.ports(true);
    let st = run::status(plan, &ports).await.expect("status");
    let text = glidepath::commands::release::status_text(&st);
    text.lines()
        .find_map(|l| l.strip_prefix("contract: "))
        .unwrap_or_else(|| panic!("no contract line in:\n{text}"))
        .to_string()
}

fn assert_refused(f: &Finished, why: &str) {
    assert_eq!(f.exit_code, exit::USAGE, "{}", f.message);
    assert!(f.message.contains(why), "{}", f.message);
}

#[tokio::test(start_paused = true)]
async fn contract_refuses_without_a_table_a_release_or_a_finalized_one() {
    let mut bare = plan(Duration::ZERO);
    bare.contract = None;
    let world = FakeWorld::for_plan(&bare);
    let (f, _) = run_contract(&world, &bare).await;
    assert_refused(&f, "has no [contract] table");

    let plan = plan(Duration::ZERO);
    let (f, _) = run_contract(&world, &plan).await;
    assert_refused(&f, "no release is recorded yet");

    // A release stopped half-way (the operator aborted at step 2): not finalized.
    let ports = world.ports(true);
    let (tx, _rx) = unbounded_channel::<Envelope>();
    let (ctx, crx) = unbounded_channel();
    let engine = run::release(&plan, &ports, common::release_request("1.4.0"), tx, crx);
    let aborter = async {
        // The abort is read while the shift waits for its next poll.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let _ = ctx.send(Command::Abort);
    };
    let (f, ()) = tokio::join!(engine, aborter);
    assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
    let (c, _) = run_contract(&world, &plan).await;
    assert_refused(&c, "has not finished");
    assert_eq!(contract_tasks(&world), 0);

    // Rolled back: the version live now may still need what the contract removes.
    let back = rollback(&world, &plan).await;
    assert_eq!(back.exit_code, exit::OK, "{}", back.message);
    let (c, _) = run_contract(&world, &plan).await;
    assert_refused(&c, "ended rolled back");
    assert_eq!(contract_tasks(&world), 0);
}

#[tokio::test(start_paused = true)]
async fn contract_waits_for_contract_after() {
    let plan = plan(Duration::from_secs(24 * 3600));
    let world = FakeWorld::for_plan(&plan);
    let f = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    let (c, _) = run_contract(&world, &plan).await;
    assert_refused(&c, "has been live for");
    assert!(
        c.message.contains("24h 0m [contract].after"),
        "{}",
        c.message
    );
    let st = status_contract(&world, &plan).await;
    assert!(
        st.starts_with("not run; refused now: release") && st.contains("24h 0m [contract].after"),
        "{st}"
    );
    assert_eq!(contract_tasks(&world), 0);
    assert!(record(&world, &f.release_id).contract.is_none());
}

#[tokio::test(start_paused = true)]
async fn contract_runs_one_task_once_then_rollback_is_refused() {
    let plan = plan(Duration::ZERO);
    let world = FakeWorld::for_plan(&plan);
    let f = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    let st = status_contract(&world, &plan).await;
    assert!(st.contains("would run it now"), "{st}");

    let (c, events) = run_contract(&world, &plan).await;
    assert_eq!(c.exit_code, exit::OK, "{}", c.message);
    assert_eq!(c.release_id, f.release_id);
    assert_eq!(contract_tasks(&world), 1);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Log { source, .. } if source == "contract")),
        "logs tailed"
    );
    let r = record(&world, &f.release_id);
    let rec = r.contract.expect("contract recorded");
    assert!(rec.done_at.is_some() && rec.exit_code == Some(0));
    assert_eq!(rec.by, "dave@ops-4");
    let st = status_contract(&world, &plan).await;
    assert!(
        st.starts_with("ran at ") && st.contains("by dave@ops-4"),
        "{st}"
    );
    // The release itself is untouched: still finalized with its own exit code.
    assert_eq!(r.outcome, Some(Outcome::Finalized));
    assert_eq!(r.exit_code, Some(exit::OK));
    let ix = index(&world);
    assert!(ix.releases[0].contracted_at.is_some());
    assert!(glidepath::commands::release::history_text(&ix.releases).contains("contracted at"));
    assert!(
        !world.with(|w| w.objects.contains_key(lock::LOCK_KEY)),
        "lock released"
    );

    // Once: a second run says so and starts nothing.
    let (again, _) = run_contract(&world, &plan).await;
    assert_eq!(again.exit_code, exit::OK, "{}", again.message);
    assert!(again.message.contains("already ran"), "{}", again.message);
    assert_eq!(contract_tasks(&world), 1);

    // The version before needs the old schema: rollback refused, traffic untouched.
    let weights = world.with(|w| w.weights);
    let back = rollback(&world, &plan).await;
    assert_refused(&back, "the contract migration of release");
    assert!(
        back.message.contains("Release a fixed version"),
        "{}",
        back.message
    );
    assert_eq!(world.with(|w| w.weights), weights);
}

#[tokio::test(start_paused = true)]
async fn a_failed_contract_exits_5_and_the_next_run_is_a_new_attempt() {
    let plan = plan(Duration::ZERO);
    let world = FakeWorld::for_plan(&plan);
    let f = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    world.with(|w| w.migration_exit = 3);
    let (c, _) = run_contract(&world, &plan).await;
    assert_eq!(c.exit_code, exit::MIGRATION_FAILED, "{}", c.message);
    assert!(c.message.contains("exited with code 3"), "{}", c.message);
    // Not contracted: rollback stays possible (it is the old schema's last chance).
    let rec = record(&world, &f.release_id).contract.unwrap();
    assert!(rec.done_at.is_none());
    let st = status_contract(&world, &plan).await;
    assert!(
        st.contains("attempt 1 on release") && st.contains("failed (exit code 3"),
        "{st}"
    );

    world.with(|w| w.migration_exit = 0);
    let (c, _) = run_contract(&world, &plan).await;
    assert_eq!(c.exit_code, exit::OK, "{}", c.message);
    assert_eq!(contract_tasks(&world), 2, "one task per attempt");
    let rec = record(&world, &f.release_id).contract.unwrap();
    assert_eq!(rec.attempt, 1);
}

#[tokio::test(start_paused = true)]
async fn a_contract_while_the_lock_is_held_exits_4() {
    let plan = plan(Duration::ZERO);
    let world = FakeWorld::for_plan(&plan);
    let f = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    let ports = world.ports(true);
    let held = lock::acquire(
        ports.state.as_ref(),
        "erin@ops-5",
        "other",
        "9.9.9",
        Duration::from_secs(300),
        false,
    )
    .await
    .unwrap();
    assert!(matches!(held, lock::Acquire::Acquired(_)));
    let (c, _) = run_contract(&world, &plan).await;
    assert_eq!(c.exit_code, exit::LOCKED, "{}", c.message);
    assert!(c.message.contains("erin@ops-5"), "{}", c.message);
    assert_eq!(contract_tasks(&world), 0);
}

/// A `resume` (or a `rollback`) while `contract` runs: the contract holds the lock under the
/// finalized release's id. It must be refused as a held lock (exit 4), never taken for a
/// lock the release left behind and deleted; the contract then finishes with its lock.
#[tokio::test(start_paused = true)]
async fn resume_or_rollback_during_a_contract_leave_its_lock_alone() {
    let plan = plan(Duration::ZERO);
    let world = FakeWorld::for_plan(&plan);
    let f = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    // A contract task that runs a while.
    world.with(|w| w.migration_ticks = 40);
    let contract = run_contract(&world, &plan);
    let others = async {
        // The contract's task is running and it holds the lock.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let holder = |world: &FakeWorld| {
            world.with(|w| {
                w.objects
                    .get(lock::LOCK_KEY)
                    .map(|(b, _)| serde_json::from_slice::<lock::LockBody>(b).unwrap().holder)
            })
        };
        assert_eq!(holder(&world).as_deref(), Some("dave@ops-4"));
        assert_eq!(contract_tasks(&world), 1);
        let ports = world.ports(true);
        let (tx, _rx) = unbounded_channel();
        let (_c, crx) = unbounded_channel();
        let req = run::ResumeRequest {
            auto_approve: true,
            holder: "frank@ops-6".into(),
            endpoint: None,
        };
        let resumed = run::resume(&plan, &ports, req, tx, crx).await;
        let after_resume = holder(&world);
        let back = rollback(&world, &plan).await;
        (resumed, after_resume, back, holder(&world))
    };
    let ((c, _), (resumed, after_resume, back, after_rollback)) = tokio::join!(contract, others);
    assert_eq!(resumed.exit_code, exit::LOCKED, "{}", resumed.message);
    assert!(resumed.message.contains("contract"), "{}", resumed.message);
    assert_eq!(
        after_resume.as_deref(),
        Some("dave@ops-4"),
        "resume took or deleted the contract's lock"
    );
    assert_eq!(back.exit_code, exit::LOCKED, "{}", back.message);
    assert_eq!(
        after_rollback.as_deref(),
        Some("dave@ops-4"),
        "rollback took or deleted the contract's lock"
    );
    // The contract was not disturbed: one task, done, its lock released at its end.
    assert_eq!(c.exit_code, exit::OK, "{}", c.message);
    assert_eq!(contract_tasks(&world), 1);
    assert!(record(&world, &f.release_id)
        .contract
        .unwrap()
        .done_at
        .is_some());
    assert!(!world.with(|w| w.objects.contains_key(lock::LOCK_KEY)));
}
