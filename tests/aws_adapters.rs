//! The AWS adapters against the rehearsal stage (moto + stagehand) over loopback, with the
//! real aws-sdk clients. Each test starts its own stage and builds the small world it needs.
//!
//! Needs Python >= 3.11 for the stage (`scripts/setup-stage` makes the venv).

use aws_credential_types::Credentials;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerDefinition, LogConfiguration, LogDriver,
    NetworkConfiguration, PortMapping,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, RuleCondition, TargetGroupTuple, TargetTypeEnum,
};
use aws_types::SdkConfig;
use glidepath::aws::{self, AwsError, Resolved};
use glidepath::engine::ports::{
    Conditional, ETag, PortError, Ports, SnapshotStatus, TaskSpec, Weights,
};
use glidepath::plan::*;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// --- the stage -----------------------------------------------------------------------------

/// Fast timings so the tests stay quick; the migration exits 3 so the exit code is real.
const SCENARIO: &str = r#"
description = "adapter tests"
[snapshot]
seconds = 1.5
[migration]
seconds = 1
exit_code = 3
lines = ["Running migrations...", "boom", "Migration failed."]
[deploy]
seconds = 1
"#;

struct Stage {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Stage {
    fn start() -> Stage {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("scripts/setup-stage"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/setup-stage");
        assert!(out.status.success(), "scripts/setup-stage failed");
        let venv = String::from_utf8(out.stdout).unwrap();
        let venv = venv.lines().last().expect("venv path").trim().to_string();
        let dir = tempfile::tempdir().unwrap();
        let scenario = dir.path().join("scenario.toml");
        std::fs::write(&scenario, SCENARIO).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stage.err")).unwrap();
        let mut child = Command::new(format!("{venv}/bin/python"))
            .arg(root.join("localstack/stage/stage.py"))
            .args(["--port", "0", "--tick", "0.2", "--scenario"])
            .arg(&scenario)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the stage");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(url) = line.trim().strip_prefix("stage ready on ") else {
            let _ = child.kill();
            let err = std::fs::read_to_string(dir.path().join("stage.err")).unwrap_or_default();
            panic!("stage did not start: {line:?}\n{err}");
        };
        Stage {
            url: url.to_string(),
            child,
            _dir: dir,
        }
    }

    async fn sdk(&self) -> SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .load()
            .await
    }

