#!/bin/bash
# LocalStack init hook (ready stage): seed the example plan's world (VPC, cluster, services,
# load balancer, DB, buckets, alarms) with `glidepath stage seed`, idempotently.
#
# Needs the glidepath binary on PATH inside the container: docker-compose.yml mounts
# $GLIDEPATH_BIN (default ../target/debug/glidepath) at /usr/local/bin/glidepath. Without it
# this hook says so and leaves LocalStack running unseeded (seed from the host instead).
set -euo pipefail

plan="${GLIDEPATH_SEED_PLAN:-/glidepath/examples/rehearsal.toml}"

if ! command -v glidepath >/dev/null 2>&1 || ! glidepath --version >/dev/null 2>&1; then
  echo "glidepath seed: no runnable glidepath binary in the container; not seeding." >&2
  echo "  mount one (GLIDEPATH_BIN=... in docker-compose.yml) or seed from the host:" >&2
  echo "  AWS_ENDPOINT_URL=http://127.0.0.1:4566 glidepath stage seed examples/rehearsal.toml" >&2
  exit 0
fi
if [[ ! -f "$plan" ]]; then
  echo "glidepath seed: plan $plan is not mounted; not seeding (see docker-compose.yml)" >&2
  exit 0
fi

# Inside the container LocalStack listens on localhost:4566; seeding refuses anything else.
AWS_ENDPOINT_URL=http://127.0.0.1:4566 glidepath stage seed "$plan"
