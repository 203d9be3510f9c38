"""Queue management over REST against a real Redis: listing, summaries, pause and resume,
clean, drain, obliterate, bulk retry and promote, global rate limit and concurrency; each
result read back from Redis itself."""

from __future__ import annotations

import asyncio

import pytest

from bullmq_proxy.core import queue_admin
from tests.admin_support import (
    add,
    assert_problem,
    finish,
    held_active,
    jobs_in,
    on_twisted,
    overlapping,
    rest,
    until,
    where,
)
from tests.support import make_config, start_proxy
from tests.workers_helpers import listen_endpoint, ok, register
from tests.ws_support import connect, on_asyncio

Q = "/queues/mail"
EVERY_STATE = {"active", "completed", "delayed", "failed", "prioritized", "waiting",
               "waiting-children"}


async def _queues(proxy, query: str = "") -> dict:
    return await rest(proxy, "GET", f"/queues{query}")


@on_asyncio
async def test_get_queues_lists_every_queue_under_the_prefix_with_counts_and_worker(
        proxy, sync_redis):
    await add(proxy, {}, {}, {"opts": {"delay": 60_000}}, queue="alpha")
    await add(proxy, {}, queue="beta")
    await rest(proxy, "POST", "/queues/beta/pause")
    # A queue with nothing but a limit set, and one with a registered endpoint worker.
    await rest(proxy, "PUT", "/queues/gamma/concurrency", {"max": 2})
    await rest(proxy, "PUT", "/queues/hooks/rate-limit", {"max": 5, "duration": 1000})
    await rest(proxy, "POST", "/workers", {
        "queue": "hooks", "endpoint": {"url": "http://127.0.0.1:9/hook", "method": "POST"}})
    # Keys that end like a queue's but belong to no queue of this prefix.
    await rest(proxy, "PUT", "/queues/alpha/schedulers/meta", {"every": 600_000})
    await add(proxy, {"opts": {"deduplication": {"id": "events"}}}, queue="alpha")
    sync_redis.hset("other:elsewhere:meta", "opts.maxLenEvents", 10)

    listing = await _queues(proxy)
    assert [q["name"] for q in listing["queues"]] == ["alpha", "beta", "gamma", "hooks"]
    assert (listing["start"], listing["length"], listing["total"], listing["complete"]) == (
        0, 10, 4, True)
    alpha, beta, gamma, hooks = listing["queues"]
    assert set(alpha["counts"]) == EVERY_STATE
    # Three jobs added and the scheduler's first iteration, which runs at once.
    assert (alpha["counts"]["waiting"], alpha["counts"]["delayed"]) == (4, 1)
    assert (alpha["paused"], beta["paused"], beta["counts"]["waiting"]) == (False, True, 1)
    assert gamma["counts"] == dict.fromkeys(EVERY_STATE, 0)
    assert (alpha["worker"], hooks["worker"]) == (None, "http://127.0.0.1:9/hook")

    page = await _queues(proxy, "?start=1&length=2")
    assert [q["name"] for q in page["queues"]] == ["beta", "gamma"]
    assert (page["start"], page["length"], page["total"]) == (1, 2, 4)


@on_asyncio
async def test_the_first_page_is_scanned_afresh_and_later_pages_reuse_that_scan(
        proxy, sync_redis):
    for name in ("bbb", "ccc", "ddd"):
        await add(proxy, {}, queue=name)
    assert (await _queues(proxy, "?length=2"))["total"] == 3
    await add(proxy, {}, queue="aaa")
    # Paging on: the same listing, so no queue is skipped or shown twice between pages.
    second = await _queues(proxy, "?start=2&length=2")
    assert ([q["name"] for q in second["queues"]], second["total"]) == (["ddd"], 3)
    first = await _queues(proxy, "?length=2")
    assert ([q["name"] for q in first["queues"]], first["total"]) == (["aaa", "bbb"], 4)
    await rest(proxy, "DELETE", "/queues/aaa", status=204)
    assert [q["name"] for q in (await _queues(proxy))["queues"]] == ["bbb", "ccc", "ddd"]


