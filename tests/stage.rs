//! The rehearsal stage driven from Rust: lifecycle, control endpoint and bad input.
//! (The seeded-world checks are further down.)

use crate::common;

use glidepath::rehearse::stage::{Stage, StageError, StageOptions};
use serde_json::json;

fn opts(scenario: &str, port: u16) -> StageOptions {
    StageOptions {
        scenario: scenario.into(),
        port,
        tick: Some(common::TEST_TICK),
        ..StageOptions::default()
    }
}

/// Start a stage that must refuse; return its error.
async fn refused(o: StageOptions) -> StageError {
    common::ensure_stage_venv();
    match Stage::start(o).await {
        Ok(stage) => panic!(
            "stage started at {} but should have refused",
            stage.endpoint()
        ),
        Err(e) => e,
    }
}

#[tokio::test]
async fn stage_starts_answers_control_and_is_gone_after_drop() {
    let stage = common::start_stage("happy").await;
    println!(
        "stage start-to-ready: {:.2}s on {}",
        stage.startup_time().as_secs_f64(),
        stage.endpoint()
    );
    assert!(stage.endpoint().starts_with("http://127.0.0.1:"));
    assert_ne!(stage.port(), 0);
    assert!(stage.endpoint().ends_with(&format!(":{}", stage.port())));

    assert_eq!(
        stage.control_get("health").await.unwrap(),
        json!({"ok": true})
    );
    let state = stage.control_get("state").await.unwrap();
    assert_eq!(state["scenario"]["name"], "happy");

    // Faults: a bad one is refused with the stage's reason, a good one is listed, then cleared.
    let err = stage
        .control_post("fault", &json!({"kind": "bogus"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StageError::ControlStatus { status: 400, .. }),
        "{err}"
    );
    let added = stage
        .control_post("fault", &json!({"kind": "5xx", "colour": "green"}))
        .await
        .unwrap();
    assert_eq!(added["ok"], true);
    let cleared = stage.control_delete("fault").await.unwrap();
    assert_eq!(cleared["cleared"], 1);

    let pid = stage.pid();
    assert!(!common::process_gone(pid));
    drop(stage);
    assert!(
        common::process_gone(pid),
        "stage pid {pid} outlived its Stage"
    );
}

#[tokio::test]
async fn stage_stops_cleanly_on_request() {
    let stage = common::start_stage("happy").await;
    let pid = stage.pid();
    stage.stop().await.expect("clean exit 0 on SIGTERM");
    assert!(common::process_gone(pid));
}

#[tokio::test]
async fn unknown_scenario_is_one_line_exit_2() {
    let err = refused(opts("no-such-scenario", 0)).await;
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2, "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(msg.contains("unknown scenario 'no-such-scenario'"), "{msg}");
    assert!(msg.contains("happy"), "lists the known ones: {msg}");
}

#[tokio::test]
async fn malformed_scenario_file_is_one_line_with_position_exit_2() {
    let (_dir, path) = common::temp_file("broken.toml", "[migration]\nseconds = = 3\n");
    let err = refused(opts(&common::path_str(&path), 0)).await;
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2, "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(msg.contains("broken.toml"), "names the file: {msg}");
    assert!(msg.contains("line 2"), "says where: {msg}");

    let (_dir, path) = common::temp_file("typo.toml", "[migration]\nsecnds = 3\n");
    let msg = refused(opts(&common::path_str(&path), 0)).await.to_string();
    assert!(msg.contains("unknown key 'secnds'"), "{msg}");
}

#[tokio::test]
async fn port_in_use_is_one_line_exit_2() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let err = refused(opts("happy", port)).await;
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2, "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(msg.contains(&format!("port {port} is in use")), "{msg}");
}

// --- seeding -------------------------------------------------------------------------------

