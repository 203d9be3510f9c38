"""A short soak in the suite (the five-minute one is benchmarks/soak.py): adds, endpoint
dispatch and WebSocket clients mixed at a steady rate; no error, nothing lost, RSS and open
descriptors flat."""

from __future__ import annotations

import pytest
from twisted.internet import defer

from benchmarks.soak import soak
from bullmq_proxy.bridge import as_future
from bullmq_proxy.redis.embedded import free_port
from tests.twistd_process import proxy_env, start_twistd
from tests.workers_helpers import listen_endpoint, ok
from tests.ws_support import on_asyncio

pytestmark = pytest.mark.slow
SECONDS = 30


@on_asyncio
async def test_a_steady_mixed_load_loses_nothing_and_grows_nothing(redis_url, tmp_path):
    from benchmarks.processes import TOKEN

    endpoint = listen_endpoint(lambda delivery: _ok())
    port = free_port()
    proxy = start_twistd([], proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN), tmp_path, port)
    try:
        proxy.wait_ready()
        result = await soak(f"http://127.0.0.1:{port}", proxy.process.pid, redis_url,
                            endpoint.url, SECONDS, rate=200)
    finally:
        proxy.stop()
        await as_future(defer.ensureDeferred(endpoint.close()))
    assert result["errors"] == []
    assert result["completed"] >= result["added"] > SECONDS * 100
    rss, fds = result["rss_mb"], result["fds"]
    assert rss[-1] < rss[0] * 1.5, rss
    assert fds[-1] <= fds[0] + 60, fds


async def _ok():
    return ok("done")
