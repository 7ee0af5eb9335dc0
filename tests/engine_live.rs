//! The live colour across the migration and during the shift, over in-memory ports with
//! paused time: a schema change that breaks the running version stops the release before
//! anything is deployed (exit 6); with the watch off the same change goes all the way.

use crate::common;
use crate::common::drain;
use crate::common::release_with_operator;

use glidepath::engine::event::{Event, LiveStage, Outcome, Phase};
use glidepath::engine::fake::{healthy_sample, FakeWorld};
use glidepath::engine::ledger::{self, Record};
use glidepath::engine::lock;
use glidepath::engine::ports::Weights;
use glidepath::engine::run::{self, Finished};
use glidepath::exit;
use glidepath::gate::{ColourSample, Signal, Verdict};
use glidepath::plan::Plan;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

/// The engine plan with the live watch on (its default, three metric periods).
fn plan() -> Plan {
    let mut p = common::engine_plan();
    p.migration.as_mut().expect("migration").watch = Duration::from_secs(3);
    p
}

async fn release(world: &FakeWorld, plan: &Plan, version: &str) -> (Finished, Vec<Event>) {
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let f = run::release(plan, &ports, common::release_request(version), tx, crx).await;
    (f, drain(rx))
}

fn record(world: &FakeWorld, id: &str) -> Record {
    world.with(|w| {
        let (b, _) = w.objects.get(&ledger::record_key(id)).expect("record");
        serde_json::from_slice(b).unwrap()
    })
}

fn text(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| glidepath::view::lines::describe(e).1)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Blue as the fake's healthy sample, with `f` applied.
fn blue(f: impl FnOnce(&mut ColourSample)) -> ColourSample {
    let mut c = healthy_sample().blue;
    f(&mut c);
    c
}

fn deploys(world: &FakeWorld) -> usize {
    world.with(|w| {
        w.calls
            .iter()
            .filter(|c| c.starts_with("fleet.deploy"))
            .count()
    })
}

/// What every stop of the watch must leave: exit 6, nothing deployed, no weight written,
/// the lock released, one migration task, the outcome recorded.
fn assert_stopped_before_deploy(world: &FakeWorld, f: &Finished, events: &[Event]) {
    let story = text(events);
    assert_eq!(f.exit_code, exit::LIVE_BROKEN, "{}\n{story}", f.message);
    assert_eq!(f.outcome, Outcome::Failed);
    assert_eq!(f.cause, exit::Cause::LiveBroken);
    assert!(
        f.message
            .contains("the schema change broke the running version"),
        "{}",
        f.message
    );
    assert!(f
        .message
        .contains("Nothing was deployed and no traffic moved"));
    assert_eq!(deploys(world), 0, "deployed after a broken live colour");
    world.with(|w| {
        assert!(w.weight_history.is_empty(), "{:?}", w.weight_history);
        assert_eq!(w.weights, Weights::all_blue());
        assert_eq!(w.run_task_calls, 1);
        assert!(!w.objects.contains_key(lock::LOCK_KEY), "lock released");
    });
    let r = record(world, &f.release_id);
    assert_eq!(r.exit_code, Some(exit::LIVE_BROKEN));
    assert!(r.live_baseline.is_some());
    let snap = r.snapshot_id.expect("snapshot");
    assert!(f.message.contains(&snap), "{}", f.message);
    assert!(
        f.message.contains(&format!(
            "aws rds restore-db-instance-from-db-snapshot --db-instance-identifier shop-db-restored --db-snapshot-identifier {snap}"
        )),
        "{}",
        f.message
    );
    assert!(matches!(
        events.last(),
        Some(Event::ReleaseFinished { snapshot_id: Some(s), exit_code: 6, .. }) if *s == snap
    ));
    // Nothing after the migration ran.
    for p in [Phase::Assets, Phase::Deploy, Phase::Shift] {
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::PhaseStarted { phase } if *phase == p)),
            "{p} started:\n{story}"
        );
    }
}

fn live_failure(events: &[Event]) -> Option<(Signal, String)> {
    events.iter().find_map(|e| match e {
        Event::LiveWatch {
            stage: LiveStage::Watch,
            verdict: Verdict::Fail { signal, reason },
            ..
        } => Some((*signal, reason.clone())),
        _ => None,
    })
}

