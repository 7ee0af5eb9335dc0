//! The read-only window around the migration, over in-memory ports with paused time:
//! `enter` right before the task starts, `exit` however the window ends (the task
//! stopped, a failed migration, `read_only.max`, an abort, a rollback, a crash and
//! `resume`), and a failing `exit` never passes silently (exit 7).

use crate::common;
use crate::common::{drain, fake_record as record, fake_release as release, fake_resume as resume};

use glidepath::engine::event::{Command, Event, Outcome, Phase};
use glidepath::engine::fake::{CrashMode, FakeWorld};
use glidepath::engine::ledger::Record;
use glidepath::engine::lock;
use glidepath::engine::ports::Weights;
use glidepath::engine::run::{self, Finished};
use glidepath::exit;
use glidepath::plan::{GateMode, Plan, ReadOnlyConfig};
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

const ENTER: &str = "bin/flag read-only on";
const EXIT: &str = "bin/flag read-only off";

fn plan() -> Plan {
    let mut p = common::engine_plan();
    for s in &mut p.steps {
        s.gate = GateMode::Auto;
    }
    p.read_only = Some(ReadOnlyConfig {
        enter: ENTER.split(' ').map(String::from).collect(),
        exit: EXIT.split(' ').map(String::from).collect(),
        max: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
    });
    p
}

/// A release whose operator sends `command` once the migration task runs.
async fn release_then(world: &FakeWorld, plan: &Plan, command: Command) -> (Finished, Vec<Event>) {
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (ctx, crx) = unbounded_channel();
    let engine = run::release(plan, &ports, common::release_request("1.4.0"), tx, crx);
    let operator = async {
        while world.with(|w| w.run_task_calls) == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ctx.send(command).expect("engine listens");
    };
    let (f, ()) = tokio::join!(engine, operator);
    (f, drain(rx))
}

/// The port calls that matter here, in order: the window's commands, task starts, deploys.
fn story(world: &FakeWorld) -> Vec<String> {
    world.with(|w| {
        w.calls
            .iter()
            .filter_map(|c| {
                if let Some(cmd) = c.strip_prefix("local.run ") {
                    Some(if cmd == ENTER { "enter" } else { "exit" }.to_string())
                } else if c.starts_with("tasks.run_once") {
                    Some("run_task".into())
                } else if c.starts_with("fleet.deploy") {
                    Some("deploy".into())
                } else {
                    None
                }
            })
            .collect()
    })
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ReadOnlyOpened { .. } => Some("opened"),
            Event::ReadOnlyClosed { .. } => Some("closed"),
            Event::ReadOnlyExitFailed { .. } => Some("exit_failed"),
            Event::PhaseFinished {
                phase: Phase::Migrate,
                ..
            } => Some("migrate_finished"),
            _ => None,
        })
        .collect()
}

fn all_closed(r: &Record) -> bool {
    !r.read_only.is_empty() && r.read_only.iter().all(|w| w.closed_at.is_some())
}

#[tokio::test(start_paused = true)]
async fn enter_runs_right_before_the_task_and_exit_right_after_it() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(story(&world), ["enter", "run_task", "exit", "deploy"]);
    // Nothing AWS-side between enter and RunTask but the task itself.
    let calls = world.with(|w| w.calls.clone());
    let enter = calls.iter().position(|c| c.ends_with(ENTER)).unwrap();
    assert!(
        calls[enter + 1].starts_with("state."),
        "{:?}",
        &calls[enter..]
    );
    let r = record(&world, &f.release_id);
    assert_eq!(r.read_only.len(), 1);
    let w = &r.read_only[0];
    assert!(w.entered_at.is_some() && w.closed_at.is_some());
    assert_eq!(w.reason.as_deref(), Some("the migration task stopped"));
    assert_eq!(kinds(&events), ["opened", "closed", "migrate_finished"]);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ReadOnlyOpened { max_s, .. } if *max_s == 60.0)));
    // JSON Lines: the documented type names and fields.
    let json: Vec<serde_json::Value> = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::ReadOnlyOpened { .. } | Event::ReadOnlyClosed { .. }
            )
        })
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert_eq!(json[0]["type"], "read_only_opened");
    assert!(json[0]["opened_at"].is_string() && json[0]["max_s"] == 60.0);
    assert_eq!(json[1]["type"], "read_only_closed");
    assert!(json[1]["duration_ms"].is_u64());
    assert_eq!(json[1]["reason"], "the migration task stopped");
}

#[tokio::test(start_paused = true)]
async fn exit_runs_after_a_failed_migration() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.migration_exit = 3);
    let (f, events) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::MIGRATION_FAILED, "{}", f.message);
    assert_eq!(story(&world), ["enter", "run_task", "exit"]);
    assert!(all_closed(&record(&world, &f.release_id)));
    assert_eq!(kinds(&events), ["opened", "closed", "migrate_finished"]);
}

