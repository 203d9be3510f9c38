"""The fetch-next run loop against a real Redis: jobs, tokens, idle slots and close."""

from __future__ import annotations

import asyncio
import itertools

import pytest_twisted
import redis.asyncio as aredis
from bullmq import Job, Queue

from bullmq_proxy.redis.embedded import free_port
from bullmq_proxy.workers.fetch_next import FetchNextWorker
from tests.redis_process import start_redis
from tests.support import aio

names = (f"fetch-next-{n}" for n in itertools.count())
OPTS = {"lockDuration": 30_000, "stalledInterval": 30_000}


async def fill(url: str, queue: str, count: int) -> list[str]:
    client = aredis.Redis.from_url(url, decode_responses=True)
    adder = Queue(queue, {"connection": client})
    try:
        jobs = await adder.addBulk([{"name": "work", "data": {"n": n}} for n in range(count)])
        return [job.id for job in jobs]
    finally:
        await adder.close()


async def eventually(check, seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {check}")


def start(url: str, queue: str, processor, concurrency: int) -> FetchNextWorker:
    client = aredis.Redis.from_url(url, decode_responses=True)
    return FetchNextWorker(queue, processor, {**OPTS, "connection": client,
                                              "concurrency": concurrency})


@pytest_twisted.ensureDeferred
async def test_every_job_completes_once_and_the_next_job_comes_with_the_completion(
        redis_url, sync_redis):
    async def scenario() -> None:
        queue = next(names)
        ids = await fill(redis_url, queue, 30)
        seen: list[tuple[str, str]] = []

        async def processor(job: Job, token: str) -> str:
            seen.append((job.id, token))
            return f"done {job.data['n']}"

        worker = start(redis_url, queue, processor, concurrency=1)
        await eventually(lambda: _completed(sync_redis, queue, 30))
        await worker.close()
        assert sorted(job_id for job_id, _ in seen) == sorted(ids)
        # One slot, one fresh fetch: every later job came with the previous completion,
        # under the same lock token (as Node BullMQ's fetch-next does).
        assert len({token for _, token in seen}) == 1
        assert sync_redis.hget(f"bull:{queue}:{ids[-1]}", "returnvalue") == '"done 29"'
        assert sync_redis.llen(f"bull:{queue}:active") == 0

    await aio(scenario())


async def _completed(sync_redis, queue: str, count: int) -> bool:
    return sync_redis.zcard(f"bull:{queue}:completed") >= count


@pytest_twisted.ensureDeferred
async def test_close_finishes_the_jobs_held_and_takes_no_more(redis_url, sync_redis):
    async def scenario() -> None:
        queue = next(names)
        await fill(redis_url, queue, 10)
        release = asyncio.Event()
        started: list[str] = []

        async def processor(job: Job, token: str) -> str:
            started.append(job.id)
            await release.wait()
            return "ok"

        worker = start(redis_url, queue, processor, concurrency=2)
        await eventually(lambda: _true(len(started) == 2))
        closing = asyncio.ensure_future(worker.close())
        await asyncio.sleep(0.1)
        assert not closing.done()
        release.set()
        await asyncio.wait_for(closing, 10)
        assert sync_redis.zcard(f"bull:{queue}:completed") == 2
        assert sync_redis.llen(f"bull:{queue}:active") == 0
        assert sync_redis.llen(f"bull:{queue}:wait") == 8
        assert len(started) == 2

    await aio(scenario())


async def _true(value: bool) -> bool:
    return value


@pytest_twisted.ensureDeferred
async def test_idle_slots_wait_on_the_marker_without_polling(redis_url, sync_redis):
    async def scenario() -> None:
        queue = next(names)
        done: list[str] = []

        async def processor(job: Job, token: str) -> None:
            done.append(job.id)

        worker = start(redis_url, queue, processor, concurrency=50)
        await asyncio.sleep(0.3)
        before = _script_calls(sync_redis)
        await asyncio.sleep(1)
        # 50 idle slots polling would make hundreds of moveToActive calls a second.
        assert _script_calls(sync_redis) - before < 5
        ids = await fill(redis_url, queue, 3)
        await eventually(lambda: _true(sorted(done) == sorted(ids)), seconds=5)
        await worker.close()

    await aio(scenario())


def _script_calls(sync_redis) -> int:
    stats = sync_redis.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


@pytest_twisted.ensureDeferred
async def test_a_failing_processor_fails_the_job_through_bullmq_and_the_slot_goes_on(
        redis_url, sync_redis):
    async def scenario() -> None:
        queue = next(names)
        ids = await fill(redis_url, queue, 4)

        async def processor(job: Job, token: str) -> str:
            if job.data["n"] % 2:
                raise ValueError(f"odd {job.data['n']}")
            return "even"

        worker = start(redis_url, queue, processor, concurrency=1)
        await eventually(lambda: _true(
            sync_redis.zcard(f"bull:{queue}:completed")
            + sync_redis.zcard(f"bull:{queue}:failed") == 4))
        await worker.close()
        assert sync_redis.hget(f"bull:{queue}:{ids[1]}", "failedReason") == "odd 1"
        assert sync_redis.zcard(f"bull:{queue}:completed") == 2

    await aio(scenario())


@pytest_twisted.ensureDeferred
async def test_a_worker_started_while_redis_is_away_works_once_it_is_back(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    async def scenario() -> None:
        done: list[str] = []

        async def processor(job: Job, token: str) -> None:
            done.append(job.id)

        client = aredis.Redis.from_url(url, decode_responses=True)
        worker = FetchNextWorker("late", processor, {
            **OPTS, "connection": client, "concurrency": 3, "runRetryDelay": 100})
        await asyncio.sleep(0.5)
        server = await asyncio.to_thread(start_redis, port, tmp_path)
        try:
            ids = await fill(url, "late", 5)
            await eventually(lambda: _true(sorted(done) == sorted(ids)))
            await worker.close()
        finally:
            server.kill()
            server.wait()

    await aio(scenario())


@pytest_twisted.ensureDeferred
async def test_close_ends_the_wait_on_the_marker_every_time(redis_url, sync_redis):
    async def scenario() -> None:
        for _ in range(12):
            queue = next(names)
            await fill(redis_url, queue, 200)

            async def processor(job: Job, token: str) -> None:
                return None

            worker = start(redis_url, queue, processor, concurrency=20)
            await eventually(lambda q=queue: _completed(sync_redis, q, 200))
            # redis-py may swallow the cancellation of the wait on the marker that the
            # drained worker has just started; close() must not hang on it.
            await asyncio.wait_for(worker.close(), 5)

    await aio(scenario())


@pytest_twisted.ensureDeferred
async def test_job_schedulers_keep_producing_under_the_loop(redis_url, sync_redis):
    async def scenario() -> None:
        queue = next(names)
        client = aredis.Redis.from_url(redis_url, decode_responses=True)
        scheduler = Queue(queue, {"connection": client})
        done: list[str] = []

        async def processor(job: Job, token: str) -> None:
            done.append(job.id)

        try:
            await scheduler.upsertJobScheduler("tick", {"every": 150}, "tick", {"n": 1})
            worker = start(redis_url, queue, processor, concurrency=2)
            # Each iteration is added by the worker that takes the previous one.
            await eventually(lambda: _true(len(done) >= 3), seconds=10)
            await worker.close()
            assert len(set(done)) == len(done)
        finally:
            await scheduler.removeJobScheduler("tick")
            await scheduler.close()

    await aio(scenario())


@pytest_twisted.ensureDeferred
async def test_a_deferred_failure_fails_the_job_without_calling_the_processor(
        redis_url, sync_redis):
    async def scenario() -> None:
        queue = next(names)
        [doomed] = await fill(redis_url, queue, 1)
        # What BullMQ stores when a child's failure is to fail this job once it is taken.
        sync_redis.hset(f"bull:{queue}:{doomed}", "defa", "child failed")
        called: list[str] = []

        async def processor(job: Job, token: str) -> None:
            called.append(job.id)

        worker = start(redis_url, queue, processor, concurrency=1)
        await eventually(lambda: _true(sync_redis.zcard(f"bull:{queue}:failed") == 1))
        await worker.close()
        assert called == []
        assert sync_redis.hget(f"bull:{queue}:{doomed}", "failedReason") == "child failed"

    await aio(scenario())
