"""Redis restarted (append-only file on) under load: adds get 503 with Retry-After while it is
down, WebSocket clients get err replies, the workers pause; once it is back everything goes
on without restarting the proxy, and no acknowledged job is missing or run twice."""

from __future__ import annotations

import asyncio
import collections
import json

import pytest
import pytest_twisted
from twisted.internet import defer

from bullmq_proxy.bridge import as_future
from bullmq_proxy.redis.embedded import free_port
from tests.redis_process import start_redis
from tests.support import AUTH, make_config, start_live_proxy
from tests.workers_helpers import listen_endpoint, ok, register
from tests.ws_support import connect, on_asyncio

pytestmark = pytest.mark.slow
Q = "restart"


def on_twisted(coroutine):
    return as_future(defer.ensureDeferred(coroutine))


@pytest_twisted.async_yield_fixture
async def redis_and_proxy(tmp_path):
    port = free_port()
    servers = [start_redis(port, tmp_path, persistent=True)]
    proxy = await start_live_proxy(make_config(f"redis://127.0.0.1:{port}/0",
                                               worker_stalled_interval=1000,
                                               worker_lock_duration=5000))

    def restart():
        servers.append(start_redis(port, tmp_path, persistent=True))

    yield proxy, servers, restart
    await proxy.stop()
    for server in servers:
        server.terminate()
        server.wait(10)


@on_asyncio
async def test_redis_restarted_under_load_loses_and_doubles_nothing(redis_and_proxy):
    proxy, servers, restart = redis_and_proxy
    runs: collections.Counter[str] = collections.Counter()

    async def answer(delivery):
        runs[delivery.body["job"]["id"]] += 1
        return ok(json.dumps({"done": True}), "application/json")

    endpoint = listen_endpoint(answer)
    acknowledged: list[str] = []
    refused: list[tuple[int, str | None]] = []
    try:
        await on_twisted(register(proxy, endpoint.url, queue=Q, opts={"concurrency": 5}))
        socket = await connect(proxy.url, f"/ws/queues/{Q}")

        async def add_some(count: int) -> None:
            for n in range(count):
                status, body, headers = await on_twisted(proxy.request(
                    "POST", f"/queues/{Q}/jobs", json_body=[{"name": "n", "data": n}],
                    headers=AUTH))
                if status == 200:
                    acknowledged.append(body[0]["id"])
                else:
                    refused.append((status, (headers.getRawHeaders("retry-after") or [None])[0]))
                await asyncio.sleep(0.01)

        await add_some(30)
        servers[-1].terminate()
        servers[-1].wait(10)
        await add_some(5)
        reply = await socket.call(1, "getJobCounts", "completed")
        assert reply["err"]["code"] in ("redis-unavailable", "timeout"), reply
        restart()
        await add_some(30)
        assert refused, "no add was refused while Redis was down"
        assert all(status == 503 and retry == "1" for status, retry in refused), refused
        deadline = asyncio.get_running_loop().time() + 40
        while set(runs) < set(acknowledged):
            assert asyncio.get_running_loop().time() < deadline, (
                f"{len(set(acknowledged) - set(runs))} acknowledged jobs never ran")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # a job run twice would show by now
        assert [job for job, count in runs.items() if count > 1] == []
        assert (await socket.call(2, "getJobCounts", "completed"))["ok"]["completed"] >= len(
            acknowledged)
        await socket.close()
    finally:
        await on_twisted(endpoint.close())
