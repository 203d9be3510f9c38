"""Flows over REST: trees of jobs added with BullMQ's FlowProducer, answered in its shape,
whose parents wait for their children whichever of the proxy's workers runs them (HTTP
endpoints, WebSocket workers; Node workers in test_admin_interop.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bullmq_proxy.core import flows
from tests.admin_support import (
    assert_problem,
    on_twisted,
    rest,
    snapshot,
    until,
    where,
)
from tests.workers_helpers import listen_endpoint, ok, register
from tests.ws_support import connect, on_asyncio

KINDS = ["endpoint", "websocket"]
# A worker's decision for a job: its result, or None to fail it.
Decide = Callable[[dict[str, Any]], Any]


def _node(name: str, queue: str, *children: dict, **opts: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"name": name, "queueName": queue, "data": {"of": name}}
    if opts:
        node["opts"] = opts
    if children:
        node["children"] = list(children)
    return node


@on_asyncio
async def test_a_flow_is_added_whole_and_answered_in_flowproducers_shape(proxy, sync_redis):
    tree = _node("parent", "mail", _node("a", "kids"),
                 _node("b", "kids", _node("b1", "grandkids", priority=3)), jobId="top")
    answer = await rest(proxy, "POST", "/flows", tree)
    assert answer["job"]["id"] == "top"
    assert (answer["job"]["name"], answer["job"]["data"]) == ("parent", {"of": "parent"})
    a, b = answer["children"]
    assert "children" not in a
    (b1,) = b["children"]
    assert (a["job"]["name"], b["job"]["name"], b1["job"]["name"]) == ("a", "b", "b1")
    assert b1["job"]["opts"]["priority"] == 3
    assert a["job"]["parent"] == {"id": "top", "queueKey": "bull:mail"}
    # In Redis: parents wait for their children, the leaves are ready to run.
    assert where(sync_redis, "top") == ["waiting-children"]
    assert sync_redis.smembers("bull:mail:top:dependencies") == {
        f"bull:kids:{a['job']['id']}", f"bull:kids:{b['job']['id']}"}
    assert where(sync_redis, b["job"]["id"], "kids") == ["waiting-children"]
    assert where(sync_redis, a["job"]["id"], "kids") == ["wait"]
    assert where(sync_redis, b1["job"]["id"], "grandkids") == ["prioritized"]
    assert sync_redis.hget(f"bull:grandkids:{b1['job']['id']}", "parentKey") == (
        f"bull:kids:{b['job']['id']}")


@on_asyncio
async def test_an_array_of_flows_is_answered_as_an_array(proxy, sync_redis):
    answer = await rest(proxy, "POST", "/flows", [_node("p1", "mail", _node("c", "kids")),
                                                  _node("lonely", "mail")])
    assert [tree["job"]["name"] for tree in answer] == ["p1", "lonely"]
    assert where(sync_redis, answer[0]["job"]["id"]) == ["waiting-children"]
    assert where(sync_redis, answer[1]["job"]["id"]) == ["wait"]


@on_asyncio
async def test_a_flow_into_a_paused_bullmq_5_queue_keeps_bullmq_5s_layout(proxy5, sync_redis):
    await rest(proxy5, "PUT", "/queues/kids/concurrency", {"max": 5})
    await rest(proxy5, "POST", "/queues/kids/pause")
    answer = await rest(proxy5, "POST", "/flows", _node("p", "mail", _node("c", "kids")))
    assert where(sync_redis, answer["children"][0]["job"]["id"], "kids") == ["paused"]
    assert sync_redis.llen("bull:kids:wait") == 0


@pytest.mark.parametrize("array", [False, True])
@on_asyncio
async def test_a_child_whose_job_id_has_another_parent_is_a_409(proxy, sync_redis, array):
    first = _node("p", "mail", _node("c", "kids", jobId="c1"), jobId="p")
    await rest(proxy, "POST", "/flows", first)
    before = snapshot(sync_redis)
    again = _node("p2", "mail", _node("other", "kids"), _node("c", "kids", jobId="c1"))
    answer = await rest(proxy, "POST", "/flows", [again] if array else again, status=409)
    assert_problem(answer, "conflict",
                   ("[0]." if array else "") + "children[1].opts.jobId")
    assert answer["state"] == "waiting"
    assert snapshot(sync_redis) == before
    # The same flow again is BullMQ's duplicate (an event tells it): the same jobs answer.
    same = await rest(proxy, "POST", "/flows", first)
    assert (same["job"]["id"], same["children"][0]["job"]["id"]) == ("p", "c1")
    assert sync_redis.smembers("bull:mail:p:dependencies") == {"bull:kids:c1"}


@on_asyncio
async def test_a_child_refused_by_bullmq_itself_is_a_409_too(proxy, sync_redis, monkeypatch):
    """The check before adding lost a race: BullMQ refuses the child in the transaction."""
    await rest(proxy, "POST", "/flows",
               _node("p", "mail", _node("c", "kids", jobId="c1"), jobId="p"))

    async def no_check(self, tree, field):
        return None

    monkeypatch.setattr(flows.Flows, "_refuse_adopted_children", no_check)
    answer = await rest(proxy, "POST", "/flows",
                        _node("p2", "mail", _node("c", "kids", jobId="c1"), jobId="p2"),
                        status=409)
    assert_problem(answer, "conflict", "children[0].opts.jobId")
    assert sync_redis.hget("bull:kids:c1", "parentKey") == "bull:mail:p"


@contextlib.asynccontextmanager
async def serving(live, kind: str, queue: str, decide: Decide) -> AsyncIterator[list[str]]:
    """One of the proxy's workers (``kind``) runs ``queue``'s jobs as ``decide`` says; the
    ids it was handed, in order."""
    handed: list[str] = []
    if kind == "endpoint":
        async def answer(delivery):
            job = delivery.body["job"]
            handed.append(job["id"])
            result = decide(job)
            if result is None:
                return 400, {"Content-Type": "text/plain"}, "refused"
            return ok(json.dumps(result), "application/json")

        endpoint = listen_endpoint(answer)
        await on_twisted(register(live, endpoint.url, queue=queue, opts={"concurrency": 2}))
        try:
            yield handed
        finally:
            await rest(live, "DELETE", f"/workers/{queue}")
            await on_twisted(endpoint.close())
        return
    socket = await connect(live.url, f"/ws/queues/{queue}/process/2")

    async def work():
        while True:
            message = await socket.recv(timeout=60)
            job = message["data"]["job"]
            handed.append(job["id"])
            result = decide(job)
            reply = ({"err": {"message": "refused"}} if result is None
                     else {"result": result})
            socket.send({"id": message["id"], "data": reply})

    working = asyncio.ensure_future(work())
    try:
        yield handed
    finally:
        working.cancel()
        await socket.close()


@pytest.mark.parametrize("kind", KINDS)
@on_asyncio
async def test_parents_wait_for_children_run_by_the_proxys_workers(live_proxy, sync_redis,
                                                                  kind):
    tree = _node("parent", "mail", _node("a", "kids"),
                 _node("b", "kids", _node("b1", "kids")))
    added = await rest(live_proxy, "POST", "/flows", tree)
    parent = added["job"]["id"]
    children_done_when_called: list[int] = []

    def run_parent(job):
        children_done_when_called.append(sync_redis.zcard("bull:kids:completed"))
        return {"parent": "done"}

    async with serving(live_proxy, "endpoint", "mail", run_parent) as parents:
        await asyncio.sleep(0.3)
        assert parents == []  # nothing to run: the parent waits for its children
        async with serving(live_proxy, kind, "kids", lambda job: {"by": kind,
                                                                    "name": job["name"]}
                           ) as kids:
            await until(lambda: parents, "the parent")
        await until(lambda: sync_redis.zscore("bull:mail:completed", parent), "completion")
    assert children_done_when_called == [3]
    # b ran after its own child b1.
    names = {sync_redis.hget(f"bull:kids:{i}", "name"): n for n, i in enumerate(kids)}
    assert names["b1"] < names["b"]
    answer = await rest(live_proxy, "GET", f"/queues/mail/jobs/{parent}/children")
    assert sorted(answer["processed"].values(), key=lambda v: v["name"]) == [
        {"by": kind, "name": "a"}, {"by": kind, "name": "b"}]
    assert answer["unprocessed"] == []


@pytest.mark.parametrize("kind", KINDS)
@on_asyncio
async def test_a_failing_child_with_fail_parent_on_failure_fails_its_parent(
        live_proxy, sync_redis, kind):
    tree = _node("parent", "mail", _node("fine", "kids"),
                 _node("broken", "kids", failParentOnFailure=True))
    added = await rest(live_proxy, "POST", "/flows", tree)
    parent = added["job"]["id"]
    broken = added["children"][1]["job"]["id"]
    async with (serving(live_proxy, "endpoint", "mail", lambda job: {"ran": True}) as parents,
                serving(live_proxy, kind, "kids",
                        lambda job: None if job["name"] == "broken" else 1)):
        await until(lambda: sync_redis.zscore("bull:mail:failed", parent), "the parent")
    job = await rest(live_proxy, "GET", f"/queues/mail/jobs/{parent}")
    assert job["state"] == "failed"
    assert f"bull:kids:{broken}" in job["failedReason"]
    # BullMQ fails the parent when a worker takes it, without running it.
    assert parents == []
    assert (await rest(live_proxy, "GET", f"/queues/mail/jobs/{parent}/children"))[
        "failed"] == [f"bull:kids:{broken}"]
