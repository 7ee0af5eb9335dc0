"""Small helpers for walking moto's in-process world without creating anything by accident."""

from __future__ import annotations

import datetime as dt

COLOUR_TAG = "glidepath:colour"


def live_backends(backend_dict):
    """Backends moto has already created. Plain dict access on purpose: moto's BackendDict
    creates an account/region backend on first [] lookup, and we only want existing ones."""
    for account in list(dict.keys(backend_dict)):
        regions = dict.__getitem__(backend_dict, account)
        for region in list(dict.keys(regions)):
            yield dict.__getitem__(regions, region)


def backend_for(backend_dict, account_id: str, region: str):
    return backend_dict[account_id][region]


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def tg_dimension(arn: str) -> str:
    """CloudWatch's TargetGroup dimension: 'targetgroup/<name>/<id>' (the ARN's resource part)."""
    return arn.rsplit(":", 1)[-1]


def lb_dimension(arn: str) -> str:
    """CloudWatch's LoadBalancer dimension: 'app/<name>/<id>' (resource part minus 'loadbalancer/')."""
    return arn.rsplit(":", 1)[-1].removeprefix("loadbalancer/")


def tg_colour(elb_backend, tg) -> str | None:
    colour = elb_backend.tagging_service.get_tag_dict_for_resource(tg.arn).get(COLOUR_TAG)
    return colour if colour in ("blue", "green") else None


def forward_weights(actions) -> list[tuple[str, int]]:
    """(target group ARN, weight) for a rule's forward action, [] if it does not forward."""
    for action in actions:
        data = getattr(action, "data", {}) or {}
        if data.get("Type") != "forward":
            continue
        groups = (data.get("ForwardConfig") or {}).get("TargetGroups") or []
        if groups:
            return [(g["TargetGroupArn"], int(g.get("Weight", 1) or 0)) for g in groups]
        if data.get("TargetGroupArn"):
            return [(data["TargetGroupArn"], 1)]
    return []
