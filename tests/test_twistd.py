"""``twistd bullmq-proxy`` as users run it: embedded Redis, start-up errors, shutdown."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time

import pytest

from bullmq_proxy.redis.embedded import free_port
from tests.twistd_process import TWISTD, proxy_env, run_twistd, start_twistd

# Real twistd processes, installs or packaging steps: part of the slow subset.
pytestmark = pytest.mark.slow

# twistd re-raises the stopping signal after a clean shutdown, so that the exit status says
# which signal ended it (what systemd expects); the log shows the shutdown was graceful.
STOPPED_BY_TERM = -signal.SIGTERM


def _stopped_cleanly(proxy, code, expected=STOPPED_BY_TERM):
    assert code == expected
    assert "Server Shut Down." in proxy.output()
    assert "Traceback" not in proxy.output()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_embedded_mode_runs_protected_persists_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    proxy = start_twistd(["--data-dir", str(data_dir)], proxy_env(), tmp_path, port)
    try:
        proxy.wait_ready()
        token = (data_dir / "auth-token").read_text().strip()
        # Standard error is no terminal here (as under journald or docker logs): the log
        # says where the token is, and never shows it.
        assert token not in proxy.output()
        assert f"generated an API token, kept in {data_dir}/auth-token" in proxy.output()
        assert "Embedded mode" in proxy.output()
        assert proxy.request("GET", "/queues/mail/jobs")[0] == 401
        status, jobs = proxy.request("POST", "/queues/mail/jobs",
                                     [{"name": "keep", "data": {"n": 1}}], token)
        assert status == 200
        assert jobs[0]["id"] == "1"
        redis_port = int(proxy.output().split("127.0.0.1:")[1].split()[0])
        assert _port_open(redis_port)
    finally:
        code = proxy.stop()
    _stopped_cleanly(proxy, code)
    assert "Embedded redis-server stopped" in proxy.output()
    assert not _port_open(redis_port)

    again = start_twistd(["--data-dir", str(data_dir)], proxy_env(), tmp_path, free_port())
    try:
        again.wait_ready()
        assert token not in again.output()
        assert f"using the token kept in {data_dir}/auth-token" in again.output()
        status, job = again.request("GET", "/queues/mail/jobs/1", token=token)
        assert status == 200
        assert job["data"] == {"n": 1}
    finally:
        _stopped_cleanly(again, again.stop())


def test_external_redis_never_starts_an_embedded_one(tmp_path, redis_url):
    env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS="t1,t2")
    proxy = start_twistd([], env, tmp_path, free_port())
    try:
        proxy.wait_ready()
        assert proxy.request("GET", "/queues/mail/jobs", token="t2")[0] == 200
    finally:
        _stopped_cleanly(proxy, proxy.stop())
    assert "Embedded" not in proxy.output()
    assert not (tmp_path / "bullmq-proxy-data").exists()


def test_sigint_also_stops_cleanly(tmp_path, redis_url):
    proxy = start_twistd([], proxy_env(REDIS_URL=redis_url, AUTH_TOKENS="t"), tmp_path,
                         free_port())
    proxy.wait_ready()
    _stopped_cleanly(proxy, proxy.stop(signal.SIGINT), -signal.SIGINT)


def test_bad_config_is_one_line_not_a_traceback(tmp_path):
    result = run_twistd(["bullmq-proxy"], proxy_env(PORT="abc"), tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "bullmq-proxy: PORT must be an integer, got 'abc'"

    result = run_twistd(["bullmq-proxy", "--queue-cache-size", "-3"], proxy_env(), tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "bullmq-proxy: --queue-cache-size must be at least 1, got -3"

    result = run_twistd(["bullmq-proxy"], proxy_env(REDIS_URL="http://nope"), tmp_path)
    assert result.returncode == 1
    assert "REDIS_URL must be a redis://" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_plugin_is_refused(tmp_path):
    result = run_twistd(["bullmq-proxy", "--plugin", "nope", "--redis-url", "redis://x"],
                        proxy_env(AUTH_TOKENS="t"), tmp_path)
    assert result.returncode == 1
    assert "--plugin 'nope' is not installed" in result.stderr


def test_another_reactor_is_a_usage_error(tmp_path):
    result = run_twistd(["--reactor=select", "bullmq-proxy"], proxy_env(), tmp_path)
    assert result.returncode != 0
    assert "asyncio reactor" in result.stdout + result.stderr


def test_oversize_upload_is_413_on_a_real_socket(tmp_path, redis_url):
    env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS="t", MAX_BODY_SIZE="1000")
    proxy = start_twistd([], env, tmp_path, free_port())
    try:
        proxy.wait_ready()
        status, body = proxy.request("POST", "/queues/mail/jobs",
                                     [{"name": "big", "data": "x" * 5000}], "t")
        assert status == 413
        assert body["type"] == "/problems/payload-too-large"
    finally:
        _stopped_cleanly(proxy, proxy.stop())


@pytest.mark.slow
def test_a_generated_token_is_shown_on_a_terminal_once(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    controller, terminal = os.openpty()
    process = subprocess.Popen(
        [*TWISTD, "--pidfile=", "-n", "bullmq-proxy", "--listen", f"tcp:{port}",
         "--data-dir", str(data_dir)],
        env=proxy_env(), cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=terminal,
        stderr=terminal)
    os.close(terminal)
    shown, token = b"", "never written"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                token.encode() in shown and b"shown on the terminal" in shown):
            if select.select([controller], [], [], 0.2)[0]:
                shown += os.read(controller, 65536)
            if (data_dir / "auth-token").exists():
                token = (data_dir / "auth-token").read_text().strip()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        os.close(controller)
    assert token.encode() in shown
    assert b"shown on the terminal" in shown
