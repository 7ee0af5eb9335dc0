//! `glidepath diff` on the stage: it reads the world a release would start from and
//! serves no mutating call; a plan pointing at the wrong target group exits 2 naming it.

use crate::common;
use crate::operator_stage::{glidepath, text};

use serde_json::{json, Value};
use std::collections::BTreeMap;

fn diff(endpoint: &str, plan: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["diff", plan, "--version", "1.4.0"];
    args.extend_from_slice(extra);
    let out = glidepath(endpoint, &args)
        // `diff` previews the assets with the same S3 client as `assets publish`.
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Reads by their names: Describe*, List*, Get*, and S3's GetObject/HeadObject/ListObjects.
fn is_read(op: &str) -> bool {
    let name = op.split_once(':').map_or(op, |(_, n)| n);
    ["Describe", "List", "Get", "Head"]
        .iter()
        .any(|p| name.starts_with(p))
}

async fn served(stage: &glidepath::rehearse::stage::Stage) -> BTreeMap<String, u64> {
    serde_json::from_value(stage.control_get("state").await.unwrap()["requests"].clone()).unwrap()
}

#[tokio::test]
async fn diff_reads_the_world_and_changes_nothing() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let plan = "examples/rehearsal.toml";
    seeded
        .stage
        .control_post("reset-counters", &json!({}))
        .await
        .unwrap();

    let (code, stdout, stderr) = diff(&endpoint, plan, &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for want in [
        "would deploy public.ecr.aws/glidepath/shop:1.4.0",
        "live:      blue",
        "standby:   green",
        "alarm:     shop-green-5xx",
        "lock:      free",
        "bin/migrate up",
        "the plan matches the account",
    ] {
        assert!(stdout.contains(want), "missing {want:?}:\n{stdout}");
    }

    let (code, stdout, stderr) = diff(&endpoint, plan, &["--output", "json"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let d: Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let files = std::fs::read_dir(common::repo_root().join("assets"))
        .unwrap()
        .count() as u64;
    assert!(files > 0);
    // Nothing is published yet: every file is new.
    assert_eq!(
        d["assets"]["new_files"].as_u64(),
        Some(d["assets"]["files"].as_u64().unwrap())
    );
    assert!(d["assets"]["new_bytes"].as_u64().unwrap() > 0, "{d:#}");
    assert_eq!(d["traffic"]["forwards"][0]["weight"], 100, "{d:#}");
    assert_eq!(d["traffic"]["forwards"][0]["colour"], "blue", "{d:#}");
    let phases: Vec<&str> = d["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["lock", "snapshot", "migrate", "assets", "deploy", "shift", "finalize"]
    );
    assert_eq!(d["differences"], json!([]));

    let calls = served(&seeded.stage).await;
    assert!(calls.contains_key("elbv2:DescribeListeners"), "{calls:?}");
    let writes: Vec<_> = calls.keys().filter(|op| !is_read(op)).collect();
    assert!(writes.is_empty(), "diff made mutating calls: {writes:?}");
}

#[tokio::test]
async fn a_plan_pointing_at_another_target_group_exits_2_naming_it() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    // Another target group in the same VPC, which nothing forwards to.
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&seeded.config);
    let blue = elb
        .describe_target_groups()
        .names("shop-blue")
        .send()
        .await
        .unwrap();
    let vpc = blue.target_groups()[0].vpc_id().unwrap().to_string();
    elb.create_target_group()
        .name("shop-other")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
        .send()
        .await
        .unwrap();
    let toml = std::fs::read_to_string(common::repo_root().join("examples/rehearsal.toml"))
        .unwrap()
        .replace(
            "target_group = \"shop-green\"",
            "target_group = \"shop-other\"",
        )
        .replace(
            "dir = \"../assets\"",
            &format!(
                "dir = {:?}",
                common::path_str(&common::repo_root().join("assets"))
            ),
        );
    let (_dir, path) = common::temp_file("wrong-tg.toml", &toml);
    seeded
        .stage
        .control_post("reset-counters", &json!({}))
        .await
        .unwrap();

    let (code, stdout, stderr) = diff(&endpoint, &common::path_str(&path), &[]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("the plan does not match the account"),
        "{stdout}"
    );
    assert!(
        stdout.contains("targetgroup/shop-green/") && stdout.contains("neither the plan's"),
        "names the listener's target group that is not the plan's:\n{stdout}"
    );
    assert!(
        stdout.contains("service shop-green (green) registers its tasks in")
            && stdout.contains("targetgroup/shop-other/"),
        "names the service's target group against the plan's:\n{stdout}"
    );
    assert!(stderr.contains("difference"), "{stderr}");
    let calls = served(&seeded.stage).await;
    let writes: Vec<_> = calls.keys().filter(|op| !is_read(op)).collect();
    assert!(writes.is_empty(), "diff made mutating calls: {writes:?}");
}

/// The judging part on its own: a weight-0 third target group is still a difference, and a
/// ledger that says green is live puts green on the live side.
#[test]
fn build_names_a_stray_target_group_and_follows_the_ledger_colours() {
    use glidepath::aws::inspect::{Account, ResolvedView, ServiceView};
    use glidepath::commands::diff::build;
    use glidepath::engine::ledger::Slot;
    use glidepath::engine::run::Status;
    use glidepath::gate::ColourName;

    let svc = |name: &str, tg: &str| ServiceView {
        name: name.into(),
        task_definition: format!("{name}:3"),
        image: Some("registry.example.com/shop:1.3.0".into()),
        desired: 2,
        running: 2,
        rollout: "COMPLETED".into(),
        target_groups: vec![tg.into()],
        subnets: vec!["subnet-1".into()],
        security_groups: vec!["sg-1".into()],
    };
    let account = |forwards: Vec<(&str, u32)>| Account {
        resolved: ResolvedView {
            blue_target_group: "tg-blue".into(),
            green_target_group: "tg-green".into(),
            listener: "listener-1".into(),
            rule: None,
        },
        blue: svc("shop-blue", "tg-blue"),
        green: svc("shop-green", "tg-green"),
        forwards: forwards
            .into_iter()
            .map(|(t, w)| (t.to_string(), w))
            .collect(),
        alarms: vec![],
    };
    let mut status = Status {
        app: "shop".into(),
        environment: "rehearsal".into(),
        lock: None,
        live: None,
        standby: None,
        current: None,
        last: None,
        contract: None,
    };
    let plan = common::rehearsal_plan();

    let ok = build(
        &plan,
        "1.4.0",
        account(vec![("tg-blue", 100), ("tg-green", 0)]),
        &status,
        None,
    );
    assert!(ok.differences.is_empty(), "{:?}", ok.differences);
    assert_eq!(ok.live.colour, ColourName::Blue);
    assert_eq!(ok.image, "registry.example.com/shop:1.4.0");

    let stray = build(
        &plan,
        "1.4.0",
        account(vec![("tg-blue", 100), ("tg-old", 0)]),
        &status,
        None,
    );
    assert_eq!(stray.differences.len(), 1, "{:?}", stray.differences);
    assert!(
        stray.differences[0].contains("tg-old (weight 0)"),
        "{:?}",
        stray.differences
    );

    status.live = Some(Slot {
        version: "1.3.0".into(),
        colour: ColourName::Green,
        release: None,
        unusable: None,
        image: None,
    });
    let green_live = build(
        &plan,
        "1.4.0",
        account(vec![("tg-green", 100)]),
        &status,
        None,
    );
    assert_eq!(green_live.live.service.name, "shop-green");
    assert_eq!(green_live.standby.service.name, "shop-blue");
    assert!(
        green_live.differences.is_empty(),
        "{:?}",
        green_live.differences
    );
    let shift = &green_live
        .phases
        .iter()
        .find(|p| p.phase == "shift")
        .unwrap()
        .change;
    assert!(shift.contains("green/blue"), "{shift}");
}
