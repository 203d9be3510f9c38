"""Every queue name the REST API accepts is processable by every kind of worker.

Redis refuses ``CLIENT SETNAME`` for names with spaces, newlines or characters outside
``!``..``~``; bullmq names its connections after the queue, so these names once gave workers
that never connected.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
import pytest_twisted
import redis

from bullmq_proxy.redis.client_names import node_client_name
from tests.support import make_config, start_live_proxy
from tests.workers_helpers import add_job, finished, listen_endpoint, ok, register
from tests.ws_support import connect, on_asyncio

NAMES = [
    "test queue",            # the original's own Bun client test
    "émails ✉ 邮件",
    "{hash tag}",
    "new\nline\ttab",
    "quote\"s'and\\slash",
    "per%cent #hash ?q=1&x",
    "slash/inside",
    "\x01control\x7f",
    "emoji 🚀 wide",
]


def path_of(name: str) -> str:
    return quote(name, safe="")


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, worker_stalled_interval=1000))
    yield proxy
    await proxy.stop()


def test_node_client_names_are_accepted_by_redis(sync_redis) -> None:
    for name in NAMES:
        assert sync_redis.client_setname(node_client_name("bull", name, ":w:x"))


@pytest.mark.parametrize("name", NAMES, ids=range(len(NAMES)))
@pytest_twisted.ensureDeferred
async def test_http_endpoint_worker_processes_the_queue(live, name):
    async def handler(delivery):
        return ok(json.dumps({"seen": delivery.body["job"]["data"]}), "application/json")

    endpoint = listen_endpoint(handler)
    try:
        await register(live, endpoint.url, queue=name)
        job_id = await add_job(live, queue=path_of(name), data=name)
        job = await finished(live, job_id, queue=path_of(name))
        assert job["state"] == "completed", job
        assert job["returnvalue"] == {"seen": name}
        status, body, _ = await live.request(
            "GET", f"/workers/{path_of(name)}", headers={"Authorization": "Bearer test-token"})
        assert status == 200, body
    finally:
        await endpoint.close()


@pytest.mark.parametrize("name", NAMES, ids=range(len(NAMES)))
@on_asyncio
async def test_websocket_worker_processes_the_queue_and_is_listed(live, redis_url, name):
    worker = await connect(live.url, f"/ws/queues/{path_of(name)}/process/2")
    queue = await connect(live.url, f"/ws/queues/{path_of(name)}")
    added = (await queue.call(1, "add", "n", name))["ok"]
    message = await worker.recv()
    assert message["data"]["job"]["id"] == added["id"]
    # Node BullMQ's Queue.getWorkers() finds connections by this name, and so does the proxy.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert node_client_name("bull", name) in {c["name"] for c in client.client_list()}
    finally:
        client.close()
    workers = (await queue.call(2, "getWorkers"))["ok"]
    assert workers
    assert all(w["rawname"] == node_client_name("bull", name) for w in workers)
    worker.send({"id": message["id"], "data": {"result": "done"}})
    for _ in range(200):
        job = (await queue.call(3, "getJob", added["id"]))["ok"]
        if job["state"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert (job["state"], job["returnvalue"], job["data"]) == ("completed", "done", name)
    await queue.close()
    await worker.close()
