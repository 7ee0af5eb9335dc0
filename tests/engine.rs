//! The release engine over in-memory ports with paused time: every phase's success and
//! failure, operator commands, the lock, and a crash at every port call followed by resume.

use crate::common;
use crate::common::drain;
use crate::common::release_with_operator;

use glidepath::engine::durable;
use glidepath::engine::event::{ColourName, Command, Event, Outcome, Phase, PhaseStatus};
use glidepath::engine::fake::{CrashMode, FakeWorld};
use glidepath::engine::ledger::{self, GateVerdict, Index, Record};
use glidepath::engine::lock;
use glidepath::engine::ports::{PortError, SnapshotInfo, SnapshotStatus, Weights};
use glidepath::engine::run::{self, Finished, ReleaseRequest, ResumeRequest};
use glidepath::exit;
use glidepath::gate::{HealthSample, Signal};
use glidepath::plan::{GateMode, Plan};
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

fn plan() -> Plan {
    common::engine_plan()
}

fn req(version: &str) -> ReleaseRequest {
    common::release_request(version)
}

fn resume_req() -> ResumeRequest {
    ResumeRequest {
        auto_approve: false,
        holder: "bob@ops-2".into(),
        endpoint: None,
    }
}

/// Run a release with an operator who never says anything (the channel stays open).
async fn release(world: &FakeWorld, plan: &Plan, version: &str) -> (Finished, Vec<Event>) {
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let f = run::release(plan, &ports, req(version), tx, crx).await;
    (f, drain(rx))
}

async fn resume(world: &FakeWorld, plan: &Plan) -> (Finished, Vec<Event>) {
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let f = run::resume(plan, &ports, resume_req(), tx, crx).await;
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

fn record(world: &FakeWorld, id: &str) -> Record {
    world.with(|w| {
        let (b, _) = w.objects.get(&ledger::record_key(id)).expect("record");
        serde_json::from_slice(b).unwrap()
    })
}

fn lock_held(world: &FakeWorld) -> bool {
    world.with(|w| w.objects.contains_key(lock::LOCK_KEY))
}

/// ReleaseStarted first, ReleaseFinished last, every started phase finished.
fn assert_well_formed(events: &[Event]) {
    assert!(
        matches!(events.first(), Some(Event::ReleaseStarted { .. })),
        "first event: {:?}",
        events.first()
    );
    assert!(
        matches!(events.last(), Some(Event::ReleaseFinished { .. })),
        "last event: {:?}",
        events.last()
    );
    let mut open: Option<Phase> = None;
    for e in events {
        match e {
            Event::PhaseStarted { phase } => {
                assert_eq!(open, None, "{phase} started while {open:?} was running");
                open = Some(*phase);
            }
            Event::PhaseFinished { phase, .. } => {
                assert_eq!(open, Some(*phase), "{phase} finished but was not started");
                open = None;
            }
            _ => {}
        }
    }
    assert_eq!(open, None, "a phase never finished");
}

fn phase_finished(events: &[Event], p: Phase) -> Option<(PhaseStatus, Option<String>)> {
    events.iter().find_map(|e| match e {
        Event::PhaseFinished {
            phase,
            status,
            detail,
            ..
        } if *phase == p => Some((*status, detail.clone())),
        _ => None,
    })
}

fn unhealthy_green() -> HealthSample {
    let mut s = glidepath::engine::fake::healthy_sample();
    s.green.unhealthy = 1;
    s
}

#[tokio::test(start_paused = true)]
async fn happy_release_finalizes_green() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.outcome, Outcome::Finalized, "{}", f.message);
    assert_eq!(f.exit_code, exit::OK);
    assert!(f.release_id.starts_with("1.4.0-"), "{}", f.release_id);
    assert_well_formed(&events);
    for p in Phase::ORDER {
        assert_eq!(
            phase_finished(&events, p).map(|x| x.0),
            Some(PhaseStatus::Done),
            "{p}"
        );
    }
    world.with(|w| {
        assert_eq!(w.weights, Weights::green(100));
        assert_eq!(
            w.weight_history,
            vec![Weights::green(10), Weights::green(50), Weights::green(100)]
        );
        assert_eq!(w.run_task_calls, 1);
        assert!(w.violations.is_empty(), "{:?}", w.violations);
        assert_eq!(w.assets_published, vec!["1.4.0".to_string()]);
        let green = &w.services["shop-green"];
        assert_eq!((green.desired, green.running), (2, 2));
        assert_eq!(
            w.task_definitions[&green.task_definition],
            "registry.example.com/shop:1.4.0"
        );
        // The migration ran the *new* task definition with the plan's command.
        assert_eq!(w.tasks[0].spec.task_definition, green.task_definition);
        assert_eq!(w.tasks[0].spec.command, vec!["bin/migrate".to_string()]);
        assert!(w.tasks[0].spec.started_by.len() <= 36);
    });
    assert!(!lock_held(&world), "lock released on finalize");
    let ix = index(&world);
    let live = ix.live.expect("live");
    assert_eq!(
        (live.colour, live.version.as_str()),
        (ColourName::Green, "1.4.0")
    );
    assert_eq!(ix.standby.expect("standby").colour, ColourName::Blue);
    assert_eq!(ix.current, None);
    let r = record(&world, &f.release_id);
    assert_eq!(r.outcome, Some(Outcome::Finalized));
    assert_eq!(r.shift.step, 3);
    assert!(r.phases.migrate.intent_at <= r.phases.migrate.done_at);
    // Logs, snapshot progress and health all reached the views.
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Log { line, .. } if line == "Migrations complete.")));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Progress {
            phase: Phase::Snapshot,
            done: 100,
            ..
        }
    )));
    assert!(events.iter().any(|e| matches!(e, Event::Health { .. })));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::GatePassed { .. }))
            .count(),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn second_release_goes_back_to_blue_with_honest_weights() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let (first, _) = release(&world, &plan, "1.4.0").await;
    assert_eq!(first.exit_code, 0, "{}", first.message);
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.with(|w| w.weight_history.clear());
    let (f, events) = release(&world, &plan, "1.5.0").await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ReleaseStarted {
            live: ColourName::Green,
            target: ColourName::Blue,
            ..
        }
    )));
    world.with(|w| {
        assert_eq!(
            w.weight_history,
            vec![
                Weights {
                    blue: 10,
                    green: 90
                },
                Weights {
                    blue: 50,
                    green: 50
                },
                Weights {
                    blue: 100,
                    green: 0
                }
            ]
        );
        assert!(w.violations.is_empty(), "{:?}", w.violations);
    });
    let ix = index(&world);
    assert_eq!(ix.live.unwrap().colour, ColourName::Blue);
    let standby = ix.standby.unwrap();
    assert_eq!(
        (standby.colour, standby.version.as_str()),
        (ColourName::Green, "1.4.0")
    );
    assert_eq!(ix.releases.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn migration_failure_exits_5_without_moving_traffic() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.migration_exit = 1);
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::MIGRATION_FAILED, "{}", f.message);
    assert_eq!(f.outcome, Outcome::Failed);
    assert!(f.message.contains("exited with code 1"), "{}", f.message);
    assert_well_formed(&events);
    let Some(Event::ReleaseFinished { snapshot_id, .. }) = events.last() else {
        panic!()
    };
    assert!(snapshot_id
        .as_deref()
        .is_some_and(|s| s.starts_with("shop-db-1-4-0-")));
    world.with(|w| {
        assert!(w.weight_history.is_empty(), "weights never moved");
        assert_eq!(w.run_task_calls, 1);
        assert!(!w.calls.iter().any(|c| c.starts_with("fleet.deploy")));
    });
    assert!(!lock_held(&world), "lock released on failure");
    assert_eq!(record(&world, &f.release_id).outcome, Some(Outcome::Failed));
    assert_eq!(index(&world).current, None);
}

