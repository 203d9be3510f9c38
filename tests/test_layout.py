"""The layout layer without Node: what lands where, decided inside Redis, for each setting.

The mixed-fleet suite (test_mixed_fleet.py) runs the same moves against Node BullMQ 5 and 6.
"""

from __future__ import annotations

import pytest
import pytest_twisted
import redis
import redis.asyncio as aredis
from bullmq import Queue

from bullmq_proxy.config import ConfigError, load_config
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.layout import SCRIPT_DEFINITIONS, _source, job_types, layout_of
from tests.support import aio

Q = "lay"


def pause_like_bullmq5(client: redis.Redis, queue: str = Q) -> None:
    """What BullMQ 5's pause script does to the keys, done by hand."""
    if client.exists(f"bull:{queue}:wait"):
        client.rename(f"bull:{queue}:wait", f"bull:{queue}:paused")
    client.hset(f"bull:{queue}:meta", "paused", 1)


def test_every_wrapped_script_compiles_for_every_layout(sync_redis) -> None:
    # Fails loudly when a bullmq release changes a script in a way the prelude breaks.
    for name in SCRIPT_DEFINITIONS:
        for layout in ("auto", "5"):
            assert sync_redis.script_load(_source(layout, name))


@pytest.mark.parametrize(("version", "paused_list", "setting", "expected"), [
    ("bullmq:5.81.5", False, "auto", 5),
    ("bullmq:4.17.0", False, "auto", 5),
    ("bullmq:6.7.0", True, "auto", 6),
    (None, True, "auto", 5),
    (None, False, "auto", 6),
    ("something-else:9", True, "auto", 5),
    ("bullmq:6.7.0", False, "5", 5),
    ("bullmq:5.81.5", True, "6", 6),
])
def test_layout_of_reads_the_version_then_the_paused_list(version, paused_list, setting,
                                                           expected) -> None:
    assert layout_of(version, paused_list, setting) == expected


def test_job_types_follow_the_node_major() -> None:
    assert job_types(["waiting"], 5) == ["waiting", "paused"]
    assert job_types(["waiting"], 6) == ["waiting"]
    assert job_types(["paused", "waiting"], 5) == ["paused", "waiting"]
    assert "paused" in job_types([], 5)
    assert "paused" not in job_types([], 6)


def test_bullmq_layout_setting_is_checked() -> None:
    assert load_config({"BULLMQ_LAYOUT": "5"}, {}).bullmq_layout == "5"
    with pytest.raises(ConfigError, match="BULLMQ_LAYOUT"):
        load_config({"BULLMQ_LAYOUT": "7"}, {})


async def _registry(redis_url: str, layout: str) -> tuple[QueueRegistry, aredis.Redis]:
    client = aredis.Redis.from_url(redis_url, decode_responses=True)
    return QueueRegistry(client, "bull", 10, layout), client


@pytest_twisted.ensureDeferred
async def test_adds_to_a_bullmq5_paused_queue_land_in_its_paused_list(redis_url, sync_redis):
    registry, client = await aio(_registry(redis_url, "auto"))
    try:
        queue = registry.get(Q)
        sync_redis.hset(f"bull:{Q}:meta", "version", "bullmq:5.81.5")
        first = await aio(queue.add("a", {}))
        pause_like_bullmq5(sync_redis)
        more = await aio(queue.addBulk([{"name": "b", "data": {}}] * 3))
        lifo = await aio(queue.add("c", {}, {"lifo": True}))
        assert sync_redis.exists(f"bull:{Q}:wait") == 0
        # Where BullMQ 5 itself would have pushed each: FIFO at the head, LIFO at the tail.
        assert sync_redis.lrange(f"bull:{Q}:paused", 0, -1) == [
            *reversed([j.id for j in more]), first.id, lifo.id]
        assert await aio(registry.layout_of(queue)) == 5
    finally:
        await aio(client.aclose())


