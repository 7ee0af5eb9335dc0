//! Seed an emulator with the world a plan expects: network, cluster, task definition,
//! load balancer with blue/green target groups and listener(s), blue/green services,
//! database, buckets and alarms.
//!
//! Idempotent: every resource is looked up by name first and only created when missing, so
//! seeding twice (or seeding a stage a release already changed) leaves what exists alone;
//! in particular an existing listener's weights are never reset.
//!
//! Only for rehearsals: refuses production plans and any endpoint that is not loopback.

use crate::plan::{DatabaseKind, Plan};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, ResourceType, Tag as Ec2Tag, TagSpecification,
};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, LaunchType,
    LoadBalancer as EcsLoadBalancer, LogConfiguration, LogDriver, NetworkConfiguration,
    NetworkMode, PortMapping, TransportProtocol,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
    ProtocolEnum, Tag as ElbTag, TargetGroupTuple, TargetTypeEnum,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::SdkConfig;
use serde::Serialize;

/// The ELBv2 tag the stage reads to tell the colours apart.
pub const COLOUR_TAG: &str = "glidepath:colour";
/// The ELBv2 tag marking a test listener: the stage sends it no production traffic.
pub const ROLE_TAG: &str = "glidepath:role";
/// Port the app's containers listen on (and the target groups forward to).
pub const APP_PORT: i32 = 8080;
/// The image tag the seeded (live, blue) task definition runs.
pub const INITIAL_VERSION: &str = "initial";
/// Desired tasks for the live colour; the idle colour starts at 0.
pub const BLUE_DESIRED: i32 = 2;
/// Tasks of each seeded companion service.
pub const COMPANION_DESIRED: i32 = 1;
/// Only ever sent to an emulator (seeding refuses anything but loopback).
const REHEARSAL_DB_PASSWORD: &str = "rehearsal-only-password";

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("refusing to seed {plan}: it is a production plan (environment {environment}); seeding is only for rehearsal stages")]
    Production { plan: String, environment: String },
    #[error("refusing to seed {endpoint}: seeding only talks to an emulator on this machine (http://127.0.0.1:PORT); set --endpoint-url or AWS_ENDPOINT_URL to the stage")]
    NotLoopback { endpoint: String },
    #[error("plan {field} = {value:?} cannot be seeded: {why}")]
    Plan {
        field: &'static str,
        value: String,
        why: String,
    },
    #[error("seeding {resource}: {operation} failed: {message}")]
    Aws {
        resource: String,
        operation: &'static str,
        message: String,
    },
}

/// What the seeded world looks like (ids and ARNs), and what this run created.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SeedReport {
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    pub security_group_id: String,
    pub cluster: String,
    pub task_definition_arn: String,
    pub load_balancer_arn: String,
    pub listener_arn: String,
    pub test_listener_arn: Option<String>,
    pub blue_target_group_arn: String,
    pub green_target_group_arn: String,
    pub blue_service_arn: String,
    pub green_service_arn: String,
    /// One per `[[companions]]` entry, in the plan's order.
    pub companion_service_arns: Vec<String>,
    pub database_id: String,
    pub buckets: Vec<String>,
    pub alarms: Vec<String>,
    pub log_group: String,
    /// Resources this run created, e.g. `"vpc shop-vpc"`.
    pub created: Vec<String>,
    /// Resources that already existed and were left alone.
    pub existing: Vec<String>,
}

