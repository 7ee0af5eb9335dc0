"""ALB-like metric timing ([metrics] in a scenario, mode "alb").

An ALB's metrics are standard resolution: one datapoint per period (60 s on AWS), stamped
with the period's start, published minutes after the period ends and now and then revised
by late data. Here each source (a target group, or a load balancer's totals) gathers its
ticks per period, aligned to period_s boundaries of Unix time like CloudWatch's minutes,
and the period is written to moto's CloudWatch only publish_delay_s after the period ends,
so a GetMetricData over a recent window finds nothing for it until then. Counts are summed
into one value, latencies kept as raw values, so a query with Period = period_s sees exactly
one period per bucket. With revise, a small random part is held back and written (same
timestamp, so CloudWatch adds it) after a second delay.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field

from noise import binomial

LATE_SHARE = 0.05  # with revise: share of each period that arrives late


def stamp(wall: float) -> dt.datetime:
    """Naive UTC, as moto stores timestamps."""
    return dt.datetime.fromtimestamp(wall, dt.timezone.utc).replace(tzinfo=None)


@dataclass
class Bucket:
    key: str  # the source: a target group or load balancer ARN
    start: float  # period start, Unix seconds, a multiple of period_s
    cw: object  # moto CloudWatch backend it goes to
    rng: object  # the source's random stream (delays, late parts)
    publish_at: float  # Unix seconds of the next write
    counts: dict = field(default_factory=dict)  # (metric, dims) -> [datum, sum]
    values: dict = field(default_factory=dict)  # (metric, dims) -> [datum, [values]]
    writes: int = 0


class Periods:
    def __init__(self, period_s: int, publish_delay_s: tuple[float, float], revise: bool, namespace: str):
        self.period_s = period_s
        self.delay = publish_delay_s
        self.revise = revise
        self.namespace = namespace
        self.current: dict[str, Bucket] = {}  # source -> the period still gathering
        self.waiting: list[Bucket] = []  # gathered or gathering, not yet (fully) written
        self.written: dict[str, dict] = {}  # source -> summary of its last write

    def draw_delay(self, rng) -> float:
        lo, hi = self.delay
        return rng.uniform(lo, hi) if hi > lo else lo

    def add(self, key: str, cw, rng, wall: float, data: list[dict]) -> None:
        start = math.floor(wall / self.period_s) * self.period_s
        bucket = self.current.get(key)
        if bucket is None or bucket.start != start:
            end = start + self.period_s
            bucket = Bucket(key, start, cw, rng, publish_at=end + self.draw_delay(rng))
            self.current[key] = bucket
            self.waiting.append(bucket)
        for datum in data:
            ident = (datum["MetricName"], json.dumps(datum["Dimensions"], sort_keys=True))
            if "Values" in datum:
                bucket.values.setdefault(ident, [datum, []])[1].extend(datum["Values"])
            else:
                bucket.counts.setdefault(ident, [datum, 0.0])[1] += datum["Value"]

    def flush(self, wall: float) -> None:
        for bucket in [b for b in self.waiting if b.publish_at <= wall]:
            self.write(bucket, wall)

    def write(self, b: Bucket, wall: float) -> None:
        hold = self.revise and b.writes == 0  # first write of a revised period: keep a late part back
        ts = stamp(b.start)
        data, requests = [], 0.0
        for entry in b.counts.values():
            datum, total = entry
            held = binomial(b.rng, int(total), LATE_SHARE) if hold else 0
            entry[1] = float(held)
            if b.writes == 0 or total > 0:  # a late part carries only what is left
                data.append({**datum, "Value": float(total - held), "Timestamp": ts})
                requests += (total - held) if datum["MetricName"] == "RequestCount" else 0
        for entry in b.values.values():
            datum, values = entry
            send, held = [], []
            for v in values:
                (held if hold and b.rng.random() < LATE_SHARE else send).append(v)
            entry[1] = held
            if send:
                data.append({**datum, "Values": send, "Timestamp": ts})
        if data:
            b.cw.put_metric_data(self.namespace, data)
        b.writes += 1
        self.written[b.key] = {"period_start": ts.isoformat() + "Z", "written_at": wall,
                               "RequestCount": int(requests), "late_part": b.writes > 1}
        if hold and (any(e[1] for e in b.counts.values()) or any(e[1] for e in b.values.values())):
            b.publish_at = wall + self.draw_delay(b.rng)
        else:
            self.waiting.remove(b)
            if self.current.get(b.key) is b:
                del self.current[b.key]

    def summary(self, key: str, wall: float) -> dict:
        """For /_stage/state: the source's last write and the periods still to come."""
        last = self.written.get(key)
        return {
            "period_s": self.period_s,
            "last_written": last and {**{k: v for k, v in last.items() if k != "written_at"},
                                      "written_ago_s": round(wall - last["written_at"], 3)},
            "pending": [{"period_start": stamp(b.start).isoformat() + "Z", "publish_in_s": round(b.publish_at - wall, 3),
                         "late_part": b.writes > 0}
                        for b in self.waiting if b.key == key],
        }
