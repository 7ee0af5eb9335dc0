//! The AWS adapters against the rehearsal stage (moto + stagehand) over loopback, with the
//! real aws-sdk clients. Each test starts its own stage seeded from the rehearsal plan.

use crate::common;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, RuleCondition, TargetGroupTuple,
};
use common::{seeded_stage, temp_file, wait_for, Seeded};
use glidepath::aws::{self, AwsError, Resolved};
use glidepath::engine::ports::{
    Conditional, ETag, PortError, Ports, SnapshotStatus, TaskSpec, Weights,
};
use glidepath::plan::{DatabaseKind, Plan};
use std::time::{Duration, Instant};

/// Fast timings so the tests stay quick; the migration exits 3 so the exit code is real.
const SCENARIO: &str = r#"
description = "adapter tests"
[snapshot]
seconds = 1.5
[migration]
seconds = 1
exit_code = 3
lines = ["Running migrations...", "boom", "Migration failed."]
[deploy]
seconds = 1
"#;

/// The seeded stage plus the ports built from its plan (the scenario dir lives as long).
struct Setup {
    world: Seeded,
    ports: Ports,
    resolved: Resolved,
    _scenario: tempfile::TempDir,
}

async fn seeded(plan: Plan) -> (Seeded, tempfile::TempDir) {
    let (dir, scenario) = temp_file("adapters.toml", SCENARIO);
    (seeded_stage(&common::path_str(&scenario), plan).await, dir)
}

async fn setup_with(plan: Plan) -> Setup {
    let (world, dir) = seeded(plan).await;
    let (ports, resolved) = aws::build(&world.config, &world.plan)
        .await
        .expect("build ports");
    Setup {
        world,
        ports,
        resolved,
        _scenario: dir,
    }
}

async fn setup() -> Setup {
    setup_with(common::rehearsal_plan()).await
}

// --- tests ---------------------------------------------------------------------------------

#[tokio::test]
async fn state_store_compare_and_swap() {
    let Setup { world, ports, .. } = setup().await;
    let state = &ports.state;

    assert_eq!(state.get("lock.json").await.unwrap(), None);
    let Conditional::Written(first) = state
        .put_if_absent("lock.json", b"{\"holder\":\"a\"}".to_vec())
        .await
        .unwrap()
    else {
        panic!("first put_if_absent must write");
    };
    assert_eq!(
        state
            .put_if_absent("lock.json", b"{\"holder\":\"b\"}".to_vec())
            .await
            .unwrap(),
        Conditional::Conflict,
        "second put_if_absent must lose"
    );
    let (body, etag) = state.get("lock.json").await.unwrap().unwrap();
    assert_eq!(
        (body.as_slice(), &etag),
        (&b"{\"holder\":\"a\"}"[..], &first)
    );

    let Conditional::Written(second) = state
        .put_if_match(
            "lock.json",
            b"{\"holder\":\"a\",\"renewed\":1}".to_vec(),
            &etag,
        )
        .await
        .unwrap()
    else {
        panic!("put_if_match with the current etag must write");
    };
    assert_ne!(second, first);
    assert_eq!(
        state
            .put_if_match("lock.json", b"{\"holder\":\"b\"}".to_vec(), &first)
            .await
            .unwrap(),
        Conditional::Conflict,
        "a stale etag must lose"
    );
    assert_eq!(
        state
            .put_if_match("gone.json", b"{}".to_vec(), &ETag("\"abc\"".into()))
            .await
            .unwrap(),
        Conditional::Conflict,
        "If-Match on a missing key must lose"
    );

    // Keys are relative to the plan's prefix, both ways.
    state
        .put_if_absent("releases/r1.json", b"{}".to_vec())
        .await
        .unwrap();
    state
        .put_if_absent("releases/r2.json", b"{}".to_vec())
        .await
        .unwrap();
    let mut keys = state.list("releases/").await.unwrap();
    keys.sort();
    assert_eq!(keys, ["releases/r1.json", "releases/r2.json"]);
    let raw = aws::client::s3(&world.config)
        .head_object()
        .bucket(&world.plan.state.bucket)
        .key(format!("{}/lock.json", world.plan.state.prefix))
        .send()
        .await;
    assert!(raw.is_ok(), "objects live under the plan's prefix");

    state.delete("lock.json").await.unwrap();
    assert_eq!(state.get("lock.json").await.unwrap(), None);
    state.delete("lock.json").await.unwrap();
}

