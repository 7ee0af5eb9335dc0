//! `glidepath init` on the stage: a plan written from the seeded blue service validates and
//! matches the account (`diff` exit 0); with the green twin removed, `--create-green` needs
//! a confirmation, then creates a twin that is read back and that the plan matches; a
//! scripted release of the plan init wrote, unedited, finalizes on that twin.

use crate::common;
use crate::operator_stage::{glidepath, text};

use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum};
use std::path::Path;

fn cli(endpoint: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = glidepath(endpoint, args).output().unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// As `cli`, but the command is killed (and the test fails) when it takes longer than `limit`.
fn cli_within(
    endpoint: &str,
    args: &[&str],
    limit: std::time::Duration,
) -> (Option<i32>, String, String) {
    let mut child = glidepath(endpoint, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = crate::operator_stage::lines_of(child.stdout.take().unwrap());
    let err = crate::operator_stage::lines_of(child.stderr.take().unwrap());
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            crate::operator_stage::kill(&mut child);
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let out: Vec<String> = out.iter().collect();
    let err: Vec<String> = err.iter().collect();
    let (out, err) = (out.join("\n"), err.join("\n"));
    let status =
        status.unwrap_or_else(|| panic!("{args:?} still ran after {limit:?}:\n{out}\n{err}"));
    (status.code(), out, err)
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

/// A single-colour world: the listener forwards to blue only, green's service and target
/// group are gone. Returns the `tg(name)` lookup's ELB client.
async fn single_colour_world(seeded: &common::Seeded) -> aws_sdk_elasticloadbalancingv2::Client {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&seeded.config);
    let ecs = aws_sdk_ecs::Client::new(&seeded.config);
    let blue_tg = target_group(&elb, "shop-blue").await.unwrap();
    let green_tg = target_group(&elb, "shop-green").await.unwrap();
    let listener = listener_arn(&elb).await;
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
    elb
}

/// A target group's ARN by name, if it exists.
async fn target_group(elb: &aws_sdk_elasticloadbalancingv2::Client, name: &str) -> Option<String> {
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

/// The seeded load balancer's (only) listener.
async fn listener_arn(elb: &aws_sdk_elasticloadbalancingv2::Client) -> String {
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
    listeners.listeners()[0].listener_arn().unwrap().to_string()
}

#[tokio::test]
async fn create_green_asks_then_creates_a_twin_the_plan_matches() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let ecs = aws_sdk_ecs::Client::new(&seeded.config);
    let elb = single_colour_world(&seeded).await;
    let tg = |name: &'static str| {
        let elb = elb.clone();
        async move { target_group(&elb, name).await }
    };
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

/// The whole adoption path with no hand edit: init creates the twin and writes the plan,
/// and a scripted release of exactly that plan finalizes with all traffic on the twin.
#[tokio::test]
async fn a_release_of_the_plan_init_wrote_finalizes_on_the_twin_it_created() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let elb = single_colour_world(&seeded).await;
    let dir = tempfile::tempdir().unwrap();
    let path = common::path_str(&dir.path().join("plan.toml"));
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
            &path,
        ],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    let plan = std::fs::read_to_string(&path).unwrap();

    // Stage timing: a plan written for the stage bakes in seconds, not real-AWS minutes, so
    // the release is over well within this.
    let (code, out, err) = cli_within(
        &endpoint,
        &[
            "release",
            &path,
            "--version",
            "2.0.0",
            "--non-interactive",
            "--auto-approve",
        ],
        std::time::Duration::from_secs(180),
    );
    assert_eq!(code, Some(0), "release:\n{out}\n{err}\nplan:\n{plan}");
    assert!(out.contains("FINALIZED: 2.0.0 is live on green"), "{out}");

    let green = target_group(&elb, "shop-green").await.unwrap();
    let blue = target_group(&elb, "shop-blue").await.unwrap();
    let listener = listener_arn(&elb).await;
    let read = elb
        .describe_listeners()
        .listener_arns(&listener)
        .send()
        .await
        .unwrap();
    let groups = read.listeners()[0].default_actions()[0]
        .forward_config()
        .expect("a weighted forward")
        .target_groups()
        .to_vec();
    let weight = |arn: &str| {
        groups
            .iter()
            .find(|g| g.target_group_arn() == Some(arn))
            .and_then(|g| g.weight())
            .unwrap_or(0)
    };
    assert_eq!((weight(&blue), weight(&green)), (0, 100), "{groups:?}");
}
