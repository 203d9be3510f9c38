"""Every queue-, job-, flow- and scheduler-management route refuses what it must: no or a
wrong token (401), an unknown queue, job or scheduler (404), and each declared field out of
its type or bounds, unknown fields and malformed JSON (400) — and a refused request leaves
Redis exactly as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bullmq_proxy.bounds import POSITIVE_COUNT, PRIORITY
from bullmq_proxy.core.flows import MAX_FLOW_DEPTH, MAX_FLOW_NODES
from bullmq_proxy.schemas.admin import MAX_BATCH, MAX_DELAY_MS
from tests.admin_support import add, assert_problem, on_twisted, rest, snapshot
from tests.ws_support import on_asyncio

# Ids the ``world`` fixture creates: a waiting job, a delayed one and a scheduler.
WAITING, DELAYED, SCHEDULER = "1", "2", "tick"
Q = "/queues/mail"

ROUTES = [
    ("GET", "/queues", None),
    ("GET", Q, None),
    ("DELETE", Q, None),
    ("POST", f"{Q}/pause", {}),
    ("POST", f"{Q}/resume", {}),
    ("POST", f"{Q}/clean", {"type": "wait"}),
    ("POST", f"{Q}/drain", {}),
    ("POST", f"{Q}/retry", {}),
    ("POST", f"{Q}/promote", {}),
    ("PUT", f"{Q}/rate-limit", {"max": 1, "duration": 1000}),
    ("DELETE", f"{Q}/rate-limit", None),
    ("PUT", f"{Q}/concurrency", {"max": 1}),
    ("DELETE", f"{Q}/concurrency", None),
    ("DELETE", f"{Q}/jobs/{WAITING}", None),
    ("PATCH", f"{Q}/jobs/{WAITING}", {"data": 1}),
    ("POST", f"{Q}/jobs/{WAITING}/priority", {"priority": 1}),
    ("POST", f"{Q}/jobs/{DELAYED}/promote", {}),
    ("POST", f"{Q}/jobs/{DELAYED}/delay", {"delay": 1}),
    ("GET", f"{Q}/jobs/{WAITING}/children", None),
    ("GET", f"{Q}/jobs?name=job", None),
    ("GET", f"{Q}/schedulers", None),
    ("PUT", f"{Q}/schedulers/{SCHEDULER}", {"every": 1000}),
    ("GET", f"{Q}/schedulers/{SCHEDULER}", None),
    ("DELETE", f"{Q}/schedulers/{SCHEDULER}", None),
    ("POST", "/flows", {"name": "f", "queueName": "mail", "data": {}}),
    # Retrying needs a finished job: the 409 for a waiting one shows the token passed.
    ("POST", f"{Q}/jobs/{WAITING}/retry", {}),
]
# What each route answers, with the token, in the ``world`` fixture (200 if not here).
SERVED = {("DELETE", Q): 204, ("POST", f"{Q}/jobs/{WAITING}/retry"): 409}
BODY_ROUTES = [route for route in ROUTES if route[2] is not None]


@pytest.fixture
def world(proxy, sync_redis):
    """A queue with a waiting job, a delayed job and a job scheduler."""

    async def build():
        assert await add(proxy, {}, {"opts": {"delay": 600_000}}) == [WAITING, DELAYED]
        await rest(proxy, "PUT", f"{Q}/schedulers/{SCHEDULER}", {"every": 600_000})
        return snapshot(sync_redis)

    return build


def _id(route) -> str:
    return f"{route[0]} {route[1]}"


@pytest.mark.parametrize("route", ROUTES, ids=_id)
@on_asyncio
async def test_every_route_refuses_a_missing_or_wrong_token(proxy, sync_redis, world, route):
    method, path, body = route
    before = await world()
    for token in (None, "not-the-token"):
        code, answer, headers = await _raw(proxy, method, path, body, token)
        assert code == 401, (token, answer)
        assert_problem(answer, "unauthorized", None)
        assert headers.getRawHeaders("www-authenticate")[0].startswith("Bearer")
    assert snapshot(sync_redis) == before
    # The same request with the token is served: the table names real routes.
    code, answer, _ = await _raw(proxy, method, path, body, "test-token")
    assert code == SERVED.get((method, path), 200), answer


async def _raw(proxy, method, path, body, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await on_twisted(proxy.request(method, path, json_body=body, headers=headers))


NOT_FOUND = [
    *[(method, path.replace(Q, "/queues/nope"), body, "queueName")
      for method, path, body in ROUTES
      # PUT of a limit may come before the queue's first job.
      if path.startswith(Q) and "/jobs" not in path and "/schedulers" not in path
      and method != "PUT"],
    *[(method, f"{Q}/jobs/nope{suffix}", body, "jobId") for method, suffix, body in [
        ("DELETE", "", None), ("PATCH", "", {"data": 1}), ("POST", "/retry", {}),
        ("POST", "/promote", {}), ("POST", "/priority", {"priority": 1}),
        ("POST", "/delay", {"delay": 1}), ("GET", "/children", None)]],
    ("GET", f"{Q}/schedulers/nope", None, "schedulerId"),
    ("DELETE", f"{Q}/schedulers/nope", None, "schedulerId"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), NOT_FOUND,
                         ids=[f"{m} {p}" for m, p, _, _ in NOT_FOUND])
@on_asyncio
async def test_unknown_queues_jobs_and_schedulers_are_404s(proxy, sync_redis, world, method,
                                                         path, body, field):
    before = await world()
    answer = await rest(proxy, method, path, body, status=404)
    assert_problem(answer, "not-found", field)
    assert snapshot(sync_redis) == before


BAD_BODIES = [
    # clean
    (f"{Q}/clean", "POST", {}, "type"),
    (f"{Q}/clean", "POST", {"type": "active"}, "type"),
    (f"{Q}/clean", "POST", {"type": "waiting"}, "type"),
    (f"{Q}/clean", "POST", {"type": "wait", "grace": -1}, "grace"),
    (f"{Q}/clean", "POST", {"type": "wait", "grace": 1.5}, "grace"),
    (f"{Q}/clean", "POST", {"type": "wait", "grace": "10"}, "grace"),
    (f"{Q}/clean", "POST", {"type": "wait", "grace": MAX_DELAY_MS + 1}, "grace"),
    (f"{Q}/clean", "POST", {"type": "wait", "limit": 0}, "limit"),
    (f"{Q}/clean", "POST", {"type": "wait", "limit": MAX_BATCH + 1}, "limit"),
    (f"{Q}/clean", "POST", {"type": "wait", "limit": True}, "limit"),
    # drain
    (f"{Q}/drain", "POST", {"delayed": "yes"}, "delayed"),
    (f"{Q}/drain", "POST", {"delayed": 1}, "delayed"),
    # bulk retry and promote
    (f"{Q}/retry", "POST", {"state": "active"}, "state"),
    (f"{Q}/retry", "POST", {"state": "failed", "count": 0}, "count"),
    (f"{Q}/retry", "POST", {"count": MAX_BATCH + 1}, "count"),
    (f"{Q}/promote", "POST", {"count": 0}, "count"),
    (f"{Q}/promote", "POST", {"count": "5"}, "count"),
    # limits
    (f"{Q}/rate-limit", "PUT", {"duration": 1000}, "max"),
    (f"{Q}/rate-limit", "PUT", {"max": 1}, "duration"),
    (f"{Q}/rate-limit", "PUT", {"max": 0, "duration": 1000}, "max"),
    (f"{Q}/rate-limit", "PUT", {"max": 1_000_001, "duration": 1000}, "max"),
    (f"{Q}/rate-limit", "PUT", {"max": 1, "duration": 0}, "duration"),
    (f"{Q}/rate-limit", "PUT", {"max": 1, "duration": 1.5}, "duration"),
    (f"{Q}/rate-limit", "PUT", {"max": 1, "duration": MAX_DELAY_MS + 1}, "duration"),
    (f"{Q}/concurrency", "PUT", {}, "max"),
    (f"{Q}/concurrency", "PUT", {"max": 0}, "max"),
    (f"{Q}/concurrency", "PUT", {"max": 100_001}, "max"),
    (f"{Q}/concurrency", "PUT", {"max": "2"}, "max"),
    # job actions
    (f"{Q}/jobs/{WAITING}", "PATCH", {}, "data"),
    (f"{Q}/jobs/{WAITING}/priority", "POST", {}, "priority"),
    (f"{Q}/jobs/{WAITING}/priority", "POST", {"priority": -1}, "priority"),
    (f"{Q}/jobs/{WAITING}/priority", "POST", {"priority": PRIORITY.maximum + 1}, "priority"),
    (f"{Q}/jobs/{WAITING}/priority", "POST", {"priority": "1"}, "priority"),
    (f"{Q}/jobs/{WAITING}/priority", "POST", {"priority": 1, "lifo": "no"}, "lifo"),
    (f"{Q}/jobs/{DELAYED}/delay", "POST", {}, "delay"),
    (f"{Q}/jobs/{DELAYED}/delay", "POST", {"delay": -1}, "delay"),
    (f"{Q}/jobs/{DELAYED}/delay", "POST", {"delay": 0.5}, "delay"),
    (f"{Q}/jobs/{DELAYED}/delay", "POST", {"delay": MAX_DELAY_MS + 1}, "delay"),
    # job schedulers
    *[(f"{Q}/schedulers/s", "PUT", body, field) for body, field in [
        ({}, "body"),
        ([], "body"),
        ({"every": 1000, "pattern": "* * * * *"}, "body"),
        ({"every": 0}, "every"),
        ({"every": "1000"}, "every"),
        ({"every": MAX_DELAY_MS + 1}, "every"),
        ({"pattern": ""}, "pattern"),
        ({"pattern": "* " * 200}, "pattern"),
        ({"pattern": "every minute"}, "pattern"),
        ({"pattern": "61 * * * *"}, "pattern"),
        ({"pattern": "* * * * * * * *"}, "pattern"),
        ({"pattern": "0 0 30 2 *"}, "pattern"),
        ({"pattern": "0 * * * *", "tz": "Mars/Olympus_Mons"}, "tz"),
        ({"pattern": "0 * * * *", "tz": ""}, "tz"),
        ({"every": 1000, "limit": 0}, "limit"),
        ({"every": 1000, "limit": POSITIVE_COUNT.maximum + 1}, "limit"),
        ({"every": 1000, "offset": -1}, "offset"),
        ({"every": 1000, "offset": MAX_DELAY_MS + 1}, "offset"),
        ({"pattern": "0 * * * *", "tz": "Europe/" + "x" * 60}, "tz"),
        ({"every": 1000, "startDate": "2030-01-01T08:00:00Z" + " " * 50}, "startDate"),
        ({"every": 1000, "immediately": "yes"}, "immediately"),
        ({"every": 1000, "immediately": True, "startDate": 1}, "immediately"),
        ({"every": 1000, "startDate": "tomorrow"}, "startDate"),
        ({"every": 1000, "startDate": "2030-01-01"}, "startDate"),
        ({"every": 1000, "startDate": "2030-01-01T08:00:00"}, "startDate"),
        ({"every": 1000, "startDate": -1}, "startDate"),
        ({"every": 1000, "endDate": 1}, "endDate"),
        ({"every": 1000, "startDate": "2030-01-02T00:00:00Z",
          "endDate": "2030-01-01T00:00:00+01:00"}, "endDate"),
        ({"every": 1000, "template": []}, "template"),
        ({"every": 1000, "template": {"name": ""}}, "template.name"),
        ({"every": 1000, "template": {"name": "n" * 1001}}, "template.name"),
        ({"every": 1000, "template": {"opts": []}}, "template.opts"),
        ({"every": 1000, "template": {"opts": {"priority": 0}}}, "template.opts.priority"),
        ({"every": 1000, "template": {"opts": {"repeat": {"every": 5}}}},
         "template.opts.repeat"),
        ({"every": 1000, "template": {"opts": {"jobId": "x"}}}, "template.opts.jobId"),
        ({"every": 1000, "template": {"opts": {"delay": 5}}}, "template.opts.delay"),
    ]],
]


@pytest.mark.parametrize(("path", "method", "body", "field"), BAD_BODIES,
                         ids=[f"{m} {p} {f} {b}"[:90] for p, m, b, f in BAD_BODIES])
@on_asyncio
async def test_each_declared_field_is_checked(proxy, sync_redis, world, path, method, body,
                                              field):
    before = await world()
    answer = await rest(proxy, method, path, body, status=400)
    assert_problem(answer, "invalid-field", field)
    assert snapshot(sync_redis) == before


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES,
                         ids=[_id(route) for route in BODY_ROUTES])
@on_asyncio
async def test_every_body_refuses_unknown_fields_and_malformed_json(proxy, sync_redis, world,
                                                                   method, path, body):
    before = await world()
    answer = await rest(proxy, method, path, {**body, "bogus": 1}, status=400)
    assert_problem(answer, "unknown-field", "bogus")
    for raw in (b"{", b"[1,", b"NaN", b"\xff"):
        answer = await rest(proxy, method, path, raw=raw, status=400)
        assert_problem(answer, "invalid-json", "body")
    assert snapshot(sync_redis) == before


BAD_QUERIES = [
    ("GET", "/queues?length=0", "length"),
    ("GET", "/queues?length=101", "length"),
    ("GET", "/queues?start=-1", "start"),
    ("GET", "/queues?start=one", "start"),
    ("GET", f"/queues?start={2**53}", "start"),
    ("GET", "/queues?length=1.5", "length"),
    ("DELETE", f"{Q}?force=yes", "force"),
    ("DELETE", f"{Q}/jobs/{WAITING}?children=maybe", "children"),
    ("GET", f"{Q}/jobs/{WAITING}/children?length=0", "length"),
    ("GET", f"{Q}/jobs/{WAITING}/children?start=x", "start"),
    ("GET", f"{Q}/jobs?name=", "name"),
    ("GET", f"{Q}/jobs?name={'n' * 1001}", "name"),
    ("GET", f"{Q}/jobs?name=job&statuses=bogus", "statuses"),
    ("GET", f"{Q}/schedulers?length=101", "length"),
    # Path parameters.
    ("POST", "/queues/ab/pause", "queueName"),
    ("GET", "/queues/a%3Ab", "queueName"),
    ("PUT", f"{Q}/schedulers/a%3Ab", "schedulerId"),
    ("GET", f"{Q}/schedulers/a%3Ab", "schedulerId"),
]


@pytest.mark.parametrize(("method", "path", "field"), BAD_QUERIES,
                         ids=[f"{m} {p}" for m, p, _ in BAD_QUERIES])
@on_asyncio
async def test_query_and_path_parameters_are_checked(proxy, sync_redis, world, method, path,
                                                     field):
    before = await world()
    body = {"every": 1000} if method == "PUT" else None
    answer = await rest(proxy, method, path, body, status=400)
    assert_problem(answer, "invalid-field", field)
    assert snapshot(sync_redis) == before


def _chain(depth: int) -> dict:
    node = {"name": "leaf", "queueName": "mail", "data": {}}
    for _ in range(depth - 1):
        node = {"name": "node", "queueName": "mail", "data": {}, "children": [node]}
    return node


LEAF = {"name": "c", "queueName": "kids", "data": {}}
ROOT = {"name": "p", "queueName": "mail", "data": {}}
BAD_FLOWS = [
    ([], "invalid-field", "body"),
    ("flow", "invalid-field", "body"),
    ({"queueName": "mail", "data": {}}, "invalid-field", "name"),
    ({"name": "p", "queueName": "mail"}, "invalid-field", "data"),
    ({"name": "p", "data": {}}, "invalid-field", "queueName"),
    ({**ROOT, "queueName": "ab"}, "invalid-field", "queueName"),
    ({**ROOT, "queueName": "a:b"}, "invalid-field", "queueName"),
    ({**ROOT, "bogus": 1}, "unknown-field", "bogus"),
    ({**ROOT, "opts": {"priority": 0}}, "invalid-field", "opts.priority"),
    ({**ROOT, "opts": {"repeat": {"every": 5}}}, "invalid-field", "opts.repeat"),
    ({**ROOT, "opts": {"failParentOnFailure": True}}, "invalid-field",
     "opts.failParentOnFailure"),
    ({**ROOT, "children": {}}, "invalid-field", "children"),
    ({**ROOT, "children": ["x"]}, "invalid-field", "children[0]"),
    ({**ROOT, "children": [{"queueName": "kids", "data": 1}]}, "invalid-field",
     "children[0].name"),
    ({**ROOT, "children": [{**LEAF, "queueName": "k"}]}, "invalid-field",
     "children[0].queueName"),
    ({**ROOT, "children": [{**LEAF, "opts": {"bogus": 1}}]}, "unknown-field",
     "children[0].opts.bogus"),
    ({**ROOT, "children": [{**LEAF, "opts": {"failParentOnFailure": "yes"}}]},
     "invalid-field", "children[0].opts.failParentOnFailure"),
    ({**ROOT, "children": [{**LEAF, "opts": {"failParentOnFailure": True,
                                            "ignoreDependencyOnFailure": True}}]},
     "invalid-field", "children[0].opts"),
    ({**ROOT, "children": [LEAF, {**LEAF, "children": [{**LEAF, "data": None,
                                                         "opts": {"delay": -1}}]}]},
     "invalid-field", "children[1].children[0].opts.delay"),
    ([ROOT, {"queueName": "mail", "data": {}}], "invalid-field", "[1].name"),
    (_chain(MAX_FLOW_DEPTH + 1), "invalid-field",
     "children[0]" + ".children[0]" * (MAX_FLOW_DEPTH - 1)),
    ({**ROOT, "children": [LEAF] * MAX_FLOW_NODES}, "invalid-field",
     f"children[{MAX_FLOW_NODES - 1}]"),
]


@pytest.mark.parametrize(("body", "slug", "field"), BAD_FLOWS,
                         ids=[f"{f}-{i}" for i, (_, _, f) in enumerate(BAD_FLOWS)])
@on_asyncio
async def test_a_bad_flow_is_refused_whole(proxy, sync_redis, world, body, slug, field):
    before = await world()
    answer = await rest(proxy, "POST", "/flows", body, status=400)
    assert_problem(answer, slug, field)
    assert snapshot(sync_redis) == before


def test_a_flow_at_the_bounds_is_accepted_by_the_shape():
    from bullmq_proxy.config import Config
    from bullmq_proxy.core.flows import FlowShape
    from bullmq_proxy.validation import validate_queue_name

    shape = FlowShape(lambda name, field: validate_queue_name(name, Config(), field))
    assert len(shape.trees(_chain(MAX_FLOW_DEPTH))) == 1
    wide = shape.trees({**ROOT, "children": [LEAF] * (MAX_FLOW_NODES - 1)})
    assert len(wide[0]["children"]) == MAX_FLOW_NODES - 1


def _management_routes():
    from bullmq_proxy.config import Config
    from bullmq_proxy.http.admin import job_admin_routes, queue_admin_routes
    from bullmq_proxy.http.flows import flow_routes
    from bullmq_proxy.http.schedulers import scheduler_routes

    # The handlers close over the core objects, which listing the routes never calls.
    return [*queue_admin_routes(None), *job_admin_routes(None), *scheduler_routes(None),
            *flow_routes(None, Config())]


def test_the_tables_above_cover_every_management_route():
    declared = {(route.method.decode(), route.template) for route in _management_routes()}
    tested = {(method, re.sub(r"/(mail|1|2|tick)(?=/|$|\?)", "/X", path.split("?")[0]))
              for method, path, _ in ROUTES}
    expected = {(method, re.sub(r"\{\w+\}", "X", template)) for method, template in declared}
    assert expected <= tested


def test_docs_queues_md_has_a_curl_example_for_every_management_route():
    doc = (Path(__file__).parent.parent / "docs" / "queues.md").read_text()
    curls = [line for line in doc.splitlines() if line.startswith("curl ")]
    for route in _management_routes():
        method = route.method.decode()
        path = re.sub(r"\\\{\w+\\\}", r"[^/?\"]+", re.escape(route.template))
        shown = re.compile(rf'"\$P{path}[?"]')
        assert any(shown.search(line) and (f"-X {method} " in line if method != "GET"
                                           else "-X " not in line) for line in curls), (
            method, route.template)
