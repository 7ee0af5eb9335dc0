"""Scenario files: what the stage plays (durations, traffic, per-colour health, faults).

A scenario is a small TOML file (format in localstack/scenarios/README.md). Validation is
strict on purpose: a typo in a drill should fail loudly at start, not silently play "happy".
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

COLOURS = ("blue", "green")
FAULT_KINDS = ("5xx", "unhealthy", "slow", "alarm", "migration_exit", "rollout_fails")


class ScenarioError(Exception):
    """A scenario (or control-endpoint fault) that cannot be played; the message says why."""


@dataclass
class Profile:
    """How one colour behaves when no fault is active."""

    error_rate: float = 0.002
    latency_ms: float = 80.0
    latency_spread: float = 0.25  # lognormal sigma of TargetResponseTime: p95 is about 1.45x the mean


@dataclass
class Fault:
    kind: str
    colour: str = "green"
    start_after_s: float = 0.0  # stage clock (scenario) or seconds after injection (control)
    when_weight_at_least: float | None = None  # the colour's listener weight, in percent
    after_migration: bool | None = None  # True: only once a migration task exited 0
    duration_s: float | None = None  # None: until cleared
    error_rate: float | None = None  # target 5xx share of requests
    elb_error_rate: float | None = None  # ELB 5xx share of requests
    latency_ms: float | None = None
    alarm: str | None = None
    # kind "migration_exit": migration tasks (only those with this SHARD, if set) stop with
    # exit_code instead of the scenario's, while the fault is active.
    shard: str | None = None
    exit_code: int | None = None
    # kind "rollout_fails": a deployment of this ECS service onto any task definition other
    # than the one it was created with ends FAILED (the circuit breaker stopping a version
    # whose tasks do not start); going back to the original one still works.
    service: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Metrics:
    """When datapoints reach CloudWatch. "fast": every tick, at once (the default);
    "alb": summed per period_s and written with the period's start time publish_delay_s
    after the period ends, as ALBs do (standard resolution, minutes late)."""

    period_s: int = 1
    publish_delay_s: tuple[float, float] = (0.0, 0.0)  # drawn per period, uniformly in [lo, hi]
    revise: bool = False  # also write a small late part of each period after a second delay
    mode: str = "fast"


@dataclass
class Blips:
    """Short random bursts on the live colour, so a healthy world is not perfectly flat."""

    every_s: float = 300.0  # mean seconds between blips per live target group (0: none)
    seconds: float = 2.0
    error_rate: float = 0.01  # added to the target 5xx share during a 5xx blip
    latency_factor: float = 1.3  # latency multiplier during a slow blip


@dataclass
class Scenario:
    name: str
    description: str = ""
    snapshot_seconds: float = 2.0
    restore_seconds: float = 3.0  # a database restored from a snapshot is "creating" this long
    migration_seconds: float = 3.0
    migration_exit_code: int = 0
    migration_lines: list[str] = field(
        default_factory=lambda: [
            "Running migrations...",
            "Applying 0042_add_orders_index... OK",
            "Migrations complete.",
        ]
    )
    deploy_seconds: float = 2.0
    rps: float = 200.0
    seed: int | None = None  # None until stage.py picks one (--seed, [traffic] seed, or random)
    noise: str = "random"  # "random" | "smooth" (deterministic counts, stratified latencies)
    weight_delay_s: float = 0.0  # a listener weight change reaches the traffic this much later
    metrics: Metrics = field(default_factory=Metrics)
    blips: Blips = field(default_factory=Blips)
    blue: Profile = field(default_factory=Profile)
    green: Profile = field(default_factory=Profile)
    faults: list[Fault] = field(default_factory=list)


def known_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """A bare name means localstack/scenarios/NAME.toml; anything with a slash or .toml is a path."""
    if "/" in name_or_path or name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise ScenarioError(f"scenario file {name_or_path} does not exist")
        return path
    path = SCENARIO_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(known_scenarios()) or "(none)"
        raise ScenarioError(f"unknown scenario '{name_or_path}'; known scenarios: {known}")
    return path


def load(name_or_path: str) -> Scenario:
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:  # message carries "(at line L, column C)"
        raise ScenarioError(f"{path}: {e}") from None
    try:
        return parse(data, path.stem)
    except ScenarioError as e:
        raise ScenarioError(f"{path}: {e}") from None


# --- strict field readers -------------------------------------------------------------------


def _only(table: dict, allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ScenarioError(
                f"unknown key '{key}' in {where} (allowed: {', '.join(sorted(allowed))})"
            )


def _table(data: dict, key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ScenarioError(f"'{key}' must be a table, e.g. [{key}]")
    return value


def _number(table: dict, key: str, where: str, default, lo=0.0, hi=None):
    value = table.get(key, default)
    if value is None:
        return None
    # bool is an int in Python; "seconds = true" is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}.{key} must be a number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise ScenarioError(f"{where}.{key} must be {bound}, got {value}")
    return float(value)


def _profile(data: dict, colour: str) -> Profile:
    t = _table(data, colour)
    _only(t, {"error_rate", "latency_ms", "latency_spread"}, f"[{colour}]")
    return Profile(
        error_rate=_number(t, "error_rate", colour, 0.002, 0.0, 1.0),
        latency_ms=_number(t, "latency_ms", colour, 80.0, 0.0),
        latency_spread=_number(t, "latency_spread", colour, 0.25, 0.0, 3.0),
    )


def _metrics(data: dict) -> Metrics:
    t = _table(data, "metrics")
    _only(t, {"period_s", "publish_delay_s", "revise"}, "[metrics]")
    period = _number(t, "period_s", "metrics", 1, 1, 3600)
    if not period.is_integer():  # CloudWatch periods are whole seconds
        raise ScenarioError(f"metrics.period_s must be a whole number of seconds, got {period}")
    revise = t.get("revise", False)
    if not isinstance(revise, bool):
        raise ScenarioError(f"metrics.revise must be true or false, got {revise!r}")
    delay = t.get("publish_delay_s")
    if isinstance(delay, list):
        if len(delay) != 2:
            raise ScenarioError(f"metrics.publish_delay_s must be a number or [lo, hi], got {delay!r}")
        lo = _number({"lo": delay[0]}, "lo", "metrics.publish_delay_s", 0)
        hi = _number({"hi": delay[1]}, "hi", "metrics.publish_delay_s", 0, lo)
    elif delay is not None:
        lo = hi = _number(t, "publish_delay_s", "metrics", 0)
    # Any of these keys asks for ALB-like timing; without them the stage stays in fast mode.
    alb = period != 1 or delay is not None or revise
    if delay is None:
        lo, hi = (60.0, 150.0) if alb else (0.0, 0.0)  # what ALB metrics show on AWS
    return Metrics(period_s=int(period), publish_delay_s=(lo, hi), revise=revise, mode="alb" if alb else "fast")


def _blips(data: dict) -> Blips:
    t = _table(data, "blips")
    _only(t, {"every_s", "seconds", "error_rate", "latency_factor"}, "[blips]")
    b = Blips()
    return Blips(
        every_s=_number(t, "every_s", "blips", b.every_s),
        seconds=_number(t, "seconds", "blips", b.seconds),
        error_rate=_number(t, "error_rate", "blips", b.error_rate, 0.0, 1.0),
        latency_factor=_number(t, "latency_factor", "blips", b.latency_factor, 1.0),
    )


FAULT_KEYS = {
    "kind", "colour", "start_after_s", "when_weight_at_least", "duration_s",
    "error_rate", "elb_error_rate", "latency_ms", "alarm", "after_migration", "shard", "exit_code",
    "service",
}


def parse_fault(t: dict, where: str = "fault") -> Fault:
    """Shared by scenario [[faults]] and POST /_stage/fault, so both accept the same fields."""
    if not isinstance(t, dict):
        raise ScenarioError(f"{where} must be a table/object")
    _only(t, FAULT_KEYS, where)
    kind = t.get("kind")
    if kind not in FAULT_KINDS:
        raise ScenarioError(f"{where}.kind must be one of {', '.join(FAULT_KINDS)}, got {kind!r}")
    colour = t.get("colour", "green")
    if colour not in COLOURS:
        raise ScenarioError(f"{where}.colour must be blue or green, got {colour!r}")
    alarm = t.get("alarm")
    if kind == "alarm" and not (isinstance(alarm, str) and alarm):
        raise ScenarioError(f"{where}: kind 'alarm' needs alarm = \"<alarm name>\"")
    if alarm is not None and not isinstance(alarm, str):
        raise ScenarioError(f"{where}.alarm must be a string")
    shard, exit_code = t.get("shard"), t.get("exit_code")
    if shard is not None and not (isinstance(shard, str) and shard):
        raise ScenarioError(f"{where}.shard must be a shard name (the task's SHARD), got {shard!r}")
    if kind == "migration_exit" and (isinstance(exit_code, bool) or not isinstance(exit_code, int)
                                     or not 0 <= exit_code <= 255):
        raise ScenarioError(f"{where}: kind 'migration_exit' needs exit_code = 0..255, got {exit_code!r}")
    if kind != "migration_exit" and (shard is not None or exit_code is not None):
        raise ScenarioError(f"{where}: shard and exit_code belong to kind 'migration_exit'")
    service = t.get("service")
    if kind == "rollout_fails" and not (isinstance(service, str) and service):
        raise ScenarioError(f"{where}: kind 'rollout_fails' needs service = \"<ECS service name>\"")
    if kind != "rollout_fails" and service is not None:
        raise ScenarioError(f"{where}: service belongs to kind 'rollout_fails'")
    after_migration = t.get("after_migration")
    if after_migration is not None and not isinstance(after_migration, bool):
        raise ScenarioError(f"{where}.after_migration must be true or false, got {after_migration!r}")
    fault = Fault(
        kind=kind,
        colour=colour,
        start_after_s=_number(t, "start_after_s", where, 0.0),
        when_weight_at_least=_number(t, "when_weight_at_least", where, None, 0.0, 100.0),
        duration_s=_number(t, "duration_s", where, None),
        error_rate=_number(t, "error_rate", where, None, 0.0, 1.0),
        elb_error_rate=_number(t, "elb_error_rate", where, None, 0.0, 1.0),
        latency_ms=_number(t, "latency_ms", where, None),
        alarm=alarm,
        after_migration=after_migration or None,
        shard=shard,
        exit_code=exit_code,
        service=service,
    )
    # Each kind has a sensible default effect so a one-line fault does something visible.
    if kind == "5xx" and fault.error_rate is None:
        fault.error_rate = 0.3
    if kind == "slow" and fault.latency_ms is None:
        fault.latency_ms = 600.0
    return fault


def parse(data: dict, name: str) -> Scenario:
    _only(data, {"description", "snapshot", "restore", "migration", "deploy", "traffic", "metrics", "blips", "blue", "green", "faults"}, "the top level")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError("description must be a string")

    snap = _table(data, "snapshot")
    _only(snap, {"seconds"}, "[snapshot]")
    restore = _table(data, "restore")
    _only(restore, {"seconds"}, "[restore]")
    mig = _table(data, "migration")
    _only(mig, {"seconds", "exit_code", "lines"}, "[migration]")
    dep = _table(data, "deploy")
    _only(dep, {"seconds"}, "[deploy]")
    traffic = _table(data, "traffic")
    _only(traffic, {"rps", "seed", "noise", "weight_delay_s"}, "[traffic]")

    sc = Scenario(name=name, description=description)
    sc.snapshot_seconds = _number(snap, "seconds", "snapshot", sc.snapshot_seconds)
    sc.restore_seconds = _number(restore, "seconds", "restore", sc.restore_seconds)
    sc.migration_seconds = _number(mig, "seconds", "migration", sc.migration_seconds)
    exit_code = mig.get("exit_code", 0)
    if isinstance(exit_code, bool) or not isinstance(exit_code, int) or not 0 <= exit_code <= 255:
        raise ScenarioError(f"migration.exit_code must be an integer 0..255, got {exit_code!r}")
    sc.migration_exit_code = exit_code
    if "lines" in mig:
        lines = mig["lines"]
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            raise ScenarioError("migration.lines must be a list of strings")
        sc.migration_lines = lines
    sc.deploy_seconds = _number(dep, "seconds", "deploy", sc.deploy_seconds)
    sc.rps = _number(traffic, "rps", "traffic", sc.rps)
    seed = traffic.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ScenarioError(f"traffic.seed must be a whole number >= 0, got {seed!r}")
    sc.seed = seed
    sc.noise = traffic.get("noise", "random")
    if sc.noise not in ("random", "smooth"):
        raise ScenarioError(f"traffic.noise must be \"random\" or \"smooth\", got {sc.noise!r}")
    sc.metrics = _metrics(data)
    sc.blips = _blips(data)
    # A weight change takes ~10 s to reach an ALB's data plane; fast mode keeps it instant.
    default_delay = 10.0 if sc.metrics.mode == "alb" else 0.0
    sc.weight_delay_s = _number(traffic, "weight_delay_s", "traffic", default_delay)
    sc.blue = _profile(data, "blue")
    sc.green = _profile(data, "green")

    faults = data.get("faults", [])
    if not isinstance(faults, list):
        raise ScenarioError("faults must be an array of tables: [[faults]]")
    sc.faults = [parse_fault(f, f"faults[{i}]") for i, f in enumerate(faults)]
    return sc
