"""The asyncio client against the real server on a real port."""

from __future__ import annotations

import asyncio

import pytest
import pytest_twisted

from bullmq_proxy.client import (
    ProxyClientError,
    QueueClient,
    QueueEventsClient,
    Refused,
    WorkerClient,
)
from tests.support import TOKEN, make_config, start_live_proxy
from tests.ws_support import on_asyncio


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    running = await start_live_proxy(make_config(redis_url))
    yield running
    await running.stop()


def base(live):
    return live.url.replace("ws://", "http://")


@on_asyncio
async def test_queue_client_commands(live, sync_redis):
    queue = QueueClient(base(live), "mail", TOKEN)
    try:
        job = await queue.add("send", {"to": "x"}, {"priority": 2})
        assert job["opts"]["priority"] == 2
        bulk = await queue.add_bulk([{"name": "a", "data": 1}, {"name": "b", "data": 2}])
        assert len(bulk) == 2
        assert (await queue.get_job(job["id"]))["state"] == "prioritized"
        assert (await queue.get_job_counts("waiting", "prioritized")) == {
            "waiting": 2, "prioritized": 1}
        assert len(await queue.get_jobs(["waiting", "prioritized"], 0, 9)) == 3
        await queue.update_job_progress(job["id"], 10)
        assert await queue.add_job_log(job["id"], "row") == 1
        assert (await queue.get_job_logs(job["id"]))["logs"] == ["row"]
        await queue.pause()
        assert sync_redis.hget("bull:mail:meta", "paused") == "1"
        await queue.resume()
        assert isinstance(await queue.get_workers(), list)
        with pytest.raises(ProxyClientError) as raised:
            await queue.add("send", {}, {"priority": -1})
        assert raised.value.field == "args[2].priority"
        assert raised.value.code == "invalid-field"
    finally:
        await queue.close()


@on_asyncio
async def test_bad_token_is_refused_without_retrying(live):
    queue = QueueClient(base(live), "mail", "wrong")
    try:
        with pytest.raises(Refused) as raised:
            await queue.get_job_counts()
        assert raised.value.status == 401
    finally:
        await queue.close()


@on_asyncio
async def test_worker_client_async_and_sync_handlers(live, sync_redis):
    queue = QueueClient(base(live), "mail", TOKEN)

    async def double(job):
        return job["data"] * 2

    def explode(job):
        raise RuntimeError(f"no {job['data']}")

    worker = WorkerClient(base(live), "mail", TOKEN, double, concurrency=2)
    failing = WorkerClient(base(live), "other", TOKEN, explode)
    events = QueueEventsClient(base(live), "mail", TOKEN, ("completed",))
    try:
        await asyncio.gather(worker.wait_open(), failing.wait_open(), events.ready())
        job = await queue.add("n", 21)
        async for event in events:
            if event.name == "completed" and event.args[0]["jobId"] == job["id"]:
                assert event.args[0]["returnvalue"] == 42
                break
        other = QueueClient(base(live), "other", TOKEN)
        failed = await other.add("n", 7)
        while sync_redis.zscore("bull:other:failed", failed["id"]) is None:
            await asyncio.sleep(0.02)
        assert sync_redis.hget(f"bull:other:{failed['id']}", "failedReason") == "no 7"
        await other.close()
    finally:
        await asyncio.gather(worker.close(), failing.close(), events.close(), queue.close())


@on_asyncio
async def test_events_client_callbacks_and_unsubscribe(live):
    queue = QueueClient(base(live), "mail", TOKEN)
    events = QueueEventsClient(base(live), "mail", TOKEN)
    added = asyncio.get_running_loop().create_future()
    events.on("added", lambda payload, entry: added.done() or added.set_result(payload))
    try:
        assert "added" in await events.ready()
        job = await queue.add("n", 1)
        assert (await asyncio.wait_for(added, 10))["jobId"] == job["id"]
        assert "added" not in await events.unsubscribe("added")
        assert "added" in await events.subscribe("added")
    finally:
        await asyncio.gather(events.close(), queue.close())


@on_asyncio
async def test_clients_reconnect_after_the_server_drops_them(live):
    queue = QueueClient(base(live), "mail", TOKEN, request_timeout=10)
    try:
        await queue.add("n", 1)
        service = live.proxy.services.getServiceNamed("websockets")
        for protocol in list(service.sockets):
            protocol.dropConnection(abort=True)
        # The next request waits for the new socket instead of failing.
        for _ in range(200):
            try:
                counts = await queue.get_job_counts("waiting")
                break
            except Exception:
                await asyncio.sleep(0.05)
        assert counts == {"waiting": 1}
    finally:
        await queue.close()


@on_asyncio
async def test_many_worker_sockets_share_a_queue(live, sync_redis):
    done = []

    async def handler(job):
        done.append(job["id"])
        return job["data"]

    workers = [WorkerClient(base(live), "mail", TOKEN, handler, concurrency=2)
               for _ in range(10)]
    queue = QueueClient(base(live), "mail", TOKEN)
    try:
        await asyncio.gather(*(worker.wait_open() for worker in workers))
        added = await queue.add_bulk([{"name": "n", "data": i} for i in range(100)])
        while sync_redis.zcard("bull:mail:completed") < 100:
            await asyncio.sleep(0.05)
        assert sorted(done) == sorted(job["id"] for job in added)
    finally:
        await asyncio.gather(queue.close(), *(worker.close() for worker in workers))
