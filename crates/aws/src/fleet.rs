//! `Fleet` over ECS and ELBv2: the colours' services, the new task definition revision,
//! deployments and target health counts.

use super::errors::classify;
use crate::engine::ports::{Fleet, PortError, PortResult, ServiceState, TargetCounts};
use async_trait::async_trait;
use aws_sdk_ecs as ecs;
use aws_sdk_ecs::types::{TaskDefinition, TaskDefinitionField};
use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;

pub struct EcsFleet {
    ecs: ecs::Client,
    elb: elbv2::Client,
    cluster: String,
}

impl EcsFleet {
    pub fn new(ecs: ecs::Client, elb: elbv2::Client, cluster: &str) -> Self {
        EcsFleet {
            ecs,
            elb,
            cluster: cluster.to_string(),
        }
    }

    async fn describe_task_definition(
        &self,
        which: &str,
    ) -> PortResult<(TaskDefinition, Vec<ecs::types::Tag>)> {
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(which)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
            .map_err(|e| {
                match classify(
                    "ecs:DescribeTaskDefinition",
                    &format!("task definition {which}"),
                    e,
                ) {
                    // ECS says ClientException for an unknown task definition.
                    PortError::Fatal { operation, message }
                        if message.contains("ClientException") =>
                    {
                        PortError::NotFound {
                            operation,
                            resource: format!("task definition {which}"),
                        }
                    }
                    other => other,
                }
            })?;
        let tags = out.tags().to_vec();
        let td = out.task_definition.ok_or_else(|| PortError::NotFound {
            operation: "ecs:DescribeTaskDefinition".into(),
            resource: format!("task definition {which}"),
        })?;
        Ok((td, tags))
    }

    async fn update(
        &self,
        service: &str,
        task_definition: Option<&str>,
        desired: i32,
    ) -> PortResult<()> {
        self.ecs
            .update_service()
            .cluster(&self.cluster)
            .service(service)
            .set_task_definition(task_definition.map(str::to_string))
            .desired_count(desired)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                classify(
                    "ecs:UpdateService",
                    &format!("service {service} in cluster {}", self.cluster),
                    e,
                )
            })
    }
}

/// Everything RegisterTaskDefinition takes, as read back from DescribeTaskDefinition.
/// Two revisions with equal `Registrable`s are the same definition.
#[derive(Debug, Clone, PartialEq)]
struct Registrable {
    family: Option<String>,
    task_role_arn: Option<String>,
    execution_role_arn: Option<String>,
    network_mode: Option<ecs::types::NetworkMode>,
    container_definitions: Vec<ecs::types::ContainerDefinition>,
    volumes: Vec<ecs::types::Volume>,
    placement_constraints: Vec<ecs::types::TaskDefinitionPlacementConstraint>,
    requires_compatibilities: Vec<ecs::types::Compatibility>,
    cpu: Option<String>,
    memory: Option<String>,
    pid_mode: Option<ecs::types::PidMode>,
    ipc_mode: Option<ecs::types::IpcMode>,
    proxy_configuration: Option<ecs::types::ProxyConfiguration>,
    ephemeral_storage: Option<ecs::types::EphemeralStorage>,
    runtime_platform: Option<ecs::types::RuntimePlatform>,
    enable_fault_injection: Option<bool>,
}

impl Registrable {
    fn of(td: &TaskDefinition) -> Self {
        Registrable {
            family: td.family.clone(),
            task_role_arn: td.task_role_arn.clone(),
            execution_role_arn: td.execution_role_arn.clone(),
            network_mode: td.network_mode.clone(),
            container_definitions: td.container_definitions().to_vec(),
            volumes: td.volumes().to_vec(),
            placement_constraints: td.placement_constraints().to_vec(),
            requires_compatibilities: td.requires_compatibilities().to_vec(),
            cpu: td.cpu.clone(),
            memory: td.memory.clone(),
            pid_mode: td.pid_mode.clone(),
            ipc_mode: td.ipc_mode.clone(),
            proxy_configuration: td.proxy_configuration.clone(),
            ephemeral_storage: td.ephemeral_storage.clone(),
            runtime_platform: td.runtime_platform.clone(),
            enable_fault_injection: td.enable_fault_injection,
        }
    }

