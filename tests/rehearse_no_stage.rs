//! `glidepath rehearse --endpoint URL --no-stage`: a rehearsal against a world someone else
//! runs. Nothing is started, seeded or stopped; what the plan needs is checked first.

use crate::common;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};
use glidepath::cli::Global;
use glidepath::commands::rehearse::{rehearse, RehearseArgs};
use serde_json::Value;
use std::process::{Command, Output};

fn global() -> Global {
    Global {
        endpoint_url: None,
        profile: None,
        region: None,
        verbose: 0,
        log_file: None,
    }
}

fn on(endpoint: &str) -> RehearseArgs {
    RehearseArgs {
        endpoint: Some(endpoint.to_string()),
        no_stage: true,
        ..RehearseArgs::default()
    }
}

fn count(state: &Value, op: &str) -> u64 {
    state["requests"][op].as_u64().unwrap_or(0)
}

/// The binary, from the checkout, with no endpoint in the environment.
fn glidepath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glidepath"))
        .args(args)
        .current_dir(common::repo_root())
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run glidepath")
}

#[tokio::test]
async fn no_stage_releases_into_a_seeded_stage_and_leaves_it_running_unseeded() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let before = seeded.stage.control_get("state").await.unwrap();
    // Seeding looks every resource up first; a release never reads EC2.
    assert!(
        count(&before, "ec2:DescribeVpcs") > 0,
        "{}",
        before["requests"]
    );

    let done = rehearse(&global(), common::rehearsal_plan(), &on(&endpoint)).await;
    println!("{}", done.report);
    assert_eq!(done.exit_code, 0, "{}", done.report);
    assert_eq!(done.stage_pid, None, "nothing was started");
    assert!(
        done.report.contains(&format!(
            "endpoint: {endpoint} (nothing started, seeded or stopped"
        )),
        "{}",
        done.report
    );
    // The report carries the endpoint's own view when it is one of our engines.
    assert!(
        done.report
            .contains("listener shop now: shop-blue 0, shop-green 100"),
        "{}",
        done.report
    );

    // Still running, released into, and not seeded again.
    let after = seeded
        .stage
        .control_get("state")
        .await
        .expect("the stage is still running");
    assert_eq!(after["target_groups"]["shop-green"]["weight"], 100);
    assert_eq!(after["migration_tasks"].as_array().unwrap().len(), 1);
    for op in [
        "ec2:DescribeVpcs",
        "ec2:CreateVpc",
        "ecs:CreateCluster",
        "elbv2:CreateLoadBalancer",
        "rds:CreateDBInstance",
    ] {
        assert_eq!(
            count(&after, op),
            count(&before, op),
            "{op} after the rehearsal"
        );
    }
    assert!(count(&after, "elbv2:ModifyListener") > count(&before, "elbv2:ModifyListener"));
}

#[tokio::test]
async fn no_stage_names_everything_missing_and_changes_nothing() {
    let stage = common::start_stage("happy").await;
    let endpoint = stage.endpoint();
    let args = [
        "rehearse",
        "examples/rehearsal.toml",
        "--endpoint",
        &endpoint,
        "--no-stage",
        "--non-interactive",
        "--auto-approve",
    ];

    // An empty emulator: every piece is named, with how to create it.
    let out = glidepath(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for missing in [
        "ECS cluster \"shop\": create it with `aws ecs create-cluster --cluster-name shop`",
        "blue target group \"shop-blue\"",
        "green target group \"shop-green\"",
        "load balancer \"shop\" (traffic.listener = \"shop:80\")",
        "blue ECS service \"shop-blue\" in cluster \"shop\"",
        "green ECS service \"shop-green\" in cluster \"shop\"",
        "RDS DB instance \"shop-db\"",
        "S3 bucket \"shop-glidepath-state\"",
        "S3 bucket \"shop-assets\"",
        "glidepath stage seed examples/rehearsal.toml --endpoint-url",
    ] {
        assert!(err.contains(missing), "{missing:?} not in:\n{err}");
    }
    let state = stage.control_get("state").await.unwrap();
    for op in ["ecs:CreateCluster", "s3:CreateBucket", "ecs:RunTask"] {
        assert_eq!(count(&state, op), 0, "{op}: nothing may be created");
    }

    // A seeded world with two things taken away: exactly those two are named.
    let config = common::sdk_config(&stage).await;
    let report = glidepath::rehearse::seed::seed(&config, &common::rehearsal_plan())
        .await
        .unwrap();
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let blue_only = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(&report.blue_target_group_arn)
                        .weight(1)
                        .build(),
                )
                .build(),
        )
        .build();
    elb.modify_listener()
        .listener_arn(&report.listener_arn)
        .default_actions(blue_only)
        .send()
        .await
        .unwrap();
    glidepath::aws::client::s3(&config)
        .delete_bucket()
        .bucket("shop-assets")
        .send()
        .await
        .unwrap();
    let out = glidepath(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let items: Vec<&str> = err.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(items.len(), 2, "{err}");
    assert!(
        items[0].starts_with("  - listener \"shop:80\" forwarding to shop-green"),
        "{err}"
    );
    assert!(items[0].contains("aws elbv2 modify-listener"), "{err}");
    assert!(
        items[1].starts_with("  - S3 bucket \"shop-assets\""),
        "{err}"
    );
    let state = stage.control_get("state").await.unwrap();
    assert_eq!(count(&state, "ecs:RunTask"), 0, "no release ran");
}

#[test]
fn no_stage_flags_are_checked_before_anything_runs() {
    // --no-stage alone, --endpoint alone, and --no-stage with a stage option: usage errors.
    for args in [
        &["rehearse", "--no-stage"][..],
        &["rehearse", "--endpoint", "http://127.0.0.1:1"],
        &[
            "rehearse",
            "--endpoint",
            "http://127.0.0.1:1",
            "--no-stage",
            "--engine",
            "localstack",
        ],
    ] {
        let out = glidepath(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // Never a rehearsal into AWS itself.
    let out = glidepath(&[
        "rehearse",
        "examples/rehearsal.toml",
        "--endpoint",
        "https://ecs.us-east-1.amazonaws.com",
        "--no-stage",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not look like an emulator"), "{err}");
}