#[tokio::test]
async fn state_store_names_a_missing_bucket() {
    let (world, _dir) = seeded(common::rehearsal_plan()).await;
    let mut plan = world.plan.clone();
    plan.state.bucket = "no-such-bucket".into();
    let (ports, _) = aws::build(&world.config, &plan).await.unwrap();
    match ports.state.get("lock.json").await {
        Err(PortError::Fatal { message, .. }) => assert!(
            message.contains("no-such-bucket") && message.contains("[state].bucket"),
            "{message}"
        ),
        other => panic!("expected Fatal, got {other:?}"),
    }
}

#[tokio::test]
async fn resolve_by_name_and_by_arn_agree() {
    let mut plan = common::rehearsal_plan();
    plan.traffic.test_listener = Some("shop:8081".into());
    let Setup {
        world,
        resolved: by_name,
        ..
    } = setup_with(plan).await;
    let r = &world.report;
    assert_eq!(
        by_name,
        Resolved {
            blue_target_group_arn: r.blue_target_group_arn.clone(),
            green_target_group_arn: r.green_target_group_arn.clone(),
            listener_arn: r.listener_arn.clone(),
            load_balancer_arn: r.load_balancer_arn.clone(),
            rule_arn: None,
            test_listener_arn: r.test_listener_arn.clone(),
        }
    );
    assert!(by_name.test_listener_arn.is_some());
    assert_ne!(
        by_name.test_listener_arn.as_ref(),
        Some(&by_name.listener_arn)
    );

    let mut plan = world.plan.clone();
    plan.blue.target_group = r.blue_target_group_arn.clone();
    plan.green.target_group = r.green_target_group_arn.clone();
    plan.traffic.listener = r.listener_arn.clone();
    plan.traffic.test_listener = r.test_listener_arn.clone();
    let (_, by_arn) = aws::build(&world.config, &plan).await.unwrap();
    assert_eq!(by_arn, by_name);
}

