//! What a release of a plan expects to find at an endpoint glidepath did not build itself
//! (`glidepath rehearse --endpoint URL --no-stage`): the cluster, both services, both target
//! groups, the listener forwarding to them, the database and the buckets. Only Describe/Head
//! calls; every missing thing is listed (not just the first), each with how to create it.

use super::adopt::active_service;
use super::client;
use super::errors::{classify, AwsError};
use super::resolve;
use super::traffic::ElbTraffic;
use crate::engine::ports::PortError;
use crate::plan::{DatabaseKind, Plan};
use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_types::SdkConfig;

/// One thing the plan needs that the endpoint does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What is missing, e.g. `ECS cluster "shop"`.
    pub what: String,
    /// How to create it by hand (an `aws` command or what to change).
    pub create: String,
}

impl Missing {
    fn new(what: impl Into<String>, create: impl Into<String>) -> Missing {
        Missing {
            what: what.into(),
            create: create.into(),
        }
    }
}

/// Everything `plan` needs that `config`'s endpoint lacks (empty: all there). Errors only
/// when the endpoint cannot be asked (unreachable, refused, throttled), not for what is missing.
pub async fn missing(config: &SdkConfig, plan: &Plan) -> Result<Vec<Missing>, AwsError> {
    let config = client::control_plane(config);
    let ecs = aws_sdk_ecs::Client::new(&config);
    let elb = elbv2::Client::new(&config);
    let mut out = Vec::new();

    let cluster = cluster_exists(&ecs, &plan.cluster).await?;
    if !cluster {
        out.push(Missing::new(
            format!("ECS cluster {:?}", plan.cluster),
            format!("aws ecs create-cluster --cluster-name {}", plan.cluster),
        ));
    }
    let blue_tg = target_group(&elb, plan, "blue", &plan.blue.target_group, &mut out).await?;
    let green_tg = target_group(&elb, plan, "green", &plan.green.target_group, &mut out).await?;
    listener(
        &elb,
        plan,
        blue_tg.as_deref(),
        green_tg.as_deref(),
        &mut out,
    )
    .await?;

    let colours = [
        ("blue", &plan.blue.service, &plan.blue.target_group),
        ("green", &plan.green.service, &plan.green.target_group),
    ];
    for (colour, service, tg) in colours {
        if !cluster
            || active_service(&ecs, &plan.cluster, service)
                .await?
                .is_none()
        {
            out.push(Missing::new(
                format!("{colour} ECS service {service:?} in cluster {:?}", plan.cluster),
                format!(
                    "aws ecs create-service --cluster {} --service-name {service} \
                     --launch-type FARGATE --task-definition <family> --desired-count 1 \
                     --network-configuration <awsvpc subnets and security groups> \
                     --load-balancers targetGroupArn=<{tg} ARN>,containerName={},containerPort=<port>",
                    plan.cluster, plan.deploy.container
                ),
            ));
        }
    }
    for c in &plan.companions {
        if !cluster
            || active_service(&ecs, &plan.cluster, &c.service)
                .await?
                .is_none()
        {
            out.push(Missing::new(
                format!(
                    "companion ECS service {:?} in cluster {:?}",
                    c.service, plan.cluster
                ),
                format!(
                    "aws ecs create-service --cluster {} --service-name {} --task-definition <family> ...",
                    plan.cluster, c.service
                ),
            ));
        }
    }

    database(&config, plan, &mut out).await?;

    let s3 = client::s3(&config);
    let mut buckets = vec![("state", plan.state.bucket.as_str())];
    if let Some(a) = &plan.assets {
        buckets.push(("assets", a.bucket.as_str()));
    }
    for (role, bucket) in buckets {
        let what = format!("bucket {bucket}");
        match s3.head_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e) => match classify("s3:HeadBucket", &what, e) {
                PortError::NotFound { .. } => out.push(Missing::new(
                    format!("S3 bucket {bucket:?} ([{role}].bucket)"),
                    format!("aws s3 mb s3://{bucket}"),
                )),
                other => return Err(other.into()),
            },
        }
    }
    Ok(out)
}

async fn cluster_exists(ecs: &aws_sdk_ecs::Client, cluster: &str) -> Result<bool, AwsError> {
    let what = format!("cluster {cluster}");
    match ecs.describe_clusters().clusters(cluster).send().await {
        // ECS lists a missing cluster under `failures` (reason MISSING), a deleted one as INACTIVE.
        Ok(o) => Ok(o.clusters().iter().any(|c| c.status() == Some("ACTIVE"))),
        Err(e) => match classify("ecs:DescribeClusters", &what, e) {
            PortError::NotFound { .. } => Ok(false),
            other => Err(other.into()),
        },
    }
}

