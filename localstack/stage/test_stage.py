"""Smoke test for the stage, driven with boto3 (the authoritative tests are the Rust ones).

    $(scripts/setup-stage)/bin/python localstack/stage/test_stage.py -v
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

STAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stage.py")

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
    proc = subprocess.Popen([sys.executable, STAGE, "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=errfile, text=True)
    proc.errfile = errfile
    line = proc.stdout.readline().strip()
    if not line.startswith("stage ready on "):
        proc.kill()
        raise RuntimeError(f"stage did not start: {line!r} {stage_stderr(proc)}")
    return proc, line.removeprefix("stage ready on "), time.monotonic() - t0


def stage_stderr(proc) -> str:
    proc.errfile.seek(0)
    return proc.errfile.read()


def run_stage_expecting_failure(*args):
    proc = subprocess.run([sys.executable, STAGE, *args], capture_output=True, text=True, timeout=30)
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

    @classmethod
    def setUpClass(cls):
        scenario, cls.scenario_file = cls.SCENARIO, None
        if "\n" in scenario:
            cls.scenario_file = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
            cls.scenario_file.write(scenario)
            cls.scenario_file.close()
            scenario = cls.scenario_file.name
        cls.proc, cls.url, cls.ready_s = start_stage("--scenario", scenario, "--tick", "0.2")
        print(f"\nstage ready in {cls.ready_s:.2f}s at {cls.url}", file=sys.stderr)
        cfg = Config(region_name="us-east-1", retries={"mode": "standard", "total_max_attempts": 1}, s3={"addressing_style": "path"})
        kw = dict(endpoint_url=cls.url, aws_access_key_id="test", aws_secret_access_key="test", config=cfg)
        cls.ec2, cls.ecs, cls.elb, cls.rds, cls.logs, cls.cw, cls.s3 = (
            boto3.client(s, **kw) for s in ("ec2", "ecs", "elbv2", "rds", "logs", "cloudwatch", "s3"))
        cls.build_world()

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        rc = cls.proc.wait(timeout=10)
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

    def test_00_ready_fast(self):
        self.assertLess(self.ready_s, 5.0)
        self.assertEqual(self.control("GET", "/_stage/health"), {"ok": True})

    def test_01_services_reach_steady_state(self):
        def done():
            s = self.service("blue")
            return s["deployments"][0]["rolloutState"] == "COMPLETED" and s["runningCount"] == 2 and s
        s = wait_for("blue COMPLETED", done)
        self.assertEqual(len(s["deployments"]), 1)
        wait_for("green COMPLETED", lambda: self.service("green")["deployments"][0]["rolloutState"] == "COMPLETED")
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

    def test_04_snapshot_takes_time(self):
        snap = self.rds.create_db_snapshot(DBInstanceIdentifier="shop-db", DBSnapshotIdentifier="shop-db-r1")["DBSnapshot"]
        self.assertEqual(snap["Status"], "creating")
        time.sleep(0.6)
        mid = self.rds.describe_db_snapshots(DBSnapshotIdentifier="shop-db-r1")["DBSnapshots"][0]
        self.assertEqual(mid["Status"], "creating")
        self.assertGreater(mid["PercentProgress"], 0)
        wait_for("snapshot available", lambda: self.rds.describe_db_snapshots(DBSnapshotIdentifier="shop-db-r1")["DBSnapshots"][0]["Status"] == "available")

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
        last = tgs["shop-green"]["last_metrics"]
        self.assertAlmostEqual(last["HTTPCode_Target_5XX_Count"] / last["RequestCount"], 0.5, delta=0.1)
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
        self.assertEqual(counts.get("s3:CreateBucket"), 1)
        self.assertEqual(counts.get("elbv2:DescribeListeners"), 1)


class ScenarioTriggerTest(World):
    """The shipped green-5xx scenario: its fault waits for green to have >= 1% of the weight."""

    SCENARIO = "green-5xx"

    def test_fault_follows_weight(self):
        wait_for("fault active", lambda: self.control("GET", "/_stage/state")["active_faults"])
        # Until green's targets register, its requests are ELB 5xx; measure after that, per tick.
        wait_for("green targets", lambda: self.control("GET", "/_stage/state")["target_groups"]["shop-green"]["targets"])
        ticks = {}
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            tgs = self.control("GET", "/_stage/state")["target_groups"]
            for name in ("shop-blue", "shop-green"):
                m = tgs[name]["last_metrics"]
                ticks[(name, m["at_s"])] = (m["RequestCount"], m["HTTPCode_Target_5XX_Count"])
            time.sleep(0.1)
        rate = {name: sum(e for (n, _), (_, e) in ticks.items() if n == name) /
                sum(r for (n, _), (r, _) in ticks.items() if n == name) for name in ("shop-blue", "shop-green")}
        self.assertAlmostEqual(rate["shop-green"], 0.3, delta=0.05)
        self.assertLess(rate["shop-blue"], 0.02)


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


if __name__ == "__main__":
    unittest.main()