@on_asyncio
async def test_a_prefix_with_glob_characters_lists_only_its_own_queues(redis_url, sync_redis):
    running = await on_twisted(start_proxy(make_config(redis_url, queue_prefix="b[u]*ll")))
    try:
        await add(running, {}, queue="mine")
        sync_redis.hset("bull:theirs:meta", "opts.maxLenEvents", 10)
        sync_redis.hset("bxll:theirs:meta", "opts.maxLenEvents", 10)
        listing = await _queues(running)
        assert [q["name"] for q in listing["queues"]] == ["mine"]
        assert sync_redis.exists("b[u]*ll:mine:meta") == 1
    finally:
        await on_twisted(running.stop())


@pytest.mark.parametrize(("queues", "total", "complete"), [(3, 3, True), (4, 3, False)])
@on_asyncio
async def test_a_listing_holds_at_most_max_listed_queues(proxy, monkeypatch, queues, total,
                                                         complete):
    monkeypatch.setattr(queue_admin, "MAX_LISTED_QUEUES", 3)
    for index in range(queues):
        await add(proxy, {}, queue=f"queue-{index}")
    listing = await _queues(proxy)
    assert (listing["total"], listing["complete"], len(listing["queues"])) == (
        total, complete, total)


@on_asyncio
async def test_get_queue_answers_state_counts_limits_worker_and_schedulers(proxy):
    await add(proxy, {}, {"opts": {"priority": 3}})
    await rest(proxy, "PUT", f"{Q}/schedulers/tick", {"every": 600_000})
    await rest(proxy, "PUT", f"{Q}/concurrency", {"max": 4})
    await rest(proxy, "PUT", f"{Q}/rate-limit", {"max": 10, "duration": 1000})
    await rest(proxy, "POST", "/workers", {
        "queue": "mail", "endpoint": {"url": "http://127.0.0.1:9/hook", "method": "POST"}})
    summary = await rest(proxy, "GET", Q)
    counts = summary.pop("counts")
    assert summary == {"name": "mail", "paused": False, "worker": "http://127.0.0.1:9/hook",
                       "globalConcurrency": 4, "globalRateLimit": {"max": 10,
                                                                   "duration": 1000},
                       "schedulers": 1}
    assert set(counts) == EVERY_STATE
    assert counts["prioritized"] + counts["waiting"] + counts["active"] >= 1


@on_asyncio
async def test_pause_and_resume_in_bullmq_6s_layout(proxy, sync_redis, redis_url):
    (job,) = await add(proxy, {})
    paused = await rest(proxy, "POST", f"{Q}/pause")
    assert paused["paused"] is True
    assert sync_redis.hget("bull:mail:meta", "paused") == "1"
    assert where(sync_redis, job) == ["wait"]
    assert (await rest(proxy, "POST", f"{Q}/pause"))["paused"] is True  # idempotent
    resumed = await rest(proxy, "POST", f"{Q}/resume", {})
    assert resumed["paused"] is False
    assert sync_redis.hget("bull:mail:meta", "paused") is None
    await finish(redis_url, sync_redis, [job])


@on_asyncio
async def test_pause_and_resume_in_bullmq_5s_layout_move_the_wait_list(proxy5, sync_redis):
    jobs = await add(proxy5, {}, {})
    await rest(proxy5, "POST", f"{Q}/pause")
    assert sync_redis.lrange("bull:mail:wait", 0, -1) == []
    assert sorted(sync_redis.lrange("bull:mail:paused", 0, -1)) == sorted(jobs)
    # Adds during the pause join the paused list, as BullMQ 5's own adds do.
    jobs += await add(proxy5, {})
    assert where(sync_redis, jobs[-1]) == ["paused"]
    summary = await rest(proxy5, "GET", Q)
    assert (summary["paused"], summary["counts"]["waiting"], summary["counts"]["paused"]) == (
        True, 0, 3)
    await rest(proxy5, "POST", f"{Q}/resume")
    assert sync_redis.exists("bull:mail:paused") == 0
    assert sorted(sync_redis.lrange("bull:mail:wait", 0, -1)) == sorted(jobs)


