"""The proxy's Redis connections: ACL users, and recovery when Redis goes away."""

from __future__ import annotations

import subprocess
import time

import pytest
import pytest_twisted
import redis

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.redis.embedded import find_redis_server, free_port, redis_server_argv
from tests.support import AUTH, make_config, start_proxy


@pytest.fixture
def acl_user(sync_redis):
    sync_redis.execute_command("ACL", "SETUSER", "proxy-user", "on", ">s3cret", "~*", "&*",
                               "+@all")
    yield "proxy-user"
    sync_redis.execute_command("ACL", "DELUSER", "proxy-user")


@pytest.mark.parametrize(("password", "status"), [("s3cret", 200), ("wrong", 503)])
@pytest_twisted.ensureDeferred
async def test_acl_username_and_password(redis_url, acl_user, password, status):
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    settings = RedisSettings(host="127.0.0.1", port=port, username=acl_user, password=password)
    proxy = await start_proxy(make_config(redis_url, redis=settings))
    try:
        got, _, _ = await proxy.request("POST", "/queues/mail/jobs",
                                        json_body=[{"name": "a", "data": 1}], headers=AUTH)
        assert got == status
    finally:
        await proxy.stop()


def _start_redis(port, data_dir):
    process = subprocess.Popen(redis_server_argv(find_redis_server(), port, str(data_dir),
                                                 persistent=True),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("redis-server did not start")


@pytest_twisted.ensureDeferred
async def test_requests_recover_after_redis_restarts(tmp_path):
    port = free_port()
    server = _start_redis(port, tmp_path)
    proxy = await start_proxy(make_config(f"redis://127.0.0.1:{port}/0"))
    try:
        job = [{"name": "a", "data": 1}]
        assert (await proxy.request("POST", "/queues/mail/jobs", json_body=job,
                                    headers=AUTH))[0] == 200
        server.terminate()
        server.wait(10)
        assert (await proxy.request("POST", "/queues/mail/jobs", json_body=job,
                                    headers=AUTH))[0] == 503
        server = _start_redis(port, tmp_path)
        status, body, _ = await proxy.request("GET", "/queues/mail/jobs/1", headers=AUTH)
        assert status == 200
        assert body["name"] == "a"  # the append-only file kept it
    finally:
        await proxy.stop()
        server.terminate()
        server.wait(10)
