//! Every AWS operation the adapters of this crate call for a release (with its resume and
//! finalize), a rollback, `watch` and `assets publish`, and the IAM actions each needs on
//! which resource. It sits next to the adapters so a new SDK call and its permission are
//! added in one change; `glidepath iam-policy` builds its policy from [`OPERATIONS`] only.
//!
//! `api` is the operation as the request names it on the wire (`service:Operation`, S3
//! operations by their REST name), which is also how the rehearsal stage counts requests.

use crate::plan::{DatabaseKind, Plan};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What an operation's IAM action is scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// The action has no resource-level permissions: Resource must be "*".
    Anything,
    /// Both colours' ECS services.
    Services,
    /// Task definitions (any family: which one the services run is only known in AWS),
    /// limited to the plan's cluster by a condition.
    TaskDefinitionsInCluster,
    /// Tasks of the plan's cluster.
    Tasks,
    /// The traffic listener (and the test listener when the plan has one).
    Listeners,
    /// The plan's listener rule.
    Rule,
    /// The plan's DB instance or Aurora cluster.
    Database,
    /// The snapshots glidepath takes of it (`<db>-<release>`).
    Snapshots,
    /// The ledger, lock and index objects under the state prefix.
    StateObjects,
    /// The state bucket, listing limited to the state prefix.
    StateBucket,
    /// Asset objects under the assets prefix.
    AssetObjects,
    /// The assets bucket, listing limited to the assets prefix.
    AssetBucket,
    /// The plan's CloudWatch alarms.
    Alarms,
    /// The migration task's log streams (its log group is named in the task definition).
    LogStreams,
    /// Task and execution roles handed to ECS, only to ECS tasks (a condition).
    RolesForEcsTasks,
}

/// When a plan needs an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    Always,
    InstanceDb,
    ClusterDb,
    /// `traffic.rule_arn` set: the rule's weights are stepped.
    WithRule,
    /// No rule: the listener's default action is stepped.
    WithoutRule,
    Migration,
    Assets,
    WithAlarms,
    /// `database.keep_snapshots`: finalize deletes older snapshots.
    KeepSnapshots,
}

/// One SDK call and one IAM action it needs (a call needing several appears once per action).
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub api: &'static str,
    pub action: &'static str,
    pub on: On,
    pub needed: Needed,
}

const fn op(api: &'static str, action: &'static str, on: On, needed: Needed) -> Operation {
    Operation {
        api,
        action,
        on,
        needed,
    }
}

use Needed::*;
use On::*;

