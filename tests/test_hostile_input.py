"""Hostile and oversized input (issue 11): every probe that gave a 500, dropped a socket or left
a job active on the first release, each a 4xx JSON problem (or an err reply) now, with nothing
written to Redis for input that is refused."""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_twisted

from bullmq_proxy.bounds import MAX_JSON_DEPTH, MAX_SAFE_INTEGER, MAX_STORED_INTEGER
from tests.support import AUTH, make_config, start_live_proxy, start_proxy
from tests.ws_support import connect, on_asyncio

DEEP = b"[" * 1000 + b"]" * 1000
DEEP_OBJECT = b'{"a":' * 1000 + b"1" + b"}" * 1000
LOCK = {"Authorization": "Bearer lock-token-1"}
# (route, a valid body for it); the job API routes need the job's lock token.
JSON_ROUTES = [
    ("/queues/mail/jobs", AUTH), ("/workers", AUTH),
    ("/queues/mail/jobs/1/progress", LOCK), ("/queues/mail/jobs/1/logs", LOCK),
    ("/queues/mail/jobs/1/complete", LOCK), ("/queues/mail/jobs/1/fail", LOCK),
    ("/queues/mail/jobs/1/lock", LOCK),
]


@pytest_twisted.async_yield_fixture
async def proxy(redis_url):
    running = await start_proxy(make_config(redis_url))
    yield running
    await running.stop()


async def locked_job(proxy, sync_redis):
    status, _, _ = await proxy.request("POST", "/queues/mail/jobs",
                                       json_body=[{"name": "a", "data": 1}], headers=AUTH)
    assert status == 200
    sync_redis.set("bull:mail:1:lock", "lock-token-1")


def snapshot(sync_redis):
    """Every key and its content, to prove that a refused request wrote nothing."""
    return {key: sync_redis.dump(key) for key in sync_redis.keys("*")}


async def refused(proxy, path, body, headers, field="body", slug="invalid-json"):
    status, problem, response_headers = await proxy.request("POST", path, body=body,
                                                            headers=headers)
    assert status == 400, (path, problem)
    assert response_headers.getRawHeaders("content-type") == ["application/problem+json"]
    assert (problem["type"], problem.get("field")) == (f"/problems/{slug}", field), problem
    return problem


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, b"1e400", b'"\\ud800"', b'[-1E999]'])
@pytest_twisted.ensureDeferred
async def test_json_that_python_cannot_encode_is_400_on_every_json_route(proxy, sync_redis,
                                                                          body):
    await locked_job(proxy, sync_redis)
    before = snapshot(sync_redis)
    for path, headers in JSON_ROUTES:
        await refused(proxy, path, body, headers)
    assert snapshot(sync_redis) == before


@pytest_twisted.ensureDeferred
async def test_json_at_the_depth_limit_is_stored_and_read_back(proxy):
    data = 0
    for _ in range(MAX_JSON_DEPTH - 2):  # the array of jobs and the job are two levels
        data = [data]
    status, [job], _ = await proxy.request("POST", "/queues/mail/jobs",
                                           json_body=[{"name": "deep", "data": data}],
                                           headers=AUTH)
    assert status == 200
    status, read, _ = await proxy.request("GET", f"/queues/mail/jobs/{job['id']}", headers=AUTH)
    assert (status, read["data"]) == (200, data)


@pytest.mark.parametrize("option", [
    {"delay": 2**64}, {"attempts": 2**64}, {"backoff": 2**64},
    {"backoff": {"type": "fixed", "delay": 2**64}}, {"removeOnComplete": 2**64},
    {"removeOnFail": {"count": 2**64}}, {"deduplication": {"id": "d", "ttl": 2**64}},
    {"repeat": {"every": 2**64}}, {"delay": 10**20}, {"keepLogs": 2**63},
])
@pytest_twisted.ensureDeferred
async def test_job_options_past_64_bits_are_400_naming_the_option(proxy, sync_redis, option):
    (name, value), = option.items()
    body = json.dumps([{"name": "a", "data": 1, "opts": option}]).encode()
    problem = await refused(proxy, "/queues/mail/jobs", body, AUTH, slug="invalid-field",
                            field=f"[0].opts.{name}" + (
                                "" if not isinstance(value, dict) else
                                "." + next(k for k in value if k not in ("type", "id"))))
    assert str(MAX_STORED_INTEGER) in problem["detail"] or "315360000000" in problem["detail"]
    assert sync_redis.keys("*") == []


@pytest.mark.parametrize(("job", "field"), [
    (b'[{"name": "\\ud800", "data": 1}]', "body"),
    (b'[{"name": "a", "data": {"text": "x\\udfffy"}}]', "body"),
])
@pytest_twisted.ensureDeferred
async def test_lone_surrogates_in_a_job_are_400(proxy, sync_redis, job, field):
    problem = await refused(proxy, "/queues/mail/jobs", job, AUTH, field=field)
    assert "surrogate" in problem["detail"]
    assert sync_redis.keys("*") == []


