//! `glidepath init`: read an existing ECS service behind an ALB (its task definition,
//! target group, listener or rule, network, a database it can find) so a plan can be
//! written for it, and create its blue/green twin (service and target group) on request.
//! Reads are Describe* calls; [`create_twin`] is the only writer and reads its work back.

use super::errors::{classify, AwsError};
use super::seed::COLOUR_TAG;
use crate::engine::ports::PortError;
use aws_sdk_ecs as ecs;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_types::SdkConfig;
use serde::Serialize;

/// What `init` found about one service.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub cluster: String,
    pub service: String,
    pub task_definition: String,
    pub desired: i32,
    /// The container the load balancer sends traffic to, its port and image.
    pub container: String,
    pub container_port: Option<i32>,
    pub image: Option<String>,
    pub target_group_arn: String,
    pub target_group_name: String,
    pub load_balancer_name: Option<String>,
    /// The listener forwarding to the target group (ARN, port), if one does by default.
    pub listener: Option<(String, i32)>,
    /// A listener rule forwarding to it, when no listener does by default.
    pub rule_arn: Option<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    /// The database (instance id), and how it was found.
    pub database: Option<(String, String)>,
    pub twin: Twin,
}

/// The green twin's names and whether each exists already.
#[derive(Debug, Clone, Serialize)]
pub struct Twin {
    pub service: String,
    pub service_exists: bool,
    pub target_group: String,
    pub target_group_exists: bool,
}

/// `shop-blue` → `shop-green`; anything else gets `-green` appended.
pub fn twin_name(name: &str) -> String {
    match name.strip_suffix("-blue") {
        Some(base) => format!("{base}-green"),
        None => format!("{name}-green"),
    }
}

fn not_found(operation: &str, resource: String) -> AwsError {
    AwsError::Call(PortError::NotFound {
        operation: operation.into(),
        resource,
    })
}

/// `service` in `cluster` as ECS describes it, or `None` when it is missing or INACTIVE (a
/// deleted service stays listed as INACTIVE for a while).
pub(crate) async fn active_service(
    ecs: &ecs::Client,
    cluster: &str,
    service: &str,
) -> Result<Option<ecs::types::Service>, PortError> {
    let what = format!("service {service} in cluster {cluster}");
    let out = ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| classify("ecs:DescribeServices", &what, e))?;
    Ok(out
        .services()
        .iter()
        .find(|s| s.status() != Some("INACTIVE"))
        .cloned())
}

