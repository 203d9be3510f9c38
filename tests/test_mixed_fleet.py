"""Mixed fleets: Node BullMQ 5 and 6 apps and the proxy on the same queues lose no job.

Each test runs once per Node major, in both directions, and ends by counting: every job
added is completed exactly once and no list holds a leftover.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import pytest_twisted
from bullmq import Job
from twisted.internet import defer

from tests.admin_support import on_twisted, rest, until
from tests.node_fleet import MAJORS, NodeApp
from tests.support import make_config, start_live_proxy
from tests.workers_helpers import listen_endpoint, ok, register
from tests.ws_support import connect, on_asyncio

pytestmark = pytest.mark.slow
QUEUE = "fleet"


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, worker_stalled_interval=1000,
                                               worker_lock_duration=1000))
    yield proxy
    await proxy.stop()


async def proxy_add(live, via: str, count: int, opts: dict[str, Any] | None = None
                    ) -> list[str]:
    jobs = [{"name": "proxy", "data": {"n": n}, "opts": opts or {}} for n in range(count)]
    if via == "rest":
        added = await rest(live, "POST", f"/queues/{QUEUE}/jobs", jobs)
    else:
        socket = await connect(live.url, f"/ws/queues/{QUEUE}")
        added = (await socket.call(1, "addBulk", jobs))["ok"]
        await socket.close()
    return [job["id"] for job in added]


async def proxy_call(live, fn: str, *args: Any) -> Any:
    socket = await connect(live.url, f"/ws/queues/{QUEUE}")
    try:
        reply = await socket.call(1, fn, *args)
    finally:
        await socket.close()
    assert "ok" in reply, reply
    return reply["ok"]


def assert_all_done_once(sync_redis, processed: list[str], added: list[str]) -> None:
    """Every added job completed exactly once, and nothing is left waiting anywhere."""
    assert sorted(processed) == sorted(added), (processed, added)
    assert sorted(sync_redis.zrange(f"bull:{QUEUE}:completed", 0, -1)) == sorted(added)
    for state in ("wait", "paused", "active"):
        assert sync_redis.lrange(f"bull:{QUEUE}:{state}", 0, -1) == [], state


async def settled(app: NodeApp, added: list[str]) -> list[str]:
    """The ids the app's worker completed, once it completed all of ``added`` and a little
    time passed in which a job run twice would show."""
    await until(lambda: len(app.processed(QUEUE)) >= len(added), "the node worker")
    await asyncio.sleep(0.5)
    return app.processed(QUEUE)


async def assert_both_sides_read_the_same(live, app: NodeApp, job_id: str) -> None:
    """Counts, listings and a job's state of the paused queue, as the proxy (REST and
    WebSocket) and the queue's own Node major report them."""
    node_counts = await app.call("counts", queue=QUEUE, types=["waiting"])
    listed = await rest(live, "GET", f"/queues/{QUEUE}/jobs?statuses=waiting&length=100")
    assert listed["counts"] == node_counts
    assert await proxy_call(live, "getJobCounts", "waiting") == node_counts
    node_ids = sorted(await app.call("jobs", queue=QUEUE, types=["waiting"]))
    assert sorted(job["id"] for job in listed["jobs"]) == node_ids
    ws_jobs = await proxy_call(live, "getJobs", ["waiting"], 0, 99)
    assert sorted(job["id"] for job in ws_jobs) == node_ids
    # Both majors call a job of a paused queue "waiting", wherever it is kept.
    assert await app.call("state", queue=QUEUE, jobId=job_id) == "waiting"
    assert (await rest(live, "GET", f"/queues/{QUEUE}/jobs/{job_id}"))["state"] == "waiting"


