#!/usr/bin/env bash
# One run of every workload, side by side: `bash benchmarks/run.sh [--jobs N] [--only A,B,F]`.
# Runs on the README's .venv (made by benchmarks/setup.sh when missing); PYTHON overrides it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$repo/.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    echo "no Python at $PYTHON: run 'bash benchmarks/setup.sh' first (it creates .venv)" >&2
    exit 1
fi
cd "$repo"
exec "$PYTHON" -m benchmarks.run "$@"