#[tokio::test]
async fn seeding_builds_the_plans_world_and_is_idempotent() {
    let t0 = std::time::Instant::now();
    let w = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let first = &w.report;
    println!(
        "stage up + seed: {:.2}s ({} resources created)",
        t0.elapsed().as_secs_f64(),
        first.created.len()
    );
    assert!(
        first.existing.is_empty(),
        "fresh stage: {:?}",
        first.existing
    );
    assert!(first.created.iter().any(|c| c == "vpc shop-vpc"));

    // Seeding again changes nothing and finds the same resources.
    let t1 = std::time::Instant::now();
    let again = glidepath::rehearse::seed::seed(&w.config, &w.plan)
        .await
        .expect("second seed");
    println!("re-seed: {:.2}s", t1.elapsed().as_secs_f64());
    assert!(
        again.created.is_empty(),
        "created twice: {:?}",
        again.created
    );
    assert_eq!(again.existing.len(), first.created.len());
    let ids = |r: &glidepath::rehearse::seed::SeedReport| {
        (
            r.vpc_id.clone(),
            r.subnet_ids.clone(),
            r.security_group_id.clone(),
            r.listener_arn.clone(),
            r.blue_target_group_arn.clone(),
            r.green_target_group_arn.clone(),
            r.task_definition_arn.clone(),
        )
    };
    assert_eq!(ids(first), ids(&again));

    // What the plan expects is there, as the SDK sees it.
    let ec2 = aws_sdk_ec2::Client::new(&w.config);
    let dns = ec2
        .describe_vpc_attribute()
        .vpc_id(&first.vpc_id)
        .attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
        .send()
        .await
        .unwrap();
    assert_eq!(
        dns.enable_dns_hostnames().and_then(|v| v.value()),
        Some(true)
    );
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&w.config);
    let tags = elb
        .describe_tags()
        .resource_arns(&first.blue_target_group_arn)
        .resource_arns(&first.green_target_group_arn)
        .send()
        .await
        .unwrap();
    let colours: Vec<_> = tags
        .tag_descriptions()
        .iter()
        .map(|d| {
            d.tags()
                .iter()
                .find(|t| t.key() == Some("glidepath:colour"))
                .and_then(|t| t.value())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(colours, ["blue", "green"]);
    let weights = listener_weights(&elb, &first.listener_arn, first).await;
    assert_eq!(weights, (100, 0));

    let ecs = aws_sdk_ecs::Client::new(&w.config);
    let svcs = ecs
        .describe_services()
        .cluster("shop")
        .services("shop-blue")
        .services("shop-green")
        .send()
        .await
        .unwrap();
    let desired: Vec<_> = svcs.services().iter().map(|s| s.desired_count()).collect();
    assert_eq!(desired, [2, 0]);
    let td = ecs
        .describe_task_definition()
        .task_definition("shop-web")
        .send()
        .await
        .unwrap();
    let c = &td.task_definition().unwrap().container_definitions()[0];
    assert_eq!(c.name(), Some("web"));
    assert_eq!(c.image(), Some("registry.example.com/shop:initial"));

    let rds = aws_sdk_rds::Client::new(&w.config);
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("shop-db")
        .send()
        .await
        .unwrap();
    assert_eq!(db.db_instances().len(), 1);
    let s3 = glidepath::aws::client::s3(&w.config);
    for bucket in ["shop-glidepath-state", "shop-assets"] {
        s3.head_bucket().bucket(bucket).send().await.unwrap();
    }
    let cw = aws_sdk_cloudwatch::Client::new(&w.config);
    let alarms = cw
        .describe_alarms()
        .alarm_names("shop-green-5xx")
        .send()
        .await
        .unwrap();
    assert_eq!(alarms.metric_alarms().len(), 1);
}

#[tokio::test]
async fn seeding_refuses_production_plans_and_real_endpoints() {
    use glidepath::rehearse::seed::{seed, SeedError};
    let mut plan = common::rehearsal_plan();
    // Neither refusal needs a stage: both are checked before any call.
    let real = glidepath::rehearse::emulator_sdk_config(
        "https://ecs.us-east-1.amazonaws.com",
        "us-east-1",
    )
    .await;
    let err = seed(&real, &plan).await.unwrap_err();
    assert!(matches!(err, SeedError::NotLoopback { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("https://ecs.us-east-1.amazonaws.com"));

    plan.production = true;
    plan.environment = "production".into();
    let local = glidepath::rehearse::emulator_sdk_config("http://127.0.0.1:9", "us-east-1").await;
    let err = seed(&local, &plan).await.unwrap_err();
    assert!(matches!(err, SeedError::Production { .. }), "{err}");
    assert!(err.to_string().contains("production"), "{err}");
}

/// (blue, green) weights of a listener's forward action.
async fn listener_weights(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    listener: &str,
    report: &glidepath::rehearse::seed::SeedReport,
) -> (i32, i32) {
    let out = elb
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .unwrap();
    let action = &out.listeners()[0].default_actions()[0];
    let groups = action.forward_config().unwrap().target_groups();
    let weight = |arn: &str| {
        groups
            .iter()
            .find(|g| g.target_group_arn() == Some(arn))
            .and_then(|g| g.weight())
            .unwrap_or(0)
    };
    (
        weight(&report.blue_target_group_arn),
        weight(&report.green_target_group_arn),
    )
}

// --- the world in motion, through the raw aws-sdk clients ----------------------------------

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};
use std::time::Duration;

/// Point the listener's forward action at (blue, green) weights.
async fn set_weights(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    report: &glidepath::rehearse::seed::SeedReport,
    blue: i32,
    green: i32,
) {
    let forward = ForwardActionConfig::builder()
        .target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(&report.blue_target_group_arn)
                .weight(blue)
                .build(),
        )
        .target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(&report.green_target_group_arn)
                .weight(green)
                .build(),
        )
        .build();
    elb.modify_listener()
        .listener_arn(&report.listener_arn)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(forward)
                .build(),
        )
        .send()
        .await
        .expect("modify listener");
}

