#!/usr/bin/env bash
# One run of every workload, side by side: `bash benchmarks/run.sh [--jobs N] [--only A,B,C,M]`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-/work/venv/bin/python}"
cd "$here/.."
exec "$PYTHON" -m benchmarks.run "$@"