/// A migration task of an earlier release of this app/environment (what `unlock --force`
/// can leave running), as ECS would show it.
fn foreign_migration(world: &FakeWorld, plan: &Plan) -> String {
    use glidepath::engine::fake::FakeTask;
    use glidepath::engine::ports::{TaskInfo, TaskSpec};
    let arn = "arn:aws:ecs:us-east-1:123456789012:task/app/earlier".to_string();
    let started_by =
        glidepath::engine::ids::started_by(&plan.app, &plan.environment, "1.3.0-20261101T000000Z");
    world.with(|w| {
        w.tasks.push(FakeTask {
            info: TaskInfo {
                arn: arn.clone(),
                last_status: "RUNNING".into(),
                exit_code: None,
                stopped_reason: None,
                log: None,
            },
            spec: TaskSpec {
                task_definition: "app:1".into(),
                container: "web".into(),
                command: vec!["bin/migrate".into()],
                started_by,
                client_token: "earlier".into(),
                subnets: vec![],
                security_groups: vec![],
                assign_public_ip: false,
                environment: Vec::new(),
            },
            // Never stops by being described: only the test stops it.
            describes_left: u32::MAX,
            lines: vec![],
            started_at: chrono::Utc::now() - chrono::Duration::minutes(7),
        })
    });
    arn
}

#[tokio::test(start_paused = true)]
async fn a_migration_waits_for_another_releases_task_to_stop() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let arn = foreign_migration(&world, &plan);
    // A task of another app on the same cluster is not ours to wait for.
    let other_app = {
        let mut p = plan.clone();
        p.app = "other".into();
        p
    };
    foreign_migration(&world, &other_app);
    world.with(|w| w.tasks[1].info.arn.push_str("-other-app"));
    let stopper = {
        let world = world.clone();
        let arn = arn.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(40)).await;
            world.with(|w| {
                let t = w.tasks.iter_mut().find(|t| t.info.arn == arn).unwrap();
                t.info.last_status = "STOPPED".into();
                t.info.exit_code = Some(0);
            });
        })
    };
    let started = tokio::time::Instant::now();
    let (f, events) = release(&world, &plan, "1.4.0").await;
    stopper.await.unwrap();
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert!(started.elapsed() >= Duration::from_secs(40));
    let waited = events
        .iter()
        .find_map(|e| match e {
            Event::Warning { message } if message.contains("of another release") => {
                Some(message.clone())
            }
            _ => None,
        })
        .expect("a warning about the other migration");
    assert!(waited.contains("earlier"), "names the task: {waited}");
    assert!(waited.contains("started 7m"), "says its age: {waited}");
    world.with(|w| {
        assert_eq!(w.run_task_calls, 1);
        // Only the other app's task was still running when ours started.
        assert_eq!(w.active_at_run_task, vec![1]);
    });
}

#[tokio::test(start_paused = true)]
async fn a_migration_refuses_while_another_releases_task_keeps_running() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    foreign_migration(&world, &plan);
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::LOCKED, "{}", f.message);
    assert_well_formed(&events);
    assert!(f.message.contains("earlier"), "{}", f.message);
    assert!(f.message.contains("started 7m"), "{}", f.message);
    assert!(f.message.contains("No traffic moved"), "{}", f.message);
    world.with(|w| {
        assert_eq!(w.run_task_calls, 0, "no second migration");
        assert!(w.weight_history.is_empty());
    });
    assert!(!lock_held(&world), "the lock is released");
}

#[tokio::test(start_paused = true)]
async fn snapshot_failure_and_timeout_stop_before_the_migration() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.snapshot_fails = true);
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::UNEXPECTED, "{}", f.message);
    assert!(f.message.contains("failed"), "{}", f.message);
    assert_eq!(
        phase_finished(&events, Phase::Snapshot).unwrap().0,
        PhaseStatus::Failed
    );
    assert_eq!(world.with(|w| w.run_task_calls), 0);
    assert!(!lock_held(&world));

    let mut slow = plan.clone();
    slow.database.snapshot_timeout = Duration::from_secs(10);
    let world = FakeWorld::for_plan(&slow);
    world.with(|w| w.snapshot_ticks = 1000);
    let (f, _) = release(&world, &slow, "1.4.0").await;
    assert_eq!(f.exit_code, exit::UNEXPECTED);
    assert!(f.message.contains("snapshot_timeout"), "{}", f.message);
}

#[tokio::test(start_paused = true)]
async fn someone_elses_snapshot_is_not_adopted_but_our_own_is() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    // Release ids are per second: make every id this test could produce collide.
    let now = chrono::Utc::now();
    for s in 0..3 {
        let id = glidepath::engine::ids::release_id("1.4.0", now + chrono::Duration::seconds(s));
        let snap = glidepath::engine::ids::snapshot_id("shop-db", &id);
        world.with(|w| {
            w.snapshots.insert(
                snap.clone(),
                (
                    SnapshotInfo {
                        id: snap,
                        status: SnapshotStatus::Available,
                        release_tag: Some("someone-else".into()),
                    },
                    0,
                ),
            )
        });
    }
    let (f, _) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::UNEXPECTED);
    assert!(f.message.contains("not tagged"), "{}", f.message);
    world.with(|w| {
        assert!(!w
            .calls
            .iter()
            .any(|c| c.starts_with("database.create_snapshot")))
    });
}

#[tokio::test(start_paused = true)]
async fn assets_phase_publishes_skips_or_fails() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.assets_result = Err("access denied".into()));
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::UNEXPECTED);
    assert!(f.message.contains("access denied"), "{}", f.message);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Progress {
            phase: Phase::Assets,
            ..
        }
    )));
    world.with(|w| assert!(w.weight_history.is_empty()));

    // No publisher wired in: skipped, with the reason.
    let world = FakeWorld::for_plan(&plan);
    let ports = world.ports(false);
    let (tx, rx) = unbounded_channel();
    let (_c, crx) = unbounded_channel();
    let f = run::release(&plan, &ports, req("1.4.0"), tx, crx).await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    let (status, detail) = phase_finished(&drain(rx), Phase::Assets).unwrap();
    assert_eq!(status, PhaseStatus::Skipped);
    assert!(detail.unwrap().contains("publisher"));
}

#[tokio::test(start_paused = true)]
async fn deploy_whose_targets_stay_unhealthy_is_a_target_health_rollback_before_any_traffic() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.deploy_unhealthy = true);
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    assert!(f.message.contains("target health"), "{}", f.message);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::GateFailed {
            signal: Signal::TargetHealth,
            ..
        }
    )));
    // Green never took user traffic: the only weights ever written are all-blue.
    world.with(|w| {
        assert!(
            w.weight_history.iter().all(|x| x.green == 0),
            "{:?}",
            w.weight_history
        )
    });
    assert!(!lock_held(&world));
}

#[tokio::test(start_paused = true)]
async fn failing_smoke_test_rolls_back_before_user_traffic() {
    let mut plan = plan();
    plan.smoke = Some(glidepath::plan::SmokeConfig {
        command: vec!["./smoke.sh".into()],
        timeout: Duration::from_secs(30),
    });
    plan.traffic.test_url = Some("http://test.example".into());
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.smoke_result = Err("GET / returned 500".into()));
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::GateFailed {
            signal: Signal::Smoke,
            ..
        }
    )));
    world.with(|w| {
        assert!(w.weight_history.is_empty(), "{:?}", w.weight_history);
        assert_eq!(w.services["shop-green"].desired, 0, "scaled to zero");
        let env = &w.smoke_runs[0];
        assert!(env.contains(&("GREEN_URL".into(), "http://test.example".into())));
        assert!(env.contains(&("GLIDEPATH_VERSION".into(), "1.4.0".into())));
    });
}

