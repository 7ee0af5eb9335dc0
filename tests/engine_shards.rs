//! Sharded migrations (`migration.shards`) over in-memory ports with paused time: every
//! shard runs once, in order, one at a time, with its `SHARD`; a failing shard stops the
//! rest and `resume` goes on from it; a crash at every port call, then resume, still runs
//! each shard exactly once.

use crate::common;
use crate::common::{drain, fake_record as record, fake_release as release, fake_resume as resume};

use glidepath::engine::durable;
use glidepath::engine::event::{Envelope, Event, LiveStage, Outcome, ShardState};
use glidepath::engine::fake::{CrashMode, FakeWorld};
use glidepath::engine::ledger;
use glidepath::engine::lock;
use glidepath::engine::ports::Weights;
use glidepath::engine::run;
use glidepath::exit;
use glidepath::plan::Plan;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

const SHARDS: [&str; 3] = ["a", "b", "c"];

fn plan() -> Plan {
    let mut p = common::engine_plan();
    let m = p.migration.as_mut().expect("migration");
    m.shards = SHARDS.iter().map(|s| s.to_string()).collect();
    // The live watch on, as by default: it must come once, after the last shard.
    m.watch = Duration::from_secs(3);
    p
}

/// The `SHARD` of every task RunTask started, in order, with the exit it ended with.
fn shard_tasks(world: &FakeWorld) -> Vec<(String, Option<i32>)> {
    world.with(|w| {
        w.tasks
            .iter()
            .map(|t| {
                let shard = t
                    .spec
                    .environment
                    .iter()
                    .find(|(k, _)| k == "SHARD")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                (shard, t.info.exit_code)
            })
            .collect()
    })
}

