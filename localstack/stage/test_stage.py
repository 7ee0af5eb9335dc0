"""Tests for the stage: a smoke test of the running stage driven with boto3 (the authoritative
tests are the Rust ones), and the traffic model in-process with a test-driven clock.

    venv="$(scripts/setup-stage | tail -n 1)"
    (cd localstack/stage && "$venv/bin/python" -m unittest -q test_stage)

GLIDEPATH_STAGE_ENGINE=localstack runs the running-stage tests against the LocalStack engine
instead (LocalStack with the glidepath plugin, from the venv scripts/setup-localstack makes,
or GLIDEPATH_LOCALSTACK_VENV); the in-process tests do not depend on the engine and are
skipped there, so each runs once.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import unittest
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
STAGE = os.path.join(HERE, "stage.py")
sys.path.insert(0, HERE)  # the stage's own modules, for the in-process tests

ENGINE = os.environ.get("GLIDEPATH_STAGE_ENGINE") or "stage"
if ENGINE not in ("stage", "localstack"):
    raise SystemExit(f"GLIDEPATH_STAGE_ENGINE={ENGINE!r}: use stage or localstack")
ON_LOCALSTACK = ENGINE == "localstack"
# Engine-independent tests run once, on the stage engine.
in_process = unittest.skipIf(ON_LOCALSTACK, "in-process model, the same for both engines: runs with the stage engine")
# The stagehand's scenario triggers and ALB timing are the same code on both engines; what
# LocalStack changes (its front door, the launcher, the hooks) StageTest covers with one start.
# boto3 speaks CloudWatch's JSON protocol; LocalStack 4.3.0 cannot parse CloudWatch with the
# botocore models it runs, and the plugin serves only rpc-v2-cbor (what the Rust SDK speaks).
boto3_cloudwatch = unittest.skipIf(ON_LOCALSTACK, "boto3's CloudWatch (JSON protocol) is not served by the LocalStack engine; "
                                   "glidepath's own CloudWatch calls (rpc-v2-cbor) are, see tests/localstack_stage.rs")
stagehand_only = unittest.skipIf(ON_LOCALSTACK, "stagehand logic, the same on both engines; StageTest covers the LocalStack wiring")


def stage_command(*args):
    """The command that starts the engine under test; both take the same arguments."""
    if not ON_LOCALSTACK:
        return [sys.executable, STAGE, *args], None
    venv = os.environ.get("GLIDEPATH_LOCALSTACK_VENV") or os.path.expanduser("~/.cache/glidepath/localstack-venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        raise RuntimeError(f"no LocalStack venv at {venv}: run scripts/setup-localstack (or set GLIDEPATH_LOCALSTACK_VENV)")
    env = dict(os.environ, GLIDEPATH_STAGE_DIR=HERE, PYTHONUNBUFFERED="1")
    env.pop("AWS_ENDPOINT_URL", None)
    return [python, "-m", "glidepath_localstack", *args], env

TEST_SCENARIO = """
description = "smoke test: fast, migration exits 3"
[snapshot]
seconds = 1.5
[migration]
seconds = 1
exit_code = 3
lines = ["Running migrations...", "boom", "Migration failed."]
[deploy]
seconds = 1
[traffic]
rps = 400
[blue]
latency_ms = 80
[green]
latency_ms = 200
"""


def start_stage(*args):
    """Start the stage on port 0; return (process, base url, seconds to ready)."""
    t0 = time.monotonic()
    errfile = tempfile.TemporaryFile("w+")
    cmd, env = stage_command("--port", "0", *args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, text=True, env=env)
    proc.errfile = errfile
    # LocalStack may print lines of its own before the stage's ready line.
    for line in proc.stdout:
        if line.startswith("stage ready on "):
            return proc, line.strip().removeprefix("stage ready on "), time.monotonic() - t0
    proc.kill()
    proc.wait()
    raise RuntimeError(f"stage did not start: {stage_stderr(proc)}")


def stage_stderr(proc) -> str:
    proc.errfile.seek(0)
    return proc.errfile.read()


def run_stage_expecting_failure(*args):
    cmd, env = stage_command(*args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    return proc.returncode, proc.stderr.strip()


def wait_for(what, check, timeout=15.0, every=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class World(unittest.TestCase):
    """A stage plus a tiny world (VPC, ALB 90/10 blue/green, ECS services, DB); no tests itself."""

    SCENARIO = TEST_SCENARIO  # TOML text, or a scenario name
    ARGS = ()  # more stage.py arguments

    @classmethod
    def setUpClass(cls):
        scenario, cls.scenario_file = cls.SCENARIO, None
        if "\n" in scenario:
            cls.scenario_file = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
            cls.scenario_file.write(scenario)
            cls.scenario_file.close()
            scenario = cls.scenario_file.name
        cls.proc, cls.url, cls.ready_s = start_stage("--scenario", scenario, "--tick", "0.2", *cls.ARGS)
        print(f"\nstage ready in {cls.ready_s:.2f}s at {cls.url}", file=sys.stderr)
        # LocalStack's first EC2 call loads moto's EC2 data: minutes on a busy machine.
        cfg = Config(region_name="us-east-1", retries={"mode": "standard", "total_max_attempts": 1}, s3={"addressing_style": "path"},
                     read_timeout=300 if ON_LOCALSTACK else 60)
        kw = dict(endpoint_url=cls.url, aws_access_key_id="test", aws_secret_access_key="test", config=cfg)
        cls.ec2, cls.ecs, cls.elb, cls.rds, cls.logs, cls.cw, cls.s3 = (
            boto3.client(s, **kw) for s in ("ec2", "ecs", "elbv2", "rds", "logs", "cloudwatch", "s3"))
        cls.build_world()

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        rc = cls.proc.wait(timeout=60 if ON_LOCALSTACK else 10)  # LocalStack stops its services one by one
        err = stage_stderr(cls.proc)
        cls.proc.stdout.close()
        cls.proc.errfile.close()
        if "Traceback" in err:  # moto 500s and stagehand errors show up here
            print(f"--- stage stderr ---\n{err}", file=sys.stderr)
        if cls.scenario_file:
            os.unlink(cls.scenario_file.name)
        assert rc == 0, f"stage exited {rc} on SIGTERM"

    # --- helpers -----------------------------------------------------------------------------

    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req) as resp:
            return json.loads(resp.read())

    def collect_ticks(self, seconds):
        """{(group, tick time): (RequestCount, HTTPCode_Target_5XX_Count)} from /_stage/state, polled."""
        ticks = {}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for name, tg in self.control("GET", "/_stage/state")["target_groups"].items():
                m = tg["last_metrics"]
                if m:
                    ticks[(name, m["at_s"])] = (m["RequestCount"], m["HTTPCode_Target_5XX_Count"])
            time.sleep(0.1)
        return ticks

    @classmethod
    def build_world(cls):
        ec2, ecs, elb = cls.ec2, cls.ecs, cls.elb
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
                   for i, az in ((1, "a"), (2, "b"))]
        sg = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
        cls.tg = {}
        for colour in ("blue", "green"):
            arn = elb.create_target_group(Name=f"shop-{colour}", Protocol="HTTP", Port=8080, VpcId=vpc,
                                          TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
            elb.add_tags(ResourceArns=[arn], Tags=[{"Key": "glidepath:colour", "Value": colour}])
            cls.tg[colour] = arn
        lb = elb.create_load_balancer(Name="shop", Subnets=subnets, SecurityGroups=[sg])["LoadBalancers"][0]
        cls.lb_arn = lb["LoadBalancerArn"]
        cls.listener = elb.create_listener(
            LoadBalancerArn=cls.lb_arn, Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": cls.tg["blue"], "Weight": 90},
                {"TargetGroupArn": cls.tg["green"], "Weight": 10}]}}])["Listeners"][0]["ListenerArn"]

        ecs.create_cluster(clusterName="shop")
        cls.task_def = staticmethod(lambda image: ecs.register_task_definition(
            family="shop-web", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
            containerDefinitions=[{"name": "web", "image": image, "essential": True,
                                   "portMappings": [{"containerPort": 8080}],
                                   "logConfiguration": {"logDriver": "awslogs", "options": {
                                       "awslogs-group": "/shop/web", "awslogs-region": "us-east-1",
                                       "awslogs-stream-prefix": "migrate"}}}])["taskDefinition"]["taskDefinitionArn"])
        cls.td1 = cls.task_def("shop:1")
        cls.net = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [sg], "assignPublicIp": "DISABLED"}}
        for colour in ("blue", "green"):
            ecs.create_service(cluster="shop", serviceName=f"shop-{colour}", taskDefinition=cls.td1, desiredCount=2,
                               launchType="FARGATE", networkConfiguration=cls.net,
                               loadBalancers=[{"targetGroupArn": cls.tg[colour], "containerName": "web", "containerPort": 8080}])
        cls.rds.create_db_instance(DBInstanceIdentifier="shop-db", DBInstanceClass="db.t3.micro", Engine="postgres",
                                   MasterUsername="shop", MasterUserPassword="password123", AllocatedStorage=20)

    def service(self, colour):
        return self.ecs.describe_services(cluster="shop", services=[f"shop-{colour}"])["services"][0]

    def health(self, colour):
        return [d["TargetHealth"]["State"] for d in self.elb.describe_target_health(TargetGroupArn=self.tg[colour])["TargetHealthDescriptions"]]

    def metric(self, colour, name, stat, minutes=5):
        dims = [{"Name": "TargetGroup", "Value": self.tg[colour].split(":")[-1]},
                {"Name": "LoadBalancer", "Value": self.lb_arn.split(":loadbalancer/")[1]}]
        now = datetime.now(timezone.utc)
        res = self.cw.get_metric_data(StartTime=now - timedelta(minutes=minutes), EndTime=now + timedelta(minutes=1),
                                      MetricDataQueries=[{"Id": "q", "MetricStat": {"Metric": {
                                          "Namespace": "AWS/ApplicationELB", "MetricName": name, "Dimensions": dims},
                                          "Period": 3600, "Stat": stat}}])
        values = res["MetricDataResults"][0]["Values"]
        return values[0] if values else None


class StageTest(World):
    # --- tests (numbered: they share one world and run in order) ------------------------------

    def test_00_ready_and_healthy(self):
        # How fast it starts is a figure for scripts/bench-engines, not a test: a loaded
        # machine must not fail it. The start-up itself is printed above.
        self.assertGreater(self.ready_s, 0.0)
        self.assertEqual(self.control("GET", "/_stage/health"), {"ok": True})

    def test_01_services_reach_steady_state(self):
        # LocalStack's moto leaves rolloutState out until the stagehand sets it.
        def done():
            s = self.service("blue")
            return s["deployments"][0].get("rolloutState") == "COMPLETED" and s["runningCount"] == 2 and s
        s = wait_for("blue COMPLETED", done)
        self.assertEqual(len(s["deployments"]), 1)
        wait_for("green COMPLETED", lambda: self.service("green")["deployments"][0].get("rolloutState") == "COMPLETED")
        for colour in ("blue", "green"):
            self.assertEqual(self.health(colour), ["healthy", "healthy"])

    def test_02_update_service_rolls_a_new_deployment(self):
        td2 = self.task_def("shop:2")
        before = {d["Target"]["Id"] for d in self.elb.describe_target_health(TargetGroupArn=self.tg["green"])["TargetHealthDescriptions"]}
        s = self.ecs.update_service(cluster="shop", service="shop-green", taskDefinition=td2, desiredCount=3)["service"]
        self.assertEqual(s["deployments"][0]["rolloutState"], "IN_PROGRESS")
        self.assertEqual(s["deployments"][0]["taskDefinition"], td2)
        self.assertEqual(len(s["deployments"]), 2)
        wait_for("green v2 COMPLETED", lambda: self.service("green")["deployments"][0]["rolloutState"] == "COMPLETED")
        s = self.service("green")
        self.assertEqual((s["runningCount"], s["taskDefinition"], len(s["deployments"])), (3, td2, 1))
        after = {d["Target"]["Id"] for d in self.elb.describe_target_health(TargetGroupArn=self.tg["green"])["TargetHealthDescriptions"]}
        self.assertEqual(len(after), 3)
        self.assertFalse(before & after, "old targets must be deregistered")

    def test_03_migration_task_stops_with_exit_code_and_logs(self):
        task = self.ecs.run_task(cluster="shop", taskDefinition=self.td1, launchType="FARGATE",
                                 networkConfiguration=self.net, startedBy="release-r1")["tasks"][0]
        arn, task_id = task["taskArn"], task["taskArn"].split("/")[-1]
        self.assertEqual(self.ecs.describe_tasks(cluster="shop", tasks=[arn])["tasks"][0]["lastStatus"], "RUNNING")
        t = wait_for("task STOPPED", lambda: (x := self.ecs.describe_tasks(cluster="shop", tasks=[arn])["tasks"][0])["lastStatus"] == "STOPPED" and x)
        self.assertEqual(t["containers"][0]["exitCode"], 3)
        self.assertEqual(t["stoppedReason"], "Essential container in task exited")
        events = self.logs.get_log_events(logGroupName="/shop/web", logStreamName=f"migrate/web/{task_id}")["events"]
        self.assertEqual([e["message"] for e in events], ["Running migrations...", "boom", "Migration failed."])

    def test_03a_a_run_task_is_not_listed_as_a_service_s(self):
        """ListTasks by serviceName lists only that service's tasks, as AWS does (moto lists all)."""
        arn = self.ecs.run_task(cluster="shop", taskDefinition=self.td1, launchType="FARGATE",
                                networkConfiguration=self.net, startedBy="release-r2")["tasks"][0]["taskArn"]
        self.assertIn(arn, self.ecs.list_tasks(cluster="shop", startedBy="release-r2")["taskArns"])
        for colour in ("blue", "green"):
            self.assertNotIn(arn, self.ecs.list_tasks(cluster="shop", serviceName=f"shop-{colour}")["taskArns"])

    def test_03b_migration_exit_fault_matches_the_task_s_shard(self):
        """A migration_exit fault changes only the tasks whose SHARD it names, while active."""
        self.control("DELETE", "/_stage/fault")
        fault = self.control("POST", "/_stage/fault", {"kind": "migration_exit", "shard": "b", "exit_code": 7})
        self.assertEqual(fault["fault"], {"kind": "migration_exit", "colour": "green", "start_after_s": 0.0,
                                          "shard": "b", "exit_code": 7})

        def run(shard):
            overrides = {"containerOverrides": [{"name": "web", "environment": [{"name": "SHARD", "value": shard}]}]}
            arn = self.ecs.run_task(cluster="shop", taskDefinition=self.td1, launchType="FARGATE",
                                    networkConfiguration=self.net, startedBy=f"shard-{shard}",
                                    overrides=overrides)["tasks"][0]["taskArn"]
            t = wait_for("task STOPPED", lambda: (x := self.ecs.describe_tasks(cluster="shop", tasks=[arn])["tasks"][0])["lastStatus"] == "STOPPED" and x)
            return arn, t["containers"][0]["exitCode"]

        (a_arn, a_exit), (b_arn, b_exit) = run("a"), run("b")
        self.assertEqual((a_exit, b_exit), (3, 7), "only shard b meets the fault; a gets the scenario's code")
        tasks = {t["task_arn"]: t for t in self.control("GET", "/_stage/state")["migration_tasks"]}
        self.assertEqual((tasks[a_arn]["shard"], tasks[b_arn]["shard"]), ("a", "b"))
        self.assertEqual(tasks[b_arn]["started_by"], "shard-b")
        self.control("DELETE", "/_stage/fault")
        self.assertEqual(run("b")[1], 3, "cleared: shard b runs as the scenario says")

    def test_04_snapshot_takes_time(self):
        snap = self.rds.create_db_snapshot(DBInstanceIdentifier="shop-db", DBSnapshotIdentifier="shop-db-r1")["DBSnapshot"]
        self.assertEqual(snap["Status"], "creating")
        time.sleep(0.6)
        mid = self.rds.describe_db_snapshots(DBSnapshotIdentifier="shop-db-r1")["DBSnapshots"][0]
        self.assertEqual(mid["Status"], "creating")
        self.assertGreater(mid["PercentProgress"], 0)
        wait_for("snapshot available", lambda: self.rds.describe_db_snapshots(DBSnapshotIdentifier="shop-db-r1")["DBSnapshots"][0]["Status"] == "available")

    def test_04b_restore_takes_time_and_leaves_the_source_alone(self):
        wait_for("snapshot available", lambda: self.rds.describe_db_snapshots(DBSnapshotIdentifier="shop-db-r1")["DBSnapshots"][0]["Status"] == "available")
        live_before = self.rds.describe_db_instances(DBInstanceIdentifier="shop-db")["DBInstances"][0]
        db = self.rds.restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier="shop-db-restore-r1", DBSnapshotIdentifier="shop-db-r1",
            Tags=[{"Key": "glidepath:restored-from", "Value": "shop-db-r1"}])["DBInstance"]
        self.assertEqual(db["DBInstanceStatus"], "creating")
        time.sleep(0.6)
        new = lambda: self.rds.describe_db_instances(DBInstanceIdentifier="shop-db-restore-r1")["DBInstances"][0]
        self.assertEqual(new()["DBInstanceStatus"], "creating")
        wait_for("restored instance available", lambda: new()["DBInstanceStatus"] == "available", timeout=10)
        self.assertNotEqual(new()["Endpoint"]["Address"], live_before["Endpoint"]["Address"])
        tags = self.rds.list_tags_for_resource(ResourceName=new()["DBInstanceArn"])["TagList"]
        self.assertIn({"Key": "glidepath:restored-from", "Value": "shop-db-r1"}, tags)
        live_after = self.rds.describe_db_instances(DBInstanceIdentifier="shop-db")["DBInstances"][0]
        for key in ("DBInstanceStatus", "Endpoint", "DBInstanceIdentifier"):
            self.assertEqual(live_after[key], live_before[key], key)
        with self.assertRaises(self.rds.exceptions.DBInstanceAlreadyExistsFault):
            self.rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="shop-db-restore-r1", DBSnapshotIdentifier="shop-db-r1")

    def test_04c_snapshots_are_listed_with_tags_and_deleted(self):
        self.rds.create_db_snapshot(DBInstanceIdentifier="shop-db", DBSnapshotIdentifier="shop-db-r2",
                                    Tags=[{"Key": "glidepath:release", "Value": "r2"}])
        listed = self.rds.describe_db_snapshots(DBInstanceIdentifier="shop-db", SnapshotType="manual")["DBSnapshots"]
        by_id = {s["DBSnapshotIdentifier"]: s for s in listed}
        self.assertIn("shop-db-r1", by_id)
        self.assertIn({"Key": "glidepath:release", "Value": "r2"}, by_id["shop-db-r2"]["TagList"])
        self.rds.delete_db_snapshot(DBSnapshotIdentifier="shop-db-r2")
        with self.assertRaises(self.rds.exceptions.DBSnapshotNotFoundFault):
            self.rds.describe_db_snapshots(DBSnapshotIdentifier="shop-db-r2")

    def test_04d_cluster_restore_takes_time(self):
        self.rds.create_db_cluster(DBClusterIdentifier="shop-aurora", Engine="aurora-postgresql",
                                   MasterUsername="shop", MasterUserPassword="password123")
        self.rds.create_db_cluster_snapshot(DBClusterIdentifier="shop-aurora", DBClusterSnapshotIdentifier="shop-aurora-r1")
        snap = lambda: self.rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="shop-aurora-r1")["DBClusterSnapshots"][0]
        wait_for("cluster snapshot available", lambda: snap()["Status"] == "available")
        c = self.rds.restore_db_cluster_from_snapshot(DBClusterIdentifier="shop-aurora-restore-r1",
                                                      SnapshotIdentifier="shop-aurora-r1", Engine="aurora-postgresql")["DBCluster"]
        self.assertEqual(c["Status"], "creating")
        new = lambda: self.rds.describe_db_clusters(DBClusterIdentifier="shop-aurora-restore-r1")["DBClusters"][0]
        time.sleep(0.6)
        self.assertEqual(new()["Status"], "creating")
        self.assertEqual(new()["Status"], "creating", "a read must not make it available")
        wait_for("restored cluster available", lambda: new()["Status"] == "available", timeout=10)
        self.assertEqual(self.rds.describe_db_clusters(DBClusterIdentifier="shop-aurora")["DBClusters"][0]["Status"], "available")

    @boto3_cloudwatch
    def test_05_metrics_follow_weights(self):
        time.sleep(1.0)
        blue, green = self.metric("blue", "RequestCount", "Sum"), self.metric("green", "RequestCount", "Sum")
        self.assertTrue(blue and green, (blue, green))
        self.assertAlmostEqual(green / (blue + green), 0.10, delta=0.02)
        p95_blue, p95_green = self.metric("blue", "TargetResponseTime", "p95"), self.metric("green", "TargetResponseTime", "p95")
        avg_green = self.metric("green", "TargetResponseTime", "Average")
        self.assertTrue(0.08 < p95_blue < 0.2 and 0.2 < p95_green < 0.5, (p95_blue, p95_green))
        self.assertAlmostEqual(avg_green, 0.2, delta=0.04)
        state = self.control("GET", "/_stage/state")
        self.assertEqual(state["target_groups"]["shop-blue"]["percent"], 90.0)
        self.assertEqual(state["target_groups"]["shop-green"]["colour"], "green")

    def test_06_control_fault_makes_green_unhealthy(self):
        self.control("POST", "/_stage/fault", {"kind": "unhealthy", "colour": "green"})
        self.assertEqual(set(self.health("green")), {"unhealthy"})
        self.assertEqual(set(self.health("blue")), {"healthy"})
        reason = self.elb.describe_target_health(TargetGroupArn=self.tg["green"])["TargetHealthDescriptions"][0]["TargetHealth"]["Reason"]
        self.assertEqual(reason, "Target.ResponseCodeMismatch")
        self.assertEqual(len(self.control("GET", "/_stage/state")["active_faults"]), 1)
        self.control("DELETE", "/_stage/fault")
        self.assertEqual(set(self.health("green")), {"healthy"})

    @boto3_cloudwatch
    def test_07_alarm_fault(self):
        self.cw.put_metric_alarm(AlarmName="shop-green-5xx", Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count",
                                 Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=10, ComparisonOperator="GreaterThanThreshold")
        self.control("POST", "/_stage/fault", {"kind": "alarm", "alarm": "shop-green-5xx"})
        state = lambda: self.cw.describe_alarms(AlarmNames=["shop-green-5xx"])["MetricAlarms"][0]["StateValue"]
        wait_for("ALARM", lambda: state() == "ALARM")
        self.control("DELETE", "/_stage/fault")
        self.assertEqual(state(), "OK")

    def test_08_weight_shift_and_5xx_fault(self):
        self.elb.modify_listener(ListenerArn=self.listener, DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": self.tg["blue"], "Weight": 0}, {"TargetGroupArn": self.tg["green"], "Weight": 100}]}}])
        self.control("POST", "/_stage/fault", {"kind": "5xx", "error_rate": 0.5, "when_weight_at_least": 50})
        time.sleep(0.5)
        tgs = self.control("GET", "/_stage/state")["target_groups"]
        self.assertEqual(tgs["shop-blue"]["last_metrics"]["RequestCount"], 0)
        ticks = self.collect_ticks(1.0)  # ~400 requests: a binomial 0.5 is within 0.1 of its mean
        green = [v for (name, _), v in ticks.items() if name == "shop-green"]
        self.assertAlmostEqual(sum(e for _, e in green) / sum(r for r, _ in green), 0.5, delta=0.1)
        self.control("DELETE", "/_stage/fault")

    def test_09_outage_and_counters(self):
        self.control("POST", "/_stage/reset-counters")
        self.ecs.list_clusters()
        self.control("POST", "/_stage/outage", {"seconds": 1})
        with self.assertRaises(ClientError) as err:
            self.ecs.list_clusters()
        self.assertEqual(err.exception.response["ResponseMetadata"]["HTTPStatusCode"], 503)
        time.sleep(1.1)
        self.ecs.list_clusters()
        self.s3.create_bucket(Bucket="shop-assets")
        self.elb.describe_listeners(ListenerArns=[self.listener])
        counts = self.control("GET", "/_stage/state")["requests"]
        self.assertEqual(counts.get("ecs:ListClusters"), 3)
        # LocalStack serves S3 itself, not through moto: the plugin neither counts nor fails it.
        self.assertEqual(counts.get("s3:CreateBucket"), None if ON_LOCALSTACK else 1)
        self.assertEqual(counts.get("elbv2:DescribeListeners"), 1)


@stagehand_only
class ScenarioTriggerTest(World):
    """The shipped green-5xx scenario: its fault waits for green to have >= 1% of the weight."""

    SCENARIO = "green-5xx"

    def test_fault_follows_weight(self):
        wait_for("fault active", lambda: self.control("GET", "/_stage/state")["active_faults"])
        # Until green's targets register, its requests are ELB 5xx; measure after that, per tick.
        wait_for("green targets", lambda: self.control("GET", "/_stage/state")["target_groups"]["shop-green"]["targets"])
        # Counts are random now: 50/50 gives each colour ~400 requests in 4 s, so green's rate
        # is within 0.1 of 0.3 by over 4 standard deviations.
        self.elb.modify_listener(ListenerArn=self.listener, DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": self.tg["blue"], "Weight": 50}, {"TargetGroupArn": self.tg["green"], "Weight": 50}]}}])
        ticks = self.collect_ticks(4.0)
        rate = {name: sum(e for (n, _), (_, e) in ticks.items() if n == name) /
                sum(r for (n, _), (r, _) in ticks.items() if n == name) for name in ("shop-blue", "shop-green")}
        self.assertAlmostEqual(rate["shop-green"], 0.3, delta=0.1)
        self.assertLess(rate["shop-blue"], 0.05)  # room for a blip on the live colour


@stagehand_only
class AlbTimingTest(World):
    """The running stage in ALB-like mode, sped up: 2 s periods published 1-2 s late."""

    SCENARIO = "[metrics]\nperiod_s = 2\npublish_delay_s = [1, 2]\n[traffic]\nweight_delay_s = 1\n"
    ARGS = ("--seed", "42")

    def test_periods_arrive_late_and_aligned(self):
        self.assertIn("stage seed 42\n", stage_stderr(self.proc))
        state = self.control("GET", "/_stage/state")
        self.assertEqual((state["seed"], state["metrics"]["mode"], state["weight_delay_s"]), (42, "alb", 1.0))
        dims = [{"Name": "TargetGroup", "Value": self.tg["blue"].split(":")[-1]},
                {"Name": "LoadBalancer", "Value": self.lb_arn.split(":loadbalancer/")[1]}]

        def periods():
            end = datetime.now(timezone.utc).replace(microsecond=0)
            end -= timedelta(seconds=end.second % 2)  # aligned windows: one period per bucket
            res = self.cw.get_metric_data(StartTime=end - timedelta(seconds=60), EndTime=end, MetricDataQueries=[{
                "Id": "q", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount",
                                                     "Dimensions": dims}, "Period": 2, "Stat": "Sum"}}])
            r = res["MetricDataResults"][0]
            return [(ts, v) for ts, v in zip(r["Timestamps"], r["Values"]) if v > 0]
        got = wait_for("a published period with traffic", periods, timeout=20)
        for ts, value in got:
            self.assertEqual(ts.timestamp() % 2, 0)
            # a whole period: 2 s of 90% of 400 rps, Poisson noise (the first may be partial)
            self.assertLess(value, 900)
            self.assertLess(datetime.now(timezone.utc) - ts, timedelta(seconds=60))
        blue = self.control("GET", "/_stage/state")["target_groups"]["shop-blue"]["metrics_periods"]
        self.assertEqual(blue["period_s"], 2)
        self.assertIsNotNone(blue["last_written"])


