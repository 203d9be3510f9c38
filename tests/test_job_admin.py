"""Job actions over REST against a real Redis: remove, retry, promote, update data, change
priority or delay, a parent's children, finding jobs by name. Each action on a job in each
state: done (the answer's state as Redis holds the job) or a 409 naming the state, with
Redis untouched."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from bullmq import Worker

from bullmq_proxy.core import job_admin
from tests.admin_support import (
    STATE_KEYS,
    add,
    assert_problem,
    finish,
    held_active,
    jobs_in,
    rest,
    snapshot,
    until,
    where,
)
from tests.ws_support import on_asyncio

Q = "/queues/mail"
STATES = ["waiting", "prioritized", "delayed", "active", "completed", "failed",
          "waiting-children"]
# action: (method, path suffix, body, {state it applies to: the job's state after it}).
ACTIONS = {
    "retry": ("POST", "/retry", {}, {"completed": "waiting", "failed": "waiting"}),
    "promote": ("POST", "/promote", {}, {"delayed": "waiting"}),
    "priority": ("POST", "/priority", {"priority": 3}, {
        "waiting": "prioritized", "prioritized": "prioritized", "delayed": "delayed"}),
    "delay": ("POST", "/delay", {"delay": 600_000}, {"delayed": "delayed"}),
    "remove": ("DELETE", "", None, {state: "removed" for state in STATES if state != "active"}),
    "update": ("PATCH", "", {"data": {"new": [1, 2]}}, {state: state for state in STATES}),
}


def _unchanged(client) -> dict:
    # A worker holding a job rewrites its stalled-check stamp now and then.
    return {k: v for k, v in snapshot(client).items() if not k.endswith("stalled-check")}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("action", ACTIONS)
@on_asyncio
async def test_each_action_on_a_job_in_each_state(proxy, sync_redis, redis_url, action,
                                                  state):
    method, suffix, body, outcomes = ACTIONS[action]
    async with contextlib.AsyncExitStack() as stack:
        if state == "active":
            await add(proxy, {})
            job = await stack.enter_async_context(held_active(redis_url, sync_redis))
        else:
            (job,) = await jobs_in(proxy, redis_url, sync_redis, state)
        before = _unchanged(sync_redis)
        path = f"{Q}/jobs/{job}{suffix}"
        if state not in outcomes:
            answer = await rest(proxy, method, path, body, status=409)
            assert_problem(answer, "conflict", "jobId")
            assert answer["state"] == state
            assert _unchanged(sync_redis) == before
            return
        answer = await rest(proxy, method, path, body)
        assert (answer["id"], answer["state"]) == (job, outcomes[state])
        if action == "remove":
            assert answer["previousState"] == state
            assert sync_redis.exists(f"bull:mail:{job}") == 0
            assert where(sync_redis, job) == []
            return
        assert where(sync_redis, job) == [STATE_KEYS[outcomes[state]]]
        read = await rest(proxy, "GET", f"{Q}/jobs/{job}")
        assert read == answer


@on_asyncio
async def test_a_removed_parent_takes_its_children_unless_told_not_to(proxy, sync_redis,
                                                                      redis_url):
    parents = await jobs_in(proxy, redis_url, sync_redis, "waiting-children", 2)
    children = [sync_redis.smembers(f"bull:mail:{p}:dependencies").pop() for p in parents]
    await rest(proxy, "DELETE", f"{Q}/jobs/{parents[0]}")
    assert sync_redis.exists(children[0]) == 0
    await rest(proxy, "DELETE", f"{Q}/jobs/{parents[1]}?children=false")
    assert sync_redis.exists(f"bull:mail:{parents[1]}") == 0
    assert sync_redis.exists(children[1]) == 1


@on_asyncio
async def test_a_job_schedulers_next_job_cannot_be_removed(proxy, sync_redis):
    scheduler = await rest(proxy, "PUT", f"{Q}/schedulers/tick",
                           {"every": 600_000, "startDate": int(time.time() * 1000) + 600_000})
    job = scheduler["nextJob"]["id"]
    answer = await rest(proxy, "DELETE", f"{Q}/jobs/{job}", status=409)
    assert_problem(answer, "conflict", "jobId")
    assert answer["state"] == "delayed"
    assert "remove the scheduler" in answer["detail"]
    assert where(sync_redis, job) == ["delayed"]


@on_asyncio
async def test_a_retried_job_runs_again(proxy, sync_redis, redis_url):
    (job,) = await add(proxy, {"data": {"fail": True}})
    await finish(redis_url, sync_redis, [job])
    assert sync_redis.hget(f"bull:mail:{job}", "failedReason") == "failed on purpose"
    answer = await rest(proxy, "POST", f"{Q}/jobs/{job}/retry")
    assert (answer["state"], answer["failedReason"], answer["attemptsMade"]) == (
        "waiting", None, 1)
    await rest(proxy, "PATCH", f"{Q}/jobs/{job}", {"data": {"fixed": True}})
    await finish(redis_url, sync_redis, [job])
    final = await rest(proxy, "GET", f"{Q}/jobs/{job}")
    assert (final["state"], final["returnvalue"], final["attemptsMade"]) == (
        "completed", {"done": job}, 2)


@on_asyncio
async def test_a_completed_job_retried_runs_again_with_a_new_result(proxy, sync_redis,
                                                                   redis_url):
    (job,) = await jobs_in(proxy, redis_url, sync_redis, "completed")
    await rest(proxy, "POST", f"{Q}/jobs/{job}/retry")
    assert sync_redis.hget(f"bull:mail:{job}", "returnvalue") is None
    await finish(redis_url, sync_redis, [job])
    assert (await rest(proxy, "GET", f"{Q}/jobs/{job}"))["state"] == "completed"


@pytest.mark.parametrize("data", [None, 0, "", [1, {"a": None}], {"deep": {"x": 1.5}}])
@on_asyncio
async def test_patch_replaces_the_data_with_any_json(proxy, sync_redis, data):
    (job,) = await add(proxy, {"data": {"old": True}})
    answer = await rest(proxy, "PATCH", f"{Q}/jobs/{job}", {"data": data})
    assert answer["data"] == data
    assert json.loads(sync_redis.hget(f"bull:mail:{job}", "data")) == data


@on_asyncio
async def test_priority_orders_waiting_jobs_and_zero_takes_it_away(proxy, sync_redis):
    first, second = await add(proxy, {"opts": {"priority": 5}}, {"opts": {"priority": 5}})
    assert sync_redis.zrange("bull:mail:prioritized", 0, -1) == [first, second]
    # lifo puts a job ahead of the others of its priority.
    answer = await rest(proxy, "POST", f"{Q}/jobs/{second}/priority",
                        {"priority": 5, "lifo": True})
    assert answer["priority"] == 5
    assert sync_redis.zrange("bull:mail:prioritized", 0, -1) == [second, first]
    answer = await rest(proxy, "POST", f"{Q}/jobs/{first}/priority", {"priority": 0})
    assert (answer["state"], answer["priority"]) == ("waiting", 0)
    assert where(sync_redis, first) == ["wait"]


@on_asyncio
async def test_a_delayed_jobs_new_priority_applies_once_it_is_due(proxy, sync_redis):
    (job,) = await add(proxy, {"opts": {"delay": 600_000}})
    await rest(proxy, "POST", f"{Q}/jobs/{job}/priority", {"priority": 7})
    assert sync_redis.hget(f"bull:mail:{job}", "priority") == "7"
    promoted = await rest(proxy, "POST", f"{Q}/jobs/{job}/promote")
    assert (promoted["state"], promoted["delay"]) == ("prioritized", 0)


@pytest.mark.parametrize("delay", [0, 5_000, 3_600_000])
@on_asyncio
async def test_delay_reschedules_a_delayed_job_from_now(proxy, sync_redis, delay):
    (job,) = await add(proxy, {"opts": {"delay": 600_000}})
    before = time.time() * 1000
    answer = await rest(proxy, "POST", f"{Q}/jobs/{job}/delay", {"delay": delay})
    after = time.time() * 1000
    assert (answer["state"], answer["delay"]) == ("delayed", delay)
    # BullMQ scores a delayed job by its due time in ms times 4096 (plus a counter).
    due = sync_redis.zscore("bull:mail:delayed", job) // 4096
    assert before + delay - 1 <= due <= after + delay + 1


@on_asyncio
async def test_a_delay_of_zero_runs_the_job_now(proxy, sync_redis, redis_url):
    (job,) = await add(proxy, {"opts": {"delay": 600_000}})
    await rest(proxy, "POST", f"{Q}/jobs/{job}/delay", {"delay": 0})
    await finish(redis_url, sync_redis, [job])


async def _settled_flow(proxy, sync_redis, redis_url, on_failure: str) -> str:
    """A parent with a child that completes, one that fails with ``on_failure`` and one
    left pending; the parent's id."""
    flow = await rest(proxy, "POST", "/flows", {
        "name": "parent", "queueName": "mail", "data": {}, "children": [
            {"name": "ok", "queueName": "kids", "data": {}},
            {"name": "bad", "queueName": "kids", "data": {"fail": True},
             "opts": {on_failure: True}},
            {"name": "later", "queueName": "kids", "data": {}, "opts": {"delay": 600_000}}]})
    ok, bad, _ = (child["job"]["id"] for child in flow["children"])
    await finish(redis_url, sync_redis, [ok, bad], queue="kids")
    return flow["job"]["id"]