fn shard_events(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Shard {
                index,
                shards,
                name,
                state,
                attempt,
                ..
            } => Some(format!(
                "{state:?} {}/{shards} {name} #{attempt}",
                index + 1
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn every_shard_runs_once_in_order_one_at_a_time_then_the_live_watch_once() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(
        shard_tasks(&world),
        [
            ("a".to_string(), Some(0)),
            ("b".to_string(), Some(0)),
            ("c".to_string(), Some(0))
        ]
    );
    world.with(|w| {
        // Each RunTask found no other task still running: one at a time.
        assert_eq!(w.active_at_run_task, [0, 0, 0]);
        let started_by: std::collections::BTreeSet<_> =
            w.tasks.iter().map(|t| t.spec.started_by.clone()).collect();
        assert_eq!(started_by.len(), 3, "each shard has its own startedBy");
    });
    assert_eq!(
        shard_events(&events),
        [
            "Started 1/3 a #0",
            "Done 1/3 a #0",
            "Started 2/3 b #0",
            "Done 2/3 b #0",
            "Started 3/3 c #0",
            "Done 3/3 c #0"
        ]
    );
    // The baseline before the first shard, the watch once after the last.
    let pos = |p: &dyn Fn(&Event) -> bool| events.iter().position(p).expect("event");
    let baseline = pos(&|e| {
        matches!(
            e,
            Event::LiveWatch {
                stage: LiveStage::Baseline,
                ..
            }
        )
    });
    let first_start = pos(&|e| {
        matches!(
            e,
            Event::Shard {
                state: ShardState::Started,
                ..
            }
        )
    });
    let last_done = events
        .iter()
        .rposition(|e| {
            matches!(
                e,
                Event::Shard {
                    state: ShardState::Done,
                    ..
                }
            )
        })
        .expect("done");
    let watches: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            matches!(
                e,
                Event::LiveWatch {
                    stage: LiveStage::Watch,
                    ..
                }
            )
        })
        .map(|(i, _)| i)
        .collect();
    assert!(first_start < baseline, "the intent of shard a comes first");
    assert!(!watches.is_empty(), "the live colour is watched");
    assert!(
        watches.iter().all(|w| *w > last_done),
        "watched only after the last shard: {watches:?} vs {last_done}"
    );
    // What `watch` derives from the record is what the run said.
    let r = record(&world, &f.release_id);
    assert_eq!(
        shard_events(&durable::history(&plan, &r)),
        shard_events(&events)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_shard_stops_the_rest_and_resume_goes_on_from_it() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.shard_exit.insert("b".into(), 3);
    });
    let (f, events) = release(&world, &plan).await;
    assert_eq!(f.exit_code, exit::MIGRATION_FAILED, "{}", f.message);
    assert_eq!(f.outcome, Outcome::Interrupted);
    for needle in [
        "shard b (2/3) failed",
        "exited with code 3",
        "shards done: a",
        "not run: c",
        "glidepath resume",
    ] {
        assert!(f.message.contains(needle), "no `{needle}` in {}", f.message);
    }
    assert_eq!(
        shard_tasks(&world),
        [("a".to_string(), Some(0)), ("b".to_string(), Some(3))]
    );
    assert!(shard_events(&events).contains(&"Failed 2/3 b #0".to_string()));
    world.with(|w| {
        assert!(w.weight_history.is_empty(), "weights never moved");
        assert!(!w.calls.iter().any(|c| c.starts_with("fleet.deploy")));
        assert!(w.objects.contains_key(lock::LOCK_KEY), "the lock is kept");
    });
    // `watch` reports the same ending and code from the record.
    let r = record(&world, &f.release_id);
    assert!(matches!(
        durable::finished(&r),
        Some(Event::ReleaseFinished { exit_code, outcome: Outcome::Interrupted, .. })
            if exit_code == exit::MIGRATION_FAILED
    ));

    // Fixed: resume tries b again (a new task), then c; a never runs again.
    world.with(|w| {
        w.shard_exit.clear();
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (f, events) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(
        shard_tasks(&world),
        [
            ("a".to_string(), Some(0)),
            ("b".to_string(), Some(3)),
            ("b".to_string(), Some(0)),
            ("c".to_string(), Some(0))
        ]
    );
    let shown = shard_events(&events);
    assert!(shown.contains(&"Started 2/3 b #1".to_string()), "{shown:?}");
    assert!(shown.contains(&"Done 3/3 c #0".to_string()), "{shown:?}");
    world.with(|w| {
        assert_eq!(w.weights, Weights::green(100));
        let started_by: std::collections::BTreeSet<_> =
            w.tasks.iter().map(|t| t.spec.started_by.clone()).collect();
        assert_eq!(started_by.len(), 4, "the retry has its own startedBy");
    });
}

/// Crash (drop the engine) at the Nth port call, before or after its effect, then resume
/// until the release ends: every shard ran exactly once and never beside another.
#[tokio::test(start_paused = true)]
async fn a_crash_at_every_port_call_then_resume_runs_each_shard_exactly_once() {
    let plan = plan();
    let mut crash_points = 0;
    let mut in_migration = 0;
    for mode in [CrashMode::Before, CrashMode::After] {
        for n in 1.. {
            let world = FakeWorld::for_plan(&plan);
            world.with(|w| w.crash_at = Some((n, mode)));
            let ports = world.ports(true);
            let (tx, _rx) = unbounded_channel();
            let (_ctx, crx) = unbounded_channel();
            let crashed = tokio::select! {
                f = run::release(&plan, &ports, common::release_request("1.4.0"), tx, crx) => {
                    assert_eq!(f.exit_code, 0, "N={n} {mode:?}: {}", f.message);
                    false
                }
                _ = world.crashed() => true,
            };
            drop(ports);
            if !crashed {
                break;
            }
            crash_points += 1;
            let at = world.with(|w| w.calls.last().cloned().unwrap_or_default());
            let ctx = format!("crash at call {n} ({mode:?}): {at}");
            let tasks_before = shard_tasks(&world).len();
            if tasks_before > 0 && tasks_before < 3 || at.starts_with("tasks.") {
                in_migration += 1;
            }
            let (f, _) = resume(&world, &plan).await;
            if f.exit_code == exit::USAGE && shard_tasks(&world).is_empty() {
                // Nothing had been recorded in progress: a fresh release.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (f, _) = release(&world, &plan).await;
                assert_eq!(f.exit_code, exit::OK, "{ctx}: fresh release: {}", f.message);
            } else if f.exit_code == exit::USAGE {
                // Everything had ended before the crash.
                let ix: ledger::Index = world
                    .with(|w| serde_json::from_slice(&w.objects[ledger::INDEX_KEY].0).unwrap());
                assert_eq!(
                    ix.releases.first().and_then(|e| e.outcome),
                    Some(Outcome::Finalized),
                    "{ctx}: {}",
                    f.message
                );
            } else {
                assert_eq!(f.exit_code, exit::OK, "{ctx}: {}", f.message);
            }
            assert_eq!(
                shard_tasks(&world),
                [
                    ("a".to_string(), Some(0)),
                    ("b".to_string(), Some(0)),
                    ("c".to_string(), Some(0))
                ],
                "{ctx}"
            );
            world.with(|w| {
                assert!(
                    w.active_at_run_task.iter().all(|a| *a == 0),
                    "{ctx}: a RunTask beside a running task: {:?}",
                    w.active_at_run_task
                );
                assert!(w.violations.is_empty(), "{ctx}: {:?}", w.violations);
            });
        }
    }
    assert!(crash_points > 100, "only {crash_points} crash points");
    assert!(
        in_migration > 20,
        "only {in_migration} inside the migration"
    );
}

/// `glidepath watch` beside a sharded release: the same shard events, in the same order,
/// from the ledger alone, and each shard's task followed in turn.
#[tokio::test(start_paused = true)]
async fn a_watcher_reports_the_same_shards_and_follows_each_shard_s_task() {
    use glidepath::engine::event::Command;
    use glidepath::engine::watch::{self, WatchRequest};
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.migration_ticks = 5);
    let release_ports = world.ports(true);
    let watch_ports = world.ports(true);
    let (tx, rx) = unbounded_channel::<Envelope>();
    let (_cmd, crx) = unbounded_channel::<Command>();
    let engine = run::release(
        &plan,
        &release_ports,
        common::release_request("1.4.0"),
        tx,
        crx,
    );
    let (wtx, wrx) = unbounded_channel();
    let (_wcmd, wcrx) = unbounded_channel::<Command>();
    let mut req = WatchRequest::new(None);
    req.wait = true;
    let watcher = watch::watch(&plan, &watch_ports, req, wtx, wcrx);
    let (f, w) = tokio::join!(engine, watcher);
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(w.outcome, Some(Outcome::Finalized));
    let ran = drain(rx);
    let watched = drain(wrx);
    assert_eq!(shard_events(&watched), shard_events(&ran));
    assert_eq!(shard_events(&watched).len(), 6);
    let stopped: std::collections::BTreeSet<String> = watched
        .iter()
        .filter_map(|e| match e {
            Event::Task {
                task_arn, status, ..
            } if status == "STOPPED" => Some(task_arn.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        stopped.len(),
        3,
        "each shard's task seen stopped: {stopped:?}"
    );
}
