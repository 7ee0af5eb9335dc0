//! `Tasks` over ECS and CloudWatch Logs: the one-off migration task, found again on resume
//! by its `startedBy`, and its log lines.
//!
//! Networking: a `TaskSpec` with no subnets (or no security groups) gets them from the
//! live services' `awsvpcConfiguration` (the plan's blue service, else green), so a plan
//! need not repeat what the services already say.

use super::errors::classify;
use crate::engine::ports::{ActiveTask, PortError, PortResult, TaskInfo, TaskSpec, Tasks};
use async_trait::async_trait;
use aws_sdk_cloudwatchlogs as logs;
use aws_sdk_ecs as ecs;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, DesiredStatus, KeyValuePair,
    LaunchType, NetworkConfiguration, Task, TaskOverride,
};
use std::collections::HashMap;
use std::sync::Mutex;

/// awslogs (group, stream prefix) of one container, keyed by (task definition ARN, container).
type LogConfigCache = Mutex<HashMap<(String, String), Option<(String, String)>>>;

/// DescribeTasks takes at most this many ARNs per call.
const DESCRIBE_BATCH: usize = 100;

pub struct EcsTasks {
    ecs: ecs::Client,
    logs: logs::Client,
    cluster: String,
    /// The migration container, whose exit code `find_started_by` reports.
    container: Option<String>,
    /// Services whose network configuration a spec without subnets borrows, in order.
    network_from: Vec<String>,
    /// (task definition ARN, container) → awslogs (group, stream prefix), looked up once.
    log_config: LogConfigCache,
}

impl EcsTasks {
    pub fn new(
        ecs: ecs::Client,
        logs: logs::Client,
        cluster: &str,
        container: Option<String>,
        network_from: Vec<String>,
    ) -> Self {
        EcsTasks {
            ecs,
            logs,
            cluster: cluster.to_string(),
            container,
            network_from,
            log_config: Mutex::new(HashMap::new()),
        }
    }

    /// The awslogs group and stream prefix of `container` in a task definition.
    async fn awslogs(
        &self,
        task_definition: &str,
        container: &str,
    ) -> PortResult<Option<(String, String)>> {
        let key = (task_definition.to_string(), container.to_string());
        if let Ok(cache) = self.log_config.lock() {
            if let Some(hit) = cache.get(&key) {
                return Ok(hit.clone());
            }
        }
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await
            .map_err(|e| classify("ecs:DescribeTaskDefinition", task_definition, e))?;
        let found = out
            .task_definition()
            .and_then(|td| {
                td.container_definitions()
                    .iter()
                    .find(|c| c.name() == Some(container))
            })
            .and_then(|c| c.log_configuration())
            .filter(|l| l.log_driver().as_str() == "awslogs")
            .and_then(|l| l.options())
            .and_then(|o| {
                Some((
                    o.get("awslogs-group")?.clone(),
                    o.get("awslogs-stream-prefix")?.clone(),
                ))
            });
        if let Ok(mut cache) = self.log_config.lock() {
            cache.insert(key, found.clone());
        }
        Ok(found)
    }

    /// Turn an ECS task into what the engine needs, reporting `container`'s exit code.
    async fn info(&self, task: &Task, container: Option<&str>) -> PortResult<TaskInfo> {
        let arn = task.task_arn().unwrap_or_default().to_string();
        // Without a named container, a single-container task is unambiguous.
        let container = container
            .map(str::to_string)
            .or_else(|| match task.containers() {
                [only] => only.name().map(str::to_string),
                _ => None,
            });
        let exit_code = container.as_deref().and_then(|name| {
            task.containers()
                .iter()
                .find(|c| c.name() == Some(name))
                .and_then(|c| c.exit_code())
        });
        let log = match (task.task_definition_arn(), container.as_deref()) {
            (Some(td), Some(name)) => self
                .awslogs(td, name)
                .await?
                .map(|(group, prefix)| (group, log_stream(&prefix, name, &arn))),
            _ => None,
        };
        Ok(TaskInfo {
            last_status: task.last_status().unwrap_or("UNKNOWN").to_string(),
            exit_code,
            stopped_reason: task.stopped_reason().map(str::to_string),
            log,
            arn,
        })
    }