@pytest.mark.parametrize("via", ["rest", "ws"])
@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_jobs_the_proxy_adds_while_node_paused_the_queue_are_kept(
        live, apps, sync_redis, major, via):
    # The data-loss scenario of the mixed-fleet issue, step by step.
    app = await apps(major)
    first = await app.call("add", queue=QUEUE, name="node", data={})
    await app.call("pause", queue=QUEUE)
    added = await proxy_add(live, via, 5)
    await assert_both_sides_read_the_same(live, app, added[0])
    await app.call("resume", queue=QUEUE)
    await app.call("worker", queue=QUEUE, concurrency=2)
    assert_all_done_once(sync_redis, await settled(app, [first, *added]), [first, *added])


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_jobs_node_adds_while_the_proxy_paused_the_queue_are_kept(
        live, apps, sync_redis, major):
    app = await apps(major)
    before = [await app.call("add", queue=QUEUE, name="node", data={}) for _ in range(2)]
    await proxy_call(live, "pause")
    assert await app.call("isPaused", queue=QUEUE)
    during = await app.call("addBulk", queue=QUEUE,
                            jobs=[{"name": "node", "data": {}} for _ in range(3)])
    added = [*before, *during, *await proxy_add(live, "rest", 2)]
    await assert_both_sides_read_the_same(live, app, before[0])
    await app.call("resume", queue=QUEUE)
    await app.call("worker", queue=QUEUE, concurrency=3)
    assert_all_done_once(sync_redis, await settled(app, added), added)


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_the_proxy_resumes_a_node_pause_and_its_http_worker_runs_every_job(
        live, apps, sync_redis, major):
    app = await apps(major)
    added = [await app.call("add", queue=QUEUE, name="node", data={}) for _ in range(2)]
    await app.call("pause", queue=QUEUE)
    added += [await app.call("add", queue=QUEUE, name="node", data={}) for _ in range(2)]
    added += await proxy_add(live, "ws", 2)
    await proxy_call(live, "resume")
    assert not await app.call("isPaused", queue=QUEUE)

    async def answer(delivery):
        return ok(json.dumps({"by": "proxy"}), "application/json")

    endpoint = listen_endpoint(answer)
    try:
        await on_twisted(register(live, endpoint.url, queue=QUEUE))
        await until(lambda: len(endpoint.deliveries) >= len(added), "the endpoint")
        await until(lambda: sync_redis.zcard(f"bull:{QUEUE}:completed") >= len(added),
                    "the completions")
        await asyncio.sleep(0.5)
        delivered = [d.body["job"]["id"] for d in endpoint.deliveries]
        assert_all_done_once(sync_redis, delivered, added)
    finally:
        await on_twisted(endpoint.close())


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_retries_and_promotes_by_the_proxy_during_a_node_pause_are_kept(
        live, apps, sync_redis, major):
    app = await apps(major)
    delayed = await app.call("add", queue=QUEUE, name="later", data={},
                             opts={"delay": 60_000})
    failing = await app.call("add", queue=QUEUE, name="fails", data={"fail": True,
                                                                      "failTimes": 1})
    await app.call("worker", queue=QUEUE)
    await until(lambda: any(e["event"] == "failed" for e in app.events), "the failure")
    await app.call("closeWorker", queue=QUEUE)
    await app.call("pause", queue=QUEUE)
    # The proxy's own Queue object for the queue: the one REST and WebSocket calls use.
    queue = live.context.queues.get(QUEUE)
    await (await Job.fromId(queue, delayed)).promote()
    await (await Job.fromId(queue, failing)).retry("failed")
    await assert_both_sides_read_the_same(live, app, delayed)
    await app.call("resume", queue=QUEUE)
    await app.call("worker", queue=QUEUE)
    assert_all_done_once(sync_redis, await settled(app, [delayed, failing]),
                         [delayed, failing])


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_an_endpoint_failure_retried_during_a_node_pause_runs_again(
        live, apps, sync_redis, major):
    app = await apps(major)
    # Opening a Queue writes meta.version, as every Node app does.
    assert (await app.call("version", queue=QUEUE)).startswith(f"bullmq:{major}.")
    first_call: defer.Deferred[None] = defer.Deferred()

    async def answer(delivery):
        if len(endpoint.deliveries) == 1:
            await first_call
            return 500, {}, b"try again"
        return ok(json.dumps({"attempt": len(endpoint.deliveries)}), "application/json")

    endpoint = listen_endpoint(answer)
    try:
        await on_twisted(register(live, endpoint.url, queue=QUEUE))
        (job_id,) = await proxy_add(live, "rest", 1, {"attempts": 2})
        await until(lambda: any(d.body["job"]["id"] == job_id for d in endpoint.deliveries),
                    "the first delivery")
        await app.call("pause", queue=QUEUE)
        first_call.callback(None)
        retried = "paused" if major == "5" else "wait"
        await until(lambda: job_id in sync_redis.lrange(f"bull:{QUEUE}:{retried}", 0, -1),
                    "the retry to be waiting")
        await app.call("resume", queue=QUEUE)
        await until(lambda: sync_redis.zscore(f"bull:{QUEUE}:completed", job_id) is not None,
                    "the second attempt")
        await asyncio.sleep(0.5)
        ids = [d.body["job"]["id"] for d in endpoint.deliveries]
        assert ids.count(job_id) == 2
        assert_all_done_once(sync_redis, sorted(set(ids)), sorted(
            sync_redis.zrange(f"bull:{QUEUE}:completed", 0, -1)))
    finally:
        await on_twisted(endpoint.close())


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_a_stalled_job_the_proxy_recovers_during_a_node_pause_is_kept(
        live, apps, sync_redis, major):
    app = await apps(major)
    crashing = await apps(major)
    stalled = await app.call("add", queue=QUEUE, name="stalls", data={"hang": True})
    # Its stalled-check interval also bounds how long the check is reserved for it.
    await crashing.call("worker", queue=QUEUE, lockDuration=1000, stalledInterval=1000)
    await until(lambda: any(e["event"] == "active" for e in crashing.events), "the take")
    crashing.kill()
    await app.call("pause", queue=QUEUE)
    endpoint = listen_endpoint(lambda delivery: _ok())
    try:
        # The proxy's worker runs the stalled-job check every second.
        await on_twisted(register(live, endpoint.url, queue=QUEUE))
        recovered = "paused" if major == "5" else "wait"
        await until(lambda: stalled in sync_redis.lrange(f"bull:{QUEUE}:{recovered}", 0, -1),
                    "the stalled job to be waiting again")
        assert endpoint.deliveries == []
        await app.call("resume", queue=QUEUE)
        await until(lambda: sync_redis.zscore(f"bull:{QUEUE}:completed", stalled) is not None,
                    "the recovered job to complete")
        await asyncio.sleep(0.5)
        assert_all_done_once(sync_redis, [d.body["job"]["id"] for d in endpoint.deliveries],
                             [stalled])
    finally:
        await on_twisted(endpoint.close())


async def _ok():
    return ok("done")


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_jobs_node_adds_are_run_by_a_proxy_websocket_worker(live, apps, sync_redis,
                                                                  major):
    app = await apps(major)
    added = await app.call("addBulk", queue=QUEUE,
                           jobs=[{"name": "node", "data": {"n": n}} for n in range(4)])
    worker = await connect(live.url, f"/ws/queues/{QUEUE}/process/2")
    seen = []
    try:
        while len(seen) < len(added):
            message = await worker.recv()
            seen.append(message["data"]["job"]["id"])
            worker.send({"id": message["id"], "data": {"result": {"by": "ws"}}})
        await until(lambda: sync_redis.zcard(f"bull:{QUEUE}:completed") >= len(added),
                    "the completions")
        assert await app.call("counts", queue=QUEUE, types=["completed"]) == {
            "completed": len(added)}
        assert_all_done_once(sync_redis, seen, added)
    finally:
        await worker.close()
