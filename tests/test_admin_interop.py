"""Managing queues over REST in front of Node BullMQ 5 and 6 apps: what REST does, Node's
workers and queues see and obey — retries, global concurrency and rate limits, job
schedulers, flows, and pause/resume with the queue's own layout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.admin_support import overlapping, rest, until, where
from tests.node_fleet import MAJORS, NodeApp
from tests.ws_support import on_asyncio

pytestmark = pytest.mark.slow
QUEUE = "fleet"
Q = f"/queues/{QUEUE}"


def processed(app: NodeApp, queue: str = QUEUE) -> list[dict[str, Any]]:
    return [e for e in app.events if e["event"] == "processed" and e["queue"] == queue]


def failed(app: NodeApp, queue: str = QUEUE) -> list[dict[str, Any]]:
    return [e for e in app.events if e["event"] == "failed" and e["queue"] == queue]


async def opened(apps, major: str) -> NodeApp:
    """A Node app whose Queue of QUEUE is open (it wrote meta.version)."""
    app = await apps(major)
    assert (await app.call("version", queue=QUEUE)).startswith(f"bullmq:{major}.")
    return app


async def add(proxy, *data: dict[str, Any]) -> list[str]:
    added = await rest(proxy, "POST", f"{Q}/jobs", [{"name": "job", "data": d} for d in data])
    return [job["id"] for job in added]


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_jobs_retried_over_rest_are_processed_by_a_node_worker(proxy, apps, sync_redis,
                                                                    major):
    app = await opened(apps, major)
    await app.call("worker", queue=QUEUE, concurrency=2)
    ids = await add(proxy, *({"fail": True, "failTimes": 1} for _ in range(3)))
    await until(lambda: len(failed(app)) == 3, "the first attempts to fail")
    assert all(where(sync_redis, job, QUEUE) == ["failed"] for job in ids)
    # One retried by its own route, the others in bulk.
    # The answer reads the job after the move: the Node worker may have taken it already.
    assert (await rest(proxy, "POST", f"{Q}/jobs/{ids[0]}/retry"))["state"] in (
        "waiting", "active", "completed")
    await rest(proxy, "POST", f"{Q}/retry", {"state": "failed"})
    await until(lambda: len(processed(app)) == 3, "the retries to run")
    await asyncio.sleep(0.3)
    assert sorted(e["id"] for e in processed(app)) == sorted(ids)
    for job in ids:
        assert await app.call("state", queue=QUEUE, jobId=job) == "completed"
        read = await rest(proxy, "GET", f"{Q}/jobs/{job}")
        assert (read["state"], read["returnvalue"]["by"]) == ("completed", f"node{major}")


def spans(app: NodeApp) -> list[tuple[int, int]]:
    return sorted((e["result"]["startedAt"], e["result"]["finishedAt"])
                  for e in processed(app))


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_a_node_worker_obeys_the_global_concurrency_set_over_rest(proxy, apps, major):
    app = await opened(apps, major)
    await rest(proxy, "PUT", f"{Q}/concurrency", {"max": 1})
    assert (await app.call("limits", queue=QUEUE))["concurrency"] == 1
    await app.call("worker", queue=QUEUE, concurrency=5)
    await add(proxy, *({"sleep": 200} for _ in range(5)))
    await until(lambda: len(processed(app)) == 5, "the limited jobs")
    assert not overlapping(spans(app))
    # The control: without the limit, the same worker runs jobs side by side.
    await rest(proxy, "DELETE", f"{Q}/concurrency")
    assert (await app.call("limits", queue=QUEUE))["concurrency"] is None
    limited = spans(app)
    await add(proxy, *({"sleep": 500} for _ in range(5)))
    await until(lambda: len(processed(app)) == 10, "the free jobs")
    assert overlapping([run for run in spans(app) if run not in limited])


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_a_node_worker_obeys_the_global_rate_limit_set_over_rest(proxy, apps, major):
    app = await opened(apps, major)
    await rest(proxy, "PUT", f"{Q}/rate-limit", {"max": 2, "duration": 1000})
    assert (await app.call("limits", queue=QUEUE))["rateLimit"] == {"max": 2,
                                                                    "duration": 1000}
    await app.call("worker", queue=QUEUE, concurrency=5)
    await add(proxy, *({} for _ in range(7)))
    await until(lambda: len(processed(app)) == 7, "the limited jobs", timeout=30)
    # At most 2 per window of 1 s: the 7 need 4 windows, 3 s from the first to the last.
    starts = [start for start, _ in spans(app)]
    assert starts[-1] - starts[0] >= 3 * 1000 * 0.9, starts
    await rest(proxy, "DELETE", f"{Q}/rate-limit")
    assert (await app.call("limits", queue=QUEUE))["rateLimit"] is None


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_a_node_worker_runs_a_rest_schedulers_jobs_on_time(proxy, apps, major):
    app = await opened(apps, major)
    answer = await rest(proxy, "PUT", f"{Q}/schedulers/second", {
        "pattern": "* * * * * *", "template": {"name": "tick", "data": {"from": "rest"}}})
    seen = await app.call("scheduler", queue=QUEUE, schedulerId="second")
    assert (seen["pattern"], seen["next"]) == ("* * * * * *", answer["next"])
    await app.call("worker", queue=QUEUE)
    await until(lambda: len(processed(app)) >= 3, "three runs", timeout=30)
    runs = processed(app)[:3]
    assert {(e["name"], e["data"]["from"]) for e in runs} == {("tick", "rest")}
    due = [int(e["id"].rsplit(":", 1)[1]) for e in runs]
    # One job per second, on the second, none run before its time.
    assert all(slot % 1000 == 0 for slot in due)
    assert due == sorted(set(due))
    assert all(e["result"]["startedAt"] >= slot for e, slot in zip(runs, due, strict=True))


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_parents_of_a_rest_flow_wait_for_children_run_by_node_workers(
        proxy, apps, sync_redis, major):
    app = await opened(apps, major)
    added = await rest(proxy, "POST", "/flows", {
        "name": "parent", "queueName": QUEUE, "data": {}, "children": [
            {"name": "a", "queueName": "kids", "data": {"sleep": 100}},
            {"name": "b", "queueName": "kids", "data": {}}]})
    parent = added["job"]["id"]
    await app.call("worker", queue=QUEUE)
    await asyncio.sleep(0.3)
    assert processed(app) == []  # the parent waits for its children
    await app.call("worker", queue="kids", concurrency=2)
    await until(lambda: processed(app), "the parent")
    assert [e["id"] for e in processed(app)] == [parent]
    assert len(processed(app, "kids")) == 2
    assert app.events.index(processed(app)[0]) > max(
        app.events.index(e) for e in processed(app, "kids"))
    children = await rest(proxy, "GET", f"{Q}/jobs/{parent}/children")
    assert {v["by"] for v in children["processed"].values()} == {f"node{major}"}
    assert where(sync_redis, parent, QUEUE) == ["completed"]


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_a_child_failing_on_a_node_worker_fails_its_parent(proxy, apps, sync_redis,
                                                                 major):
    app = await opened(apps, major)
    added = await rest(proxy, "POST", "/flows", {
        "name": "parent", "queueName": QUEUE, "data": {}, "children": [
            {"name": "broken", "queueName": "kids", "data": {"fail": True},
             "opts": {"failParentOnFailure": True}}]})
    parent = added["job"]["id"]
    await app.call("worker", queue="kids")
    await app.call("worker", queue=QUEUE)
    await until(lambda: where(sync_redis, parent, QUEUE) == ["failed"], "the parent to fail")
    assert processed(app) == []
    assert "failed" in (await rest(proxy, "GET", f"{Q}/jobs/{parent}"))["failedReason"]
    assert await app.call("state", queue=QUEUE, jobId=parent) == "failed"


@pytest.mark.parametrize("resumer", ["node", "rest"])
@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_rest_actions_during_a_pause_keep_the_queues_layout_and_lose_nothing(
        proxy, apps, sync_redis, major, resumer):
    app = await opened(apps, major)
    failing = [await app.call("add", queue=QUEUE, name="fails",
                              data={"fail": True, "failTimes": 1}) for _ in range(2)]
    await app.call("worker", queue=QUEUE)
    await until(lambda: len(failed(app)) == 2, "the failures")
    await app.call("closeWorker", queue=QUEUE)
    plain = [await app.call("add", queue=QUEUE, name="node", data={}) for _ in range(2)]
    later = [await app.call("add", queue=QUEUE, name="later", data={},
                            opts={"delay": 600_000}) for _ in range(2)]

    assert (await rest(proxy, "POST", f"{Q}/pause"))["paused"] is True
    assert await app.call("isPaused", queue=QUEUE)
    # Each way REST puts a job back to waiting, during the pause.
    await rest(proxy, "POST", f"{Q}/jobs/{later[0]}/promote")
    await rest(proxy, "POST", f"{Q}/promote")
    await rest(proxy, "POST", f"{Q}/jobs/{failing[0]}/retry")
    await rest(proxy, "POST", f"{Q}/retry")
    ours = await add(proxy, {})
    flow = await rest(proxy, "POST", "/flows", {
        "name": "parent", "queueName": "other", "data": {},
        "children": [{"name": "child", "queueName": QUEUE, "data": {}}]})
    child = flow["children"][0]["job"]["id"]
    waiting = [*plain, *later, *failing, *ours, child]
    held = "paused" if major == "5" else "wait"
    assert sorted(sync_redis.lrange(f"bull:{QUEUE}:{held}", 0, -1)) == sorted(waiting)
    if major == "5":
        assert sync_redis.llen(f"bull:{QUEUE}:wait") == 0
    node_counts = await app.call("counts", queue=QUEUE, types=["waiting"])
    listed = await rest(proxy, "GET", f"{Q}/jobs?statuses=waiting")
    assert listed["counts"] == node_counts
    assert sum(node_counts.values()) == len(waiting)

    if resumer == "node":
        await app.call("resume", queue=QUEUE)
    else:
        assert (await rest(proxy, "POST", f"{Q}/resume"))["paused"] is False
    assert not await app.call("isPaused", queue=QUEUE)
    await app.call("worker", queue=QUEUE, concurrency=3)
    await until(lambda: len(processed(app)) >= len(waiting), "the jobs")
    await asyncio.sleep(0.5)
    assert sorted(e["id"] for e in processed(app)) == sorted(waiting)
    for name in ("wait", "paused"):
        assert sync_redis.llen(f"bull:{QUEUE}:{name}") == 0
    assert where(sync_redis, flow["job"]["id"], "other") == ["wait"]


@pytest.mark.parametrize("major", MAJORS)
@on_asyncio
async def test_node_reads_what_rest_did(proxy, apps, major):
    app = await opened(apps, major)
    await app.call("addBulk", queue=QUEUE, jobs=[{"name": "n", "data": {}}] * 3)
    await app.call("add", queue=QUEUE, name="later", data={}, opts={"delay": 600_000})
    await rest(proxy, "PUT", f"{Q}/concurrency", {"max": 3})
    await rest(proxy, "PUT", f"{Q}/rate-limit", {"max": 4, "duration": 5000})
    assert await app.call("limits", queue=QUEUE) == {
        "concurrency": 3, "rateLimit": {"max": 4, "duration": 5000}}
    await rest(proxy, "POST", f"{Q}/pause")
    assert await app.call("isPaused", queue=QUEUE)
    await rest(proxy, "POST", f"{Q}/resume")
    assert not await app.call("isPaused", queue=QUEUE)
    await rest(proxy, "POST", f"{Q}/drain")
    assert await app.call("counts", queue=QUEUE, types=["delayed"]) == {"delayed": 1}
    assert sum((await app.call("counts", queue=QUEUE, types=["waiting"])).values()) == 0
    await rest(proxy, "PUT", f"{Q}/schedulers/nightly", {"pattern": "0 3 * * *",
                                                          "tz": "Europe/Paris"})
    seen = await app.call("scheduler", queue=QUEUE, schedulerId="nightly")
    assert (seen["pattern"], seen["tz"]) == ("0 3 * * *", "Europe/Paris")
    await rest(proxy, "DELETE", Q, status=204)
    assert await app.call("counts", queue=QUEUE, types=["delayed"]) == {"delayed": 0}
    assert await app.call("scheduler", queue=QUEUE, schedulerId="nightly") is None
    assert await app.call("limits", queue=QUEUE) == {"concurrency": None, "rateLimit": None}
