//! Saved, then told: every durable event a run tells is one its ledger record already
//! holds, so a run killed at any moment has said nothing that `watch` and a resume will
//! not say too. In-memory engine (paused clock), crashing at every port call.

use crate::common;

use glidepath::engine::durable;
use glidepath::engine::event::{Event, Outcome};
use glidepath::engine::fake::{healthy_sample, CrashMode, FakeWorld};
use glidepath::engine::ledger::{self, Index, Record};
use glidepath::engine::run::{self, Finished};
use glidepath::exit;
use glidepath::plan::Plan;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

/// The durable events among `events`, without `release_finished` (a rollback process
/// tells its own exit code there).
fn durable_only(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .filter(|e| {
            let v = serde_json::to_value(e).expect("event as JSON");
            let t = v["type"].as_str().unwrap_or_default();
            t != "release_finished" && durable::KINDS.contains(&t)
        })
        .cloned()
        .collect()
}

fn index(world: &FakeWorld) -> Index {
    world.with(|w| {
        w.objects
            .get(ledger::INDEX_KEY)
            .map(|(b, _)| serde_json::from_slice(b).unwrap())
            .unwrap_or_default()
    })
}

/// The record of `id`, if written.
fn stored(world: &FakeWorld, id: &str) -> Option<Record> {
    world.with(|w| {
        w.objects
            .get(&ledger::record_key(id))
            .map(|(b, _)| serde_json::from_slice(b).unwrap())
    })
}

/// `glidepath rollback` by carol on the in-memory world.
async fn rollback(world: &FakeWorld, plan: &Plan) -> (Finished, Vec<Event>) {
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let f = run::rollback(plan, &ports, "carol@ops-3", tx).await;
    (f, common::drain(rx))
}

/// A finalized release of 1.4.0 (blue → green), green kept warm for a rollback.
async fn finalized(plan: &Plan) -> (FakeWorld, Record) {
    let world = FakeWorld::for_plan(plan);
    let (done, _) = common::fake_release(&world, plan).await;
    assert_eq!(done.exit_code, exit::OK, "{}", done.message);
    let r = common::fake_record(&world, &done.release_id);
    (world, r)
}

fn keep_warm() -> Plan {
    let mut plan = common::engine_plan();
    plan.rollback.green = glidepath::plan::GreenAfterRollback::Keep;
    plan
}

/// A manual rollback of a finalized release tells exactly what its record adds to the
/// finalized one, in that order: its own lock phase, then the rollback (so `watch`, which
/// tells the record, says the same).
#[tokio::test(start_paused = true)]
async fn a_finalized_rollback_tells_what_its_record_adds() {
    let plan = keep_warm();
    let (world, before) = finalized(&plan).await;
    let (f, events) = rollback(&world, &plan).await;
    assert_eq!(
        (f.outcome, f.exit_code),
        (Outcome::RolledBack, exit::OK),
        "{}",
        f.message
    );
    let after = common::fake_record(&world, &f.release_id);
    let told = durable_only(&events);
    assert_eq!(told, durable::since(&plan, Some(&before), &after));
    assert!(
        told.iter()
            .any(|e| matches!(e, Event::LockAcquired { holder } if holder == "carol@ops-3")),
        "{told:?}"
    );
    // The record's ending, as watch reports it, is the rollback's (the release's own code).
    assert!(matches!(
        durable::finished(&after),
        Some(Event::ReleaseFinished {
            outcome: Outcome::RolledBack,
            exit_code: exit::ROLLED_BACK,
            ..
        })
    ));
}

/// Every durable event the killed run told is what its record, read after the kill,
/// tells since `from` (None: the whole record), as far as it told.
fn told_is_held(
    plan: &Plan,
    world: &FakeWorld,
    id: &str,
    from: Option<&Record>,
    told: &[Event],
    ctx: &str,
) {
    let held = match stored(world, id) {
        Some(r) => durable::since(plan, from, &r),
        None => Vec::new(),
    };
    let told = durable_only(told);
    assert!(
        held.starts_with(&told),
        "{ctx}: told what the ledger never held\ntold: {told:#?}\nheld: {held:#?}"
    );
}