/// The list: release (lock, snapshot, migration, assets, deploy, shift, finalize with its
/// prunes), resume, rollback, watch, assets publish.
#[rustfmt::skip]
pub const OPERATIONS: &[Operation] = &[
    // Resolving the plan's names; every ELBv2 Describe* is account-wide in IAM.
    op("elbv2:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroups", Anything, Always),
    op("elbv2:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancers", Anything, Always),
    op("elbv2:DescribeListeners", "elasticloadbalancing:DescribeListeners", Anything, Always),
    op("elbv2:DescribeRules", "elasticloadbalancing:DescribeRules", Anything, Always),
    op("elbv2:DescribeTargetHealth", "elasticloadbalancing:DescribeTargetHealth", Anything, Always),
    op("elbv2:ModifyListener", "elasticloadbalancing:ModifyListener", Listeners, WithoutRule),
    op("elbv2:ModifyRule", "elasticloadbalancing:ModifyRule", Rule, WithRule),
    // The fleet: services, task definitions, the migration task and its logs.
    op("ecs:DescribeServices", "ecs:DescribeServices", Services, Always),
    op("ecs:UpdateService", "ecs:UpdateService", Services, Always),
    op("ecs:DescribeTaskDefinition", "ecs:DescribeTaskDefinition", Anything, Always),
    op("ecs:RegisterTaskDefinition", "ecs:RegisterTaskDefinition", Anything, Always),
    op("ecs:RegisterTaskDefinition", "iam:PassRole", RolesForEcsTasks, Always),
    op("ecs:ListTasks", "ecs:ListTasks", Anything, Migration),
    op("ecs:DescribeTasks", "ecs:DescribeTasks", Tasks, Migration),
    op("ecs:RunTask", "ecs:RunTask", TaskDefinitionsInCluster, Migration),
    op("ecs:RunTask", "iam:PassRole", RolesForEcsTasks, Migration),
    op("logs:GetLogEvents", "logs:GetLogEvents", LogStreams, Migration),
    // The database snapshot (tagged at creation, so tagging is allowed on it too).
    op("rds:DescribeDBSnapshots", "rds:DescribeDBSnapshots", Database, InstanceDb),
    op("rds:DescribeDBSnapshots", "rds:DescribeDBSnapshots", Snapshots, InstanceDb),
    op("rds:CreateDBSnapshot", "rds:CreateDBSnapshot", Database, InstanceDb),
    op("rds:CreateDBSnapshot", "rds:CreateDBSnapshot", Snapshots, InstanceDb),
    op("rds:CreateDBSnapshot", "rds:AddTagsToResource", Snapshots, InstanceDb),
    op("rds:DeleteDBSnapshot", "rds:DeleteDBSnapshot", Snapshots, KeepSnapshots),
    op("rds:DescribeDBClusterSnapshots", "rds:DescribeDBClusterSnapshots", Database, ClusterDb),
    op("rds:DescribeDBClusterSnapshots", "rds:DescribeDBClusterSnapshots", Snapshots, ClusterDb),
    op("rds:CreateDBClusterSnapshot", "rds:CreateDBClusterSnapshot", Database, ClusterDb),
    op("rds:CreateDBClusterSnapshot", "rds:CreateDBClusterSnapshot", Snapshots, ClusterDb),
    op("rds:CreateDBClusterSnapshot", "rds:AddTagsToResource", Snapshots, ClusterDb),
    op("rds:DeleteDBClusterSnapshot", "rds:DeleteDBClusterSnapshot", Snapshots, KeepSnapshots),
    op("rds:ListTagsForResource", "rds:ListTagsForResource", Snapshots, Always),
    // Health gates.
    op("cloudwatch:GetMetricData", "cloudwatch:GetMetricData", Anything, Always),
    op("cloudwatch:DescribeAlarms", "cloudwatch:DescribeAlarms", Alarms, WithAlarms),
    // The lock, the ledger, the index and the operations log.
    op("s3:GetObject", "s3:GetObject", StateObjects, Always),
    op("s3:PutObject", "s3:PutObject", StateObjects, Always),
    op("s3:DeleteObject", "s3:DeleteObject", StateObjects, Always),
    op("s3:ListObjectsV2", "s3:ListBucket", StateBucket, Always),
    // Static assets: publish (HEAD before PUT, multipart for large files, copies for
    // unchanged hashed files) and the prune at finalize.
    op("s3:HeadObject", "s3:GetObject", AssetObjects, Assets),
    op("s3:GetObject", "s3:GetObject", AssetObjects, Assets),
    op("s3:PutObject", "s3:PutObject", AssetObjects, Assets),
    op("s3:CopyObject", "s3:GetObject", AssetObjects, Assets),
    op("s3:CopyObject", "s3:PutObject", AssetObjects, Assets),
    op("s3:CreateMultipartUpload", "s3:PutObject", AssetObjects, Assets),
    op("s3:UploadPart", "s3:PutObject", AssetObjects, Assets),
    op("s3:CompleteMultipartUpload", "s3:PutObject", AssetObjects, Assets),
    op("s3:AbortMultipartUpload", "s3:AbortMultipartUpload", AssetObjects, Assets),
    op("s3:DeleteObject", "s3:DeleteObject", AssetObjects, Assets),
    op("s3:DeleteObjects", "s3:DeleteObject", AssetObjects, Assets),
    op("s3:ListObjectsV2", "s3:ListBucket", AssetBucket, Assets),
];

/// Calls that need no IAM permission at all (the account id for display).
pub const UNPERMISSIONED: &[&str] = &["sts:GetCallerIdentity"];

impl Needed {
    fn applies(self, plan: &Plan) -> bool {
        match self {
            Always => true,
            InstanceDb => plan.database.kind == DatabaseKind::Instance,
            ClusterDb => plan.database.kind == DatabaseKind::Cluster,
            WithRule => plan.traffic.rule_arn.is_some(),
            WithoutRule => plan.traffic.rule_arn.is_none(),
            Migration => plan.migration.is_some(),
            Assets => plan.assets.is_some(),
            WithAlarms => !plan.gates.alarms.is_empty(),
            KeepSnapshots => plan.database.keep_snapshots.is_some(),
        }
    }
}

/// The operations `plan` uses.
pub fn operations_for(plan: &Plan) -> Vec<Operation> {
    OPERATIONS
        .iter()
        .copied()
        .filter(|o| o.needed.applies(plan))
        .filter(|o| !(o.needed == KeepSnapshots && o.api.contains("Cluster") != is_cluster(plan)))
        .collect()
}

fn is_cluster(plan: &Plan) -> bool {
    plan.database.kind == DatabaseKind::Cluster
}

/// AWS partition of a region (`aws`, `aws-cn`, `aws-us-gov`).
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// What only the account knows, read from the task definitions the plan's services run:
/// the roles they hand to ECS and the migration container's awslogs group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFacts {
    /// Task and execution role ARNs (sorted, no duplicates); empty: unknown.
    pub roles: Vec<String>,
    /// The migration container's awslogs groups (sorted, no duplicates); empty: unknown.
    pub log_groups: Vec<String>,
}