/// The test listener is pointed at the colour being released before the smoke test, in
/// both directions (it starts on green, as the stage seeds it).
#[tokio::test(start_paused = true)]
async fn test_listener_follows_the_released_colour_both_ways() {
    let mut plan = plan();
    plan.smoke = Some(glidepath::plan::SmokeConfig {
        command: vec!["./smoke.sh".into()],
        timeout: Duration::from_secs(30),
    });
    plan.traffic.test_listener = Some("shop:8081".into());
    plan.traffic.test_url = Some("http://test.example:8081".into());
    let world = FakeWorld::for_plan(&plan);
    let mut seen = vec![];
    for version in ["1.4.0", "1.5.0"] {
        let (f, events) = release(&world, &plan, version).await;
        assert_eq!(f.exit_code, exit::OK, "{}", f.message);
        let told: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::TestTraffic {
                    listener,
                    colour,
                    target_group,
                } => Some((listener.clone(), *colour, target_group.clone())),
                _ => None,
            })
            .collect();
        seen.push(told);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(
        seen,
        vec![
            vec![(
                "shop:8081".to_string(),
                ColourName::Green,
                "shop-green".to_string()
            )],
            vec![(
                "shop:8081".to_string(),
                ColourName::Blue,
                "shop-blue".to_string()
            )],
        ]
    );
    world.with(|w| {
        assert_eq!(
            w.test_weights_at_smoke,
            vec![
                Some(Weights::green(100)),
                Some(Weights {
                    blue: 100,
                    green: 0
                })
            ]
        );
        // Only the second release had to move it (it starts on green).
        let moves: Vec<_> = w
            .calls
            .iter()
            .filter(|c| c.starts_with("traffic.set_test_weights"))
            .cloned()
            .collect();
        assert_eq!(moves, vec!["traffic.set_test_weights 100/0".to_string()]);
    });
}

#[tokio::test(start_paused = true)]
async fn gate_failure_rolls_back_to_100_0_with_exit_3() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    // Healthy through step 1 (30 s bake at 5 s polls), then green goes unhealthy.
    world.with(|w| {
        for _ in 0..9 {
            w.health_script
                .push_back(Ok(glidepath::engine::fake::healthy_sample()));
        }
        w.health_script.push_back(Ok(unhealthy_green()));
    });
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    assert_eq!(f.outcome, Outcome::RolledBack);
    assert!(f.message.contains("unhealthy"), "{}", f.message);
    assert_well_formed(&events);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::GateFailed {
            index: 1,
            weight: 50,
            signal: Signal::TargetHealth,
            ..
        }
    )));
    world.with(|w| {
        assert_eq!(w.weights, Weights::all_blue());
        assert_eq!(
            w.weight_history,
            vec![Weights::green(10), Weights::green(50), Weights::all_blue()]
        );
        assert_eq!(w.services["shop-green"].desired, 0);
    });
    assert!(!lock_held(&world));
    let r = record(&world, &f.release_id);
    assert_eq!(r.outcome, Some(Outcome::RolledBack));
    assert!(r.rollback_by_gate);
    assert!(r.gates.iter().any(|g| g.verdict == GateVerdict::Failed));
    assert_eq!(index(&world).live, None, "nothing became live");
}

#[tokio::test(start_paused = true)]
async fn blind_polls_do_not_bake_and_pause_after_max_blind() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.health_script
            .push_back(Ok(glidepath::engine::fake::healthy_sample()));
        for _ in 0..6 {
            w.health_script.push_back(Err(PortError::Transient {
                operation: "health.sample".into(),
                message: "throttled".into(),
            }));
        }
    });
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    let blind = events
        .iter()
        .filter(|e| matches!(e, Event::Blind { .. }))
        .count();
    assert_eq!(blind, 6);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Paused { reason } if reason.contains("max_blind"))));
    assert!(events.iter().any(|e| matches!(e, Event::Resumed)));
    // Step 1 needed its full 30 s observed after the blind spell: the spell's periods are
    // read after it (judged, one Health event each) but add no bake time.
    let baked: Vec<f64> = events
        .iter()
        .take_while(|e| !matches!(e, Event::GatePassed { index: 0, .. }))
        .filter_map(|e| match e {
            Event::Health { baked_s, .. } => Some(*baked_s),
            _ => None,
        })
        .collect();
    let unbaked = baked.iter().filter(|b| **b == 0.0).count();
    assert!(unbaked >= 30, "the spell's periods counted: {baked:?}");
    assert!(baked.last().is_some_and(|b| *b >= 30.0), "{baked:?}");
}

#[tokio::test(start_paused = true)]
async fn manual_gate_waits_for_approve() {
    let mut plan = plan();
    plan.steps[1].gate = GateMode::Manual;
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release_with_operator(&world, &plan, "1.4.0", |e| {
        matches!(e, Event::GateWaiting { .. }).then_some(Command::Approve)
    })
    .await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    let waiting = events
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::GateWaiting {
                    index: 1,
                    weight: 50,
                    ..
                }
            )
        })
        .expect("gate waiting");
    let passed = events
        .iter()
        .position(|e| matches!(e, Event::GatePassed { index: 1, .. }))
        .unwrap();
    assert!(waiting < passed);
    assert!(record(&world, &f.release_id)
        .gates
        .iter()
        .any(|g| g.verdict == GateVerdict::Approved));

    // With nobody to approve (scripted, channel closed) the gate waits until
    // gates.approval_timeout, then on_fail: pause stops the release, resumable…
    let mut paused_plan = plan.clone();
    paused_plan.gates.on_fail = glidepath::plan::OnGateFail::Pause;
    paused_plan.gates.approval_timeout = Duration::from_secs(600);
    let world = FakeWorld::for_plan(&paused_plan);
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (ctx, crx) = unbounded_channel::<Command>();
    drop(ctx);
    let t0 = tokio::time::Instant::now();
    let f = run::release(&paused_plan, &ports, req("1.4.0"), tx, crx).await;
    assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
    assert!(t0.elapsed() >= Duration::from_secs(600));
    assert!(lock_held(&world));
    let events = drain(rx);
    assert!(
        events.iter().any(|e| matches!(e, Event::Warning { message } if message.contains("not approved within 600s"))),
        "{events:?}"
    );
    // …rollback rolls back (exit 3).
    let world = FakeWorld::for_plan(&plan);
    let ports = world.ports(true);
    let (tx, _rx) = unbounded_channel();
    let (ctx, crx) = unbounded_channel::<Command>();
    drop(ctx);
    let f = run::release(&plan, &ports, req("1.4.0"), tx, crx).await;
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    assert!(
        f.message.contains("not approved within 3600s"),
        "{}",
        f.message
    );
    assert!(!lock_held(&world));

    // --auto-approve passes it.
    let world = FakeWorld::for_plan(&plan);
    let ports = world.ports(true);
    let (tx, _rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel::<Command>();
    let mut r = req("1.4.0");
    r.auto_approve = true;
    let f = run::release(&plan, &ports, r, tx, crx).await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
}

#[tokio::test(start_paused = true)]
async fn abort_keeps_lock_and_traffic_then_resume_finishes() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release_with_operator(&world, &plan, "1.4.0", |e| {
        matches!(e, Event::StepStarted { index: 1, .. }).then_some(Command::Abort)
    })
    .await;
    assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
    assert_eq!(f.exit_code, exit::UNEXPECTED);
    assert!(f.message.contains("glidepath resume"), "{}", f.message);
    assert_well_formed(&events);
    assert!(lock_held(&world), "lock kept on abort");
    let split = world.with(|w| w.weights);
    assert_eq!(split, Weights::green(50), "traffic stays where it was");

    // Another release is refused while this one is half-done.
    let (other, _) = release(&world, &plan, "1.5.0").await;
    assert_eq!(other.exit_code, exit::LOCKED);
    assert!(other.message.contains("alice@ops-1"), "{}", other.message);

    let (f2, events2) = resume(&world, &plan).await;
    assert_eq!(f2.exit_code, 0, "{}", f2.message);
    assert_eq!(f2.release_id, f.release_id);
    assert_well_formed(&events2);
    assert!(events2
        .iter()
        .any(|e| matches!(e, Event::ReleaseStarted { resumed: true, .. })));
    // Done phases are reported as the first run reported them (from the record), not redone.
    assert_eq!(
        phase_finished(&events2, Phase::Migrate),
        phase_finished(&events, Phase::Migrate)
    );
    world.with(|w| {
        assert_eq!(w.run_task_calls, 1);
        assert_eq!(
            w.calls
                .iter()
                .filter(|c| c.starts_with("fleet.deploy"))
                .count(),
            1
        );
        assert_eq!(w.weights, Weights::green(100));
    });
    assert!(!lock_held(&world));
}