class BadInputTest(unittest.TestCase):
    def test_unknown_scenario(self):
        rc, err = run_stage_expecting_failure("--scenario", "nope")
        self.assertEqual(rc, 2)
        self.assertIn("known scenarios: ", err)
        self.assertIn("happy", err)

    def test_malformed_and_unknown_key(self):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write("[deploy]\nseconds = = 2\n")
        rc, err = run_stage_expecting_failure("--scenario", f.name)
        self.assertEqual(rc, 2)
        self.assertIn(f.name, err)
        self.assertIn("line 2", err)
        with open(f.name, "w") as g:
            g.write("[deploy]\nsecs = 2\n")
        rc, err = run_stage_expecting_failure("--scenario", f.name)
        self.assertEqual(rc, 2)
        self.assertIn("unknown key 'secs' in [deploy]", err)
        os.unlink(f.name)

    def test_port_in_use(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            rc, err = run_stage_expecting_failure("--port", str(port))
        self.assertEqual(rc, 2)
        self.assertEqual(err, f"stage: port {port} is in use; pick another with --port or stop what holds it")


# --- the traffic model in-process: moto's mock_aws, the clock driven by the test ---------------

TICK = 0.5
WALL0 = math.floor(time.time() / 60) * 60 - 900  # a whole minute, well inside prune's hour


@in_process
class NoiseTest(unittest.TestCase):
    def test_poisson_and_binomial_moments(self):
        import noise
        rng = random.Random(1)
        for draw, mean, var in (
            (lambda: noise.poisson(rng, 4.5), 4.5, 4.5),
            (lambda: noise.poisson(rng, 90), 90, 90),  # the normal branch
            (lambda: noise.binomial(rng, 80, 0.3), 24, 16.8),
            (lambda: noise.binomial(rng, 2000, 0.002), 4, 3.99),
            (lambda: noise.binomial(rng, 100, 0.9), 90, 9),
            (lambda: noise.binomial(rng, 400, 0.5), 200, 100),
        ):
            xs = [draw() for _ in range(4000)]
            self.assertAlmostEqual(statistics.fmean(xs), mean, delta=0.05 * mean + 0.1)
            self.assertAlmostEqual(statistics.variance(xs), var, delta=0.15 * var)
        self.assertEqual(noise.binomial(rng, 50, 0.0), 0)
        self.assertEqual(noise.binomial(rng, 50, 1.0), 50)
        self.assertEqual(noise.poisson(rng, 0.0), 0)


@in_process
class DrivenTest(unittest.TestCase):
    """A fresh moto world per test (ALB 90/10 blue/green, two targets each) and a Stagehand
    whose traffic ticks are called directly with a made-up clock: minutes play in milliseconds."""

    BASE = "[traffic]\nrps = 200\n[blips]\nevery_s = 0\n"

    def world(self, toml_text="", seed=1):
        from moto import mock_aws

        from scenario import parse
        from stagehand import Stagehand
        if getattr(self, "mock", None):  # a second world in one test starts from scratch
            self.mock.stop()
        else:
            self.addCleanup(lambda: self.mock.stop())
        self.mock = mock_aws()
        self.mock.start()
        sc = parse(tomllib.loads(toml_text), "driven")
        sc.seed = seed
        kw = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        ec2, elb = boto3.client("ec2", **kw), boto3.client("elbv2", **kw)
        self.cw = boto3.client("cloudwatch", **kw)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
                   for i, az in ((1, "a"), (2, "b"))]
        lb = elb.create_load_balancer(Name="shop", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
        self.tg = {}
        for n, colour in enumerate(("blue", "green")):
            arn = elb.create_target_group(Name=f"shop-{colour}", Protocol="HTTP", Port=8080, VpcId=vpc,
                                          TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
            elb.add_tags(ResourceArns=[arn], Tags=[{"Key": "glidepath:colour", "Value": colour}])
            elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": f"10.0.1.{10 * n + i}"} for i in (1, 2)])
            self.tg[colour] = arn
        self.elb, self.lb_dim = elb, lb.split(":loadbalancer/")[1]
        self.listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                                            DefaultActions=self.forward(90, 10))["Listeners"][0]["ListenerArn"]
        return Stagehand(sc, TICK, threading.RLock())

    def forward(self, blue, green):
        return [{"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": self.tg["blue"], "Weight": blue}, {"TargetGroupArn": self.tg["green"], "Weight": green}]}}]

    def play(self, hand, ticks, start=0.0, each=None):
        """Tick `ticks` times from clock `start` (wall = WALL0 + clock); return per tick
        (clock, {colour: last_metrics}); each(clock) runs after every tick."""
        out = []
        for i in range(ticks):
            clock = start + i * TICK
            hand.traffic.tick(TICK, clock, WALL0 + clock)
            out.append((clock, {c: dict(hand.traffic.meters[arn].last) for c, arn in self.tg.items()}))
            if each:
                each(clock)
        return out

    def series(self, colour, name, period, start, end, stat="Sum"):
        """{period start (Unix s): value} from GetMetricData, Period = period."""
        dims = [{"Name": "TargetGroup", "Value": self.tg[colour].split(":")[-1]},
                {"Name": "LoadBalancer", "Value": self.lb_dim}]
        res = self.cw.get_metric_data(
            StartTime=datetime.fromtimestamp(start, timezone.utc), EndTime=datetime.fromtimestamp(end, timezone.utc),
            MetricDataQueries=[{"Id": "q", "MetricStat": {"Metric": {
                "Namespace": "AWS/ApplicationELB", "MetricName": name, "Dimensions": dims},
                "Period": period, "Stat": stat}}])["MetricDataResults"][0]
        return {ts.timestamp(): v for ts, v in zip(res["Timestamps"], res["Values"])}

    def test_same_seed_same_numbers(self):
        runs = [self.play(self.world(self.BASE, seed), 40) for seed in (7, 7, 8)]
        self.assertEqual(runs[0], runs[1])
        self.assertNotEqual(runs[0], runs[2])

    def test_counts_are_poisson_and_binomial(self):
        hand = self.world(self.BASE + "[green]\nerror_rate = 0.1\n")
        run = self.play(hand, 600)
        blue = [m["blue"]["RequestCount"] for _, m in run]  # expected 200 * 0.5 * 0.9 = 90 per tick
        green = [m["green"]["RequestCount"] for _, m in run]  # 10 per tick
        for xs, mean in ((blue, 90), (green, 10)):
            self.assertAlmostEqual(statistics.fmean(xs), mean, delta=0.05 * mean)
            self.assertAlmostEqual(statistics.variance(xs), mean, delta=0.35 * mean)  # Poisson: variance = mean
        errors = [m["green"]["HTTPCode_Target_5XX_Count"] for _, m in run]
        self.assertAlmostEqual(sum(errors) / sum(green), 0.1, delta=0.02)
        self.assertGreater(statistics.variance(errors), 0.4)  # binomial(~10, 0.1): about 1

    def test_latencies_are_independent(self):
        hand = self.world(self.BASE)
        means = [m["blue"]["TargetResponseTime_avg_s"] for _, m in self.play(hand, 200)]
        self.assertAlmostEqual(statistics.fmean(means), 0.080, delta=0.004)
        # 30 independent draws, sigma 0.25: a tick's mean wanders by about 0.08 * 0.25 / sqrt(30)
        self.assertGreater(statistics.stdev(means), 0.002)
        self.assertLess(statistics.stdev(means), 0.006)

    def test_smooth_noise_is_today_s_exact_split(self):
        hand = self.world(self.BASE.replace("rps = 200", "rps = 200\nnoise = \"smooth\""))
        run = self.play(hand, 20)
        self.assertEqual({m["blue"]["RequestCount"] for _, m in run}, {90})
        self.assertEqual({m["green"]["RequestCount"] for _, m in run}, {10})

    def test_blips_only_on_the_live_colour(self):
        hand = self.world(self.BASE.replace("every_s = 0", "every_s = 5\nseconds = 1"))
        seen = set()
        self.play(hand, 200, each=lambda _c: seen.update(
            c for c, arn in self.tg.items() if hand.traffic.meters[arn].blip))
        self.assertEqual(seen, {"blue"})  # green has 10%: not live

    def test_alb_periods_publish_late_once(self):
        hand = self.world(self.BASE + "[metrics]\nperiod_s = 5\npublish_delay_s = [3, 6]\n")
        first_seen = {}  # period start -> (clock it became visible, value then)

        def look(clock):
            for start, value in self.series("blue", "RequestCount", 5, WALL0, WALL0 + 60).items():
                first_seen.setdefault(start, (clock, value))
                self.assertEqual(value, first_seen[start][1], "a period changed after it was published")
        run = self.play(hand, 80, each=look)  # 40 s of clock
        per_period = {}
        for clock, m in run:
            start = math.floor((WALL0 + clock) / 5) * 5
            per_period[start] = per_period.get(start, 0) + m["blue"]["RequestCount"]
        complete = [p for p in per_period if p + 5 + 6 <= WALL0 + run[-1][0]]
        self.assertGreaterEqual(len(complete), 5)
        for start in complete:
            seen_at, value = first_seen[start]
            self.assertEqual(value, per_period[start])  # one datapoint-sum: the whole period
            delay = WALL0 + seen_at - (start + 5)
            self.assertTrue(3 <= delay <= 6 + TICK, (start, delay))
        # Aligned windows, Period = period_s: one bucket per period, stamped with its start.
        self.assertTrue(all(start % 5 == 0 for start in first_seen))
        self.assertEqual(set(first_seen), {p for p in per_period if p in first_seen})
        state = hand.state()["target_groups"]["shop-blue"]["metrics_periods"]
        self.assertEqual(state["period_s"], 5)
        self.assertTrue(state["pending"] and state["last_written"])

    def test_alb_revise_adds_a_late_part(self):
        hand = self.world(self.BASE + "[metrics]\nperiod_s = 5\npublish_delay_s = 2\nrevise = true\n")
        history = {}  # period start -> distinct values seen, in order
        def look(_clock):
            for start, value in self.series("blue", "RequestCount", 5, WALL0, WALL0 + 60).items():
                if history.setdefault(start, [])[-1:] != [value]:
                    history[start].append(value)
        run = self.play(hand, 60, each=look)
        totals = {}
        for clock, m in run:
            start = math.floor((WALL0 + clock) / 5) * 5
            totals[start] = totals.get(start, 0) + m["blue"]["RequestCount"]
        revised = [s for s, vs in history.items() if len(vs) == 2]
        self.assertTrue(revised, history)
        for start in revised:
            first, final = history[start]
            self.assertLess(first, final)
            self.assertEqual(final, totals[start])

    def test_weight_change_applies_after_the_delay(self):
        hand = self.world(self.BASE.replace("rps = 200", "rps = 200\nweight_delay_s = 2"))
        self.play(hand, 4)  # clock 0 .. 1.5 at 90/10
        self.elb.modify_listener(ListenerArn=self.listener, DefaultActions=self.forward(0, 100))
        run = self.play(hand, 8, start=2.0)  # seen at 2.0: serves 0/100 from 4.0
        for clock, m in run:
            self.assertEqual(m["blue"]["RequestCount"] > 0, clock < 4.0, clock)
        state = hand.state()["target_groups"]
        self.assertEqual((state["shop-blue"]["percent"], state["shop-blue"]["serving_percent"]), (0.0, 0.0))


