//! Assemble every engine port over AWS for one plan: resolve the plan's names once,
//! then hand each adapter the clients and ARNs it needs.

use super::client;
use super::database::RdsDatabase;
use super::errors::AwsError;
use super::fleet::EcsFleet;
use super::health::AwsHealth;
use super::resolve::resolve;
use super::state::S3State;
use super::tasks::EcsTasks;
use super::traffic::ElbTraffic;
use super::Resolved;
use crate::engine::ports::Ports;
use crate::gate::smoke::CommandSmoke;
use crate::plan::Plan;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_types::SdkConfig;

/// Build the ports for `plan`. Fails (with the plan field to fix) when a target group,
/// listener or rule the plan names does not exist.
pub async fn build(config: &SdkConfig, plan: &Plan) -> Result<(Ports, Resolved), AwsError> {
    let config = client::control_plane(config);
    let elb = elbv2::Client::new(&config);
    let ecs = aws_sdk_ecs::Client::new(&config);
    let resolved = resolve(&elb, plan).await?;

    let ports = Ports {
        state: Box::new(S3State::new(
            client::s3(&config),
            &plan.state.bucket,
            &plan.state.prefix,
        )),
        database: Box::new(RdsDatabase::new(
            aws_sdk_rds::Client::new(&config),
            plan.database.kind,
            &plan.database.id,
        )),
        tasks: Box::new(EcsTasks::new(
            ecs.clone(),
            aws_sdk_cloudwatchlogs::Client::new(&config),
            &plan.cluster,
            plan.migration.as_ref().map(|m| m.container.clone()),
            vec![plan.blue.service.clone(), plan.green.service.clone()],
        )),
        fleet: Box::new(EcsFleet::new(ecs, elb.clone(), &plan.cluster)),
        traffic: Box::new(
            ElbTraffic::new(
                elb.clone(),
                &resolved.listener_arn,
                resolved.rule_arn.as_deref(),
                &resolved.blue_target_group_arn,
                &resolved.green_target_group_arn,
            )
            .with_test_listener(resolved.test_listener_arn.as_deref()),
        ),
        health: Box::new(AwsHealth::new(&config, &resolved, &plan.gates)),
        smoke: Box::new(CommandSmoke::new()),
        local: Box::new(CommandSmoke::new()),
        assets: None,
    };
    Ok((ports, resolved))
}