#[tokio::test(start_paused = true)]
async fn operator_rollback_pause_and_advance() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, _) = release_with_operator(&world, &plan, "1.4.0", |e| {
        matches!(e, Event::StepStarted { index: 1, .. }).then_some(Command::Rollback)
    })
    .await;
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    assert_eq!(world.with(|w| w.weights), Weights::all_blue());
    assert!(!record(&world, &f.release_id).rollback_by_gate);

    // Advance skips a bake; Pause then Resume stretches one.
    let world = FakeWorld::for_plan(&plan);
    let mut paused = false;
    let (f, events) = release_with_operator(&world, &plan, "1.4.0", move |e| match e {
        Event::StepStarted { index: 0, .. } => Some(Command::Advance),
        Event::StepStarted { index: 1, .. } => {
            paused = true;
            Some(Command::Pause)
        }
        Event::Health { .. } if paused => {
            paused = false;
            Some(Command::Resume)
        }
        _ => None,
    })
    .await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    assert!(events.iter().any(|e| matches!(e, Event::Paused { .. })));
    assert!(events.iter().any(|e| matches!(e, Event::Resumed)));
    let gates = record(&world, &f.release_id).gates;
    assert_eq!(gates[0].verdict, GateVerdict::Advanced);
}

#[tokio::test(start_paused = true)]
async fn lock_held_by_someone_else_exits_4_naming_them() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let ports = world.ports(true);
    let held = lock::acquire(
        ports.state.as_ref(),
        "carol@ops-9",
        "2.0.0-20261103T020000Z",
        "2.0.0",
        Duration::from_secs(300),
        false,
    )
    .await
    .unwrap();
    assert!(matches!(held, lock::Acquire::Acquired(_)));
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::LOCKED);
    assert!(f.message.contains("carol@ops-9"), "{}", f.message);
    assert!(
        f.message.contains("2.0.0-20261103T020000Z"),
        "{}",
        f.message
    );
    assert!(f.message.contains("ago"), "{}", f.message);
    assert_well_formed(&events);
    world.with(|w| assert!(!w.calls.iter().any(|c| c.starts_with("database."))));

    // A stale lock is named stale, not taken.
    let world = FakeWorld::for_plan(&plan);
    let ports = world.ports(true);
    let _ = lock::acquire(
        ports.state.as_ref(),
        "carol@ops-9",
        "2.0.0-20261103T020000Z",
        "2.0.0",
        Duration::ZERO,
        false,
    )
    .await
    .unwrap();
    let (f, _) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::LOCKED);
    assert!(
        f.message.contains("STALE") && f.message.contains("unlock"),
        "{}",
        f.message
    );

    // unlock shows the holder, and --force breaks it.
    let report = run::unlock(&plan, &ports, false, "ops@test").await.unwrap();
    assert!(!report.broken && report.message.contains("carol@ops-9"));
    let report = run::unlock(&plan, &ports, true, "ops@test").await.unwrap();
    assert!(report.broken);
    let (f, _) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_then_named() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.transient.insert("fleet.deploy".into(), 2);
        w.transient.insert("state.put_if_match".into(), 1);
    });
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Warning { message } if message.contains("retrying"))));

    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        w.transient.insert("tasks.run_once".into(), 100);
    });
    let (f, _) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::UNEXPECTED);
    assert!(
        f.message.contains("tasks.run_once") && f.message.contains("gave up"),
        "{}",
        f.message
    );
    world.with(|w| assert!(w.weight_history.is_empty()));
}

/// `glidepath rollback` as the CLI runs it.
async fn rollback(world: &FakeWorld, plan: &Plan) -> (Finished, Vec<Event>) {
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let f = run::rollback(plan, &ports, "carol@ops-3", tx).await;
    (f, drain(rx))
}

