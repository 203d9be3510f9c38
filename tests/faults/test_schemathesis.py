"""schemathesis, from PyPI, fuzzes every operation of the live proxy's OpenAPI document: no
answer may be a 5xx, each must be one the document describes for its operation, and input
the document forbids is refused without a write to Redis."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from bullmq_proxy.redis.embedded import free_port
from tests.support import TOKEN
from tests.twistd_process import proxy_env, start_twistd

pytestmark = pytest.mark.slow
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def _schemathesis(port: int, cwd: Path, *options: str) -> str:
    run = subprocess.run(
        [SCHEMATHESIS, "run", f"http://127.0.0.1:{port}/openapi.json",
         "-H", f"Authorization: Bearer {TOKEN}", "--seed", "20261201", "--no-color",
         *options],
        capture_output=True, text=True, timeout=600, cwd=cwd)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "passed" in run.stdout
    return run.stdout


def _keyspace(client: redis.Redis) -> dict[bytes, bytes]:
    """Every key with its serialized value: any write shows."""
    return {key: client.dump(key) for key in sorted(client.scan_iter(count=1000))}


def test_no_operation_of_the_api_document_answers_a_5xx(redis_url, tmp_path):
    port = free_port()
    proxy = start_twistd([], proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN), tmp_path, port)
    try:
        proxy.wait_ready()
        _schemathesis(port, tmp_path, "--checks", "not_a_server_error,status_code_conformance",
                      "--max-examples", "5")
    finally:
        proxy.stop()
    assert "Unexpected error" not in proxy.output()


def test_input_the_document_forbids_is_refused_and_writes_nothing(redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url)
    port = free_port()
    proxy = start_twistd([], proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN), tmp_path, port)
    try:
        proxy.wait_ready()
        before = _keyspace(client)
        said = _schemathesis(port, tmp_path, "--mode", "negative",
                      "--checks", "negative_data_rejection,not_a_server_error",
                      "--max-examples", "5")
        generated = re.search(r"(\d+) generated", said)
        assert generated is not None, said[-3000:]
        assert int(generated.group(1)) >= 100, said[-3000:]
        assert _keyspace(client) == before
    finally:
        proxy.stop()
        client.close()
    assert "Unexpected error" not in proxy.output()