@pytest.mark.parametrize(("path", "body"), [
    ("/queues/mail/jobs/1/logs", b'"line \\ud800"'),
    ("/queues/mail/jobs/1/fail", b'{"reason": "\\udc00"}'),
    ("/queues/mail/jobs/1/progress", b'{"step": "\\ud83d"}'),
])
@pytest_twisted.ensureDeferred
async def test_lone_surrogates_in_the_job_api_are_400(proxy, sync_redis, path, body):
    await locked_job(proxy, sync_redis)
    before = snapshot(sync_redis)
    await refused(proxy, path, body, LOCK)
    assert snapshot(sync_redis) == before


@pytest.mark.parametrize("query", [f"start={2**60}", f"start={2**63 - 1}", "start=²",
                                   f"length={2**64}", "start=1e3"])
@pytest_twisted.ensureDeferred
async def test_paging_that_redis_cannot_take_is_400(proxy, sync_redis, query):
    await locked_job(proxy, sync_redis)
    for path in ("/queues/mail/jobs", "/queues/mail/jobs/1/logs"):
        status, problem, _ = await proxy.request("GET", f"{path}?{query}", headers=AUTH)
        assert status == 400, problem
        assert problem["field"] == query.split("=")[0]


@pytest_twisted.ensureDeferred
async def test_paging_from_the_largest_start_answers_an_empty_page(proxy, sync_redis):
    await locked_job(proxy, sync_redis)
    status, page, _ = await proxy.request(
        "GET", f"/queues/mail/jobs?start={MAX_SAFE_INTEGER}&length=100", headers=AUTH)
    assert (status, page["jobs"]) == (200, [])
    status, logs, _ = await proxy.request(
        "GET", f"/queues/mail/jobs/1/logs?start={MAX_SAFE_INTEGER}&length=100", headers=AUTH)
    assert (status, logs["logs"]) == (200, [])


@pytest.mark.parametrize("duration", [b"1e20", str(2**63).encode(), b"604800001"])
@pytest_twisted.ensureDeferred
async def test_lock_duration_past_its_range_is_400(proxy, sync_redis, duration):
    await locked_job(proxy, sync_redis)
    before = snapshot(sync_redis)
    problem = await refused(proxy, "/queues/mail/jobs/1/lock", b'{"duration": ' + duration + b"}",
                            LOCK, field="duration", slug="invalid-field")
    assert "604800000" in problem["detail"]
    assert snapshot(sync_redis) == before


@pytest.mark.parametrize("authorization", [b"Bearer \xff", b"Bearer \xc3", b"\xff\xfe"])
@pytest_twisted.ensureDeferred
async def test_authorization_that_is_not_utf8_is_401(proxy, authorization):
    d = proxy.stub.request("GET", "http://proxy/queues/mail/jobs",
                           headers={b"Authorization": [authorization]})
    from twisted.internet import reactor

    from tests.support import wait_for_stub
    response = await wait_for_stub(proxy.stub, d, reactor)
    assert response.code == 401


@pytest_twisted.ensureDeferred
async def test_a_queue_name_with_a_newline_is_logged_on_one_line(proxy):
    from twisted.logger import formatEvent, globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        status, _, _ = await proxy.request("POST", "/workers", json_body={
            "queue": "evil\nINFO forged line", "endpoint": {"url": "http://127.0.0.1:9/",
                                                            "method": "POST"}}, headers=AUTH)
        assert status == 200
        from tests.workers_helpers import eventually
        await eventually(lambda: any("evil" in formatEvent(e) for e in events))
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events if "evil" in formatEvent(e)]
    assert lines
    assert all("\n" not in line and "evil\\nINFO forged line" in line for line in lines)


# WebSockets.


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    running = await start_live_proxy(make_config(redis_url, ws_message_timeout=60.0))
    yield running
    await running.stop()


async def raw_answer(base, request: bytes) -> bytes:
    host, port = base.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


def upgrade(path: bytes, *extra: bytes) -> bytes:
    return b"\r\n".join([
        b"GET " + path + b" HTTP/1.1", b"Host: localhost", b"Connection: Upgrade",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13",
        *extra, b"", b""])


@on_asyncio
async def test_upgrade_headers_that_are_not_utf8_are_refused_not_500(live):
    answer = await raw_answer(live.url, upgrade(b"/ws/queues/abc?token=test-token",
                                                b"Upgrade: websocket\xff"))
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"field":"Upgrade"' in answer.replace(b" ", b"")
    answer = await raw_answer(live.url, upgrade(b"/ws/queues/abc", b"Upgrade: websocket",
                                                b"Authorization: Bearer \xff"))
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