#[tokio::test]
async fn resolve_errors_say_what_to_fix() {
    let (world, _dir) = seeded(common::rehearsal_plan()).await;
    let err = |change: fn(&mut Plan)| {
        let mut plan = world.plan.clone();
        change(&mut plan);
        let config = world.config.clone();
        async move {
            match aws::build(&config, &plan).await {
                Ok(_) => panic!("expected an error"),
                Err(e) => e,
            }
        }
    };

    let e = err(|p| p.green.target_group = "shop-grene".into()).await;
    assert!(
        matches!(
            e,
            AwsError::TargetGroupNotFound {
                colour: "green",
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("shop-grene") && text.contains("[green].target_group"),
        "{text}"
    );

    let text = err(|p| p.traffic.listener = "shop:8443".into())
        .await
        .to_string();
    assert!(
        text.contains("no listener on port 8443") && text.contains("listens on: 80"),
        "{text}"
    );

    let text = err(|p| p.traffic.listener = "shopp:80".into())
        .await
        .to_string();
    assert!(
        text.contains("load balancer \"shopp\" was not found"),
        "{text}"
    );

    let e = err(|p| {
        p.traffic.listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/1234567890abcdef/0123456789abcdef".into()
    })
    .await;
    assert!(
        matches!(
            e,
            AwsError::ListenerNotFound {
                field: "traffic.listener",
                ..
            }
        ),
        "{e:?}"
    );

    let text = err(|p| p.traffic.listener = "shop".into())
        .await
        .to_string();
    assert!(text.contains("\"<load-balancer-name>:<port>\""), "{text}");

    let e = err(|p| p.green.target_group = "shop-blue".into()).await;
    assert!(matches!(e, AwsError::SameTargetGroup { .. }), "{e:?}");
}

#[tokio::test]
async fn weights_round_trip_on_listener_and_rule() {
    let Setup {
        world,
        ports,
        resolved,
        ..
    } = setup().await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&world.config);
    // A plain single-target-group forward (how most listeners start) reads as 100% blue.
    elb.modify_listener()
        .listener_arn(&resolved.listener_arn)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&resolved.blue_target_group_arn)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::all_blue());

    ports.traffic.set_weights(Weights::green(10)).await.unwrap();
    assert_eq!(
        ports.traffic.weights().await.unwrap(),
        Weights {
            blue: 90,
            green: 10
        }
    );
    ports
        .traffic
        .set_weights(Weights::green(100))
        .await
        .unwrap();
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::green(100));
    // The stage (which splits metrics by weight) reads the same listener.
    let state = world.stage.control_get("/_stage/state").await.unwrap();
    assert_eq!(state["target_groups"]["shop-green"]["percent"], 100.0);

    // With a rule in the plan, the rule's weights move and the default action stays.
    ports
        .traffic
        .set_weights(Weights::all_blue())
        .await
        .unwrap();
    let rule = elb
        .create_rule()
        .listener_arn(&resolved.listener_arn)
        .priority(10)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .values("/api/*")
                .build(),
        )
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(
                    ForwardActionConfig::builder()
                        .target_groups(
                            TargetGroupTuple::builder()
                                .target_group_arn(&resolved.blue_target_group_arn)
                                .weight(1)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .rules()[0]
        .rule_arn()
        .unwrap()
        .to_string();
    let mut plan = world.plan.clone();
    plan.traffic.rule_arn = Some(rule.clone());
    let (rule_ports, with_rule) = aws::build(&world.config, &plan).await.unwrap();
    assert_eq!(with_rule.rule_arn.as_deref(), Some(rule.as_str()));
    assert_eq!(
        rule_ports.traffic.weights().await.unwrap(),
        Weights::all_blue()
    );
    rule_ports
        .traffic
        .set_weights(Weights::green(50))
        .await
        .unwrap();
    assert_eq!(
        rule_ports.traffic.weights().await.unwrap(),
        Weights::green(50)
    );
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::all_blue());
}

/// Create, watch it go from Creating to Available, check the release tag.
async fn snapshot_round_trip(ports: &Ports, id: &str) {
    let db = &ports.database;
    assert_eq!(db.describe_snapshot(id).await.unwrap(), None);
    db.create_snapshot(id, "r1").await.unwrap();
    let first = db.describe_snapshot(id).await.unwrap().unwrap();
    assert!(
        matches!(first.status, SnapshotStatus::Creating { .. }),
        "{first:?}"
    );
    assert_eq!(first.release_tag.as_deref(), Some("r1"));
    let percents = std::cell::RefCell::new(Vec::new());
    let done = wait_for("snapshot available", Duration::from_secs(15), || {
        let percents = &percents;
        async move {
            let s = db.describe_snapshot(id).await.unwrap().unwrap();
            if let SnapshotStatus::Creating { percent } = s.status {
                percents.borrow_mut().push(percent);
            }
            (s.status == SnapshotStatus::Available).then_some(s)
        }
    })
    .await;
    assert_eq!(done.release_tag.as_deref(), Some("r1"));
    assert!(
        percents.borrow().iter().any(|p| *p > 0),
        "PercentProgress is reported: {percents:?}"
    );
    // Creating it again is not an error: the engine adopts it after describing.
    db.create_snapshot(id, "r1").await.unwrap();
}

#[tokio::test]
async fn instance_snapshot_is_tagged_and_becomes_available() {
    let Setup {
        world: _stage,
        ports,
        ..
    } = setup().await;
    snapshot_round_trip(&ports, "shop-db-r1").await;
}

