"""AddBatcher against a real Redis: coalescing, per-request results, ordering, jobIds and
error isolation inside a shared pipeline."""

from __future__ import annotations

import asyncio

import pytest
import pytest_twisted
import redis.asyncio as aredis
from bullmq import Queue
from redis.exceptions import ConnectionError, ResponseError
from twisted.internet import defer

from bullmq_proxy.batching import AddBatcher
from tests.support import AUTH, aio, make_config, start_proxy


class CountingClient:
    """The real client, counting the pipelines the batcher opens."""

    def __init__(self, client: aredis.Redis) -> None:
        self.client = client
        self.pipelines = 0

    def pipeline(self, transaction: bool = True):
        self.pipelines += 1
        return self.client.pipeline(transaction=transaction)


@pytest_twisted.async_yield_fixture
async def client(redis_url):
    connection = aredis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    await aio(connection.aclose())


def specs(*names, **opts):
    return [{"name": name, "data": {"n": name}, "opts": dict(opts)} for name in names]


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_share_one_pipeline_and_get_their_own_jobs(client, sync_redis):
    counting = CountingClient(client)
    batcher = AddBatcher(counting)
    mail = Queue("mail", {"connection": client})
    sms = Queue("sms", {"connection": client})

    async def scenario():
        return await asyncio.gather(
            batcher.add_bulk(mail, specs("a", "b", "c")),
            batcher.add_bulk(sms, specs("x")),
            batcher.add_bulk(mail, specs("d", "e")),
        )

    first, second, third = await aio(scenario())
    assert counting.pipelines == 1
    assert [(job.name, job.id) for job in first] == [("a", "1"), ("b", "2"), ("c", "3")]
    assert [(job.name, job.id) for job in second] == [("x", "1")]
    assert [(job.name, job.id) for job in third] == [("d", "4"), ("e", "5")]
    assert sync_redis.lrange("bull:mail:wait", 0, -1) == ["5", "4", "3", "2", "1"]
    assert sync_redis.hget("bull:mail:4", "name") == "d"
    assert sync_redis.hget("bull:sms:1", "data") == '{"n":"x"}'


@pytest_twisted.ensureDeferred
async def test_adds_arriving_during_a_pipeline_go_in_the_next_one(client, sync_redis):
    counting = CountingClient(client)
    batcher = AddBatcher(counting)
    queue = Queue("mail", {"connection": client})

    async def scenario():
        first = asyncio.ensure_future(batcher.add_bulk(queue, specs("a")))
        await asyncio.sleep(0)  # the first pipeline is on its way
        second = asyncio.ensure_future(batcher.add_bulk(queue, specs("b")))
        third = asyncio.ensure_future(batcher.add_bulk(queue, specs("c")))
        return await asyncio.gather(first, second, third)

    results = await aio(scenario())
    assert [[job.id for job in jobs] for jobs in results] == [["1"], ["2"], ["3"]]
    assert counting.pipelines == 2
    assert sync_redis.llen("bull:mail:wait") == 3


@pytest_twisted.ensureDeferred
async def test_batches_are_bounded_but_a_large_request_is_never_split(client, sync_redis):
    counting = CountingClient(client)
    batcher = AddBatcher(counting, max_batch_jobs=3)
    queue = Queue("mail", {"connection": client})

    async def scenario():
        return await asyncio.gather(
            batcher.add_bulk(queue, specs("a", "b")),
            batcher.add_bulk(queue, specs("c", "d")),
            batcher.add_bulk(queue, specs("e", "f", "g", "h")),
        )

    results = await aio(scenario())
    assert [[job.name for job in jobs] for jobs in results] == [
        ["a", "b"], ["c", "d"], ["e", "f", "g", "h"]]
    assert [job.id for job in results[2]] == ["5", "6", "7", "8"]
    assert counting.pipelines == 3
    assert sync_redis.llen("bull:mail:wait") == 8


@pytest_twisted.ensureDeferred
async def test_custom_job_ids_and_duplicates_across_requests(client, sync_redis):
    batcher = AddBatcher(client)
    queue = Queue("mail", {"connection": client})

    async def scenario():
        return await asyncio.gather(
            batcher.add_bulk(queue, specs("a", jobId="order-1")),
            batcher.add_bulk(queue, specs("b", jobId="order-1")),
            batcher.add_bulk(queue, specs("c")),
        )

    first, second, third = await aio(scenario())
    assert first[0].id == "order-1"
    assert second[0].id == "order-1"
    # BullMQ counts every add, custom ids included.
    assert third[0].id == "3"
    assert sync_redis.hget("bull:mail:order-1", "name") == "a"
    assert sync_redis.llen("bull:mail:wait") == 2


@pytest_twisted.ensureDeferred
async def test_a_redis_error_fails_only_its_own_request(client, sync_redis):
    # A string where BullMQ keeps its event stream: every add to "broken" fails in Redis.
    sync_redis.set("bull:broken:events", "not a stream")
    batcher = AddBatcher(client)
    good = Queue("good", {"connection": client})
    broken = Queue("broken", {"connection": client})

    async def scenario():
        return await asyncio.gather(
            batcher.add_bulk(good, specs("a")),
            batcher.add_bulk(broken, specs("b")),
            batcher.add_bulk(good, specs("c", "d")),
            return_exceptions=True,
        )

    first, second, third = await aio(scenario())
    assert [job.id for job in first] == ["1"]
    assert isinstance(second, ResponseError)
    assert "WRONGTYPE" in str(second)
    assert [job.id for job in third] == ["2", "3"]
    assert sync_redis.llen("bull:good:wait") == 3