/// Release each version in turn (all finalize), a second apart so ids and times differ.
async fn releases(world: &FakeWorld, plan: &Plan, versions: &[&str]) -> Vec<Finished> {
    let mut out = vec![];
    for v in versions {
        let (f, _) = release(world, plan, v).await;
        assert_eq!(f.exit_code, 0, "{v}: {}", f.message);
        out.push(f);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    out
}

fn keep_plan() -> Plan {
    let mut plan = plan();
    plan.rollback.green = glidepath::plan::GreenAfterRollback::Keep;
    plan
}

/// Rolling back the latest finalized release: exit 0, traffic on the colour that was
/// live before it, the index swapped once, when and who recorded. A second rollback
/// changes nothing and says what is live since when. `versions.len()` odd: the latest
/// release went blue → green; even: green → blue.
async fn rollback_of_the_latest_finalized_release(versions: &[&str]) {
    let plan = keep_plan();
    let world = FakeWorld::for_plan(&plan);
    let done = releases(&world, &plan, versions).await;
    let latest = done.last().unwrap();
    let before = index(&world);
    let (new, old) = (
        before.live.clone().unwrap(),
        before.standby.clone().unwrap(),
    );
    world.with(|w| w.weight_history.clear());

    let (back, events) = rollback(&world, &plan).await;
    assert_eq!(back.exit_code, exit::OK, "{}", back.message);
    assert_eq!(back.release_id, latest.release_id);
    assert_eq!(
        (back.outcome, back.cause),
        (Outcome::RolledBack, exit::Cause::OperatorRollback)
    );
    assert_well_formed(&events);
    // The header says which way traffic moves now, not which way the release went.
    let header = glidepath::view::lines::describe(&events[0]).1;
    assert!(
        header.contains(&format!(
            "rolling back shop/rehearsal {}: traffic {} → {}",
            new.version,
            new.colour.name(),
            old.colour.name()
        )),
        "{header}"
    );
    assert_eq!(
        world.with(|w| w.weights),
        run_weights(old.colour),
        "traffic on {}",
        old.colour.name()
    );
    world.with(|w| assert_eq!(w.weight_history, vec![run_weights(old.colour)]));
    let ix = index(&world);
    assert_eq!(
        (&ix.live, &ix.standby),
        (&Some(old.clone()), &Some(new.clone()))
    );
    let r = record(&world, &latest.release_id);
    assert_eq!(r.outcome, Some(Outcome::RolledBack));
    // The release's own code stays 3: `history` and `watch` read it.
    assert_eq!(r.exit_code, Some(exit::ROLLED_BACK));
    assert_eq!(r.rolled_back_by.as_deref(), Some("carol@ops-3"));
    let at = r.rolled_back_at.expect("rolled_back_at");
    let entry = ix
        .releases
        .iter()
        .find(|e| e.id == latest.release_id)
        .unwrap();
    assert_eq!(entry.rolled_back_at, Some(at));
    // `history` and `status` say when and by whom.
    let when = at.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let ports = world.ports(true);
    let hist =
        glidepath::commands::release::history_text(&run::history(&plan, &ports).await.unwrap());
    assert!(
        hist.contains(&format!("rolled back at {when} by carol@ops-3")),
        "{hist}"
    );
    let st = glidepath::commands::release::status_text(&run::status(&plan, &ports).await.unwrap());
    assert!(
        st.contains(&format!("rolled back at {when} by carol@ops-3")),
        "{st}"
    );
    // Earlier releases keep their outcome.
    for f in &done[..done.len() - 1] {
        assert_eq!(
            record(&world, &f.release_id).outcome,
            Some(Outcome::Finalized)
        );
    }
    assert!(!lock_held(&world));

    // Again: nothing moves, exit 0, and it says what is live since when.
    let records_before = world.with(|w| w.objects.clone());
    let (again, events) = rollback(&world, &plan).await;
    assert_eq!(again.exit_code, exit::OK, "{}", again.message);
    assert_eq!(again.cause, exit::Cause::AlreadyBack);
    // A refusal's events: only `release_finished`, as for every run that changes nothing.
    assert!(
        matches!(&events[..], [Event::ReleaseFinished { exit_code: 0, .. }]),
        "{events:?}"
    );
    world.with(|w| {
        assert_eq!(w.weight_history.len(), 1, "no weight change");
    });
    let since = at.format("%Y-%m-%d %H:%M:%SZ").to_string();
    for part in [
        format!(
            "{} on {} is live since {since}",
            old.version,
            old.colour.name()
        ),
        "already rolled back".to_string(),
        "carol@ops-3".to_string(),
    ] {
        assert!(
            again.message.contains(&part),
            "{part:?} in {}",
            again.message
        );
    }
    // Records, index and lock untouched; the operations log gained this rollback.
    let ops = glidepath::engine::oplog::OPS_PREFIX;
    let (after, logged): (Vec<_>, Vec<_>) = world.with(|w| {
        w.objects
            .clone()
            .into_iter()
            .partition(|(k, _)| !k.starts_with(ops))
    });
    let before: Vec<_> = records_before
        .into_iter()
        .filter(|(k, _)| !k.starts_with(ops))
        .collect();
    assert_eq!(after, before, "ledger untouched");
    assert_eq!(logged.len(), done.len() + 2, "one log entry per operation");
    for f in &done[..done.len() - 1] {
        assert_eq!(
            record(&world, &f.release_id).outcome,
            Some(Outcome::Finalized)
        );
    }
}

fn run_weights(live: ColourName) -> Weights {
    match live {
        ColourName::Blue => Weights::all_blue(),
        ColourName::Green => Weights::green(100),
    }
}

#[tokio::test(start_paused = true)]
async fn rollback_of_a_blue_to_green_release_exits_0_once() {
    rollback_of_the_latest_finalized_release(&["1.4.0"]).await;
    rollback_of_the_latest_finalized_release(&["1.4.0", "1.5.0", "1.6.0"]).await;
}

#[tokio::test(start_paused = true)]
async fn rollback_of_a_green_to_blue_release_exits_0_once() {
    rollback_of_the_latest_finalized_release(&["1.4.0", "1.5.0"]).await;
}

/// A manual rollback of a release in progress (here: aborted mid-shift) still ends that
/// release rolled back (its record says 3), while `glidepath rollback` exits 0.
#[tokio::test(start_paused = true)]
async fn rollback_during_a_release_ends_it_rolled_back_both_ways() {
    for before in [&[][..], &["1.4.0"][..]] {
        let plan = keep_plan();
        let world = FakeWorld::for_plan(&plan);
        releases(&world, &plan, before).await;
        let ix_before = index(&world);
        let live = ix_before.live_colour();
        let (f, _) = release_with_operator(&world, &plan, "1.5.0", |e| {
            matches!(e, Event::StepStarted { index: 1, .. }).then_some(Command::Abort)
        })
        .await;
        assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
        assert_ne!(world.with(|w| w.weights), run_weights(live), "split");

        let (back, events) = rollback(&world, &plan).await;
        assert_eq!(back.exit_code, exit::OK, "{}", back.message);
        assert_eq!(back.release_id, f.release_id);
        assert_well_formed(&events);
        let header = glidepath::view::lines::describe(&events[0]).1;
        assert!(
            header.contains(&format!(
                "traffic {} → {}",
                live.other().name(),
                live.name()
            )),
            "{header}"
        );
        assert_eq!(world.with(|w| w.weights), run_weights(live));
        let r = record(&world, &f.release_id);
        assert_eq!(
            (r.outcome, r.cause, r.exit_code),
            (
                Some(Outcome::RolledBack),
                Some(exit::Cause::OperatorRollback),
                Some(exit::ROLLED_BACK)
            )
        );
        assert!(r.rolled_back_at.is_some());
        let ix = index(&world);
        assert_eq!(ix.live, ix_before.live, "no swap");
        // [rollback].green = keep: the standby colour runs the rolled-back version now.
        let sb = ix.standby.expect("standby");
        assert_eq!(
            (sb.colour, sb.version.as_str(), sb.release.as_deref()),
            (live.other(), "1.5.0", Some(f.release_id.as_str()))
        );
        assert!(sb.unusable.is_some(), "{sb:?}");
        assert!(!lock_held(&world));

        let n = world.with(|w| w.weight_history.len());
        let (again, _) = rollback(&world, &plan).await;
        assert_eq!(again.exit_code, exit::OK, "{}", again.message);
        assert!(
            again.message.contains("already rolled back"),
            "{}",
            again.message
        );
        assert!(
            again
                .message
                .contains(&format!("on {} is live since", live.name()))
                || again.message.contains(&format!(
                    "{} (never released by glidepath) is live since",
                    live.name()
                )),
            "{}",
            again.message
        );
        assert_eq!(world.with(|w| w.weight_history.len()), n);
    }
}

/// The standby must still run the task definition its version was released with.
#[tokio::test(start_paused = true)]
async fn rollback_refuses_a_standby_that_runs_another_task_definition() {
    let plan = keep_plan();
    let world = FakeWorld::for_plan(&plan);
    let done = releases(&world, &plan, &["1.4.0", "1.5.0"]).await;
    let td = record(&world, &done[0].release_id).task_definition.unwrap();
    world.with(|w| {
        w.services
            .get_mut(&plan.green.service)
            .unwrap()
            .task_definition = "app:99".into()
    });
    world.with(|w| w.weight_history.clear());
    let (f, _) = rollback(&world, &plan).await;
    assert_eq!(f.exit_code, exit::USAGE, "{}", f.message);
    for part in ["app:99", td.as_str(), "1.4.0", &plan.green.service] {
        assert!(f.message.contains(part), "{part:?} in {}", f.message);
    }
    world.with(|w| assert!(w.weight_history.is_empty()));
    assert_eq!(
        record(&world, &done[1].release_id).outcome,
        Some(Outcome::Finalized)
    );

    // Scaled away (the first release's standby has no recorded task definition): refused too.
    let world = FakeWorld::for_plan(&plan);
    releases(&world, &plan, &["1.4.0"]).await;
    world.with(|w| w.services.get_mut(&plan.blue.service).unwrap().running = 0);
    let (f, _) = rollback(&world, &plan).await;
    assert_eq!(f.exit_code, exit::USAGE, "{}", f.message);
    assert!(f.message.contains("runs 0 of"), "{}", f.message);
}

#[tokio::test(start_paused = true)]
async fn status_and_history_read_the_ledger() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, _) = release_with_operator(&world, &plan, "1.4.0", |e| {
        matches!(e, Event::StepStarted { index: 0, .. }).then_some(Command::Abort)
    })
    .await;
    let ports = world.ports(true);
    let st = run::status(&plan, &ports).await.unwrap();
    assert_eq!(st.lock.as_ref().unwrap().body.holder, "alice@ops-1");
    assert_eq!(st.current.as_ref().unwrap().id, f.release_id);
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["lock"]["release"], f.release_id.as_str());

    let (done, _) = resume(&world, &plan).await;
    assert_eq!(done.exit_code, 0, "{}", done.message);
    let st = run::status(&plan, &ports).await.unwrap();
    assert!(st.lock.is_none() && st.current.is_none());
    assert_eq!(st.live.unwrap().version, "1.4.0");
    let h = run::history(&plan, &ports).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].outcome, Some(Outcome::Finalized));

    // Nothing to resume now: usage exit.
    let (nothing, _) = resume(&world, &plan).await;
    assert_eq!(nothing.exit_code, exit::USAGE, "{}", nothing.message);
}

#[tokio::test(start_paused = true)]
async fn resume_warns_when_the_plan_changed() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let _ = release_with_operator(&world, &plan, "1.4.0", |e| {
        matches!(e, Event::StepStarted { index: 0, .. }).then_some(Command::Abort)
    })
    .await;
    let mut changed = plan.clone();
    changed.digest = "f".repeat(64);
    let (f, events) = resume(&world, &changed).await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Warning { message } if message.contains("plan changed"))));
}