    async fn describe_many(&self, arns: &[String]) -> PortResult<Vec<Task>> {
        let mut tasks = Vec::new();
        for chunk in arns.chunks(DESCRIBE_BATCH) {
            let out = self
                .ecs
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    classify(
                        "ecs:DescribeTasks",
                        &format!("tasks in {}", self.cluster),
                        e,
                    )
                })?;
            tasks.extend(out.tasks().iter().cloned());
        }
        Ok(tasks)
    }

    /// The spec's network configuration, with empty subnets / security groups taken from
    /// the first service that has an awsvpc configuration.
    async fn network(&self, spec: &TaskSpec) -> PortResult<AwsVpcConfiguration> {
        let mut subnets = spec.subnets.clone();
        let mut groups = spec.security_groups.clone();
        let mut public = spec.assign_public_ip;
        if subnets.is_empty() || groups.is_empty() {
            let live = self
                .service_network()
                .await?
                .ok_or_else(|| PortError::Fatal {
                    operation: "ecs:RunTask".into(),
                    message: format!(
                        "no subnets for the migration task: none in [migration] and services {} \
                     have no awsvpc network configuration; set [migration].subnets and \
                     security_groups in the plan",
                        self.network_from.join(", ")
                    ),
                })?;
            if subnets.is_empty() {
                subnets = live.subnets().to_vec();
                // Same subnets, same reachability: a service in public subnets needs a public IP.
                public = public || live.assign_public_ip() == Some(&AssignPublicIp::Enabled);
            }
            if groups.is_empty() {
                groups = live.security_groups().to_vec();
            }
        }
        AwsVpcConfiguration::builder()
            .set_subnets(Some(subnets))
            .set_security_groups(Some(groups))
            .assign_public_ip(if public {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| PortError::Fatal {
                operation: "ecs:RunTask".into(),
                message: format!("network configuration: {e}"),
            })
    }

    async fn service_network(&self) -> PortResult<Option<AwsVpcConfiguration>> {
        if self.network_from.is_empty() {
            return Ok(None);
        }
        let out = self
            .ecs
            .describe_services()
            .cluster(&self.cluster)
            .set_services(Some(self.network_from.clone()))
            .send()
            .await
            .map_err(|e| {
                classify(
                    "ecs:DescribeServices",
                    &format!(
                        "services {} in {}",
                        self.network_from.join(", "),
                        self.cluster
                    ),
                    e,
                )
            })?;
        for name in &self.network_from {
            let net = out
                .services()
                .iter()
                .filter(|s| s.service_name() == Some(name.as_str()))
                .filter_map(|s| s.network_configuration()?.awsvpc_configuration())
                .find(|c| !c.subnets().is_empty());
            if let Some(net) = net {
                return Ok(Some(net.clone()));
            }
        }
        Ok(None)
    }
}

/// awslogs names a task's stream `<prefix>/<container>/<task id>`.
fn log_stream(prefix: &str, container: &str, task_arn: &str) -> String {
    let task_id = task_arn.rsplit('/').next().unwrap_or(task_arn);
    format!("{prefix}/{container}/{task_id}")
}

#[async_trait]
impl Tasks for EcsTasks {
    async fn find_started_by(&self, started_by: &str) -> PortResult<Vec<TaskInfo>> {
        // ListTasks filters on one desired status at a time; a finished migration is STOPPED.
        let mut arns = Vec::new();
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let mut token = None;
            loop {
                let out = self
                    .ecs
                    .list_tasks()
                    .cluster(&self.cluster)
                    .started_by(started_by)
                    .desired_status(desired.clone())
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| {
                        classify(
                            "ecs:ListTasks",
                            &format!("tasks started by {started_by} in {}", self.cluster),
                            e,
                        )
                    })?;
                arns.extend(out.task_arns().iter().cloned());
                token = out.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        arns.sort();
        arns.dedup();
        let mut infos = Vec::new();
        for task in self.describe_many(&arns).await? {
            infos.push(self.info(&task, self.container.as_deref()).await?);
        }
        Ok(infos)
    }

