"""Pipelines of scripts Redis has confirmed go out without a SCRIPT EXISTS round trip, and
scripts Redis has lost since are loaded and their refused commands run once, in place."""

from __future__ import annotations

import asyncio

import pytest_twisted
import redis.asyncio as aredis
from bullmq import Queue

from bullmq_proxy.batching import AddBatcher
from bullmq_proxy.redis import known_scripts
from bullmq_proxy.redis.coalescing import CoalescedScript
from tests.support import aio

COUNT = "redis.call('INCR', KEYS[1]) return redis.call('RPUSH', KEYS[2], ARGV[1])"


@pytest_twisted.async_yield_fixture
async def client(redis_url):
    connection = aredis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    await aio(connection.aclose())


def script_checks(sync_redis) -> int:
    """How many SCRIPT EXISTS calls Redis has run."""
    return int(sync_redis.info("commandstats").get("cmdstat_script|exists", {}).get("calls", 0))


async def run(client, script, values, *, multi=False, extra=()):
    async with client.pipeline(transaction=False) as pipe:
        if multi:
            pipe.execute_command("MULTI")
        for value in values:
            await script(keys=["runs", "seen"], args=[value], client=pipe)
        if multi:
            pipe.execute_command("EXEC")
        for command in extra:
            pipe.execute_command(*command)
        return await known_scripts.execute(client, pipe)


async def confirmed_then_flushed(client, sync_redis):
    """COUNT, run once through a pipeline (so confirmed), then flushed from Redis."""
    script = client.register_script(COUNT)
    await run(client, script, ["a"])
    sync_redis.script_flush()
    return script


@pytest_twisted.ensureDeferred
async def test_a_confirmed_script_goes_out_without_a_check(client, sync_redis):
    script = client.register_script(COUNT)
    checks = script_checks(sync_redis)
    assert await aio(run(client, script, ["a", "b"])) == [1, 2]
    assert script_checks(sync_redis) == checks + 1
    assert script.sha in known_scripts.confirmed(client)
    assert await aio(run(client, script, ["c", "d", "e"])) == [3, 4, 5]
    assert script_checks(sync_redis) == checks + 1
    assert sync_redis.lrange("seen", 0, -1) == ["a", "b", "c", "d", "e"]


@pytest_twisted.ensureDeferred
async def test_a_script_lost_since_is_loaded_and_each_refused_command_runs_once_in_place(
        client, sync_redis):
    script = await aio(confirmed_then_flushed(client, sync_redis))
    results = await aio(run(client, script, ["b", "c"], extra=[("GET", "runs"), ("PING",)]))
    # The GET ran before the retried scripts: it read the count as it stood then.
    assert results == [2, 3, "1", True]
    assert sync_redis.get("runs") == "3"
    assert sync_redis.lrange("seen", 0, -1) == ["a", "b", "c"]
    assert sync_redis.script_exists(script.sha) == [True]
    assert script.sha in known_scripts.confirmed(client)


@pytest_twisted.ensureDeferred
async def test_a_transaction_is_always_checked_first_so_it_stays_all_or_none(
        client, sync_redis):
    script = await aio(confirmed_then_flushed(client, sync_redis))
    checks = script_checks(sync_redis)
    results = await aio(run(client, script, ["b", "c"], multi=True))
    assert script_checks(sync_redis) == checks + 1
    assert results[-1] == [2, 3]
    assert sync_redis.lrange("seen", 0, -1) == ["a", "b", "c"]


@pytest_twisted.ensureDeferred
async def test_batched_adds_survive_a_script_flush_with_each_job_added_once(client, sync_redis):
    batcher = AddBatcher(client)
    queue = Queue("flushed", {"connection": client})

    async def adds(names):
        batches = await asyncio.gather(*(
            batcher.add_bulk(queue, [{"name": name, "data": {}, "opts": {}}]) for name in names))
        return [job.id for (job,) in batches]

    assert await aio(adds("abc")) == ["1", "2", "3"]
    checks = script_checks(sync_redis)
    assert await aio(adds("def")) == ["4", "5", "6"]
    assert script_checks(sync_redis) == checks
    sync_redis.script_flush()
    assert await aio(adds("ghi")) == ["7", "8", "9"]
    assert sync_redis.lrange("bull:flushed:wait", 0, -1) == [str(n) for n in range(9, 0, -1)]
    await aio(queue.close())


@pytest_twisted.ensureDeferred
async def test_coalesced_worker_scripts_survive_a_script_flush(client, sync_redis):
    coalesced = CoalescedScript(client.register_script(COUNT), client)

    async def calls(values):
        return await asyncio.gather(*(coalesced(["runs", "seen"], [value]) for value in values))

    assert await aio(calls("ab")) == [1, 2]
    checks = script_checks(sync_redis)
    assert await aio(calls("cd")) == [3, 4]
    assert script_checks(sync_redis) == checks
    sync_redis.script_flush()
    assert await aio(calls("ef")) == [5, 6]
    assert sync_redis.lrange("seen", 0, -1) == list("abcdef")
