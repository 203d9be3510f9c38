#!/usr/bin/env bash
# Installs what the benchmarks need: wrk (load generator), nginx (the worker endpoint) and
# redis-server (a private Redis per run) from Debian's packages, the README's .venv with the
# proxy when it is missing, and py-spy into it. Run as root. The original (Bun) proxy installs
# itself from the npm registry on its first run (../shared/reference/run-bun-proxy).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# The Debian package may start a system nginx; the benchmark runs its own on a free port.
PYTHON="${PYTHON:-$repo/.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    (cd "$repo" && python3 -m venv .venv \
        && .venv/bin/pip install -q -c constraints.txt '.[test,embedded]')
    PYTHON="$repo/.venv/bin/python"
fi
"$PYTHON" -m pip install -q py-spy >/dev/null
echo "benchmark tools ready: $(wrk -v 2>&1 | head -1); $(nginx -v 2>&1); $(redis-server --version)"