#[tokio::test]
async fn aurora_cluster_snapshot_is_tagged_and_becomes_available() {
    let mut plan = common::rehearsal_plan();
    plan.database.kind = DatabaseKind::Cluster;
    plan.database.id = "shop-aurora".into();
    let Setup {
        world: _stage,
        ports,
        ..
    } = setup_with(plan).await;
    snapshot_round_trip(&ports, "shop-aurora-r1").await;
}

#[tokio::test]
async fn migration_task_runs_once_stops_with_its_exit_code_and_logs() {
    let Setup { world, ports, .. } = setup().await;
    let tasks = &ports.tasks;
    let spec = TaskSpec {
        task_definition: world.report.task_definition_arn.clone(),
        container: "web".into(),
        command: vec!["bin/migrate".into()],
        started_by: "glidepath-r1".into(),
        client_token: "glidepath-r1-migrate".into(),
        // Empty: the adapter borrows the services' network configuration (RunTask with
        // awsvpc fails on the stage without existing security groups).
        subnets: vec![],
        security_groups: vec![],
        assign_public_ip: false,
        environment: Vec::new(),
    };
    assert!(tasks
        .find_started_by("glidepath-r1")
        .await
        .unwrap()
        .is_empty());
    let started = tasks.run_once(&spec).await.unwrap();
    assert_eq!(started.last_status, "RUNNING");
    assert_eq!(started.exit_code, None);
    let found = tasks.find_started_by("glidepath-r1").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].arn, started.arn);
    assert!(tasks
        .find_started_by("glidepath-r2")
        .await
        .unwrap()
        .is_empty());

    let stopped = wait_for("task STOPPED", Duration::from_secs(15), || async {
        let t = tasks.describe(&started.arn, "web").await.unwrap();
        (t.last_status == "STOPPED").then_some(t)
    })
    .await;
    assert_eq!(stopped.exit_code, Some(3));
    assert_eq!(
        stopped.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
    let task_id = started.arn.rsplit('/').next().unwrap();
    let (group, stream) = stopped.log.clone().expect("awslogs location");
    assert_eq!(group, world.report.log_group);
    assert_eq!(stream, format!("{}/web/{task_id}", world.plan.app));

    let (lines, cursor) = tasks.log_lines(&group, &stream, None).await.unwrap();
    assert_eq!(
        lines,
        ["Running migrations...", "boom", "Migration failed."]
    );
    let (more, _) = tasks.log_lines(&group, &stream, cursor).await.unwrap();
    assert!(
        more.is_empty(),
        "the cursor moves past what was read: {more:?}"
    );
    let (none, cursor) = tasks
        .log_lines(&group, "shop/web/nope", None)
        .await
        .unwrap();
    assert!(none.is_empty() && cursor.is_none());

    // Still found after it stopped (a resume after the migration finished).
    let found = tasks.find_started_by("glidepath-r1").await.unwrap();
    assert_eq!((found.len(), found[0].exit_code), (1, Some(3)));
    assert!(matches!(
        tasks
            .describe("arn:aws:ecs:us-east-1:123456789012:task/shop/0000", "web")
            .await,
        Err(PortError::NotFound { .. })
    ));
}

