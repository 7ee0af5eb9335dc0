//! `glidepath init` on the stage: a plan written from the seeded blue service validates and
//! matches the account (`diff` exit 0); with the green twin removed, `--create-green` needs
//! a confirmation, then creates a twin that is read back and that the plan matches.

use crate::common;
use crate::operator_stage::{glidepath, text};

use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum};
use std::path::Path;

fn cli(endpoint: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = glidepath(endpoint, args).output().unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// The plan validates, and `diff` finds it matching the account.
fn validates_and_matches(endpoint: &str, plan: &Path) {
    let p = common::path_str(plan);
    let (code, out, err) = cli(endpoint, &["plan", "validate", &p]);
    assert_eq!(
        code,
        Some(0),
        "validate:\n{out}\n{err}\n{}",
        std::fs::read_to_string(plan).unwrap()
    );
    let (code, out, err) = cli(endpoint, &["diff", &p, "--version", "2.0.0"]);
    assert_eq!(code, Some(0), "diff:\n{out}\n{err}");
    assert!(out.contains("the plan matches the account"), "{out}");
}

#[tokio::test]
async fn init_writes_a_plan_that_validates_and_matches_the_seeded_service() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let (code, plan, err) = cli(
        &endpoint,
        &["init", "--cluster", "shop", "--service", "shop-blue"],
    );
    assert_eq!(code, Some(0), "{plan}\n{err}");
    for want in [
        "cluster = \"shop\"",
        "service = \"shop-green\"",
        "target_group = \"shop-blue\"",
        "listener = \"shop:80\"",
        "instance = \"shop-db\"",
        "container = \"web\"",
        "NOT INFERRED",
    ] {
        assert!(plan.contains(want), "missing {want:?}:\n{plan}");
    }
    assert!(
        !err.contains("does not exist yet"),
        "the twin exists: {err}"
    );
    let (_dir, path) = common::temp_file("init.toml", &plan);
    validates_and_matches(&endpoint, &path);
}

#[tokio::test]
async fn create_green_asks_then_creates_a_twin_the_plan_matches() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&seeded.config);
    let ecs = aws_sdk_ecs::Client::new(&seeded.config);
    // A single-colour world: the listener forwards to blue only, green is gone.
    let tg = |name: &'static str| {
        let elb = elb.clone();
        async move {
            elb.describe_target_groups()
                .names(name)
                .send()
                .await
                .ok()
                .and_then(|o| {
                    o.target_groups()
                        .first()?
                        .target_group_arn()
                        .map(String::from)
                })
        }
    };
    let blue_tg = tg("shop-blue").await.unwrap();
    let green_tg = tg("shop-green").await.unwrap();
    let lb = elb
        .describe_load_balancers()
        .names("shop")
        .send()
        .await
        .unwrap();
    let lb_arn = lb.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&lb_arn)
        .send()
        .await
        .unwrap();
    let listener = listeners.listeners()[0].listener_arn().unwrap().to_string();
    elb.modify_listener()
        .listener_arn(&listener)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&blue_tg)
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecs.delete_service()
        .cluster("shop")
        .service("shop-green")
        .force(true)
        .send()
        .await
        .unwrap();
    elb.delete_target_group()
        .target_group_arn(&green_tg)
        .send()
        .await
        .unwrap();
    let green_service = || {
        let ecs = ecs.clone();
        async move {
            ecs.describe_services()
                .cluster("shop")
                .services("shop-green")
                .send()
                .await
                .unwrap()
                .services()
                .iter()
                .find(|s| s.status() != Some("INACTIVE"))
                .cloned()
        }
    };

    // Without it: says what it would create, creates nothing.
    let (code, _, err) = cli(
        &endpoint,
        &["init", "--cluster", "shop", "--service", "shop-blue"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("would create: target group shop-green") && err.contains("service shop-green"),
        "{err}"
    );
    // Scripted mode without --yes: refused, nothing created.
    let (code, _, err) = cli(
        &endpoint,
        &[
            "init",
            "--cluster",
            "shop",
            "--service",
            "shop-blue",
            "--create-green",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert!(green_service().await.is_none());
    assert!(tg("shop-green").await.is_none());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.toml");
    let (code, out, err) = cli(
        &endpoint,
        &[
            "init",
            "--cluster",
            "shop",
            "--service",
            "shop-blue",
            "--create-green",
            "--yes",
            "--out",
            &common::path_str(&path),
        ],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("created the green twin"), "{err}");
    let twin = green_service().await.expect("the twin service exists");
    let new_tg = tg("shop-green")
        .await
        .expect("the twin target group exists");
    assert_eq!(
        twin.load_balancers()[0].target_group_arn(),
        Some(new_tg.as_str()),
        "the twin registers in the twin target group"
    );
    assert_eq!(twin.load_balancers()[0].container_name(), Some("web"));
    validates_and_matches(&endpoint, &path);

    // --out never overwrites.
    let (code, _, err) = cli(
        &endpoint,
        &[
            "init",
            "--cluster",
            "shop",
            "--service",
            "shop-blue",
            "--out",
            &common::path_str(&path),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("never overwrites"), "{err}");
}