/// Create what the plan needs on the emulator `config` points at (idempotent).
pub async fn seed(config: &SdkConfig, plan: &Plan) -> Result<SeedReport, SeedError> {
    if plan.production {
        return Err(SeedError::Production {
            plan: plan.source.display().to_string(),
            environment: plan.environment.clone(),
        });
    }
    let endpoint = config.endpoint_url().unwrap_or("(none: real AWS)");
    if !crate::client::is_loopback_endpoint(endpoint) {
        return Err(SeedError::NotLoopback {
            endpoint: endpoint.to_string(),
        });
    }
    let names = Names::from_plan(plan)?;
    let mut s = Seeder {
        ec2: aws_sdk_ec2::Client::new(config),
        ecs: aws_sdk_ecs::Client::new(config),
        elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
        rds: aws_sdk_rds::Client::new(config),
        s3: crate::client::s3(config),
        cw: aws_sdk_cloudwatch::Client::new(config),
        logs: aws_sdk_cloudwatchlogs::Client::new(config),
        plan,
        names,
        report: SeedReport::default(),
        account: crate::client::account_id(config).await,
    };
    s.network().await?;
    s.log_group().await?;
    s.cluster().await?;
    s.task_definition().await?;
    s.load_balancing().await?;
    s.services().await?;
    s.companions().await?;
    s.database().await?;
    s.buckets().await?;
    s.alarms().await?;
    if let Some(arn) = plan
        .notify
        .as_ref()
        .and_then(|n| n.sns_topic_arn.as_deref())
    {
        // CreateTopic is idempotent: an existing topic is returned as it is.
        crate::sns::create_topic(config, arn)
            .await
            .map_err(|message| SeedError::Aws {
                resource: format!("SNS topic {arn}"),
                operation: "CreateTopic",
                message,
            })?;
    }
    Ok(s.report)
}

/// Resource names derived from the plan (checked before anything is created).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    vpc: String,
    subnets: [String; 2],
    security_group: String,
    family: String,
    log_group: String,
    load_balancer: String,
    listener_port: i32,
    test_listener: Option<(String, i32)>,
    blue_tg: String,
    green_tg: String,
    blue_service: String,
    green_service: String,
}

impl Names {
    fn from_plan(plan: &Plan) -> Result<Names, SeedError> {
        let app = &plan.app;
        let (load_balancer, listener_port) =
            listener_name_port("traffic.listener", &plan.traffic.listener)?;
        let test_listener = plan
            .traffic
            .test_listener
            .as_deref()
            .map(|l| listener_name_port("traffic.test_listener", l))
            .transpose()?;
        Ok(Names {
            vpc: format!("{app}-vpc"),
            subnets: [format!("{app}-a"), format!("{app}-b")],
            security_group: format!("{app}-sg"),
            family: format!("{app}-web"),
            log_group: format!("/{app}/web"),
            load_balancer,
            listener_port,
            test_listener,
            blue_tg: plain_name("blue.target_group", &plan.blue.target_group)?,
            green_tg: plain_name("green.target_group", &plan.green.target_group)?,
            blue_service: plain_name("blue.service", &plan.blue.service)?,
            green_service: plain_name("green.service", &plan.green.service)?,
        })
    }
}

/// `<load-balancer-name>:<port>` (an ARN names something that must already exist).
fn listener_name_port(field: &'static str, value: &str) -> Result<(String, i32), SeedError> {
    let bad = |why: &str| SeedError::Plan {
        field,
        value: value.to_string(),
        why: why.to_string(),
    };
    if value.starts_with("arn:") {
        return Err(bad(
            "a rehearsal plan names its listener as <load-balancer-name>:<port>, not an ARN",
        ));
    }
    let (name, port) = value
        .rsplit_once(':')
        .ok_or_else(|| bad("expected <load-balancer-name>:<port>, e.g. shop:80"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port after ':' must be a number 1..65535"))?;
    if name.is_empty() || port == 0 {
        return Err(bad("expected <load-balancer-name>:<port>, e.g. shop:80"));
    }
    Ok((name.to_string(), i32::from(port)))
}

fn plain_name(field: &'static str, value: &str) -> Result<String, SeedError> {
    if value.starts_with("arn:") {
        return Err(SeedError::Plan {
            field,
            value: value.to_string(),
            why: "a rehearsal plan uses names (an ARN points at something that must already exist)"
                .into(),
        });
    }
    Ok(value.to_string())
}

/// Describe an SDK failure without request bodies: the service's code and message.
fn aws_error<E>(resource: impl Into<String>, operation: &'static str, err: E) -> SeedError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    let message = match (err.code(), err.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(&err).to_string(),
    };
    SeedError::Aws {
        resource: resource.into(),
        operation,
        message,
    }
}

struct Seeder<'a> {
    ec2: aws_sdk_ec2::Client,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    rds: aws_sdk_rds::Client,
    s3: aws_sdk_s3::Client,
    cw: aws_sdk_cloudwatch::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    plan: &'a Plan,
    names: Names,
    report: SeedReport,
    /// The emulator's account, for the roles the task definitions name.
    account: Option<String>,
}

