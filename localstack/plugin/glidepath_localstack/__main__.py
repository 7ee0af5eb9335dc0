"""Run LocalStack with the glidepath plugin as a rehearsal stage.

    GLIDEPATH_STAGE_DIR=localstack/stage python -m glidepath_localstack --port 4566 \
        [--scenario NAME_OR_PATH] [--tick 0.5] [--seed N]

Same arguments, output and exit codes as localstack/stage/stage.py (`stage ready on URL` on
stdout once it serves, exit 2 with one `stage: ...` line for bad input, 0 after SIGTERM), so
glidepath starts either engine the same way. LocalStack runs in this process, on the host.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import sys
import tempfile


def main() -> None:
    stage_dir = os.environ.get("GLIDEPATH_STAGE_DIR")
    if not stage_dir or not os.path.isfile(os.path.join(stage_dir, "stage.py")):
        print("stage: set GLIDEPATH_STAGE_DIR to the localstack/stage folder of a glidepath checkout "
              f"(got {stage_dir!r})", file=sys.stderr, flush=True)
        sys.exit(2)
    stage_dir = os.path.abspath(stage_dir)
    os.environ["GLIDEPATH_STAGE_DIR"] = stage_dir
    sys.path.insert(0, stage_dir)
    # The stage's own argument checks and scenario loader: one set of rules for both engines.
    from scenario import ScenarioError, load
    from stage import fail, parse_args

    args = parse_args(sys.argv[1:])
    try:
        scenario = load(args.scenario)
    except ScenarioError as e:
        fail(str(e))
    seed = args.seed if args.seed is not None else scenario.seed
    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    port = args.port or free_port(args.host)
    check_port(args.host, port)

    root = tempfile.mkdtemp(prefix="glidepath-localstack-")
    atexit.register(shutil.rmtree, root, True)
    os.environ.update({
        "GLIDEPATH_SCENARIO": args.scenario,
        "GLIDEPATH_SEED": str(seed),
        "GLIDEPATH_TICK": str(args.tick),
        "GATEWAY_LISTEN": f"{args.host}:{port}",
        # No cloudwatch: LocalStack 4.3.0 cannot load the CloudWatch model botocore now ships
        # (rpc-v2-cbor); the plugin serves that protocol itself, from moto.
        "SERVICES": "s3,sts,logs,ecs,elbv2,rds,ec2",
        # Load services before "ready", not on their first request (seconds each).
        "EAGER_SERVICE_LOADING": "1",
        # On the host, not in a container: keep LocalStack's files in a temp dir and off the network.
        "OVERRIDE_IN_DOCKER": "0",
        "FILESYSTEM_ROOT": root,
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",
        "DNS_ADDRESS": "0",
    })
    from localstack.runtime.main import main as localstack_main

    localstack_main()


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(host: str, port: int) -> None:
    """LocalStack would only log a bind failure and keep running; say it the stage's way."""
    from stage import fail

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            fail(f"port {port} is in use; pick another with --port or stop what holds it")


if __name__ == "__main__":
    main()
