//! Whole releases against the rehearsal stage through the real aws-sdk clients: the happy
//! path, a failing migration, and two operators racing for the lock.

use crate::common;
use crate::common::story;

use glidepath::commands::release::ports_for;
use glidepath::engine::event::{Envelope, Event, Outcome};
use glidepath::engine::ids;
use glidepath::engine::ports::{Ports, Weights};
use glidepath::engine::run::{self, Finished, ReleaseRequest};
use glidepath::exit;
use glidepath::plan::Plan;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

/// The rehearsal plan with quick bakes and polls, publishing a two-file site.
fn plan(assets: &std::path::Path) -> Plan {
    let mut p = common::rehearsal_plan();
    for s in &mut p.steps {
        s.bake = Duration::from_secs(2);
    }
    p.gates.poll_interval = Duration::from_secs(1);
    if let Some(a) = p.assets.as_mut() {
        a.dir = assets.to_path_buf();
    }
    p
}

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("index.html"), "<h1>shop</h1>").unwrap();
    std::fs::write(dir.path().join("app.js"), "console.log('shop')").unwrap();
    dir
}

async fn release(
    plan: &Plan,
    ports: &Ports,
    version: &str,
    holder: &str,
) -> (Finished, Vec<Envelope>) {
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        version: version.into(),
        auto_approve: true,
        holder: holder.into(),
        endpoint: None,
    };
    let f = run::release(plan, ports, req, tx, crx).await;
    let mut events = vec![];
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (f, events)
}

async fn tasks_in_cluster(config: &aws_types::SdkConfig) -> Vec<String> {
    let ecs = aws_sdk_ecs::Client::new(config);
    let mut all = vec![];
    for status in [
        aws_sdk_ecs::types::DesiredStatus::Running,
        aws_sdk_ecs::types::DesiredStatus::Stopped,
    ] {
        let out = ecs
            .list_tasks()
            .cluster("shop")
            .desired_status(status)
            .send()
            .await
            .expect("ListTasks");
        all.extend(out.task_arns().iter().cloned());
    }
    all
}

#[tokio::test]
async fn happy_release_finalizes_on_green() {
    let site = site();
    let seeded = common::seeded_stage("happy", plan(site.path())).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let started = std::time::Instant::now();
    let (f, events) = release(&plan, &ports, "1.4.0", "alice@ops-1").await;
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));
    assert_eq!(f.outcome, Outcome::Finalized);
    eprintln!("happy release took {:.1}s", started.elapsed().as_secs_f64());

    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::green(100));
    let st = run::status(&plan, &ports).await.unwrap();
    assert!(st.lock.is_none(), "lock released");
    let live = st.live.expect("live");
    assert_eq!(
        (live.version.as_str(), live.colour.name()),
        ("1.4.0", "green")
    );
    let h = run::history(&plan, &ports).await.unwrap();
    assert_eq!(h[0].outcome, Some(Outcome::Finalized));

    let ours = ports
        .tasks
        .find_started_by(&ids::started_by(
            &plan.app,
            &plan.environment,
            &f.release_id,
        ))
        .await
        .unwrap();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0].exit_code, Some(0));
    assert_eq!(tasks_in_cluster(&seeded.config).await.len(), 1);
    assert!(
        events.iter().any(|e| matches!(&e.event, Event::Log { .. })),
        "migration logs tailed"
    );
    assert!(
        events.iter().any(|e| matches!(
            &e.event,
            Event::PhaseFinished {
                phase: glidepath::engine::Phase::Assets,
                status: glidepath::engine::PhaseStatus::Done,
                ..
            }
        )),
        "{}",
        story(&events)
    );
}

