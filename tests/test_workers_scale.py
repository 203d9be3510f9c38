"""Many registered queues and high concurrency hold a bounded number of Redis connections,
and every job is still processed exactly once."""

from __future__ import annotations

import asyncio
import collections
import json

import pytest_twisted
from twisted.internet import defer

from bullmq_proxy.bridge import as_future
from bullmq_proxy.redis.client_names import node_client_name
from bullmq_proxy.workers.connections import POOL_SIZE
from tests.support import AUTH, make_config, start_live_proxy
from tests.workers_helpers import eventually, listen_endpoint, ok, register
from tests.ws_support import connect, on_asyncio

# The proxy's connections whatever its queues and concurrency: the worker pool, the marker
# wait, the registry follower and the REST client's few.
MAX_CONNECTIONS = 20


def proxy_connections(sync_redis) -> list[str]:
    own = sync_redis.client_id()
    return [client["name"] for client in sync_redis.client_list() if client["id"] != own]


async def add_jobs(live, queue: str, count: int) -> list[str]:
    status, jobs, _ = await live.request(
        "POST", f"/queues/{queue}/jobs", headers=AUTH,
        json_body=[{"name": "n", "data": {"queue": queue, "n": n}} for n in range(count)])
    assert status == 200, jobs
    return [job["id"] for job in jobs]


def completed(sync_redis, queues: list[str]) -> int:
    return sum(sync_redis.zcard(f"bull:{queue}:completed") for queue in queues)


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    # Room for ten WebSocket workers of /process/1000 (WS_MAX_WORKER_SLOTS is 1000 by default).
    proxy = await start_live_proxy(make_config(redis_url, ws_max_worker_slots=10_000))
    yield proxy
    await proxy.stop()


def counting_endpoint(seen: collections.Counter):
    async def handler(delivery):
        job = delivery.body["job"]
        seen[(job["data"]["queue"], job["id"])] += 1
        return ok("done")

    return listen_endpoint(handler)


@pytest_twisted.ensureDeferred
async def test_many_queues_share_a_few_connections_and_each_job_runs_once(live, sync_redis):
    seen: collections.Counter = collections.Counter()
    endpoint = counting_endpoint(seen)
    queues = [f"many-{n}" for n in range(150)]
    markers = live.context.worker_connections.markers
    try:
        for queue in queues:
            await register(live, endpoint.url, queue, opts={"concurrency": 3})
        await eventually(lambda: len(live.workers.workers) == len(queues), what="150 workers")
        await eventually(lambda: markers.watched == len(queues), what="every queue drained")
        assert len(proxy_connections(sync_redis)) <= MAX_CONNECTIONS
        added = {queue: await add_jobs(live, queue, 2) for queue in queues}
        await eventually(lambda: completed(sync_redis, queues) == 2 * len(queues),
                         what="300 jobs completed")
        assert seen == collections.Counter(
            {(queue, job_id): 1 for queue, ids in added.items() for job_id in ids})
        assert len(proxy_connections(sync_redis)) <= MAX_CONNECTIONS
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_high_concurrency_shares_the_pool(live, sync_redis):
    in_flight: list[defer.Deferred] = []
    seen: collections.Counter = collections.Counter()
    concurrency = 300

    async def handler(delivery):
        seen[delivery.body["job"]["id"]] += 1
        held = defer.Deferred()
        in_flight.append(held)
        if len(in_flight) >= concurrency:
            # Every slot holds a job: the moment with the most Redis work outstanding.
            connections = proxy_connections(sync_redis)
            for waiting in in_flight:
                waiting.callback(connections)
            in_flight.clear()
        return ok(json.dumps(await held), "application/json")

    endpoint = listen_endpoint(handler)
    try:
        ids = await add_jobs(live, "wide", 2 * concurrency)
        await register(live, endpoint.url, "wide", opts={"concurrency": concurrency},
                       timeout=60000)
        await eventually(lambda: completed(sync_redis, ["wide"]) == len(ids), timeout=60,
                         what="600 jobs completed")
        assert seen == {job_id: 1 for job_id in ids}
        held = json.loads(sync_redis.hget(f"bull:wide:{ids[0]}", "returnvalue"))
        assert held.count("bullmq-proxy:workers") <= POOL_SIZE
        assert len(held) <= MAX_CONNECTIONS
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_two_instances_share_many_queues_and_each_job_runs_once(redis_url, sync_redis):
    seen: collections.Counter = collections.Counter()
    endpoint = counting_endpoint(seen)
    first = await start_live_proxy(make_config(redis_url))
    second = await start_live_proxy(make_config(redis_url))
    queues = [f"shared-{n}" for n in range(40)]
    try:
        for queue in queues:
            await register(first, endpoint.url, queue, opts={"concurrency": 2})
        for proxy in (first, second):
            await eventually(lambda p=proxy: len(p.workers.workers) == len(queues),
                             what="40 workers on each instance")
        added = {queue: await add_jobs(first, queue, 5) for queue in queues}
        await eventually(lambda: completed(sync_redis, queues) == 5 * len(queues),
                         what="200 jobs completed")
        assert seen == collections.Counter(
            {(queue, job_id): 1 for queue, ids in added.items() for job_id in ids})
    finally:
        await endpoint.close()
        await first.stop()
        await second.stop()


@on_asyncio
async def test_websocket_workers_hold_one_connection_each_whatever_their_concurrency(
        live, sync_redis):
    queues = [f"ws-{n}" for n in range(10)]
    sockets = [await connect(live.url, f"/ws/queues/{queue}/process/1000") for queue in queues]
    try:
        await _until_listed(sync_redis, queues)
        connections = proxy_connections(sync_redis)
        assert len(connections) <= len(queues) + MAX_CONNECTIONS
        for queue in queues:
            assert connections.count(node_client_name("bull", queue)) == 1
        ids = {queue: await _add(live, queue) for queue in queues}
        for ws, queue in zip(sockets, queues, strict=True):
            message = await ws.recv()
            assert message["data"]["job"]["id"] == ids[queue]
            ws.send({"id": message["id"], "data": {"result": "done"}})
        for queue in queues:
            await _until_completed(sync_redis, queue)
    finally:
        for ws in sockets:
            await ws.close()


async def _until_listed(sync_redis, queues: list[str]) -> None:
    wanted = {node_client_name("bull", queue) for queue in queues}
    for _ in range(500):
        if wanted <= set(proxy_connections(sync_redis)):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the WebSocket workers' connections are not all listed")


async def _until_completed(sync_redis, queue: str) -> None:
    for _ in range(500):
        if sync_redis.zcard(f"bull:{queue}:completed") == 1:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the job of {queue} did not complete")


async def _add(live, queue: str) -> str:
    [job_id] = await as_future(defer.ensureDeferred(add_jobs(live, queue, 1)))
    return job_id