    /// A control-endpoint request (plain HTTP/1.1 over loopback); returns the JSON answer.
    fn control(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let addr = self.url.strip_prefix("http://").unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let (_, json) = answer.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` until it returns Some, or fail after `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// --- the world -----------------------------------------------------------------------------

/// What the tests need to know about the world they built.
struct World {
    subnets: Vec<String>,
    security_group: String,
    blue_tg: String,
    green_tg: String,
    listener: String,
    load_balancer: String,
    task_definition: String,
}

const CLUSTER: &str = "shop";
const BUCKET: &str = "shop-state";

/// VPC, subnets, SG, ALB with blue/green target groups and a listener forwarding only to
/// blue, cluster, awslogs task definition, blue and green services, DB instance, bucket.
async fn build_world(config: &SdkConfig) -> World {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(config);
    let ecs = aws_sdk_ecs::Client::new(config);

    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    ec2.modify_vpc_attribute()
        .vpc_id(&vpc)
        .enable_dns_hostnames(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut subnets = Vec::new();
    for (i, az) in [(1, "a"), (2, "b")] {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.0.{i}.0/24"))
            .availability_zone(format!("us-east-1{az}"))
            .send()
            .await
            .unwrap();
        subnets.push(s.subnet.unwrap().subnet_id.unwrap());
    }
    let sg = ec2
        .create_security_group()
        .group_name("web")
        .description("web")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();

    let mut tgs = Vec::new();
    for colour in ["blue", "green"] {
        let arn = elb
            .create_target_group()
            .name(format!("shop-{colour}"))
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .port(8080)
            .vpc_id(&vpc)
            .target_type(TargetTypeEnum::Ip)
            .send()
            .await
            .unwrap()
            .target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_string();
        elb.add_tags()
            .resource_arns(&arn)
            .tags(
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key("glidepath:colour")
                    .value(colour)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        tgs.push(arn);
    }
    let lb = elb
        .create_load_balancer()
        .name("shop")
        .set_subnets(Some(subnets.clone()))
        .security_groups(&sg)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    // A plain single-target-group forward, as most listeners start out.
    let listener = elb
        .create_listener()
        .load_balancer_arn(&lb)
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(80)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&tgs[0])
                .build(),
        )
        .send()
        .await
        .unwrap()
        .listeners()[0]
        .listener_arn()
        .unwrap()
        .to_string();

    ecs.create_cluster()
        .cluster_name(CLUSTER)
        .send()
        .await
        .unwrap();
    let task_definition = register(&ecs, "shop:1").await;
    let net = NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .set_subnets(Some(subnets.clone()))
                .security_groups(&sg)
                .assign_public_ip(AssignPublicIp::Disabled)
                .build()
                .unwrap(),
        )
        .build();
    for (colour, tg) in ["blue", "green"].iter().zip(&tgs) {
        ecs.create_service()
            .cluster(CLUSTER)
            .service_name(format!("shop-{colour}"))
            .task_definition(&task_definition)
            .desired_count(2)
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .network_configuration(net.clone())
            .load_balancers(
                aws_sdk_ecs::types::LoadBalancer::builder()
                    .target_group_arn(tg)
                    .container_name("web")
                    .container_port(8080)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    aws_sdk_rds::Client::new(config)
        .create_db_instance()
        .db_instance_identifier("shop-db")
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .master_username("shop")
        .master_user_password("password123")
        .allocated_storage(20)
        .send()
        .await
        .unwrap();
    aws::client::s3(config)
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    World {
        subnets,
        security_group: sg,
        blue_tg: tgs[0].clone(),
        green_tg: tgs[1].clone(),
        listener,
        load_balancer: lb,
        task_definition,
    }
}

/// A revision of family shop-web with the web container on `image` and awslogs logging.
async fn register(ecs: &aws_sdk_ecs::Client, image: &str) -> String {
    ecs.register_task_definition()
        .family("shop-web")
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(image)
                .essential(true)
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .log_configuration(
                    LogConfiguration::builder()
                        .log_driver(LogDriver::Awslogs)
                        .options("awslogs-group", "/shop/web")
                        .options("awslogs-region", "us-east-1")
                        .options("awslogs-stream-prefix", "migrate")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string()
}

/// The rehearsal plan for this world, naming everything by name.
fn plan(stage: &Stage) -> Plan {
    Plan {
        source: PathBuf::from("test.toml"),
        digest: "0".repeat(64),
        app: "shop".into(),
        environment: "test".into(),
        production: false,
        region: "us-east-1".into(),
        endpoint_url: Some(stage.url.clone()),
        state: StateConfig {
            bucket: BUCKET.into(),
            prefix: "glidepath/shop/test".into(),
            lease: Duration::from_secs(60),
        },
        cluster: CLUSTER.into(),
        blue: Colour {
            service: "shop-blue".into(),
            target_group: "shop-blue".into(),
        },
        green: Colour {
            service: "shop-green".into(),
            target_group: "shop-green".into(),
        },
        traffic: TrafficConfig {
            listener: "shop:80".into(),
            rule_arn: None,
            test_listener: None,
            test_url: None,
        },
        database: DatabaseConfig {
            kind: DatabaseKind::Instance,
            id: "shop-db".into(),
            snapshot_timeout: Duration::from_secs(60),
        },
        deploy: DeployConfig {
            container: "web".into(),
            image: "shop:{version}".into(),
            timeout: Duration::from_secs(60),
        },
        migration: Some(MigrationConfig {
            container: "web".into(),
            command: vec!["./migrate".into()],
            timeout: Duration::from_secs(60),
            subnets: vec![],
            security_groups: vec![],
            assign_public_ip: false,
        }),
        assets: None,
        steps: vec![],
        gates: GateConfig {
            poll_interval: Duration::from_secs(5),
            max_blind: Duration::from_secs(30),
            min_requests: 10,
            error_rate_floor: 0.01,
            error_rate_margin: 0.01,
            latency_factor: 1.5,
            latency_stat: LatencyStat::P95,
            alarms: vec![],
            on_fail: OnGateFail::Rollback,
            statistical: false,
            confidence: 0.95,
        },
        smoke: None,
        rollback: RollbackConfig {
            green: GreenAfterRollback::Keep,
        },
    }
}

/// A stage with a world and the ports built from the plan.
async fn setup() -> (Stage, SdkConfig, World, Ports, Resolved) {
    let stage = Stage::start();
    let config = stage.sdk().await;
    let world = build_world(&config).await;
    let (ports, resolved) = aws::build(&config, &plan(&stage))
        .await
        .expect("build ports");
    (stage, config, world, ports, resolved)
}

// --- tests ---------------------------------------------------------------------------------

#[tokio::test]
async fn state_store_compare_and_swap() {
    let (_stage, config, _world, ports, _) = setup().await;
    let state = &ports.state;

    assert_eq!(state.get("lock.json").await.unwrap(), None);
    let Conditional::Written(first) = state
        .put_if_absent("lock.json", b"{\"holder\":\"a\"}".to_vec())
        .await
        .unwrap()
    else {
        panic!("first put_if_absent must write");
    };
    assert_eq!(
        state
            .put_if_absent("lock.json", b"{\"holder\":\"b\"}".to_vec())
            .await
            .unwrap(),
        Conditional::Conflict,
        "second put_if_absent must lose"
    );
    let (body, etag) = state.get("lock.json").await.unwrap().unwrap();
    assert_eq!(
        (body.as_slice(), &etag),
        (&b"{\"holder\":\"a\"}"[..], &first)
    );

    let Conditional::Written(second) = state
        .put_if_match(
            "lock.json",
            b"{\"holder\":\"a\",\"renewed\":1}".to_vec(),
            &etag,
        )
        .await
        .unwrap()
    else {
        panic!("put_if_match with the current etag must write");
    };
    assert_ne!(second, first);
    assert_eq!(
        state
            .put_if_match("lock.json", b"{\"holder\":\"b\"}".to_vec(), &first)
            .await
            .unwrap(),
        Conditional::Conflict,
        "a stale etag must lose"
    );
    assert_eq!(
        state
            .put_if_match("gone.json", b"{}".to_vec(), &ETag("\"abc\"".into()))
            .await
            .unwrap(),
        Conditional::Conflict,
        "If-Match on a missing key must lose"
    );

    // Keys are relative to the plan's prefix, both ways.
    state
        .put_if_absent("releases/r1.json", b"{}".to_vec())
        .await
        .unwrap();
    state
        .put_if_absent("releases/r2.json", b"{}".to_vec())
        .await
        .unwrap();
    let mut keys = state.list("releases/").await.unwrap();
    keys.sort();
    assert_eq!(keys, ["releases/r1.json", "releases/r2.json"]);
    let raw = aws::client::s3(&config)
        .head_object()
        .bucket(BUCKET)
        .key("glidepath/shop/test/lock.json")
        .send()
        .await;
    assert!(raw.is_ok(), "objects live under the plan's prefix");

    state.delete("lock.json").await.unwrap();
    assert_eq!(state.get("lock.json").await.unwrap(), None);
    state.delete("lock.json").await.unwrap();
}

#[tokio::test]
async fn state_store_names_a_missing_bucket() {
    let stage = Stage::start();
    let config = stage.sdk().await;
    build_world(&config).await;
    let mut p = plan(&stage);
    p.state.bucket = "no-such-bucket".into();
    let (ports, _) = aws::build(&config, &p).await.unwrap();
    match ports.state.get("lock.json").await {
        Err(PortError::Fatal { message, .. }) => {
            assert!(
                message.contains("no-such-bucket") && message.contains("[state].bucket"),
                "{message}"
            )
        }
        other => panic!("expected Fatal, got {other:?}"),
    }
}

#[tokio::test]
async fn resolve_by_name_and_by_arn_agree() {
    let stage = Stage::start();
    let config = stage.sdk().await;
    let world = build_world(&config).await;

    let (_, by_name) = aws::build(&config, &plan(&stage)).await.unwrap();
    assert_eq!(
        by_name,
        Resolved {
            blue_target_group_arn: world.blue_tg.clone(),
            green_target_group_arn: world.green_tg.clone(),
            listener_arn: world.listener.clone(),
            load_balancer_arn: world.load_balancer.clone(),
            rule_arn: None,
            test_listener_arn: None,
        }
    );

    let mut p = plan(&stage);
    p.blue.target_group = world.blue_tg.clone();
    p.green.target_group = world.green_tg.clone();
    p.traffic.listener = world.listener.clone();
    p.traffic.test_listener = Some("shop:80".into());
    let (_, by_arn) = aws::build(&config, &p).await.unwrap();
    assert_eq!(
        by_arn.test_listener_arn.as_deref(),
        Some(world.listener.as_str())
    );
    assert_eq!(
        Resolved {
            test_listener_arn: None,
            ..by_arn
        },
        by_name
    );
}

#[tokio::test]
async fn resolve_errors_say_what_to_fix() {
    let stage = Stage::start();
    let config = stage.sdk().await;
    build_world(&config).await;

    let err = |p: Plan| {
        let config = config.clone();
        async move {
            match aws::build(&config, &p).await {
                Ok(_) => panic!("expected an error"),
                Err(e) => e,
            }
        }
    };

    let mut p = plan(&stage);
    p.green.target_group = "shop-grene".into();
    let e = err(p).await;
    assert!(
        matches!(
            e,
            AwsError::TargetGroupNotFound {
                colour: "green",
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("shop-grene") && text.contains("[green].target_group"),
        "{text}"
    );

    let mut p = plan(&stage);
    p.traffic.listener = "shop:8443".into();
    let text = err(p).await.to_string();
    assert!(
        text.contains("no listener on port 8443") && text.contains("listens on: 80"),
        "{text}"
    );

    let mut p = plan(&stage);
    p.traffic.listener = "shopp:80".into();
    let text = err(p).await.to_string();
    assert!(
        text.contains("load balancer \"shopp\" was not found"),
        "{text}"
    );

    let mut p = plan(&stage);
    p.traffic.listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/1234567890abcdef/0123456789abcdef".into();
    let e = err(p).await;
    assert!(
        matches!(
            e,
            AwsError::ListenerNotFound {
                field: "traffic.listener",
                ..
            }
        ),
        "{e:?}"
    );

    let mut p = plan(&stage);
    p.traffic.listener = "shop".into();
    let text = err(p).await.to_string();
    assert!(text.contains("\"<load-balancer-name>:<port>\""), "{text}");

    let mut p = plan(&stage);
    p.green.target_group = "shop-blue".into();
    assert!(matches!(err(p).await, AwsError::SameTargetGroup { .. }));
}

#[tokio::test]
async fn weights_round_trip_on_listener_and_rule() {
    let (stage, config, world, ports, _) = setup().await;
    // A plain forward to blue reads as 100% blue.
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::all_blue());
    ports.traffic.set_weights(Weights::green(10)).await.unwrap();
    assert_eq!(
        ports.traffic.weights().await.unwrap(),
        Weights {
            blue: 90,
            green: 10
        }
    );
    ports
        .traffic
        .set_weights(Weights::green(100))
        .await
        .unwrap();
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::green(100));
    let state = stage.control("GET", "/_stage/state", "");
    assert_eq!(state["target_groups"]["shop-green"]["percent"], 100.0);

    // With a rule in the plan, the rule's weights move and the default action stays.
    ports
        .traffic
        .set_weights(Weights::all_blue())
        .await
        .unwrap();
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let rule = elb
        .create_rule()
        .listener_arn(&world.listener)
        .priority(10)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .values("/api/*")
                .build(),
        )
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(
                    ForwardActionConfig::builder()
                        .target_groups(
                            TargetGroupTuple::builder()
                                .target_group_arn(&world.blue_tg)
                                .weight(1)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .rules()[0]
        .rule_arn()
        .unwrap()
        .to_string();
    let mut p = plan(&stage);
    p.traffic.rule_arn = Some(rule.clone());
    let (rule_ports, resolved) = aws::build(&config, &p).await.unwrap();
    assert_eq!(resolved.rule_arn.as_deref(), Some(rule.as_str()));
    rule_ports
        .traffic
        .set_weights(Weights::green(50))
        .await
        .unwrap();
    assert_eq!(
        rule_ports.traffic.weights().await.unwrap(),
        Weights::green(50)
    );
    assert_eq!(ports.traffic.weights().await.unwrap(), Weights::all_blue());
}

#[tokio::test]
async fn snapshot_is_created_tagged_and_becomes_available() {
    let (_stage, _config, _world, ports, _) = setup().await;
    let db = &ports.database;
    assert_eq!(db.describe_snapshot("shop-db-r1").await.unwrap(), None);
    db.create_snapshot("shop-db-r1", "r1").await.unwrap();
    let first = db.describe_snapshot("shop-db-r1").await.unwrap().unwrap();
    assert!(
        matches!(first.status, SnapshotStatus::Creating { .. }),
        "{first:?}"
    );
    assert_eq!(first.release_tag.as_deref(), Some("r1"));
    let done = wait_for("snapshot available", Duration::from_secs(15), || async {
        let s = db.describe_snapshot("shop-db-r1").await.unwrap().unwrap();
        (s.status == SnapshotStatus::Available).then_some(s)
    })
    .await;
    assert_eq!(done.release_tag.as_deref(), Some("r1"));
    // Creating it again is not an error: the engine adopts it after describing.
    db.create_snapshot("shop-db-r1", "r1").await.unwrap();
}

#[tokio::test]
async fn migration_task_runs_once_stops_with_its_exit_code_and_logs() {
    let (_stage, _config, world, ports, _) = setup().await;
    let tasks = &ports.tasks;
    let spec = TaskSpec {
        task_definition: world.task_definition.clone(),
        container: "web".into(),
        command: vec!["./migrate".into()],
        started_by: "glidepath-r1".into(),
        client_token: "glidepath-r1-migrate".into(),
        // Empty: the adapter borrows the services' network configuration.
        subnets: vec![],
        security_groups: vec![],
        assign_public_ip: false,
    };
    assert!(tasks
        .find_started_by("glidepath-r1")
        .await
        .unwrap()
        .is_empty());
    let started = tasks.run_once(&spec).await.unwrap();
    assert_eq!(started.last_status, "RUNNING");
    assert_eq!(started.exit_code, None);
    let found = tasks.find_started_by("glidepath-r1").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].arn, started.arn);
    assert!(tasks
        .find_started_by("glidepath-r2")
        .await
        .unwrap()
        .is_empty());

    let stopped = wait_for("task STOPPED", Duration::from_secs(15), || async {
        let t = tasks.describe(&started.arn, "web").await.unwrap();
        (t.last_status == "STOPPED").then_some(t)
    })
    .await;
    assert_eq!(stopped.exit_code, Some(3));
    assert_eq!(
        stopped.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
    let task_id = started.arn.rsplit('/').next().unwrap();
    let (group, stream) = stopped.log.clone().expect("awslogs location");
    assert_eq!(
        (group.as_str(), stream.clone()),
        ("/shop/web", format!("migrate/web/{task_id}"))
    );

    let (lines, cursor) = tasks.log_lines(&group, &stream, None).await.unwrap();
    assert_eq!(
        lines,
        ["Running migrations...", "boom", "Migration failed."]
    );
    let (more, _) = tasks.log_lines(&group, &stream, cursor).await.unwrap();
    assert!(
        more.is_empty(),
        "the cursor moves past what was read: {more:?}"
    );
    let (none, cursor) = tasks
        .log_lines(&group, "migrate/web/nope", None)
        .await
        .unwrap();
    assert!(none.is_empty() && cursor.is_none());

    // Still found after it stopped (resume after the migration finished).
    let found = tasks.find_started_by("glidepath-r1").await.unwrap();
    assert_eq!((found.len(), found[0].exit_code), (1, Some(3)));
    let _ = (&world.subnets, &world.security_group);
}

#[tokio::test]
async fn new_task_definition_revision_is_registered_once() {
    let (_stage, config, world, ports, _) = setup().await;
    let fleet = &ports.fleet;
    let v2 = fleet
        .task_definition_with_image(&world.task_definition, "web", "shop:2")
        .await
        .unwrap();
    assert_ne!(v2, world.task_definition);
    assert!(v2.ends_with("shop-web:2"), "{v2}");
    let ecs = aws_sdk_ecs::Client::new(&config);
    let td = ecs
        .describe_task_definition()
        .task_definition(&v2)
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    let web = &td.container_definitions()[0];
    assert_eq!(web.image(), Some("shop:2"));
    let logs = web.log_configuration().unwrap().options().unwrap();
    assert_eq!(
        logs.get("awslogs-group").map(String::as_str),
        Some("/shop/web")
    );
    assert_eq!(td.cpu(), Some("256"));

    // Resume: same inputs, same revision; from the new revision itself, itself.
    let again = fleet
        .task_definition_with_image(&world.task_definition, "web", "shop:2")
        .await
        .unwrap();
    assert_eq!(again, v2);
    assert_eq!(
        fleet
            .task_definition_with_image(&v2, "web", "shop:2")
            .await
            .unwrap(),
        v2
    );

    match fleet.task_definition_with_image(&v2, "app", "shop:3").await {
        Err(PortError::Fatal { message, .. }) => {
            assert!(
                message.contains("\"app\"") && message.contains("web"),
                "{message}"
            )
        }
        other => panic!("expected Fatal for a missing container, got {other:?}"),
    }
}

#[tokio::test]
async fn deploy_completes_with_healthy_targets_and_scales_to_zero() {
    let (_stage, _config, world, ports, resolved) = setup().await;
    let fleet = &ports.fleet;
    let v2 = fleet
        .task_definition_with_image(&world.task_definition, "web", "shop:2")
        .await
        .unwrap();
    fleet.deploy("shop-green", &v2, 3).await.unwrap();
    let s = fleet.service("shop-green").await.unwrap();
    assert_eq!((s.task_definition.as_str(), s.desired), (v2.as_str(), 3));
    let s = wait_for("green COMPLETED", Duration::from_secs(15), || async {
        let s = fleet.service("shop-green").await.unwrap();
        (s.rollout == "COMPLETED" && s.running == s.desired).then_some(s)
    })
    .await;
    assert_eq!(s.running, 3);
    let counts = fleet
        .target_counts(&resolved.green_target_group_arn)
        .await
        .unwrap();
    assert_eq!((counts.healthy, counts.unhealthy), (3, 0));

    fleet.scale("shop-green", 0).await.unwrap();
    wait_for("green empty", Duration::from_secs(15), || async {
        let s = fleet.service("shop-green").await.unwrap();
        let c = fleet
            .target_counts(&resolved.green_target_group_arn)
            .await
            .unwrap();
        (s.running == 0 && c.healthy == 0).then_some(())
    })
    .await;
    assert_eq!(
        fleet.service("shop-green").await.unwrap().task_definition,
        v2
    );

    match fleet.service("shop-purple").await {
        Err(PortError::NotFound { resource, .. }) => assert!(resource.contains("shop-purple")),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn outage_is_transient_and_passes() {
    let (stage, _config, _world, ports, _) = setup().await;
    ports.fleet.service("shop-blue").await.unwrap();
    // Longer than the SDK's own retries (3 attempts with backoff), so the error surfaces.
    stage.control("POST", "/_stage/outage", r#"{"seconds": 30}"#);
    let t0 = Instant::now();
    let err = ports.fleet.service("shop-blue").await.unwrap_err();
    let took = t0.elapsed();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("ServiceUnavailable"), "{err}");
    let err = ports.traffic.weights().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = ports.state.get("lock.json").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        took < Duration::from_secs(21),
        "retries are bounded by the operation timeout: {took:?}"
    );
    stage.control("POST", "/_stage/outage", r#"{"seconds": 0}"#);
    ports.fleet.service("shop-blue").await.unwrap();
}
