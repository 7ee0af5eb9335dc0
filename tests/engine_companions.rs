//! Companion services (`[[companions]]`) on the in-memory engine with paused time: when and
//! in which order they move, a failed rollout rolls the release back, every rollback puts
//! them back in reverse order, and a crash at any port call ends with every companion on
//! a task definition the ledger names.

use crate::common;
use crate::common::release_with_operator;

use glidepath::engine::event::{Command, CompanionState, Event, Outcome};
use glidepath::engine::fake::{CrashMode, FakeWorld};
use glidepath::engine::ledger::{self, Index};
use glidepath::engine::lock;
use glidepath::engine::ports::Weights;
use glidepath::engine::run;
use glidepath::exit;
use glidepath::plan::{Companion, CompanionsMove, Plan};
use tokio::sync::mpsc::unbounded_channel;

const WORKER: &str = "shop-worker";
const SCHEDULER: &str = "shop-scheduler";

/// The engine plan with a worker and a scheduler that depends on it.
fn plan(moves: CompanionsMove) -> Plan {
    let mut p = common::engine_plan();
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

fn calls(world: &FakeWorld) -> Vec<String> {
    world.with(|w| w.calls.clone())
}

fn pos(calls: &[String], call: &str) -> usize {
    calls
        .iter()
        .position(|c| c == call)
        .unwrap_or_else(|| panic!("no call {call:?} in {calls:#?}"))
}

fn td_of(world: &FakeWorld, service: &str) -> String {
    world.with(|w| w.services[service].task_definition.clone())
}

fn index(world: &FakeWorld) -> Index {
    world.with(|w| {
        w.objects
            .get(ledger::INDEX_KEY)
            .map(|(b, _)| serde_json::from_slice(b).unwrap())
            .unwrap_or_default()
    })
}

/// (name, state) of every companion event, in order.
fn companion_events(events: &[Event]) -> Vec<(String, CompanionState)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Companion { name, state, .. } => Some((name.clone(), *state)),
            _ => None,
        })
        .collect()
}

fn ev(name: &str, state: CompanionState) -> (String, CompanionState) {
    (name.to_string(), state)
}

#[tokio::test(start_paused = true)]
async fn companions_move_in_order_after_the_first_gate_and_finalize_on_the_new_version() {
    let plan = plan(CompanionsMove::AfterFirstGate);
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = common::fake_release(&world, &plan).await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    assert_eq!(f.outcome, Outcome::Finalized);

    let web = td_of(&world, &plan.green.service);
    assert_eq!(td_of(&world, WORKER), web);
    assert_eq!(td_of(&world, SCHEDULER), web);
    let calls = calls(&world);
    let worker = pos(&calls, &format!("fleet.roll_out {WORKER} {web}"));
    let scheduler = pos(&calls, &format!("fleet.roll_out {SCHEDULER} {web}"));
    // After the first step (10 %) passed its gate, before the second (50 %).
    assert!(pos(&calls, "traffic.set_weights 90/10") < worker);
    assert!(
        worker < scheduler,
        "the worker moves before what depends on it"
    );
    assert!(scheduler < pos(&calls, "traffic.set_weights 50/50"));

    assert_eq!(
        companion_events(&events),
        [
            ev("worker", CompanionState::Started),
            ev("worker", CompanionState::Done),
            ev("scheduler", CompanionState::Started),
            ev("scheduler", CompanionState::Done),
        ]
    );
    let first_gate = events
        .iter()
        .position(|e| matches!(e, Event::GatePassed { index: 0, .. }))
        .unwrap();
    let first = events
        .iter()
        .position(|e| matches!(e, Event::Companion { .. }))
        .unwrap();
    assert!(first_gate < first);
    let r = common::fake_record(&world, &f.release_id);
    assert_eq!(r.companions.len(), 2);
    assert_eq!(r.companions[0].previous, "worker:1");
    assert_eq!(r.companions[1].previous, "scheduler:1");
    assert!(r.companions.iter().all(|c| c.done_at.is_some()));
}

