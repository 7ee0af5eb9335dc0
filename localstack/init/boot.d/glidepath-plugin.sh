#!/bin/bash
# LocalStack init hook (boot stage, before LocalStack starts): install the glidepath plugin
# mounted at /opt/glidepath/plugin into the image's Python, so LocalStack loads it.
set -euo pipefail
python="${LOCALSTACK_PYTHON:-/opt/code/localstack/.venv/bin/python}"
# A copy: pip's build must not write into the read-only mount.
build="$(mktemp -d)"
cp -r /opt/glidepath/plugin/. "$build/"
"$python" -m pip install --disable-pip-version-check -q --no-deps "$build"
rm -rf "$build"
echo "glidepath: plugin installed (scenario ${GLIDEPATH_SCENARIO:-happy})"
