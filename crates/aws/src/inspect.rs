//! Read-only look at the account for `glidepath diff`: the colours' services (task
//! definition, image, counts, target groups, network), the stepped forward action and the
//! plan's alarms. Only Describe*/List*/Get* calls: nothing here changes AWS.

use super::client;
use super::errors::AwsError;
use super::fleet::EcsFleet;
use super::health::AwsHealth;
use super::resolve::resolve;
use super::traffic::ElbTraffic;
use super::Resolved;
use crate::engine::ports::{Fleet, PortError, PortResult};
use crate::gate::AlarmState;
use crate::plan::Plan;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_types::SdkConfig;
use serde::Serialize;

/// One colour's ECS service as the account has it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServiceView {
    pub name: String,
    pub task_definition: String,
    /// The image of the plan's deploy container (None: the task definition has no such
    /// container).
    pub image: Option<String>,
    pub desired: i32,
    pub running: i32,
    pub rollout: String,
    /// Target groups the service registers its tasks in.
    pub target_groups: Vec<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

/// What `diff` reads from AWS for a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub resolved: ResolvedView,
    pub blue: ServiceView,
    pub green: ServiceView,
    /// The stepped forward action's (target group ARN, weight).
    pub forwards: Vec<(String, u32)>,
    pub alarms: Vec<AlarmState>,
}

/// The plan's names as ARNs.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedView {
    pub blue_target_group: String,
    pub green_target_group: String,
    pub listener: String,
    pub rule: Option<String>,
}

/// Read everything `diff` shows. Fails (with the plan field to fix) when a name the plan
/// uses does not exist.
pub async fn inspect(config: &SdkConfig, plan: &Plan) -> Result<(Account, Resolved), AwsError> {
    let config = client::control_plane(config);
    let elb = elbv2::Client::new(&config);
    let ecs = aws_sdk_ecs::Client::new(&config);
    let resolved = resolve(&elb, plan).await?;
    let fleet = EcsFleet::new(ecs.clone(), elb.clone(), &plan.cluster);
    let traffic = ElbTraffic::new(
        elb.clone(),
        &resolved.listener_arn,
        resolved.rule_arn.as_deref(),
        &resolved.blue_target_group_arn,
        &resolved.green_target_group_arn,
    );
    let health = AwsHealth::new(&config, &resolved, &plan.gates);
    let (blue, green, forwards, alarms) = tokio::join!(
        service(&ecs, &fleet, plan, &plan.blue.service),
        service(&ecs, &fleet, plan, &plan.green.service),
        traffic.forwards(),
        health.alarm_states(),
    );
    let account = Account {
        resolved: ResolvedView {
            blue_target_group: resolved.blue_target_group_arn.clone(),
            green_target_group: resolved.green_target_group_arn.clone(),
            listener: resolved.listener_arn.clone(),
            rule: resolved.rule_arn.clone(),
        },
        blue: blue?,
        green: green?,
        forwards: forwards?,
        alarms: alarms?,
    };
    Ok((account, resolved))
}

async fn service(
    ecs: &aws_sdk_ecs::Client,
    fleet: &EcsFleet,
    plan: &Plan,
    name: &str,
) -> PortResult<ServiceView> {
    let state = fleet.service(name).await?;
    let what = format!("service {name} in cluster {}", plan.cluster);
    let s = super::adopt::active_service(ecs, &plan.cluster, name)
        .await?
        .ok_or_else(|| PortError::NotFound {
            operation: "ecs:DescribeServices".into(),
            resource: what,
        })?;
    let net = s
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration());
    let image = fleet
        .image_of(&state.task_definition, &plan.deploy.container)
        .await?;
    Ok(ServiceView {
        name: name.to_string(),
        task_definition: state.task_definition,
        image,
        desired: state.desired,
        running: state.running,
        rollout: state.rollout,
        target_groups: s
            .load_balancers()
            .iter()
            .filter_map(|lb| lb.target_group_arn().map(str::to_string))
            .collect(),
        subnets: net.map(|n| n.subnets().to_vec()).unwrap_or_default(),
        security_groups: net
            .map(|n| n.security_groups().to_vec())
            .unwrap_or_default(),
    })
}
