"""ALB traffic: every tick, each forwarding rule (a listener's default action or one of its
rules) gets traffic.rps, split over its target groups by the current forward weights, and the
ALB metrics are written to moto's CloudWatch.

Per target group (dimensions TargetGroup=targetgroup/<name>/<id>, LoadBalancer=app/<name>/<id>):
  RequestCount, HTTPCode_Target_5XX_Count, HTTPCode_ELB_5XX_Count   one value per tick
  TargetResponseTime (seconds)                                       up to SAMPLES raw values per
                                                                     tick, so Average and p95 work
Per load balancer (dimension LoadBalancer only): the three counts, summed.

A target group with weight 0 gets explicit zeros for the counts (a gate can tell "no traffic"
from "no data") and no TargetResponseTime (latency of zero requests is undefined, as on AWS).
A target group with weight but no registered targets answers every request with an ELB 5xx.
Counts are whole numbers; fractions carry over to the next tick so low rates stay exact.
"""

from __future__ import annotations

import datetime
import math
import random
from statistics import NormalDist

from moto.cloudwatch.models import cloudwatch_backends
from moto.core.utils import utcnow
from moto.elbv2.models import elbv2_backends

from world import forward_weights, lb_dimension, live_backends, tg_colour, tg_dimension

NAMESPACE = "AWS/ApplicationELB"
ROLE_TAG = "glidepath:role"  # "test" on a test listener (seeded by glidepath)
SAMPLES = 20  # latency values written per target group per tick
SPREAD = 0.25  # lognormal sigma: p95 is about 1.45x the mean
NORMAL = NormalDist()


class Meter:
    """Per target group: fractional carries and what was written last."""

    def __init__(self):
        self.carry = {"req": 0.0, "t5": 0.0, "e5": 0.0}
        self.last: dict = {}

    def whole(self, key: str, amount: float) -> int:
        self.carry[key] += amount
        n = math.floor(self.carry[key] + 1e-9)
        self.carry[key] -= n
        return n


class Traffic:
    def __init__(self, stagehand):
        self.stage = stagehand
        self.meters: dict[str, Meter] = {}
        self.rng = random.Random(7)  # fixed seed: rehearsals are reproducible

    def forwarding_rules(self):
        """Yield (elb backend, load balancer, [(target group, weight, percent)]) per forwarding
        rule: a listener's default action and each of its rules (ModifyListener or ModifyRule
        may carry the blue/green weights; each forwarding rule gets traffic.rps).
        Test listeners (tag glidepath:role=test) carry no production traffic and are skipped,
        so their weights neither feed metrics nor trigger weight-based faults."""
        for elb in live_backends(elbv2_backends):
            for lb in list(elb.load_balancers.values()):
                for listener in list(lb.listeners.values()):
                    if elb.tagging_service.get_tag_dict_for_resource(listener.arn).get(ROLE_TAG) == "test":
                        continue
                    for rule in list(listener.rules.values()):
                        yield from self.rule_groups(elb, lb, rule)

    def rule_groups(self, elb, lb, rule):
        weights = forward_weights(rule.actions)
        total = sum(w for _, w in weights)
        groups = []
        for arn, w in weights:
            tg = elb.target_groups.get(arn)
            if tg is not None:
                groups.append((tg, w, 100.0 * w / total if total else 0.0))
        if groups:
            yield elb, lb, groups

    def tick(self, tick_s: float, clock: float) -> None:
        rps = self.stage.scenario.rps
        for elb, lb, groups in self.forwarding_rules():
            lb_dim = {"Name": "LoadBalancer", "Value": lb_dimension(lb.arn)}
            totals = {"RequestCount": 0, "HTTPCode_Target_5XX_Count": 0, "HTTPCode_ELB_5XX_Count": 0}
            data = []
            for tg, _weight, percent in groups:
                meter = self.meters.setdefault(tg.arn, Meter())
                dims = [{"Name": "TargetGroup", "Value": tg_dimension(tg.arn)}, lb_dim]
                effect = self.stage.effect(tg_colour(elb, tg))
                requests = meter.whole("req", rps * tick_s * percent / 100.0)
                if requests and not tg.targets:
                    elb5xx, target5xx, served = requests, 0, 0
                else:
                    elb5xx = min(requests, meter.whole("e5", requests * effect.elb_error_rate))
                    served = requests - elb5xx
                    target5xx = min(served, meter.whole("t5", served * effect.error_rate))
                counts = {"RequestCount": requests, "HTTPCode_Target_5XX_Count": target5xx,
                          "HTTPCode_ELB_5XX_Count": elb5xx}
                for name, value in counts.items():
                    data.append({"MetricName": name, "Dimensions": dims, "Value": float(value), "Unit": "Count"})
                    totals[name] += value
                latencies = self.latencies(served, effect.latency_ms)
                if latencies:
                    data.append({"MetricName": "TargetResponseTime", "Dimensions": dims,
                                 "Values": latencies, "Unit": "Seconds"})
                meter.last = {
                    "at_s": round(clock, 3), **counts,
                    "TargetResponseTime_avg_s": round(sum(latencies) / len(latencies), 4) if latencies else None,
                }
            for name, value in totals.items():
                data.append({"MetricName": name, "Dimensions": [lb_dim], "Value": float(value), "Unit": "Count"})
            cloudwatch_backends[elb.account_id][elb.region_name].put_metric_data(NAMESPACE, data)

    def latencies(self, served: int, latency_ms: float) -> list[float]:
        """Lognormal samples whose mean is latency_ms, in seconds, stratified: one draw from
        each of n equal slices of the distribution. Independent draws made the p95 of a
        one-poll window so noisy that two equally healthy colours differed by the latency
        gate's 1.5x about once in a hundred polls (a happy rehearsal rolled back about one
        time in ten); stratified, 20 per tick, that does not happen in 200,000 simulated
        polls, and the mean is unchanged."""
        if served <= 0:
            return []
        mean_s = latency_ms / 1000.0
        scale = mean_s / math.exp(SPREAD * SPREAD / 2)
        n = min(served, SAMPLES)
        return [
            round(scale * math.exp(SPREAD * NORMAL.inv_cdf((i + self.rng.uniform(1e-9, 1.0 - 1e-9)) / n)), 6)
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