/// The target group's ARN, or None (and a [`Missing`]) when it is not there.
async fn target_group(
    elb: &elbv2::Client,
    plan: &Plan,
    colour: &'static str,
    spec: &str,
    out: &mut Vec<Missing>,
) -> Result<Option<String>, AwsError> {
    match resolve::target_group(elb, colour, spec, &plan.region).await {
        Ok(arn) => Ok(Some(arn)),
        Err(AwsError::TargetGroupNotFound { .. }) => {
            out.push(Missing::new(
                format!("{colour} target group {spec:?} ([{colour}].target_group)"),
                format!(
                    "aws elbv2 create-target-group --name {spec} --target-type ip \
                     --protocol HTTP --port <container port> --vpc-id <vpc>"
                ),
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The listener (and rule) and whether its forward action names both target groups.
async fn listener(
    elb: &elbv2::Client,
    plan: &Plan,
    blue_tg: Option<&str>,
    green_tg: Option<&str>,
    out: &mut Vec<Missing>,
) -> Result<(), AwsError> {
    let spec = &plan.traffic.listener;
    let (blue, green) = (&plan.blue.target_group, &plan.green.target_group);
    let forward = format!(
        "--default-actions 'Type=forward,ForwardConfig={{TargetGroups=[{{TargetGroupArn=<{blue} ARN>,Weight=100}},{{TargetGroupArn=<{green} ARN>,Weight=0}}]}}'"
    );
    let listener_arn = match resolve::listener(elb, "traffic.listener", spec, &plan.region).await {
        Ok((arn, _lb)) => arn,
        Err(AwsError::LoadBalancerNotFound { load_balancer, .. }) => {
            out.push(Missing::new(
                    format!("load balancer {load_balancer:?} (traffic.listener = {spec:?})"),
                    format!(
                        "aws elbv2 create-load-balancer --name {load_balancer} --subnets <two subnets> \
                         --security-groups <sg>, then its listener: aws elbv2 create-listener \
                         --load-balancer-arn <its ARN> --protocol HTTP --port <port> {forward}"
                    ),
                ));
            return Ok(());
        }
        Err(AwsError::ListenerPortNotFound {
            load_balancer,
            port,
            ..
        }) => {
            out.push(Missing::new(
                format!(
                    "listener on port {port} of load balancer {load_balancer:?} (traffic.listener)"
                ),
                format!(
                    "aws elbv2 create-listener --load-balancer-arn <{load_balancer} ARN> \
                         --protocol HTTP --port {port} {forward}"
                ),
            ));
            return Ok(());
        }
        Err(AwsError::ListenerNotFound { .. }) => {
            out.push(Missing::new(
                format!("listener {spec:?} (traffic.listener)"),
                format!(
                    "aws elbv2 create-listener ... {forward}, and put its ARN in traffic.listener"
                ),
            ));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let rule_arn = match &plan.traffic.rule_arn {
        Some(rule) => match resolve::rule_on_listener(elb, rule, &listener_arn).await {
            Ok(arn) => Some(arn),
            Err(e @ (AwsError::RuleNotFound { .. } | AwsError::RuleOnOtherListener { .. })) => {
                out.push(Missing::new(
                    format!("listener rule {rule:?} (traffic.rule_arn)"),
                    format!("{e}"),
                ));
                return Ok(());
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    // Which way it forwards only matters once both target groups exist.
    let (Some(b), Some(g)) = (blue_tg, green_tg) else {
        return Ok(());
    };
    let traffic = ElbTraffic::new(elb.clone(), &listener_arn, rule_arn.as_deref(), b, g);
    let what = match &rule_arn {
        Some(rule) => format!("listener rule {rule}"),
        None => format!("listener {spec:?}"),
    };
    let lacking: Vec<&str> = match traffic.forwards().await {
        Ok(groups) => [(b, blue.as_str()), (g, green.as_str())]
            .into_iter()
            .filter(|(arn, _)| !groups.iter().any(|(a, _)| a == arn))
            .map(|(_, name)| name)
            .collect(),
        // No forward action at all (a fixed response, a redirect).
        Err(PortError::Fatal { .. }) => vec![blue.as_str(), green.as_str()],
        Err(e) => return Err(e.into()),
    };
    if !lacking.is_empty() {
        let modify = match &rule_arn {
            Some(rule) => format!(
                "aws elbv2 modify-rule --rule-arn {rule} {}",
                forward.replace("--default-actions", "--actions")
            ),
            None => format!("aws elbv2 modify-listener --listener-arn {listener_arn} {forward}"),
        };
        out.push(Missing::new(
            format!(
                "{what} forwarding to {} (its forward action must name both target groups)",
                lacking.join(" and ")
            ),
            modify,
        ));
    }
    Ok(())
}

async fn database(config: &SdkConfig, plan: &Plan, out: &mut Vec<Missing>) -> Result<(), AwsError> {
    let rds = aws_sdk_rds::Client::new(config);
    let id = &plan.database.id;
    let found = match plan.database.kind {
        DatabaseKind::Instance => rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map(|o| !o.db_instances().is_empty())
            .map_err(|e| classify("rds:DescribeDBInstances", &format!("DB instance {id}"), e)),
        DatabaseKind::Cluster => rds
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
            .map(|o| !o.db_clusters().is_empty())
            .map_err(|e| classify("rds:DescribeDBClusters", &format!("DB cluster {id}"), e)),
    };
    let found = match found {
        Ok(f) => f,
        Err(PortError::NotFound { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if !found {
        out.push(match plan.database.kind {
            DatabaseKind::Instance => Missing::new(
                format!("RDS DB instance {id:?} ([database].instance)"),
                format!(
                    "aws rds create-db-instance --db-instance-identifier {id} --engine postgres \
                     --db-instance-class db.t3.micro --allocated-storage 20 \
                     --master-username <user> --master-user-password <password>"
                ),
            ),
            DatabaseKind::Cluster => Missing::new(
                format!("Aurora DB cluster {id:?} ([database].cluster)"),
                format!(
                    "aws rds create-db-cluster --db-cluster-identifier {id} --engine aurora-postgresql \
                     --master-username <user> --master-user-password <password>"
                ),
            ),
        });
    }
    Ok(())
}