#[tokio::test]
async fn failing_migration_exits_5_and_traffic_never_leaves_blue() {
    let site = site();
    let seeded = common::seeded_stage("migration-fails", plan(site.path())).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let done = AtomicBool::new(false);
    let watcher = async {
        let mut seen = vec![];
        while !done.load(Ordering::SeqCst) {
            seen.push(ports.traffic.weights().await.expect("weights"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        seen
    };
    let engine = async {
        let r = release(&plan, &ports, "1.4.0", "alice@ops-1").await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let ((f, events), seen) = tokio::join!(engine, watcher);
    assert_eq!(
        f.exit_code,
        exit::MIGRATION_FAILED,
        "{}\n{}",
        f.message,
        story(&events)
    );
    assert!(seen.len() > 5, "watched {} times", seen.len());
    assert!(seen.iter().all(|w| *w == Weights::all_blue()), "{seen:?}");
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::all_blue());
    let Some(Event::ReleaseFinished { snapshot_id, .. }) = events.last().map(|e| &e.event) else {
        panic!("no release_finished")
    };
    assert!(snapshot_id.is_some());
    assert!(f.message.contains("snapshot"), "{}", f.message);
    let st = run::status(&plan, &ports).await.unwrap();
    assert!(st.lock.is_none());
    assert_eq!(tasks_in_cluster(&seeded.config).await.len(), 1);
}

#[tokio::test]
async fn two_releases_at_once_one_gets_exit_4_naming_the_holder() {
    let site = site();
    let seeded = common::seeded_stage("happy", plan(site.path())).await;
    let (a_ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (b_ports, _) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let ((a, a_events), (b, b_events)) = tokio::join!(
        release(&plan, &a_ports, "1.4.0", "alice@ops-1"),
        release(&plan, &b_ports, "1.4.1", "bob@ops-2"),
    );
    let mut codes = [a.exit_code, b.exit_code];
    codes.sort();
    assert_eq!(
        codes,
        [exit::OK, exit::LOCKED],
        "alice: {}\n{}\nbob: {}\n{}",
        a.message,
        story(&a_events),
        b.message,
        story(&b_events)
    );
    let (winner, loser) = if a.exit_code == exit::OK {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let winner_holder = if a.exit_code == exit::OK {
        "alice@ops-1"
    } else {
        "bob@ops-2"
    };
    assert!(loser.message.contains(winner_holder), "{}", loser.message);
    assert!(
        loser.message.contains(&winner.release_id),
        "{}",
        loser.message
    );
    assert_eq!(
        tasks_in_cluster(&seeded.config).await.len(),
        1,
        "one migration in all"
    );
}

/// The engine dropped mid-shift (what `kill -9` leaves: nothing cleans up), then `resume`
/// with fresh clients finishes the release with still exactly one migration task.
#[tokio::test]
async fn crash_mid_shift_then_resume_finishes_with_one_migration() {
    let site = site();
    let seeded = common::seeded_stage("happy", plan(site.path())).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        version: "1.4.0".into(),
        auto_approve: true,
        holder: "alice@ops-1".into(),
        endpoint: None,
    };
    let engine = run::release(&plan, &ports, req, tx, crx);
    let mid_shift = async {
        while let Some(e) = rx.recv().await {
            if matches!(e.event, Event::StepStarted { index: 1, .. }) {
                return;
            }
        }
        panic!("the release ended before reaching step 2");
    };
    tokio::select! {
        f = engine => panic!("finished before the crash: {}", f.message),
        () = mid_shift => {}
    }
    drop(ports);
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let st = run::status(&plan, &ports).await.unwrap();
    assert_eq!(
        st.lock.as_ref().map(|l| l.body.holder.as_str()),
        Some("alice@ops-1")
    );
    assert_ne!(ports.traffic.weights().await.unwrap(), Weights::all_blue());

    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = glidepath::engine::run::ResumeRequest {
        auto_approve: true,
        holder: "bob@ops-2".into(),
        endpoint: None,
    };
    let f = run::resume(&plan, &ports, req, tx, crx).await;
    let mut events = vec![];
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::green(100));
    assert_eq!(
        tasks_in_cluster(&seeded.config).await.len(),
        1,
        "one migration in all"
    );
}

/// The test listener's forward action: target groups with a weight above 0.
async fn test_listener_forwards(config: &aws_types::SdkConfig, listener: &str) -> Vec<String> {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(config);
    let out = elb
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .expect("DescribeListeners");
    let mut groups = vec![];
    for a in out.listeners()[0].default_actions() {
        if let Some(fc) = a.forward_config() {
            for t in fc.target_groups() {
                if t.weight().unwrap_or(1) > 0 {
                    groups.extend(t.target_group_arn().map(str::to_string));
                }
            }
        } else if let Some(tg) = a.target_group_arn() {
            groups.push(tg.to_string());
        }
    }
    groups
}

/// blue → green, then green → blue: while the smoke test runs, the test listener forwards
/// only to the colour being released (the stage seeds it on green).
#[tokio::test]
async fn smoke_test_reaches_the_released_colour_in_both_directions() {
    let site = site();
    let mut p = plan(site.path());
    p.traffic.test_listener = Some("shop:8081".into());
    p.traffic.test_url = Some("http://127.0.0.1:8081".into());
    p.smoke = Some(glidepath::plan::SmokeConfig {
        command: vec!["sleep".into(), "1".into()],
        timeout: Duration::from_secs(30),
    });
    let seeded = common::seeded_stage("happy", p).await;
    let test_listener = seeded
        .report
        .test_listener_arn
        .clone()
        .expect("the stage seeded a test listener");
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let expected = [
        (
            "1.4.0",
            seeded.report.green_target_group_arn.clone(),
            "green",
        ),
        ("1.5.0", seeded.report.blue_target_group_arn.clone(), "blue"),
    ];
    for (version, tg, colour) in expected {
        let (tx, mut rx) = unbounded_channel();
        let (_commands, crx) = unbounded_channel();
        let req = ReleaseRequest {
            version: version.into(),
            auto_approve: true,
            holder: "alice@ops-1".into(),
            endpoint: None,
        };
        let engine = run::release(&plan, &ports, req, tx, crx);
        let observer = async {
            let (mut at_smoke, mut events) = (None, vec![]);
            while let Some(e) = rx.recv().await {
                let smoke = matches!(&e.event, Event::Notice { message } if message.starts_with("smoke test:"));
                if smoke && at_smoke.is_none() {
                    at_smoke = Some(test_listener_forwards(&seeded.config, &test_listener).await);
                }
                events.push(e);
            }
            (at_smoke, events)
        };
        let (f, (at_smoke, events)) = tokio::join!(engine, observer);
        assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));
        assert_eq!(
            at_smoke,
            Some(vec![tg.clone()]),
            "{version}: the smoke test ran against the wrong colour\n{}",
            story(&events)
        );
        let told = events.iter().find_map(|e| match &e.event {
            Event::TestTraffic {
                colour,
                target_group,
                ..
            } => Some((colour.name(), target_group.clone())),
            _ => None,
        });
        assert_eq!(told, Some((colour, tg)), "{}", story(&events));
    }
}

/// Tasks of the cluster that are not STOPPED, as ECS describes them.
async fn unstopped_tasks(config: &aws_types::SdkConfig) -> Vec<String> {
    let ecs = aws_sdk_ecs::Client::new(config);
    let all = tasks_in_cluster(config).await;
    if all.is_empty() {
        return all;
    }
    let out = ecs
        .describe_tasks()
        .cluster("shop")
        .set_tasks(Some(all))
        .send()
        .await
        .expect("DescribeTasks");
    out.tasks()
        .iter()
        .filter(|t| t.last_status() != Some("STOPPED"))
        .filter_map(|t| t.task_arn().map(str::to_string))
        .collect()
}

/// Release A crashes while its (slow) migration runs; the lock is broken by hand; release B
/// waits for A's task to stop before starting its own: never two migrations at once.
#[tokio::test]
async fn after_a_forced_unlock_the_next_migration_waits_for_the_running_one() {
    one_migration_after_a_forced_unlock(false).await;
}

/// The same after one finalized release: A and B go green → blue.
#[tokio::test]
async fn after_a_forced_unlock_the_next_migration_waits_for_the_running_one_green_to_blue() {
    one_migration_after_a_forced_unlock(true).await;
}

async fn one_migration_after_a_forced_unlock(after_one: bool) {
    let site = site();
    let (_dir, scenario) = common::temp_file(
        "slow-migration.toml",
        "description = \"a slow migration\"\n[migration]\nseconds = 12\n[deploy]\nseconds = 1\n[snapshot]\nseconds = 1\n",
    );
    let stage = common::start_stage(&common::path_str(&scenario)).await;
    let config = common::sdk_config(&stage).await;
    let seeded_plan = plan(site.path());
    glidepath::rehearse::seed::seed(&config, &seeded_plan)
        .await
        .expect("seed");
    let (a_ports, plan) = ports_for(&config, &seeded_plan).await.expect("ports");
    if after_one {
        let (f, events) = release(&plan, &a_ports, "1.3.0", "alice@ops-1").await;
        assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));
    }
    let earlier = usize::from(after_one);

    // A: until its migration task runs, then gone (what kill -9 leaves behind).
    let (tx, mut rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        version: "1.4.0".into(),
        auto_approve: true,
        holder: "alice@ops-1".into(),
        endpoint: None,
    };
    let a = run::release(&plan, &a_ports, req, tx, crx);
    let a_running = async {
        while let Some(e) = rx.recv().await {
            if matches!(&e.event, Event::Task { status, .. } if status == "RUNNING") {
                return;
            }
        }
        panic!("release A ended before its migration ran");
    };
    tokio::select! {
        f = a => panic!("A finished: {}", f.message),
        () = a_running => {}
    }
    drop(a_ports);
    let a_task = unstopped_tasks(&config).await;
    assert_eq!(a_task.len(), 1, "{a_task:?}");

    let (b_ports, _) = ports_for(&config, &seeded_plan).await.expect("ports");
    let report = run::unlock(&plan, &b_ports, true, "ops@test")
        .await
        .expect("unlock");
    assert!(report.broken);

    let done = AtomicBool::new(false);
    let watcher = async {
        let mut most = 0;
        while !done.load(Ordering::SeqCst) {
            most = most.max(unstopped_tasks(&config).await.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        most
    };
    let b = async {
        let r = release(&plan, &b_ports, "1.4.1", "bob@ops-2").await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let ((f, events), most) = tokio::join!(b, watcher);
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));
    assert_eq!(most, 1, "two migration tasks ran at once");
    let a_id = a_task[0].rsplit('/').next().unwrap();
    assert!(
        events.iter().any(|e| matches!(
            &e.event,
            Event::Warning { message } if message.contains(a_id) && message.contains("started ")
        )),
        "B says it waits for A's task {a_id}\n{}",
        story(&events)
    );
    assert_eq!(tasks_in_cluster(&config).await.len(), 2 + earlier);
    let target = if after_one { "blue" } else { "green" };
    let live = run::status(&plan, &b_ports).await.expect("status").live;
    assert_eq!(live.map(|s| s.colour.name()), Some(target));
}