/// Crash (drop the engine) at the Nth port call, before or after that call's effect, then
/// resume with fresh engines over the same world until the release ends.
#[tokio::test(start_paused = true)]
async fn crash_at_every_port_call_then_resume() {
    let plan = plan();
    let mut crash_points = 0;
    for mode in [CrashMode::Before, CrashMode::After] {
        for n in 1.. {
            let world = FakeWorld::for_plan(&plan);
            world.with(|w| w.crash_at = Some((n, mode)));
            let ports = world.ports(true);
            let (tx, rx) = unbounded_channel();
            let (_ctx, crx) = unbounded_channel();
            let crashed = tokio::select! {
                f = run::release(&plan, &ports, req("1.4.0"), tx, crx) => {
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
            let ctx = format!(
                "crash at call {n} ({mode:?}): {}",
                world.with(|w| w.calls.last().cloned().unwrap_or_default())
            );
            // What the killed run told about traffic is in the ledger (so `watch` and the
            // resume say it too): a weight change is saved before it is told.
            if let Some(id) = index(&world).current {
                let held = durable::history(&plan, &record(&world, &id));
                for e in drain(rx)
                    .into_iter()
                    .filter(|e| matches!(e, Event::WeightsChanged { .. }))
                {
                    assert!(
                        held.contains(&e),
                        "{ctx}: told {e:?}, the ledger never held it"
                    );
                }
            }

            let (f, events) = resume(&world, &plan).await;
            let outcome = if f.exit_code == exit::USAGE {
                // Nothing in progress: either nothing had started, or everything had ended.
                match index(&world).releases.first().and_then(|e| e.outcome) {
                    Some(o) => Some(o),
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let (f, _) = release(&world, &plan, "1.4.0").await;
                        assert_eq!(f.exit_code, 0, "{ctx}: fresh release: {}", f.message);
                        Some(f.outcome)
                    }
                }
            } else {
                assert_well_formed(&events);
                Some(f.outcome)
            };
            assert!(
                matches!(outcome, Some(Outcome::Finalized | Outcome::RolledBack)),
                "{ctx}: ended {outcome:?}"
            );
            world.with(|w| {
                assert!(
                    w.run_task_calls <= 1,
                    "{ctx}: RunTask called {} times",
                    w.run_task_calls
                );
                assert_eq!(w.run_task_calls, 1, "{ctx}: the migration never ran");
                assert!(w.violations.is_empty(), "{ctx}: {:?}", w.violations);
                let first_shift = w.calls.iter().position(|c| {
                    c.starts_with("traffic.set_weights") && c != "traffic.set_weights 100/0"
                });
                // The shift reads target health before each step too: what matters is
                // that the last deploy came first and target health was read after it.
                let last_deploy = w.calls.iter().rposition(|c| c.starts_with("fleet.deploy"));
                if let (Some(s), Some(d)) = (first_shift, last_deploy) {
                    assert!(d < s, "{ctx}: traffic moved before the deploy finished");
                    assert!(
                        w.calls[d..s]
                            .iter()
                            .any(|c| c.starts_with("fleet.target_counts")),
                        "{ctx}: traffic moved before target health was read"
                    );
                }
                assert!(
                    !w.objects.contains_key(lock::LOCK_KEY),
                    "{ctx}: lock left behind"
                );
            });
            let ix = index(&world);
            assert_eq!(ix.current, None, "{ctx}");
            if outcome == Some(Outcome::Finalized) {
                assert_eq!(
                    ix.live.as_ref().map(|s| s.colour),
                    Some(ColourName::Green),
                    "{ctx}"
                );
                assert_eq!(world.with(|w| w.weights), Weights::green(100), "{ctx}");
            }
        }
    }
    assert!(crash_points > 100, "only {crash_points} crash points");
}

#[tokio::test(start_paused = true)]
async fn a_long_bake_keeps_renewing_the_lock() {
    let mut plan = plan();
    plan.state.lease = Duration::from_secs(30);
    for s in &mut plan.steps {
        s.bake = Duration::from_secs(300);
    }
    let world = FakeWorld::for_plan(&plan);
    let (f, _) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, 0, "{}", f.message);
    let renewals = world.with(|w| {
        w.calls
            .iter()
            .filter(|c| *c == &format!("state.put_if_match {}", lock::LOCK_KEY))
            .count()
    });
    // 900 s of bake with a 30 s lease renewed every 10 s.
    assert!(renewals >= 85, "only {renewals} renewals");
}

#[tokio::test(start_paused = true)]
async fn a_broken_lock_stops_the_release_without_touching_anything() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let mut plan = plan;
    plan.state.lease = Duration::from_secs(30);
    let w2 = world.clone();
    let (f, events) = release_with_operator(&world, &plan, "1.4.0", move |e| {
        if matches!(e, Event::StepStarted { index: 1, .. }) {
            // Someone runs `glidepath unlock --force` and starts their own release.
            w2.with(|w| {
                w.objects.remove(lock::LOCK_KEY);
            });
        }
        None
    })
    .await;
    assert_eq!(f.exit_code, exit::LOCKED, "{}", f.message);
    assert!(f.message.contains("lock was broken"), "{}", f.message);
    assert_well_formed(&events);
    assert_eq!(
        world.with(|w| w.weights),
        Weights::green(50),
        "nothing touched"
    );
}

// --- resume: one driver per release ---------------------------------------------------------

/// A release stopped by Abort at step 2: its lock stays (naming this process).
async fn interrupted_release(world: &FakeWorld, plan: &Plan) -> String {
    let (f, _) = release_with_operator(world, plan, "1.4.0", |e| {
        matches!(e, Event::StepStarted { index: 1, .. }).then_some(Command::Abort)
    })
    .await;
    assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
    assert!(lock_held(world));
    f.release_id
}

/// Rewrite the lock body's holder process and lease, as another process would have left it.
fn set_lock_process(
    world: &FakeWorld,
    host: Option<&str>,
    pid: Option<u32>,
    expires_in: chrono::Duration,
) {
    world.with(|w| {
        let (bytes, _) = w.objects.get_mut(lock::LOCK_KEY).expect("lock");
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("host");
        o.remove("pid");
        if let Some(h) = host {
            o.insert("host".into(), h.into());
        }
        if let Some(p) = pid {
            o.insert("pid".into(), p.into());
        }
        o.insert(
            "expires_at".into(),
            (chrono::Utc::now() + expires_in).to_rfc3339().into(),
        );
        *bytes = serde_json::to_vec(&v).unwrap();
    })
}

/// `resume`'s wait before taking the lock over: what it said and how long it took.
async fn await_takeover(world: &FakeWorld, force: bool) -> (Vec<String>, Duration) {
    let said = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
    let sink = said.clone();
    let say = move |m: String| sink.lock().unwrap().push(m);
    let t0 = tokio::time::Instant::now();
    lock::await_takeover(&world.clone(), force, &say)
        .await
        .expect("await_takeover");
    let took = t0.elapsed();
    let said = said.lock().unwrap().clone();
    (said, took)
}

/// A process that stays alive until killed (a live lock holder on this host).
struct LiveHolder(std::process::Child);

impl LiveHolder {
    fn start() -> LiveHolder {
        LiveHolder(
            std::process::Command::new("sleep")
                .arg("600")
                .spawn()
                .expect("sleep"),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for LiveHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pid above Linux's pid_max: no such process.
const GONE_PID: u32 = 999_999_999;

#[tokio::test(start_paused = true)]
async fn resume_takes_over_at_once_when_the_holder_process_is_gone() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    interrupted_release(&world, &plan).await;
    let host = lock::this_host();
    set_lock_process(
        &world,
        Some(&host),
        Some(GONE_PID),
        chrono::Duration::seconds(250),
    );
    let (said, took) = await_takeover(&world, false).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("is gone") && said[0].contains(&format!("pid {GONE_PID}")),
        "{said:?}"
    );
    let (f, events) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::LockAcquired { holder } if holder == "bob@ops-2")));
}