@pytest.mark.parametrize(("on_failure", "failed", "ignored"), [
    ("ignoreDependencyOnFailure", 0, 1),
    ("continueParentOnFailure", 0, 1),
    ("failParentOnFailure", 1, 0),
    ("removeDependencyOnFailure", 0, 0),
])
@on_asyncio
async def test_children_lists_pending_processed_failed_and_ignored_children(
        proxy, sync_redis, redis_url, on_failure, failed, ignored):
    parent = await _settled_flow(proxy, sync_redis, redis_url, on_failure)
    answer = await rest(proxy, "GET", f"{Q}/jobs/{parent}/children")
    assert answer["counts"] == {"unprocessed": 1, "processed": 1, "failed": failed,
                                "ignored": ignored}
    (pending,) = answer["unprocessed"]
    assert sync_redis.hget(pending, "name") == "later"
    ((key, value),) = answer["processed"].items()
    assert (sync_redis.hget(key, "name"), value) == ("ok", {"done": key.rsplit(":", 1)[1]})
    for key in answer["failed"]:
        assert sync_redis.hget(key, "name") == "bad"
    for key, reason in answer["ignored"].items():
        assert (sync_redis.hget(key, "name"), reason) == ("bad", "failed on purpose")
    assert (answer["start"], answer["length"]) == (0, 10)


