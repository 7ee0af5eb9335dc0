"""ALB traffic: every tick, each forwarding rule (a listener's default action or one of its
rules) gets traffic.rps, split over its target groups by the forward weights its data plane
uses, and the ALB metrics are written to moto's CloudWatch.

Per target group (dimensions TargetGroup=targetgroup/<name>/<id>, LoadBalancer=app/<name>/<id>):
  RequestCount, HTTPCode_Target_5XX_Count, HTTPCode_ELB_5XX_Count   one value per tick
  TargetResponseTime (seconds)                                       up to SAMPLES raw values per
                                                                     tick, so Average and p95 work
Per load balancer (dimension LoadBalancer only): the three counts, summed.

A target group with weight 0 gets explicit zeros for the counts (a gate can tell "no traffic"
from "no data") and no TargetResponseTime (latency of zero requests is undefined, as on AWS).
A target group with weight but no registered targets answers every request with an ELB 5xx.

noise = "random" (default): requests are Poisson, 5xx binomial, latencies independent
lognormal draws, and the live colour has rare short blips; every target group draws from its
own stream seeded by (seed, its name), so a seed replays the same numbers for the same run.
noise = "smooth": counts are exact (fractions carry over), latencies stratified, no blips.

Metrics go to CloudWatch at once (fast mode) or per period, late (ALB-like mode, periods.py).
A listener weight change reaches the split only weight_delay_s after it is first seen.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import random
import time
from statistics import NormalDist

from moto.cloudwatch.models import cloudwatch_backends
from moto.core.utils import utcnow
from moto.elbv2.models import elbv2_backends

from noise import binomial, lognormal_mean, poisson
from periods import Periods, stamp
from world import forward_weights, lb_dimension, live_backends, tg_colour, tg_dimension

NAMESPACE = "AWS/ApplicationELB"
ROLE_TAG = "glidepath:role"  # "test" on a test listener (seeded by glidepath)
SAMPLES = 30  # latency values written per target group per tick: a random subsample of the requests
NORMAL = NormalDist()
LIVE_PERCENT = 50.0  # a group with at least this share of a rule is "live" and may blip


class Meter:
    """Per target group: its random stream, smooth-mode carries, a blip in progress, what was written last."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.carry = {"req": 0.0, "t5": 0.0, "e5": 0.0}
        self.blip: tuple[str, float] | None = None  # (kind, until clock)
        self.last: dict = {}

    def whole(self, key: str, amount: float) -> int:
        self.carry[key] += amount
        n = math.floor(self.carry[key] + 1e-9)
        self.carry[key] -= n
        return n


class Split:
    """One rule's weights as its data plane sees them. A change waits delay seconds from when
    it was first seen; a newer change restarts the wait (ALBs batch config pushes)."""

    def __init__(self, weights: list):
        self.applied = weights
        self.pending: list | None = None
        self.since = 0.0

    def observe(self, weights: list, clock: float, delay: float) -> list:
        if weights == self.applied:
            self.pending = None
        elif weights != self.pending:
            self.pending, self.since = weights, clock
        if self.pending is not None and clock - self.since >= delay:
            self.applied, self.pending = self.pending, None
        return self.applied


