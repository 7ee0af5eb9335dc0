"""Start the stage's stagehand inside LocalStack and route its extra endpoints.

The plugin is inert unless the launcher (`python -m glidepath_localstack`) set
GLIDEPATH_STAGE_DIR: the venv it lives in also runs plain LocalStack (S3, Logs, STS), which
must not grow a stagehand.

What runs here is the stage's own code (localstack/stage: scenario, stagehand, patches,
middleware, cloudwatch_cbor), found through GLIDEPATH_STAGE_DIR, not a copy of it. The
pieces LocalStack replaces are the HTTP server and moto's front door:
- every moto call LocalStack makes goes through the world lock (the stagehand mutates the
  same backends on its own thread), is counted, and fails with 503 during an outage drill;
- /_stage/* and CloudWatch's rpc-v2-cbor path are gateway routes served by the stage's WSGI
  front door (control endpoint, CBOR <-> JSON), whose inner JSON call goes to moto with the
  account LocalStack would have given the request.
"""

from __future__ import annotations

import io
import os
import random
import sys
import threading
import time

from localstack.runtime import hooks

# Set by start_stagehand, read by say_ready.
_STATE: dict = {}


def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


@hooks.on_infra_start()
def start_stagehand():
    stage_dir = os.environ.get("GLIDEPATH_STAGE_DIR")
    if not stage_dir:
        return
    sys.path.insert(0, stage_dir)

    import patches
    from middleware import StageApp
    from scenario import load
    from stagehand import Stagehand

    # The launcher checked these already; in a container (docker-compose.yml) they come from
    # its environment, and a bad scenario fails LocalStack's start with the stage's message.
    scenario = load(os.environ.get("GLIDEPATH_SCENARIO") or "happy")
    seed = os.environ.get("GLIDEPATH_SEED")
    if seed:
        scenario.seed = int(seed)
    elif scenario.seed is None:
        scenario.seed = random.SystemRandom().randrange(1, 2**31)
    tick = _env_float("GLIDEPATH_TICK") or 0.5

    from glidepath_localstack import fixes

    world_lock = threading.RLock()
    stagehand = Stagehand(scenario, tick, world_lock)
    patches.install(stagehand)
    fixes.install()
    app = StageApp(_moto_cloudwatch_json, stagehand, world_lock)
    _guard_moto_calls(app, world_lock)
    _add_routes(app)
    stagehand.start()
    _STATE.update(app=app, seed=scenario.seed, scenario=scenario.name, tick=tick)


@hooks.on_infra_ready()
def say_ready():
    if "app" not in _STATE:
        return
    listen = os.environ.get("GATEWAY_LISTEN", "127.0.0.1:4566").split(",")[0]
    # The same two lines the stage prints, so one launcher code path reads either engine.
    print(f"stage seed {_STATE['seed']}", file=sys.stderr, flush=True)
    print(f"stage ready on http://{listen}", flush=True)
    print(f"stage: localstack engine, scenario {_STATE['scenario']}, tick {_STATE['tick']}s", file=sys.stderr, flush=True)


def _guard_moto_calls(app, world_lock) -> None:
    """Wrap LocalStack's one function that hands a request to moto (call_moto looks it up by
    name on every call, so replacing the module attribute covers every provider)."""
    from localstack.aws.api import CommonServiceException
    from localstack.services import moto as ls_moto

    original = ls_moto.dispatch_to_moto

    def dispatch_to_moto(context):
        with app.counts_lock:
            app.counts[f"{context.service.service_name}:{context.operation.name}"] += 1
        if time.monotonic() < app.outage_until:
            raise CommonServiceException("ServiceUnavailable", "Service is unavailable (stage outage drill)",
                                         status_code=503, sender_fault=False)
        with world_lock:
            return original(context)

    ls_moto.dispatch_to_moto = dispatch_to_moto


def _add_routes(app) -> None:
    from localstack.http import Response
    from localstack.services.edge import ROUTER

    import cloudwatch_cbor

    def serve(request, **_params):
        environ = dict(request.environ)
        body = request.get_data()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["PATH_INFO"] = request.path
        captured = {}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        out = b"".join(app(environ, start_response))
        return Response(out, status=int(captured["status"].split()[0]), headers=captured["headers"])

    ROUTER.add("/_stage", serve)
    ROUTER.add("/_stage/<path:path>", serve)
    # Ahead of LocalStack's own parser, which cannot read rpc-v2-cbor in 4.3.0.
    ROUTER.add(f"{cloudwatch_cbor.PATH_PREFIX}<op>", serve, methods=["POST"])


def _moto_cloudwatch_json(environ, start_response):
    """A WSGI app serving CloudWatch's JSON protocol from moto, for the CBOR translation.

    It runs before LocalStack's auth handler, so it gives moto the account LocalStack would
    have derived from the access key (the 000000000000 default unless the key says otherwise).
    """
    from localstack.aws.accounts import get_account_id_from_access_key_id
    from localstack.http import Request
    from localstack.services.moto import get_dispatcher

    auth = environ.get("HTTP_AUTHORIZATION", "")
    try:  # "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/monitoring/aws4_request, ..."
        access_key = auth.split("Credential=", 1)[1].split("/", 1)[0]
    except IndexError:
        access_key = "test"
    headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
    headers["Content-Type"] = environ.get("CONTENT_TYPE", "")
    headers["x-moto-account-id"] = get_account_id_from_access_key_id(access_key)
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size) if size else b""
    request = Request("POST", "/", headers=headers, body=body)
    status, out_headers, content = get_dispatcher("cloudwatch", "/")(request, "http://localhost/", request.headers)
    if isinstance(content, str):
        content = content.encode()
    start_response(f"{status} X", list(dict(out_headers).items()))
    return [content or b""]