/// Run one task like a migration and wait for it to stop; its essential container's exit code.
async fn run_task_to_exit(w: &common::Seeded) -> i32 {
    use aws_sdk_ecs::types::{AwsVpcConfiguration, LaunchType, NetworkConfiguration};
    let ecs = aws_sdk_ecs::Client::new(&w.config);
    let net = AwsVpcConfiguration::builder()
        .set_subnets(Some(w.report.subnet_ids.clone()))
        .security_groups(&w.report.security_group_id)
        .build()
        .unwrap();
    let run = ecs
        .run_task()
        .cluster("shop")
        .task_definition(&w.report.task_definition_arn)
        .launch_type(LaunchType::Fargate)
        .started_by("glidepath-test")
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(net)
                .build(),
        )
        .send()
        .await
        .expect("run task");
    let arn = run.tasks()[0].task_arn().unwrap().to_string();
    common::wait_for("the task to stop", Duration::from_secs(30), || async {
        let out = ecs
            .describe_tasks()
            .cluster("shop")
            .tasks(&arn)
            .send()
            .await
            .ok()?;
        let task = out.tasks().first()?;
        (task.last_status() == Some("STOPPED"))
            .then(|| task.containers().first().and_then(|c| c.exit_code()))
            .flatten()
    })
    .await
}

/// Sum of green's RequestCount over the last `secs` seconds (1 s periods).
async fn green_requests(w: &common::Seeded, secs: i64) -> f64 {
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let cw = aws_sdk_cloudwatch::Client::new(&w.config);
    let tg = glidepath::aws::target_group_dimension(&w.report.green_target_group_arn).unwrap();
    let lb = glidepath::aws::load_balancer_dimension(&w.report.load_balancer_arn).unwrap();
    let metric = Metric::builder()
        .namespace("AWS/ApplicationELB")
        .metric_name("RequestCount")
        .dimensions(Dimension::builder().name("TargetGroup").value(tg).build())
        .dimensions(Dimension::builder().name("LoadBalancer").value(lb).build())
        .build();
    let now = chrono::Utc::now();
    let out = cw
        .get_metric_data()
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("green")
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric)
                        .period(1)
                        .stat("Sum")
                        .build(),
                )
                .build(),
        )
        .start_time(aws_smithy_types::DateTime::from_secs(
            (now - chrono::Duration::seconds(secs)).timestamp(),
        ))
        .end_time(aws_smithy_types::DateTime::from_secs(now.timestamp() + 1))
        .send()
        .await
        .expect("get metric data");
    out.metric_data_results()
        .iter()
        .flat_map(|r| r.values().iter().copied())
        .sum()
}