@pytest.mark.parametrize("concurrency", [b"%C2%B2", b"%D9%A3", b"1e3", b"99999999999999999999",
                                         b"-1", b"%20%31"])
@on_asyncio
async def test_a_concurrency_that_is_not_ascii_digits_is_400(live, concurrency):
    answer = await raw_answer(live.url, upgrade(
        b"/ws/queues/abc/process/" + concurrency + b"?token=test-token", b"Upgrade: websocket"))
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"field": "concurrency"' in answer or b'"field":"concurrency"' in answer


@on_asyncio
async def test_progress_and_logs_of_an_unknown_job_are_not_found(live, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail")
    for fn, args in (("updateJobProgress", ["nope", 50]), ("jobProgress", ["7", {"a": 1}]),
                     ("addJobLog", ["nope", "line"]), ("jobLog", ["7", "line", 5])):
        reply = await ws.call(1, fn, *args)
        assert reply["err"]["code"] == "not-found", (fn, reply)
        assert reply["err"]["field"] == "jobId"
    assert sync_redis.keys("*") == []
    await ws.close()


@on_asyncio
async def test_logs_keep_the_jobs_keep_logs(live, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail")
    job = (await ws.call(1, "add", "a", 1, {"keepLogs": 2}))["ok"]
    for n in range(4):
        count = (await ws.call(2, "addJobLog", job["id"], f"line {n}"))["ok"]
    assert count == 2
    assert sync_redis.lrange(f"bull:mail:{job['id']}:logs", 0, -1) == ["line 2", "line 3"]
    # An explicit keepLogs wins, as BullMQ's addJobLog(queue, id, row, keepLogs) does.
    assert (await ws.call(3, "addJobLog", job["id"], "line 4", 3))["ok"] == 3
    await ws.close()


@pytest.mark.parametrize("frame", [
    DEEP, DEEP_OBJECT, b'{"id": 1, "data": {"fn": "add", "args": ["a", 1e400]}}',
    b'{"id": 1, "data": {"fn": "add", "args": ["\\ud800", 1]}}',
    b'{"id": 1, "data": {"fn": "add", "args": ["a", 1, {"delay": 100000000000000000000}]}}',
    b'{"id": 1, "data": {"fn": "getJobs", "args": ["waiting", 1152921504606846976]}}',
    b'{"id": 1, "data": {"fn": "getJobLogs", "args": ["x", 0, 9223372036854775807]}}',
    b'{"id": 1, "data": {"fn": "addJobLog", "args": ["x", "l", 18446744073709551616]}}',
])
@on_asyncio
async def test_hostile_commands_get_err_replies_and_the_socket_stays(live, sync_redis, frame):
    ws = await connect(live.url, "/ws/queues/mail")
    ws.send(frame)
    reply = await ws.recv()
    assert reply["data"]["err"]["code"] in ("invalid-json", "invalid-field"), reply
    assert (await ws.call(2, "getJobCounts"))["ok"] is not None
    assert sync_redis.keys("bull:mail:[0-9]*") == []
    await ws.close()


async def _pushed_job(live, redis_url, sync_redis):
    from bullmq import Queue

    queue = Queue("mail", {"connection": redis_url})
    try:
        job = await queue.add("a", {"x": 1}, {"attempts": 1})
    finally:
        await queue.close()
    ws = await connect(live.url, "/ws/queues/mail/process/2")
    message = await ws.recv()
    assert message["data"]["job"]["id"] == job.id
    return ws, message["id"], job.id


async def _failed(sync_redis, job_id, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if sync_redis.zscore("bull:mail:failed", job_id) is not None:
            return sync_redis.hget(f"bull:mail:{job_id}", "failedReason")
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} was not failed; active: "
                         f"{sync_redis.lrange('bull:mail:active', 0, -1)}")


@pytest.mark.parametrize("reply", [
    b'{"id": %d, "data": {"err": "\\ud800"}}',
    b'{"id": %d, "data": {"result": {"text": "\\udfff"}}}',
    b'{"id": %d, "data": {"result": 1e400}}',
    b'{"id": %d, "data": {"result": ' + DEEP + b"}}",
])
@on_asyncio
async def test_a_worker_reply_that_cannot_be_stored_fails_the_job_at_once(
        live, redis_url, sync_redis, reply):
    ws, message_id, job_id = await _pushed_job(live, redis_url, sync_redis)
    ws.send(reply.replace(b"%d", str(message_id).encode()))
    answer = await ws.recv()
    assert answer["id"] == message_id
    assert answer["data"]["err"]["code"] == "invalid-json"
    # Failed now (the message timeout is a minute), and the socket still serves.
    reason = await _failed(sync_redis, job_id)
    assert reason.startswith("The WebSocket worker's reply could not be read")
    assert ws.connection.close_code is None
    await ws.close()
