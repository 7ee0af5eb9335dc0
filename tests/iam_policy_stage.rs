//! `glidepath iam-policy`: every operation the stage served during a release, a manual
//! rollback, a gate rollback drill, `watch` and `assets publish` is allowed by the policy
//! the command prints for the plan, judged by a small evaluator of Action, Resource and
//! the conditions the policy uses; and the policy allows nothing beyond the operations list.
//! iam:PassRole is scoped to the task definition's roles and logs:GetLogEvents to the
//! migration's log group, read from the account; unknown, they stay wildcards, said on stderr.

use crate::common;
use crate::operator_stage::{glidepath, text};

use glidepath::aws::permissions::{self, On};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const ACCOUNT: &str = "123456789012";

/// IAM wildcard match: `*` any run of characters, `?` one; actions case-insensitively.
fn glob(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) => a == b && go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    go(&p, &v)
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => vec![],
    }
}

/// A request: one IAM action on one resource with the condition keys it carries.
struct Request<'a> {
    action: &'a str,
    resource: String,
    context: Vec<(&'a str, String)>,
}

/// Whether one Allow statement covers the request (a condition key the request does not
/// carry fails it, as in IAM).
fn allows(statement: &Value, r: &Request) -> bool {
    let action_ok = strings(&statement["Action"])
        .iter()
        .any(|a| glob(&a.to_lowercase(), &r.action.to_lowercase()));
    let resource_ok = strings(&statement["Resource"])
        .iter()
        .any(|p| glob(p, &r.resource));
    if statement["Effect"] != "Allow" || !action_ok || !resource_ok {
        return false;
    }
    let Some(cond) = statement.get("Condition").and_then(Value::as_object) else {
        return true;
    };
    cond.iter().all(|(op, keys)| {
        keys.as_object().into_iter().flatten().all(|(key, want)| {
            let Some((_, got)) = r.context.iter().find(|(k, _)| k == key) else {
                return false;
            };
            strings(want).iter().any(|w| match op.as_str() {
                "StringEquals" | "ArnEquals" => w == got,
                "StringLike" | "ArnLike" => glob(w, got),
                other => panic!("the evaluator does not know condition operator {other}"),
            })
        })
    })
}

fn policy_allows(policy: &Value, r: &Request) -> bool {
    policy["Statement"]
        .as_array()
        .expect("Statement is an array")
        .iter()
        .any(|s| allows(s, r))
}