    /// The same definition with `container`'s image replaced; None if there is no such container.
    fn with_image(mut self, container: &str, image: &str) -> Option<Self> {
        let c = self
            .container_definitions
            .iter_mut()
            .find(|c| c.name() == Some(container))?;
        c.image = Some(image.to_string());
        Some(self)
    }

    fn image_of(&self, container: &str) -> Option<&str> {
        self.container_definitions
            .iter()
            .find(|c| c.name() == Some(container))
            .and_then(|c| c.image())
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

#[async_trait]
impl Fleet for EcsFleet {
    async fn service(&self, service: &str) -> PortResult<ServiceState> {
        const OP: &str = "ecs:DescribeServices";
        let what = format!("service {service} in cluster {}", self.cluster);
        let out = self
            .ecs
            .describe_services()
            .cluster(&self.cluster)
            .services(service)
            .send()
            .await
            .map_err(|e| classify(OP, &what, e))?;
        // A deleted service lingers as INACTIVE: as good as missing.
        let Some(s) = out
            .services()
            .iter()
            .find(|s| s.status() != Some("INACTIVE"))
        else {
            return Err(PortError::NotFound {
                operation: OP.into(),
                resource: what,
            });
        };
        let primary = s
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"));
        Ok(ServiceState {
            task_definition: s.task_definition().unwrap_or_default().to_string(),
            desired: s.desired_count(),
            running: s.running_count(),
            rollout: primary
                .and_then(|d| d.rollout_state())
                .map(|r| r.as_str().to_string())
                .unwrap_or_else(|| "UNKNOWN".to_string()),
        })
    }

    async fn task_definition_with_image(
        &self,
        from: &str,
        container: &str,
        image: &str,
    ) -> PortResult<String> {
        const OP: &str = "ecs:RegisterTaskDefinition";
        let (base, tags) = self.describe_task_definition(from).await?;
        let base_arn = base.task_definition_arn().unwrap_or(from).to_string();
        let current = Registrable::of(&base);
        if current.image_of(container) == Some(image) {
            return Ok(base_arn);
        }
        let wanted = current
            .clone()
            .with_image(container, image)
            .ok_or_else(|| PortError::Fatal {
                operation: OP.into(),
                message: format!(
                    "task definition {base_arn} has no container named {container:?} \
                     (it has: {}); fix [deploy].container in the plan",
                    current
                        .container_definitions
                        .iter()
                        .filter_map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        // On resume the revision we registered last time is the family's latest: reuse it.
        if let Some(family) = &current.family {
            let (latest, _) = self.describe_task_definition(family).await?;
            if Registrable::of(&latest) == wanted {
                if let Some(arn) = latest.task_definition_arn() {
                    return Ok(arn.to_string());
                }
            }
        }
        let out = self
            .ecs
            .register_task_definition()
            .set_family(wanted.family)
            .set_task_role_arn(wanted.task_role_arn)
            .set_execution_role_arn(wanted.execution_role_arn)
            .set_network_mode(wanted.network_mode)
            .set_container_definitions(Some(wanted.container_definitions))
            .set_volumes(non_empty(wanted.volumes))
            .set_placement_constraints(non_empty(wanted.placement_constraints))
            .set_requires_compatibilities(non_empty(wanted.requires_compatibilities))
            .set_cpu(wanted.cpu)
            .set_memory(wanted.memory)
            .set_tags(non_empty(tags))
            .set_pid_mode(wanted.pid_mode)
            .set_ipc_mode(wanted.ipc_mode)
            .set_proxy_configuration(wanted.proxy_configuration)
            .set_ephemeral_storage(wanted.ephemeral_storage)
            .set_runtime_platform(wanted.runtime_platform)
            .set_enable_fault_injection(wanted.enable_fault_injection)
            .send()
            .await
            .map_err(|e| classify(OP, &format!("new revision of {base_arn}"), e))?;
        out.task_definition()
            .and_then(|td| td.task_definition_arn())
            .map(str::to_string)
            .ok_or_else(|| PortError::Fatal {
                operation: OP.into(),
                message: format!("registering a revision of {base_arn} returned no ARN"),
            })
    }

    async fn image_of(&self, task_definition: &str, container: &str) -> PortResult<Option<String>> {
        let (td, _) = self.describe_task_definition(task_definition).await?;
        Ok(Registrable::of(&td).image_of(container).map(str::to_string))
    }

    async fn task_definition_active(&self, task_definition: &str) -> PortResult<bool> {
        match self.describe_task_definition(task_definition).await {
            // A deregistered one stays discoverable, with status INACTIVE.
            Ok((td, _)) => Ok(td.status() == Some(&ecs::types::TaskDefinitionStatus::Active)),
            Err(PortError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn deploy(&self, service: &str, task_definition: &str, desired: i32) -> PortResult<()> {
        self.update(service, Some(task_definition), desired).await
    }

    async fn scale(&self, service: &str, desired: i32) -> PortResult<()> {
        self.update(service, None, desired).await
    }

    async fn roll_out(&self, service: &str, task_definition: &str) -> PortResult<()> {
        use ecs::types::{DeploymentCircuitBreaker, DeploymentConfiguration};
        // ECS's own rollback stays off: it would race the engine's, which puts companions
        // back in reverse dependency order from the ledger.
        let breaker = DeploymentCircuitBreaker::builder()
            .enable(true)
            .rollback(false)
            .build();
        self.ecs
            .update_service()
            .cluster(&self.cluster)
            .service(service)
            .task_definition(task_definition)
            .deployment_configuration(
                DeploymentConfiguration::builder()
                    .deployment_circuit_breaker(breaker)
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                classify(
                    "ecs:UpdateService",
                    &format!("service {service} in cluster {}", self.cluster),
                    e,
                )
            })
    }

    async fn target_counts(&self, target_group: &str) -> PortResult<TargetCounts> {
        let out = self
            .elb
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(|e| {
                classify(
                    "elbv2:DescribeTargetHealth",
                    &format!("target group {target_group}"),
                    e,
                )
            })?;
        Ok(count_targets(
            out.target_health_descriptions()
                .iter()
                .map(|d| d.target_health().and_then(|h| h.state())),
        ))
    }
}

/// Healthy / unhealthy / anything else (initial, draining, unused, unavailable).
pub(crate) fn count_targets<'a>(
    states: impl Iterator<Item = Option<&'a TargetHealthStateEnum>>,
) -> TargetCounts {
    let mut counts = TargetCounts::default();
    for state in states {
        match state {
            Some(TargetHealthStateEnum::Healthy) => counts.healthy += 1,
            Some(TargetHealthStateEnum::Unhealthy) => counts.unhealthy += 1,
            _ => counts.other += 1,
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::ContainerDefinition;

    #[test]
    fn targets_are_counted_by_state() {
        use TargetHealthStateEnum as S;
        let states = [
            Some(S::Healthy),
            Some(S::Healthy),
            Some(S::Unhealthy),
            Some(S::Draining),
            Some(S::UnhealthyDraining),
            None,
        ];
        assert_eq!(
            count_targets(states.iter().map(Option::as_ref)),
            TargetCounts {
                healthy: 2,
                unhealthy: 1,
                other: 3
            }
        );
    }

    #[test]
    fn image_replacement_touches_only_the_named_container() {
        let td = TaskDefinition::builder()
            .family("shop-web")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("web")
                    .image("shop:1")
                    .build(),
            )
            .container_definitions(
                ContainerDefinition::builder()
                    .name("proxy")
                    .image("envoy:1")
                    .build(),
            )
            .build();
        let r = Registrable::of(&td);
        let new = r.clone().with_image("web", "shop:2").unwrap();
        assert_eq!(new.image_of("web"), Some("shop:2"));
        assert_eq!(new.image_of("proxy"), Some("envoy:1"));
        assert_ne!(new, r);
        assert!(r.with_image("nope", "x").is_none());
    }
}