@pytest.mark.parametrize("state", ["completed", "failed", "delayed", "wait", "prioritized"])
@on_asyncio
async def test_clean_removes_the_jobs_of_one_state(proxy, sync_redis, redis_url, state):
    kept = await add(proxy, {"opts": {"delay": 600_000}} if state != "delayed" else {})
    ids = await jobs_in(proxy, redis_url, sync_redis, state.replace("wait", "waiting"), 3)
    answer = await rest(proxy, "POST", f"{Q}/clean", {"type": state})
    assert sorted(answer["removed"]) == sorted(ids)
    for job in ids:
        assert where(sync_redis, job) == []
        assert sync_redis.exists(f"bull:mail:{job}") == 0
    assert where(sync_redis, kept[0]) != []


@on_asyncio
async def test_clean_honours_limit_and_grace(proxy, sync_redis, redis_url):
    ids = await jobs_in(proxy, redis_url, sync_redis, "completed", 3)
    young = await rest(proxy, "POST", f"{Q}/clean",
                       {"type": "completed", "grace": 3_600_000})
    assert young == {"removed": []}
    some = await rest(proxy, "POST", f"{Q}/clean", {"type": "completed", "limit": 2})
    assert len(some["removed"]) == 2
    assert sync_redis.zrange("bull:mail:completed", 0, -1) == sorted(
        set(ids) - set(some["removed"]))


@on_asyncio
async def test_clean_paused_empties_bullmq_5s_paused_list(proxy5, sync_redis):
    ids = await add(proxy5, {}, {})
    await rest(proxy5, "POST", f"{Q}/pause")
    answer = await rest(proxy5, "POST", f"{Q}/clean", {"type": "paused"})
    assert sorted(answer["removed"]) == sorted(ids)
    assert sync_redis.llen("bull:mail:paused") == 0


@pytest.mark.parametrize("delayed", [False, True])
@on_asyncio
async def test_drain_removes_waiting_and_prioritized_jobs_and_delayed_ones_if_asked(
        proxy, sync_redis, redis_url, delayed):
    done = await jobs_in(proxy, redis_url, sync_redis, "completed", 1)
    await add(proxy, {})
    async with held_active(redis_url, sync_redis) as active:
        waiting = await add(proxy, {}, {"opts": {"priority": 4}})
        later = await add(proxy, {"opts": {"delay": 600_000}})
        await rest(proxy, "PUT", f"{Q}/schedulers/tick", {"every": 600_000})
        summary = await rest(proxy, "POST", f"{Q}/drain", {"delayed": delayed} if delayed
                             else None)
        assert where(sync_redis, active) == ["active"]
    for job in waiting:
        assert sync_redis.exists(f"bull:mail:{job}") == 0
    assert (where(sync_redis, later[0]) == []) is delayed
    # BullMQ keeps a job scheduler's next job (waiting: its first run is now), and finished
    # jobs.
    counts = summary["counts"]
    assert (counts["waiting"], counts["prioritized"], counts["delayed"]) == (
        1, 0, 0 if delayed else 1)
    assert where(sync_redis, done[0]) == ["completed"]


@on_asyncio
async def test_delete_obliterates_the_queue_and_nothing_else(proxy, sync_redis, redis_url):
    await jobs_in(proxy, redis_url, sync_redis, "completed", 2)
    await jobs_in(proxy, redis_url, sync_redis, "failed", 1)
    await add(proxy, {}, {"opts": {"delay": 600_000}}, {"opts": {"priority": 1}})
    await rest(proxy, "PUT", f"{Q}/schedulers/tick", {"every": 600_000})
    await rest(proxy, "PUT", f"{Q}/rate-limit", {"max": 1, "duration": 10})
    other = await add(proxy, {}, queue="other")
    answer = await rest(proxy, "DELETE", Q, status=204)
    assert answer == ""
    assert sync_redis.keys("bull:mail:*") == []
    assert where(sync_redis, other[0], "other") == ["wait"]
    assert_problem(await rest(proxy, "GET", Q, status=404), "not-found", "queueName")


