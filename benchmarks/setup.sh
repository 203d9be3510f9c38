#!/usr/bin/env bash
# Installs the benchmark's native tools from Debian's packages: wrk (load generator),
# nginx (the worker endpoint) and redis-server (a private Redis per run). Run as root.
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# The Debian package may start a system nginx; the benchmark runs its own on a free port.
PYTHON="${PYTHON:-/work/venv/bin/python}"
"$PYTHON" -m pip install -q py-spy >/dev/null
echo "benchmark tools ready: $(wrk -v 2>&1 | head -1); $(nginx -v 2>&1); $(redis-server --version)"