/// Read [`TaskFacts`] from both colours' services (a colour that does not exist yet is
/// skipped). Read-only: DescribeServices and DescribeTaskDefinition.
pub async fn read_task_facts(
    config: &aws_types::SdkConfig,
    plan: &Plan,
) -> Result<TaskFacts, String> {
    let ecs = aws_sdk_ecs::Client::new(config);
    // AWS's code and status in our words, never the request.
    fn why<E>(e: SdkError<E, HttpResponse>) -> String
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        match crate::errors::judge(&e, Some("the services' task definitions")) {
            crate::errors::Fail::Precondition => "precondition failed".to_string(),
            crate::errors::Fail::NotFound(m)
            | crate::errors::Fail::Transient(m)
            | crate::errors::Fail::Fatal(m) => m,
        }
    }
    let services = ecs
        .describe_services()
        .cluster(&plan.cluster)
        .services(&plan.blue.service)
        .services(&plan.green.service)
        .send()
        .await
        .map_err(why)?;
    let mut task_definitions: Vec<String> = services
        .services()
        .iter()
        .filter(|s| s.status() != Some("INACTIVE"))
        .filter_map(|s| s.task_definition().map(str::to_string))
        .collect();
    task_definitions.sort();
    task_definitions.dedup();
    let container = plan
        .migration
        .as_ref()
        .map_or(plan.deploy.container.as_str(), |m| m.container.as_str());
    let mut facts = TaskFacts::default();
    for td in task_definitions {
        let out = ecs
            .describe_task_definition()
            .task_definition(&td)
            .send()
            .await
            .map_err(why)?;
        let Some(def) = out.task_definition() else {
            continue;
        };
        facts.roles.extend(
            [def.task_role_arn(), def.execution_role_arn()]
                .into_iter()
                .flatten()
                .map(str::to_string),
        );
        facts.log_groups.extend(
            def.container_definitions()
                .iter()
                .filter(|c| c.name() == Some(container))
                .filter_map(|c| c.log_configuration())
                .filter(|l| l.log_driver().as_str() == "awslogs")
                .filter_map(|l| l.options()?.get("awslogs-group").cloned()),
        );
    }
    for v in [&mut facts.roles, &mut facts.log_groups] {
        v.sort();
        v.dedup();
    }
    Ok(facts)
}

/// A target of the policy: where resources live.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub plan: &'a Plan,
    /// The account id; None: `*` (any account) in every ARN.
    pub account: Option<String>,
    /// Roles and log groups from the account; what is unknown stays a wildcard.
    pub facts: TaskFacts,
}

impl Scope<'_> {
    fn arn(&self, service: &str, rest: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{rest}",
            partition(&self.plan.region),
            self.plan.region,
            self.account.as_deref().unwrap_or("*")
        )
    }

    fn s3(&self, rest: &str) -> String {
        format!("arn:{}:s3:::{rest}", partition(&self.plan.region))
    }

    /// ARN patterns for a listener given as an ARN or `<load-balancer>:<port>` (the port is
    /// not part of the ARN, so every listener of that load balancer).
    fn listener(&self, spec: &str) -> String {
        if spec.starts_with("arn:") {
            return spec.to_string();
        }
        let lb = spec.rsplit_once(':').map_or(spec, |(lb, _)| lb);
        self.arn("elasticloadbalancing", &format!("listener/app/{lb}/*"))
    }

    fn resources(&self, on: On) -> Vec<String> {
        let p = self.plan;
        match on {
            Anything => vec!["*".into()],
            Services => [&p.blue.service, &p.green.service]
                .iter()
                .map(|s| self.arn("ecs", &format!("service/{}/{s}", p.cluster)))
                .collect(),
            TaskDefinitionsInCluster => vec![self.arn("ecs", "task-definition/*")],
            Tasks => vec![self.arn("ecs", &format!("task/{}/*", p.cluster))],
            Listeners => {
                let mut v = vec![self.listener(&p.traffic.listener)];
                v.extend(p.traffic.test_listener.iter().map(|t| self.listener(t)));
                v.dedup();
                v
            }
            Rule => p.traffic.rule_arn.iter().cloned().collect(),
            Database => {
                let kind = if is_cluster(p) { "cluster" } else { "db" };
                vec![self.arn("rds", &format!("{kind}:{}", p.database.id))]
            }
            Snapshots => {
                let kind = if is_cluster(p) {
                    "cluster-snapshot"
                } else {
                    "snapshot"
                };
                vec![self.arn(
                    "rds",
                    &format!("{kind}:{}*", snapshot_prefix(&p.database.id)),
                )]
            }
            StateObjects => vec![self.s3(&format!(
                "{}/{}*",
                p.state.bucket,
                with_slash(&p.state.prefix)
            ))],
            StateBucket => vec![self.s3(&p.state.bucket)],
            AssetObjects => p
                .assets
                .iter()
                .map(|a| self.s3(&format!("{}/{}*", a.bucket, with_slash(&a.prefix))))
                .collect(),
            AssetBucket => p.assets.iter().map(|a| self.s3(&a.bucket)).collect(),
            Alarms => p
                .gates
                .alarms
                .iter()
                .map(|a| self.arn("cloudwatch", &format!("alarm:{a}")))
                .collect(),
            LogStreams if !self.facts.log_groups.is_empty() => self
                .facts
                .log_groups
                .iter()
                .map(|g| self.arn("logs", &format!("log-group:{g}:log-stream:*")))
                .collect(),
            LogStreams => vec![self.arn("logs", "log-group:*:log-stream:*")],
            RolesForEcsTasks if !self.facts.roles.is_empty() => self.facts.roles.clone(),
            RolesForEcsTasks => vec![format!(
                "arn:{}:iam::{}:role/*",
                partition(&p.region),
                self.account.as_deref().unwrap_or("*")
            )],
        }
    }

    fn condition(&self, on: On) -> Option<Value> {
        let p = self.plan;
        match on {
            TaskDefinitionsInCluster => Some(json!({
                "ArnEquals": {"ecs:cluster": self.arn("ecs", &format!("cluster/{}", p.cluster))}
            })),
            RolesForEcsTasks => Some(json!({
                "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
            })),
            StateBucket => Some(json!({
                "StringLike": {"s3:prefix": [format!("{}*", with_slash(&p.state.prefix))]}
            })),
            AssetBucket => p.assets.as_ref().map(
                |a| json!({"StringLike": {"s3:prefix": [format!("{}*", with_slash(&a.prefix))]}}),
            ),
            _ => None,
        }
    }
}

