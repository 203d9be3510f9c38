"""The fetch-next run loop against a real Redis: jobs, tokens, idle slots and close."""

from __future__ import annotations

import asyncio
import itertools

import pytest_twisted
import redis.asyncio as aredis
from bullmq import Job, Queue

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.redis.embedded import free_port
from bullmq_proxy.workers.connections import WorkerConnections
from bullmq_proxy.workers.fetch_next import FetchNextWorker
from tests.redis_process import start_redis
from tests.support import aio
from tests.workers_helpers import eventually

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


@pytest_twisted.async_yield_fixture
async def connections(redis_url):
    shared = WorkerConnections(RedisSettings(url=redis_url), "bull")
    yield shared
    await aio(shared.close())


def start(connections: WorkerConnections, queue: str, processor,
          concurrency: int) -> FetchNextWorker:
    return FetchNextWorker(queue, processor, {**OPTS, "concurrency": concurrency}, connections)


def holding():
    """A processor that records each job it gets and holds it until ``release`` is set."""
    release = asyncio.Event()
    taken: list[str] = []

    async def processor(job: Job, token: str) -> str:
        taken.append(job.id)
        await release.wait()
        return "held"

    return processor, release, taken


def completed(sync_redis, queue: str) -> int:
    return sync_redis.zcard(f"bull:{queue}:completed")


def script_calls(sync_redis) -> int:
    stats = sync_redis.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


@pytest_twisted.ensureDeferred
async def test_every_job_completes_once_and_the_next_job_comes_with_the_completion(
        redis_url, sync_redis, connections):
    queue = next(names)
    ids = await aio(fill(redis_url, queue, 30))
    seen: list[tuple[str, str]] = []

    async def processor(job: Job, token: str) -> str:
        seen.append((job.id, token))
        return f"done {job.data['n']}"

    worker = start(connections, queue, processor, concurrency=1)
    await eventually(lambda: completed(sync_redis, queue) == 30, what="30 jobs")
    await aio(worker.close())
    assert sorted(job_id for job_id, _ in seen) == sorted(ids)
    # One slot, one fresh fetch: every later job came with the previous completion,
    # under the same lock token (as Node BullMQ's fetch-next does).
    assert len({token for _, token in seen}) == 1
    assert sync_redis.hget(f"bull:{queue}:{ids[-1]}", "returnvalue") == '"done 29"'
    assert sync_redis.llen(f"bull:{queue}:active") == 0


@pytest_twisted.ensureDeferred
async def test_close_finishes_the_jobs_held_and_takes_no_more(redis_url, sync_redis, connections):
    queue = next(names)
    await aio(fill(redis_url, queue, 10))
    processor, release, started = holding()
    worker = start(connections, queue, processor, concurrency=2)
    await eventually(lambda: len(started) == 2, what="two jobs taken")
    closing = asyncio.ensure_future(worker.close())
    await aio(asyncio.sleep(0.1))
    assert not closing.done()
    release.set()
    await aio(asyncio.wait_for(closing, 10))
    assert sync_redis.zcard(f"bull:{queue}:completed") == 2
    assert sync_redis.llen(f"bull:{queue}:active") == 0
    assert sync_redis.llen(f"bull:{queue}:wait") == 8
    assert len(started) == 2


@pytest_twisted.ensureDeferred
async def test_idle_slots_wait_on_the_marker_without_polling(redis_url, sync_redis, connections):
    queue = next(names)
    done: list[str] = []

    async def processor(job: Job, token: str) -> None:
        done.append(job.id)

    worker = start(connections, queue, processor, concurrency=50)
    await aio(asyncio.sleep(0.3))
    before = script_calls(sync_redis)
    await aio(asyncio.sleep(1))
    # 50 idle slots polling would make hundreds of moveToActive calls a second.
    assert script_calls(sync_redis) - before < 5
    ids = await aio(fill(redis_url, queue, 3))
    await eventually(lambda: sorted(done) == sorted(ids), timeout=5, what="the 3 jobs")
    await aio(worker.close())


