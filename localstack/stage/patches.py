"""In-process patches to moto 5.2.5: the hooks the stagehand needs and gaps it must fill.

Why patch at call time instead of only on the tick: a client that calls UpdateService and
immediately DescribeServices must already see a new IN_PROGRESS deployment, and a fresh
snapshot must already say "creating". The tick then only moves things forward in time.

Patches are on classes, so they cover every account/region backend moto creates later.
All patched functions run in request threads that already hold the world lock.
"""

from __future__ import annotations

import functools
import re
import sys

from moto.cloudwatch.models import Statistics
from moto.ecs.models import EC2ContainerServiceBackend
from moto.elbv2.models import FakeTargetGroup
from moto.moto_api import state_manager
from moto.rds.models import DBCluster, RDSBackend

PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


def _after(cls, name, hook):
    """Replace cls.name with a wrapper that calls hook(self, result, *args, **kwargs) after it."""
    original = getattr(cls, name)

    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        hook(self, result, *args, **kwargs)
        return result

    setattr(cls, name, wrapper)


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile, what CloudWatch reports for pNN on raw values."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def install(stagehand) -> None:
    # moto advances an ECS task one lifecycle step per DescribeTasks call (RUNNING ->
    # DEACTIVATING -> ... -> STOPPED). Migration tasks must run for the scenario's time
    # instead, so freeze that and let the stagehand set lastStatus itself.
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": sys.maxsize})

    # --- ECS: services and tasks -------------------------------------------------------------
    _after(EC2ContainerServiceBackend, "create_service",
           lambda backend, service, *a, **k: stagehand.on_service_created(backend, service))

    original_update = EC2ContainerServiceBackend.update_service

    @functools.wraps(original_update)
    def update_service(backend, props):
        cluster = props.get("cluster", "default")
        name = str(props.get("service", "")).split("/")[-1]
        force = bool(props.get("force_new_deployment"))
        try:
            before = backend._get_service(cluster, name)
            before_td, before_desired = before.task_definition, before.desired_count
        except Exception:  # noqa: BLE001 - let moto raise its own proper error below
            before_td = before_desired = None
        service = original_update(backend, props)
        stagehand.on_service_updated(backend, service, before_td, before_desired, force)
        return service

    EC2ContainerServiceBackend.update_service = update_service

    # moto adds up container-level memory and crashes (500 on RunTask) when a Fargate task
    # definition sets memory only at task level, which AWS allows. Fargate placement ignores
    # these numbers anyway, so fall back to zeros.
    original_requirements = EC2ContainerServiceBackend._calculate_task_resource_requirements

    def requirements(task_definition):
        try:
            return original_requirements(task_definition)
        except TypeError:
            return {"CPU": 0, "MEMORY": 0, "PORTS": [], "PORTS_UDP": []}

    EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(requirements)

    _after(EC2ContainerServiceBackend, "run_task",
           lambda backend, tasks, *a, **k: stagehand.on_tasks_started(backend, tasks))

    # moto ignores ListTasks' serviceName and returns every task of the cluster, so a
    # migration task (RunTask) looked like one of the service's own. AWS lists only the
    # tasks the service started (group "service:NAME"); the stage's services start none.
    original_list_tasks = EC2ContainerServiceBackend.list_tasks

    @functools.wraps(original_list_tasks)
    def list_tasks(backend, *args, **kwargs):
        tasks = original_list_tasks(backend, *args, **kwargs)
        service = kwargs.get("service_name") or (args[4] if len(args) > 4 else None)
        if service:
            group = "service:" + str(service).split("/")[-1]
            tasks = [t for t in tasks if getattr(t, "group", None) == group]
        return tasks

    EC2ContainerServiceBackend.list_tasks = list_tasks

    # --- RDS: snapshots take time ------------------------------------------------------------
    _after(RDSBackend, "create_db_snapshot", lambda backend, snap, *a, **k: stagehand.on_snapshot(snap))
    _after(RDSBackend, "create_db_cluster_snapshot", lambda backend, snap, *a, **k: stagehand.on_snapshot(snap))

    # --- RDS: restored databases take time too ---------------------------------------------
    _after(RDSBackend, "restore_db_instance_from_db_snapshot", lambda backend, db, *a, **k: stagehand.on_restored(db))
    _after(RDSBackend, "restore_db_cluster_from_snapshot", lambda backend, db, *a, **k: stagehand.on_restored(db))
    # A cluster's status is a property that moto flips to "available" on first read; while
    # the stagehand plays its restore it says "creating".
    cluster_status = DBCluster.status

    def status_while_restoring(cluster):
        return "creating" if stagehand.is_restoring(cluster) else cluster_status.fget(cluster)

    DBCluster.status = property(status_while_restoring, cluster_status.fset)

    # --- ELBv2: target health follows the scenario -------------------------------------------
    original_health = FakeTargetGroup.health_for

    @functools.wraps(original_health)
    def health_for(tg, target, ec2_backend):
        status = original_health(tg, target, ec2_backend)
        if status.status == "healthy" and stagehand.is_unhealthy(tg):
            status.status = "unhealthy"
            status.reason = "Target.ResponseCodeMismatch"
            status.description = "Health checks failed with these codes: [502]"
        return status

    FakeTargetGroup.health_for = health_for

    # --- CloudWatch: percentiles (p95, p99.9, ...) in GetMetricData --------------------------
    # moto computes only Sum/Average/Minimum/Maximum/SampleCount and returns None otherwise,
    # which then crashes its serializer. Percentiles come from raw values (PutMetricData
    # Values/Value); for pre-aggregated StatisticValues the best honest bound is the Maximum.
    original_stat = Statistics.get_statistics_for_type

    @functools.wraps(original_stat)
    def get_statistics_for_type(self, stat):
        match = PERCENTILE.match(stat or "")
        if not match:
            return original_stat(self, stat)
        values = self.metric_single_values_list
        if values:
            return _percentile(values, float(match.group(1)))
        aggregated = self.metric_aggregated_list
        return max(a.max for a in aggregated) if aggregated else 0.0

    Statistics.get_statistics_for_type = get_statistics_for_type