#[tokio::test]
async fn new_task_definition_revision_is_registered_once() {
    let Setup { world, ports, .. } = setup().await;
    let fleet = &ports.fleet;
    let base = world.report.task_definition_arn.clone();
    let v2 = fleet
        .task_definition_with_image(&base, "web", "shop:2")
        .await
        .unwrap();
    assert_ne!(v2, base);
    let ecs = aws_sdk_ecs::Client::new(&world.config);
    let describe = |arn: String| {
        let ecs = ecs.clone();
        async move {
            ecs.describe_task_definition()
                .task_definition(arn)
                .send()
                .await
                .unwrap()
                .task_definition
                .unwrap()
        }
    };
    let (old, new) = (describe(base.clone()).await, describe(v2.clone()).await);
    assert_eq!(new.revision, old.revision + 1);
    assert_eq!(new.container_definitions()[0].image(), Some("shop:2"));
    // Everything but the image is carried over.
    let mut expected = old.container_definitions().to_vec();
    expected[0].image = Some("shop:2".into());
    assert_eq!(new.container_definitions(), expected.as_slice());
    assert_eq!(
        (new.cpu(), new.memory(), new.network_mode()),
        (old.cpu(), old.memory(), old.network_mode())
    );

    // Resume: same inputs, same revision; from the new revision itself, itself.
    let again = fleet
        .task_definition_with_image(&base, "web", "shop:2")
        .await
        .unwrap();
    assert_eq!(again, v2);
    assert_eq!(
        fleet
            .task_definition_with_image(&v2, "web", "shop:2")
            .await
            .unwrap(),
        v2
    );

    match fleet.task_definition_with_image(&v2, "app", "shop:3").await {
        Err(PortError::Fatal { message, .. }) => assert!(
            message.contains("\"app\"") && message.contains("web"),
            "{message}"
        ),
        other => panic!("expected Fatal for a missing container, got {other:?}"),
    }
}

#[tokio::test]
async fn deploy_completes_with_healthy_targets_and_scales_to_zero() {
    let Setup {
        world,
        ports,
        resolved,
        ..
    } = setup().await;
    let fleet = &ports.fleet;
    let v2 = fleet
        .task_definition_with_image(&world.report.task_definition_arn, "web", "shop:2")
        .await
        .unwrap();
    fleet.deploy("shop-green", &v2, 3).await.unwrap();
    let s = fleet.service("shop-green").await.unwrap();
    assert_eq!((s.task_definition.as_str(), s.desired), (v2.as_str(), 3));
    let s = wait_for("green COMPLETED", Duration::from_secs(15), || async {
        let s = fleet.service("shop-green").await.unwrap();
        (s.rollout == "COMPLETED" && s.running == s.desired).then_some(s)
    })
    .await;
    assert_eq!(s.running, 3);
    let counts = fleet
        .target_counts(&resolved.green_target_group_arn)
        .await
        .unwrap();
    assert_eq!((counts.healthy, counts.unhealthy), (3, 0));

    fleet.scale("shop-green", 0).await.unwrap();
    wait_for("green empty", Duration::from_secs(15), || async {
        let s = fleet.service("shop-green").await.unwrap();
        let c = fleet
            .target_counts(&resolved.green_target_group_arn)
            .await
            .unwrap();
        (s.running == 0 && c.healthy == 0).then_some(())
    })
    .await;
    assert_eq!(
        fleet.service("shop-green").await.unwrap().task_definition,
        v2,
        "scale keeps the task definition"
    );

    match fleet.service("shop-purple").await {
        Err(PortError::NotFound { resource, .. }) => assert!(resource.contains("shop-purple")),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn outage_is_transient_and_passes() {
    let Setup { world, ports, .. } = setup().await;
    ports.fleet.service("shop-blue").await.unwrap();
    // Longer than the SDK's own retries (3 attempts with backoff), so the error surfaces.
    world
        .stage
        .control_post("/_stage/outage", &serde_json::json!({"seconds": 30}))
        .await
        .unwrap();
    let t0 = Instant::now();
    let err = ports.fleet.service("shop-blue").await.unwrap_err();
    let took = t0.elapsed();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("ServiceUnavailable"), "{err}");
    let err = ports.traffic.weights().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = ports.state.get("lock.json").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = ports
        .tasks
        .find_started_by("glidepath-r1")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = ports
        .database
        .describe_snapshot("shop-db-r1")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        took < aws::client::OPERATION_TIMEOUT + Duration::from_secs(1),
        "retries are bounded by the operation timeout: {took:?}"
    );
    world
        .stage
        .control_post("/_stage/outage", &serde_json::json!({"seconds": 0}))
        .await
        .unwrap();
    ports.fleet.service("shop-blue").await.unwrap();
}