@on_asyncio
async def test_children_are_paged(proxy, sync_redis, redis_url):
    flow = await rest(proxy, "POST", "/flows", {
        "name": "parent", "queueName": "mail", "data": {},
        "children": [{"name": f"c{n}", "queueName": "kids", "data": {}} for n in range(5)]})
    keys = sorted(sync_redis.smembers(f"bull:mail:{flow['job']['id']}:dependencies"))
    pages = [await rest(proxy, "GET", f"{Q}/jobs/{flow['job']['id']}/children"
                                      f"?start={start}&length=2") for start in (0, 2, 4)]
    assert [page["unprocessed"] for page in pages] == [keys[0:2], keys[2:4], keys[4:]]
    assert {page["counts"]["unprocessed"] for page in pages} == {5}
    # A job without children has none.
    (plain,) = await add(proxy, {})
    lonely = await rest(proxy, "GET", f"{Q}/jobs/{plain}/children")
    assert lonely["counts"] == {"unprocessed": 0, "processed": 0, "failed": 0, "ignored": 0}


@on_asyncio
async def test_jobs_are_found_by_name_within_the_requested_states(proxy, sync_redis,
                                                                  redis_url):
    ids = await add(proxy, {"name": "a"}, {"name": "b"}, {"name": "a"},
                    {"name": "a", "opts": {"delay": 600_000}}, {"name": "c"})
    found = await rest(proxy, "GET", f"{Q}/jobs?name=a&statuses=waiting,delayed")
    assert sorted(job["id"] for job in found["jobs"]) == sorted([ids[0], ids[2], ids[3]])
    assert (found["matched"], found["scanned"], found["complete"]) == (3, 5, True)
    assert found["counts"] == {"waiting": 4, "delayed": 1}
    # The default states (waiting, active, completed, failed) leave the delayed one out.
    default = await rest(proxy, "GET", f"{Q}/jobs?name=a")
    assert sorted(job["id"] for job in default["jobs"]) == sorted([ids[0], ids[2]])
    page = await rest(proxy, "GET", f"{Q}/jobs?name=a&statuses=waiting,delayed"
                                    "&start=1&length=1")
    assert (len(page["jobs"]), page["matched"], page["start"], page["length"]) == (1, 3, 1, 1)
    assert (await rest(proxy, "GET", f"{Q}/jobs?name=zzz"))["jobs"] == []


@on_asyncio
async def test_a_name_search_examines_at_most_max_name_scan_jobs(proxy, monkeypatch):
    monkeypatch.setattr(job_admin, "MAX_NAME_SCAN", 5)
    monkeypatch.setattr(job_admin, "NAME_SCAN_BATCH", 2)
    await add(proxy, *({"name": "x"} for _ in range(7)))
    found = await rest(proxy, "GET", f"{Q}/jobs?name=x&statuses=waiting&length=100")
    assert (found["scanned"], found["matched"], found["complete"]) == (5, 5, False)
    whole = await rest(proxy, "GET", f"{Q}/jobs?name=x&statuses=waiting,delayed")
    assert whole["complete"] is False


@on_asyncio
async def test_a_job_promoted_here_is_taken_by_a_worker(proxy, sync_redis, redis_url):
    (job,) = await add(proxy, {"opts": {"delay": 600_000}})
    taken = []

    async def process(job, token):
        taken.append(job.id)

    worker = Worker("mail", process, {"connection": redis_url, "prefix": "bull"})
    try:
        await rest(proxy, "POST", f"{Q}/jobs/{job}/promote")
        await until(lambda: taken == [job], "the promoted job")
    finally:
        await worker.close()
