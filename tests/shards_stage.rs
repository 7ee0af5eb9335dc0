//! Sharded migrations against the rehearsal stage through the real aws-sdk clients: each
//! shard's task runs once with its `SHARD` (as the stage recorded the RunTask overrides); a
//! shard that fails (the stage's `migration_exit` fault on that shard) stops the rest and
//! `resume` goes on from it; the engine dropped while a shard's task runs (what `kill -9`
//! leaves) and resumed still runs each shard exactly once.

use crate::common;
use crate::common::pending;
use crate::common::story;

use glidepath::commands::release::ports_for;
use glidepath::engine::event::{Envelope, Event, Outcome, ShardState};
use glidepath::engine::ports::{Ports, Weights};
use glidepath::engine::run::{self, Finished, ReleaseRequest, ResumeRequest};
use glidepath::exit;
use glidepath::plan::Plan;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

/// The rehearsal plan with three shards, quick bakes, no assets, no live watch.
fn plan() -> Plan {
    let mut p = common::rehearsal_plan();
    for s in &mut p.steps {
        s.bake = Duration::from_secs(2);
    }
    p.assets = None;
    let m = p.migration.as_mut().expect("migration");
    m.shards = vec!["a".into(), "b".into(), "c".into()];
    m.watch = Duration::ZERO;
    p
}

fn release_req() -> ReleaseRequest {
    ReleaseRequest {
        version: "1.4.0".into(),
        auto_approve: true,
        holder: "alice@ops-1".into(),
        endpoint: None,
    }
}

async fn release(plan: &Plan, ports: &Ports) -> (Finished, Vec<Envelope>) {
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let f = run::release(plan, ports, release_req(), tx, crx).await;
    (f, pending(&mut rx))
}

async fn resume(plan: &Plan, ports: &Ports) -> (Finished, Vec<Envelope>) {
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ResumeRequest {
        auto_approve: true,
        holder: "bob@ops-2".into(),
        endpoint: None,
    };
    let f = run::resume(plan, ports, req, tx, crx).await;
    (f, pending(&mut rx))
}

/// Every migration task the stage ran, in order: (SHARD, exit code).
async fn stage_tasks(seeded: &common::Seeded) -> Vec<(String, Option<i64>)> {
    let state = seeded
        .stage
        .control_get("state")
        .await
        .expect("stage state");
    state["migration_tasks"]
        .as_array()
        .expect("migration_tasks")
        .iter()
        .map(|t| {
            (
                t["shard"].as_str().unwrap_or("-").to_string(),
                t["exit_code"].as_i64(),
            )
        })
        .collect()
}

fn tasks(list: &[(&str, i64)]) -> Vec<(String, Option<i64>)> {
    list.iter()
        .map(|(s, c)| (s.to_string(), Some(*c)))
        .collect()
}

#[tokio::test]
async fn each_shard_runs_once_in_order_with_its_shard_env() {
    let seeded = common::seeded_stage("happy", plan()).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (f, events) = release(&plan, &ports).await;
    let text = story(&events);
    assert_eq!(f.exit_code, exit::OK, "{}\n{text}", f.message);
    assert_eq!(
        stage_tasks(&seeded).await,
        tasks(&[("a", 0), ("b", 0), ("c", 0)])
    );
    for line in [
        "migrating shard 1/3: a",
        "migrating shard 2/3: b",
        "migrating shard 3/3: c",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::green(100));
}

#[tokio::test]
async fn a_failing_shard_stops_the_rest_and_resume_goes_on_from_it() {
    let seeded = common::seeded_stage("happy", plan()).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    seeded
        .stage
        .control_post(
            "fault",
            &serde_json::json!({"kind": "migration_exit", "shard": "b", "exit_code": 3}),
        )
        .await
        .expect("POST /_stage/fault");
    let (f, events) = release(&plan, &ports).await;
    let text = story(&events);
    assert_eq!(f.exit_code, exit::MIGRATION_FAILED, "{}\n{text}", f.message);
    assert_eq!(f.outcome, Outcome::Interrupted);
    for needle in ["shard b (2/3) failed", "shards done: a", "not run: c"] {
        assert!(f.message.contains(needle), "no `{needle}` in {}", f.message);
    }
    assert_eq!(stage_tasks(&seeded).await, tasks(&[("a", 0), ("b", 3)]));
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::all_blue());
    let st = run::status(&plan, &ports).await.unwrap();
    assert!(st.lock.is_some(), "the lock is kept for resume");

    // The cause fixed: resume runs b again, then c; a is not run again.
    seeded
        .stage
        .control_delete("fault")
        .await
        .expect("DELETE /_stage/fault");
    let (f, events) = resume(&plan, &ports).await;
    let text = story(&events);
    assert_eq!(f.exit_code, exit::OK, "{}\n{text}", f.message);
    assert_eq!(
        stage_tasks(&seeded).await,
        tasks(&[("a", 0), ("b", 3), ("b", 0), ("c", 0)])
    );
    assert!(
        text.contains("migrating shard 2/3: b (attempt 2)"),
        "{text}"
    );
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::green(100));
}

#[tokio::test]
async fn an_engine_dropped_while_a_shard_runs_resumes_without_running_any_shard_twice() {
    let seeded = common::seeded_stage("happy", plan()).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let engine = run::release(&plan, &ports, release_req(), tx, crx);
    // Shard b's task is running: drop everything there, as `kill -9` would.
    let b_running = async {
        let mut in_b = false;
        while let Some(e) = rx.recv().await {
            match e.event {
                Event::Shard {
                    index: 1,
                    state: ShardState::Started,
                    ..
                } => in_b = true,
                Event::Task { ref status, .. } if in_b && status == "RUNNING" => return,
                _ => {}
            }
        }
        panic!("the release ended before shard b ran");
    };
    tokio::select! {
        f = engine => panic!("finished before the crash: {}", f.message),
        () = b_running => {}
    }
    drop(ports);
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (f, events) = resume(&plan, &ports).await;
    let text = story(&events);
    assert_eq!(f.exit_code, exit::OK, "{}\n{text}", f.message);
    assert_eq!(
        stage_tasks(&seeded).await,
        tasks(&[("a", 0), ("b", 0), ("c", 0)]),
        "{text}"
    );
}
