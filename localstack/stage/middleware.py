"""The stage's front door: a WSGI app wrapped around moto's server app.

It answers /_stage/* (the control endpoint) itself, plays outages, counts AWS requests by
service:Operation, serves CloudWatch's rpc-v2-cbor protocol (see cloudwatch_cbor.py), and
hands everything else to moto. Every moto call runs under the world lock, because moto's
backends are plain dicts and the stagehand thread mutates them too.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
import traceback
from collections import Counter
from urllib.parse import parse_qs

import cloudwatch_cbor
from scenario import ScenarioError, parse_fault

# Credential-scope signing names -> the names people use for the services.
SERVICE_ALIASES = {"monitoring": "cloudwatch", "elasticloadbalancing": "elbv2"}


def _signing_service(environ) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    try:  # "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ecs/aws4_request, ..."
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
        service = scope.split("/")[3]
    except IndexError:
        service = "unknown"
    return SERVICE_ALIASES.get(service, service)


def _s3_operation(environ) -> str:
    """S3 is REST: derive a readable name from method, path depth and marker query params."""
    method = environ.get("REQUEST_METHOD", "GET")
    parts = [p for p in environ.get("PATH_INFO", "/").split("/") if p]
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if not parts:
        return "ListBuckets"
    if len(parts) == 1:
        if method == "GET":
            return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, method + "Bucket")
    if "uploads" in query or "uploadId" in query:
        return {"POST": "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload",
                "PUT": "UploadPart", "DELETE": "AbortMultipartUpload"}.get(method, "ListParts")
    return {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method + "Object")


def _operation(environ) -> str:
    """service:Operation for the request counter (reads, and restores, a form body)."""
    service = _signing_service(environ)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    if cloudwatch_cbor.is_cbor_request(environ):
        return f"cloudwatch:{cloudwatch_cbor.operation_name(environ)}"
    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    if not action and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    if action:
        return f"{service}:{action[0]}"
    if service == "s3":
        return f"s3:{_s3_operation(environ)}"
    return f"{service}:{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"


def _json(start_response, status: str, body) -> list[bytes]:
    payload = json.dumps(body, indent=1, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


class StageApp:
    def __init__(self, moto_app, stagehand, world_lock: threading.RLock):
        self.moto_app = moto_app
        self.stagehand = stagehand
        self.lock = world_lock
        self.counts: Counter[str] = Counter()
        self.counts_lock = threading.Lock()
        self.outage_until = 0.0  # time.monotonic() deadline
        # S3 pushback drill: this share of the named operations answers 503 SlowDown.
        self.slowdown = {"rate": 0.0, "operations": []}
        self.slowdowns = 0
        self.slowdown_random = random.Random()

    # --- plumbing -----------------------------------------------------------------------------

    def call_moto(self, environ):
        """Run moto fully (body included) under the world lock; return status, headers, body."""
        captured = {}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        with self.lock:
            result = self.moto_app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        return captured["status"], captured["headers"], body

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_stage"):
            return self.control(environ, start_response)

        op = _operation(environ)
        with self.counts_lock:
            self.counts[op] += 1

        if time.monotonic() < self.outage_until:
            return self.outage_response(environ, start_response)
        if self.slowed(op):
            # Read the body we refuse, so the kept-alive connection stays in step.
            size = int(environ.get("CONTENT_LENGTH") or 0)
            if size:
                environ["wsgi.input"].read(size)
            return self.slowdown_response(start_response)
        if cloudwatch_cbor.is_cbor_request(environ):
            try:
                return cloudwatch_cbor.handle(environ, start_response, self.call_moto)
            except Exception:  # noqa: BLE001 - answer in CBOR, not werkzeug's HTML page
                traceback.print_exc()
                return cloudwatch_cbor.error(start_response, "500 Internal Server Error", "InternalFailure",
                                             "stage failed to translate this CloudWatch request (see stage stderr)", "Receiver")

        status, headers, body = self.call_moto(environ)
        start_response(status, headers)
        return [body]

    def outage_response(self, environ, start_response):
        """503 ServiceUnavailable in the protocol the caller speaks, so SDKs classify it right."""
        message = "Service is unavailable (stage outage drill)"
        if cloudwatch_cbor.is_cbor_request(environ):
            return cloudwatch_cbor.error(start_response, "503 Service Unavailable", "ServiceUnavailable", message, "Receiver")
        if environ.get("HTTP_X_AMZ_TARGET"):
            payload = json.dumps({"__type": "ServiceUnavailable", "message": message}).encode()
            ctype = "application/x-amz-json-1.1"
        elif _signing_service(environ) == "s3":
            payload = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code>"
                       f"<Message>{message}</Message></Error>").encode()
            ctype = "application/xml"
        else:  # query protocols (ELBv2, RDS, EC2, STS)
            payload = (f"<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code>"
                       f"<Message>{message}</Message></Error><RequestId>stage-outage</RequestId></ErrorResponse>").encode()
            ctype = "text/xml"
        start_response("503 Service Unavailable", [("Content-Type", ctype), ("Content-Length", str(len(payload)))])
        return [payload]

    def slowed(self, op: str) -> bool:
        with self.counts_lock:
            hit = (op in self.slowdown["operations"]
                   and self.slowdown_random.random() < self.slowdown["rate"])
            self.slowdowns += hit
        return hit

    @staticmethod
    def slowdown_response(start_response):
        """S3's own throttling answer: 503 with the SlowDown code."""
        payload = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>"
                   b"<Message>Please reduce your request rate. (stage slowdown drill)</Message></Error>")
        start_response("503 Slow Down", [("Content-Type", "application/xml"), ("Content-Length", str(len(payload)))])
        return [payload]

    # --- control endpoint -----------------------------------------------------------------------

    def control(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        route = environ.get("PATH_INFO", "").rstrip("/")
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(size) if size else b""
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            return _json(start_response, "400 Bad Request", {"ok": False, "error": f"body is not JSON: {e}"})

        if (method, route) == ("GET", "/_stage/health"):
            return _json(start_response, "200 OK", {"ok": True})
        if (method, route) == ("GET", "/_stage/state"):
            with self.counts_lock:
                counts = dict(self.counts)
            with self.lock:
                state = self.stagehand.state()
                state["slowdowns"] = self.slowdowns
            state["requests"] = counts
            state["outage_remaining_s"] = round(max(0.0, self.outage_until - time.monotonic()), 3)
            return _json(start_response, "200 OK", state)
        if (method, route) == ("POST", "/_stage/fault"):
            try:
                fault = parse_fault(body, "fault")
            except ScenarioError as e:
                return _json(start_response, "400 Bad Request", {"ok": False, "error": str(e)})
            with self.lock:
                self.stagehand.inject(fault)
            return _json(start_response, "200 OK", {"ok": True, "fault": fault.to_json()})
        if (method, route) == ("DELETE", "/_stage/fault"):
            with self.lock:
                cleared = self.stagehand.clear_faults()
            return _json(start_response, "200 OK", {"ok": True, "cleared": cleared})
        if (method, route) == ("POST", "/_stage/outage"):
            seconds = body.get("seconds") if isinstance(body, dict) else None
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
                return _json(start_response, "400 Bad Request", {"ok": False, "error": "body must be {\"seconds\": N} with N >= 0"})
            self.outage_until = time.monotonic() + seconds
            return _json(start_response, "200 OK", {"ok": True, "seconds": seconds})
        if (method, route) == ("GET", "/_stage/sns"):
            # What was published to each SNS topic (moto keeps it), for notification tests.
            from moto.sns.models import sns_backends
            from world import live_backends

            topics = {}
            with self.lock:
                for backend in live_backends(sns_backends):
                    for arn, topic in backend.topics.items():
                        topics[arn] = [{"message": n[1], "subject": n[2]} for n in topic.sent_notifications]
            return _json(start_response, "200 OK", {"topics": topics})
        if (method, route) == ("POST", "/_stage/slowdown"):
            rate = body.get("rate") if isinstance(body, dict) else None
            ops = body.get("operations", ["s3:PutObject"]) if isinstance(body, dict) else None
            if (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1
                    or not isinstance(ops, list) or not all(isinstance(o, str) for o in ops)):
                return _json(start_response, "400 Bad Request", {
                    "ok": False, "error": "body must be {\"rate\": R, \"operations\": [\"s3:PutObject\", ...]} with 0 <= R <= 1"})
            with self.counts_lock:
                self.slowdown = {"rate": float(rate), "operations": ops}
            return _json(start_response, "200 OK", {"ok": True, **self.slowdown})
        if (method, route) == ("POST", "/_stage/reset-counters"):
            with self.counts_lock:
                self.counts.clear()
            return _json(start_response, "200 OK", {"ok": True})
        return _json(start_response, "404 Not Found", {
            "ok": False,
            "error": f"no such control route: {method} {route}",
            "routes": ["GET /_stage/health", "GET /_stage/state", "POST /_stage/fault", "DELETE /_stage/fault",
                       "POST /_stage/outage", "POST /_stage/slowdown", "POST /_stage/reset-counters",
                       "GET /_stage/sns"],
        })
