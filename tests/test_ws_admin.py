"""Queue management over the WebSocket queue socket: the same core as REST, arguments named
``args[i]``, errors in the proxy's vocabulary."""

from __future__ import annotations

import asyncio

import pytest
import pytest_twisted
from bullmq import Queue

from tests.support import make_config, start_live_proxy
from tests.ws_support import connect, on_asyncio

Q = "wsadmin"


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url))
    yield proxy
    await proxy.stop()


async def socket(live):
    return await connect(live.url, f"/ws/queues/{Q}")


async def ok(ws, fn, *args):
    reply = await ws.call(1, fn, *args)
    assert "ok" in reply, reply
    return reply["ok"]


async def err(ws, fn, *args):
    reply = await ws.call(1, fn, *args)
    assert "err" in reply, reply
    return reply["err"]


@on_asyncio
async def test_queue_actions(live, sync_redis):
    ws = await socket(live)
    added = await ok(ws, "addBulk", [{"name": "a", "data": n} for n in range(3)])
    delayed = await ok(ws, "add", "d", {}, {"delay": 600_000})
    summary = await ok(ws, "getQueue")
    assert summary["counts"]["waiting"] == 3
    assert summary["counts"]["delayed"] == 1
    await ok(ws, "promoteJobs", {"count": 10})
    assert sync_redis.zcard(f"bull:{Q}:delayed") == 0
    assert delayed["id"] in sync_redis.lrange(f"bull:{Q}:wait", 0, -1)
    await ok(ws, "drain")
    assert sync_redis.llen(f"bull:{Q}:wait") == 0
    for job in added:
        assert sync_redis.exists(f"bull:{Q}:{job['id']}") == 0
    assert await ok(ws, "setGlobalConcurrency", 4) is None
    assert await ok(ws, "getGlobalConcurrency") == 4
    await ok(ws, "removeGlobalConcurrency")
    assert await ok(ws, "getGlobalConcurrency") is None
    await ok(ws, "setGlobalRateLimit", 5, 1000)
    assert await ok(ws, "getGlobalRateLimit") == {"max": 5, "duration": 1000}
    await ok(ws, "removeGlobalRateLimit")
    assert await ok(ws, "getGlobalRateLimit") is None
    await ok(ws, "obliterate")
    assert sync_redis.keys(f"bull:{Q}:*") == []
    await ws.close()


@on_asyncio
async def test_clean_and_retry_jobs(live, redis_url, sync_redis):
    queue = Queue(Q, {"connection": redis_url})
    try:
        for n in range(3):
            job = await queue.add("f", n)
            sync_redis.lrem(f"bull:{Q}:wait", 1, job.id)
            sync_redis.zadd(f"bull:{Q}:failed", {job.id: 1})
            sync_redis.hset(f"bull:{Q}:{job.id}", mapping={"finishedOn": 1,
                                                           "failedReason": "boom"})
    finally:
        await queue.close()
    ws = await socket(live)
    await ok(ws, "retryJobs", {"state": "failed"})
    assert sync_redis.zcard(f"bull:{Q}:failed") == 0
    assert sync_redis.llen(f"bull:{Q}:wait") == 3
    removed = await ok(ws, "clean", 0, 10, "wait")
    assert len(removed) == 3
    assert sync_redis.llen(f"bull:{Q}:wait") == 0
    await ws.close()


@on_asyncio
async def test_job_actions(live, sync_redis):
    ws = await socket(live)
    job = await ok(ws, "add", "j", {"v": 1}, {"delay": 600_000})
    moved = await ok(ws, "changeJobDelay", job["id"], 1_200_000)
    assert moved["state"] == "delayed"
    assert moved["delay"] == 1_200_000
    assert (await ok(ws, "updateJobData", job["id"], {"v": 2}))["data"] == {"v": 2}
    assert (await ok(ws, "promoteJob", job["id"]))["state"] == "waiting"
    conflict = await err(ws, "promoteJob", job["id"])
    assert (conflict["code"], conflict["state"]) == ("conflict", "waiting")
    prioritized = await ok(ws, "changeJobPriority", job["id"], {"priority": 7})
    assert (prioritized["state"], prioritized["priority"]) == ("prioritized", 7)
    assert (await err(ws, "retryJob", job["id"]))["code"] == "conflict"
    dependencies = await ok(ws, "getJobDependencies", job["id"])
    assert dependencies["counts"] == {"unprocessed": 0, "processed": 0, "failed": 0,
                                      "ignored": 0}
    assert await ok(ws, "remove", job["id"]) == 1
    assert sync_redis.exists(f"bull:{Q}:{job['id']}") == 0
    missing = await err(ws, "remove", job["id"])
    assert (missing["code"], missing["field"]) == ("not-found", "jobId")
    await ws.close()