/// Which of `versions` still have a published manifest in the plan's asset bucket.
async fn published(config: &aws_types::SdkConfig, plan: &Plan, versions: &[&str]) -> Vec<String> {
    let s3 = glidepath::aws::client::s3(config);
    let cfg = plan.assets.as_ref().expect("[assets]");
    let mut out = vec![];
    for v in versions {
        let key = glidepath::assets::layout::manifest_key(&cfg.prefix, v);
        if s3
            .head_object()
            .bucket(&cfg.bucket)
            .key(&key)
            .send()
            .await
            .is_ok()
        {
            out.push(v.to_string());
        }
    }
    out
}

/// Finalize prunes asset versions to `assets.retention` and never removes the live or the
/// standby version (blue → green, then green → blue).
#[tokio::test]
async fn finalize_prunes_old_asset_versions_but_never_live_or_standby() {
    let site = site();
    let mut p = plan(site.path());
    if let Some(a) = p.assets.as_mut() {
        a.retention = 1;
    }
    let seeded = common::seeded_stage("happy", p).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let assets = ports.assets.as_ref().expect("an asset publisher");
    for old in ["0.1.0", "0.2.0"] {
        assets.publish(old, &|_, _| {}).await.expect("publish");
    }
    let all = ["0.1.0", "0.2.0", "1.4.0", "1.5.0"];
    assert_eq!(
        published(&seeded.config, &plan, &all).await,
        ["0.1.0", "0.2.0"]
    );
    let (f, events) = release(&plan, &ports, "1.4.0", "alice@ops-1").await;
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));
    assert_eq!(published(&seeded.config, &plan, &all).await, ["1.4.0"]);
    let (f, events) = release(&plan, &ports, "1.5.0", "alice@ops-1").await;
    assert_eq!(f.exit_code, exit::OK, "{}\n{}", f.message, story(&events));
    // Retention 1 keeps the newest (live) one; the standby is protected all the same.
    assert_eq!(
        published(&seeded.config, &plan, &all).await,
        ["1.4.0", "1.5.0"],
        "{}",
        story(&events)
    );
    let detail = events
        .iter()
        .find_map(|e| match &e.event {
            Event::PhaseFinished {
                phase: glidepath::engine::Phase::Finalize,
                detail,
                ..
            } => detail.clone(),
            _ => None,
        })
        .unwrap_or_default();
    assert!(detail.contains("assets:"), "{detail}");
}
