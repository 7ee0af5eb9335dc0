//! `glidepath watch` at the engine level: a release and a watcher run concurrently on the
//! same in-memory world (paused time); the watcher reports, from the ledger alone plus
//! read-only task reads, the phases in order, the steps, weights, gates and the outcome.

use crate::common;
use crate::common::story;

use glidepath::engine::event::{Command, Envelope, Event, Outcome, Phase, PhaseStatus, Unit};
use glidepath::engine::fake::FakeWorld;
use glidepath::engine::run::{self, Finished, ReleaseRequest};
use glidepath::engine::watch::{self, WatchRequest, Watched};
use glidepath::exit;
use glidepath::gate::{HealthSample, Signal};
use glidepath::plan::{GateMode, Plan};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

fn plan() -> Plan {
    let mut p = common::engine_plan();
    p.steps[1].gate = GateMode::Manual;
    p
}

fn req(version: &str) -> ReleaseRequest {
    common::release_request(version)
}

fn watch_req() -> WatchRequest {
    let mut r = WatchRequest::new(Some("http://127.0.0.1:4566".into()));
    r.wait = true;
    r
}

fn drain(mut rx: UnboundedReceiver<Envelope>) -> Vec<Envelope> {
    let mut out = vec![];
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

/// A release whose operator approves a waiting gate after `approve_after` (long enough
/// for a watcher to see the gate waiting), next to a watcher on the same world.
async fn release_and_watch(
    world: &FakeWorld,
    plan: &Plan,
    approve_after: Duration,
) -> (Finished, Watched, Vec<Envelope>) {
    let release_ports = world.ports(true);
    let watch_ports = world.ports(true);
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (cmd, crx) = unbounded_channel::<Command>();
    let engine = run::release(plan, &release_ports, req("1.4.0"), tx, crx);
    let operator = async move {
        while let Some(env) = rx.recv().await {
            if matches!(env.event, Event::GateWaiting { .. }) {
                tokio::time::sleep(approve_after).await;
                let _ = cmd.send(Command::Approve);
            }
        }
    };
    let (wtx, wrx) = unbounded_channel();
    let (_wcmd, wcrx) = unbounded_channel::<Command>();
    let watcher = watch::watch(plan, &watch_ports, watch_req(), wtx, wcrx);
    let (f, (), w) = tokio::join!(engine, operator, watcher);
    (f, w, drain(wrx))
}

/// `release_started` first, `release_finished` last, and each phase finished before the
/// next one starts.
fn assert_well_formed(events: &[Envelope]) {
    let s = story(events);
    assert!(
        matches!(
            events.first().map(|e| &e.event),
            Some(Event::ReleaseStarted { .. })
        ),
        "{s}"
    );
    assert!(
        matches!(
            events.last().map(|e| &e.event),
            Some(Event::ReleaseFinished { .. })
        ),
        "{s}"
    );
    let mut open: Option<Phase> = None;
    for e in events {
        if let Event::LockAcquired { .. } = e.event {
            assert_eq!(
                open,
                Some(Phase::Lock),
                "the holder is told within the lock phase:\n{s}"
            );
        }
        match &e.event {
            Event::PhaseStarted { phase } => {
                assert_eq!(open, None, "{phase} started while another was open:\n{s}");
                open = Some(*phase);
            }
            Event::PhaseFinished { phase, .. } => {
                assert_eq!(
                    open,
                    Some(*phase),
                    "{phase} finished but was not open:\n{s}"
                );
                open = None;
            }
            _ => {}
        }
    }
    assert_eq!(open, None, "{s}");
}

fn phases_started(events: &[Envelope]) -> Vec<Phase> {
    events
        .iter()
        .filter_map(|e| match e.event {
            Event::PhaseStarted { phase } => Some(phase),
            _ => None,
        })
        .collect()
}

fn weights(events: &[Envelope]) -> Vec<(u8, u8)> {
    events
        .iter()
        .filter_map(|e| match e.event {
            Event::WeightsChanged { blue, green } => Some((blue, green)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn watcher_follows_a_release_to_finalized() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let (f, w, events) = release_and_watch(&world, &plan, Duration::from_secs(4)).await;
    let s = story(&events);
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(w.outcome, Some(Outcome::Finalized), "{s}");
    assert_eq!(w.exit_code, exit::OK);
    assert_eq!(w.release_id.as_deref(), Some(f.release_id.as_str()));
    assert!(events.iter().all(|e| e.release == f.release_id), "{s}");
    assert_well_formed(&events);
    assert_eq!(phases_started(&events), Phase::ORDER.to_vec(), "{s}");
    for e in &events {
        if let Event::PhaseFinished { phase, status, .. } = &e.event {
            assert_eq!(*status, PhaseStatus::Done, "{phase}:\n{s}");
        }
    }
    match &events[0].event {
        Event::ReleaseStarted {
            version,
            resumed,
            endpoint,
            ..
        } => {
            assert_eq!(version, "1.4.0");
            assert!(!resumed);
            assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:4566"));
        }
        other => panic!("{other:?}"),
    }
    assert!(events.iter().any(|e| matches!(
        &e.event,
        Event::LockAcquired { holder } if holder == "alice@ops-1"
    )));
    // Steps, weights and gates as the ledger recorded them, in order.
    let steps: Vec<usize> = events
        .iter()
        .filter_map(|e| match e.event {
            Event::StepStarted { index, .. } => Some(index),
            _ => None,
        })
        .collect();
    assert_eq!(steps, vec![0, 1, 2], "{s}");
    assert_eq!(weights(&events), vec![(90, 10), (50, 50), (0, 100)], "{s}");
    let waiting = events
        .iter()
        .position(|e| {
            matches!(
                e.event,
                Event::GateWaiting {
                    index: 1,
                    weight: 50,
                    ..
                }
            )
        })
        .unwrap_or_else(|| panic!("the manual gate is seen waiting:\n{s}"));
    // A watcher is told how to approve from where it is, not sent to the releasing terminal.
    match &events[waiting].event {
        Event::GateWaiting { reason, .. } => assert!(
            reason.contains("glidepath approve") && reason.contains("--step 2"),
            "{reason}"
        ),
        _ => unreachable!(),
    }
    let passed = events
        .iter()
        .position(|e| matches!(e.event, Event::GatePassed { index: 1, .. }))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(waiting < passed, "{s}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.event, Event::GatePassed { .. }))
            .count(),
        3,
        "{s}"
    );
    // The bake is reported from the ledger, and the migration read live.
    assert!(
        events.iter().any(|e| matches!(
            &e.event,
            Event::Progress { phase: Phase::Shift, unit, total: 30, .. } if *unit == Unit::Seconds
        )),
        "{s}"
    );
    assert!(
        events.iter().any(|e| matches!(
            &e.event,
            Event::Task { status, exit_code: Some(0), .. } if status == "STOPPED"
        )),
        "{s}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, Event::Log { line, .. } if line == "Migrations complete.")),
        "{s}"
    );
    // It never wrote anything: one migration task, the release's own weights only.
    world.with(|w| assert_eq!(w.run_task_calls, 1));
    // The watcher is not the engine: no health polls of its own.
    assert!(!events
        .iter()
        .any(|e| matches!(e.event, Event::Health { .. })));
}

#[tokio::test(start_paused = true)]
async fn watcher_sees_a_failed_gate_and_the_rollback() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    // Healthy through step 1 (30 s at 5 s polls), then green goes unhealthy at 50%.
    world.with(|w| {
        for _ in 0..9 {
            w.health_script
                .push_back(Ok(glidepath::engine::fake::healthy_sample()));
        }
        let mut bad: HealthSample = glidepath::engine::fake::healthy_sample();
        bad.green.unhealthy = 1;
        w.health_script.push_back(Ok(bad));
    });
    let (f, w, events) = release_and_watch(&world, &plan, Duration::from_secs(1)).await;
    let s = story(&events);
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{}", f.message);
    assert_eq!(w.outcome, Some(Outcome::RolledBack), "{s}");
    assert_eq!(w.exit_code, exit::ROLLED_BACK);
    assert_well_formed(&events);
    assert_eq!(
        phases_started(&events).last(),
        Some(&Phase::Rollback),
        "{s}"
    );
    let failed = events
        .iter()
        .position(|e| {
            matches!(
                e.event,
                Event::GateFailed {
                    index: 1,
                    weight: 50,
                    signal: Signal::TargetHealth,
                    ..
                }
            )
        })
        .unwrap_or_else(|| panic!("{s}"));
    let shift_failed = events
        .iter()
        .position(|e| {
            matches!(
                e.event,
                Event::PhaseFinished {
                    phase: Phase::Shift,
                    status: PhaseStatus::Failed,
                    ..
                }
            )
        })
        .unwrap_or_else(|| panic!("{s}"));
    assert!(failed < shift_failed, "{s}");
    assert_eq!(weights(&events), vec![(90, 10), (50, 50), (100, 0)], "{s}");
    let rollback = events
        .iter()
        .position(|e| {
            matches!(
                e.event,
                Event::PhaseStarted {
                    phase: Phase::Rollback
                }
            )
        })
        .unwrap_or_else(|| panic!("{s}"));
    let back = events
        .iter()
        .position(|e| {
            matches!(
                e.event,
                Event::WeightsChanged {
                    blue: 100,
                    green: 0
                }
            )
        })
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        rollback < back,
        "traffic returns during the rollback phase:
{s}"
    );
    assert!(events.iter().any(|e| matches!(
        &e.event,
        Event::ReleaseFinished {
            outcome: Outcome::RolledBack,
            exit_code: 3,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn nothing_to_watch_says_so_and_names_the_last_release() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (_c, crx) = unbounded_channel::<Command>();
    let w = watch::watch(&plan, &ports, WatchRequest::new(None), tx, crx).await;
    assert_eq!(w.exit_code, exit::OK);
    assert_eq!(w.release_id, None);
    assert!(
        w.message.contains("no release is in progress"),
        "{}",
        w.message
    );
    assert!(drain(rx).is_empty());

    // After a finished release, the message names it.
    let (tx, _rx) = unbounded_channel();
    let (_c2, crx) = unbounded_channel::<Command>();
    let mut r = req("1.4.0");
    r.auto_approve = true;
    let f = run::release(&plan, &ports, r, tx, crx).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    let (tx, _rx) = unbounded_channel();
    let (_c3, crx) = unbounded_channel::<Command>();
    let w = watch::watch(&plan, &ports, WatchRequest::new(None), tx, crx).await;
    assert!(w.message.contains(&f.release_id), "{}", w.message);
    assert!(w.message.contains("finalized"), "{}", w.message);
}

#[tokio::test(start_paused = true)]
async fn an_aborted_release_ends_the_watch_as_interrupted_and_quitting_stops_it() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let release_ports = world.ports(true);
    let watch_ports = world.ports(true);
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (cmd, crx) = unbounded_channel::<Command>();
    let engine = run::release(&plan, &release_ports, req("1.4.0"), tx, crx);
    // The operator aborts at the manual gate (Ctrl-C / q in the releasing terminal).
    let operator = async move {
        while let Some(env) = rx.recv().await {
            if matches!(env.event, Event::GateWaiting { .. }) {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let _ = cmd.send(Command::Abort);
            }
        }
    };
    let (wtx, wrx) = unbounded_channel();
    let (_wcmd, wcrx) = unbounded_channel::<Command>();
    let watcher = watch::watch(&plan, &watch_ports, watch_req(), wtx, wcrx);
    let (f, (), w) = tokio::join!(engine, operator, watcher);
    let events = drain(wrx);
    let s = story(&events);
    assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
    assert_eq!(w.outcome, Some(Outcome::Interrupted), "{s}");
    assert_eq!(w.exit_code, exit::UNEXPECTED);
    assert!(w.message.contains("glidepath resume"), "{}", w.message);
    assert_well_formed(&events);

    // A watcher of the left release, whose viewer quits: it stops, the release stays.
    // (The record says interrupted, so first resume it by hand: clear the mark.)
    let (wtx, _wrx) = unbounded_channel();
    let (wcmd, wcrx) = unbounded_channel::<Command>();
    world.with(|w| {
        let key = glidepath::engine::ledger::record_key(&f.release_id);
        let (body, _) = w.objects.get_mut(&key).expect("record");
        let mut r: glidepath::engine::ledger::Record = serde_json::from_slice(body).unwrap();
        r.interrupted = None;
        *body = serde_json::to_vec(&r).unwrap();
    });
    let quit = async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(wcmd);
    };
    let (w, ()) = tokio::join!(
        watch::watch(&plan, &watch_ports, watch_req(), wtx, wcrx),
        quit
    );
    assert_eq!(w.outcome, None);
    assert_eq!(w.exit_code, exit::OK);
    assert!(w.message.contains("stopped watching"), "{}", w.message);
}

#[tokio::test(start_paused = true)]
async fn a_watcher_attaching_mid_release_reports_what_was_done_first() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let release_ports = world.ports(true);
    let watch_ports = world.ports(true);
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (cmd, crx) = unbounded_channel::<Command>();
    let (attach, attached) = tokio::sync::oneshot::channel::<()>();
    let engine = run::release(&plan, &release_ports, req("1.4.0"), tx, crx);
    // At the manual gate a second operator attaches; the gate is approved a minute later.
    let operator = async move {
        let mut attach = Some(attach);
        while let Some(env) = rx.recv().await {
            if matches!(env.event, Event::GateWaiting { .. }) {
                if let Some(a) = attach.take() {
                    let _ = a.send(());
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
                let _ = cmd.send(Command::Approve);
            }
        }
    };
    let watcher = async {
        attached.await.expect("the gate waits");
        let (wtx, wrx) = unbounded_channel();
        let (_wcmd, wcrx) = unbounded_channel::<Command>();
        let req = WatchRequest::new(None); // no --wait: the release is in progress
        let w = watch::watch(&plan, &watch_ports, req, wtx, wcrx).await;
        (w, drain(wrx))
    };
    let (f, (), (w, events)) = tokio::join!(engine, operator, watcher);
    let s = story(&events);
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(w.outcome, Some(Outcome::Finalized), "{s}");
    assert_well_formed(&events);
    assert_eq!(phases_started(&events), Phase::ORDER.to_vec(), "{s}");
    // Everything up to the waiting gate arrives at once, in release order.
    let first_wait = events
        .iter()
        .position(|e| matches!(e.event, Event::GateWaiting { .. }))
        .unwrap_or_else(|| panic!("{s}"));
    let at_attach = &events[..=first_wait];
    assert_eq!(weights(at_attach), vec![(90, 10), (50, 50)], "{s}");
    assert!(
        at_attach
            .iter()
            .any(|e| matches!(&e.event, Event::Log { line, .. } if line == "Migrations complete.")),
        "the finished migration's log is read back:\n{s}"
    );
    // release_started carries the recorded start, before the watcher attached.
    assert!(events[0].ts < events[1].ts, "{s}");
}

/// A release left in progress by the binary before typed gate records (verdicts as strings,
/// a failure's signal joined into its reason, no weight log) is still watched and resumed:
/// the watcher reports the failure typed, and `resume` finishes it.
#[tokio::test(start_paused = true)]
async fn a_release_recorded_in_the_old_shape_is_watched_and_resumed() {
    let plan = plan();
    let world = FakeWorld::for_plan(&plan);
    let release_ports = world.ports(true);
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (cmd, crx) = unbounded_channel::<Command>();
    let engine = run::release(&plan, &release_ports, req("1.4.0"), tx, crx);
    let operator = async move {
        while let Some(env) = rx.recv().await {
            if matches!(env.event, Event::StepStarted { index: 1, .. }) {
                let _ = cmd.send(Command::Abort);
            }
        }
    };
    let (f, ()) = tokio::join!(engine, operator);
    assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);

    // Rewrite the record as the old binary wrote it, with a failure at step 1 that an
    // operator chose to bake on from (`on_fail = "pause"`).
    let key = glidepath::engine::ledger::record_key(&f.release_id);
    world.with(|w| {
        let (body, _) = w.objects.get_mut(&key).expect("record");
        let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("weights_log");
        o.remove("resumed_by");
        o["shift"].as_object_mut().unwrap().remove("waiting_until");
        let mut gates = o["gates"].as_array().unwrap().clone();
        for g in &mut gates {
            let g = g.as_object_mut().unwrap();
            g.remove("phase");
            g.remove("waited");
        }
        let at = gates[0]["at"].clone();
        gates.push(serde_json::json!({
            "index": 1, "weight": 50, "verdict": "failed", "at": at,
            "reason": "5xx rate: green 30.0% 5xx vs blue 0.2%", "signal": "error_rate"
        }));
        o.insert("gates".into(), gates.into());
        *body = serde_json::to_vec(&v).unwrap();
    });

    let watch_ports = world.ports(true);
    let (wtx, wrx) = unbounded_channel();
    let (_wcmd, wcrx) = unbounded_channel::<Command>();
    let w = watch::watch(&plan, &watch_ports, watch_req(), wtx, wcrx).await;
    let events = drain(wrx);
    let s = story(&events);
    assert_eq!(w.outcome, Some(Outcome::Interrupted), "{s}");
    assert_well_formed(&events);
    let failed: Vec<(Signal, String)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::GateFailed { signal, reason, .. } => Some((*signal, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [(
            Signal::ErrorRate,
            "green 30.0% 5xx vs blue 0.2%".to_string()
        )],
        "{s}"
    );
    assert_eq!(
        weights(&events),
        vec![(50, 50)],
        "the last weights recorded: {s}"
    );

    let resume_ports = world.ports(true);
    let (rtx, rrx) = unbounded_channel();
    let (_rcmd, rcrx) = unbounded_channel::<Command>();
    let rreq = run::ResumeRequest {
        auto_approve: true,
        holder: "bob@ops-2".into(),
        endpoint: None,
    };
    let done = run::resume(&plan, &resume_ports, rreq, rtx, rcrx).await;
    let events = drain(rrx);
    assert_eq!(
        done.exit_code,
        exit::OK,
        "{}\n{}",
        done.message,
        story(&events)
    );
    assert_well_formed(&events);
    assert!(
        events.iter().any(|e| matches!(
            &e.event,
            Event::LockAcquired { holder } if holder == "bob@ops-2"
        )),
        "{}",
        story(&events)
    );
    // Written back typed: the failure keeps its reason apart from its signal.
    let r: glidepath::engine::ledger::Record =
        world.with(|w| serde_json::from_slice(&w.objects[&key].0).unwrap());
    let g = r
        .gates
        .iter()
        .find(|g| g.verdict == glidepath::engine::ledger::GateVerdict::Failed)
        .expect("the old failure");
    assert_eq!(g.reason.as_deref(), Some("green 30.0% 5xx vs blue 0.2%"));
    assert_eq!(g.phase, Phase::Shift);
    assert_eq!(r.outcome, Some(Outcome::Finalized));
}
