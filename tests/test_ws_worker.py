"""The push-worker socket: results, failures, timeouts and closing with jobs in flight."""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_twisted
from bullmq import Queue, Worker
from bullmq.custom_errors import DelayedError

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.workers.connections import WorkerConnections
from bullmq_proxy.ws.worker import WorkerSession
from tests.support import make_config, start_live_proxy
from tests.ws_support import connect, on_asyncio


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    # A message timeout no loaded machine reaches: only the test that is about the timeout
    # (with a proxy of its own) may see a job fail for want of a reply.
    running = await start_live_proxy(make_config(redis_url, ws_message_timeout=60.0))
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def hasty(redis_url):
    running = await start_live_proxy(make_config(redis_url, ws_message_timeout=1.0))
    yield running
    await running.stop()


async def add(redis_url, *jobs):
    queue = Queue("mail", {"connection": redis_url})
    try:
        return [await queue.add(name, data, opts) for name, data, opts in jobs]
    finally:
        await queue.close()


async def wait_for(predicate, timeout=10.0, what=lambda: None):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"condition not met in time: {what()}"
        await asyncio.sleep(0.02)


@on_asyncio
async def test_job_is_pushed_and_result_completes_it(live, redis_url, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail/process/1")
    (job,) = await add(redis_url, ("send", {"to": "a@b"}, {}))
    message = await ws.recv()
    data = message["data"]
    assert data["type"] == "process"
    assert data["payload"] == {"to": "a@b"}
    assert data["job"]["id"] == job.id
    assert data["job"]["name"] == "send"
    assert sync_redis.get(f"bull:mail:{job.id}:lock") == data["token"]
    # The seed guide's reply frame.
    ws.send(json.dumps({"id": message["id"], "data": {"result": {"processed": True}}}))
    await wait_for(lambda: sync_redis.zscore("bull:mail:completed", job.id) is not None)
    assert json.loads(sync_redis.hget(f"bull:mail:{job.id}", "returnvalue")) == {
        "processed": True}
    await ws.close()


@on_asyncio
async def test_bun_client_error_reply_fails_the_job(live, redis_url, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail/process/1")
    (job,) = await add(redis_url, ("send", 1, {}))
    message = await ws.recv()
    ws.send({"id": message["id"], "data": {"err": {"message": "boom", "stack": "at x"}}})
    await wait_for(lambda: sync_redis.zscore("bull:mail:failed", job.id) is not None)
    assert sync_redis.hget(f"bull:mail:{job.id}", "failedReason") == "boom"
    await ws.close()


@on_asyncio
async def test_null_result_completes(live, redis_url, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail/process/1")
    (job,) = await add(redis_url, ("send", 1, {}))
    message = await ws.recv()
    ws.send({"id": message["id"], "data": {"result": None}})
    await wait_for(lambda: sync_redis.zscore("bull:mail:completed", job.id) is not None)
    await ws.close()


@on_asyncio
async def test_no_reply_fails_the_attempt_and_retries(hasty, redis_url, sync_redis):
    ws = await connect(hasty.url, "/ws/queues/mail/process/1")
    (job,) = await add(redis_url, ("send", 1, {"attempts": 2}))
    first = await ws.recv()
    second = await ws.recv(timeout=10)  # the retry, after the 1 s message timeout
    assert second["data"]["job"]["id"] == job.id
    assert second["data"]["job"]["attemptsMade"] == 1
    assert second["id"] != first["id"]
    # A late reply to the timed-out attempt is refused, not applied.
    ws.send({"id": first["id"], "data": {"result": "late"}})
    late = await ws.recv()
    assert (late["id"], late["data"]["err"]["field"]) == (first["id"], "id")
    await wait_for(lambda: sync_redis.zscore("bull:mail:failed", job.id) is not None)
    assert "did not reply" in sync_redis.hget(f"bull:mail:{job.id}", "failedReason")
    await ws.close()


@on_asyncio
async def test_concurrency_and_out_of_order_replies(live, redis_url, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail/process/3")
    jobs = await add(redis_url, *[("n", i, {}) for i in range(3)])
    messages = [await ws.recv() for _ in range(3)]
    assert sorted(m["data"]["payload"] for m in messages) == [0, 1, 2]
    for message in reversed(messages):
        ws.send({"id": message["id"], "data": {"result": message["data"]["payload"] * 10}})
    await wait_for(lambda: sync_redis.zcard("bull:mail:completed") == 3, what=lambda: {
        job.id: sync_redis.hmget(f"bull:mail:{job.id}", "finishedOn", "failedReason")
        for job in jobs})
    for job in jobs:
        assert sync_redis.hget(f"bull:mail:{job.id}", "returnvalue") == str(job.data * 10)
    await ws.close()


@on_asyncio
async def test_malformed_replies_get_err_and_socket_stays(live, redis_url, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail/process/1")
    (job,) = await add(redis_url, ("send", 1, {}))
    message = await ws.recv()
    ws.send("{nope")
    assert (await ws.recv())["data"]["err"]["code"] == "invalid-json"
    ws.send({"id": message["id"], "data": {"other": 1}})
    assert (await ws.recv())["data"]["err"]["field"] == "data"
    ws.send({"id": 12345, "data": {"result": 1}})
    assert (await ws.recv())["data"]["err"]["field"] == "id"
    ws.send({"id": message["id"], "data": {"result": "fine"}})
    await wait_for(lambda: sync_redis.zscore("bull:mail:completed", job.id) is not None)
    await ws.close()


@on_asyncio
async def test_close_with_jobs_in_flight_fails_them_and_stops(redis_url, sync_redis):
    # A message timeout far longer than the test: only the close can fail the jobs.
    live = await start_live_proxy(make_config(redis_url, ws_message_timeout=600.0))
    try:
        await close_with_jobs_in_flight(live, redis_url, sync_redis)
    finally:
        await live.stop_from_asyncio()


async def close_with_jobs_in_flight(live, redis_url, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail/process/2")
    jobs = await add(redis_url, ("a", 1, {"attempts": 3}), ("b", 2, {"attempts": 3}))
    await ws.recv()
    await ws.recv()
    await ws.close()
    await wait_for(lambda: all(
        "closed before it replied" in (sync_redis.hget(f"bull:mail:{job.id}", "failedReason")
                                       or "") for job in jobs))
    assert all(sync_redis.hget(f"bull:mail:{job.id}", "atm") == "1" for job in jobs)
    await wait_for(lambda: sync_redis.llen("bull:mail:wait") == 2)
    # The worker stopped: nobody takes the retried jobs.
    await asyncio.sleep(0.5)
    assert sync_redis.llen("bull:mail:wait") == 2
    assert sync_redis.llen("bull:mail:active") == 0
    assert not live.proxy.services.getServiceNamed("websockets").sockets


@on_asyncio
async def test_shutdown_closes_sockets_and_fails_jobs_in_flight(redis_url, sync_redis):
    live = await start_live_proxy(make_config(redis_url, ws_message_timeout=600.0))
    try:
        ws = await connect(live.url, "/ws/queues/mail/process/1")
        (job,) = await add(redis_url, ("a", 1, {}))
        await ws.recv()
    finally:
        await live.stop_from_asyncio()
    assert await ws.closed() == (4001, "server shutting down")
    assert "closed before it replied" in sync_redis.hget(f"bull:mail:{job.id}", "failedReason")


@on_asyncio
async def test_job_taken_after_the_close_goes_back_without_losing_an_attempt(
        redis_url, sync_redis):
    sent = []

    class Channel:
        def send(self, payload):
            sent.append(payload)

        def hold_reading(self, reason, holding):
            pass

    connections = WorkerConnections(RedisSettings(url=redis_url), "bull")
    session = WorkerSession(Channel(), "mail", 1, {}, 5.0, connections)
    await session.closed()
    (job,) = await add(redis_url, ("late", 1, {"attempts": 1}))
    # Take the job the way the session's worker would have, just after its socket closed.
    taker = Worker("mail", None, {"connection": redis_url, "autorun": False})
    try:
        active = await taker.getNextJob("tok-1")
        assert active.id == job.id
        with pytest.raises(DelayedError):
            await session.worker.processor(active, "tok-1")
    finally:
        await taker.close()
        await connections.close()
    assert sent == []
    assert sync_redis.lrange("bull:mail:active", 0, -1) == []
    assert (sync_redis.zscore("bull:mail:delayed", job.id) is not None
            or job.id in sync_redis.lrange("bull:mail:wait", 0, -1))
    assert sync_redis.hget(f"bull:mail:{job.id}", "atm") in (None, "0")
    assert sync_redis.hget(f"bull:mail:{job.id}", "failedReason") is None


@on_asyncio
async def test_worker_sockets_are_capped_per_instance(redis_url):
    from tests.ws_support import raw_upgrade

    proxy = await start_live_proxy(make_config(redis_url, ws_max_workers=2,
                                               ws_max_worker_slots=5))
    try:
        first = await connect(proxy.url, "/ws/queues/mail/process/2")
        status, headers, body = await raw_upgrade(proxy.url,
                                                  "/ws/queues/mail/process/4?token=test-token")
        problem = json.loads(body)
        assert (status, problem["type"], problem["field"]) == (
            429, "/problems/rate-limited", "concurrency")
        assert headers["retry-after"] == "5"
        assert "WS_MAX_WORKER_SLOTS" in problem["detail"]
        second = await connect(proxy.url, "/ws/queues/other/process/3")
        status, _, body = await raw_upgrade(proxy.url, "/ws/queues/mail/process/1?token=test-token")
        assert status == 429
        assert "WS_MAX_WORKERS" in json.loads(body)["detail"]
        # Queue and event sockets are not workers: they are not counted.
        queue = await connect(proxy.url, "/ws/queues/mail")
        assert (await queue.call(1, "getJobCounts"))["ok"] is not None
        await first.close()
        await wait_for(lambda: _worker_sockets(proxy) == 1)
        third = await connect(proxy.url, "/ws/queues/mail/process/2")
        await asyncio.gather(second.close(), third.close(), queue.close())
    finally:
        await proxy.stop_from_asyncio()


def _worker_sockets(proxy):
    return proxy.proxy.services.getServiceNamed("websockets").worker_slots()[0]