#[tokio::test]
async fn happy_world_weights_task_deploy_and_traffic_through_the_sdk() {
    let w = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&w.config);
    let ecs = aws_sdk_ecs::Client::new(&w.config);

    // A task runs for the scenario's time and stops with its exit code (0 here).
    assert_eq!(run_task_to_exit(&w).await, 0);

    // Green deploys: the deployment reaches COMPLETED and its targets are healthy.
    ecs.update_service()
        .cluster("shop")
        .service("shop-green")
        .desired_count(2)
        .task_definition(&w.report.task_definition_arn)
        .send()
        .await
        .expect("update green");
    common::wait_for("green COMPLETED", Duration::from_secs(30), || async {
        let out = ecs
            .describe_services()
            .cluster("shop")
            .services("shop-green")
            .send()
            .await
            .ok()?;
        let svc = out.services().first()?;
        let primary = svc.deployments().first()?;
        (primary.rollout_state().map(|s| s.as_str()) == Some("COMPLETED")
            && svc.running_count() == 2)
            .then_some(())
    })
    .await;
    let health = elb
        .describe_target_health()
        .target_group_arn(&w.report.green_target_group_arn)
        .send()
        .await
        .unwrap();
    let states: Vec<_> = health
        .target_health_descriptions()
        .iter()
        .map(|d| {
            d.target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str().to_string())
        })
        .collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(
        states.iter().all(|s| s.as_deref() == Some("healthy")),
        "{states:?}"
    );

    // No traffic for green while its weight is 0, even with healthy targets…
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(green_requests(&w, 10).await, 0.0);

    // …then 90/10, read back, and green's RequestCount turns non-zero.
    set_weights(&elb, &w.report, 90, 10).await;
    assert_eq!(
        listener_weights(&elb, &w.report.listener_arn, &w.report).await,
        (90, 10)
    );
    let seen = common::wait_for("green requests", Duration::from_secs(15), || async {
        let n = green_requests(&w, 10).await;
        (n > 0.0).then_some(n)
    })
    .await;
    println!("green RequestCount over 10 s at 10%: {seen}");
}

#[tokio::test]
async fn migration_fails_task_stops_with_a_nonzero_exit_code() {
    let w = common::seeded_stage("migration-fails", common::rehearsal_plan()).await;
    assert_eq!(run_task_to_exit(&w).await, 1);
}

#[tokio::test]
async fn alarm_fires_once_green_takes_traffic() {
    let w = common::seeded_stage("alarm-fires", common::rehearsal_plan()).await;
    let cw = aws_sdk_cloudwatch::Client::new(&w.config);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&w.config);
    let state = || async {
        let out = cw
            .describe_alarms()
            .alarm_names("shop-green-5xx")
            .send()
            .await
            .unwrap();
        out.metric_alarms()[0]
            .state_value()
            .map(|s| s.as_str().to_string())
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_ne!(
        state().await.as_deref(),
        Some("ALARM"),
        "no traffic, no alarm yet"
    );
    set_weights(&elb, &w.report, 90, 10).await;
    common::wait_for("the alarm", Duration::from_secs(15), || async {
        (state().await.as_deref() == Some("ALARM")).then_some(())
    })
    .await;
}

// --- an owner killed with SIGKILL leaves no stage --------------------------------------------

/// Helper run in a child process by the test below: start a stage, print its pid, wait to be
/// killed. Does nothing in a normal test run.
#[tokio::test]
async fn helper_hold_a_stage_until_killed() {
    if std::env::var_os("GLIDEPATH_TEST_HOLD_STAGE").is_none() {
        return;
    }
    let stage = common::start_stage("happy").await;
    println!("holding stage pid {}", stage.pid());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[test]
fn owner_killed_with_sigkill_takes_its_stage_down() {
    use std::io::BufRead;
    common::ensure_stage_venv();
    let mut owner = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "stage::helper_hold_a_stage_until_killed",
            "--exact",
            "--nocapture",
        ])
        .env("GLIDEPATH_TEST_HOLD_STAGE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = owner.stdout.take().unwrap();
    let pid: u32 = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("holding stage pid ")?.trim().parse().ok())
        .expect("the owner started a stage");
    assert!(!common::process_gone(pid));
    owner.kill().unwrap(); // SIGKILL: no Drop runs in the owner
    owner.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !common::process_gone(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "stage pid {pid} outlived its SIGKILLed owner"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
