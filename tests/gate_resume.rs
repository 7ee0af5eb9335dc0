//! The sequential gate's evidence survives a resume: a release killed mid-bake carries on
//! from the e-values it had (in-memory ports, paused time).

use crate::common;

use glidepath::engine::event::{Event, Outcome};
use glidepath::engine::fake::{healthy_sample, FakeWorld};
use glidepath::engine::ledger::{self, Record};
use glidepath::engine::run::{self, ResumeRequest};
use glidepath::gate::Signal;
use glidepath::plan::Plan;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

/// One period a poll (1 s periods, 1 s polls), a long first step, and a new colour with
/// three times the live colour's 5xx: the relative test needs a few dozen periods.
fn plan() -> Plan {
    let mut p = common::engine_plan();
    p.gates.poll_interval = Duration::from_secs(1);
    p.steps[0].bake = Duration::from_secs(600);
    p
}

fn noisy_world(plan: &Plan) -> FakeWorld {
    let world = FakeWorld::for_plan(plan);
    world.with(|w| {
        let mut s = healthy_sample();
        s.green.errors_5xx = 3.0;
        s.blue.errors_5xx = 1.0;
        w.healthy_sample = s;
    });
    world
}

fn polls(world: &FakeWorld) -> u32 {
    world.with(|w| w.health_polls)
}

fn failed_on(events: &[Event]) -> Option<Signal> {
    events.iter().find_map(|e| match e {
        Event::GateFailed { signal, .. } => Some(*signal),
        _ => None,
    })
}

async fn release_until_polls(world: &FakeWorld, plan: &Plan, stop_at: Option<u32>) -> Vec<Event> {
    let ports = world.ports(true);
    let (tx, mut rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let engine = run::release(plan, &ports, common::release_request("1.4.0"), tx, crx);
    let killer = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stop_at.is_some_and(|n| polls(world) >= n) {
                return;
            }
        }
    };
    tokio::select! {
        f = engine => {
            assert!(stop_at.is_none(), "ended before the kill: {}", f.message);
            assert_eq!(f.outcome, Outcome::RolledBack, "{}", f.message);
        }
        _ = killer => {}
    }
    let mut out = vec![];
    while let Ok(e) = rx.try_recv() {
        out.push(e.event);
    }
    out
}

async fn resume(world: &FakeWorld, plan: &Plan) -> (run::Finished, Vec<Event>) {
    let ports = world.ports(true);
    let (tx, mut rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let req = ResumeRequest {
        auto_approve: false,
        holder: "bob@ops-2".into(),
        endpoint: None,
    };
    let f = run::resume(plan, &ports, req, tx, crx).await;
    let mut out = vec![];
    while let Ok(e) = rx.try_recv() {
        out.push(e.event);
    }
    (f, out)
}

fn only_record(world: &FakeWorld) -> (String, Record) {
    world.with(|w| {
        let (key, (b, _)) = w
            .objects
            .iter()
            .find(|(k, _)| k.starts_with(ledger::record_key("").trim_end_matches(".json")))
            .expect("a record");
        (key.clone(), serde_json::from_slice(b).unwrap())
    })
}

/// Killed two thirds of the way to the rollback, the resumed release rolls back after
/// about the remaining third of the polls (the saved e-values carry on), not after the
/// whole bake again; with the saved evidence removed it starts from zero and takes longer.
#[tokio::test(start_paused = true)]
async fn a_resumed_release_carries_on_with_the_gates_evidence() {
    let plan = plan();

    // Uninterrupted: how many polls the gate needs.
    let world = noisy_world(&plan);
    let events = release_until_polls(&world, &plan, None).await;
    assert_eq!(failed_on(&events), Some(Signal::ErrorRate), "{events:#?}");
    let whole = polls(&world);
    assert!(
        whole >= 15,
        "the test needs a slow rollback; it took {whole} polls"
    );

    for keep_evidence in [true, false] {
        let world = noisy_world(&plan);
        let kill_at = whole * 2 / 3;
        release_until_polls(&world, &plan, Some(kill_at)).await;
        let (key, mut record) = only_record(&world);
        assert!(
            record.shift.gate.is_some(),
            "the record holds the gate's evidence"
        );
        if !keep_evidence {
            // As an older record would be: no saved evidence.
            record.shift.gate = None;
            world.with(|w| {
                let bytes = serde_json::to_vec(&record).unwrap();
                w.objects.get_mut(&key).unwrap().0 = bytes;
            });
        }
        let before = polls(&world);
        let (f, events) = resume(&world, &plan).await;
        assert_eq!(f.outcome, Outcome::RolledBack, "{}", f.message);
        assert_eq!(failed_on(&events), Some(Signal::ErrorRate));
        let after = polls(&world) - before;
        let rest = whole - kill_at;
        if keep_evidence {
            // A few polls are lost to the resume (lock, weights, settle) at most.
            assert!(
                after <= rest + 4,
                "resumed: {after} polls, {rest} were left"
            );
            assert!(
                events.iter().any(|e| matches!(e, Event::Notice { message }
                    if message.contains("carries on with this release's evidence"))),
                "{events:#?}"
            );
        } else {
            assert!(after > rest + 4, "fresh evidence took only {after} polls");
        }
    }
}
