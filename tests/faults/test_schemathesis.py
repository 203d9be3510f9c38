"""schemathesis, from PyPI, fuzzes every operation of the live proxy's OpenAPI document: no
answer may be a 5xx, and each must be one the document describes for its operation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bullmq_proxy.redis.embedded import free_port
from tests.support import TOKEN
from tests.twistd_process import proxy_env, start_twistd

pytestmark = pytest.mark.slow
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def test_no_operation_of_the_api_document_answers_a_5xx(redis_url, tmp_path):
    port = free_port()
    proxy = start_twistd([], proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN), tmp_path, port)
    try:
        proxy.wait_ready()
        run = subprocess.run(
            [SCHEMATHESIS, "run", f"http://127.0.0.1:{port}/openapi.json",
             "-H", f"Authorization: Bearer {TOKEN}", "--checks",
             "not_a_server_error,status_code_conformance", "--max-examples", "5",
             "--seed", "20261201", "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert "passed" in run.stdout
    finally:
        proxy.stop()
    assert "Unexpected error" not in proxy.output()
