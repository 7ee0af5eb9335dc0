"""CloudWatch over rpc-v2-cbor, translated to the awsJson1_0 protocol that moto serves.

aws-sdk-cloudwatch speaks only Smithy rpc-v2-cbor:
    POST /service/GraniteServiceVersion20100801/operation/<Op>, smithy-protocol: rpc-v2-cbor
moto 5.2.5 has no route for that, but it does serve CloudWatch's JSON 1.0 protocol
(X-Amz-Target: GraniteServiceVersion20100801.<Op>), which the same service model allows.
So instead of re-implementing operations, we re-encode: CBOR request -> JSON request -> moto
(in-process) -> JSON response -> CBOR response. Every CloudWatch operation moto knows works,
with member names taken from moto's model-driven serializer.

The only lossy parts of JSON are types, so the response is re-typed by walking the botocore
output shape: timestamps become CBOR tag 1 (epoch seconds), doubles become floats (the Rust
decoder rejects an integer where it expects a double), blobs become bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json
import threading

import cbor2

TARGET_PREFIX = "GraniteServiceVersion20100801"
PATH_PREFIX = f"/service/{TARGET_PREFIX}/operation/"

_model = None
_model_lock = threading.Lock()


def service_model():
    """botocore's CloudWatch model, loaded once (about 50 ms) on first use."""
    global _model
    with _model_lock:
        if _model is None:
            import botocore.session

            _model = botocore.session.get_session().get_service_model("cloudwatch")
        return _model


def is_cbor_request(environ) -> bool:
    return environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "").startswith(PATH_PREFIX)


def operation_name(environ) -> str:
    return environ.get("PATH_INFO", "")[len(PATH_PREFIX):].strip("/")


def _to_json_value(value):
    """CBOR-decoded request values -> what moto's JSON parser expects."""
    if isinstance(value, dict):
        return {k: _to_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json_value(v) for v in value]
    if isinstance(value, dt.datetime):  # cbor2 decodes tag 1 into an aware datetime
        return value.timestamp()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value


def _to_cbor_value(value, shape):
    """moto's JSON output -> values typed as the Smithy shape says."""
    if value is None or shape is None:
        return value
    t = shape.type_name
    if t == "structure":
        out = {}
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                out[name] = _to_cbor_value(value[name], member)
        return out
    if t == "list":
        return [_to_cbor_value(v, shape.member) for v in value]
    if t == "map":
        return {k: _to_cbor_value(v, shape.value) for k, v in value.items()}
    if t == "timestamp":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        return cbor2.CBORTag(1, float(value))
    if t in ("double", "float"):
        return float(value)
    if t in ("integer", "long"):
        return int(value)
    if t == "blob":
        return base64.b64decode(value) if isinstance(value, str) else value
    return value


def _cbor_response(start_response, status: str, body: dict, extra_headers=()):
    payload = cbor2.dumps(body)
    headers = [
        ("Content-Type", "application/cbor"),
        ("smithy-protocol", "rpc-v2-cbor"),
        ("Content-Length", str(len(payload))),
        *extra_headers,
    ]
    start_response(status, headers)
    return [payload]


def error(start_response, status: str, code: str, message: str, sender="Sender"):
    return _cbor_response(
        start_response,
        status,
        {"__type": code, "message": message},
        [("x-amzn-query-error", f"{code};{sender}")],
    )


def handle(environ, start_response, call_moto):
    """Serve one rpc-v2-cbor request. call_moto(environ) -> (status, headers, body bytes)."""
    op = operation_name(environ)
    model = service_model()
    if op not in model.operation_names:
        return error(start_response, "400 Bad Request", "UnknownOperationException", f"unknown operation {op}")
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size) if size else b""
        if "gzip" in environ.get("HTTP_CONTENT_ENCODING", ""):
            # PutMetricData has @requestCompression: the SDK gzips bodies over 10 KiB.
            raw = gzip.decompress(raw)
        request = cbor2.loads(raw) if raw else {}
        if not isinstance(request, dict):
            raise ValueError("request body is not a CBOR map")
    except Exception as e:  # noqa: BLE001 - any decode failure is the client's
        return error(start_response, "400 Bad Request", "SerializationException", f"bad CBOR body: {e}")

    body = json.dumps(_to_json_value(request)).encode()
    inner = dict(environ)
    inner.update(
        {
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "CONTENT_TYPE": "application/x-amz-json-1.0",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_X_AMZ_TARGET": f"{TARGET_PREFIX}.{op}",
            "wsgi.input": io.BytesIO(body),
        }
    )
    for key in ("HTTP_SMITHY_PROTOCOL", "HTTP_ACCEPT", "HTTP_CONTENT_ENCODING"):  # body is plain JSON now
        inner.pop(key, None)

    status, headers, out = call_moto(inner)
    hdrs = {k.lower(): v for k, v in headers}
    passthrough = [("x-amzn-requestid", hdrs["x-amzn-requestid"])] if "x-amzn-requestid" in hdrs else []
    code = int(status.split()[0])
    try:
        parsed = json.loads(out) if out.strip() else {}
    except ValueError:
        parsed = {"message": out.decode(errors="replace")}

    if code >= 400:
        # moto says e.g. __type "GraniteServiceVersion20100801#ResourceNotFound" plus the
        # awsQueryCompatible header; the Rust SDK strips the "#" prefix and prefers the header.
        err_type = parsed.get("__type") or parsed.get("Code") or "InternalFailure"
        message = parsed.get("message") or parsed.get("Message") or ""
        extra = list(passthrough)
        if "x-amzn-query-error" in hdrs:
            extra.append(("x-amzn-query-error", hdrs["x-amzn-query-error"]))
        return _cbor_response(start_response, status, {"__type": err_type, "message": message}, extra)

    output_shape = model.operation_model(op).output_shape
    return _cbor_response(start_response, status, _to_cbor_value(parsed, output_shape) if output_shape else {}, passthrough)