/// What each served `service:Operation` asks IAM for in the rehearsal world, written out
/// here independently of the operations list. S3 calls may address the state bucket or
/// the assets bucket, so both are asked.
fn requests_for<'a>(api: &str, w: &'a World) -> Option<Vec<Request<'a>>> {
    let arn = |service: &str, rest: &str| format!("arn:aws:{service}:us-east-1:{ACCOUNT}:{rest}");
    let req = |action: &'a str, resource: String| Request {
        action,
        resource,
        context: vec![],
    };
    let state_key = "arn:aws:s3:::shop-glidepath-state/glidepath/shop/rehearsal/ledger/index.json";
    let asset_key = "arn:aws:s3:::shop-assets/static/1.4.0/index.html";
    // The seeded task definition's task and execution roles.
    let pass_role = ["shop-task", "shop-task-execution"].map(|role| Request {
        action: "iam:PassRole",
        resource: format!("arn:aws:iam::{ACCOUNT}:role/{role}"),
        context: vec![("iam:PassedToService", "ecs-tasks.amazonaws.com".into())],
    });
    let services = || {
        ["shop-blue", "shop-green"]
            .map(|s| arn("ecs", &format!("service/shop/{s}")))
            .to_vec()
    };
    let snapshot = arn("rds", &format!("snapshot:{}", w.snapshot_id));
    let db = arn("rds", "db:shop-db");
    let (service, op) = api.split_once(':')?;
    Some(match (service, op) {
        ("sts", "GetCallerIdentity") => vec![],
        ("elbv2", "ModifyListener") => vec![req(
            "elasticloadbalancing:ModifyListener",
            w.listener_arn.clone(),
        )],
        ("elbv2", op) if op.starts_with("Describe") => vec![Request {
            action: leak(format!("elasticloadbalancing:{op}")),
            resource: "*".into(),
            context: vec![],
        }],
        ("ecs", "DescribeServices") => services()
            .into_iter()
            .map(|s| req("ecs:DescribeServices", s))
            .collect(),
        ("ecs", "UpdateService") => services()
            .into_iter()
            .map(|s| req("ecs:UpdateService", s))
            .collect(),
        ("ecs", "DescribeTaskDefinition") => vec![req("ecs:DescribeTaskDefinition", "*".into())],
        ("ecs", "RegisterTaskDefinition") => {
            let mut v = vec![req("ecs:RegisterTaskDefinition", "*".into())];
            v.extend(pass_role);
            v
        }
        ("ecs", "ListTasks") => vec![req("ecs:ListTasks", "*".into())],
        ("ecs", "DescribeTasks") => vec![req("ecs:DescribeTasks", arn("ecs", "task/shop/0f3c9e"))],
        ("ecs", "RunTask") => {
            let mut v = vec![Request {
                action: "ecs:RunTask",
                resource: arn("ecs", "task-definition/shop:7"),
                context: vec![("ecs:cluster", arn("ecs", "cluster/shop"))],
            }];
            v.extend(pass_role);
            v
        }
        // The seeded migration container's awslogs group.
        ("logs", "GetLogEvents") => vec![req(
            "logs:GetLogEvents",
            arn("logs", "log-group:/shop/web:log-stream:shop/web/0f3c9e"),
        )],
        ("rds", "DescribeDBInstances") => vec![req("rds:DescribeDBInstances", db)],
        ("rds", "DescribeDBSnapshots") => vec![
            req("rds:DescribeDBSnapshots", db),
            req("rds:DescribeDBSnapshots", snapshot),
        ],
        ("rds", "CreateDBSnapshot") => vec![
            req("rds:CreateDBSnapshot", db),
            req("rds:CreateDBSnapshot", snapshot.clone()),
            req("rds:AddTagsToResource", snapshot),
        ],
        ("rds", "ListTagsForResource") => vec![req("rds:ListTagsForResource", snapshot)],
        ("cloudwatch", "GetMetricData") => vec![req("cloudwatch:GetMetricData", "*".into())],
        ("cloudwatch", "DescribeAlarms") => vec![req(
            "cloudwatch:DescribeAlarms",
            arn("cloudwatch", "alarm:shop-green-5xx"),
        )],
        ("s3", "GetObject" | "HeadObject") => vec![
            req("s3:GetObject", state_key.into()),
            req("s3:GetObject", asset_key.into()),
        ],
        ("s3", "PutObject") => vec![
            req("s3:PutObject", state_key.into()),
            req("s3:PutObject", asset_key.into()),
        ],
        ("s3", "DeleteObject" | "DeleteObjects") => vec![
            req("s3:DeleteObject", state_key.into()),
            req("s3:DeleteObject", asset_key.into()),
        ],
        ("s3", "ListObjectsV2") => vec![
            Request {
                action: "s3:ListBucket",
                resource: "arn:aws:s3:::shop-glidepath-state".into(),
                context: vec![("s3:prefix", "glidepath/shop/rehearsal/ops/".into())],
            },
            Request {
                action: "s3:ListBucket",
                resource: "arn:aws:s3:::shop-assets".into(),
                context: vec![("s3:prefix", "static/".into())],
            },
        ],
        _ => return None,
    })
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

struct World {
    listener_arn: String,
    snapshot_id: String,
}

fn iam_policy(endpoint: &str, plan: &str) -> (Value, String) {
    let out = glidepath(endpoint, &["iam-policy", plan]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no resource-level permissions") && stderr.contains(ACCOUNT),
        "explanation on stderr names the account and the Resource \"*\" actions:\n{stderr}"
    );
    let policy =
        serde_json::from_slice(&out.stdout).expect("stdout is the policy as JSON, nothing else");
    (policy, stderr)
}

/// The one statement that grants `action`.
fn statement_for<'a>(policy: &'a Value, action: &str) -> &'a Value {
    let found: Vec<&Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| strings(&s["Action"]).iter().any(|a| a == action))
        .collect();
    assert_eq!(found.len(), 1, "{action} in one statement: {policy:#}");
    found[0]
}