@on_asyncio
async def test_delete_refuses_a_queue_with_active_jobs_unless_forced(proxy, sync_redis,
                                                                    redis_url):
    ids = await add(proxy, {}, {})
    async with held_active(redis_url, sync_redis) as active:
        answer = await rest(proxy, "DELETE", Q, status=409)
        assert_problem(answer, "conflict", "queueName")
        assert answer["state"] == "active"
        # Nothing was removed, and the queue was not left paused.
        assert [where(sync_redis, job) for job in ids] == [
            ["active"] if job == active else ["wait"] for job in ids]
        assert sync_redis.hget("bull:mail:meta", "paused") is None
        await rest(proxy, "DELETE", f"{Q}?force=true", status=204)
        assert sync_redis.exists(*(f"bull:mail:{job}" for job in ids)) == 0
        assert sync_redis.llen("bull:mail:active") == 0


@on_asyncio
async def test_obliterate_leaves_a_parent_waiting_for_children_of_another_queue(
        proxy, sync_redis):
    # BullMQ's own obliterate does not touch waiting-children; docs/queues.md says so.
    flow = await rest(proxy, "POST", "/flows", {
        "name": "parent", "queueName": "mail", "data": {},
        "children": [{"name": "child", "queueName": "kids", "data": {}}]})
    await rest(proxy, "DELETE", Q, status=204)
    assert where(sync_redis, flow["job"]["id"]) == ["waiting-children"]
    assert (await rest(proxy, "GET", Q))["counts"]["waiting-children"] == 1


@pytest.mark.parametrize("state", ["failed", "completed"])
@pytest.mark.parametrize("count", [None, 1])
@on_asyncio
async def test_bulk_retry_moves_every_job_of_the_state_back_to_wait(proxy, sync_redis,
                                                                   redis_url, state, count):
    ids = await jobs_in(proxy, redis_url, sync_redis, state, 3)
    other = await jobs_in(proxy, redis_url, sync_redis,
                           "completed" if state == "failed" else "failed", 1)
    body = {"state": state} if state == "completed" else {}
    if count:
        body["count"] = count  # jobs per Redis call: all are retried all the same
    summary = await rest(proxy, "POST", f"{Q}/retry", body)
    assert summary["counts"]["waiting"] == 3
    assert sorted(sync_redis.lrange("bull:mail:wait", 0, -1)) == sorted(ids)
    assert where(sync_redis, other[0]) == ["failed" if state == "completed" else "completed"]
    for job in ids:
        fields = sync_redis.hgetall(f"bull:mail:{job}")
        assert "finishedOn" not in fields
        assert "failedReason" not in fields


@pytest.mark.parametrize("count", [None, 1])
@on_asyncio
async def test_bulk_promote_moves_every_delayed_job_to_wait(proxy, sync_redis, count):
    ids = await add(proxy, *({"opts": {"delay": 600_000}} for _ in range(3)))
    summary = await rest(proxy, "POST", f"{Q}/promote", {"count": count} if count else {})
    assert (summary["counts"]["delayed"], summary["counts"]["waiting"]) == (0, 3)
    assert sorted(sync_redis.lrange("bull:mail:wait", 0, -1)) == sorted(ids)


@on_asyncio
async def test_global_rate_limit_is_bullmqs_meta_fields(proxy, sync_redis):
    await add(proxy, {})
    summary = await rest(proxy, "PUT", f"{Q}/rate-limit", {"max": 3, "duration": 2000})
    assert summary["globalRateLimit"] == {"max": 3, "duration": 2000}
    assert sync_redis.hmget("bull:mail:meta", "max", "duration") == ["3", "2000"]
    summary = await rest(proxy, "DELETE", f"{Q}/rate-limit")
    assert summary["globalRateLimit"] is None
    assert sync_redis.hmget("bull:mail:meta", "max", "duration") == [None, None]