@pytest_twisted.ensureDeferred
async def test_a_failing_processor_fails_the_job_through_bullmq_and_the_slot_goes_on(
        redis_url, sync_redis, connections):
    queue = next(names)
    ids = await aio(fill(redis_url, queue, 4))

    async def processor(job: Job, token: str) -> str:
        if job.data["n"] % 2:
            raise ValueError(f"odd {job.data['n']}")
        return "even"

    worker = start(connections, queue, processor, concurrency=1)
    await eventually(lambda: completed(sync_redis, queue)
                     + sync_redis.zcard(f"bull:{queue}:failed") == 4, what="4 jobs settled")
    await aio(worker.close())
    assert sync_redis.hget(f"bull:{queue}:{ids[1]}", "failedReason") == "odd 1"
    assert sync_redis.zcard(f"bull:{queue}:completed") == 2


@pytest_twisted.ensureDeferred
async def test_a_worker_started_while_redis_is_away_works_once_it_is_back(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    done: list[str] = []

    async def processor(job: Job, token: str) -> None:
        done.append(job.id)

    connections = WorkerConnections(RedisSettings(url=url), "bull")
    worker = FetchNextWorker("late", processor, {**OPTS, "concurrency": 3, "runRetryDelay": 100},
                             connections)
    await aio(asyncio.sleep(0.5))
    server = await aio(asyncio.to_thread(start_redis, port, tmp_path))
    try:
        ids = await aio(fill(url, "late", 5))
        await eventually(lambda: sorted(done) == sorted(ids), what="the 5 jobs")
        await aio(worker.close())
        await aio(connections.close())
    finally:
        server.kill()
        server.wait()


@pytest_twisted.ensureDeferred
async def test_close_ends_the_wait_on_the_marker_every_time(redis_url, sync_redis, connections):
    async def processor(job: Job, token: str) -> None:
        return None

    for _ in range(12):
        queue = next(names)
        await aio(fill(redis_url, queue, 200))
        worker = start(connections, queue, processor, concurrency=20)
        await eventually(lambda q=queue: completed(sync_redis, q) == 200, what="200 jobs")
        # redis-py may swallow the cancellation of the wait on the marker that the
        # drained worker has just started; close() must not hang on it.
        await aio(asyncio.wait_for(worker.close(), 5))


@pytest_twisted.ensureDeferred
async def test_job_schedulers_keep_producing_under_the_loop(redis_url, sync_redis, connections):
    queue = next(names)
    scheduler = Queue(queue, {"connection": aredis.Redis.from_url(redis_url,
                                                                  decode_responses=True)})
    done: list[str] = []

    async def processor(job: Job, token: str) -> None:
        done.append(job.id)

    try:
        await aio(scheduler.upsertJobScheduler("tick", {"every": 150}, "tick", {"n": 1}))
        worker = start(connections, queue, processor, concurrency=2)
        # Each iteration is added by the worker that takes the previous one.
        await eventually(lambda: len(done) >= 3, timeout=10, what="3 iterations")
        await aio(worker.close())
        assert len(set(done)) == len(done)
    finally:
        await aio(scheduler.removeJobScheduler("tick"))
        await aio(scheduler.close())


@pytest_twisted.ensureDeferred
async def test_a_deferred_failure_fails_the_job_without_calling_the_processor(
        redis_url, sync_redis, connections):
    queue = next(names)
    [doomed] = await aio(fill(redis_url, queue, 1))
    # What BullMQ stores when a child's failure is to fail this job once it is taken.
    sync_redis.hset(f"bull:{queue}:{doomed}", "defa", "child failed")
    called: list[str] = []

    async def processor(job: Job, token: str) -> None:
        called.append(job.id)

    worker = start(connections, queue, processor, concurrency=1)
    await eventually(lambda: sync_redis.zcard(f"bull:{queue}:failed") == 1, what="the failure")
    await aio(worker.close())
    assert called == []
    assert sync_redis.hget(f"bull:{queue}:{doomed}", "failedReason") == "child failed"


@pytest_twisted.ensureDeferred
async def test_delays_rate_limits_pauses_and_backoff_wake_an_idle_worker(
        redis_url, sync_redis, connections):
    queue = next(names)
    done: list[str] = []
    failed_once: set[str] = set()

    async def processor(job: Job, token: str) -> str:
        if job.name == "flaky" and job.id not in failed_once:
            failed_once.add(job.id)
            raise ValueError("first attempt")
        done.append(job.id)
        return "ok"

    worker = FetchNextWorker(queue, processor, {
        **OPTS, "concurrency": 4, "limiter": {"max": 2, "duration": 300}}, connections)
    adder = Queue(queue, {"connection": aredis.Redis.from_url(redis_url,
                                                              decode_responses=True)})
    try:
        await eventually(lambda: connections.markers.watched == 1, what="the worker idle")
        # Due later: woken by the delayed job's marker, then by its own timer.
        delayed = await aio(adder.add("later", {}, {"delay": 300}))
        await eventually(lambda: delayed.id in done, what="the delayed job")
        # Six jobs through a limit of two per 300 ms: woken when each window ends.
        limited = await aio(adder.addBulk([{"name": "n", "data": n} for n in range(6)]))
        await eventually(lambda: {job.id for job in limited} <= set(done), what="6 jobs")
        # A paused queue's jobs wait; resuming it adds the marker that wakes the worker.
        await aio(adder.pause())
        paused = await aio(adder.add("paused", {}))
        await aio(asyncio.sleep(0.3))
        assert paused.id not in done
        await aio(adder.resume())
        await eventually(lambda: paused.id in done, what="the job of the resumed queue")
        # A failed attempt retried after its backoff.
        flaky = await aio(adder.add("flaky", {}, {"attempts": 2,
                                                  "backoff": {"type": "fixed", "delay": 200}}))
        await eventually(lambda: flaky.id in done, what="the retried job")
        assert sorted(done) == sorted({*done})
        assert sync_redis.hget(f"bull:{queue}:{flaky.id}", "atm") == "2"
    finally:
        await aio(worker.close())
        await aio(adder.close())


@pytest_twisted.ensureDeferred
async def test_the_shared_connections_close_after_the_workers_using_them(redis_url, sync_redis):
    # A MultiService stops its children at once: the Redis service may be told to stop
    # while a worker still settles its job.
    connections = WorkerConnections(RedisSettings(url=redis_url), "bull", close_wait=60)
    queue = next(names)
    await aio(fill(redis_url, queue, 1))
    processor, release, _ = holding()
    worker = start(connections, queue, processor, concurrency=1)
    await eventually(lambda: sync_redis.llen(f"bull:{queue}:active") == 1, what="job taken")
    closing_connections = asyncio.ensure_future(connections.close())
    closing_worker = asyncio.ensure_future(worker.close())
    await aio(asyncio.sleep(0.2))
    assert not closing_connections.done()
    release.set()
    await aio(asyncio.wait_for(closing_worker, 10))
    await aio(asyncio.wait_for(closing_connections, 10))
    assert completed(sync_redis, queue) == 1


@pytest_twisted.ensureDeferred
async def test_locks_are_renewed_while_jobs_are_held_and_no_timer_runs_between(
        redis_url, sync_redis, connections):
    queue = next(names)
    processor, hold, held = holding()
    worker = FetchNextWorker(queue, processor, {"lockDuration": 600, "stalledInterval": 30_000,
                                                "concurrency": 1}, connections)
    try:
        for round_ in range(2):
            hold.clear()
            [job_id] = await aio(fill(redis_url, queue, 1))
            await eventually(lambda j=job_id: j in held, what=f"job {round_} taken")
            await aio(asyncio.sleep(1.5))  # over twice the lock's duration
            assert sync_redis.exists(f"bull:{queue}:{job_id}:lock"), "the lock expired"
            hold.set()
            await eventually(lambda r=round_: completed(sync_redis, queue) == r + 1,
                             what=f"job {round_} completed")
            await eventually(lambda: worker.lockManager._renewal_task is None,
                             what="the renewal loop stopped")
    finally:
        hold.set()
        await aio(worker.close())