@pytest_twisted.ensureDeferred
async def test_a_bullmq6_paused_queue_keeps_its_jobs_in_wait(redis_url, sync_redis):
    registry, client = await aio(_registry(redis_url, "auto"))
    try:
        queue = registry.get(Q)
        sync_redis.hset(f"bull:{Q}:meta", "version", "bullmq:6.7.0")
        first = await aio(queue.add("a", {}))
        await aio(queue.pause())
        second = await aio(queue.add("b", {}))
        assert sync_redis.lrange(f"bull:{Q}:wait", 0, -1) == [second.id, first.id]
        assert sync_redis.exists(f"bull:{Q}:paused") == 0
        assert await aio(registry.layout_of(queue)) == 6
    finally:
        await aio(client.aclose())


@pytest_twisted.ensureDeferred
async def test_forced_layout_5_serves_a_fleet_that_writes_no_version(redis_url, sync_redis):
    # Python bullmq 2.x writes BullMQ 5's layout and no meta.version: auto would take an
    # empty, paused queue for BullMQ 6's.
    registry, client = await aio(_registry(redis_url, "5"))
    try:
        queue = registry.get(Q)
        before = await aio(queue.add("a", {}))
        await aio(queue.pause())
        assert sync_redis.lrange(f"bull:{Q}:paused", 0, -1) == [before.id]
        during = await aio(queue.add("b", {}))
        assert sync_redis.lrange(f"bull:{Q}:paused", 0, -1) == [during.id, before.id]
        assert sync_redis.exists(f"bull:{Q}:wait") == 0
        await aio(queue.resume())
        assert sync_redis.lrange(f"bull:{Q}:wait", 0, -1) == [during.id, before.id]
        assert sync_redis.exists(f"bull:{Q}:paused") == 0
        assert sync_redis.zcard(f"bull:{Q}:marker") == 1
    finally:
        await aio(client.aclose())


@pytest_twisted.ensureDeferred
async def test_layout_6_runs_bullmqs_scripts_untouched(redis_url, sync_redis):
    registry, client = await aio(_registry(redis_url, "6"))
    try:
        queue = registry.get(Q)
        assert "bmqpForceV5" not in queue.backend.scripts.commands["addStandardJob"].script
        sync_redis.hset(f"bull:{Q}:meta", "version", "bullmq:5.81.5")
        pause_like_bullmq5(sync_redis)
        job = await aio(queue.add("a", {}))
        assert sync_redis.lrange(f"bull:{Q}:wait", 0, -1) == [job.id]
    finally:
        await aio(client.aclose())


@pytest_twisted.ensureDeferred
async def test_a_pause_by_the_proxy_merges_a_wait_list_into_an_existing_paused_list(
        redis_url, sync_redis):
    registry, client = await aio(_registry(redis_url, "auto"))
    try:
        queue = registry.get(Q)
        sync_redis.hset(f"bull:{Q}:meta", "version", "bullmq:5.81.5")
        sync_redis.rpush(f"bull:{Q}:paused", "p2", "p1")
        sync_redis.rpush(f"bull:{Q}:wait", *[f"w{n}" for n in range(2500, 0, -1)])
        await aio(queue.pause())
        paused = sync_redis.lrange(f"bull:{Q}:paused", 0, -1)
        assert paused == ["p2", "p1", *[f"w{n}" for n in range(2500, 0, -1)]]
        assert sync_redis.exists(f"bull:{Q}:wait") == 0
        assert sync_redis.hget(f"bull:{Q}:meta", "paused") == "1"
    finally:
        await aio(client.aclose())


@pytest_twisted.ensureDeferred
async def test_a_plain_bullmq_queue_beside_the_proxy_is_not_changed(redis_url):
    # speak_layout changes the backend it is given, never bullmq's own classes.
    registry, client = await aio(_registry(redis_url, "auto"))
    plain = Queue(Q, {"connection": client})
    try:
        registry.get(Q)
        assert "bmqpForceV5" not in plain.backend.scripts.commands["addStandardJob"].script
    finally:
        await aio(client.aclose())