#[tokio::test(start_paused = true)]
async fn a_migration_that_breaks_the_live_colour_stops_before_deploy_with_exit_6() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.blue_after_migration = Some(blue(|c| c.errors_5xx = 30.0));
    });
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_stopped_before_deploy(&world, &f, &events);
    let (signal, reason) = live_failure(&events).expect("a failed live watch");
    assert_eq!(signal, Signal::ErrorRate, "{reason}");
    // The baseline came first and was healthy.
    assert!(events.iter().any(|e| matches!(
        e,
        Event::LiveWatch {
            stage: LiveStage::Baseline,
            verdict: Verdict::Pass,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn the_same_break_with_the_watch_off_passes_the_gates_and_finalizes() {
    // Today's danger: the gate compares green with a blue that the migration broke, and a
    // broken blue makes any green look good.
    let mut plan = plan();
    plan.migration.as_mut().unwrap().watch = Duration::ZERO;
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.blue_after_migration = Some(blue(|c| c.errors_5xx = 30.0));
    });
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, text(&events));
    assert_eq!(f.outcome, Outcome::Finalized);
    assert!(deploys(&world) > 0);
    assert!(!events.iter().any(|e| matches!(
        e,
        Event::LiveWatch {
            stage: LiveStage::Baseline | LiveStage::Watch,
            ..
        }
    )));
    assert!(text(&events).contains("migration.watch = 0s"));
    // Without a baseline the shift still notices a catastrophic live colour, and says so.
    assert!(
        text(&events).contains("unhealthy in its own terms"),
        "{}",
        text(&events)
    );
}

#[tokio::test(start_paused = true)]
async fn a_healthy_migration_is_watched_then_deploys() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, text(&events));
    let r = record(&world, &f.release_id);
    let b = r.live_baseline.expect("baseline recorded");
    assert!(b.requests >= 300.0, "{b:?}");
    let detail = r.phases.migrate.detail.unwrap_or_default();
    assert!(detail.contains("healthy after the migration"), "{detail}");
    // The watch covered migration.watch of periods after the task.
    let watched = events
        .iter()
        .filter_map(|e| match e {
            Event::LiveWatch {
                stage: LiveStage::Watch,
                watched_s,
                ..
            } => Some(*watched_s),
            _ => None,
        })
        .fold(0.0, f64::max);
    assert!(watched >= 3.0, "{watched}");
    assert!(r.live_unhealthy.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_slower_or_unhealthy_live_colour_after_the_migration_stops_it_too() {
    for (broken, want) in [
        (
            blue(|c| {
                c.latency_avg_ms = Some(400.0);
                c.latency_p95_ms = Some(650.0);
            }),
            Signal::Latency,
        ),
        (
            blue(|c| {
                c.healthy = 0;
                c.unhealthy = 2;
            }),
            Signal::TargetHealth,
        ),
    ] {
        let plan = plan();
        let world = FakeWorld::for_plan(&plan);
        world.with(|w| w.blue_after_migration = Some(broken));
        let (f, events) = release(&world, &plan, "1.4.0").await;
        assert_stopped_before_deploy(&world, &f, &events);
        let (signal, reason) = live_failure(&events).expect("a failed live watch");
        assert_eq!(signal, want, "{reason}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_live_colour_that_breaks_during_the_shift_is_warned_about_in_every_view() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        let broken = blue(|c| {
            c.requests = 50.0;
            c.errors_5xx = 25.0;
        });
        w.blue_during_shift = Some((50, broken));
    });
    let (f, events) = release(&world, &plan, "1.4.0").await;
    let story = text(&events);
    let warnings: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Warning { message } if message.contains("unhealthy in its own terms") => {
                Some(message)
            }
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "warned once:\n{story}");
    assert!(
        story.contains("live colour blue FAILED its own check"),
        "{story}"
    );
    assert!(
        warnings[0].contains("live colour (blue)"),
        "{}",
        warnings[0]
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::LiveWatch {
            stage: LiveStage::Shift,
            verdict: Verdict::Fail { .. },
            ..
        }
    )));
    let r = record(&world, &f.release_id);
    assert!(
        r.live_unhealthy.is_some(),
        "recorded for watchers and rollback"
    );
    // The JSON view carries it too (the same event stream).
    let json = serde_json::to_string(&events).unwrap();
    assert!(json.contains("\"type\":\"live_watch\""));
    assert!(json.contains("\"stage\":\"shift\""));
}

#[tokio::test(start_paused = true)]
async fn a_rollback_to_a_live_colour_found_unhealthy_says_so() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        let broken = blue(|c| {
            c.requests = 50.0;
            c.errors_5xx = 25.0;
        });
        w.blue_during_shift = Some((10, broken));
        // Green fails its gate later in the same step: target health.
        let mut bad = healthy_sample();
        bad.green.unhealthy = 1;
        for _ in 0..12 {
            w.health_script.push_back(Ok(healthy_sample()));
        }
        w.health_script.push_back(Ok(bad));
    });
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(
        f.exit_code,
        exit::ROLLED_BACK,
        "{}\n{}",
        f.message,
        text(&events)
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Warning { message } if message.starts_with("rolling back to blue although it was found unhealthy")
        )),
        "{}",
        text(&events)
    );
}

#[tokio::test(start_paused = true)]
async fn a_release_stopped_during_the_watch_resumes_it_against_the_recorded_baseline() {
    use glidepath::engine::event::Command;
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let w2 = world.clone();
    let (f, _) = release_with_operator(&world, &plan, "1.4.0", |e| {
        matches!(
            e,
            Event::LiveWatch {
                stage: LiveStage::Watch,
                ..
            }
        )
        .then(|| {
            // The break shows only after the stop: the resumed run must be the one to see it.
            w2.with(|w| w.blue_after_migration = Some(blue(|c| c.errors_5xx = 30.0)));
            Command::Abort
        })
    })
    .await;
    assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
    let baseline = record(&world, &f.release_id)
        .live_baseline
        .expect("recorded");

    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let req = run::ResumeRequest {
        auto_approve: false,
        holder: "bob@ops-2".into(),
        endpoint: None,
    };
    let again = run::resume(&plan, &ports, req, tx, crx).await;
    let events = drain(rx);
    assert_stopped_before_deploy(&world, &again, &events);
    let r = record(&world, &again.release_id);
    assert_eq!(r.live_baseline, Some(baseline), "the same baseline");
    assert!(!text(&events).contains("no baseline"), "{}", text(&events));
}

#[tokio::test(start_paused = true)]
async fn a_watch_without_metrics_says_so_and_goes_on() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let w2 = world.clone();
    let (f, events) = release_with_operator(&world, &plan, "1.4.0", |e| {
        if matches!(e, Event::Task { status, .. } if status == "STOPPED") {
            // Health cannot be read for the whole watch (and its grace).
            w2.with(|w| {
                w.transient.insert("health.poll".into(), 3);
            });
        }
        None
    })
    .await;
    let story = text(&events);
    assert_eq!(f.exit_code, exit::OK, "{}\n{story}", f.message);
    assert!(
        story.contains("cannot read the live colour's health after the migration"),
        "{story}"
    );
    assert!(
        story.contains("was watched for only 0s of the 3s migration.watch"),
        "{story}"
    );
}