#[tokio::test(start_paused = true)]
async fn before_shift_moves_them_before_any_traffic_and_at_finalize_after_the_last_step() {
    let plan_b = plan(CompanionsMove::BeforeShift);
    let world = FakeWorld::for_plan(&plan_b);
    let (f, _) = common::fake_release(&world, &plan_b).await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    let c = calls(&world);
    let last = c
        .iter()
        .rposition(|c| c.starts_with("fleet.roll_out"))
        .unwrap();
    assert!(last < pos(&c, "traffic.set_weights 90/10"));
    let web = td_of(&world, &plan_b.green.service);
    assert!(
        pos(&c, &format!("fleet.deploy shop-green {web} x2"))
            < pos(&c, &format!("fleet.roll_out {WORKER} {web}"))
    );

    let plan_f = plan(CompanionsMove::AtFinalize);
    let world = FakeWorld::for_plan(&plan_f);
    let (f, _) = common::fake_release(&world, &plan_f).await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    let c = calls(&world);
    let web = td_of(&world, &plan_f.green.service);
    assert!(
        pos(&c, "traffic.set_weights 0/100") < pos(&c, &format!("fleet.roll_out {WORKER} {web}"))
    );
    assert_eq!(td_of(&world, SCHEDULER), web);
}

#[tokio::test(start_paused = true)]
async fn a_failed_companion_rollout_rolls_the_release_back_traffic_first_then_in_reverse() {
    let plan = plan(CompanionsMove::AfterFirstGate);
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.rollout_fails = vec![SCHEDULER.into()]);
    let (f, events) = common::fake_release(&world, &plan).await;
    assert_eq!(f.outcome, Outcome::RolledBack, "{}", f.message);
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    assert!(f.message.contains("scheduler"), "{}", f.message);

    assert_eq!(td_of(&world, WORKER), "worker:1");
    assert_eq!(td_of(&world, SCHEDULER), "scheduler:1");
    assert_eq!(world.with(|w| w.weights), Weights::all_blue());
    let c = calls(&world);
    let back = c
        .iter()
        .rposition(|c| c == "traffic.set_weights 100/0")
        .unwrap();
    let scheduler_back = pos(&c, &format!("fleet.roll_out {SCHEDULER} scheduler:1"));
    let worker_back = pos(&c, &format!("fleet.roll_out {WORKER} worker:1"));
    assert!(back < scheduler_back, "traffic goes back first");
    assert!(scheduler_back < worker_back, "reverse order");
    assert_eq!(
        companion_events(&events),
        [
            ev("worker", CompanionState::Started),
            ev("worker", CompanionState::Done),
            ev("scheduler", CompanionState::Started),
            ev("scheduler", CompanionState::Failed),
            ev("scheduler", CompanionState::RollingBack),
            ev("scheduler", CompanionState::RolledBack),
            ev("worker", CompanionState::RollingBack),
            ev("worker", CompanionState::RolledBack),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_operator_rollback_and_a_rollback_of_the_finalized_release_take_the_companions_back() {
    let plan = plan(CompanionsMove::AfterFirstGate);
    let world = FakeWorld::for_plan(&plan);
    let mut done = 0;
    let (f, _) = release_with_operator(&world, &plan, "1.4.0", |e| {
        if matches!(
            e,
            Event::Companion {
                state: CompanionState::Done,
                ..
            }
        ) {
            done += 1;
        }
        (done == 2 && matches!(e, Event::StepStarted { index: 1, .. })).then_some(Command::Rollback)
    })
    .await;
    assert_eq!(f.outcome, Outcome::RolledBack, "{}", f.message);
    assert_eq!(td_of(&world, WORKER), "worker:1");
    assert_eq!(td_of(&world, SCHEDULER), "scheduler:1");

    // A release that finalized, rolled back by `glidepath rollback`.
    let world = FakeWorld::for_plan(&plan);
    let (f, _) = common::fake_release(&world, &plan).await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    assert_eq!(td_of(&world, WORKER), td_of(&world, &plan.green.service));
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let f = run::rollback(&plan, &ports, "carol@ops-3", tx).await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    assert_eq!(td_of(&world, WORKER), "worker:1");
    assert_eq!(td_of(&world, SCHEDULER), "scheduler:1");
    assert_eq!(world.with(|w| w.weights), Weights::all_blue());
    let events = common::drain(rx);
    assert_eq!(
        companion_events(&events),
        [
            ev("scheduler", CompanionState::RollingBack),
            ev("scheduler", CompanionState::RolledBack),
            ev("worker", CompanionState::RollingBack),
            ev("worker", CompanionState::RolledBack),
        ]
    );
}

/// Crash (drop the engine) at the Nth port call, before or after its effect, then resume
/// until the release ends: every companion ends on the release's task definition
/// (finalized) or the one it ran before (rolled back), never anything else. One
/// companion's rollout fails in the second pass, so the crash points cover the way back.
#[tokio::test(start_paused = true)]
async fn crash_at_every_port_call_with_companions_then_resume() {
    let plan = plan(CompanionsMove::AfterFirstGate);
    let mut crash_points = 0;
    let mut rolled_back = 0;
    for fail in [false, true] {
        for mode in [CrashMode::Before, CrashMode::After] {
            for n in 1.. {
                let world = FakeWorld::for_plan(&plan);
                world.with(|w| {
                    w.crash_at = Some((n, mode));
                    if fail {
                        w.rollout_fails = vec![SCHEDULER.into()];
                    }
                });
                let ports = world.ports(true);
                let (tx, _rx) = unbounded_channel();
                let (_ctx, crx) = unbounded_channel();
                let crashed = tokio::select! {
                    _ = run::release(&plan, &ports, common::release_request("1.4.0"), tx, crx) => false,
                    _ = world.crashed() => true,
                };
                drop(ports);
                if !crashed {
                    break;
                }
                crash_points += 1;
                let ctx = format!(
                    "fail={fail} crash at call {n} ({mode:?}): {}",
                    world.with(|w| w.calls.last().cloned().unwrap_or_default())
                );
                let (f, _) = common::fake_resume(&world, &plan).await;
                let outcome = if f.exit_code == exit::USAGE {
                    match index(&world).releases.first().and_then(|e| e.outcome) {
                        Some(o) => o,
                        None => {
                            let (f, _) = common::fake_release(&world, &plan).await;
                            f.outcome
                        }
                    }
                } else {
                    f.outcome
                };
                let id = index(&world)
                    .releases
                    .first()
                    .map(|e| e.id.clone())
                    .unwrap();
                let r = common::fake_record(&world, &id);
                // Green runs the release's revision once deployed (scaling keeps it).
                let release_td = td_of(&world, &plan.green.service);
                match outcome {
                    Outcome::Finalized => {
                        assert!(
                            !fail,
                            "{ctx}: finalized although the scheduler's rollout fails"
                        );
                        for s in [WORKER, SCHEDULER] {
                            assert_eq!(td_of(&world, s), release_td, "{ctx}: {s}");
                        }
                        assert!(r.companions.iter().all(|c| c.done_at.is_some()), "{ctx}");
                    }
                    Outcome::RolledBack => {
                        rolled_back += 1;
                        assert_eq!(td_of(&world, WORKER), "worker:1", "{ctx}");
                        assert_eq!(td_of(&world, SCHEDULER), "scheduler:1", "{ctx}");
                        assert!(
                            r.companions.iter().all(|c| c.rolled_back_at.is_some()),
                            "{ctx}: {:?}",
                            r.companions
                        );
                        assert_eq!(world.with(|w| w.weights), Weights::all_blue(), "{ctx}");
                    }
                    other => panic!("{ctx}: ended {other:?}: {}", f.message),
                }
                world.with(|w| {
                    assert!(w.violations.is_empty(), "{ctx}: {:?}", w.violations);
                    assert!(
                        !w.objects.contains_key(lock::LOCK_KEY),
                        "{ctx}: lock left behind"
                    );
                    // Each companion was rolled out to the release's revision at most once
                    // (a resume compares first), and only after its intent.
                    for s in [WORKER, SCHEDULER] {
                        let forward = format!("fleet.roll_out {s} {release_td}");
                        // The call the run hung in "before" is logged but had no effect.
                        let hung = mode == CrashMode::Before && w.calls[n as usize - 1] == forward;
                        let times =
                            w.calls.iter().filter(|c| **c == forward).count() - usize::from(hung);
                        assert!(times <= 1, "{ctx}: {s} rolled out {times} times");
                    }
                });
            }
        }
    }
    assert!(crash_points > 150, "only {crash_points} crash points");
    assert!(rolled_back > 50, "only {rolled_back} rollbacks");
}

/// Release A moves both companions and is aborted (its lock kept); `unlock --force`; release
/// B fails its deploy and rolls back. B superseded A: before anything of its own it put
/// A's companions back (in reverse order, recorded in A's record), so nothing runs a task
/// definition only the abandoned release knows. A kill at every port call of B (before or
/// after its effect) up to its deploy, then `resume` (or a new release if B left no
/// record), ends the same.
#[tokio::test(start_paused = true)]
async fn a_superseding_release_takes_the_superseded_releases_companions_back() {
    let plan = plan(CompanionsMove::AfterFirstGate);
    let mut crash_points = 0;
    for mode in [None, Some(CrashMode::Before), Some(CrashMode::After)] {
        for n in 1.. {
            let mut past = false;
            let world = FakeWorld::for_plan(&plan);
            let mut done = 0;
            let (a, _) = release_with_operator(&world, &plan, "1.4.0", |e| {
                if matches!(
                    e,
                    Event::Companion {
                        state: CompanionState::Done,
                        ..
                    }
                ) {
                    done += 1;
                }
                (done == 2).then_some(Command::Abort)
            })
            .await;
            assert_eq!(a.outcome, Outcome::Interrupted, "{}", a.message);
            let a_td = td_of(&world, &plan.green.service);
            assert_eq!(td_of(&world, WORKER), a_td, "A moved the worker");
            let ports = world.ports(true);
            let r = run::unlock(&plan, &ports, true, "ops@test").await.unwrap();
            assert!(r.broken, "{}", r.message);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            world.with(|w| w.deploy_unhealthy = true);
            let from = world.with(|w| w.calls.len());
            if let Some(mode) = mode {
                world.with(|w| w.crash_at = Some((w.call_count + n, mode)));
            }
            let (tx, rx) = unbounded_channel();
            let (_c, crx) = unbounded_channel();
            let mut req = common::release_request("1.5.0");
            req.holder = "bob@ops-2".into();
            let b = tokio::select! {
                f = run::release(&plan, &ports, req, tx, crx) => Some(f),
                _ = world.crashed() => None,
            };
            drop(ports);
            let ctx = format!("{mode:?} at call {n} of B");
            let b = match b {
                Some(b) if mode.is_some() => {
                    // Ran to its end without reaching call n: every point is covered.
                    assert_ne!(b.outcome, Outcome::Finalized, "{ctx}: {}", b.message);
                    break;
                }
                Some(b) => {
                    let events = common::drain(rx);
                    assert!(
                        events.iter().any(|e| matches!(e, Event::Warning { message }
                            if message.contains("companion worker") && message.contains("worker:1"))),
                        "B says it puts the worker back: {events:#?}"
                    );
                    let calls = world.with(|w| w.calls[from..].to_vec());
                    let back = pos(&calls, &format!("fleet.roll_out {SCHEDULER} scheduler:1"));
                    assert!(back < pos(&calls, &format!("fleet.roll_out {WORKER} worker:1")));
                    let deployed = calls
                        .iter()
                        .position(|c| c.starts_with("fleet.deploy"))
                        .expect("B deployed");
                    assert!(back < deployed, "A's companions go back first: {calls:#?}");
                    b
                }
                None => {
                    crash_points += 1;
                    // Past the supersede step (B's own deploy): later points are B's own
                    // rollback, covered elsewhere.
                    past =
                        world.with(|w| w.calls[from + n as usize - 1].starts_with("fleet.deploy"));
                    world.with(|w| {
                        w.crash_at = None;
                        w.crashed = false;
                    });
                    let (f, _) = common::fake_resume(&world, &plan).await;
                    if f.exit_code == exit::USAGE {
                        // B died before it had a record: a new release takes over.
                        let (f, _) = common::fake_release(&world, &plan).await;
                        f
                    } else {
                        f
                    }
                }
            };
            assert_ne!(b.outcome, Outcome::Finalized, "{ctx}: {}", b.message);
            assert_eq!(td_of(&world, WORKER), "worker:1", "{ctx}: {}", b.message);
            assert_eq!(td_of(&world, SCHEDULER), "scheduler:1", "{ctx}");
            let ra = common::fake_record(&world, &a.release_id);
            // A `resume` of B that died before its record takes A over instead (A is the
            // release in progress then): A rolls itself back, companions included.
            let superseded = ra.outcome == Some(Outcome::Superseded);
            assert!(
                superseded || (mode.is_some() && ra.outcome == Some(Outcome::RolledBack)),
                "{ctx}: A ended {:?}",
                ra.outcome
            );
            assert!(
                ra.companions
                    .iter()
                    .all(|c| c.rollback_at.is_some() && c.rolled_back_at.is_some()),
                "{ctx}: {:?}",
                ra.companions
            );
            assert!(
                !superseded || ra.message.as_deref().unwrap_or_default().contains("worker"),
                "{ctx}: {:?}",
                ra.message
            );
            world.with(|w| assert!(w.violations.is_empty(), "{ctx}: {:?}", w.violations));
            if mode.is_none() || past {
                break;
            }
        }
    }
    assert!(crash_points > 60, "only {crash_points} crash points");
}

/// `glidepath rollback` of a finalized release refuses, before anything moves, when a
/// companion it changed runs something else now (changed by hand) or when the task
/// definition a companion ran before is deregistered; once both are right it rolls back.
#[tokio::test(start_paused = true)]
async fn a_rollback_of_the_finalized_release_refuses_a_companion_changed_since() {
    let plan = plan(CompanionsMove::AfterFirstGate);
    let world = FakeWorld::for_plan(&plan);
    let (f, _) = common::fake_release(&world, &plan).await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    let web = td_of(&world, &plan.green.service);
    let rollback = || async {
        let ports = world.ports(true);
        let (tx, _rx) = unbounded_channel();
        run::rollback(&plan, &ports, "carol@ops-3", tx).await
    };

    world.with(|w| w.services.get_mut(SCHEDULER).unwrap().task_definition = "scheduler:7".into());
    let weights = world.with(|w| w.weights);
    let refused = rollback().await;
    assert_eq!(refused.exit_code, exit::USAGE, "{}", refused.message);
    for part in ["companion scheduler", SCHEDULER, "scheduler:7", &web] {
        assert!(
            refused.message.contains(part),
            "{part}: {}",
            refused.message
        );
    }
    assert_eq!(world.with(|w| w.weights), weights, "traffic did not move");
    assert_eq!(td_of(&world, WORKER), web, "nothing was rolled back");

    world.with(|w| {
        w.services.get_mut(SCHEDULER).unwrap().task_definition = web.clone();
        w.inactive_task_definitions = vec!["worker:1".into()];
    });
    let refused = rollback().await;
    assert_eq!(refused.exit_code, exit::USAGE, "{}", refused.message);
    for part in ["companion worker", "worker:1", "ACTIVE"] {
        assert!(
            refused.message.contains(part),
            "{part}: {}",
            refused.message
        );
    }
    assert_eq!(td_of(&world, SCHEDULER), web);

    world.with(|w| w.inactive_task_definitions.clear());
    let done = rollback().await;
    assert_eq!(done.exit_code, 0, "{}", done.message);
    assert_eq!(td_of(&world, WORKER), "worker:1");
    assert_eq!(td_of(&world, SCHEDULER), "scheduler:1");
}

/// A finalized release R; `glidepath rollback` of it killed once the scheduler is back (the
/// worker not yet); `unlock --force`; release B fails its deploy. B found R's rollback cut
/// short with R still live, so it left traffic on R and moved the scheduler forward to R's
/// revision again: every companion runs what the live release gave it.
#[tokio::test(start_paused = true)]
async fn a_superseded_cut_short_rollback_moves_the_companions_forward_again() {
    let mut plan = plan(CompanionsMove::AfterFirstGate);
    // Green keeps its tasks after the rollback's traffic step (with scale_to_zero the
    // superseding run would put traffic back on a colour scaled to zero: another matter).
    plan.rollback.green = glidepath::plan::GreenAfterRollback::Keep;
    let rollback = |world: &FakeWorld| {
        let ports = world.ports(true);
        let plan = plan.clone();
        async move {
            let (tx, _rx) = unbounded_channel();
            run::rollback(&plan, &ports, "carol@ops-3", tx).await
        }
    };
    // The fake is deterministic: the worker's way back is the same call on a twin world.
    let worker_back = format!("fleet.roll_out {WORKER} worker:1");
    let twin = FakeWorld::for_plan(&plan);
    common::fake_release(&twin, &plan).await;
    rollback(&twin).await;
    let n = pos(&calls(&twin), &worker_back) as u64 + 1;

    let world = FakeWorld::for_plan(&plan);
    let (r, _) = common::fake_release(&world, &plan).await;
    assert_eq!(r.exit_code, 0, "{}", r.message);
    let live_td = td_of(&world, &plan.green.service);
    world.with(|w| w.crash_at = Some((n, CrashMode::Before)));
    tokio::select! {
        f = rollback(&world) => panic!("not killed: {}", f.message),
        _ = world.crashed() => {}
    }
    world.with(|w| {
        w.crash_at = None;
        w.crashed = false;
    });
    assert_eq!(td_of(&world, SCHEDULER), "scheduler:1");
    assert_eq!(td_of(&world, WORKER), live_td);
    let ports = world.ports(true);
    let u = run::unlock(&plan, &ports, true, "ops@test").await.unwrap();
    assert!(u.broken, "{}", u.message);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    world.with(|w| w.deploy_unhealthy = true);
    let (tx, rx) = unbounded_channel();
    let (_c, crx) = unbounded_channel();
    let mut req = common::release_request("1.5.0");
    req.holder = "bob@ops-2".into();
    let b = run::release(&plan, &ports, req, tx, crx).await;
    let events = common::drain(rx);
    assert_ne!(b.outcome, Outcome::Finalized, "{}", b.message);
    assert_eq!(
        world.with(|w| w.weights),
        Weights::green(100),
        "R stays live"
    );
    assert_eq!(td_of(&world, SCHEDULER), live_td, "{events:#?}");
    assert_eq!(td_of(&world, WORKER), live_td);
    let rr = common::fake_record(&world, &r.release_id);
    assert_eq!(rr.outcome, Some(Outcome::Finalized));
    assert!(
        rr.companions.iter().all(|c| c.rollback_at.is_none()),
        "{:?}",
        rr.companions
    );
    world.with(|w| assert!(w.violations.is_empty(), "{:?}", w.violations));
}