@in_process
class ScenarioKeysTest(unittest.TestCase):
    def test_defaults_and_alb_keys(self):
        from scenario import load, parse
        happy = load("happy")
        self.assertEqual((happy.metrics.mode, happy.metrics.period_s, happy.weight_delay_s, happy.noise),
                         ("fast", 1, 0.0, "random"))
        alb = parse(tomllib.loads("[metrics]\nperiod_s = 60\n"), "x")
        self.assertEqual((alb.metrics.mode, alb.metrics.publish_delay_s, alb.weight_delay_s), ("alb", (60.0, 150.0), 10.0))
        for name in ("happy-alb", "green-5xx-alb"):
            sc = load(name)
            self.assertEqual((sc.metrics.mode, sc.metrics.period_s, sc.metrics.publish_delay_s, sc.weight_delay_s),
                             ("alb", 5, (3.0, 8.0), 2.0))
        self.assertEqual(load("green-5xx-alb").faults[0].error_rate, 0.022)

    def test_a_fault_after_the_migration(self):
        """migration-breaks-live: blue's 5xx start only once a migration task exited 0."""
        from scenario import load
        from stagehand import Stagehand
        sc = load("migration-breaks-live")
        (fault,) = sc.faults
        self.assertEqual((fault.kind, fault.colour, fault.after_migration, fault.error_rate), ("5xx", "blue", True, 0.3))
        hand = Stagehand(sc, TICK, threading.RLock())
        hand.update_faults(100.0)
        self.assertEqual(hand.active(), [], "not before any migration")
        self.assertAlmostEqual(hand.effect("blue").error_rate, sc.blue.error_rate)
        hand.migration_finished(101.0, 1)
        self.assertEqual(hand.active(), [], "a failed migration changed nothing")
        hand.migration_finished(102.0, 0)
        self.assertEqual(hand.active(), [fault])
        self.assertEqual(hand.effect("blue").error_rate, 0.3)
        self.assertAlmostEqual(hand.effect("green").error_rate, sc.green.error_rate)

    def test_bad_values(self):
        from scenario import ScenarioError, parse
        for text, message in (
            ("[[faults]]\nkind = \"5xx\"\nafter_migration = 1\n", "after_migration must be true or false"),
            ("[metrics]\nperiod_s = 2.5\n", "whole number"),
            ("[metrics]\npublish_delay_s = [5, 1]\n", "publish_delay_s"),
            ("[traffic]\nnoise = \"loud\"\n", "noise"),
            ("[traffic]\nseed = -1\n", "seed"),
            ("[blips]\noften = 1\n", "unknown key 'often'"),
            ("[[faults]]\nkind = \"migration_exit\"\n", "needs exit_code"),
            ("[[faults]]\nkind = \"5xx\"\nshard = \"b\"\n", "belong to kind 'migration_exit'"),
            ("[[faults]]\nkind = \"rollout_fails\"\n", "needs service"),
            ("[[faults]]\nkind = \"5xx\"\nservice = \"shop-worker\"\n", "belongs to kind 'rollout_fails'"),
        ):
            with self.assertRaises(ScenarioError) as err:
                parse(tomllib.loads(text), "x")
            self.assertIn(message, str(err.exception))


if __name__ == "__main__":
    unittest.main()
