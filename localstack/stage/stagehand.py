"""The stagehand: plays, on a tick, the parts of AWS that moto leaves static.

- ECS service deployments go IN_PROGRESS -> COMPLETED after deploy.seconds; their "tasks" get
  fake IPs registered in the service's target groups (old ones deregistered). A rollout_fails
  fault makes a service's deployment onto a new task definition end FAILED instead (the
  circuit breaker): its old tasks keep running.
- RunTask tasks (migrations) run for migration.seconds, write the scenario's log lines to the
  task definition's awslogs group/stream, then stop with migration.exit_code (or a
  migration_exit fault's, matched on the task's SHARD environment value).
- RDS snapshots stay "creating" with rising PercentProgress for snapshot.seconds.
- Faults switch on by stage clock, by the colour's listener weight and/or once a migration
  task exited 0 (a schema change that breaks the running version); they bend target
  health, the traffic metrics (traffic.py) and alarm states.

Every method here runs under the world lock (the tick takes it; patched moto calls already
hold it), so moto's dicts never change under our feet.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

from moto.cloudwatch.models import cloudwatch_backends
from moto.elbv2.models import elbv2_backends
from moto.logs.models import logs_backends
from moto.moto_api._internal import mock_random

from scenario import Fault, Scenario
from traffic import Traffic
from world import live_backends, now_utc, tg_colour


@dataclass
class FaultPlay:
    fault: Fault
    source: str  # "scenario" or "control"
    armed_at: float  # start_after_s counts from here (0 for scenario faults)
    active_since: float | None = None
    ended: bool = False

    def to_json(self) -> dict:
        return {**self.fault.to_json(), "source": self.source, "active": self.active_since is not None and not self.ended,
                "active_since_s": None if self.active_since is None else round(self.active_since, 3), "ended": self.ended}


@dataclass
class Effect:
    """How a colour behaves right now: its scenario profile bent by active faults."""

    error_rate: float
    elb_error_rate: float
    latency_ms: float
    unhealthy: bool


@dataclass
class ServicePlay:
    backend: object
    service: object
    changed_at: float
    ips: list[str] = field(default_factory=list)
    created_td: str | None = None  # what it ran when created: a rollout_fails fault spares it


@dataclass
class TaskPlay:
    backend: object
    task: object
    started_at: float
    lines_written: int = 0
    done: bool = False


def task_shard(task) -> str | None:
    """SHARD from the task's container overrides (RunTask's environment), if any."""
    overrides = getattr(task, "overrides", None) or {}
    for c in overrides.get("containerOverrides") or []:
        for kv in c.get("environment") or []:
            if kv.get("name") == "SHARD":
                return kv.get("value")
    return None


def _status_is_property(db) -> bool:
    """A moto DBCluster computes its status (patches.py answers "creating" for it while it
    is restored); a DBInstance stores it."""
    return isinstance(getattr(type(db), "status", None), property)


class Stagehand:
    def __init__(self, scenario: Scenario, tick_s: float, world_lock: threading.RLock):
        self.scenario = scenario
        self.tick_s = tick_s
        self.lock = world_lock
        self.t0 = time.monotonic()
        self.faults = [FaultPlay(f, "scenario", 0.0) for f in scenario.faults]
        self.services: dict[int, ServicePlay] = {}  # id(moto Service) -> play
        self.tasks: dict[int, TaskPlay] = {}
        self.snapshots: dict[int, tuple[object, float]] = {}
        self.restores: dict[int, tuple[object, float]] = {}  # databases restored from a snapshot
        self.traffic = Traffic(self)
        self.next_ip = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, name="stagehand", daemon=True)
        self.errors_seen: set[str] = set()
        self.last_prune = 0.0
        self.migrated_at: float | None = None  # stage clock when a migration task first exited 0

    def clock(self) -> float:
        return time.monotonic() - self.t0

    # --- the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)

    def run(self) -> None:
        while not self.stop_event.wait(self.tick_s):
            with self.lock:
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - one odd resource must not stop the show
                    text = traceback.format_exc()
                    if text not in self.errors_seen:  # say each distinct problem once
                        self.errors_seen.add(text)
                        print(f"stagehand: tick failed (continuing):\n{text}", file=sys.stderr, flush=True)

    def tick(self) -> None:
        clock = self.clock()
        self.update_faults(clock)
        for play in list(self.services.values()):
            self.tick_service(play, clock)
        for play in list(self.tasks.values()):
            if not play.done:
                self.tick_task(play, clock)
        self.tick_snapshots(clock)
        self.tick_restores(clock)
        self.tick_alarms()
        self.traffic.tick(self.tick_s, clock)
        if clock - self.last_prune > 60:
            self.last_prune = clock
            self.traffic.prune()

    # --- faults --------------------------------------------------------------------------------

    def colour_percent(self, colour: str) -> float:
        """Highest forward weight (percent) any target group of this colour is served with in any rule."""
        best = 0.0
        for elb, _lb, groups in self.traffic.forwarding_rules(self.clock()):
            for tg, _w, _percent, serving in groups:  # the data plane's split: when traffic arrives
                if tg_colour(elb, tg) == colour:
                    best = max(best, serving)
        return best

    def update_faults(self, clock: float) -> None:
        for play in self.faults:
            f = play.fault
            if play.ended:
                continue
            if play.active_since is None:
                due = clock >= play.armed_at + f.start_after_s
                weighted = f.when_weight_at_least is None or self.colour_percent(f.colour) >= f.when_weight_at_least
                migrated = not f.after_migration or self.migrated_at is not None
                if due and weighted and migrated:
                    play.active_since = clock
            elif f.duration_s is not None and clock >= play.active_since + f.duration_s:
                self.end_fault(play)

    def active(self, colour: str | None = None):
        return [p.fault for p in self.faults if p.active_since is not None and not p.ended
                and (colour is None or p.fault.colour == colour)]

    def inject(self, fault: Fault) -> None:
        self.faults.append(FaultPlay(fault, "control", self.clock()))
        self.update_faults(self.clock())  # "now" means visible to the very next request

    def clear_faults(self) -> int:
        live = [p for p in self.faults if not p.ended]
        for play in live:
            self.end_fault(play)
        return len(live)

    def end_fault(self, play: FaultPlay) -> None:
        was_active = play.active_since is not None
        play.ended = True
        if was_active and play.fault.kind == "alarm":
            self.set_alarm(play.fault.alarm, "OK", "Stage fault cleared")

    def effect(self, colour: str | None) -> Effect:
        profile = self.scenario.green if colour == "green" else self.scenario.blue
        e = Effect(profile.error_rate, 0.0, profile.latency_ms, False)
        if colour is None:  # untagged target groups play blue and never fault
            return e
        for f in self.active(colour):
            if f.error_rate is not None:
                e.error_rate = max(e.error_rate, f.error_rate)
            if f.elb_error_rate is not None:
                e.elb_error_rate = max(e.elb_error_rate, f.elb_error_rate)
            if f.latency_ms is not None:
                e.latency_ms = max(e.latency_ms, f.latency_ms)
            if f.kind == "unhealthy":
                e.unhealthy = True
        return e

    def is_unhealthy(self, tg) -> bool:
        elb = elbv2_backends[tg.account_id][tg.region_name]
        return self.effect(tg_colour(elb, tg)).unhealthy

    # --- alarms --------------------------------------------------------------------------------

    def set_alarm(self, name: str, state: str, reason: str) -> None:
        for cw in live_backends(cloudwatch_backends):
            alarm = cw.alarms.get(name)
            if alarm is not None and alarm.state_value != state:
                cw.set_alarm_state(name, reason, json.dumps({"stage": True}), state)

    def tick_alarms(self) -> None:
        # Re-asserted every tick: the alarm may be created after the fault fires.
        for f in self.active():
            if f.kind == "alarm":
                self.set_alarm(f.alarm, "ALARM", f"Stage fault: alarm {f.alarm} fired")

    # --- ECS services ----------------------------------------------------------------------------

    def on_service_created(self, backend, service) -> None:
        td = service.task_definition
        try:
            td = backend.describe_task_definition(td).arn if td else td
        except Exception:  # noqa: BLE001 - moto refused it already; keep it as spelled
            pass
        self.services[id(service)] = ServicePlay(backend, service, self.clock(), created_td=td)
        # LocalStack's moto leaves a new service's deployment without a rolloutState; AWS (and
        # moto 5.2) start it IN_PROGRESS, and the tick completes it after deploy.seconds.
        for primary in service.deployments[:1]:
            primary.setdefault("rolloutState", "IN_PROGRESS")

    def rollout_fails(self, play: ServicePlay, td: str | None) -> bool:
        return td != play.created_td and any(
            f.kind == "rollout_fails" and f.service == play.service.name for f in self.active())

    def on_service_updated(self, backend, service, before_td, before_desired, force) -> None:
        play = self.services.get(id(service))
        if play is None:
            play = self.services[id(service)] = ServicePlay(backend, service, self.clock())
        # moto stores the task definition as the caller spelled it ("family:3"); AWS says the ARN.
        if service.task_definition:
            service.task_definition = backend.describe_task_definition(service.task_definition).arn
        # moto jumps runningCount to desiredCount at once; the tick brings it there in time.
        service.running_count = len(play.ips)
        service.pending_count = max(0, service.desired_count - service.running_count)
        new_rollout = force or (before_td is not None and service.task_definition != before_td)
        if new_rollout or service.desired_count != before_desired:
            play.changed_at = self.clock()
        if not service.deployments:  # CODE_DEPLOY/EXTERNAL controllers: nothing to roll
            return
        primary = service.deployments[0]
        now = now_utc()
        if new_rollout:
            old = dict(primary, status="ACTIVE", updatedAt=now)
            dep_id = f"ecs-svc/{mock_random.randint(0, 32**12)}"
            new = dict(primary, id=dep_id, status="PRIMARY", taskDefinition=service.task_definition,
                       desiredCount=service.desired_count, pendingCount=service.desired_count,
                       runningCount=0, failedTasks=0, rolloutState="IN_PROGRESS",
                       rolloutStateReason=f"ECS deployment {dep_id} in progress.", createdAt=now, updatedAt=now)
            service.deployments = [new, old]
        else:
            primary.update(desiredCount=service.desired_count, updatedAt=now,
                           pendingCount=max(0, service.desired_count - primary.get("runningCount", 0)))

    def tick_service(self, play: ServicePlay, clock: float) -> None:
        service = play.service
        if service.status != "ACTIVE":
            if play.ips:
                self.set_service_tasks(play, 0, replace=True)
            return
        due = clock - play.changed_at >= self.scenario.deploy_seconds
        primary = service.deployments[0] if service.deployments else None
        if primary is not None and primary.get("rolloutState") == "IN_PROGRESS":
            if due and self.rollout_fails(play, primary.get("taskDefinition")):
                primary.update(runningCount=0, pendingCount=0, failedTasks=service.desired_count,
                               rolloutState="FAILED", updatedAt=now_utc(),
                               rolloutStateReason="ECS deployment circuit breaker: tasks failed to start.")
                service.events.insert(0, {"id": str(mock_random.uuid4()), "createdAt": now_utc(),
                                          "message": f"(service {service.name}) deployment failed: tasks failed to start."})
            elif due:
                self.set_service_tasks(play, service.desired_count, replace=True)
                primary.update(runningCount=service.desired_count, pendingCount=0, rolloutState="COMPLETED",
                               rolloutStateReason=f"ECS deployment {primary['id']} completed.", updatedAt=now_utc())
                service.deployments = [primary]
                service.events.insert(0, {"id": str(mock_random.uuid4()), "createdAt": now_utc(),
                                          "message": f"(service {service.name}) has reached a steady state."})
        elif len(play.ips) != service.desired_count and due:
            self.set_service_tasks(play, service.desired_count, replace=False)
            if primary is not None:
                primary.update(runningCount=service.desired_count, pendingCount=0, updatedAt=now_utc())
        service.running_count = len(play.ips)
        service.pending_count = max(0, service.desired_count - service.running_count)

    def allocate_ip(self) -> str:
        n = self.next_ip
        self.next_ip += 1
        return f"10.0.{1 + (n // 250) % 254}.{2 + n % 250}"

    def service_targets(self, play: ServicePlay):
        """(target group, port) for each of the service's loadBalancers entries."""
        service = play.service
        elb = elbv2_backends[service._account_id][service.region_name]
        out = []
        for entry in service.load_balancers or []:
            tg = elb.target_groups.get(entry.get("targetGroupArn"))
            if tg is None:
                continue
            port = entry.get("containerPort") or self.task_port(play) or tg.port
            out.append((tg, int(port)))
        return out

    def task_port(self, play: ServicePlay):
        try:
            td = play.backend.describe_task_definition(play.service.task_definition)
            mappings = td.container_definitions[0].get("portMappings") or []
            return mappings[0].get("containerPort") if mappings else None
        except Exception:  # noqa: BLE001 - no port in the task definition: caller falls back
            return None

    def set_service_tasks(self, play: ServicePlay, count: int, replace: bool) -> None:
        old = play.ips
        if replace:
            new = [self.allocate_ip() for _ in range(count)]
        else:
            new = old[:count] + [self.allocate_ip() for _ in range(max(0, count - len(old)))]
        gone = [ip for ip in old if ip not in new]
        added = [ip for ip in new if ip not in old]
        for tg, port in self.service_targets(play):
            present = [ip for ip in gone if ip in tg.targets]
            if present:
                tg.deregister([{"Id": ip} for ip in present])
            if added:
                tg.register([{"Id": ip, "Port": port} for ip in added])
        play.ips = new

    # --- migration tasks -----------------------------------------------------------------------

    def on_tasks_started(self, backend, tasks) -> None:
        now = now_utc()
        for task in tasks:
            task.started_at = now
            for c in task.containers:
                c.last_status = "RUNNING"
                c.exitCode = None  # a running container has no exit code yet
            self.tasks[id(task)] = TaskPlay(backend, task, self.clock())

    def tick_task(self, play: TaskPlay, clock: float) -> None:
        task = play.task
        if task.desired_status == "STOPPED":  # StopTask got there first: leave moto's answer
            for c in task.containers:
                c.last_status = "STOPPED"
                if c.exitCode is None:
                    c.exitCode = 137  # SIGKILL, as when ECS stops a task
            play.done = True
            return
        sc = self.scenario
        elapsed = clock - play.started_at
        lines = sc.migration_lines
        finished = elapsed >= sc.migration_seconds
        # Spread the lines over the run: line i is due at i/n of the duration.
        due = len(lines) if finished or sc.migration_seconds <= 0 else min(
            len(lines), math.floor(elapsed * len(lines) / sc.migration_seconds) + 1)
        if due > play.lines_written:
            self.write_logs(play, lines[play.lines_written:due])
            play.lines_written = due
        if finished:
            now = now_utc()
            task.last_status = "STOPPED"
            task.desired_status = "STOPPED"
            task.stopped_reason = "Essential container in task exited"
            task.stop_code = "EssentialContainerExited"
            task.stopping_at = task.execution_stopped_at = task.stopped_at = now
            exit_code = self.migration_exit_code(task_shard(task))
            for c in task.containers:
                c.last_status = "STOPPED"
                c.exitCode = exit_code
            play.done = True
            self.migration_finished(clock, exit_code)

    def migration_exit_code(self, shard: str | None) -> int:
        """The scenario's exit code, unless an active migration_exit fault matches the task's SHARD."""
        for f in self.active():
            if f.kind == "migration_exit" and (f.shard is None or f.shard == shard):
                return f.exit_code
        return self.scenario.migration_exit_code

    def migration_finished(self, clock: float, exit_code: int) -> None:
        """A migration task stopped: faults with after_migration may start from now on."""
        if exit_code == 0 and self.migrated_at is None:
            self.migrated_at = clock
            self.update_faults(clock)  # the very next request already meets the new schema

    def log_target(self, play: TaskPlay):
        """(logs backend, group, stream) from the container's awslogs config, or None."""
        task = play.task
        try:
            td = play.backend.describe_task_definition(task.task_definition_arn)
        except Exception:  # noqa: BLE001 - task definition deregistered since: no logs
            return None
        container = td.container_definitions[0]
        conf = container.get("logConfiguration") or {}
        options = conf.get("options") or {}
        if conf.get("logDriver") != "awslogs" or not options.get("awslogs-group"):
            return None
        region = options.get("awslogs-region") or task.region_name
        prefix = options.get("awslogs-stream-prefix")
        # The AWS convention: <prefix>/<container name>/<task id>.
        stream = f"{prefix}/{container.get('name')}/{task.id}" if prefix else task.id
        return logs_backends[play.backend.account_id][region], options["awslogs-group"], stream

    def write_logs(self, play: TaskPlay, lines: list[str]) -> None:
        target = self.log_target(play)
        if target is None or not lines:
            return
        logs, group, stream = target
        if group not in logs.groups:
            logs.create_log_group(group, {})
        logs.ensure_log_stream(group, stream)
        ms = int(time.time() * 1000)
        logs.put_log_events(group, stream, [{"timestamp": ms, "message": line} for line in lines])

    # --- RDS snapshots -------------------------------------------------------------------------

    def on_snapshot(self, snapshot) -> None:
        if self.scenario.snapshot_seconds > 0:
            snapshot.status = "creating"
            snapshot.percent_progress = 0
            self.snapshots[id(snapshot)] = (snapshot, self.clock())

    def tick_snapshots(self, clock: float) -> None:
        for key, (snap, started) in list(self.snapshots.items()):
            fraction = (clock - started) / self.scenario.snapshot_seconds
            if fraction >= 1:
                snap.status, snap.percent_progress = "available", 100
                del self.snapshots[key]
            else:
                snap.percent_progress = int(100 * fraction)

    # --- RDS restores ----------------------------------------------------------------------------
    # moto makes a restored instance available at once (a cluster after one read); RDS takes
    # minutes. It stays "creating" for restore.seconds so a client must wait for it.

    def on_restored(self, db) -> None:
        if self.scenario.restore_seconds > 0:
            self.restores[id(db)] = (db, self.clock())
            if not _status_is_property(db):
                db.status = "creating"

    def is_restoring(self, db) -> bool:
        return id(db) in self.restores

    def tick_restores(self, clock: float) -> None:
        for key, (db, started) in list(self.restores.items()):
            if clock - started >= self.scenario.restore_seconds:
                del self.restores[key]
                if not _status_is_property(db):
                    db.status = "available"

    # --- what /_stage/state shows ----------------------------------------------------------------

    def state(self) -> dict:
        groups = {}
        traffic, wall = self.traffic, time.time()
        for elb, lb, listed in traffic.forwarding_rules(self.clock()):
            for tg, weight, percent, serving in listed:
                meter = traffic.meters.get(tg.arn)
                groups[tg.name] = {
                    "arn": tg.arn, "colour": tg_colour(elb, tg), "load_balancer": lb.name,
                    "weight": weight, "percent": round(percent, 3), "serving_percent": round(serving, 3),
                    "targets": sorted(tg.targets), "unhealthy": self.effect(tg_colour(elb, tg)).unhealthy,
                    "blip": meter.blip[0] if meter and meter.blip else None,
                    "last_metrics": meter.last if meter else None,
                }
                if traffic.periods is not None:
                    groups[tg.name]["metrics_periods"] = traffic.periods.summary(tg.arn, wall)
        services = {}
        for play in self.services.values():
            s = play.service
            primary = s.deployments[0] if s.deployments else {}
            services[f"{s.cluster_name}/{s.name}"] = {
                "status": s.status, "desired": s.desired_count, "running": s.running_count,
                "rollout": primary.get("rolloutState"), "task_definition": s.task_definition, "ips": play.ips,
            }
        tasks = [{
            "task_arn": p.task.task_arn, "last_status": p.task.last_status,
            "exit_code": p.task.containers[0].exitCode if p.task.containers else None,
            "lines_written": p.lines_written,
            "started_by": getattr(p.task, "started_by", None),
            "shard": task_shard(p.task),
        } for p in self.tasks.values()]
        snapshots = {getattr(s, "snapshot_id", None) or getattr(s, "db_snapshot_identifier", "?"):
                     {"status": s.status, "percent": s.percent_progress} for s, _ in self.snapshots.values()}
        m = self.scenario.metrics
        return {
            "clock_s": round(self.clock(), 3),
            "tick_s": self.tick_s,
            "seed": traffic.seed,
            "noise": self.scenario.noise,
            "metrics": {"mode": m.mode, "period_s": m.period_s, "publish_delay_s": list(m.publish_delay_s),
                        "revise": m.revise},
            "weight_delay_s": self.scenario.weight_delay_s,
            "scenario": {"name": self.scenario.name, "description": self.scenario.description},
            "faults": [p.to_json() for p in self.faults],
            "active_faults": [f.to_json() for f in self.active()],
            "target_groups": groups,
            "services": services,
            "migration_tasks": tasks,
            "migrated_at_s": None if self.migrated_at is None else round(self.migrated_at, 3),
            "snapshots_in_progress": snapshots,
        }