/// Read `service` in `cluster`; `listener` (an ARN) picks the listener when given.
pub async fn discover(
    config: &SdkConfig,
    cluster: &str,
    service: &str,
    listener: Option<&str>,
) -> Result<Found, AwsError> {
    let config = super::client::control_plane(config);
    let ecs = ecs::Client::new(&config);
    let elb = elbv2::Client::new(&config);
    let what = format!("service {service} in cluster {cluster}");
    let s = active_service(&ecs, cluster, service)
        .await?
        .ok_or_else(|| not_found("ecs:DescribeServices", what.clone()))?;
    let lb = s.load_balancers().iter().find(|l| l.target_group_arn().is_some()).ok_or_else(|| {
        AwsError::Call(PortError::Fatal {
            operation: "ecs:DescribeServices".into(),
            message: format!("{what} is not behind a load balancer target group; glidepath shifts ALB traffic between two target groups"),
        })
    })?;
    let tg_arn = lb.target_group_arn().unwrap_or_default().to_string();
    let task_definition = s.task_definition().unwrap_or_default().to_string();
    let net = s
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration());
    let td = ecs
        .describe_task_definition()
        .task_definition(&task_definition)
        .send()
        .await
        .map_err(|e| classify("ecs:DescribeTaskDefinition", &task_definition, e))?;
    let containers = td
        .task_definition()
        .map(|t| t.container_definitions().to_vec())
        .unwrap_or_default();
    let container = lb
        .container_name()
        .map(str::to_string)
        .or_else(|| {
            containers
                .first()
                .and_then(|c| c.name().map(str::to_string))
        })
        .unwrap_or_default();
    let def = containers
        .iter()
        .find(|c| c.name() == Some(container.as_str()));
    let image = def.and_then(|c| c.image().map(str::to_string));
    let env: Vec<String> = def
        .map(|c| {
            c.environment()
                .iter()
                .filter_map(|kv| kv.value().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();

    let tgs = elb
        .describe_target_groups()
        .target_group_arns(&tg_arn)
        .send()
        .await
        .map_err(|e| classify("elbv2:DescribeTargetGroups", &tg_arn, e))?;
    let tg = tgs
        .target_groups()
        .first()
        .ok_or_else(|| not_found("elbv2:DescribeTargetGroups", tg_arn.clone()))?;
    let tg_name = tg.target_group_name().unwrap_or_default().to_string();
    let lb_arn = tg.load_balancer_arns().first().cloned();
    let load_balancer_name = match &lb_arn {
        Some(arn) => elb
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await
            .map_err(|e| classify("elbv2:DescribeLoadBalancers", arn, e))?
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_name().map(str::to_string)),
        None => None,
    };
    let (listener, rule_arn) = match (listener, &lb_arn) {
        (Some(arn), _) => {
            let out = elb
                .describe_listeners()
                .listener_arns(arn)
                .send()
                .await
                .map_err(|e| classify("elbv2:DescribeListeners", arn, e))?;
            let l = out
                .listeners()
                .first()
                .ok_or_else(|| not_found("elbv2:DescribeListeners", arn.to_string()))?;
            (Some((arn.to_string(), l.port().unwrap_or_default())), None)
        }
        (None, Some(lb)) => find_listener(&elb, lb, &tg_arn).await?,
        (None, None) => (None, None),
    };
    let database = find_database(&config, &env).await?;
    let twin_service = twin_name(service);
    let twin_tg = twin_name(&tg_name);
    let twin_service_exists = ecs
        .describe_services()
        .cluster(cluster)
        .services(&twin_service)
        .send()
        .await
        .map_err(|e| classify("ecs:DescribeServices", &twin_service, e))?
        .services()
        .iter()
        .any(|s| s.status() != Some("INACTIVE"));
    let twin_tg_exists = match elb.describe_target_groups().names(&twin_tg).send().await {
        Ok(out) => !out.target_groups().is_empty(),
        Err(e) => match classify("elbv2:DescribeTargetGroups", &twin_tg, e) {
            PortError::NotFound { .. } => false,
            other => return Err(other.into()),
        },
    };
    Ok(Found {
        cluster: cluster.to_string(),
        service: service.to_string(),
        task_definition,
        desired: s.desired_count(),
        container,
        container_port: lb.container_port(),
        image,
        target_group_arn: tg_arn,
        target_group_name: tg_name,
        load_balancer_name,
        listener,
        rule_arn,
        subnets: net.map(|n| n.subnets().to_vec()).unwrap_or_default(),
        security_groups: net
            .map(|n| n.security_groups().to_vec())
            .unwrap_or_default(),
        assign_public_ip: net
            .and_then(|n| n.assign_public_ip())
            .is_some_and(|a| a.as_str() == "ENABLED"),
        database,
        twin: Twin {
            service: twin_service,
            service_exists: twin_service_exists,
            target_group: twin_tg,
            target_group_exists: twin_tg_exists,
        },
    })
}

/// The listener of `lb` whose default action forwards to `tg`, else a rule that does.
async fn find_listener(
    elb: &elbv2::Client,
    lb: &str,
    tg: &str,
) -> Result<(Option<(String, i32)>, Option<String>), AwsError> {
    let out = elb
        .describe_listeners()
        .load_balancer_arn(lb)
        .send()
        .await
        .map_err(|e| classify("elbv2:DescribeListeners", lb, e))?;
    let forwards_to = |actions: &[elbv2::types::Action]| {
        actions.iter().any(|a| {
            a.target_group_arn() == Some(tg)
                || a.forward_config().is_some_and(|f| {
                    f.target_groups()
                        .iter()
                        .any(|t| t.target_group_arn() == Some(tg))
                })
        })
    };
    for l in out.listeners() {
        if forwards_to(l.default_actions()) {
            let arn = l.listener_arn().unwrap_or_default().to_string();
            return Ok((Some((arn, l.port().unwrap_or_default())), None));
        }
    }
    for l in out.listeners() {
        let Some(arn) = l.listener_arn() else {
            continue;
        };
        let rules = elb
            .describe_rules()
            .listener_arn(arn)
            .send()
            .await
            .map_err(|e| classify("elbv2:DescribeRules", arn, e))?;
        if let Some(r) = rules
            .rules()
            .iter()
            .find(|r| r.is_default() != Some(true) && forwards_to(r.actions()))
        {
            return Ok((
                Some((arn.to_string(), l.port().unwrap_or_default())),
                r.rule_arn().map(str::to_string),
            ));
        }
    }
    Ok((None, None))
}

/// A DB instance whose endpoint the container's environment names; else the region's
/// only DB instance (said so).
async fn find_database(
    config: &SdkConfig,
    env: &[String],
) -> Result<Option<(String, String)>, AwsError> {
    let rds = aws_sdk_rds::Client::new(config);
    let out = match rds.describe_db_instances().send().await {
        Ok(out) => out,
        // No RDS permission or no RDS here: the plan says it could not tell.
        Err(e) => {
            tracing::debug!(error = %aws_sdk_rds::error::DisplayErrorContext(&e), "DescribeDBInstances");
            return Ok(None);
        }
    };
    let dbs = out.db_instances();
    for db in dbs {
        let (Some(id), Some(host)) = (
            db.db_instance_identifier(),
            db.endpoint().and_then(|e| e.address()),
        ) else {
            continue;
        };
        if env.iter().any(|v| v.contains(host)) {
            return Ok(Some((
                id.to_string(),
                "its endpoint is in the container's environment".into(),
            )));
        }
    }
    Ok(match dbs {
        [only] => only.db_instance_identifier().map(|id| {
            (
                id.to_string(),
                "GUESSED: the only DB instance in the region; check it is this app's".into(),
            )
        }),
        _ => None,
    })
}

/// What [`create_twin`] made, read back.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub target_group_arn: String,
    pub service_arn: String,
    pub service_task_definition: String,
}