class Traffic:
    def __init__(self, stagehand):
        self.stage = stagehand
        sc = stagehand.scenario
        self.seed = sc.seed if sc.seed is not None else 0  # stage.py always sets one
        self.meters: dict[str, Meter] = {}
        self.lb_rngs: dict[str, random.Random] = {}
        self.splits: dict[str, Split] = {}
        m = sc.metrics
        self.periods = Periods(m.period_s, m.publish_delay_s, m.revise, NAMESPACE) if m.mode == "alb" else None

    def stream(self, name: str) -> random.Random:
        # String seeds are hashed (SHA-512), so streams are stable across runs and processes.
        return random.Random(f"{self.seed}:{name}")

    def meter(self, tg) -> Meter:
        if tg.arn not in self.meters:
            self.meters[tg.arn] = Meter(self.stream(f"tg:{tg.name}"))
        return self.meters[tg.arn]

    def forwarding_rules(self, clock: float):
        """Yield (elb backend, load balancer, [(target group, weight, percent, serving percent)])
        per forwarding rule: a listener's default action and each of its rules (ModifyListener
        or ModifyRule may carry the blue/green weights; each forwarding rule gets traffic.rps).
        weight/percent are what the listener says, serving percent what its data plane uses
        (the same unless a change is still within weight_delay_s).
        Test listeners (tag glidepath:role=test) carry no production traffic and are skipped,
        so their weights neither feed metrics nor trigger weight-based faults."""
        for elb in live_backends(elbv2_backends):
            for lb in list(elb.load_balancers.values()):
                for listener in list(lb.listeners.values()):
                    if elb.tagging_service.get_tag_dict_for_resource(listener.arn).get(ROLE_TAG) == "test":
                        continue
                    for rule in list(listener.rules.values()):
                        # a default rule's moto ARN is made from id(): key it by its listener
                        key = f"{listener.arn}#default" if getattr(rule, "is_default", False) else rule.arn
                        yield from self.rule_groups(elb, lb, key, rule, clock)

    def rule_groups(self, elb, lb, key, rule, clock):
        weights = forward_weights(rule.actions)
        split = self.splits.setdefault(key, Split(weights))
        serving = dict(split.observe(weights, clock, self.stage.scenario.weight_delay_s))
        configured = dict(weights)
        total, serving_total = sum(configured.values()), sum(serving.values())
        groups = []
        # A group just dropped from the rule still serves until the change lands.
        for arn in dict.fromkeys([*configured, *serving]):
            tg = elb.target_groups.get(arn)
            if tg is not None:
                w = configured.get(arn, 0)
                groups.append((tg, w, 100.0 * w / total if total else 0.0,
                               100.0 * serving.get(arn, 0) / serving_total if serving_total else 0.0))
        if groups:
            yield elb, lb, groups

    def tick(self, tick_s: float, clock: float, wall: float | None = None) -> None:
        wall = time.time() if wall is None else wall
        sc = self.stage.scenario
        for elb, lb, groups in self.forwarding_rules(clock):
            cw = cloudwatch_backends[elb.account_id][elb.region_name]
            lb_dim = {"Name": "LoadBalancer", "Value": lb_dimension(lb.arn)}
            totals = {"RequestCount": 0, "HTTPCode_Target_5XX_Count": 0, "HTTPCode_ELB_5XX_Count": 0}
            for tg, _weight, _percent, serving in groups:
                meter = self.meter(tg)
                colour = tg_colour(elb, tg)
                profile = sc.green if colour == "green" else sc.blue
                effect = self.blipped(meter, self.stage.effect(colour), serving, tick_s, clock)
                requests, target5xx, elb5xx, served = self.counts(
                    meter, sc.rps * tick_s * serving / 100.0, effect, bool(tg.targets))
                counts = {"RequestCount": requests, "HTTPCode_Target_5XX_Count": target5xx,
                          "HTTPCode_ELB_5XX_Count": elb5xx}
                dims = [{"Name": "TargetGroup", "Value": tg_dimension(tg.arn)}, lb_dim]
                data = [{"MetricName": name, "Dimensions": dims, "Value": float(value), "Unit": "Count"}
                        for name, value in counts.items()]
                for name, value in counts.items():
                    totals[name] += value
                latencies = self.latencies(meter, served, effect.latency_ms, profile.latency_spread)
                if latencies:
                    data.append({"MetricName": "TargetResponseTime", "Dimensions": dims,
                                 "Values": latencies, "Unit": "Seconds"})
                self.emit(tg.arn, cw, meter.rng, data, wall)
                meter.last = {
                    "at_s": round(clock, 3), **counts,
                    "TargetResponseTime_avg_s": round(sum(latencies) / len(latencies), 4) if latencies else None,
                }
            lb_data = [{"MetricName": name, "Dimensions": [lb_dim], "Value": float(value), "Unit": "Count"}
                       for name, value in totals.items()]
            self.emit(lb.arn, cw, self.lb_rngs.setdefault(lb.arn, self.stream(f"lb:{lb.name}")), lb_data, wall)
        if self.periods is not None:
            self.periods.flush(wall)

    def emit(self, key: str, cw, rng, data: list[dict], wall: float) -> None:
        if self.periods is None:
            cw.put_metric_data(NAMESPACE, [{**d, "Timestamp": stamp(wall)} for d in data])
        else:
            self.periods.add(key, cw, rng, wall, data)

    def blipped(self, meter: Meter, effect, percent: float, tick_s: float, clock: float):
        """The effect, bent by a blip if one is running; a live group may start one now."""
        b = self.stage.scenario.blips
        if meter.blip is not None and clock >= meter.blip[1]:
            meter.blip = None
        if (meter.blip is None and b.every_s > 0 and percent >= LIVE_PERCENT
                and self.stage.scenario.noise == "random" and meter.rng.random() < tick_s / b.every_s):
            meter.blip = (meter.rng.choice(("5xx", "slow")), clock + b.seconds)
        if meter.blip is None:
            return effect
        if meter.blip[0] == "5xx":
            return dataclasses.replace(effect, error_rate=min(1.0, effect.error_rate + b.error_rate))
        return dataclasses.replace(effect, latency_ms=effect.latency_ms * b.latency_factor)

    def counts(self, meter: Meter, expected: float, effect, has_targets: bool) -> tuple[int, int, int, int]:
        """(requests, target 5xx, ELB 5xx, served by targets) for one tick."""
        smooth = self.stage.scenario.noise == "smooth"
        requests = meter.whole("req", expected) if smooth else poisson(meter.rng, expected)
        if requests and not has_targets:
            return requests, 0, requests, 0
        if smooth:
            elb5xx = min(requests, meter.whole("e5", requests * effect.elb_error_rate))
            target5xx = min(requests - elb5xx, meter.whole("t5", (requests - elb5xx) * effect.error_rate))
        else:
            elb5xx = binomial(meter.rng, requests, effect.elb_error_rate)
            target5xx = binomial(meter.rng, requests - elb5xx, effect.error_rate)
        return requests, target5xx, elb5xx, requests - elb5xx

    def latencies(self, meter: Meter, served: int, latency_ms: float, spread: float) -> list[float]:
        """TargetResponseTime values in seconds, at most SAMPLES. Random: independent lognormal
        draws (a random subsample of the served requests), so Average and p95 are honest,
        noisy estimates. Smooth: one draw from each of n equal slices of the distribution,
        which keeps a one-tick p95 steady (with independent draws, two equally healthy
        colours' one-tick p95s differ by 1.5x about once in a hundred polls)."""
        if served <= 0:
            return []
        n = min(served, SAMPLES)
        mean_s = latency_ms / 1000.0
        if self.stage.scenario.noise == "random":
            return [round(lognormal_mean(meter.rng, mean_s, spread), 6) for _ in range(n)]
        scale = mean_s / math.exp(spread * spread / 2)
        return [
            round(scale * math.exp(spread * NORMAL.inv_cdf((i + meter.rng.uniform(1e-9, 1.0 - 1e-9)) / n)), 6)
            for i in range(n)
        ]

    def prune(self, max_age_s: float = 3600.0) -> None:
        """Drop our own datapoints older than an hour, so long sessions stay fast and small."""
        cutoff = utcnow() - datetime.timedelta(seconds=max_age_s)  # moto stores naive UTC
        for cw in live_backends(cloudwatch_backends):
            cw.metric_data = [
                md for md in cw.metric_data
                if md.namespace != NAMESPACE or md.timestamp.replace(tzinfo=None) >= cutoff
            ]
