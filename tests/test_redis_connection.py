"""The proxy's Redis connections with ACL users. Recovery after a Redis restart is tested,
with the counters it moves, in test_metrics.py."""

from __future__ import annotations

import pytest
import pytest_twisted

from bullmq_proxy.config import RedisSettings
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