#[tokio::test(start_paused = true)]
async fn resume_does_not_take_over_a_live_holder_but_waits_for_its_lease() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    interrupted_release(&world, &plan).await;
    let live = LiveHolder::start();
    let host = lock::this_host();
    set_lock_process(
        &world,
        Some(&host),
        Some(live.pid()),
        chrono::Duration::seconds(250),
    );
    // The engine alone refuses: exit 4 naming the holder, its process and its age.
    let (f, _) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::LOCKED, "{}", f.message);
    assert!(f.message.contains("alice@ops-1"), "{}", f.message);
    assert!(
        f.message.contains(&format!("pid {} on {host}", live.pid())),
        "{}",
        f.message
    );
    assert!(f.message.contains("started"), "{}", f.message);
    world.with(|w| {
        let (b, _) = &w.objects[lock::LOCK_KEY];
        let body: lock::LockBody = serde_json::from_slice(b).unwrap();
        assert_eq!(body.holder, "alice@ops-1", "the lock was not taken");
    });
    // resume's wait: until the lease lapses without a renewal, saying until when.
    let (said, took) = await_takeover(&world, false).await;
    assert!(took >= Duration::from_secs(250), "{took:?}");
    assert!(took < Duration::from_secs(260), "{took:?}");
    assert!(
        said[0].contains("alice@ops-1") && said[0].contains("Waiting for its lease to expire at"),
        "{said:?}"
    );
    assert!(said[0].contains("--force"), "{said:?}");
    assert!(said.last().unwrap().contains("lapsed"), "{said:?}");
    let (f, _) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_keeps_renewing_keeps_resume_waiting() {
    use glidepath::engine::ports::StateStore;
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    interrupted_release(&world, &plan).await;
    let live = LiveHolder::start();
    let host = lock::this_host();
    set_lock_process(
        &world,
        Some(&host),
        Some(live.pid()),
        chrono::Duration::seconds(250),
    );
    let renewer = {
        let world = world.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            let (bytes, etag) = world.get(lock::LOCK_KEY).await.unwrap().unwrap();
            let mut body: lock::LockBody = serde_json::from_slice(&bytes).unwrap();
            body.renewed_at = chrono::Utc::now();
            body.expires_at = chrono::Utc::now() + chrono::Duration::seconds(250);
            let b = serde_json::to_vec(&body).unwrap();
            world.put_if_match(lock::LOCK_KEY, b, &etag).await.unwrap();
        })
    };
    let (said, took) = await_takeover(&world, false).await;
    renewer.await.unwrap();
    assert!(took >= Duration::from_secs(500), "{took:?}");
    assert!(
        said.iter().any(|m| m.contains("renewed the release lock")),
        "{said:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn resume_force_takes_over_a_live_holder_at_once() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    interrupted_release(&world, &plan).await;
    let live = LiveHolder::start();
    set_lock_process(
        &world,
        Some(&lock::this_host()),
        Some(live.pid()),
        chrono::Duration::seconds(250),
    );
    let (said, took) = await_takeover(&world, true).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(said[0].contains("--force"), "{said:?}");
    let (f, _) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_is_taken_over_and_an_old_lock_body_is_not_guessed_at() {
    let plan = plan();
    // Another host, lease expired: taken over at once.
    let world = FakeWorld::for_plan(&plan);
    interrupted_release(&world, &plan).await;
    set_lock_process(
        &world,
        Some("ops-9"),
        Some(1),
        chrono::Duration::seconds(-10),
    );
    let (said, took) = await_takeover(&world, false).await;
    assert!(took < Duration::from_secs(1) && said.is_empty(), "{said:?}");
    let (f, _) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);

    // A lock body from before host/pid were recorded still reads; its holder cannot be
    // told gone, so only its lease decides.
    let world = FakeWorld::for_plan(&plan);
    interrupted_release(&world, &plan).await;
    set_lock_process(&world, None, None, chrono::Duration::seconds(100));
    let (f, _) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::LOCKED, "{}", f.message);
    let (said, took) = await_takeover(&world, false).await;
    assert!(took >= Duration::from_secs(100), "{took:?} {said:?}");
    let (f, _) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
}

/// Another host's live-looking holder cannot be told gone: the engine refuses.
#[tokio::test(start_paused = true)]
async fn a_holder_on_another_host_is_not_taken_over_before_its_lease_ends() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    interrupted_release(&world, &plan).await;
    set_lock_process(
        &world,
        Some("ops-9"),
        Some(GONE_PID),
        chrono::Duration::seconds(100),
    );
    let (f, _) = resume(&world, &plan).await;
    assert_eq!(f.exit_code, exit::LOCKED, "{}", f.message);
    assert!(f.message.contains("on ops-9"), "{}", f.message);
}

// --- approvals from anywhere ----------------------------------------------------------------

/// The id of the release in progress, once its record says a gate waits (or at once).
async fn release_in_progress(world: &FakeWorld, until_waiting: bool) -> String {
    loop {
        let id = index(world).current;
        if let Some(id) = id {
            let waiting = world.with(|w| w.objects.contains_key(&ledger::record_key(&id)))
                && record(world, &id).shift.waiting_since.is_some();
            if waiting || !until_waiting {
                return id;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_approval_written_to_the_ledger_passes_the_waiting_gate() {
    let mut plan = plan();
    plan.steps[1].gate = GateMode::Manual;
    let world = FakeWorld::for_plan(&plan);
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    // Scripted mode: nobody sends commands.
    let (ctx, crx) = unbounded_channel::<Command>();
    drop(ctx);
    let engine = run::release(&plan, &ports, req("1.4.0"), tx, crx);
    let approver = async {
        let id = release_in_progress(&world, true).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let rec = ledger::record_approval(&world, &id, 2, "carol@ops-3")
            .await
            .expect("approve");
        assert_eq!(rec.approvals.len(), 1);
        tokio::time::Instant::now()
    };
    let (f, approved_at) = tokio::join!(engine, approver);
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    let events = drain(rx);
    let reason = events
        .iter()
        .find_map(|e| match e {
            Event::GateWaiting {
                index: 1, reason, ..
            } => Some(reason.clone()),
            _ => None,
        })
        .expect("the gate waited");
    assert!(
        reason.contains("glidepath approve examples/rehearsal.toml --step 2"),
        "{reason}"
    );
    assert!(reason.contains("rolls back"), "{reason}");
    let passed = events
        .iter()
        .position(|e| matches!(e, Event::GatePassed { index: 1, .. }))
        .unwrap();
    assert!(
        matches!(&events[passed - 1], Event::Notice { message } if message.contains("approved by carol@ops-3"))
    );
    let r = record(&world, &f.release_id);
    let gate = r
        .gates
        .iter()
        .find(|g| g.verdict == GateVerdict::Approved)
        .unwrap();
    assert!(gate.reason.as_deref().unwrap().contains("carol@ops-3"));
    assert_eq!(r.approvals[0].by, "carol@ops-3");
    assert_eq!(r.approvals[0].step, 2);
    // Picked up within one poll (5 s) of being written.
    let _ = approved_at;
}

/// Approving ahead of time: the record is written while the engine keeps saving its bake
/// progress; neither write is lost and the gate does not wait.
#[tokio::test(start_paused = true)]
async fn an_approval_recorded_ahead_of_time_survives_the_engines_saves() {
    let mut plan = plan();
    plan.steps[1].gate = GateMode::Manual;
    let world = FakeWorld::for_plan(&plan);
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel::<Command>();
    let engine = run::release(&plan, &ports, req("1.4.0"), tx, crx);
    let approver = async {
        let id = release_in_progress(&world, false).await;
        loop {
            let step_started = world.with(|w| w.objects.contains_key(&ledger::record_key(&id)))
                && record(&world, &id).shift.step_started_at.is_some();
            if step_started {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ledger::record_approval(&world, &id, 2, "dave@ops-4")
            .await
            .expect("approve");
    };
    let (f, ()) = tokio::join!(engine, approver);
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    let events = drain(rx);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::GateWaiting { .. })),
        "the gate did not wait"
    );
    let r = record(&world, &f.release_id);
    assert_eq!(r.approvals.len(), 1);
    assert!(r.gates.iter().any(|g| g.verdict == GateVerdict::Approved
        && g.reason
            .as_deref()
            .is_some_and(|x| x.contains("dave@ops-4"))));
}

// --- finalize and retention -----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn finalize_prunes_assets_to_retention_keeping_live_and_standby() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.prune_result = Ok("removed 1 version(s) (0.9.0; 3 objects)".into()));
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    let (_, detail) = phase_finished(&events, Phase::Finalize).unwrap();
    assert!(detail.unwrap().contains("assets: removed 1 version"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (f, _) = release(&world, &plan, "1.5.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    world.with(|w| {
        assert_eq!(
            w.assets_pruned,
            vec![
                // The version live before the first release, read from its image.
                (3, vec!["1.4.0".to_string(), "initial".to_string()]),
                (3, vec!["1.5.0".to_string(), "1.4.0".to_string()]),
            ]
        );
    });

    // A failing prune is a warning; the release is finalized all the same.
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| w.prune_result = Err("s3:DeleteObjects: AccessDenied".into()));
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(f.outcome, Outcome::Finalized);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Warning { message } if message.contains("AccessDenied") && message.contains("assets prune")
    )));
    assert_eq!(index(&world).live.unwrap().version, "1.4.0");

    // No [assets]: nothing to prune.
    let mut bare = plan.clone();
    bare.assets = None;
    let world = FakeWorld::for_plan(&bare);
    let (f, _) = release(&world, &bare, "1.4.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    world.with(|w| assert!(w.assets_pruned.is_empty()));
}