@on_asyncio
async def test_global_concurrency_is_bullmqs_meta_field_and_may_precede_the_queue(
        proxy, sync_redis):
    summary = await rest(proxy, "PUT", "/queues/fresh/concurrency", {"max": 1})
    assert (summary["name"], summary["globalConcurrency"]) == ("fresh", 1)
    assert sync_redis.hget("bull:fresh:meta", "concurrency") == "1"
    summary = await rest(proxy, "DELETE", "/queues/fresh/concurrency")
    assert summary["globalConcurrency"] is None
    assert sync_redis.hget("bull:fresh:meta", "concurrency") is None


async def _run_with_proxy_worker(live, kind: str, count: int, hold: float
                                 ) -> list[tuple[float, float]]:
    """Add ``count`` jobs and run them with an endpoint or WebSocket worker of concurrency
    4 that holds each for ``hold`` seconds; each job's (start, end) on one clock."""
    loop = asyncio.get_running_loop()
    spans: list[tuple[float, float]] = []
    if kind == "endpoint":
        from twisted.internet import reactor, task

        async def answer(delivery):
            started = loop.time()
            await task.deferLater(reactor, hold)
            spans.append((started, loop.time()))
            return ok("done")

        endpoint = listen_endpoint(answer)
        await on_twisted(register(live, endpoint.url, queue="mail", opts={"concurrency": 4}))
        await add(live, *({} for _ in range(count)))
        try:
            await until(lambda: len(spans) == count, "the endpoint's jobs", timeout=30)
        finally:
            await rest(live, "DELETE", "/workers/mail")
            await on_twisted(endpoint.close())
        return spans
    socket = await connect(live.url, "/ws/queues/mail/process/4")

    async def reply(message, started):
        await asyncio.sleep(hold)
        spans.append((started, loop.time()))
        socket.send({"id": message["id"], "data": {"result": "done"}})

    await add(live, *({} for _ in range(count)))
    replies = [asyncio.ensure_future(reply(await socket.recv(timeout=30), loop.time()))
               for _ in range(count)]
    await asyncio.gather(*replies)
    await socket.close()
    return spans


@pytest.mark.parametrize("kind", ["endpoint", "websocket"])
@on_asyncio
async def test_the_proxys_workers_obey_the_global_concurrency_set_here(live_proxy,
                                                                      sync_redis, kind):
    await rest(live_proxy, "PUT", f"{Q}/concurrency", {"max": 1})
    assert not overlapping(await _run_with_proxy_worker(live_proxy, kind, 4, 0.3))
    # The control: without the limit the same worker runs them side by side.
    await rest(live_proxy, "DELETE", f"{Q}/concurrency")
    assert overlapping(await _run_with_proxy_worker(live_proxy, kind, 4, 0.5))
    await until(lambda: sync_redis.zcard("bull:mail:completed") == 8, "the completions")


@pytest.mark.parametrize("kind", ["endpoint", "websocket"])
@on_asyncio
async def test_the_proxys_workers_obey_the_global_rate_limit_set_here(live_proxy, kind):
    # 2 jobs per 500 ms: 5 jobs need 3 windows, so the last starts 2 windows after the first.
    await rest(live_proxy, "PUT", f"{Q}/rate-limit", {"max": 2, "duration": 500})
    starts = sorted(start for start, _ in await _run_with_proxy_worker(live_proxy, kind, 5,
                                                                         0))
    assert starts[-1] - starts[0] >= 2 * 0.5 * 0.9, starts
    # A worker woken by the limit's end, not by bullmq's 5 s drained-queue wait (which made
    # these 0, 0, 5, 5, 10 s apart): a correctness bound, far above the 1 s it takes.
    assert starts[-1] - starts[0] < 4.0, starts
