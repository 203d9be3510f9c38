"""The proxy's Redis connections: ACL users, and recovery when Redis goes away."""

from __future__ import annotations

import pytest
import pytest_twisted

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.redis.embedded import free_port
from tests.redis_process import start_redis
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


@pytest_twisted.ensureDeferred
async def test_requests_recover_after_redis_restarts(tmp_path):
    port = free_port()
    server = start_redis(port, tmp_path, persistent=True)
    proxy = await start_proxy(make_config(f"redis://127.0.0.1:{port}/0"))
    try:
        job = [{"name": "a", "data": 1}]
        assert (await proxy.request("POST", "/queues/mail/jobs", json_body=job,
                                    headers=AUTH))[0] == 200
        server.terminate()
        server.wait(10)
        assert (await proxy.request("POST", "/queues/mail/jobs", json_body=job,
                                    headers=AUTH))[0] == 503
        server = start_redis(port, tmp_path, persistent=True)
        status, body, _ = await proxy.request("GET", "/queues/mail/jobs/1", headers=AUTH)
        assert status == 200
        assert body["name"] == "a"  # the append-only file kept it
    finally:
        await proxy.stop()
        server.terminate()
        server.wait(10)
