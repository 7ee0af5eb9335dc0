"""glidepath rehearsal stage: a local AWS world on one loopback port, no Docker, no account.

    python localstack/stage/stage.py --port 4566 [--host 127.0.0.1] [--scenario NAME_OR_PATH] [--tick 0.5] [--seed N]

moto's server runs in-process behind our own WSGI middleware (control endpoint, outages,
request counts, CloudWatch rpc-v2-cbor), and a stagehand thread plays what moto leaves
static. See README.md next to this file for the control endpoint.

Exit codes: 0 after SIGTERM/SIGINT, 2 for bad input (one line on stderr saying what to fix).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import random
import signal
import socket
import sys
import threading
import time
from typing import NoReturn

STARTED = time.monotonic()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # helper modules live next to this file

from scenario import ScenarioError, load  # noqa: E402  (after sys.path)


def fail(message: str) -> NoReturn:
    print(f"stage: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="stage.py", description="glidepath rehearsal stage (moto + stagehand)")
    p.add_argument("--port", type=int, default=4566, help="TCP port; 0 picks a free one (default 4566)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--scenario", default="happy", help="name in localstack/scenarios/ or path to a .toml (default happy)")
    p.add_argument("--tick", type=float, default=0.5, help="stagehand tick in seconds (default 0.5)")
    p.add_argument("--seed", type=int, help="seed for the traffic noise (default: [traffic] seed, else random)")
    p.add_argument("--log-requests", action="store_true", help="log every HTTP request to stderr")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        fail(f"--port must be 0..65535, got {args.port}")
    if args.seed is not None and args.seed < 0:
        fail(f"--seed must be >= 0, got {args.seed}")
    if not 0.01 <= args.tick <= 60:
        fail(f"--tick must be between 0.01 and 60 seconds, got {args.tick}")
    try:
        loopback = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        fail(f"--host must be a loopback address (the stage has no auth), got {args.host}")
    return args


def main(argv=None) -> int:
    # Handlers first: a SIGTERM while moto imports must still end in a clean exit 0.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        scenario = load(args.scenario)
    except ScenarioError as e:
        fail(str(e))
    if args.seed is not None:
        scenario.seed = args.seed
    elif scenario.seed is None:
        scenario.seed = random.SystemRandom().randrange(1, 2**31)

    # Dummy credentials so moto never goes looking for real ones.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "stage")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "stage")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    # Imported here, not at the top: moto takes ~2 s to import, and bad input should fail fast.
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    import patches
    from middleware import StageApp
    from stagehand import Stagehand

    class RequestHandler(MotoRequestHandler):
        def log_request(self, code="-", size="-"):
            if args.log_requests:  # errors (tracebacks) are always logged, requests on demand
                super().log_request(code, size)

    world_lock = threading.RLock()
    stagehand = Stagehand(scenario, args.tick, world_lock)
    patches.install(stagehand)
    moto_app = DomainDispatcherApplication(create_backend_app)
    app = StageApp(moto_app, stagehand, world_lock)

    if stop.is_set():  # told to stop while starting up
        return 0

    # Bind the socket ourselves: werkzeug prints its own text and exits 1 on EADDRINUSE.
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart over TIME_WAIT, not over a listener
        sock.bind((args.host, args.port))
        sock.listen(128)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            fail(f"port {args.port} is in use; pick another with --port or stop what holds it")
        fail(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}")
    server = make_server(args.host, args.port, app, threaded=True, request_handler=RequestHandler, fd=sock.fileno())
    sock.close()  # werkzeug holds its own duplicate of the descriptor
    server.daemon_threads = True  # a hung client must not hold up shutdown

    warm_up(moto_app)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    serving.start()
    stagehand.start()

    host = f"[{args.host}]" if ":" in args.host else args.host
    # Printed before ready, so whoever keeps the stage's stderr can replay the run (--seed N).
    print(f"stage seed {scenario.seed}", file=sys.stderr, flush=True)
    print(f"stage ready on http://{host}:{server.port}", flush=True)
    print(f"stage: scenario {scenario.name}, tick {args.tick}s, ready in {time.monotonic() - STARTED:.2f}s",
          file=sys.stderr, flush=True)

    while not stop.wait(0.2):
        pass
    server.shutdown()
    stagehand.stop()
    server.server_close()
    return 0


def warm_up(moto_app) -> None:
    """Build moto's per-service Flask apps now (each imports its responses module), so the
    first real request to each service is not the slow one."""
    for service in ("s3", "ecs", "elb", "rds", "ec2", "logs", "cloudwatch", "sts"):  # elb serves ELBv2 too
        with moto_app.lock:
            if service not in moto_app.app_instances:
                moto_app.app_instances[service] = moto_app.create_app(service)


if __name__ == "__main__":
    sys.exit(main())
