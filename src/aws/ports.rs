//! Assemble every engine port over AWS for one plan: resolve the plan's names once,
//! then hand each adapter the clients and ARNs it needs.

use super::client;
use super::database::RdsDatabase;
use super::errors::{classify, AwsError};
use super::fleet::{count_targets, EcsFleet};
use super::resolve::resolve;
use super::state::S3State;
use super::tasks::EcsTasks;
use super::traffic::ElbTraffic;
use super::Resolved;
use crate::engine::ports::{Health, PortResult, Ports, Smoke};
use crate::gate::{ColourSample, HealthSample};
use crate::plan::Plan;
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_types::SdkConfig;
use std::time::Duration;

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
        traffic: Box::new(ElbTraffic::new(
            elb.clone(),
            &resolved.listener_arn,
            resolved.rule_arn.as_deref(),
            &resolved.blue_target_group_arn,
            &resolved.green_target_group_arn,
        )),
        health: health_port(&config, elb, &resolved),
        smoke: Box::new(interim::CommandSmoke),
        assets: None,
    };
    Ok((ports, resolved))
}

/// INTERIM: target health only, until `crate::aws::health::AwsHealth` (metrics and
/// alarms) lands; then this becomes `Box::new(AwsHealth::new(...))`.
fn health_port(_config: &SdkConfig, elb: elbv2::Client, resolved: &Resolved) -> Box<dyn Health> {
    Box::new(interim::TargetHealthOnly {
        elb,
        blue: resolved.blue_target_group_arn.clone(),
        green: resolved.green_target_group_arn.clone(),
    })
}

/// INTERIM stand-ins for ports other modules own; replace when they merge.
mod interim {
    use super::*;

    /// Health from DescribeTargetHealth alone: no request/5xx/latency metrics, no alarms.
    pub(super) struct TargetHealthOnly {
        pub elb: elbv2::Client,
        pub blue: String,
        pub green: String,
    }

    impl TargetHealthOnly {
        async fn colour(&self, arn: &str) -> PortResult<ColourSample> {
            let out = self
                .elb
                .describe_target_health()
                .target_group_arn(arn)
                .send()
                .await
                .map_err(|e| {
                    classify(
                        "elbv2:DescribeTargetHealth",
                        &format!("target group {arn}"),
                        e,
                    )
                })?;
            let c = count_targets(
                out.target_health_descriptions()
                    .iter()
                    .map(|d| d.target_health().and_then(|h| h.state())),
            );
            Ok(ColourSample {
                healthy: c.healthy,
                unhealthy: c.unhealthy,
                other: c.other,
                ..ColourSample::default()
            })
        }
    }

    #[async_trait]
    impl Health for TargetHealthOnly {
        async fn sample(&self, _window: Duration) -> PortResult<HealthSample> {
            Ok(HealthSample {
                blue: self.colour(&self.blue).await?,
                green: self.colour(&self.green).await?,
                alarms: Vec::new(),
            })
        }
    }

    /// Runs the plan's smoke command as a child process with a deadline.
    pub(super) struct CommandSmoke;

    #[async_trait]
    impl Smoke for CommandSmoke {
        async fn run(
            &self,
            command: &[String],
            env: &[(String, String)],
            timeout: Duration,
        ) -> Result<(), String> {
            let (program, args) = command
                .split_first()
                .ok_or("smoke command is empty; set [smoke].command in the plan")?;
            let mut child = tokio::process::Command::new(program)
                .args(args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("could not start smoke command {program:?}: {e}"))?;
            match tokio::time::timeout(timeout, child.wait()).await {
                Ok(Ok(status)) if status.success() => Ok(()),
                Ok(Ok(status)) => Err(format!("smoke command {program:?} failed ({status})")),
                Ok(Err(e)) => Err(format!("smoke command {program:?}: {e}")),
                Err(_) => Err(format!(
                    "smoke command {program:?} did not finish within {}s",
                    timeout.as_secs()
                )),
            }
        }
    }
}