/// iam:PassRole only for the task definition's two roles and only to ECS tasks;
/// logs:GetLogEvents only in the migration container's log group.
fn assert_scoped(policy: &Value, stderr: &str) {
    let roles = [
        format!("arn:aws:iam::{ACCOUNT}:role/shop-task"),
        format!("arn:aws:iam::{ACCOUNT}:role/shop-task-execution"),
    ];
    let pass = statement_for(policy, "iam:PassRole");
    assert_eq!(strings(&pass["Resource"]), roles, "{pass:#}");
    assert_eq!(
        pass["Condition"],
        json!({"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}})
    );
    let logs = statement_for(policy, "logs:GetLogEvents");
    assert_eq!(
        strings(&logs["Resource"]),
        [format!(
            "arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/shop/web:log-stream:*"
        )]
    );
    let ecs_tasks = || vec![("iam:PassedToService", "ecs-tasks.amazonaws.com".to_string())];
    for (action, resource, context) in [
        (
            "iam:PassRole",
            format!("arn:aws:iam::{ACCOUNT}:role/admin"),
            ecs_tasks(),
        ),
        (
            "iam:PassRole",
            roles[0].clone(),
            vec![("iam:PassedToService", "lambda.amazonaws.com".to_string())],
        ),
        (
            "logs:GetLogEvents",
            format!("arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/other/app:log-stream:x"),
            vec![],
        ),
    ] {
        let r = Request {
            action,
            resource: resource.clone(),
            context,
        };
        assert!(
            !policy_allows(policy, &r),
            "{action} on {resource} is allowed"
        );
    }
    assert!(
        stderr.contains(&format!("iam:PassRole: only {}, {}", roles[0], roles[1]))
            && stderr.contains("logs:GetLogEvents: only log group /shop/web"),
        "{stderr}"
    );
}

async fn run(endpoint: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = glidepath(endpoint, args);
    // `assets publish` takes credentials from the standard chain even on loopback.
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        format!("{}\n{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[tokio::test]
async fn every_operation_served_in_a_release_rollback_drill_watch_and_publish_is_allowed() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let plan = "examples/rehearsal.toml";
    let (policy, stderr) = iam_policy(&endpoint, plan);
    assert_scoped(&policy, &stderr);
    seeded
        .stage
        .control_post("reset-counters", &json!({}))
        .await
        .unwrap();

    let release = |v: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            run(
                &endpoint,
                &[
                    "release",
                    plan,
                    "--version",
                    v,
                    "--non-interactive",
                    "--auto-approve",
                ],
            )
            .await
        }
    };
    let (code, out) = release("1.4.0").await;
    assert_eq!(code, Some(0), "release:\n{out}");
    let (code, out) = run(&endpoint, &["rollback", plan]).await;
    assert_eq!(code, Some(0), "manual rollback:\n{out}");
    // The drill: green serves errors, the gate sends traffic back (exit 3).
    seeded
        .stage
        .control_post("fault", &json!({"kind": "5xx", "colour": "green"}))
        .await
        .unwrap();
    let (code, out) = release("1.5.0").await;
    assert_eq!(code, Some(3), "gate rollback drill:\n{out}");
    seeded.stage.control_delete("fault").await.unwrap();
    let (code, out) = run(&endpoint, &["watch", plan, "--non-interactive"]).await;
    assert_eq!(code, Some(0), "watch:\n{out}");
    let (code, out) = run(
        &endpoint,
        &["assets", "publish", plan, "--version", "1.6.0"],
    )
    .await;
    assert_eq!(code, Some(0), "assets publish:\n{out}");

    let served: BTreeMap<String, u64> = serde_json::from_value(
        seeded.stage.control_get("state").await.unwrap()["requests"].clone(),
    )
    .unwrap();
    let (ports, _) = glidepath::commands::release::ports_for(&seeded.config, &seeded.plan)
        .await
        .unwrap();
    let index = glidepath::engine::run::history(&seeded.plan, &ports)
        .await
        .unwrap();
    let world = World {
        listener_arn: glidepath::aws::resolve::resolve(
            &aws_sdk_elasticloadbalancingv2::Client::new(&seeded.config),
            &seeded.plan,
        )
        .await
        .unwrap()
        .listener_arn,
        snapshot_id: glidepath::engine::ids::snapshot_id("shop-db", &index[0].id),
    };

    let mut refused = vec![];
    for api in served.keys() {
        let Some(requests) = requests_for(api, &world) else {
            panic!("the stage served {api}, which this test does not know: add it here and to aws::permissions::OPERATIONS");
        };
        for r in &requests {
            if !policy_allows(&policy, r) {
                refused.push(format!("{api}: {} on {}", r.action, r.resource));
            }
        }
    }
    assert!(
        refused.is_empty(),
        "served but refused by the policy:\n{}\npolicy:\n{policy:#}",
        refused.join("\n")
    );

    // Nothing beyond the list: every action the policy names is one of the plan's listed
    // operations, never a wildcard, and Resource "*" only for actions IAM cannot scope.
    let ops = permissions::operations_for(&seeded.plan);
    let listed: BTreeSet<&str> = ops.iter().map(|o| o.action).collect();
    let account_wide: BTreeSet<&str> = ops
        .iter()
        .filter(|o| o.on == On::Anything)
        .map(|o| o.action)
        .collect();
    for s in policy["Statement"].as_array().unwrap() {
        let resources = strings(&s["Resource"]);
        for a in strings(&s["Action"]) {
            assert!(!a.contains('*'), "wildcard action {a}");
            assert!(
                listed.contains(a.as_str()),
                "{a} is not in the operations list"
            );
            if resources.iter().any(|r| r == "*") {
                assert!(account_wide.contains(a.as_str()), "{a} on Resource \"*\"");
            }
        }
    }
    // And the list holds nothing these runs do not need, but for the paths they did not
    // take (large or unchanged files, the prune, the older-snapshot cleanup).
    let not_taken = [
        "s3:CopyObject",
        "s3:CreateMultipartUpload",
        "s3:UploadPart",
        "s3:CompleteMultipartUpload",
        "s3:AbortMultipartUpload",
        "s3:DeleteObjects",
        "elbv2:DescribeRules",
        "rds:ListTagsForResource",
    ];
    for o in &ops {
        assert!(
            served.contains_key(o.api) || not_taken.contains(&o.api),
            "{} is listed for this plan but no run called it: {served:?}",
            o.api
        );
    }
}

#[test]
fn the_evaluator_refuses_what_it_should() {
    let s = json!({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/p/*",
                   "Condition": {"StringLike": {"s3:prefix": ["p/*"]}}});
    let ok = |resource: &str, prefix: Option<&str>| {
        allows(
            &s,
            &Request {
                action: "s3:GetObject",
                resource: resource.into(),
                context: prefix
                    .map(|p| ("s3:prefix", p.to_string()))
                    .into_iter()
                    .collect(),
            },
        )
    };
    assert!(ok("arn:aws:s3:::b/p/x/y", Some("p/x")));
    assert!(!ok("arn:aws:s3:::b/q/x", Some("p/x")));
    assert!(!ok("arn:aws:s3:::b/p/x", Some("q/")));
    assert!(!ok("arn:aws:s3:::b/p/x", None));
    assert!(!glob("s3:getobject", "s3:putobject"));
    assert!(glob(
        "arn:*:listener/app/shop/*",
        "arn:aws:listener/app/shop/1/2"
    ));
}

/// Without the account's answer the roles and log group stay wildcards, and stderr says
/// why and how to scope them.
#[test]
fn unknown_roles_and_log_group_stay_wildcards_and_stderr_says_so() {
    // Nothing listens there: the task definitions cannot be read.
    let out = glidepath(
        "http://127.0.0.1:9",
        &[
            "iam-policy",
            "examples/rehearsal.toml",
            "--account",
            ACCOUNT,
        ],
    )
    .output()
    .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let policy: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        strings(&statement_for(&policy, "iam:PassRole")["Resource"]),
        [format!("arn:aws:iam::{ACCOUNT}:role/*")]
    );
    assert_eq!(
        strings(&statement_for(&policy, "logs:GetLogEvents")["Resource"]),
        [format!(
            "arn:aws:logs:us-east-1:{ACCOUNT}:log-group:*:log-stream:*"
        )]
    );
    assert!(
        stderr.contains("iam:PassRole on role: any (could not read the task definitions of shop-blue / shop-green")
            && stderr.contains("logs:GetLogEvents on log group: any"),
        "{stderr}"
    );
}