    async fn active_with_prefix(&self, prefix: &str) -> PortResult<Vec<ActiveTask>> {
        // Desired RUNNING covers PROVISIONING..RUNNING; desired STOPPED also holds tasks
        // still stopping (lastStatus not yet STOPPED), which must count as running.
        let mut arns = Vec::new();
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let mut token = None;
            loop {
                let out = self
                    .ecs
                    .list_tasks()
                    .cluster(&self.cluster)
                    .desired_status(desired.clone())
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| {
                        classify("ecs:ListTasks", &format!("tasks in {}", self.cluster), e)
                    })?;
                arns.extend(out.task_arns().iter().cloned());
                token = out.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        arns.sort();
        arns.dedup();
        let when = |t: Option<&aws_smithy_types::DateTime>| {
            t.and_then(|d| chrono::DateTime::from_timestamp(d.secs(), d.subsec_nanos()))
        };
        Ok(self
            .describe_many(&arns)
            .await?
            .iter()
            .filter(|t| t.started_by().is_some_and(|s| s.starts_with(prefix)))
            .filter(|t| t.last_status() != Some("STOPPED"))
            .map(|t| ActiveTask {
                arn: t.task_arn().unwrap_or_default().to_string(),
                started_by: t.started_by().unwrap_or_default().to_string(),
                last_status: t.last_status().unwrap_or("UNKNOWN").to_string(),
                started_at: when(t.started_at()).or_else(|| when(t.created_at())),
            })
            .collect())
    }

    async fn run_once(&self, spec: &TaskSpec) -> PortResult<TaskInfo> {
        const OP: &str = "ecs:RunTask";
        let network = self.network(spec).await?;
        let overrides = TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(&spec.container)
                    .set_command(Some(spec.command.clone()))
                    .set_environment(if spec.environment.is_empty() {
                        None
                    } else {
                        Some(
                            spec.environment
                                .iter()
                                .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                                .collect(),
                        )
                    })
                    .build(),
            )
            .build();
        let out = self
            .ecs
            .run_task()
            .cluster(&self.cluster)
            .task_definition(&spec.task_definition)
            .count(1)
            .launch_type(LaunchType::Fargate)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(network)
                    .build(),
            )
            .overrides(overrides)
            .started_by(&spec.started_by)
            .client_token(&spec.client_token)
            .send()
            .await
            .map_err(|e| classify(OP, &format!("task from {}", spec.task_definition), e))?;
        if let Some(task) = out.tasks().first() {
            return self.info(task, Some(&spec.container)).await;
        }
        let reasons: Vec<String> = out
            .failures()
            .iter()
            .map(|f| {
                format!(
                    "{} ({})",
                    f.reason().unwrap_or("no reason given"),
                    f.arn().unwrap_or("-")
                )
            })
            .collect();
        let message = format!(
            "no task started from {}: {}",
            spec.task_definition,
            if reasons.is_empty() {
                "ECS gave no reason".to_string()
            } else {
                reasons.join("; ")
            }
        );
        // Fargate capacity shortfalls pass; RunTask is safe to repeat with the same clientToken.
        if reasons
            .iter()
            .any(|r| r.to_ascii_lowercase().contains("capacity"))
        {
            Err(PortError::Transient {
                operation: OP.into(),
                message,
            })
        } else {
            Err(PortError::Fatal {
                operation: OP.into(),
                message,
            })
        }
    }

    async fn describe(&self, task_arn: &str, container: &str) -> PortResult<TaskInfo> {
        let tasks = self.describe_many(&[task_arn.to_string()]).await?;
        match tasks.first() {
            Some(task) => self.info(task, Some(container)).await,
            None => Err(PortError::NotFound {
                operation: "ecs:DescribeTasks".into(),
                resource: format!("task {task_arn} in cluster {}", self.cluster),
            }),
        }
    }

    async fn log_lines(
        &self,
        group: &str,
        stream: &str,
        cursor: Option<String>,
    ) -> PortResult<(Vec<String>, Option<String>)> {
        let out = match self
            .logs
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(cursor.clone())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return match classify("logs:GetLogEvents", &format!("{group} {stream}"), e) {
                    // The container has not written yet: nothing to show, keep the cursor.
                    PortError::NotFound { .. } => Ok((Vec::new(), cursor)),
                    other => Err(other),
                };
            }
        };
        let lines = out
            .events()
            .iter()
            .filter_map(|e| e.message())
            .map(str::to_string)
            .collect();
        let next = out.next_forward_token().map(str::to_string).or(cursor);
        Ok((lines, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_awslogs() {
        assert_eq!(
            log_stream(
                "migrate",
                "web",
                "arn:aws:ecs:us-east-1:123456789012:task/shop/0f9c4e2b1d"
            ),
            "migrate/web/0f9c4e2b1d"
        );
    }
}