/// `prefix/` (or "" for an empty prefix), so `prefix/*` cannot match `prefix-other/…`.
fn with_slash(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

/// What every snapshot id of this database starts with (see `engine::ids::snapshot_id`).
fn snapshot_prefix(db: &str) -> String {
    let id = crate::engine::ids::snapshot_id(db, "x");
    format!("{}-", id.strip_suffix("-x").unwrap_or(&id))
}

/// The policy document for `scope`: one statement per (resources, condition), actions
/// sorted, so the output is stable and diffable.
pub fn policy(scope: &Scope<'_>) -> Value {
    let mut groups: BTreeMap<(Vec<String>, String), Vec<&'static str>> = BTreeMap::new();
    for o in operations_for(scope.plan) {
        let resources = scope.resources(o.on);
        if resources.is_empty() {
            continue;
        }
        let cond = scope
            .condition(o.on)
            .map(|c| c.to_string())
            .unwrap_or_default();
        let actions = groups.entry((resources, cond)).or_default();
        if !actions.contains(&o.action) {
            actions.push(o.action);
        }
    }
    let statements: Vec<Value> = groups
        .into_iter()
        .enumerate()
        .map(|(i, ((resources, cond), mut actions))| {
            actions.sort_unstable();
            let mut s = json!({
                "Sid": format!("Glidepath{}", i + 1),
                "Effect": "Allow",
                "Action": actions,
                "Resource": if resources.len() == 1 { json!(resources[0]) } else { json!(resources) },
            });
            if !cond.is_empty() {
                s["Condition"] = serde_json::from_str(&cond).unwrap_or(Value::Null);
            }
            s
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The IAM actions of `plan`'s operations that have no resource-level permissions.
pub fn account_wide_actions(plan: &Plan) -> Vec<&'static str> {
    let mut v: Vec<_> = operations_for(plan)
        .into_iter()
        .filter(|o| o.on == Anything)
        .map(|o| o.action)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_prefix_follows_the_snapshot_ids() {
        assert_eq!(snapshot_prefix("shop-db"), "shop-db-");
        assert_eq!(snapshot_prefix("Shop_DB"), "shop-db-");
        assert_eq!(snapshot_prefix("9db"), "gp-9db-");
        let id = crate::engine::ids::snapshot_id("Shop_DB", "1.4.0-20261103T021500Z");
        assert!(id.starts_with(&snapshot_prefix("Shop_DB")), "{id}");
    }

    #[test]
    fn prefixes_end_with_one_slash() {
        assert_eq!(with_slash("glidepath/shop/"), "glidepath/shop/");
        assert_eq!(with_slash("static"), "static/");
        assert_eq!(with_slash(""), "");
    }

    #[test]
    fn partitions() {
        assert_eq!(partition("us-east-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    }
}