/// A green → blue release (the second) names blue as the new colour everywhere: the step
/// line next to the weights it prints, the gate's waiting and failing reasons, the record.
#[tokio::test(start_paused = true)]
async fn a_release_to_blue_names_blue_in_steps_gates_and_evidence() {
    use glidepath::view::lines::describe;
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    releases(&world, &plan, &["1.4.0"]).await;
    world.with(|w| {
        // Blue (the new colour) has little traffic at first, then an unhealthy target.
        for _ in 0..3 {
            let mut s = glidepath::engine::fake::healthy_sample();
            s.blue.requests = 3.0;
            w.health_script.push_back(Ok(s));
        }
        for _ in 0..6 {
            w.health_script
                .push_back(Ok(glidepath::engine::fake::healthy_sample()));
        }
        let mut s = glidepath::engine::fake::healthy_sample();
        s.blue.unhealthy = 1;
        w.health_script.push_back(Ok(s));
    });
    let (f, events) = release(&world, &plan, "1.5.0").await;
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    let lines: Vec<String> = events.iter().map(|e| describe(e).1).collect();
    let text = lines.join("\n");
    assert!(text.contains("step 1/3: blue 10%"), "{text}");
    assert!(text.contains("weights blue 10% / green 90%"), "{text}");
    assert!(text.contains("step 2/3: blue 50%"), "{text}");
    assert!(
        !text.contains(": green 10%") && !text.contains(": green 50%"),
        "{text}"
    );
    let failed = events
        .iter()
        .find_map(|e| match e {
            Event::GateFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("a failed gate");
    assert_eq!(
        failed,
        "blue has 1 unhealthy target(s) (2 healthy, 0 other)"
    );
    assert!(f.message.contains("blue has 1 unhealthy"), "{}", f.message);
    let r = record(&world, &f.release_id);
    // Typed: the signal apart from the reason, not joined into it.
    assert!(
        r.gates.iter().any(|g| g.verdict == GateVerdict::Failed
            && g.signal == Some(Signal::TargetHealth)
            && g.reason.as_deref() == Some(failed.as_str())),
        "{:?}",
        r.gates
    );
    // Waiting for data speaks of the new colour, never of "green".
    for (e, line) in events.iter().zip(&lines) {
        if let Event::Health {
            verdict: glidepath::gate::Verdict::NotEnoughData { reason },
            ..
        } = e
        {
            assert!(!reason.contains("green has"), "{line}");
        }
    }

    // The threshold gate's words (`green` = the released colour) come out as blue's.
    let mut threshold = plan.clone();
    threshold.gates.sequential.mode = glidepath::plan::JudgeMode::Threshold;
    let world = FakeWorld::for_plan(&threshold);
    releases(&world, &threshold, &["1.4.0"]).await;
    world.with(|w| {
        for _ in 0..5 {
            let mut s = glidepath::engine::fake::healthy_sample();
            s.blue.requests = 3.0;
            w.health_script.push_back(Ok(s));
        }
    });
    let (f, events) = release(&world, &threshold, "1.5.0").await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    let lines: Vec<String> = events.iter().map(|e| describe(e).1).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("blue 2/2 healthy, 5xx 0.0% of 3")
                && l.contains("blue has 3 of the 20 requests needed")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("green has")), "{lines:#?}");

    // The other way round, the words stay as they were.
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        let mut s = glidepath::engine::fake::healthy_sample();
        s.green.unhealthy = 1;
        w.health_script.push_back(Ok(s));
    });
    let (f, events) = release(&world, &plan, "1.4.0").await;
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    let text: Vec<String> = events.iter().map(|e| describe(e).1).collect();
    assert!(
        text.iter().any(|l| l.contains("step 1/3: green 10%")),
        "{text:?}"
    );
    assert!(f.message.contains("green has 1 unhealthy"), "{}", f.message);
}

/// Someone changes the listener's weights by hand between steps: the next step does not
/// overwrite them; the release stops (lock kept, nothing rolled back) naming both pairs.
/// Both directions: blue → green (first release) and green → blue (second).
#[tokio::test(start_paused = true)]
async fn weights_changed_by_hand_between_steps_stop_the_release_without_a_write() {
    for before in [&[][..], &["1.4.0"][..]] {
        let plan = plan();
        let world = FakeWorld::for_plan(&plan);
        releases(&world, &plan, before).await;
        let target = index(&world).live_colour().other();
        let hand = Weights {
            blue: 70,
            green: 30,
        };
        world.with(|w| {
            // A few polls into step 1's bake (10%).
            w.hand_weights = Some((w.health_polls + 5, hand));
            w.weight_history.clear();
        });
        let (f, events) = release(&world, &plan, "1.5.0").await;
        assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
        assert_eq!(f.exit_code, exit::UNEXPECTED);
        assert_well_formed(&events);
        let step1 = match target {
            ColourName::Green => Weights::green(10),
            ColourName::Blue => Weights {
                blue: 10,
                green: 90,
            },
        };
        for part in [
            "blue 70% / green 30%".to_string(),
            format!("blue {}% / green {}%", step1.blue, step1.green),
            "by hand".to_string(),
            "step 2".to_string(),
        ] {
            assert!(f.message.contains(&part), "{part:?} in {}", f.message);
        }
        world.with(|w| {
            assert_eq!(w.weights, hand, "not overwritten");
            assert_eq!(w.weight_history, vec![step1], "only step 1 was written");
        });
        assert!(
            lock_held(&world),
            "the operator decides: resume or rollback"
        );
        let r = record(&world, &f.release_id);
        assert_eq!(r.outcome, None);
        assert!(r.interrupted.is_some());

        // Put back as recorded, resume finishes.
        world.with(|w| w.weights = step1);
        let (done, _) = resume(&world, &plan).await;
        assert_eq!(done.exit_code, exit::OK, "{}", done.message);
        assert_eq!(world.with(|w| w.weights), run_weights(target));
    }
}

/// A target colour with an unhealthy target gets no more traffic: the step rolls back.
#[tokio::test(start_paused = true)]
async fn an_unhealthy_target_before_a_step_rolls_back_without_shifting() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, events) = release_with_operator(&world, &plan, "1.4.0", |_| None).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    drop(events);
    // Second release: blue is the target; its targets fail checks once deployed.
    world.with(|w| w.weight_history.clear());
    let w2 = world.clone();
    let (f, _) = release_with_operator(&world, &plan, "1.5.0", move |e| {
        if matches!(
            e,
            Event::PhaseFinished {
                phase: Phase::Deploy,
                ..
            }
        ) {
            w2.with(|w| w.deploy_unhealthy = true);
        }
        None
    })
    .await;
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    // The operator hears of the deploy while step 1 starts: the check before step 2 is the
    // first to see the unhealthy targets, and step 2's 50% is never written.
    assert!(
        f.message.contains(
            "before step 2: blue has 2 unhealthy target(s) (0 healthy, 0 other) in shop-blue"
        ),
        "{}",
        f.message
    );
    world.with(|w| {
        assert_eq!(
            w.weight_history,
            vec![
                Weights {
                    blue: 10,
                    green: 90
                },
                Weights::green(100)
            ]
        );
    });
}