@pytest_twisted.ensureDeferred
async def test_a_script_error_code_fails_only_its_own_request(client, sync_redis):
    batcher = AddBatcher(client)
    queue = Queue("mail", {"connection": client})
    orphan = [{"name": "child", "data": {},
               "opts": {"parent": {"id": "missing", "queue": "bull:parents"}}}]

    async def scenario():
        return await asyncio.gather(
            batcher.add_bulk(queue, orphan),
            batcher.add_bulk(queue, specs("a")),
            return_exceptions=True,
        )

    failed, added = await aio(scenario())
    assert isinstance(failed, Exception)
    assert "Missing key for parent job" in str(failed)
    assert added[0].name == "a"
    assert sync_redis.hget(f"bull:mail:{added[0].id}", "name") == "a"


@pytest_twisted.ensureDeferred
async def test_a_job_that_cannot_be_encoded_fails_alone(client, sync_redis):
    batcher = AddBatcher(client)
    queue = Queue("mail", {"connection": client})
    unencodable = [{"name": "ok", "data": 1}, {"name": "bad", "data": {1, 2}}]

    async def scenario():
        return await asyncio.gather(
            batcher.add_bulk(queue, specs("a")),
            batcher.add_bulk(queue, unencodable),
            batcher.add_bulk(queue, specs("b")),
            return_exceptions=True,
        )

    first, second, third = await aio(scenario())
    assert isinstance(second, TypeError)
    # The failed request's first job was dropped from the pipeline with it.
    assert [first[0].id, third[0].id] == ["1", "2"]
    assert sync_redis.llen("bull:mail:wait") == 2
    assert sync_redis.hget("bull:mail:2", "name") == "b"


@pytest_twisted.ensureDeferred
async def test_redis_unreachable_fails_every_request_of_the_batch():
    dead = aredis.Redis(port=1, decode_responses=True, socket_connect_timeout=1)
    batcher = AddBatcher(dead)
    queue = Queue("mail", {"connection": dead})

    async def scenario():
        return await asyncio.gather(
            batcher.add_bulk(queue, specs("a")),
            batcher.add_bulk(queue, specs("b")),
            return_exceptions=True,
        )

    try:
        results = await aio(scenario())
    finally:
        await aio(dead.aclose())
    assert all(isinstance(result, ConnectionError) for result in results)


@pytest_twisted.ensureDeferred
async def test_the_batcher_keeps_working_after_a_failed_batch(client, sync_redis):
    batcher = AddBatcher(client)
    queue = Queue("mail", {"connection": client})
    with pytest.raises(TypeError):
        await aio(batcher.add_bulk(queue, [{"name": "bad", "data": {1}}]))
    added = await aio(batcher.add_bulk(queue, specs("a")))
    assert added[0].id == "1"
    assert await aio(batcher.add_bulk(queue, [])) == []


@pytest_twisted.ensureDeferred
async def test_concurrent_rest_adds_each_answer_their_own_jobs(redis_url, sync_redis):
    proxy = await start_proxy(make_config(redis_url))
    try:
        answers = await defer.gatherResults([
            defer.ensureDeferred(proxy.request(
                "POST", f"/queues/{queue}/jobs", headers=AUTH,
                json_body=[{"name": f"{queue}-{n}", "data": n} for n in range(3)]))
            for queue in ("alpha", "beta", "alpha", "gamma")
        ])
    finally:
        await proxy.stop()
    assert [status for status, _, _ in answers] == [200] * 4
    bodies = [body for _, body, _ in answers]
    assert [[job["name"] for job in body] for body in bodies] == [
        [f"{queue}-{n}" for n in range(3)] for queue in ("alpha", "beta", "alpha", "gamma")]
    alpha_ids = sorted(int(job["id"]) for body in (bodies[0], bodies[2]) for job in body)
    assert alpha_ids == [1, 2, 3, 4, 5, 6]
    assert [job["id"] for job in bodies[1]] == ["1", "2", "3"]
    assert sync_redis.llen("bull:alpha:wait") == 6


@pytest_twisted.ensureDeferred
async def test_a_caller_that_stops_waiting_leaves_the_others_answered(client, sync_redis):
    batcher = AddBatcher(client)
    queue = Queue("mail", {"connection": client})

    async def scenario():
        impatient = asyncio.ensure_future(batcher.add_bulk(queue, specs("a")))
        patient = asyncio.ensure_future(batcher.add_bulk(queue, specs("b")))
        await asyncio.sleep(0)
        impatient.cancel()
        return await asyncio.gather(impatient, patient, return_exceptions=True)

    impatient, patient = await aio(scenario())
    assert isinstance(impatient, asyncio.CancelledError)
    assert [job.id for job in patient] == ["2"]
    # Already on its way to Redis: the job was added all the same.
    assert sync_redis.hget("bull:mail:1", "name") == "a"