#[tokio::test(start_paused = true)]
async fn exceeding_max_runs_exit_and_stops_before_deploy() {
    let mut plan = plan();
    plan.read_only.as_mut().unwrap().max = Duration::from_secs(20);
    let world = FakeWorld::for_plan(&plan);
    // The task runs for about 100 s (one describe per second).
    world.with(|w| w.migration_ticks = 100);
    let t0 = tokio::time::Instant::now();
    let (f, _) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::MIGRATION_FAILED, "{}", f.message);
    assert!(f.message.contains("read_only.max (20s)"), "{}", f.message);
    assert!(f.message.contains("still running"), "{}", f.message);
    assert!(f.message.contains("read_only.exit ran"), "{}", f.message);
    assert_eq!(story(&world), ["enter", "run_task", "exit"]);
    // Closed at max, not when the task would have ended.
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    world.with(|w| {
        assert_eq!(w.weights, Weights::all_blue());
        assert!(!w.objects.contains_key(lock::LOCK_KEY));
        // glidepath never stops the task.
        assert!(w.tasks.iter().any(|t| t.info.last_status != "STOPPED"));
    });
    let r = record(&world, &f.release_id);
    assert_eq!(
        r.read_only[0].reason.as_deref(),
        Some("read_only.max passed")
    );
}

#[tokio::test(start_paused = true)]
async fn abort_during_the_migration_runs_exit_and_resume_does_not_reopen() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.migration_ticks = 30);
    let (f, events) = release_then(&world, &plan, Command::Abort).await;
    assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
    assert_eq!(f.exit_code, exit::UNEXPECTED);
    assert_eq!(story(&world), ["enter", "run_task", "exit"]);
    let r = record(&world, &f.release_id);
    assert!(all_closed(&r));
    assert_eq!(
        r.read_only[0].reason.as_deref(),
        Some("the release was stopped (abort)")
    );
    assert_eq!(kinds(&events), ["opened", "closed", "migrate_finished"]);
    // The task was already running: resume follows it without another window.
    let (f, _) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(story(&world), ["enter", "run_task", "exit", "deploy"]);
}

#[tokio::test(start_paused = true)]
async fn a_rollback_during_the_migration_runs_exit() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.migration_ticks = 30);
    let (f, _) = release_then(&world, &plan, Command::Rollback).await;
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    assert_eq!(story(&world), ["enter", "run_task", "exit"]);
    assert!(all_closed(&record(&world, &f.release_id)));
}

#[tokio::test(start_paused = true)]
async fn a_failing_exit_is_exit_7_keeps_the_lock_and_resume_runs_it_again() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.local_fails.insert(
            EXIT.into(),
            "read_only.exit command exited with code 2".into(),
        )
    });
    let (f, events) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::READ_ONLY_STUCK, "{}", f.message);
    assert_eq!(f.cause, exit::Cause::ReadOnlyExit);
    assert!(
        f.message.contains("the app may still be read-only"),
        "{}",
        f.message
    );
    assert!(f.message.contains(EXIT), "{}", f.message);
    assert!(f.message.contains("glidepath resume"), "{}", f.message);
    // Tried once, not again at the ending; nothing deployed.
    assert_eq!(story(&world), ["enter", "run_task", "exit"]);
    assert!(kinds(&events).contains(&"exit_failed"));
    assert!(world.with(|w| w.objects.contains_key(lock::LOCK_KEY)));
    let r = record(&world, &f.release_id);
    assert!(r.read_only[0].is_open() && r.read_only[0].exit_failed.is_some());

    // Fixed: resume runs exit first, then goes on (the task is done, not run again).
    world.with(|w| w.local_fails.clear());
    let (f, events) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(
        story(&world),
        ["enter", "run_task", "exit", "exit", "deploy"]
    );
    assert!(all_closed(&record(&world, &f.release_id)));
    assert!(kinds(&events).contains(&"closed"));
}

#[tokio::test(start_paused = true)]
async fn a_failing_exit_after_a_failed_migration_is_exit_7_and_names_both() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.migration_exit = 1;
        w.local_fails.insert(
            EXIT.into(),
            "read_only.exit command exited with code 2".into(),
        );
    });
    let (f, _) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::READ_ONLY_STUCK, "{}", f.message);
    assert!(f.message.contains("exited with code 2"), "{}", f.message);
    assert!(f.message.contains("exited with code 1"), "{}", f.message);
    assert_eq!(story(&world), ["enter", "run_task", "exit"]);
    let r = record(&world, &f.release_id);
    assert_eq!(r.exit_code, Some(exit::READ_ONLY_STUCK));
}

#[tokio::test(start_paused = true)]
async fn a_failing_enter_runs_exit_and_starts_no_task() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.local_fails.insert(
            ENTER.into(),
            "read_only.enter command exited with code 4".into(),
        )
    });
    let (f, _) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::UNEXPECTED, "{}", f.message);
    assert!(f.message.contains("was not started"), "{}", f.message);
    assert_eq!(story(&world), ["enter", "exit"]);
    assert!(all_closed(&record(&world, &f.release_id)));
}