@on_asyncio
async def test_job_schedulers(live, sync_redis):
    ws = await socket(live)
    next_job = await ok(ws, "upsertJobScheduler", "tick", {"every": 60_000},
                        {"name": "tick", "data": {"n": 1}})
    assert next_job["name"] == "tick"
    assert await ok(ws, "getJobSchedulersCount") == 1
    (listed,) = await ok(ws, "getJobSchedulers")
    assert (listed["id"], listed["every"]) == ("tick", 60_000)
    assert (await ok(ws, "getJobScheduler", "tick"))["id"] == "tick"
    assert await ok(ws, "getJobScheduler", "nope") is None
    bad = await err(ws, "upsertJobScheduler", "cron", {"pattern": "every day"})
    assert (bad["code"], bad["field"]) == ("invalid-field", "args[1].pattern")
    both = await err(ws, "upsertJobScheduler", "x", {"pattern": "* * * * *", "every": 5})
    assert both["code"] == "invalid-field"
    assert await ok(ws, "removeJobScheduler", "tick") is True
    assert await ok(ws, "removeJobScheduler", "tick") is False
    assert sync_redis.zcard(f"bull:{Q}:repeat") == 0
    await ws.close()


@pytest.mark.parametrize(("fn", "args", "field"), [
    ("clean", ["soon"], "args[0]"),
    ("clean", [0, 0, "wait"], "args[1]"),
    ("clean", [0, 10, "active"], "args[2]"),
    ("drain", ["yes"], "args[0]"),
    ("obliterate", [{"force": 1}], "args[0].force"),
    ("obliterate", [{"now": True}], "args[0].now"),
    ("retryJobs", [{"state": "active"}], "args[0].state"),
    ("promoteJobs", [{"count": 0}], "args[0].count"),
    ("setGlobalConcurrency", [0], "args[0]"),
    ("setGlobalConcurrency", [], "args[0]"),
    ("setGlobalRateLimit", [5], "args[1]"),
    ("setGlobalRateLimit", [5, 1000, 1], "args[2]"),
    ("changeJobPriority", ["x1", {"priority": -1}], "args[1].priority"),
    ("changeJobDelay", ["x1", -5], "args[1]"),
    ("updateJobData", ["x1"], "args[1]"),
    ("remove", ["a:b"], "args[0]"),
    ("getJobSchedulers", [0, 5000], "args[1]"),
    ("upsertJobScheduler", ["s", {"every": 1000, "tz": "Mars/Olympus"}], "args[1].tz"),
    ("upsertJobScheduler", ["s", {"every": 1000}, {"opts": {"repeat": {"every": 5}}}],
     "args[1].template.opts.repeat"),
])
@on_asyncio
async def test_bad_arguments_are_named_and_write_nothing(live, sync_redis, fn, args, field):
    ws = await socket(live)
    before = sorted(sync_redis.keys("*"))
    error = await err(ws, fn, *args)
    assert error["code"] in ("invalid-field", "unknown-field"), error
    assert error["field"] == field
    await asyncio.sleep(0)
    assert sorted(sync_redis.keys("*")) == before
    await ws.close()


@on_asyncio
async def test_obliterate_with_an_active_job_is_a_conflict_unless_forced(live, sync_redis):
    ws = await socket(live)
    job = await ok(ws, "add", "j", {})
    sync_redis.lmove(f"bull:{Q}:wait", f"bull:{Q}:active", "RIGHT", "LEFT")
    conflict = await err(ws, "obliterate")
    assert (conflict["code"], conflict["state"]) == ("conflict", "active")
    assert sync_redis.hget(f"bull:{Q}:meta", "paused") is None
    assert sync_redis.exists(f"bull:{Q}:{job['id']}") == 1
    await ok(ws, "obliterate", {"force": True})
    assert sync_redis.keys(f"bull:{Q}:*") == []
    await ws.close()
