//! Day two on the stage, through the real aws-sdk clients, in both directions: a release
//! aborted with traffic split, its lock broken with `unlock --force`, then a new release.
//! The new release puts the abandoned split back on the live colour before it deploys,
//! and closes the abandoned release as superseded in `history`.

use crate::common;

use glidepath::commands::release::ports_for;
use glidepath::engine::event::{ColourName, Command, Envelope, Event, Outcome, Phase};
use glidepath::engine::ports::{Ports, Weights};
use glidepath::engine::run::{self, Finished, ReleaseRequest};
use glidepath::exit;
use glidepath::plan::Plan;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

fn plan() -> Plan {
    let mut p = common::rehearsal_plan();
    for s in &mut p.steps {
        s.bake = Duration::from_secs(2);
    }
    p.gates.poll_interval = Duration::from_secs(1);
    // No asset publishing here: this is about traffic and the ledger.
    p.assets = None;
    p
}

fn request(version: &str, holder: &str) -> ReleaseRequest {
    ReleaseRequest {
        version: version.into(),
        auto_approve: true,
        holder: holder.into(),
        endpoint: None,
    }
}

fn story(events: &[Envelope]) -> String {
    events
        .iter()
        .map(|e| format!("{:?}", e.event))
        .collect::<Vec<_>>()
        .join("\n")
}

fn all_on(c: ColourName) -> Weights {
    match c {
        ColourName::Blue => Weights::all_blue(),
        ColourName::Green => Weights::green(100),
    }
}

/// A release the operator aborts as soon as traffic is split.
async fn release_aborted_at_the_split(plan: &Plan, ports: &Ports, version: &str) -> Finished {
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (commands, crx) = unbounded_channel();
    let engine = run::release(plan, ports, request(version, "alice@ops-1"), tx, crx);
    let operator = async move {
        let mut events = vec![];
        while let Some(e) = rx.recv().await {
            if matches!(e.event, Event::WeightsChanged { blue, green } if blue > 0 && green > 0) {
                let _ = commands.send(Command::Abort);
            }
            events.push(e);
        }
        events
    };
    let (f, events) = tokio::join!(engine, operator);
    assert_eq!(
        f.outcome,
        Outcome::Interrupted,
        "{}\n{}",
        f.message,
        story(&events)
    );
    f
}

/// A release that reads the listener (with its own ports, over the SDK) when its deploy
/// phase starts. Returns how it ended, its events and those weights.
async fn release_watching_the_deploy(
    plan: &Plan,
    ports: &Ports,
    probe: &Ports,
    version: &str,
) -> (Finished, Vec<Envelope>, Option<Weights>) {
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (_commands, crx) = unbounded_channel();
    let engine = run::release(plan, ports, request(version, "bob@ops-2"), tx, crx);
    let observer = async {
        let (mut at_deploy, mut events) = (None, vec![]);
        while let Some(e) = rx.recv().await {
            let deploying = matches!(
                e.event,
                Event::PhaseStarted {
                    phase: Phase::Deploy
                }
            );
            if deploying && at_deploy.is_none() {
                at_deploy = Some(probe.traffic.weights().await.expect("listener weights"));
            }
            events.push(e);
        }
        (events, at_deploy)
    };
    let (f, (events, at_deploy)) = tokio::join!(engine, observer);
    (f, events, at_deploy)
}

/// `first` finalized releases before A (0: A goes blue → green; 1: green → blue).
async fn supersede_after_forced_unlock(first: usize) {
    let seeded = common::seeded_stage("happy", plan()).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (probe, _) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    for i in 0..first {
        let (tx, _rx) = unbounded_channel();
        let (_c, crx) = unbounded_channel();
        let f = run::release(
            &plan,
            &ports,
            request(&format!("1.{}.0", 3 + i), "alice@ops-1"),
            tx,
            crx,
        )
        .await;
        assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    }
    let live = run::status(&plan, &ports)
        .await
        .expect("status")
        .live
        .map_or(ColourName::Blue, |s| s.colour);

    let a = release_aborted_at_the_split(&plan, &ports, "1.5.0").await;
    let split = probe.traffic.weights().await.expect("weights");
    assert_ne!(split, all_on(live), "A left traffic split");
    let report = run::unlock(&plan, &ports, true, "ops@test")
        .await
        .expect("unlock");
    assert!(report.broken, "{}", report.message);

    let (b, events, at_deploy) = release_watching_the_deploy(&plan, &ports, &probe, "1.6.0").await;
    assert_eq!(b.exit_code, exit::OK, "{}\n{}", b.message, story(&events));
    assert_eq!(
        at_deploy,
        Some(all_on(live)),
        "live {}: when B deployed, A's split was still on the listener\n{}",
        live.name(),
        story(&events)
    );
    assert!(
        events.iter().any(|e| matches!(
            &e.event,
            Event::Warning { message } if message.contains(&a.release_id) && message.contains("supersedes")
        )),
        "B says it supersedes A\n{}",
        story(&events)
    );

    let history = run::history(&plan, &ports).await.expect("history");
    let ids: Vec<&str> = history.iter().take(2).map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [b.release_id.as_str(), a.release_id.as_str()]);
    assert_eq!(history[0].outcome, Some(Outcome::Finalized));
    assert_eq!(
        history[1].outcome,
        Some(Outcome::Superseded),
        "{:?}",
        history[1]
    );
    assert!(history[1].finished_at.is_some());
    let status = run::status(&plan, &ports).await.expect("status");
    assert!(status.current.is_none() && status.lock.is_none());
    let now_live = status.live.expect("live").colour;
    assert_eq!(now_live, live.other(), "B is live on the other colour");
    assert_eq!(
        probe.traffic.weights().await.expect("weights"),
        all_on(now_live)
    );
}

#[tokio::test]
async fn forced_unlock_then_release_supersedes_blue_to_green() {
    supersede_after_forced_unlock(0).await;
}

#[tokio::test]
async fn forced_unlock_then_release_supersedes_green_to_blue() {
    supersede_after_forced_unlock(1).await;
}