#[tokio::test(start_paused = true)]
async fn an_ecs_refusal_after_enter_still_runs_exit_at_the_ending() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.fatal
            .insert("tasks.run_once".into(), "AccessDenied".into())
    });
    let (f, events) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::UNEXPECTED, "{}", f.message);
    assert_eq!(story(&world), ["enter", "run_task", "exit"]);
    let r = record(&world, &f.release_id);
    assert_eq!(
        r.read_only[0].reason.as_deref(),
        Some("the release stopped")
    );
    assert!(all_closed(&r));
    assert!(kinds(&events).contains(&"closed"));
}

/// Kill the engine at every port call from the start to just past the window, in both
/// modes; `resume` must close a window left open before anything else, never start a task
/// outside an open window, run one task in all, and end with every window closed.
#[tokio::test(start_paused = true)]
async fn a_crash_at_every_point_of_the_window_then_resume_closes_it() {
    let plan = plan();
    let clean = FakeWorld::for_plan(&plan);
    let (f, _) = release(&clean, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    let last = clean.with(|w| {
        w.calls
            .iter()
            .rposition(|c| c.starts_with("local.run"))
            .unwrap() as u64
            + 3
    });
    let mut crashed_with_window_open = 0;
    for mode in [CrashMode::Before, CrashMode::After] {
        for n in 1..=last {
            let world = FakeWorld::for_plan(&plan);
            world.with(|w| w.crash_at = Some((n, mode)));
            let ports = world.ports(true);
            let (tx, _rx) = unbounded_channel();
            let (_ctx, crx) = unbounded_channel();
            tokio::select! {
                f = run::release(&plan, &ports, common::release_request("1.4.0"), tx, crx) => {
                    panic!("crash point {n} {mode:?} never reached: {}", f.message)
                }
                _ = world.crashed() => {}
            };
            drop(ports);
            let at = format!(
                "crash at call {n} ({mode:?}) {}",
                world.with(|w| w.calls.last().cloned().unwrap_or_default())
            );
            let before = story(&world);
            let open = before.iter().filter(|s| *s == "enter").count()
                > before.iter().filter(|s| *s == "exit").count();
            let (f, _) = resume(&world, &plan).await;
            if f.exit_code == exit::USAGE {
                // Nothing was recorded in progress yet: a new release starts over.
                assert!(before.is_empty(), "{at}: {}", f.message);
                continue;
            }
            assert_eq!(f.exit_code, exit::OK, "{at}: {}", f.message);
            let after = story(&world);
            if open {
                crashed_with_window_open += 1;
                assert_eq!(
                    after.get(before.len()).map(String::as_str),
                    Some("exit"),
                    "{at}: resume did not close the window first: {after:?}"
                );
            }
            assert_eq!(world.with(|w| w.run_task_calls), 1, "{at}: {after:?}");
            // The one task started inside an open window.
            let t = after.iter().position(|s| s == "run_task").unwrap();
            assert_eq!(after[t - 1], "enter", "{at}: {after:?}");
            assert_eq!(after.last().map(String::as_str), Some("deploy"), "{at}");
            let r = record(&world, &f.release_id);
            assert!(all_closed(&r), "{at}: {:?}", r.read_only);
        }
    }
    assert!(
        crashed_with_window_open >= 6,
        "only {crashed_with_window_open} crash points with the window open"
    );
}

/// A release killed with its window open, its lock broken, then a new release: the new
/// run closes the old window (runs `exit`) as it supersedes the old release.
#[tokio::test(start_paused = true)]
async fn a_superseded_release_gets_its_window_closed_by_the_next_release() {
    let plan = plan();
    let clean = FakeWorld::for_plan(&plan);
    release(&clean, &plan).await;
    let enter_call =
        clean.with(|w| w.calls.iter().position(|c| c.ends_with(ENTER)).unwrap()) as u64 + 1;

    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.crash_at = Some((enter_call, CrashMode::After)));
    let ports = world.ports(true);
    let (tx, _rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let first = tokio::select! {
        f = run::release(&plan, &ports, common::release_request("1.4.0"), tx, crx) => {
            panic!("no crash: {}", f.message)
        }
        _ = world.crashed() => world.with(|w| {
            let key = w.objects.keys().find(|k| k.contains("/releases/")).cloned();
            key.expect("a record")
        }),
    };
    drop(ports);
    assert_eq!(story(&world), ["enter"]);
    let ports = world.ports(true);
    let report = run::unlock(&plan, &ports, true, "carol@ops-3")
        .await
        .expect("unlock");
    assert!(report.broken);

    let (tx, _rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let f = run::release(&plan, &ports, common::release_request("1.5.0"), tx, crx).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(
        story(&world),
        ["enter", "exit", "enter", "run_task", "exit", "deploy"]
    );
    let old: Record = world.with(|w| serde_json::from_slice(&w.objects[&first].0).unwrap());
    assert_eq!(old.outcome, Some(Outcome::Superseded));
    assert!(all_closed(&old), "{:?}", old.read_only);
    assert!(
        old.read_only[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains(&f.release_id)),
        "{:?}",
        old.read_only
    );
}