impl Seeder<'_> {
    fn note(&mut self, created: bool, what: String) {
        if created {
            self.report.created.push(what);
        } else {
            self.report.existing.push(what);
        }
    }

    // --- network -------------------------------------------------------------------------

    async fn network(&mut self) -> Result<(), SeedError> {
        let vpc_name = self.names.vpc.clone();
        let found = self
            .ec2
            .describe_vpcs()
            .filters(tag_filter("tag:Name", &vpc_name))
            .send()
            .await
            .map_err(|e| aws_error(format!("vpc {vpc_name}"), "DescribeVpcs", e))?;
        let existing = found
            .vpcs()
            .iter()
            .find_map(|v| v.vpc_id().map(str::to_string));
        let vpc_id = match &existing {
            Some(id) => id.clone(),
            None => self
                .ec2
                .create_vpc()
                .cidr_block("10.0.0.0/16")
                .tag_specifications(name_tags(ResourceType::Vpc, &vpc_name))
                .send()
                .await
                .map_err(|e| aws_error(format!("vpc {vpc_name}"), "CreateVpc", e))?
                .vpc()
                .and_then(|v| v.vpc_id())
                .map(str::to_string)
                .ok_or_else(|| missing(&vpc_name, "CreateVpc", "a VPC id"))?,
        };
        self.note(existing.is_none(), format!("vpc {vpc_name}"));
        // One attribute per call (the API's rule). awsvpc tasks need DNS hostnames on.
        for hostnames in [true, false] {
            let on = AttributeBooleanValue::builder().value(true).build();
            let call = self.ec2.modify_vpc_attribute().vpc_id(&vpc_id);
            let call = if hostnames {
                call.enable_dns_hostnames(on)
            } else {
                call.enable_dns_support(on)
            };
            call.send()
                .await
                .map_err(|e| aws_error(format!("vpc {vpc_name}"), "ModifyVpcAttribute", e))?;
        }

        let az_suffixes = ["a", "b"];
        let mut subnet_ids = Vec::new();
        for (i, name) in self.names.subnets.clone().iter().enumerate() {
            let found = self
                .ec2
                .describe_subnets()
                .filters(tag_filter("vpc-id", &vpc_id))
                .filters(tag_filter("tag:Name", name))
                .send()
                .await
                .map_err(|e| aws_error(format!("subnet {name}"), "DescribeSubnets", e))?;
            let existing = found
                .subnets()
                .iter()
                .find_map(|s| s.subnet_id().map(str::to_string));
            let id = match &existing {
                Some(id) => id.clone(),
                None => self
                    .ec2
                    .create_subnet()
                    .vpc_id(&vpc_id)
                    .cidr_block(format!("10.0.{}.0/24", i + 1))
                    .availability_zone(format!("{}{}", self.plan.region, az_suffixes[i]))
                    .tag_specifications(name_tags(ResourceType::Subnet, name))
                    .send()
                    .await
                    .map_err(|e| aws_error(format!("subnet {name}"), "CreateSubnet", e))?
                    .subnet()
                    .and_then(|s| s.subnet_id())
                    .map(str::to_string)
                    .ok_or_else(|| missing(name, "CreateSubnet", "a subnet id"))?,
            };
            self.note(existing.is_none(), format!("subnet {name}"));
            subnet_ids.push(id);
        }

        let sg_name = self.names.security_group.clone();
        let found = self
            .ec2
            .describe_security_groups()
            .filters(tag_filter("vpc-id", &vpc_id))
            .filters(tag_filter("group-name", &sg_name))
            .send()
            .await
            .map_err(|e| {
                aws_error(
                    format!("security group {sg_name}"),
                    "DescribeSecurityGroups",
                    e,
                )
            })?;
        let existing = found
            .security_groups()
            .iter()
            .find_map(|g| g.group_id().map(str::to_string));
        let sg_id = match &existing {
            Some(id) => id.clone(),
            None => self
                .ec2
                .create_security_group()
                .group_name(&sg_name)
                .description(format!("{} web tasks and load balancer", self.plan.app))
                .vpc_id(&vpc_id)
                .send()
                .await
                .map_err(|e| {
                    aws_error(
                        format!("security group {sg_name}"),
                        "CreateSecurityGroup",
                        e,
                    )
                })?
                .group_id()
                .map(str::to_string)
                .ok_or_else(|| missing(&sg_name, "CreateSecurityGroup", "a group id"))?,
        };
        self.note(existing.is_none(), format!("security group {sg_name}"));

        self.report.vpc_id = vpc_id;
        self.report.subnet_ids = subnet_ids;
        self.report.security_group_id = sg_id;
        Ok(())
    }

    // --- logs, cluster, task definition --------------------------------------------------

    async fn log_group(&mut self) -> Result<(), SeedError> {
        let group = self.names.log_group.clone();
        let created = match self
            .logs
            .create_log_group()
            .log_group_name(&group)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_already_exists_exception()) =>
            {
                false
            }
            Err(e) => return Err(aws_error(format!("log group {group}"), "CreateLogGroup", e)),
        };
        self.note(created, format!("log group {group}"));
        self.report.log_group = group;
        Ok(())
    }

    async fn cluster(&mut self) -> Result<(), SeedError> {
        let cluster = self.plan.cluster.clone();
        let found = self
            .ecs
            .describe_clusters()
            .clusters(&cluster)
            .send()
            .await
            .map_err(|e| aws_error(format!("cluster {cluster}"), "DescribeClusters", e))?;
        // CreateCluster on the emulator replaces an existing cluster, so look first.
        let active = found
            .clusters()
            .iter()
            .any(|c| c.status() == Some("ACTIVE"));
        if !active {
            self.ecs
                .create_cluster()
                .cluster_name(&cluster)
                .send()
                .await
                .map_err(|e| aws_error(format!("cluster {cluster}"), "CreateCluster", e))?;
        }
        self.note(!active, format!("cluster {cluster}"));
        self.report.cluster = cluster;
        Ok(())
    }

    async fn task_definition(&mut self) -> Result<(), SeedError> {
        let family = self.names.family.clone();
        let image = self.plan.deploy.image.replace("{version}", INITIAL_VERSION);
        let mut containers = vec![self.container(&self.plan.deploy.container, &image, true)?];
        // A migration container other than the app's rides along in the same task definition.
        if let Some(m) = &self.plan.migration {
            if m.container != self.plan.deploy.container {
                containers.push(self.container(&m.container, &image, false)?);
            }
        }
        self.report.task_definition_arn = self.ensure_task_definition(&family, containers).await?;
        Ok(())
    }

    /// The family's latest revision, registered with `containers` when there is none.
    async fn ensure_task_definition(
        &mut self,
        family: &str,
        containers: Vec<ContainerDefinition>,
    ) -> Result<String, SeedError> {
        let resource = format!("task definition {family}");
        match self
            .ecs
            .describe_task_definition()
            .task_definition(family)
            .send()
            .await
        {
            Ok(out) => {
                if let Some(arn) = out.task_definition().and_then(|t| t.task_definition_arn()) {
                    self.note(false, resource);
                    return Ok(arn.to_string());
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_client_exception()) => {}
            Err(e) => return Err(aws_error(resource, "DescribeTaskDefinition", e)),
        }

        let out = self
            .ecs
            .register_task_definition()
            .family(family)
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("256")
            .memory("512")
            // As on Fargate: a task role for the app and an execution role to pull the image
            // and write its logs (the emulator does not check that they exist).
            .set_task_role_arn(self.role("task"))
            .set_execution_role_arn(self.role("task-execution"))
            .set_container_definitions(Some(containers))
            .send()
            .await
            .map_err(|e| aws_error(resource.clone(), "RegisterTaskDefinition", e))?;
        let arn = out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .map(str::to_string)
            .ok_or_else(|| missing(family, "RegisterTaskDefinition", "an ARN"))?;
        self.note(true, resource);
        Ok(arn)
    }

    /// `arn:aws:iam::<account>:role/<app>-<kind>`, when the account is known.
    fn role(&self, kind: &str) -> Option<String> {
        let account = self.account.as_deref()?;
        Some(format!(
            "arn:aws:iam::{account}:role/{}-{kind}",
            self.plan.app
        ))
    }

    fn container(
        &self,
        name: &str,
        image: &str,
        serves: bool,
    ) -> Result<ContainerDefinition, SeedError> {
        let logs = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", &self.names.log_group)
            .options("awslogs-region", &self.plan.region)
            .options("awslogs-stream-prefix", &self.plan.app)
            .build()
            .map_err(|e| SeedError::Aws {
                resource: format!("container {name}"),
                operation: "RegisterTaskDefinition",
                message: e.to_string(),
            })?;
        let mut c = ContainerDefinition::builder()
            .name(name)
            .image(image)
            .essential(true)
            .log_configuration(logs);
        if serves {
            c = c.port_mappings(
                PortMapping::builder()
                    .container_port(APP_PORT)
                    .protocol(TransportProtocol::Tcp)
                    .build(),
            );
        }
        Ok(c.build())
    }

    // --- load balancing ------------------------------------------------------------------

    async fn load_balancing(&mut self) -> Result<(), SeedError> {
        let blue = self
            .target_group(&self.names.blue_tg.clone(), "blue")
            .await?;
        let green = self
            .target_group(&self.names.green_tg.clone(), "green")
            .await?;
        let lb_name = self.names.load_balancer.clone();
        let lb = self.load_balancer(&lb_name).await?;
        let port = self.names.listener_port;
        self.report.listener_arn = self
            .listener(&lb_name, &lb, port, &[(&blue, 100), (&green, 0)], false)
            .await?;
        if let Some((test_lb_name, test_port)) = self.names.test_listener.clone() {
            let test_lb = if test_lb_name == lb_name {
                lb.clone()
            } else {
                self.load_balancer(&test_lb_name).await?
            };
            let arn = self
                .listener(&test_lb_name, &test_lb, test_port, &[(&green, 100)], true)
                .await?;
            self.report.test_listener_arn = Some(arn);
        }
        self.report.load_balancer_arn = lb;
        self.report.blue_target_group_arn = blue;
        self.report.green_target_group_arn = green;
        Ok(())
    }

    async fn target_group(&mut self, name: &str, colour: &str) -> Result<String, SeedError> {
        let resource = format!("target group {name}");
        let existing = match self.elb.describe_target_groups().names(name).send().await {
            Ok(out) => out
                .target_groups()
                .iter()
                .find_map(|t| t.target_group_arn().map(str::to_string)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_target_group_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(aws_error(resource, "DescribeTargetGroups", e)),
        };
        let arn = match &existing {
            Some(arn) => arn.clone(),
            None => self
                .elb
                .create_target_group()
                .name(name)
                .protocol(ProtocolEnum::Http)
                .port(APP_PORT)
                .vpc_id(&self.report.vpc_id)
                .target_type(TargetTypeEnum::Ip)
                .health_check_path("/health")
                .send()
                .await
                .map_err(|e| aws_error(resource.clone(), "CreateTargetGroup", e))?
                .target_groups()
                .iter()
                .find_map(|t| t.target_group_arn().map(str::to_string))
                .ok_or_else(|| missing(name, "CreateTargetGroup", "an ARN"))?,
        };
        // Always (re)tag: the colour tag is what the stage goes by.
        self.elb
            .add_tags()
            .resource_arns(&arn)
            .tags(ElbTag::builder().key(COLOUR_TAG).value(colour).build())
            .send()
            .await
            .map_err(|e| aws_error(resource.clone(), "AddTags", e))?;
        self.note(existing.is_none(), format!("{resource} ({colour})"));
        Ok(arn)
    }

    async fn load_balancer(&mut self, name: &str) -> Result<String, SeedError> {
        let resource = format!("load balancer {name}");
        let existing = match self.elb.describe_load_balancers().names(name).send().await {
            Ok(out) => out
                .load_balancers()
                .iter()
                .find_map(|l| l.load_balancer_arn().map(str::to_string)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_load_balancer_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(aws_error(resource, "DescribeLoadBalancers", e)),
        };
        let arn = match &existing {
            Some(arn) => arn.clone(),
            None => self
                .elb
                .create_load_balancer()
                .name(name)
                .set_subnets(Some(self.report.subnet_ids.clone()))
                .security_groups(&self.report.security_group_id)
                .scheme(LoadBalancerSchemeEnum::InternetFacing)
                .r#type(LoadBalancerTypeEnum::Application)
                .send()
                .await
                .map_err(|e| aws_error(resource.clone(), "CreateLoadBalancer", e))?
                .load_balancers()
                .iter()
                .find_map(|l| l.load_balancer_arn().map(str::to_string))
                .ok_or_else(|| missing(name, "CreateLoadBalancer", "an ARN"))?,
        };
        self.note(existing.is_none(), resource);
        Ok(arn)
    }

    /// The listener on `port`, created with weighted forwarding when missing. An existing
    /// listener keeps its actions: its weights may be a release's work in progress.
    async fn listener(
        &mut self,
        lb_name: &str,
        lb_arn: &str,
        port: i32,
        weights: &[(&String, i32)],
        test: bool,
    ) -> Result<String, SeedError> {
        let resource = format!(
            "{}listener {lb_name}:{port}",
            if test { "test " } else { "" }
        );
        let found = self
            .elb
            .describe_listeners()
            .load_balancer_arn(lb_arn)
            .send()
            .await
            .map_err(|e| aws_error(resource.clone(), "DescribeListeners", e))?;
        let existing = found
            .listeners()
            .iter()
            .find(|l| l.port() == Some(port))
            .and_then(|l| l.listener_arn().map(str::to_string));
        let arn = match &existing {
            Some(arn) => arn.clone(),
            None => {
                let mut forward = ForwardActionConfig::builder();
                for (tg, weight) in weights {
                    forward = forward.target_groups(
                        TargetGroupTuple::builder()
                            .target_group_arn(tg.as_str())
                            .weight(*weight)
                            .build(),
                    );
                }
                let action = Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .forward_config(forward.build())
                    .build();
                self.elb
                    .create_listener()
                    .load_balancer_arn(lb_arn)
                    .protocol(ProtocolEnum::Http)
                    .port(port)
                    .default_actions(action)
                    .send()
                    .await
                    .map_err(|e| aws_error(resource.clone(), "CreateListener", e))?
                    .listeners()
                    .iter()
                    .find_map(|l| l.listener_arn().map(str::to_string))
                    .ok_or_else(|| missing(&resource, "CreateListener", "an ARN"))?
            }
        };
        if test {
            // The stage sends production traffic only to listeners without this tag.
            self.elb
                .add_tags()
                .resource_arns(&arn)
                .tags(ElbTag::builder().key(ROLE_TAG).value("test").build())
                .send()
                .await
                .map_err(|e| aws_error(resource.clone(), "AddTags", e))?;
        }
        self.note(existing.is_none(), resource);
        Ok(arn)
    }

    // --- services ------------------------------------------------------------------------

    async fn services(&mut self) -> Result<(), SeedError> {
        let blue_tg = self.report.blue_target_group_arn.clone();
        let green_tg = self.report.green_target_group_arn.clone();
        let td = self.report.task_definition_arn.clone();
        self.report.blue_service_arn = self
            .service(
                &self.names.blue_service.clone(),
                Some(&blue_tg),
                BLUE_DESIRED,
                &td,
            )
            .await?;
        self.report.green_service_arn = self
            .service(&self.names.green_service.clone(), Some(&green_tg), 0, &td)
            .await?;
        Ok(())
    }

    /// Each companion: its own task definition family (`<app>-<name>`, the companion's
    /// container on its image at the initial version) and a service beside the web pair,
    /// not behind the load balancer.
    async fn companions(&mut self) -> Result<(), SeedError> {
        for c in self.plan.companions.clone() {
            let family = format!("{}-{}", self.plan.app, c.name);
            let image = c.image.replace("{version}", INITIAL_VERSION);
            let container = self.container(&c.container, &image, false)?;
            let td = self
                .ensure_task_definition(&family, vec![container])
                .await?;
            let service = plain_name("companions.service", &c.service)?;
            let arn = self.service(&service, None, COMPANION_DESIRED, &td).await?;
            self.report.companion_service_arns.push(arn);
        }
        Ok(())
    }

    async fn service(
        &mut self,
        name: &str,
        target_group: Option<&str>,
        desired: i32,
        task_definition: &str,
    ) -> Result<String, SeedError> {
        let cluster = self.plan.cluster.clone();
        let resource = format!("service {cluster}/{name}");
        let found = self
            .ecs
            .describe_services()
            .cluster(&cluster)
            .services(name)
            .send()
            .await
            .map_err(|e| aws_error(resource.clone(), "DescribeServices", e))?;
        let existing = found
            .services()
            .iter()
            .find(|s| s.status() == Some("ACTIVE"))
            .and_then(|s| s.service_arn().map(str::to_string));
        let arn = match &existing {
            Some(arn) => arn.clone(),
            None => {
                let vpc = AwsVpcConfiguration::builder()
                    .set_subnets(Some(self.report.subnet_ids.clone()))
                    .security_groups(&self.report.security_group_id)
                    .assign_public_ip(AssignPublicIp::Disabled)
                    .build()
                    .map_err(|e| SeedError::Aws {
                        resource: resource.clone(),
                        operation: "CreateService",
                        message: e.to_string(),
                    })?;
                self.ecs
                    .create_service()
                    .cluster(&cluster)
                    .service_name(name)
                    .task_definition(task_definition)
                    .desired_count(desired)
                    .launch_type(LaunchType::Fargate)
                    .set_load_balancers(target_group.map(|tg| {
                        vec![EcsLoadBalancer::builder()
                            .target_group_arn(tg)
                            .container_name(&self.plan.deploy.container)
                            .container_port(APP_PORT)
                            .build()]
                    }))
                    .network_configuration(
                        NetworkConfiguration::builder()
                            .awsvpc_configuration(vpc)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| aws_error(resource.clone(), "CreateService", e))?
                    .service()
                    .and_then(|s| s.service_arn())
                    .map(str::to_string)
                    .ok_or_else(|| missing(&resource, "CreateService", "an ARN"))?
            }
        };
        self.note(existing.is_none(), resource);
        Ok(arn)
    }

    // --- database, buckets, alarms -------------------------------------------------------

    async fn database(&mut self) -> Result<(), SeedError> {
        let id = self.plan.database.id.clone();
        let created = match self.plan.database.kind {
            DatabaseKind::Instance => self.db_instance(&id, None).await?,
            DatabaseKind::Cluster => self.db_cluster(&id).await?,
        };
        let kind = match self.plan.database.kind {
            DatabaseKind::Instance => "db instance",
            DatabaseKind::Cluster => "db cluster",
        };
        self.note(created, format!("{kind} {id}"));
        self.report.database_id = id;
        Ok(())
    }

    /// Returns whether it was created.
    async fn db_instance(&mut self, id: &str, cluster: Option<&str>) -> Result<bool, SeedError> {
        let resource = format!("db instance {id}");
        match self
            .rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
        {
            Ok(_) => return Ok(false),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_db_instance_not_found_fault()) => {}
            Err(e) => return Err(aws_error(resource, "DescribeDBInstances", e)),
        }
        let call = self.rds.create_db_instance().db_instance_identifier(id);
        let call = match cluster {
            Some(cluster) => call
                .db_cluster_identifier(cluster)
                .engine("aurora-postgresql")
                .db_instance_class("db.r6g.large"),
            None => call
                .engine("postgres")
                .db_instance_class("db.t3.micro")
                .allocated_storage(20)
                .master_username(&self.plan.app)
                .master_user_password(REHEARSAL_DB_PASSWORD),
        };
        call.send()
            .await
            .map_err(|e| aws_error(resource, "CreateDBInstance", e))?;
        Ok(true)
    }

    async fn db_cluster(&mut self, id: &str) -> Result<bool, SeedError> {
        let resource = format!("db cluster {id}");
        let exists = match self
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_db_cluster_not_found_fault()) =>
            {
                false
            }
            Err(e) => return Err(aws_error(resource, "DescribeDBClusters", e)),
        };
        if !exists {
            self.rds
                .create_db_cluster()
                .db_cluster_identifier(id)
                .engine("aurora-postgresql")
                .master_username(&self.plan.app)
                .master_user_password(REHEARSAL_DB_PASSWORD)
                .send()
                .await
                .map_err(|e| aws_error(resource, "CreateDBCluster", e))?;
        }
        // The writer instance, so the cluster looks like a live Aurora cluster.
        self.db_instance(&format!("{id}-1"), Some(id)).await?;
        Ok(!exists)
    }

    async fn buckets(&mut self) -> Result<(), SeedError> {
        let mut buckets = vec![self.plan.state.bucket.clone()];
        if let Some(a) = &self.plan.assets {
            if !buckets.contains(&a.bucket) {
                buckets.push(a.bucket.clone());
            }
        }
        for bucket in &buckets {
            let resource = format!("bucket {bucket}");
            let exists = match self.s3.head_bucket().bucket(bucket).send().await {
                Ok(_) => true,
                Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => false,
                Err(e) => return Err(aws_error(resource, "HeadBucket", e)),
            };
            if !exists {
                let mut call = self.s3.create_bucket().bucket(bucket);
                if self.plan.region != "us-east-1" {
                    call = call.create_bucket_configuration(
                        aws_sdk_s3::types::CreateBucketConfiguration::builder()
                            .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                                self.plan.region.as_str(),
                            ))
                            .build(),
                    );
                }
                match call.send().await {
                    Ok(_) => {}
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|se| se.is_bucket_already_owned_by_you()) => {}
                    Err(e) => return Err(aws_error(resource, "CreateBucket", e)),
                }
            }
            self.note(!exists, resource);
        }
        self.report.buckets = buckets;
        Ok(())
    }

    /// One alarm per name in the plan's gates, on green's target 5xx count (the stage's
    /// `alarm` faults drive their state).
    async fn alarms(&mut self) -> Result<(), SeedError> {
        let tg_dim = crate::target_group_dimension(&self.report.green_target_group_arn)
            .unwrap_or_default()
            .to_string();
        let lb_dim = crate::load_balancer_dimension(&self.report.load_balancer_arn)
            .unwrap_or_default()
            .to_string();
        for name in self.plan.gates.alarms.clone() {
            let resource = format!("alarm {name}");
            let found = self
                .cw
                .describe_alarms()
                .alarm_names(&name)
                .send()
                .await
                .map_err(|e| aws_error(resource.clone(), "DescribeAlarms", e))?;
            let exists = !found.metric_alarms().is_empty() || !found.composite_alarms().is_empty();
            if !exists {
                use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
                self.cw
                    .put_metric_alarm()
                    .alarm_name(&name)
                    .alarm_description(format!(
                        "{}: green target 5xx (seeded for rehearsal)",
                        self.plan.app
                    ))
                    .namespace("AWS/ApplicationELB")
                    .metric_name("HTTPCode_Target_5XX_Count")
                    .dimensions(
                        Dimension::builder()
                            .name("TargetGroup")
                            .value(&tg_dim)
                            .build(),
                    )
                    .dimensions(
                        Dimension::builder()
                            .name("LoadBalancer")
                            .value(&lb_dim)
                            .build(),
                    )
                    .statistic(Statistic::Sum)
                    .period(60)
                    .evaluation_periods(1)
                    .threshold(10.0)
                    .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
                    .treat_missing_data("notBreaching")
                    .send()
                    .await
                    .map_err(|e| aws_error(resource.clone(), "PutMetricAlarm", e))?;
            }
            self.note(!exists, resource);
            self.report.alarms.push(name);
        }
        Ok(())
    }
}

fn missing(resource: &str, operation: &'static str, what: &str) -> SeedError {
    SeedError::Aws {
        resource: resource.to_string(),
        operation,
        message: format!("the answer carried no {what}"),
    }
}

fn tag_filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn name_tags(kind: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(Ec2Tag::builder().key("Name").value(name).build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_names_parse() {
        assert_eq!(
            listener_name_port("traffic.listener", "shop:80").unwrap(),
            ("shop".to_string(), 80)
        );
        for bad in ["shop", "shop:http", ":80", "shop:0", "shop:70000"] {
            let err = listener_name_port("traffic.listener", bad).unwrap_err();
            assert!(err.to_string().contains("traffic.listener"), "{err}");
        }
        let arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/shop/1/2";
        let err = listener_name_port("traffic.listener", arn).unwrap_err();
        assert!(err.to_string().contains("not an ARN"), "{err}");
    }

    #[test]
    fn arns_cannot_be_seeded() {
        assert!(plain_name("blue.target_group", "shop-blue").is_ok());
        let err = plain_name("blue.target_group", "arn:aws:x").unwrap_err();
        assert!(err.to_string().contains("blue.target_group"), "{err}");
    }
}