/// A `glidepath rollback` of a finalized release killed at every port call it makes
/// (before and after its effect): what it told is in the record, and a second
/// `glidepath rollback` finishes it.
#[tokio::test(start_paused = true)]
async fn a_finalized_rollback_killed_anywhere_told_only_what_was_saved() {
    let plan = keep_warm();
    let mut crash_points = 0;
    for mode in [CrashMode::Before, CrashMode::After] {
        for n in 1.. {
            let (world, before) = finalized(&plan).await;
            world.with(|w| w.crash_at = Some((w.call_count + n, mode)));
            let ports = world.ports(true);
            let (tx, rx) = unbounded_channel();
            let crashed = tokio::select! {
                f = run::rollback(&plan, &ports, "carol@ops-3", tx) => {
                    assert_eq!(f.exit_code, exit::OK, "N={n} {mode:?}: {}", f.message);
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
            told_is_held(
                &plan,
                &world,
                &before.id,
                Some(&before),
                &common::drain(rx),
                &ctx,
            );
            // The lease of the killed run's lock runs out; a rollback then takes it over.
            tokio::time::sleep(plan.state.lease + Duration::from_secs(1)).await;
            let (f, _) = rollback(&world, &plan).await;
            assert_eq!(f.exit_code, exit::OK, "{ctx}: {}", f.message);
            let r = common::fake_record(&world, &before.id);
            assert_eq!(r.outcome, Some(Outcome::RolledBack), "{ctx}");
            assert_eq!(index(&world).current, None, "{ctx}");
        }
    }
    assert!(crash_points > 5, "only {crash_points} crash points");
}

/// A release whose gate fails at the second step (a rollback follows) or whose smoke test
/// fails (a rollback before any user traffic), killed at every port call: what it told is
/// in the record.
#[tokio::test(start_paused = true)]
async fn a_failing_release_killed_anywhere_told_only_what_was_saved() {
    let gate = common::engine_plan();
    let mut smoke = common::engine_plan();
    smoke.smoke = Some(glidepath::plan::SmokeConfig {
        command: vec!["./smoke.sh".into()],
        timeout: Duration::from_secs(30),
    });
    smoke.traffic.test_url = Some("http://test.example".into());
    let mut crash_points = 0;
    for (what, plan) in [("gate", &gate), ("smoke", &smoke)] {
        let setup = |world: &FakeWorld| {
            world.with(|w| {
                if what == "smoke" {
                    w.smoke_result = Err("GET / returned 500".into());
                    return;
                }
                for _ in 0..9 {
                    w.health_script.push_back(Ok(healthy_sample()));
                }
                let mut bad = healthy_sample();
                bad.green.unhealthy = 1;
                w.health_script.push_back(Ok(bad));
            })
        };
        let world = FakeWorld::for_plan(plan);
        setup(&world);
        let (f, events) = common::fake_release(&world, plan).await;
        assert_eq!(f.exit_code, exit::ROLLED_BACK, "{what}: {}", f.message);
        assert!(
            events.iter().any(|e| matches!(e, Event::GateFailed { .. })),
            "{what}"
        );
        for mode in [CrashMode::Before, CrashMode::After] {
            for n in 1.. {
                let world = FakeWorld::for_plan(plan);
                setup(&world);
                world.with(|w| w.crash_at = Some((n, mode)));
                let ports = world.ports(true);
                let (tx, rx) = unbounded_channel();
                let (_ctx, crx) = unbounded_channel();
                let req = common::release_request("1.4.0");
                let crashed = tokio::select! {
                    _ = run::release(plan, &ports, req, tx, crx) => false,
                    _ = world.crashed() => true,
                };
                drop(ports);
                if !crashed {
                    break;
                }
                crash_points += 1;
                let ctx = format!(
                    "{what}: crash at call {n} ({mode:?}): {}",
                    world.with(|w| w.calls.last().cloned().unwrap_or_default())
                );
                let id = index(&world).current.or_else(|| {
                    world.with(|w| {
                        w.objects.keys().find_map(|k| {
                            k.strip_prefix(ledger::RELEASES_PREFIX)?
                                .strip_suffix(".json")
                                .map(String::from)
                        })
                    })
                });
                let told = common::drain(rx);
                match id {
                    Some(id) => told_is_held(plan, &world, &id, None, &told, &ctx),
                    None => assert!(
                        durable_only(&told).iter().all(|e| !matches!(
                            e,
                            Event::GateFailed { .. } | Event::WeightsChanged { .. }
                        )),
                        "{ctx}: {told:?}"
                    ),
                }
            }
        }
    }
    assert!(crash_points > 50, "only {crash_points} crash points");
}
