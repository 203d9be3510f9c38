"""The stalled-job checks of every worker on one timer: bullmq's check where there is
something to check, nothing where there is not."""

from __future__ import annotations

import itertools

import pytest_twisted
import redis.asyncio as aredis
from bullmq import Job, Queue, Worker

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.redis.connection import close_client, create_client
from bullmq_proxy.workers.connections import WorkerConnections
from bullmq_proxy.workers.fetch_next import FetchNextWorker
from bullmq_proxy.workers.stalled import StalledChecks
from tests.support import aio
from tests.workers_helpers import eventually

OPTS = {"lockDuration": 30_000, "stalledInterval": 500}
names = (f"stalled-{n}" for n in itertools.count())


@pytest_twisted.async_yield_fixture
async def connections(redis_url):
    shared = WorkerConnections(RedisSettings(url=redis_url), "bull")
    yield shared
    await aio(shared.close())


def calls(sync_redis, command: str) -> int:
    return sync_redis.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


async def noop(job: Job, token: str) -> str:
    return "done"


@pytest_twisted.ensureDeferred
async def test_idle_queues_are_looked_at_in_one_command_and_not_checked(
        redis_url, sync_redis, connections):
    workers = [FetchNextWorker(next(names), noop, OPTS, connections) for _ in range(40)]
    await eventually(lambda: connections.markers.watched == 40, what="40 idle workers")
    scripts, exists = calls(sync_redis, "evalsha"), calls(sync_redis, "exists")
    # Several rounds of every queue's check interval.
    await eventually(lambda: calls(sync_redis, "exists") - exists >= 6, what="sweeps")
    assert calls(sync_redis, "evalsha") - scripts < 3
    for worker in workers:
        await aio(worker.close())


@pytest_twisted.ensureDeferred
async def test_a_job_stalled_on_a_dead_worker_comes_back_and_is_processed_once(
        redis_url, sync_redis, connections):
    queue = next(names)
    adder = Queue(queue, {"connection": aredis.Redis.from_url(redis_url,
                                                              decode_responses=True)})
    [job] = await aio(adder.addBulk([{"name": "n", "data": 1}]))
    # A worker elsewhere takes the job and dies: its lock expires, the job stays active.
    dead = Worker(queue, None, {"connection": redis_url, "autorun": False})
    assert (await aio(dead.getNextJob("dead-token"))).id == job.id
    await aio(dead.close())
    sync_redis.delete(f"bull:{queue}:{job.id}:lock")
    idle = [FetchNextWorker(next(names), noop, OPTS, connections) for _ in range(20)]
    seen: list[str] = []

    async def processor(taken: Job, token: str) -> str:
        seen.append(taken.id)
        return "recovered"

    worker = FetchNextWorker(queue, processor, OPTS, connections)
    await eventually(lambda: sync_redis.zcard(f"bull:{queue}:completed") == 1,
                     what="the stalled job completed")
    assert seen == [job.id]
    assert sync_redis.hget(f"bull:{queue}:{job.id}", "stc") == "1"
    for each in [worker, *idle]:
        await aio(each.close())
    await aio(adder.close())


class Fake:
    """What the checks need of a worker."""

    def __init__(self, n: int) -> None:
        self.keys = {"active": f"bull:fake-{n}:active", "stalled": f"bull:fake-{n}:stalled"}
        self.opts = {"stalledInterval": 1000}

    async def runStalledJobsCheck(self) -> None:
        raise AssertionError("not run by this test")


@pytest_twisted.ensureDeferred
async def test_the_queues_with_something_to_check_are_found_by_halving(redis_url, sync_redis):
    fakes = [Fake(n) for n in range(300)]
    sync_redis.rpush(fakes[7].keys["active"], "1")
    sync_redis.sadd(fakes[250].keys["stalled"], "2")
    client = create_client(RedisSettings(url=redis_url))
    checks = StalledChecks(client)
    try:
        before = calls(sync_redis, "exists")
        found = await aio(checks._with_keys(fakes))
        assert found == [fakes[7], fakes[250]]
        # Halving: about two commands per level for each queue found, not one per queue.
        assert calls(sync_redis, "exists") - before <= 4 * 9 + 1
        nothing = await aio(checks._with_keys(fakes[100:200]))
        assert nothing == []
        many = [Fake(1000 + n) for n in range(8)]
        for fake in many:
            sync_redis.rpush(fake.keys["active"], "1")
        before = calls(sync_redis, "exists")
        assert await aio(checks._with_keys(many)) == many
        assert calls(sync_redis, "exists") - before == 1  # every queue busy: no halving
    finally:
        await aio(close_client(client))