/// Create the twin target group (like the service's: protocol, port, VPC, target type,
/// health check) and the twin service (same task definition, network and container,
/// zero tasks: the first release deploys it), then read both back.
pub async fn create_twin(config: &SdkConfig, found: &Found) -> Result<Created, AwsError> {
    let config = super::client::control_plane(config);
    let ecs = ecs::Client::new(&config);
    let elb = elbv2::Client::new(&config);
    let src = elb
        .describe_target_groups()
        .target_group_arns(&found.target_group_arn)
        .send()
        .await
        .map_err(|e| classify("elbv2:DescribeTargetGroups", &found.target_group_arn, e))?;
    let tg = src
        .target_groups()
        .first()
        .ok_or_else(|| not_found("elbv2:DescribeTargetGroups", found.target_group_arn.clone()))?;
    let tg_arn = if found.twin.target_group_exists {
        lookup_tg(&elb, &found.twin.target_group).await?
    } else {
        let out = elb
            .create_target_group()
            .name(&found.twin.target_group)
            .set_protocol(tg.protocol().cloned())
            .set_port(tg.port())
            .set_vpc_id(tg.vpc_id().map(str::to_string))
            .set_target_type(tg.target_type().cloned())
            .set_health_check_path(tg.health_check_path().map(str::to_string))
            .set_health_check_protocol(tg.health_check_protocol().cloned())
            .tags(
                elbv2::types::Tag::builder()
                    .key(COLOUR_TAG)
                    .value("green")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("elbv2:CreateTargetGroup", &found.twin.target_group, e))?;
        out.target_groups()
            .first()
            .and_then(|t| t.target_group_arn().map(str::to_string))
            .ok_or_else(|| not_found("elbv2:CreateTargetGroup", found.twin.target_group.clone()))?
    };
    if !found.twin.service_exists {
        let vpc = ecs::types::AwsVpcConfiguration::builder()
            .set_subnets(Some(found.subnets.clone()))
            .set_security_groups(Some(found.security_groups.clone()))
            .assign_public_ip(if found.assign_public_ip {
                ecs::types::AssignPublicIp::Enabled
            } else {
                ecs::types::AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| {
                AwsError::Call(PortError::Fatal {
                    operation: "ecs:CreateService".into(),
                    message: format!("network configuration: {e}"),
                })
            })?;
        ecs.create_service()
            .cluster(&found.cluster)
            .service_name(&found.twin.service)
            .task_definition(&found.task_definition)
            .desired_count(0)
            .launch_type(ecs::types::LaunchType::Fargate)
            .load_balancers(
                ecs::types::LoadBalancer::builder()
                    .target_group_arn(&tg_arn)
                    .container_name(&found.container)
                    .set_container_port(found.container_port)
                    .build(),
            )
            .network_configuration(
                ecs::types::NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("ecs:CreateService", &found.twin.service, e))?;
    }
    // Read back what now exists.
    let what = format!(
        "service {} in cluster {}",
        found.twin.service, found.cluster
    );
    let s = active_service(&ecs, &found.cluster, &found.twin.service)
        .await?
        .ok_or_else(|| not_found("ecs:DescribeServices", what.clone()))?;
    if !s
        .load_balancers()
        .iter()
        .any(|l| l.target_group_arn() == Some(tg_arn.as_str()))
    {
        return Err(AwsError::Call(PortError::Fatal {
            operation: "ecs:DescribeServices".into(),
            message: format!(
                "{what} exists but does not register its tasks in {tg_arn}; fix it or name another twin"
            ),
        }));
    }
    Ok(Created {
        target_group_arn: lookup_tg(&elb, &found.twin.target_group).await?,
        service_arn: s.service_arn().unwrap_or_default().to_string(),
        service_task_definition: s.task_definition().unwrap_or_default().to_string(),
    })
}

async fn lookup_tg(elb: &elbv2::Client, name: &str) -> Result<String, AwsError> {
    let out = elb
        .describe_target_groups()
        .names(name)
        .send()
        .await
        .map_err(|e| classify("elbv2:DescribeTargetGroups", name, e))?;
    out.target_groups()
        .first()
        .and_then(|t| t.target_group_arn().map(str::to_string))
        .ok_or_else(|| not_found("elbv2:DescribeTargetGroups", name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_names() {
        assert_eq!(twin_name("shop-blue"), "shop-green");
        assert_eq!(twin_name("shop"), "shop-green");
    }
}
